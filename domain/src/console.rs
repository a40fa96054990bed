//! The web console's sessions. Signing in (`POST /console/api/session`
//! with a login docker would take: `user@tenant`, the account's name, or
//! `{region}@{AK}` with a temporary login key) creates a [`Session`] under
//! `console/session/<sha256 of the cookie's id>` and sets the
//! [`COOKIE`]. The browser then calls the same APIs other clients do —
//! `/v2/` (the registry), `/v2/manage/…` and `/v2/<project>/instances/…`
//! (SWR), `/berth/v1/…` — and they take the cookie as the signed-in user's
//! credentials, so every page sees and does exactly what the user's
//! policies and grants allow.
//!
//! Changes (any method but `GET`/`HEAD`) also need the session's CSRF token
//! in [`CSRF_HEADER`] (the cookie is `SameSite=Strict` besides). Sessions
//! end when signed out or at `expires`; the store holds only the id's hash.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "berth_session";

/// The header a change carries the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-berth-csrf";

/// The setting giving a session's lifetime in seconds.
pub const LIFETIME_SETTING: &str = "console_session_seconds";

/// Eight hours, a working day.
pub const DEFAULT_LIFETIME_SECONDS: u64 = 8 * 3600;

/// Bytes of randomness in a session id and a CSRF token.
pub const SECRET_BYTES: usize = 32;

/// A signed-in browser.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub tenant: String,
    pub user: String,
    /// The user's id when signed in: a user re-created since is not it.
    pub user_id: String,
    /// Signed in with a docker login key (`{region}@{AK}`): the session
    /// does not administer users, keys or the network policy.
    #[serde(default)]
    pub login_key: bool,
    /// The access key behind that login key, if any: the session ends
    /// with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// For a password sign-in: [`credential`] of the password's hash then.
    /// A changed password ends the session.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential: String,
    /// Hex; sent back by the page in [`CSRF_HEADER`].
    pub csrf: String,
    /// Seconds since the epoch.
    pub created: u64,
    pub expires: u64,
}

impl Session {
    pub fn expired(&self, now: u64) -> bool {
        now >= self.expires
    }
}

/// What a session remembers of a password's stored hash (the argon2id
/// PHC string): a SHA-256 of it, never the hash itself.
pub fn credential(password_hash: &str) -> String {
    hex::encode(Sha256::digest(password_hash.as_bytes()))
}

/// Where sessions live (the gc job removes expired ones).
pub const PREFIX: &str = "console/session/";

/// `console/session/<sha256(id) hex>` → [`Session`].
pub fn key(id: &str) -> String {
    format!(
        "console/session/{}",
        hex::encode(Sha256::digest(id.as_bytes()))
    )
}

/// The session id in a `Cookie` header, if it holds a well-formed one.
pub fn cookie_id(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| v.len() == SECRET_BYTES * 2 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value that gives the browser session `id` for
/// `max_age` seconds: `HttpOnly` (no script reads it), `SameSite=Strict`
/// (no other site's page sends it), `Secure` under TLS, for every path
/// (the APIs the console calls live outside `/console`).
pub fn set_cookie(id: &str, max_age: u64, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("deleted", 0, secure)
}

/// Whether a request with `method` must carry the CSRF token.
pub fn needs_csrf(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// The lifetime the setting gives (unset or unreadable: the default; at
/// least a minute).
pub fn lifetime(setting: Option<&str>) -> u64 {
    setting
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_LIFETIME_SECONDS)
        .max(60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_and_checked() {
        let id = "ab".repeat(32);
        assert_eq!(
            cookie_id(&format!("theme=dark; {COOKIE}={id}; x=1")),
            Some(id.as_str())
        );
        assert_eq!(cookie_id(&format!("{COOKIE}=short")), None);
        assert_eq!(cookie_id(&format!("{COOKIE}={}", "zz".repeat(32))), None);
        assert_eq!(cookie_id("other=1"), None);
    }

    #[test]
    fn cookie_attributes() {
        let c = set_cookie("abc", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie("abc", 60, false).contains("Secure"));
        assert!(clear_cookie(false).starts_with("berth_session=deleted; Path=/; Max-Age=0"));
    }

    #[test]
    fn keys_hide_the_id_and_csrf_rules() {
        let k = key("secret-id");
        assert!(k.starts_with("console/session/") && !k.contains("secret-id"));
        assert!(needs_csrf("POST") && needs_csrf("DELETE") && !needs_csrf("GET"));
        assert_eq!(lifetime(Some("5")), 60);
        assert_eq!(lifetime(None), DEFAULT_LIFETIME_SECONDS);
    }
}
