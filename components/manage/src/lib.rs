//! The management API router (`/v2/manage/...`, `/v3/manage/...`, and the
//! API version list at `/`), compatible with Huawei Cloud SWR so its SDKs
//! and tools work unchanged.
//!
//! Every call is signed with an access key (`SDK-HMAC-SHA256`, checked by
//! `berth_domain::iam::signing`), which names the caller; the router then
//! hands the request, its body and the caller to the resource group's
//! component (`wit/endpoints.wit`), and audits every change.

use berth_domain::iam::records::{self, AuditEvent, Tenant};
use berth_domain::iam::signing;
use berth_domain::swr::SwrError;
use berth_guest::http::{Incoming, Reply};
use berth_guest::{auth, store};
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
    /// SWR operations Berth does not serve yet (triggers, retention, sync):
    /// 501 once the caller is authenticated.
    Later,
    /// No such management operation: 404 once the caller is authenticated
    /// (so the API's shape is not told to strangers).
    Unknown,
}

/// SWR's path segments for operations whose issues have not landed.
const LATER: [&str; 5] = [
    "triggers",
    "retentions",
    "sync_repo",
    "sync_images",
    "sync_job",
];

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
            | [_, "repositories", _, "access-domains"]
            | [_, "repositories", _, "access-domains", _] => Group::Repositories,
            [_, "repos", _, op, ..] if LATER.contains(op) => Group::Later,
            _ => Group::Unknown,
        },
        ["v3", "manage", "namespaces", _, "repos", _, "tags"]
        | ["v2" | "v3", "manage", "shared-repositories"]
        | ["v2", "manage", "overview"]
        | ["v2", "manage", "reports", _, _]
        | ["v2" | "v3", "manage", "repos"] => Group::Repositories,
        ["v2", "manage", "utils", "secret" | "authorizationtoken"]
        | ["v2", "manage", "projects", _, "quotas"] => Group::Account,
        ["berth", "v1", ..] => Group::Admin,
        ["v2" | "v3", "manage", op, ..] if LATER.contains(op) => Group::Later,
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
            authenticate(&req, authority.as_deref(), &body, mutating).await
        };
        let caller = match authenticated {
            Ok(c) => c,
            // The admin API takes passwords: tell curl and browsers so.
            Err(e) if matches!(group, Group::Admin) => {
                let reply = Reply::json(e.status, e.body())
                    .header("www-authenticate", "Basic realm=\"berth\"");
                return Ok(reply.into_response(req));
            }
            Err(e) => return Ok(error(req, &e)),
        };
        match group {
            Group::Later => {
                let e = SwrError::not_implemented(&req.path);
                return Ok(error(req, &e));
            }
            Group::Unknown => {
                let e = SwrError::not_found(format!(
                    "no management operation {} {}",
                    method_name(&req.method),
                    req.path
                ));
                return Ok(error(req, &e));
            }
            _ => {}
        }
        let source = req
            .header(berth_guest::store::CLIENT_ADDR)
            .unwrap_or_default();
        let (tenant, user) = (caller.tenant.clone(), caller.user.clone());
        let operation = format!("{} {}", method_name(&req.method), req.path);
        let resource = req.path.clone();
        let forwarded = forward(&req, authority);
        drop(req);
        let response = match group {
            Group::Namespaces => namespaces_api::handle(forwarded, body, caller).await,
            Group::Repositories => repositories_api::handle(forwarded, body, caller).await,
            Group::Account => account_api::handle(forwarded, body, caller).await,
            Group::Admin => admin_api::handle(forwarded, body, caller).await,
            Group::Versions | Group::Version(_) | Group::Later | Group::Unknown => {
                unreachable!("answered above")
            }
        };
        if mutating && let Ok(r) = &response {
            let event = AuditEvent {
                time: store::now(),
                tenant: tenant.clone(),
                user,
                operation,
                resource,
                status: r.get_status_code(),
                source,
            };
            let key = records::audit(&tenant, store::now_ns(), &store::nonce());
            let _ = store::commit(vec![store::put_json(key, &event)]).await;
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

fn method_name(m: &Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
        _ => "OTHER",
    }
}

/// Checks the request's AK/SK signature; the caller it names. A signed
/// change (`mutating`) is carried out once: see [`claim_once`].
async fn authenticate(
    req: &Incoming,
    authority: Option<&str>,
    body: &[u8],
    mutating: bool,
) -> Result<Caller, SwrError> {
    let value = req
        .header("authorization")
        .ok_or_else(|| SwrError::unauthorized(signing::SignError::Missing.to_string()))?;
    let parsed =
        signing::parse_authorization(&value).map_err(|e| SwrError::unauthorized(e.to_string()))?;
    let fault = |e: berth_domain::OciError| SwrError::internal(e.message);
    let (key, sk) = auth::access_key(&parsed.access)
        .await
        .map_err(fault)?
        .ok_or_else(|| SwrError::unauthorized("unknown or disabled access key"))?;
    // `Host` never reaches a component (wasi:http forbids it): the host
    // passes it as the request's authority.
    let mut headers = req.header_pairs();
    if let Some(a) = authority {
        headers.push(("host".into(), a.to_string()));
    }
    let query = req.raw_query();
    let signed = signing::Request {
        method: method_name(&req.method),
        path: &req.path,
        query: &query,
        headers: &headers,
        body,
    };
    let signed_at = signing::verify(&signed, &parsed, sk.as_bytes(), store::now())
        .map_err(|e| SwrError::unauthorized(e.to_string()))?;
    if mutating {
        claim_once(signed_at, &parsed.signature).await?;
    }
    // A project id, when given, must be the key's tenant's.
    if let Some(project) = req.header("x-project-id") {
        let tenant = store::get_json::<Tenant>(&records::tenant(&key.tenant))
            .await
            .map_err(fault)?;
        if tenant.is_none_or(|t| t.project_id != project) {
            return Err(SwrError::forbidden(format!(
                "project {project} is not the access key's project"
            )));
        }
    }
    let p = auth::principal(&key.tenant, &key.user)
        .await
        .map_err(fault)?
        .ok_or_else(|| SwrError::unauthorized("the access key's user is disabled or gone"))?;
    Ok(caller_of(p, Some(key.ak)))
}

/// The replay defence: a signed change is accepted once. Its signature
/// (which covers method, path, query, signed headers, body and
/// `X-Sdk-Date`) is recorded under `iam/signed/<date>/…` in the same commit
/// that checks it is new; a second arrival within the 15-minute skew window
/// is refused, and after it the date check refuses it anyway. Reads are not
/// recorded (replaying one changes nothing, and clients poll). Records past
/// the window are removed a few at a time by later claims. The claim stays
/// whatever the change's outcome: a captured request that failed must not
/// succeed later on someone else's behalf (and hand them its answer, such
/// as a new secret key). The official SDKs sign a fresh `X-Sdk-Date` per
/// call, so only byte-identical changes sent within the same second
/// collide; they get 409 like any duplicate.
async fn claim_once(signed_at: u64, signature: &str) -> Result<(), SwrError> {
    use berth_guest::store::{Precondition, StoreError, WriteOp, metadata};
    let fault = |e: StoreError| SwrError::internal(format!("storage failure: {e:?}"));
    let now = store::now();
    let stale = metadata::scan(records::SIGNED.to_string(), None, 16)
        .await
        .map_err(fault)?;
    let mut ops = vec![WriteOp::Put((
        records::signed_request(&signing::format_sdk_date(signed_at), signature),
        Vec::new(),
        Precondition::Absent,
    ))];
    ops.extend(
        stale
            .into_iter()
            .filter(|e| signing::replay_record_expired(&e.key, now))
            .map(|e| store::delete(e.key)),
    );
    match store::commit(ops).await {
        Ok(_) => Ok(()),
        Err(StoreError::Conflict) => Err(SwrError::replayed()),
        Err(e) => Err(fault(e)),
    }
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
    let p = auth::login(&user, &password)
        .await
        .map_err(|e| SwrError::internal(e.message))?
        .ok_or_else(|| SwrError::unauthorized("wrong user name or password"))?;
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
