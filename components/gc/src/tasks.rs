//! Tenants' GC tasks (SWR enterprise edition, `berth_domain::gc::Task`):
//! the runs `execute_gc_schedule` asks for and those a tenant's schedule
//! starts. The enterprise API records a task `Pending` and appends a
//! request, which wakes this job; the job runs each request as a
//! collection pass with the task's parameters, waits out the fence for
//! the blobs it marked (so a task frees what it found), then a second
//! pass, and records what they freed.

use crate::LEASE_SECONDS;
use crate::collect::{Collector, Settings};
use berth_domain::gc::{self, Policy, Task, TaskRequest};
use berth_domain::swr::SwrError;
use berth_guest::gc::TaskAsk;
use berth_guest::jobs::Run;
use berth_guest::manage::{fault, oci_fault};
use berth_guest::store::{self, Precondition, WriteOp};

/// The longest fence a task waits out; beyond it, the blobs it marked are
/// deleted by a later run and the task reports what it deleted itself.
const MAX_FENCE_WAIT: u64 = 3600;
/// Collection passes a task makes at most.
const PASSES: usize = 6;

/// Starts a task for every tenant whose schedule has come due.
pub async fn schedule(run: &mut Run) -> Result<u32, SwrError> {
    let now = store::now();
    let prefix = gc::policy("");
    let mut started = 0;
    for e in store::scan_all(&prefix).await.map_err(fault)? {
        let tenant = e.key[prefix.len()..].to_string();
        let Ok(mut policy) = serde_json::from_slice::<Policy>(&e.value) else {
            continue;
        };
        let Some(due) = policy.next_run().filter(|&t| t <= now) else {
            continue;
        };
        let newest = store::metadata::scan(gc::tasks_prefix(&tenant), None, 1)
            .await
            .map_err(fault)?;
        let newest = newest
            .first()
            .and_then(|e| serde_json::from_slice::<Task>(&e.value).ok());
        // Times missed while nobody ran start one task, not a backlog.
        policy.last_scheduled = now.max(due);
        let save = WriteOp::Put((
            e.key.clone(),
            serde_json::to_vec(&policy).expect("policies serialize"),
            Precondition::Version(e.version),
        ));
        // One task at a time per tenant: a time that finds one running
        // (now, or when the time came: the job was busy with it) is skipped.
        let ask = if newest.is_some_and(|t| t.created <= due && due <= t.updated) {
            None
        } else {
            match berth_guest::gc::ask_for_task(&tenant, "SCHEDULE", policy.parameters.clone())
                .await
                .map_err(oci_fault)?
            {
                TaskAsk::Ready(_, ops) => Some(ops),
                TaskAsk::Busy(_) => None,
            }
        };
        let Some(mut ops) = ask else {
            run.commit(vec![save], LEASE_SECONDS).await?;
            continue;
        };
        ops.push(save);
        if run.commit(ops, LEASE_SECONDS).await? {
            started += 1;
        }
    }
    Ok(started)
}

/// Runs every requested task, oldest first; how many ran.
pub async fn run_requested(run: &mut Run, grace: u64, fence: u64) -> Result<u32, SwrError> {
    let mut ran = 0;
    for e in store::scan_all(gc::REQUESTS).await.map_err(fault)? {
        let consume = WriteOp::Delete((e.key.clone(), Precondition::Version(e.version)));
        if let Ok(r) = serde_json::from_slice::<TaskRequest>(&e.value) {
            run_task(run, &r.tenant, r.id, grace, fence).await?;
            ran += 1;
        }
        run.commit(vec![consume], LEASE_SECONDS).await?;
    }
    Ok(ran)
}

async fn save(run: &mut Run, key: &str, task: &mut Task) -> Result<(), SwrError> {
    loop {
        // Keep a stop asked for meanwhile; one asked for between this read
        // and the write fails the write, and is read again.
        let current = store::get(key).await.map_err(oci_fault)?;
        let precondition = match &current {
            Some(e) => {
                if let Ok(t) = serde_json::from_slice::<Task>(&e.value) {
                    task.stop |= t.stop;
                }
                Precondition::Version(e.version)
            }
            None => Precondition::Absent,
        };
        task.updated = store::now();
        let value = serde_json::to_vec(&*task).expect("tasks serialize");
        if run
            .commit(
                vec![WriteOp::Put((key.to_string(), value, precondition))],
                LEASE_SECONDS,
            )
            .await?
        {
            return Ok(());
        }
    }
}

async fn run_task(
    run: &mut Run,
    tenant: &str,
    id: u64,
    grace: u64,
    fence: u64,
) -> Result<(), SwrError> {
    let key = gc::task(tenant, id);
    let Some(mut task) = store::get_json::<Task>(&key).await.map_err(oci_fault)? else {
        return Ok(());
    };
    if task.finished() {
        return Ok(());
    }
    if task.stop {
        task.status = "Stopped".into();
        return save(run, &key, &mut task).await;
    }
    task.status = "Running".into();
    save(run, &key, &mut task).await?;
    // What a run of this task cut off by a crash freed.
    let figures_key = gc::task_figures(tenant, id);
    let mut freed: gc::Figures = store::get_json(&figures_key)
        .await
        .map_err(oci_fault)?
        .unwrap_or_default();
    let dry_run = task.parameters.dry_run;
    let settings = |base: gc::Figures| Settings {
        grace,
        fence,
        untagged: Some((tenant.to_string(), task.parameters.delete_untagged)),
        task: Some(key.clone()),
        figures: (!dry_run).then(|| (figures_key.clone(), base)),
        scope: Some(tenant.to_string()),
        dry_run,
    };
    let result: Result<bool, SwrError> = async {
        let mut finished = true;
        // Deleting a manifest queues its blobs, and marked blobs go after
        // the fence: a few passes let the task free what it found.
        for _ in 0..PASSES {
            let mut collector = Collector::new(run, settings(freed));
            finished = collector.pass().await?;
            freed = collector.figures(freed);
            let this = collector.outcome;
            if !finished || task.parameters.dry_run {
                break;
            }
            // Wait for what this pass marked or put back for a moment;
            // garbage due later (the grace) is for later runs.
            match this.next_due {
                Some(due) if fence <= MAX_FENCE_WAIT && due <= store::now() + fence + 1 => {
                    while finished && store::now() < due {
                        spin_sdk::wasip3::clocks::monotonic_clock::wait_for(250_000_000).await;
                        // Renews the lease while it waits.
                        run.commit(Vec::new(), LEASE_SECONDS).await?;
                        let current: Option<Task> =
                            store::get_json(&key).await.map_err(oci_fault)?;
                        finished = current.is_some_and(|t| !t.stop);
                    }
                }
                _ if this.manifests_deleted > 0 => {}
                _ => break,
            }
        }
        task.purged_blobs = freed.blobs;
        task.purged_manifests = freed.manifests;
        task.freed_space = freed.bytes;
        Ok(finished)
    }
    .await;
    match result {
        Ok(true) => task.status = "Success".into(),
        Ok(false) => task.status = "Stopped".into(),
        Err(e) => {
            task.status = "Error".into();
            task.error = Some(e.message.clone());
        }
    }
    save(run, &key, &mut task).await
}

/// Removes each tenant's finished tasks past its newest
/// [`gc::TASKS_KEPT`]; how many.
pub async fn prune(run: &mut Run) -> Result<u32, SwrError> {
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    let mut ops = Vec::new();
    let prefix = gc::TASKS;
    for e in store::scan_all(prefix).await.map_err(fault)? {
        let Some((tenant, _)) = e.key[prefix.len()..].split_once('/') else {
            continue;
        };
        // Newest first in key order.
        let n = seen.entry(tenant.to_string()).or_default();
        *n += 1;
        if *n > gc::TASKS_KEPT
            && let Ok(t) = serde_json::from_slice::<Task>(&e.value)
            && t.finished()
        {
            ops.push(store::delete(gc::task_figures(tenant, t.id)));
            ops.push(WriteOp::Delete((e.key, Precondition::Version(e.version))));
        }
    }
    let mut pruned = 0;
    // Two writes per task, so a chunk never splits one.
    for chunk in ops.chunks(128) {
        // A task changed meanwhile: the next run looks again.
        if run.commit(chunk.to_vec(), LEASE_SECONDS).await? {
            pruned += chunk.len() as u32 / 2;
        }
    }
    Ok(pruned)
}
