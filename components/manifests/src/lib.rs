//! Manifest endpoint family: `/v2/<name>/manifests/<reference>`.

mod manifests;

use berth_domain::OciError;
use berth_domain::route::{self, Route};
use berth_guest::http::{Incoming, Reply};
use spin_sdk::wasip3::http::types::{ErrorCode, Method, Request, Response};

berth_guest::world_bindings!("berth:registry/manifests-endpoint");

use exports::berth::registry::registry_types::AccountUser;

impl exports::berth::registry::manifests_api::Guest for Endpoint {
    async fn handle(request: Request, caller: Option<AccountUser>) -> Result<Response, ErrorCode> {
        let operator = caller
            .map(|c| format!("{}@{}", c.user, c.tenant))
            .unwrap_or_default();
        berth_guest::serve(request, async |req: &Incoming| {
            dispatch(req, &operator).await
        })
        .await
    }
}

/// `operator`: `user@tenant` of the caller, named in events.
async fn dispatch(req: &Incoming, operator: &str) -> Result<Reply, OciError> {
    let Ok(Route::Manifest { name, reference }) = route::parse(&req.path) else {
        return Err(berth_guest::misrouted());
    };
    match req.method {
        Method::Get => manifests::get(req, name, reference, true).await,
        Method::Head => manifests::get(req, name, reference, false).await,
        Method::Put => manifests::put(req, name, reference, operator).await,
        Method::Delete => manifests::delete(req, name, reference, operator).await,
        _ => Err(OciError::method_not_allowed()),
    }
}
