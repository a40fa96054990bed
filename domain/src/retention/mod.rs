//! Image aging rules of a repository (SWR shared edition: `create_retention`,
//! `list_retentions`, `show_retention`, `update_retention`,
//! `delete_retention`, `list_retention_histories`; models
//! `CreateRetentionRequestBody`, `Rule`, `TagSelector`, `Retention`,
//! `RetentionLog`): which tags the aging job removes, and why.
//!
//! - `date_rule` (`params.days`): tags last pushed more than that many days
//!   ago go;
//! - `tag_rule` (`params.num`): the most recently pushed that many tags
//!   stay, older ones go.
//!
//! Tags a `tag_selectors` entry names (`label`: the tag itself; `regexp`:
//! a regular expression matching the whole tag) stay and are not counted,
//! and so do tags an immutable-tag rule protects (`crate::immutable`).
//! Removing a tag leaves its manifest (untagged, for GC to judge).

use serde::{Deserialize, Serialize};

pub mod policy;

/// Every repository's rules.
pub const ALL: &str = "retention/";

/// The rules of `repository` (`:` never occurs in repository names).
pub fn repository_prefix(repository: &str) -> String {
    format!("{ALL}{repository}:")
}

/// Rule `id` of `repository`.
pub fn key(repository: &str, id: u64) -> String {
    format!("{}{id:020}", repository_prefix(repository))
}

/// `repository` and id of a rule's key.
pub fn parse_key(key: &str) -> Option<(&str, u64)> {
    let (repo, id) = key.strip_prefix(ALL)?.rsplit_once(':')?;
    Some((repo, id.parse().ok()?))
}

/// The aging history of `repository`, oldest first.
pub fn history_prefix(repository: &str) -> String {
    format!("retention-log/{repository}:")
}

/// Entry `seq` (a counter value) of `repository`'s history.
pub fn history_key(repository: &str, seq: u64) -> String {
    format!("{}{seq:020}", history_prefix(repository))
}

/// The counter rule ids and history entries come from.
pub const IDS: &str = "count/retention-id";

/// Aging rules one repository may have (SWR: one).
pub const MAX_PER_REPOSITORY: usize = 1;

/// `CreateRetentionRequestBody` / `UpdateRetentionRequestBody`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    pub algorithm: String,
    pub rules: Vec<Rule>,
}

/// `Rule`: a template with its parameters, and the tags it spares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `date_rule` or `tag_rule`.
    pub template: String,
    /// `{"days": "30"}` or `{"num": "10"}` (numbers as strings, as SWR's
    /// documentation shows them; plain numbers are taken too).
    pub params: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub tag_selectors: Vec<TagSelector>,
}

/// `TagSelector`: a tag kept whatever the rule says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagSelector {
    /// `label` (the tag) or `regexp` (a regular expression for the whole tag).
    pub kind: String,
    pub pattern: String,
}

/// A stored rule (JSON under [`key`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub id: u64,
    pub tenant: String,
    /// `organization/name…`.
    pub repository: String,
    pub algorithm: String,
    pub rules: Vec<Rule>,
    pub creator: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

/// What a rule keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Tags pushed within this many days.
    Days(u64),
    /// This many most recently pushed tags.
    Newest(u64),
}

impl Rule {
    /// What the rule keeps, or what is wrong with its template or params.
    pub fn keep(&self) -> Result<Keep, String> {
        let number = |name: &str, max: u64| -> Result<u64, String> {
            let v = self
                .params
                .get(name)
                .ok_or_else(|| format!("{} needs params.{name}", self.template))?;
            let n = match v {
                serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
                serde_json::Value::Number(n) => n.as_u64(),
                _ => None,
            };
            n.filter(|n| (1..=max).contains(n))
                .ok_or_else(|| format!("params.{name} must be a whole number from 1 to {max}"))
        };
        let extra = |allowed: &str| {
            self.params
                .keys()
                .find(|k| *k != allowed)
                .map(|k| format!("{} takes only params.{allowed}, not {k}", self.template))
        };
        match self.template.as_str() {
            "date_rule" => match extra("days") {
                Some(e) => Err(e),
                None => number("days", 36_500).map(Keep::Days),
            },
            "tag_rule" => match extra("num") {
                Some(e) => Err(e),
                None => number("num", 100_000).map(Keep::Newest),
            },
            other => Err(format!(
                "template must be date_rule or tag_rule, not {other:?}"
            )),
        }
    }
}

/// A compiled exemption.
enum Spare {
    Label(String),
    Regexp(regex::bytes::Regex),
}

fn spares(rule: &Rule) -> Result<Vec<Spare>, String> {
    rule.tag_selectors
        .iter()
        .map(|s| match s.kind.as_str() {
            "label" if crate::name::is_valid_tag(&s.pattern) => Ok(Spare::Label(s.pattern.clone())),
            "label" => Err(format!("tag_selectors: {:?} is not a valid tag", s.pattern)),
            "regexp" if !s.pattern.is_empty() && s.pattern.len() <= 256 => {
                let build = |p: &str| {
                    regex::bytes::RegexBuilder::new(p)
                        .unicode(false)
                        .size_limit(32 * 1024)
                        .build()
                        .map_err(|e| {
                            format!(
                                "tag_selectors: {:?} is not a valid regular expression: {e}",
                                s.pattern
                            )
                        })
                };
                build(&s.pattern)?;
                build(&format!("^(?:{})$", s.pattern)).map(Spare::Regexp)
            }
            "regexp" => Err("tag_selectors: a regexp of 1 to 256 bytes".into()),
            other => Err(format!(
                "tag_selectors: kind must be label or regexp, not {other:?}"
            )),
        })
        .collect()
}

/// Checks a body against SWR's model: algorithm `or`, one rule, a known
/// template with a sensible number, valid exemptions (at most 100).
pub fn validate(body: &RetentionBody) -> Result<(), String> {
    if body.algorithm != "or" {
        return Err(format!("algorithm must be or, not {:?}", body.algorithm));
    }
    let [rule] = body.rules.as_slice() else {
        return Err("rules: exactly one rule".into());
    };
    rule.keep()?;
    if rule.tag_selectors.len() > 100 {
        return Err("tag_selectors: at most 100".into());
    }
    spares(rule).map(|_| ())
}

/// One tag as the aging job sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagFacts {
    pub tag: String,
    pub digest: String,
    /// When the tag was last pushed (s since the epoch).
    pub pushed: u64,
    /// The commit version of that push: orders pushes within one second.
    pub order: u64,
    /// When its manifest was last pulled (s since the epoch; 0: never).
    pub pulled: u64,
}

/// What the job does with one tag, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub tag: String,
    pub digest: String,
    pub remove: bool,
    pub reason: String,
}

impl Decision {
    fn of(t: &TagFacts, remove: bool, reason: String) -> Decision {
        Decision {
            tag: t.tag.clone(),
            digest: t.digest.clone(),
            remove,
            reason,
        }
    }
}

/// The plan of `retention` for `tags` at `now` (s): every tag, kept or
/// removed, with the reason. `protected` names the immutable-tag rule
/// that protects a tag, if any.
pub fn plan(
    retention: &Retention,
    tags: &[TagFacts],
    now: u64,
    protected: impl Fn(&str) -> Option<u64>,
) -> Result<Vec<Decision>, String> {
    let rule = retention.rules.first().ok_or("the rule has no rules")?;
    let keep = rule.keep()?;
    let spares = spares(rule)?;
    let spared = |tag: &str| {
        spares.iter().any(|s| match s {
            Spare::Label(l) => l == tag,
            Spare::Regexp(r) => r.is_match(tag.as_bytes()),
        })
    };
    Ok(plan_with(tags, protected, spared, |images| {
        images
            .iter()
            .enumerate()
            .map(|(i, t)| match keep {
                Keep::Days(days) => {
                    let age = now.saturating_sub(t.pushed) / 86_400;
                    if now.saturating_sub(t.pushed) > days * 86_400 {
                        (true, format!("pushed {age} days ago, over {days}"))
                    } else {
                        (false, format!("pushed {age} days ago, within {days}"))
                    }
                }
                Keep::Newest(n) => {
                    let number = i as u64 + 1;
                    let verdict = if number > n { "over" } else { "within" };
                    (
                        number > n,
                        format!("number {number} by push time, {verdict} {n}"),
                    )
                }
            })
            .collect()
    }))
}

/// The plan for `tags` whatever the rules are: tags `spared` names or an
/// immutable-tag rule protects (`protected`) stay and are not counted;
/// `judge` decides the other images, given newest pushed first (ties by
/// commit order, then name, so a plan is the same every time), and
/// answers (remove, reason) for each. Signature tags (cosign's
/// `sha256-<hex>.sig` …) of an image tagged here neither count nor age by
/// themselves: they go when every tag of their image goes. A signature
/// whose image has no tag here is judged as any tag.
pub(crate) fn plan_with(
    tags: &[TagFacts],
    protected: impl Fn(&str) -> Option<u64>,
    spared: impl Fn(&str) -> bool,
    judge: impl FnOnce(&[&TagFacts]) -> Vec<(bool, String)>,
) -> Vec<Decision> {
    let subject = |t: &TagFacts| -> String {
        t.tag["sha256-".len()..]
            .split('.')
            .next()
            .map(|hex| format!("sha256:{hex}"))
            .unwrap_or_default()
    };
    let tagged: std::collections::HashSet<&str> = tags
        .iter()
        .filter(|t| !crate::immutable::is_signature_tag(&t.tag))
        .map(|t| t.digest.as_str())
        .collect();
    let (signatures, images): (Vec<&TagFacts>, Vec<&TagFacts>) = tags.iter().partition(|t| {
        crate::immutable::is_signature_tag(&t.tag) && tagged.contains(subject(t).as_str())
    });
    // Kept whatever the rules say: named by an exemption, or immutable.
    let exempt = |t: &TagFacts| {
        if spared(&t.tag) {
            return Some(Decision::of(t, false, "exempted by tag_selectors".into()));
        }
        protected(&t.tag).map(|rule| Decision::of(t, false, format!("immutable (rule {rule})")))
    };
    let mut ordered = images;
    ordered.sort_by(|a, b| {
        (b.pushed, b.order)
            .cmp(&(a.pushed, a.order))
            .then(a.tag.cmp(&b.tag))
    });
    let mut out = Vec::with_capacity(tags.len());
    let mut judged = Vec::with_capacity(ordered.len());
    for t in ordered {
        match exempt(t) {
            Some(d) => out.push(d),
            None => judged.push(t),
        }
    }
    let verdicts = judge(&judged);
    debug_assert_eq!(verdicts.len(), judged.len());
    out.extend(
        judged
            .iter()
            .zip(verdicts)
            .map(|(t, (remove, reason))| Decision::of(t, remove, reason)),
    );
    let signed: Vec<Decision> = signatures
        .into_iter()
        .map(|t| {
            if let Some(d) = exempt(t) {
                return d;
            }
            let subject = subject(t);
            let image_tags: Vec<&Decision> = out.iter().filter(|d| d.digest == subject).collect();
            if !image_tags.is_empty() && image_tags.iter().all(|d| d.remove) {
                Decision::of(
                    t,
                    true,
                    format!("signs {subject}, whose tags are all removed"),
                )
            } else {
                Decision::of(
                    t,
                    false,
                    format!("signs {subject}, which keeps a tag or has none"),
                )
            }
        })
        .collect();
    out.extend(signed);
    out
}

/// `RetentionLog`: one tag the job removed (JSON under [`history_key`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: u64,
    pub retention_id: u64,
    pub namespace: String,
    pub repo: String,
    /// `date_rule` or `tag_rule`.
    pub rule_type: String,
    pub tag: String,
    pub digest: String,
    pub reason: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

/// The tags `plan` removes, sorted (tests).
#[cfg(test)]
pub(crate) fn removed_tags(plan: &[Decision]) -> Vec<&str> {
    let mut r: Vec<&str> = plan
        .iter()
        .filter(|d| d.remove)
        .map(|d| d.tag.as_str())
        .collect();
    r.sort();
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn retention(template: &str, params: serde_json::Value, spare: &[(&str, &str)]) -> Retention {
        Retention {
            id: 1,
            tenant: "acme".into(),
            repository: "team/app".into(),
            algorithm: "or".into(),
            rules: vec![Rule {
                template: template.into(),
                params: params.as_object().unwrap().clone(),
                tag_selectors: spare
                    .iter()
                    .map(|(k, p)| TagSelector {
                        kind: k.to_string(),
                        pattern: p.to_string(),
                    })
                    .collect(),
            }],
            creator: "a".into(),
            created: 0,
        }
    }

    fn tags(ages_days: &[(&str, u64)], now: u64) -> Vec<TagFacts> {
        ages_days
            .iter()
            .map(|(t, d)| TagFacts {
                tag: t.to_string(),
                digest: format!("sha256:{t}"),
                pushed: now - d * 86_400,
                ..Default::default()
            })
            .collect()
    }

    use super::removed_tags as removed;

    #[test]
    fn date_rules_remove_what_is_older() {
        let now = 100 * 86_400;
        let r = retention(
            "date_rule",
            json!({"days": "30"}),
            &[("label", "keep-me"), ("regexp", "rel-.*")],
        );
        let t = tags(
            &[
                ("new", 1),
                ("old", 31),
                ("keep-me", 90),
                ("rel-1", 90),
                ("xrel-1", 90),
            ],
            now,
        );
        let p = plan(&r, &t, now, |_| None).unwrap();
        assert_eq!(removed(&p), ["old", "xrel-1"]);
        let p = plan(&r, &t, now, |t| (t == "old").then_some(9)).unwrap();
        assert_eq!(removed(&p), ["xrel-1"]);
        assert!(
            p.iter()
                .any(|d| d.tag == "old" && d.reason.contains("rule 9"))
        );
    }

    #[test]
    fn tag_rules_keep_the_newest_not_counting_exemptions() {
        let now = 100 * 86_400;
        let r = retention("tag_rule", json!({"num": 2}), &[("label", "stable")]);
        let t = tags(
            &[("a", 1), ("b", 2), ("stable", 0), ("c", 3), ("d", 4)],
            now,
        );
        assert_eq!(removed(&plan(&r, &t, now, |_| None).unwrap()), ["c", "d"]);
    }

    #[test]
    fn signature_tags_follow_their_image() {
        let now = 100 * 86_400;
        let r = retention("tag_rule", json!({"num": 1}), &[]);
        let hex = |c: char| c.to_string().repeat(64);
        let mut t = tags(&[("new", 1), ("old", 50)], now);
        t[0].digest = format!("sha256:{}", hex('a'));
        t[1].digest = format!("sha256:{}", hex('b'));
        for (h, age) in [('a', 90), ('b', 0), ('c', 90)] {
            t.push(TagFacts {
                tag: format!("sha256-{}.sig", hex(h)),
                digest: format!("sha256:sig{h}"),
                pushed: now - age * 86_400,
                ..Default::default()
            });
        }
        let p = plan(&r, &t, now, |_| None).unwrap();
        // The signature of the removed image goes; the kept image's stays
        // however old; one of no tagged image ages as any tag (here it is
        // counted after "new" and goes).
        assert_eq!(
            removed(&p),
            [
                "old",
                format!("sha256-{}.sig", hex('b')).as_str(),
                format!("sha256-{}.sig", hex('c')).as_str()
            ]
        );
    }

    #[test]
    fn pushes_within_one_second_keep_their_order() {
        let now = 100 * 86_400;
        let r = retention("tag_rule", json!({"num": 2}), &[]);
        // Same second; e was pushed last, c first.
        let t: Vec<TagFacts> = [("e", 3), ("c", 1), ("d", 2)]
            .iter()
            .map(|(tag, order)| TagFacts {
                tag: tag.to_string(),
                digest: format!("sha256:{tag}"),
                pushed: now,
                order: *order,
                pulled: 0,
            })
            .collect();
        assert_eq!(removed(&plan(&r, &t, now, |_| None).unwrap()), ["c"]);
    }

    #[test]
    fn bodies_are_checked() {
        let ok = |template: &str, params: serde_json::Value, spare: &[(&str, &str)]| {
            let r = retention(template, params, spare);
            validate(&RetentionBody {
                algorithm: r.algorithm,
                rules: r.rules,
            })
        };
        assert!(ok("date_rule", json!({"days": "30"}), &[]).is_ok());
        assert!(ok("tag_rule", json!({"num": 5}), &[("regexp", "v.*")]).is_ok());
        assert!(ok("date_rule", json!({"days": "-1"}), &[]).is_err());
        assert!(ok("date_rule", json!({"days": "0"}), &[]).is_err());
        assert!(ok("date_rule", json!({"num": "3"}), &[]).is_err());
        assert!(ok("tag_rule", json!({"num": "x"}), &[]).is_err());
        assert!(ok("size_rule", json!({"num": "3"}), &[]).is_err());
        assert!(ok("tag_rule", json!({"num": 3}), &[("regexp", "v(")]).is_err());
        assert!(ok("tag_rule", json!({"num": 3}), &[("label", "bad tag")]).is_err());
        assert!(ok("tag_rule", json!({"num": 3}), &[("glob", "*")]).is_err());
        let two = RetentionBody {
            algorithm: "or".into(),
            rules: vec![],
        };
        assert!(validate(&two).is_err());
        assert_eq!(parse_key(&key("team/app", 7)), Some(("team/app", 7)));
        let unknown = r#"{"algorithm":"or","rules":[{"template":"tag_rule","params":{"num":"1"},"tag_selectors":[],"bogus":1}]}"#;
        assert!(serde_json::from_str::<RetentionBody>(unknown).is_err());
    }
}
