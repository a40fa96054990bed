//! What every Berth component shares: bindings to the store capabilities
//! (`store`), the glue between raw `wasi:http@0.3.0` values and endpoint
//! code (`http`), and the entry point each endpoint family exports
//! (`serve`). Protocol rules live in `berth-domain`, not here.

pub mod audit;
pub mod auth;
pub mod gc;
pub mod http;
pub mod jobs;
pub mod manage;
pub mod namespaces;
pub mod remote;
pub mod replication;
pub mod retention;
pub mod session;
pub mod slots;
pub mod store;

use berth_domain::OciError;
use berth_domain::digest::{Digest, DigestError};
use http::{Incoming, Reply};
use spin_sdk::wasip3::http::types::{ErrorCode, Request, Response};

/// Serves one request with `dispatch`, rendering protocol errors as the
/// spec's JSON. Every endpoint family's exported `handle` is this.
pub async fn serve<F>(request: Request, dispatch: F) -> Result<Response, ErrorCode>
where
    F: AsyncFn(&Incoming) -> Result<Reply, OciError>,
{
    let req = Incoming::new(request);
    let reply = match dispatch(&req).await {
        Ok(reply) => reply,
        Err(err) => Reply::error(&err),
    };
    Ok(reply.into_response(req))
}

/// `fut`'s output, or `None` if it takes longer than `nanos` (monotonic
/// clock). `fut` is dropped then.
pub async fn within<F: Future>(nanos: u64, fut: F) -> Option<F::Output> {
    use std::task::Poll;
    let mut fut = std::pin::pin!(fut);
    let mut timer = std::pin::pin!(spin_sdk::wasip3::clocks::monotonic_clock::wait_for(nanos));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Answers `request` with a reply decided before reading it.
pub fn respond(request: Request, reply: Reply) -> Response {
    reply.into_response(Incoming::new(request))
}

/// Parses a digest from a path or query, as the spec's errors want it.
pub fn parse_digest(s: &str) -> Result<Digest, OciError> {
    Digest::parse(s).map_err(|e| match e {
        DigestError::Invalid => OciError::digest_invalid(format!("invalid digest {s:?}")),
        DigestError::Unsupported(a) => {
            OciError::unsupported(format!("digest algorithm {a:?} is not supported"))
        }
    })
}

/// The route a family was handed; the router already validated it, so a
/// mismatch means the wiring in `spin.toml` is wrong.
pub fn misrouted() -> OciError {
    OciError::internal("request routed to the wrong endpoint component")
}

/// The bindings of a component's world (`wit/`), with `wasi:http` types
/// shared with spin-sdk, and its exporting type `Endpoint`.
#[macro_export]
macro_rules! world_bindings {
    ($world:literal) => {
        ::spin_sdk::wit_bindgen::generate!({
            runtime_path: "::spin_sdk::wit_bindgen::rt",
            world: $world,
            path: "../../wit",
            with: { "wasi:http/types@0.3.0": ::spin_sdk::wasip3::http::types },
            generate_all,
        });

        struct Endpoint;
        export!(Endpoint);
    };
}

/// Generates the bindings for an endpoint family's world and exports
/// `dispatch` as its `handle`.
#[macro_export]
macro_rules! endpoint {
    ($world:literal, $iface:ident, $dispatch:path) => {
        $crate::world_bindings!($world);

        impl exports::berth::registry::$iface::Guest for Endpoint {
            async fn handle(
                request: ::spin_sdk::wasip3::http::types::Request,
            ) -> Result<
                ::spin_sdk::wasip3::http::types::Response,
                ::spin_sdk::wasip3::http::types::ErrorCode,
            > {
                ::berth_guest::serve(request, $dispatch).await
            }
        }
    };
}
