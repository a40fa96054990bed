//! Manifest endpoint family: `/v2/<name>/manifests/<reference>`.

mod manifests;

use berth_domain::OciError;
use berth_domain::route::{self, Route};
use berth_guest::http::{Incoming, Reply};
use spin_sdk::wasip3::http::types::Method;

berth_guest::endpoint!("berth:registry/manifests-endpoint", manifests_api, dispatch);

async fn dispatch(req: &Incoming) -> Result<Reply, OciError> {
    let Ok(Route::Manifest { name, reference }) = route::parse(&req.path) else {
        return Err(berth_guest::misrouted());
    };
    match req.method {
        Method::Get => manifests::get(req, name, reference, true).await,
        Method::Head => manifests::get(req, name, reference, false).await,
        Method::Put => manifests::put(req, name, reference).await,
        Method::Delete => manifests::delete(name, reference).await,
        _ => Err(OciError::method_not_allowed()),
    }
}
