//! The `credentials` capability with keys that live only in the host
//! (`<data-dir>/keys/`, created on first start, mode 0600, or given in the
//! runtime config's `[credentials]`). The formats (argon2id, HS256 tokens,
//! AES-256-GCM) are `berth_credentials`', shared with the Spin build.

use anyhow::{Context, Result};
use berth_credentials::Keys;
use sha2::Digest;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

/// Verified (hash, password) pairs remembered, so Basic auth on every
/// request costs a sha256, not an argon2 run. Bounded; cleared when full.
const VERIFIED_MAX: usize = 10_000;

pub struct Credentials {
    keys: Keys,
    verified: Mutex<HashSet<[u8; 32]>>,
}

/// Where the host's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `token.key` and `seal.key` in this directory, made on first start.
    Dir(std::path::PathBuf),
    /// Given (the runtime config's `[credentials]`), as the Spin build's
    /// variables give them: a host and a Spin app sharing stores share keys.
    Given { token: [u8; 32], seal: [u8; 32] },
}

fn key_file(dir: &Path, name: &str) -> Result<[u8; 32]> {
    let path = dir.join(name);
    if let Ok(bytes) = std::fs::read(&path) {
        return bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} is not a 32-byte key", path.display()));
    }
    let key = berth_credentials::random::<32>()?;
    std::fs::create_dir_all(dir)?;
    // Hosts sharing the directory may start together: each writes a file
    // of its own, and the first link under the key's name wins; the others
    // read the winner's key.
    let tmp = path.with_extension(format!("tmp.{}", crate::capabilities::blobs::random_id()));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&key)?;
        f.sync_all()?;
    }
    let linked = std::fs::hard_link(&tmp, &path);
    std::fs::remove_file(&tmp)?;
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(&path)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} is not a 32-byte key", path.display())),
        Err(e) => Err(e.into()),
    }
}

impl Credentials {
    pub fn open(source: &KeySource) -> Result<Credentials> {
        let keys = match source {
            KeySource::Dir(dir) => Keys::new(
                key_file(dir, "token.key").context("token signing key")?,
                key_file(dir, "seal.key").context("sealing key")?,
            )?,
            KeySource::Given { token, seal } => Keys::new(*token, *seal)?,
        };
        Ok(Credentials {
            keys,
            verified: Mutex::new(HashSet::new()),
        })
    }

    pub async fn hash_password(&self, password: String) -> Result<String> {
        Ok(
            tokio::task::spawn_blocking(move || berth_credentials::hash_password(&password))
                .await??,
        )
    }

    pub async fn verify_password(&self, password: String, hash: String) -> bool {
        let mut h = sha2::Sha256::new();
        h.update(hash.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        let memo: [u8; 32] = h.finalize().into();
        if self.verified.lock().unwrap().contains(&memo) {
            return true;
        }
        let ok = tokio::task::spawn_blocking(move || {
            berth_credentials::verify_password(&password, &hash)
        })
        .await
        .unwrap_or(false);
        if ok {
            let mut v = self.verified.lock().unwrap();
            if v.len() >= VERIFIED_MAX {
                v.clear();
            }
            v.insert(memo);
        }
        ok
    }

    pub fn issue_token(&self, claims: &str, ttl_seconds: u32) -> Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        Ok(self.keys.issue_token(claims, ttl_seconds, now)?)
    }

    pub fn verify_token(&self, token: &str) -> Option<String> {
        self.keys.verify_token(token)
    }

    /// 12-byte random nonce, then the ciphertext with its tag.
    pub fn seal(&self, secret: &[u8]) -> Vec<u8> {
        self.keys
            .seal(secret)
            .expect("the OS provides randomness and AES-GCM seals small secrets")
    }

    pub fn unseal(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        self.keys.unseal(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_tokens_and_sealing() {
        let dir = tempfile::tempdir().unwrap();
        let c = Credentials::open(&KeySource::Dir(dir.path().into())).unwrap();
        let h = c.hash_password("s3cret".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$") && !h.contains("s3cret"));
        assert!(c.verify_password("s3cret".into(), h.clone()).await);
        assert!(c.verify_password("s3cret".into(), h.clone()).await); // cached
        assert!(!c.verify_password("S3cret".into(), h.clone()).await);
        assert!(!c.verify_password("s3cret".into(), "garbage".into()).await);

        let t = c.issue_token(r#"{"sub":"alice"}"#, 60).unwrap();
        let claims: serde_json::Value = serde_json::from_str(&c.verify_token(&t).unwrap()).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert!(c.verify_token(&format!("{t}x")).is_none());

        let sealed = c.seal(b"secret key");
        assert_ne!(&sealed[12..], b"secret key");
        assert_eq!(c.unseal(&sealed).unwrap(), b"secret key");
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(c.unseal(&bad).is_none());
        // Keys persist: a second open reads the same keys.
        let again = Credentials::open(&KeySource::Dir(dir.path().into())).unwrap();
        assert_eq!(again.unseal(&sealed).unwrap(), b"secret key");
        assert!(again.verify_token(&t).is_some());
    }
}
