//! Retention policies of an organization (SWR enterprise edition, 老化策略):
//! `create/list/show/update/delete_instance_retention_policy`,
//! `execute_instance_retention_policy` and the executions, tasks and
//! sub-tasks listings, under `/v2/<project>/instances/<id>/…/retention/`.
//! `berth_domain::retention::policy` holds the rules and their plan; the
//! retention job (`components/retention`) runs executions,
//! which an execute call or a policy's schedule asks for. Calls need
//! `swr:repository:retention` on the organization.

use crate::webhooks::{namespace_id_param, page};
use crate::{Call, checked_once};
use berth_domain::iam::Action;
use berth_domain::retention::policy::{
    self as rp, Execution, Policy, PolicyBody, Rule, Subtask, Task,
};
use berth_domain::swr::{SwrError, rfc3339};
use berth_guest::http::Reply;
use berth_guest::manage::{commit, fault, oci_fault, ok_json, organization_allowed, parse_body};
use berth_guest::retention::ids;
use berth_guest::store::{self, Precondition, WriteOp, metadata};
use serde::Deserialize;

async fn organization(call: &Call<'_>, ns: &str) -> Result<u64, SwrError> {
    organization_allowed(&call.who, ns, Action::Retention).await
}

/// The rules of `body` as stored, with ids: a rule that passes back the
/// id of one of `current` keeps it; the others get new ones.
async fn rules_of(body: &PolicyBody, current: &[Rule]) -> Result<Vec<Rule>, SwrError> {
    let kept = |r: &rp::RuleBody| r.id.filter(|id| current.iter().any(|c| c.id == *id));
    let fresh = body.rules.iter().filter(|r| kept(r).is_none()).count();
    let mut ids = ids(rp::RULE_IDS, fresh).await?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(body.rules.len());
    for r in &body.rules {
        let id = match kept(r).filter(|id| seen.insert(*id)) {
            Some(id) => id,
            None => ids
                .next()
                .ok_or_else(|| SwrError::bad_request("rules: an id given twice"))?,
        };
        out.push(Rule {
            id,
            body: r.normalized(),
        });
    }
    Ok(out)
}

/// The tenant's policies (with their entries), in id order.
async fn policies(tenant: &str) -> Result<Vec<(Policy, metadata::Entry)>, SwrError> {
    store::scan_parsed(&rp::tenant_prefix(tenant))
        .await
        .map_err(fault)
}

/// Policy `id` of organization `ns`, which the caller may manage.
async fn load(call: &Call<'_>, ns: &str, id: u64) -> Result<(Policy, metadata::Entry), SwrError> {
    let namespace_id = organization(call, ns).await?;
    let missing = || SwrError::not_found(format!("retention policy {id} not found in {ns}"));
    let entry = store::get(&rp::key(&call.who.tenant, id))
        .await
        .map_err(oci_fault)?
        .ok_or_else(missing)?;
    let policy: Policy = serde_json::from_slice(&entry.value)
        .map_err(|e| SwrError::internal(format!("corrupt retention policy: {e}")))?;
    if policy.namespace != ns || policy.namespace_id != namespace_id {
        return Err(missing());
    }
    Ok((policy, entry))
}

/// Checks `body`, and that no other policy of `ns` has its name and the
/// organization's limit holds; the organization's record, read before
/// its policies: the write rewrites it under a version precondition, so a
/// policy written after this read fails the write (and one before it was
/// seen here).
async fn check(
    call: &Call<'_>,
    ns: &str,
    body: &PolicyBody,
    except: u64,
) -> Result<metadata::Entry, SwrError> {
    rp::validate(body).map_err(SwrError::bad_request)?;
    let org = store::get(&berth_domain::iam::records::namespace(ns))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("namespace {ns} not found")))?;
    let mine: Vec<Policy> = policies(&call.who.tenant)
        .await?
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.namespace == ns && p.id != except)
        .collect();
    // Left by an earlier organization of the name (none should be): not
    // this one's.
    let namespace_id = organization(call, ns).await?;
    let mine: Vec<Policy> = mine
        .into_iter()
        .filter(|p| p.namespace_id == namespace_id)
        .collect();
    if mine.iter().any(|p| p.name == body.name) {
        return Err(SwrError::conflict(format!(
            "{ns} already has a retention policy named {}",
            body.name
        )));
    }
    if except == 0 && mine.len() >= rp::MAX_PER_NAMESPACE {
        return Err(SwrError::quota(format!(
            "an organization has at most {} retention policies",
            rp::MAX_PER_NAMESPACE
        )));
    }
    Ok(org)
}

/// `POST …/namespaces/<ns>/retention/policies`: 201 `{"id"}`.
pub async fn create(call: &Call<'_>, ns: &str) -> Result<Reply, SwrError> {
    let namespace_id = organization(call, ns).await?;
    let body: PolicyBody = parse_body(&call.body)?;
    let org = check(call, ns, &body, 0).await?;
    let id = *ids(rp::POLICY_IDS, 1).await?.start();
    let now = store::now();
    let policy = Policy {
        id,
        tenant: call.who.tenant.clone(),
        namespace: ns.to_string(),
        namespace_id,
        name: body.name.clone(),
        algorithm: body.algorithm.clone(),
        enabled: body.enabled,
        rules: rules_of(&body, &[]).await?,
        trigger: body.trigger.clone(),
        creator: call.who.user.clone(),
        created: now,
        updated: now,
        last_scheduled: 0,
    };
    let mut ops = vec![
        WriteOp::Put((
            rp::key(&call.who.tenant, id),
            serde_json::to_vec(&policy).expect("policies serialize"),
            Precondition::Absent,
        )),
        // Rewritten, not only checked: of two creates at once one
        // conflicts (names unique, the limit kept), and an organization
        // deleted meanwhile refuses it.
        WriteOp::Put((org.key, org.value, Precondition::Version(org.version))),
    ];
    ops.extend(wake(&policy));
    commit(ops, || {
        format!("the organization {ns} changed meanwhile; try again")
    })
    .await?;
    ok_json(201, &serde_json::json!({ "id": id }))
}

/// For a scheduled policy, the request that wakes the retention job so
/// it knows the policy's next time at once (not at its next tick).
fn wake(policy: &Policy) -> Option<WriteOp> {
    policy
        .next_run()
        .map(|_| WriteOp::Append((rp::REQUESTS.to_string(), rp::WAKE.to_vec())))
}

/// The SDK's `ImageRetention`.
fn view(p: &Policy) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = p
        .rules
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(&r.body).expect("rules serialize");
            v["id"] = r.id.into();
            v
        })
        .collect();
    serde_json::json!({
        "id": p.id,
        "algorithm": p.algorithm,
        "rules": rules,
        "trigger": p.trigger,
        "enabled": p.enabled,
        "name": p.name,
        "namespace_id": p.namespace_id,
        "namespace_name": p.namespace,
    })
}

/// `GET …/retention/policies`: the caller's policies it may manage, by
/// `name` (exact) and `namespace_id`, in id order, paged.
pub async fn list(call: &Call<'_>) -> Result<Reply, SwrError> {
    let (offset, limit) = page(call)?;
    let name = call.req.query("name");
    let namespace_id = namespace_id_param(call)?;
    let mut out = Vec::new();
    let mut seen = Default::default();
    for (p, _) in policies(&call.who.tenant).await? {
        if name.is_some_and(|n| n != p.name) || namespace_id.is_some_and(|n| n != p.namespace_id) {
            continue;
        }
        let id = checked_once(&mut seen, &p.namespace, async |ns| {
            organization(call, ns).await.ok()
        })
        .await;
        if id == Some(p.namespace_id) {
            out.push(view(&p));
        }
    }
    let total = out.len();
    let page: Vec<_> = out.into_iter().skip(offset).take(limit).collect();
    ok_json(
        200,
        &serde_json::json!({ "retentions": page, "total": total }),
    )
}

pub async fn show(call: &Call<'_>, ns: &str, id: u64) -> Result<Reply, SwrError> {
    let (policy, _) = load(call, ns, id).await?;
    ok_json(200, &view(&policy))
}

/// `PUT …/policies/<id>`: replaces the whole policy (SWR's model: every
/// field required); rules passed back with their `id`, as `show` gives
/// them, keep it, others get new ones; a schedule counts from now.
pub async fn update(call: &Call<'_>, ns: &str, id: u64) -> Result<Reply, SwrError> {
    let (mut policy, entry) = load(call, ns, id).await?;
    let body: PolicyBody = parse_body(&call.body)?;
    let org = check(call, ns, &body, id).await?;
    policy.rules = rules_of(&body, &policy.rules).await?;
    policy.name = body.name.clone();
    policy.algorithm = body.algorithm.clone();
    policy.enabled = body.enabled;
    policy.trigger = body.trigger.clone();
    policy.updated = store::now();
    let mut ops = vec![
        WriteOp::Put((
            entry.key,
            serde_json::to_vec(&policy).expect("policies serialize"),
            Precondition::Version(entry.version),
        )),
        // A rename racing a create of that name: one conflicts.
        WriteOp::Put((org.key, org.value, Precondition::Version(org.version))),
    ];
    ops.extend(wake(&policy));
    commit(ops, || {
        format!("retention policy {id} changed meanwhile; try again")
    })
    .await?;
    Ok(Reply::new(200))
}

/// `DELETE …/policies/<id>`: 204. The retention job then removes its
/// executions; one it is running finishes, one not yet started fails
/// ("the policy was deleted").
pub async fn delete(call: &Call<'_>, ns: &str, id: u64) -> Result<Reply, SwrError> {
    let (_, entry) = load(call, ns, id).await?;
    commit(
        vec![WriteOp::Delete((
            entry.key,
            Precondition::Version(entry.version),
        ))],
        || format!("retention policy {id} changed meanwhile; try again"),
    )
    .await?;
    Ok(Reply::new(204))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteBody {
    dry_run: bool,
}

/// `POST …/policies/<id>/executions`: 201 `{"id"}`; the retention job
/// runs it at once. A dry run plans and records the plan, and changes no
/// tag. 409 while an execution of the policy is in progress; 400 for a
/// real run of a disabled policy (a dry run previews it).
pub async fn execute(call: &Call<'_>, ns: &str, id: u64) -> Result<Reply, SwrError> {
    let (policy, entry) = load(call, ns, id).await?;
    let body: ExecuteBody = parse_body(&call.body)?;
    if !policy.enabled && !body.dry_run {
        return Err(SwrError::bad_request(format!(
            "retention policy {id} is disabled: enable it, or execute a dry run"
        )));
    }
    let (ops, exec) =
        berth_guest::retention::ask_for_execution(&policy, "manual", body.dry_run).await?;
    let mut ops = ops;
    ops.push(WriteOp::Check((
        entry.key,
        Precondition::Version(entry.version),
    )));
    commit(ops, || {
        format!("retention policy {id} changed meanwhile; try again")
    })
    .await?;
    ok_json(201, &serde_json::json!({ "id": exec }))
}

fn time(t: u64) -> String {
    if t == 0 { String::new() } else { rfc3339(t) }
}

fn status_filter<'a>(call: &'a Call<'_>) -> Result<Option<&'a str>, SwrError> {
    match call.req.query("status") {
        Some(s) if !rp::STATUSES.contains(&s) => Err(SwrError::bad_request(format!(
            "status must be one of {}",
            rp::STATUSES.join(", ")
        ))),
        s => Ok(s),
    }
}

/// `GET …/policies/<id>/executions`: newest first, paged.
pub async fn executions(call: &Call<'_>, ns: &str, id: u64) -> Result<Reply, SwrError> {
    load(call, ns, id).await?;
    let (offset, limit) = page(call)?;
    let all = store::scan_all(&rp::executions_prefix(&call.who.tenant, id))
        .await
        .map_err(fault)?;
    let page: Vec<serde_json::Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .filter_map(|e| serde_json::from_slice::<Execution>(&e.value).ok())
        .map(|x| {
            serde_json::json!({
                "id": x.id,
                "policy_id": x.policy_id,
                "dry_run": x.dry_run,
                "status": x.status,
                "trigger": x.trigger,
                "start_time": time(x.start_time),
                "end_time": time(x.end_time),
            })
        })
        .collect();
    ok_json(
        200,
        &serde_json::json!({ "executions": page, "total": all.len() }),
    )
}

async fn execution_of(
    call: &Call<'_>,
    ns: &str,
    policy: u64,
    id: u64,
) -> Result<Execution, SwrError> {
    load(call, ns, policy).await?;
    let e = store::get(&rp::execution(&call.who.tenant, policy, id))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| {
            SwrError::not_found(format!(
                "execution {id} of retention policy {policy} not found"
            ))
        })?;
    serde_json::from_slice(&e.value)
        .map_err(|e| SwrError::internal(format!("corrupt retention execution: {e}")))
}

/// `GET …/executions/<id>/tasks`: one task per repository, by `status`,
/// paged.
pub async fn tasks(
    call: &Call<'_>,
    ns: &str,
    policy: u64,
    execution: u64,
) -> Result<Reply, SwrError> {
    execution_of(call, ns, policy, execution).await?;
    let (offset, limit) = page(call)?;
    let status = status_filter(call)?;
    let all: Vec<Task> = store::scan_json::<Task>(&rp::tasks_prefix(execution))
        .await
        .map_err(fault)?
        .into_iter()
        .filter(|t| status.is_none_or(|s| s == t.status))
        .collect();
    let page: Vec<serde_json::Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|t| {
            serde_json::json!({
                "id": t.id,
                "execution_id": t.execution_id,
                "repository": t.repository,
                "job_id": format!("retention-{}-{}", t.execution_id, t.id),
                "status": t.status,
                // Harbor's job status codes: 1 running, 3 finished.
                "status_code": if t.status == "InProgress" { 1 } else { 3 },
                "status_revision": t.end_time.max(t.start_time),
                "start_time": time(t.start_time),
                "end_time": time(t.end_time),
                "total": t.total,
                "retained": t.retained,
            })
        })
        .collect();
    ok_json(
        200,
        &serde_json::json!({ "tasks": page, "total": all.len() }),
    )
}

/// `GET …/tasks/<id>/subtasks`: every tag of the task, what was done with
/// it (`DEL` or `RETAIN`) and why (`status_text`), by `status`, paged.
pub async fn subtasks(
    call: &Call<'_>,
    ns: &str,
    policy: u64,
    execution: u64,
    task: u64,
) -> Result<Reply, SwrError> {
    execution_of(call, ns, policy, execution).await?;
    let (offset, limit) = page(call)?;
    let status = status_filter(call)?;
    let t: Task = store::get_json(&rp::task(execution, task))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| {
            SwrError::not_found(format!("task {task} of execution {execution} not found"))
        })?;
    let prefix = rp::subtasks_prefix(execution, task);
    // Unfiltered, only the page is read (the task counts its sub-tasks
    // when it finishes; while it runs, what is recorded so far).
    let (all, total): (Vec<Subtask>, usize) = match status {
        None if t.status != "InProgress" => {
            let rows = metadata::scan(prefix, None, (offset + limit).min(u32::MAX as usize) as u32)
                .await
                .map_err(fault)?;
            let rows = rows
                .iter()
                .filter_map(|e| serde_json::from_slice::<Subtask>(&e.value).ok())
                .collect();
            (rows, t.total as usize)
        }
        _ => {
            let rows: Vec<Subtask> = store::scan_json::<Subtask>(&prefix)
                .await
                .map_err(fault)?
                .into_iter()
                .filter(|s| status.is_none_or(|st| st == s.status))
                .collect();
            let n = rows.len();
            (rows, n)
        }
    };
    let namespace = t.repository.split('/').next().unwrap_or_default();
    let page: Vec<serde_json::Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|s| {
            serde_json::json!({
                "id": s.id,
                "job_id": task,
                "namespace": namespace,
                "repository": t.repository,
                "tag": s.tag,
                "digest": s.digest,
                "action": s.action,
                "status": s.status,
                "status_text": s.status_text,
                "op_time": time(s.op_time),
            })
        })
        .collect();
    ok_json(
        200,
        &serde_json::json!({ "sub_tasks": page, "total": total }),
    )
}
