//! Listing endpoint family: `GET /v2/<name>/tags/list` and `GET /v2/_catalog`.

mod listings;

use berth_domain::OciError;
use berth_domain::route::{self, Route};
use berth_guest::http::{Incoming, Reply};
use spin_sdk::wasip3::http::types::{ErrorCode, Method, Request, Response};

berth_guest::world_bindings!("berth:registry/listings-endpoint");

use exports::berth::registry::registry_types::AccountUser;

impl exports::berth::registry::listings_api::Guest for Endpoint {
    async fn handle(request: Request, caller: Option<AccountUser>) -> Result<Response, ErrorCode> {
        let caller = caller
            .as_ref()
            .map(|c| (c.tenant.as_str(), c.user.as_str()));
        berth_guest::serve(request, async |req: &Incoming| dispatch(req, caller).await).await
    }
}

async fn dispatch(req: &Incoming, caller: Option<(&str, &str)>) -> Result<Reply, OciError> {
    match (route::parse(&req.path), &req.method) {
        (Ok(Route::Catalog), Method::Get) => listings::catalog(req, caller).await,
        (Ok(Route::Tags { name }), Method::Get) => listings::tags(req, name).await,
        (Ok(Route::Catalog | Route::Tags { .. }), _) => Err(OciError::method_not_allowed()),
        _ => Err(berth_guest::misrouted()),
    }
}
