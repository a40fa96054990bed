//! Image triggers of a repository (SWR shared edition: `create_trigger`,
//! `list_triggers_details`, `show_trigger`, `update_trigger`,
//! `delete_trigger`); `berth_domain::triggers` holds the rules, the
//! `webhooks` job component fires them. Triggers need
//! `swr:repository:trigger` on the organization, and name a Kubernetes
//! cluster registered in Berth's admin API (`.../tenants/<t>/clusters`).

use berth_domain::iam::Principal;
use berth_domain::kubernetes::{self as k8s, Cluster};
use berth_domain::swr::{SwrError, rfc3339};
use berth_domain::webhooks::{self as wh, Delivery, status};
use berth_guest::http::Reply;
use berth_guest::manage::{commit, fault, oci_fault, ok_json, parse_body, trigger_allowed};
use berth_guest::store::{self, Precondition, WriteOp, metadata};
use spin_sdk::wasip3::http::types::Method;

pub(crate) use berth_domain::triggers::*;

/// Entries a trigger's `trigger_history` shows, newest first.
const HISTORY: usize = 20;

/// Whether `who` may manage the triggers of repository `name` in
/// organization `ns`; the repository record (to write a trigger only
/// while it exists).
async fn allowed(ns: &str, name: &str, who: &Principal) -> Result<metadata::Entry, SwrError> {
    trigger_allowed(who, ns).await?;
    store::get(&berth_domain::keys::repo(name))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("repository {name} not found")))
}

/// The registered cluster a trigger body names (`cce`: by `cluster_id`,
/// else `cluster_name`; `cci`: the tenant's `cci` cluster), among those
/// that serve organization `ns` and the body's Kubernetes namespace (the
/// others are unknown to its triggers).
async fn cluster(
    tenant: &str,
    ns: &str,
    body: &TriggerBody,
    mode: &str,
) -> Result<Cluster, SwrError> {
    let clusters: Vec<Cluster> = store::scan_all(&k8s::cluster_prefix(tenant))
        .await
        .map_err(fault)?
        .iter()
        .filter_map(|e| serde_json::from_slice::<Cluster>(&e.value).ok())
        .filter(|c| c.serves(ns, &body.cluster_ns))
        .collect();
    let given = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let register = format!(
        "a tenant administrator registers it (POST /berth/v1/tenants/{tenant}/clusters) \
         for organization {ns} and Kubernetes namespace {}",
        body.cluster_ns
    );
    let found = match (mode, given(&body.cluster_id), given(&body.cluster_name)) {
        ("cci", _, _) => clusters
            .into_iter()
            .find(|c| c.kind == "cci")
            .ok_or_else(|| {
                SwrError::bad_request(format!("trigger_mode cci needs a cci cluster: {register}"))
            })?,
        (_, Some(id), _) => clusters
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| SwrError::bad_request(format!("unknown cluster {id}: {register}")))?,
        (_, None, Some(name)) => clusters
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| SwrError::bad_request(format!("unknown cluster {name}: {register}")))?,
        (_, None, None) => {
            return Err(SwrError::bad_request(
                "trigger_mode cce names a cluster in cluster_id or cluster_name",
            ));
        }
    };
    if found.kind != mode {
        return Err(SwrError::bad_request(format!(
            "cluster {} is a {} cluster, not {mode}",
            found.id, found.kind
        )));
    }
    Ok(found)
}

pub async fn create(ns: &str, name: &str, body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    let repo = allowed(ns, name, who).await?;
    let b: TriggerBody = parse_body(body)?;
    let checked = validate(&b).map_err(SwrError::bad_request)?;
    let cluster = cluster(&who.tenant, ns, &b, &checked.trigger_mode).await?;
    let existing = store::scan_all(&repository_prefix(name))
        .await
        .map_err(fault)?;
    if existing.len() >= MAX_PER_REPOSITORY {
        return Err(SwrError::quota(format!(
            "a repository has at most {MAX_PER_REPOSITORY} triggers"
        )));
    }
    // One id space with webhook policies: deliveries are queued by it.
    let id = metadata::increment(wh::POLICY_IDS.to_string(), 1)
        .await
        .map_err(fault)? as u64;
    let key = key(name, &b.name);
    let trigger = Trigger {
        id,
        tenant: who.tenant.clone(),
        repository: name.to_string(),
        name: b.name,
        app_type: b.app_type,
        application: b.application,
        cluster_id: cluster.id,
        cluster_name: cluster.name,
        cluster_ns: b.cluster_ns,
        trigger_type: b.trigger_type,
        condition: checked.condition,
        container: b.container.unwrap_or_default(),
        enabled: checked.enabled,
        trigger_mode: checked.trigger_mode,
        creator: who.user.clone(),
        created: store::now(),
        since_ns: store::now_ns() as u64,
    };
    let ops = vec![
        WriteOp::Put((
            key.clone(),
            serde_json::to_vec(&trigger).expect("triggers serialize"),
            Precondition::Absent,
        )),
        WriteOp::Put((id_key(id), key.into_bytes(), Precondition::Absent)),
        // Only while the repository is there: a delete meanwhile (which
        // removes its triggers) refuses this commit.
        WriteOp::Put((repo.key, repo.value, Precondition::Version(repo.version))),
    ];
    commit(ops, || {
        format!(
            "trigger {} already exists on {name}, or the repository changed meanwhile",
            trigger.name
        )
    })
    .await?;
    ok_json(201, &serde_json::json!({ "id": id, "name": trigger.name }))
}

/// `cluster_id` and `cluster_name` as SWR shows them: empty for cci.
fn cluster_fields(t: &Trigger) -> (String, String) {
    if t.trigger_mode == "cci" {
        Default::default()
    } else {
        (t.cluster_id.clone(), t.cluster_name.clone())
    }
}

/// The SDK's `TriggerHistories` of `t`: its finished deliveries (and
/// those failing and retrying), newest first.
async fn history(t: &Trigger) -> Result<Vec<serde_json::Value>, SwrError> {
    let cluster = cluster_fields(t);
    let entries = store::scan_all(&wh::job_prefix(t.id))
        .await
        .map_err(fault)?;
    Ok(entries
        .iter()
        .rev()
        .filter_map(|e| serde_json::from_slice::<Delivery>(&e.value).ok())
        .filter(|d| d.status != status::PENDING || !d.attempts.is_empty())
        .take(HISTORY)
        .map(|d| {
            let failed_attempt = d.attempts.last().and_then(|a| a.error.clone());
            let detail = match failed_attempt {
                Some(err) if d.status != status::SUCCEED => format!("{}: {err}", d.status_text),
                _ => d.status_text.clone(),
            };
            let mut h = common_fields(t, &cluster);
            h.extend([
                ("created_at".into(), rfc3339(d.updated).into()),
                ("detail".into(), detail.into()),
                (
                    "result".into(),
                    if d.status == status::SUCCEED {
                        "success"
                    } else {
                        "failed"
                    }
                    .into(),
                ),
                ("tag".into(), d.tag.clone().unwrap_or_default().into()),
            ]);
            serde_json::Value::Object(h)
        })
        .collect())
}

/// The SDK's `Trigger` (and Berth's `id`: its delivery log in the admin
/// API is `/berth/v1/webhooks/<id>/deliveries`).
async fn view(t: &Trigger) -> Result<serde_json::Value, SwrError> {
    let mut v = common_fields(t, &cluster_fields(t));
    v.extend([
        ("id".into(), t.id.into()),
        ("created_at".into(), rfc3339(t.created).into()),
        ("enable".into(), t.enabled.to_string().into()),
        ("name".into(), t.name.clone().into()),
        ("trigger_history".into(), history(t).await?.into()),
        ("trigger_mode".into(), t.trigger_mode.clone().into()),
        ("trigger_type".into(), t.trigger_type.clone().into()),
    ]);
    Ok(serde_json::Value::Object(v))
}

/// The fields `Trigger` and `TriggerHistories` share (`cluster`: as
/// [`cluster_fields`] shows them).
fn common_fields(
    t: &Trigger,
    cluster: &(String, String),
) -> serde_json::Map<String, serde_json::Value> {
    let serde_json::Value::Object(m) = serde_json::json!({
        "action": "update",
        "app_type": t.app_type,
        "application": t.application,
        "cluster_id": cluster.0,
        "cluster_name": cluster.1,
        "cluster_ns": t.cluster_ns,
        "condition": t.condition,
        "container": t.container,
        "creator_name": t.creator,
    }) else {
        unreachable!("a JSON object")
    };
    m
}

/// A bare JSON array of `Trigger`s (the SDK reads the whole body as the
/// list), in name order.
pub async fn list(ns: &str, name: &str, who: &Principal) -> Result<Reply, SwrError> {
    allowed(ns, name, who).await?;
    let entries = store::scan_all(&repository_prefix(name))
        .await
        .map_err(fault)?;
    let mut out = Vec::new();
    for e in entries {
        if let Ok(t) = serde_json::from_slice::<Trigger>(&e.value)
            && t.tenant == who.tenant
        {
            out.push(view(&t).await?);
        }
    }
    ok_json(200, &out)
}

pub async fn one(
    ns: &str,
    name: &str,
    trigger: &str,
    m: &Method,
    body: &[u8],
    who: &Principal,
) -> Result<Reply, SwrError> {
    allowed(ns, name, who).await?;
    let key = key(name, trigger);
    let entry = store::get(&key)
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("trigger {trigger} not found on {name}")))?;
    let mut t: Trigger = serde_json::from_slice(&entry.value)
        .map_err(|e| SwrError::internal(format!("corrupt trigger record: {e}")))?;
    // A trigger of another tenant (left by a repository name reused) is
    // not the caller's.
    if t.tenant != who.tenant {
        return Err(SwrError::not_found(format!(
            "trigger {trigger} not found on {name}"
        )));
    }
    let ops = match m {
        Method::Get => return ok_json(200, &view(&t).await?),
        Method::Patch => {
            let b: UpdateBody = parse_body(body)?;
            t.enabled = parse_enable(&b.enable).map_err(SwrError::bad_request)?;
            vec![WriteOp::Put((
                key,
                serde_json::to_vec(&t).expect("triggers serialize"),
                Precondition::Version(entry.version),
            ))]
        }
        // Its queued deliveries go at the webhooks job's next run.
        Method::Delete => vec![
            WriteOp::Delete((key, Precondition::Version(entry.version))),
            store::delete(id_key(t.id)),
        ],
        _ => return Err(SwrError::method_not_allowed()),
    };
    commit(ops, || {
        format!("trigger {trigger} changed meanwhile; try again")
    })
    .await?;
    Ok(Reply::new(if matches!(m, Method::Delete) {
        204
    } else {
        201
    }))
}
