//! `berth:registry/credentials` with keys from Spin variables
//! (`token_signing_key`, `sealing_key`: 32 bytes as 64 hex digits, kept in
//! Spin's secret store or a Kubernetes Secret), in the formats of
//! `berth-credentials`, which the host uses too: a host and a Spin app
//! given the same keys accept each other's tokens and sealed secrets.
//!
//! Unlike the host, this runs argon2 inside the guest. As on the host, a
//! verified (hash, password) pair is remembered for the instance's life
//! (Spin reuses an instance for many requests), so Basic auth on every
//! request costs a sha256, not an argon2 run. A missing or malformed key
//! makes every operation that needs it fail loudly (a trap: the request
//! fails with a 500 and the reason is in Spin's log) rather than fall back
//! to a weak key; it is read again on the next call.

use berth_credentials::Keys;
use sha2::Digest;
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "berth:registry/credentials-adapter",
    path: "../../../../wit",
    generate_all,
});

struct Adapter;
export!(Adapter);

/// Verified pairs remembered at most; the set is cleared when full.
const VERIFIED_MAX: usize = 10_000;

thread_local! {
    /// The keys, once read.
    static KEYS: RefCell<Option<Rc<Keys>>> = const { RefCell::new(None) };
    /// sha256(hash ‖ 0 ‖ password) of the pairs verified.
    static VERIFIED: RefCell<HashSet<[u8; 32]>> = RefCell::new(HashSet::new());
}

/// One key variable, decoded.
async fn key(name: &'static str) -> Result<[u8; 32], String> {
    let text = spin_sdk::variables::get(name)
        .await
        .map_err(|e| format!("Spin variable {name}: {e:?}"))?;
    berth_credentials::key_from_hex(&text).map_err(|e| format!("Spin variable {name}: {e}"))
}

/// Runs `f` with this instance's keys, read from the variables the first
/// time (and again after a failed read).
fn with_keys<T>(f: impl FnOnce(&Keys) -> T) -> Result<T, String> {
    if let Some(keys) = KEYS.with(|k| k.borrow().clone()) {
        return Ok(f(&keys));
    }
    // The functions using keys are synchronous, `variables.get` is not:
    // wait here (Spin's providers of static and environment variables
    // answer at once).
    let keys = spin_sdk::wit_bindgen::block_on(async {
        Keys::new(key("token_signing_key").await?, key("sealing_key").await?)
            .map_err(|e| e.to_string())
    })?;
    let keys = Rc::new(keys);
    KEYS.with(|k| *k.borrow_mut() = Some(keys.clone()));
    Ok(f(&keys))
}

fn memo(password: &str, hash: &str) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update(hash.as_bytes());
    h.update([0]);
    h.update(password.as_bytes());
    h.finalize().into()
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
        let memo = memo(&password, &hash);
        if VERIFIED.with(|v| v.borrow().contains(&memo)) {
            return true;
        }
        let ok = berth_credentials::verify_password(&password, &hash);
        if ok {
            VERIFIED.with(|v| {
                let mut v = v.borrow_mut();
                if v.len() >= VERIFIED_MAX {
                    v.clear();
                }
                v.insert(memo);
            });
        }
        ok
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
