//! The wasmtime side: one engine with the pooling allocator, and per
//! component a pre-instantiated `wasi:http/handler` served through
//! wasmtime-wasi-http's `ProxyHandler`, which reuses a p3 instance for
//! several requests (components keep no per-request global state).

use crate::capabilities::{self, Backends, CapState};
use crate::manifest;
use crate::outbound::{AllowedHosts, ComponentHooks, Outbound};
use crate::spin;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, GuestTaskId, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreContextMut,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyHandler, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState,
    WorkerStatus,
};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Requests one instance serves before it is recycled (Spin 4's default for p3).
const REUSE_COUNT: usize = 128;
/// Requests one instance serves at once.
const CONCURRENT_REUSE: usize = 16;
/// An idle instance is dropped after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Set once the server stops accepting requests.
pub static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

pub struct HostData {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: ComponentHooks,
    caps: CapState,
    spin: spin::SpinState,
}

impl WasiView for HostData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostData {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

pub fn engine() -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model_async(true);
    let mut pool = PoolingAllocationConfig::default();
    // A component instance of the Spin build holds ~50 core instances
    // (11 composed parts, each with its module, WASI adapter and shims)
    // and ~25 memories; of `berth serve`'s own build ~30 and ~15. These
    // slots are address space reserved up front, not memory in use.
    pool.total_component_instances(1000)
        .total_memories(4000)
        .total_tables(4000)
        .total_stacks(1000)
        .total_core_instances(8000)
        .max_memory_size(256 << 20)
        // Batched decommit: measured +40% req/s for fresh instances here.
        .decommit_batch_size(64);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// One component ready to serve.
pub struct ComponentState {
    engine: Engine,
    pre: ProxyPre<HostData>,
    backends: Arc<Backends>,
    config: Arc<HashMap<String, String>>,
    outbound: Arc<Outbound>,
    allowed_hosts: Arc<AllowedHosts>,
    spin: spin::SpinState,
    /// The component's id (`berth_outbound_requests_total{component}`).
    id: Arc<str>,
}

pub type Handler = ProxyHandler<ComponentState>;

/// Where compiled components are kept between runs.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("berth/components"))
}

/// The compiled form of `c` (composed with its dependencies), from the cache
/// when its inputs and the engine are unchanged. A cache hit maps the
/// precompiled file instead of composing and compiling: restarts are fast
/// and the peak memory of compilation (~50 MiB for the registry) is paid
/// once per build, not once per start.
fn compiled(engine: &Engine, c: &manifest::Component, cache: Option<&Path>) -> Result<Component> {
    use sha2::Digest;
    use std::hash::{Hash, Hasher};
    let mut key = sha2::Sha256::new();
    let mut compat = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    key.update(compat.finish().to_le_bytes());
    key.update(env!("CARGO_PKG_VERSION"));
    key.update(
        std::fs::read(&c.source).with_context(|| format!("reading {}", c.source.display()))?,
    );
    for (import, path) in &c.dependencies {
        key.update(import.as_bytes());
        key.update(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    }
    let file = cache.map(|d| d.join(format!("{}-{}.cwasm", c.id, hex::encode(key.finalize()))));
    if let Some(file) = file.as_ref().filter(|f| f.exists()) {
        // SAFETY: the file was written by `precompile_component` of an engine
        // with the same compatibility hash (part of its name), by this host.
        match unsafe { Component::deserialize_file(engine, file) } {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "recompiling: cached component unusable")
            }
        }
    }
    let bytes = if c.dependencies.is_empty() {
        std::fs::read(&c.source)?
    } else {
        crate::compose::with_dependencies(c)
            .with_context(|| format!("composing component {}", c.id))?
    };
    let compiled = engine.precompile_component(&bytes)?;
    drop(bytes);
    if let Some(file) = file {
        let stored = (|| -> Result<()> {
            let dir = file.parent().expect("cache file has a directory");
            std::fs::create_dir_all(dir)?;
            // Old builds' artifacts of this component are no longer needed.
            // Another process starting at the same time may be writing
            // (its own temporary file) or have just written this very file:
            // leave both alone.
            for entry in std::fs::read_dir(dir)?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let current = entry.path() == file || name.contains(".tmp");
                if name.starts_with(&format!("{}-", c.id)) && !current {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
            let tmp = file.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, &compiled)?;
            std::fs::rename(&tmp, &file)?;
            Ok(())
        })();
        match stored {
            // SAFETY: just written by `precompile_component` above (or by
            // another process of this build, from the same inputs).
            Ok(()) => match unsafe { Component::deserialize_file(engine, &file) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(error = %e, "could not map the cached component"),
            },
            Err(e) => tracing::warn!(error = %e, "could not cache the compiled component"),
        }
    }
    // SAFETY: produced by `precompile_component` of this engine just above.
    Ok(unsafe { Component::deserialize(engine, &compiled)? })
}

pub fn load(
    engine: &Engine,
    c: &manifest::Component,
    backends: Arc<Backends>,
    outbound: Arc<Outbound>,
    postgres: Arc<spin::postgres::Pools>,
    cache: Option<&Path>,
) -> Result<Handler> {
    let component = compiled(engine, c, cache)
        .with_context(|| format!("loading component {} from {}", c.id, c.source.display()))?;
    let mut linker = Linker::<HostData>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    capabilities::add_to_linker(&mut linker, |d: &mut HostData| &mut d.caps)?;
    spin::add_to_linker(&mut linker, |d: &mut HostData| spin::SpinView {
        table: &mut d.table,
        state: &d.spin,
    })?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("linking component {}", c.id))?;
    let pre = ProxyPre::P3(
        wasmtime_wasi_http::p3::bindings::ServicePre::new(pre)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("component {} does not export wasi:http/handler@0.3.0", c.id)
            })?,
    );
    let config = Arc::new(c.config.clone());
    let allowed_hosts = Arc::new(c.allowed_outbound_hosts.clone());
    Ok(ProxyHandler::new(ComponentState {
        engine: engine.clone(),
        pre,
        backends,
        config: config.clone(),
        outbound,
        allowed_hosts: allowed_hosts.clone(),
        id: c.id.as_str().into(),
        spin: spin::SpinState {
            // Spin variables are the component's config, as on Spin.
            variables: config,
            postgres,
            allowed_hosts,
        },
    }))
}

pub struct Expiration {
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiration {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        match status {
            // Requests may stream for hours (a 10 GiB layer): no deadline then.
            WorkerStatus::Requests | WorkerStatus::PostReturn => Poll::Pending,
            WorkerStatus::Idle => {
                let deadline = tokio::time::Instant::from_std(start + IDLE_TIMEOUT);
                if self.sleep.deadline() != deadline {
                    self.sleep.as_mut().reset(deadline);
                }
                self.sleep.as_mut().poll(cx)
            }
        }
    }
}

pub struct Worker;

impl WorkerState for Worker {
    type StoreData = HostData;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= REUSE_COUNT {
            ShouldAccept::Never
        } else if concurrent >= CONCURRENT_REUSE {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<HostData>,
        _data: (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        Box::pin(std::future::pending())
    }

    fn drop(&self, store: Store<HostData>, result: wasmtime::Result<()>) {
        match result {
            // At shutdown, idle workers are cancelled; wasmtime reports that
            // as a panic, but nothing failed.
            Err(e) if SHUTTING_DOWN.load(Ordering::Relaxed) => {
                tracing::debug!(error = ?e, "instance dropped at shutdown")
            }
            Err(e) => tracing::error!(error = ?e, "component instance failed"),
            Ok(()) => {}
        }
        drop(store);
    }
}

impl HandlerState for ComponentState {
    type StoreData = HostData;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<HostData, Expiration, Worker>> {
        let data = HostData {
            table: ResourceTable::new(),
            wasi: WasiCtx::builder().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            hooks: ComponentHooks {
                outbound: self.outbound.clone(),
                allowed: self.allowed_hosts.clone(),
                component: self.id.clone(),
            },
            caps: CapState {
                backends: self.backends.clone(),
                config: self.config.clone(),
            },
            spin: self.spin.clone(),
        };
        let mut store = Store::new(&self.engine, data);
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance {
            store,
            proxy,
            view: WasiHttpView::http,
            expiration: Expiration {
                sleep: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
            },
            state: Worker,
        })
    }
}
