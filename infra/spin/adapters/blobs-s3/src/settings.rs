//! The bucket this instance works on, from Spin variables (read once per
//! instance, on first use):
//!
//! | variable | meaning |
//! | --- | --- |
//! | `s3_endpoint` | `http(s)://host:port` of an S3-compatible server, path-style; empty or undefined: AWS |
//! | `s3_region` | the region signed for (`garage` for Garage) |
//! | `s3_bucket` | the bucket |
//! | `s3_prefix` | keys go under it: empty or undefined, or a path ending in `/` |
//! | `s3_access_key_id`, `s3_secret_access_key` | the credentials |
//!
//! The same settings as the host's `[blob_store.default]` with
//! `type = "s3"` (`infra/host/src/runtime_config.rs`), minus
//! `redirect_seconds`: components ask for `direct-url` only when their
//! own `blob_redirect_seconds` setting is present.

use crate::bucket::Bucket;
use crate::error::Error;
use crate::keys::Keys;
use std::sync::OnceLock;

/// The bucket and the key layout in it.
pub struct Store {
    pub bucket: Bucket,
    pub keys: Keys,
}

static STORE: OnceLock<Store> = OnceLock::new();

/// This instance's store, read from the Spin variables on first use.
/// Errors: `backend("Spin variable … is not set")` or naming the one
/// that is malformed; nothing is cached then, so a later call reads the
/// variables again.
pub async fn store() -> Result<&'static Store, Error> {
    if let Some(store) = STORE.get() {
        return Ok(store);
    }
    let endpoint = optional("s3_endpoint").await?;
    let region = required("s3_region").await?;
    let bucket = required("s3_bucket").await?;
    let prefix = optional("s3_prefix").await?.unwrap_or_default();
    let key_id = required("s3_access_key_id").await?;
    let secret = required("s3_secret_access_key").await?;
    let keys =
        Keys::new(&prefix).map_err(|e| Error::Backend(format!("Spin variable s3_prefix: {e}")))?;
    let bucket = Bucket::new(endpoint.as_deref(), &region, &bucket, &key_id, &secret)
        .map_err(|e| Error::Backend(format!("Spin variables s3_endpoint/s3_bucket: {e}")))?;
    // Two calls may have read the variables at once: either result does.
    Ok(STORE.get_or_init(|| Store { bucket, keys }))
}

/// The variable's value; none when it is undefined or empty.
async fn optional(name: &str) -> Result<Option<String>, Error> {
    match spin_sdk::variables::get(name).await {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(spin_sdk::variables::Error::Undefined(_)) => Ok(None),
        // The error names the variable's problem, never a value.
        Err(e) => Err(Error::Backend(format!("Spin variable {name}: {e}"))),
    }
}

async fn required(name: &str) -> Result<String, Error> {
    optional(name)
        .await?
        .ok_or_else(|| Error::Backend(format!("Spin variable {name} is not set")))
}

/// 128 random bits as 32 hex digits (`wasi:random`): upload ids and
/// temporary keys, as the host makes them.
pub fn random_id() -> String {
    let mut bytes = Vec::with_capacity(16);
    // The host may return fewer bytes than asked for.
    while bytes.len() < 16 {
        let more = spin_sdk::wasip3::random::random::get_random_bytes(16 - bytes.len() as u64);
        bytes.extend_from_slice(&more);
    }
    hex::encode(&bytes[..16])
}
