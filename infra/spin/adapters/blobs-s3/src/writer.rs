//! Writing one object from a stream of bytes, hashed and counted on the
//! way, such that nothing is visible under its key until the caller says
//! so: up to one part ([`PART`]) is kept in memory and PUT by the caller
//! once it has checked what it must (the digest); more goes into a
//! multipart upload that the caller completes, or aborts.
//!
//! Memory: one part being filled while the previous one is sent (two at
//! most), whatever the object's size.

use crate::bucket::{Body, Bucket, Fetched, MAX_PARTS};
use crate::digest::Hasher;
use crate::error::Error;
use crate::keys::Segment;
use futures::future::join;
use spin_sdk::wit_bindgen::{StreamReader, StreamResult};
use std::collections::VecDeque;

/// Size of a part of a multipart upload, as the host's backend writes
/// them (S3 wants at least 5 MiB for all parts but the last); smaller
/// objects go in one PutObject.
pub const PART: usize = 16 * 1024 * 1024;

/// Where bytes come from.
pub enum Source<'a> {
    /// A caller's `stream<u8>` (`put`, `append`): ends when the caller
    /// drops its end.
    Stream(Option<StreamReader<u8>>),
    /// An upload's segments, read from the bucket in offset order
    /// (`finish`).
    Segments(Segments<'a>),
}

/// The segments of an upload still to read, and the one being read.
pub struct Segments<'a> {
    bucket: &'a Bucket,
    pending: VecDeque<Segment>,
    /// The segment being read, its body, and the bytes read of it.
    current: Option<(Segment, Body, u64)>,
}

impl<'a> Source<'a> {
    /// The bytes of a caller's stream.
    pub fn stream(reader: StreamReader<u8>) -> Source<'a> {
        Source::Stream(Some(reader))
    }

    /// The bytes of `segments` (in offset order), each read whole from
    /// `bucket` with GetObject and checked against its listed size.
    pub fn segments(bucket: &'a Bucket, segments: Vec<Segment>) -> Source<'a> {
        Source::Segments(Segments {
            bucket,
            pending: segments.into(),
            current: None,
        })
    }

    /// The next bytes (never empty), none at the end. Errors: `backend`
    /// when a segment cannot be read whole.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, Error> {
        match self {
            Source::Stream(reader) => {
                while let Some(r) = reader.as_mut() {
                    let (result, chunk) = r.read(Vec::with_capacity(crate::bucket::CHUNK)).await;
                    match result {
                        StreamResult::Complete(_) if chunk.is_empty() => {}
                        StreamResult::Complete(_) => return Ok(Some(chunk)),
                        StreamResult::Dropped | StreamResult::Cancelled => *reader = None,
                    }
                }
                Ok(None)
            }
            Source::Segments(s) => s.next().await,
        }
    }
}

impl Segments<'_> {
    async fn next(&mut self) -> Result<Option<Vec<u8>>, Error> {
        loop {
            if let Some((segment, body, read)) = self.current.as_mut() {
                if let Some(chunk) = body.next().await? {
                    *read += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                // A segment of another length than listed was rewritten
                // meanwhile, or its transfer went wrong: fail (the upload
                // stays, to finish again) rather than hash it.
                if *read != segment.size {
                    return Err(Error::Backend(format!(
                        "segment {} held {read} bytes, not the {} listed",
                        segment.key, segment.size
                    )));
                }
                self.current = None;
            }
            let Some(segment) = self.pending.pop_front() else {
                return Ok(None);
            };
            match self.bucket.get(&segment.key, 0, None).await? {
                Fetched::Body { body, .. } => self.current = Some((segment, body, 0)),
                Fetched::Missing | Fetched::PastEnd => {
                    return Err(Error::Backend(format!(
                        "segment {} disappeared",
                        segment.key
                    )));
                }
            }
        }
    }
}

/// Counts the bytes written (from a starting size) against a limit, and
/// hashes them when asked to.
pub struct Meter {
    hasher: Option<Hasher>,
    /// Bytes so far, the starting size included.
    pub size: u64,
    max: u64,
}

impl Meter {
    /// From `size` bytes, refusing to go past `max`, hashing with
    /// `hasher` when given.
    pub fn new(hasher: Option<Hasher>, size: u64, max: u64) -> Meter {
        Meter { hasher, size, max }
    }

    /// Counts and hashes `bytes`. Errors: `too-large(max)` past the limit.
    fn take(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.size += bytes.len() as u64;
        if self.size > self.max {
            return Err(Error::TooLarge(self.max));
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(bytes);
        }
        Ok(())
    }

    /// The digest of the bytes taken (`algorithm:hex`), when hashing.
    pub fn digest(self) -> Option<String> {
        self.hasher.map(Hasher::finish)
    }
}

/// Bytes read and counted, not yet visible anywhere.
pub enum Staged {
    /// All of them, fewer than [`PART`]: for one PutObject.
    Buffered(Vec<u8>),
    /// Uploaded as the parts of a multipart upload on `key`, to complete.
    Multipart {
        key: String,
        upload_id: String,
        etags: Vec<String>,
    },
    /// Only hashed and counted (there was no key to write to).
    Counted,
}

impl Staged {
    /// Makes the bytes visible: one PutObject under `key`, or the
    /// completion of the multipart upload (on the key it was started on;
    /// aborted if that fails).
    pub async fn publish(self, bucket: &Bucket, key: &str) -> Result<(), Error> {
        match self {
            Staged::Buffered(bytes) => bucket.put(key, bytes).await,
            Staged::Multipart {
                key,
                upload_id,
                etags,
            } => {
                let completed = bucket.complete_multipart(&key, &upload_id, &etags).await;
                if completed.is_err() {
                    bucket.abort_multipart(&key, &upload_id).await;
                }
                completed
            }
            Staged::Counted => Ok(()),
        }
    }

    /// Drops the bytes (aborts the multipart upload, best effort).
    pub async fn discard(self, bucket: &Bucket) {
        if let Staged::Multipart { key, upload_id, .. } = self {
            bucket.abort_multipart(&key, &upload_id).await;
        }
    }
}

/// Reads all of `source` through `meter`. Up to one part stays in memory
/// ([`Staged::Buffered`]); past that the bytes go to a multipart upload
/// on `spill`, each part sent while the next fills. With no `spill` the
/// bytes are only counted and hashed ([`Staged::Counted`]). Errors: the
/// meter's `too-large`, or `backend`; nothing is left visible then (a
/// multipart upload is aborted).
pub async fn stage(
    bucket: &Bucket,
    source: &mut Source<'_>,
    meter: &mut Meter,
    spill: Option<&str>,
) -> Result<Staged, Error> {
    let Some(key) = spill else {
        while let Some(chunk) = source.next().await? {
            meter.take(&chunk)?;
        }
        return Ok(Staged::Counted);
    };
    let mut carry = Vec::new();
    let (first, ended) = fill(source, meter, &mut carry).await?;
    if ended {
        return Ok(Staged::Buffered(first));
    }
    let upload_id = bucket.create_multipart(key).await?;
    match send_parts(bucket, key, &upload_id, first, source, meter, &mut carry).await {
        Ok(etags) => Ok(Staged::Multipart {
            key: key.to_string(),
            upload_id,
            etags,
        }),
        Err(e) => {
            bucket.abort_multipart(key, &upload_id).await;
            Err(e)
        }
    }
}

/// Sends `first` and every further part of `source` as UploadPart
/// requests, reading the next part while one is sent. The parts' ETags,
/// in order.
async fn send_parts(
    bucket: &Bucket,
    key: &str,
    upload_id: &str,
    first: Vec<u8>,
    source: &mut Source<'_>,
    meter: &mut Meter,
    carry: &mut Vec<u8>,
) -> Result<Vec<String>, Error> {
    let mut etags = Vec::new();
    let mut part = first;
    loop {
        if etags.len() >= MAX_PARTS {
            return Err(Error::Backend(format!(
                "{key}: more than {MAX_PARTS} parts of {PART} bytes"
            )));
        }
        let number = etags.len() + 1;
        let (sent, next) = join(
            bucket.upload_part(key, upload_id, number, part),
            fill(source, meter, carry),
        )
        .await;
        etags.push(sent?);
        let (next, ended) = next?;
        if ended {
            if !next.is_empty() {
                etags.push(bucket.upload_part(key, upload_id, number + 1, next).await?);
            }
            return Ok(etags);
        }
        part = next;
    }
}

/// Reads from `source` (after what `carry` holds from the previous part)
/// until a part is full or the source ends: the part, and whether the
/// source ended. What a chunk holds beyond the part is left in `carry`.
async fn fill(
    source: &mut Source<'_>,
    meter: &mut Meter,
    carry: &mut Vec<u8>,
) -> Result<(Vec<u8>, bool), Error> {
    let mut part = std::mem::take(carry);
    while part.len() < PART {
        let Some(chunk) = source.next().await? else {
            return Ok((part, true));
        };
        meter.take(&chunk)?;
        let room = PART - part.len();
        if chunk.len() > room {
            part.extend_from_slice(&chunk[..room]);
            *carry = chunk[room..].to_vec();
        } else if part.is_empty() {
            part = chunk;
        } else {
            part.extend_from_slice(&chunk);
        }
    }
    Ok((part, false))
}
