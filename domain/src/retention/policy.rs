//! Retention policies of an organization (SWR enterprise edition, 老化策略:
//! `create/list/show/update/delete_instance_retention_policy`,
//! `execute_instance_retention_policy`, and the executions / tasks /
//! sub-tasks listings; models `CreateRetentionPolicyRequestBody`,
//! `RetentionRule`, `RetentionSelector`, `TriggerConfig`,
//! `RetentionExecution`, `Task`, `Subtask`). The semantics are Harbor's
//! tag retention, whose API SWR's follows:
//!
//! - a rule applies to the repositories its `scope_selectors.repository`
//!   selector picks (the name within the organization), and within them
//!   to the tags its `tag_selectors` selector picks;
//! - its `template` says which of those tags it **retains**:
//!   `latestPushedK` (the K most recently pushed), `latestPulledN` (the N
//!   most recently pulled), `nDaysSinceLastPush` (pushed within N days),
//!   `nDaysSinceLastPull` (pulled within N days); the number is
//!   `params.<template>`;
//! - `algorithm` `or`: in a repository some enabled rule applies to, a
//!   tag no rule retains is removed; other repositories are untouched.
//!
//! As in the shared edition (`super`), immutable tags stay and are not
//! counted, signature tags follow their image, and removing a tag leaves
//! its manifest for garbage collection. The last-pull templates take a
//! tag's last activity, its last pull or its last push if later (a tag
//! never pulled: its push), so they never remove a fresh push nobody has
//! had time to pull (the reason says so).

use crate::selectors::{self, RuleSelector};
use serde::{Deserialize, Serialize};

/// Every tenant's policies.
pub const ALL: &str = "retention-policy/";

/// `retention-policy/<tenant>/<id, 20 digits>` → [`Policy`].
pub fn key(tenant: &str, id: u64) -> String {
    format!("{ALL}{tenant}/{id:020}")
}

/// The policies of `tenant`, in id order.
pub fn tenant_prefix(tenant: &str) -> String {
    format!("{ALL}{tenant}/")
}

/// Appends here ask the retention job to run an execution
/// ([`ExecutionRef`]), or to look at the schedules again ([`WAKE`]); they
/// wake it on `berth serve`.
pub const REQUESTS: &str = "retention-requests/";

/// The request a write of a scheduled policy appends, so the job learns
/// its next time at once.
pub const WAKE: &[u8] = b"schedules changed";

/// `retention-exec/<tenant>/<policy, 20 digits>/<inverted id>` →
/// [`Execution`]: a policy's executions, newest first in key order.
pub fn execution(tenant: &str, policy: u64, id: u64) -> String {
    format!("{}{:020}", executions_prefix(tenant, policy), u64::MAX - id)
}

/// `retention-exec-latest/<tenant>/<policy>` → the id of the policy's
/// newest execution: every new execution rewrites it under a
/// precondition, so of two asked for at once one conflicts (one in
/// progress per policy).
pub fn latest_execution(tenant: &str, policy: u64) -> String {
    format!("retention-exec-latest/{tenant}/{policy:020}")
}

/// Every policy's executions.
pub const EXECUTIONS: &str = "retention-exec/";

/// The executions of a policy, newest first.
pub fn executions_prefix(tenant: &str, policy: u64) -> String {
    format!("{EXECUTIONS}{tenant}/{policy:020}/")
}

/// Tenant and policy id of an [`execution`] key.
pub fn parse_execution(key: &str) -> Option<(&str, u64)> {
    let mut parts = key.strip_prefix(EXECUTIONS)?.split('/');
    let tenant = parts.next()?;
    let policy = parts.next()?.parse().ok()?;
    Some((tenant, policy))
}

/// Executions kept per policy, the newest; older ones, and those of a
/// deleted policy, are removed with their tasks and sub-tasks.
pub const EXECUTIONS_KEPT: usize = 50;

/// `retention-task/<execution, 20 digits>/<task, 20 digits>` → [`Task`]:
/// one repository's part of an execution.
pub fn task(execution: u64, id: u64) -> String {
    format!("{}{id:020}", tasks_prefix(execution))
}

/// The tasks of an execution, in id order.
pub fn tasks_prefix(execution: u64) -> String {
    format!("retention-task/{execution:020}/")
}

/// `retention-subtask/<execution>/<task>/<tag>` → [`Subtask`]: what the
/// execution did with one tag, and why (keyed by tag, so a resumed task
/// records each tag once).
pub fn subtask(execution: u64, task: u64, tag: &str) -> String {
    format!("{}{tag}", subtasks_prefix(execution, task))
}

/// The sub-tasks of a task, by tag.
pub fn subtasks_prefix(execution: u64, task: u64) -> String {
    format!("retention-subtask/{execution:020}/{task:020}/")
}

/// The counters ids come from: policies, rules, executions, tasks,
/// sub-tasks (each kind numbered on its own, as SWR's listings show them).
pub const POLICY_IDS: &str = "count/retention-policy-id";
pub const RULE_IDS: &str = "count/retention-rule-id";
pub const EXECUTION_IDS: &str = "count/retention-execution-id";
pub const TASK_IDS: &str = "count/retention-task-id";
pub const SUBTASK_IDS: &str = "count/retention-subtask-id";

/// Rules a policy may have (Harbor's limit).
pub const MAX_RULES: usize = 15;

/// Policies an organization may have.
pub const MAX_PER_NAMESPACE: usize = 100;

/// `CreateRetentionPolicyRequestBody` / `UpdateRetentionPolicyRequestBody`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    pub algorithm: String,
    pub enabled: bool,
    pub rules: Vec<RuleBody>,
    pub trigger: Trigger,
    pub name: String,
}

/// `RetentionRule`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    /// A rule's id as `show` gives it: an update that passes it back
    /// keeps the rule's id.
    #[serde(default, skip_serializing)]
    pub id: Option<u64>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub disabled: bool,
    /// Only `retain`.
    pub action: String,
    pub template: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub tag_selectors: Vec<RuleSelector>,
    pub scope_selectors: std::collections::BTreeMap<String, Vec<RuleSelector>>,
    /// `regular` or `selection` (how the console shows the scope).
    pub repo_scope_mode: String,
}

/// `TriggerConfig`: `manual` runs only when executed; `scheduled` also on
/// `trigger_settings.cron` (6 fields with seconds, UTC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub trigger_settings: TriggerSettings,
}

/// `TriggerSetting`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSettings {
    #[serde(default)]
    pub cron: String,
}

/// A stored rule: the body with its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: u64,
    #[serde(flatten)]
    pub body: RuleBody,
}

/// A stored policy (JSON under [`key`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub id: u64,
    pub tenant: String,
    pub namespace: String,
    pub namespace_id: u64,
    pub name: String,
    pub algorithm: String,
    pub enabled: bool,
    pub rules: Vec<Rule>,
    pub trigger: Trigger,
    pub creator: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// When the policy was last written: a schedule's first run is its
    /// first time after this.
    pub updated: u64,
    /// The last scheduled time an execution was started for (0: none).
    #[serde(default)]
    pub last_scheduled: u64,
}

impl Policy {
    /// When its schedule next runs an execution (seconds), if it is
    /// enabled and scheduled.
    pub fn next_run(&self) -> Option<u64> {
        if !self.enabled || self.trigger.kind != "scheduled" {
            return None;
        }
        crate::gc::next_time(
            &self.trigger.trigger_settings.cron,
            self.last_scheduled.max(self.updated),
        )
    }

    /// The enabled rules that apply to `repository` (its name within the
    /// organization).
    pub fn rules_for(&self, repository: &str) -> Vec<&Rule> {
        self.rules
            .iter()
            .filter(|r| !r.body.disabled)
            .filter(|r| {
                r.body
                    .scope_selectors
                    .get("repository")
                    .and_then(|s| s.first())
                    .is_some_and(|s| selectors::selected(s, repository))
            })
            .collect()
    }
}

/// What a template retains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Template {
    LatestPushed(u64),
    LatestPulled(u64),
    DaysSincePush(u64),
    DaysSincePull(u64),
}

/// The templates, as SWR names them.
pub const TEMPLATES: [&str; 4] = [
    "latestPushedK",
    "latestPulledN",
    "nDaysSinceLastPush",
    "nDaysSinceLastPull",
];

impl RuleBody {
    /// What the rule retains, or what is wrong with its template or
    /// params: `params` holds exactly `{<template>: n}`, n a whole number
    /// (or a string of one) from 1 to 100,000 (counts) or 36,500 (days).
    pub fn template(&self) -> Result<Template, String> {
        let t = self.template.as_str();
        if !TEMPLATES.contains(&t) {
            return Err(format!(
                "template must be one of {}, not {t:?}",
                TEMPLATES.join(", ")
            ));
        }
        if let Some(k) = self.params.keys().find(|k| *k != t) {
            return Err(format!("template {t} takes only params.{t}, not {k}"));
        }
        let max = if t.starts_with("nDays") {
            36_500
        } else {
            100_000
        };
        let n = match self.params.get(t) {
            None => return Err(format!("template {t} needs params.{t}")),
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(_) => None,
        }
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| format!("params.{t} must be a whole number from 1 to {max}"))?;
        Ok(match t {
            "latestPushedK" => Template::LatestPushed(n),
            "latestPulledN" => Template::LatestPulled(n),
            "nDaysSinceLastPush" => Template::DaysSincePush(n),
            _ => Template::DaysSincePull(n),
        })
    }

    /// The body as stored: `params` as `{<template>: n}` with n a number
    /// (a string of one is taken), no id. Call on a checked body.
    pub fn normalized(&self) -> RuleBody {
        let mut body = self.clone();
        body.id = None;
        let n = match self.template() {
            Ok(
                Template::LatestPushed(n)
                | Template::LatestPulled(n)
                | Template::DaysSincePush(n)
                | Template::DaysSincePull(n),
            ) => n,
            Err(_) => return body,
        };
        body.params = [(self.template.clone(), n.into())].into_iter().collect();
        body
    }

    fn validate(&self) -> Result<(), String> {
        if self.action != "retain" {
            return Err(format!("action must be retain, not {:?}", self.action));
        }
        self.template()?;
        if !matches!(self.repo_scope_mode.as_str(), "regular" | "selection") {
            return Err(format!(
                "repo_scope_mode must be regular or selection, not {:?}",
                self.repo_scope_mode
            ));
        }
        selectors::check_rule(&self.tag_selectors, &self.scope_selectors)
    }
}

/// Whether `name` is a policy name SWR accepts: 1–256 characters,
/// letters (any script), digits, `_` and `-`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=256).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// Checks a body against SWR's model; the error names what is wrong.
pub fn validate(body: &PolicyBody) -> Result<(), String> {
    if body.algorithm != "or" {
        return Err(format!("algorithm must be or, not {:?}", body.algorithm));
    }
    if !is_valid_name(&body.name) {
        return Err(format!(
            "name {:?}: 1 to 256 letters, digits, _ or -",
            body.name
        ));
    }
    if body.rules.is_empty() || body.rules.len() > MAX_RULES {
        return Err(format!("rules: 1 to {MAX_RULES} rules"));
    }
    for (i, r) in body.rules.iter().enumerate() {
        r.validate().map_err(|e| format!("rules[{i}]: {e}"))?;
    }
    match body.trigger.kind.as_str() {
        "manual" if body.trigger.trigger_settings.cron.is_empty() => Ok(()),
        "manual" => Err("trigger: a manual policy has no cron".into()),
        "scheduled" => crate::gc::parse_cron(&body.trigger.trigger_settings.cron)
            .map(|_| ())
            .map_err(|e| format!("trigger.trigger_settings: {e}")),
        other => Err(format!(
            "trigger.type must be manual or scheduled, not {other:?}"
        )),
    }
}

/// The plan of the `rules` that apply to a repository (see
/// [`Policy::rules_for`]) for its `tags` at `now` (s): every tag, kept or
/// removed, with the reason. `protected` names the immutable-tag rule
/// that protects a tag, if any. Rules were checked when stored; one that
/// no longer reads retains nothing and is named in the reasons.
pub fn plan(
    rules: &[&Rule],
    tags: &[super::TagFacts],
    now: u64,
    protected: impl Fn(&str) -> Option<u64>,
) -> Vec<super::Decision> {
    let judge = |images: &[&super::TagFacts]| -> Vec<(bool, String)> {
        // Per tag, the first rule that retains it, or why each does not.
        let mut retained: Vec<Option<String>> = vec![None; images.len()];
        let mut not: Vec<Vec<String>> = vec![Vec::new(); images.len()];
        for rule in rules {
            let label = format!("rule {} ({})", rule.id, rule.body.template);
            let Ok(template) = rule.body.template() else {
                for n in &mut not {
                    n.push(format!("{label}: unreadable"));
                }
                continue;
            };
            let selector = rule.body.tag_selectors.first().and_then(selectors::compile);
            let chosen: Vec<usize> = (0..images.len())
                .filter(|&i| selector.as_ref().is_some_and(|s| s.selects(&images[i].tag)))
                .collect();
            let mut selected = vec![false; images.len()];
            for &i in &chosen {
                selected[i] = true;
            }
            for (i, n) in not.iter_mut().enumerate() {
                if !selected[i] {
                    n.push(format!("{label}: tag not selected"));
                }
            }
            // Last activity for the pull templates: a pull, else the push.
            let pulled = |t: &super::TagFacts| t.pulled.max(t.pushed);
            // What the last activity was, for the reasons.
            let activity = |t: &super::TagFacts| match t.pulled {
                0 => "never pulled; pushed",
                p if p < t.pushed => "pushed (after its last pull)",
                _ => "pulled",
            };
            let mut verdicts: Vec<(usize, bool, String)> = Vec::new();
            match template {
                Template::LatestPushed(k) => {
                    // `images` is newest pushed first.
                    for (n, &i) in chosen.iter().enumerate() {
                        let n = n as u64 + 1;
                        let word = if n <= k { "within" } else { "over" };
                        verdicts.push((i, n <= k, format!("number {n} by push time, {word} {k}")));
                    }
                }
                Template::LatestPulled(k) => {
                    let mut by_pull = chosen.clone();
                    // Stable: equal pull times keep push order.
                    by_pull.sort_by_key(|&i| std::cmp::Reverse(pulled(images[i])));
                    for (n, &i) in by_pull.iter().enumerate() {
                        let n = n as u64 + 1;
                        let word = if n <= k { "within" } else { "over" };
                        let t = images[i];
                        verdicts.push((
                            i,
                            n <= k,
                            format!(
                                "number {n} by last pull or push ({}), {word} {k}",
                                activity(t)
                            ),
                        ));
                    }
                }
                Template::DaysSincePush(days) | Template::DaysSincePull(days) => {
                    let push = matches!(template, Template::DaysSincePush(_));
                    for &i in &chosen {
                        let t = images[i];
                        let (at, what) = if push {
                            (t.pushed, "pushed".to_string())
                        } else {
                            (pulled(t), activity(t).to_string())
                        };
                        let age = now.saturating_sub(at);
                        let within = age <= days * 86_400;
                        let word = if within { "within" } else { "over" };
                        verdicts.push((
                            i,
                            within,
                            format!("{what} {} days ago, {word} {days}", age / 86_400),
                        ));
                    }
                }
            }
            for (i, keep, why) in verdicts {
                if keep {
                    retained[i].get_or_insert_with(|| format!("retained by {label}: {why}"));
                } else {
                    not[i].push(format!("{label}: {why}"));
                }
            }
        }
        retained
            .into_iter()
            .zip(not)
            .map(|(kept, not)| match kept {
                Some(why) => (false, why),
                None if not.is_empty() => (true, "no rule applies".to_string()),
                None => (true, format!("no rule retains it: {}", not.join("; "))),
            })
            .collect()
    };
    super::plan_with(tags, protected, |_| false, judge)
}

/// An execution's reference in [`REQUESTS`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionRef {
    pub tenant: String,
    pub policy: u64,
    pub id: u64,
}

/// `RetentionExecution` (JSON under [`execution`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub id: u64,
    pub policy_id: u64,
    pub dry_run: bool,
    /// `InProgress`, `Succeed`, `Failed` or `Stopped`.
    pub status: String,
    /// `manual` or `scheduled`.
    pub trigger: String,
    /// Seconds since the Unix epoch.
    pub start_time: u64,
    /// 0 while in progress.
    pub end_time: u64,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// `Task` (JSON under [`task`]): one repository of an execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: u64,
    pub execution_id: u64,
    /// The full name, `organization/name…`.
    pub repository: String,
    /// `InProgress`, `Succeed` or `Failed`.
    pub status: String,
    pub start_time: u64,
    pub end_time: u64,
    /// Tags planned.
    pub total: u64,
    /// Tags kept.
    pub retained: u64,
}

/// `Subtask` (JSON under [`subtask`]): one tag of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subtask {
    pub id: u64,
    pub tag: String,
    pub digest: String,
    /// `DEL` (removed, or would be in a dry run) or `RETAIN`.
    pub action: String,
    /// `Succeed`, or `Failed` (a removal that lost to a push since the plan).
    pub status: String,
    /// The reason (the plan's).
    pub status_text: String,
    /// Seconds since the Unix epoch.
    pub op_time: u64,
}

/// Execution and task statuses listings may filter by.
pub const STATUSES: [&str; 6] = [
    "Initialized",
    "Pending",
    "InProgress",
    "Succeed",
    "Failed",
    "Stopped",
];

#[cfg(test)]
mod tests {
    use super::super::TagFacts;
    use super::*;
    use serde_json::json;

    fn rule(id: u64, template: &str, n: serde_json::Value, tags: (&str, &str), repo: &str) -> Rule {
        let sel = |d: &str, p: &str| RuleSelector {
            kind: "doublestar".into(),
            decoration: d.into(),
            pattern: p.into(),
            extras: None,
        };
        Rule {
            id,
            body: RuleBody {
                id: None,
                priority: 0,
                disabled: false,
                action: "retain".into(),
                template: template.into(),
                params: json!({ template: n }).as_object().unwrap().clone(),
                tag_selectors: vec![sel(tags.0, tags.1)],
                scope_selectors: [("repository".to_string(), vec![sel("repoMatches", repo)])]
                    .into(),
                repo_scope_mode: "regular".into(),
            },
        }
    }

    const DAY: u64 = 86_400;

    fn facts(list: &[(&str, u64, u64)], now: u64) -> Vec<TagFacts> {
        list.iter()
            .map(|(t, pushed_days, pulled_days)| TagFacts {
                tag: t.to_string(),
                digest: format!("sha256:{t}"),
                pushed: now - pushed_days * DAY,
                order: 0,
                pulled: if *pulled_days == u64::MAX {
                    0
                } else {
                    now - pulled_days * DAY
                },
            })
            .collect()
    }

    use super::super::removed_tags as removed;

    #[test]
    fn templates_retain_and_rules_are_ored() {
        let now = 1000 * DAY;
        let never = u64::MAX;
        let t = facts(
            &[
                ("a", 1, never),
                ("b", 55, 50),
                ("c", 3, 1),
                ("d", 40, 2),
                ("e", 50, never),
                ("dev-1", 60, never),
            ],
            now,
        );
        let pushed = rule(1, "latestPushedK", json!(2), ("matches", "**"), "**");
        assert_eq!(
            removed(&plan(&[&pushed], &t, now, |_| None)),
            ["b", "d", "dev-1", "e"]
        );
        // Never-pulled tags count as pulled at their push.
        let pulled = rule(2, "latestPulledN", json!("2"), ("matches", "**"), "**");
        assert_eq!(
            removed(&plan(&[&pulled], &t, now, |_| None)),
            ["b", "d", "dev-1", "e"]
        );
        let recent = rule(3, "nDaysSinceLastPull", json!(7), ("matches", "**"), "**");
        assert_eq!(
            removed(&plan(&[&recent], &t, now, |_| None)),
            ["b", "dev-1", "e"]
        );
        let days = rule(
            4,
            "nDaysSinceLastPush",
            json!(45),
            ("excludes", "dev-*"),
            "**",
        );
        let p = plan(&[&days], &t, now, |_| None);
        assert_eq!(removed(&p), ["b", "dev-1", "e"]);
        let dev = p.iter().find(|d| d.tag == "dev-1").unwrap();
        assert!(dev.reason.contains("tag not selected"), "{}", dev.reason);
        // or: retained by either.
        let p = plan(&[&pushed, &recent], &t, now, |t| (t == "e").then_some(7));
        assert_eq!(removed(&p), ["b", "dev-1"]);
        let d = p.iter().find(|d| d.tag == "d").unwrap();
        assert!(d.reason.starts_with("retained by rule 3"), "{}", d.reason);
        let b = p.iter().find(|d| d.tag == "b").unwrap();
        assert!(
            b.reason.starts_with("no rule retains it: rule 1"),
            "{}",
            b.reason
        );
        assert!(
            p.iter()
                .any(|d| d.tag == "e" && d.reason == "immutable (rule 7)")
        );
    }

    #[test]
    fn scope_picks_repositories() {
        let mut p = Policy {
            id: 1,
            tenant: "t".into(),
            namespace: "ns".into(),
            namespace_id: 1,
            name: "p".into(),
            algorithm: "or".into(),
            enabled: true,
            rules: vec![
                rule(1, "latestPushedK", json!(1), ("matches", "**"), "app*"),
                rule(2, "latestPushedK", json!(1), ("matches", "**"), "team/**"),
            ],
            trigger: Trigger {
                kind: "manual".into(),
                trigger_settings: Default::default(),
            },
            creator: "u".into(),
            created: 0,
            updated: 0,
            last_scheduled: 0,
        };
        assert_eq!(p.rules_for("app1").len(), 1);
        assert_eq!(p.rules_for("team/x/y").len(), 1);
        assert!(p.rules_for("other").is_empty());
        p.rules[0].body.disabled = true;
        assert!(p.rules_for("app1").is_empty());
        assert_eq!(p.next_run(), None);
        p.trigger = Trigger {
            kind: "scheduled".into(),
            trigger_settings: TriggerSettings {
                cron: "0 0 * * * *".into(),
            },
        };
        p.updated = 10;
        assert_eq!(p.next_run(), Some(3600));
        assert_eq!(parse_execution(&execution("acme", 7, 9)), Some(("acme", 7)));
    }

    #[test]
    fn bodies_are_checked() {
        let good = || PolicyBody {
            algorithm: "or".into(),
            enabled: true,
            rules: vec![rule(0, "latestPushedK", json!(3), ("matches", "**"), "**").body],
            trigger: Trigger {
                kind: "manual".into(),
                trigger_settings: Default::default(),
            },
            name: "keep-3_策略".into(),
        };
        assert!(validate(&good()).is_ok());
        let bad = |f: &dyn Fn(&mut PolicyBody)| {
            let mut b = good();
            f(&mut b);
            validate(&b).unwrap_err()
        };
        assert!(bad(&|b| b.algorithm = "and".into()).contains("algorithm"));
        assert!(bad(&|b| b.name = "a b".into()).contains("name"));
        assert!(bad(&|b| b.rules.clear()).contains("rules"));
        assert!(bad(&|b| b.rules[0].template = "latestSize".into()).contains("template"));
        assert!(
            bad(&|b| b.rules[0].params = json!({"latestPushedK": -1}).as_object().unwrap().clone())
                .contains("whole number")
        );
        assert!(
            bad(&|b| b.rules[0].params = json!({"latestPushedK": 0}).as_object().unwrap().clone())
                .contains("whole number")
        );
        assert!(
            bad(&|b| b.rules[0].params = json!({"days": 3}).as_object().unwrap().clone())
                .contains("only params")
        );
        assert!(bad(&|b| b.rules[0].action = "delete".into()).contains("retain"));
        assert!(bad(&|b| b.rules[0].tag_selectors[0].pattern = "[".into()).contains("pattern"));
        assert!(
            bad(&|b| b.rules[0].tag_selectors[0].decoration = "repoMatches".into())
                .contains("decoration")
        );
        assert!(bad(&|b| b.trigger.kind = "event_based".into()).contains("trigger"));
        assert!(bad(&|b| b.trigger.kind = "scheduled".into()).contains("cron"));
        assert!(
            bad(&|b| {
                b.trigger.kind = "scheduled".into();
                b.trigger.trigger_settings.cron = "0 * * * *".into();
            })
            .contains("6 fields")
        );
    }
}
