//! Immutable tags (SWR enterprise edition: `create_immutable_rule`,
//! `list_immutable_rules`, `update_immutable_rule`,
//! `delete_immutable_rule`; models `CreateImmutableRuleBody`,
//! `ImmutableRule`): a rule selects repositories of an organization and
//! tags in them; a selected tag, once it exists, cannot be moved to
//! another manifest or deleted, through either API (nor its manifest, nor
//! its repository).
//!
//! Tags of the cosign tag schema (`sha256-<hex>.sig`, `.att`, `.sbom`) are
//! exempt by default: signing an image again writes its signature tag
//! anew, and Harbor's refusal of that is a known pain (its issue closed as
//! Won't Fix). A rule may opt them in with `extras: "signatures"` on its
//! tag selector.
//!
//! All rules of one organization are one record ([`key`]), so a push
//! reads them in the same batch as the organization's owner.

use crate::selectors::{self, RuleSelector};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The record of organization `namespace`'s rules.
pub fn key(namespace: &str) -> String {
    format!("immutable/{namespace}")
}

/// Every organization's rules.
pub const ALL: &str = "immutable/";

/// Rules one organization may have (Harbor's limit).
pub const MAX_RULES: usize = 15;

/// `CreateImmutableRuleBody` / `UpdateImmutableRuleBody`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Reserved: `immutable`.
    #[serde(default)]
    pub action: Option<String>,
    /// Reserved: `immutable_template`.
    #[serde(default)]
    pub template: Option<String>,
    pub tag_selectors: Vec<RuleSelector>,
    pub scope_selectors: BTreeMap<String, Vec<RuleSelector>>,
}

/// One stored rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: u64,
    pub priority: i64,
    pub disabled: bool,
    pub tag_selectors: Vec<RuleSelector>,
    pub scope_selectors: BTreeMap<String, Vec<RuleSelector>>,
    /// `user` who created it.
    pub creator: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub updated: u64,
}

/// An organization's rules (JSON under [`key`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    pub tenant: String,
    pub namespace: String,
    pub namespace_id: u64,
    pub rules: Vec<Rule>,
}

/// The extras value that subjects signature tags to a rule.
pub const SIGNATURES: &str = "signatures";

/// Whether `tag` follows the cosign tag schema: `sha256-<64 hex>` and
/// `.sig`, `.att` or `.sbom`.
pub fn is_signature_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let Some((hex, kind)) = rest.split_once('.') else {
        return false;
    };
    // Lowercase, as digests are written: `sha256-ABC….sig` is a tag.
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && matches!(kind, "sig" | "att" | "sbom")
}

/// Checks a rule body against SWR's model: one tag selector (`matches` or
/// `excludes`), one repository selector under `repository` (`repoMatches`
/// or `repoExcludes`), the reserved values if given.
pub fn validate(body: &RuleBody) -> Result<(), String> {
    if body.action.as_deref().is_some_and(|a| a != "immutable") {
        return Err("action: only immutable".into());
    }
    if body
        .template
        .as_deref()
        .is_some_and(|t| t != "immutable_template")
    {
        return Err("template: only immutable_template".into());
    }
    selectors::check_rule(&body.tag_selectors, &body.scope_selectors)?;
    Ok(())
}

impl Rule {
    /// Whether this rule makes `tag` of repository `name` (within its
    /// organization: `app`, not `team/app`) immutable.
    pub fn protects(&self, name: &str, tag: &str) -> bool {
        let signatures = self
            .tag_selectors
            .iter()
            .any(|s| s.extras.as_deref() == Some(SIGNATURES));
        !self.disabled
            && (signatures || !is_signature_tag(tag))
            && self
                .tag_selectors
                .iter()
                .all(|s| selectors::selected(s, tag))
            && self
                .scope_selectors
                .values()
                .flatten()
                .all(|s| selectors::selected(s, name))
    }
}

impl Rules {
    /// The first rule that makes `tag` of `repository` (`org/name…`)
    /// immutable (compiles the selectors: for one check; many checks use
    /// [`Rules::protection`]).
    pub fn protecting(&self, repository: &str, tag: &str) -> Option<&Rule> {
        let name = name_within(&self.namespace, repository)?;
        self.rules.iter().find(|r| r.protects(name, tag))
    }

    /// The rules compiled once, for checking many tags.
    pub fn protection(&self) -> Protection {
        let compile = |list: &[RuleSelector]| -> Vec<selectors::Compiled> {
            list.iter().filter_map(selectors::compile).collect()
        };
        Protection {
            namespace: self.namespace.clone(),
            rules: self
                .rules
                .iter()
                .filter(|r| !r.disabled)
                .map(|r| CompiledRule {
                    id: r.id,
                    signatures: r
                        .tag_selectors
                        .iter()
                        .any(|s| s.extras.as_deref() == Some(SIGNATURES)),
                    tags: compile(&r.tag_selectors),
                    repositories: compile(
                        &r.scope_selectors
                            .values()
                            .flatten()
                            .cloned()
                            .collect::<Vec<_>>(),
                    ),
                })
                .collect(),
        }
    }
}

/// `repository`'s name within organization `namespace` (`app` of
/// `team/app`); a repository named as its organization is itself.
fn name_within<'a>(namespace: &str, repository: &'a str) -> Option<&'a str> {
    if repository == namespace {
        return Some(repository);
    }
    repository
        .strip_prefix(namespace)
        .and_then(|r| r.strip_prefix('/'))
}

/// An organization's enabled rules, compiled.
pub struct Protection {
    namespace: String,
    rules: Vec<CompiledRule>,
}

struct CompiledRule {
    id: u64,
    signatures: bool,
    tags: Vec<selectors::Compiled>,
    repositories: Vec<selectors::Compiled>,
}

impl Protection {
    /// The id of the first rule that makes `tag` of `repository`
    /// (`org/name…`) immutable.
    pub fn protecting(&self, repository: &str, tag: &str) -> Option<u64> {
        let name = name_within(&self.namespace, repository)?;
        let signature = is_signature_tag(tag);
        self.rules
            .iter()
            .find(|r| {
                (r.signatures || !signature)
                    && r.tags.iter().all(|s| s.selects(tag))
                    && r.repositories.iter().all(|s| s.selects(name))
            })
            .map(|r| r.id)
    }
}

/// The refusal of a change to `tag` of `repository` that `rule` protects
/// (the message names the rule, so the pusher knows where to look).
pub fn refusal(repository: &str, tag: &str, rule: &Rule) -> String {
    format!(
        "tag {tag} of {repository} is immutable (immutable tag rule {} of organization {}): \
         push a new tag instead",
        rule.id,
        repository.split('/').next().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(decoration: &str, pattern: &str) -> RuleSelector {
        RuleSelector {
            kind: "doublestar".into(),
            decoration: decoration.into(),
            pattern: pattern.into(),
            extras: None,
        }
    }

    fn body(repo: &str, tag: &str) -> RuleBody {
        RuleBody {
            priority: None,
            disabled: None,
            action: None,
            template: None,
            tag_selectors: vec![sel("matches", tag)],
            scope_selectors: [("repository".to_string(), vec![sel("repoMatches", repo)])].into(),
        }
    }

    fn rules(repo: &str, tag: &str) -> Rules {
        let b = body(repo, tag);
        Rules {
            tenant: "acme".into(),
            namespace: "team".into(),
            namespace_id: 1,
            rules: vec![Rule {
                id: 7,
                priority: 0,
                disabled: false,
                tag_selectors: b.tag_selectors,
                scope_selectors: b.scope_selectors,
                creator: "a".into(),
                created: 0,
                updated: 0,
            }],
        }
    }

    #[test]
    fn bodies_are_checked() {
        assert!(validate(&body("app*", "v*")).is_ok());
        let mut two = body("app", "v*");
        two.tag_selectors.push(sel("matches", "x"));
        assert!(validate(&two).is_err());
        let mut wrong = body("app", "v*");
        wrong.tag_selectors[0].decoration = "repoMatches".into();
        assert!(validate(&wrong).is_err());
        let mut other = body("app", "v*");
        other.scope_selectors = [("project".to_string(), vec![sel("repoMatches", "x")])].into();
        assert!(validate(&other).is_err());
        assert!(validate(&body("app", "{unclosed")).is_err());
        let mut action = body("app", "v*");
        action.action = Some("retain".into());
        assert!(validate(&action).is_err());
    }

    #[test]
    fn rules_protect_selected_tags_but_not_signatures() {
        let r = rules("app*", "v*");
        assert_eq!(r.protecting("team/app1", "v1").map(|r| r.id), Some(7));
        assert!(r.protecting("team/app1", "latest").is_none());
        assert!(r.protecting("team/db", "v1").is_none());
        assert!(r.protecting("other/app1", "v1").is_none());
        let all = rules("**", "v*");
        assert!(
            all.protecting("team", "v1").is_some(),
            "a repository named as its organization"
        );
        assert!(all.protection().protecting("team", "v1").is_some());
        assert!(!is_signature_tag(&format!(
            "sha256-{}.sig",
            "AB".repeat(32)
        )));
        let sig = format!("sha256-{}.sig", "ab".repeat(32));
        assert!(is_signature_tag(&sig));
        assert!(!is_signature_tag("sha256-abc.sig") && !is_signature_tag("v1.sig"));
        let all = rules("**", "**");
        assert!(
            all.protecting("team/app", &sig).is_none(),
            "signatures are exempt"
        );
        let mut strict = all.clone();
        strict.rules[0].tag_selectors[0].extras = Some(SIGNATURES.into());
        assert!(strict.protecting("team/app", &sig).is_some());
        let mut off = all;
        off.rules[0].disabled = true;
        assert!(off.protecting("team/app", "v1").is_none());
        let excl = rules("**", "dev-*");
        let mut excl = excl;
        excl.rules[0].tag_selectors[0].decoration = "excludes".into();
        assert!(excl.protecting("team/a", "v1").is_some());
        assert!(excl.protecting("team/a", "dev-1").is_none());
        assert!(refusal("team/app", "v1", &r.rules[0]).contains("rule 7"));
        let p = r.protection();
        assert_eq!(p.protecting("team/app1", "v1"), Some(7));
        assert_eq!(p.protecting("team/app1", "latest"), None);
        assert_eq!(p.protecting("team/app1", &sig), None);
    }
}
