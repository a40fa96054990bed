//! The registry router: owns `/v2/...` (Spin routes by prefix only, and
//! repository names span path segments). Every `/v2/` request passes here,
//! so this is where callers are authenticated (Bearer tokens from the
//! `token` component, or Basic credentials), where each request is
//! authorized (`berth_domain::iam::decide`), and where pushes and deletes
//! are audited. Allowed requests go, unchanged and with their bodies still
//! streams, to the endpoint family's component through `wit/endpoints.wit`.

mod access;

use access::{Caller, Check};
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

use berth::registry::{
    blobs_api, enterprise_api, listings_api, manifests_api, referrers_api, registry_types,
    uploads_api,
};

struct Router;
spin_sdk::wasip3::http::service::export!(Router);

fn route(path: &str) -> Result<Route<'_>, OciError> {
    route::parse(path).map_err(|e| match e {
        RouteError::NameInvalid => OciError::new(OciCode::NameInvalid, "invalid repository name"),
        RouteError::NotFound => {
            OciError::new(OciCode::Unsupported, "no such endpoint").with_status(404)
        }
    })
}

impl spin_sdk::wasip3::exports::http::handler::Guest for Router {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let pq = request.get_path_with_query().unwrap_or_default();
        let (path, query) = pq.split_once('?').unwrap_or((&pq, ""));
        let route = match route(path) {
            Ok(r) => r,
            // Not a registry path: SWR's enterprise API shares `/v2/`.
            Err(_) if route::is_enterprise(path) => return enterprise_api::handle(request).await,
            Err(e) => {
                return berth_guest::serve(request, async |_: &Incoming| Err(e.clone())).await;
            }
        };
        let method = request.get_method();
        let caller = Caller::of(&request).await;
        let check = match access::check(&caller, &route, &method, query, &request).await {
            Ok(check) => check,
            Err(reply) => return Ok(berth_guest::respond(request, reply)),
        };
        let source = access::client_addr(&request);
        if let Some(pq) = &check.rewrite {
            let _ = request.set_path_with_query(Some(pq));
        }
        let who = || {
            caller
                .who()
                .map(|(tenant, user)| registry_types::AccountUser { tenant, user })
        };
        let response = match route {
            Route::Base => berth_guest::serve(request, base).await,
            Route::Catalog | Route::Tags { .. } => listings_api::handle(request, who()).await,
            Route::Manifest { .. } => {
                // Only changes name their operator (in their events): reads
                // pass no caller, and cost no copies of it.
                let change = !matches!(method, Method::Get | Method::Head);
                manifests_api::handle(request, if change { who() } else { None }).await
            }
            Route::Blob { .. } => blobs_api::handle(request).await,
            Route::UploadStart { .. } | Route::Upload { .. } => {
                match access::upload_slot(&caller, &request).await {
                    Ok(slot) => {
                        let response = uploads_api::handle(request).await;
                        if let Some(slot) = slot {
                            slot.release().await;
                        }
                        response
                    }
                    Err(reply) => Ok(berth_guest::respond(request, reply)),
                }
            }
            Route::Referrers { .. } => referrers_api::handle(request).await,
        };
        if let (Some(op), Ok(resp)) = (&check.audit, &response) {
            access::audit(&caller, op, resp.get_status_code(), source).await;
        }
        response
    }
}

impl Check {
    pub(crate) fn allowed() -> Check {
        Check {
            rewrite: None,
            audit: None,
        }
    }
}

/// `GET /v2/`: the API version check (reached only when authenticated).
async fn base(req: &Incoming) -> Result<Reply, OciError> {
    match req.method {
        Method::Get | Method::Head => Ok(Reply::json(200, b"{}".to_vec())),
        _ => Err(OciError::method_not_allowed()),
    }
}
