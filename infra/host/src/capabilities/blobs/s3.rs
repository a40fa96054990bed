//! Blobs and resumable uploads in an S3-compatible bucket, through the
//! `object_store` crate (any S3 API: AWS, Garage, Ceph RGW, MinIO…).
//!
//! Keys, under the configured `prefix`:
//! - `blobs/<alg>/<hex>`: published, immutable blobs;
//! - `uploads/<id>/open`: an upload exists (written at its creation);
//! - `uploads/<id>/<offset, 20 digits>`: one segment per append, the bytes
//!   from that offset; an upload's size is where its last segment ends;
//! - `tmp/<id>`: a blob of unknown digest being written.
//!
//! An object becomes visible only whole (a single PUT, or a multipart
//! upload's completion), so a crash at any moment leaves either no segment
//! or blob or a complete one. A blob is completed under its digest only
//! after its bytes hashed to it, natively, as they streamed through.
//! Multipart uploads a crash left incomplete hold parts that no key shows:
//! give the bucket a lifecycle rule that aborts incomplete multipart
//! uploads after a day (S3's `AbortIncompleteMultipartUpload`).
//!
//! Memory: each write buffers one part ([`PART`]) and has at most
//! [`PARTS_IN_FLIGHT`] parts in flight.

use super::{BlobError, BlobInfo, CHUNK, Hasher, random_id};
use berth_domain::{Algorithm, Digest};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    ClientConfigKey, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload,
    PutResult, RetryConfig, WriteMultipart,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Size of one part of a multipart write (S3 wants at least 5 MiB for all
/// parts but the last); smaller objects go in one PUT.
pub const PART: usize = 16 * 1024 * 1024;
/// Parts of one write sent at once.
pub const PARTS_IN_FLIGHT: usize = 2;
/// The longest any request but a blob read may take (a part, a copy of a
/// large blob inside the bucket).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest a blob read may wait for its next bytes.
pub const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// `[blob_store.default]` with `type = "s3"` in the runtime config.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `http(s)://host:port` of an S3-compatible server; AWS when none.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Keys go under it (`""`, or ending in `/`), so one bucket can hold
    /// several registries.
    pub prefix: String,
    /// Blob GETs answer `307` to a presigned URL of the bucket valid this
    /// long (what Distribution's redirect middleware does), for clients
    /// that reach the bucket; none: bytes go through Berth.
    pub redirect: Option<Duration>,
}

pub struct S3Store {
    /// Every request but reads of blob bytes: each must end within
    /// [`REQUEST_TIMEOUT`], so a server that stops answering fails the
    /// request rather than holding it for good.
    store: Arc<AmazonS3>,
    /// Reads of blob bytes, which stream as long as the client takes: no
    /// overall deadline, but [`READ_IDLE_TIMEOUT`] without a byte fails.
    reader: AmazonS3,
    prefix: String,
    redirect: Option<Duration>,
    /// Upload id → lock serialising this process's appends to it.
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn backend(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        e => BlobError::Io(std::io::Error::other(e)),
    }
}

/// One segment of an upload, as listed.
struct Segment {
    offset: u64,
    size: u64,
    path: Path,
}

/// The segments an upload is made of, in offset order, and its size.
///
/// Appends racing at one offset (two hosts, each told the offset was the
/// upload's size) leave segments that do not follow one another: one
/// starting inside what an earlier one covers, or past a gap a shorter
/// rewrite of an earlier offset left. The upload is what follows on from
/// offset 0 without a gap; the rest is superseded (the documented race:
/// the later part stays) and removed with the upload, never a reason to
/// refuse every later request on it.
fn contiguous(mut segments: Vec<Segment>) -> (Vec<Segment>, u64) {
    segments.sort_by_key(|s| s.offset);
    let mut size = 0;
    segments.retain(|s| {
        let follows = s.offset == size;
        if follows {
            size += s.size;
        }
        follows
    });
    (segments, size)
}

impl S3Store {
    /// Connects and checks that the bucket answers with these credentials.
    pub async fn open(c: &S3Config) -> anyhow::Result<S3Store> {
        let options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(REQUEST_TIMEOUT);
        let read_options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout_disabled()
            .with_config(
                ClientConfigKey::ReadTimeout,
                format!("{}s", READ_IDLE_TIMEOUT.as_secs()),
            );
        let store = Self::client(c, options)?;
        let reader = Self::client(c, read_options)?;
        let s = S3Store {
            store: Arc::new(store),
            reader,
            prefix: c.prefix.clone(),
            redirect: c.redirect,
            uploads: Mutex::new(HashMap::new()),
        };
        s.store
            .list_with_delimiter(Some(&s.path("blobs")))
            .await
            .map_err(|e| anyhow::anyhow!("bucket {} does not answer: {e}", c.bucket))?;
        Ok(s)
    }

    fn client(c: &S3Config, options: ClientOptions) -> anyhow::Result<AmazonS3> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&c.bucket)
            .with_region(&c.region)
            .with_access_key_id(&c.access_key_id)
            .with_secret_access_key(&c.secret_access_key)
            .with_retry(RetryConfig {
                max_retries: 5,
                retry_timeout: Duration::from_secs(60),
                ..Default::default()
            })
            .with_client_options(options);
        if let Some(e) = &c.endpoint {
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        b.build()
            .map_err(|e| anyhow::anyhow!("[blob_store.default]: {e}"))
    }

    fn path(&self, rest: &str) -> Path {
        Path::from(format!("{}{rest}", self.prefix))
    }

    fn blob_path(&self, digest: &Digest) -> Path {
        self.path(&format!(
            "blobs/{}/{}",
            digest.algorithm().name(),
            digest.hex()
        ))
    }

    fn upload_dir(&self, id: &str) -> Result<Path, BlobError> {
        // Ids are ours (hex); anything else names no upload.
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BlobError::NotFound);
        }
        Ok(self.path(&format!("uploads/{id}")))
    }

    /// The size of the object at `path`, none when there is none.
    async fn size_of(&self, path: &Path) -> Result<Option<u64>, BlobError> {
        match self.store.head(path).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    pub async fn stat(&self, digest: &str) -> Result<Option<u64>, BlobError> {
        self.size_of(&self.blob_path(&super::fs::FsStore::parse(digest)?))
            .await
    }

    pub async fn read(
        &self,
        digest: &str,
        offset: u64,
        length: Option<u64>,
    ) -> Result<mpsc::Receiver<std::io::Result<Bytes>>, BlobError> {
        let path = self.blob_path(&super::fs::FsStore::parse(digest)?);
        let range = match length {
            Some(0) => Some(GetRange::Bounded(offset..offset)),
            Some(l) => Some(GetRange::Bounded(offset..offset.saturating_add(l))),
            None if offset > 0 => Some(GetRange::Offset(offset)),
            None => None,
        };
        let (tx, rx) = mpsc::channel(2);
        let empty = matches!(range, Some(GetRange::Bounded(ref r)) if r.is_empty());
        let got = if empty {
            None
        } else {
            let opts = GetOptions {
                range: range.clone(),
                ..Default::default()
            };
            match self.reader.get_opts(&path, opts).await {
                Ok(g) => Some(g),
                Err(object_store::Error::NotFound { .. }) => return Err(BlobError::NotFound),
                // A range past the end: nothing to send, as from a file.
                Err(e) if range.is_some() => match self.store.head(&path).await {
                    Ok(m) if m.size <= offset => None,
                    Ok(_) => return Err(backend(e)),
                    Err(e) => return Err(backend(e)),
                },
                Err(e) => return Err(backend(e)),
            }
        };
        if got.is_none() {
            // Exists, nothing to send.
            self.store.head(&path).await.map_err(backend)?;
            return Ok(rx);
        }
        let mut stream = got.expect("checked").into_stream();
        tokio::spawn(async move {
            // Network reads come in small pieces: pass them on in chunks
            // of CHUNK, so each crossing into the component carries a lot.
            let mut buf = BytesMut::new();
            while let Some(next) = stream.next().await {
                match next {
                    Ok(b) => {
                        buf.extend_from_slice(&b);
                        if buf.len() >= CHUNK && tx.send(Ok(buf.split().freeze())).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::other(e))).await;
                        return;
                    }
                }
            }
            if !buf.is_empty() {
                let _ = tx.send(Ok(buf.freeze())).await;
            }
        });
        Ok(rx)
    }

    /// A presigned GET of the blob, valid for `ttl`, when redirects are on.
    pub async fn direct_url(
        &self,
        digest: &str,
        ttl: Duration,
    ) -> Result<Option<String>, BlobError> {
        if self.redirect.is_none() {
            return Ok(None);
        }
        let path = self.blob_path(&super::fs::FsStore::parse(digest)?);
        let url = self
            .store
            .signed_url(http::Method::GET, &path, ttl)
            .await
            .map_err(backend)?;
        Ok(Some(url.to_string()))
    }

    pub async fn put(
        &self,
        mut rx: mpsc::Receiver<Bytes>,
        expected: Option<String>,
        alg: Algorithm,
        max: u64,
    ) -> Result<BlobInfo, BlobError> {
        let expected = expected
            .map(|e| super::fs::FsStore::parse(&e))
            .transpose()?;
        let alg = expected.as_ref().map_or(alg, Digest::algorithm);
        // A known digest is written under its own key, completed only once
        // the bytes proved it; an unknown one goes through tmp/.
        let target = match &expected {
            Some(d) => self.blob_path(d),
            None => self.path(&format!("tmp/{}", random_id())),
        };
        // A blob stored already is only hashed against (its bytes are
        // the same), not written again.
        let stored = match &expected {
            Some(_) => self.size_of(&target).await?.is_some(),
            None => false,
        };
        let mut w = (!stored).then(|| Writer::new(self.store.clone(), target.clone()));
        let mut hasher = Hasher::new(alg);
        let mut size = 0u64;
        while let Some(chunk) = rx.recv().await {
            size += chunk.len() as u64;
            if size > max {
                if let Some(w) = w.as_mut() {
                    w.abort().await;
                }
                return Err(BlobError::TooLarge(max));
            }
            hasher.update(&chunk);
            if let Some(w) = w.as_mut()
                && let Err(e) = w.put(chunk).await
            {
                w.abort().await;
                return Err(backend(e));
            }
        }
        let digest = hasher.finish();
        if let Some(exp) = &expected
            && exp.as_str() != digest
        {
            if let Some(mut w) = w {
                w.abort().await;
            }
            return Err(BlobError::DigestMismatch(digest));
        }
        if let Some(w) = w {
            w.finish().await.map_err(backend)?;
        }
        if expected.is_none() {
            let to = self.blob_path(&super::fs::FsStore::parse(&digest)?);
            let copied = self.publish_copy(&target, &to).await;
            let _ = self.store.delete(&target).await;
            copied?;
        }
        Ok(BlobInfo { digest, size })
    }

    /// Copies a complete object to a blob's key, unless the blob is there
    /// already (same digest, same bytes).
    async fn publish_copy(&self, from: &Path, to: &Path) -> Result<(), BlobError> {
        if self.size_of(to).await?.is_some() {
            return Ok(());
        }
        self.store.copy(from, to).await.map_err(backend)
    }

    pub async fn delete(&self, digest: &str) -> Result<bool, BlobError> {
        let path = self.blob_path(&super::fs::FsStore::parse(digest)?);
        if self.size_of(&path).await?.is_none() {
            return Ok(false);
        }
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(backend(e)),
        }
    }

    /// Stored blobs in digest order after `after`: the bucket lists keys
    /// in byte order, and `blobs/<alg>/<hex>` sorts as `<alg>:<hex>`.
    pub async fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>, BlobError> {
        let root = self.path("blobs");
        let mut stream = match after {
            Some(a) => {
                let offset = self.path(&format!("blobs/{}", a.replacen(':', "/", 1)));
                self.store.list_with_offset(Some(&root), &offset)
            }
            None => self.store.list(Some(&root)),
        };
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(backend)?;
            let parts: Vec<_> = meta.location.parts().collect();
            let [.., alg, hex] = parts.as_slice() else {
                continue;
            };
            let digest = format!("{}:{}", alg.as_ref(), hex.as_ref());
            if Digest::parse(&digest).is_err() || after.is_some_and(|a| digest.as_str() <= a) {
                continue;
            }
            out.push(BlobInfo {
                digest,
                size: meta.size,
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub async fn verify(&self, digest: &str) -> Result<Option<String>, BlobError> {
        let d = super::fs::FsStore::parse(digest)?;
        let got = match self.reader.get(&self.blob_path(&d)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        let mut hasher = Hasher::new(d.algorithm());
        let mut stream = got.into_stream();
        while let Some(b) = stream.next().await {
            hasher.update(&b.map_err(backend)?);
        }
        Ok(Some(hasher.finish()))
    }

    pub async fn create_upload(&self) -> Result<String, BlobError> {
        let id = random_id();
        let open = Path::from(format!("{}/open", self.upload_dir(&id)?));
        self.store
            .put(&open, PutPayload::default())
            .await
            .map_err(backend)?;
        Ok(id)
    }

    fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.uploads
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// An upload's segments in offset order, and its size; `NotFound`
    /// when it does not exist.
    async fn segments(&self, id: &str) -> Result<(Vec<Segment>, u64), BlobError> {
        let dir = self.upload_dir(id)?;
        let mut listed = self.store.list(Some(&dir));
        let mut open = false;
        let mut segments = Vec::new();
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(backend)?;
            match meta.location.filename().map(|n| n.parse::<u64>()) {
                Some(Ok(offset)) => segments.push(Segment {
                    offset,
                    size: meta.size,
                    path: meta.location,
                }),
                _ if meta.location.filename() == Some("open") => open = true,
                _ => {}
            }
        }
        if !open && segments.is_empty() {
            return Err(BlobError::NotFound);
        }
        Ok(contiguous(segments))
    }

    pub async fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        Ok(self.segments(id).await?.1)
    }

    /// Appends one segment. Durable when it returns (the object is
    /// complete in the bucket).
    pub async fn append(
        &self,
        id: &str,
        offset: u64,
        mut rx: mpsc::Receiver<Bytes>,
        max: u64,
    ) -> Result<u64, BlobError> {
        let dir = self.upload_dir(id)?;
        let lock = self.upload_lock(id);
        let _serial = lock.lock().await;
        let (_, size) = match self.segments(id).await {
            Ok(s) => s,
            Err(e) => {
                self.uploads.lock().unwrap().remove(id);
                return Err(e);
            }
        };
        if offset != size {
            return Err(BlobError::BadOffset(size));
        }
        let mut w = Writer::new(
            self.store.clone(),
            Path::from(format!("{dir}/{offset:020}")),
        );
        let mut new_size = size;
        while let Some(chunk) = rx.recv().await {
            new_size += chunk.len() as u64;
            if new_size > max {
                // No segment: the upload keeps its size.
                w.abort().await;
                return Err(BlobError::TooLarge(max));
            }
            if let Err(e) = w.put(chunk).await {
                w.abort().await;
                return Err(backend(e));
            }
        }
        if new_size == size {
            w.abort().await;
            return Ok(size);
        }
        w.finish().await.map_err(backend)?;
        Ok(new_size)
    }

    /// Verifies an upload against `digest` and publishes it: the segments
    /// stream through once, hashed, into the blob's key, completed only if
    /// they match. What is published is always what was hashed: a segment
    /// another host rewrote meanwhile can make the digest fail, never make
    /// a blob hold other bytes than its digest says. (A copy inside the
    /// bucket would spare the bytes the trip, but could copy a segment
    /// rewritten after it was hashed.)
    pub async fn finish(&self, id: &str, digest: &str) -> Result<BlobInfo, BlobError> {
        let expected = super::fs::FsStore::parse(digest)?;
        let lock = self.upload_lock(id);
        let serial = lock.lock().await;
        let (segments, size) = self.segments(id).await?;
        let to = self.blob_path(&expected);
        let result = self.concatenate(&segments, &expected, &to).await;
        let result = result.map(|_| BlobInfo {
            digest: expected.as_str().to_string(),
            size,
        });
        // Published or refused: the upload is done either way (a backend
        // failure keeps it, to be finished again). What was listed goes,
        // without listing again.
        if !matches!(result, Err(BlobError::Io(_))) {
            let mut paths: Vec<Path> = segments.into_iter().map(|s| s.path).collect();
            paths.push(Path::from(format!("{}/open", self.upload_dir(id)?)));
            self.delete_all(paths).await?;
        }
        drop(serial);
        self.uploads.lock().unwrap().remove(id);
        result
    }

    /// Streams `segments` in order into `to`, hashing; completes the write
    /// only if they hash to `expected`. A blob already stored is only
    /// hashed against.
    async fn concatenate(
        &self,
        segments: &[Segment],
        expected: &Digest,
        to: &Path,
    ) -> Result<(), BlobError> {
        let exists = self.size_of(to).await?.is_some();
        let mut w = (!exists).then(|| Writer::new(self.store.clone(), to.clone()));
        let mut hasher = Hasher::new(expected.algorithm());
        for s in segments {
            let mut stream = self
                .reader
                .get(&s.path)
                .await
                .map_err(backend)?
                .into_stream();
            while let Some(b) = stream.next().await {
                let b = b.map_err(backend)?;
                hasher.update(&b);
                if let Some(w) = w.as_mut()
                    && let Err(e) = w.put(b).await
                {
                    w.abort().await;
                    return Err(backend(e));
                }
            }
        }
        let computed = hasher.finish();
        if computed != expected.as_str() {
            if let Some(mut w) = w {
                w.abort().await;
            }
            return Err(BlobError::DigestMismatch(computed));
        }
        if let Some(w) = w {
            w.finish().await.map_err(backend)?;
        }
        Ok(())
    }

    async fn remove_upload(&self, id: &str) -> Result<(), BlobError> {
        let dir = self.upload_dir(id)?;
        let mut paths = Vec::new();
        let mut listed = self.store.list(Some(&dir));
        while let Some(meta) = listed.next().await {
            paths.push(meta.map_err(backend)?.location);
        }
        self.delete_all(paths).await
    }

    /// Deletes `paths` (in bulk requests where the store has them).
    async fn delete_all(&self, paths: Vec<Path>) -> Result<(), BlobError> {
        let locations = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut deleted = self.store.delete_stream(locations);
        while let Some(d) = deleted.next().await {
            match d {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(())
    }

    pub async fn abort(&self, id: &str) -> Result<(), BlobError> {
        self.segments(id).await?;
        self.uploads.lock().unwrap().remove(id);
        self.remove_upload(id).await
    }

    /// Removes uploads whose newest object is older than `idle`.
    pub async fn expire(&self, idle: Duration) -> Result<Vec<String>, BlobError> {
        let root = self.path("uploads");
        let mut newest: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
        let mut listed = self.store.list(Some(&root));
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(backend)?;
            let parts: Vec<_> = meta.location.parts().collect();
            let [.., id, _] = parts.as_slice() else {
                continue;
            };
            let t = newest
                .entry(id.as_ref().to_string())
                .or_insert(meta.last_modified);
            *t = (*t).max(meta.last_modified);
        }
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(idle).unwrap_or_default();
        let mut removed = Vec::new();
        for (id, t) in newest {
            if t <= cutoff {
                self.uploads.lock().unwrap().remove(&id);
                self.remove_upload(&id).await?;
                removed.push(id);
            }
        }
        Ok(removed)
    }
}

/// Writes one object: a single PUT when it fits in one part, a multipart
/// upload otherwise (at most [`PARTS_IN_FLIGHT`] parts at once). Nothing
/// is visible under the key until [`Writer::finish`]; [`Writer::abort`]
/// leaves nothing behind.
struct Writer {
    store: Arc<AmazonS3>,
    path: Path,
    buffer: Vec<Bytes>,
    buffered: usize,
    multipart: Option<WriteMultipart>,
}

impl Writer {
    fn new(store: Arc<AmazonS3>, path: Path) -> Writer {
        Writer {
            store,
            path,
            buffer: Vec::new(),
            buffered: 0,
            multipart: None,
        }
    }

    async fn put(&mut self, bytes: Bytes) -> object_store::Result<()> {
        if let Some(m) = self.multipart.as_mut() {
            m.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            m.put(bytes);
            return Ok(());
        }
        self.buffered += bytes.len();
        self.buffer.push(bytes);
        if self.buffered >= PART {
            let upload = self.store.put_multipart(&self.path).await?;
            let mut m = WriteMultipart::new_with_chunk_size(upload, PART);
            for b in self.buffer.drain(..) {
                m.put(b);
            }
            self.buffered = 0;
            self.multipart = Some(m);
        }
        Ok(())
    }

    async fn finish(self) -> object_store::Result<PutResult> {
        match self.multipart {
            Some(m) => m.finish().await,
            None => {
                let payload: PutPayload = self.buffer.into_iter().collect();
                self.store.put(&self.path, payload).await
            }
        }
    }

    async fn abort(&mut self) {
        if let Some(m) = self.multipart.take() {
            // Best effort: a part left behind is what the bucket's
            // lifecycle rule removes.
            let _ = m.abort().await;
        }
        self.buffer.clear();
    }
}

#[cfg(test)]
mod tests {
    //! The contract on a real S3-compatible server: `BERTH_TEST_S3` is
    //! `http://<key id>:<secret>@<host>:<port>/<bucket>` (make test starts
    //! Garage and sets it). Each test writes under a prefix of its own.
    use super::super::{Blobs, contract};
    use super::*;

    #[test]
    fn an_upload_is_what_follows_on_from_offset_zero() {
        let seg = |offset, size| Segment {
            offset,
            size,
            path: Path::from(format!("uploads/u/{offset:020}")),
        };
        let sizes = |v: Vec<Segment>| v.iter().map(|s| (s.offset, s.size)).collect::<Vec<_>>();
        let (kept, size) = contiguous(vec![seg(5, 3), seg(0, 5)]);
        assert_eq!((sizes(kept), size), (vec![(0, 5), (5, 3)], 8));
        // Racing appends: a 20-byte rewrite of offset 0 supersedes an
        // append at 10; a 2-byte one leaves the part at 3 past a gap.
        let (kept, size) = contiguous(vec![seg(0, 20), seg(10, 5)]);
        assert_eq!((sizes(kept), size), (vec![(0, 20)], 20));
        let (kept, size) = contiguous(vec![seg(0, 2), seg(3, 2)]);
        assert_eq!((sizes(kept), size), (vec![(0, 2)], 2));
        assert_eq!(contiguous(Vec::new()).1, 0);
    }

    fn config(redirect: Option<Duration>) -> S3Config {
        let url = std::env::var("BERTH_TEST_S3")
            .expect("BERTH_TEST_S3: an S3 server for these tests (make test starts Garage)");
        let (scheme, rest) = url
            .split_once("://")
            .expect("http://key:secret@host:port/bucket");
        let (creds, rest) = rest.rsplit_once('@').expect("key:secret@");
        let (key, secret) = creds.split_once(':').expect("key:secret");
        let (host, bucket) = rest.split_once('/').expect("/bucket");
        S3Config {
            endpoint: Some(format!("{scheme}://{host}")),
            region: "garage".into(),
            bucket: bucket.into(),
            access_key_id: key.into(),
            secret_access_key: secret.into(),
            prefix: format!("contract-{}/", random_id()),
            redirect,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs an S3 server (BERTH_TEST_S3); make test runs it"]
    async fn contract_blobs() {
        let s = Blobs::S3(S3Store::open(&config(None)).await.unwrap());
        contract::blobs_are_published_whole_and_verified(&s).await;
        contract::list_pages_in_digest_order(&Blobs::S3(
            S3Store::open(&config(None)).await.unwrap(),
        ))
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs an S3 server (BERTH_TEST_S3); make test runs it"]
    async fn contract_uploads_across_hosts() {
        let c = config(None);
        let a = Blobs::S3(S3Store::open(&c).await.unwrap());
        let b = Blobs::S3(S3Store::open(&c).await.unwrap());
        contract::uploads_resume_across_hosts(&a, &b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs an S3 server (BERTH_TEST_S3); make test runs it"]
    async fn presigned_urls_read_the_blob_and_nothing_else() {
        let s = Blobs::S3(
            S3Store::open(&config(Some(Duration::from_secs(60))))
                .await
                .unwrap(),
        );
        let data = contract::bytes(1000, 9);
        let info = s
            .put(
                contract::feed(vec![data.clone()]).await,
                None,
                Algorithm::Sha256,
                10_000,
            )
            .await
            .unwrap();
        let url = s
            .direct_url(&info.digest, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        let client = reqwest::Client::new();
        let got = client.get(&url).send().await.unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());
        // A range goes along with the redirected request.
        let got = client
            .get(&url)
            .header("range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 206);
        assert_eq!(got.bytes().await.unwrap().as_ref(), &data[10..20]);
        // The signature covers the key: another key is refused.
        let other = url.replace(&info.digest[7..17], "0000000000");
        assert_eq!(client.get(&other).send().await.unwrap().status(), 403);
        // Without redirects configured, none.
        let plain = Blobs::S3(S3Store::open(&config(None)).await.unwrap());
        assert_eq!(
            plain
                .direct_url(&info.digest, Duration::from_secs(60))
                .await
                .unwrap(),
            None
        );
    }
}
