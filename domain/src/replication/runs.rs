//! The ledger the `replication` job works through.
//!
//! An [`Execution`] is one batch: a manual sync of some tags, the backfill
//! of a new sync rule, the tags a push brought, or a run of a replication
//! policy. Its [`Item`]s are one tag each (SWR's shared-edition `SyncJob`
//! and enterprise `SubtaskDetail`); items of one repository form a task
//! (`TaskDetail`). An item waiting to be copied has a key under
//! [`PENDING`]; the job takes them in execution order, and each commit it
//! makes on an item moves the item, its execution's figures and its own
//! lease together, so a crash loses at most the chunk in flight.
//!
//! A blob copy records in its item where it is ([`Resume`]: the upload
//! session and the offset the target acknowledged), so after a network
//! failure or a host restart it continues from the target's offset
//! instead of starting over. Failures are retried with exponential backoff
//! ([`retry_delay_ms`]) up to [`MAX_ATTEMPTS`]; an item still not done
//! after [`MAX_AGE_SECONDS`] ends `timeout`.

use serde::{Deserialize, Serialize};

/// `replication-exec/<tenant>/<id, 20 digits>` → [`Execution`].
pub fn execution(tenant: &str, id: u64) -> String {
    format!("{}{id:020}", executions_of(tenant))
}

/// The executions of `tenant`, oldest first.
pub fn executions_of(tenant: &str) -> String {
    format!("{EXECUTIONS}{tenant}/")
}

/// `replication-item/<tenant>/<execution>/<id>` → [`Item`].
pub fn item(tenant: &str, execution: u64, id: u64) -> String {
    format!("{}{id:020}", items_of(tenant, execution))
}

/// The items of an execution, in id order.
pub fn items_of(tenant: &str, execution: u64) -> String {
    format!("replication-item/{tenant}/{execution:020}/")
}

/// Items waiting for the job: `replication-pending/<execution, 20
/// digits>/<tenant>/<item, 20 digits>` → the item's key, so the oldest
/// execution comes first.
pub const PENDING: &str = "replication-pending/";

pub fn pending(tenant: &str, execution: u64, item: u64) -> String {
    format!("{PENDING}{execution:020}/{tenant}/{item:020}")
}

/// The tenant of a [`pending`] key (`None` for any other key), read
/// without loading the item.
pub fn pending_tenant(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PENDING)?.get(21..)?;
    rest.rsplit_once('/').map(|(tenant, _)| tenant)
}

/// `sync-job/<tenant>/<repository>:<inverted item id>` → the item's key:
/// a repository's sync jobs, newest first (`show_sync_job`).
pub fn sync_job(tenant: &str, repository: &str, item: u64) -> String {
    format!(
        "{}{:020}",
        sync_jobs_of(tenant, repository),
        u64::MAX - item
    )
}

pub fn sync_jobs_of(tenant: &str, repository: &str) -> String {
    format!("sync-job/{tenant}/{repository}:")
}

/// `replication-stop/<tenant>/<execution>`: written by
/// `stop_instance_replication_policy_execution`; the job cancels the
/// execution's waiting items and stops its running one between chunks.
pub fn stop(tenant: &str, execution: u64) -> String {
    format!("replication-stop/{tenant}/{execution:020}")
}

/// `replication-plan/<tenant>/<execution>` → the policy id: a pull
/// execution the job is to plan (list the source registry's repositories
/// and tags the policy selects, and queue them).
pub const PLANS: &str = "replication-plan/";

pub fn plan(tenant: &str, execution: u64) -> String {
    format!("{PLANS}{tenant}/{execution:020}")
}

/// Sub-task statuses a listing may filter by (`SubtaskDetail.status`):
/// the enterprise edition's task statuses, as retention's.
pub use crate::retention::policy::STATUSES as ENTERPRISE_STATUSES;

/// Appends here wake the job on `berth serve` (a new execution).
pub const REQUESTS: &str = "replication-requests/";

/// `replication-placed/<registry, 20 digits>/<digest>` → a repository of
/// that registry the job put the blob in: a later copy of the blob to
/// another repository there mounts it from this one.
pub fn placed(registry: u64, digest: &str) -> String {
    format!("replication-placed/{registry:020}/{digest}")
}

/// The job's position in the event log (the last event it read).
pub const CURSOR: &str = "replication/cursor";

/// Every tenant's executions.
pub const EXECUTIONS: &str = "replication-exec/";

/// Finished executions kept per tenant, the newest; older ones are
/// removed with their items, sync-job index entries and stop marks.
pub const EXECUTIONS_KEPT: usize = 200;

/// The counters ids come from.
pub const EXECUTION_IDS: &str = "count/replication-execution-id";
pub const ITEM_IDS: &str = "count/replication-item-id";
pub const TASK_IDS: &str = "count/replication-task-id";

/// Attempts an item gets before it fails for good.
pub const MAX_ATTEMPTS: u32 = 5;

/// An item not done this long after it was asked for ends `timeout`.
pub const MAX_AGE_SECONDS: u64 = 86_400;

/// Bytes the first chunk of a blob copy sends in one `PATCH` (or fetches
/// in one `Range`); the session and offset are recorded after each, so a
/// destination that drops a broken chunk loses at most one. Chunks then
/// grow while they go fast ([`next_chunk`]): each is a new request, and
/// Distribution reopens its upload and hash state for each — measured
/// with `berth-bench --only replication`, fixed 64 MiB chunks copied
/// 1 GiB to Distribution at 0.97× skopeo (median of 5), 256 MiB ones at
/// 1.4–1.7×.
pub const CHUNK_BYTES: u64 = 64 << 20;
/// The largest chunk.
pub const MAX_CHUNK_BYTES: u64 = 512 << 20;
/// The smallest chunk, on a slow link.
pub const MIN_CHUNK_BYTES: u64 = 16 << 20;

/// The size of the chunk after one of `len` bytes that took `elapsed_ms`:
/// doubled when it took under 20 s, halved when over 120 s (so a chunk
/// stays well within the 300 s a request with a body may take), between
/// [`MIN_CHUNK_BYTES`] and [`MAX_CHUNK_BYTES`].
pub fn next_chunk(len: u64, elapsed_ms: u64) -> u64 {
    let next = if elapsed_ms < 20_000 {
        len.saturating_mul(2)
    } else if elapsed_ms > 120_000 {
        len / 2
    } else {
        len
    };
    next.clamp(MIN_CHUNK_BYTES, MAX_CHUNK_BYTES)
}

/// Blobs under this many bytes are copied several at once, each in one
/// request, and start over when that fails; larger ones go in chunks.
pub const SMALL_BYTES: u64 = 64 << 20;

/// Whether a registry's answer with HTTP `status` may pass on a later
/// attempt (429 Too Many Requests, 5xx); any other refusal is final.
pub fn retryable_status(status: u16) -> bool {
    status == 429 || status >= 500
}

/// The delay before attempt `attempts + 1`, in ms: 2 s doubling, at most
/// 5 minutes.
pub fn retry_delay_ms(attempts: u32) -> u64 {
    (2_000u64 << attempts.saturating_sub(1).min(20)).min(300_000)
}

/// Which way an item copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From Berth to the registry.
    Push,
    /// From the registry into Berth.
    Pull,
}

/// An item's state, by SWR's shared-edition names (`SyncJob.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Waiting,
    Running,
    Success,
    Failed,
    Timeout,
    Cancel,
    /// `override` false and the destination tag holds other content.
    Existed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Running => "running",
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Cancel => "cancel",
            Status::Existed => "existed",
        }
    }

    /// The enterprise edition's name (`SubtaskDetail.status`).
    pub fn enterprise(self) -> &'static str {
        match self {
            Status::Waiting => "Pending",
            Status::Running => "InProgress",
            Status::Success | Status::Existed => "Succeed",
            Status::Failed | Status::Timeout => "Failed",
            Status::Cancel => "Stopped",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, Status::Waiting | Status::Running)
    }
}

/// Where a blob copy stands: the target's upload session and the bytes it
/// acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub digest: String,
    /// The session URL the target gave last (absolute).
    pub location: String,
    pub offset: u64,
}

/// One tag to copy (JSON under [`item`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub id: u64,
    pub execution_id: u64,
    /// The task: the items of one repository in the execution.
    pub task_id: u64,
    pub tenant: String,
    pub direction: Direction,
    pub registry_id: u64,
    /// The registry's name when the item was made (`remoteRegionId`).
    pub region: String,
    /// Repository copied from (local for a push, remote for a pull).
    pub source: String,
    /// Repository copied to.
    pub destination: String,
    pub tag: String,
    /// The manifest copied, once known.
    #[serde(default)]
    pub digest: String,
    #[serde(rename = "override")]
    pub override_: bool,
    pub status: Status,
    #[serde(default)]
    pub status_text: String,
    #[serde(default)]
    pub attempts: u32,
    /// Not before this time (ms since the epoch): a retry's backoff.
    #[serde(default)]
    pub not_before_ms: u64,
    /// Seconds since the Unix epoch.
    pub created: u64,
    #[serde(default)]
    pub started: u64,
    #[serde(default)]
    pub ended: u64,
    pub operator: String,
    #[serde(default)]
    pub operator_id: String,
    /// Blob bytes this item sent or received.
    #[serde(default)]
    pub bytes: u64,
    /// Blobs copied, found at the destination already, and mounted there.
    #[serde(default)]
    pub blobs_copied: u64,
    #[serde(default)]
    pub blobs_present: u64,
    #[serde(default)]
    pub blobs_mounted: u64,
    /// Manifests (the tag's, an index's children, referrers) put.
    #[serde(default)]
    pub manifests: u64,
    /// A blob copy under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    /// Where the blob copy in [`Item::resume`] started when the item
    /// resumed it (bytes the target already had).
    #[serde(default)]
    pub resumed_from: u64,
}

impl Item {
    /// The SDK's `SyncJob` (`show_sync_job`).
    pub fn sync_job_view(&self, tenant_id: &str) -> serde_json::Value {
        let (namespace, repo) = self.source.split_once('/').unwrap_or(("", &self.source));
        serde_json::json!({
            "id": self.id,
            "domainID": tenant_id,
            "domainName": self.tenant,
            "namespace": namespace,
            "repoName": repo,
            "tag": self.tag,
            "remoteRegionId": self.region,
            "remoteNamespace": self.destination.split('/').next().unwrap_or_default(),
            "override": self.override_,
            "status": self.status.name(),
            "syncOperatorId": self.operator_id,
            "syncOperatorName": self.operator,
            "createdAt": crate::swr::rfc3339(self.created),
            "updatedAt": crate::swr::rfc3339(self.ended.max(self.started).max(self.created)),
            // Beyond the SDK's model: what happened.
            "digest": self.digest,
            "statusText": self.status_text,
            "attempts": self.attempts,
            "bytes": self.bytes,
            "blobsCopied": self.blobs_copied,
            "blobsPresent": self.blobs_present,
            "blobsMounted": self.blobs_mounted,
            "resumedFrom": self.resumed_from,
        })
    }

    /// The SDK's `SubtaskDetail`.
    pub fn subtask_view(&self) -> serde_json::Value {
        let (namespace, repo) = self.source.split_once('/').unwrap_or(("", &self.source));
        serde_json::json!({
            "id": self.id,
            "job_id": self.id.to_string(),
            "namespace": namespace,
            "repository": repo,
            "tag": self.tag,
            "digest": self.digest,
            "status": self.status.enterprise(),
            "status_text": if self.status_text.is_empty() { self.status.name().to_string() } else { self.status_text.clone() },
            "start_time": time_or_empty(self.started),
            "end_time": time_or_empty(self.ended),
        })
    }
}

fn time_or_empty(secs: u64) -> String {
    if secs == 0 {
        String::new()
    } else {
        crate::swr::rfc3339(secs)
    }
}

/// One batch (JSON under [`execution`]): the figures are its items',
/// updated in the commit that ends each item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub id: u64,
    pub tenant: String,
    /// The replication policy (0: a shared-edition sync).
    pub policy_id: u64,
    /// `manual`, `scheduled`, `event_based` or `backfill`.
    pub trigger: String,
    pub registry_id: u64,
    pub total: u64,
    #[serde(default)]
    pub succeed: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub stopped: u64,
    /// Seconds since the Unix epoch.
    pub created: u64,
    #[serde(default)]
    pub updated: u64,
    /// Why the execution could not even list its items (a pull whose
    /// registry cannot be read).
    #[serde(default)]
    pub error: String,
    /// A pull whose items the job has yet to list.
    #[serde(default)]
    pub planning: bool,
    /// Stopped before its items were listed (a pull): `Stopped`, not
    /// `Failed`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    pub operator: String,
}

impl Execution {
    pub fn in_progress(&self) -> u64 {
        self.total
            .saturating_sub(self.succeed + self.failed + self.stopped)
    }

    /// `InProgress`, `Stopped`, `Failed` or `Succeed`.
    pub fn status(&self) -> &'static str {
        if self.in_progress() > 0 || self.planning {
            "InProgress"
        } else if self.stopped > 0 || self.cancelled {
            "Stopped"
        } else if self.failed > 0 || !self.error.is_empty() {
            "Failed"
        } else {
            "Succeed"
        }
    }

    /// Counts an item that ended with `status`.
    pub fn count(&mut self, status: Status, now: u64) {
        match status.enterprise() {
            "Succeed" => self.succeed += 1,
            "Stopped" => self.stopped += 1,
            _ => self.failed += 1,
        }
        self.updated = now;
    }

    /// The `replication.completed` event of this execution, ended, about
    /// local repository `repository`.
    pub fn completed(&self, repository: &str, time_ns: u64) -> crate::events::EventRecord {
        let mut e = crate::events::EventRecord::new(
            crate::events::EventKind::ReplicationCompleted,
            &self.tenant,
            repository,
            time_ns,
        );
        e.operator = self.operator.clone();
        e.detail = Some(serde_json::json!({
            "execution_id": self.id,
            "policy_id": self.policy_id,
            "registry_id": self.registry_id,
            "trigger": self.trigger,
            "status": self.status(),
            "total": self.total,
            "succeed": self.succeed,
            "failed": self.failed,
            "stopped": self.stopped,
            "error": self.error,
        }));
        e
    }

    /// The SDK's `Execution`.
    pub fn view(&self) -> serde_json::Value {
        let text = match self.status() {
            "InProgress" if self.planning => "listing what to copy".to_string(),
            "InProgress" => format!("{} of {} done", self.total - self.in_progress(), self.total),
            _ if !self.error.is_empty() => self.error.clone(),
            s => format!(
                "{s}: {} succeeded, {} failed, {} stopped",
                self.succeed, self.failed, self.stopped
            ),
        };
        serde_json::json!({
            "id": self.id,
            "policy_id": self.policy_id,
            "status": self.status(),
            "status_text": text,
            "total": self.total,
            "failed": self.failed,
            "succeed": self.succeed,
            "in_progress": self.in_progress(),
            "stopped": self.stopped,
            "trigger": self.trigger,
            "created_at": crate::swr::rfc3339(self.created),
            "updated_at": crate::swr::rfc3339(self.updated.max(self.created)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(retry_delay_ms(1), 2_000);
        assert_eq!(retry_delay_ms(2), 4_000);
        assert_eq!(retry_delay_ms(4), 16_000);
        assert_eq!(retry_delay_ms(30), 300_000);
        assert_eq!(next_chunk(CHUNK_BYTES, 3_000), 128 << 20);
        assert_eq!(next_chunk(MAX_CHUNK_BYTES, 3_000), MAX_CHUNK_BYTES);
        assert_eq!(next_chunk(CHUNK_BYTES, 60_000), CHUNK_BYTES);
        assert_eq!(next_chunk(CHUNK_BYTES, 200_000), 32 << 20);
        assert_eq!(next_chunk(MIN_CHUNK_BYTES, 200_000), MIN_CHUNK_BYTES);
    }

    #[test]
    fn executions_sum_their_items() {
        let mut e = Execution {
            id: 1,
            tenant: "t".into(),
            policy_id: 0,
            trigger: "manual".into(),
            registry_id: 1,
            total: 3,
            succeed: 0,
            failed: 0,
            stopped: 0,
            created: 0,
            updated: 0,
            error: String::new(),
            planning: false,
            cancelled: false,
            operator: String::new(),
        };
        assert_eq!(e.status(), "InProgress");
        e.count(Status::Success, 1);
        e.count(Status::Existed, 1);
        assert_eq!(e.status(), "InProgress");
        e.count(Status::Timeout, 2);
        assert_eq!((e.succeed, e.failed, e.in_progress()), (2, 1, 0));
        assert_eq!(e.status(), "Failed");
        assert!(Status::Existed.is_final() && !Status::Running.is_final());
        e.cancelled = true;
        assert_eq!(e.status(), "Stopped");
    }

    #[test]
    fn keys_sort_as_listings_page() {
        assert!(pending("t", 2, 9) < pending("a", 10, 1));
        assert_eq!(pending_tenant(&pending("acme", 2, 9)), Some("acme"));
        assert_eq!(pending_tenant("replication-item/acme/1/2"), None);
        assert!(sync_job("t", "a/b", 10) < sync_job("t", "a/b", 9));
        assert!(!sync_job("t", "a/bc", 1).starts_with(&sync_jobs_of("t", "a/b")));
    }
}
