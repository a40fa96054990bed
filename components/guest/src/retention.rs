//! What the aging sweep (`components/aging`, shared-edition aging rules)
//! and the retention job (`components/retention`, enterprise retention
//! policies) share: reading a repository's tags as the plans need them
//! ([`tags_of`]), carrying out a plan ([`carry_out`]), ids, and starting
//! an execution of a policy ([`ask_for_execution`], also the enterprise
//! API's).

use crate::jobs::Run;
use crate::manage::{fault, oci_fault};
use crate::store::{self, Precondition, WriteOp, metadata};
use berth_domain::events::{EventKind, EventRecord};
use berth_domain::keys::{self, TagInfo};
use berth_domain::retention::policy::{self as rp, Execution, ExecutionRef, Policy};
use berth_domain::retention::{Decision, TagFacts};
use berth_domain::swr::SwrError;

/// The lease both jobs hold while they run (seconds).
pub const LEASE_SECONDS: u64 = 600;

pub use crate::manage::ids;

/// The writes that record a new execution of `policy` in progress and
/// ask the retention job to run it, and its id; 409 while another runs.
/// The writes fail the commit if another execution was asked for since.
pub async fn ask_for_execution(
    policy: &Policy,
    trigger: &str,
    dry_run: bool,
) -> Result<(Vec<WriteOp>, u64), SwrError> {
    // Read before looking for one in progress: an execution asked for
    // after this read conflicts with ours; one before it is seen.
    let latest = store::get(&rp::latest_execution(&policy.tenant, policy.id))
        .await
        .map_err(crate::manage::oci_fault)?;
    let prefix = rp::executions_prefix(&policy.tenant, policy.id);
    let recent = metadata::scan(prefix, None, 1).await.map_err(fault)?;
    if let Some(e) = recent.first()
        && let Ok(x) = serde_json::from_slice::<Execution>(&e.value)
        && x.status == "InProgress"
    {
        return Err(SwrError::conflict(format!(
            "execution {} of retention policy {} is still in progress",
            x.id, policy.id
        )));
    }
    let id = *ids(rp::EXECUTION_IDS, 1).await?.start();
    let execution = Execution {
        id,
        policy_id: policy.id,
        dry_run,
        status: "InProgress".into(),
        trigger: trigger.into(),
        start_time: store::now(),
        end_time: 0,
        error: String::new(),
    };
    let request = ExecutionRef {
        tenant: policy.tenant.clone(),
        policy: policy.id,
        id,
    };
    Ok((
        vec![
            WriteOp::Put((
                rp::execution(&policy.tenant, policy.id, id),
                serde_json::to_vec(&execution).expect("executions serialize"),
                Precondition::Absent,
            )),
            WriteOp::Put((
                rp::latest_execution(&policy.tenant, policy.id),
                id.to_string().into_bytes(),
                match latest {
                    Some(e) => Precondition::Version(e.version),
                    None => Precondition::Absent,
                },
            )),
            WriteOp::Append((
                rp::REQUESTS.to_string(),
                serde_json::to_vec(&request).expect("requests serialize"),
            )),
        ],
        id,
    ))
}

/// Every tag of `repository` with the time it was last pushed (and, if
/// `pulls`, when its manifest was last pulled), and the version of its
/// `mtag/` record (a push of the tag rewrites it, so a removal
/// conditioned on it loses to any push since the plan).
pub async fn tags_of(repository: &str, pulls: bool) -> Result<(Vec<TagFacts>, Vec<u64>), SwrError> {
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

/// Where tags are removed, and in whose name.
pub struct Removal<'a> {
    pub repository: &'a str,
    /// The repository's tenant (events are theirs).
    pub tenant: &'a str,
    /// The rule or policy removing them (the events' `operator`).
    pub operator: &'a str,
}

/// What became of one decision of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
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
pub async fn carry_out(
    run: &mut Run,
    Removal {
        repository: name,
        tenant,
        operator,
    }: Removal<'_>,
    plan: &[Decision],
    tags: &[TagFacts],
    versions: &[u64],
    mut record: impl FnMut(&Decision) -> Vec<WriteOp>,
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
            crate::gc::enqueue(&berth_domain::gc::Candidate::manifest(name, &d.digest, now)),
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
