//! `berth:registry/uploads` over the bucket: an upload is the objects
//! under `uploads/<id>/` (an `open` marker and one segment per append,
//! named by its offset), so any instance, of this adapter or of a host on
//! the same bucket, can append to it or finish it.

use crate::blobs::Info;
use crate::bucket::now;
use crate::digest::{self, Digest, Hasher};
use crate::error::Error;
use crate::keys::{Listed, Segment, open_marker, segment};
use crate::settings::{Store, random_id};
use crate::writer::{Meter, Source, stage};
use spin_sdk::wit_bindgen::StreamReader;
use std::collections::HashMap;

/// An upload as listed: every key under its directory, its segments in
/// order, and its size in bytes.
struct Upload {
    keys: Vec<String>,
    segments: Vec<Segment>,
    size: u64,
}

/// Lists upload `id` (ListObjectsV2 of its directory). Errors: `not-found`
/// for an id that names no upload, `backend`.
async fn listed(store: &Store, id: &str) -> Result<Upload, Error> {
    let dir = store.keys.upload_dir(id)?;
    let mut listed = Listed::default();
    let mut keys = Vec::new();
    for object in store.bucket.list_all(&dir).await? {
        keys.push(object.key.clone());
        listed.add(&dir, object.key, object.size);
    }
    let (segments, size) = listed.into_segments()?;
    Ok(Upload {
        keys,
        segments,
        size,
    })
}

/// Starts an empty upload: a fresh id (128 random bits, hex) and its
/// `open` marker (PutObject). Errors: `backend`.
pub async fn create(store: &Store) -> Result<String, Error> {
    let id = random_id();
    let marker = open_marker(&store.keys.upload_dir(&id)?);
    store.bucket.put(&marker, Vec::new()).await?;
    Ok(id)
}

/// The size in bytes of upload `id`: where its last segment ends.
/// Errors: `not-found`, `backend`.
pub async fn size(store: &Store, id: &str) -> Result<u64, Error> {
    Ok(listed(store, id).await?.size)
}

/// Appends `data` to upload `id` as one segment at `offset`, which must
/// be the upload's size; the new size. The segment is written whole
/// (PutObject, or a multipart upload for more than a part) only once all
/// of `data` arrived within `max_size`, so a refused append leaves no
/// trace, and an empty one none either. Errors: `not-found`,
/// `bad-offset(size)`, `too-large(max_size)`, `backend`.
pub async fn append(
    store: &Store,
    id: &str,
    offset: u64,
    data: StreamReader<u8>,
    max_size: u64,
) -> Result<u64, Error> {
    let dir = store.keys.upload_dir(id)?;
    let size = listed(store, id).await?.size;
    if offset != size {
        return Err(Error::BadOffset(size));
    }
    let key = segment(&dir, offset);
    let mut meter = Meter::new(None, size, max_size);
    let staged = stage(
        &store.bucket,
        &mut Source::stream(data),
        &mut meter,
        Some(&key),
    )
    .await?;
    if meter.size > size {
        staged.publish(&store.bucket, &key).await?;
    }
    Ok(meter.size)
}

/// Publishes upload `id` as blob `digest` if its bytes hash to it: the
/// segments stream in order (GetObject each) through the hash into the
/// blob's key (one PutObject, or a multipart upload completed only on a
/// match); a blob stored already is only hashed against. What is
/// published is always what was hashed. Published or refused, the
/// upload's objects are then deleted (DeleteObjects); a backend failure
/// keeps them, to finish again. Errors: `invalid` digest, `not-found`,
/// `digest-mismatch(computed)`, `backend`.
pub async fn finish(store: &Store, id: &str, digest: &str) -> Result<Info, Error> {
    let expected = digest::parse(digest)?;
    let upload = listed(store, id).await?;
    let result = concatenate(store, upload.segments, &expected).await;
    if !matches!(result, Err(Error::Backend(_))) {
        store.bucket.delete_all(&upload.keys).await?;
    }
    result.map(|()| Info {
        digest: expected.as_str().to_string(),
        size: upload.size,
    })
}

/// Streams `segments` in order into blob `expected`, hashing; completes
/// the write only if they hash to it.
async fn concatenate(
    store: &Store,
    segments: Vec<Segment>,
    expected: &Digest,
) -> Result<(), Error> {
    let bucket = &store.bucket;
    let to = store.keys.blob(expected);
    let stored = bucket.head(&to).await?.is_some();
    let mut meter = Meter::new(Some(Hasher::new(expected.algorithm())), 0, u64::MAX);
    let mut source = Source::segments(bucket, segments);
    let staged = stage(
        bucket,
        &mut source,
        &mut meter,
        (!stored).then_some(to.as_str()),
    )
    .await?;
    let computed = meter.digest().expect("hashing");
    if computed != expected.as_str() {
        staged.discard(bucket).await;
        return Err(Error::DigestMismatch(computed));
    }
    staged.publish(bucket, &to).await
}

/// Discards upload `id`: lists it, then deletes all it holds
/// (DeleteObjects). Errors: `not-found`, `backend`.
pub async fn abort(store: &Store, id: &str) -> Result<(), Error> {
    let upload = listed(store, id).await?;
    store.bucket.delete_all(&upload.keys).await
}

/// Discards the uploads whose newest object is `idle_seconds` old or
/// older (ListObjectsV2 of `uploads/`, `LastModified`), each listed again
/// and deleted whole; how many. Errors: `backend`.
pub async fn expire(store: &Store, idle_seconds: u64) -> Result<u32, Error> {
    let mut newest: HashMap<String, i64> = HashMap::new();
    for object in store.bucket.list_all(&store.keys.uploads_root()).await? {
        let (Some(id), Some(t)) = (store.keys.upload_of(&object.key), object.last_modified) else {
            continue;
        };
        let t = t.as_millisecond();
        let latest = newest.entry(id.to_string()).or_insert(t);
        *latest = (*latest).max(t);
    }
    let idle_ms = i64::try_from(idle_seconds)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    let cutoff = now().as_millisecond().saturating_sub(idle_ms);
    let mut removed = 0u32;
    for (id, t) in newest {
        if t > cutoff {
            continue;
        }
        // Listed again: an append since the first listing goes too.
        let dir = match store.keys.upload_dir(&id) {
            Ok(dir) => dir,
            // Not an id of ours: not ours to remove.
            Err(_) => continue,
        };
        let keys: Vec<String> = store
            .bucket
            .list_all(&dir)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        store.bucket.delete_all(&keys).await?;
        removed = removed.saturating_add(1);
    }
    Ok(removed)
}
