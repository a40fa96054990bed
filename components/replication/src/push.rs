//! Copying one tag from Berth to a remote registry, the way the best
//! clients copy (distribution-spec v1.1):
//!
//! 1. the destination tag is looked at first: the same digest means only
//!    referrers may be missing; another digest with `override` false ends
//!    the item `existed`;
//! 2. manifests depth first: an index's children before the index, each
//!    manifest's blobs before the manifest, every manifest put with its
//!    exact bytes (so every digest is the source's) and its media type;
//! 3. a blob the destination has (`HEAD`) is skipped; one the job put in
//!    another repository of that registry is mounted from there; any other
//!    is uploaded in `PATCH`es with `Content-Range` (from
//!    [`runs::CHUNK_BYTES`], growing while they go fast),
//!    each read from the store as a stream at its offset and handed to the
//!    request as its body (the guest never holds or hashes the bytes; the
//!    destination verifies the digest on the closing `PUT`). After each
//!    chunk the item records the session and the offset the destination
//!    acknowledged, so a failure or a restart resumes from the
//!    destination's offset;
//! 4. the referrers of each copied manifest (the source's referrers index:
//!    signatures, SBOMs) and the tags of cosign's `sha256-<hex>.sig`
//!    schema follow their subject; the tag is put last, so it never points
//!    at an incomplete image.

use crate::{Failure, Outcome, PARALLEL, Placed, Transfer};
use berth_domain::keys;
use berth_domain::manifest;
use berth_domain::replication::protocol::{self, ACCEPT};
use berth_domain::replication::runs::{self, Resume};
use berth_guest::remote::{Body, MAX_RESPONSE_HEADER, Remote, headers};
use berth_guest::store::{self, blobs};
use futures::StreamExt;
use sha2::Digest as _;
use spin_sdk::wasip3::http::types::Method;

impl Transfer<'_, '_> {
    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.remote.base, self.item.destination)
    }

    fn scope(&self) -> String {
        format!("repository:{}:pull,push", self.item.destination)
    }

    /// Copies the item's tag; what it came to.
    pub async fn push(&mut self) -> Result<Outcome, Failure> {
        let source = self.item.source.clone();
        // The source must still be the tenant's (an organization released
        // and taken by another tenant is not copied from).
        crate::owned(&self.item.tenant, &source).await?;
        let tag = self.item.tag.clone();
        let digest = store::get(&keys::tag(&source, &tag))
            .await?
            .and_then(|e| String::from_utf8(e.value).ok())
            .ok_or_else(|| Failure::permanent(format!("{source}:{tag} does not exist")))?;
        self.item.digest = digest.clone();
        let scope = self.scope();
        let head = self
            .remote
            .send(
                Method::Head,
                &self.url(&format!("manifests/{tag}")),
                headers(&[("accept", ACCEPT)]),
                Body::Empty,
                &scope,
            )
            .await
            .map_err(Failure::from)?;
        // What the tag holds there, hashed from its bytes (the header is
        // optional, and a registry's word is not proof).
        let there = match head.status {
            200 => {
                drop(head);
                Some(self.remote_digest(&tag).await?)
            }
            _ => None,
        };
        match there {
            Some(d) if d == digest => {
                // The image is there; its referrers may not be.
                self.referrers(&digest).await?;
                return Ok(Outcome::Copied);
            }
            Some(d) if !self.item.override_ => {
                return Ok(Outcome::Existed(format!(
                    "{}:{tag} at the destination is {d}, not {digest}; override is off",
                    self.item.destination
                )));
            }
            _ => {}
        }
        self.manifest(&digest, &tag).await?;
        self.referrers(&digest).await?;
        Ok(Outcome::Copied)
    }

    /// The digest of the destination's manifest `reference`, hashed from
    /// its bytes.
    async fn remote_digest(&mut self, reference: &str) -> Result<String, Failure> {
        let scope = self.scope();
        let answer = self
            .remote
            .send(
                Method::Get,
                &self.url(&format!("manifests/{reference}")),
                headers(&[("accept", ACCEPT), (MAX_RESPONSE_HEADER, MANIFEST_LIMIT)]),
                Body::Empty,
                &scope,
            )
            .await
            .map_err(Failure::from)?;
        if answer.status != 200 {
            let s = answer.status;
            return Err(Failure::status(
                s,
                format!("GET manifest {reference}: HTTP {s}"),
            ));
        }
        let body = answer.bytes(4 << 20).await.map_err(Failure::from)?;
        Ok(format!(
            "sha256:{}",
            crate::hex(&sha2::Sha256::digest(&body))
        ))
    }

    /// The source's manifest `digest`: its record and exact bytes.
    async fn local_manifest(&self, digest: &str) -> Result<Option<(String, Vec<u8>)>, Failure> {
        let Some(entry) = store::get(&keys::manifest(&self.item.source, digest)).await? else {
            return Ok(None);
        };
        let (record, body) = keys::decode_manifest(&entry.value)
            .ok_or_else(|| Failure::permanent(format!("manifest {digest} is unreadable")))?;
        Ok(Some((record.media_type, body.to_vec())))
    }

    /// Copies manifest `digest` and what it references, and puts it
    /// under `reference` (a tag, or its digest).
    async fn manifest(&mut self, digest: &str, reference: &str) -> Result<(), Failure> {
        let (media_type, body) = self.local_manifest(digest).await?.ok_or_else(|| {
            Failure::permanent(format!(
                "manifest {digest} is missing from {}",
                self.item.source
            ))
        })?;
        let parsed = manifest::parse(&body, Some(&media_type))
            .map_err(|e| Failure::permanent(format!("manifest {digest}: {e}")))?;
        let (subject, artifact_type, size) = (
            parsed.subject.as_ref().map(|d| d.to_string()),
            parsed.artifact_type.clone(),
            body.len(),
        );
        let done = !self.copied.insert(digest.to_string());
        let present = done || self.manifest_present(digest).await?;
        if !present {
            for child in &parsed.manifests {
                Box::pin(self.manifest(&child.to_string(), &child.to_string())).await?;
            }
            let mut wanted: Vec<String> = parsed.blobs.iter().map(|b| b.to_string()).collect();
            for (d, _) in &parsed.content {
                let d = d.to_string();
                if self.local_manifest(&d).await?.is_some() {
                    Box::pin(self.manifest(&d, &d)).await?;
                } else {
                    wanted.push(d);
                }
            }
            self.blobs(wanted).await?;
        }
        if present && reference == digest {
            return Ok(());
        }
        if self.item.manifests >= crate::MAX_MANIFESTS {
            return Err(Failure::permanent(format!(
                "more than {} manifests for one tag",
                crate::MAX_MANIFESTS
            )));
        }
        let scope = self.scope();
        let answer = self
            .remote
            .send(
                Method::Put,
                &self.url(&format!("manifests/{reference}")),
                headers(&[("content-type", &media_type)]),
                Body::Bytes(body),
                &scope,
            )
            .await
            .map_err(Failure::from)?;
        if answer.status != 201 && answer.status != 200 {
            let status = answer.status;
            return Err(Failure::status(
                status,
                format!("PUT manifest {reference}: {}", answer.excerpt().await),
            ));
        }
        self.item.manifests += 1;
        // A registry without the referrers API (no `OCI-Subject` in its
        // answer) finds a referrer through the referrers tag schema: the
        // client keeps the subject's `sha256-<hex>` index.
        let indexed = answer.header("oci-subject").is_some();
        drop(answer);
        if !indexed && let Some(subject) = subject {
            self.index_referrer(&subject, digest, &media_type, size, artifact_type)
                .await?;
        }
        Ok(())
    }

    /// Adds referrer `digest` to the referrers tag schema's index of
    /// `subject` at the destination (distribution-spec v1.1, "Pushing
    /// Manifests with Subject"), creating the index if need be.
    async fn index_referrer(
        &mut self,
        subject: &str,
        digest: &str,
        media_type: &str,
        size: usize,
        artifact_type: Option<String>,
    ) -> Result<(), Failure> {
        let Some(tag) = protocol::referrers_tag(subject) else {
            return Ok(());
        };
        let scope = self.scope();
        let answer = self
            .remote
            .send(
                Method::Get,
                &self.url(&format!("manifests/{tag}")),
                headers(&[
                    ("accept", manifest::OCI_INDEX),
                    (MAX_RESPONSE_HEADER, MANIFEST_LIMIT),
                ]),
                Body::Empty,
                &scope,
            )
            .await
            .map_err(Failure::from)?;
        let mut index = match answer.status {
            200 => serde_json::from_slice::<serde_json::Value>(
                &answer.bytes(4 << 20).await.map_err(Failure::from)?,
            )
            .ok()
            .filter(|v| v["manifests"].is_array()),
            _ => None,
        }
        .unwrap_or_else(|| {
            serde_json::json!({
                "schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": [],
            })
        });
        let listed = index["manifests"]
            .as_array()
            .is_some_and(|m| m.iter().any(|d| d["digest"] == digest));
        if listed {
            return Ok(());
        }
        let mut descriptor = serde_json::json!({
            "mediaType": media_type, "digest": digest, "size": size,
        });
        if let Some(t) = artifact_type {
            descriptor["artifactType"] = t.into();
        }
        if let Some(m) = index["manifests"].as_array_mut() {
            m.push(descriptor);
        }
        let body = serde_json::to_vec(&index).expect("indexes serialize");
        let answer = self
            .remote
            .send(
                Method::Put,
                &self.url(&format!("manifests/{tag}")),
                headers(&[("content-type", manifest::OCI_INDEX)]),
                Body::Bytes(body),
                &scope,
            )
            .await
            .map_err(Failure::from)?;
        if answer.status != 201 && answer.status != 200 {
            let s = answer.status;
            return Err(Failure::status(
                s,
                format!("PUT referrers index {tag}: {}", answer.excerpt().await),
            ));
        }
        Ok(())
    }

    async fn manifest_present(&mut self, digest: &str) -> Result<bool, Failure> {
        let scope = self.scope();
        let answer = self
            .remote
            .send(
                Method::Head,
                &self.url(&format!("manifests/{digest}")),
                headers(&[("accept", ACCEPT)]),
                Body::Empty,
                &scope,
            )
            .await
            .map_err(Failure::from)?;
        Ok(answer.status == 200)
    }

    /// Copies the artifacts that refer to `subject` and the manifests it
    /// holds (signatures, SBOMs), by the referrers index and by cosign's
    /// tag schema, and theirs in turn.
    async fn referrers(&mut self, subject: &str) -> Result<(), Failure> {
        let mut queue = vec![subject.to_string()];
        let mut seen = std::collections::HashSet::new();
        while let Some(s) = queue.pop() {
            if !seen.insert(s.clone()) {
                continue;
            }
            // An index's children may have referrers of their own.
            if let Some((media_type, body)) = self.local_manifest(&s).await?
                && let Ok(parsed) = manifest::parse(&body, Some(&media_type))
            {
                queue.extend(parsed.manifests.iter().map(|d| d.to_string()));
            }
            let source = self.item.source.clone();
            let refs = store::scan_names(&keys::referrer_prefix(&source, &s)).await?;
            for r in refs {
                self.manifest(&r, &r).await?;
                queue.push(r);
            }
            for tag in protocol::artifact_tags(&s) {
                let Some(d) = store::get(&keys::tag(&source, &tag))
                    .await?
                    .and_then(|e| String::from_utf8(e.value).ok())
                else {
                    continue;
                };
                self.manifest(&d, &tag).await?;
                queue.push(d);
            }
        }
        Ok(())
    }

    /// Copies the blobs the destination lacks: those under a chunk several
    /// at once ([`PARALLEL`]), larger ones one by one, resumably.
    async fn blobs(&mut self, digests: Vec<String>) -> Result<(), Failure> {
        let mut small = Vec::new();
        let mut large = Vec::new();
        for d in digests {
            if !self.copied.insert(d.clone()) {
                continue;
            }
            let size = blobs::stat(d.clone())
                .await?
                .ok_or_else(|| Failure::permanent(format!("blob {d} is missing from the store")))?;
            let resuming = self.item.resume.as_ref().is_some_and(|r| r.digest == d);
            if size >= runs::SMALL_BYTES || resuming {
                large.push((d, size));
            } else {
                small.push((d, size));
            }
        }
        let target = Target {
            base: format!("{}/v2/{}", self.remote.base, self.item.destination),
            scope: self.scope(),
            destination: self.item.destination.clone(),
            registry: self.item.registry_id,
        };
        let remote = &self.remote;
        let done: Vec<Result<(String, u64, Placed), Failure>> =
            futures::stream::iter(small.into_iter().map(|(d, size)| {
                let target = &target;
                async move {
                    let how = small_blob(remote, target, &d, size).await?;
                    Ok((d, size, how))
                }
            }))
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        self.counted_all(done)?;
        for (d, size) in large {
            self.check_stop().await?;
            let how = self.large_blob(&target, &d, size).await?;
            self.counted(&d, how, 0);
        }
        Ok(())
    }

    /// Copies a large blob in chunks, recording the session and offset
    /// after each, resuming a session the item recorded.
    async fn large_blob(
        &mut self,
        target: &Target,
        digest: &str,
        size: u64,
    ) -> Result<Placed, Failure> {
        let scope = target.scope.clone();
        let (mut location, mut offset) = match self.resumable(digest).await? {
            Some(at) => at,
            None => {
                if present(&self.remote, target, digest).await? {
                    return Ok(Placed::Present);
                }
                match open(&self.remote, target, digest).await? {
                    Start::Mounted => return Ok(Placed::Mounted),
                    Start::Session(location) => (location, 0),
                }
            }
        };
        let mut out_of_step = 0;
        // A destination that keeps taking chunks and asking for them
        // again is cut off.
        let mut sent = 0u64;
        let mut chunk = runs::CHUNK_BYTES;
        while offset < size {
            if sent > size + 2 * runs::MAX_CHUNK_BYTES {
                self.item.resume = None;
                return Err(Failure::permanent(format!(
                    "the destination asked for blob {digest} more than twice over"
                )));
            }
            self.check_stop().await?;
            let len = (size - offset).min(chunk);
            let began = crate::now_ms();
            let answer = send_chunk(&self.remote, &scope, &location, digest, offset, len).await?;
            match answer.status {
                // The chunk was taken whole (`Range` is not trusted here:
                // `0-0` cannot tell one byte from none).
                202 | 204 => {
                    chunk = runs::next_chunk(len.max(chunk), crate::now_ms() - began);
                    if let Some(l) = answer.header("location") {
                        location = protocol::resolve(&self.remote.base, &l);
                    }
                    self.item.bytes += len;
                    sent += len;
                    offset += len;
                    out_of_step = 0;
                }
                416 if out_of_step < 2 => {
                    // Out of step: ask where the session stands.
                    drop(answer);
                    out_of_step += 1;
                    offset = self.offset_of(&location).await?.ok_or_else(|| {
                        Failure::retry(format!("the upload session of {digest} is gone"))
                    })?;
                }
                416 => {
                    // Still out of step: the next attempt starts over.
                    self.item.resume = None;
                    return Err(Failure::retry(format!(
                        "the destination keeps refusing the upload of {digest} at {offset}"
                    )));
                }
                s => {
                    return Err(Failure::status(
                        s,
                        format!("PATCH blob {digest}: {}", answer.excerpt().await),
                    ));
                }
            }
            self.item.resume = Some(Resume {
                digest: digest.to_string(),
                location: location.clone(),
                offset,
            });
            self.save().await?;
        }
        // A session that cannot close is dropped: the next attempt starts
        // a new one.
        self.item.resume = None;
        close(&self.remote, &scope, &location, digest).await?;
        Ok(Placed::Sent)
    }

    /// Where an interrupted copy of `digest` stands at the destination
    /// (its session and offset), when the item recorded one that lives.
    async fn resumable(&mut self, digest: &str) -> Result<Option<(String, u64)>, Failure> {
        // A session on another origin (the registry's URL changed since)
        // cannot be resumed.
        let Some(r) = self.item.resume.clone().filter(|r| {
            r.digest == digest && protocol::same_origin(&r.location, &self.remote.base)
        }) else {
            self.item.resume = None;
            return Ok(None);
        };
        match self.offset_of(&r.location).await? {
            Some(offset) => {
                self.item.resumed_from = offset;
                Ok(Some((r.location, offset)))
            }
            None => {
                self.item.resume = None;
                Ok(None)
            }
        }
    }

    /// The offset of upload session `location` (`GET` → `Range`), none
    /// when the destination no longer has it.
    async fn offset_of(&mut self, location: &str) -> Result<Option<u64>, Failure> {
        let scope = self.scope();
        let answer = self
            .remote
            .send(Method::Get, location, Vec::new(), Body::Empty, &scope)
            .await
            .map_err(Failure::from)?;
        match answer.status {
            204 | 200 => Ok(Some(
                answer
                    .header("range")
                    .and_then(|r| protocol::next_offset(&r))
                    .unwrap_or(0),
            )),
            // Gone, or refused: the session cannot be resumed.
            s if (400..500).contains(&s) => Ok(None),
            s => Err(Failure::status(
                s,
                format!("upload status: {}", answer.excerpt().await),
            )),
        }
    }
}

/// The largest manifest read from a registry (the OCI spec's 4 MiB).
const MANIFEST_LIMIT: &str = "4194304";

enum Start {
    Mounted,
    Session(String),
}

/// Where blobs go: the destination repository's URL and token scope.
struct Target {
    /// `<registry>/v2/<destination>`.
    base: String,
    scope: String,
    destination: String,
    registry: u64,
}

/// Whether the destination has `digest` (`HEAD`).
async fn present(remote: &Remote, target: &Target, digest: &str) -> Result<bool, Failure> {
    let url = format!("{}/blobs/{digest}", target.base);
    let head = remote
        .send(Method::Head, &url, Vec::new(), Body::Empty, &target.scope)
        .await
        .map_err(Failure::from)?;
    // A redirect to storage answers for a blob that exists.
    Ok(head.status == 200 || matches!(head.status, 302 | 303 | 307 | 308))
}

/// Copies a blob under a chunk in one `PATCH`.
async fn small_blob(
    remote: &Remote,
    target: &Target,
    digest: &str,
    size: u64,
) -> Result<Placed, Failure> {
    if present(remote, target, digest).await? {
        return Ok(Placed::Present);
    }
    let mut location = match open(remote, target, digest).await? {
        Start::Mounted => return Ok(Placed::Mounted),
        Start::Session(location) => location,
    };
    if size > 0 {
        let answer = send_chunk(remote, &target.scope, &location, digest, 0, size).await?;
        if answer.status != 202 && answer.status != 204 {
            let s = answer.status;
            return Err(Failure::status(
                s,
                format!("PATCH blob {digest}: {}", answer.excerpt().await),
            ));
        }
        if let Some(l) = answer.header("location") {
            location = protocol::resolve(&remote.base, &l);
        }
    }
    close(remote, &target.scope, &location, digest).await?;
    Ok(Placed::Sent)
}

/// `PATCH`es `len` bytes of the stored blob from `offset`, read from the
/// store as a stream that becomes the request body.
async fn send_chunk(
    remote: &Remote,
    scope: &str,
    location: &str,
    digest: &str,
    offset: u64,
    len: u64,
) -> Result<berth_guest::remote::Answer, Failure> {
    let stream = blobs::read(digest.to_string(), offset, Some(len)).await?;
    remote
        .send(
            Method::Patch,
            location,
            headers(&[
                ("content-type", "application/octet-stream"),
                ("content-range", &protocol::content_range(offset, len)),
            ]),
            Body::Stream(stream, len),
            scope,
        )
        .await
        .map_err(Failure::from)
}

/// Closes an upload session with the blob's digest (`PUT`).
async fn close(remote: &Remote, scope: &str, location: &str, digest: &str) -> Result<(), Failure> {
    let answer = remote
        .send(
            Method::Put,
            &protocol::with_digest(location, digest),
            Vec::new(),
            Body::Empty,
            scope,
        )
        .await
        .map_err(Failure::from)?;
    if answer.status != 201 && answer.status != 204 {
        let s = answer.status;
        return Err(Failure::status(
            s,
            format!("PUT blob {digest}: {}", answer.excerpt().await),
        ));
    }
    Ok(())
}

/// Opens an upload session for `digest`, mounting it instead when the
/// job put it in another repository of the registry.
async fn open(remote: &Remote, target: &Target, digest: &str) -> Result<Start, Failure> {
    let from = store::get(&runs::placed(target.registry, digest))
        .await?
        .and_then(|e| String::from_utf8(e.value).ok())
        .filter(|r| *r != target.destination);
    let (url, scope) = match &from {
        Some(r) => (
            format!(
                "{}/blobs/uploads/?mount={}&from={}",
                target.base,
                protocol::encode(digest),
                protocol::encode(r)
            ),
            format!("{} repository:{r}:pull", target.scope),
        ),
        None => (
            format!("{}/blobs/uploads/", target.base),
            target.scope.clone(),
        ),
    };
    let answer = remote
        .send(Method::Post, &url, Vec::new(), Body::Empty, &scope)
        .await
        .map_err(Failure::from)?;
    match answer.status {
        201 if from.is_some() => Ok(Start::Mounted),
        202 => {
            let l = answer.header("location").ok_or_else(|| {
                Failure::permanent("the registry opened an upload without a Location")
            })?;
            Ok(Start::Session(protocol::resolve(&remote.base, &l)))
        }
        s => Err(Failure::status(
            s,
            format!("POST blob upload: {}", answer.excerpt().await),
        )),
    }
}
