//! Copying one tag from a remote registry into Berth (a pull replication
//! policy). What arrives is written through the `uploads` and `manifests`
//! endpoint families (imported through `wit/endpoints.wit`'s
//! `replication-job` world), exactly as a client's push: the same checks,
//! immutability, blob links and `manifest.pushed` events.
//!
//! The order is the push's: blobs and an index's children first, the tag
//! last, and the referrers and cosign tags of each manifest after it. A
//! blob is fetched in `Range` requests (from [`runs::CHUNK_BYTES`],
//! growing while they go fast; `Range: bytes=…`,
//! following a redirect to storage without the registry's credentials)
//! and each range's response body goes, still a stream, into a local
//! upload session as a `PATCH`; the item records the session and offset
//! after each, so a failure or a restart resumes from the local offset.

use crate::berth::registry::{manifests_api, registry_types::AccountUser, uploads_api};
use crate::{Failure, Outcome, Placed, Transfer};
use berth_domain::keys;
use berth_domain::manifest;
use berth_domain::replication::protocol::{self, ACCEPT};
use berth_domain::replication::runs::{self, Resume};
use berth_guest::remote::{self, Answer, Body, MAX_RESPONSE_HEADER, headers};
use berth_guest::store;
use futures::StreamExt;
use sha2::Digest as _;
use spin_sdk::wasip3::http::types::Method;

/// Repositories holding a blob looked at for one of the tenant's, to mount
/// from.
const HOLDERS_LOOKED_AT: u32 = 100;

/// How a local blob upload starts.
enum Start {
    Mounted,
    Session(String),
}

impl Transfer<'_, '_> {
    fn source_url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.remote.base, self.item.source)
    }

    fn pull_scope(&self) -> String {
        format!("repository:{}:pull", self.item.source)
    }

    /// Hands a request to one of Berth's own endpoint families.
    async fn local(
        &self,
        method: Method,
        path: &str,
        list: Vec<(String, Vec<u8>)>,
        body: Body,
        manifests: bool,
    ) -> Result<Answer, Failure> {
        let request = remote::request(method, None, path, list, body, None)
            .map_err(|_| Failure::permanent(format!("invalid local request {path}")))?;
        let response = if manifests {
            let caller = AccountUser {
                tenant: self.item.tenant.clone(),
                user: self.item.operator.clone(),
            };
            manifests_api::handle(request, Some(caller)).await
        } else {
            uploads_api::handle(request).await
        };
        response
            .map(Answer::of)
            .map_err(|e| Failure::retry(format!("local store: {e:?}")))
    }

    /// Copies the item's tag from the registry; what it came to.
    pub async fn pull(&mut self) -> Result<Outcome, Failure> {
        crate::owned(&self.item.tenant, &self.item.destination).await?;
        let tag = self.item.tag.clone();
        let (media_type, body, digest) = self.remote_manifest(&tag).await?;
        self.item.digest = digest.clone().unwrap_or_default();
        let here = store::get(&keys::tag(&self.item.destination, &tag))
            .await?
            .and_then(|e| String::from_utf8(e.value).ok());
        match (here, &digest) {
            (Some(h), Some(d)) if h == *d => {
                self.pull_referrers(d).await?;
                return Ok(Outcome::Copied);
            }
            (Some(h), _) if !self.item.override_ => {
                return Ok(Outcome::Existed(format!(
                    "{}:{tag} here is {h}, not {}; override is off",
                    self.item.destination,
                    digest.as_deref().unwrap_or("the source's")
                )));
            }
            _ => {}
        }
        let stored = self.pull_manifest(&media_type, body, &tag).await?;
        self.item.digest = stored.clone();
        self.pull_referrers(&stored).await?;
        Ok(Outcome::Copied)
    }

    /// The registry's manifest `reference`: its media type, bytes and
    /// digest (as the registry says; the family checks it when put).
    async fn remote_manifest(
        &mut self,
        reference: &str,
    ) -> Result<(String, Vec<u8>, Option<String>), Failure> {
        let scope = self.pull_scope();
        let url = self.source_url(&format!("manifests/{reference}"));
        let answer = self
            .remote
            .send(
                Method::Get,
                &url,
                headers(&[("accept", ACCEPT), (MAX_RESPONSE_HEADER, "4194304")]),
                Body::Empty,
                &scope,
            )
            .await
            .map_err(Failure::from)?;
        if answer.status != 200 {
            let s = answer.status;
            return Err(Failure::status(
                s,
                format!("GET manifest {reference}: {}", answer.excerpt().await),
            ));
        }
        let media_type = answer
            .header("content-type")
            .unwrap_or_else(|| manifest::OCI_MANIFEST.to_string());
        let body = answer
            .bytes(store::max_manifest() as usize)
            .await
            .map_err(Failure::from)?;
        // The digest of the bytes received (a manifest is small), not the
        // registry's word for it.
        let digest = format!("sha256:{}", crate::hex(&sha2::Sha256::digest(&body)));
        Ok((media_type, body, Some(digest)))
    }

    /// Copies a manifest's content, then puts it here under `reference`;
    /// the digest the family stored it under.
    async fn pull_manifest(
        &mut self,
        media_type: &str,
        body: Vec<u8>,
        reference: &str,
    ) -> Result<String, Failure> {
        let parsed = manifest::parse(&body, Some(media_type))
            .map_err(|e| Failure::permanent(format!("manifest {reference}: {e}")))?;
        for child in &parsed.manifests {
            self.pull_by_digest(&child.to_string()).await?;
        }
        let sizes: std::collections::HashMap<String, u64> = descriptor_sizes(&body);
        let mut blobs: Vec<String> = parsed.blobs.iter().map(|b| b.to_string()).collect();
        for (d, _) in &parsed.content {
            let d = d.to_string();
            // An index entry that is not a manifest type: a manifest if
            // the registry has it as one, else a blob.
            if self.remote_has_manifest(&d).await? {
                self.pull_by_digest(&d).await?;
            } else {
                blobs.push(d);
            }
        }
        self.pull_blobs(blobs, &sizes).await?;
        if self.item.manifests >= crate::MAX_MANIFESTS {
            return Err(Failure::permanent(format!(
                "more than {} manifests for one tag",
                crate::MAX_MANIFESTS
            )));
        }
        let path = format!("/v2/{}/manifests/{reference}", self.item.destination);
        let answer = self
            .local(
                Method::Put,
                &path,
                headers(&[("content-type", media_type)]),
                Body::Bytes(body),
                true,
            )
            .await?;
        if answer.status != 201 {
            let s = answer.status;
            return Err(Failure::permanent(format!(
                "storing manifest {reference}: {}",
                answer.excerpt().await
            ))
            .or_retry(s));
        }
        self.item.manifests += 1;
        answer
            .header("docker-content-digest")
            .ok_or_else(|| Failure::permanent("the manifests family gave no digest"))
    }

    /// Whether the registry has a manifest under `reference` (`HEAD`).
    async fn remote_has_manifest(&self, reference: &str) -> Result<bool, Failure> {
        let scope = self.pull_scope();
        let url = self.source_url(&format!("manifests/{reference}"));
        let head = self
            .remote
            .send(
                Method::Head,
                &url,
                headers(&[("accept", ACCEPT)]),
                Body::Empty,
                &scope,
            )
            .await
            .map_err(Failure::from)?;
        Ok(head.status == 200)
    }

    /// Copies manifest `digest` (and its content) unless it is here.
    async fn pull_by_digest(&mut self, digest: &str) -> Result<(), Failure> {
        if !self.copied.insert(digest.to_string())
            || store::exists(&keys::manifest(&self.item.destination, digest)).await?
        {
            return Ok(());
        }
        let (media_type, body, _) = self.remote_manifest(digest).await?;
        Box::pin(self.pull_manifest(&media_type, body, digest)).await?;
        Ok(())
    }

    /// Copies the referrers of `subject` (the registry's referrers API,
    /// where it has one) and cosign's tags of it, and theirs in turn.
    async fn pull_referrers(&mut self, subject: &str) -> Result<(), Failure> {
        let mut queue = vec![subject.to_string()];
        let mut seen = std::collections::HashSet::new();
        while let Some(s) = queue.pop() {
            if !seen.insert(s.clone()) {
                continue;
            }
            let scope = self.pull_scope();
            let url = self.source_url(&format!("referrers/{s}"));
            let answer = self
                .remote
                .send(
                    Method::Get,
                    &url,
                    headers(&[(MAX_RESPONSE_HEADER, "4194304")]),
                    Body::Empty,
                    &scope,
                )
                .await
                .map_err(Failure::from)?;
            // A registry without the referrers API answers 404.
            if answer.status == 200 {
                let body = answer.bytes(4 << 20).await.map_err(Failure::from)?;
                for d in referrer_digests(&body) {
                    self.pull_by_digest(&d).await?;
                    queue.push(d);
                }
            }
            for tag in protocol::artifact_tags(&s) {
                if !self.remote_has_manifest(&tag).await? {
                    continue;
                }
                let (media_type, body, _) = self.remote_manifest(&tag).await?;
                let d = self.pull_manifest(&media_type, body, &tag).await?;
                queue.push(d);
            }
        }
        Ok(())
    }

    /// Copies the blobs the destination lacks: those under a chunk several
    /// at once ([`crate::PARALLEL`]), larger ones one by one, resumably.
    /// `sizes`: what the manifest says of each (else the registry's
    /// `HEAD`).
    async fn pull_blobs(
        &mut self,
        digests: Vec<String>,
        sizes: &std::collections::HashMap<String, u64>,
    ) -> Result<(), Failure> {
        let mut small = Vec::new();
        let mut large = Vec::new();
        for d in digests {
            if !self.copied.insert(d.clone()) {
                continue;
            }
            if store::exists(&keys::blob_link(&self.item.destination, &d)).await? {
                self.counted(&d, Placed::Present, 0);
                continue;
            }
            let size = match sizes.get(&d).copied().filter(|s| *s > 0) {
                Some(s) => s,
                None => self.remote_size(&d).await?,
            };
            let resuming = self.item.resume.as_ref().is_some_and(|r| r.digest == d);
            if size >= runs::SMALL_BYTES || resuming {
                large.push((d, size));
            } else {
                small.push((d, size));
            }
        }
        let this = &*self;
        let done: Vec<Result<(String, u64, Placed), Failure>> =
            futures::stream::iter(small.into_iter().map(|(d, size)| async move {
                let how = match this.open_local(&d).await? {
                    Start::Mounted => Placed::Mounted,
                    Start::Session(location) => {
                        let moved = match this.move_range(&d, &location, 0, size, size).await {
                            Ok((l, _)) => this.close_local(&l, &d).await,
                            Err(f) => Err(f),
                        };
                        if let Err(f) = moved {
                            // Nothing resumes a small blob: end its session.
                            let _ = this
                                .local(Method::Delete, &location, Vec::new(), Body::Empty, false)
                                .await;
                            return Err(f);
                        }
                        Placed::Sent
                    }
                };
                Ok((d, size, how))
            }))
            .buffer_unordered(crate::PARALLEL)
            .collect()
            .await;
        self.counted_all(done)?;
        for (d, size) in large {
            let how = self.pull_large_blob(&d, size).await?;
            self.counted(&d, how, 0);
        }
        Ok(())
    }

    /// Copies blob `digest` (`size` bytes) in chunks, recording the local
    /// session and offset after each, resuming a session the item
    /// recorded.
    async fn pull_large_blob(&mut self, digest: &str, size: u64) -> Result<Placed, Failure> {
        let (mut location, mut offset) = match self.local_resumable(digest).await? {
            Some(at) => at,
            None => match self.open_local(digest).await? {
                Start::Mounted => return Ok(Placed::Mounted),
                Start::Session(location) => (location, 0),
            },
        };
        let mut chunk = runs::CHUNK_BYTES;
        while offset < size {
            self.check_stop().await?;
            let len = (size - offset).min(chunk);
            let began = crate::now_ms();
            match self.move_range(digest, &location, offset, len, size).await {
                Ok((l, taken)) => {
                    chunk = runs::next_chunk(len.max(chunk), crate::now_ms() - began);
                    location = l;
                    self.item.bytes += taken;
                    offset += taken;
                }
                Err(failure) => {
                    // The transfer broke: the next attempt resumes from
                    // what the session holds.
                    self.item.resume = Some(Resume {
                        digest: digest.to_string(),
                        location: location.clone(),
                        offset,
                    });
                    self.save().await?;
                    return Err(failure);
                }
            }
            self.item.resume = Some(Resume {
                digest: digest.to_string(),
                location: location.clone(),
                offset,
            });
            self.save().await?;
        }
        self.close_local(&location, digest).await?;
        self.item.resume = None;
        Ok(Placed::Sent)
    }

    /// Opens a local upload session for `digest` in the destination, or
    /// mounts the blob from a repository of the same tenant that links it
    /// ([`Self::tenant_holder`]): never another tenant's, whatever the
    /// remote manifest names.
    async fn open_local(&self, digest: &str) -> Result<Start, Failure> {
        let mut path = format!("/v2/{}/blobs/uploads/", self.item.destination);
        if let Some(from) = self.tenant_holder(digest).await? {
            path += &format!(
                "?mount={}&from={}",
                protocol::encode(digest),
                protocol::encode(&from)
            );
        }
        let answer = self
            .local(Method::Post, &path, Vec::new(), Body::Empty, false)
            .await?;
        match (answer.status, answer.header("location")) {
            (201, _) => Ok(Start::Mounted),
            (202, Some(l)) => Ok(Start::Session(l)),
            (s, _) => Err(Failure::permanent(format!(
                "could not open a local upload: {}",
                answer.excerpt().await
            ))
            .or_retry(s)),
        }
    }

    /// A repository of the item's tenant that links blob `digest`, among
    /// the first [`HOLDERS_LOOKED_AT`] repositories holding it.
    async fn tenant_holder(&self, digest: &str) -> Result<Option<String>, Failure> {
        let prefix = berth_domain::gc::holders_prefix(digest);
        let holders = store::metadata::scan(prefix.clone(), None, HOLDERS_LOOKED_AT).await?;
        for h in holders {
            let repo = &h.key[prefix.len()..];
            if repo != self.item.destination
                && crate::owned(&self.item.tenant, repo).await.is_ok()
                && store::exists(&keys::blob_link(repo, digest)).await?
            {
                return Ok(Some(repo.to_string()));
            }
        }
        Ok(None)
    }

    /// Fetches `len` bytes of blob `digest` (`size` in all) from `offset`
    /// and `PATCH`es them, still a stream, into local session `location`;
    /// the session's next location and the bytes taken (all the rest
    /// from a registry that ignores `Range`, usable only from the start).
    async fn move_range(
        &self,
        digest: &str,
        location: &str,
        offset: u64,
        len: u64,
        size: u64,
    ) -> Result<(String, u64), Failure> {
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let (status, stream) = self.fetch(digest, &range, size - offset).await?;
        let (stream, whole) = match status {
            206 => (stream, len),
            200 if offset == 0 => (stream, size),
            s => return Err(Failure::status(s, format!("GET blob {digest}: HTTP {s}"))),
        };
        let answer = self
            .local(
                Method::Patch,
                location,
                headers(&[("content-range", &protocol::content_range(offset, whole))]),
                Body::Stream(stream, whole),
                false,
            )
            .await?;
        match answer.status {
            // The chunk was taken whole (`Range` is not trusted here:
            // `0-0` cannot tell one byte from none).
            202 => Ok((
                answer
                    .header("location")
                    .unwrap_or_else(|| location.to_string()),
                whole,
            )),
            s => {
                let text = answer.excerpt().await;
                let failure = Failure::retry(format!("storing blob {digest} at {offset}: {text}"));
                // A body cut off (400) or out of step (416) is worth
                // another attempt; the store's refusals (quota, size)
                // are final.
                Err(if matches!(s, 400 | 416) {
                    failure
                } else {
                    failure.or_retry(s)
                })
            }
        }
    }

    /// Closes local session `location` as blob `digest` (`PUT`).
    async fn close_local(&self, location: &str, digest: &str) -> Result<(), Failure> {
        let answer = self
            .local(
                Method::Put,
                &protocol::with_digest(location, digest),
                Vec::new(),
                Body::Empty,
                false,
            )
            .await?;
        if answer.status != 201 {
            let s = answer.status;
            return Err(Failure::permanent(format!(
                "storing blob {digest}: {}",
                answer.excerpt().await
            ))
            .or_retry(s));
        }
        Ok(())
    }

    /// The blob's size as the registry reports it (`HEAD`).
    async fn remote_size(&mut self, digest: &str) -> Result<u64, Failure> {
        let scope = self.pull_scope();
        let url = self.source_url(&format!("blobs/{digest}"));
        let head = self
            .remote
            .send(Method::Head, &url, Vec::new(), Body::Empty, &scope)
            .await
            .map_err(Failure::from)?;
        head.header("content-length")
            .and_then(|v| v.parse().ok())
            .filter(|_| head.status == 200)
            .ok_or_else(|| {
                Failure::status(
                    head.status,
                    format!("HEAD blob {digest}: HTTP {}", head.status),
                )
            })
    }

    /// `GET` of a range of the blob, following one redirect to storage
    /// (without the registry's credentials): the status and body stream.
    async fn fetch(
        &self,
        digest: &str,
        range: &str,
        len: u64,
    ) -> Result<(u16, spin_sdk::wasip3::wit_bindgen::StreamReader<u8>), Failure> {
        let scope = self.pull_scope();
        let url = self.source_url(&format!("blobs/{digest}"));
        let max = len.to_string();
        let list = headers(&[("range", range), (remote::MAX_RESPONSE_HEADER, &max)]);
        let mut answer = self
            .remote
            .send(Method::Get, &url, list.clone(), Body::Empty, &scope)
            .await
            .map_err(Failure::from)?;
        if matches!(answer.status, 301 | 302 | 303 | 307 | 308) {
            let to = answer
                .header("location")
                .ok_or_else(|| Failure::permanent("a redirect without a Location"))?;
            let to = protocol::resolve(&self.remote.base, &to);
            answer = self
                .remote
                .send_elsewhere(&to, list)
                .await
                .map_err(Failure::from)?;
        }
        let status = answer.status;
        let (stream, _) = answer
            .into_stream()
            .ok_or_else(|| Failure::retry("an answer without a body"))?;
        Ok((status, stream))
    }

    /// Where an interrupted pull of `digest` stands in its local upload
    /// session, when the item recorded one that lives.
    async fn local_resumable(&mut self, digest: &str) -> Result<Option<(String, u64)>, Failure> {
        let Some(r) = self.item.resume.clone().filter(|r| r.digest == digest) else {
            return Ok(None);
        };
        let answer = self
            .local(Method::Get, &r.location, Vec::new(), Body::Empty, false)
            .await?;
        match (answer.status, answer.header("range")) {
            (204, range) => {
                let offset = range.and_then(|r| protocol::next_offset(&r)).unwrap_or(0);
                self.item.resumed_from = offset;
                Ok(Some((r.location, offset)))
            }
            _ => {
                self.item.resume = None;
                Ok(None)
            }
        }
    }
}

/// The sizes of the descriptors a manifest lists, by digest.
fn descriptor_sizes(body: &[u8]) -> std::collections::HashMap<String, u64> {
    let mut out = std::collections::HashMap::new();
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return out;
    };
    let descriptors = v
        .get("layers")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
        .chain(
            v.get("manifests")
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten(),
        )
        .chain(v.get("config"));
    for d in descriptors {
        if let (Some(digest), Some(size)) = (
            d.get("digest").and_then(|x| x.as_str()),
            d.get("size").and_then(|x| x.as_u64()),
        ) {
            out.insert(digest.to_string(), size);
        }
    }
    out
}

/// The manifests a referrers answer (an OCI image index) lists.
fn referrer_digests(body: &[u8]) -> Vec<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("manifests").and_then(|m| m.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.get("digest").and_then(|d| d.as_str()).map(str::to_string))
        .collect()
}

/// What a pull policy copies from `registry` now: the tags of the
/// repositories its filters select (the catalog and tag lists, paged by
/// their `Link` headers), each to its destination. An error says why the
/// registry could not be listed.
pub async fn list(
    registry: &berth_domain::replication::registry::Registry,
    policy: &berth_domain::replication::rules::Policy,
) -> Result<Vec<berth_guest::replication::ItemSpec>, String> {
    let mut remote = remote::Remote::of(registry).map_err(|e| e.text)?;
    remote.ping().await.map_err(|e| e.text)?;
    let repositories = pages(
        &mut remote,
        "/v2/_catalog?n=1000",
        "registry:catalog:*",
        "repositories",
    )
    .await?;
    let mut items = Vec::new();
    for repo in repositories
        .into_iter()
        .filter(|r| policy.selects_repository(r))
    {
        let scope = format!("repository:{repo}:pull");
        let path = format!("/v2/{repo}/tags/list?n=1000");
        for tag in pages(&mut remote, &path, &scope, "tags").await? {
            if !protocol::is_artifact_tag(&tag) && policy.selects_tag(&tag) {
                items.push(berth_guest::replication::ItemSpec {
                    source: repo.clone(),
                    destination: policy.destination(&repo),
                    tag,
                });
            }
        }
    }
    Ok(items)
}

/// Every entry of the string array `field` over a paged listing.
async fn pages(
    remote: &mut remote::Remote,
    first: &str,
    scope: &str,
    field: &str,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut next = Some(first.to_string());
    // A registry that pages forever is cut off.
    for _ in 0..10_000 {
        let Some(path) = next.take() else {
            break;
        };
        let url = protocol::resolve(&remote.base, &path);
        let answer = remote
            .send(
                Method::Get,
                &url,
                headers(&[(MAX_RESPONSE_HEADER, "16777216")]),
                Body::Empty,
                scope,
            )
            .await
            .map_err(|e| e.text)?;
        if answer.status == 404 && field == "tags" {
            break;
        }
        if answer.status != 200 {
            return Err(format!("GET {path}: {}", answer.excerpt().await));
        }
        next = answer.header("link").and_then(|l| protocol::next_link(&l));
        let body = answer.bytes(16 << 20).await.map_err(|e| e.text)?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| format!("GET {path}: not JSON"))?;
        out.extend(
            v.get(field)
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_string)),
        );
    }
    Ok(out)
}
