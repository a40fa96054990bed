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
        if berth_guest::gc::active_task(&tenant)
            .await
            .map_err(oci_fault)?
            .is_some()
        {
            // One task at a time per tenant: this time is skipped.
            policy.last_scheduled = now.max(due);
            run.commit(
                vec![WriteOp::Put((
                    e.key.clone(),
                    serde_json::to_vec(&policy).expect("policies serialize"),
                    Precondition::Version(e.version),
                ))],
                LEASE_SECONDS,
            )
            .await?;
            continue;
        }
        // Times missed while nobody ran start one task, not a backlog.
        policy.last_scheduled = now.max(due);
        let (_, mut ops) =
            berth_guest::gc::ask_for_task(&tenant, "SCHEDULE", policy.parameters.clone())
                .await
                .map_err(oci_fault)?;
        ops.push(WriteOp::Put((
            e.key.clone(),
            serde_json::to_vec(&policy).expect("policies serialize"),
            Precondition::Version(e.version),
        )));
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
    // Keep a stop asked for meanwhile.
    if let Some(current) = store::get_json::<Task>(key).await.map_err(oci_fault)? {
        task.stop |= current.stop;
    }
    task.updated = store::now();
    run.commit(
        vec![store::put_json(key.to_string(), &*task)],
        LEASE_SECONDS,
    )
    .await?;
    Ok(())
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
    let settings = || Settings {
        grace,
        fence,
        untagged: Some((tenant.to_string(), task.parameters.delete_untagged)),
        task: Some(key.clone()),
        scope: Some(tenant.to_string()),
        dry_run: task.parameters.dry_run,
    };
    let result: Result<bool, SwrError> = async {
        let mut outcome = crate::collect::Outcome::default();
        let mut finished = true;
        // Deleting a manifest queues its blobs, and marked blobs go after
        // the fence: a few passes let the task free what it found.
        for _ in 0..PASSES {
            let mut collector = Collector::new(run, settings());
            finished = collector.pass().await?;
            let this = collector.outcome;
            outcome.add(&this);
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
        task.purged_blobs = outcome.blobs_deleted;
        task.purged_manifests = outcome.manifests_deleted;
        task.freed_space = outcome.bytes_freed;
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
