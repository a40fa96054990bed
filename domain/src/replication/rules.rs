//! What to copy, and when.
//!
//! - [`SyncRule`]: the shared edition's automatic sync of one repository to
//!   an organization of a registered registry (`create_image_sync_repo`,
//!   `list_image_auto_sync_repos_details`, `delete_image_sync_repo`; models
//!   `CreateImageSyncRepoRequestBody`, `SyncRepo`). With `syncAuto`, each
//!   tag pushed afterwards is copied; beyond SWR (which copies only new
//!   pushes), creating a rule also copies the tags the repository has.
//! - [`Policy`]: the enterprise edition's replication policy
//!   (`CreateReplicationPolicyRequestBody`, `ReplicationPolicy`): Harbor's
//!   semantics. A `dest_registry` makes it a push (Berth's repositories to
//!   the registry), a `src_registry` a pull (the registry's into Berth).
//!   `filters` pick repositories (`name`, a doublestar glob over
//!   `organization/repository`, e.g. `library/**`) and tags (`tag`);
//!   `dest_namespace` replaces the organization at the destination.
//!   Triggers: `manual`, `scheduled` (6-field cron, UTC, plus manual) and
//!   `event_based` (each push, plus manual; pushes only).
//!
//! `override` false (the default) leaves a destination tag that points at
//! other content alone: its item ends `existed`.

use crate::swr::quoted;
use serde::{Deserialize, Serialize};

/// Every tenant's sync rules.
pub const SYNC_RULES: &str = "sync-rule/";

/// `sync-rule/<tenant>/<repository>:<registry id, 20 digits>:<remote
/// organization>` → [`SyncRule`]: one per target organization.
pub fn sync_rule(tenant: &str, repository: &str, registry: u64, remote_ns: &str) -> String {
    format!(
        "{}{registry:020}:{remote_ns}",
        sync_rules_of(tenant, repository)
    )
}

/// The sync rules of a repository.
pub fn sync_rules_of(tenant: &str, repository: &str) -> String {
    format!("{SYNC_RULES}{tenant}/{repository}:")
}

/// The counter sync rule ids come from.
pub const SYNC_RULE_IDS: &str = "count/sync-rule-id";

/// Sync rules a repository may have.
pub const MAX_SYNC_RULES: usize = 10;

/// `CreateImageSyncRepoRequestBody` (also `DeleteImageSyncRepoRequestBody`,
/// which has only the first two fields).
#[derive(Clone, Debug, Deserialize)]
pub struct SyncRuleBody {
    #[serde(rename = "remoteRegionId")]
    pub remote_region_id: String,
    #[serde(rename = "remoteNamespace")]
    pub remote_namespace: String,
    #[serde(rename = "syncAuto", default)]
    pub sync_auto: bool,
    #[serde(rename = "override", default)]
    pub override_: bool,
}

/// `CreateManualImageSyncRepoRequestBody`.
#[derive(Clone, Debug, Deserialize)]
pub struct ManualSyncBody {
    #[serde(rename = "imageTag")]
    pub image_tag: Vec<String>,
    #[serde(rename = "override", default)]
    pub override_: bool,
    #[serde(rename = "remoteNamespace")]
    pub remote_namespace: String,
    #[serde(rename = "remoteRegionId")]
    pub remote_region_id: String,
}

/// Tags one manual sync may name.
pub const MAX_MANUAL_TAGS: usize = 100;

/// A stored sync rule (JSON under [`sync_rule`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRule {
    pub id: u64,
    pub tenant: String,
    /// The organization.
    pub namespace: String,
    /// The full name, `organization/name…`.
    pub repository: String,
    /// The registry's name (`remoteRegionId`) and id.
    pub region: String,
    pub registry_id: u64,
    pub remote_namespace: String,
    pub sync_auto: bool,
    #[serde(rename = "override")]
    pub override_: bool,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub updated: u64,
}

impl SyncRule {
    /// The destination repository: the remote organization and the name
    /// within the source organization.
    pub fn destination(&self) -> String {
        retarget(&self.repository, &self.remote_namespace)
    }

    /// The SDK's `SyncRepo`.
    pub fn view(&self, tenant_id: &str) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "domainID": tenant_id,
            "domainName": self.tenant,
            "namespace": self.namespace,
            "repoName": self.repository.split_once('/').map_or("", |(_, r)| r),
            "remoteRegionId": self.region,
            "remoteNamespace": self.remote_namespace,
            "syncAuto": self.sync_auto,
            "override": self.override_,
            "createdAt": crate::swr::rfc3339(self.created),
            "updatedAt": crate::swr::rfc3339(self.updated),
        })
    }
}

/// `repository` with its organization replaced by `namespace`.
pub fn retarget(repository: &str, namespace: &str) -> String {
    match repository.split_once('/') {
        Some((_, rest)) => format!("{namespace}/{rest}"),
        None => format!("{namespace}/{repository}"),
    }
}

/// Checks the remote organization and region of a sync body.
pub fn validate_sync(region: &str, remote_namespace: &str) -> Result<(), String> {
    if region.is_empty() {
        return Err("remoteRegionId: the name of a registered registry".into());
    }
    if !crate::iam::records::valid_namespace_name(remote_namespace) {
        return Err(format!(
            "remoteNamespace {} is not a valid organization name",
            quoted(remote_namespace)
        ));
    }
    Ok(())
}

/// Checks the tags of a manual sync.
pub fn validate_tags(tags: &[String]) -> Result<(), String> {
    if tags.is_empty() || tags.len() > MAX_MANUAL_TAGS {
        return Err(format!("imageTag: 1 to {MAX_MANUAL_TAGS} tags"));
    }
    match tags.iter().find(|t| !crate::name::is_valid_tag(t)) {
        Some(t) => Err(format!("imageTag: {} is not a valid tag", quoted(t))),
        None => Ok(()),
    }
}

/// Every tenant's replication policies.
pub const POLICIES: &str = "replication-policy/";

/// `replication-policy/<tenant>/<id, 20 digits>` → [`Policy`].
pub fn policy(tenant: &str, id: u64) -> String {
    format!("{POLICIES}{tenant}/{id:020}")
}

/// The policies of `tenant`.
pub fn policies_of(tenant: &str) -> String {
    format!("{POLICIES}{tenant}/")
}

/// `replication-policy-name/<tenant>/<name>` → the id (unique names).
pub fn policy_name(tenant: &str, name: &str) -> String {
    format!("replication-policy-name/{tenant}/{name}")
}

/// The counter policy ids come from.
pub const POLICY_IDS: &str = "count/replication-policy-id";

/// Policies a tenant may have.
pub const MAX_POLICIES: usize = 100;

/// `ReplicationRegistry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRef {
    pub id: u64,
}

/// `Filter`: `name` (repositories) or `tag`, a doublestar glob; several
/// alternatives are written `{a,b}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// `TriggerConfig` / `TriggerSetting`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_settings: Option<TriggerSettings>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerSettings {
    #[serde(default)]
    pub cron: String,
}

/// `CreateReplicationPolicyRequestBody` / `UpdateReplicationPolicyRequestBody`.
#[derive(Clone, Debug, Deserialize)]
pub struct PolicyBody {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub src_registry: Option<RegistryRef>,
    #[serde(default)]
    pub dest_registry: Option<RegistryRef>,
    #[serde(default)]
    pub dest_namespace: Option<String>,
    pub filters: Vec<Filter>,
    pub repo_scope_mode: String,
    pub trigger: Trigger,
    #[serde(rename = "override", default)]
    pub override_: Option<bool>,
    pub enabled: bool,
}

/// A stored policy (JSON under [`policy`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub id: u64,
    pub tenant: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Set for a pull.
    #[serde(default)]
    pub src_registry: Option<u64>,
    /// Set for a push.
    #[serde(default)]
    pub dest_registry: Option<u64>,
    #[serde(default)]
    pub dest_namespace: String,
    pub filters: Vec<Filter>,
    pub repo_scope_mode: String,
    pub trigger: Trigger,
    #[serde(rename = "override")]
    pub override_: bool,
    pub enabled: bool,
    pub creator: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub updated: u64,
    /// The last scheduled time an execution was started for (0: none).
    #[serde(default)]
    pub last_scheduled: u64,
}

/// Whether `name` is a valid policy name: 1–256 letters, digits, `-`, `_`
/// or Chinese characters.
pub fn is_valid_policy_name(name: &str) -> bool {
    crate::replication::registry::is_name_of(name, 256)
}

fn glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("filter {}: {e}", quoted(pattern)))
}

/// Checks a policy body; the error names what is wrong.
pub fn validate_policy(body: &PolicyBody) -> Result<(), String> {
    if !is_valid_policy_name(&body.name) {
        return Err(format!(
            "name {}: 1 to 256 letters, digits, '-', '_' or Chinese characters",
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
    match (body.src_registry, body.dest_registry) {
        (Some(_), Some(_)) => {
            return Err(
                "src_registry and dest_registry: one of them (a pull from src_registry, or a \
                 push to dest_registry)"
                    .into(),
            );
        }
        (None, None) => {
            return Err("src_registry (a pull) or dest_registry (a push) is required".into());
        }
        _ => {}
    }
    if let Some(ns) = body.dest_namespace.as_deref().filter(|n| !n.is_empty())
        && !crate::iam::records::valid_namespace_name(ns)
    {
        return Err(format!(
            "dest_namespace {} is not a valid organization name",
            quoted(ns)
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for f in &body.filters {
        if f.kind != "name" && f.kind != "tag" {
            return Err(format!("filter type {}: name or tag", quoted(&f.kind)));
        }
        if !seen.insert(f.kind.as_str()) {
            return Err(format!("filters: one {} filter at most", f.kind));
        }
        if f.value.is_empty() || f.value.len() > 512 {
            return Err(format!("filter {} value: 1 to 512 characters", f.kind));
        }
        glob(&f.value)?;
    }
    if body.repo_scope_mode != "regular" && body.repo_scope_mode != "selection" {
        return Err(format!(
            "repo_scope_mode {}: regular or selection",
            quoted(&body.repo_scope_mode)
        ));
    }
    let cron = body
        .trigger
        .trigger_settings
        .as_ref()
        .map(|s| s.cron.as_str())
        .unwrap_or_default();
    match body.trigger.kind.as_str() {
        "manual" | "event_based" if !cron.is_empty() => Err(format!(
            "trigger: a {} policy has no cron",
            body.trigger.kind
        )),
        "manual" => Ok(()),
        "event_based" if body.src_registry.is_some() => Err(
            "trigger event_based: pushes only (a pull has no events from the source registry)"
                .into(),
        ),
        "event_based" => Ok(()),
        "scheduled" => {
            crate::gc::parse_cron(cron).map_err(|e| format!("trigger_settings.cron: {e}"))?;
            // A copy of every selected tag each second is no schedule.
            match cron.split_whitespace().next().map(str::parse::<u8>) {
                Some(Ok(s)) if s < 60 => Ok(()),
                _ => Err(
                    "trigger_settings.cron: at most once a minute, so the seconds field \
                          is one number (e.g. 0 */30 * * * *)"
                        .into(),
                ),
            }
        }
        other => Err(format!(
            "trigger type {}: manual, scheduled or event_based",
            quoted(other)
        )),
    }
}

impl Policy {
    /// A stored policy from a checked body.
    pub fn from_body(id: u64, tenant: &str, body: PolicyBody, creator: &str, now: u64) -> Policy {
        Policy {
            id,
            tenant: tenant.to_string(),
            name: body.name,
            description: body.description.unwrap_or_default(),
            src_registry: body.src_registry.map(|r| r.id),
            dest_registry: body.dest_registry.map(|r| r.id),
            dest_namespace: body.dest_namespace.unwrap_or_default(),
            filters: body.filters,
            repo_scope_mode: body.repo_scope_mode,
            trigger: body.trigger,
            override_: body.override_.unwrap_or(false),
            enabled: body.enabled,
            creator: creator.to_string(),
            created: now,
            updated: now,
            last_scheduled: 0,
        }
    }

    /// The registry on the other side.
    pub fn registry(&self) -> u64 {
        self.dest_registry.or(self.src_registry).unwrap_or_default()
    }

    pub fn is_pull(&self) -> bool {
        self.src_registry.is_some()
    }

    fn filter(&self, kind: &str) -> Option<&str> {
        self.filters
            .iter()
            .find(|f| f.kind == kind)
            .map(|f| f.value.as_str())
    }

    /// Whether the policy copies repository `name` (`organization/…`).
    pub fn selects_repository(&self, name: &str) -> bool {
        self.filter("name")
            .is_none_or(|p| glob(p).is_ok_and(|g| g.is_match(name)))
    }

    /// Whether the policy copies `tag`.
    pub fn selects_tag(&self, tag: &str) -> bool {
        self.filter("tag")
            .is_none_or(|p| glob(p).is_ok_and(|g| g.is_match(tag)))
    }

    /// Where repository `name` goes.
    pub fn destination(&self, name: &str) -> String {
        if self.dest_namespace.is_empty() {
            name.to_string()
        } else {
            retarget(name, &self.dest_namespace)
        }
    }

    /// When its schedule next runs an execution (seconds), if it is
    /// enabled and scheduled.
    pub fn next_run(&self) -> Option<u64> {
        let cron = self.trigger.trigger_settings.as_ref()?.cron.as_str();
        if !self.enabled || self.trigger.kind != "scheduled" {
            return None;
        }
        // At most once a minute, also for a policy stored before the
        // cron check said so.
        let after = (self.last_scheduled + 59).max(self.updated);
        crate::gc::next_time(cron, after)
    }

    /// The SDK's `ReplicationPolicy`.
    pub fn view(&self) -> serde_json::Value {
        let registry = |id: Option<u64>| id.map(|id| serde_json::json!({ "id": id }));
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "src_registry": registry(self.src_registry),
            "dest_registry": registry(self.dest_registry),
            "dest_namespace": self.dest_namespace,
            "filters": self.filters,
            "repo_scope_mode": self.repo_scope_mode,
            "trigger": self.trigger,
            "override": self.override_,
            "enabled": self.enabled,
            "created_at": crate::swr::rfc3339(self.created),
            "updated_at": crate::swr::rfc3339(self.updated),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> PolicyBody {
        serde_json::from_value(serde_json::json!({
            "name": "to-dr", "dest_registry": {"id": 1},
            "filters": [{"type": "name", "value": "library/**"}, {"type": "tag", "value": "v{1,2}*"}],
            "repo_scope_mode": "regular",
            "trigger": {"type": "manual"},
            "enabled": true,
        }))
        .unwrap()
    }

    #[test]
    fn policies_select_repositories_and_tags() {
        let p = Policy::from_body(1, "t", body(), "u", 0);
        assert!(p.selects_repository("library/app"));
        assert!(p.selects_repository("library/a/b"));
        assert!(!p.selects_repository("other/app"));
        assert!(p.selects_tag("v1.0") && p.selects_tag("v2"));
        assert!(!p.selects_tag("v3") && !p.selects_tag("latest"));
        assert_eq!(p.destination("library/app"), "library/app");
        let mut q = p.clone();
        q.dest_namespace = "mirror".into();
        assert_eq!(q.destination("library/a/b"), "mirror/a/b");
        assert!(!p.is_pull() && p.registry() == 1);
    }

    #[test]
    fn policy_bodies_are_checked() {
        assert!(validate_policy(&body()).is_ok());
        let bad = |f: &dyn Fn(&mut PolicyBody)| {
            let mut b = body();
            f(&mut b);
            validate_policy(&b).unwrap_err()
        };
        assert!(bad(&|b| b.name = "a b".into()).contains("name"));
        assert!(bad(&|b| b.src_registry = Some(RegistryRef { id: 2 })).contains("one of them"));
        assert!(bad(&|b| b.dest_registry = None).contains("required"));
        assert!(bad(&|b| b.filters[0].kind = "label".into()).contains("name or tag"));
        assert!(bad(&|b| b.filters[1].kind = "name".into()).contains("at most"));
        assert!(bad(&|b| b.filters[0].value = "a/[".into()).contains("filter"));
        assert!(bad(&|b| b.repo_scope_mode = "all".into()).contains("repo_scope_mode"));
        assert!(bad(&|b| b.trigger.kind = "hourly".into()).contains("trigger"));
        assert!(bad(&|b| b.trigger.kind = "scheduled".into()).contains("cron"));
        let every = |cron: &'static str| {
            move |b: &mut PolicyBody| {
                b.trigger.kind = "scheduled".into();
                b.trigger.trigger_settings = Some(TriggerSettings { cron: cron.into() });
            }
        };
        assert!(bad(&every("* * * * * *")).contains("once a minute"));
        // A policy stored before that check still runs once a minute at most.
        let mut stored = body();
        every("* * * * * *")(&mut stored);
        let mut p = Policy::from_body(1, "t", stored, "u", 1_000);
        p.last_scheduled = 2_000;
        assert_eq!(p.next_run(), Some(2_060));
        assert!(bad(&every("*/10 * * * * *")).contains("once a minute"));
        assert!(
            validate_policy(&{
                let mut b = body();
                every("0 */5 * * * *")(&mut b);
                b
            })
            .is_ok()
        );
        assert!(bad(&|b| b.dest_namespace = Some("Bad NS".into())).contains("dest_namespace"));
        assert!(
            bad(&|b| {
                b.dest_registry = None;
                b.src_registry = Some(RegistryRef { id: 1 });
                b.trigger.kind = "event_based".into();
            })
            .contains("pushes only")
        );
    }

    #[test]
    fn sync_rules_name_their_destination() {
        assert_eq!(retarget("team/app/web", "dr"), "dr/app/web");
        assert!(validate_sync("dr", "dr-ns").is_ok());
        assert!(validate_sync("", "dr-ns").is_err());
        assert!(validate_sync("dr", "Bad").is_err());
        assert!(validate_tags(&["v1".into()]).is_ok());
        assert!(validate_tags(&[]).is_err());
        assert!(validate_tags(&["bad tag".into()]).is_err());
        assert!(
            sync_rule("t", "a/b", 3, "x").starts_with(&sync_rules_of("t", "a/b"))
                && !sync_rule("t", "a/b-c", 3, "x").starts_with(&sync_rules_of("t", "a/b"))
        );
    }
}
