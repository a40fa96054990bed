//! SWR shared-edition image triggers (`create_trigger`,
//! `list_triggers_details`, `show_trigger`, `update_trigger`,
//! `delete_trigger`): when a new version of a repository is pushed with a
//! tag that the trigger's condition takes, the image of a Kubernetes
//! workload is updated to it ([`crate::kubernetes`]).
//!
//! The request and answer shapes are the Huawei Cloud SDK's models
//! (`huaweicloudsdkswr.v2`: `CreateTriggerRequestBody`, `Trigger`,
//! `TriggerHistories`, `UpdateTriggerRequestBody`). Triggers are delivered
//! by the webhook trigger job through the same queue as webhook policies
//! (`crate::webhooks`: ordered, retried, dead-lettered, logged), so a
//! trigger's id comes from the policies' counter.

use crate::events::{Event, EventKind};
use serde::{Deserialize, Serialize};

/// Every trigger, of every repository.
pub const ALL: &str = "trigger/";

/// The triggers of `repository` (`:` never occurs in repository names, so
/// `a/b`'s prefix does not take `a/b/c`'s triggers).
pub fn repository_prefix(repository: &str) -> String {
    format!("{ALL}{repository}:")
}

/// Trigger `name` of `repository`.
pub fn key(repository: &str, name: &str) -> String {
    format!("{}{name}", repository_prefix(repository))
}

/// The id index: trigger `id`'s key (the delivery log and redelivery
/// find a trigger by the id its deliveries are queued under).
pub fn id_key(id: u64) -> String {
    format!("trigger-id/{id:020}")
}

/// Triggers one repository may have.
pub const MAX_PER_REPOSITORY: usize = 20;

/// Longest `regular` condition, in bytes.
const MAX_REGEX: usize = 256;

/// Longest condition of any type, in bytes.
const MAX_CONDITION: usize = 1024;

/// Largest compiled `regular` condition, in bytes: the webhook job holds
/// those of the repositories it is delivering for.
const MAX_COMPILED: usize = 32 * 1024;

/// `CreateTriggerRequestBody`: every field as the SDK sends it (strings;
/// `enable` is `"true"`/`"false"`).
#[derive(Clone, Debug, Deserialize)]
pub struct TriggerBody {
    pub action: String,
    pub app_type: String,
    pub application: String,
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub cluster_name: Option<String>,
    pub cluster_ns: String,
    pub condition: String,
    #[serde(default)]
    pub container: Option<String>,
    pub enable: String,
    pub name: String,
    #[serde(default)]
    pub trigger_mode: Option<String>,
    pub trigger_type: String,
}

/// `UpdateTriggerRequestBody`: only `enable` changes.
#[derive(Clone, Debug, Deserialize)]
pub struct UpdateBody {
    pub enable: String,
}

/// A stored trigger (JSON under [`key`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// In the webhook policies' id space (its deliveries' queue).
    pub id: u64,
    pub tenant: String,
    /// `organization/name…`.
    pub repository: String,
    pub name: String,
    /// `deployments` or `statefulsets`.
    pub app_type: String,
    pub application: String,
    /// The registered cluster (`crate::kubernetes::Cluster`) it updates.
    pub cluster_id: String,
    pub cluster_name: String,
    pub cluster_ns: String,
    /// `all`, `tag` or `regular`.
    pub trigger_type: String,
    /// `.*`, tags separated by `;` or `,`, or a regular expression.
    pub condition: String,
    /// The container to update; empty: every container running this
    /// repository's image.
    pub container: String,
    pub enabled: bool,
    /// `cce` or `cci`.
    pub trigger_mode: String,
    /// `user` who created it.
    pub creator: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// When it was created, in ns since the epoch: it fires for pushes
    /// committed from then on (not older ones the job has yet to read).
    #[serde(default)]
    pub since_ns: u64,
}

/// Which tags fire a trigger.
#[derive(Clone, Debug)]
pub enum Condition {
    All,
    Tags(Vec<String>),
    /// Anchored: the expression must match the whole tag. Over bytes,
    /// without Unicode classes (tags are ASCII), so it stays small.
    Regular(regex::bytes::Regex),
}

impl Condition {
    /// The condition of `trigger_type` from `condition`; errors name what
    /// is wrong.
    pub fn parse(trigger_type: &str, condition: &str) -> Result<Condition, String> {
        if condition.len() > MAX_CONDITION {
            return Err(format!("condition is limited to {MAX_CONDITION} bytes"));
        }
        match trigger_type {
            "all" => match condition.trim() {
                "" | ".*" => Ok(Condition::All),
                other => Err(format!(
                    "trigger_type all takes the condition \".*\", not {other:?}"
                )),
            },
            "tag" => {
                let tags: Vec<String> = condition
                    .split([';', ','])
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect();
                if tags.is_empty() {
                    return Err("trigger_type tag needs one or more tags in condition".into());
                }
                if let Some(bad) = tags.iter().find(|t| !crate::name::is_valid_tag(t)) {
                    return Err(format!("condition: {bad:?} is not a valid tag"));
                }
                Ok(Condition::Tags(tags))
            }
            "regular" => {
                if condition.is_empty() || condition.len() > MAX_REGEX {
                    return Err(format!(
                        "trigger_type regular needs a regular expression of 1 to {MAX_REGEX} bytes"
                    ));
                }
                let build = |pattern: &str| {
                    regex::bytes::RegexBuilder::new(pattern)
                        .unicode(false)
                        .size_limit(MAX_COMPILED)
                        .build()
                        .map_err(|e| format!("condition is not a valid regular expression: {e}"))
                };
                // Alone first: `v1)|(.*` must not escape the anchors.
                build(condition)?;
                build(&format!("^(?:{condition})$")).map(Condition::Regular)
            }
            other => Err(format!(
                "trigger_type must be all, tag or regular, not {other:?}"
            )),
        }
    }

    pub fn matches(&self, tag: &str) -> bool {
        match self {
            Condition::All => true,
            Condition::Tags(tags) => tags.iter().any(|t| t == tag),
            Condition::Regular(re) => re.is_match(tag.as_bytes()),
        }
    }
}

/// A Kubernetes namespace or container name (RFC 1123 label).
pub fn is_k8s_label(s: &str) -> bool {
    is_k8s_name(s, 63, false)
}

/// A Kubernetes name: an RFC 1123 label (63) or subdomain (253).
fn is_k8s_name(s: &str, max: usize, dots: bool) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars()
            .all(|c| alnum(c) || c == '-' || (dots && c == '.'))
}

/// A trigger's name: a letter, then letters, digits, `_` or `-`; 1–64.
pub fn is_valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// What a valid create body says, before its cluster is looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub trigger_mode: String,
    pub enabled: bool,
    /// `.*` for `all`; as given otherwise.
    pub condition: String,
}

/// Checks `body` against SWR's rules (values the SDK documents) and
/// Kubernetes' naming rules; the error says which field is wrong.
pub fn validate(body: &TriggerBody) -> Result<Checked, String> {
    if !is_valid_name(&body.name) {
        return Err(format!(
            "name {:?}: a letter, then letters, digits, _ or -, at most 64",
            body.name
        ));
    }
    if body.action != "update" {
        return Err(format!("action must be update, not {:?}", body.action));
    }
    if !matches!(body.app_type.as_str(), "deployments" | "statefulsets") {
        return Err(format!(
            "app_type must be deployments or statefulsets, not {:?}",
            body.app_type
        ));
    }
    if !is_k8s_name(&body.application, 253, true) {
        return Err(format!(
            "application {:?} is not a Kubernetes object name (RFC 1123 subdomain)",
            body.application
        ));
    }
    if !is_k8s_name(&body.cluster_ns, 63, false) {
        return Err(format!(
            "cluster_ns {:?} is not a Kubernetes namespace name (RFC 1123 label)",
            body.cluster_ns
        ));
    }
    if let Some(c) = body.container.as_deref().filter(|c| !c.is_empty())
        && !is_k8s_name(c, 63, false)
    {
        return Err(format!(
            "container {c:?} is not a Kubernetes container name (RFC 1123 label)"
        ));
    }
    let enabled = parse_enable(&body.enable)?;
    let trigger_mode = body.trigger_mode.as_deref().unwrap_or("cce");
    if !matches!(trigger_mode, "cce" | "cci") {
        return Err(format!(
            "trigger_mode must be cce or cci, not {trigger_mode:?}"
        ));
    }
    Condition::parse(&body.trigger_type, &body.condition)?;
    let condition = if body.trigger_type == "all" {
        ".*".to_string()
    } else {
        body.condition.clone()
    };
    Ok(Checked {
        trigger_mode: trigger_mode.into(),
        enabled,
        condition,
    })
}

/// `enable` as the SDK sends it.
pub fn parse_enable(s: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!(
            "enable must be \"true\" or \"false\", not {other:?}"
        )),
    }
}

impl Trigger {
    pub fn condition(&self) -> Option<Condition> {
        Condition::parse(&self.trigger_type, &self.condition).ok()
    }

    /// Whether `event` fires this trigger under `condition` (its own,
    /// parsed once): a manifest pushed to this repository with a tag the
    /// condition takes. Pushes by digest update nothing: a workload runs
    /// a tag.
    pub fn takes(&self, condition: &Condition, event: &Event) -> bool {
        self.may_take(event)
            && event
                .record
                .tag
                .as_deref()
                .is_some_and(|t| condition.matches(t))
    }

    /// [`Trigger::takes`] before the condition: whether it is worth
    /// parsing (the job parses conditions only for events that may fire).
    pub fn may_take(&self, event: &Event) -> bool {
        let r = &event.record;
        self.enabled
            && r.time_ns >= self.since_ns
            && r.kind == EventKind::ManifestPushed
            && r.tenant == self.tenant
            && r.repository == self.repository
            && r.tag.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventRecord;

    fn body() -> TriggerBody {
        TriggerBody {
            action: "update".into(),
            app_type: "deployments".into(),
            application: "web".into(),
            cluster_id: Some("c1".into()),
            cluster_name: None,
            cluster_ns: "default".into(),
            condition: ".*".into(),
            container: None,
            enable: "true".into(),
            name: "deploy-web".into(),
            trigger_mode: None,
            trigger_type: "all".into(),
        }
    }

    #[test]
    fn conditions_by_type() {
        let all = Condition::parse("all", ".*").unwrap();
        assert!(all.matches("anything"));
        let tags = Condition::parse("tag", "v1; v2,latest").unwrap();
        assert!(tags.matches("v2") && tags.matches("latest") && !tags.matches("v3"));
        let re = Condition::parse("regular", r"v\d+\.\d+").unwrap();
        assert!(re.matches("v1.2") && !re.matches("xv1.2") && !re.matches("v1.2-rc"));
        assert!(Condition::parse("regular", "v(").is_err());
        assert!(Condition::parse("regular", "v1)|(.*").is_err());
        assert!(
            Condition::parse("regular", r"(?:\w){38}").is_ok(),
            "ASCII classes stay small"
        );
        assert!(
            Condition::parse("regular", r"(?:\w{1,20}){50}").is_err(),
            "too big once compiled"
        );
        assert!(Condition::parse("tag", &"v1;".repeat(400)).is_err());
        assert!(Condition::parse("regular", &"a".repeat(300)).is_err());
        assert!(Condition::parse("tag", " ; ").is_err());
        assert!(Condition::parse("tag", "bad tag").is_err());
        assert!(Condition::parse("all", "v1").is_err());
        assert!(Condition::parse("sometimes", ".*").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(validate(&body()).unwrap().trigger_mode, "cce");
        type Change = fn(&mut TriggerBody);
        let cases: [(Change, &str); 8] = [
            (|b| b.action = "delete".into(), "action"),
            (|b| b.app_type = "daemonsets".into(), "app_type"),
            (|b| b.application = "Web".into(), "application"),
            (|b| b.cluster_ns = "a.b".into(), "cluster_ns"),
            (|b| b.container = Some("-x".into()), "container"),
            (|b| b.enable = "yes".into(), "enable"),
            (|b| b.trigger_mode = Some("k8s".into()), "trigger_mode"),
            (|b| b.name = "9lives".into(), "name"),
        ];
        for (change, field) in cases {
            let mut b = body();
            change(&mut b);
            let e = validate(&b).unwrap_err();
            assert!(e.starts_with(field), "{field}: {e}");
        }
    }

    #[test]
    fn takes_tagged_pushes_to_its_repository() {
        let t = Trigger {
            id: 1,
            tenant: "acme".into(),
            repository: "team/web".into(),
            name: "t".into(),
            app_type: "deployments".into(),
            application: "web".into(),
            cluster_id: "c1".into(),
            cluster_name: "prod".into(),
            cluster_ns: "default".into(),
            trigger_type: "tag".into(),
            condition: "v1".into(),
            container: String::new(),
            enabled: true,
            trigger_mode: "cce".into(),
            creator: "a".into(),
            created: 0,
            since_ns: 0,
        };
        let c = t.condition().unwrap();
        let ev = |repo: &str, tag: Option<&str>, kind| {
            let mut r = EventRecord::new(kind, "acme", repo, 1);
            r.tag = tag.map(str::to_string);
            Event { id: 1, record: r }
        };
        assert!(t.takes(&c, &ev("team/web", Some("v1"), EventKind::ManifestPushed)));
        assert!(!t.takes(&c, &ev("team/web", Some("v2"), EventKind::ManifestPushed)));
        assert!(!t.takes(&c, &ev("team/web", None, EventKind::ManifestPushed)));
        assert!(!t.takes(&c, &ev("team/web/x", Some("v1"), EventKind::ManifestPushed)));
        assert!(!t.takes(&c, &ev("team/web", Some("v1"), EventKind::TagDeleted)));
        let off = Trigger {
            enabled: false,
            ..t.clone()
        };
        assert!(!off.takes(&c, &ev("team/web", Some("v1"), EventKind::ManifestPushed)));
        // Events committed before it was created are not its business.
        let later = Trigger {
            since_ns: 2,
            ..t.clone()
        };
        assert!(!later.takes(&c, &ev("team/web", Some("v1"), EventKind::ManifestPushed)));
        assert_eq!(key("team/web", "t"), "trigger/team/web:t");
        assert!(!key("team/web/x", "t").starts_with(&repository_prefix("team/web")));
    }
}
