//! `berth`: the local host. `berth serve` runs the application described by
//! `spin.toml` on wasmtime with Berth's capabilities provided natively:
//! SQLite metadata and filesystem blobs by default, or the backends a
//! runtime config names (`runtime_config`: PostgreSQL metadata).

mod capabilities;
mod compose;
mod iam;
mod manifest;
mod metrics;
mod outbound;
mod runtime;
mod runtime_config;
mod schedule;
mod server;
mod spin;
mod transport;

use anyhow::{Context, Result};
use capabilities::Backends;
use clap::{Parser, Subcommand};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "berth", version, about = "Berth container registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry.
    Serve(ServeArgs),
    /// Manage tenants, users, groups, policies and access keys.
    Iam {
        /// The registry's data directory (as given to `serve`).
        #[arg(
            long,
            env = "BERTH_DATA_DIR",
            default_value = "./berth-data",
            global = true
        )]
        data_dir: PathBuf,
        /// The runtime config (as given to `serve`).
        #[arg(long, env = "BERTH_RUNTIME_CONFIG_FILE", global = true)]
        runtime_config_file: Option<PathBuf>,
        #[command(subcommand)]
        command: iam::IamCommand,
    },
    /// Composes the Spin build: each component of --manifest with its
    /// dependencies and the Spin adapters (wit/adapters.wit), written to
    /// --out as <component id>.wasm, importing only what Spin's platform
    /// exports (`make spin`; infra/spin/spin.toml runs them).
    BuildSpin {
        /// The application whose components are composed.
        #[arg(long, default_value = "spin.toml")]
        manifest: PathBuf,
        /// Where the adapters were built (config_variables.wasm, …).
        #[arg(long, default_value = "target/wasm32-wasip2/release")]
        adapters: PathBuf,
        /// Where the composed components go.
        #[arg(long, default_value = "target/spin")]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Where metadata (SQLite, by default) and blobs live, and this host's
    /// keys and identity.
    #[arg(long, env = "BERTH_DATA_DIR", default_value = "./berth-data")]
    data_dir: PathBuf,
    /// Which backends serve metadata (a TOML file in the shape of Spin's
    /// runtime-config.toml, e.g. `[metadata_store.default] type =
    /// "postgres"`); without it, SQLite in the data directory.
    #[arg(long, env = "BERTH_RUNTIME_CONFIG_FILE")]
    runtime_config_file: Option<PathBuf>,
    /// The application manifest.
    #[arg(long, env = "BERTH_MANIFEST", default_value = "spin.toml")]
    manifest: PathBuf,
    /// PEM certificate chain; with --tls-key, serve HTTPS.
    #[arg(long, env = "BERTH_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, env = "BERTH_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, env = "BERTH_LOG", default_value = "info")]
    log_level: String,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "BERTH_LOG_JSON")]
    log_json: bool,
    /// Application variables, `name=value` (repeatable); see `[variables]` in spin.toml.
    #[arg(long = "var", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Where compiled components are kept between starts
    /// (default: $XDG_CACHE_HOME/berth/components or ~/.cache/berth/components).
    #[arg(long, env = "BERTH_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Uploads untouched for this many seconds are removed (by the gc job;
    /// the same as `--var upload_expiry_seconds=N`).
    #[arg(long, env = "BERTH_UPLOAD_EXPIRY_SECS")]
    upload_expiry_secs: Option<u64>,
    /// Seconds a client has to send a request's head, counted from the
    /// connection opening or the previous response (so idle keep-alive
    /// connections close after this long too), and for a TLS handshake.
    #[arg(long, env = "BERTH_HEADER_TIMEOUT_SECS", default_value_t = 30)]
    header_timeout_secs: u64,
    /// Longest pause, in seconds, in a request body the client is sending or
    /// a response it is reading; a slow link that keeps moving never hits it.
    #[arg(long, env = "BERTH_BODY_TIMEOUT_SECS", default_value_t = 60)]
    body_timeout_secs: u64,
    /// Connections served at once; more wait to be accepted.
    #[arg(long, env = "BERTH_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Non-public networks components may still send requests to (webhooks,
    /// replication), comma-separated addresses or CIDRs, e.g.
    /// `127.0.0.1,10.0.0.0/8`. Loopback, private, link-local and other
    /// non-public addresses are refused otherwise.
    #[arg(long, env = "BERTH_OUTBOUND_ALLOW", value_delimiter = ',', value_parser = parse_net)]
    outbound_allow: Vec<ipnet::IpNet>,
    /// Addresses that may read `GET /metrics` (comma-separated addresses or
    /// CIDRs); others need `BERTH_METRICS_TOKEN`.
    /// Loopback when none is given.
    #[arg(long, env = "BERTH_METRICS_ALLOW", value_delimiter = ',', value_parser = parse_net)]
    metrics_allow: Vec<ipnet::IpNet>,
    /// A Bearer token that lets anyone read `GET /metrics` (from the
    /// environment only, so it stays out of process listings).
    #[arg(skip = std::env::var("BERTH_METRICS_TOKEN").ok().filter(|t| !t.is_empty()))]
    metrics_token: Option<String>,
    /// PEM file of CA certificates trusted for outbound HTTPS, besides the
    /// system's.
    #[arg(long, env = "BERTH_OUTBOUND_CA_FILE")]
    outbound_ca_file: Option<PathBuf>,
    /// Largest outbound response body a component may receive, in bytes.
    #[arg(long, env = "BERTH_OUTBOUND_MAX_RESPONSE_BYTES", default_value_t = 1 << 20)]
    outbound_max_response_bytes: u64,
}

/// `10.0.0.0/8`, or one address (`127.0.0.1`, `::1`).
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("expected an address or CIDR, got {s:?}"))
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected name=value, got {s:?}"))
}

/// Keeps glibc from holding on to freed buffers: large blocks (stream
/// chunks) always come from mmap and go back to the system when freed,
/// instead of the dynamic threshold moving them into arenas that stay
/// resident; and few arenas, rather than one per blocking thread.
fn tame_malloc() {
    // SAFETY: mallopt only tunes the allocator; called before any threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> Result<()> {
    tame_malloc();
    // Everything Berth writes (metadata with password hashes and sealed
    // keys, the audit log, blobs, uploads) is for its own user only.
    // SAFETY: umask only sets this process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve(args)),
        Command::Iam {
            data_dir,
            runtime_config_file,
            command,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let stores = runtime_config::load(runtime_config_file.as_deref(), &data_dir)?;
                let meta = capabilities::metadata::Metadata::open(&stores.metadata).await?;
                let creds = capabilities::credentials::Credentials::open(&stores.keys)?;
                iam::run(&meta, &creds, command).await
            }),
        Command::BuildSpin {
            manifest,
            adapters,
            out,
        } => build_spin(&manifest, &adapters, &out),
    }
}

/// `berth build-spin`: one composed file per component of `manifest`.
fn build_spin(
    manifest: &std::path::Path,
    adapters: &std::path::Path,
    out: &std::path::Path,
) -> Result<()> {
    let app = manifest::App::load(manifest, &HashMap::new())?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for c in &app.components {
        let bytes = compose::for_spin(c, adapters)
            .with_context(|| format!("composing component {} for Spin", c.id))?;
        let file = out.join(format!("{}.wasm", c.id));
        let tmp = file.with_extension("wasm.tmp");
        std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &file)?;
        println!("{} ({} KiB)", file.display(), bytes.len() / 1024);
    }
    Ok(())
}

/// The log filter for `--log-level`: a bare level applies to Berth's own
/// lines (`berth`, including the `berth::access` log) while other crates
/// stay at `warn`; a tracing directive (`wasmtime=debug,berth=trace`) is
/// taken as written.
fn log_filter(level: &str) -> String {
    match level.trim().to_ascii_lowercase().as_str() {
        l @ ("error" | "warn") => l.to_string(),
        l @ ("info" | "debug" | "trace") => format!("warn,berth={l}"),
        "off" => "off".into(),
        _ => level.to_string(),
    }
}

/// Logs go to stderr through a writer thread, so a request never waits
/// for the terminal or a pipe (lines are not dropped: past 128k queued
/// lines, writers wait). Keep the guard until exit: it flushes.
fn init_logs(args: &ServeArgs) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_new(log_filter(&args.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_filter("info")));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if args.log_json {
        fmt.json().init()
    } else {
        fmt.init()
    }
    guard
}

/// Data directories written by earlier versions (0755, files 0644) are
/// closed to other users: the directory and what lies directly in it
/// become 0700/0600 (the directory's mode alone already bars other users
/// from everything below it; new files are created 0600 by the umask).
/// Only what this user owns is changed (a mount point's `lost+found` is
/// not); the data directory itself must be ours to close.
fn restrict_permissions(data_dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid only reads this process's effective user id.
    let me = unsafe { libc::geteuid() };
    let close = |p: &std::path::Path, mode: u32| -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(p)?;
        if meta.uid() != me || meta.permissions().mode() & 0o077 == 0 {
            return Ok(());
        }
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
    };
    close(data_dir, 0o700)
        .with_context(|| format!("restricting permissions of {}", data_dir.display()))?;
    for entry in std::fs::read_dir(data_dir)?.flatten() {
        let mode = match entry.file_type() {
            Ok(t) if t.is_dir() => 0o700,
            Ok(t) if t.is_file() => 0o600,
            _ => continue,
        };
        if let Err(e) = close(&entry.path(), mode) {
            tracing::warn!(path = %entry.path().display(), error = %e, "could not restrict permissions");
        }
    }
    Ok(())
}

/// This data directory's host identity (`<data-dir>/host-id`, made once).
fn host_id(data_dir: &std::path::Path) -> Result<String> {
    let path = data_dir.join("host-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_string());
    }
    let id = capabilities::blobs::random_id();
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

async fn serve(args: ServeArgs) -> Result<()> {
    let _logs = init_logs(&args);
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    restrict_permissions(&args.data_dir)?;
    let stores = runtime_config::load(args.runtime_config_file.as_deref(), &args.data_dir)?;
    tracing::info!(stores = %stores.describe(), "opening the stores");
    let backends = Arc::new(Backends {
        metadata: capabilities::metadata::Metadata::open(&stores.metadata).await?,
        blobs: capabilities::blobs::Blobs::open(&stores.blobs).await?,
        credentials: capabilities::credentials::Credentials::open(&stores.keys)?,
    });
    iam::bootstrap(&backends.metadata, &backends.credentials).await?;
    let mut overrides: HashMap<String, String> = args.vars.iter().cloned().collect();
    if let Some(secs) = args.upload_expiry_secs {
        overrides.insert("upload_expiry_seconds".into(), secs.to_string());
    }
    let mut app = manifest::App::load(&args.manifest, &overrides)?;
    // Who this host is across restarts: jobs' leases carry it, and the
    // leases an earlier life of this host held are released now.
    let host_id = host_id(&args.data_dir)?;
    for c in &mut app.components {
        c.config
            .insert(berth_domain::jobs::HOST_ID.into(), host_id.clone());
        if let capabilities::blobs::BlobsConfig::S3(s3) = &stores.blobs
            && let Some(ttl) = s3.redirect
        {
            c.config.insert(
                berth_domain::keys::BLOB_REDIRECT_SECONDS.into(),
                ttl.as_secs().to_string(),
            );
        }
    }
    schedule::release_leases(&backends.metadata, &host_id).await?;
    let engine = runtime::engine()?;
    let cache = args
        .cache_dir
        .clone()
        .or_else(runtime::default_cache_dir)
        .unwrap_or_else(|| args.data_dir.join("cache"));
    let outbound = Arc::new(outbound::Outbound::new(&outbound::OutboundConfig {
        allow: args.outbound_allow.clone(),
        ca_file: args.outbound_ca_file.clone(),
        max_response_bytes: args.outbound_max_response_bytes,
    })?);
    let postgres = Arc::new(spin::postgres::Pools::default());
    let mut handlers = HashMap::new();
    for c in &app.components {
        let t = std::time::Instant::now();
        let handler = runtime::load(
            &engine,
            c,
            backends.clone(),
            outbound.clone(),
            postgres.clone(),
            Some(&cache),
        )?;
        handlers.insert(c.id.clone(), handler);
        tracing::info!(component = %c.id, ms = t.elapsed().as_millis() as u64, "component ready");
    }

    let token_backends = backends.clone();
    let health_backends = backends.clone();
    let server = Arc::new(server::Server {
        app,
        handlers,
        health: Box::new(move || {
            let backends = health_backends.clone();
            Box::pin(async move {
                backends
                    .metadata
                    .get("health")
                    .await
                    .map(|_| ())
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })
        }),
        verify_token: Box::new(move |t| token_backends.credentials.verify_token(t)),
        tls: args.tls_cert.is_some(),
        metrics: metrics::Access {
            allow: if args.metrics_allow.is_empty() {
                vec!["127.0.0.0/8".parse()?, "::1/128".parse()?]
            } else {
                args.metrics_allow.clone()
            },
            token: args.metrics_token.clone(),
        },
        backends: backends.clone(),
        limits: transport::Limits {
            header_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
            body_timeout: Duration::from_secs(args.body_timeout_secs.max(1)),
            max_connections: args.max_connections.max(1),
            drain_bytes: 64 << 20,
        },
    });
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(server::tls_acceptor(c, k)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), data_dir = %args.data_dir.display(), "berth listening");
    schedule::spawn(server.clone(), backends.clone());
    let served = server::serve(server, listener, tls).await;
    // Statistics counts still in memory are written before exiting.
    if let Err(e) = backends.metadata.flush().await {
        tracing::warn!(error = %e, "could not write the last statistics counts");
    }
    served
}
