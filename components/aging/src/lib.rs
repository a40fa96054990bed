//! The aging sweep, a scheduled job (`berth_domain::jobs`): applies every
//! repository's aging rule (`berth_domain::retention`, SWR shared
//! edition): plans each repository's tags, and removes those the rule
//! removes — each in its own commit with its `tag.aged_out` event and its
//! history entry, and only if the tag still points at the manifest
//! planned (a push meanwhile wins; `berth_guest::retention::carry_out`).
//! Manifests stay (untagged: garbage collection's to judge). The
//! enterprise edition's retention policies are `components/retention`.
//!
//! - `POST /berth/jobs/aging/tick`: runs now; 200 with what the run did,
//!   409 while another run holds the lease.
//! - `GET /berth/jobs/aging`: whether a run is under way, and the last run.

use berth_domain::retention::{self as rt, HistoryEntry, Retention};
use berth_domain::swr::SwrError;
use berth_guest::jobs;
use berth_guest::manage::{fault, oci_fault};
use berth_guest::retention::{Done, LEASE_SECONDS, Removal, carry_out, tags_of};
use berth_guest::store;
use spin_sdk::wasip3::http::types::{ErrorCode, Request, Response};

struct Aging;
spin_sdk::wasip3::http::service::export!(Aging);

const JOB: &str = "aging";

impl spin_sdk::wasip3::exports::http::handler::Guest for Aging {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        jobs::serve(request, JOB, LEASE_SECONDS, sweep).await
    }
}

async fn sweep(run: &mut jobs::Run) -> Result<serde_json::Value, SwrError> {
    let rules: Vec<Retention> = store::scan_json(rt::ALL).await.map_err(fault)?;
    let (mut removed, mut kept, mut failed) = (0u64, 0u64, Vec::new());
    for rule in &rules {
        match apply(run, rule).await {
            Ok((r, k)) => {
                removed += r;
                kept += k;
            }
            // The lease went to another run: it goes on, this one stops.
            Err(e) if !run.still_held().await? => return Err(e),
            // One repository's trouble does not stop the others'.
            Err(e) => failed.push(serde_json::json!({
                "repository": rule.repository, "error": e.message,
            })),
        }
    }
    Ok(serde_json::json!({
        "rules": rules.len(),
        "tags_removed": removed,
        "tags_kept": kept,
        "failed": failed,
    }))
}

/// Applies one rule: (tags removed, tags kept).
async fn apply(run: &mut jobs::Run, rule: &Retention) -> Result<(u64, u64), SwrError> {
    let name = &rule.repository;
    let (tags, versions) = tags_of(name, false).await?;
    let (tenant, immutable) = store::owner_and_rules(name).await.map_err(oci_fault)?;
    let protection = immutable.protection();
    let now = store::now();
    let plan = rt::plan(rule, &tags, now, |t| protection.protecting(name, t))
        .map_err(SwrError::internal)?;
    let rule_type = rule
        .rules
        .first()
        .map(|r| r.template.clone())
        .unwrap_or_default();
    let namespace = name.split('/').next().unwrap_or_default().to_string();
    let removals = plan.iter().filter(|d| d.remove).count();
    let mut seqs = berth_guest::retention::ids(rt::IDS, removals).await?;
    let done = carry_out(
        run,
        Removal {
            repository: name,
            tenant: tenant.as_deref().unwrap_or_default(),
            operator: &format!("aging rule {}", rule.id),
        },
        &plan,
        &tags,
        &versions,
        |d| {
            let entry = HistoryEntry {
                id: seqs.next().unwrap_or_default(),
                retention_id: rule.id,
                namespace: namespace.clone(),
                repo: name.clone(),
                rule_type: rule_type.clone(),
                tag: d.tag.clone(),
                digest: d.digest.clone(),
                reason: d.reason.clone(),
                created: now,
            };
            vec![store::put_json(rt::history_key(name, entry.id), &entry)]
        },
    )
    .await?;
    let removed = done.iter().filter(|d| **d == Done::Removed).count() as u64;
    let kept = done
        .iter()
        .filter(|d| matches!(d, Done::Kept | Done::Stayed))
        .count() as u64;
    Ok((removed, kept))
}
