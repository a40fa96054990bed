//! Collecting blobs and manifests from the queue, by the protocol in
//! `berth_domain::gc`: every step is one fenced commit, so a run that dies
//! leaves either the step done or not, and the next run resumes from the
//! queue (a leftover tombstone is cancelled and its candidate queued again).

use berth_domain::events::EventKind;
use berth_domain::gc::{self, BlobFacts, BlobVerdict, Candidate, Holder, Policy, Tombstone};
use berth_domain::keys::{self, BlobLink};
use berth_domain::swr::SwrError;
use berth_guest::gc::unindex;
use berth_guest::jobs::Run;
use berth_guest::manage::{fault, oci_fault};
use berth_guest::store::{self, Precondition, WriteOp, blobs, metadata};
use std::collections::HashMap;

use crate::LEASE_SECONDS;

/// Queue entries read per page.
const PAGE: u32 = 500;
/// Candidates whose writes go in one commit.
const BATCH: usize = 128;
/// Marked blobs claimed (tombstoned) at once: writers that need one of
/// them wait until the batch is released.
const DOOM_BATCH: usize = 32;

/// `gc/later/<due, 12 digits>/<nonce>` → [`Candidate`]: candidates the
/// collector put back (postponed, or marked and waiting out the fence),
/// in due order.
const LATER: &str = "gc/later/";
fn later(due: u64, candidate: &Candidate) -> WriteOp {
    store::put(
        format!("{LATER}{due:012}/{}", store::nonce()),
        candidate.encode(),
    )
}

/// One candidate's writes, deferred to the next [`Collector::flush`].
struct Group {
    ops: Vec<WriteOp>,
    /// The marked candidate, when the group marks a blob: it is put back
    /// for when the fence has passed, timed at the commit (see `flush`).
    marked: Option<Candidate>,
}

/// What a run did, reported as its result and in GC task records.
#[derive(Default, serde::Serialize)]
pub struct Outcome {
    pub candidates_examined: u64,
    pub blobs_marked: u64,
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    pub manifests_deleted: u64,
    pub postponed: u64,
    pub cancelled_by_use: u64,
    pub tombstones_resumed: u64,
    /// When the next waiting candidate is due (seconds), if one waits.
    pub next_due: Option<u64>,
}

pub struct Settings {
    pub grace: u64,
    pub fence: u64,
    /// Overrides one tenant's policy on untagged manifests (a GC task's
    /// `delete_untagged`).
    pub untagged: Option<(String, bool)>,
    /// A GC task whose `stop` flag ends the pass.
    pub task: Option<String>,
    /// Where the task's figures go, and what it freed before this pass:
    /// each commit of the pass rewrites them.
    pub figures: Option<(String, gc::Figures)>,
    /// Count only what this tenant's repositories held (a task's figures):
    /// blobs are shared across tenants by digest.
    pub scope: Option<String>,
    /// Plan only: report what would go, write nothing but the lease.
    pub dry_run: bool,
}

pub struct Collector<'a> {
    run: &'a mut Run,
    settings: Settings,
    pub outcome: Outcome,
    policies: HashMap<String, bool>,
    /// Blobs looked at in this pass.
    seen: std::collections::HashSet<String>,
    /// Writes of the candidates looked at, one group per candidate,
    /// committed together (see [`Collector::flush`]).
    deferred: Vec<Group>,
    /// Marked blobs due for deletion, collected in one batch per page.
    dooms: Vec<(Candidate, WriteOp, u64)>,
    /// Organizations' owning tenants, as looked up in this pass.
    owners: HashMap<String, String>,
    now: u64,
}

impl<'a> Collector<'a> {
    pub fn new(run: &'a mut Run, settings: Settings) -> Self {
        Collector {
            run,
            settings,
            outcome: Outcome::default(),
            policies: HashMap::new(),
            seen: Default::default(),
            deferred: Vec::new(),
            dooms: Vec::new(),
            owners: HashMap::new(),
            now: store::now(),
        }
    }

    /// Puts `candidate` back until `due` (and reports when it is due).
    fn later(&mut self, due: u64, candidate: &Candidate) -> WriteOp {
        self.outcome.next_due = Some(self.outcome.next_due.map_or(due, |d| d.min(due)));
        later(due, candidate)
    }

    async fn commit(&mut self, mut ops: Vec<WriteOp>) -> Result<bool, SwrError> {
        if let Some((key, base)) = &self.settings.figures {
            ops.push(store::put_json(key.clone(), &self.figures(*base)));
        }
        self.run.commit(ops, LEASE_SECONDS).await
    }

    /// `base` and what this pass freed so far.
    pub fn figures(&self, base: gc::Figures) -> gc::Figures {
        gc::Figures {
            blobs: base.blobs + self.outcome.blobs_deleted,
            manifests: base.manifests + self.outcome.manifests_deleted,
            bytes: base.bytes + self.outcome.bytes_freed,
        }
    }

    /// Whether the task this pass runs for was asked to stop.
    async fn stopped(&self) -> Result<bool, SwrError> {
        let Some(key) = &self.settings.task else {
            return Ok(false);
        };
        let task: Option<gc::Task> = store::get_json(key).await.map_err(oci_fault)?;
        Ok(task.is_none_or(|t| t.stop))
    }

    /// One pass: leftover tombstones, then the fresh queue and the
    /// postponed candidates that are due; `false` when its task was
    /// stopped before the end.
    pub async fn pass(&mut self) -> Result<bool, SwrError> {
        self.now = store::now();
        self.resume().await?;
        for prefix in [gc::QUEUE, LATER] {
            let mut after: Option<String> = None;
            'pages: loop {
                let page = metadata::scan(prefix.to_string(), after.clone(), PAGE)
                    .await
                    .map_err(fault)?;
                for (i, e) in page.iter().enumerate() {
                    if i % 32 == 0 && self.stopped().await? {
                        return Ok(false);
                    }
                    // Marks and tombstones are timed by the candidate at
                    // hand, not by the start of a long pass.
                    self.now = store::now();
                    let Ok(candidate) = serde_json::from_slice::<Candidate>(&e.value) else {
                        // Unreadable: nothing can be done with it.
                        self.write(vec![store::delete(e.key.clone())]).await?;
                        continue;
                    };
                    // A postponed candidate is due when its key says.
                    let due = e.key[prefix.len()..]
                        .split('/')
                        .next()
                        .filter(|_| prefix == LATER)
                        .and_then(|d| d.parse().ok())
                        .unwrap_or_else(|| candidate.due(self.settings.grace, self.settings.fence));
                    if due > self.now {
                        // The fresh queue is in commit order, so the rest
                        // is younger still; the postponed are in due order.
                        self.outcome.next_due =
                            Some(self.outcome.next_due.map_or(due, |d| d.min(due)));
                        break 'pages;
                    }
                    let consume =
                        WriteOp::Delete((e.key.clone(), Precondition::Version(e.version)));
                    // One look per blob and pass: a blob is often queued
                    // several times (its upload, its link, each manifest
                    // that let go of it).
                    if prefix == gc::QUEUE
                        && let Candidate::Blob { digest, .. } = &candidate
                        && !self.seen.insert(digest.clone())
                    {
                        self.write(vec![consume]).await?;
                        continue;
                    }
                    self.outcome.candidates_examined += 1;
                    match candidate {
                        Candidate::Blob { .. } => self.blob(candidate, consume).await?,
                        Candidate::Manifest { .. } => self.manifest(candidate, consume).await?,
                    }
                }
                self.settle().await?;
                if page.len() < PAGE as usize {
                    break;
                }
                after = page.last().map(|e| e.key.clone());
            }
            self.settle().await?;
        }
        let done = self.kept_untagged().await?;
        self.settle().await?;
        Ok(done)
    }

    /// Commits what the candidates looked at so far decided.
    async fn settle(&mut self) -> Result<(), SwrError> {
        self.flush().await?;
        let dooms = std::mem::take(&mut self.dooms);
        self.doom_batch(dooms).await
    }

    /// Commits the deferred groups in one commit; if a precondition fails
    /// (a link changed meanwhile), each group alone, so one busy blob does
    /// not hold back the rest.
    ///
    /// A marked candidate is due a fence after this commit, not after it
    /// was looked at: a client that read the blob before the mark landed
    /// has the whole fence to push its manifest, however long the batch
    /// took to fill. (Its mark time stays the time of the look, so a link
    /// made since then still cancels the collection.)
    async fn flush(&mut self) -> Result<(), SwrError> {
        let mut groups = std::mem::take(&mut self.deferred);
        if groups.is_empty() {
            return Ok(());
        }
        // A second more keeps the fence after the commit itself.
        let due = store::now() + self.settings.fence + 1;
        for g in &mut groups {
            if let Some(next) = &g.marked {
                let again = self.later(due, next);
                g.ops.push(again);
            }
        }
        let marks = groups.iter().filter(|g| g.marked.is_some()).count() as u64;
        let all: Vec<WriteOp> = groups.iter().flat_map(|g| g.ops.iter().cloned()).collect();
        if self.commit(all).await? {
            self.outcome.blobs_marked += marks;
            return Ok(());
        }
        for g in groups {
            if self.commit(g.ops).await? && g.marked.is_some() {
                self.outcome.blobs_marked += 1;
            }
        }
        Ok(())
    }

    /// Untagged manifests kept by their tenant's policy, for tenants that
    /// collect them now (a task's `delete_untagged`, a changed policy):
    /// one read per tenant that still keeps them.
    async fn kept_untagged(&mut self) -> Result<bool, SwrError> {
        let mut after: Option<String> = None;
        while let Some(first) = metadata::scan(gc::UNTAGGED.to_string(), after.clone(), 1)
            .await
            .map_err(fault)?
            .pop()
        {
            let rest = &first.key[gc::UNTAGGED.len()..];
            let Some((tenant, _)) = rest.split_once('/') else {
                after = Some(first.key.clone());
                continue;
            };
            let tenant = tenant.to_string();
            let group = format!("{}{tenant}/", gc::UNTAGGED);
            after = Some(format!("{group}~"));
            if !self.tenant_collects(&tenant).await? {
                continue;
            }
            for e in store::scan_all(&group).await.map_err(fault)? {
                if self.stopped().await? {
                    return Ok(false);
                }
                let Ok(candidate) = serde_json::from_slice::<Candidate>(&e.value) else {
                    continue;
                };
                self.outcome.candidates_examined += 1;
                let consume = WriteOp::Delete((e.key.clone(), Precondition::Version(e.version)));
                self.manifest(candidate, consume).await?;
            }
        }
        Ok(true)
    }

    /// Tombstones left by a run that died: cancelled, their candidate
    /// queued again (it may be half collected: the next look finishes it).
    async fn resume(&mut self) -> Result<(), SwrError> {
        for e in store::scan_all(gc::DOOMED).await.map_err(fault)? {
            if self.settings.dry_run {
                continue;
            }
            let digest = e.key[gc::DOOMED.len()..].to_string();
            let candidate = serde_json::from_slice::<Tombstone>(&e.value)
                .map(|t| t.candidate)
                .unwrap_or_else(|_| Candidate::blob(&digest, self.now));
            let ops = vec![
                WriteOp::Delete((e.key.clone(), Precondition::Version(e.version))),
                later(self.now, &candidate),
            ];
            if self.commit(ops).await? {
                self.outcome.tombstones_resumed += 1;
            }
        }
        Ok(())
    }

    async fn blob_facts(&self, digest: &str) -> Result<(BlobFacts, Vec<String>), SwrError> {
        let referenced = !metadata::scan(gc::references_prefix(digest), None, 1)
            .await
            .map_err(fault)?
            .is_empty();
        let prefix = gc::holders_prefix(digest);
        let mut linked = Vec::new();
        let mut repositories = Vec::new();
        for e in store::scan_all(&prefix).await.map_err(fault)? {
            let h: Holder = serde_json::from_slice(&e.value).unwrap_or_default();
            linked.push(h.linked);
            repositories.push(e.key[prefix.len()..].to_string());
        }
        let touched = store::get(&gc::touched(digest))
            .await
            .map_err(oci_fault)?
            .and_then(|e| String::from_utf8(e.value).ok()?.parse().ok())
            .unwrap_or(0);
        Ok((
            BlobFacts {
                referenced,
                linked,
                touched,
            },
            repositories,
        ))
    }

    async fn blob(&mut self, candidate: Candidate, consume: WriteOp) -> Result<(), SwrError> {
        let Candidate::Blob {
            ref digest, marked, ..
        } = candidate
        else {
            return Ok(());
        };
        let digest = digest.clone();
        let (facts, repositories) = self.blob_facts(&digest).await?;
        let marked = match marked {
            Some(m) => m,
            // Bytes without links (a collection cut short, an upload that
            // never linked): nobody can read them, so no mark to wait out.
            // Marked now: a holder that appears before the tombstone (an
            // upload pinning them) is newer, and saves them.
            None if repositories.is_empty() && !facts.referenced => self.now,
            None => return self.mark(candidate, consume, facts, repositories).await,
        };
        if self.settings.dry_run {
            return self.doom_plan(&digest, marked).await;
        }
        self.dooms.push((candidate, consume, marked));
        if self.dooms.len() >= DOOM_BATCH {
            self.settle().await?;
        }
        Ok(())
    }

    /// Step 1: marks the links, or puts the candidate back.
    async fn mark(
        &mut self,
        candidate: Candidate,
        consume: WriteOp,
        facts: BlobFacts,
        repositories: Vec<String>,
    ) -> Result<(), SwrError> {
        let digest = candidate.digest().to_string();
        {
            match gc::before_mark(&facts, self.now, self.settings.grace) {
                BlobVerdict::Live => {
                    // In use. The manifest delete that lets go of it
                    // queues it again, maybe later in this very pass:
                    // that candidate gets a look of its own.
                    self.seen.remove(&digest);
                    // Links an earlier look marked lose the mark.
                    let mut ops = vec![consume];
                    ops.extend(self.marks(&digest, &repositories, None).await?);
                    self.write(ops).await?;
                }
                BlobVerdict::Later(due) => {
                    self.outcome.postponed += 1;
                    let again = self.later(due, &candidate);
                    self.write(vec![consume, again]).await?;
                }
                BlobVerdict::Collect => {
                    let mut ops = vec![consume];
                    ops.extend(self.marks(&digest, &repositories, Some(self.now)).await?);
                    let next = Candidate::Blob {
                        digest: digest.clone(),
                        since: self.now,
                        marked: Some(self.now),
                    };
                    if self.settings.dry_run {
                        // The plan: this blob goes once the fence passes.
                        if self.in_scope(&repositories).await? {
                            self.outcome.blobs_deleted += 1;
                            self.outcome.bytes_freed += blobs::stat(digest.clone())
                                .await
                                .map_err(fault)?
                                .unwrap_or(0);
                        }
                        return Ok(());
                    }
                    self.defer(Group {
                        ops,
                        marked: Some(next),
                    })
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Step 2 in a dry run: what the deletion would free.
    async fn doom_plan(&mut self, digest: &str, marked: u64) -> Result<(), SwrError> {
        let (facts, repositories) = self.blob_facts(digest).await?;
        if gc::after_tombstone(&facts, marked, self.now, self.settings.grace)
            == BlobVerdict::Collect
            && self.in_scope(&repositories).await?
        {
            self.outcome.blobs_deleted += 1;
            self.outcome.bytes_freed += blobs::stat(digest.to_string())
                .await
                .map_err(fault)?
                .unwrap_or(0);
        }
        Ok(())
    }

    /// Step 2 for a batch of marked blobs: their tombstones in one commit,
    /// a second look at each, the links and index of the garbage in one
    /// commit, the bytes, then the tombstones gone in one commit.
    async fn doom_batch(&mut self, dooms: Vec<(Candidate, WriteOp, u64)>) -> Result<(), SwrError> {
        if dooms.is_empty() {
            return Ok(());
        }
        let claim = |(candidate, consume, _): &(Candidate, WriteOp, u64), now| {
            let tombstone = Tombstone {
                since: now,
                candidate: candidate.clone(),
            };
            vec![
                consume.clone(),
                WriteOp::Put((
                    gc::doomed(candidate.digest()),
                    serde_json::to_vec(&tombstone).expect("tombstones serialize"),
                    Precondition::Absent,
                )),
            ]
        };
        let all: Vec<WriteOp> = dooms.iter().flat_map(|d| claim(d, self.now)).collect();
        let claimed: Vec<(Candidate, u64)> = if self.commit(all).await? {
            dooms.into_iter().map(|(c, _, m)| (c, m)).collect()
        } else {
            // One was taken meanwhile: claim each alone.
            let mut claimed = Vec::new();
            for d in dooms {
                if self.commit(claim(&d, self.now)).await? {
                    claimed.push((d.0, d.2));
                }
            }
            claimed
        };
        let mut unlink = Vec::new();
        let mut release = Vec::new();
        let mut garbage = Vec::new();
        let mut unmark = Vec::new();
        for (candidate, marked) in claimed {
            let digest = candidate.digest().to_string();
            let (facts, repositories) = self.blob_facts(&digest).await?;
            release.push(store::delete(gc::doomed(&digest)));
            match gc::after_tombstone(&facts, marked, self.now, self.settings.grace) {
                BlobVerdict::Live => {
                    self.outcome.cancelled_by_use += 1;
                    // As at the mark: a later candidate gets its look.
                    self.seen.remove(&digest);
                    // In use: its links lose the mark, so reads go the short way.
                    unmark.push(self.marks(&digest, &repositories, None).await?);
                }
                BlobVerdict::Later(due) => {
                    self.outcome.cancelled_by_use += 1;
                    let again = Candidate::blob(&digest, self.now);
                    release.push(self.later(due, &again));
                }
                BlobVerdict::Collect => {
                    for r in &repositories {
                        unlink.push(store::delete(keys::blob_link(r, &digest)));
                        unlink.push(store::delete(gc::holder(&digest, r)));
                    }
                    // Its touches go with it (never before: a later look
                    // at another candidate of the blob needs them).
                    unlink.push(store::delete(gc::touched(&digest)));
                    let counted = self.in_scope(&repositories).await?;
                    garbage.push((digest, counted));
                }
            }
        }
        // Unconditional deletes: only a lost lease refuses them (an error).
        if !unlink.is_empty() && !self.commit(unlink).await? {
            garbage.clear();
        }
        for (digest, counted) in garbage {
            let size = blobs::stat(digest.clone()).await.map_err(fault)?;
            if blobs::delete(digest).await.map_err(fault)? && counted {
                self.outcome.blobs_deleted += 1;
                self.outcome.bytes_freed += size.unwrap_or(0);
            }
        }
        // Tombstones go with the marks of what is in use; if a link changed
        // meanwhile (relinked: unmarked already), without them.
        let unmark: Vec<WriteOp> = unmark.concat();
        if !release.is_empty() {
            let mut ops = release.clone();
            ops.extend(unmark.iter().cloned());
            if unmark.is_empty() || !self.commit(ops).await? {
                self.commit(release).await?;
            }
        }
        Ok(())
    }

    /// Whether what `repositories` held counts in this pass's figures.
    async fn in_scope(&mut self, repositories: &[String]) -> Result<bool, SwrError> {
        let Some(scope) = self.settings.scope.clone() else {
            return Ok(true);
        };
        for r in repositories {
            let org = r.split('/').next().unwrap_or(r).to_string();
            let owner = match self.owners.get(&org) {
                Some(o) => o.clone(),
                None => {
                    let (tenant, _) = store::owner_and_rules(r).await.map_err(oci_fault)?;
                    let tenant = tenant.unwrap_or_default();
                    self.owners.insert(org, tenant.clone());
                    tenant
                }
            };
            if owner == scope {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Rewrites the links of `digest` in `repositories` with `marked`
    /// (each only as read).
    async fn marks(
        &self,
        digest: &str,
        repositories: &[String],
        marked: Option<u64>,
    ) -> Result<Vec<WriteOp>, SwrError> {
        let links: Vec<String> = repositories
            .iter()
            .map(|r| keys::blob_link(r, digest))
            .collect();
        let found = metadata::get_many(links.clone()).await.map_err(fault)?;
        let mut ops = Vec::new();
        for (key, entry) in links.into_iter().zip(found) {
            let Some(entry) = entry else { continue };
            let Ok(mut link) = serde_json::from_slice::<BlobLink>(&entry.value) else {
                continue;
            };
            if link.marked == marked {
                continue;
            }
            link.marked = marked;
            ops.push(WriteOp::Put((
                key,
                serde_json::to_vec(&link).expect("links serialize"),
                Precondition::Version(entry.version),
            )));
        }
        Ok(ops)
    }

    /// The tenant owning `repository`, and whether it collects untagged
    /// manifests.
    async fn collects_untagged(&mut self, repository: &str) -> Result<(String, bool), SwrError> {
        let (tenant, _) = store::owner_and_rules(repository)
            .await
            .map_err(oci_fault)?;
        let tenant = tenant.unwrap_or_default();
        let collect = self.tenant_collects(&tenant).await?;
        Ok((tenant, collect))
    }

    /// Whether `tenant` collects untagged manifests in this pass.
    async fn tenant_collects(&mut self, tenant: &str) -> Result<bool, SwrError> {
        if let Some((t, forced)) = &self.settings.untagged
            && t == tenant
        {
            return Ok(*forced);
        }
        if let Some(&v) = self.policies.get(tenant) {
            return Ok(v);
        }
        let policy: Option<Policy> = store::get_json(&gc::policy(tenant))
            .await
            .map_err(oci_fault)?;
        let collect = match policy {
            Some(p) => p.parameters.delete_untagged,
            None => store::config::get("gc_delete_untagged").is_some_and(|v| v.trim() == "true"),
        };
        self.policies.insert(tenant.to_string(), collect);
        Ok(collect)
    }

    /// Whether manifest `digest` of `repository` is untagged and
    /// unreferenced: its record then.
    async fn unused_manifest(
        repository: &str,
        digest: &str,
    ) -> Result<Option<metadata::Entry>, SwrError> {
        let Some(entry) = store::get(&keys::manifest(repository, digest))
            .await
            .map_err(oci_fault)?
        else {
            return Ok(None);
        };
        for prefix in [
            keys::manifest_tag_prefix(repository, digest),
            gc::references_in(digest, repository),
        ] {
            if !metadata::scan(prefix, None, 1)
                .await
                .map_err(fault)?
                .is_empty()
            {
                return Ok(None);
            }
        }
        Ok(Some(entry))
    }

    async fn manifest(&mut self, candidate: Candidate, consume: WriteOp) -> Result<(), SwrError> {
        let Candidate::Manifest {
            ref repository,
            ref digest,
            since,
        } = candidate
        else {
            return Ok(());
        };
        let (repository, digest) = (repository.clone(), digest.clone());
        if Self::unused_manifest(&repository, &digest).await?.is_none() {
            return self.consume(consume).await;
        }
        let (tenant, collect) = self.collects_untagged(&repository).await?;
        if !collect {
            // Kept by the tenant's policy, and remembered for when a task
            // or a new policy collects untagged manifests.
            let kept = store::put_json(gc::untagged(&tenant, &repository, &digest), &candidate);
            return self.write(vec![consume, kept]).await;
        }
        let counted = self.settings.scope.as_ref().is_none_or(|s| *s == tenant);
        if self.settings.dry_run {
            self.outcome.manifests_deleted += counted as u64;
            return Ok(());
        }
        let doomed = gc::doomed(&digest);
        let tombstone = Tombstone {
            since: self.now,
            candidate: candidate.clone(),
        };
        let claimed = self
            .commit(vec![
                consume,
                WriteOp::Put((
                    doomed.clone(),
                    serde_json::to_vec(&tombstone).expect("tombstones serialize"),
                    Precondition::Absent,
                )),
            ])
            .await?;
        if !claimed {
            return Ok(());
        }
        // Look again: a tag or a reference committed before the tombstone.
        let Some(entry) = Self::unused_manifest(&repository, &digest).await? else {
            self.outcome.cancelled_by_use += 1;
            self.commit(vec![store::delete(doomed)]).await?;
            return Ok(());
        };
        let mut ops = vec![
            WriteOp::Delete((
                keys::manifest(&repository, &digest),
                Precondition::Version(entry.version),
            )),
            store::delete(doomed.clone()),
        ];
        if let Some((record, body)) = keys::decode_manifest(&entry.value) {
            let referrers = berth_guest::gc::referrers_of(&repository, &digest)
                .await
                .map_err(fault)?;
            // What only it used has been garbage as long as it has.
            ops.extend(unindex(
                &repository,
                &digest,
                &record.media_type,
                body,
                &referrers,
                since,
            ));
            if let Some(subject) = &record.subject {
                ops.push(store::delete(keys::referrer(&repository, subject, &digest)));
            }
            let (tenant, _) = store::owner_and_rules(&repository)
                .await
                .map_err(oci_fault)?;
            let mut event = berth_domain::events::EventRecord::new(
                EventKind::ManifestDeleted,
                &tenant.unwrap_or_default(),
                &repository,
                store::now_ns() as u64,
            )
            .about(None, &digest, Some((&record.media_type, body.len())));
            event.operator = "gc".into();
            ops.push(store::event(&event));
        }
        if self.commit(ops).await? {
            self.outcome.manifests_deleted += counted as u64;
        } else {
            // Changed meanwhile (pushed again): it stays.
            self.commit(vec![store::delete(doomed)]).await?;
        }
        Ok(())
    }

    async fn consume(&mut self, consume: WriteOp) -> Result<(), SwrError> {
        self.write(vec![consume]).await
    }

    /// Defers `ops` (one candidate's writes) to the next [`Collector::flush`].
    async fn write(&mut self, ops: Vec<WriteOp>) -> Result<(), SwrError> {
        self.defer(Group { ops, marked: None }).await
    }

    async fn defer(&mut self, group: Group) -> Result<(), SwrError> {
        if !self.settings.dry_run {
            self.deferred.push(group);
            if self.deferred.len() >= BATCH {
                self.flush().await?;
            }
        }
        Ok(())
    }
}
