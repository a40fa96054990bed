//! Online garbage collection: which blobs and manifests are garbage, and
//! the protocol that lets the collector delete them while pushes go on.
//!
//! **The index, kept at write time.** Every manifest push writes one
//! reference key per digest it names ([`reference`]); a delete removes
//! them. Every blob link (upload, mount) writes a holder key per repository
//! ([`holder`]) with the time of the link. Whatever may have turned into
//! garbage — a blob whose last reference went, a manifest that lost its
//! last tag, a fresh upload — is appended to the collection queue
//! ([`QUEUE`]) in the same commit. A run reads only that queue, so its cost
//! follows the garbage and the churn, never the size of the registry.
//!
//! **Grace.** A candidate is looked at once it has been unreferenced for
//! the grace window (`gc_grace_seconds`, default [`GRACE_SECONDS`]).
//!
//! **Collecting a blob without a lock** (pushes never wait on the
//! collector, and never see a manifest whose blob is gone):
//! 1. *Mark*: the candidate's links are rewritten with the mark time
//!    ([`crate::keys::BlobLink::marked`]). From then on a `HEAD`/`GET` of the
//!    blob notes a touch ([`touched`]) and answers 404 while a collection
//!    is under way ([`doomed`]), so a client re-uploads it.
//! 2. At least the fence (`gc_fence_seconds`, default [`FENCE_SECONDS`])
//!    later, *collect*: commit the tombstone [`doomed`] (the key must be
//!    absent), then look again. A reference (a manifest push), a link newer
//!    than the mark (an upload) or a touch since the mark cancels the
//!    collection. Otherwise the links and holders go in one commit, then
//!    the bytes, then the tombstone.
//!
//! Writers take part through preconditions, not locks: a manifest push
//! checks, in its commit, that each blob link it read is unchanged and that
//! no tombstone stands for it; an upload commits its holder (checking no
//! tombstone stands) before it publishes the bytes. Either the push commits
//! first and the collector sees its reference or link, or the collector's
//! tombstone commits first and the push fails its check, re-reads and
//! finds the blob gone (`BLOB_UNKNOWN`: it uploads it again). A client
//! that checked a blob with `HEAD` before the mark and pushes its manifest
//! within the fence is covered by step 2; the fence is how long a client
//! may take between the two.
//!
//! Manifests follow the same steps without the mark: a manifest that lost
//! its last tag (never one pushed by digest alone), or a child of a
//! deleted index, is deleted once nothing tags or references it, if its
//! tenant's policy collects untagged manifests ([`Policy`]).

use serde::{Deserialize, Serialize};

/// Default grace window: how long garbage lingers before collection.
pub const GRACE_SECONDS: u64 = 3600;
/// Default fence between marking a blob and collecting it.
pub const FENCE_SECONDS: u64 = 600;

/// `gcref/<digest>:<repository>:<manifest>` → empty: the manifest (in that
/// repository) references the digest (a layer, a config, an index's
/// child). Digest first, so "is this referenced anywhere" is one scan of
/// one key.
pub fn reference(digest: &str, repository: &str, manifest: &str) -> String {
    format!("gcref/{digest}:{repository}:{manifest}")
}
/// Every reference to `digest`.
pub fn references_prefix(digest: &str) -> String {
    format!("gcref/{digest}:")
}
/// References to `digest` from manifests of one repository.
pub fn references_in(digest: &str, repository: &str) -> String {
    format!("gcref/{digest}:{repository}:")
}

/// `gcholder/<digest>:<repository>` → [`Holder`]: the repository links the
/// blob (`blob/<repository>:<digest>`), since when.
pub fn holder(digest: &str, repository: &str) -> String {
    format!("gcholder/{digest}:{repository}")
}
pub fn holders_prefix(digest: &str) -> String {
    format!("gcholder/{digest}:")
}

/// `gc/doomed/<digest>` → [`Tombstone`]: a collection of the digest is
/// under way; writers that need it check it is absent.
pub const DOOMED: &str = "gc/doomed/";
pub fn doomed(digest: &str) -> String {
    format!("{DOOMED}{digest}")
}

/// `gc/touched/<digest>` → seconds as decimal text, written by a
/// `HEAD`/`GET` of a marked blob: the last time a client looked at it.
pub fn touched(digest: &str) -> String {
    format!("gc/touched/{digest}")
}

/// The collection queue: [`Candidate`]s appended in commit order.
pub const QUEUE: &str = "gc/queue/";

/// `gc/untagged/<tenant>/<repository>:<digest>` → [`Candidate`]: an
/// untagged manifest its tenant's policy kept, looked at again when a
/// task or a later policy collects untagged manifests.
pub const UNTAGGED: &str = "gc/untagged/";
pub fn untagged(tenant: &str, repository: &str, digest: &str) -> String {
    format!("{UNTAGGED}{tenant}/{repository}:{digest}")
}

/// `gc/latest-task/<tenant>` → the id of the tenant's newest task: every
/// new task rewrites it under a precondition, so of two asked for at once
/// one conflicts (one task at a time per tenant).
pub fn latest_task(tenant: &str) -> String {
    format!("gc/latest-task/{tenant}")
}

/// `gc/policy/<tenant>` → [`Policy`].
pub fn policy(tenant: &str) -> String {
    format!("gc/policy/{tenant}")
}

/// `gc/indexed` → the version of the index this store holds; absent in a
/// store written before the index existed, which the collector indexes
/// once (walking every manifest and link) before it collects anything.
pub const INDEXED: &str = "gc/indexed";
pub const INDEX_VERSION: u64 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// When the repository last linked the blob (seconds).
    pub linked: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// When the collection began (seconds).
    pub since: u64,
    /// What to queue again if the collector dies holding the tombstone.
    pub candidate: Candidate,
}

/// What may have become garbage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Candidate {
    /// A blob, in every repository that links it.
    Blob {
        digest: String,
        /// When it may have become garbage (seconds).
        since: u64,
        /// When its links were marked, once they are.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        marked: Option<u64>,
    },
    /// A manifest of one repository.
    Manifest {
        repository: String,
        digest: String,
        since: u64,
    },
}

impl Candidate {
    pub fn blob(digest: &str, since: u64) -> Candidate {
        Candidate::Blob {
            digest: digest.to_string(),
            since,
            marked: None,
        }
    }

    pub fn manifest(repository: &str, digest: &str, since: u64) -> Candidate {
        Candidate::Manifest {
            repository: repository.to_string(),
            digest: digest.to_string(),
            since,
        }
    }

    pub fn digest(&self) -> &str {
        match self {
            Candidate::Blob { digest, .. } | Candidate::Manifest { digest, .. } => digest,
        }
    }

    /// When the candidate is next due: the grace after it became garbage,
    /// or the fence after its mark.
    pub fn due(&self, grace: u64, fence: u64) -> u64 {
        match self {
            Candidate::Blob {
                marked: Some(m), ..
            } => m.saturating_add(fence),
            Candidate::Blob { since, .. } | Candidate::Manifest { since, .. } => {
                since.saturating_add(grace)
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("candidates serialize")
    }
}

/// A tenant's collection settings, `gc/policy/<tenant>`: SWR's GC schedule
/// (`update_gc_schedule`, the SDK's `ScheduleObj` and `GcParameters`).
/// `delete_untagged` is also the policy of the background collection for
/// the tenant's manifests; without a record, the deployment's
/// `gc_delete_untagged` decides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// `None` (no scheduled runs) or `Custom` (runs on `cron`).
    pub schedule_type: String,
    /// 6 fields with seconds, UTC, when `Custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    pub parameters: Parameters,
    /// The last scheduled time a run was started for (seconds; 0: none).
    #[serde(default)]
    pub last_scheduled: u64,
    /// When the schedule was set (seconds): the first run is the first
    /// time after it.
    #[serde(default)]
    pub updated: u64,
}

/// The SDK's `GcParameters`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// Parallel workers, 1 to 5 (SWR's bounds). Berth's collector is one
    /// sequence of small commits, so the figure is kept and reported, not
    /// used.
    pub workers: u8,
    /// Whether manifests that lost their last tag are deleted.
    #[serde(default)]
    pub delete_untagged: bool,
    /// Report what would be deleted, delete nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl Parameters {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=5).contains(&self.workers) {
            return Err(format!(
                "parameters.workers must be 1 to 5, not {}",
                self.workers
            ));
        }
        Ok(())
    }
}

impl Policy {
    /// The schedule of `update_gc_schedule`'s body, checked.
    pub fn new(
        schedule_type: &str,
        cron: Option<&str>,
        parameters: Parameters,
        now: u64,
    ) -> Result<Policy, String> {
        parameters.validate()?;
        let cron = match (schedule_type, cron.map(str::trim).filter(|c| !c.is_empty())) {
            ("None", _) => None,
            ("Custom", Some(c)) => {
                parse_cron(c)?;
                Some(c.to_string())
            }
            ("Custom", None) => return Err("schedule.cron is required for type Custom".into()),
            (other, _) => {
                return Err(format!(
                    "schedule.type must be None or Custom, not {}",
                    crate::swr::quoted(other)
                ));
            }
        };
        Ok(Policy {
            schedule_type: schedule_type.to_string(),
            cron,
            parameters,
            last_scheduled: 0,
            updated: now,
        })
    }

    /// The next scheduled time after the last one run (or after the
    /// schedule was set), if the schedule has one.
    pub fn next_run(&self) -> Option<u64> {
        let cron = self.cron.as_deref()?;
        next_time(cron, self.last_scheduled.max(self.updated))
    }
}

/// A 6-field cron expression (seconds first, UTC), as `[[trigger.cron]]`.
pub fn parse_cron(expression: &str) -> Result<cron::Schedule, String> {
    if expression.split_whitespace().count() != 6 {
        return Err(format!(
            "cron {} must have 6 fields: second minute hour day month weekday",
            crate::swr::quoted(expression)
        ));
    }
    expression
        .parse::<cron::Schedule>()
        .map_err(|e| format!("cron {} is invalid: {e}", crate::swr::quoted(expression)))
}

/// The first time of `expression` strictly after `after` (seconds).
pub fn next_time(expression: &str, after: u64) -> Option<u64> {
    let schedule = parse_cron(expression).ok()?;
    let after = chrono::DateTime::<chrono::Utc>::from_timestamp(after as i64, 0)?;
    schedule
        .after(&after)
        .next()
        .map(|t| t.timestamp().max(0) as u64)
}

/// `gc/task/<tenant>/<999999999999 - id, 12 digits>` → [`Task`]: a
/// tenant's GC runs, newest first in key order.
pub fn task(tenant: &str, id: u64) -> String {
    format!(
        "gc/task/{tenant}/{:012}",
        999_999_999_999u64.saturating_sub(id)
    )
}
pub fn tasks_prefix(tenant: &str) -> String {
    format!("{TASKS}{tenant}/")
}
/// Every tenant's tasks.
pub const TASKS: &str = "gc/task/";
/// `gc/task-figures/<tenant>/<id>` → [`Figures`]: what task `id` has
/// freed so far, rewritten in its collection's commits, so a task resumed
/// after a crash counts what the crashed run freed (all but the last
/// batch's, at most).
pub fn task_figures(tenant: &str, id: u64) -> String {
    format!("gc/task-figures/{tenant}/{id}")
}

/// What a GC task freed: blobs, manifests, bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    pub blobs: u64,
    pub manifests: u64,
    pub bytes: u64,
}

/// The counter task ids come from.
pub const TASK_IDS: &str = "count/gc-task-id";
/// Finished tasks kept per tenant, the newest; the gc job removes older ones.
pub const TASKS_KEPT: usize = 100;
/// Requests to run a task: `{tenant, id}` appended; the gc job is woken
/// by them (`wake_on_appends` in spin.toml).
pub const REQUESTS: &str = "gc/requests/";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRequest {
    pub tenant: String,
    pub id: u64,
}

/// One GC run of a tenant: the SDK's `GcTask` (`job_parameters` holds the
/// results).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: u64,
    /// `MANUAL` or `SCHEDULE`.
    pub job_kind: String,
    pub parameters: Parameters,
    /// `Pending`, `Running`, `Success`, `Stopped` or `Error`.
    pub status: String,
    pub created: u64,
    pub updated: u64,
    #[serde(default)]
    pub purged_blobs: u64,
    #[serde(default)]
    pub purged_manifests: u64,
    /// Bytes.
    #[serde(default)]
    pub freed_space: u64,
    /// Asked to stop (`stop_gc_task`); the run stops at its next step.
    #[serde(default)]
    pub stop: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Task {
    /// A task just asked for: `MANUAL` or `SCHEDULE`, with `parameters`,
    /// at `now` (seconds).
    pub fn pending(id: u64, job_kind: &str, parameters: Parameters, now: u64) -> Task {
        Task {
            id,
            job_kind: job_kind.to_string(),
            parameters,
            status: "Pending".into(),
            created: now,
            updated: now,
            purged_blobs: 0,
            purged_manifests: 0,
            freed_space: 0,
            stop: false,
            error: None,
        }
    }

    pub fn finished(&self) -> bool {
        matches!(self.status.as_str(), "Success" | "Stopped" | "Error")
    }
}

/// What the facts read after a blob's tombstone say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobVerdict {
    /// Referenced: not garbage (a later unreference queues it again).
    Live,
    /// Relinked or touched after the mark: look again after this time.
    Later(u64),
    /// Garbage: delete links, holders and bytes.
    Collect,
}

/// The facts about a blob candidate.
#[derive(Clone, Debug, Default)]
pub struct BlobFacts {
    pub referenced: bool,
    /// Every holder's link time.
    pub linked: Vec<u64>,
    /// The last touch of a marked link (0: none).
    pub touched: u64,
}

/// Before marking: is the blob still garbage once the grace has passed
/// for its newest link? `Later(t)` when a link is younger than the grace,
/// or from this very second (times are in seconds: a mark must come in a
/// later second than every link it outdates, so that a link in the mark's
/// second counts as newer).
pub fn before_mark(facts: &BlobFacts, now: u64, grace: u64) -> BlobVerdict {
    if facts.referenced {
        return BlobVerdict::Live;
    }
    match facts
        .linked
        .iter()
        .map(|l| l.saturating_add(grace.max(1)))
        .max()
    {
        Some(due) if due > now => BlobVerdict::Later(due),
        _ => BlobVerdict::Collect,
    }
}

/// After the tombstone: collect only if nothing referenced, relinked or
/// touched the blob since it was marked at `marked`.
pub fn after_tombstone(facts: &BlobFacts, marked: u64, now: u64, grace: u64) -> BlobVerdict {
    if facts.referenced {
        return BlobVerdict::Live;
    }
    let newest = facts
        .linked
        .iter()
        .copied()
        .chain([facts.touched])
        .max()
        .unwrap_or(0);
    if newest >= marked {
        return BlobVerdict::Later(newest.saturating_add(grace).max(now));
    }
    BlobVerdict::Collect
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_due_after_grace_then_fence() {
        let c = Candidate::blob("sha256:a", 100);
        assert_eq!(c.due(60, 10), 160);
        let Candidate::Blob { digest, since, .. } = c else {
            unreachable!()
        };
        let marked = Candidate::Blob {
            digest,
            since,
            marked: Some(200),
        };
        assert_eq!(marked.due(60, 10), 210);
        let back: Candidate = serde_json::from_slice(&marked.encode()).unwrap();
        assert_eq!(back, marked);
        let m = Candidate::manifest("o/r", "sha256:b", 5);
        assert_eq!(m.due(1, 99), 6);
        assert_eq!(m.digest(), "sha256:b");
    }

    #[test]
    fn young_links_postpone_the_mark() {
        let f = BlobFacts {
            referenced: false,
            linked: vec![10, 50],
            touched: 0,
        };
        assert_eq!(before_mark(&f, 100, 60), BlobVerdict::Later(110));
        assert_eq!(before_mark(&f, 110, 60), BlobVerdict::Collect);
        let r = BlobFacts {
            referenced: true,
            ..f.clone()
        };
        assert_eq!(before_mark(&r, 1000, 0), BlobVerdict::Live);
        // No holder at all (links gone): garbage.
        assert_eq!(
            before_mark(&BlobFacts::default(), 0, 0),
            BlobVerdict::Collect
        );
        // A zero grace still waits for the second of the link to pass.
        let fresh = BlobFacts {
            linked: vec![100],
            ..Default::default()
        };
        assert_eq!(before_mark(&fresh, 100, 0), BlobVerdict::Later(101));
        assert_eq!(before_mark(&fresh, 101, 0), BlobVerdict::Collect);
    }

    #[test]
    fn anything_after_the_mark_cancels_collection() {
        let quiet = BlobFacts {
            referenced: false,
            linked: vec![10],
            touched: 0,
        };
        assert_eq!(after_tombstone(&quiet, 20, 30, 0), BlobVerdict::Collect);
        let touched = BlobFacts {
            touched: 25,
            ..quiet.clone()
        };
        assert_eq!(after_tombstone(&touched, 20, 30, 0), BlobVerdict::Later(30));
        let relinked = BlobFacts {
            linked: vec![10, 20],
            ..quiet.clone()
        };
        assert_eq!(
            after_tombstone(&relinked, 20, 30, 100),
            BlobVerdict::Later(120)
        );
        let referenced = BlobFacts {
            referenced: true,
            ..quiet
        };
        assert_eq!(after_tombstone(&referenced, 20, 30, 0), BlobVerdict::Live);
    }

    #[test]
    fn schedules_are_checked_and_give_their_next_time() {
        let params = |workers| Parameters {
            workers,
            delete_untagged: true,
            dry_run: false,
        };
        let p = Policy::new("Custom", Some("0 0 * * * *"), params(2), 3600 * 10 + 5).unwrap();
        assert_eq!(p.next_run(), Some(3600 * 11));
        let later = Policy {
            last_scheduled: 3600 * 11,
            ..p
        };
        assert_eq!(later.next_run(), Some(3600 * 12));
        assert_eq!(
            Policy::new("None", None, params(1), 0).unwrap().next_run(),
            None
        );
        for (kind, cron, workers) in [
            ("Custom", None, 1),
            ("Custom", Some("0 0 * * *"), 1),
            ("Custom", Some("x y z a b c"), 1),
            ("Weekly", None, 1),
            ("None", None, 0),
            ("None", None, 6),
        ] {
            assert!(
                Policy::new(kind, cron, params(workers), 0).is_err(),
                "{kind} {cron:?} {workers}"
            );
        }
        assert!(serde_json::from_str::<Parameters>(r#"{"workers":1,"x":1}"#).is_err());
    }
}
