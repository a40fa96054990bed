//! `berth:registry/credentials` with keys from Spin variables
//! (`token_signing_key`, `sealing_key`: 32 bytes as 64 hex digits, kept in
//! Spin's secret store or a Kubernetes Secret), in the formats of
//! `berth-credentials`, which the host uses too: a host and a Spin app
//! given the same keys accept each other's tokens and sealed secrets.
//!
//! Unlike the host, this runs argon2 inside the guest (one run per
//! password check: the instance lives one request, so nothing is
//! remembered between requests), and a missing or malformed key makes
//! every operation that needs it fail loudly (a trap: the request fails
//! with a 500 and the reason is in Spin's log) rather than fall back to a
//! weak key.

use berth_credentials::Keys;
use std::cell::OnceCell;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "berth:registry/credentials-adapter",
    path: "../../../../wit",
    generate_all,
});

struct Adapter;
export!(Adapter);

thread_local! {
    static KEYS: OnceCell<Result<Keys, String>> = const { OnceCell::new() };
}

/// One key variable, decoded.
async fn key(name: &'static str) -> Result<[u8; 32], String> {
    let text = spin_sdk::variables::get(name)
        .await
        .map_err(|e| format!("Spin variable {name}: {e:?}"))?;
    berth_credentials::key_from_hex(&text).map_err(|e| format!("Spin variable {name}: {e}"))
}

/// Runs `f` with this instance's keys, read from the variables once.
fn with_keys<T>(f: impl FnOnce(&Keys) -> T) -> Result<T, String> {
    KEYS.with(|cell| {
        let keys = cell.get_or_init(|| {
            // The functions using keys are synchronous, `variables.get` is
            // not: wait here.
            spin_sdk::wit_bindgen::block_on(async {
                Keys::new(key("token_signing_key").await?, key("sealing_key").await?)
                    .map_err(|e| e.to_string())
            })
        });
        keys.as_ref().map(f).map_err(Clone::clone)
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl exports::berth::registry::credentials::Guest for Adapter {
    async fn hash_password(password: String) -> String {
        berth_credentials::hash_password(&password)
            .unwrap_or_else(|e| panic!("hashing a password: {e}"))
    }

    async fn verify_password(password: String, hash: String) -> bool {
        berth_credentials::verify_password(&password, &hash)
    }

    fn issue_token(claims: String, ttl_seconds: u32) -> String {
        match with_keys(|k| k.issue_token(&claims, ttl_seconds, now())) {
            Ok(Ok(token)) => token,
            Ok(Err(e)) => panic!("issuing a token: {e}"),
            Err(e) => panic!("issuing a token: {e}"),
        }
    }

    fn verify_token(token: String) -> Option<String> {
        with_keys(|k| k.verify_token(&token)).unwrap_or_else(|e| {
            eprintln!("berth credentials: {e}");
            None
        })
    }

    fn seal(secret: Vec<u8>) -> Vec<u8> {
        match with_keys(|k| k.seal(&secret)) {
            Ok(Ok(sealed)) => sealed,
            Ok(Err(e)) => panic!("sealing: {e}"),
            Err(e) => panic!("sealing: {e}"),
        }
    }

    fn unseal(sealed: Vec<u8>) -> Option<Vec<u8>> {
        with_keys(|k| k.unseal(&sealed)).unwrap_or_else(|e| {
            eprintln!("berth credentials: {e}");
            None
        })
    }
}
