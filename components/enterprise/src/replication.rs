//! Replication policies of an instance (SWR enterprise edition:
//! `create/list/show/update/delete_instance_replication_policy`,
//! `execute_instance_replication_policy`,
//! `stop_instance_replication_policy_execution`,
//! `list_instance_replication_policy_executions`, `…_exec_tasks`,
//! `…_exec_sub_tasks`), under `/v2/<project>/instances/<id>/replication`.
//! `berth_domain::replication::rules` holds the rules; the `replication`
//! job component copies. A push policy's execution lists the tenant's
//! repositories and tags it selects now; a pull policy's is planned by the
//! job, which lists the source registry. Only the tenant's administrators
//! call these.

use crate::Call;
use crate::registries::{admin, order};
use berth_domain::replication::rules::{self, Policy, PolicyBody};
use berth_domain::replication::runs::{self, Direction, Execution, Item, Status};
use berth_domain::swr::SwrError;
use berth_guest::http::Reply;
use berth_guest::manage::{commit, fault, ids, oci_fault, ok_json, parse_body};
use berth_guest::replication::{Batch, ItemSpec, enqueue, registry, start};
use berth_guest::store::{self, Precondition, WriteOp};

async fn load(call: &Call<'_>, id: u64) -> Result<(Policy, u64), SwrError> {
    let entry = store::get(&rules::policy(&call.who.tenant, id))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("replication policy {id} not found")))?;
    let p = serde_json::from_slice(&entry.value)
        .map_err(|_| SwrError::internal(format!("replication policy {id} is unreadable")))?;
    Ok((p, entry.version))
}

/// Checks a body against the tenant: valid, and its registry registered
/// (the registry's record rewritten under its version, so a deletion of
/// the registry meanwhile conflicts).
async fn checked(call: &Call<'_>) -> Result<(PolicyBody, WriteOp), SwrError> {
    let body: PolicyBody = parse_body(&call.body)?;
    rules::validate_policy(&body).map_err(SwrError::bad_request)?;
    let id = body
        .src_registry
        .or(body.dest_registry)
        .map(|r| r.id)
        .unwrap_or_default();
    let (_, guard) = berth_guest::replication::registry_guard(&call.who.tenant, id).await?;
    // A pull writes into the tenant's own organization only.
    if body.src_registry.is_some()
        && let Some(ns) = body.dest_namespace.as_deref().filter(|n| !n.is_empty())
    {
        let owner = store::get_json::<berth_domain::iam::records::Namespace>(
            &berth_domain::iam::records::namespace(ns),
        )
        .await
        .map_err(oci_fault)?;
        if owner.is_none_or(|n| n.tenant != call.who.tenant) {
            return Err(SwrError::bad_request(format!(
                "dest_namespace {ns} is not an organization of the tenant: create it first"
            )));
        }
    }
    Ok((body, guard))
}

/// A scheduled policy wakes the job, so it learns the schedule at once.
fn wake() -> WriteOp {
    WriteOp::Append((runs::REQUESTS.to_string(), b"policies changed".to_vec()))
}

pub async fn create(call: &Call<'_>) -> Result<Reply, SwrError> {
    admin(call)?;
    let (body, guard) = checked(call).await?;
    let tenant = &call.who.tenant;
    let count = store::scan_names(&rules::policies_of(tenant))
        .await
        .map_err(fault)?
        .len();
    if count >= rules::MAX_POLICIES {
        return Err(SwrError::quota(format!(
            "at most {} replication policies per instance",
            rules::MAX_POLICIES
        )));
    }
    let id = *ids(rules::POLICY_IDS, 1).await?.start();
    let name = body.name.clone();
    let policy = Policy::from_body(id, tenant, body, &call.who.user, store::now());
    commit(
        vec![
            WriteOp::Put((
                rules::policy_name(tenant, &name),
                id.to_string().into_bytes(),
                Precondition::Absent,
            )),
            store::put_json(rules::policy(tenant, id), &policy),
            guard,
            wake(),
        ],
        || format!("a replication policy named {name} exists, or its registry changed meanwhile"),
    )
    .await?;
    ok_json(201, &serde_json::json!({ "id": id }))
}

pub async fn list(call: &Call<'_>) -> Result<Reply, SwrError> {
    admin(call)?;
    let (offset, limit) = crate::webhooks::page(call)?;
    let mut all: Vec<Policy> = store::scan_json(&rules::policies_of(&call.who.tenant))
        .await
        .map_err(fault)?;
    if let Some(name) = call.req.query("name").filter(|n| !n.is_empty()) {
        all.retain(|p| p.name.contains(name));
    }
    if let Some(r) = call.req.query("registry_id") {
        let r: u64 = r
            .parse()
            .map_err(|_| SwrError::bad_request("registry_id must be a number"))?;
        all.retain(|p| p.registry() == r);
    }
    order(call, &mut all, |p| (p.created, p.updated, p.name.clone()))?;
    let total = all.len();
    let page: Vec<_> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(Policy::view)
        .collect();
    ok_json(
        200,
        &serde_json::json!({ "policies": page, "total": total }),
    )
}

pub async fn show(call: &Call<'_>, id: u64) -> Result<Reply, SwrError> {
    admin(call)?;
    ok_json(200, &load(call, id).await?.0.view())
}

/// A full replacement (SWR's model requires every field).
pub async fn update(call: &Call<'_>, id: u64) -> Result<Reply, SwrError> {
    admin(call)?;
    let (old, version) = load(call, id).await?;
    let (body, guard) = checked(call).await?;
    let tenant = &call.who.tenant;
    let name = body.name.clone();
    let mut policy = Policy::from_body(id, tenant, body, &old.creator, store::now());
    policy.created = old.created;
    let mut ops = vec![
        WriteOp::Put((
            rules::policy(tenant, id),
            serde_json::to_vec(&policy).expect("policies serialize"),
            Precondition::Version(version),
        )),
        guard,
        wake(),
    ];
    if old.name != name {
        ops.push(store::delete(rules::policy_name(tenant, &old.name)));
        ops.push(WriteOp::Put((
            rules::policy_name(tenant, &name),
            id.to_string().into_bytes(),
            Precondition::Absent,
        )));
    }
    commit(ops, || {
        format!("policy {id} changed meanwhile, or a policy named {name} exists")
    })
    .await?;
    Ok(Reply::new(200))
}

/// Deletes the policy; its executions stay listed, and what they queued
/// is still copied.
pub async fn delete(call: &Call<'_>, id: u64) -> Result<Reply, SwrError> {
    admin(call)?;
    let (p, version) = load(call, id).await?;
    let tenant = &call.who.tenant;
    commit(
        vec![
            WriteOp::Delete((rules::policy(tenant, id), Precondition::Version(version))),
            store::delete(rules::policy_name(tenant, &p.name)),
        ],
        || format!("policy {id} changed meanwhile"),
    )
    .await?;
    Ok(Reply::new(200))
}

/// `execute_instance_replication_policy` (`{"policy_id"}`): 201 with the
/// execution's id.
pub async fn execute(call: &Call<'_>) -> Result<Reply, SwrError> {
    admin(call)?;
    #[derive(serde::Deserialize)]
    struct Body {
        policy_id: u64,
        /// Berth's extension: copy again only what failed (or timed out)
        /// in this earlier execution of the policy.
        #[serde(default)]
        retry_failed_of: Option<u64>,
    }
    let body: Body = parse_body(&call.body)?;
    let (policy, _) = load(call, body.policy_id).await?;
    if !policy.enabled {
        return Err(SwrError::bad_request(format!(
            "replication policy {} is disabled",
            policy.id
        )));
    }
    let (id, ops) = match body.retry_failed_of {
        None => start(&policy, "manual", &call.who.user).await?,
        Some(of) => retry_failed(call, &policy, of).await?,
    };
    commit(ops, || {
        "the execution could not be recorded; try again".into()
    })
    .await?;
    ok_json(201, &serde_json::json!({ "id": id }))
}

/// An execution of the items of execution `of` (of `policy`) that failed
/// or timed out.
async fn retry_failed(
    call: &Call<'_>,
    policy: &Policy,
    of: u64,
) -> Result<(u64, Vec<WriteOp>), SwrError> {
    let (earlier, _) = execution(call, of).await?;
    if earlier.policy_id != policy.id {
        return Err(SwrError::bad_request(format!(
            "execution {of} is not one of policy {}",
            policy.id
        )));
    }
    let failed: Vec<Item> = items(call, of)
        .await?
        .into_iter()
        .filter(|i| matches!(i.status, Status::Failed | Status::Timeout))
        .collect();
    let Some(first) = failed.first() else {
        return Err(SwrError::conflict(format!(
            "nothing failed in execution {of}"
        )));
    };
    let registry = registry(&policy.tenant, first.registry_id)
        .await?
        .ok_or_else(|| SwrError::bad_request(format!("registry {} is gone", first.registry_id)))?;
    let specs: Vec<ItemSpec> = failed
        .iter()
        .map(|i| ItemSpec {
            source: i.source.clone(),
            destination: i.destination.clone(),
            tag: i.tag.clone(),
        })
        .collect();
    let batch = Batch {
        tenant: &policy.tenant,
        policy_id: policy.id,
        trigger: "retry",
        registry: &registry,
        direction: first.direction,
        override_: policy.override_,
        operator: &call.who.user,
        operator_id: "",
        execution: None,
        planning: false,
        wake: true,
    };
    enqueue(&batch, &specs).await
}

async fn execution(call: &Call<'_>, id: u64) -> Result<(Execution, u64), SwrError> {
    let entry = store::get(&runs::execution(&call.who.tenant, id))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("execution {id} not found")))?;
    let e: Execution = serde_json::from_slice(&entry.value)
        .map_err(|_| SwrError::internal(format!("execution {id} is unreadable")))?;
    Ok((e, entry.version))
}

/// `list_instance_replication_policy_executions`: newest first.
pub async fn executions(call: &Call<'_>) -> Result<Reply, SwrError> {
    admin(call)?;
    let (offset, limit) = crate::webhooks::page(call)?;
    let policy: Option<u64> = call
        .req
        .query("policy_id")
        .map(|v| {
            v.parse()
                .map_err(|_| SwrError::bad_request("policy_id must be a number"))
        })
        .transpose()?;
    let mut all: Vec<Execution> = store::scan_json(&runs::executions_of(&call.who.tenant))
        .await
        .map_err(fault)?;
    // Shared-edition syncs are not a policy's.
    all.retain(|e| e.policy_id != 0 && policy.is_none_or(|p| e.policy_id == p));
    all.reverse();
    let total = all.len();
    let page: Vec<_> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(Execution::view)
        .collect();
    ok_json(
        200,
        &serde_json::json!({ "executions": page, "total": total }),
    )
}

/// `stop_instance_replication_policy_execution`: waiting items end
/// `Stopped`, the running one between chunks.
pub async fn stop(call: &Call<'_>, id: u64) -> Result<Reply, SwrError> {
    admin(call)?;
    let (e, _) = execution(call, id).await?;
    if e.in_progress() == 0 && !e.planning {
        return Err(SwrError::conflict(format!(
            "execution {id} is over ({})",
            e.status()
        )));
    }
    commit(
        vec![
            store::put(runs::stop(&call.who.tenant, id), b"stop".to_vec()),
            WriteOp::Append((runs::REQUESTS.to_string(), id.to_string().into_bytes())),
        ],
        || "try again".into(),
    )
    .await?;
    Ok(Reply::new(200))
}

async fn items(call: &Call<'_>, execution: u64) -> Result<Vec<Item>, SwrError> {
    store::scan_json(&runs::items_of(&call.who.tenant, execution))
        .await
        .map_err(fault)
}

/// `list_instance_replication_policy_exec_tasks`: one task per
/// repository of the execution.
pub async fn tasks(call: &Call<'_>, id: u64) -> Result<Reply, SwrError> {
    admin(call)?;
    let (offset, limit) = crate::webhooks::page(call)?;
    let (e, _) = execution(call, id).await?;
    let registry = registry(&call.who.tenant, e.registry_id).await?;
    let remote = registry.map(|r| r.url).unwrap_or_default();
    let mut by_task: std::collections::BTreeMap<u64, Vec<Item>> = Default::default();
    for i in items(call, id).await? {
        by_task.entry(i.task_id).or_default().push(i);
    }
    let total = by_task.len();
    let rows: Vec<_> = by_task
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(task, items)| {
            let first = &items[0];
            let status = task_status(items);
            let (src, dst) = match first.direction {
                Direction::Push => (
                    first.source.clone(),
                    format!("{remote}/{}", first.destination),
                ),
                Direction::Pull => (
                    format!("{remote}/{}", first.source),
                    first.destination.clone(),
                ),
            };
            let started = items.iter().map(|i| i.started).filter(|s| *s > 0).min();
            let ended = items
                .iter()
                .map(|i| i.ended)
                .max()
                .filter(|_| status != "InProgress");
            serde_json::json!({
                "id": task,
                "execution_id": id,
                "resource_type": "image",
                "src_resource": src,
                "dst_resource": dst,
                "operation": "copy",
                "job_id": task.to_string(),
                "status": status,
                "StatusRevision": items.iter().filter(|i| i.status.is_final()).count(),
                "start_time": started.map(berth_domain::swr::rfc3339).unwrap_or_default(),
                "end_time": ended.map(berth_domain::swr::rfc3339).unwrap_or_default(),
            })
        })
        .collect();
    ok_json(200, &serde_json::json!({ "tasks": rows, "total": total }))
}

fn task_status(items: &[Item]) -> &'static str {
    let statuses: Vec<&str> = items.iter().map(|i| i.status.enterprise()).collect();
    if statuses.contains(&"InProgress") || statuses.contains(&"Pending") {
        "InProgress"
    } else if statuses.contains(&"Failed") {
        "Failed"
    } else if statuses.contains(&"Stopped") {
        "Stopped"
    } else {
        "Succeed"
    }
}

/// `list_instance_replication_policy_exec_sub_tasks`: the task's tags,
/// by `status` if given.
pub async fn subtasks(call: &Call<'_>, id: u64, task: u64) -> Result<Reply, SwrError> {
    admin(call)?;
    let (offset, limit) = crate::webhooks::page(call)?;
    let status = call.req.query("status").filter(|s| !s.is_empty());
    if let Some(s) = status
        && !runs::ENTERPRISE_STATUSES.contains(&s)
    {
        return Err(SwrError::bad_request(format!(
            "status {s:?}: one of {}",
            runs::ENTERPRISE_STATUSES.join(", ")
        )));
    }
    execution(call, id).await?;
    let all: Vec<Item> = items(call, id)
        .await?
        .into_iter()
        .filter(|i| i.task_id == task)
        .filter(|i| status.is_none_or(|s| i.status.enterprise() == s))
        .collect();
    let total = all.len();
    let rows: Vec<_> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(Item::subtask_view)
        .collect();
    ok_json(
        200,
        &serde_json::json!({ "sub_tasks": rows, "total": total }),
    )
}
