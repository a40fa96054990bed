//! Image sync and replication (SWR 镜像同步, 跨区域复制): copying images to
//! other registries, and from them into Berth.
//!
//! - [`registry`]: the remote registries a tenant registers (SWR's
//!   enterprise `*_instance_registry`; the shared edition lists them as
//!   sync "regions", `list_sync_regions`).
//! - [`rules`]: what to copy when: the shared edition's automatic sync
//!   rules of a repository (`create_image_sync_repo`) and the enterprise
//!   edition's replication policies (`*_instance_replication_policy`).
//! - [`runs`]: the ledger the `replication` job works through: executions
//!   and their items (one tag of one repository each), with SWR's statuses,
//!   retries and the progress that lets a blob copy resume.
//! - [`protocol`]: the OCI Distribution client side the job speaks to a
//!   remote registry (auth challenges, upload offsets, content ranges).

pub mod protocol;
pub mod registry;
pub mod rules;
pub mod runs;
