//! Remote registries a tenant copies images to or from (SWR enterprise
//! edition `create/list/show/update/delete_instance_registry`, models
//! `CreateRegistryRequestBody`, `Registry`, `Credential`). Any registry
//! that speaks the OCI Distribution API qualifies: another Berth, CNCF
//! Distribution, Harbor (`swr-pro`), SWR itself. The shared edition's sync
//! "regions" (`list_sync_regions`, `remoteRegionId`) are these registries,
//! by name.
//!
//! The secret is stored sealed with the host's key (`credentials.seal`)
//! and never answered: `credential.access_secret` comes back empty.

use crate::swr::quoted;
use serde::{Deserialize, Serialize};

/// Every tenant's registries.
pub const ALL: &str = "registry/";

/// `registry/<tenant>/<id, 20 digits>` → [`Registry`].
pub fn key(tenant: &str, id: u64) -> String {
    format!("{ALL}{tenant}/{id:020}")
}

/// The registries of `tenant`, in id order.
pub fn tenant_prefix(tenant: &str) -> String {
    format!("{ALL}{tenant}/")
}

/// `registry-name/<tenant>/<name>` → the id: names are unique in a tenant
/// (written under an `absent` precondition, so of two concurrent creates
/// one conflicts).
pub fn name_key(tenant: &str, name: &str) -> String {
    format!("registry-name/{tenant}/{name}")
}

/// The counter registry ids come from.
pub const IDS: &str = "count/registry-id";

/// Registries a tenant may register.
pub const MAX_PER_TENANT: usize = 100;

/// `registry-count/<tenant>`: written with every registration, under the
/// version read before counting the tenant's registries, so two
/// concurrent registrations cannot both take the last place.
pub fn count_guard(tenant: &str) -> String {
    format!("registry-count/{tenant}")
}

/// `registry-check/<tenant>/<i>`: the slots of the registry checks under
/// way (`berth_guest::slots`): a check may wait 30 s on a silent remote,
/// so a tenant runs at most [`CHECKS_AT_ONCE`] at once.
pub fn check_slots(tenant: &str) -> String {
    format!("registry-check/{tenant}/")
}

/// Registry checks (registrations and updates) a tenant runs at once.
pub const CHECKS_AT_ONCE: usize = 4;

/// A check slot lapses after this long (s) if its holder died; a check
/// ends within 30 s.
pub const CHECK_SLOT_SECONDS: u64 = 60;

/// `Credential`: only `basic` (an empty key and secret: anonymous).
#[derive(Clone, Debug, Deserialize)]
pub struct CredentialBody {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub access_key: String,
    #[serde(default)]
    pub access_secret: String,
}

/// `CreateRegistryRequestBody` / `UpdateRegistryRequestBody`.
#[derive(Clone, Debug, Deserialize)]
pub struct RegistryBody {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub region_id: Option<String>,
    #[serde(default)]
    pub instance_id: Option<String>,
    pub url: String,
    pub credential: CredentialBody,
    /// `DnsConf`: accepted, not used (Berth resolves through the host).
    #[serde(default)]
    pub dns_conf: Option<serde_json::Value>,
    /// Skip verifying the registry's TLS certificate.
    pub insecure: bool,
}

/// Registry types: SWR's three (`swr-pro` is Harbor) and the plain OCI
/// Distribution API, which is how Berth speaks to all of them.
pub const TYPES: [&str; 6] = [
    "swr-pro",
    "swr-pro-internal",
    "huawei-SWR",
    "berth",
    "distribution",
    "oci",
];

/// A stored registry (JSON under [`key`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub id: u64,
    pub tenant: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub project_id: String,
    #[serde(default)]
    pub region_id: String,
    #[serde(default)]
    pub instance_id: String,
    /// `scheme://host[:port]`, no trailing slash.
    pub url: String,
    #[serde(default)]
    pub access_key: String,
    /// The secret sealed by the host (hex); empty: none.
    #[serde(default)]
    pub sealed_secret: String,
    pub insecure: bool,
    /// `healthy` or `unhealthy` (the last check's or copy's verdict).
    pub status: String,
    /// Why it is unhealthy.
    #[serde(default)]
    pub status_text: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub updated: u64,
}

/// Whether `name` is a valid registry name: 1–64 letters, digits, `-`,
/// `_` or CJK characters.
pub fn is_valid_name(name: &str) -> bool {
    is_name_of(name, 64)
}

/// 1–`max` letters, digits, `-`, `_` or CJK characters: SWR's names of
/// registries (64) and replication policies (256).
pub fn is_name_of(name: &str, max: usize) -> bool {
    let n = name.chars().count();
    (1..=max).contains(&n)
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || c == '-'
                || c == '_'
                || ('\u{4e00}'..='\u{9fff}').contains(&c)
        })
}

/// The URL a body gives, checked and normalized to `scheme://authority`:
/// `http` or `https`, a host, no user info, query or fragment, and no path
/// (registries serve `/v2/` at their root).
pub fn normalize_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("url {}: http:// or https:// and a host", quoted(url)))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "url {}: the scheme must be http or https",
            quoted(url)
        ));
    }
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() {
        return Err(format!("url {} has no host", quoted(url)));
    }
    if authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "url {}: only scheme://host[:port] (no path, query, fragment or user info)",
            quoted(url)
        ));
    }
    if let Some((_, port)) = authority.rsplit_once(':')
        && !authority.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("url {} has an invalid port", quoted(url)));
    }
    Ok(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// Checks a body; the error names what is wrong.
pub fn validate(body: &RegistryBody) -> Result<(), String> {
    if !is_valid_name(&body.name) {
        return Err(format!(
            "name {}: 1 to 64 letters, digits, '-', '_' or Chinese characters",
            quoted(&body.name)
        ));
    }
    if body
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1024)
    {
        return Err("description: at most 1024 characters".into());
    }
    if !TYPES.contains(&body.kind.as_str()) {
        return Err(format!(
            "type {}: one of {}",
            quoted(&body.kind),
            TYPES.join(", ")
        ));
    }
    if body.kind == "swr-pro-internal" {
        for (field, v) in [
            ("project_id", &body.project_id),
            ("region_id", &body.region_id),
            ("instance_id", &body.instance_id),
        ] {
            if v.as_deref().unwrap_or_default().is_empty() {
                return Err(format!("type swr-pro-internal needs {field}"));
            }
        }
    }
    normalize_url(&body.url)?;
    if body.credential.kind != "basic" {
        return Err(format!(
            "credential.type {}: only basic",
            quoted(&body.credential.kind)
        ));
    }
    if body.credential.access_key.is_empty() != body.credential.access_secret.is_empty() {
        return Err("credential: both access_key and access_secret, or neither (anonymous)".into());
    }
    if body.credential.access_key.len() > 512 || body.credential.access_secret.len() > 4096 {
        return Err("credential: access_key or access_secret too long".into());
    }
    Ok(())
}

impl Registry {
    /// The SDK's `Registry` (`ShowInstanceRegistryResponse`), with times
    /// as RFC 3339 and the secret never included.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "type": self.kind,
            "region_id": self.region_id,
            "instance_id": self.instance_id,
            "project_id": self.project_id,
            "url": self.url,
            "credential": {
                "type": "basic",
                "access_key": self.access_key,
                "access_secret": "",
            },
            "insecure": self.insecure,
            "status": self.status,
            "status_text": self.status_text,
            "created_at": crate::swr::rfc3339(self.created),
            "updated_at": crate::swr::rfc3339(self.updated),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> RegistryBody {
        serde_json::from_value(serde_json::json!({
            "name": "dr-site_1", "type": "distribution", "url": "http://127.0.0.1:5001/",
            "credential": {"type": "basic", "access_key": "", "access_secret": ""},
            "insecure": false,
        }))
        .unwrap()
    }

    #[test]
    fn urls_are_scheme_and_authority() {
        assert_eq!(
            normalize_url("HTTP://Reg.Example:5000/").unwrap(),
            "http://reg.example:5000"
        );
        assert_eq!(
            normalize_url("https://[::1]:443").unwrap(),
            "https://[::1]:443"
        );
        for bad in [
            "reg.example",
            "ftp://reg.example",
            "http://",
            "http://a/b",
            "http://u:p@a",
            "http://a?x=1",
            "http://a:port",
        ] {
            assert!(normalize_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_are_checked() {
        assert!(validate(&body()).is_ok());
        let bad = |f: &dyn Fn(&mut RegistryBody)| {
            let mut b = body();
            f(&mut b);
            validate(&b).unwrap_err()
        };
        assert!(bad(&|b| b.name = "a b".into()).contains("name"));
        assert!(bad(&|b| b.name = "x".repeat(65)).contains("name"));
        assert!(bad(&|b| b.kind = "quay".into()).contains("type"));
        assert!(bad(&|b| b.kind = "swr-pro-internal".into()).contains("project_id"));
        assert!(bad(&|b| b.url = "127.0.0.1:5000".into()).contains("url"));
        assert!(bad(&|b| b.credential.kind = "token".into()).contains("basic"));
        assert!(bad(&|b| b.credential.access_key = "ak".into()).contains("both"));
        assert!(is_valid_name("同步目标-1"));
    }

    #[test]
    fn views_never_show_the_secret() {
        let r = Registry {
            id: 1,
            tenant: "t".into(),
            name: "n".into(),
            description: String::new(),
            kind: "berth".into(),
            project_id: String::new(),
            region_id: String::new(),
            instance_id: String::new(),
            url: "http://x".into(),
            access_key: "user@t".into(),
            sealed_secret: "deadbeef".into(),
            insecure: false,
            status: "healthy".into(),
            status_text: String::new(),
            created: 0,
            updated: 0,
        };
        let v = r.view().to_string();
        assert!(!v.contains("deadbeef"));
        assert!(v.contains("\"access_secret\":\"\""));
    }
}
