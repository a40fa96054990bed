//! What identity and organization data looks like in the metadata store,
//! and under which keys (see `keys.rs` for the registry's own keys).

use super::Level;
use serde::{Deserialize, Serialize};

/// `iam/tenant/<name>` → [`Tenant`].
pub fn tenant(name: &str) -> String {
    format!("iam/tenant/{name}")
}
/// `iam/project/<project id>` → tenant name (SDK requests carry the project id).
pub fn project(id: &str) -> String {
    format!("iam/project/{id}")
}
/// `iam/user/<tenant>/<user>` → [`User`].
pub fn user(tenant: &str, name: &str) -> String {
    format!("iam/user/{tenant}/{name}")
}
pub fn user_prefix(tenant: &str) -> String {
    format!("iam/user/{tenant}/")
}
/// `iam/user-id/<id>` → `<tenant>/<user>`.
pub fn user_id(id: &str) -> String {
    format!("iam/user-id/{id}")
}
/// `iam/group/<tenant>/<group>` → [`Group`].
pub fn group(tenant: &str, name: &str) -> String {
    format!("iam/group/{tenant}/{name}")
}
pub fn group_prefix(tenant: &str) -> String {
    format!("iam/group/{tenant}/")
}
/// `iam/policy/<tenant>/<name>` → [`CustomPolicy`].
pub fn policy(tenant: &str, name: &str) -> String {
    format!("iam/policy/{tenant}/{name}")
}
pub fn policy_prefix(tenant: &str) -> String {
    format!("iam/policy/{tenant}/")
}
/// `ns-released/<name>` → [`ReleasedNamespace`]: an organization deleted in
/// the last [`RELEASE_HOLD_SECS`].
pub fn released_namespace(name: &str) -> String {
    format!("ns-released/{name}")
}

/// How long a deleted organization's name stays with its tenant. Registry
/// instances trust a cached "this organization is the caller's tenant's"
/// for a few seconds (the token check's cache); while one may, no other
/// tenant may take the name, so a token never reaches another tenant's
/// organization of the same name.
pub const RELEASE_HOLD_SECS: u64 = 30;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleasedNamespace {
    pub tenant: String,
    /// Seconds since the epoch.
    pub at: u64,
}

impl ReleasedNamespace {
    /// Seconds until `tenant` may take the name (none: it may now).
    pub fn held_from(&self, tenant: &str, now: u64) -> Option<u64> {
        let until = self.at + RELEASE_HOLD_SECS;
        (self.tenant != tenant && now < until).then(|| until - now)
    }
}

/// `iam/signed/<X-Sdk-Date>/<signature>` → empty: a signed change already
/// received, kept for the skew window ([`super::signing::MAX_SKEW_SECS`]) so
/// the same signed request is not carried out twice. Keys sort by date
/// (`YYYYMMDDTHHMMSSZ`), so expired ones are the first under [`SIGNED`].
pub const SIGNED: &str = "iam/signed/";
pub fn signed_request(sdk_date: &str, signature: &str) -> String {
    format!("{SIGNED}{sdk_date}/{}", signature.to_ascii_lowercase())
}
/// `iam/ak/<access key id>` → [`AccessKey`].
pub fn access_key(ak: &str) -> String {
    format!("iam/ak/{ak}")
}
/// `iam/user-ak/<tenant>/<user>/<ak>` → empty: a user's keys.
pub fn user_access_key(tenant: &str, user: &str, ak: &str) -> String {
    format!("iam/user-ak/{tenant}/{user}/{ak}")
}
pub fn user_access_key_prefix(tenant: &str, user: &str) -> String {
    format!("iam/user-ak/{tenant}/{user}/")
}
/// `ns/<name>` → [`Namespace`]. Organization names are global, as in SWR.
pub const NAMESPACE: &str = "ns/";
pub fn namespace(name: &str) -> String {
    format!("{NAMESPACE}{name}")
}
/// `ns-owned/<tenant>/<name>` → empty: a tenant's organizations in order.
pub fn owned_namespace(tenant: &str, name: &str) -> String {
    format!("ns-owned/{tenant}/{name}")
}
pub fn owned_namespace_prefix(tenant: &str) -> String {
    format!("ns-owned/{tenant}/")
}
/// `ns-grant/<namespace>:<user id>` → [`Grant`].
pub fn namespace_grant(ns: &str, user_id: &str) -> String {
    format!("ns-grant/{ns}:{user_id}")
}
pub fn namespace_grant_prefix(ns: &str) -> String {
    format!("ns-grant/{ns}:")
}
/// `repo-grant/<repository>:<user id>` → [`Grant`].
pub fn repository_grant(repo: &str, user_id: &str) -> String {
    format!("repo-grant/{repo}:{user_id}")
}
pub fn repository_grant_prefix(repo: &str) -> String {
    format!("repo-grant/{repo}:")
}
/// `tenant-repo/<tenant>/<repository>` → empty: a tenant's repositories in
/// order (its catalog).
pub fn tenant_repository(tenant: &str, repo: &str) -> String {
    format!("tenant-repo/{tenant}/{repo}")
}
pub fn tenant_repository_prefix(tenant: &str) -> String {
    format!("tenant-repo/{tenant}/")
}
/// `repo-meta/<repository>` → [`RepositoryMeta`].
pub fn repository_meta(repo: &str) -> String {
    format!("repo-meta/{repo}")
}
/// `share/<repository>:<tenant>` → [`Share`].
pub fn share(repo: &str, tenant: &str) -> String {
    format!("share/{repo}:{tenant}")
}
pub fn share_prefix(repo: &str) -> String {
    format!("share/{repo}:")
}
/// `shared-to/<tenant>/<repository>` → empty: repositories shared with a tenant.
pub fn shared_to(tenant: &str, repo: &str) -> String {
    format!("shared-to/{tenant}/{repo}")
}
pub fn shared_to_prefix(tenant: &str) -> String {
    format!("shared-to/{tenant}/")
}
/// `audit/<tenant>/<time ns, 20 digits>-<random>` → [`AuditEvent`].
pub fn audit(tenant: &str, time_ns: u128, nonce: &str) -> String {
    format!("audit/{tenant}/{time_ns:020}-{nonce}")
}
/// `usage/<tenant>/store/<YYYY-MM-DD>` → bytes stored (decimal), as last
/// computed that day (usage reports).
pub fn stored_on(tenant: &str, date: &str) -> String {
    format!("usage/{tenant}/store/{date}")
}
/// `count/ns-created/<tenant>/<user>`: rewritten by each organization the
/// user creates, so racing creations serialize on it (the quota check).
pub fn namespaces_created(tenant: &str, user: &str) -> String {
    format!("count/ns-created/{tenant}/{user}")
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tenant {
    pub name: String,
    /// The project id SDK calls name (`X-Project-Id`, `/projects/{id}/…`).
    pub project_id: String,
    pub created: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub tenant: String,
    pub name: String,
    /// argon2id PHC string; never the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// System policy or role names, and custom policy names.
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub disabled: bool,
    pub created: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    #[serde(default)]
    pub policies: Vec<String>,
    pub created: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CustomPolicy {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub document: super::PolicyDocument,
    pub created: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessKey {
    pub ak: String,
    pub tenant: String,
    pub user: String,
    /// The secret key sealed by the host (hex); unsealed only to check a
    /// signature.
    pub sealed_sk: String,
    pub active: bool,
    #[serde(default)]
    pub description: String,
    pub created: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Namespace {
    /// A number, as SWR's API gives organizations.
    #[serde(default)]
    pub id: u64,
    pub name: String,
    pub tenant: String,
    pub creator: String,
    pub created: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    pub user_id: String,
    pub user_name: String,
    pub level: Level,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepositoryMeta {
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Share {
    pub tenant: String,
    /// Seconds since the epoch after which the share no longer applies.
    pub expires: u64,
    #[serde(default)]
    pub description: String,
    pub creator: String,
    pub created: u64,
    pub updated: u64,
}

impl Share {
    /// Whether the share still applies at `now` (seconds since the epoch).
    pub fn in_force(&self, now: u64) -> bool {
        self.expires > now
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEvent {
    pub time: u64,
    pub tenant: String,
    /// User name, or `anonymous`.
    pub user: String,
    pub operation: String,
    pub resource: String,
    /// HTTP status of the answer.
    pub status: u16,
    pub source: String,
}

/// Keys tenants and users may be named by: letters, digits, `-`, `_`, `.`,
/// 1 to 64 characters, starting with a letter or digit.
pub fn valid_identity_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// SWR's organization names: 1–64 characters of lowercase letters, digits,
/// and single `.`, `_`, `__` or `-` separators, starting with a letter and
/// ending with a letter or digit.
pub fn valid_namespace_name(s: &str) -> bool {
    if !(1..=64).contains(&s.len())
        || !s.starts_with(|c: char| c.is_ascii_lowercase())
        || !s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return false;
    }
    s.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        .all(|sep| matches!(sep, "" | "." | "_" | "__" | "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names() {
        for ok in ["a", "team-a", "my.org", "a__b", "x1", "abc_d9"] {
            assert!(valid_namespace_name(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "1abc",
            "a-",
            "a--b",
            "a..b",
            "a___b",
            "a/b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!valid_namespace_name(bad), "{bad}");
        }
    }

    #[test]
    fn identity_names() {
        assert!(valid_identity_name("alice") && valid_identity_name("ci.bot_2"));
        assert!(
            !valid_identity_name("") && !valid_identity_name("-x") && !valid_identity_name("a/b")
        );
    }
}
