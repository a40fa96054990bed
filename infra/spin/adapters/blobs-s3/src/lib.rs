//! The Spin build's blob store: `berth:registry/blobs` and
//! `berth:registry/uploads` (world `blob-store-adapter` of
//! `wit/adapters.wit`) over an S3-compatible bucket, reached through
//! outbound `wasi:http` with AWS SigV4 signing. `berth compose` plugs it
//! into every component, where the host's native blob store does not
//! exist.
//!
//! It keeps the contract and the key layout of the host's S3 backend
//! (`infra/host/src/capabilities/blobs/s3.rs`), so a host and the Spin
//! build can share one bucket: a blob is visible only once complete and
//! hashed to its digest, an upload's bytes are durable once an append
//! returns, and any instance can append to an upload or finish it.
//!
//! - [`settings`]: the bucket, from Spin variables;
//! - [`bucket`]: signed S3 requests;
//! - [`writer`]: writing an object from a stream, hashed, in one PUT or
//!   a multipart upload, visible only when the caller says;
//! - [`blobs`], [`uploads`]: the two interfaces;
//! - [`keys`], [`digest`], [`error`]: key layout, digests, failures.

pub mod blobs;
pub mod bucket;
pub mod digest;
pub mod error;
pub mod keys;
pub mod settings;
pub mod uploads;
pub mod writer;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "berth:registry/blob-store-adapter",
    path: "../../../../wit",
    generate_all,
});

use berth::registry::types::StoreError;
use error::Error;
use exports::berth::registry::blobs::{BlobInfo, DigestAlgorithm};
use spin_sdk::wit_bindgen::StreamReader;

struct Adapter;
export!(Adapter);

impl From<Error> for StoreError {
    fn from(e: Error) -> StoreError {
        match e {
            Error::NotFound => StoreError::NotFound,
            Error::Invalid(m) => StoreError::Invalid(m),
            Error::TooLarge(n) => StoreError::TooLarge(n),
            Error::DigestMismatch(d) => StoreError::DigestMismatch(d),
            Error::BadOffset(n) => StoreError::BadOffset(n),
            // As on the host: the detail (a key, the bucket's answer) is
            // for the log; components, and so clients, learn only that
            // storage failed.
            Error::Backend(m) => {
                eprintln!("berth blob store: {m}");
                StoreError::Backend("blob storage failed; see the registry's log".into())
            }
        }
    }
}

impl From<blobs::Info> for BlobInfo {
    fn from(i: blobs::Info) -> BlobInfo {
        BlobInfo {
            digest: i.digest,
            size: i.size,
        }
    }
}

impl exports::berth::registry::blobs::Guest for Adapter {
    async fn stat(digest: String) -> Result<Option<u64>, StoreError> {
        let store = settings::store().await?;
        Ok(blobs::stat(store, &digest).await?)
    }

    async fn read(
        digest: String,
        offset: u64,
        length: Option<u64>,
    ) -> Result<StreamReader<u8>, StoreError> {
        let store = settings::store().await?;
        Ok(blobs::read(store, &digest, offset, length).await?)
    }

    /// Always a URL: components ask only when redirects are configured.
    async fn direct_url(digest: String, ttl_seconds: u32) -> Result<Option<String>, StoreError> {
        let store = settings::store().await?;
        Ok(Some(blobs::direct_url(store, &digest, ttl_seconds)?))
    }

    async fn put(
        data: StreamReader<u8>,
        expected: Option<String>,
        algorithm: DigestAlgorithm,
        max_size: u64,
    ) -> Result<BlobInfo, StoreError> {
        let store = settings::store().await?;
        let algorithm = match algorithm {
            DigestAlgorithm::Sha256 => digest::Algorithm::Sha256,
            DigestAlgorithm::Sha512 => digest::Algorithm::Sha512,
        };
        let info = blobs::put(store, data, expected.as_deref(), algorithm, max_size).await?;
        Ok(info.into())
    }

    async fn delete(digest: String) -> Result<bool, StoreError> {
        let store = settings::store().await?;
        Ok(blobs::delete(store, &digest).await?)
    }

    async fn list(after: Option<String>, limit: u32) -> Result<Vec<BlobInfo>, StoreError> {
        let store = settings::store().await?;
        let listed = blobs::list(store, after.as_deref(), limit).await?;
        Ok(listed.into_iter().map(BlobInfo::from).collect())
    }

    async fn verify(digest: String) -> Result<Option<String>, StoreError> {
        let store = settings::store().await?;
        Ok(blobs::verify(store, &digest).await?)
    }
}

impl exports::berth::registry::uploads::Guest for Adapter {
    async fn create() -> Result<String, StoreError> {
        let store = settings::store().await?;
        Ok(uploads::create(store).await?)
    }

    async fn append(
        id: String,
        offset: u64,
        data: StreamReader<u8>,
        max_size: u64,
    ) -> Result<u64, StoreError> {
        let store = settings::store().await?;
        Ok(uploads::append(store, &id, offset, data, max_size).await?)
    }

    async fn size(id: String) -> Result<u64, StoreError> {
        let store = settings::store().await?;
        Ok(uploads::size(store, &id).await?)
    }

    async fn finish(id: String, digest: String) -> Result<BlobInfo, StoreError> {
        let store = settings::store().await?;
        Ok(uploads::finish(store, &id, &digest).await?.into())
    }

    async fn abort(id: String) -> Result<(), StoreError> {
        let store = settings::store().await?;
        Ok(uploads::abort(store, &id).await?)
    }

    async fn expire(idle_seconds: u64) -> Result<u32, StoreError> {
        let store = settings::store().await?;
        Ok(uploads::expire(store, idle_seconds).await?)
    }
}
