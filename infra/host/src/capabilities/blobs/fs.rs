//! Blobs and resumable uploads on a filesystem: the embedded default, or
//! a directory several hosts share.
//!
//! Layout under the data directory:
//! - `blobs/<alg>/<2 hex>/<hex>`: published, immutable blobs;
//! - `tmp/<process>/`: monolithic uploads being written, in a directory
//!   of each process's own (several hosts may share the root);
//! - `uploads/<id>`: resumable uploads.
//!
//! A blob is written to a temporary file, fsynced, verified, then renamed
//! into place and its directory fsynced: a crash at any moment leaves either
//! no blob or a complete one, never a partial one under a blob's name.
//! Hashing runs natively while bytes are written.

use super::{BlobError, BlobInfo, CHUNK, Hasher, random_id};
use anyhow::Result;
use berth_domain::{Algorithm, Digest};
use bytes::Bytes;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// The sha256 state of an upload whose bytes all went through this process,
/// so finishing it needs no second read. Lost on restart: then the file is
/// re-read and hashed at finish.
struct RunningHash {
    size: u64,
    hasher: Hasher,
}

pub struct FsStore {
    root: PathBuf,
    /// This process's directory under `tmp/`.
    tmp: PathBuf,
    /// Upload id → lock serialising appends, and the running hash if known.
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<RunningHash>>>>>,
}

/// A temporary file of a shared store untouched this long was left by a
/// host that stopped.
const STALE_TMP: Duration = Duration::from_secs(24 * 3600);

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl FsStore {
    /// The store under `root`, this process's alone (the data directory):
    /// temporary files left by an earlier process are removed at once.
    pub fn open(root: &Path) -> Result<FsStore> {
        Self::open_at(root, Duration::ZERO)
    }

    /// The store under `root`, shared with other hosts: only temporary
    /// files untouched for [`STALE_TMP`] are removed (a live host's are
    /// written to as it goes).
    pub fn open_shared(root: &Path) -> Result<FsStore> {
        Self::open_at(root, STALE_TMP)
    }

    fn open_at(root: &Path, stale: Duration) -> Result<FsStore> {
        for d in ["blobs/sha256", "blobs/sha512", "tmp", "uploads"] {
            fs::create_dir_all(root.join(d))?;
        }
        // Temporary files are never valid after their process ended.
        let now = SystemTime::now();
        let old = |p: &Path| {
            fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= stale)
        };
        for entry in fs::read_dir(root.join("tmp"))?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                for f in fs::read_dir(&path)?.flatten() {
                    if old(&f.path()) {
                        let _ = fs::remove_file(f.path());
                    }
                }
                // Gone once empty (fails while a live host writes in it).
                if old(&path) {
                    let _ = fs::remove_dir(&path);
                }
            } else if old(&path) {
                let _ = fs::remove_file(&path);
            }
        }
        let tmp = root.join("tmp").join(random_id());
        fs::create_dir_all(&tmp)?;
        Ok(FsStore {
            root: root.to_path_buf(),
            tmp,
            uploads: Mutex::new(HashMap::new()),
        })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf, BlobError> {
        // Ids are ours (hex); anything else never names a file.
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BlobError::NotFound);
        }
        Ok(self.root.join("uploads").join(id))
    }

    pub(super) fn parse(digest: &str) -> Result<Digest, BlobError> {
        Digest::parse(digest).map_err(|_| BlobError::Invalid(format!("invalid digest {digest:?}")))
    }

    pub fn stat(&self, digest: &str) -> Result<Option<u64>, BlobError> {
        match fs::metadata(self.blob_path(&Self::parse(digest)?)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a blob for reading `[offset, offset+length)`; bytes arrive on the channel.
    pub fn read(
        &self,
        digest: &str,
        offset: u64,
        length: Option<u64>,
    ) -> Result<mpsc::Receiver<std::io::Result<Bytes>>, BlobError> {
        let file = match File::open(self.blob_path(&Self::parse(digest)?)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata()?.len();
        let end = match length {
            Some(l) => offset.saturating_add(l).min(size),
            None => size,
        };
        // 512 KiB reads, two in flight: full speed on loopback (256 KiB
        // reads cost ~25% of a 1 GiB pull) with ~1.5 MiB held per download.
        let (tx, rx) = mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
            let mut pos = offset;
            while pos < end {
                let n = ((end - pos) as usize).min(CHUNK * 2);
                let mut buf = vec![0u8; n];
                let res = file.read_exact_at(&mut buf, pos).map(|_| Bytes::from(buf));
                let failed = res.is_err();
                if tx.blocking_send(res).is_err() || failed {
                    return;
                }
                pos += n as u64;
            }
        });
        Ok(rx)
    }

    /// Writes a whole blob from `rx`, verifies it, and publishes it.
    pub async fn put(
        &self,
        rx: mpsc::Receiver<Bytes>,
        expected: Option<String>,
        alg: Algorithm,
        max: u64,
    ) -> Result<BlobInfo, BlobError> {
        let expected = expected.map(|e| Self::parse(&e)).transpose()?;
        let alg = expected.as_ref().map_or(alg, Digest::algorithm);
        // Made again if another host found it idle and removed it.
        fs::create_dir_all(&self.tmp)?;
        let tmp = self.tmp.join(random_id());
        let file = File::create(&tmp)?;
        let (file, size, hasher) = match ingest(rx, file, 0, Some(Hasher::new(alg)), max).await {
            Ok(r) => r,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let digest = hasher.expect("hash requested").finish();
        if let Some(exp) = &expected
            && exp.as_str() != digest
        {
            let _ = fs::remove_file(&tmp);
            return Err(BlobError::DigestMismatch(digest));
        }
        drop(file);
        self.publish(&tmp, &Self::parse(&digest)?).await?;
        Ok(BlobInfo { digest, size })
    }

    /// Moves a complete, synced file into its content address.
    async fn publish(&self, from: &Path, digest: &Digest) -> Result<(), BlobError> {
        let to = self.blob_path(digest);
        let from = from.to_path_buf();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let dir = to.parent().expect("blob paths have parents");
            fs::create_dir_all(dir)?;
            if to.exists() {
                // Same digest, same bytes: keep the one already published.
                return fs::remove_file(&from);
            }
            fs::rename(&from, &to)?;
            sync_dir(dir)
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))??;
        Ok(())
    }

    pub fn delete(&self, digest: &str) -> Result<bool, BlobError> {
        match fs::remove_file(self.blob_path(&Self::parse(digest)?)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Stored blobs in digest order after `after`, at most `limit`.
    pub fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<BlobInfo>, BlobError> {
        let sorted = |dir: &Path| -> Result<Vec<String>, BlobError> {
            let mut names = match fs::read_dir(dir) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect::<Vec<_>>(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            names.sort();
            Ok(names)
        };
        let after = after.unwrap_or("");
        let mut out = Vec::new();
        let root = self.root.join("blobs");
        for alg in sorted(&root)? {
            for fan in sorted(&root.join(&alg))? {
                // Whole directories before the cursor are skipped unread.
                if format!("{alg}:{fan}~").as_str() < after {
                    continue;
                }
                for hex in sorted(&root.join(&alg).join(&fan))? {
                    let digest = format!("{alg}:{hex}");
                    if digest.as_str() <= after || Digest::parse(&digest).is_err() {
                        continue;
                    }
                    // Deleted since the directory was read: not listed.
                    let size = match fs::metadata(root.join(&alg).join(&fan).join(&hex)) {
                        Ok(m) => m.len(),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e.into()),
                    };
                    out.push(BlobInfo { digest, size });
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The digest a stored blob's bytes hash to now (none if missing).
    pub async fn verify(&self, digest: &str) -> Result<Option<String>, BlobError> {
        let d = Self::parse(digest)?;
        let path = self.blob_path(&d);
        tokio::task::spawn_blocking(move || {
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let mut hasher = Hasher::new(d.algorithm());
            let mut buf = vec![0u8; CHUNK * 2];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Ok(Some(hasher.finish()))
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
    }

    pub fn create_upload(&self) -> Result<String, BlobError> {
        let id = random_id();
        let file = File::create(self.upload_path(&id)?)?;
        file.sync_all()?;
        sync_dir(&self.root.join("uploads"))?;
        self.uploads.lock().unwrap().insert(
            id.clone(),
            Arc::new(tokio::sync::Mutex::new(Some(RunningHash {
                size: 0,
                hasher: Hasher::new(Algorithm::Sha256),
            }))),
        );
        Ok(id)
    }

    fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<Option<RunningHash>>> {
        self.uploads
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(None)))
            .clone()
    }

    pub fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        match fs::metadata(self.upload_path(id)?) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Appends to an upload at `offset` (which must be its size). The bytes
    /// are on disk (fdatasync) before this returns.
    pub async fn append(
        &self,
        id: &str,
        offset: u64,
        rx: mpsc::Receiver<Bytes>,
        max: u64,
    ) -> Result<u64, BlobError> {
        let path = self.upload_path(id)?;
        let lock = self.upload_lock(id);
        let mut running = lock.lock().await;
        let file = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata()?.len();
        if offset != size {
            return Err(BlobError::BadOffset(size));
        }
        let hasher = running.take().filter(|r| r.size == size).map(|r| r.hasher);
        let (_file, new_size, hasher) = ingest(rx, file, size, hasher, max).await?;
        *running = hasher.map(|hasher| RunningHash {
            size: new_size,
            hasher,
        });
        Ok(new_size)
    }

    /// Verifies an upload against `digest` and publishes it; on mismatch the
    /// upload is discarded.
    pub async fn finish(&self, id: &str, digest: &str) -> Result<BlobInfo, BlobError> {
        let expected = Self::parse(digest)?;
        let path = self.upload_path(id)?;
        let lock = self.upload_lock(id);
        let mut running = lock.lock().await;
        let size = self.upload_size(id)?;
        let computed = match running.take() {
            Some(r) if r.size == size && expected.algorithm() == Algorithm::Sha256 => {
                r.hasher.finish()
            }
            // Restarted, or another algorithm: hash the file.
            _ => {
                let (p, alg) = (path.clone(), expected.algorithm());
                tokio::task::spawn_blocking(move || hash_file(&p, alg))
                    .await
                    .map_err(|e| BlobError::Io(std::io::Error::other(e)))??
            }
        };
        let result = if computed != expected.as_str() {
            let _ = fs::remove_file(&path);
            Err(BlobError::DigestMismatch(computed))
        } else {
            self.publish(&path, &expected).await.map(|_| BlobInfo {
                digest: computed,
                size,
            })
        };
        drop(running);
        self.uploads.lock().unwrap().remove(id);
        result
    }

    pub fn abort(&self, id: &str) -> Result<(), BlobError> {
        let path = self.upload_path(id)?;
        self.uploads.lock().unwrap().remove(id);
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes uploads not written to for `idle`; returns their ids.
    pub fn expire(&self, idle: Duration) -> Result<Vec<String>, BlobError> {
        let mut removed = Vec::new();
        let now = SystemTime::now();
        for entry in fs::read_dir(self.root.join("uploads"))? {
            let entry = entry?;
            let modified = entry.metadata()?.modified()?;
            if now.duration_since(modified).unwrap_or_default() >= idle {
                let name = entry.file_name().to_string_lossy().into_owned();
                self.uploads.lock().unwrap().remove(&name);
                if fs::remove_file(entry.path()).is_ok() {
                    removed.push(name);
                }
            }
        }
        Ok(removed)
    }
}

fn hash_file(path: &Path, alg: Algorithm) -> std::io::Result<String> {
    let file = File::open(path)?;
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; CHUNK * 4];
    let mut pos = 0;
    loop {
        let n = file.read_at(&mut buf, pos)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(h.finish())
}

/// Writes chunks from `rx` to `file` at `start`, hashing on the way, then
/// fdatasyncs. Runs on a blocking thread; fails past `max` bytes in total.
async fn ingest(
    mut rx: mpsc::Receiver<Bytes>,
    mut file: File,
    start: u64,
    mut hasher: Option<Hasher>,
    max: u64,
) -> Result<(File, u64, Option<Hasher>), BlobError> {
    tokio::task::spawn_blocking(move || {
        let mut size = start;
        let mut io = std::io::BufWriter::with_capacity(CHUNK * 4, &mut file);
        use std::io::Seek;
        io.seek(std::io::SeekFrom::Start(start))?;
        while let Some(chunk) = rx.blocking_recv() {
            size += chunk.len() as u64;
            if size > max {
                // Leave the file as it was before this call, so an upload
                // refused for its size can still be resumed or finished.
                drop(io);
                file.set_len(start)?;
                return Err(BlobError::TooLarge(max));
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            io.write_all(&chunk)?;
        }
        io.flush()?;
        drop(io);
        file.sync_data()?;
        Ok((file, size, hasher))
    })
    .await
    .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::super::{Blobs, contract};
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn contract_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let s = Blobs::Fs(FsStore::open(dir.path()).unwrap());
        contract::blobs_are_published_whole_and_verified(&s).await;
        let dir = tempfile::tempdir().unwrap();
        contract::list_pages_in_digest_order(&Blobs::Fs(FsStore::open(dir.path()).unwrap())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn contract_uploads_across_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let a = Blobs::Fs(FsStore::open_shared(dir.path()).unwrap());
        let b = Blobs::Fs(FsStore::open_shared(dir.path()).unwrap());
        contract::uploads_resume_across_hosts(&a, &b).await;
    }

    async fn feed(chunks: Vec<&'static [u8]>) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(chunks.len().max(1));
        for c in chunks {
            tx.send(Bytes::from_static(c)).await.unwrap();
        }
        rx
    }

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn list_pages_in_digest_order_and_verify_rehashes() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path()).unwrap();
        let mut digests = Vec::new();
        for data in [&b"one"[..], b"two", b"three", b"four"] {
            let info = s
                .put(feed(vec![data]).await, None, Algorithm::Sha256, 100)
                .await
                .unwrap();
            digests.push(info.digest);
        }
        digests.sort();
        let first = s.list(None, 3).unwrap();
        let rest = s.list(Some(&first[2].digest), 3).unwrap();
        let listed: Vec<String> = first
            .iter()
            .chain(&rest)
            .map(|i| i.digest.clone())
            .collect();
        assert_eq!(listed, digests);
        assert_eq!(
            s.verify(&digests[0]).await.unwrap().as_deref(),
            Some(digests[0].as_str())
        );
        // Bytes changed on disk hash to something else; missing ones to nothing.
        std::fs::write(s.blob_path(&Digest::parse(&digests[1]).unwrap()), b"rot").unwrap();
        assert_ne!(
            s.verify(&digests[1]).await.unwrap().as_deref(),
            Some(digests[1].as_str())
        );
        s.delete(&digests[2]).unwrap();
        assert_eq!(s.verify(&digests[2]).await.unwrap(), None);
        assert_eq!(s.list(None, 10).unwrap().len(), 3);
    }

    #[tokio::test]
    async fn refused_puts_leave_no_temporary_files() {
        // (What a put publishes is the contract's; this is the directory's.)
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path()).unwrap();
        let bad = s
            .put(
                feed(vec![b"hello"]).await,
                Some(HELLO.replace("2cf", "3cf")),
                Algorithm::Sha256,
                100,
            )
            .await;
        assert!(matches!(bad, Err(BlobError::DigestMismatch(d)) if d == HELLO));
        assert!(matches!(
            s.put(feed(vec![b"hello"]).await, None, Algorithm::Sha256, 4)
                .await,
            Err(BlobError::TooLarge(4))
        ));
        assert_eq!(fs::read_dir(&s.tmp).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn expire_removes_idle_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path()).unwrap();
        let id = s.create_upload().unwrap();
        assert!(s.expire(Duration::from_secs(3600)).unwrap().is_empty());
        assert_eq!(s.expire(Duration::ZERO).unwrap(), vec![id.clone()]);
        assert!(matches!(s.upload_size(&id), Err(BlobError::NotFound)));
    }
}
