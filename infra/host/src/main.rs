//! `berth`: the local host. `berth serve` runs the application described by
//! `spin.toml` on wasmtime with Berth's capabilities provided natively
//! (SQLite metadata, filesystem blobs).

mod capabilities;
mod iam;
mod manifest;
mod runtime;
mod server;

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
        #[command(subcommand)]
        command: iam::IamCommand,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Where metadata (SQLite) and blobs live.
    #[arg(long, env = "BERTH_DATA_DIR", default_value = "./berth-data")]
    data_dir: PathBuf,
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
    /// Uploads untouched for this many seconds are removed.
    #[arg(long, env = "BERTH_UPLOAD_EXPIRY_SECS", default_value_t = 24 * 3600)]
    upload_expiry_secs: u64,
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
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve(args)),
        Command::Iam { data_dir, command } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let meta = capabilities::metadata::Metadata::open(&data_dir.join("metadata.db"))?;
                let creds = capabilities::credentials::Credentials::open(&data_dir.join("keys"))?;
                iam::run(&meta, &creds, command).await
            }),
    }
}

fn init_logs(args: &ServeArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        fmt.json().init()
    } else {
        fmt.init()
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    init_logs(&args);
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let backends = Arc::new(Backends {
        metadata: capabilities::metadata::Metadata::open(&args.data_dir.join("metadata.db"))?,
        blobs: capabilities::blobs::BlobStore::open(&args.data_dir)?,
        credentials: capabilities::credentials::Credentials::open(&args.data_dir.join("keys"))?,
    });
    iam::bootstrap(&backends.metadata, &backends.credentials).await?;
    let overrides: HashMap<String, String> = args.vars.iter().cloned().collect();
    let app = manifest::App::load(&args.manifest, &overrides)?;
    let engine = runtime::engine()?;
    let cache = args
        .cache_dir
        .clone()
        .or_else(runtime::default_cache_dir)
        .unwrap_or_else(|| args.data_dir.join("cache"));
    let mut handlers = HashMap::new();
    for c in &app.components {
        let t = std::time::Instant::now();
        let handler = runtime::load(&engine, c, backends.clone(), Some(&cache))?;
        handlers.insert(c.id.clone(), handler);
        tracing::info!(component = %c.id, ms = t.elapsed().as_millis() as u64, "component ready");
    }

    // Abandoned uploads: the local host schedules the sweep itself.
    let sweeper = backends.clone();
    let idle = Duration::from_secs(args.upload_expiry_secs);
    tokio::spawn(async move {
        let mut tick =
            tokio::time::interval(Duration::from_secs(600).min(idle.max(Duration::from_secs(1))));
        loop {
            tick.tick().await;
            match sweeper.blobs.expire(idle) {
                Ok(ids) if ids.is_empty() => {}
                Ok(ids) => {
                    // Drop the sessions' records too, so nothing of them is left.
                    let ops = ids
                        .iter()
                        .map(|id| {
                            capabilities::metadata::WriteOp::Delete(
                                berth_domain::keys::upload(id),
                                capabilities::metadata::Precondition::None,
                            )
                        })
                        .collect();
                    if let Err(e) = sweeper.metadata.commit(ops).await {
                        tracing::warn!(error = %e, "could not remove expired upload records");
                    }
                    tracing::info!(removed = ids.len(), "expired abandoned uploads");
                }
                Err(e) => tracing::warn!(error = %e, "upload expiry failed"),
            }
        }
    });

    let health_backends = backends.clone();
    let server = Arc::new(server::Server {
        app,
        handlers,
        health: Box::new(move || {
            health_backends
                .metadata
                .get("health")
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("{e}"))
        }),
        tls: args.tls_cert.is_some(),
    });
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(server::tls_acceptor(c, k)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), data_dir = %args.data_dir.display(), "berth listening");
    let served = server::serve(server, listener, tls).await;
    // Statistics counts still in memory are written before exiting.
    if let Err(e) = backends.metadata.flush().await {
        tracing::warn!(error = %e, "could not write the last statistics counts");
    }
    served
}
