//! The blob and upload capabilities (`berth:registry/blobs` and
//! `berth:registry/uploads` in `wit/store.wit`): content-addressed,
//! immutable blobs, and resumable uploads that become one. One module per
//! backend, chosen by the runtime config (`crate::runtime_config`):
//!
//! - [`fs`]: a directory, the embedded default (or one several hosts
//!   mount);
//! - [`s3`]: an S3-compatible bucket through the `object_store` crate,
//!   shared by several hosts.
//!
//! Both keep one contract, which the tests below check on each: a blob is
//! published only whole and only once its bytes hash to its digest
//! (hashed natively as they stream in); a crash at any moment leaves
//! either no blob or a complete one; an upload's bytes are durable once an
//! append returns, and any host may append to it or finish it.

pub mod fs;
pub mod s3;

use berth_domain::Algorithm;
use bytes::Bytes;
use sha2::Digest as _;
use std::time::Duration;
use tokio::sync::mpsc;

/// Size of the chunks moved between a component stream and a backend.
pub const CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("not found")]
    NotFound,
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    #[error("content hashes to {0}")]
    DigestMismatch(String),
    #[error("upload is at offset {0}")]
    BadOffset(u64),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: String,
    pub size: u64,
}

/// A running hash, in either supported algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(alg: Algorithm) -> Self {
        match alg {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }
    /// `algorithm:hex`.
    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

/// 128 random bits as hex: upload ids and temporary names.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("system randomness");
    hex::encode(b)
}

/// Which backend serves blobs and uploads (from the runtime config).
#[derive(Debug, Clone)]
pub enum BlobsConfig {
    /// A directory: `blobs/`, `uploads/`, `tmp/` below it. `shared` when
    /// other hosts may use it too (named in the runtime config rather
    /// than the data directory).
    Fs {
        root: std::path::PathBuf,
        shared: bool,
    },
    S3(s3::S3Config),
}

/// The blob store of a host.
pub enum Blobs {
    Fs(fs::FsStore),
    S3(s3::S3Store),
}

impl Blobs {
    pub async fn open(config: &BlobsConfig) -> anyhow::Result<Blobs> {
        Ok(match config {
            BlobsConfig::Fs {
                root,
                shared: false,
            } => Blobs::Fs(fs::FsStore::open(root)?),
            BlobsConfig::Fs { root, shared: true } => Blobs::Fs(fs::FsStore::open_shared(root)?),
            BlobsConfig::S3(c) => Blobs::S3(s3::S3Store::open(c).await?),
        })
    }

    /// Size of a stored blob, if it exists.
    pub async fn stat(&self, digest: &str) -> Result<Option<u64>, BlobError> {
        match self {
            Blobs::Fs(s) => s.stat(digest),
            Blobs::S3(s) => s.stat(digest).await,
        }
    }

    /// Streams `[offset, offset + length)` of a blob (to its end when
    /// `length` is none); `NotFound` when there is none.
    pub async fn read(
        &self,
        digest: &str,
        offset: u64,
        length: Option<u64>,
    ) -> Result<mpsc::Receiver<std::io::Result<Bytes>>, BlobError> {
        match self {
            Blobs::Fs(s) => s.read(digest, offset, length),
            Blobs::S3(s) => s.read(digest, offset, length).await,
        }
    }

    /// A URL where a client reads the blob directly for `ttl` (a presigned
    /// GET), when the backend offers them and the runtime config asks for
    /// redirects.
    pub async fn direct_url(
        &self,
        digest: &str,
        ttl: Duration,
    ) -> Result<Option<String>, BlobError> {
        match self {
            Blobs::Fs(_) => Ok(None),
            Blobs::S3(s) => s.direct_url(digest, ttl).await,
        }
    }

    /// Stores a whole blob from `rx`: kept only if it hashes to `expected`
    /// (when given; else hashed with `alg`); `TooLarge` past `max` bytes.
    pub async fn put(
        &self,
        rx: mpsc::Receiver<Bytes>,
        expected: Option<String>,
        alg: Algorithm,
        max: u64,
    ) -> Result<BlobInfo, BlobError> {
        match self {
            Blobs::Fs(s) => s.put(rx, expected, alg, max).await,
            Blobs::S3(s) => s.put(rx, expected, alg, max).await,
        }
    }

    /// Removes a blob; false when there was none.
    pub async fn delete(&self, digest: &str) -> Result<bool, BlobError> {
        match self {
            Blobs::Fs(s) => s.delete(digest),
            Blobs::S3(s) => s.delete(digest).await,
        }
    }

    /// Stored blobs in digest order strictly after `after`, at most `limit`.
    pub async fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>, BlobError> {
        match self {
            Blobs::Fs(s) => s.list(after, limit),
            Blobs::S3(s) => s.list(after, limit).await,
        }
    }

    /// The digest a stored blob's bytes hash to now (none if missing).
    pub async fn verify(&self, digest: &str) -> Result<Option<String>, BlobError> {
        match self {
            Blobs::Fs(s) => s.verify(digest).await,
            Blobs::S3(s) => s.verify(digest).await,
        }
    }

    /// A new, empty upload; its id.
    pub async fn create_upload(&self) -> Result<String, BlobError> {
        match self {
            Blobs::Fs(s) => s.create_upload(),
            Blobs::S3(s) => s.create_upload().await,
        }
    }

    pub async fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        match self {
            Blobs::Fs(s) => s.upload_size(id),
            Blobs::S3(s) => s.upload_size(id).await,
        }
    }

    /// Appends at `offset`, which must be the upload's size (`BadOffset`
    /// otherwise); the new size. Durable when it returns.
    pub async fn append(
        &self,
        id: &str,
        offset: u64,
        rx: mpsc::Receiver<Bytes>,
        max: u64,
    ) -> Result<u64, BlobError> {
        match self {
            Blobs::Fs(s) => s.append(id, offset, rx, max).await,
            Blobs::S3(s) => s.append(id, offset, rx, max).await,
        }
    }

    /// Verifies an upload against `digest` and publishes it; on mismatch
    /// the upload is discarded.
    pub async fn finish(&self, id: &str, digest: &str) -> Result<BlobInfo, BlobError> {
        match self {
            Blobs::Fs(s) => s.finish(id, digest).await,
            Blobs::S3(s) => s.finish(id, digest).await,
        }
    }

    pub async fn abort(&self, id: &str) -> Result<(), BlobError> {
        match self {
            Blobs::Fs(s) => s.abort(id),
            Blobs::S3(s) => s.abort(id).await,
        }
    }

    /// Removes uploads not written to for `idle`; their ids.
    pub async fn expire(&self, idle: Duration) -> Result<Vec<String>, BlobError> {
        match self {
            Blobs::Fs(s) => s.expire(idle),
            Blobs::S3(s) => s.expire(idle).await,
        }
    }
}

/// The contract every backend keeps, run on each by its own tests.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;

    pub async fn feed(chunks: Vec<Vec<u8>>) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(chunks.len().max(1));
        for c in chunks {
            tx.send(Bytes::from(c)).await.unwrap();
        }
        rx
    }

    pub fn sha256(b: &[u8]) -> String {
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
    }

    pub async fn read_all(s: &Blobs, digest: &str, offset: u64, length: Option<u64>) -> Vec<u8> {
        let mut rx = s.read(digest, offset, length).await.unwrap();
        let mut out = Vec::new();
        while let Some(b) = rx.recv().await {
            out.extend_from_slice(&b.unwrap());
        }
        out
    }

    /// Bytes that are not all alike, `n` of them.
    pub fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    pub async fn blobs_are_published_whole_and_verified(s: &Blobs) {
        let hello = b"hello".to_vec();
        let digest = sha256(&hello);
        let bad = s
            .put(
                feed(vec![hello.clone()]).await,
                Some(digest.replace("2cf", "3cf")),
                Algorithm::Sha256,
                100,
            )
            .await;
        assert!(
            matches!(bad, Err(BlobError::DigestMismatch(ref d)) if *d == digest),
            "{bad:?}"
        );
        assert_eq!(s.stat(&digest).await.unwrap(), None);
        let info = s
            .put(
                feed(vec![b"hel".to_vec(), b"lo".to_vec()]).await,
                Some(digest.clone()),
                Algorithm::Sha256,
                100,
            )
            .await
            .unwrap();
        assert_eq!(
            info,
            BlobInfo {
                digest: digest.clone(),
                size: 5
            }
        );
        assert_eq!(s.stat(&digest).await.unwrap(), Some(5));
        // The same blob again: kept once, still whole.
        s.put(
            feed(vec![hello.clone()]).await,
            None,
            Algorithm::Sha256,
            100,
        )
        .await
        .unwrap();
        assert_eq!(read_all(s, &digest, 0, None).await, hello);
        assert!(matches!(
            s.put(feed(vec![hello.clone()]).await, None, Algorithm::Sha256, 4)
                .await,
            Err(BlobError::TooLarge(4))
        ));
        // Larger than a part of a multipart write, unknown digest, sha512.
        let big = bytes(s3::PART + 3 * CHUNK + 7, 1);
        let chunks: Vec<Vec<u8>> = big.chunks(CHUNK).map(<[u8]>::to_vec).collect();
        let info = s
            .put(feed(chunks).await, None, Algorithm::Sha512, u64::MAX)
            .await
            .unwrap();
        assert!(info.digest.starts_with("sha512:"));
        assert_eq!(info.size, big.len() as u64);
        assert_eq!(
            s.verify(&info.digest).await.unwrap().as_deref(),
            Some(info.digest.as_str())
        );
        // Ranges: inside, to the end, empty, past the end.
        assert_eq!(read_all(s, &info.digest, 10, Some(100)).await, big[10..110]);
        assert_eq!(
            read_all(s, &info.digest, big.len() as u64 - 5, None).await,
            big[big.len() - 5..]
        );
        assert!(read_all(s, &info.digest, 3, Some(0)).await.is_empty());
        assert!(
            read_all(s, &info.digest, big.len() as u64, None)
                .await
                .is_empty()
        );
        assert_eq!(read_all(s, &info.digest, 0, None).await.len(), big.len());
        let missing = sha256(b"missing");
        assert!(matches!(
            s.read(&missing, 0, None).await,
            Err(BlobError::NotFound)
        ));
        assert!(matches!(
            s.stat("sha256:zz").await,
            Err(BlobError::Invalid(_))
        ));
        assert!(s.delete(&info.digest).await.unwrap());
        assert!(!s.delete(&info.digest).await.unwrap());
        assert_eq!(s.verify(&info.digest).await.unwrap(), None);
    }

    pub async fn list_pages_in_digest_order(s: &Blobs) {
        let mut digests = Vec::new();
        for data in ["one", "two", "three", "four"] {
            let info = s
                .put(
                    feed(vec![data.as_bytes().to_vec()]).await,
                    None,
                    Algorithm::Sha256,
                    100,
                )
                .await
                .unwrap();
            digests.push(info.digest);
        }
        digests.sort();
        let first = s.list(None, 3).await.unwrap();
        let rest = s.list(Some(&first[2].digest), 3).await.unwrap();
        let listed: Vec<String> = first
            .iter()
            .chain(&rest)
            .map(|i| i.digest.clone())
            .collect();
        assert_eq!(listed, digests);
        assert_eq!(
            first[0].size,
            s.stat(&first[0].digest).await.unwrap().unwrap()
        );
    }

    /// `a` and `b` are two hosts on one store.
    pub async fn uploads_resume_across_hosts(a: &Blobs, b: &Blobs) {
        let id = a.create_upload().await.unwrap();
        assert_eq!(b.upload_size(&id).await.unwrap(), 0);
        let part1 = bytes(s3::PART + 11, 2);
        let part2 = b"tail".to_vec();
        let chunks: Vec<Vec<u8>> = part1.chunks(CHUNK).map(<[u8]>::to_vec).collect();
        let n = part1.len() as u64;
        assert_eq!(
            a.append(&id, 0, feed(chunks).await, u64::MAX)
                .await
                .unwrap(),
            n
        );
        assert!(matches!(
            b.append(&id, 0, feed(vec![b"xx".to_vec()]).await, u64::MAX).await,
            Err(BlobError::BadOffset(m)) if m == n
        ));
        // Past the limit: refused, and the upload keeps its size.
        assert!(matches!(
            b.append(&id, n, feed(vec![part2.clone()]).await, n + 2)
                .await,
            Err(BlobError::TooLarge(_))
        ));
        // Refused on the host that took the rest: nothing of it counts
        // either (its first chunk fitted, the second did not).
        assert!(matches!(
            a.append(
                &id,
                n,
                feed(vec![b"ab".to_vec(), part2.clone()]).await,
                n + 3
            )
            .await,
            Err(BlobError::TooLarge(_))
        ));
        assert_eq!(a.upload_size(&id).await.unwrap(), n);
        // Nothing to append: nothing changes.
        assert_eq!(
            b.append(&id, n, feed(vec![]).await, u64::MAX)
                .await
                .unwrap(),
            n
        );
        assert_eq!(
            b.append(&id, n, feed(vec![part2.clone()]).await, u64::MAX)
                .await
                .unwrap(),
            n + 4
        );
        let whole = [part1.clone(), part2.clone()].concat();
        let digest = sha256(&whole);
        // The host that started it finishes it: its running hash is stale
        // (the other host appended), so it hashes what the store holds.
        let info = a.finish(&id, &digest).await.unwrap();
        assert_eq!(
            info,
            BlobInfo {
                digest: digest.clone(),
                size: whole.len() as u64
            }
        );
        assert_eq!(read_all(b, &digest, 0, None).await, whole);
        assert!(matches!(a.upload_size(&id).await, Err(BlobError::NotFound)));
        // One host throughout (the filesystem keeps a running hash), with
        // a refused append in between that must leave no trace.
        let id = a.create_upload().await.unwrap();
        a.append(&id, 0, feed(vec![b"he".to_vec()]).await, 100)
            .await
            .unwrap();
        assert!(matches!(
            a.append(&id, 2, feed(vec![b"x".to_vec(), b"yyyy".to_vec()]).await, 4)
                .await,
            Err(BlobError::TooLarge(_))
        ));
        a.append(&id, 2, feed(vec![b"llo".to_vec()]).await, 100)
            .await
            .unwrap();
        assert_eq!(a.finish(&id, &sha256(b"hello")).await.unwrap().size, 5);
        // A wrong digest discards the upload and publishes nothing.
        let id = a.create_upload().await.unwrap();
        a.append(&id, 0, feed(vec![b"abc".to_vec()]).await, 100)
            .await
            .unwrap();
        let wrong = sha256(b"abd");
        assert!(
            matches!(b.finish(&id, &wrong).await, Err(BlobError::DigestMismatch(d)) if d == sha256(b"abc"))
        );
        assert_eq!(a.stat(&wrong).await.unwrap(), None);
        assert!(matches!(a.upload_size(&id).await, Err(BlobError::NotFound)));
        // Empty uploads make the empty blob.
        let id = b.create_upload().await.unwrap();
        assert_eq!(a.finish(&id, &sha256(b"")).await.unwrap().size, 0);
        assert_eq!(b.stat(&sha256(b"")).await.unwrap(), Some(0));
        // Abort, expire, and ids that name nothing.
        let id = a.create_upload().await.unwrap();
        b.abort(&id).await.unwrap();
        assert!(matches!(a.upload_size(&id).await, Err(BlobError::NotFound)));
        assert!(matches!(a.abort(&id).await, Err(BlobError::NotFound)));
        let id = a.create_upload().await.unwrap();
        a.append(&id, 0, feed(vec![b"x".to_vec()]).await, 100)
            .await
            .unwrap();
        assert!(
            !a.expire(Duration::from_secs(3600))
                .await
                .unwrap()
                .contains(&id)
        );
        assert!(b.expire(Duration::ZERO).await.unwrap().contains(&id));
        assert!(matches!(a.upload_size(&id).await, Err(BlobError::NotFound)));
        for bad in ["../x", "", "zz", &"a".repeat(65)] {
            assert!(
                matches!(a.upload_size(bad).await, Err(BlobError::NotFound)),
                "{bad}"
            );
        }
    }
}
