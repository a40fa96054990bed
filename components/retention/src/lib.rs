//! The retention job, a scheduled job (`berth_domain::jobs`): runs the
//! executions of the enterprise edition's retention policies
//! (`berth_domain::retention::policy`; their API is
//! `components/enterprise/src/retention.rs`). The enterprise
//! API records an execution `InProgress` and appends a request, which
//! wakes this job; a scheduled policy's time does the same here. An
//! execution plans every repository of the policy's organization that one
//! of its rules applies to (one task per repository) and records what it
//! does with every tag and why (one sub-task per tag: `DEL` or `RETAIN`).
//! A dry run records the plan and changes nothing else; a real run
//! removes each tag as the aging sweep does
//! (`berth_guest::retention::carry_out`), its
//! sub-task written in the same commit.
//!
//! A run cut off (kill -9) leaves its request: the next run resumes the
//! execution, skipping finished tasks and the tags a task already
//! recorded, so each tag is removed and recorded once.
//!
//! - `POST /berth/jobs/retention/tick`: runs now; 200 with what the run
//!   did, 409 while another run holds the lease.
//! - `GET /berth/jobs/retention`: whether a run is under way, and the last.
use berth_domain::retention::Decision;
use berth_domain::retention::policy::{self as rp, Execution, ExecutionRef, Policy, Subtask, Task};
use berth_domain::swr::SwrError;
use berth_guest::jobs::Run;
use berth_guest::manage::{fault, oci_fault};
use berth_guest::retention::{
    Done, LEASE_SECONDS, Removal, ask_for_execution, carry_out, ids, tags_of,
};
use berth_guest::store::{self, Precondition, WriteOp};
use spin_sdk::wasip3::http::types::{ErrorCode, Request, Response};

struct Retention;
spin_sdk::wasip3::http::service::export!(Retention);

const JOB: &str = "retention";

impl spin_sdk::wasip3::exports::http::handler::Guest for Retention {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        berth_guest::jobs::serve(request, JOB, LEASE_SECONDS, run).await
    }
}

/// Sub-tasks written per commit.
const BATCH: usize = 128;

async fn run(run: &mut Run) -> Result<serde_json::Value, SwrError> {
    // Read once: the schedule, the pruning and the next wake use them.
    let all = store::scan_parsed::<Policy>(rp::ALL).await.map_err(fault)?;
    let (scheduled, policies) = schedule(run, all).await?;
    let mut executions = Vec::new();
    for e in store::scan_all(rp::REQUESTS).await.map_err(fault)? {
        let consume = WriteOp::Delete((e.key.clone(), Precondition::Version(e.version)));
        let Ok(r) = serde_json::from_slice::<ExecutionRef>(&e.value) else {
            run.commit(vec![consume], LEASE_SECONDS).await?;
            continue;
        };
        let outcome = execute(run, &r).await;
        // The lease went to another run: it goes on, this one stops.
        if let Err(e) = &outcome
            && !run.still_held().await?
        {
            return Err(e.clone());
        }
        let summary = finish(run, &r, outcome, consume).await?;
        executions.push(summary);
    }
    let pruned = prune(run, &policies).await?;
    let mut result = serde_json::json!({
        "scheduled": scheduled,
        "executions": executions,
        "executions_pruned": pruned,
    });
    // Wake for the next scheduled policy even between the job's own times.
    let now = store::now();
    if let Some(next) = policies.iter().filter_map(Policy::next_run).min() {
        result["next_run_in_ms"] = (next.saturating_sub(now) * 1000).max(100).into();
    }
    Ok(result)
}

/// Removes the executions past the newest [`rp::EXECUTIONS_KEPT`] of each
/// policy, and those of deleted policies, with their tasks and sub-tasks
/// (the execution's record last, so a run cut off leaves it to the next);
/// how many. `policies`: those that exist.
async fn prune(run: &mut Run, policies: &[Policy]) -> Result<u64, SwrError> {
    let live: std::collections::HashSet<(&str, u64)> =
        policies.iter().map(|p| (p.tenant.as_str(), p.id)).collect();
    let mut seen: std::collections::HashMap<(String, u64), usize> = Default::default();
    let mut pruned = 0;
    for e in store::scan_all(rp::EXECUTIONS).await.map_err(fault)? {
        let Some((tenant, policy)) = rp::parse_execution(&e.key) else {
            continue;
        };
        let kept = if live.contains(&(tenant, policy)) {
            rp::EXECUTIONS_KEPT
        } else {
            0
        };
        // Newest first in key order.
        let n = seen.entry((tenant.to_string(), policy)).or_default();
        *n += 1;
        let Ok(x) = serde_json::from_slice::<Execution>(&e.value) else {
            continue;
        };
        if *n <= kept || x.status == "InProgress" {
            continue;
        }
        for (t, entry) in store::scan_parsed::<Task>(&rp::tasks_prefix(x.id))
            .await
            .map_err(fault)?
        {
            let subs = store::scan_all(&rp::subtasks_prefix(x.id, t.id))
                .await
                .map_err(fault)?;
            for chunk in subs.chunks(BATCH) {
                let ops = chunk.iter().map(|s| store::delete(s.key.clone())).collect();
                run.commit(ops, LEASE_SECONDS).await?;
            }
            run.commit(vec![store::delete(entry.key)], LEASE_SECONDS)
                .await?;
        }
        let latest = rp::latest_execution(tenant, policy);
        let mut last = vec![WriteOp::Delete((e.key, Precondition::Version(e.version)))];
        if kept == 0 {
            last.push(store::delete(latest));
        }
        if run.commit(last, LEASE_SECONDS).await? {
            pruned += 1;
        }
    }
    Ok(pruned)
}

/// Starts an execution of every scheduled policy (of `all`) whose time
/// has come: how many started, and the policies as they are now. Times
/// missed while nobody ran start one, not a backlog; a time that finds an
/// execution still in progress is skipped.
async fn schedule(
    run: &mut Run,
    all: Vec<(Policy, store::metadata::Entry)>,
) -> Result<(u32, Vec<Policy>), SwrError> {
    let now = store::now();
    let mut started = 0;
    let mut out = Vec::with_capacity(all.len());
    for (mut policy, e) in all {
        let Some(due) = policy.next_run().filter(|&t| t <= now) else {
            out.push(policy);
            continue;
        };
        // A policy its organization did not take along when deleted
        // (written before organizations did): removed, not run.
        let org = store::get_json::<berth_domain::iam::records::Namespace>(
            &berth_domain::iam::records::namespace(&policy.namespace),
        )
        .await
        .map_err(oci_fault)?;
        if !org.is_some_and(|o| o.tenant == policy.tenant && o.id == policy.namespace_id) {
            let gone = WriteOp::Delete((e.key.clone(), Precondition::Version(e.version)));
            run.commit(vec![gone], LEASE_SECONDS).await?;
            continue;
        }
        policy.last_scheduled = now.max(due);
        let mut ops = match ask_for_execution(&policy, "scheduled", false).await {
            Ok((ops, _)) => ops,
            Err(e) if e.status == 409 => Vec::new(),
            Err(e) => return Err(e),
        };
        let starts = !ops.is_empty();
        ops.push(WriteOp::Put((
            e.key.clone(),
            serde_json::to_vec(&policy).expect("policies serialize"),
            Precondition::Version(e.version),
        )));
        if run.commit(ops, LEASE_SECONDS).await? && starts {
            started += 1;
        }
        out.push(policy);
    }
    Ok((started, out))
}

/// Closes the tasks of `execution` still in progress with `status`.
async fn close_tasks(run: &mut Run, execution: u64, status: &str) -> Result<(), SwrError> {
    for (mut t, e) in store::scan_parsed::<Task>(&rp::tasks_prefix(execution))
        .await
        .map_err(fault)?
    {
        if t.status != "InProgress" {
            continue;
        }
        t.status = status.into();
        t.end_time = store::now();
        let ops = vec![WriteOp::Put((
            e.key,
            serde_json::to_vec(&t).expect("tasks serialize"),
            Precondition::Version(e.version),
        ))];
        run.commit(ops, LEASE_SECONDS).await?;
    }
    Ok(())
}

/// Records how execution `r` ended (closing its tasks if it failed), and
/// consumes its request, in one commit; a summary for the run's answer.
async fn finish(
    run: &mut Run,
    r: &ExecutionRef,
    outcome: Result<(u64, u64, u64), SwrError>,
    consume: WriteOp,
) -> Result<serde_json::Value, SwrError> {
    let key = rp::execution(&r.tenant, r.policy, r.id);
    let mut ops = vec![consume];
    let mut summary = serde_json::json!({ "id": r.id, "policy_id": r.policy });
    if let Some(e) = store::get(&key).await.map_err(oci_fault)?
        && let Ok(mut x) = serde_json::from_slice::<Execution>(&e.value)
        && x.status == "InProgress"
    {
        match &outcome {
            Ok((tasks, removed, retained)) => {
                x.status = "Succeed".into();
                summary["tasks"] = (*tasks).into();
                summary["tags_removed"] = (*removed).into();
                summary["tags_retained"] = (*retained).into();
            }
            Err(err) => {
                close_tasks(run, r.id, "Failed").await?;
                x.status = "Failed".into();
                x.error = err.message.clone();
                summary["error"] = err.message.clone().into();
            }
        }
        x.end_time = store::now();
        summary["status"] = x.status.clone().into();
        summary["dry_run"] = x.dry_run.into();
        ops.push(WriteOp::Put((
            key,
            serde_json::to_vec(&x).expect("executions serialize"),
            Precondition::Version(e.version),
        )));
    }
    run.commit(ops, LEASE_SECONDS).await?;
    Ok(summary)
}

/// Runs execution `r` (or the rest of it): (tasks, tags removed, tags
/// retained) by this run. An error fails the execution.
async fn execute(run: &mut Run, r: &ExecutionRef) -> Result<(u64, u64, u64), SwrError> {
    let Some(execution) = store::get_json::<Execution>(&rp::execution(&r.tenant, r.policy, r.id))
        .await
        .map_err(oci_fault)?
        .filter(|x| x.status == "InProgress")
    else {
        return Ok((0, 0, 0));
    };
    // The policy as it is now: an execution uses its current rules (also
    // when it resumes), and a real one stops if it was disabled.
    let policy = store::get_json::<Policy>(&rp::key(&r.tenant, r.policy))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found("the policy was deleted"))?;
    if !policy.enabled && !execution.dry_run {
        return Err(SwrError::conflict("the policy was disabled"));
    }
    let ns = &policy.namespace;
    let org = store::get_json::<berth_domain::iam::records::Namespace>(
        &berth_domain::iam::records::namespace(ns),
    )
    .await
    .map_err(oci_fault)?
    .filter(|o| o.tenant == policy.tenant && o.id == policy.namespace_id)
    .ok_or_else(|| SwrError::not_found(format!("the organization {ns} was deleted")))?;
    // Tasks already recorded (a resumed execution), by repository.
    let mut tasks: std::collections::HashMap<String, (Task, u64)> =
        store::scan_parsed::<Task>(&rp::tasks_prefix(execution.id))
            .await
            .map_err(fault)?
            .into_iter()
            .map(|(t, e)| (t.repository.clone(), (t, e.version)))
            .collect();
    let prefix = berth_domain::keys::repo(&format!("{}/", org.name));
    let (mut count, mut removed, mut retained) = (0, 0, 0);
    for e in store::scan_all(&prefix).await.map_err(fault)? {
        let name = &e.key[berth_domain::keys::REPO.len()..];
        let rules = policy.rules_for(&e.key[prefix.len()..]);
        if rules.is_empty() {
            continue;
        }
        let task = tasks.remove(name);
        if task.as_ref().is_some_and(|(t, _)| t.status != "InProgress") {
            continue;
        }
        let (r, k) = repository(run, &execution, name, &rules, task).await?;
        count += 1;
        removed += r;
        retained += k;
    }
    // Tasks a cut-off run began whose repository is gone or out of scope
    // since: closed as they are.
    close_tasks(run, execution.id, "Stopped").await?;
    Ok((count, removed, retained))
}

/// One repository's task: plans it, records every tag's sub-task, and in
/// a real run removes what the plan removes. (removed, or planned to be
/// in a dry run; retained), over the tags this run recorded.
async fn repository(
    run: &mut Run,
    execution: &Execution,
    name: &str,
    rules: &[&rp::Rule],
    task: Option<(Task, u64)>,
) -> Result<(u64, u64), SwrError> {
    let (tags, versions) = tags_of(name, true).await?;
    let (tenant, immutable) = store::owner_and_rules(name).await.map_err(oci_fault)?;
    let protection = immutable.protection();
    let now = store::now();
    let plan = rp::plan(rules, &tags, now, |t| protection.protecting(name, t));
    let (mut task, version) = match task {
        Some(t) => t,
        None => {
            let id = *ids(rp::TASK_IDS, 1).await?.start();
            let task = Task {
                id,
                execution_id: execution.id,
                repository: name.to_string(),
                status: "InProgress".into(),
                start_time: now,
                end_time: 0,
                total: plan.len() as u64,
                retained: 0,
            };
            (task, 0)
        }
    };
    let task_key = rp::task(execution.id, task.id);
    let precondition = |v: u64| match v {
        0 => Precondition::Absent,
        v => Precondition::Version(v),
    };
    if version == 0 {
        let ops = vec![WriteOp::Put((
            task_key.clone(),
            serde_json::to_vec(&task).expect("tasks serialize"),
            Precondition::Absent,
        ))];
        if !run.commit(ops, LEASE_SECONDS).await? {
            return Err(SwrError::conflict(format!("task of {name} written twice")));
        }
    }
    // Tags this task recorded before a restart.
    let sub_prefix = rp::subtasks_prefix(execution.id, task.id);
    let recorded: std::collections::HashSet<String> = store::scan_names(&sub_prefix)
        .await
        .map_err(fault)?
        .into_iter()
        .collect();
    let plan: Vec<Decision> = plan
        .into_iter()
        .filter(|d| !recorded.contains(&d.tag))
        .collect();
    let mut sub_ids = ids(rp::SUBTASK_IDS, plan.len()).await?;
    let subtask = |d: &Decision, id: u64, action: &str, status: &str, text: String| {
        store::put_json(
            rp::subtask(execution.id, task.id, &d.tag),
            &Subtask {
                id,
                tag: d.tag.clone(),
                digest: d.digest.clone(),
                action: action.into(),
                status: status.into(),
                status_text: text,
                op_time: store::now(),
            },
        )
    };
    // The id a removal's sub-task took, kept if the removal did not happen.
    let mut reserved: std::collections::HashMap<String, u64> = Default::default();
    let done: Vec<Done> = if execution.dry_run {
        plan.iter()
            .map(|d| if d.remove { Done::Gone } else { Done::Kept })
            .collect()
    } else {
        carry_out(
            run,
            Removal {
                repository: name,
                tenant: tenant.as_deref().unwrap_or_default(),
                operator: &format!(
                    "retention policy {} execution {}",
                    execution.policy_id, execution.id
                ),
            },
            &plan,
            &tags,
            &versions,
            |d| {
                let id = next(&mut sub_ids);
                reserved.insert(d.tag.clone(), id);
                vec![subtask(d, id, "DEL", "Succeed", d.reason.clone())]
            },
        )
        .await?
    };
    // Everything not removed is recorded in batches.
    let mut ops = Vec::new();
    let mut removed = 0;
    for (d, outcome) in plan.iter().zip(&done) {
        let id = match reserved.remove(&d.tag) {
            Some(id) => id,
            None => next(&mut sub_ids),
        };
        let op = match (outcome, execution.dry_run) {
            (Done::Removed, _) => {
                removed += 1;
                continue;
            }
            (Done::Kept, _) => subtask(d, id, "RETAIN", "Succeed", d.reason.clone()),
            // A dry run's removal: planned, not carried out.
            (Done::Gone, true) => {
                removed += 1;
                let text = format!("dry run, not removed: {}", d.reason);
                subtask(d, id, "DEL", "Succeed", text)
            }
            (Done::Gone, false) => subtask(
                d,
                id,
                "DEL",
                "Failed",
                "the tag was deleted meanwhile".into(),
            ),
            (Done::Stayed, _) => subtask(
                d,
                id,
                "DEL",
                "Failed",
                format!(
                    "kept: the tag moved, was pushed again or its image stayed since the plan ({})",
                    d.reason
                ),
            ),
        };
        ops.push(op);
        if ops.len() == BATCH {
            run.commit(std::mem::take(&mut ops), LEASE_SECONDS).await?;
        }
    }
    if !ops.is_empty() {
        run.commit(ops, LEASE_SECONDS).await?;
    }
    // The task's figures, over every sub-task it recorded (with those of
    // a run cut off).
    let all: Vec<Subtask> = store::scan_json(&sub_prefix).await.map_err(fault)?;
    task.total = all.len() as u64;
    task.retained = all
        .iter()
        .filter(|s| s.action == "RETAIN" || s.status == "Failed")
        .count() as u64;
    task.status = "Succeed".into();
    task.end_time = store::now();
    let current = store::get(&task_key).await.map_err(oci_fault)?;
    let ops = vec![WriteOp::Put((
        task_key,
        serde_json::to_vec(&task).expect("tasks serialize"),
        precondition(current.map(|e| e.version).unwrap_or(0)),
    ))];
    run.commit(ops, LEASE_SECONDS).await?;
    let retained = plan.len() as u64 - removed;
    Ok((removed, retained))
}

fn next(ids: &mut std::ops::RangeInclusive<u64>) -> u64 {
    ids.next().unwrap_or_default()
}
