//! The event log: a transactional outbox of what changed in repositories.
//!
//! Every acknowledged change to a repository's content (a manifest pushed,
//! a tag or manifest deleted, a repository deleted; later: aged out, synced,
//! collected) appends one [`EventRecord`] under [`PREFIX`] in the same
//! metadata commit as the change itself (`write-op::append`). So a change
//! that was acknowledged always has its event, even if the host dies right
//! after answering, and a change that was refused or never committed has
//! none. The store names each appended record `event/<commit version, 20
//! digits>`: the log is in commit order (so in order per repository), and
//! that number is the event's id. Consumers (the webhook trigger, the
//! replication job) scan the log after their own cursor.
//!
//! Pulls are not events: they raise a last-pull time per manifest
//! ([`crate::keys::pulled`]) that the provider writes later, so a pull
//! never waits for a write.

use serde::{Deserialize, Serialize};

/// Where the log lives in metadata.
pub const PREFIX: &str = "event/";

/// What happened. The names are the `type` suffixes of the CloudEvents
/// Berth sends (`io.berth.<name>`, CloudEvents 1.0 §3.1.1 `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A manifest was stored, by tag (`tag` set) or by digest.
    #[serde(rename = "manifest.pushed")]
    ManifestPushed,
    /// A tag was removed; its manifest stays.
    #[serde(rename = "tag.deleted")]
    TagDeleted,
    /// A manifest was removed, with every tag pointing at it.
    #[serde(rename = "manifest.deleted")]
    ManifestDeleted,
    /// A repository was removed with everything in it.
    #[serde(rename = "repository.deleted")]
    RepositoryDeleted,
    /// An aging rule removed a tag (`crate::retention`); its manifest stays.
    #[serde(rename = "tag.aged_out")]
    TagAgedOut,
    /// A replication execution ended (`crate::replication::runs`): the
    /// record's `detail` holds its figures; `repository` is the local
    /// repository of its last item.
    #[serde(rename = "replication.completed")]
    ReplicationCompleted,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::ManifestPushed => "manifest.pushed",
            EventKind::TagDeleted => "tag.deleted",
            EventKind::ManifestDeleted => "manifest.deleted",
            EventKind::RepositoryDeleted => "repository.deleted",
            EventKind::TagAgedOut => "tag.aged_out",
            EventKind::ReplicationCompleted => "replication.completed",
        }
    }

    /// The CloudEvents `type` attribute (reverse-DNS prefixed).
    pub fn cloudevents_type(self) -> String {
        format!("io.berth.{}", self.name())
    }
}

/// One change, as stored in the log (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub kind: EventKind,
    /// When the change was made, in nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The tenant that owns the repository.
    pub tenant: String,
    /// The repository (`organization/name…`).
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `algorithm:hex` of the manifest concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Size of the manifest in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Who made the change (`user@tenant`); empty when no user did.
    pub operator: String,
    /// The client's address (`ip:port`) as the host reported it.
    pub client: String,
    /// What else the event says, by kind (a replication's figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl EventRecord {
    /// A record of `kind` on `repository` with no manifest details yet.
    pub fn new(kind: EventKind, tenant: &str, repository: &str, time_ns: u64) -> EventRecord {
        EventRecord {
            kind,
            time_ns,
            tenant: tenant.to_string(),
            repository: repository.to_string(),
            tag: None,
            digest: None,
            media_type: None,
            size: None,
            operator: String::new(),
            client: String::new(),
            detail: None,
        }
    }

    /// The record about manifest `digest` (under `tag`, if any), with the
    /// manifest's media type and size when known.
    pub fn about(
        mut self,
        tag: Option<&str>,
        digest: &str,
        manifest: Option<(&str, usize)>,
    ) -> EventRecord {
        self.tag = tag.map(str::to_string);
        self.digest = Some(digest.to_string());
        self.media_type = manifest.map(|(m, _)| m.to_string());
        self.size = manifest.map(|(_, n)| n as u64);
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("event records serialize")
    }
}

/// An event read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Its position in the log (the number in its key): unique, and larger
    /// for every later event.
    pub id: u64,
    pub record: EventRecord,
}

impl Event {
    /// The event stored at `key` with `value`; `None` for a key outside
    /// the log or a value that is not a record.
    pub fn parse(key: &str, value: &[u8]) -> Option<Event> {
        Some(Event {
            id: id_of(key)?,
            record: serde_json::from_slice(value).ok()?,
        })
    }
}

impl Event {
    /// The event as Berth's admin API lists it (`GET /berth/v1/events`):
    /// `id` (a decimal string), `type` ([`EventKind::name`]), `time`
    /// (RFC 3339 with nanoseconds) and the record's other fields.
    pub fn view(&self) -> serde_json::Value {
        let r = &self.record;
        serde_json::json!({
            "id": self.id.to_string(),
            "type": r.kind.name(),
            "time": rfc3339_nanos(r.time_ns),
            "tenant": r.tenant,
            "repository": r.repository,
            "tag": r.tag,
            "digest": r.digest,
            "media_type": r.media_type,
            "size": r.size,
            "operator": r.operator,
            "client": r.client,
            "detail": r.detail,
        })
    }
}

/// `2026-11-29T18:00:00.123456789Z` (RFC 3339) for nanoseconds since the
/// epoch.
pub fn rfc3339_nanos(ns: u64) -> String {
    let secs = crate::swr::rfc3339(ns / 1_000_000_000);
    format!("{}.{:09}Z", secs.trim_end_matches('Z'), ns % 1_000_000_000)
}

/// Events are kept this long by default (`event_retention_days`).
pub const RETENTION_DAYS: u64 = 30;

/// Whether the gc job may remove event `id` made at `time_ns`: older than
/// `cutoff_ns`, and already read by every consumer (`consumed`: the
/// lowest of their cursors; none: a consumer has read nothing yet, so
/// nothing goes).
pub fn prunable(id: u64, time_ns: u64, cutoff_ns: u64, consumed: Option<u64>) -> bool {
    time_ns < cutoff_ns && consumed.is_some_and(|c| id <= c)
}

/// The id of the event at `key`.
pub fn id_of(key: &str) -> Option<u64> {
    let digits = key.strip_prefix(PREFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The key of event `id`: a scan `after` it resumes behind that event.
pub fn key(id: u64) -> String {
    format!("{PREFIX}{id:020}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_events_every_consumer_read_are_pruned() {
        assert!(prunable(5, 10, 20, Some(5)));
        assert!(!prunable(6, 10, 20, Some(5)), "not yet read");
        assert!(!prunable(5, 20, 20, Some(9)), "not old enough");
        assert!(!prunable(1, 0, 20, None), "no consumer has read anything");
    }

    #[test]
    fn keys_and_ids_round_trip_in_order() {
        assert_eq!(id_of(&key(42)), Some(42));
        assert!(key(9) < key(10) && key(10) < key(u64::MAX));
        assert_eq!(id_of("event/12"), None);
        assert_eq!(id_of("other/00000000000000000001"), None);
    }

    #[test]
    fn records_round_trip() {
        let mut r = EventRecord::new(EventKind::ManifestPushed, "acme", "acme/app", 7);
        r.tag = Some("v1".into());
        let e = Event::parse(&key(3), &r.encode()).unwrap();
        assert_eq!(e.id, 3);
        assert_eq!(e.record, r);
        let json: serde_json::Value = serde_json::from_slice(&r.encode()).unwrap();
        assert_eq!(json["kind"], "manifest.pushed");
        assert!(json.get("digest").is_none());
        assert_eq!(
            rfc3339_nanos(1_700_000_000_000_000_042),
            "2023-11-14T22:13:20.000000042Z"
        );
        assert_eq!(
            EventKind::TagDeleted.cloudevents_type(),
            "io.berth.tag.deleted"
        );
    }
}
