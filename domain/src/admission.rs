//! How much one tenant may do at once: SWR's limit of concurrent layer
//! uploads per tenant (20), beyond which a request is answered OCI
//! `TOOMANYREQUESTS` (429) with `Retry-After`.
//!
//! An upload request that carries layer bytes (a `PATCH`, a `PUT` or a
//! monolithic `POST` with a body) holds one of the tenant's slots while it
//! runs: lease records `upload-slot/<tenant>/<i>`
//! ([`crate::jobs::Lease`]), shared by every host on the store, that lapse
//! after [`SLOT_TTL_SECONDS`] if a host dies holding them.

/// The setting giving the limit (0: none).
pub const SETTING: &str = "upload_concurrency_per_tenant";

/// SWR's limit.
pub const DEFAULT_LIMIT: usize = 20;

/// How long a slot outlives a host that died holding it, in seconds. An
/// upload request running longer than this stops counting against the
/// limit.
pub const SLOT_TTL_SECONDS: u64 = 600;

/// What `Retry-After` tells a refused client, in seconds.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// The prefix of `tenant`'s upload slots.
pub fn upload_slots(tenant: &str) -> String {
    format!("upload-slot/{tenant}/")
}

/// The limit the setting gives (unset or unreadable: the default).
pub fn limit(setting: Option<&str>) -> usize {
    setting
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_LIMIT)
}

/// Whether an upload request carries layer bytes, from its method and its
/// `Content-Length`: a `PATCH` always; a `PUT` or `POST` unless it says
/// its body is empty (without a length the body is chunked, and the
/// `Transfer-Encoding` saying so does not reach components).
pub fn carries_bytes(method: &str, content_length: Option<&str>) -> bool {
    match method {
        "PATCH" => true,
        "PUT" | "POST" => content_length.is_none_or(|l| l.trim().parse::<u64>() != Ok(0)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_with_bytes_count() {
        assert!(carries_bytes("PATCH", Some("10")));
        assert!(carries_bytes("PATCH", None));
        assert!(carries_bytes("POST", Some("1")));
        assert!(carries_bytes("POST", None));
        assert!(!carries_bytes("POST", Some("0")));
        assert!(!carries_bytes("PUT", Some(" 0")));
        assert!(!carries_bytes("GET", Some("10")));
        assert_eq!(limit(None), 20);
        assert_eq!(limit(Some("3")), 3);
        assert_eq!(limit(Some("x")), 20);
    }
}
