//! The scrub: storage listed against metadata, every blob hashed again.
//! A job of its own (`POST /berth/jobs/scrub/tick`, for the system
//! tenant's administrators; `GET /berth/jobs/scrub` has the last report),
//! run on demand: it reads every byte stored. It holds the gc job's lease
//! too, so no collection runs meanwhile.
//!
//! What it finds, and what it repairs (only what is safe):
//! - **orphans**: bytes that no repository links and no manifest
//!   references: queued for collection (deleted after the grace window by
//!   the usual protocol, so an upload racing the scrub is safe);
//! - **corrupt** blobs, whose bytes no longer hash to their digest: their
//!   links go and the bytes are deleted, so clients see them missing and
//!   the next push uploads them again, instead of pulling bad bytes; the
//!   manifests that reference them are reported;
//! - **missing** blobs, linked by a repository but absent from storage:
//!   the link goes (a push then uploads the blob again); the manifests
//!   that reference them are reported, since only a push can repair them;
//! - links without their collection index entry get it back.

use crate::LEASE_SECONDS;
use berth_domain::gc::{self, Candidate, Holder};
use berth_domain::keys;
use berth_domain::swr::SwrError;
use berth_guest::jobs::Run;
use berth_guest::manage::fault;
use berth_guest::store::{self, Precondition, WriteOp, blobs, metadata};

const PAGE: u32 = 200;
/// Findings listed in the report, per kind (all are counted).
const LISTED: usize = 100;

#[derive(Default, serde::Serialize)]
struct Report {
    blobs_checked: u64,
    bytes_checked: u64,
    links_checked: u64,
    orphans: u64,
    orphans_queued: Vec<String>,
    corrupt_total: u64,
    corrupt: Vec<serde_json::Value>,
    missing_total: u64,
    missing: Vec<serde_json::Value>,
    links_removed: u64,
    index_entries_restored: u64,
}

/// The manifests (`repository@digest`) that reference `digest`.
async fn referenced_by(digest: &str) -> Result<Vec<String>, SwrError> {
    let prefix = gc::references_prefix(digest);
    Ok(store::scan_names(&prefix)
        .await
        .map_err(fault)?
        .into_iter()
        .filter_map(|rest| {
            // `<repository>:<algorithm>:<hex>`
            let (repo_alg, hex) = rest.rsplit_once(':')?;
            let (repo, alg) = repo_alg.rsplit_once(':')?;
            Some(format!("{repo}@{alg}:{hex}"))
        })
        .collect())
}

/// Runs the scrub holding the gc job's lease as well, so no collection
/// runs meanwhile (they share tombstones); 409 while one does.
pub async fn run(scrub: &mut Run) -> Result<serde_json::Value, SwrError> {
    let _ = scrub;
    let mut gc =
        berth_guest::jobs::begin(crate::JOB, LEASE_SECONDS, berth_guest::jobs::Trigger::Tick)
            .await
            .map_err(|e| {
                SwrError::conflict(format!(
                    "the scrub waits for the running garbage collection: {}",
                    e.message
                ))
            })?;
    let result = check(&mut gc).await;
    gc.release().await;
    result
}

async fn check(run: &mut Run) -> Result<serde_json::Value, SwrError> {
    let mut report = Report::default();
    let now = store::now();
    // Storage against metadata.
    let mut after: Option<String> = None;
    loop {
        let page = blobs::list(after.clone(), PAGE).await.map_err(fault)?;
        for info in &page {
            let digest = &info.digest;
            report.blobs_checked += 1;
            report.bytes_checked += info.size;
            let actual = blobs::verify(digest.clone()).await.map_err(fault)?;
            if actual.as_ref().is_some_and(|a| a != digest) {
                let by = referenced_by(digest).await?;
                // The tombstone first (writers that link the blob check it
                // is absent), then every link as it is now, the bytes, and
                // the tombstone again.
                let tombstone = WriteOp::Put((
                    gc::doomed(digest),
                    serde_json::to_vec(&gc::Tombstone {
                        since: now,
                        candidate: Candidate::blob(digest, now),
                    })
                    .expect("tombstones serialize"),
                    Precondition::Absent,
                ));
                if run.commit(vec![tombstone], LEASE_SECONDS).await? {
                    let prefix = gc::holders_prefix(digest);
                    let holders = store::scan_all(&prefix).await.map_err(fault)?;
                    let mut ops = Vec::new();
                    for h in &holders {
                        let repository = &h.key[prefix.len()..];
                        ops.push(store::delete(keys::blob_link(repository, digest)));
                        ops.push(store::delete(h.key.clone()));
                    }
                    if run.commit(ops, LEASE_SECONDS).await? {
                        blobs::delete(digest.clone()).await.map_err(fault)?;
                        report.links_removed += holders.len() as u64;
                    }
                    run.commit(vec![store::delete(gc::doomed(digest))], LEASE_SECONDS)
                        .await?;
                }
                report.corrupt_total += 1;
                if report.corrupt.len() < LISTED {
                    report.corrupt.push(serde_json::json!({
                        "digest": digest,
                        "hashes_to": actual,
                        "referenced_by": by,
                    }));
                }
                continue;
            }
            let holders = metadata::scan(gc::holders_prefix(digest), None, 1)
                .await
                .map_err(fault)?;
            let referenced = !metadata::scan(gc::references_prefix(digest), None, 1)
                .await
                .map_err(fault)?
                .is_empty();
            if holders.is_empty() && !referenced {
                report.orphans += 1;
                run.commit(
                    vec![berth_guest::gc::enqueue(&Candidate::blob(digest, now))],
                    LEASE_SECONDS,
                )
                .await?;
                if report.orphans_queued.len() < LISTED {
                    report.orphans_queued.push(digest.clone());
                }
            }
        }
        if page.len() < PAGE as usize {
            break;
        }
        after = page.last().map(|i| i.digest.clone());
    }
    // Metadata against storage: every link.
    let mut after: Option<String> = None;
    loop {
        let page = metadata::scan("blob/".to_string(), after.clone(), PAGE)
            .await
            .map_err(fault)?;
        for e in &page {
            let Some((repository, digest)) = e.key["blob/".len()..].split_once(':') else {
                continue;
            };
            report.links_checked += 1;
            if blobs::stat(digest.to_string())
                .await
                .map_err(fault)?
                .is_none()
            {
                let ops = vec![
                    WriteOp::Delete((e.key.clone(), Precondition::Version(e.version))),
                    store::delete(gc::holder(digest, repository)),
                ];
                if run.commit(ops, LEASE_SECONDS).await? {
                    report.links_removed += 1;
                }
                report.missing_total += 1;
                if report.missing.len() < LISTED {
                    report.missing.push(serde_json::json!({
                        "repository": repository,
                        "digest": digest,
                        "referenced_by": referenced_by(digest).await?,
                    }));
                }
            } else if store::get(&gc::holder(digest, repository))
                .await
                .map_err(berth_guest::manage::oci_fault)?
                .is_none()
            {
                let holder = Holder { linked: now };
                run.commit(
                    vec![store::put_json(gc::holder(digest, repository), &holder)],
                    LEASE_SECONDS,
                )
                .await?;
                report.index_entries_restored += 1;
            }
        }
        if page.len() < PAGE as usize {
            break;
        }
        after = page.last().map(|e| e.key.clone());
    }
    Ok(serde_json::to_value(&report).expect("reports serialize"))
}
