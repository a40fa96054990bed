//! Listing endpoint family: `GET /v2/<name>/tags/list` and `GET /v2/_catalog`.

mod listings;

use berth_domain::OciError;
use berth_domain::route::{self, Route};
use berth_guest::http::{Incoming, Reply};
use spin_sdk::wasip3::http::types::Method;

berth_guest::endpoint!("berth:registry/listings-endpoint", listings_api, dispatch);

async fn dispatch(req: &Incoming) -> Result<Reply, OciError> {
    match (route::parse(&req.path), &req.method) {
        (Ok(Route::Catalog), Method::Get) => listings::catalog(req).await,
        (Ok(Route::Tags { name }), Method::Get) => listings::tags(req, name).await,
        (Ok(Route::Catalog | Route::Tags { .. }), _) => Err(OciError::method_not_allowed()),
        _ => Err(berth_guest::misrouted()),
    }
}
