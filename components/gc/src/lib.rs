//! Garbage collection, a scheduled job (`berth_domain::jobs`): spin.toml
//! runs it on a `[[trigger.cron]]` schedule, and `POST /berth/jobs/gc/tick`
//! runs it on demand; its lease keeps one run at a time.
//!
//! A run collects blobs and manifests that became garbage, by the
//! lock-free protocol of `berth_domain::gc` (after `gc_grace_seconds`, with
//! `gc_fence_seconds` between marking a blob and deleting it); removes
//! abandoned uploads: upload sessions untouched for
//! `upload_expiry_seconds` (their bytes and their records), and records
//! whose bytes are gone (a crash between the two, a lost disk); and events
//! older than `event_retention_days` that every consumer has read
//! (`berth_domain::events::prunable`); and audit records older than
//! `audit_retention_days` (at least 7: `berth_domain::audit`), and console
//! sessions past their end.
//!
//! - `POST /berth/jobs/gc/tick`: runs now; 200 with what the run did, 409
//!   while another run holds the lease.
//! - `GET /berth/jobs/gc`: whether a run is under way, and the last run.
//! - `POST /berth/jobs/scrub/tick`, `GET /berth/jobs/scrub`: the scrub
//!   ([`scrub`]), a job of its own run on demand.
//!
//! Both for a host's scheduler (a job token) or an administrator of the
//! system tenant (`Basic`); errors in SWR's format, as the admin API's.

use berth_domain::keys;
use berth_domain::swr::SwrError;
use berth_guest::jobs;
use berth_guest::manage::{fault, oci_fault as fault_oci};
use berth_guest::store::{self, Precondition, StoreError, WriteOp, metadata, uploads};
use spin_sdk::wasip3::http::types::{ErrorCode, Request, Response};

mod collect;
mod index;
mod scrub;
mod tasks;

struct Gc;
spin_sdk::wasip3::http::service::export!(Gc);

pub(crate) const JOB: &str = "gc";
/// How long a run may hold the lease before another may take over (each
/// commit of the run renews it).
pub(crate) const LEASE_SECONDS: u64 = 600;
/// Upload records examined per metadata page.
const PAGE: u32 = 500;

impl spin_sdk::wasip3::exports::http::handler::Guest for Gc {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        if path.starts_with("/berth/jobs/scrub") {
            return jobs::serve(request, "scrub", LEASE_SECONDS, scrub::run).await;
        }
        jobs::serve(request, JOB, LEASE_SECONDS, collect).await
    }
}

/// One collection: what it removed.
async fn collect(run: &mut jobs::Run) -> Result<serde_json::Value, SwrError> {
    let indexed = index::ensure(run).await?;
    let grace = store::limit("gc_grace_seconds", berth_domain::gc::GRACE_SECONDS);
    // At least a second: a mark and the deletion never share one.
    let fence = store::limit("gc_fence_seconds", berth_domain::gc::FENCE_SECONDS).max(1);
    let scheduled = tasks::schedule(run).await?;
    let tasks_run = tasks::run_requested(run, grace, fence).await?;
    let tasks_pruned = tasks::prune(run).await?;
    let mut collector = collect::Collector::new(
        run,
        collect::Settings {
            grace,
            fence,
            untagged: None,
            task: None,
            figures: None,
            scope: None,
            dry_run: false,
        },
    );
    collector.pass().await?;
    let outcome = collector.outcome;
    let idle = store::limit("upload_expiry_seconds", 24 * 3600);
    let files = uploads::expire(idle).await.map_err(fault)?;
    // Records whose upload is gone: those just expired, and orphans.
    let prefix = keys::upload("");
    let mut after: Option<String> = None;
    let mut records = 0u32;
    loop {
        let page = metadata::scan(prefix.clone(), after.clone(), PAGE)
            .await
            .map_err(fault)?;
        let mut ops = Vec::new();
        for e in &page {
            let id = &e.key[prefix.len()..];
            match uploads::size(id.to_string()).await {
                Err(StoreError::NotFound | StoreError::Invalid(_)) => {
                    ops.push(WriteOp::Delete((
                        e.key.clone(),
                        Precondition::Version(e.version),
                    )));
                }
                Ok(_) => {}
                Err(e) => return Err(fault(e)),
            }
        }
        if !ops.is_empty() {
            let n = ops.len() as u32;
            // A record changed meanwhile (its upload finished): the next
            // run looks again.
            if run.commit(ops, LEASE_SECONDS).await? {
                records += n;
            }
        }
        if page.len() < PAGE as usize {
            break;
        }
        after = page.last().map(|e| e.key.clone());
    }
    let (events_removed, event_retention_days) = prune_events(run).await?;
    let (audit_removed, audit_retention_days) = prune_audit().await?;
    let sessions_removed = prune_sessions().await?;
    Ok(serde_json::json!({
        "collection": outcome,
        "gc_grace_seconds": grace,
        "gc_fence_seconds": fence,
        "index_rebuilt": indexed,
        "tasks_scheduled": scheduled,
        "tasks_run": tasks_run,
        "tasks_pruned": tasks_pruned,
        "uploads_expired": files,
        "upload_records_removed": records,
        "upload_expiry_seconds": idle,
        "events_removed": events_removed,
        "event_retention_days": event_retention_days,
        "audit_records_removed": audit_removed,
        "audit_retention_days": audit_retention_days,
        "console_sessions_removed": sessions_removed,
    }))
}

/// Removes console sessions past their end (`berth_domain::console`).
async fn prune_sessions() -> Result<u64, SwrError> {
    use berth_domain::console::{PREFIX, Session};
    let now = store::now();
    let mut after: Option<String> = None;
    let mut removed = 0u64;
    loop {
        let page = metadata::scan(PREFIX.to_string(), after.clone(), PAGE)
            .await
            .map_err(fault)?;
        let ops: Vec<WriteOp> = page
            .iter()
            .filter(|e| serde_json::from_slice::<Session>(&e.value).is_ok_and(|s| s.expired(now)))
            .map(|e| WriteOp::Delete((e.key.clone(), Precondition::Version(e.version))))
            .collect();
        if !ops.is_empty() {
            let n = ops.len() as u64;
            // A session signed out meanwhile: gone anyway.
            match store::commit(ops).await {
                Ok(_) => removed += n,
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(fault(e)),
            }
        }
        if page.len() < PAGE as usize {
            return Ok(removed);
        }
        after = page.last().map(|e| e.key.clone());
    }
}

/// Audit records removed per run at most (the next run goes on).
const AUDIT_BUDGET: usize = 100_000;

/// Removes every tenant's audit records past the retention; returns how
/// many, and the retention in days. A setting below the minimum is
/// logged and the default kept, so a typo never shortens the log.
async fn prune_audit() -> Result<(u64, u64), SwrError> {
    use berth_domain::audit;
    let retention =
        audit::retention_seconds(store::config::get(audit::RETENTION_SETTING).as_deref())
            .unwrap_or_else(|e| {
                eprintln!(
                    "{e}; keeping audit records {} days",
                    audit::DEFAULT_RETENTION_DAYS
                );
                audit::DEFAULT_RETENTION_DAYS * 86_400
            });
    let cutoff = store::now().saturating_sub(retention);
    let mut removed = 0u64;
    for tenant in store::scan_names("iam/tenant/").await.map_err(fault)? {
        let budget = AUDIT_BUDGET.saturating_sub(removed as usize);
        if budget == 0 {
            break;
        }
        removed += berth_guest::audit::prune(&tenant, cutoff, budget)
            .await
            .map_err(fault)? as u64;
    }
    Ok((removed, retention / 86_400))
}

/// Removes the oldest events that every consumer is done with (the webhook
/// trigger: events up to its cursor, the last it fanned out, and below
/// every delivery still pending; the replication job: up to its cursor),
/// up to the retention; returns how many, and the retention in days.
async fn prune_events(run: &mut jobs::Run) -> Result<(u64, u64), SwrError> {
    use berth_domain::events::{self, Event};
    let days = store::limit("event_retention_days", events::RETENTION_DAYS);
    let cutoff_ns =
        (store::now_ns() as u64).saturating_sub(days.saturating_mul(86_400_000_000_000));
    use berth_domain::webhooks as wh;
    let cursor = store::get(wh::CURSOR)
        .await
        .map_err(fault_oci)?
        .and_then(|e| String::from_utf8_lossy(&e.value).parse::<u64>().ok());
    // The replication job's cursor too, once it has one (a deployment
    // that never runs it must not keep every event forever).
    let replicated = store::get(berth_domain::replication::runs::CURSOR)
        .await
        .map_err(fault_oci)?
        .and_then(|e| String::from_utf8_lossy(&e.value).parse::<u64>().ok());
    // An event still to be delivered stays (its retries read it): below
    // the lowest pending one of every policy and trigger.
    let mut consumed = match (cursor, replicated) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    for first in store::first_of_groups(wh::PENDING).await.map_err(fault)? {
        if let Some((_, event)) = wh::parse_pending(&first.key) {
            consumed = consumed.map(|c| c.min(event.saturating_sub(1)));
        }
    }
    let mut removed = 0u64;
    loop {
        // The log is in commit order, so the oldest come first.
        let page = metadata::scan(events::PREFIX.to_string(), None, PAGE)
            .await
            .map_err(fault)?;
        let ops: Vec<WriteOp> = page
            .iter()
            .map_while(|e| {
                let ev = Event::parse(&e.key, &e.value)?;
                events::prunable(ev.id, ev.record.time_ns, cutoff_ns, consumed)
                    .then(|| store::delete(e.key.clone()))
            })
            .collect();
        let (n, whole_page) = (ops.len(), ops.len() == page.len());
        if n == 0 || !run.commit(ops, LEASE_SECONDS).await? {
            break;
        }
        removed += n as u64;
        if !whole_page || page.len() < PAGE as usize {
            break;
        }
    }
    Ok((removed, days))
}
