//! Remote registries of an instance (SWR enterprise edition:
//! `create/list/show/update/delete_instance_registry` under
//! `/v2/<project>/instances/<id>/registries`), the targets and sources of
//! replication and the shared edition's sync regions. Registering (and
//! updating) one checks it: `GET /v2/` answers as the Distribution API and
//! the credentials are taken (a token when the registry asks for one);
//! otherwise the call fails with a 400 saying why. The secret is sealed
//! with the host's key and never answered. A registry that a sync rule or
//! a replication policy uses cannot be deleted. Only the tenant's
//! administrators call these.

use crate::Call;
use berth_domain::replication::registry::{self as reg, Registry, RegistryBody};
use berth_domain::replication::rules::{self, Policy, SyncRule};
use berth_domain::swr::SwrError;
use berth_guest::http::Reply;
use berth_guest::manage::{commit, fault, ids, oci_fault, ok_json, parse_body};
use berth_guest::remote::{ErrorKind, Remote};
use berth_guest::slots;
use berth_guest::store::{self, Precondition, WriteOp};

/// How long registering (or updating) a registry may take to check it, ns.
const CHECK_NS: u64 = 30_000_000_000;

pub(crate) fn admin(call: &Call<'_>) -> Result<(), SwrError> {
    if call.who.admin {
        Ok(())
    } else {
        Err(SwrError::forbidden(
            "registries and replication are for the tenant's administrators",
        ))
    }
}

/// Checks the registry a body describes (`password` in clear, never
/// stored so); a 400 saying why it cannot be used, a 429 while the tenant
/// already runs `reg::CHECKS_AT_ONCE` checks.
async fn check(
    tenant: &str,
    body: &RegistryBody,
    url: &str,
    password: &str,
) -> Result<(), SwrError> {
    let slot = slots::take(
        &reg::check_slots(tenant),
        reg::CHECKS_AT_ONCE,
        reg::CHECK_SLOT_SECONDS,
    )
    .await
    .map_err(fault)?
    .ok_or_else(|| {
        SwrError::too_many(format!(
            "{} registry checks of this instance are under way: retry when one has ended",
            reg::CHECKS_AT_ONCE
        ))
    })?;
    let checked = probe(body, url, password).await;
    slot.release().await;
    checked
}

async fn probe(body: &RegistryBody, url: &str, password: &str) -> Result<(), SwrError> {
    let mut remote = Remote::new(url, &body.credential.access_key, password, body.insecure);
    // The whole check (two requests and a token) gets 30 s.
    let checked = berth_guest::within(CHECK_NS, remote.ping())
        .await
        .unwrap_or_else(|| {
            Err(berth_guest::remote::RemoteError {
                kind: ErrorKind::Unreachable,
                text: "no answer within 30 s".into(),
            })
        });
    checked.map_err(|e| {
        let what = match e.kind {
            ErrorKind::Unauthorized => "bad credentials",
            ErrorKind::Refused => "refused destination",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Protocol(_) => "not a registry",
        };
        SwrError::bad_request(format!("registry {url} {what}: {}", e.text))
    })
}

async fn load(call: &Call<'_>, id: u64) -> Result<(Registry, u64), SwrError> {
    let entry = store::get(&reg::key(&call.who.tenant, id))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("registry {id} not found")))?;
    let r = serde_json::from_slice(&entry.value)
        .map_err(|_| SwrError::internal(format!("registry {id} is unreadable")))?;
    Ok((r, entry.version))
}

pub async fn create(call: &Call<'_>) -> Result<Reply, SwrError> {
    admin(call)?;
    let body: RegistryBody = parse_body(&call.body)?;
    reg::validate(&body).map_err(SwrError::bad_request)?;
    let tenant = &call.who.tenant;
    room(tenant).await?;
    if store::get(&reg::name_key(tenant, &body.name))
        .await
        .map_err(oci_fault)?
        .is_some()
    {
        return Err(SwrError::conflict(format!(
            "a registry named {} exists",
            body.name
        )));
    }
    let url = reg::normalize_url(&body.url).map_err(SwrError::bad_request)?;
    check(tenant, &body, &url, &body.credential.access_secret).await?;
    // Counted again after the check, under the guard the commit carries.
    let guard = room(tenant).await?;
    let id = *ids(reg::IDS, 1).await?.start();
    let now = store::now();
    let registry = stored(
        id,
        tenant,
        &body,
        url,
        sealed(&body.credential.access_secret),
        now,
        now,
    );
    let guard = WriteOp::Put((reg::count_guard(tenant), Vec::new(), guard));
    commit(
        vec![
            WriteOp::Put((
                reg::name_key(tenant, &body.name),
                id.to_string().into_bytes(),
                Precondition::Absent,
            )),
            store::put_json(reg::key(tenant, id), &registry),
            guard,
        ],
        || {
            format!(
                "a registry named {} exists, or another was registered at the same time: retry",
                body.name
            )
        },
    )
    .await?;
    ok_json(201, &serde_json::json!({ "id": id }))
}

/// Fails with SWR's quota error when the tenant has
/// `reg::MAX_PER_TENANT` registries; otherwise the precondition under
/// which a registration may commit (the count guard unchanged since).
async fn room(tenant: &str) -> Result<Precondition, SwrError> {
    let guard = match store::get(&reg::count_guard(tenant))
        .await
        .map_err(oci_fault)?
    {
        Some(e) => Precondition::Version(e.version),
        None => Precondition::Absent,
    };
    let existing = store::scan_names(&reg::tenant_prefix(tenant))
        .await
        .map_err(fault)?;
    if existing.len() >= reg::MAX_PER_TENANT {
        return Err(SwrError::quota(format!(
            "at most {} registries per instance",
            reg::MAX_PER_TENANT
        )));
    }
    Ok(guard)
}

fn sealed(secret: &str) -> String {
    if secret.is_empty() {
        String::new()
    } else {
        berth_guest::auth::seal_hex(secret)
    }
}

fn stored(
    id: u64,
    tenant: &str,
    body: &RegistryBody,
    url: String,
    sealed_secret: String,
    created: u64,
    now: u64,
) -> Registry {
    Registry {
        id,
        tenant: tenant.to_string(),
        name: body.name.clone(),
        description: body.description.clone().unwrap_or_default(),
        kind: body.kind.clone(),
        project_id: body.project_id.clone().unwrap_or_default(),
        region_id: body.region_id.clone().unwrap_or_default(),
        instance_id: body.instance_id.clone().unwrap_or_default(),
        url,
        access_key: body.credential.access_key.clone(),
        sealed_secret,
        insecure: body.insecure,
        status: "healthy".into(),
        status_text: String::new(),
        created,
        updated: now,
    }
}

pub async fn list(call: &Call<'_>) -> Result<Reply, SwrError> {
    admin(call)?;
    let (offset, limit) = crate::webhooks::page(call)?;
    let mut all: Vec<Registry> = store::scan_json(&reg::tenant_prefix(&call.who.tenant))
        .await
        .map_err(fault)?;
    if let Some(name) = call.req.query("name").filter(|n| !n.is_empty()) {
        all.retain(|r| r.name.contains(name));
    }
    if let Some(kind) = call.req.query("type").filter(|n| !n.is_empty()) {
        all.retain(|r| r.kind == kind);
    }
    order(call, &mut all, |r| (r.created, r.updated, r.name.clone()))?;
    let total = all.len();
    let page: Vec<serde_json::Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(Registry::view)
        .collect();
    ok_json(
        200,
        &serde_json::json!({ "registries": page, "total": total }),
    )
}

/// Sorts by `order_column` (`created_at`, `updated_at`, `name`) and
/// `order_type` (`desc` by default), as SWR's listings take them.
pub(crate) fn order<T>(
    call: &Call<'_>,
    all: &mut [T],
    fields: impl Fn(&T) -> (u64, u64, String),
) -> Result<(), SwrError> {
    let column = call.req.query("order_column").unwrap_or("created_at");
    let desc = match call.req.query("order_type").unwrap_or("desc") {
        "desc" => true,
        "asc" => false,
        other => {
            return Err(SwrError::bad_request(format!(
                "order_type {other:?}: desc or asc"
            )));
        }
    };
    match column {
        "created_at" => all.sort_by_key(|t| fields(t).0),
        "updated_at" => all.sort_by_key(|t| fields(t).1),
        "name" => all.sort_by_key(|t| fields(t).2),
        other => {
            return Err(SwrError::bad_request(format!(
                "order_column {other:?}: created_at, updated_at or name"
            )));
        }
    }
    if desc {
        all.reverse();
    }
    Ok(())
}

pub async fn show(call: &Call<'_>, id: u64) -> Result<Reply, SwrError> {
    admin(call)?;
    let (r, _) = load(call, id).await?;
    ok_json(200, &r.view())
}

/// A full replacement. An empty `access_secret` with the same
/// `access_key` and URL keeps the stored secret (answers never show it,
/// so a console cannot send it back); a new URL needs the secret again.
pub async fn update(call: &Call<'_>, id: u64) -> Result<Reply, SwrError> {
    admin(call)?;
    let mut body: RegistryBody = parse_body(&call.body)?;
    let (old, version) = load(call, id).await?;
    // The stored secret is kept only for the same registry: never sent
    // to a URL it was not registered for.
    let same_place = reg::normalize_url(&body.url).is_ok_and(|u| u == old.url);
    let keep = body.credential.access_secret.is_empty()
        && !body.credential.access_key.is_empty()
        && body.credential.access_key == old.access_key
        && same_place;
    let password = if keep {
        berth_guest::auth::unseal_hex(&old.sealed_secret).ok_or_else(|| {
            SwrError::bad_request(
                "the stored secret was sealed by another host's key: send access_secret",
            )
        })?
    } else {
        body.credential.access_secret.clone()
    };
    body.credential.access_secret = password.clone();
    reg::validate(&body).map_err(SwrError::bad_request)?;
    let url = reg::normalize_url(&body.url).map_err(SwrError::bad_request)?;
    let tenant = &call.who.tenant;
    check(tenant, &body, &url, &password).await?;
    let sealed_secret = if keep {
        old.sealed_secret.clone()
    } else {
        sealed(&password)
    };
    let registry = stored(
        id,
        tenant,
        &body,
        url,
        sealed_secret,
        old.created,
        store::now(),
    );
    let mut ops = vec![WriteOp::Put((
        reg::key(tenant, id),
        serde_json::to_vec(&registry).expect("registries serialize"),
        Precondition::Version(version),
    ))];
    if old.name != body.name {
        ops.push(store::delete(reg::name_key(tenant, &old.name)));
        ops.push(WriteOp::Put((
            reg::name_key(tenant, &body.name),
            id.to_string().into_bytes(),
            Precondition::Absent,
        )));
    }
    commit(ops, || {
        format!(
            "registry {id} changed meanwhile, or a registry named {} exists",
            body.name
        )
    })
    .await?;
    Ok(Reply::new(200))
}

pub async fn delete(call: &Call<'_>, id: u64) -> Result<Reply, SwrError> {
    admin(call)?;
    let tenant = &call.who.tenant;
    let (r, version) = load(call, id).await?;
    let rules = store::scan_json::<SyncRule>(&format!("{}{tenant}/", rules::SYNC_RULES))
        .await
        .map_err(fault)?;
    if let Some(rule) = rules.iter().find(|s| s.registry_id == id) {
        return Err(SwrError::conflict(format!(
            "registry {} is used by the sync rule of {} to {}; delete that first",
            r.name, rule.repository, rule.remote_namespace
        )));
    }
    let policies = store::scan_json::<Policy>(&rules::policies_of(tenant))
        .await
        .map_err(fault)?;
    if let Some(p) = policies.iter().find(|p| p.registry() == id) {
        return Err(SwrError::conflict(format!(
            "registry {} is used by replication policy {} ({}); delete that first",
            r.name, p.id, p.name
        )));
    }
    commit(
        vec![
            WriteOp::Delete((reg::key(tenant, id), Precondition::Version(version))),
            store::delete(reg::name_key(tenant, &r.name)),
        ],
        || format!("registry {id} changed meanwhile"),
    )
    .await?;
    Ok(Reply::new(200))
}
