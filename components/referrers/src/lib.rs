//! Referrers endpoint family: `GET /v2/<name>/referrers/<digest>`.

mod referrers;

use berth_domain::OciError;
use berth_domain::route::{self, Route};
use berth_guest::http::{Incoming, Reply};
use spin_sdk::wasip3::http::types::Method;

berth_guest::endpoint!("berth:registry/referrers-endpoint", referrers_api, dispatch);

async fn dispatch(req: &Incoming) -> Result<Reply, OciError> {
    match (route::parse(&req.path), &req.method) {
        (Ok(Route::Referrers { name, digest }), Method::Get) => {
            referrers::list(req, name, digest).await
        }
        (Ok(Route::Referrers { .. }), _) => Err(OciError::method_not_allowed()),
        _ => Err(berth_guest::misrouted()),
    }
}
