//! The replication job, a scheduled job (`berth_domain::jobs`) that copies
//! images between Berth and registered registries
//! (`berth_domain::replication`).
//!
//! Each run first reads the event log after its cursor and queues, in the
//! commit that moves the cursor, one item per tag pushed into a repository
//! with an automatic sync rule or an event-based replication policy (so
//! none is queued twice or lost). Then it works through the queued items,
//! oldest execution first, [`SLOTS`] at once (at most [`TENANT_SLOTS`] of
//! one tenant, each tenant taking one new item in turn): it copies the tag
//! ([`push`], [`pull`]), records the outcome in the item and its
//! execution's figures in one commit, and retries failures that may pass
//! (unreachable registry, 429, 5xx) with exponential backoff, up to
//! `runs::MAX_ATTEMPTS`. Every commit carries the job's lease, so two hosts
//! never copy at once, and a run that lost its lease changes nothing.
//!
//! - `POST /berth/jobs/replication/tick`: one run; 200 with what it did
//!   (`result.next_run_in_ms`: when a retry is due, or 0 when the run
//!   stopped at its time budget with work left), 409 while another run
//!   holds the lease.
//! - `GET /berth/jobs/replication`: the running lease and the last run.

mod pull;
mod push;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "berth:registry/replication-job",
    path: "../../wit",
    with: { "wasi:http/types@0.3.0": spin_sdk::wasip3::http::types },
    generate_all,
});

use berth_domain::events::{self, Event, EventKind};
use berth_domain::replication::registry::Registry;
use berth_domain::replication::rules::{self, Policy, SyncRule};
use berth_domain::replication::runs::{self, Direction, Execution, Item, Status};
use berth_domain::swr::SwrError;
use berth_guest::jobs;
use berth_guest::manage::{fault, oci_fault};
use berth_guest::remote::{Remote, RemoteError};
use berth_guest::replication::{Batch, ItemSpec, enqueue};
use berth_guest::store::{self, WriteOp, metadata};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use spin_sdk::wasip3::http::types::{ErrorCode, Request, Response};
use std::collections::{BTreeMap, HashMap, HashSet};

struct Replication;
spin_sdk::wasip3::http::service::export!(Replication);

const JOB: &str = "replication";
/// Longer than the longest stretch between two commits of a run (a 64 MiB
/// chunk may take 600 s to be answered; listing a registry to plan a
/// pull). A host that restarts releases its own leases at once.
const LEASE_SECONDS: u64 = 1800;
/// A run stops taking new items after this long (ms) and asks to run
/// again at once, so its lease and answer stay timely.
const RUN_BUDGET_MS: u64 = 120_000;
/// Listing a registry to plan a pull may take this long (ns).
const PLAN_NS: u64 = 300_000_000_000;
/// One attempt at an item may take this long (ns).
const ATTEMPT_NS: u64 = 600_000_000_000;
/// Manifests one item may copy (its image, an index's children,
/// referrers): a registry that keeps inventing referrers is cut off.
pub(crate) const MAX_MANIFESTS: u64 = 1000;

/// Events read per run.
const EVENT_PAGE: u32 = 500;
/// Items copied at once (each sends up to 6 small blobs at once).
const SLOTS: usize = 4;
/// Items of one tenant copied at once: another tenant always finds a slot.
const TENANT_SLOTS: usize = 3;

impl spin_sdk::wasip3::exports::http::handler::Guest for Replication {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        jobs::serve(request, JOB, LEASE_SECONDS, work).await
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn now_ms() -> u64 {
    (store::now_ns() / 1_000_000) as u64
}

async fn work(run: &mut jobs::Run) -> Result<serde_json::Value, SwrError> {
    let started = now_ms();
    // Requests only wake the job: the queue is under `runs::PENDING`.
    let requests = store::scan_names(runs::REQUESTS).await.map_err(fault)?;
    if !requests.is_empty() {
        let ops = requests
            .into_iter()
            .map(|k| store::delete(format!("{}{k}", runs::REQUESTS)))
            .collect();
        run.commit(ops, LEASE_SECONDS).await?;
    }
    let (events_read, queued, more_events) = fan_out(run).await?;
    let (scheduled, next_schedule) = schedules(run).await?;
    let planned = plan_pulls(run).await?;
    let shared: Shared = futures::lock::Mutex::new(&mut *run);
    let mut running = FuturesUnordered::new();
    let mut under = UnderWay::default();
    // Queue entries whose item is gone, deleted once no copy runs (the
    // copies are polled only while this loop waits on them, so it never
    // takes the lock itself).
    let mut stale: HashSet<String> = HashSet::new();
    let mut done = 0u64;
    let mut due: Option<u64> = None;
    let mut budget_left = true;
    let launching: Result<(), SwrError> = async {
        loop {
            let mut launched = false;
            due = None;
            under.ended.clear();
            let mut after: Option<String> = None;
            // One new item per tenant per pass: a tenant with many (or
            // slow) copies does not starve the others.
            let mut served: HashSet<String> = HashSet::new();
            loop {
                let page = metadata::scan(runs::PENDING.to_string(), after.clone(), 500)
                    .await
                    .map_err(fault)?;
                let Some(last) = page.last() else {
                    break;
                };
                after = Some(last.key.clone());
                let full = page.len() == 500;
                for e in page {
                    let tenant = runs::pending_tenant(&e.key).unwrap_or_default();
                    if stale.contains(&e.key)
                        || served.contains(tenant)
                        || !under.may_start(&e.key, tenant)
                    {
                        continue;
                    }
                    while running.len() >= SLOTS {
                        let ended = running.next().await.expect("copies under way");
                        done += under.settle(ended)?;
                    }
                    // A copy that ended while this pass waited left its
                    // entry on the page read before.
                    if !under.may_start(&e.key, tenant) {
                        continue;
                    }
                    if now_ms().saturating_sub(started) > RUN_BUDGET_MS {
                        budget_left = false;
                        return Ok(());
                    }
                    let item_key = String::from_utf8_lossy(&e.value).into_owned();
                    let parsed = store::get(&item_key)
                        .await
                        .map_err(oci_fault)?
                        .and_then(|entry| serde_json::from_slice::<Item>(&entry.value).ok());
                    let Some(item) = parsed else {
                        stale.insert(e.key);
                        continue;
                    };
                    // An item waiting for its retry waits, unless its
                    // execution was stopped meanwhile.
                    if item.not_before_ms > now_ms()
                        && !item.status.is_final()
                        && !stopped(&item).await
                    {
                        due = Some(due.map_or(item.not_before_ms, |d| d.min(item.not_before_ms)));
                        continue;
                    }
                    served.insert(item.tenant.clone());
                    under.start(&e.key, &item.tenant);
                    let tenant = item.tenant.clone();
                    let pending_key = e.key;
                    let shared = &shared;
                    running.push(async move {
                        let result = process(shared, pending_key.clone(), item_key, item).await;
                        (pending_key, tenant, result)
                    });
                    launched = true;
                }
                if !full {
                    break;
                }
            }
            if !launched {
                // Nothing more to start until a copy ends.
                match running.next().await {
                    Some(ended) => done += under.settle(ended)?,
                    None => return Ok(()),
                }
            }
        }
    }
    .await;
    // The copies under way finish (each within ATTEMPT_NS), unless the run
    // lost its lease: then none may change anything more.
    let mut failure = launching.err();
    if failure.as_ref().is_some_and(lost_lease) {
        return Err(failure.expect("checked"));
    }
    while let Some(ended) = running.next().await {
        match under.settle(ended) {
            Ok(n) => done += n,
            Err(e) if lost_lease(&e) => return Err(e),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    drop(running);
    drop(shared);
    if let Some(e) = failure {
        return Err(e);
    }
    if !stale.is_empty() {
        let ops = stale.into_iter().map(store::delete).collect();
        run.commit(ops, LEASE_SECONDS).await?;
    }
    // Only a run that ended items can have made executions prunable.
    let pruned = if done > 0 { prune(run).await? } else { 0 };
    let due = due.into_iter().chain(next_schedule.map(|s| s * 1000)).min();
    Ok(serde_json::json!({
        "events_read": events_read,
        "items_queued": queued,
        "executions_scheduled": scheduled,
        "pulls_planned": planned,
        "items_done": done,
        "executions_pruned": pruned,
        "next_run_in_ms": if budget_left && !more_events {
            due.map(|d| d.saturating_sub(now_ms()))
        } else {
            Some(0)
        },
    }))
}

/// The copies under way: their queue entries, how many each tenant has,
/// and the entries that ended during the current pass.
#[derive(Default)]
struct UnderWay {
    busy: HashSet<String>,
    per_tenant: HashMap<String, usize>,
    ended: HashSet<String>,
}

impl UnderWay {
    /// Whether queue entry `key` of `tenant` may start now: not under way,
    /// not ended in this pass, and the tenant below [`TENANT_SLOTS`].
    fn may_start(&self, key: &str, tenant: &str) -> bool {
        !self.busy.contains(key)
            && !self.ended.contains(key)
            && self.per_tenant.get(tenant).copied().unwrap_or(0) < TENANT_SLOTS
    }

    fn start(&mut self, key: &str, tenant: &str) {
        self.busy.insert(key.to_string());
        *self.per_tenant.entry(tenant.to_string()).or_default() += 1;
    }

    /// Takes an ended copy off the books: 1, or the copy's error (the
    /// lease lost, the store failing).
    fn settle(
        &mut self,
        (key, tenant, result): (String, String, Result<(), SwrError>),
    ) -> Result<u64, SwrError> {
        self.busy.remove(&key);
        if let Some(n) = self.per_tenant.get_mut(&tenant) {
            *n = n.saturating_sub(1);
        }
        self.ended.insert(key);
        result.map(|()| 1)
    }
}

/// Whether `e` says the run lost its lease (`jobs::Run::commit`).
fn lost_lease(e: &SwrError) -> bool {
    e.status == 409
}

/// The run, shared by the copies under way. Each commit holds it (commits
/// are fenced by the lease's version, so they go one at a time), and so
/// does each read-modify-write of a record that several copies update
/// (an execution's figures).
pub(crate) type Shared<'a> = futures::lock::Mutex<&'a mut jobs::Run>;

/// What a blob copy came to.
pub(crate) enum Placed {
    /// The destination had it.
    Present,
    /// Mounted from another repository of the destination registry.
    Mounted,
    /// Copied.
    Sent,
}

/// Blobs under a chunk copied at once (as skopeo copies layers).
pub(crate) const PARALLEL: usize = 6;

/// What a copy came to.
pub(crate) enum Outcome {
    Copied,
    /// The destination tag holds other content and `override` is off.
    Existed(String),
}

/// Why a copy stopped short.
pub(crate) struct Failure {
    text: String,
    retry: bool,
    stopped: bool,
    /// The run lost its lease: stop, change nothing more.
    lost: Option<SwrError>,
}

impl Failure {
    pub fn permanent(text: impl Into<String>) -> Failure {
        Failure {
            text: text.into(),
            retry: false,
            stopped: false,
            lost: None,
        }
    }

    pub fn retry(text: impl Into<String>) -> Failure {
        Failure {
            retry: true,
            ..Failure::permanent(text)
        }
    }

    /// The failure, retried when `status` says a later attempt may pass.
    pub fn or_retry(mut self, status: u16) -> Failure {
        self.retry = runs::retryable_status(status);
        self
    }

    /// A registry's refusal with HTTP `status`: retried when it may pass.
    pub fn status(status: u16, text: impl Into<String>) -> Failure {
        Failure::permanent(text).or_retry(status)
    }
}

/// A failure of Berth's own store (an `OciError` of `berth_guest::store`):
/// retried.
impl From<berth_domain::OciError> for Failure {
    fn from(e: berth_domain::OciError) -> Failure {
        Failure::retry(format!("store: {}", e.message))
    }
}

/// A failure of a store capability: retried.
impl From<store::StoreError> for Failure {
    fn from(e: store::StoreError) -> Failure {
        Failure::retry(format!("store: {e:?}"))
    }
}

impl From<RemoteError> for Failure {
    fn from(e: RemoteError) -> Failure {
        Failure {
            retry: e.retryable(),
            ..Failure::permanent(e.text)
        }
    }
}

/// One item's copy under way.
pub(crate) struct Transfer<'a, 'r> {
    run: &'a Shared<'r>,
    item: Item,
    key: String,
    remote: Remote,
    /// Manifests and blobs this attempt has handled.
    copied: HashSet<String>,
    /// Writes to make with the item's next save.
    pending_ops: Vec<WriteOp>,
}

impl Transfer<'_, '_> {
    /// One attempt at the copy, within [`ATTEMPT_NS`]: a registry that
    /// trickles or keeps inventing work cannot hold the job longer (the
    /// next attempt resumes from the progress recorded).
    async fn attempt(&mut self) -> Result<Outcome, Failure> {
        let direction = self.item.direction;
        let copy = async {
            match direction {
                Direction::Push => self.push().await,
                Direction::Pull => self.pull().await,
            }
        };
        berth_guest::within(ATTEMPT_NS, copy)
            .await
            .unwrap_or_else(|| {
                Err(Failure::retry(format!(
                    "the attempt took over {} minutes",
                    ATTEMPT_NS / 60_000_000_000
                )))
            })
    }

    /// Records the item's progress (and the writes waiting for it).
    async fn save(&mut self) -> Result<(), Failure> {
        let mut ops = std::mem::take(&mut self.pending_ops);
        ops.push(store::put_json(self.key.clone(), &self.item));
        self.run
            .lock()
            .await
            .commit(ops, LEASE_SECONDS)
            .await
            .map(|_| ())
            .map_err(|e| Failure {
                lost: Some(e),
                ..Failure::permanent("the run lost its lease")
            })
    }

    /// Counts a blob's outcome (`sent`: the bytes a one-request copy
    /// moved; chunked copies count theirs chunk by chunk); for a push,
    /// records where the blob was placed on the registry (what a later
    /// copy mounts from).
    fn counted(&mut self, digest: &str, how: Placed, sent: u64) {
        match how {
            Placed::Present => {
                self.item.blobs_present += 1;
                return;
            }
            Placed::Mounted => self.item.blobs_mounted += 1,
            Placed::Sent => {
                self.item.blobs_copied += 1;
                self.item.bytes += sent;
            }
        }
        if self.item.direction == Direction::Push {
            self.pending_ops.push(store::put(
                runs::placed(self.item.registry_id, digest),
                self.item.destination.clone().into_bytes(),
            ));
        }
    }

    /// Counts the outcomes of blobs copied at once (`digest, size, how`):
    /// every blob that arrived counts (and, for a push, is recorded for
    /// mounts) even when another failed; then the first failure.
    fn counted_all(
        &mut self,
        done: Vec<Result<(String, u64, Placed), Failure>>,
    ) -> Result<(), Failure> {
        let mut failure = None;
        for outcome in done {
            match outcome {
                Ok((d, size, how)) => self.counted(&d, how, size),
                Err(f) => {
                    failure.get_or_insert(f);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Fails with `stopped` once the execution was asked to stop.
    async fn check_stop(&self) -> Result<(), Failure> {
        if stopped(&self.item).await {
            Err(Failure {
                stopped: true,
                ..Failure::permanent("stopped")
            })
        } else {
            Ok(())
        }
    }
}

/// Fails (for good) unless repository `name`'s organization belongs to
/// `tenant`: a copy only ever reads or writes the tenant's own
/// repositories, whoever owns the name now.
pub(crate) async fn owned(tenant: &str, name: &str) -> Result<(), Failure> {
    use berth_domain::iam::records::{self, Namespace};
    let ns = name.split('/').next().unwrap_or_default();
    let owner = store::get_json::<Namespace>(&records::namespace(ns)).await?;
    if owner.is_some_and(|n| n.tenant == tenant) {
        Ok(())
    } else {
        Err(Failure::permanent(format!(
            "organization {ns} does not exist in the tenant: create it first"
        )))
    }
}

async fn stopped(item: &Item) -> bool {
    store::exists(&runs::stop(&item.tenant, item.execution_id))
        .await
        .unwrap_or(false)
}

/// Works on one item: copies it, or ends it (stopped, timed out, its
/// registry gone), or schedules its retry.
async fn process(
    run: &Shared<'_>,
    pending_key: String,
    key: String,
    mut item: Item,
) -> Result<(), SwrError> {
    let now = store::now();
    if item.status.is_final() {
        return finish(run, pending_key, key, item, None, Vec::new()).await;
    }
    if stopped(&item).await {
        return end(
            run,
            pending_key,
            key,
            item,
            Status::Cancel,
            "stopped".into(),
            Vec::new(),
        )
        .await;
    }
    if now.saturating_sub(item.created) > runs::MAX_AGE_SECONDS {
        let text = format!(
            "not done within {} h: {}",
            runs::MAX_AGE_SECONDS / 3600,
            item.status_text
        );
        return end(
            run,
            pending_key,
            key,
            item,
            Status::Timeout,
            text,
            Vec::new(),
        )
        .await;
    }
    let registry: Option<Registry> =
        berth_guest::replication::registry(&item.tenant, item.registry_id).await?;
    let Some(registry) = registry else {
        let text = format!("registry {} was deleted", item.region);
        return end(
            run,
            pending_key,
            key,
            item,
            Status::Failed,
            text,
            Vec::new(),
        )
        .await;
    };
    let remote = match Remote::of(&registry) {
        Ok(r) => r,
        Err(e) => {
            return end(
                run,
                pending_key,
                key,
                item,
                Status::Failed,
                e.text,
                Vec::new(),
            )
            .await;
        }
    };
    item.status = Status::Running;
    item.attempts += 1;
    if item.started == 0 {
        item.started = now;
    }
    let mut copy = Transfer {
        run,
        item,
        key: key.clone(),
        remote,
        copied: HashSet::new(),
        pending_ops: Vec::new(),
    };
    let result = match copy.save().await {
        Err(f) => Err(f),
        Ok(()) => match copy.remote.ping().await {
            Err(e) => {
                health(copy.run, &registry, Err(&e.text)).await?;
                Err(Failure::from(e))
            }
            Ok(()) => {
                if registry.status != "healthy" {
                    health(copy.run, &registry, Ok(())).await?;
                }
                copy.attempt().await
            }
        },
    };
    let Transfer {
        run,
        mut item,
        pending_ops,
        ..
    } = copy;
    match result {
        Ok(Outcome::Copied) => {
            let text = format!(
                "copied {} to {}: {} blob(s) sent, {} present, {} mounted, {} manifest(s), {} bytes{}",
                item.digest,
                item.destination,
                item.blobs_copied,
                item.blobs_present,
                item.blobs_mounted,
                item.manifests,
                item.bytes,
                if item.resumed_from > 0 {
                    format!(", resumed a blob at byte {}", item.resumed_from)
                } else {
                    String::new()
                }
            );
            end(
                run,
                pending_key,
                key,
                item,
                Status::Success,
                text,
                pending_ops,
            )
            .await
        }
        Ok(Outcome::Existed(text)) => {
            end(
                run,
                pending_key,
                key,
                item,
                Status::Existed,
                text,
                pending_ops,
            )
            .await
        }
        Err(Failure { lost: Some(e), .. }) => Err(e),
        Err(f) if f.stopped => {
            end(
                run,
                pending_key,
                key,
                item,
                Status::Cancel,
                "stopped".into(),
                pending_ops,
            )
            .await
        }
        Err(f) if f.retry && item.attempts < runs::MAX_ATTEMPTS => {
            let delay = runs::retry_delay_ms(item.attempts);
            item.status = Status::Waiting;
            item.not_before_ms = now_ms() + delay;
            item.status_text = format!(
                "attempt {} of {} failed: {}; next in {} s",
                item.attempts,
                runs::MAX_ATTEMPTS,
                f.text,
                delay / 1000
            );
            let mut ops = pending_ops;
            ops.push(store::put_json(key, &item));
            run.lock()
                .await
                .commit(ops, LEASE_SECONDS)
                .await
                .map(|_| ())
        }
        Err(f) => {
            let text = if item.attempts > 1 {
                format!("attempt {}: {}", item.attempts, f.text)
            } else {
                f.text
            };
            end(
                run,
                pending_key,
                key,
                item,
                Status::Failed,
                text,
                pending_ops,
            )
            .await
        }
    }
}

/// Ends `item` with `status`.
async fn end(
    run: &Shared<'_>,
    pending_key: String,
    key: String,
    mut item: Item,
    status: Status,
    text: String,
    ops: Vec<WriteOp>,
) -> Result<(), SwrError> {
    item.status = status;
    item.status_text = text;
    item.ended = store::now();
    item.resume = None;
    finish(run, pending_key, key, item, Some(status), ops).await
}

/// Writes the ended item, counts it in its execution, and takes it off
/// the queue, in one commit.
async fn finish(
    run: &Shared<'_>,
    pending_key: String,
    key: String,
    item: Item,
    counted: Option<Status>,
    mut ops: Vec<WriteOp>,
) -> Result<(), SwrError> {
    ops.push(store::delete(pending_key));
    ops.push(store::put_json(key, &item));
    // Held from reading the execution to writing it: other copies of
    // the same execution count theirs after.
    let mut run = run.lock().await;
    if let Some(status) = counted {
        let exec_key = runs::execution(&item.tenant, item.execution_id);
        if let Some(mut e) = store::get_json::<Execution>(&exec_key)
            .await
            .map_err(oci_fault)?
        {
            e.count(status, store::now());
            if e.in_progress() == 0 && !e.planning {
                let local = match item.direction {
                    Direction::Push => &item.source,
                    Direction::Pull => &item.destination,
                };
                ops.push(store::event(&e.completed(local, store::now_ns() as u64)));
            }
            ops.push(store::put_json(exec_key, &e));
        }
    }
    run.commit(ops, LEASE_SECONDS).await.map(|_| ())
}

/// Reads the event log after the job's cursor and queues the tags pushed
/// into repositories that automatic sync rules or event-based policies
/// copy; the cursor moves in the same commit. Returns the events read and
/// the items queued.
async fn fan_out(run: &mut jobs::Run) -> Result<(u64, u64, bool), SwrError> {
    let cursor = store::get(runs::CURSOR)
        .await
        .map_err(oci_fault)?
        .and_then(|e| String::from_utf8_lossy(&e.value).parse::<u64>().ok());
    let page = metadata::scan(
        events::PREFIX.to_string(),
        cursor.map(events::key),
        EVENT_PAGE,
    )
    .await
    .map_err(fault)?;
    let Some(last) = page.last().and_then(|e| events::id_of(&e.key)) else {
        return Ok((0, 0, false));
    };
    let pushes: Vec<Event> = page
        .iter()
        .filter_map(|e| Event::parse(&e.key, &e.value))
        .filter(|e| e.record.kind == EventKind::ManifestPushed && e.record.tag.is_some())
        .collect();
    let mut ops = Vec::new();
    let mut queued = 0u64;
    if !pushes.is_empty() {
        let policies: Vec<Policy> = store::scan_json(rules::POLICIES)
            .await
            .map_err(fault)?
            .into_iter()
            .filter(|p: &Policy| p.enabled && p.trigger.kind == "event_based" && !p.is_pull())
            .collect();
        // Tags to queue, by (tenant, sync rule key or policy id).
        let mut batches: BTreeMap<(String, String), (Batched, Vec<ItemSpec>)> = BTreeMap::new();
        let mut rules_of: HashMap<(String, String), Vec<SyncRule>> = HashMap::new();
        for ev in &pushes {
            let r = &ev.record;
            let tag = r.tag.clone().unwrap_or_default();
            let rk = (r.tenant.clone(), r.repository.clone());
            if !rules_of.contains_key(&rk) {
                let found =
                    store::scan_json::<SyncRule>(&rules::sync_rules_of(&r.tenant, &r.repository))
                        .await
                        .map_err(fault)?;
                rules_of.insert(rk.clone(), found);
            }
            let pushed_s = r.time_ns / 1_000_000_000;
            for rule in rules_of[&rk]
                .iter()
                .filter(|s| s.sync_auto && s.created <= pushed_s)
            {
                let entry = batches
                    .entry((r.tenant.clone(), format!("rule {}", rule.id)))
                    .or_insert_with(|| (Batched::Rule(rule.clone()), Vec::new()));
                entry.1.push(ItemSpec {
                    source: r.repository.clone(),
                    destination: rule.destination(),
                    tag: tag.clone(),
                });
            }
            for p in policies.iter().filter(|p| {
                p.tenant == r.tenant
                    && p.created <= pushed_s
                    && p.selects_repository(&r.repository)
                    && p.selects_tag(&tag)
            }) {
                let entry = batches
                    .entry((r.tenant.clone(), format!("policy {}", p.id)))
                    .or_insert_with(|| (Batched::Policy(p.clone()), Vec::new()));
                entry.1.push(ItemSpec {
                    source: r.repository.clone(),
                    destination: p.destination(&r.repository),
                    tag: tag.clone(),
                });
            }
        }
        for ((tenant, _), (what, items)) in batches {
            let (registry_id, policy_id, override_, trigger) = match &what {
                Batched::Rule(s) => (s.registry_id, 0, s.override_, "event_based"),
                Batched::Policy(p) => (p.registry(), p.id, p.override_, "event_based"),
            };
            let Some(registry) = berth_guest::replication::registry(&tenant, registry_id).await?
            else {
                continue;
            };
            let batch = Batch {
                tenant: &tenant,
                policy_id,
                trigger,
                registry: &registry,
                direction: Direction::Push,
                override_,
                operator: "replication (automatic sync)",
                operator_id: "",
                execution: None,
                planning: false,
                // The job is running: it needs no wake-up.
                wake: false,
            };
            queued += items.len() as u64;
            let (_, more) = enqueue(&batch, &items).await?;
            ops.extend(more);
        }
    }
    ops.push(store::put(
        runs::CURSOR.to_string(),
        last.to_string().into_bytes(),
    ));
    run.commit(ops, LEASE_SECONDS).await?;
    // A full page: more events wait (the run comes back at once).
    Ok((page.len() as u64, queued, page.len() == EVENT_PAGE as usize))
}

enum Batched {
    Rule(SyncRule),
    Policy(Policy),
}

/// Starts the executions of scheduled policies whose time has come; how
/// many, and the next time one is due (seconds).
async fn schedules(run: &mut jobs::Run) -> Result<(u64, Option<u64>), SwrError> {
    let now = store::now();
    let mut started = 0;
    let mut next: Option<u64> = None;
    for (mut p, entry) in store::scan_parsed::<Policy>(rules::POLICIES)
        .await
        .map_err(fault)?
    {
        let Some(at) = p.next_run() else {
            continue;
        };
        if at > now {
            next = Some(next.map_or(at, |n| n.min(at)));
            continue;
        }
        // One policy that cannot start (its registry gone, a store
        // error) does not hold back the others: it is tried next run.
        let Ok((_, mut ops)) =
            berth_guest::replication::start(&p, "scheduled", "replication schedule").await
        else {
            continue;
        };
        // A schedule time that passed while the job was away runs once.
        p.last_scheduled = now;
        ops.push(WriteOp::Put((
            entry.key,
            serde_json::to_vec(&p).expect("policies serialize"),
            metadata::Precondition::Version(entry.version),
        )));
        if run.commit(ops, LEASE_SECONDS).await? {
            started += 1;
        }
        if let Some(again) = p.next_run() {
            next = Some(next.map_or(again, |n| n.min(again)));
        }
    }
    Ok((started, next))
}

/// Lists what pull executions copy (the source registry's repositories and
/// tags their policy selects) and queues it; how many were planned.
async fn plan_pulls(run: &mut jobs::Run) -> Result<u64, SwrError> {
    let mut planned = 0;
    for e in store::scan_all(runs::PLANS).await.map_err(fault)? {
        let Some((tenant, execution)) = e.key[runs::PLANS.len()..]
            .split_once('/')
            .and_then(|(t, x)| Some((t.to_string(), x.parse::<u64>().ok()?)))
        else {
            run.commit(vec![store::delete(e.key)], LEASE_SECONDS)
                .await?;
            continue;
        };
        let policy_id: u64 = String::from_utf8_lossy(&e.value)
            .parse()
            .unwrap_or_default();
        let policy: Option<Policy> = store::get_json(&rules::policy(&tenant, policy_id))
            .await
            .map_err(oci_fault)?;
        let exec_key = runs::execution(&tenant, execution);
        let Some(mut exec) = store::get_json::<Execution>(&exec_key)
            .await
            .map_err(oci_fault)?
        else {
            run.commit(vec![store::delete(e.key)], LEASE_SECONDS)
                .await?;
            continue;
        };
        let listed = match policy {
            None => Err(format!("replication policy {policy_id} was deleted")),
            Some(p) => match berth_guest::replication::registry(&tenant, p.registry()).await? {
                None => Err(format!("registry {} was deleted", p.registry())),
                Some(_)
                    if store::exists(&runs::stop(&tenant, execution))
                        .await
                        .unwrap_or(false) =>
                {
                    Err("stopped before what to copy was listed".to_string())
                }
                Some(r) => berth_guest::within(PLAN_NS, pull::list(&r, &p))
                    .await
                    .unwrap_or_else(|| {
                        Err(format!(
                            "listing the registry took over {} minutes",
                            PLAN_NS / 60_000_000_000
                        ))
                    })
                    .map(|items| (r, items, p)),
            },
        };
        let mut ops = vec![store::delete(e.key)];
        match listed {
            Ok((registry, items, p)) => {
                let batch = Batch {
                    tenant: &tenant,
                    policy_id,
                    trigger: &exec.trigger,
                    registry: &registry,
                    direction: Direction::Pull,
                    override_: p.override_,
                    operator: &exec.operator,
                    operator_id: "",
                    execution: Some(execution),
                    planning: false,
                    wake: false,
                };
                let (_, more) = enqueue(&batch, &items).await?;
                ops.extend(more);
            }
            Err(text) => {
                exec.planning = false;
                exec.cancelled = store::exists(&runs::stop(&tenant, execution))
                    .await
                    .unwrap_or(false);
                exec.error = text;
                exec.updated = store::now();
                ops.push(store::event(&exec.completed("", store::now_ns() as u64)));
                ops.push(store::put_json(exec_key, &exec));
            }
        }
        run.commit(ops, LEASE_SECONDS).await?;
        planned += 1;
    }
    Ok(planned)
}

/// Records what the last check of `registry` found (`healthy`, or
/// `unhealthy` and why), when that changed; a concurrent update of the
/// registry wins.
async fn health(
    run: &Shared<'_>,
    registry: &Registry,
    found: Result<(), &str>,
) -> Result<(), SwrError> {
    let (status, text) = match found {
        Ok(()) => ("healthy", String::new()),
        Err(t) => ("unhealthy", t.to_string()),
    };
    if registry.status == status && registry.status_text == text {
        return Ok(());
    }
    let key = berth_domain::replication::registry::key(&registry.tenant, registry.id);
    let Some(entry) = store::get(&key).await.map_err(oci_fault)? else {
        return Ok(());
    };
    let Ok(mut r) = serde_json::from_slice::<Registry>(&entry.value) else {
        return Ok(());
    };
    r.status = status.to_string();
    r.status_text = text;
    let op = WriteOp::Put((
        key,
        serde_json::to_vec(&r).expect("registries serialize"),
        metadata::Precondition::Version(entry.version),
    ));
    run.lock()
        .await
        .commit(vec![op], LEASE_SECONDS)
        .await
        .map(|_| ())
}

/// Removes finished executions beyond the newest `runs::EXECUTIONS_KEPT`
/// of each tenant, with their items, sync-job index entries and stop
/// marks; at most [`PRUNE_PER_RUN`] per run. How many.
async fn prune(run: &mut jobs::Run) -> Result<u64, SwrError> {
    let all = store::scan_parsed::<Execution>(runs::EXECUTIONS)
        .await
        .map_err(fault)?;
    let mut by_tenant: BTreeMap<String, Vec<Execution>> = BTreeMap::new();
    for (e, _) in all {
        by_tenant.entry(e.tenant.clone()).or_default().push(e);
    }
    let mut pruned = 0;
    for (tenant, mut executions) in by_tenant {
        executions.sort_by_key(|e| std::cmp::Reverse(e.id));
        for e in executions.into_iter().skip(runs::EXECUTIONS_KEPT) {
            if pruned >= PRUNE_PER_RUN {
                return Ok(pruned);
            }
            if e.in_progress() > 0 || e.planning {
                continue;
            }
            let mut ops = vec![
                store::delete(runs::execution(&tenant, e.id)),
                store::delete(runs::stop(&tenant, e.id)),
            ];
            for (item, entry) in store::scan_parsed::<Item>(&runs::items_of(&tenant, e.id))
                .await
                .map_err(fault)?
            {
                if e.policy_id == 0 {
                    ops.push(store::delete(runs::sync_job(
                        &tenant,
                        &item.source,
                        item.id,
                    )));
                }
                ops.push(store::delete(entry.key));
            }
            run.commit(ops, LEASE_SECONDS).await?;
            pruned += 1;
        }
    }
    Ok(pruned)
}

/// Executions removed per run at most.
const PRUNE_PER_RUN: u64 = 50;
