//! Organizations (SWR "namespaces") and their grants, as SWR's management
//! API serves them:
//!
//! - `POST /v2/manage/namespaces` `{"namespace": …}` create (201)
//! - `GET /v2/manage/namespaces[?namespace=…]` list (`auth` is the caller's permission)
//! - `GET|DELETE /v2/manage/namespaces/<ns>` show, delete (only when empty)
//! - `POST|PATCH|GET|DELETE /v2/manage/namespaces/<ns>/access` grants to users
//!   (`[{"user_id", "user_name", "auth": 1|3|7}]`; DELETE takes user ids)

use berth_domain::iam::records::{self, Namespace};
use berth_domain::iam::{self, Action, Facts, Level, Principal};
use berth_domain::swr::SwrError;
use berth_guest::http::{Incoming, Reply};
use berth_guest::manage::{fault, grants, oci_fault, ok_json, parse_body};
use berth_guest::namespaces::{self, CreateError};
use berth_guest::store::{self, Precondition, StoreError, WriteOp, metadata};
use serde::{Deserialize, Serialize};

use spin_sdk::wasip3::http::types::Method;

berth_guest::manage_endpoint!("berth:registry/namespaces-endpoint", namespaces_api, serve);

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
    let b: CreateBody = parse_body(body)?;
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
        Err(CreateError::Held(left)) => Err(SwrError::conflict(format!(
            "organization name {} was deleted by its owner moments ago; it is free in {left} s",
            b.namespace
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
    // Read first: a rule or policy written for it after this read
    // changes the record, and the delete then conflicts (none outlives it).
    let record = store::get(&records::namespace(ns))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("namespace {ns} not found")))?;
    let mut ops = vec![
        WriteOp::Delete((record.key, Precondition::Version(record.version))),
        store::delete(records::owned_namespace(&n.tenant, ns)),
        // Its immutable-tag rules and retention policies go with it (a
        // later owner of the name starts with none).
        store::delete(berth_domain::immutable::key(ns)),
        // The name stays with this tenant a little longer (see
        // `records::RELEASE_HOLD_SECS`).
        store::put_json(
            records::released_namespace(ns),
            &records::ReleasedNamespace {
                tenant: n.tenant.clone(),
                at: store::now(),
            },
        ),
    ];
    for g in metadata::scan(records::namespace_grant_prefix(ns), None, 10_000)
        .await
        .map_err(fault)?
    {
        ops.push(store::delete(g.key));
    }
    let policies = berth_domain::retention::policy::tenant_prefix(&n.tenant);
    for e in store::scan_all(&policies).await.map_err(fault)? {
        if serde_json::from_slice::<berth_domain::retention::policy::Policy>(&e.value)
            .is_ok_and(|p| p.namespace == ns)
        {
            ops.push(store::delete(e.key));
        }
    }
    match store::commit(ops).await {
        Ok(_) => Ok(Reply::new(204)),
        Err(StoreError::Conflict) => Err(SwrError::conflict(format!(
            "organization {ns} changed meanwhile (a rule or policy was written); try again"
        ))),
        Err(e) => Err(fault(e)),
    }
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

async fn set_grants(
    ns: &str,
    body: &[u8],
    who: &Principal,
    update: bool,
) -> Result<Reply, SwrError> {
    visible(ns, who).await?;
    require(who, Action::Grant, ns).await?;
    grants::write(who, body, update, |id| records::namespace_grant(ns, id)).await?;
    Ok(Reply::new(201))
}

async fn show_grants(ns: &str, who: &Principal) -> Result<Reply, SwrError> {
    let (n, level) = visible(ns, who).await?;
    let others = grants::others(who, &records::namespace_grant_prefix(ns)).await?;
    ok_json(
        200,
        &serde_json::json!({
            "id": n.id,
            "name": n.name,
            "creator_name": n.creator,
            "self_auth": grants::UserAuth::of(who, level),
            "others_auths": others,
        }),
    )
}

async fn delete_grants(ns: &str, body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    visible(ns, who).await?;
    require(who, Action::Grant, ns).await?;
    grants::delete(body, |id| records::namespace_grant(ns, id)).await?;
    Ok(Reply::new(204))
}
