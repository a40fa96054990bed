//! `berth:registry/blobs` over the bucket: content-addressed, immutable
//! objects under `blobs/<alg>/<hex>`, each visible only once complete and
//! verified. The operations of the host's S3 backend, request for request
//! where S3 allows it.

use crate::bucket::{Body, Fetched};
use crate::digest::{self, Algorithm, Digest, Hasher};
use crate::error::Error;
use crate::settings::Store;
use crate::writer::{Meter, Source, Staged, stage};
use spin_sdk::wit_bindgen::{StreamReader, StreamWriter};

/// A stored blob: its digest (`algorithm:hex`) and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub digest: String,
    pub size: u64,
}

/// Size in bytes of the blob `digest`, none when it is not stored
/// (HeadObject). Errors: `invalid` digest, `backend`.
pub async fn stat(store: &Store, digest: &str) -> Result<Option<u64>, Error> {
    let key = store.keys.blob(&digest::parse(digest)?);
    store.bucket.head(&key).await
}

/// `length` bytes (to the end when none) of blob `digest` from `offset`,
/// as a stream filled while the caller reads it: a ranged GetObject whose
/// body is passed on in chunks. A range at or past the end gives no
/// bytes. Errors: `not-found`, `invalid` digest, `backend` (before the
/// first byte; a transfer that breaks later ends the stream early).
pub async fn read(
    store: &Store,
    digest: &str,
    offset: u64,
    length: Option<u64>,
) -> Result<StreamReader<u8>, Error> {
    let key = store.keys.blob(&digest::parse(digest)?);
    // HTTP cannot ask for no bytes: only check that the blob exists.
    let fetched = match length {
        Some(0) => None,
        _ => Some(store.bucket.get(&key, offset, length).await?),
    };
    let body = match fetched {
        Some(Fetched::Body { body, ranged }) => {
            // A server that ignored the Range sent all the bytes: skip
            // to the range here.
            let (skip, limit) = match ranged {
                true => (0, None),
                false => (offset, length),
            };
            Some((body, skip, limit))
        }
        Some(Fetched::Missing) => return Err(Error::NotFound),
        // Past the end (416), or no bytes asked for: nothing to send,
        // as from a file, if the blob exists.
        Some(Fetched::PastEnd) | None => match store.bucket.head(&key).await? {
            None => return Err(Error::NotFound),
            Some(size) if size <= offset || length == Some(0) => None,
            Some(_) => {
                return Err(Error::Backend(format!(
                    "S3 GetObject {key}: range from {offset} refused"
                )));
            }
        },
    };
    let (tx, rx) = crate::wit_stream::new();
    if let Some((body, skip, limit)) = body {
        // Runs on after this function returns, in the same task, until
        // the body is passed on or the reader goes away.
        spin_sdk::wit_bindgen::spawn(pump(body, tx, skip, limit));
    }
    Ok(rx)
}

/// Passes `body` on to `tx`, chunk by chunk, after skipping `skip` bytes
/// and up to `limit` bytes in all.
async fn pump(mut body: Body, mut tx: StreamWriter<u8>, mut skip: u64, mut limit: Option<u64>) {
    while let Ok(Some(mut chunk)) = body.next().await {
        if skip > 0 {
            let n = skip.min(chunk.len() as u64);
            chunk.drain(..n as usize);
            skip -= n;
        }
        if let Some(left) = limit.as_mut() {
            chunk.truncate((*left).min(chunk.len() as u64) as usize);
            *left -= chunk.len() as u64;
        }
        if !chunk.is_empty() && !tx.write_all(chunk).await.is_empty() {
            // The reader went away.
            return;
        }
        if limit == Some(0) {
            return;
        }
    }
}

/// A presigned GetObject URL of the blob, valid `ttl_seconds` (clamped to
/// S3's 1 s … 7 days). Errors: `invalid` digest.
pub fn direct_url(store: &Store, digest: &str, ttl_seconds: u32) -> Result<String, Error> {
    let key = store.keys.blob(&digest::parse(digest)?);
    Ok(store.bucket.presigned_get(&key, ttl_seconds))
}

/// Stores a blob from `data`, hashed on the way with the algorithm of
/// `expected` (else `algorithm`), visible only once whole and verified:
///
/// - with `expected`: written under its key (one PutObject after the
///   bytes proved it, or a multipart upload completed only then); a blob
///   stored already is only hashed against (HeadObject first);
/// - without: a blob under one part is PUT under the digest it hashed to
///   (unless stored already); a larger one goes to `tmp/<id>` as a
///   multipart upload, then CopyObject to its key and DeleteObject.
///
/// Errors: `invalid` expected digest, `too-large(max_size)`,
/// `digest-mismatch(computed)`, `backend`.
pub async fn put(
    store: &Store,
    data: StreamReader<u8>,
    expected: Option<&str>,
    algorithm: Algorithm,
    max_size: u64,
) -> Result<Info, Error> {
    let (bucket, keys) = (&store.bucket, &store.keys);
    let expected = expected.map(digest::parse).transpose()?;
    let algorithm = expected.as_ref().map_or(algorithm, Digest::algorithm);
    let (spill, stored) = match &expected {
        Some(d) => {
            let key = keys.blob(d);
            let stored = bucket.head(&key).await?.is_some();
            (key, stored)
        }
        None => (keys.tmp(&crate::settings::random_id()), false),
    };
    let mut meter = Meter::new(Some(Hasher::new(algorithm)), 0, max_size);
    let mut source = Source::stream(data);
    let staged = stage(
        bucket,
        &mut source,
        &mut meter,
        (!stored).then_some(spill.as_str()),
    )
    .await?;
    let size = meter.size;
    let digest = meter.digest().expect("hashing");
    if let Some(expected) = &expected {
        if expected.as_str() != digest {
            staged.discard(bucket).await;
            return Err(Error::DigestMismatch(digest));
        }
        staged.publish(bucket, &spill).await?;
        return Ok(Info { digest, size });
    }
    let to = keys.blob(&digest::parse(&digest)?);
    match staged {
        Staged::Multipart { .. } => {
            staged.publish(bucket, &spill).await?;
            let copied = match bucket.head(&to).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => bucket.copy(&spill, &to).await,
                Err(e) => Err(e),
            };
            // The temporary object goes whatever happened.
            let _ = bucket.delete(&spill).await;
            copied?;
        }
        staged => {
            if bucket.head(&to).await?.is_none() {
                staged.publish(bucket, &to).await?;
            }
        }
    }
    Ok(Info { digest, size })
}

/// Removes blob `digest` (HeadObject, then DeleteObject); false when it
/// was not stored. Errors: `invalid` digest, `backend`.
pub async fn delete(store: &Store, digest: &str) -> Result<bool, Error> {
    let key = store.keys.blob(&digest::parse(digest)?);
    if store.bucket.head(&key).await?.is_none() {
        return Ok(false);
    }
    store.bucket.delete(&key).await?;
    Ok(true)
}

/// Stored blobs in digest order strictly after `after`, at most `limit`:
/// ListObjectsV2 under `blobs/` from `start-after`, page after page until
/// `limit` are found (keys that name no digest are skipped). Errors:
/// `backend`.
pub async fn list(store: &Store, after: Option<&str>, limit: u32) -> Result<Vec<Info>, Error> {
    let limit = limit as usize;
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let root = store.keys.blobs_root();
    let start = after.map(|a| store.keys.blob_listing_start(a));
    let mut token: Option<String> = None;
    loop {
        let page = store
            .bucket
            .list(&root, start.as_deref(), token.as_deref(), limit - out.len())
            .await?;
        for object in page.objects {
            let Some(d) = store.keys.digest_of(&object.key) else {
                continue;
            };
            if after.is_some_and(|a| d.as_str() <= a) {
                continue;
            }
            out.push(Info {
                digest: d.as_str().to_string(),
                size: object.size,
            });
            if out.len() >= limit {
                return Ok(out);
            }
        }
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Hashes blob `digest` again with its algorithm (a whole GetObject): the
/// digest its bytes have now, none when it is not stored. Errors:
/// `invalid` digest, `backend` (a transfer cut short is an error, not
/// another digest).
pub async fn verify(store: &Store, digest: &str) -> Result<Option<String>, Error> {
    let d = digest::parse(digest)?;
    let key = store.keys.blob(&d);
    let mut body = match store.bucket.get(&key, 0, None).await? {
        Fetched::Body { body, .. } => body,
        Fetched::Missing => return Ok(None),
        Fetched::PastEnd => {
            return Err(Error::Backend(format!("S3 GetObject {key}: range refused")));
        }
    };
    let mut hasher = Hasher::new(d.algorithm());
    while let Some(chunk) = body.next().await? {
        hasher.update(&chunk);
    }
    Ok(Some(hasher.finish()))
}
