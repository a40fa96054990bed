//! Upload endpoint family: `/v2/<name>/blobs/uploads/...`.

mod uploads;

use berth_domain::OciError;
use berth_domain::route::{self, Route};
use berth_guest::http::{Incoming, Reply};
use spin_sdk::wasip3::http::types::Method;

berth_guest::endpoint!("berth:registry/uploads-endpoint", uploads_api, dispatch);

async fn dispatch(req: &Incoming) -> Result<Reply, OciError> {
    match (route::parse(&req.path), &req.method) {
        (Ok(Route::UploadStart { name }), Method::Post) => uploads::start(req, name).await,
        (Ok(Route::Upload { name, id }), Method::Get) => uploads::status(name, id).await,
        (Ok(Route::Upload { name, id }), Method::Patch) => uploads::patch(req, name, id).await,
        (Ok(Route::Upload { name, id }), Method::Put) => uploads::finish(req, name, id).await,
        (Ok(Route::Upload { name, id }), Method::Delete) => uploads::cancel(name, id).await,
        (Ok(Route::UploadStart { .. } | Route::Upload { .. }), _) => {
            Err(OciError::method_not_allowed())
        }
        _ => Err(berth_guest::misrouted()),
    }
}
