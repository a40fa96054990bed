//! Garbage collection of an instance (SWR enterprise edition, 制品清理):
//! `execute_gc_schedule`, `list_gc_tasks`, `show_gc_task`,
//! `show_gc_schedule`, `update_gc_schedule`, `stop_gc_task`, under
//! `/v2/<project>/instances/<id>/system/gc`. Shapes follow the SDK's
//! models (`ExecuteScheduleRequestBody`, `GcTask`, `ScheduleDetails`,
//! `GcParameters`). Tasks are run by the gc job
//! (`components/gc/src/tasks.rs`), which a new task wakes; a task's
//! figures are what its collection passes deleted,
//! counted for the blobs the tenant's repositories held. One task
//! at a time per tenant. Only the tenant's administrators call these.

use crate::Call;
use berth_domain::gc::{self, Parameters, Policy, Task};
use berth_domain::swr::{SwrError, rfc3339};
use berth_guest::gc::TaskAsk;
use berth_guest::http::Reply;
use berth_guest::manage::{commit, fault, limit_param, oci_fault, ok_json, parse_body};
use berth_guest::store::{self, Precondition, WriteOp, metadata};
use serde::Deserialize;

fn admin(call: &Call<'_>) -> Result<(), SwrError> {
    if call.who.admin {
        Ok(())
    } else {
        Err(SwrError::forbidden(
            "garbage collection is for the tenant's administrators",
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteBody {
    schedule: TypeOnly,
    parameters: Parameters,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    schedule: ScheduleBody,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    cron: Option<String>,
}

/// `POST …/system/gc/schedule`: a manual run now. 201 `{"id"}`.
pub async fn execute(call: &Call<'_>) -> Result<Reply, SwrError> {
    admin(call)?;
    let body: ExecuteBody = parse_body(&call.body)?;
    if body.schedule.kind != "Manual" {
        return Err(SwrError::bad_request(format!(
            "schedule.type must be Manual, not {:?} (update_gc_schedule sets periodic runs)",
            body.schedule.kind
        )));
    }
    body.parameters.validate().map_err(SwrError::bad_request)?;
    let busy = |id: u64| {
        SwrError::conflict(format!(
            "GC task {id} is still pending or running; stop it or wait for it"
        ))
    };
    match berth_guest::gc::ask_for_task(&call.who.tenant, "MANUAL", body.parameters)
        .await
        .map_err(oci_fault)?
    {
        TaskAsk::Busy(active) => Err(busy(active)),
        TaskAsk::Ready(id, ops) => {
            commit(ops, || {
                "another GC task was asked for at the same time; it runs".to_string()
            })
            .await?;
            ok_json(201, &serde_json::json!({ "id": id }))
        }
    }
}

fn view(t: &Task) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "job_name": "GC",
        "job_kind": t.job_kind,
        "job_parameters": {
            "workers": t.parameters.workers,
            "delete_untagged": t.parameters.delete_untagged,
            "dry_run": t.parameters.dry_run,
            "purged_blobs": t.purged_blobs,
            "purged_manifests": t.purged_manifests,
            "freed_space": t.freed_space,
        },
        "job_status": t.status,
        "creation_time": rfc3339(t.created),
        "update_time": rfc3339(t.updated),
    })
}

const STATUSES: [&str; 5] = ["Success", "Stopped", "Running", "Pending", "Error"];

/// `GET …/system/gc`: the tenant's tasks, newest first, `limit` (1–100,
/// 10) at a time after `marker` (the last id of the previous page), by
/// `status`. `page_info.next_marker` when more follow.
pub async fn list(call: &Call<'_>) -> Result<Reply, SwrError> {
    admin(call)?;
    let limit = limit_param(call.req, 10, 100)? as usize;
    let status = call.req.query("status");
    if let Some(s) = status
        && !STATUSES.contains(&s)
    {
        return Err(SwrError::bad_request(format!(
            "status must be one of {}",
            STATUSES.join(", ")
        )));
    }
    let tenant = &call.who.tenant;
    let mut after = match call.req.query("marker").filter(|m| !m.is_empty()) {
        Some(m) => Some(gc::task(
            tenant,
            m.parse()
                .map_err(|_| SwrError::bad_request("marker must be a task id"))?,
        )),
        None => None,
    };
    let prefix = gc::tasks_prefix(tenant);
    let mut tasks = Vec::new();
    let mut more = false;
    'scan: loop {
        let page = metadata::scan(prefix.clone(), after.clone(), 200)
            .await
            .map_err(fault)?;
        for e in &page {
            let Ok(t) = serde_json::from_slice::<Task>(&e.value) else {
                continue;
            };
            if status.is_some_and(|s| s != t.status) {
                continue;
            }
            if tasks.len() == limit {
                more = true;
                break 'scan;
            }
            tasks.push(t);
        }
        if page.len() < 200 {
            break;
        }
        after = page.last().map(|e| e.key.clone());
    }
    let mut body = serde_json::json!({ "tasks": tasks.iter().map(view).collect::<Vec<_>>() });
    if more && let Some(last) = tasks.last() {
        body["page_info"] = serde_json::json!({ "next_marker": last.id.to_string() });
    }
    ok_json(200, &body)
}

async fn load(call: &Call<'_>, id: u64) -> Result<(Task, metadata::Entry), SwrError> {
    let entry = store::get(&gc::task(&call.who.tenant, id))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("GC task {id} not found")))?;
    let task = serde_json::from_slice(&entry.value)
        .map_err(|e| SwrError::internal(format!("corrupt GC task: {e}")))?;
    Ok((task, entry))
}

/// `GET …/system/gc/<id>`.
pub async fn show(call: &Call<'_>, id: u64) -> Result<Reply, SwrError> {
    admin(call)?;
    let (task, _) = load(call, id).await?;
    ok_json(200, &view(&task))
}

/// `PUT …/system/gc/<id>`: asks a pending or running task to stop (it
/// stops at its next step, keeping what it already freed). 409 for a
/// finished task.
pub async fn stop(call: &Call<'_>, id: u64) -> Result<Reply, SwrError> {
    admin(call)?;
    let (mut task, entry) = load(call, id).await?;
    if task.finished() {
        return Err(SwrError::conflict(format!(
            "GC task {id} already finished ({})",
            task.status
        )));
    }
    task.stop = true;
    commit(
        vec![WriteOp::Put((
            entry.key,
            serde_json::to_vec(&task).expect("tasks serialize"),
            Precondition::Version(entry.version),
        ))],
        || format!("GC task {id} changed meanwhile; try again"),
    )
    .await?;
    ok_json(200, &serde_json::json!({}))
}

/// The tenant's settings, or what applies without any.
async fn settings(tenant: &str) -> Result<(Policy, Option<metadata::Entry>), SwrError> {
    let entry = store::get(&gc::policy(tenant)).await.map_err(oci_fault)?;
    if let Some(e) = &entry {
        let policy = serde_json::from_slice(&e.value)
            .map_err(|e| SwrError::internal(format!("corrupt GC schedule: {e}")))?;
        return Ok((policy, entry));
    }
    let delete_untagged =
        store::config::get("gc_delete_untagged").is_some_and(|v| v.trim() == "true");
    let parameters = Parameters {
        workers: 1,
        delete_untagged,
        dry_run: false,
    };
    let policy = Policy::new("None", None, parameters, 0).map_err(SwrError::internal)?;
    Ok((policy, None))
}

/// `GET …/system/gc/schedule`.
pub async fn show_schedule(call: &Call<'_>) -> Result<Reply, SwrError> {
    admin(call)?;
    let (policy, _) = settings(&call.who.tenant).await?;
    let mut schedule = serde_json::json!({ "type": policy.schedule_type });
    if let Some(cron) = &policy.cron {
        schedule["cron"] = cron.clone().into();
    }
    if let Some(next) = policy.next_run() {
        schedule["next_scheduled_time"] = rfc3339(next).into();
    }
    ok_json(
        200,
        &serde_json::json!({ "schedule": schedule, "parameters": policy.parameters }),
    )
}

/// `PUT …/system/gc/schedule`: `None` or `Custom` with a 6-field cron
/// (UTC); `parameters` (kept when left out) also set whether the
/// background collection deletes the tenant's untagged manifests.
pub async fn update_schedule(call: &Call<'_>) -> Result<Reply, SwrError> {
    admin(call)?;
    let body: UpdateBody = parse_body(&call.body)?;
    let (current, entry) = settings(&call.who.tenant).await?;
    let parameters = body.parameters.unwrap_or(current.parameters);
    let policy = Policy::new(
        &body.schedule.kind,
        body.schedule.cron.as_deref(),
        parameters,
        store::now(),
    )
    .map_err(SwrError::bad_request)?;
    let precondition = match &entry {
        Some(e) => Precondition::Version(e.version),
        None => Precondition::Absent,
    };
    commit(
        vec![WriteOp::Put((
            gc::policy(&call.who.tenant),
            serde_json::to_vec(&policy).expect("policies serialize"),
            precondition,
        ))],
        || "the GC schedule changed meanwhile; try again".to_string(),
    )
    .await?;
    ok_json(200, &serde_json::json!({}))
}
