//! The writers' side of garbage collection (`berth_domain::gc`): the
//! operations a push, a link, an untag or a delete adds to its commit so
//! the collection index and queue stay exact, and the reads a marked blob
//! link takes part in.

use crate::store::{self, Precondition, StoreError, WriteOp, fault, metadata};
use berth_domain::gc::{self, Candidate, Holder};
use berth_domain::keys::{self, BlobLink};
use berth_domain::{OciError, manifest};

/// Writes nothing; the commit fails unless `key` meets `precondition`.
pub fn check(key: String, precondition: Precondition) -> WriteOp {
    WriteOp::Check((key, precondition))
}

/// Appends `candidate` to the collection queue.
pub fn enqueue(candidate: &Candidate) -> WriteOp {
    WriteOp::Append((gc::QUEUE.to_string(), candidate.encode()))
}

/// Removes tag `tag` of manifest `digest` from its reverse index and
/// queues the manifest, which may have lost its last tag.
pub fn untag(name: &str, digest: &str, tag: &str) -> [WriteOp; 2] {
    [
        store::delete(keys::manifest_tag(name, digest, tag)),
        enqueue(&Candidate::manifest(name, digest, store::now())),
    ]
}

/// Every digest a manifest names: its blobs, its children, other index
/// entries (not its subject, which it does not keep alive).
pub fn referenced(parsed: &manifest::Parsed) -> impl Iterator<Item = &str> {
    parsed
        .blobs
        .iter()
        .chain(&parsed.manifests)
        .chain(parsed.content.iter().map(|(d, _)| d))
        .map(|d| d.as_str())
}

/// The reference keys a push of manifest `digest` writes.
pub fn index(name: &str, digest: &str, parsed: &manifest::Parsed) -> Vec<WriteOp> {
    referenced(parsed)
        .map(|d| store::put(gc::reference(d, name, digest), Vec::new()))
        .collect()
}

/// What deleting manifest `digest` (stored as `media_type` + `body`) adds
/// to its commit: its reference keys go, and what it referenced and what
/// refers to it (`referrers`, digests of manifests whose subject it is)
/// are queued, as they may have become garbage `since` then (seconds): a
/// client's delete says now; garbage collection deleting an untagged
/// manifest says when that became garbage, so what only it used does not
/// wait out a second grace window.
pub fn unindex(
    name: &str,
    digest: &str,
    media_type: &str,
    body: &[u8],
    referrers: &[String],
    since: u64,
) -> Vec<WriteOp> {
    let now = since;
    let mut ops = Vec::new();
    if let Ok(parsed) = manifest::parse(body, Some(media_type)) {
        for d in parsed.blobs.iter() {
            ops.push(store::delete(gc::reference(d.as_str(), name, digest)));
            ops.push(enqueue(&Candidate::blob(d.as_str(), now)));
        }
        for d in parsed.manifests.iter() {
            ops.push(store::delete(gc::reference(d.as_str(), name, digest)));
            ops.push(enqueue(&Candidate::manifest(name, d.as_str(), now)));
        }
        for (d, _) in &parsed.content {
            ops.push(store::delete(gc::reference(d.as_str(), name, digest)));
            ops.push(enqueue(&Candidate::blob(d.as_str(), now)));
            ops.push(enqueue(&Candidate::manifest(name, d.as_str(), now)));
        }
    }
    for r in referrers {
        ops.push(enqueue(&Candidate::manifest(name, r, now)));
    }
    ops
}

/// The digests of the manifests whose subject is `digest` in `name`.
pub async fn referrers_of(name: &str, digest: &str) -> Result<Vec<String>, StoreError> {
    let prefix = keys::referrer_prefix(name, digest);
    store::scan_names(&prefix).await
}

/// How long to wait, at most, for a collection of a blob to end before an
/// upload of it gives up (503): collections take milliseconds, so this is
/// reached only when a collector died holding the tombstone until the
/// next run clears it.
const PIN_WAIT_NS: u64 = 10_000_000_000;

/// Links blob `digest` (`size` bytes) to repository `name`, or, with
/// `size` none, only pins it: commits the holder (with the link) while no
/// collection of the digest is under way, waiting for one that is. Call
/// it before publishing an upload's bytes, so a collection that starts
/// later sees the holder and leaves them.
pub async fn link(name: &str, digest: &str, size: Option<u64>) -> Result<(), OciError> {
    use spin_sdk::wasip3::clocks::monotonic_clock;
    let started = monotonic_clock::now();
    for attempt in 0u64.. {
        let now = store::now();
        let mut ops = vec![
            check(gc::doomed(digest), Precondition::Absent),
            store::put_json(gc::holder(digest, name), &Holder { linked: now }),
            enqueue(&Candidate::blob(digest, now)),
        ];
        if let Some(size) = size {
            ops.push(store::put_json(
                keys::blob_link(name, digest),
                &BlobLink { size, marked: None },
            ));
        }
        ops.extend(store::ensure_repo(name).await?);
        match store::commit(ops).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(fault(e)),
        }
        // A collection under way, or a racing first push of the repository.
        if monotonic_clock::now().saturating_sub(started) > PIN_WAIT_NS {
            return Err(OciError::internal(format!(
                "blob {digest} is being garbage collected; try again"
            ))
            .with_status(503));
        }
        monotonic_clock::wait_for(attempt.min(50) * 1_000_000).await;
    }
    unreachable!("the loop returns")
}

/// For a read of a marked link: notes the touch (which cancels the
/// collection) and tells whether the blob is being deleted: a collection
/// is under way and no manifest references it (the read then answers that
/// the blob is unknown, so the client uploads it again). A reference means
/// the collection is about to be cancelled: no new one can appear once
/// the tombstone stands.
pub async fn touch_marked(digest: &str) -> Result<bool, OciError> {
    // Committed, not noted: the collector must see it in its second look
    // (rare: only reads of a marked blob pay it).
    store::commit(vec![store::put(
        gc::touched(digest),
        store::now().to_string().into_bytes(),
    )])
    .await
    .map_err(fault)?;
    if !store::exists(&gc::doomed(digest)).await? {
        return Ok(false);
    }
    let referenced = metadata::scan(gc::references_prefix(digest), None, 1)
        .await
        .map_err(fault)?;
    Ok(referenced.is_empty())
}

/// Refuses (the immutable-tag error) a delete of `digest` from repository
/// `name` while an image with an immutable tag uses it: a manifest of
/// `name` that references it (a layer, a config, an index's child),
/// directly or through an index, and has a tag a rule protects.
pub async fn refuse_if_immutable_image_uses(name: &str, digest: &str) -> Result<(), OciError> {
    let (_, rules) = store::owner_and_rules(name).await?;
    if rules.rules.is_empty() {
        return Ok(());
    }
    let protection = rules.protection();
    // Walk up from the digest to the manifests using it (an index's child
    // is used by the index), a few levels deep as images nest.
    let mut level = vec![digest.to_string()];
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        let mut users = Vec::new();
        for d in &level {
            let prefix = gc::references_in(d, name);
            for user in store::scan_names(&prefix).await.map_err(fault)? {
                if !seen.insert(user.clone()) {
                    continue;
                }
                let tags = keys::manifest_tag_prefix(name, &user);
                for tag in store::scan_names(&tags).await.map_err(fault)? {
                    if protection.protecting(name, &tag).is_some()
                        && let Some(rule) = rules.protecting(name, &tag)
                    {
                        return Err(OciError::new(
                            berth_domain::ErrorCode::Denied,
                            format!(
                                "{digest} is used by image {user} of {name}, whose {}",
                                berth_domain::immutable::refusal(name, &tag, rule)
                            ),
                        ));
                    }
                }
                users.push(user);
            }
        }
        if users.is_empty() {
            break;
        }
        level = users;
    }
    Ok(())
}

/// The tenant's pending or running GC task, if one is: the newest few
/// are looked at (tasks run one at a time, newest first in key order).
pub async fn active_task(tenant: &str) -> Result<Option<u64>, OciError> {
    let recent = metadata::scan(gc::tasks_prefix(tenant), None, 10)
        .await
        .map_err(fault)?;
    Ok(recent
        .iter()
        .filter_map(|e| serde_json::from_slice::<gc::Task>(&e.value).ok())
        .find(|t| !t.finished())
        .map(|t| t.id))
}

/// What asking for a GC task found.
pub enum TaskAsk {
    /// The operations that record the new task as pending and ask the gc
    /// job to run it (the request wakes the job), and its id. They fail
    /// the commit if another task was asked for since.
    Ready(u64, Vec<WriteOp>),
    /// Task `id` is still pending or running.
    Busy(u64),
}

/// Asks for a task of `tenant` (one at a time per tenant), its id from
/// the counter of GC task ids.
pub async fn ask_for_task(
    tenant: &str,
    job_kind: &str,
    parameters: gc::Parameters,
) -> Result<TaskAsk, OciError> {
    // Read before looking for an active task: a task asked for after this
    // read conflicts with ours; one before it is seen as active.
    let latest = store::get(&gc::latest_task(tenant)).await?;
    if let Some(active) = active_task(tenant).await? {
        return Ok(TaskAsk::Busy(active));
    }
    let id = metadata::increment(gc::TASK_IDS.to_string(), 1)
        .await
        .map_err(fault)? as u64;
    let task = gc::Task::pending(id, job_kind, parameters, store::now());
    let request = gc::TaskRequest {
        tenant: tenant.to_string(),
        id,
    };
    let precondition = match latest {
        Some(e) => Precondition::Version(e.version),
        None => Precondition::Absent,
    };
    Ok(TaskAsk::Ready(
        id,
        vec![
            store::put_json(gc::task(tenant, id), &task),
            WriteOp::Put((
                gc::latest_task(tenant),
                id.to_string().into_bytes(),
                precondition,
            )),
            WriteOp::Append((
                gc::REQUESTS.to_string(),
                serde_json::to_vec(&request).expect("requests serialize"),
            )),
        ],
    ))
}
