//! Webhook policies (SWR enterprise edition, `create_instance_webhook` and
//! the rest; the SDK's `CreateWebhookPolicyRequestBody`,
//! `WebhookPolicyDetail`, `Target`, `ScopeRule`, `RuleSelector` and `Job`
//! models are the contract) and their deliveries: which events a policy
//! takes, the payload each format sends, the signature over it, and when
//! a failed delivery is tried again.
//!
//! Beyond SWR: a target may choose its payload format (`payload_format`:
//! Harbor's default JSON, CloudEvents 1.0 structured or binary mode, or
//! Distribution's notification envelope) and a `secret` for an
//! HMAC-SHA256 signature over each body; `DELETE_ARTIFACT` events too.

use crate::events::{Event, EventKind};
use hmac::Mac;
use serde::{Deserialize, Serialize};

/// `webhook/policy/<tenant>/<id, 20 digits>` → [`Policy`].
pub fn policy_prefix(tenant: &str) -> String {
    format!("webhook/policy/{tenant}/")
}
pub fn policy_key(tenant: &str, id: u64) -> String {
    format!("webhook/policy/{tenant}/{id:020}")
}
/// Every tenant's policies (the delivery job reads them all).
pub const ALL_POLICIES: &str = "webhook/policy/";
/// The counter policy ids come from.
pub const POLICY_IDS: &str = "count/webhook-policy-id";

/// `webhook/job/<policy, 20 digits>/<event id, 20 digits>` → [`Delivery`].
pub fn job_prefix(policy: u64) -> String {
    format!("webhook/job/{policy:020}/")
}
pub fn job_key(policy: u64, event: u64) -> String {
    format!("webhook/job/{policy:020}/{event:020}")
}
/// Every policy's (and trigger's) deliveries.
pub const ALL_JOBS: &str = "webhook/job/";
/// (policy, event) of a delivery's key.
pub fn parse_job(key: &str) -> Option<(u64, u64)> {
    let (p, e) = key.strip_prefix(ALL_JOBS)?.split_once('/')?;
    Some((p.parse().ok()?, e.parse().ok()?))
}
/// Finished deliveries are kept this long by default
/// (`webhook_log_retention_days`).
pub const LOG_RETENTION_DAYS: u64 = 30;
/// `webhook/pending/<policy>/<event>` (empty): deliveries not yet final,
/// in the order they must go out.
pub const PENDING: &str = "webhook/pending/";
pub fn pending_key(policy: u64, event: u64) -> String {
    format!("{PENDING}{policy:020}/{event:020}")
}
/// `(policy, event)` of a pending key.
pub fn parse_pending(key: &str) -> Option<(u64, u64)> {
    let (p, e) = key.strip_prefix(PENDING)?.split_once('/')?;
    Some((p.parse().ok()?, e.parse().ok()?))
}
/// The last event id the delivery job has fanned out.
pub const CURSOR: &str = "webhook/cursor";

/// Most targets per policy (SWR's console takes one address per policy).
pub const MAX_TARGETS: usize = 1;
/// Most webhook policies per tenant.
pub const MAX_POLICIES: usize = 100;

/// Header names an `auth_header` may not set: the HTTP layer's own, and
/// those Berth sets on each delivery.
const RESERVED_HEADERS: [&str; 12] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "expect",
    "proxy-authorization",
    "user-agent",
];

/// The event types a policy may name (SWR: `PUSH_ARTIFACT`; Berth adds
/// `DELETE_ARTIFACT`, and Harbor's `REPLICATION`: a replication
/// execution ended).
pub const EVENT_TYPES: [&str; 3] = ["PUSH_ARTIFACT", "DELETE_ARTIFACT", "REPLICATION"];

/// The event type of a log event, if policies can take it.
pub fn event_type(kind: EventKind) -> Option<&'static str> {
    match kind {
        EventKind::ManifestPushed => Some("PUSH_ARTIFACT"),
        EventKind::TagDeleted | EventKind::ManifestDeleted | EventKind::TagAgedOut => {
            Some("DELETE_ARTIFACT")
        }
        EventKind::ReplicationCompleted => Some("REPLICATION"),
        EventKind::RepositoryDeleted => None,
    }
}

use crate::selectors;
pub use crate::selectors::RuleSelector;

/// `ScopeRule`: which repositories (of the policy's organization, named
/// without it) and tags a policy takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeRule {
    pub tag_selectors: Vec<RuleSelector>,
    pub scope_selectors: std::collections::BTreeMap<String, Vec<RuleSelector>>,
    pub repo_scope_mode: String,
}

/// `Target`, with Berth's `payload_format` and `secret`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    #[serde(rename = "type")]
    pub kind: String,
    pub address: String,
    /// `Name:value;Name2:value2`, sent with each delivery. Kept sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<String>,
    #[serde(default)]
    pub skip_cert_verify: bool,
    pub address_type: String,
    /// `harbor` (default), `cloudevents`, `cloudevents-binary`, `distribution`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format: Option<String>,
    /// Key of the `X-Berth-Signature-256` HMAC. Kept sealed; never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A create or update body (`CreateWebhookPolicyRequestBody`,
/// `UpdateWebhookPolicyRequestBody`: `event_types` optional on update).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub targets: Vec<Target>,
    pub scope_rules: Vec<ScopeRule>,
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    pub enabled: bool,
}

/// A stored policy. Secrets (`auth_header`, `secret`) are stored sealed
/// (hex), in `sealed_auth_header` and `sealed_secret`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub id: u64,
    pub tenant: String,
    pub namespace: String,
    pub namespace_id: u64,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub targets: Vec<StoredTarget>,
    pub scope_rules: Vec<ScopeRule>,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub creator: String,
    /// Seconds since the epoch.
    pub created: u64,
    pub updated: u64,
    /// When it was created, in ns since the epoch: it takes the events
    /// committed from then on (not older ones the job has yet to read).
    #[serde(default)]
    pub since_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTarget {
    pub address: String,
    pub address_type: String,
    pub skip_cert_verify: bool,
    pub payload_format: PayloadFormat,
    #[serde(default)]
    pub sealed_auth_header: Option<String>,
    /// The header names of `auth_header`, to show (values never are).
    #[serde(default)]
    pub auth_header_names: Vec<String>,
    #[serde(default)]
    pub sealed_secret: Option<String>,
    /// Set when the receiver answered 410 Gone: no more deliveries.
    #[serde(default)]
    pub gone: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadFormat {
    Harbor,
    Cloudevents,
    CloudeventsBinary,
    Distribution,
}

impl PayloadFormat {
    pub fn parse(s: Option<&str>) -> Result<PayloadFormat, String> {
        match s.unwrap_or("harbor") {
            "harbor" | "default" => Ok(PayloadFormat::Harbor),
            "cloudevents" => Ok(PayloadFormat::Cloudevents),
            "cloudevents-binary" => Ok(PayloadFormat::CloudeventsBinary),
            "distribution" => Ok(PayloadFormat::Distribution),
            other => Err(format!(
                "payload_format {other:?} is not one of harbor, cloudevents, cloudevents-binary, distribution"
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            PayloadFormat::Harbor => "harbor",
            PayloadFormat::Cloudevents => "cloudevents",
            PayloadFormat::CloudeventsBinary => "cloudevents-binary",
            PayloadFormat::Distribution => "distribution",
        }
    }
}

/// Checks a create or update body; on update (`current`), a target's
/// address may not change (SWR: "cannot be modified"). The checked event
/// types (default on update: the current ones).
pub fn validate(body: &PolicyBody, current: Option<&Policy>) -> Result<Vec<String>, String> {
    if body
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1024)
    {
        return Err("description: at most 1024 characters".into());
    }
    let name_ok = !body.name.is_empty()
        && body.name.chars().count() <= 256
        && body
            .name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(
            "name: 1 to 256 letters, Chinese characters, digits, underscores or hyphens".into(),
        );
    }
    if body.targets.is_empty() || body.targets.len() > MAX_TARGETS {
        return Err(format!(
            "targets: between 1 and {MAX_TARGETS} target per policy"
        ));
    }
    for (i, t) in body.targets.iter().enumerate() {
        if t.kind != "http" {
            return Err(format!("targets[{i}].type: only http is supported"));
        }
        check_address(&t.address).map_err(|e| format!("targets[{i}].address: {e}"))?;
        if !matches!(t.address_type.as_str(), "internal" | "internet") {
            return Err(format!("targets[{i}].address_type: internal or internet"));
        }
        PayloadFormat::parse(t.payload_format.as_deref())
            .map_err(|e| format!("targets[{i}].{e}"))?;
        if let Some(h) = &t.auth_header {
            parse_auth_header(h).map_err(|e| format!("targets[{i}].auth_header: {e}"))?;
        }
        if let Some(cur) = current.and_then(|c| c.targets.get(i))
            && cur.address != t.address
        {
            return Err(format!(
                "targets[{i}].address cannot be changed: delete the policy and create another"
            ));
        }
    }
    if body.scope_rules.len() != 1 {
        return Err("scope_rules: exactly one rule".into());
    }
    for rule in &body.scope_rules {
        if rule.tag_selectors.len() != 1 {
            return Err("scope_rules.tag_selectors: exactly one selector".into());
        }
        let repos = rule.scope_selectors.get("repository");
        if rule.scope_selectors.len() != 1 || repos.is_none_or(|r| r.len() != 1) {
            return Err(
                "scope_rules.scope_selectors: exactly one selector, under \"repository\"".into(),
            );
        }
        if !matches!(rule.repo_scope_mode.as_str(), "regular" | "selection") {
            return Err("scope_rules.repo_scope_mode: regular or selection".into());
        }
        for s in rule.tag_selectors.iter().chain(repos.into_iter().flatten()) {
            selectors::check(s)?;
        }
    }
    let types = match (&body.event_types, current) {
        (Some(t), _) => t.clone(),
        (None, Some(c)) => c.event_types.clone(),
        (None, None) => return Err("event_types: required".into()),
    };
    if types.is_empty() {
        return Err("event_types: at least one".into());
    }
    for t in &types {
        if !EVENT_TYPES.contains(&t.as_str()) {
            return Err(format!(
                "event_types: {t:?} is not one of {}",
                EVENT_TYPES.join(", ")
            ));
        }
    }
    Ok(types)
}

fn check_address(address: &str) -> Result<(), String> {
    let rest = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
        .ok_or("must be an http:// or https:// URL")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || address.len() > 2048 {
        return Err("must name a host (no user information, at most 2048 characters)".into());
    }
    // host, [v6], host:port or [v6]:port, with a port from 1 to 65535.
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or("an IPv6 address needs its ]")?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err("not an IPv6 address in [ ]".into());
            }
            (addr, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if let Some(p) = port
        && p.parse::<u16>().ok().is_none_or(|n| n == 0)
    {
        return Err("the port must be a number from 1 to 65535".into());
    }
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    if !host_ok {
        return Err("the host has characters a host name cannot have".into());
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    Ok(())
}

/// `Name:value;Name2:value2` as header pairs.
pub fn parse_auth_header(h: &str) -> Result<Vec<(String, String)>, String> {
    h.split(';')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once(':')
                .ok_or("expected Name:value pairs separated by ;")?;
            let k = k.trim();
            let valid = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            // Visible ASCII, spaces and tabs (RFC 9110 §5.5 field values).
            let value_ok = v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
            if !valid || !value_ok {
                return Err(
                    "header names are letters, digits, - and _; values visible ASCII on one line"
                        .to_string(),
                );
            }
            let lower = k.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str())
                || lower.starts_with("x-berth-")
                || lower.starts_with("berth-")
                || lower.starts_with("ce-")
            {
                return Err(format!("header {k} is set by Berth or the HTTP layer"));
            }
            Ok((k.to_string(), v.trim().to_string()))
        })
        .collect()
}

impl Policy {
    /// Whether this policy takes `event` (its organization, an event type
    /// it names, a repository and tag its scope rule selects).
    pub fn takes(&self, event: &Event) -> bool {
        let r = &event.record;
        let Some(kind) = event_type(r.kind) else {
            return false;
        };
        let Some(name) = r.repository.strip_prefix(&format!("{}/", self.namespace)) else {
            return false;
        };
        self.enabled
            && r.time_ns >= self.since_ns
            && r.tenant == self.tenant
            && self.event_types.iter().any(|t| t == kind)
            && self.scope_rules.iter().all(|rule| {
                let repo_ok = rule
                    .scope_selectors
                    .values()
                    .flatten()
                    .all(|s| selectors::selected(s, name));
                // An untagged push is taken when the tag pattern takes "".
                let tag = r.tag.as_deref().unwrap_or("");
                repo_ok
                    && rule
                        .tag_selectors
                        .iter()
                        .all(|s| selectors::selected(s, tag))
            })
    }
}

/// What one delivery sends: headers and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Where an event's repository is pulled from, for payloads
/// (`registry` is the host name clients use, e.g. `registry.example.com`).
pub fn payload(format: PayloadFormat, event: &Event, registry: &str) -> Payload {
    let r = &event.record;
    let secs = r.time_ns / 1_000_000_000;
    let (namespace, name) = r.repository.split_once('/').unwrap_or(("", &r.repository));
    let reference = r
        .tag
        .clone()
        .or_else(|| r.digest.clone())
        .unwrap_or_default();
    let sep = if r.tag.is_some() { ":" } else { "@" };
    let resource_url = format!("{registry}/{}{sep}{reference}", r.repository);
    let harbor_type = event_type(r.kind).unwrap_or("");
    let mut data = serde_json::json!({
        "resources": [{
            "digest": r.digest,
            "tag": r.tag,
            "resource_url": resource_url,
        }],
        "repository": {
            "date_created": secs,
            "name": name,
            "namespace": namespace,
            "repo_full_name": r.repository,
            "repo_type": "private",
        },
    });
    if let Some(detail) = &r.detail {
        data["replication"] = detail.clone();
    }
    let json = |v: serde_json::Value| serde_json::to_vec(&v).expect("payloads serialize");
    let id = event.id.to_string();
    let time = crate::events::rfc3339_nanos(r.time_ns);
    let source = format!("/berth/{}", r.tenant);
    match format {
        PayloadFormat::Harbor => Payload {
            content_type: "application/json",
            headers: Vec::new(),
            body: json(serde_json::json!({
                "type": harbor_type,
                "occur_at": secs,
                "operator": r.operator,
                "event_data": data,
            })),
        },
        PayloadFormat::Cloudevents => Payload {
            content_type: "application/cloudevents+json",
            headers: Vec::new(),
            body: json(serde_json::json!({
                "specversion": "1.0",
                "id": id,
                "source": source,
                "type": r.kind.cloudevents_type(),
                "subject": r.repository,
                "time": time,
                "datacontenttype": "application/json",
                "data": data,
            })),
        },
        // CloudEvents 1.0 HTTP binding §3.1: attributes as ce- headers.
        PayloadFormat::CloudeventsBinary => Payload {
            content_type: "application/json",
            headers: vec![
                ("ce-specversion".into(), "1.0".into()),
                ("ce-id".into(), id),
                ("ce-source".into(), source),
                ("ce-type".into(), r.kind.cloudevents_type()),
                ("ce-subject".into(), r.repository.clone()),
                ("ce-time".into(), time),
            ],
            body: json(data),
        },
        PayloadFormat::Distribution => Payload {
            content_type: "application/vnd.docker.distribution.events.v1+json",
            headers: Vec::new(),
            body: json(serde_json::json!({ "events": [{
                "id": id,
                "timestamp": time,
                "action": match r.kind {
                    EventKind::ManifestPushed => "push",
                    EventKind::ReplicationCompleted => "replicate",
                    _ => "delete",
                },
                "target": {
                    "mediaType": r.media_type,
                    "size": r.size,
                    "length": r.size,
                    "digest": r.digest,
                    "repository": r.repository,
                    "url": format!("http://{registry}/v2/{}/manifests/{}", r.repository, r.digest.as_deref().unwrap_or_default()),
                    "tag": r.tag,
                },
                "request": { "addr": r.client, "host": registry },
                "actor": { "name": r.operator },
                "source": { "addr": registry },
            }]})),
        },
    }
}

/// The `X-Berth-Signature-256` value over `body` with `secret`:
/// `sha256=<hex HMAC-SHA256>` (the form GitHub's webhooks use).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `Job.status` values (SWR).
pub mod status {
    pub const PENDING: &str = "Pending";
    pub const IN_PROGRESS: &str = "InProgress";
    pub const SUCCEED: &str = "Succeed";
    pub const FAILED: &str = "Failed";
    pub const STOPPED: &str = "Stopped";
    pub const ALL: [&str; 6] = [
        "Initialized",
        PENDING,
        IN_PROGRESS,
        SUCCEED,
        FAILED,
        STOPPED,
    ];
}

/// One try to deliver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Milliseconds since the epoch.
    pub at_ms: u64,
    /// The receiver's status, if it answered.
    #[serde(default)]
    pub status: Option<u16>,
    pub latency_ms: u64,
    #[serde(default)]
    pub error: Option<String>,
    /// What a successful attempt changed (an image trigger's update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Attempt {
    /// An attempt that got no answer (`at_ms`, `latency_ms` in ms).
    pub fn failed(at_ms: u64, latency_ms: u64, error: String) -> Attempt {
        Attempt {
            at_ms,
            status: None,
            latency_ms,
            error: Some(error),
            detail: None,
        }
    }
}

/// One event for one policy (the SDK's `Job`, id = the event id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub policy: u64,
    pub event: u64,
    pub event_type: String,
    /// The event's tag, if it has one (an image trigger's history shows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub status: String,
    pub status_text: String,
    pub attempts: Vec<Attempt>,
    /// Not before this (milliseconds since the epoch).
    pub next_at_ms: u64,
    pub created: u64,
    pub updated: u64,
}

/// How deliveries are retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts before a delivery is dead-lettered (`Failed`).
    pub max_attempts: u32,
    /// A delivery older than this (seconds) is dead-lettered too.
    pub max_age_secs: u64,
    pub base_ms: u64,
    pub cap_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            max_age_secs: 24 * 3600,
            base_ms: 2_000,
            cap_ms: 600_000,
        }
    }
}

/// What to do after an attempt that got `status` (none: no answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again at this time (ms).
    Retry(u64),
    /// Give up: dead letter, with the reason.
    DeadLetter(String),
    /// 410 Gone: the target asked never to be called again.
    Gone,
}

impl RetryPolicy {
    /// Decides after attempt number `attempts` (1-based) at `now_ms`, for a
    /// delivery created at `created` (s); `retry_after` is the receiver's
    /// `Retry-After` in seconds (429/503); `jitter` in [0, 1) spreads
    /// retries (±20 %).
    pub fn after(
        &self,
        status: Option<u16>,
        attempts: u32,
        created: u64,
        now_ms: u64,
        retry_after: Option<u64>,
        jitter: f64,
    ) -> Outcome {
        match status {
            Some(200..=299) => return Outcome::Delivered,
            Some(410) => return Outcome::Gone,
            _ => {}
        }
        if attempts >= self.max_attempts {
            return Outcome::DeadLetter(format!("gave up after {attempts} attempts"));
        }
        if now_ms / 1000 >= created + self.max_age_secs {
            return Outcome::DeadLetter(format!(
                "gave up after {} hours",
                self.max_age_secs / 3600
            ));
        }
        let exp = self
            .base_ms
            .saturating_mul(1u64 << (attempts - 1).min(20))
            .min(self.cap_ms);
        let spread = (exp as f64 * (0.8 + 0.4 * jitter)) as u64;
        let wait = match (status, retry_after) {
            (Some(429 | 503), Some(s)) => (s.min(3600) * 1000).max(spread),
            _ => spread,
        };
        Outcome::Retry(now_ms + wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventRecord;

    fn sel(d: &str, p: &str) -> RuleSelector {
        RuleSelector {
            kind: "doublestar".into(),
            decoration: d.into(),
            pattern: p.into(),
            extras: None,
        }
    }

    fn policy(repo: &str, tag: &str) -> Policy {
        Policy {
            id: 1,
            tenant: "acme".into(),
            namespace: "team".into(),
            namespace_id: 7,
            name: "p".into(),
            description: String::new(),
            targets: vec![],
            scope_rules: vec![ScopeRule {
                tag_selectors: vec![sel("matches", tag)],
                scope_selectors: [("repository".to_string(), vec![sel("repoMatches", repo)])]
                    .into(),
                repo_scope_mode: "regular".into(),
            }],
            event_types: vec!["PUSH_ARTIFACT".into()],
            enabled: true,
            creator: "a@acme".into(),
            created: 0,
            updated: 0,
            since_ns: 0,
        }
    }

    fn event(repo: &str, tag: Option<&str>) -> Event {
        let mut r = EventRecord::new(
            EventKind::ManifestPushed,
            "acme",
            repo,
            1_700_000_000_000_000_000,
        );
        r.tag = tag.map(String::from);
        r.digest = Some("sha256:ab".into());
        Event { id: 5, record: r }
    }

    #[test]
    fn scope_rules_select_repositories_and_tags() {
        assert!(policy("**", "**").takes(&event("team/app", Some("v1"))));
        assert!(policy("**", "**").takes(&event("team/a/b", None)));
        assert!(!policy("**", "**").takes(&event("other/app", Some("v1"))));
        assert!(policy("app*", "v*").takes(&event("team/app2", Some("v1.2"))));
        assert!(!policy("app*", "v*").takes(&event("team/app/sub", Some("v1"))));
        assert!(policy("{web,api}", "*").takes(&event("team/api", Some("x"))));
        assert!(!policy("{web,api}", "*").takes(&event("team/db", Some("x"))));
        assert!(!policy("**", "v*").takes(&event("team/app", None)));
        let mut other = event("team/app", Some("v1"));
        other.record.tenant = "rival".into();
        assert!(!policy("**", "**").takes(&other));
        let mut off = policy("**", "**");
        off.enabled = false;
        assert!(!off.takes(&event("team/app", Some("v1"))));
    }

    #[test]
    fn payloads_in_each_format() {
        let e = event("team/app", Some("v1"));
        let h: serde_json::Value =
            serde_json::from_slice(&payload(PayloadFormat::Harbor, &e, "reg:5000").body).unwrap();
        assert_eq!(h["type"], "PUSH_ARTIFACT");
        assert_eq!(
            h["event_data"]["resources"][0]["resource_url"],
            "reg:5000/team/app:v1"
        );
        assert_eq!(h["event_data"]["repository"]["namespace"], "team");
        let c = payload(PayloadFormat::Cloudevents, &e, "reg");
        assert_eq!(c.content_type, "application/cloudevents+json");
        let c: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
        assert_eq!(
            (c["specversion"].as_str(), c["id"].as_str()),
            (Some("1.0"), Some("5"))
        );
        assert_eq!(c["type"], "io.berth.manifest.pushed");
        let b = payload(PayloadFormat::CloudeventsBinary, &e, "reg");
        assert!(b.headers.contains(&("ce-id".to_string(), "5".to_string())));
        let d: serde_json::Value =
            serde_json::from_slice(&payload(PayloadFormat::Distribution, &e, "reg").body).unwrap();
        assert_eq!(d["events"][0]["action"], "push");
        assert_eq!(d["events"][0]["target"]["tag"], "v1");
    }

    #[test]
    fn signatures_are_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retries_back_off_and_give_up() {
        let p = RetryPolicy::default();
        assert_eq!(p.after(Some(204), 1, 0, 0, None, 0.5), Outcome::Delivered);
        assert_eq!(p.after(Some(410), 1, 0, 0, None, 0.5), Outcome::Gone);
        assert_eq!(
            p.after(Some(500), 1, 0, 1000, None, 0.5),
            Outcome::Retry(3000)
        );
        assert_eq!(p.after(None, 3, 0, 1000, None, 0.5), Outcome::Retry(9000));
        assert_eq!(
            p.after(Some(500), 30, 0, 0, None, 0.5),
            Outcome::DeadLetter("gave up after 30 attempts".into())
        );
        assert_eq!(
            p.after(Some(429), 1, 0, 0, Some(60), 0.5),
            Outcome::Retry(60_000)
        );
        assert!(matches!(
            p.after(Some(500), 2, 0, 86_400_000, None, 0.5),
            Outcome::DeadLetter(_)
        ));
        let Outcome::Retry(t) = p.after(Some(500), 7, 0, 0, None, 0.99) else {
            panic!()
        };
        assert!(t <= 720_000, "capped: {t}");
    }

    #[test]
    fn bodies_are_checked() {
        let body = |address: &str, types: Option<Vec<&str>>| PolicyBody {
            name: "hook_1".into(),
            description: None,
            targets: vec![Target {
                kind: "http".into(),
                address: address.into(),
                auth_header: Some("Authorization:Bearer x".into()),
                skip_cert_verify: false,
                address_type: "internet".into(),
                payload_format: None,
                secret: None,
            }],
            scope_rules: vec![policy("**", "**").scope_rules[0].clone()],
            event_types: types.map(|t| t.into_iter().map(String::from).collect()),
            enabled: true,
        };
        assert!(
            validate(
                &body("https://hooks.example.com/x", Some(vec!["PUSH_ARTIFACT"])),
                None
            )
            .is_ok()
        );
        assert!(validate(&body("ftp://x", Some(vec!["PUSH_ARTIFACT"])), None).is_err());
        assert!(validate(&body("http://u:p@x/", Some(vec!["PUSH_ARTIFACT"])), None).is_err());
        assert!(validate(&body("https://x", Some(vec!["PULL"])), None).is_err());
        assert!(validate(&body("https://x", None), None).is_err());
        let mut bad = body("https://x", Some(vec!["PUSH_ARTIFACT"]));
        bad.scope_rules[0].tag_selectors[0].pattern = "{a,".into();
        assert!(validate(&bad, None).is_err());
        assert_eq!(parse_auth_header("A:1;B-2: two").unwrap().len(), 2);
        assert!(parse_auth_header("nocolon").is_err());
        for bad in [
            "Host:x",
            "content-length:1",
            "X-Berth-Signature-256:x",
            "berth-insecure-tls:1",
            "A:\u{7f}",
            "A:\0",
        ] {
            assert!(parse_auth_header(bad).is_err(), "{bad}");
        }
        for bad in [
            "http://h:99999/",
            "http://h:0/",
            "http://[::1/",
            "http://a b/",
            "http://[zz]/",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
        assert!(check_address("http://[::1]:8080/x").is_ok());
        assert!(check_address("https://hooks.example.com:8443/p?q=1").is_ok());
    }
}
