//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`. Bytes stream from the
//! blob capability straight into the response.

use berth_domain::keys::{self, BlobLink};
use berth_domain::range::parse_range;
use berth_domain::{ErrorCode, OciError};
use berth_guest::http::{Incoming, Reply};
use berth_guest::parse_digest;
use berth_guest::store::{self, blobs, fault};

pub async fn get(
    req: &Incoming,
    name: &str,
    digest: &str,
    with_body: bool,
) -> Result<Reply, OciError> {
    let digest = parse_digest(digest)?;
    let Some(link) = store::get_json::<BlobLink>(&keys::blob_link(name, digest.as_str())).await?
    else {
        // Manifests are content too: serve them through the blob endpoint as Distribution does.
        if let Some(entry) = store::get(&keys::manifest(name, digest.as_str())).await?
            && let Some((_, body)) = keys::decode_manifest(&entry.value)
        {
            return Ok(Reply::new(200)
                .header("content-type", "application/octet-stream")
                .header("docker-content-digest", digest.as_str())
                .bytes(body.to_vec()));
        }
        return Err(OciError::blob_unknown(digest.as_str()));
    };
    // A link marked by garbage collection: the read counts as a use, and
    // while the collection is under way the blob is unknown, so a client
    // uploads it again instead of pushing a manifest that would need it.
    if link.marked.is_some() && berth_guest::gc::touch_marked(digest.as_str()).await? {
        return Err(OciError::blob_unknown(digest.as_str()));
    }
    let size = link.size;
    let base = |status| {
        Reply::new(status)
            .header("content-type", "application/octet-stream")
            .header("docker-content-digest", digest.as_str())
            .header("accept-ranges", "bytes")
            .header("etag", format!("\"{digest}\""))
    };
    // Range applies to GET only (RFC 9110 §14.2): a HEAD describes the whole blob.
    let range_header = req.header("range").filter(|_| with_body);
    let range = match range_header.map(|h| parse_range(&h, size)) {
        Some(Ok(r)) => r,
        // RFC 9110 §15.5.17: a 416 says the representation's size.
        Some(Err(_)) => {
            let e = OciError::new(ErrorCode::RangeInvalid, "requested range not satisfiable")
                .with_detail(serde_json::json!({ "size": size }));
            return Ok(Reply::error(&e).header("content-range", format!("bytes */{size}")));
        }
        None => None,
    };
    let (reply, offset, length) = match range {
        Some(r) => (
            base(206).header(
                "content-range",
                format!("bytes {}-{}/{size}", r.start, r.end),
            ),
            r.start,
            r.len(),
        ),
        None => (base(200), 0, size),
    };
    let reply = reply.header("content-length", length.to_string());
    if !with_body {
        return Ok(reply);
    }
    // Bytes served, per organization (SWR's "downflow"), buffered by the
    // provider.
    let served = || {
        let today = berth_domain::reports::date(store::now());
        store::metadata::note(&[
            store::Stat::Add((keys::downflow(name), length as i64)),
            store::Stat::Add((keys::downflow_day(name, &today), length as i64)),
        ]);
    };
    // A deployment whose blob store serves clients directly: send them
    // there (the Range header goes along with the redirected request).
    if let Some(ttl) =
        store::config::get(keys::BLOB_REDIRECT_SECONDS).and_then(|s| s.parse::<u32>().ok())
        && let Some(url) = blobs::direct_url(digest.to_string(), ttl)
            .await
            .map_err(fault)?
    {
        served();
        return Ok(Reply::new(307)
            .header("location", url)
            .header("docker-content-digest", digest.as_str())
            .header("content-length", "0"));
    }
    match blobs::read(digest.to_string(), offset, Some(length)).await {
        Ok(stream) => {
            served();
            Ok(reply.stream(stream))
        }
        Err(store::StoreError::NotFound) => Err(OciError::blob_unknown(digest.as_str())),
        Err(e) => Err(fault(e)),
    }
}

/// Unlinks the blob from the repository. The bytes stay until garbage
/// collection finds no repository referencing them.
pub async fn delete(name: &str, digest: &str) -> Result<Reply, OciError> {
    let digest = parse_digest(digest)?;
    let key = keys::blob_link(name, digest.as_str());
    if !store::exists(&key).await? {
        return Err(OciError::blob_unknown(digest.as_str()));
    }
    berth_guest::gc::refuse_if_immutable_image_uses(name, digest.as_str()).await?;
    store::commit(vec![
        store::delete(key),
        store::delete(berth_domain::gc::holder(digest.as_str(), name)),
        berth_guest::gc::enqueue(&berth_domain::gc::Candidate::blob(
            digest.as_str(),
            store::now(),
        )),
    ])
    .await
    .map_err(fault)?;
    Ok(Reply::new(202).header("content-length", "0"))
}
