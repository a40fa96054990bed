//! What the host does on the wire, below the components: request bodies
//! that stall or break off, answers sent before a body was read, clients
//! that stop reading, requests hyper cannot parse, the connection cap, and
//! the access log.
//!
//! Limits (`berth serve` options, see [`Limits`]):
//! - a request head must arrive within `header_timeout` of the connection
//!   opening or of the previous response (hyper's header-read timer, which
//!   also closes idle keep-alive connections);
//! - once a body (in) or a response (out) is under way, `body_timeout` is
//!   the longest the host waits for the peer's next byte;
//! - at most `max_connections` are open at once (more wait in the kernel's
//!   accept queue).

use crate::metrics::{InFlight, METRICS, MethodLabel, RouteFamily};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// Connection and body limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    /// When an answer went out before the request body was read, at most
    /// this many of the body's bytes are read and dropped so the client,
    /// still sending, gets the answer; past it the connection is closed.
    pub drain_bytes: u64,
}

/// How long the host keeps reading a body nobody wants (see
/// [`Limits::drain_bytes`]).
const DRAIN_FOR: Duration = Duration::from_secs(30);

/// A stall timer: armed when a wait begins, disarmed by progress. Its
/// `Sleep` is made on the first wait and reset after, so waiting costs no
/// allocation.
struct Stall {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Stall {
    fn new(limit: Duration) -> Self {
        Stall {
            limit,
            sleep: None,
            armed: false,
        }
    }

    /// Called when the peer made no progress: ready once the limit passed
    /// since the wait began.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = tokio::time::Instant::now() + self.limit;
        let armed = std::mem::replace(&mut self.armed, true);
        let sleep = match &mut self.sleep {
            Some(s) => {
                if !armed {
                    s.as_mut().reset(deadline);
                }
                s
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        sleep.as_mut().poll(cx).is_ready()
    }

    fn progress(&mut self) {
        self.armed = false;
    }
}

/// A request body as components see it: fails when the client stalls
/// longer than the body timeout, and when dropped unread (an early answer:
/// 401, 404, 413, 416…) keeps reading what the client still sends, up to
/// [`Limits::drain_bytes`], so the client can read the answer instead of
/// a reset connection (RFC 9112 §9.6). With `Expect: 100-continue` and no
/// read, the client never sent the body: nothing to drain.
pub struct RequestBody {
    inner: Option<hyper::body::Incoming>,
    stall: Stall,
    polled: bool,
    drain: Option<u64>,
    /// Where received bytes are counted (`berth_http_request_bytes_total`).
    family: RouteFamily,
}

impl RequestBody {
    pub fn new(
        inner: hyper::body::Incoming,
        limits: &Limits,
        http1: bool,
        expect_continue: bool,
        family: RouteFamily,
    ) -> Self {
        RequestBody {
            inner: Some(inner),
            stall: Stall::new(limits.body_timeout),
            polled: false,
            family,
            // HTTP/2 ends an unread stream on its own (RST_STREAM NO_ERROR).
            drain: (http1 && !expect_continue).then_some(limits.drain_bytes),
        }
    }

    pub fn boxed(self) -> WasiBody {
        http_body_util::BodyExt::boxed_unsync(self)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        self.polled = true;
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.stall.progress();
                if let Some(data) = frame.data_ref() {
                    METRICS.received(self.family, data.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.inner = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                self.inner = None;
                Poll::Ready(None)
            }
            Poll::Pending if self.stall.poll_expired(cx) => {
                self.inner = None;
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let (Some(mut body), Some(budget)) = (self.inner.take(), self.drain) else {
            return;
        };
        if body.is_end_stream() || budget == 0 {
            return;
        }
        // A body not even begun and announced as larger than the budget
        // would only be cut off later: close now.
        if !self.polled && body.size_hint().lower() > budget {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            use http_body_util::BodyExt;
            let mut left = budget;
            let _ = tokio::time::timeout(DRAIN_FOR, async {
                while let Some(Ok(frame)) = body.frame().await {
                    let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                    if n > left {
                        break;
                    }
                    left -= n;
                }
            })
            .await;
        });
    }
}

/// A connection's byte stream (after TLS, if any) with two timers: the
/// first byte must arrive within the header timeout (before it, hyper's
/// protocol detection waits with no timer of its own), and a client that
/// stops reading a response (its window full) for longer than the body
/// timeout is dropped instead of holding the response, and its instance,
/// forever.
pub struct StallIo<T> {
    inner: T,
    first_read: Option<Stall>,
    write: Stall,
}

impl<T> StallIo<T> {
    pub fn new(inner: T, limits: &Limits) -> Self {
        StallIo {
            inner,
            first_read: Some(Stall::new(limits.header_timeout)),
            write: Stall::new(limits.body_timeout),
        }
    }
}

impl<T> StallIo<T> {
    /// A write that waits on the client past the body timeout fails.
    fn watch_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        match r {
            Poll::Pending if self.write.poll_expired(cx) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            ))),
            Poll::Pending => Poll::Pending,
            ready => {
                self.write.progress();
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending => {
                let expired = self
                    .first_read
                    .as_mut()
                    .is_some_and(|timer| timer.poll_expired(cx));
                if expired {
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client sent nothing",
                    )))
                } else {
                    Poll::Pending
                }
            }
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.first_read = None;
                Poll::Ready(Ok(()))
            }
            ready => ready,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch_write(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch_write(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One connection's requests: how many were handed to the service and how
/// many of their responses are over (the response body dropped by hyper),
/// and when the last one started. Shared by the service and the
/// connection's [`RejectionIo`].
#[derive(Default)]
pub struct Exchanges {
    dispatched: AtomicU64,
    finished: AtomicU64,
    /// Milliseconds on the host's monotonic clock (see `server::uptime_ms`),
    /// kept only where the connection's idle timer needs it (HTTP/2).
    pub last_start_ms: AtomicU64,
}

impl Exchanges {
    /// Called as a request is handed to the service: the guard goes with
    /// its response body and marks the response over when dropped.
    pub fn begin(self: &Arc<Self>) -> Exchange {
        self.dispatched.fetch_add(1, Ordering::Relaxed);
        Exchange(self.clone())
    }

    /// `dispatched` when no response is under way, else `None`.
    fn idle_at(&self) -> Option<u64> {
        let d = self.dispatched.load(Ordering::Relaxed);
        (self.finished.load(Ordering::Relaxed) == d).then_some(d)
    }
}

/// A request handed to the service whose response is not over yet.
pub struct Exchange(Arc<Exchanges>);

impl Drop for Exchange {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// hyper answers an HTTP/1.1 request it cannot parse (400, 414, 431) by
/// itself, with an empty body, before any component sees it. This layer
/// gives that answer the JSON body of
/// [`berth_domain::error::unparsable_request_body`], like every other
/// error on `/v2/`.
///
/// hyper's answer is recognised by its exact head
/// (`HTTP/1.1 <status> <reason>\r\nconnection: close\r\ncontent-length: 0\r\n
/// date: …\r\n\r\n`, alone in one write) and only when no response can be
/// under way: every response body of the connection was dropped, a flush
/// completed after that, and no request was dispatched since. So no byte of
/// a response is ever rewritten, whatever a blob holds; in the rare orders
/// where that cannot be shown (a pipelined request parsed while the last
/// response was still being flushed) hyper's empty answer goes out as it
/// is. HTTP/2 (its preface seen first) is never touched: h2 answers by
/// itself (RST_STREAM, or a bodiless 431 for oversized header lists).
pub struct RejectionIo<T> {
    inner: T,
    exchanges: Arc<Exchanges>,
    /// `dispatched` at the last flush after which no response was under way.
    quiet_at: Option<u64>,
    /// Whether the connection opened with HTTP/2's preface (decided once
    /// its first bytes differ from it or complete it).
    protocol: Protocol,
    /// The replacement being written, how much of it is out, and the length
    /// of hyper's head it stands for (what the write reports once done).
    out: Option<(Vec<u8>, usize, usize)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// This many bytes received so far, all matching the preface.
    Unknown(usize),
    Http1,
    Http2,
}

/// The start of HTTP/2's connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0";

impl<T> RejectionIo<T> {
    pub fn new(inner: T, exchanges: Arc<Exchanges>) -> Self {
        RejectionIo {
            inner,
            exchanges,
            quiet_at: Some(0),
            protocol: Protocol::Unknown(0),
            out: None,
        }
    }

    /// Starts the replacement of `head` if it is hyper's own rejection,
    /// written while no response is under way.
    fn intercept(&mut self, head: &[u8]) {
        if self.protocol != Protocol::Http1
            || self.out.is_some()
            || self.quiet_at != Some(self.exchanges.dispatched.load(Ordering::Relaxed))
        {
            return;
        }
        if let Some(answer) = rejection_with_body(head) {
            self.out = Some((answer, 0, head.len()));
        }
    }
}

impl<T: AsyncWrite + Unpin> RejectionIo<T> {
    /// Writes the rest of the replacement; ready with the length of the
    /// head it replaced once all of it is out.
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        while let Some((answer, written, _)) = self.out.as_mut() {
            if *written == answer.len() {
                let (_, _, replaced) = self.out.take().expect("present");
                return Poll::Ready(Ok(replaced));
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(0))
    }
}

/// hyper's rejection head with a JSON body added, if `head` is one.
fn rejection_with_body(head: &[u8]) -> Option<Vec<u8>> {
    const LENGTH: &[u8] = b"\r\ncontent-length: 0\r\n";
    const CLOSE: &[u8] = b"\r\nconnection: close\r\n";
    if head.len() > 256
        || !head.starts_with(b"HTTP/1.1 ")
        || !head.ends_with(b"\r\n\r\n")
        || !head.windows(CLOSE.len()).any(|w| w == CLOSE)
    {
        return None;
    }
    let status: u16 = std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()?;
    let body = berth_domain::error::unparsable_request_body(status)?;
    let at = head.windows(LENGTH.len()).position(|w| w == LENGTH)?;
    let mut out = Vec::with_capacity(head.len() + body.len() + 64);
    out.extend_from_slice(&head[..at]);
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&head[at + LENGTH.len()..]);
    out.extend_from_slice(&body);
    Some(out)
}

impl<T: AsyncRead + Unpin> AsyncRead for RejectionIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Protocol::Unknown(seen) = self.protocol
            && buf.filled().len() > before
        {
            // Reads may come a byte at a time.
            let got = &buf.filled()[before..];
            let n = got.len().min(PREFACE.len() - seen);
            self.protocol = if got[..n] != PREFACE[seen..seen + n] {
                Protocol::Http1
            } else if seen + n == PREFACE.len() {
                Protocol::Http2
            } else {
                Protocol::Unknown(seen + n)
            };
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for RejectionIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.intercept(buf);
        if self.out.is_some() {
            return self.poll_out(cx);
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(head), None) = (filled.next(), filled.next()) {
            self.intercept(head);
        }
        if self.out.is_some() {
            return self.poll_out(cx);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_out(cx))?;
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        // Everything written so far is out: if no response is under way
        // now, the next write until a request is dispatched is hyper's own.
        self.quiet_at = self.exchanges.idle_at();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_out(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the access log line of one request says (written when the
/// response body is done or abandoned).
pub struct AccessRecord {
    pub method: hyper::Method,
    pub path: String,
    pub status: u16,
    pub peer: std::net::SocketAddr,
    /// Who the credentials name (`user@tenant`, or an access key id for a
    /// signed call); empty when anonymous or refused.
    pub user: String,
    pub start: Instant,
}

/// A response body as hyper sends it: counts what it sends and writes the
/// access log line once it is over (if the request is logged), and marks
/// the connection's exchange over when dropped.
pub struct ResponseBody {
    inner: WasiBody,
    bytes: u64,
    /// HEAD, 204 and 304 answers: complete without a body.
    bodyless: bool,
    /// The body's announced length (`Content-Length`), if any: hyper stops
    /// polling once it is sent, before the body says it ended.
    length: Option<u64>,
    record: Option<AccessRecord>,
    /// Counted once the answer is over.
    observed: Option<Observed>,
    /// Dropped with the body, after the log line.
    _exchange: Option<Exchange>,
}

/// What `/metrics` counts of one exchange (`crate::metrics`).
pub struct Observed {
    pub family: RouteFamily,
    pub method: MethodLabel,
    pub head: bool,
    pub status: u16,
    pub start: Instant,
    /// The job a tick ran (`/berth/jobs/<job>/tick`).
    pub job: Option<String>,
    /// Counted in flight until this is dropped.
    pub _in_flight: InFlight,
}

impl ResponseBody {
    /// A plain struct around the (already boxed) body: no allocation.
    pub fn wrap(
        inner: WasiBody,
        record: Option<AccessRecord>,
        observed: Observed,
        exchange: Option<Exchange>,
    ) -> ResponseBody {
        let bodyless = observed.head || matches!(observed.status, 204 | 304);
        let length = inner.size_hint().exact();
        ResponseBody {
            inner,
            bytes: 0,
            bodyless,
            length,
            record,
            observed: Some(observed),
            _exchange: exchange,
        }
    }

    /// The answer is over (`complete` or not): counts it, logs it.
    fn log(&mut self, complete: bool) {
        if let Some(o) = self.observed.take() {
            let elapsed = o.start.elapsed();
            METRICS.finished(o.family, o.method, o.status, self.bytes, elapsed);
            if let Some(job) = &o.job {
                METRICS.job_ran(job, o.status, elapsed);
            }
        }
        let Some(r) = self.record.take() else {
            return;
        };
        let user = if r.user.is_empty() { "-" } else { &r.user };
        tracing::info!(
            target: "berth::access",
            method = %r.method,
            path = %r.path,
            status = r.status,
            bytes = self.bytes,
            duration_us = r.start.elapsed().as_micros() as u64,
            client = %r.peer,
            user,
            complete,
            "request"
        );
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                self.bytes += f.data_ref().map_or(0, |d| d.len() as u64);
                if self.sent_all() {
                    self.log(true);
                }
            }
            Some(Err(_)) => self.log(false),
            None => self.log(true),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl ResponseBody {
    fn sent_all(&self) -> bool {
        self.bodyless || self.inner.is_end_stream() || self.length == Some(self.bytes)
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let complete = self.sent_all();
        self.log(complete);
    }
}

/// Who a request's credentials name, for the access log: the user of
/// `Basic` (as given: the log line's status says whether it was right), the
/// `sub@tenant` of a Bearer token this host signed (`verify_token` returns
/// its claims), or the access key of an `SDK-HMAC-SHA256` signature.
/// Never a password, token or signature.
pub fn claimed_user(
    authorization: Option<&hyper::header::HeaderValue>,
    verify_token: impl Fn(&str) -> Option<String>,
) -> String {
    use berth_domain::iam::{docker, signing};
    let Some(value) = authorization.and_then(|v| v.to_str().ok()) else {
        return String::new();
    };
    if let Some((user, _)) = docker::parse_basic(value) {
        return user;
    }
    if let Some(token) = value.strip_prefix("Bearer ") {
        return verify_token(token.trim())
            .and_then(|c| serde_json::from_str::<docker::RegistryClaims>(&c).ok())
            .filter(|c| !c.sub.is_empty())
            .map(|c| format!("{}@{}", c.sub, c.tenant))
            .unwrap_or_default();
    }
    signing::parse_authorization(value)
        .map(|a| a.access)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn only_hypers_own_rejections_get_a_body() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 29 Nov 2026 18:08:29 GMT\r\n\r\n";
        let out = String::from_utf8(rejection_with_body(head).unwrap()).unwrap();
        let (head_out, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(
            head_out.starts_with(
                "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n"
            )
        );
        assert!(head_out.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
        assert!(head_out.ends_with("\r\ndate: Sun, 29 Nov 2026 18:08:29 GMT"));
        assert!(body.contains("SVCSTG.SWR.4310001"));
        let not = [
            &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\nX",
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 07\r\n\r\n",
        ];
        for head in not {
            assert!(rejection_with_body(head).is_none(), "{head:?}");
        }
    }

    #[test]
    fn access_log_names_users_never_secrets() {
        let none = |_: &str| None;
        let basic = HeaderValue::from_static("Basic YWxpY2VAYWNtZTpzM2NyZXQ="); // alice@acme:s3cret
        assert_eq!(claimed_user(Some(&basic), none), "alice@acme");
        let bearer = HeaderValue::from_static("Bearer a.b.c");
        let claims = |t: &str| {
            (t == "a.b.c").then(|| r#"{"kind":"registry","tenant":"acme","sub":"bob"}"#.to_string())
        };
        assert_eq!(claimed_user(Some(&bearer), claims), "bob@acme");
        // A token this host did not sign names nobody.
        assert_eq!(claimed_user(Some(&bearer), none), "");
        let signed = HeaderValue::from_static(
            "SDK-HMAC-SHA256 Access=AKIAEXAMPLE12345, SignedHeaders=host, Signature=abc",
        );
        assert_eq!(claimed_user(Some(&signed), none), "AKIAEXAMPLE12345");
        assert_eq!(claimed_user(None, none), "");
    }
}
