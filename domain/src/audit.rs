//! The audit log: every change (a push, a delete, a management call) as a
//! [`AuditEvent`] under `audit/<tenant>/<time ns>-<nonce>`
//! ([`records::audit`]), in time order per tenant. This module says how
//! the log is queried (SWR enterprise `ListAuditLogs`, Berth's admin
//! query) and how long it is kept. No API edits or deletes a record; only
//! the GC sweep removes those past the retention.

use crate::iam::records::AuditEvent;
use crate::swr::{SwrError, parse_time, rfc3339};

/// The least retention, in days: what SWR promises (audit logs are kept 7
/// days). A shorter setting is refused.
pub const MIN_RETENTION_DAYS: u64 = 7;

/// The default retention, in days.
pub const DEFAULT_RETENTION_DAYS: u64 = 30;

/// The setting (`[settings] audit_retention_days` in the runtime config)
/// that gives the retention in whole days.
pub const RETENTION_SETTING: &str = "audit_retention_days";

/// The retention in seconds given the setting's value (none: the default).
/// Errors name the setting, for the host to refuse at start.
pub fn retention_seconds(setting: Option<&str>) -> Result<u64, String> {
    let days = match setting.map(str::trim) {
        None | Some("") => DEFAULT_RETENTION_DAYS,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|d| (MIN_RETENTION_DAYS..=36_500).contains(d))
            .ok_or_else(|| {
                format!(
                    "{RETENTION_SETTING} must be a whole number of days from {MIN_RETENTION_DAYS} to 36500, not {s:?}"
                )
            })?,
    };
    Ok(days * 86_400)
}

/// The prefix of `tenant`'s audit log.
pub fn prefix(tenant: &str) -> String {
    format!("audit/{tenant}/")
}

/// The key a scan starts after to reach events at or after `secs`.
pub fn start_after(tenant: &str, secs: u64) -> Option<String> {
    // Keys are `<ns, 20 digits>-<nonce>`; `-` sorts before any digit, so
    // `<ns - 1, 20 digits>~` sorts after every event of earlier nanoseconds.
    let ns = u128::from(secs) * 1_000_000_000;
    (ns > 0).then(|| format!("{}{:020}~", prefix(tenant), ns - 1))
}

/// The time, in nanoseconds, of the event at `key`.
pub fn time_ns(key: &str) -> Option<u128> {
    key.rsplit('/').next()?.split('-').next()?.parse().ok()
}

/// What kind of change an operation was: SWR's `create`, `update`,
/// `delete`, or `pull`.
pub fn operation_kind(operation: &str) -> &'static str {
    let verb = operation.split_whitespace().next().unwrap_or_default();
    match verb {
        "push" | "POST" => "create",
        "PUT" | "PATCH" => "update",
        "delete" | "DELETE" => "delete",
        "pull" | "GET" => "pull",
        _ => "other",
    }
}

/// What an operation changed: `artifact` or `blob` on `/v2/`, or the
/// resource a management path names (`namespace`, `repository`, `tag`,
/// `permission`, `share`, `trigger`, `retention`, `sync`, `webhook`,
/// `immutable_rule`, `replication`, `registry`, `gc`, `user`, `group`,
/// `policy`, `access_key`, `tenant`, `endpoint_policy`, `credential`), or
/// `other`.
pub fn resource_type(operation: &str) -> &'static str {
    let mut words = operation.split_whitespace();
    let verb = words.next().unwrap_or_default();
    let object = words.next().unwrap_or_default();
    if matches!(verb, "push" | "delete" | "pull") {
        return match object {
            "manifest" => "artifact",
            "blob" => "blob",
            _ => "other",
        };
    }
    // The innermost collection the path names decides.
    object
        .split(['/', '?'])
        .rev()
        .find_map(|seg| {
            Some(match seg {
                "namespaces" => "namespace",
                "repos" | "repositories" => "repository",
                "tags" | "artifacts" => "tag",
                "access" => "permission",
                "domains" => "share",
                "triggers" => "trigger",
                "retentions" => "retention",
                "sync_repo" | "sync_images" | "sync_job" => "sync",
                "webhook" | "policies" if object.contains("/webhook/") => "webhook",
                "immutabletagrules" => "immutable_rule",
                "replication" => "replication",
                "registries" => "registry",
                "gc" | "gcs" => "gc",
                "users" => "user",
                "groups" => "group",
                "keys" => "access_key",
                "policies" => "policy",
                "tenants" => "tenant",
                "endpoint-policy" => "endpoint_policy",
                "secret" => "credential",
                _ => return None,
            })
        })
        .unwrap_or("other")
}

/// The resource a management call changed: its path, and for a creation
/// (`POST`) the name the body gives what it creates (`namespace`, `name`,
/// `repository` or `repo_name`), so `POST /v2/manage/namespaces` with
/// `{"namespace": "team"}` records `/v2/manage/namespaces/team`.
pub fn resource_of(method: &str, path: &str, body: &[u8]) -> String {
    if method != "POST" || body.first() != Some(&b'{') {
        return path.to_string();
    }
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) else {
        return path.to_string();
    };
    ["namespace", "name", "repository", "repo_name"]
        .iter()
        .find_map(|k| fields.get(*k)?.as_str())
        .filter(|name| !name.is_empty() && name.len() <= 256)
        .map_or_else(
            || path.to_string(),
            |name| format!("{}/{name}", path.trim_end_matches('/')),
        )
}

/// Which answers a query wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    /// Answered below 400.
    Succeeded,
    /// Answered 400 or above.
    Failed,
    /// Exactly this status.
    Exactly(u16),
}

/// A query of one tenant's log. Times are seconds since the epoch; an
/// event matches when it passes every filter given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// At or after.
    pub since: Option<u64>,
    /// Before.
    pub until: Option<u64>,
    /// The user's name, exactly.
    pub user: Option<String>,
    /// An [`operation_kind`] (`create`, `update`, `delete`, `pull`).
    pub operation: Option<String>,
    /// A [`resource_type`].
    pub resource_type: Option<String>,
    /// Part of the resource's name or path.
    pub resource: Option<String>,
    pub status: Option<StatusFilter>,
}

impl Query {
    /// Reads a query from request parameters (`since`, `until` as RFC 3339
    /// times or seconds since the epoch; `user`; `operation`;
    /// `resource_type`; `resource`; `status` as `succeeded`, `failed` or a
    /// status code). Errors are SWR's 400s naming the parameter.
    pub fn parse<'a>(param: impl Fn(&str) -> Option<&'a str>) -> Result<Query, SwrError> {
        let time = |name: &str| -> Result<Option<u64>, SwrError> {
            match param(name).map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => s
                    .parse::<u64>()
                    .ok()
                    .or_else(|| parse_time(s))
                    .map(Some)
                    .ok_or_else(|| {
                        SwrError::bad_request(format!(
                            "{name} must be a time (2026-11-30T12:00:00Z) or seconds since the epoch, not {s:?}"
                        ))
                    }),
            }
        };
        let text = |name: &str| {
            param(name)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let operation = text("operation");
        if let Some(op) = &operation
            && !matches!(op.as_str(), "create" | "update" | "delete" | "pull")
        {
            return Err(SwrError::bad_request(format!(
                "operation must be create, update, delete or pull, not {op:?}"
            )));
        }
        let status = match text("status").as_deref() {
            None => None,
            Some("succeeded" | "success") => Some(StatusFilter::Succeeded),
            Some("failed" | "failure") => Some(StatusFilter::Failed),
            Some(s) => Some(StatusFilter::Exactly(
                s.parse()
                    .ok()
                    .filter(|c| (100..600).contains(c))
                    .ok_or_else(|| {
                        SwrError::bad_request(format!(
                            "status must be succeeded, failed or an HTTP status, not {s:?}"
                        ))
                    })?,
            )),
        };
        let q = Query {
            since: time("since")?,
            until: time("until")?,
            user: text("user"),
            operation,
            resource_type: text("resource_type"),
            resource: text("resource"),
            status,
        };
        if let (Some(s), Some(u)) = (q.since, q.until)
            && s > u
        {
            return Err(SwrError::bad_request("since must not be after until"));
        }
        Ok(q)
    }

    /// Whether `event` passes every filter.
    pub fn matches(&self, event: &AuditEvent) -> bool {
        self.since.is_none_or(|s| event.time >= s)
            && self.until.is_none_or(|u| event.time < u)
            && self.user.as_ref().is_none_or(|u| *u == event.user)
            && self
                .operation
                .as_ref()
                .is_none_or(|o| o == operation_kind(&event.operation))
            && self
                .resource_type
                .as_ref()
                .is_none_or(|t| t == resource_type(&event.operation))
            && self
                .resource
                .as_ref()
                .is_none_or(|r| event.resource.contains(r.as_str()))
            && self.status.is_none_or(|s| match s {
                StatusFilter::Succeeded => event.status < 400,
                StatusFilter::Failed => event.status >= 400,
                StatusFilter::Exactly(c) => event.status == c,
            })
    }

    /// Whether an event at `time_ns` is past the query's end (scans stop).
    pub fn past_end(&self, time_ns: u128) -> bool {
        self.until
            .is_some_and(|u| time_ns >= u128::from(u) * 1_000_000_000)
    }
}

/// An event as SWR's `AuditLog` model (huaweicloudsdkswr v2) gives it:
/// `id` (the event's time in nanoseconds), `operation` ([`operation_kind`]),
/// `resource_type`, `resource`, `username`, `op_time` (RFC 3339).
pub fn swr_view(key: &str, e: &AuditEvent) -> serde_json::Value {
    serde_json::json!({
        "id": time_ns(key).unwrap_or_default() as u64,
        "operation": operation_kind(&e.operation),
        "resource_type": resource_type(&e.operation),
        "resource": e.resource,
        "username": e.user,
        "op_time": rfc3339(e.time),
    })
}

/// An event as Berth's admin query gives it: everything recorded, the
/// time as RFC 3339, and SWR's classification.
pub fn admin_view(key: &str, e: &AuditEvent) -> serde_json::Value {
    serde_json::json!({
        "id": time_ns(key).unwrap_or_default().to_string(),
        "time": rfc3339(e.time),
        "user": e.user,
        "operation": e.operation,
        "kind": operation_kind(&e.operation),
        "resource_type": resource_type(&e.operation),
        "resource": e.resource,
        "status": e.status,
        "source": e.source,
    })
}

/// The key of an event a page ends at, given its id (for `after`).
pub fn marker_key(tenant: &str, id: &str) -> Option<String> {
    // Ids are decimal nanoseconds; the key's nonce follows, so start after
    // every key of that nanosecond (`~` sorts after the nonce alphabet).
    id.parse::<u128>()
        .ok()
        .map(|ns| format!("{}{ns:020}-~", prefix(tenant)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iam::records;

    fn event(op: &str, status: u16, time: u64) -> AuditEvent {
        AuditEvent {
            time,
            tenant: "acme".into(),
            user: "dev".into(),
            operation: op.into(),
            resource: op.split_whitespace().nth(1).unwrap_or_default().into(),
            status,
            source: "127.0.0.1:1".into(),
        }
    }

    #[test]
    fn kinds_and_resource_types() {
        assert_eq!(operation_kind("push manifest a/b:v1"), "create");
        assert_eq!(resource_type("push manifest a/b:v1"), "artifact");
        assert_eq!(resource_type("delete blob a/b@sha256:00"), "blob");
        assert_eq!(operation_kind("DELETE /v2/manage/namespaces/a"), "delete");
        assert_eq!(resource_type("DELETE /v2/manage/namespaces/a"), "namespace");
        assert_eq!(
            resource_type("PATCH /v2/manage/namespaces/a/repos/b"),
            "repository"
        );
        assert_eq!(
            resource_type("DELETE /v2/manage/namespaces/a/repos/b/tags/v1"),
            "tag"
        );
        assert_eq!(
            resource_type("POST /v2/p/instances/p/namespaces/a/webhook/policies"),
            "webhook"
        );
        assert_eq!(resource_type("POST /berth/v1/tenants/t/policies"), "policy");
        assert_eq!(
            resource_type("PUT /v2/p/instances/p/endpoint-policy"),
            "endpoint_policy"
        );
        assert_eq!(operation_kind("PUT /x"), "update");
        assert_eq!(resource_type("frobnicate"), "other");
    }

    #[test]
    fn creations_name_what_they_created() {
        let body = br#"{"namespace": "team"}"#;
        assert_eq!(
            resource_of("POST", "/v2/manage/namespaces", body),
            "/v2/manage/namespaces/team"
        );
        assert_eq!(resource_of("PATCH", "/a", body), "/a");
        assert_eq!(resource_of("POST", "/a", b"not json"), "/a");
        assert_eq!(resource_of("POST", "/a", br#"{"name": 5}"#), "/a");
    }

    #[test]
    fn queries_parse_and_match() {
        let params = [
            ("since", "2026-11-30T00:00:00Z"),
            ("operation", "delete"),
            ("status", "failed"),
        ];
        let q = Query::parse(|n| params.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)).unwrap();
        let t = parse_time("2026-11-30T00:00:00Z").unwrap();
        assert!(q.matches(&event("DELETE /v2/manage/namespaces/a", 404, t)));
        assert!(!q.matches(&event("DELETE /v2/manage/namespaces/a", 204, t)));
        assert!(!q.matches(&event("DELETE /v2/manage/namespaces/a", 404, t - 1)));
        assert!(!q.matches(&event("POST /v2/manage/namespaces", 404, t)));
        for bad in [
            ("since", "yesterday"),
            ("operation", "frob"),
            ("status", "99"),
        ] {
            let e = Query::parse(|n| (n == bad.0).then_some(bad.1)).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(String::from_utf8(e.body()).unwrap().contains(bad.0));
        }
        let reversed = [("since", "200"), ("until", "100")];
        assert!(Query::parse(|n| reversed.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)).is_err());
    }

    #[test]
    fn keys_order_and_bounds() {
        let k = records::audit("acme", 5_000_000_000, "abc");
        assert_eq!(time_ns(&k), Some(5_000_000_000));
        // Starting after `start_after(5 s)` reaches an event at exactly 5 s
        // but not one a nanosecond earlier.
        let start = start_after("acme", 5).unwrap();
        assert!(k > start);
        assert!(records::audit("acme", 4_999_999_999, "zzz") < start);
        let marker = marker_key("acme", "5000000000").unwrap();
        assert!(k < marker);
        assert!(records::audit("acme", 5_000_000_001, "a") > marker);
    }

    #[test]
    fn retention_has_a_floor() {
        assert_eq!(retention_seconds(None), Ok(30 * 86_400));
        assert_eq!(retention_seconds(Some("7")), Ok(7 * 86_400));
        assert!(retention_seconds(Some("6")).is_err());
        assert!(retention_seconds(Some("a week")).is_err());
    }
}
