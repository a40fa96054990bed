//! Berth's credential formats, in one place so a token the host signs is
//! accepted by the Spin build and a key one seals the other unseals
//! (`wit/store.wit`, `interface credentials`):
//!
//! - passwords: argon2id with the `argon2` crate's defaults (19 MiB,
//!   2 passes, 1 lane), stored as PHC strings;
//! - tokens: JWT (RFC 7519) signed HS256 (RFC 7518 §3.2), issuer `berth`,
//!   with `iat`, `exp` and a random `jti`; 5 s leeway on expiry;
//! - sealing: AES-256-GCM, a random 12-byte nonce followed by the
//!   ciphertext and its 16-byte tag.
//!
//! Where keys come from is the provider's: key files on the host
//! (`infra/host/src/capabilities/credentials.rs`), Spin variables in the
//! Spin build (`infra/spin/adapters/credentials-variables`).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};

/// The two 32-byte keys: the token signing key and the sealing key.
pub struct Keys {
    sign: jsonwebtoken::EncodingKey,
    check: jsonwebtoken::DecodingKey,
    seal: Aes256Gcm,
}

/// Why a credential operation failed.
#[derive(Debug)]
pub enum Error {
    /// The platform gave no randomness.
    Random(String),
    /// The input was not what the format needs (claims not a JSON object).
    Invalid(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Random(e) => write!(f, "no randomness: {e}"),
            Error::Invalid(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Error {}

/// `N` random bytes from the platform (the OS, or `wasi:random`).
pub fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(bytes)
}

/// A 32-byte key written as 64 hex digits (how Spin variables and the
/// runtime config carry keys); surrounding whitespace is ignored.
pub fn key_from_hex(text: &str) -> Result<[u8; 32], Error> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Invalid("a key must be 32 bytes written as 64 hex digits".into()))
}

/// An argon2id hash of `password`, as a PHC string (`$argon2id$v=19$…`).
pub fn hash_password(password: &str) -> Result<String, Error> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt =
        SaltString::encode_b64(&random::<16>()?).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::Invalid(e.to_string()))?
        .to_string())
}

/// Whether `password` matches the PHC string `hash` (false for a hash that
/// does not parse). Costs one argon2 run.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

impl Keys {
    pub fn new(token_key: [u8; 32], seal_key: [u8; 32]) -> Result<Keys, Error> {
        let refused =
            |e: jsonwebtoken::errors::Error| Error::Invalid(format!("token signing key: {e}"));
        Ok(Keys {
            sign: jsonwebtoken::EncodingKey::from_secret(&token_key).map_err(refused)?,
            check: jsonwebtoken::DecodingKey::from_secret(&token_key).map_err(refused)?,
            seal: Aes256Gcm::new(&seal_key.into()),
        })
    }

    /// A signed token carrying `claims` (a JSON object) plus `iss`, `iat`,
    /// `exp` (`ttl_seconds` after `now`, Unix seconds) and `jti`.
    pub fn issue_token(&self, claims: &str, ttl_seconds: u32, now: u64) -> Result<String, Error> {
        let mut claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(claims)
                .map_err(|_| Error::Invalid("token claims must be a JSON object".into()))?;
        claims.insert("iss".into(), "berth".into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + u64::from(ttl_seconds)).into());
        claims.insert("jti".into(), hex::encode(random::<12>()?).into());
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &self.sign,
        )
        .map_err(|e| Error::Invalid(e.to_string()))
    }

    /// The claims (JSON) of `token` if these keys signed it, its issuer is
    /// `berth` and it has not expired (the system clock, 5 s leeway).
    pub fn verify_token(&self, token: &str) -> Option<String> {
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.leeway = 5;
        v.set_issuer(&["berth"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &self.check, &v).ok()?;
        Some(data.claims.to_string())
    }

    /// `secret` sealed: a random 12-byte nonce, then the ciphertext and tag.
    pub fn seal(&self, secret: &[u8]) -> Result<Vec<u8>, Error> {
        let nonce = random::<12>()?;
        let mut out = nonce.to_vec();
        out.extend(
            self.seal
                .encrypt(Nonce::from_slice(&nonce), secret)
                .map_err(|_| Error::Invalid("AES-GCM refused the secret".into()))?,
        );
        Ok(out)
    }

    /// The secret in `sealed`, or none if these keys did not seal it (or
    /// it was altered).
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

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn passwords_tokens_and_sealing() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$") && !h.contains("s3cret"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("S3cret", &h));
        assert!(!verify_password("s3cret", "garbage"));

        let keys = Keys::new([1; 32], [2; 32]).unwrap();
        let t = keys.issue_token(r#"{"sub":"alice"}"#, 60, now()).unwrap();
        let claims: serde_json::Value =
            serde_json::from_str(&keys.verify_token(&t).unwrap()).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["iss"], "berth");
        assert!(keys.verify_token(&format!("{t}x")).is_none());
        // Another signing key, or an expired token, is refused.
        assert!(
            Keys::new([3; 32], [2; 32])
                .unwrap()
                .verify_token(&t)
                .is_none()
        );
        let old = keys.issue_token("{}", 1, now() - 60).unwrap();
        assert!(keys.verify_token(&old).is_none());
        assert!(keys.issue_token("[1]", 60, now()).is_err());

        let sealed = keys.seal(b"secret key").unwrap();
        assert_ne!(&sealed[12..], b"secret key");
        assert_eq!(keys.unseal(&sealed).unwrap(), b"secret key");
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(keys.unseal(&bad).is_none());
        assert!(
            Keys::new([1; 32], [9; 32])
                .unwrap()
                .unseal(&sealed)
                .is_none()
        );
    }

    #[test]
    fn keys_are_64_hex_digits() {
        assert_eq!(
            key_from_hex(&format!(" {} \n", "ab".repeat(32))).unwrap(),
            [0xab; 32]
        );
        assert!(key_from_hex("abcd").is_err());
        assert!(key_from_hex(&"zz".repeat(32)).is_err());
    }
}
