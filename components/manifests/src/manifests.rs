//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.
//!
//! A manifest is kept with its metadata in one record, so a GET by digest
//! is one metadata read and a GET by tag two. A PUT commits the manifest,
//! its tag, its referrer entry, the repository record and its event
//! (`berth_domain::events`) atomically; a DELETE commits its event with it.
//! A GET with the body is a pull: it counts a download and raises the
//! manifest's last-pull time, both written later by the provider.

use berth_domain::events::EventKind;
use berth_domain::keys::{self, ManifestRecord};
use berth_domain::manifest;
use berth_domain::{Algorithm, Digest, ErrorCode, OciError, name};
use berth_guest::gc;
use berth_guest::http::{Incoming, Reply};
use berth_guest::parse_digest;
use berth_guest::store::{self, Precondition, Stat, StoreError, WriteOp, fault, metadata};
use sha2::Digest as _;

enum Reference<'a> {
    Tag(&'a str),
    Digest(Digest),
}

fn reference(r: &str) -> Result<Reference<'_>, OciError> {
    if r.contains(':') {
        Ok(Reference::Digest(parse_digest(r)?))
    } else if name::is_valid_tag(r) {
        Ok(Reference::Tag(r))
    } else {
        Err(OciError::manifest_invalid(format!("invalid tag {r:?}"))
            .with_detail(serde_json::json!({ "tag": r })))
    }
}

/// Resolves a reference to the digest it names in this repository.
async fn resolve(name: &str, r: &Reference<'_>) -> Result<Option<String>, OciError> {
    match r {
        Reference::Digest(d) => Ok(Some(d.to_string())),
        Reference::Tag(t) => Ok(store::get(&keys::tag(name, t))
            .await?
            .and_then(|e| String::from_utf8(e.value).ok())),
    }
}

pub async fn get(
    req: &Incoming,
    name: &str,
    reference_str: &str,
    with_body: bool,
) -> Result<Reply, OciError> {
    // A reference that is neither a tag nor a digest names nothing: the
    // spec answers reads of unknown manifests with 404 (PUT keeps 400).
    let r = reference(reference_str).map_err(|_| OciError::manifest_unknown(reference_str))?;
    let Some(digest) = resolve(name, &r).await? else {
        return Err(OciError::manifest_unknown(reference_str));
    };
    let Some(entry) = store::get(&keys::manifest(name, &digest)).await? else {
        return Err(OciError::manifest_unknown(reference_str));
    };
    let (record, body) = keys::decode_manifest(&entry.value)
        .ok_or_else(|| OciError::internal(format!("corrupt manifest record {digest}")))?;
    let accept = req.headers_all("accept");
    let accept: Vec<&str> = accept.iter().map(String::as_str).collect();
    if !manifest::accepts(&accept, &record.media_type) {
        return Err(
            OciError::manifest_unknown(reference_str).with_detail(serde_json::json!({
                "reference": reference_str,
                "mediaType": record.media_type,
                "reason": "the manifest's media type is not in the Accept header",
            })),
        );
    }
    let mut reply = Reply::new(200)
        .header("content-type", record.media_type.clone())
        .header("docker-content-digest", digest.clone())
        .header("etag", format!("\"{digest}\""));
    if with_body {
        reply = reply.bytes(body.to_vec());
        // A pull: the repository's download figure and the manifest's
        // last-pull time (for aging rules), written later by the provider
        // so the client never waits for a write.
        metadata::note(&[
            Stat::Add((keys::downloads(name), 1)),
            Stat::Raise((keys::pulled(name, &digest), store::now() as i64)),
        ]);
    } else {
        reply = reply.header("content-length", body.len().to_string());
    }
    Ok(reply)
}

fn digest_of(algorithm: Algorithm, body: &[u8]) -> String {
    match algorithm {
        Algorithm::Sha256 => format!("sha256:{}", hex::encode(sha2::Sha256::digest(body))),
        Algorithm::Sha512 => format!("sha512:{}", hex::encode(sha2::Sha512::digest(body))),
    }
}

pub async fn put(
    req: &Incoming,
    name: &str,
    reference_str: &str,
    operator: &str,
) -> Result<Reply, OciError> {
    let r = reference(reference_str)?;
    let max = store::max_manifest();
    let body = req.body_bytes(max).await.map_err(|e| {
        if e.status() == 413 {
            OciError::new(ErrorCode::ManifestInvalid, e.message).with_status(413)
        } else if e.code == ErrorCode::BlobUploadInvalid {
            // The body broke off.
            OciError::new(ErrorCode::ManifestInvalid, e.message)
        } else {
            e
        }
    })?;
    let digest = match &r {
        Reference::Digest(d) => {
            let actual = digest_of(d.algorithm(), &body);
            if actual != d.as_str() {
                return Err(
                    OciError::digest_invalid("manifest digest does not match its content")
                        .with_detail(
                            serde_json::json!({ "expected": d.as_str(), "computed": actual }),
                        ),
                );
            }
            actual
        }
        Reference::Tag(_) => digest_of(Algorithm::Sha256, &body),
    };
    let parsed = manifest::parse(&body, req.header("content-type").as_deref())
        .map_err(OciError::manifest_invalid)?;

    // Everything the manifest references must already be in this repository:
    // blobs as blobs, manifests as manifests, and other index entries as
    // either (one batch read; messages are built only for what is missing).
    let blobs = parsed
        .blobs
        .iter()
        .map(|d| keys::blob_link(name, d.as_str()));
    let manifests = parsed
        .manifests
        .iter()
        .map(|d| keys::manifest(name, d.as_str()));
    let either = parsed.content.iter().flat_map(|(d, _)| {
        [
            keys::blob_link(name, d.as_str()),
            keys::manifest(name, d.as_str()),
        ]
    });
    let wanted: Vec<String> = blobs.chain(manifests).chain(either).collect();
    // Read again on each attempt: the commit checks that what was found is
    // unchanged and is not being garbage collected (`berth_domain::gc`).
    let present = async || -> Result<Vec<WriteOp>, OciError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let found = metadata::get_many(wanted.clone()).await.map_err(fault)?;
        let (blobs, rest) = found.split_at(parsed.blobs.len());
        let (manifests, either) = rest.split_at(parsed.manifests.len());
        let missing = |found: &[Option<metadata::Entry>]| found.iter().position(Option::is_none);
        let unknown = missing(blobs)
            .map(|i| ("blob", &parsed.blobs[i]))
            .or_else(|| missing(manifests).map(|i| ("manifest", &parsed.manifests[i])))
            .or_else(|| {
                either
                    .chunks(2)
                    .zip(&parsed.content)
                    .find(|(pair, _)| pair.iter().all(Option::is_none))
                    .map(|(_, (d, t))| (t.as_str(), d))
            });
        if let Some((what, digest)) = unknown {
            return Err(OciError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("manifest references {what} {digest}, which is not in repository {name}"),
            )
            .with_detail(serde_json::json!({ "digest": digest.as_str() }))
            .with_status(400));
        }
        let mut checks = Vec::with_capacity(2 * found.len());
        for (key, entry) in wanted.iter().zip(&found) {
            if let Some(e) = entry {
                checks.push(gc::check(key.clone(), Precondition::Version(e.version)));
            }
        }
        for d in gc::referenced(&parsed) {
            checks.push(gc::check(berth_domain::gc::doomed(d), Precondition::Absent));
        }
        Ok(checks)
    };

    let record = ManifestRecord {
        media_type: parsed.media_type.clone(),
        subject: parsed.subject.as_ref().map(|s| s.to_string()),
        created: store::now(),
    };
    let mut ops = vec![WriteOp::Put((
        keys::manifest(name, &digest),
        keys::encode_manifest(&record, &body),
        Precondition::None,
    ))];
    ops.extend(gc::index(name, &digest, &parsed));
    if let Some(subject) = &parsed.subject {
        let descriptor = manifest::Descriptor {
            media_type: parsed.media_type.clone(),
            digest: digest.clone(),
            size: body.len() as i64,
            artifact_type: parsed.artifact_type.clone(),
            annotations: parsed.annotations.clone(),
            urls: None,
            platform: None,
        };
        ops.push(store::put_json(
            keys::referrer(name, subject.as_str(), &digest),
            &descriptor,
        ));
    }
    // The organization exists (the router made sure): its tenant owns
    // the repository and the event; its rules say which tags are immutable.
    let (tenant, rules) = store::owner_and_rules(name).await?;
    let tenant = tenant.unwrap_or_default();
    let tag = match &r {
        Reference::Tag(t) => Some(*t),
        Reference::Digest(_) => None,
    };
    let pushed = store::new_event(
        req,
        EventKind::ManifestPushed,
        &tenant,
        name,
        operator.into(),
    )
    .about(tag, &digest, Some((&parsed.media_type, body.len())));
    ops.push(store::event(&pushed));
    let fixed = ops;
    store::commit_in_repo(name, async || {
        let mut ops = fixed.clone();
        ops.extend(present().await?);
        if let Reference::Tag(tag) = &r {
            // The tag is written against the version read here, so two
            // pushes racing for one tag cannot leave a stale reverse entry.
            let key = keys::tag(name, tag);
            let current = store::get(&key).await?;
            let precondition = match &current {
                Some(entry) => {
                    let old = String::from_utf8_lossy(&entry.value);
                    if old != digest {
                        // Pushing the same manifest again is allowed.
                        if let Some(rule) = rules.protecting(name, tag) {
                            return Err(store::immutable_refusal(name, tag, rule));
                        }
                        ops.extend(gc::untag(name, &old, tag));
                    }
                    Precondition::Version(entry.version)
                }
                None => Precondition::Absent,
            };
            ops.push(WriteOp::Put((
                key,
                digest.clone().into_bytes(),
                precondition,
            )));
            ops.push(store::put_json(
                keys::manifest_tag(name, &digest, tag),
                &keys::TagInfo {
                    updated: store::now(),
                },
            ));
        }
        Ok(ops)
    })
    .await?;

    let mut reply = Reply::new(201)
        .header("location", format!("/v2/{name}/manifests/{digest}"))
        .header("docker-content-digest", digest)
        .header("content-length", "0");
    if let Some(subject) = parsed.subject {
        reply = reply.header("oci-subject", subject.to_string());
    }
    Ok(reply)
}

pub async fn delete(
    req: &Incoming,
    name: &str,
    reference_str: &str,
    operator: &str,
) -> Result<Reply, OciError> {
    let accepted = Reply::new(202).header("content-length", "0");
    match reference(reference_str)? {
        Reference::Tag(tag) => {
            let key = keys::tag(name, tag);
            let Some(entry) = store::get(&key).await? else {
                return Err(OciError::manifest_unknown(reference_str));
            };
            let digest = String::from_utf8_lossy(&entry.value).into_owned();
            let (tenant, rules) = store::owner_and_rules(name).await?;
            if let Some(rule) = rules.protecting(name, tag) {
                return Err(store::immutable_refusal(name, tag, rule));
            }
            let tenant = tenant.unwrap_or_default();
            let deleted =
                store::new_event(req, EventKind::TagDeleted, &tenant, name, operator.into()).about(
                    Some(tag),
                    &digest,
                    None,
                );
            let mut ops = vec![
                WriteOp::Delete((key, Precondition::Version(entry.version))),
                store::event(&deleted),
            ];
            ops.extend(gc::untag(name, &digest, tag));
            match store::commit(ops).await {
                Ok(_) => Ok(accepted),
                Err(StoreError::Conflict) => Err(OciError::manifest_unknown(reference_str)),
                Err(e) => Err(fault(e)),
            }
        }
        Reference::Digest(digest) => {
            let key = keys::manifest(name, digest.as_str());
            let Some(entry) = store::get(&key).await? else {
                return Err(OciError::manifest_unknown(reference_str));
            };
            let decoded = keys::decode_manifest(&entry.value);
            // A child of an index with an immutable tag stays too.
            gc::refuse_if_immutable_image_uses(name, digest.as_str()).await?;
            let (tenant, rules) = store::owner_and_rules(name).await?;
            let tenant = tenant.unwrap_or_default();
            let protection = (!rules.rules.is_empty()).then(|| rules.protection());
            let deleted = store::new_event(
                req,
                EventKind::ManifestDeleted,
                &tenant,
                name,
                operator.into(),
            )
            .about(
                None,
                digest.as_str(),
                decoded
                    .as_ref()
                    .map(|(r, b)| (r.media_type.as_str(), b.len())),
            );
            let mut ops = vec![
                WriteOp::Delete((key, Precondition::Version(entry.version))),
                store::event(&deleted),
            ];
            if let Some((record, body)) = &decoded {
                let referrers = gc::referrers_of(name, digest.as_str())
                    .await
                    .map_err(fault)?;
                ops.extend(gc::unindex(
                    name,
                    digest.as_str(),
                    &record.media_type,
                    body,
                    &referrers,
                    store::now(),
                ));
            }
            if let Some(subject) = decoded.and_then(|(r, _)| r.subject) {
                ops.push(store::delete(keys::referrer(
                    name,
                    &subject,
                    digest.as_str(),
                )));
            }
            let prefix = keys::manifest_tag_prefix(name, digest.as_str());
            let mut after = None;
            loop {
                let page = metadata::scan(prefix.clone(), after.clone(), 500)
                    .await
                    .map_err(fault)?;
                for e in &page {
                    let tag = &e.key[prefix.len()..];
                    // Deleting the manifest would delete its immutable tag.
                    if let Some(p) = &protection
                        && p.protecting(name, tag).is_some()
                        && let Some(rule) = rules.protecting(name, tag)
                    {
                        return Err(store::immutable_refusal(name, tag, rule));
                    }
                    ops.push(store::delete(keys::tag(name, tag)));
                    ops.push(store::delete(e.key.clone()));
                }
                if page.len() < 500 {
                    break;
                }
                after = page.last().map(|e| e.key.clone());
            }
            match store::commit(ops).await {
                Ok(_) => Ok(accepted),
                Err(StoreError::Conflict) => Err(OciError::manifest_unknown(reference_str)),
                Err(e) => Err(fault(e)),
            }
        }
    }
}
