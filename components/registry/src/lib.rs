//! The registry component: serves the OCI Distribution API under `/v2/`.
//!
//! Spin routes by path prefix only and repository names span segments, so
//! this component owns `/v2/...`, routes with `berth_domain::route`, and hands
//! each endpoint family to its module. Protocol rules live in
//! `berth-domain`; this crate adapts them to HTTP and to the store
//! capabilities. Layer bytes never pass through guest code: request and
//! response body streams go straight to and from the blob capability.

mod blobs;
mod catalog;
mod http;
mod manifests;
mod referrers;
mod store;
mod uploads;

use berth_domain::OciError;
use berth_domain::route::{self, Route, RouteError};
use http::{Incoming, Reply};
use spin_sdk::wasip3::http::types::{ErrorCode, Method, Request, Response};

// The raw `wasi:http/handler` export (what `#[http_service]` wraps), so the
// request body stays a stream instead of the SDK's buffered body.
struct Registry;
spin_sdk::wasip3::http::service::export!(Registry);

impl spin_sdk::wasip3::exports::http::handler::Guest for Registry {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let req = Incoming::new(request);
        let reply = match dispatch(&req).await {
            Ok(reply) => reply,
            Err(err) => Reply::error(&err),
        };
        Ok(reply.into_response(req))
    }
}

async fn dispatch(req: &Incoming) -> Result<Reply, OciError> {
    let route = match route::parse(&req.path) {
        Ok(r) => r,
        Err(RouteError::NameInvalid) => {
            return Err(OciError::new(
                berth_domain::ErrorCode::NameInvalid,
                "invalid repository name",
            ));
        }
        Err(RouteError::NotFound) => {
            return Err(
                OciError::new(berth_domain::ErrorCode::Unsupported, "no such endpoint")
                    .with_status(404),
            );
        }
    };
    let m = &req.method;
    match route {
        Route::Base => match m {
            Method::Get | Method::Head => Ok(Reply::json(200, b"{}".to_vec())),
            _ => Err(OciError::method_not_allowed()),
        },
        Route::Catalog => match m {
            Method::Get => catalog::catalog(req).await,
            _ => Err(OciError::method_not_allowed()),
        },
        Route::Tags { name } => match m {
            Method::Get => catalog::tags(req, name).await,
            _ => Err(OciError::method_not_allowed()),
        },
        Route::Manifest { name, reference } => match m {
            Method::Get => manifests::get(req, name, reference, true).await,
            Method::Head => manifests::get(req, name, reference, false).await,
            Method::Put => manifests::put(req, name, reference).await,
            Method::Delete => manifests::delete(name, reference).await,
            _ => Err(OciError::method_not_allowed()),
        },
        Route::Blob { name, digest } => match m {
            Method::Get => blobs::get(req, name, digest, true).await,
            Method::Head => blobs::get(req, name, digest, false).await,
            Method::Delete => blobs::delete(name, digest).await,
            _ => Err(OciError::method_not_allowed()),
        },
        Route::UploadStart { name } => match m {
            Method::Post => uploads::start(req, name).await,
            _ => Err(OciError::method_not_allowed()),
        },
        Route::Upload { name, id } => match m {
            Method::Get => uploads::status(name, id).await,
            Method::Patch => uploads::patch(req, name, id).await,
            Method::Put => uploads::finish(req, name, id).await,
            Method::Delete => uploads::cancel(name, id).await,
            _ => Err(OciError::method_not_allowed()),
        },
        Route::Referrers { name, digest } => match m {
            Method::Get => referrers::list(req, name, digest).await,
            _ => Err(OciError::method_not_allowed()),
        },
    }
}
