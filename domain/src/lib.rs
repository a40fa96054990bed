//! Berth's domain rules, in plain Rust so they are unit-tested natively and
//! shared by every component: what a valid repository name, tag or digest is,
//! how `/v2/` paths route, how manifests are validated, which errors the
//! protocol answers, how metadata keys are laid out, and who may do what
//! (`iam`).

pub mod admission;
pub mod audit;
pub mod console;
pub mod digest;
pub mod error;
pub mod events;
pub mod gc;
pub mod iam;
pub mod immutable;
pub mod jobs;
pub mod keys;
pub mod kubernetes;
pub mod manifest;
pub mod name;
pub mod network;
pub mod paging;
pub mod range;
pub mod replication;
pub mod reports;
pub mod retention;
pub mod route;
pub mod selectors;
pub mod swr;
pub mod triggers;
pub mod webhooks;

pub use digest::{Algorithm, Digest};
pub use error::{ErrorCode, OciError};
