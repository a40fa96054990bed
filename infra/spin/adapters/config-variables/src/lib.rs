//! `berth:registry/config` over Spin variables (`spin:variables@3.0.0`):
//! the setting `key` is the component's variable of the same name, as
//! `spin.toml`'s `[component.<id>.variables]` declare them. A variable the
//! component does not declare, or a name Spin cannot hold, is no setting
//! (`none`), as a missing key is on the host.
//!
//! The variables that hold the adapters' secrets ([`SECRETS`]) are never
//! settings: components reach the stores and keys only through the
//! capabilities, as on the host, where they never see them either.

use std::cell::RefCell;
use std::collections::HashMap;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "berth:registry/config-adapter",
    path: "../../../../wit",
    generate_all,
});

struct Adapter;
export!(Adapter);

/// The variables no component may read as settings: what the metadata,
/// blob and credentials adapters hold (`secret = true` in
/// infra/spin/spin.toml; tests/integration/test_spin_build.py checks the
/// two agree).
pub const SECRETS: &[&str] = &[
    "metadata_postgres_url",
    "s3_access_key_id",
    "s3_secret_access_key",
    "token_signing_key",
    "sealing_key",
];

thread_local! {
    /// Settings read in this instance (it lives for many requests).
    static READ: RefCell<HashMap<String, Option<String>>> = RefCell::new(HashMap::new());
}

impl exports::berth::registry::config::Guest for Adapter {
    fn get(key: String) -> Option<String> {
        if SECRETS.contains(&key.as_str()) {
            return None;
        }
        if let Some(v) = READ.with(|r| r.borrow().get(&key).cloned()) {
            return v;
        }
        // `config.get` is synchronous and `variables.get` is not: wait here.
        let asked = key.clone();
        let value = spin_sdk::wit_bindgen::block_on(async move {
            use spin_sdk::variables::Error;
            match spin_sdk::variables::get(&asked).await {
                Ok(v) => Some(v),
                Err(Error::Undefined(_) | Error::InvalidName(_)) => None,
                // A provider that failed (a secret store out of reach):
                // logged, and the setting's default applies.
                Err(e) => {
                    eprintln!("berth config: Spin variable {asked}: {e:?}");
                    None
                }
            }
        });
        READ.with(|r| r.borrow_mut().insert(key, value.clone()));
        value
    }
}
