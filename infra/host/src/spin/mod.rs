//! What `berth serve` provides of Spin's platform beyond WASI, so it runs
//! the Spin build (`infra/spin/`, whose components reach Berth's
//! capabilities through adapters over these interfaces) and the tests
//! check that build here:
//!
//! - [`variables`]: `spin:variables/variables@3.0.0`, the component's
//!   variables from its `spin.toml` (`[component.<id>.variables]`);
//! - [`postgres`]: `spin:postgres/postgres@4.2.0`, connections from a pool
//!   per address.
//!
//! Outbound `wasi:http` (the blob-store adapter's S3 requests) is the
//! host's outbound client with its allow list (`crate::outbound`).

pub mod postgres;
pub mod variables;

use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::{HasData, ResourceTable};

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "berth:registry/spin-platform",
    imports: {
        // A constructor cannot fail in WIT; pushing to the table can.
        "spin:postgres/postgres.[constructor]connection-builder": async | trappable,
        default: async,
    },
    with: {
        "spin:postgres/postgres.connection": postgres::Connection,
        "spin:postgres/postgres.connection-builder": postgres::ConnectionBuilder,
    },
});

/// What every instance shares: the component's variables and the pools.
#[derive(Clone)]
pub struct SpinState {
    pub variables: Arc<HashMap<String, String>>,
    pub postgres: Arc<postgres::Pools>,
    /// The component's `allowed_outbound_hosts` (PostgreSQL addresses
    /// are checked against them, as on Spin).
    pub allowed_hosts: Arc<crate::outbound::AllowedHosts>,
}

/// One instance's view: its resource table and the shared state.
pub struct SpinView<'a> {
    pub table: &'a mut ResourceTable,
    pub state: &'a SpinState,
}

/// Marker tying the generated traits to [`SpinView`].
pub struct Spin;

impl HasData for Spin {
    type Data<'a> = SpinView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> SpinView<'_>,
) -> wasmtime::Result<()> {
    spin::postgres::postgres::add_to_linker::<T, Spin>(linker, get)?;
    spin::variables::variables::add_to_linker::<T, Spin>(linker, get)?;
    Ok(())
}
