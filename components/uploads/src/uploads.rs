//! Blob uploads: monolithic `POST ?digest=`, `POST` + `PUT`, chunked and
//! streamed `PATCH`, status for resume, cancel, and cross-repository mount.
//! Upload state lives in the uploads capability, so a session can move
//! between requests and instances; this module only checks ownership and
//! maps protocol headers.

use berth_domain::keys::{self, BlobLink, UploadRecord};
use berth_domain::range::parse_content_range;
use berth_domain::{ErrorCode, OciError, name};
use berth_guest::http::{Incoming, Reply};
use berth_guest::parse_digest;
use berth_guest::store::{self, StoreError, blobs, fault, uploads};

/// Smallest chunk we ask clients to send (except the last one).
const CHUNK_MIN: u64 = 5 * 1024 * 1024;

fn location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn in_progress(status: u16, name: &str, id: &str, size: u64) -> Reply {
    Reply::new(status)
        .header("location", location(name, id))
        .header("range", range_header(size))
        .header("docker-upload-uuid", id)
        .header("oci-chunk-min-length", CHUNK_MIN.to_string())
        .header("content-length", "0")
}

fn created(name: &str, digest: &str) -> Reply {
    Reply::new(201)
        .header("location", format!("/v2/{name}/blobs/{digest}"))
        .header("docker-content-digest", digest)
        .header("content-length", "0")
}

fn store_error(e: StoreError, limit: u64) -> OciError {
    match e {
        StoreError::NotFound => OciError::upload_unknown(),
        StoreError::TooLarge(l) => OciError::too_large("blob", l.max(limit)),
        StoreError::DigestMismatch(actual) => {
            OciError::digest_invalid("provided digest did not match uploaded content")
                .with_detail(serde_json::json!({ "computed": actual }))
        }
        StoreError::BadOffset(size) => range_invalid(size),
        StoreError::Invalid(m) => OciError::new(ErrorCode::BlobUploadInvalid, m),
        other => fault(other),
    }
}

fn range_invalid(size: u64) -> OciError {
    OciError::new(
        ErrorCode::RangeInvalid,
        "chunk does not start at the end of the upload",
    )
    .with_detail(serde_json::json!({ "size": size }))
}

/// Links the blob to the repository (`berth_guest::gc::link`), and makes
/// sure its bytes are there: an upload that took longer than the grace
/// and fence of garbage collection together may have lost them, and then
/// the link goes again and the client is told to upload once more.
async fn link(name: &str, digest: &str, size: u64) -> Result<(), OciError> {
    berth_guest::gc::link(name, digest, Some(size)).await?;
    if blobs::stat(digest.to_string())
        .await
        .map_err(fault)?
        .is_none()
    {
        store::commit(vec![store::delete(keys::blob_link(name, digest))])
            .await
            .map_err(fault)?;
        return Err(OciError::new(
            ErrorCode::BlobUploadInvalid,
            format!("blob {digest} was garbage collected while it was stored; upload it again"),
        ));
    }
    Ok(())
}

/// Pins `digest` for repository `name` before its bytes are published, so
/// garbage collection leaves them (`berth_domain::gc`).
async fn pin(name: &str, digest: &str) -> Result<(), OciError> {
    berth_guest::gc::link(name, digest, None).await
}

pub async fn start(req: &Incoming, name: &str) -> Result<Reply, OciError> {
    if let Some(mount) = req.query("mount") {
        let digest = parse_digest(mount)?;
        let size = match req.query("from") {
            Some(from) if name::is_valid_name(from) => {
                store::get_json::<BlobLink>(&keys::blob_link(from, digest.as_str()))
                    .await?
                    .map(|l| l.size)
            }
            Some(_) => None,
            // No source named: mount any blob the registry already holds.
            None => blobs::stat(digest.to_string()).await.map_err(fault)?,
        };
        if size.is_some() {
            // Pinned first, then checked, then linked: once pinned, no
            // collection deletes the bytes, so the check holds; bytes a
            // collection removed before leave only the pin (the client
            // uploads instead).
            pin(name, digest.as_str()).await?;
            if let Some(size) = blobs::stat(digest.to_string()).await.map_err(fault)? {
                link(name, digest.as_str(), size).await?;
                return Ok(created(name, digest.as_str()));
            }
        }
        // Not mountable: fall back to a regular upload, as the spec asks.
    } else if let Some(d) = req.query("digest") {
        let digest = parse_digest(d)?;
        let max = store::max_layer();
        if let Some(n) = req.content_length()
            && n > max
        {
            return Err(OciError::too_large("blob", max));
        }
        // One request, one blob, stored straight under its digest: the
        // bytes are kept only if they hash to it, so a body that breaks
        // off publishes nothing. Pinned first, as for a finished upload,
        // so a collection that starts meanwhile leaves the bytes alone.
        pin(name, digest.as_str()).await?;
        let (body, end) = req.body_stream();
        let put = blobs::put(
            body,
            Some(digest.to_string()),
            blobs::DigestAlgorithm::Sha256,
            max,
        )
        .await;
        end.complete().await?;
        let info = put.map_err(|e| store_error(e, max))?;
        link(name, &info.digest, info.size).await?;
        return Ok(created(name, &info.digest));
    }
    let id = uploads::create().await.map_err(fault)?;
    let record = UploadRecord {
        repo: name.to_string(),
        created: store::now(),
    };
    store::commit(vec![store::put_json(keys::upload(&id), &record)])
        .await
        .map_err(fault)?;
    Ok(in_progress(202, name, &id, 0))
}

/// The upload must exist and belong to this repository.
async fn owned(name: &str, id: &str) -> Result<(), OciError> {
    match store::get_json::<UploadRecord>(&keys::upload(id)).await? {
        Some(r) if r.repo == name => Ok(()),
        _ => Err(OciError::upload_unknown()),
    }
}

async fn size(id: &str) -> Result<u64, OciError> {
    uploads::size(id.to_string())
        .await
        .map_err(|e| store_error(e, 0))
}

pub async fn status(name: &str, id: &str) -> Result<Reply, OciError> {
    owned(name, id).await?;
    let size = size(id).await?;
    Ok(in_progress(204, name, id, size))
}

async fn append(req: &Incoming, id: &str) -> Result<u64, OciError> {
    let max = store::max_layer();
    let offset = match req.header("content-range") {
        Some(h) => {
            let (start, end) = parse_content_range(&h).ok_or_else(|| {
                OciError::new(
                    ErrorCode::RangeInvalid,
                    format!("invalid Content-Range {h:?}"),
                )
            })?;
            if let Some(n) = req.content_length()
                && n != end - start + 1
            {
                return Err(OciError::new(
                    ErrorCode::SizeInvalid,
                    "Content-Length does not match Content-Range",
                ));
            }
            start
        }
        None => size(id).await?,
    };
    append_body(req, id, offset, max).await
}

/// Appends the request body at `offset`; the new size. A body that broke
/// off fails the request, and by the resume rule the bytes that arrived
/// before stay in the upload (its `Range` says how far it got), so the
/// client resumes from there, as after a dropped connection.
async fn append_body(req: &Incoming, id: &str, offset: u64, max: u64) -> Result<u64, OciError> {
    let (body, end) = req.body_stream();
    let appended = uploads::append(id.to_string(), offset, body, max).await;
    end.complete().await?;
    appended.map_err(|e| store_error(e, max))
}

pub async fn patch(req: &Incoming, name: &str, id: &str) -> Result<Reply, OciError> {
    owned(name, id).await?;
    match append(req, id).await {
        Ok(size) => Ok(in_progress(202, name, id, size)),
        // Tell the client where the upload stands so it can resume from there.
        Err(e)
            if matches!(
                e.code,
                ErrorCode::RangeInvalid | ErrorCode::BlobUploadInvalid
            ) =>
        {
            let current = size(id).await?;
            let mut reply = Reply::error(&e).header("location", location(name, id));
            if current > 0 {
                reply = reply.header("range", range_header(current));
            }
            Ok(reply)
        }
        Err(e) => Err(e),
    }
}

pub async fn finish(req: &Incoming, name: &str, id: &str) -> Result<Reply, OciError> {
    owned(name, id).await?;
    let digest = req
        .query("digest")
        .ok_or_else(|| OciError::digest_invalid("digest query parameter is required"))?;
    let digest = parse_digest(digest)?;
    if req.has_body() {
        append(req, id).await?;
    }
    pin(name, digest.as_str()).await?;
    let result = uploads::finish(id.to_string(), digest.to_string()).await;
    // The session is over whatever the outcome: a mismatched upload is discarded.
    let cleanup = store::commit(vec![store::delete(keys::upload(id))]).await;
    let info = result.map_err(|e| store_error(e, store::max_layer()))?;
    cleanup.map_err(fault)?;
    link(name, &info.digest, info.size).await?;
    Ok(created(name, &info.digest))
}

pub async fn cancel(name: &str, id: &str) -> Result<Reply, OciError> {
    owned(name, id).await?;
    uploads::abort(id.to_string())
        .await
        .map_err(|e| store_error(e, 0))?;
    store::commit(vec![store::delete(keys::upload(id))])
        .await
        .map_err(fault)?;
    Ok(Reply::new(204).header("content-length", "0"))
}
