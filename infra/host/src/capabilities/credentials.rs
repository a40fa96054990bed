//! The `credentials` capability: argon2id password hashes, HS256 tokens
//! and AES-256-GCM sealing, with keys that live only in the host
//! (`<data-dir>/keys/`, created on first start, mode 0600).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, Result};
use sha2::Digest;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

/// Verified (hash, password) pairs remembered, so Basic auth on every
/// request costs a sha256, not an argon2 run. Bounded; cleared when full.
const VERIFIED_MAX: usize = 10_000;

pub struct Credentials {
    token_key: [u8; 32],
    seal: Aes256Gcm,
    verified: Mutex<HashSet<[u8; 32]>>,
}

fn key_file(dir: &Path, name: &str) -> Result<[u8; 32]> {
    let path = dir.join(name);
    if let Ok(bytes) = std::fs::read(&path) {
        return bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} is not a 32-byte key", path.display()));
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
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
    pub fn open(dir: &Path) -> Result<Credentials> {
        let token_key = key_file(dir, "token.key").context("token signing key")?;
        let seal_key = key_file(dir, "seal.key").context("sealing key")?;
        Ok(Credentials {
            token_key,
            seal: Aes256Gcm::new(&seal_key.into()),
            verified: Mutex::new(HashSet::new()),
        })
    }

    pub async fn hash_password(&self, password: String) -> Result<String> {
        tokio::task::spawn_blocking(move || {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(argon2::Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .to_string())
        })
        .await?
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
            use argon2::password_hash::{PasswordHash, PasswordVerifier};
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
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
        let mut claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(claims).context("token claims must be a JSON object")?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let mut jti = [0u8; 12];
        getrandom::fill(&mut jti).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        claims.insert("iss".into(), "berth".into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + u64::from(ttl_seconds)).into());
        claims.insert("jti".into(), hex::encode(jti).into());
        Ok(jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&self.token_key),
        )?)
    }

    pub fn verify_token(&self, token: &str) -> Option<String> {
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.leeway = 5;
        v.set_issuer(&["berth"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            token,
            &jsonwebtoken::DecodingKey::from_secret(&self.token_key),
            &v,
        )
        .ok()?;
        Some(data.claims.to_string())
    }

    /// 12-byte random nonce, then the ciphertext with its tag.
    pub fn seal(&self, secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the OS provides randomness");
        let mut out = nonce.to_vec();
        out.extend(
            self.seal
                .encrypt(Nonce::from_slice(&nonce), secret)
                .expect("AES-GCM encryption of a small secret cannot fail"),
        );
        out
    }

    pub fn unseal(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 12 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(12);
        self.seal.decrypt(Nonce::from_slice(nonce), ct).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_tokens_and_sealing() {
        let dir = tempfile::tempdir().unwrap();
        let c = Credentials::open(dir.path()).unwrap();
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
        let again = Credentials::open(dir.path()).unwrap();
        assert_eq!(again.unseal(&sealed).unwrap(), b"secret key");
        assert!(again.verify_token(&t).is_some());
    }
}
