//! What the host does on the wire, below the components: request bodies
//! that stall or break off, answers sent before a body was read, clients
//! that stop reading, the connection cap, and the access log.
//!
//! Limits (`berth serve` options, see [`Limits`]):
//! - a request head must arrive within `header_timeout` of the connection
//!   opening or of the previous response (hyper's header-read timer, which
//!   also closes idle keep-alive connections);
//! - once a body (in) or a response (out) is under way, `body_timeout` is
//!   the longest the host waits for the peer's next byte;
//! - at most `max_connections` are open at once (more wait in the kernel's
//!   accept queue).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
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
}

impl RequestBody {
    pub fn new(
        inner: hyper::body::Incoming,
        limits: &Limits,
        http1: bool,
        expect_continue: bool,
    ) -> Self {
        RequestBody {
            inner: Some(inner),
            stall: Stall::new(limits.body_timeout),
            polled: false,
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

/// A response body that counts what it sends and logs the request once
/// it is over.
pub struct LoggedBody {
    inner: WasiBody,
    bytes: u64,
    /// HEAD, 204 and 304 answers: complete without a body.
    bodyless: bool,
    /// The body's announced length (`Content-Length`), if any: hyper stops
    /// polling once it is sent, before the body says it ended.
    length: Option<u64>,
    record: Option<AccessRecord>,
}

impl LoggedBody {
    pub fn wrap(inner: WasiBody, record: AccessRecord) -> WasiBody {
        let bodyless = record.method == hyper::Method::HEAD || matches!(record.status, 204 | 304);
        let length = inner.size_hint().exact();
        http_body_util::BodyExt::boxed_unsync(LoggedBody {
            inner,
            bytes: 0,
            bodyless,
            length,
            record: Some(record),
        })
    }

    fn log(&mut self, complete: bool) {
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

impl Body for LoggedBody {
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

impl LoggedBody {
    fn sent_all(&self) -> bool {
        self.bodyless || self.inner.is_end_stream() || self.length == Some(self.bytes)
    }
}

impl Drop for LoggedBody {
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
