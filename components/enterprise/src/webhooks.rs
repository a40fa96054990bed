//! Webhook policies of an organization (SWR enterprise edition:
//! `create/list/show/update/delete_instance_webhook`,
//! `list_instance_webhook_jobs`); `berth_domain::webhooks` holds the
//! rules, the `webhooks` component delivers. Policies need
//! `swr:repository:trigger` on the organization; the target's
//! `auth_header` and `secret` are stored sealed and never shown.

use crate::{Call, checked_once};
use berth_domain::swr::{SwrError, rfc3339};
use berth_domain::webhooks::{
    self as wh, Delivery, PayloadFormat, Policy, PolicyBody, StoredTarget,
};
use berth_guest::auth::seal_hex;
use berth_guest::http::Reply;
use berth_guest::manage::{fault, oci_fault, ok_json, parse_body};
use berth_guest::store::{self, Precondition, StoreError, WriteOp, metadata};

/// The organization's id, if the caller may manage its webhooks
/// (`berth_guest::manage::trigger_allowed`).
async fn organization(call: &Call<'_>, ns: &str) -> Result<u64, SwrError> {
    berth_guest::manage::trigger_allowed(&call.who, ns).await
}

/// The stored targets for `body`, keeping what an update leaves out.
fn targets(body: &PolicyBody, current: Option<&Policy>) -> Result<Vec<StoredTarget>, SwrError> {
    body.targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let old = current.and_then(|c| c.targets.get(i));
            let (sealed_auth_header, auth_header_names) = match &t.auth_header {
                // Left out: unchanged. Empty: removed.
                None => old
                    .map(|o| (o.sealed_auth_header.clone(), o.auth_header_names.clone()))
                    .unwrap_or_default(),
                Some(h) if h.trim().is_empty() => (None, Vec::new()),
                Some(h) => {
                    let names = wh::parse_auth_header(h)
                        .map_err(SwrError::bad_request)?
                        .into_iter()
                        .map(|(k, _)| k)
                        .collect();
                    (Some(seal_hex(h)), names)
                }
            };
            let sealed_secret = match &t.secret {
                None => old.and_then(|o| o.sealed_secret.clone()),
                Some(s) if s.is_empty() => None,
                Some(s) => Some(seal_hex(s)),
            };
            Ok(StoredTarget {
                address: t.address.clone(),
                address_type: t.address_type.clone(),
                skip_cert_verify: t.skip_cert_verify,
                payload_format: PayloadFormat::parse(t.payload_format.as_deref())
                    .map_err(SwrError::bad_request)?,
                sealed_auth_header,
                auth_header_names,
                sealed_secret,
                gone: false,
            })
        })
        .collect()
}

pub async fn create(call: &Call<'_>, ns: &str) -> Result<Reply, SwrError> {
    let namespace_id = organization(call, ns).await?;
    let body: PolicyBody = parse_body(&call.body)?;
    let event_types = wh::validate(&body, None).map_err(SwrError::bad_request)?;
    let targets = targets(&body, None)?;
    let existing = store::scan_all(&wh::policy_prefix(&call.who.tenant))
        .await
        .map_err(fault)?;
    if existing.len() >= wh::MAX_POLICIES {
        return Err(SwrError::quota(format!(
            "a tenant has at most {} webhook policies",
            wh::MAX_POLICIES
        )));
    }
    let id = metadata::increment(wh::POLICY_IDS.to_string(), 1)
        .await
        .map_err(fault)? as u64;
    let now = store::now();
    let policy = Policy {
        id,
        tenant: call.who.tenant.clone(),
        namespace: ns.to_string(),
        namespace_id,
        name: body.name,
        description: body.description.unwrap_or_default(),
        targets,
        scope_rules: body.scope_rules,
        event_types,
        enabled: body.enabled,
        creator: call.who.user.clone(),
        created: now,
        since_ns: store::now_ns() as u64,
        updated: now,
    };
    let value = serde_json::to_vec(&policy).expect("policies serialize");
    store::commit(vec![WriteOp::Put((
        wh::policy_key(&call.who.tenant, id),
        value,
        Precondition::Absent,
    ))])
    .await
    .map_err(fault)?;
    ok_json(201, &serde_json::json!({ "id": id }))
}

/// The SDK's `WebhookPolicyDetail` (secrets left out: `auth_header` shows
/// only the header names, `secret` only whether one is set).
fn view(p: &Policy) -> serde_json::Value {
    let targets: Vec<_> = p
        .targets
        .iter()
        .map(|t| {
            serde_json::json!({
                "type": "http",
                "address": t.address,
                "address_type": t.address_type,
                "skip_cert_verify": t.skip_cert_verify,
                "payload_format": t.payload_format.name(),
                "auth_header_names": t.auth_header_names,
                "secret_set": t.sealed_secret.is_some(),
                "gone": t.gone,
            })
        })
        .collect();
    serde_json::json!({
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "targets": targets,
        "event_types": p.event_types,
        "enabled": p.enabled,
        "namespace_id": p.namespace_id,
        "namespace_name": p.namespace,
        "creator": p.creator,
        "created_at": rfc3339(p.created),
        "updated_at": rfc3339(p.updated),
        "scope_rules": p.scope_rules,
    })
}

async fn load(call: &Call<'_>, ns: &str, id: u64) -> Result<(Policy, u64), SwrError> {
    organization(call, ns).await?;
    let entry = store::get(&wh::policy_key(&call.who.tenant, id))
        .await
        .map_err(oci_fault)?;
    let found = entry.and_then(|e| {
        serde_json::from_slice::<Policy>(&e.value)
            .ok()
            .map(|p| (p, e.version))
    });
    match found {
        Some((p, v)) if p.namespace == ns => Ok((p, v)),
        _ => Err(SwrError::not_found(format!(
            "webhook policy {id} not found in {ns}"
        ))),
    }
}

pub async fn show(call: &Call<'_>, ns: &str, id: u64) -> Result<Reply, SwrError> {
    let (p, _) = load(call, ns, id).await?;
    ok_json(200, &view(&p))
}

pub async fn update(call: &Call<'_>, ns: &str, id: u64) -> Result<Reply, SwrError> {
    let (current, version) = load(call, ns, id).await?;
    let body: PolicyBody = parse_body(&call.body)?;
    let event_types = wh::validate(&body, Some(&current)).map_err(SwrError::bad_request)?;
    let mut targets = targets(&body, Some(&current))?;
    // Re-enabling a policy gives a gone target another chance.
    for (t, old) in targets.iter_mut().zip(&current.targets) {
        let re_enabled = body.enabled && !current.enabled;
        t.gone = old.gone && !re_enabled;
    }
    let policy = Policy {
        name: body.name,
        description: body.description.unwrap_or(current.description.clone()),
        targets,
        scope_rules: body.scope_rules,
        event_types,
        enabled: body.enabled,
        updated: store::now(),
        ..current
    };
    let value = serde_json::to_vec(&policy).expect("policies serialize");
    match store::commit(vec![WriteOp::Put((
        wh::policy_key(&call.who.tenant, id),
        value,
        Precondition::Version(version),
    ))])
    .await
    {
        Ok(_) => Ok(Reply::new(200)),
        Err(StoreError::Conflict) => Err(SwrError::conflict(format!(
            "webhook policy {id} changed meanwhile; try again"
        ))),
        Err(e) => Err(fault(e)),
    }
}

pub async fn delete(call: &Call<'_>, ns: &str, id: u64) -> Result<Reply, SwrError> {
    let (_, version) = load(call, ns, id).await?;
    let mut ops = vec![WriteOp::Delete((
        wh::policy_key(&call.who.tenant, id),
        Precondition::Version(version),
    ))];
    // Its deliveries and their log go with it.
    for prefix in [format!("{}{id:020}/", wh::PENDING), wh::job_prefix(id)] {
        let entries = store::scan_all(&prefix).await.map_err(fault)?;
        ops.extend(entries.into_iter().map(|e| store::delete(e.key)));
    }
    match store::commit(ops).await {
        Ok(_) => Ok(Reply::new(204)),
        Err(StoreError::Conflict) => Err(SwrError::conflict(format!(
            "webhook policy {id} changed meanwhile; try again"
        ))),
        Err(e) => Err(fault(e)),
    }
}

/// `offset` and `limit` as SWR's enterprise listings take them: limit
/// 1–100 (default 10), offset 0 or a multiple of limit.
pub(crate) fn page(call: &Call<'_>) -> Result<(usize, usize), SwrError> {
    let number = |k: &str| -> Result<Option<usize>, SwrError> {
        call.req
            .query(k)
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| SwrError::bad_request(format!("{k} must be a number")))
            })
            .transpose()
    };
    let limit = number("limit")?.unwrap_or(10);
    let offset = number("offset")?.unwrap_or(0);
    if !(1..=100).contains(&limit) {
        return Err(SwrError::bad_request("limit must be from 1 to 100"));
    }
    if offset % limit != 0 {
        return Err(SwrError::bad_request(
            "offset must be 0 or a multiple of limit",
        ));
    }
    Ok((offset, limit))
}

/// The `namespace_id` filter of a listing, if given.
pub(crate) fn namespace_id_param(call: &Call<'_>) -> Result<Option<u64>, SwrError> {
    call.req
        .query("namespace_id")
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| SwrError::bad_request("namespace_id must be a number"))
        })
        .transpose()
}

pub async fn list(call: &Call<'_>) -> Result<Reply, SwrError> {
    let (offset, limit) = page(call)?;
    let column = call.req.query("order_column").unwrap_or("created_at");
    let descending = match call.req.query("order_type").unwrap_or("desc") {
        "desc" => true,
        "asc" => false,
        _ => return Err(SwrError::bad_request("order_type must be desc or asc")),
    };
    if !matches!(column, "created_at" | "updated_at" | "name") {
        return Err(SwrError::bad_request(
            "order_column must be created_at, updated_at or name",
        ));
    }
    let namespace_id = namespace_id_param(call)?;
    let name = call.req.query("name").map(str::to_lowercase);
    let entries = store::scan_all(&wh::policy_prefix(&call.who.tenant))
        .await
        .map_err(fault)?;
    let mut allowed = Default::default();
    let mut policies = Vec::new();
    for e in entries {
        let Ok(p) = serde_json::from_slice::<Policy>(&e.value) else {
            continue;
        };
        if namespace_id.is_some_and(|n| n != p.namespace_id)
            || name
                .as_ref()
                .is_some_and(|n| !p.name.to_lowercase().contains(n))
        {
            continue;
        }
        // Only the organizations whose triggers the caller manages.
        let may = checked_once(&mut allowed, &p.namespace, async |ns| {
            organization(call, ns).await.ok()
        })
        .await;
        if may.is_some() {
            policies.push(p);
        }
    }
    policies.sort_by(|a, b| {
        let o = match column {
            "name" => a.name.cmp(&b.name),
            "updated_at" => a.updated.cmp(&b.updated),
            _ => a.created.cmp(&b.created),
        }
        .then(a.id.cmp(&b.id));
        if descending { o.reverse() } else { o }
    });
    let total = policies.len();
    let out: Vec<_> = policies.iter().skip(offset).take(limit).map(view).collect();
    ok_json(200, &serde_json::json!({ "policies": out, "total": total }))
}

/// The SDK's `Job`; `job_detail` (a string) holds the delivery log.
fn job_view(d: &Delivery) -> serde_json::Value {
    let detail = serde_json::json!({ "attempts": d.attempts, "next_attempt_ms": d.next_at_ms });
    serde_json::json!({
        "id": d.event,
        "policy_id": d.policy,
        "event_type": d.event_type,
        "notify_type": "http",
        "status": d.status,
        "status_text": d.status_text,
        "job_detail": detail.to_string(),
        "created_at": rfc3339(d.created),
        "updated_at": rfc3339(d.updated),
    })
}

pub async fn jobs(call: &Call<'_>, ns: &str, id: u64) -> Result<Reply, SwrError> {
    load(call, ns, id).await?;
    let (offset, limit) = page(call)?;
    let status = call.req.query("status");
    if let Some(s) = status
        && !wh::status::ALL.contains(&s)
    {
        return Err(SwrError::bad_request(format!(
            "status must be one of {}",
            wh::status::ALL.join(", ")
        )));
    }
    let entries = store::scan_all(&wh::job_prefix(id)).await.map_err(fault)?;
    let mut jobs: Vec<Delivery> = entries
        .iter()
        .filter_map(|e| serde_json::from_slice::<Delivery>(&e.value).ok())
        .filter(|d| status.is_none_or(|s| d.status == s))
        .collect();
    // Newest first.
    jobs.reverse();
    let total = jobs.len();
    let out: Vec<_> = jobs.iter().skip(offset).take(limit).map(job_view).collect();
    ok_json(200, &serde_json::json!({ "jobs": out, "total": total }))
}
