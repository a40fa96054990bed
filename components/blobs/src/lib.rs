//! Blob endpoint family: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

mod blobs;

use berth_domain::OciError;
use berth_domain::route::{self, Route};
use berth_guest::http::{Incoming, Reply};
use spin_sdk::wasip3::http::types::Method;

berth_guest::endpoint!("berth:registry/blobs-endpoint", blobs_api, dispatch);

async fn dispatch(req: &Incoming) -> Result<Reply, OciError> {
    let Ok(Route::Blob { name, digest }) = route::parse(&req.path) else {
        return Err(berth_guest::misrouted());
    };
    match req.method {
        Method::Get => blobs::get(req, name, digest, true).await,
        Method::Head => blobs::get(req, name, digest, false).await,
        Method::Delete => blobs::delete(name, digest).await,
        _ => Err(OciError::method_not_allowed()),
    }
}
