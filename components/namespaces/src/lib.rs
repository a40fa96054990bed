//! Organizations (SWR "namespaces") and their grants, as SWR's management
//! API serves them:
//!
//! - `POST /v2/manage/namespaces` `{"namespace": …}` create (201)
//! - `GET /v2/manage/namespaces[?namespace=…]` list (`auth` is the caller's permission)
//! - `GET|DELETE /v2/manage/namespaces/<ns>` show, delete (only when empty)
//! - `POST|PATCH|GET|DELETE /v2/manage/namespaces/<ns>/access` grants to users
//!   (`[{"user_id", "user_name", "auth": 1|3|7}]`; DELETE takes user ids)

use berth_domain::iam::records::{self, Grant, Namespace};
use berth_domain::iam::{self, Action, Facts, Level, PolicyDocument, Principal};
use berth_domain::swr::SwrError;
use berth_guest::http::{Incoming, Reply};
use berth_guest::namespaces::{self, CreateError};
use berth_guest::store::{self, metadata};
use serde::{Deserialize, Serialize};
use spin_sdk::wasip3::http::types::{ErrorCode, Method, Request, Response};

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "berth:registry/namespaces-endpoint",
    path: "../../wit",
    with: { "wasi:http/types@0.3.0": spin_sdk::wasip3::http::types },
    generate_all,
});

use berth::registry::management_types::Caller;

struct Endpoint;
export!(Endpoint);

impl exports::berth::registry::namespaces_api::Guest for Endpoint {
    async fn handle(
        request: Request,
        body: Vec<u8>,
        caller: Caller,
    ) -> Result<Response, ErrorCode> {
        let req = Incoming::new(request);
        let who = principal(caller);
        let reply = match serve(&req, &body, &who).await {
            Ok(r) => r,
            Err(e) => Reply::json(e.status, e.body()),
        };
        Ok(reply.into_response(req))
    }
}

fn principal(c: Caller) -> Principal {
    Principal {
        tenant: c.tenant,
        user: c.user,
        user_id: c.user_id,
        admin: c.admin,
        policies: c
            .policies
            .iter()
            .filter_map(|p| serde_json::from_str::<PolicyDocument>(p).ok())
            .collect(),
    }
}

fn fault(e: impl std::fmt::Debug) -> SwrError {
    SwrError::internal(format!("storage failure: {e:?}"))
}

fn oci_fault(e: berth_domain::OciError) -> SwrError {
    SwrError::internal(e.message)
}

fn ok_json<T: Serialize>(status: u16, v: &T) -> Result<Reply, SwrError> {
    Ok(Reply::json(status, serde_json::to_vec(v).expect("json")))
}

async fn serve(req: &Incoming, body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    let segs: Vec<&str> = req.path.trim_end_matches('/').split('/').skip(3).collect();
    match (segs.as_slice(), &req.method) {
        (["namespaces"], Method::Post) => create(body, who).await,
        (["namespaces"], Method::Get) => list(req, who).await,
        (["namespaces", ns], Method::Get) => show(ns, who).await,
        (["namespaces", ns], Method::Delete) => delete(ns, who).await,
        (["namespaces", ns, "access"], Method::Post) => set_grants(ns, body, who, false).await,
        (["namespaces", ns, "access"], Method::Patch) => set_grants(ns, body, who, true).await,
        (["namespaces", ns, "access"], Method::Get) => show_grants(ns, who).await,
        (["namespaces", ns, "access"], Method::Delete) => delete_grants(ns, body, who).await,
        _ => Err(SwrError::method_not_allowed()),
    }
}

#[derive(Deserialize)]
struct CreateBody {
    namespace: String,
}

async fn create(body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    let b: CreateBody = serde_json::from_slice(body)
        .map_err(|e| SwrError::bad_request(format!("invalid body: {e}")))?;
    let resource = iam::action::namespace_resource(&b.namespace);
    if !iam::decide(
        Some(who),
        Action::CreateNamespace,
        &resource,
        &Facts::default(),
    ) {
        return Err(SwrError::forbidden("you may not create organizations"));
    }
    match namespaces::create(who, &b.namespace).await {
        Ok(_) => Ok(Reply::new(201)),
        Err(CreateError::InvalidName) => Err(SwrError::invalid_name(format!(
            "invalid organization name {:?}: 1-64 lowercase letters, digits and single . _ __ - separators, starting with a letter",
            b.namespace
        ))),
        Err(CreateError::Exists) => Err(SwrError::conflict(format!(
            "organization {} already exists",
            b.namespace
        ))),
        Err(CreateError::Quota(q)) => Err(SwrError::quota(format!(
            "you have created {q} organizations, the most allowed"
        ))),
        Err(CreateError::Store(e)) => Err(SwrError::internal(e)),
    }
}

/// The organization and what `who` may do with it; 404 when it does not
/// exist or belongs to another tenant (no existence leak).
async fn visible(ns: &str, who: &Principal) -> Result<(Namespace, Option<Level>), SwrError> {
    let n = store::get_json::<Namespace>(&records::namespace(ns))
        .await
        .map_err(oci_fault)?
        .filter(|n| n.tenant == who.tenant)
        .ok_or_else(|| SwrError::not_found(format!("organization {ns} not found")))?;
    let facts = berth_guest::auth::namespace_facts(Some(who), ns)
        .await
        .map_err(oci_fault)?;
    let level = iam::effective_level(Some(who), &iam::action::namespace_resource(ns), &facts);
    if level.is_none() {
        return Err(SwrError::not_found(format!("organization {ns} not found")));
    }
    Ok((n, level))
}

#[derive(Serialize)]
struct ShowNamespace {
    id: u64,
    name: String,
    creator_name: String,
    auth: u8,
}

fn show_of(n: Namespace, level: Option<Level>) -> ShowNamespace {
    ShowNamespace {
        id: n.id,
        name: n.name,
        creator_name: n.creator,
        auth: level.map(Level::code).unwrap_or(0),
    }
}

async fn show(ns: &str, who: &Principal) -> Result<Reply, SwrError> {
    let (n, level) = visible(ns, who).await?;
    ok_json(200, &show_of(n, level))
}

async fn list(req: &Incoming, who: &Principal) -> Result<Reply, SwrError> {
    let filter = req.query("namespace").map(String::from);
    let mut out = Vec::new();
    for n in namespaces::owned(&who.tenant).await.map_err(fault)? {
        if filter
            .as_ref()
            .is_some_and(|f| !n.name.contains(f.as_str()))
        {
            continue;
        }
        let facts = berth_guest::auth::namespace_facts(Some(who), &n.name)
            .await
            .map_err(oci_fault)?;
        let level =
            iam::effective_level(Some(who), &iam::action::namespace_resource(&n.name), &facts);
        if level.is_some() {
            out.push(show_of(n, level));
        }
    }
    ok_json(200, &serde_json::json!({ "namespaces": out }))
}

async fn delete(ns: &str, who: &Principal) -> Result<Reply, SwrError> {
    let (n, _) = visible(ns, who).await?;
    require(who, Action::DeleteNamespace, ns).await?;
    // Refused while it holds repositories: deleting images is explicit.
    let inside = metadata::scan(format!("{}{ns}/", berth_domain::keys::REPO), None, 1)
        .await
        .map_err(fault)?;
    let itself = store::exists(&berth_domain::keys::repo(ns))
        .await
        .map_err(oci_fault)?;
    if !inside.is_empty() || itself {
        return Err(SwrError::not_empty(format!(
            "organization {ns} still has repositories; delete them first"
        )));
    }
    let mut ops = vec![
        store::delete(records::namespace(ns)),
        store::delete(records::owned_namespace(&n.tenant, ns)),
    ];
    for g in metadata::scan(records::namespace_grant_prefix(ns), None, 10_000)
        .await
        .map_err(fault)?
    {
        ops.push(store::delete(g.key));
    }
    store::commit(ops).await.map_err(fault)?;
    Ok(Reply::new(204))
}

async fn require(who: &Principal, action: Action, ns: &str) -> Result<(), SwrError> {
    let facts = berth_guest::auth::namespace_facts(Some(who), ns)
        .await
        .map_err(oci_fault)?;
    if iam::decide(
        Some(who),
        action,
        &iam::action::namespace_resource(ns),
        &facts,
    ) {
        Ok(())
    } else {
        Err(SwrError::forbidden(format!(
            "{} on organization {ns} is not allowed",
            action.name()
        )))
    }
}

#[derive(Serialize, Deserialize)]
struct UserAuth {
    user_id: String,
    user_name: String,
    auth: u8,
}

async fn set_grants(
    ns: &str,
    body: &[u8],
    who: &Principal,
    update: bool,
) -> Result<Reply, SwrError> {
    visible(ns, who).await?;
    require(who, Action::Grant, ns).await?;
    let users: Vec<UserAuth> = serde_json::from_slice(body)
        .map_err(|e| SwrError::bad_request(format!("invalid body: {e}")))?;
    if users.is_empty() {
        return Err(SwrError::bad_request("no users given"));
    }
    let mut ops = Vec::new();
    for u in users {
        let level = Level::try_from(u.auth).map_err(SwrError::bad_request)?;
        // The user must exist in the caller's tenant.
        let owner: Option<String> = store::get_json(&records::user_id(&u.user_id))
            .await
            .map_err(oci_fault)?;
        let Some((tenant, name)) = owner.as_deref().and_then(|o| o.split_once('/')) else {
            return Err(SwrError::bad_request(format!(
                "no user with id {}",
                u.user_id
            )));
        };
        if tenant != who.tenant {
            return Err(SwrError::bad_request(format!(
                "no user with id {}",
                u.user_id
            )));
        }
        let key = records::namespace_grant(ns, &u.user_id);
        if update && !store::exists(&key).await.map_err(oci_fault)? {
            return Err(SwrError::not_found(format!(
                "user {} has no permission on {ns} to update",
                u.user_id
            )));
        }
        ops.push(store::put_json(
            key,
            &Grant {
                user_id: u.user_id.clone(),
                user_name: name.to_string(),
                level,
            },
        ));
    }
    store::commit(ops).await.map_err(fault)?;
    Ok(Reply::new(201))
}

async fn show_grants(ns: &str, who: &Principal) -> Result<Reply, SwrError> {
    let (n, level) = visible(ns, who).await?;
    let mut others = Vec::new();
    for e in metadata::scan(records::namespace_grant_prefix(ns), None, 10_000)
        .await
        .map_err(fault)?
    {
        if let Ok(g) = serde_json::from_slice::<Grant>(&e.value)
            && g.user_id != who.user_id
        {
            others.push(UserAuth {
                user_id: g.user_id,
                user_name: g.user_name,
                auth: g.level.code(),
            });
        }
    }
    ok_json(
        200,
        &serde_json::json!({
            "id": n.id,
            "name": n.name,
            "creator_name": n.creator,
            "self_auth": UserAuth { user_id: who.user_id.clone(), user_name: who.user.clone(), auth: level.map(Level::code).unwrap_or(0) },
            "others_auths": others,
        }),
    )
}

async fn delete_grants(ns: &str, body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    visible(ns, who).await?;
    require(who, Action::Grant, ns).await?;
    let ids: Vec<String> = serde_json::from_slice(body)
        .map_err(|e| SwrError::bad_request(format!("invalid body: {e}")))?;
    let ops = ids
        .iter()
        .map(|id| store::delete(records::namespace_grant(ns, id)))
        .collect();
    store::commit(ops).await.map_err(fault)?;
    Ok(Reply::new(204))
}
