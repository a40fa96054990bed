//! HTTP(S) front: accepts connections (at most `max_connections`, with the
//! timeouts of [`crate::transport`]), answers `/healthz` natively, routes
//! `/metrics` natively (`crate::metrics`), routes
//! everything else to components per `spin.toml`, writes the access log, and
//! on SIGINT/SIGTERM stops accepting and lets in-flight requests finish.

use crate::manifest::App;
use crate::metrics::{self, METRICS, MethodLabel, RouteFamily};
use crate::runtime::Handler;
use crate::transport::{
    self, AccessRecord, Exchange, Exchanges, Limits, Observed, RejectionIo, RequestBody,
    ResponseBody, StallIo,
};
use anyhow::{Context, Result};
use berth_domain::OciError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use wasmtime_wasi_http::WasiBody;

pub struct Server {
    pub app: App,
    pub handlers: HashMap<String, Handler>,
    /// `/healthz`: whether the stores answer.
    pub health: Box<dyn Fn() -> futures::future::BoxFuture<'static, Result<()>> + Send + Sync>,
    /// The claims of a token this host signed (for the access log).
    pub verify_token: TokenVerifier,
    /// Whether requests arrive over TLS (the scheme components see).
    pub tls: bool,
    pub limits: Limits,
    /// Who may read `/metrics`.
    pub metrics: metrics::Access,
    /// The stores `/metrics` reads figures from.
    pub backends: Arc<crate::capabilities::Backends>,
}

type Body = WasiBody;

/// A token's claims (JSON) if this host signed it and it has not expired.
pub type TokenVerifier = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

fn respond(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(
            Full::new(body.into())
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("static response")
}

fn plain(status: u16, text: &'static str) -> Response<Body> {
    respond(status, "text/plain", text)
}

/// Errors the host answers itself, in the registry protocol's format.
fn oci_error(e: OciError) -> Response<Body> {
    respond(e.status(), "application/json", e.body())
}

impl Server {
    /// Answers one request; `exchange` (HTTP/1.1) goes with the response
    /// body (see [`RejectionIo`]).
    async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        exchange: Option<Exchange>,
    ) -> Response<ResponseBody> {
        let start = Instant::now();
        let logged = tracing::enabled!(target: "berth::access", tracing::Level::INFO);
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        let mut user = String::new();
        // Every body, whoever answers, is drained if answered unread.
        let http1 = req.version() < hyper::Version::HTTP_2;
        let expect_continue = req
            .headers()
            .get(hyper::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let family = RouteFamily::of(&path);
        let in_flight = METRICS.started(family);
        let limits = &self.limits;
        let req = req.map(|b| RequestBody::new(b, limits, http1, expect_continue, family).boxed());
        let resp = if path == "/metrics" {
            if !self.metrics.allows(
                peer.ip(),
                req.headers().contains_key("x-forwarded-for")
                    || req.headers().contains_key("forwarded"),
                req.headers()
                    .get(hyper::header::AUTHORIZATION)
                    .map(|v| v.as_bytes()),
            ) {
                plain(
                    403,
                    "metrics are served to the addresses of --metrics-allow, or with BERTH_METRICS_TOKEN\n",
                )
            } else if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
                plain(405, "GET only\n")
            } else {
                let text = METRICS.render(&self.backends).await;
                respond(
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                )
            }
        } else if path == "/healthz" {
            match (self.health)().await {
                Ok(()) => plain(200, "ok\n"),
                Err(e) => {
                    tracing::error!(error = %e, "health check failed");
                    plain(503, "unhealthy\n")
                }
            }
        } else if let Some(handler) = self.app.route(&path).and_then(|c| self.handlers.get(c)) {
            // Only a component checks credentials: name them for its answers.
            if logged {
                user = transport::claimed_user(
                    req.headers().get(hyper::header::AUTHORIZATION),
                    &self.verify_token,
                );
            }
            let mut req = req;
            // As Spin does: components learn the client's address from this
            // header, which a client cannot set itself.
            if let Ok(v) = hyper::header::HeaderValue::from_str(&peer.to_string()) {
                req.headers_mut().insert("spin-client-addr", v);
            }
            // Components never see `Host` (a forbidden header in wasi:http):
            // give them the full URL instead, as Spin does.
            if req.uri().authority().is_none()
                && let Some(host) = req.headers().get(hyper::header::HOST).cloned()
            {
                let mut parts = req.uri().clone().into_parts();
                parts.scheme = Some(if self.tls {
                    hyper::http::uri::Scheme::HTTPS
                } else {
                    hyper::http::uri::Scheme::HTTP
                });
                parts.authority = host.to_str().ok().and_then(|h| h.parse().ok());
                if let Ok(uri) = hyper::Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
            match handler.handle((), req).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = ?e, %method, %path, "component failed");
                    oci_error(OciError::internal("internal server error"))
                }
            }
        } else {
            oci_error(OciError::unsupported("no such endpoint").with_status(404))
        };
        let status = resp.status().as_u16();
        let observed = Observed {
            family,
            method: MethodLabel::of(&method),
            head: method == hyper::Method::HEAD,
            status,
            start,
            // Only runs a job component answered (ran, busy, or failed):
            // not refusals, nor paths no job serves, so the label stays bounded.
            job: (family == RouteFamily::Jobs
                && (matches!(status, 200 | 409) || status >= 500)
                && self.app.route(&path).is_some_and(|c| c != "manage"))
            .then(|| {
                path.strip_prefix("/berth/jobs/")?
                    .strip_suffix("/tick")
                    .map(str::to_string)
            })
            .flatten(),
            _in_flight: in_flight,
        };
        let record = logged.then(|| {
            AccessRecord {
                method,
                path,
                status,
                peer,
                // Refused credentials name nobody.
                user: if status == 401 { String::new() } else { user },
                start,
            }
        });
        resp.map(|body| ResponseBody::wrap(body, record, observed, exchange))
    }
}

pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown_signal());
    let limits = server.limits;
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut warned: Option<Instant> = None;
    loop {
        // A connection holds a slot until it closes; while none is free,
        // new clients wait in the kernel's accept queue.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                // Once a minute at most: a flood would otherwise flood the log.
                if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections wait"
                    );
                    warned = Some(Instant::now());
                }
                tokio::select! {
                    s = slots.clone().acquire_owned() => s.expect("never closed"),
                    _ = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        let exchanges = Arc::new(Exchanges::default());
        // Only HTTP/2 (over TLS) needs the time of the last request start;
        // cleartext HTTP/1.1 has hyper's header timer.
        let timed = tls.is_some();
        if timed {
            exchanges
                .last_start_ms
                .store(uptime_ms(), Ordering::Relaxed);
        }
        let shared = exchanges.clone();
        let service = hyper::service::service_fn(move |req| {
            if timed {
                shared.last_start_ms.store(uptime_ms(), Ordering::Relaxed);
            }
            // HTTP/2 streams overlap, and RejectionIo leaves HTTP/2 alone:
            // nothing to track.
            let exchange = (req.version() < hyper::Version::HTTP_2).then(|| shared.begin());
            let server = server.clone();
            async move { Ok::<_, std::convert::Infallible>(server.handle(req, peer, exchange).await) }
        });
        let builder = builder(&limits);
        let stop = stop_rx.clone();
        match &tls {
            None => {
                let stream = RejectionIo::new(StallIo::new(stream, &limits), exchanges);
                // Cleartext is HTTP/1.1 only: registry clients never speak
                // HTTP/2 without TLS, and h2c would give anyone streams and
                // pings to hold connections with.
                let conn = builder
                    .http1_only()
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                tokio::spawn(async move {
                    let conn = std::pin::pin!(conn);
                    drive(conn, |c| c.graceful_shutdown(), stop, None).await;
                    drop(slot);
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // The handshake gets the header timeout too.
                    let stream =
                        match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let stream = RejectionIo::new(StallIo::new(stream, &limits), exchanges.clone());
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    let conn = std::pin::pin!(conn);
                    // HTTP/2 has no header timer: a connection that starts
                    // no request for the header timeout is asked to close
                    // (GOAWAY; streams under way finish).
                    let idle = Some((limits.header_timeout, exchanges));
                    drive(conn, |c| c.graceful_shutdown(), stop, idle).await;
                    drop(slot);
                });
            }
        }
    }
    crate::runtime::SHUTTING_DOWN.store(true, Ordering::Relaxed);
    tracing::info!("shutting down: waiting for in-flight requests");
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = slots.acquire_many(all) => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(Duration::from_secs(30)) => tracing::warn!("gave up waiting for connections after 30s"),
    }
    Ok(())
}

/// Milliseconds since the host started (a monotonic clock for atomics).
fn uptime_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Serves one connection until it ends: at shutdown (`stop`) it is asked
/// to finish gracefully, and with `idle` = (limit, time of the last request
/// start) also once no request has started for that long.
async fn drive<C, E: std::fmt::Display>(
    mut conn: std::pin::Pin<&mut C>,
    graceful: impl Fn(std::pin::Pin<&mut C>),
    mut stop: tokio::sync::watch::Receiver<bool>,
    idle: Option<(Duration, Arc<Exchanges>)>,
) where
    C: Future<Output = Result<(), E>>,
{
    let mut closing = *stop.borrow();
    if closing {
        graceful(conn.as_mut());
    }
    let period = idle.as_ref().map_or(Duration::from_secs(3600), |(d, _)| *d);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                graceful(conn.as_mut());
            }
            _ = tokio::time::sleep(period), if !closing && idle.is_some() => {
                let (limit, last) = idle.as_ref().expect("checked");
                let quiet = uptime_ms().saturating_sub(last.last_start_ms.load(Ordering::Relaxed));
                if quiet >= limit.as_millis() as u64 {
                    closing = true;
                    graceful(conn.as_mut());
                }
            }
        }
    }
}

/// HTTP/1.1 and HTTP/2 with the host's timeouts: hyper's header-read timer
/// (which also ends idle keep-alive connections), and HTTP/2 pings that
/// drop a peer that stopped answering.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    // Each open stream can hold an instance: one connection gets a share
    // of them, not hyper's default 200.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.body_timeout);
    builder
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("opening {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .context("reading TLS certificates")?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("opening {}", key.display()))?,
    ))
    .context("reading TLS key")?
    .context("no private key found")?;
    // Several crypto providers are linked in (through dependencies); name one.
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
