//! Two scheduled jobs (`berth_domain::jobs`) that age tags out:
//!
//! - `aging`, the sweep of the shared edition: applies every repository's
//!   aging rule (`berth_domain::retention`): plans each repository's tags,
//!   and removes those the rule removes — each in its own commit with its
//!   `tag.aged_out` event and its history entry, and only if the tag still
//!   points at the manifest planned (a push meanwhile wins). Manifests
//!   stay (untagged: garbage collection's to judge).
//! - `retention`, the enterprise edition's retention policies
//!   ([`policies`]): runs the executions the API and the policies'
//!   schedules ask for.
//!
//! Each: `POST /berth/jobs/<job>/tick` runs now (200 with what the run
//! did, 409 while another run holds the lease); `GET /berth/jobs/<job>`
//! says whether a run is under way, and the last run.

use berth_domain::events::{EventKind, EventRecord};
use berth_domain::keys::{self, TagInfo};
use berth_domain::retention::{self as rt, HistoryEntry, Retention, TagFacts};
use berth_domain::swr::SwrError;
use berth_guest::jobs;
use berth_guest::manage::{fault, oci_fault};
use berth_guest::store::{self, Precondition, WriteOp, metadata};
use spin_sdk::wasip3::http::types::{ErrorCode, Request, Response};

mod policies;

struct Aging;
spin_sdk::wasip3::http::service::export!(Aging);

const JOB: &str = "aging";
const LEASE_SECONDS: u64 = 600;

impl spin_sdk::wasip3::exports::http::handler::Guest for Aging {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        // One component, two jobs with their own leases and schedules.
        let path = request.get_path_with_query().unwrap_or_default();
        if path.starts_with(&format!("/berth/jobs/{}", policies::JOB)) {
            jobs::serve(request, policies::JOB, LEASE_SECONDS, policies::run).await
        } else {
            jobs::serve(request, JOB, LEASE_SECONDS, sweep).await
        }
    }
}

/// Every tag of `repository` with the time it was last pushed (and, if
/// `pulls`, when its manifest was last pulled), and the version of its
/// `mtag/` record (a push of the tag rewrites it, so a removal
/// conditioned on it loses to any push since the plan).
pub(crate) async fn tags_of(
    repository: &str,
    pulls: bool,
) -> Result<(Vec<TagFacts>, Vec<u64>), SwrError> {
    let prefix = format!("mtag/{repository}:");
    let entries = store::scan_all(&prefix).await.map_err(fault)?;
    let mut facts = Vec::new();
    let mut versions = Vec::new();
    let mut undated = Vec::new();
    for e in entries {
        // `<digest>:<tag>`: tags hold no `:`, digests do.
        let Some((digest, tag)) = e.key[prefix.len()..].rsplit_once(':') else {
            continue;
        };
        let pushed = serde_json::from_slice::<TagInfo>(&e.value)
            .map(|i| i.updated)
            .unwrap_or(0);
        if pushed == 0 {
            undated.push(facts.len());
        }
        facts.push(TagFacts {
            tag: tag.to_string(),
            digest: digest.to_string(),
            pushed,
            order: e.version,
            pulled: 0,
        });
        versions.push(e.version);
    }
    // Records from before tags kept their time: the manifest's.
    if !undated.is_empty() {
        let wanted = undated
            .iter()
            .map(|&i| keys::manifest(repository, &facts[i].digest))
            .collect();
        let found = metadata::get_many(wanted).await.map_err(fault)?;
        for (&i, e) in undated.iter().zip(found) {
            if let Some(e) = e
                && let Some((record, _)) = keys::decode_manifest(&e.value)
            {
                facts[i].pushed = record.created;
            }
        }
    }
    if pulls && !facts.is_empty() {
        let wanted = facts
            .iter()
            .map(|t| keys::pulled(repository, &t.digest))
            .collect();
        let pulled = metadata::counters(wanted).await.map_err(fault)?;
        for (t, p) in facts.iter_mut().zip(pulled) {
            t.pulled = p.max(0) as u64;
        }
    }
    Ok((facts, versions))
}

/// The digest a signature tag (`sha256-<hex>.sig` …) signs.
fn signed_image(tag: &str) -> Option<String> {
    berth_domain::immutable::is_signature_tag(tag)
        .then(|| format!("sha256:{}", &tag["sha256-".len().."sha256-".len() + 64]))
}

async fn sweep(run: &mut jobs::Run) -> Result<serde_json::Value, SwrError> {
    let rules: Vec<Retention> = store::scan_all(rt::ALL)
        .await
        .map_err(fault)?
        .iter()
        .filter_map(|e| serde_json::from_slice(&e.value).ok())
        .collect();
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

/// Where tags are removed, and in whose name.
pub(crate) struct Removal<'a> {
    pub repository: &'a str,
    /// The repository's tenant (events are theirs).
    pub tenant: &'a str,
    /// The rule or policy removing them (the events' `operator`).
    pub operator: &'a str,
}

/// What became of one decision of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Done {
    /// The plan keeps it.
    Kept,
    /// Removed, with its event and record.
    Removed,
    /// The plan removes it, but it stays: moved or pushed again since the
    /// plan, or a signature of an image that stayed.
    Stayed,
    /// Already gone (deleted meanwhile).
    Gone,
}

/// Carries out `plan` (of `tags`, read at `versions`) in repository
/// `name` of `tenant`: removes each tag it removes in its own commit,
/// with its `tag.aged_out` event (by `operator`, the rule or policy) and
/// the records `record` gives, only if
/// the tag still points at the manifest planned (a push meanwhile wins)
/// and the run still holds its lease. Manifests stay (untagged: garbage
/// collection's to judge). What became of each decision, in plan order.
pub(crate) async fn carry_out(
    run: &mut jobs::Run,
    Removal {
        repository: name,
        tenant,
        operator,
    }: Removal<'_>,
    plan: &[rt::Decision],
    tags: &[TagFacts],
    versions: &[u64],
    mut record: impl FnMut(&rt::Decision) -> Vec<WriteOp>,
) -> Result<Vec<Done>, SwrError> {
    let version_of = |tag: &str, digest: &str| {
        tags.iter()
            .position(|t| t.tag == tag && t.digest == digest)
            .map(|i| versions[i])
    };
    let now = store::now();
    // Images one of whose planned removals did not happen: their
    // signatures stay (the plan puts signatures after images).
    let mut stayed: std::collections::HashSet<String> = Default::default();
    let mut out = Vec::with_capacity(plan.len());
    for d in plan {
        if !d.remove {
            out.push(Done::Kept);
            continue;
        }
        if let Some(subject) = signed_image(&d.tag)
            && stayed.contains(&subject)
        {
            out.push(Done::Stayed);
            continue;
        }
        let key = keys::tag(name, &d.tag);
        let (Some(current), Some(planned)) = (
            store::get(&key).await.map_err(oci_fault)?,
            version_of(&d.tag, &d.digest),
        ) else {
            out.push(Done::Gone);
            continue;
        };
        if current.value != d.digest.as_bytes() {
            // Moved meanwhile: newer than the plan knew.
            out.push(Done::Stayed);
            stayed.insert(d.digest.clone());
            continue;
        }
        let mut event =
            EventRecord::new(EventKind::TagAgedOut, tenant, name, store::now_ns() as u64).about(
                Some(&d.tag),
                &d.digest,
                None,
            );
        event.operator = operator.to_string();
        let mut ops = vec![
            WriteOp::Delete((key, Precondition::Version(current.version))),
            // Pushed again since the plan (even the same manifest): kept.
            WriteOp::Delete((
                keys::manifest_tag(name, &d.digest, &d.tag),
                Precondition::Version(planned),
            )),
            store::event(&event),
            // The manifest may have lost its last tag: garbage collection
            // looks at it after the grace window.
            berth_guest::gc::enqueue(&berth_domain::gc::Candidate::manifest(name, &d.digest, now)),
        ];
        ops.extend(record(d));
        if run.commit(ops, LEASE_SECONDS).await? {
            out.push(Done::Removed);
        } else {
            out.push(Done::Stayed);
            stayed.insert(d.digest.clone());
        }
    }
    Ok(out)
}
