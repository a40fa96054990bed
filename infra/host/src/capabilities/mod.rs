//! Native providers of the `berth:store` capabilities (see `wit/store.wit`).
//! The trait impls here only translate between component values and the
//! backends; the backends hold the logic.

pub mod blobs;
pub mod credentials;
pub mod metadata;
mod streams;

use crate::capabilities::blobs::{BlobError, Blobs};
use crate::capabilities::metadata::{MetaError, Metadata};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use streams::{ChannelConsumer, ChannelProducer};
use tokio::sync::mpsc;
use wasmtime::component::{Accessor, HasData, StreamReader};

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "berth:registry/component-imports",
});

use berth::registry::types::StoreError;
use berth::registry::{
    blobs as wit_blobs, config, credentials as wit_creds, metadata as wit_meta, uploads,
};

/// The backends every component instance shares.
pub struct Backends {
    pub metadata: Metadata,
    pub blobs: Blobs,
    pub credentials: credentials::Credentials,
}

/// Per-store capability state: the shared backends and this component's config.
pub struct CapState {
    pub backends: Arc<Backends>,
    pub config: Arc<HashMap<String, String>>,
}

/// Marker tying the generated traits to [`CapState`].
pub struct Caps;

impl HasData for Caps {
    type Data<'a> = &'a mut CapState;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> &mut CapState,
) -> wasmtime::Result<()> {
    wit_meta::add_to_linker::<T, Caps>(linker, get)?;
    wit_blobs::add_to_linker::<T, Caps>(linker, get)?;
    uploads::add_to_linker::<T, Caps>(linker, get)?;
    config::add_to_linker::<T, Caps>(linker, get)?;
    wit_creds::add_to_linker::<T, Caps>(linker, get)?;
    berth::registry::types::add_to_linker::<T, Caps>(linker, get)?;
    Ok(())
}

fn backends<T>(a: &Accessor<T, Caps>) -> Arc<Backends> {
    a.with(|mut s| s.get().backends.clone())
}

impl From<MetaError> for StoreError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Conflict => StoreError::Conflict,
            MetaError::Backend(e) => {
                // As for blobs: the detail (the server's reason, its user)
                // is for the log; clients learn only that storage failed.
                tracing::error!(error = %e, "metadata backend failure");
                StoreError::Backend("metadata storage failed; see the registry's log".into())
            }
        }
    }
}

impl From<BlobError> for StoreError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound => StoreError::NotFound,
            BlobError::Invalid(m) => StoreError::Invalid(m),
            BlobError::TooLarge(n) => StoreError::TooLarge(n),
            BlobError::DigestMismatch(d) => StoreError::DigestMismatch(d),
            BlobError::BadOffset(n) => StoreError::BadOffset(n),
            BlobError::Io(e) => {
                // The detail (a path, an S3 endpoint and its answer) is for
                // the log; clients learn only that storage failed.
                tracing::error!(error = %e, "blob backend failure");
                StoreError::Backend("blob storage failed; see the registry's log".into())
            }
        }
    }
}

fn to_wit(e: metadata::Entry) -> wit_meta::Entry {
    wit_meta::Entry {
        key: e.key,
        value: e.value,
        version: e.version,
    }
}

fn precondition(p: wit_meta::Precondition) -> metadata::Precondition {
    match p {
        wit_meta::Precondition::None => metadata::Precondition::None,
        wit_meta::Precondition::Absent => metadata::Precondition::Absent,
        wit_meta::Precondition::Version(v) => metadata::Precondition::Version(v),
    }
}

impl berth::registry::types::Host for &mut CapState {}
impl wit_meta::Host for &mut CapState {
    fn note(&mut self, stats: Vec<wit_meta::Stat>) {
        self.backends
            .metadata
            .note(stats.into_iter().map(|s| match s {
                wit_meta::Stat::Add((k, v)) => metadata::Stat::Add(k, v),
                wit_meta::Stat::Raise((k, v)) => metadata::Stat::Raise(k, v),
            }));
    }
}
impl wit_blobs::Host for &mut CapState {}
impl uploads::Host for &mut CapState {}

impl wit_creds::Host for &mut CapState {
    fn issue_token(&mut self, claims: String, ttl_seconds: u32) -> String {
        // Claims come from our own components; a failure is a bug there.
        self.backends
            .credentials
            .issue_token(&claims, ttl_seconds)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "could not issue a token");
                String::new()
            })
    }
    fn verify_token(&mut self, token: String) -> Option<String> {
        self.backends.credentials.verify_token(&token)
    }
    fn seal(&mut self, secret: Vec<u8>) -> Vec<u8> {
        self.backends.credentials.seal(&secret)
    }
    fn unseal(&mut self, sealed: Vec<u8>) -> Option<Vec<u8>> {
        self.backends.credentials.unseal(&sealed)
    }
}

impl<T: Send> wit_creds::HostWithStore<T> for Caps {
    async fn hash_password(a: &Accessor<T, Self>, password: String) -> String {
        backends(a)
            .credentials
            .hash_password(password)
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "could not hash a password");
                String::new()
            })
    }
    async fn verify_password(a: &Accessor<T, Self>, password: String, hash: String) -> bool {
        backends(a)
            .credentials
            .verify_password(password, hash)
            .await
    }
}

impl config::Host for &mut CapState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

impl<T: Send> wit_meta::HostWithStore<T> for Caps {
    async fn get(
        a: &Accessor<T, Self>,
        key: String,
    ) -> Result<Option<wit_meta::Entry>, StoreError> {
        Ok(backends(a).metadata.get(&key).await?.map(to_wit))
    }

    async fn get_many(
        a: &Accessor<T, Self>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<wit_meta::Entry>>, StoreError> {
        Ok(backends(a)
            .metadata
            .get_many(&keys)
            .await?
            .into_iter()
            .map(|e| e.map(to_wit))
            .collect())
    }

    async fn commit(
        a: &Accessor<T, Self>,
        ops: Vec<wit_meta::WriteOp>,
    ) -> Result<Vec<u64>, StoreError> {
        let ops = ops
            .into_iter()
            .map(|op| match op {
                wit_meta::WriteOp::Put((k, v, p)) => metadata::WriteOp::Put(k, v, precondition(p)),
                wit_meta::WriteOp::Delete((k, p)) => metadata::WriteOp::Delete(k, precondition(p)),
                wit_meta::WriteOp::Append((k, v)) => metadata::WriteOp::Append(k, v),
                wit_meta::WriteOp::Check((k, p)) => metadata::WriteOp::Check(k, precondition(p)),
            })
            .collect();
        Ok(backends(a).metadata.commit(ops).await?)
    }

    async fn increment(a: &Accessor<T, Self>, key: String, delta: i64) -> Result<i64, StoreError> {
        Ok(backends(a).metadata.increment(key, delta).await?)
    }

    async fn counters(a: &Accessor<T, Self>, keys: Vec<String>) -> Result<Vec<i64>, StoreError> {
        Ok(backends(a).metadata.counters(&keys).await?)
    }

    async fn scan(
        a: &Accessor<T, Self>,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<wit_meta::Entry>, StoreError> {
        Ok(backends(a)
            .metadata
            .scan(&prefix, after.as_deref(), limit)
            .await?
            .into_iter()
            .map(to_wit)
            .collect())
    }
}

/// Connects a component's byte stream to a channel the backends read from.
fn drain<T: 'static>(
    a: &Accessor<T, Caps>,
    data: StreamReader<u8>,
) -> mpsc::Receiver<bytes::Bytes> {
    let (tx, rx) = mpsc::channel(8);
    a.with(|mut s| {
        if let Err(e) = data.pipe(&mut s, ChannelConsumer::new(tx)) {
            tracing::error!(error = %e, "could not attach to a component stream");
        }
    });
    rx
}

fn algorithm(a: wit_blobs::DigestAlgorithm) -> berth_domain::Algorithm {
    match a {
        wit_blobs::DigestAlgorithm::Sha256 => berth_domain::Algorithm::Sha256,
        wit_blobs::DigestAlgorithm::Sha512 => berth_domain::Algorithm::Sha512,
    }
}

impl<T: Send> wit_blobs::HostWithStore<T> for Caps {
    async fn stat(a: &Accessor<T, Self>, digest: String) -> Result<Option<u64>, StoreError> {
        Ok(backends(a).blobs.stat(&digest).await?)
    }

    async fn read(
        a: &Accessor<T, Self>,
        digest: String,
        offset: u64,
        length: Option<u64>,
    ) -> Result<StreamReader<u8>, StoreError> {
        let rx = backends(a).blobs.read(&digest, offset, length).await?;
        a.with(|mut s| StreamReader::new(&mut s, ChannelProducer::new(rx)))
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    async fn direct_url(
        a: &Accessor<T, Self>,
        digest: String,
        ttl_seconds: u32,
    ) -> Result<Option<String>, StoreError> {
        Ok(backends(a)
            .blobs
            .direct_url(&digest, Duration::from_secs(ttl_seconds.into()))
            .await?)
    }

    async fn put(
        a: &Accessor<T, Self>,
        data: StreamReader<u8>,
        expected: Option<String>,
        alg: wit_blobs::DigestAlgorithm,
        max_size: u64,
    ) -> Result<wit_blobs::BlobInfo, StoreError> {
        let b = backends(a);
        let rx = drain(a, data);
        let info = b.blobs.put(rx, expected, algorithm(alg), max_size).await?;
        Ok(wit_blobs::BlobInfo {
            digest: info.digest,
            size: info.size,
        })
    }

    async fn delete(a: &Accessor<T, Self>, digest: String) -> Result<bool, StoreError> {
        Ok(backends(a).blobs.delete(&digest).await?)
    }

    async fn list(
        a: &Accessor<T, Self>,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<wit_blobs::BlobInfo>, StoreError> {
        let b = backends(a);
        // A few directory reads: scrubs are rare and page by page.
        let found = b.blobs.list(after.as_deref(), limit as usize).await?;
        Ok(found
            .into_iter()
            .map(|i| wit_blobs::BlobInfo {
                digest: i.digest,
                size: i.size,
            })
            .collect())
    }

    async fn verify(a: &Accessor<T, Self>, digest: String) -> Result<Option<String>, StoreError> {
        Ok(backends(a).blobs.verify(&digest).await?)
    }
}

impl<T: Send> uploads::HostWithStore<T> for Caps {
    async fn create(a: &Accessor<T, Self>) -> Result<String, StoreError> {
        Ok(backends(a).blobs.create_upload().await?)
    }

    async fn append(
        a: &Accessor<T, Self>,
        id: String,
        offset: u64,
        data: StreamReader<u8>,
        max_size: u64,
    ) -> Result<u64, StoreError> {
        let b = backends(a);
        let rx = drain(a, data);
        Ok(b.blobs.append(&id, offset, rx, max_size).await?)
    }

    async fn size(a: &Accessor<T, Self>, id: String) -> Result<u64, StoreError> {
        Ok(backends(a).blobs.upload_size(&id).await?)
    }

    async fn finish(
        a: &Accessor<T, Self>,
        id: String,
        digest: String,
    ) -> Result<wit_blobs::BlobInfo, StoreError> {
        let info = backends(a).blobs.finish(&id, &digest).await?;
        Ok(wit_blobs::BlobInfo {
            digest: info.digest,
            size: info.size,
        })
    }

    async fn abort(a: &Accessor<T, Self>, id: String) -> Result<(), StoreError> {
        Ok(backends(a).blobs.abort(&id).await?)
    }

    async fn expire(a: &Accessor<T, Self>, idle_seconds: u64) -> Result<u32, StoreError> {
        Ok(backends(a)
            .blobs
            .expire(Duration::from_secs(idle_seconds))
            .await?
            .len() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_backend_failures_reach_components_without_their_detail() {
        let detail = "PUT http://garage.internal:3900/berth/x: InvalidAccessKeyId GK123";
        let e: StoreError = BlobError::Io(std::io::Error::other(detail)).into();
        let StoreError::Backend(message) = e else {
            panic!("a backend failure")
        };
        assert!(
            !message.contains("garage") && !message.contains("GK123"),
            "{message}"
        );
        // Errors that are the client's keep their meaning.
        assert!(matches!(
            StoreError::from(BlobError::BadOffset(7)),
            StoreError::BadOffset(7)
        ));
        // Metadata too: PostgreSQL's reason names its user.
        let detail = r#"PostgreSQL: password authentication failed for user "berth""#;
        let StoreError::Backend(message) = MetaError::Backend(anyhow::anyhow!(detail)).into()
        else {
            panic!("a backend failure")
        };
        assert!(!message.contains("berth\""), "{message}");
        assert!(matches!(
            StoreError::from(MetaError::Conflict),
            StoreError::Conflict
        ));
    }
}
