//! The management API router (`/v2/manage/...`, `/v3/manage/...`, and the
//! API version list at `/`), compatible with Huawei Cloud SWR so its SDKs
//! and tools work unchanged.
//!
//! Every call is signed with an access key (`SDK-HMAC-SHA256`, checked by
//! `berth_domain::iam::signing`), which names the caller; the router then
//! hands the request, its body and the caller to the resource group's
//! component (`wit/endpoints.wit`), and audits every change.

use berth_domain::swr::SwrError;
use berth_guest::auth;
use berth_guest::http::{Incoming, Reply};
use berth_guest::manage::method_name;
use spin_sdk::wasip3::http::types::{ErrorCode, Method, Request, Response};
use spin_sdk::wasip3::wit_future;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "berth:registry/manage-router",
    path: "../../wit",
    with: { "wasi:http/types@0.3.0": spin_sdk::wasip3::http::types },
    generate_all,
});

use berth::registry::management_types::Caller;
use berth::registry::{account_api, admin_api, namespaces_api, repositories_api};

struct Manage;
spin_sdk::wasip3::http::service::export!(Manage);

/// Management bodies are small JSON documents.
const MAX_BODY: u64 = 1 << 20;

fn error(req: Incoming, e: &SwrError) -> Response {
    Reply::json(e.status, e.body()).into_response(req)
}

/// Which resource group serves a path (`None` for paths outside every API).
enum Group {
    /// `GET /v2`, `GET /v3`: one version's details.
    Version(String),
    Namespaces,
    Repositories,
    Account,
    /// `/berth/v1/...`: Berth's own admin API.
    Admin,
    Versions,
    /// No such management operation: 404 once the caller is authenticated
    /// (so the API's shape is not told to strangers).
    Unknown,
}

fn group(path: &str) -> Option<Group> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    Some(match segs.as_slice() {
        [] | [""] => Group::Versions,
        [v @ ("v2" | "v3")] => Group::Version(v.to_string()),
        // What lies under one organization, after `…/namespaces/<ns>`.
        ["v2", "manage", "namespaces", rest @ ..] => match rest {
            [] | [_] | [_, "access"] => Group::Namespaces,
            [_, "repos"]
            | [_, "repos", _]
            | [_, "repos", _, "tags" | "access"]
            | [_, "repos", _, "tags", _]
            | [_, "repos", _, "triggers"]
            | [_, "repos", _, "triggers", _]
            | [_, "repos", _, "retentions"]
            | [_, "repos", _, "retentions", _]
            | [_, "repos", _, "retentions", _, "preview"]
            | [_, "repos", _, "sync_repo" | "sync_images" | "sync_job"]
            | [_, "repositories", _, "access-domains"]
            | [_, "repositories", _, "access-domains", _] => Group::Repositories,
            _ => Group::Unknown,
        },
        ["v3", "manage", "namespaces", _, "repos", _, "tags"]
        | ["v2" | "v3", "manage", "shared-repositories"]
        | ["v2", "manage", "overview"]
        | ["v2", "manage", "regions"]
        | ["v2", "manage", "reports", _, _]
        | ["v2" | "v3", "manage", "repos"] => Group::Repositories,
        ["v2", "manage", "utils", "secret" | "authorizationtoken"]
        | ["v2", "manage", "projects", _, "quotas"] => Group::Account,
        ["berth", "v1", ..] => Group::Admin,
        ["v2" | "v3", "manage", ..] => Group::Unknown,
        _ => return None,
    })
}

impl spin_sdk::wasip3::exports::http::handler::Guest for Manage {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let authority = request.get_authority();
        let req = Incoming::new(request);
        let Some(group) = group(&req.path) else {
            return Ok(error(req, &SwrError::not_found("no such API")));
        };
        // API versions need no signature, as in SWR.
        let versions = match &group {
            Group::Versions => Some(Ok((
                "versions",
                vec![version("v2", authority.as_deref())].into(),
            ))),
            Group::Version(v) if v == "v2" => {
                Some(Ok(("version", version(v, authority.as_deref()))))
            }
            Group::Version(v) => Some(Err(SwrError::not_found(format!(
                "API version {v} is not served"
            )))),
            _ => None,
        };
        match versions {
            Some(Ok((key, value))) => {
                let body = serde_json::json!({ key: value });
                let bytes = serde_json::to_vec(&body).expect("json");
                return Ok(Reply::json(200, bytes).into_response(req));
            }
            Some(Err(e)) => return Ok(error(req, &e)),
            None => {}
        }
        let body = match req.body_bytes(MAX_BODY).await {
            Ok(b) => b,
            Err(e) => {
                let e = if e.status() == 413 {
                    SwrError::bad_request(format!("request bodies are limited to {MAX_BODY} bytes"))
                } else {
                    SwrError::bad_request(e.message)
                };
                return Ok(error(req, &e));
            }
        };
        // Berth's admin API also takes a password (`Basic`), so the
        // bootstrap administrator can create the first access keys.
        let basic = matches!(group, Group::Admin)
            && req
                .header("authorization")
                .is_some_and(|h| h.starts_with("Basic "));
        let mutating = !matches!(req.method, Method::Get | Method::Head);
        let authenticated = if basic {
            authenticate_basic(&req).await
        } else {
            match berth_guest::manage::session_principal(&req).await {
                // A console session opens the admin API only when signed in
                // with a password, as `Basic` does.
                // Nor does it mint login keys (`…/utils/secret`,
                // `…/utils/authorizationtoken`): a leaked one would renew itself.
                Ok(Some(p))
                    if p.access_key.is_some()
                        && (matches!(group, Group::Admin)
                            || req.path.contains("/manage/utils/")) =>
                {
                    Err(SwrError::forbidden(
                        "a console session signed in with a docker login key does not administer users and keys, nor mint login keys",
                    ))
                }
                // What it asks for (a temporary login key) stays bound to the
                // access key it signed in with.
                Ok(Some(p)) => {
                    let key = p.access_key.clone();
                    Ok(caller_of(p, key))
                }
                Ok(None) => authenticate(&req, authority.as_deref(), &body, mutating).await,
                Err(e) => Err(e),
            }
        };
        let caller = match authenticated {
            Ok(c) => c,
            // The admin API takes passwords: tell curl and browsers so
            // (not the console's pages, which have their own sign-in).
            Err(e)
                if matches!(group, Group::Admin)
                    && req
                        .header("cookie")
                        .is_none_or(|c| berth_domain::console::cookie_id(&c).is_none()) =>
            {
                let reply = Reply::json(e.status, e.body())
                    .header("www-authenticate", "Basic realm=\"berth\"");
                return Ok(reply.into_response(req));
            }
            Err(e) => return Ok(error(req, &e)),
        };
        if let Group::Unknown = group {
            let e = SwrError::not_found(format!(
                "no management operation {} {}",
                method_name(&req.method),
                req.path
            ));
            return Ok(error(req, &e));
        }
        let source = req
            .header(berth_guest::store::CLIENT_ADDR)
            .unwrap_or_default();
        let (tenant, user) = (caller.tenant.clone(), caller.user.clone());
        let operation = format!("{} {}", method_name(&req.method), req.path);
        let resource = berth_domain::audit::resource_of(method_name(&req.method), &req.path, &body);
        let forwarded = forward(&req, authority);
        drop(req);
        let response = match group {
            Group::Namespaces => namespaces_api::handle(forwarded, body, caller).await,
            Group::Repositories => repositories_api::handle(forwarded, body, caller).await,
            Group::Account => account_api::handle(forwarded, body, caller).await,
            Group::Admin => admin_api::handle(forwarded, body, caller).await,
            Group::Versions | Group::Version(_) | Group::Unknown => {
                unreachable!("answered above")
            }
        };
        if mutating && let Ok(r) = &response {
            let status = r.get_status_code();
            berth_guest::manage::audit(&tenant, user, operation, resource, status, source).await;
        }
        response
    }
}

/// A copy of the request without its body (read already) for a group.
fn forward(req: &Incoming, authority: Option<String>) -> Request {
    let (tx, rx) = wit_future::new(|| Ok(None));
    drop(tx);
    let (out, _) = Request::new(req.fields(), None, rx, None);
    let _ = out.set_method(&req.method);
    let _ = out.set_path_with_query(Some(&req.path_with_query()));
    let _ = out.set_authority(authority.as_deref());
    out
}

/// Checks the request's AK/SK signature (`berth_guest::manage::authenticate`).
async fn authenticate(
    req: &Incoming,
    authority: Option<&str>,
    body: &[u8],
    mutating: bool,
) -> Result<Caller, SwrError> {
    let (p, ak) = berth_guest::manage::authenticate(req, authority, body, mutating).await?;
    Ok(caller_of(p, Some(ak)))
}

/// `Authorization: Basic` with a login a docker client would use.
/// Only a user's own password: a docker login key (`{region}@{AK}`, long
/// term or temporary) opens registries, not the administration of users
/// and keys — a leaked CI login must not mint permanent keys or change a
/// password.
async fn authenticate_basic(req: &Incoming) -> Result<Caller, SwrError> {
    let (user, password) = req
        .header("authorization")
        .and_then(|h| berth_domain::iam::docker::parse_basic(&h))
        .ok_or_else(|| SwrError::unauthorized("malformed Basic credentials"))?;
    if let berth_domain::iam::docker::Login::AccessKey { .. } =
        berth_domain::iam::docker::parse_login(&user)
    {
        return Err(SwrError::unauthorized(
            "the admin API takes a user's password or an AK/SK signature, not a docker login key",
        ));
    }
    // A password is checked only from an address its tenant lets in.
    if !auth::login_allowed(&user, req)
        .await
        .map_err(|e| SwrError::internal(e.message))?
    {
        return Err(SwrError::unauthorized("wrong user name or password"));
    }
    let p = auth::login(&user, &password)
        .await
        .map_err(|e| SwrError::internal(e.message))?
        .ok_or_else(|| SwrError::unauthorized("wrong user name or password"))?;
    berth_guest::manage::network_allowed(&p.tenant, req).await?;
    Ok(caller_of(p, None))
}

fn caller_of(p: berth_domain::iam::Principal, access_key: Option<String>) -> Caller {
    Caller {
        tenant: p.tenant,
        user: p.user,
        user_id: p.user_id,
        admin: p.admin,
        policies: p
            .policies
            .iter()
            .map(|d| serde_json::to_string(d).expect("policies serialize"))
            .collect(),
        access_key,
    }
}

/// One API version's details (no authentication, as SWR).
fn version(id: &str, authority: Option<&str>) -> serde_json::Value {
    let host = authority.unwrap_or("localhost");
    serde_json::json!({
        "id": id, "links": {"href": format!("http://{host}/{id}/"), "rel": "self"},
        "version": "", "status": "CURRENT", "updated": "2026-11-28T00:00:00Z", "min_version": ""
    })
}
