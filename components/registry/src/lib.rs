//! The registry router: owns `/v2/...` (Spin routes by prefix only, and
//! repository names span path segments), answers `GET /v2/` and routing
//! errors itself, and hands every other request, unchanged and with its
//! body still a stream, to the endpoint family's component through
//! `wit/endpoints.wit`. This is the one place every `/v2/` request passes,
//! where authorization will be checked.

use berth_domain::route::{self, Route, RouteError};
use berth_domain::{ErrorCode as OciCode, OciError};
use berth_guest::http::{Incoming, Reply};
use spin_sdk::wasip3::http::types::{ErrorCode, Method, Request, Response};

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "berth:registry/router",
    path: "../../wit",
    with: { "wasi:http/types@0.3.0": spin_sdk::wasip3::http::types },
    generate_all,
});

use berth::registry::{blobs_api, listings_api, manifests_api, referrers_api, uploads_api};

struct Router;
spin_sdk::wasip3::http::service::export!(Router);

/// Which family serves a path, or the answer the router gives itself.
enum Family {
    Blobs,
    Uploads,
    Manifests,
    Listings,
    Referrers,
}

fn family(path: &str) -> Result<Option<Family>, OciError> {
    match route::parse(path) {
        Ok(Route::Base) => Ok(None),
        Ok(Route::Catalog | Route::Tags { .. }) => Ok(Some(Family::Listings)),
        Ok(Route::Manifest { .. }) => Ok(Some(Family::Manifests)),
        Ok(Route::Blob { .. }) => Ok(Some(Family::Blobs)),
        Ok(Route::UploadStart { .. } | Route::Upload { .. }) => Ok(Some(Family::Uploads)),
        Ok(Route::Referrers { .. }) => Ok(Some(Family::Referrers)),
        Err(RouteError::NameInvalid) => Err(OciError::new(
            OciCode::NameInvalid,
            "invalid repository name",
        )),
        Err(RouteError::NotFound) => {
            Err(OciError::new(OciCode::Unsupported, "no such endpoint").with_status(404))
        }
    }
}

impl spin_sdk::wasip3::exports::http::handler::Guest for Router {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default();
        match family(path) {
            Ok(Some(Family::Blobs)) => blobs_api::handle(request).await,
            Ok(Some(Family::Uploads)) => uploads_api::handle(request).await,
            Ok(Some(Family::Manifests)) => manifests_api::handle(request).await,
            Ok(Some(Family::Listings)) => listings_api::handle(request).await,
            Ok(Some(Family::Referrers)) => referrers_api::handle(request).await,
            Ok(None) => berth_guest::serve(request, base).await,
            Err(e) => berth_guest::serve(request, async |_: &Incoming| Err(e.clone())).await,
        }
    }
}

/// `GET /v2/`: the API version check.
async fn base(req: &Incoming) -> Result<Reply, OciError> {
    match req.method {
        Method::Get | Method::Head => Ok(Reply::json(200, b"{}".to_vec())),
        _ => Err(OciError::method_not_allowed()),
    }
}
