//! `GET /metrics`: what this host served and what its stores hold, in
//! OpenMetrics text 1.0.0 (`prometheus-client`; Prometheus reads it, and
//! the answer says so in its `Content-Type`).
//!
//! Counted as requests pass (atomic additions on handles made at start,
//! one label lookup per request for its status):
//!
//! - `berth_http_requests_total{family, method, status}` and
//!   `berth_http_request_duration_seconds{family}` (from the request's
//!   arrival to its answer's last byte), `berth_http_requests_in_flight{family}`
//!   (`family="uploads"`: layer uploads under way on this host);
//! - `berth_http_request_bytes_total{family}`, `berth_http_response_bytes_total{family}`;
//! - `berth_outbound_requests_total{component, result}`: what components
//!   sent (`component="webhooks"`: webhook deliveries; `result` a status
//!   class, or `error` when nothing answered);
//! - `berth_job_runs_total{job, result}` and `berth_job_run_duration_seconds{job}`:
//!   job ticks run here, scheduled or called (`result`: `succeeded`,
//!   `busy` when another run held the lease, `failed`).
//!
//! Read from the stores when scraped: `berth_uploads_open` (upload
//! sessions), `berth_events_pending{consumer}` (events a consumer has not
//! read yet), `berth_metadata_store_bytes`, and `berth_blobs_stored` /
//! `berth_blob_store_bytes` (a listing of the blob store, redone at most
//! every [`BLOB_FIGURES_TTL`]).
//!
//! Who may scrape: addresses in `--metrics-allow` (loopback by default),
//! or anyone presenting `BERTH_METRICS_TOKEN` as a Bearer token.

use crate::capabilities::Backends;
use ipnet::IpNet;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The endpoint family a request belongs to (the `family` label).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RouteFamily {
    /// `GET /v2/`.
    Base,
    Catalog,
    Tags,
    Manifests,
    Blobs,
    Uploads,
    Referrers,
    /// SWR's enterprise API under `/v2/<project>/instances`.
    Enterprise,
    /// `/service/token`.
    Token,
    /// SWR's shared-edition API (`/v2/manage`, `/v3/manage`, versions).
    Manage,
    /// `/berth/v1`.
    Admin,
    /// `/berth/jobs`.
    Jobs,
    /// `/console`.
    Console,
    Health,
    Metrics,
    Other,
}

const FAMILIES: usize = 16;

impl RouteFamily {
    const ALL: [RouteFamily; FAMILIES] = [
        RouteFamily::Base,
        RouteFamily::Catalog,
        RouteFamily::Tags,
        RouteFamily::Manifests,
        RouteFamily::Blobs,
        RouteFamily::Uploads,
        RouteFamily::Referrers,
        RouteFamily::Enterprise,
        RouteFamily::Token,
        RouteFamily::Manage,
        RouteFamily::Admin,
        RouteFamily::Jobs,
        RouteFamily::Console,
        RouteFamily::Health,
        RouteFamily::Metrics,
        RouteFamily::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RouteFamily::Base => "base",
            RouteFamily::Catalog => "catalog",
            RouteFamily::Tags => "tags",
            RouteFamily::Manifests => "manifests",
            RouteFamily::Blobs => "blobs",
            RouteFamily::Uploads => "uploads",
            RouteFamily::Referrers => "referrers",
            RouteFamily::Enterprise => "enterprise",
            RouteFamily::Token => "token",
            RouteFamily::Manage => "manage",
            RouteFamily::Admin => "admin",
            RouteFamily::Jobs => "jobs",
            RouteFamily::Console => "console",
            RouteFamily::Health => "health",
            RouteFamily::Metrics => "metrics",
            RouteFamily::Other => "other",
        }
    }

    /// The family of a request path, from its shape alone (no parsing of
    /// names: repository names may hold any of the words looked for, so
    /// the last one decides, as the OCI routes end in them).
    pub fn of(path: &str) -> RouteFamily {
        if let Some(rest) = path.strip_prefix("/v2/") {
            if rest.is_empty() {
                return RouteFamily::Base;
            }
            if rest == "_catalog" {
                return RouteFamily::Catalog;
            }
            if rest.starts_with("manage/") {
                return RouteFamily::Manage;
            }
            let tail = |word: &str| rest.rfind(word);
            let candidates = [
                (tail("/manifests/"), RouteFamily::Manifests),
                (tail("/blobs/uploads"), RouteFamily::Uploads),
                (tail("/blobs/"), RouteFamily::Blobs),
                (tail("/tags/list"), RouteFamily::Tags),
                (tail("/referrers/"), RouteFamily::Referrers),
            ];
            // The rightmost marker wins; `/blobs/uploads` over `/blobs/`
            // at the same place.
            let mut best: Option<(usize, RouteFamily)> = None;
            for (at, family) in candidates {
                if let Some(at) = at
                    && best.is_none_or(|(b, _)| at > b)
                {
                    best = Some((at, family));
                }
            }
            return match best {
                Some((_, f)) => f,
                None if rest.contains("/instances") => RouteFamily::Enterprise,
                None => RouteFamily::Other,
            };
        }
        match path {
            "/service/token" => RouteFamily::Token,
            "/healthz" => RouteFamily::Health,
            "/metrics" => RouteFamily::Metrics,
            "/" | "/v2" | "/v3" => RouteFamily::Manage,
            p if p.starts_with("/v3/manage/") => RouteFamily::Manage,
            p if p.starts_with("/berth/v1/") => RouteFamily::Admin,
            p if p.starts_with("/berth/jobs/") => RouteFamily::Jobs,
            p if p == "/console" || p.starts_with("/console/") => RouteFamily::Console,
            _ => RouteFamily::Other,
        }
    }
}

impl EncodeLabelValue for RouteFamily {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.name())
    }
}

/// The `method` label: the methods registries see, and `OTHER`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct MethodLabel(&'static str);

impl MethodLabel {
    pub fn of(m: &hyper::Method) -> MethodLabel {
        MethodLabel(match *m {
            hyper::Method::GET => "GET",
            hyper::Method::HEAD => "HEAD",
            hyper::Method::POST => "POST",
            hyper::Method::PUT => "PUT",
            hyper::Method::PATCH => "PATCH",
            hyper::Method::DELETE => "DELETE",
            hyper::Method::OPTIONS => "OPTIONS",
            _ => "OTHER",
        })
    }
}

impl EncodeLabelValue for MethodLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    family: RouteFamily,
    method: MethodLabel,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabel {
    family: RouteFamily,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboundLabels {
    component: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabel {
    consumer: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

fn job_histogram() -> Histogram {
    // 10 ms to ~20 min.
    Histogram::new(exponential_buckets(0.01, 2.0, 18))
}

/// Every metric this host keeps; [`METRICS`] is the one instance.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    // Handles per family, made once: no lookup per request.
    duration: [Histogram; FAMILIES],
    in_flight: [Gauge; FAMILIES],
    bytes_in: [Counter; FAMILIES],
    bytes_out: [Counter; FAMILIES],
    outbound: Family<OutboundLabels, Counter>,
    job_runs: Family<JobLabels, Counter>,
    job_duration: Family<JobLabel, Histogram, fn() -> Histogram>,
    uploads_open: Gauge,
    events_pending: Family<ConsumerLabel, Gauge>,
    metadata_bytes: Gauge,
    blobs_stored: Gauge,
    blob_bytes: Gauge,
    blob_figures_at: Mutex<Option<Instant>>,
}

/// The host's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// How long a listing of the blob store stands for its figures.
pub const BLOB_FIGURES_TTL: Duration = Duration::from_secs(300);

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by endpoint family, method and status",
            requests.clone(),
        );
        let duration_family =
            Family::<FamilyLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its answer's last byte",
            duration_family.clone(),
        );
        let in_flight_family = Family::<FamilyLabel, Gauge>::default();
        registry.register(
            "http_requests_in_flight",
            "Requests being answered now (family uploads: layer uploads under way)",
            in_flight_family.clone(),
        );
        let bytes_in_family = Family::<FamilyLabel, Counter>::default();
        registry.register(
            "http_request_bytes",
            "Request body bytes received",
            bytes_in_family.clone(),
        );
        let bytes_out_family = Family::<FamilyLabel, Counter>::default();
        registry.register(
            "http_response_bytes",
            "Response body bytes sent",
            bytes_out_family.clone(),
        );
        let outbound = Family::<OutboundLabels, Counter>::default();
        registry.register(
            "outbound_requests",
            "Requests components sent (component webhooks: webhook deliveries), by answer status class or error",
            outbound.clone(),
        );
        let job_runs = Family::<JobLabels, Counter>::default();
        registry.register(
            "job_runs",
            "Job ticks run on this host (scheduled or called), by outcome",
            job_runs.clone(),
        );
        let job_duration =
            Family::<JobLabel, Histogram, fn() -> Histogram>::new_with_constructor(job_histogram);
        registry.register(
            "job_run_duration_seconds",
            "How long job ticks took",
            job_duration.clone(),
        );
        let uploads_open = Gauge::default();
        registry.register(
            "uploads_open",
            "Upload sessions started and not yet finished, cancelled or expired",
            uploads_open.clone(),
        );
        let events_pending = Family::<ConsumerLabel, Gauge>::default();
        registry.register(
            "events_pending",
            "Events a consumer (webhooks, replication) has not read yet",
            events_pending.clone(),
        );
        let metadata_bytes = Gauge::default();
        registry.register(
            "metadata_store_bytes",
            "Bytes the metadata store takes on disk",
            metadata_bytes.clone(),
        );
        let blobs_stored = Gauge::default();
        registry.register(
            "blobs_stored",
            "Blobs in the blob store (listed at most every 5 minutes)",
            blobs_stored.clone(),
        );
        let blob_bytes = Gauge::default();
        registry.register(
            "blob_store_bytes",
            "Bytes of the blobs in the blob store (listed at most every 5 minutes)",
            blob_bytes.clone(),
        );
        // Handles per family, made now: every family shows from the start.
        Metrics {
            duration: RouteFamily::ALL.map(|family| {
                duration_family
                    .get_or_create(&FamilyLabel { family })
                    .clone()
            }),
            in_flight: RouteFamily::ALL.map(|family| {
                in_flight_family
                    .get_or_create(&FamilyLabel { family })
                    .clone()
            }),
            bytes_in: RouteFamily::ALL.map(|family| {
                bytes_in_family
                    .get_or_create(&FamilyLabel { family })
                    .clone()
            }),
            bytes_out: RouteFamily::ALL.map(|family| {
                bytes_out_family
                    .get_or_create(&FamilyLabel { family })
                    .clone()
            }),
            registry,
            requests,
            outbound,
            job_runs,
            job_duration,
            uploads_open,
            events_pending,
            metadata_bytes,
            blobs_stored,
            blob_bytes,
            blob_figures_at: Mutex::new(None),
        }
    }

    /// A request has arrived: in flight until the guard drops (its answer
    /// is over, or the request was abandoned before one).
    pub fn started(&'static self, family: RouteFamily) -> InFlight {
        self.in_flight[family as usize].inc();
        InFlight(family)
    }

    /// Request body bytes received.
    pub fn received(&self, family: RouteFamily, bytes: u64) {
        self.bytes_in[family as usize].inc_by(bytes);
    }

    /// A request's answer is over (sent, or abandoned by the client).
    pub fn finished(
        &self,
        family: RouteFamily,
        method: MethodLabel,
        status: u16,
        bytes_out: u64,
        elapsed: Duration,
    ) {
        let i = family as usize;
        self.bytes_out[i].inc_by(bytes_out);
        self.duration[i].observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                family,
                method,
                status,
            })
            .inc();
    }

    /// A job tick answered `status` after `elapsed`.
    pub fn job_ran(&self, job: &str, status: u16, elapsed: Duration) {
        let result = match status {
            200 => "succeeded",
            409 => "busy",
            _ => "failed",
        };
        self.job_runs
            .get_or_create(&JobLabels {
                job: job.to_string(),
                result,
            })
            .inc();
        if status == 200 {
            self.job_duration
                .get_or_create(&JobLabel {
                    job: job.to_string(),
                })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// A component's outbound request got `status` (none: no answer).
    pub fn sent(&self, component: &str, status: Option<u16>) {
        let result = match status {
            Some(100..=199) => "1xx",
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(_) => "5xx",
            None => "error",
        };
        self.outbound
            .get_or_create(&OutboundLabels {
                component: component.to_string(),
                result,
            })
            .inc();
    }

    /// Reads the store figures and encodes every metric.
    pub async fn render(&self, backends: &Backends) -> String {
        self.read_stores(backends).await;
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    async fn read_stores(&self, backends: &Backends) {
        use berth_domain::{events, keys, replication, webhooks};
        let meta = &backends.metadata;
        match meta.count(&keys::upload(""), None).await {
            Ok(n) => {
                self.uploads_open.set(n as i64);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: upload sessions not counted"),
        }
        for (consumer, cursor_key) in [
            ("webhooks", webhooks::CURSOR),
            ("replication", replication::runs::CURSOR),
        ] {
            let cursor = match meta.get(cursor_key).await {
                Ok(c) => c.and_then(|e| String::from_utf8_lossy(&e.value).parse::<u64>().ok()),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: cursor not read");
                    continue;
                }
            };
            let after = cursor.map(events::key);
            match meta.count(events::PREFIX, after.as_deref()).await {
                Ok(n) => {
                    self.events_pending
                        .get_or_create(&ConsumerLabel { consumer })
                        .set(n as i64);
                }
                Err(e) => tracing::warn!(error = %e, "metrics: events not counted"),
            }
        }
        match meta.store_bytes().await {
            Ok(n) => {
                self.metadata_bytes.set(n as i64);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: metadata size not read"),
        }
        let stale = self
            .blob_figures_at
            .lock()
            .unwrap()
            .is_none_or(|at| at.elapsed() >= BLOB_FIGURES_TTL);
        if stale {
            let (mut count, mut bytes, mut after) = (0i64, 0i64, None::<String>);
            loop {
                match backends.blobs.list(after.as_deref(), 1000).await {
                    Ok(page) => {
                        count += page.len() as i64;
                        bytes += page.iter().map(|b| b.size as i64).sum::<i64>();
                        if page.len() < 1000 {
                            self.blobs_stored.set(count);
                            self.blob_bytes.set(bytes);
                            *self.blob_figures_at.lock().unwrap() = Some(Instant::now());
                            break;
                        }
                        after = page.last().map(|b| b.digest.clone());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics: blob store not listed");
                        break;
                    }
                }
            }
        }
    }
}

/// A request in flight (`berth_http_requests_in_flight`), until dropped.
pub struct InFlight(RouteFamily);

impl Drop for InFlight {
    fn drop(&mut self) {
        METRICS.in_flight[self.0 as usize].dec();
    }
}

/// Who may scrape `/metrics`.
pub struct Access {
    /// Peers let in without a token.
    pub allow: Vec<IpNet>,
    /// A Bearer token that lets anyone in (`BERTH_METRICS_TOKEN`).
    pub token: Option<String>,
}

impl Access {
    /// Whether a scrape from `peer` with `authorization` is let in;
    /// `forwarded`: it came through a proxy (`X-Forwarded-For` or
    /// `Forwarded`), whose own address says nothing of the client's, so
    /// only the token lets it in.
    pub fn allows(&self, peer: IpAddr, forwarded: bool, authorization: Option<&[u8]>) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        if !forwarded && self.allow.iter().any(|n| n.contains(&peer)) {
            return true;
        }
        match (
            &self.token,
            authorization.and_then(|a| a.strip_prefix(b"Bearer ")),
        ) {
            (Some(token), Some(given)) => {
                berth_domain::iam::signing::constant_time_eq(token.as_bytes(), given.trim_ascii())
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_the_routes() {
        for (path, family) in [
            ("/v2/", RouteFamily::Base),
            ("/v2/_catalog", RouteFamily::Catalog),
            ("/v2/a/b/manifests/v1", RouteFamily::Manifests),
            (
                "/v2/manifests/blobs/manifests/latest",
                RouteFamily::Manifests,
            ),
            ("/v2/a/blobs/sha256:00", RouteFamily::Blobs),
            ("/v2/a/blobs/uploads/", RouteFamily::Uploads),
            ("/v2/a/blobs/uploads/abc", RouteFamily::Uploads),
            ("/v2/blobs/x/tags/list", RouteFamily::Tags),
            ("/v2/a/referrers/sha256:00", RouteFamily::Referrers),
            ("/v2/p1/instances/p1/audit-logs", RouteFamily::Enterprise),
            ("/v2/manage/namespaces", RouteFamily::Manage),
            ("/service/token", RouteFamily::Token),
            ("/berth/v1/whoami", RouteFamily::Admin),
            ("/berth/jobs/gc/tick", RouteFamily::Jobs),
            ("/console/", RouteFamily::Console),
            ("/nope", RouteFamily::Other),
        ] {
            assert_eq!(RouteFamily::of(path), family, "{path}");
        }
    }

    #[test]
    fn scrapes_need_an_allowed_peer_or_the_token() {
        let access = Access {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            token: Some("s3cret".into()),
        };
        assert!(access.allows("127.0.0.1".parse().unwrap(), false, None));
        assert!(access.allows("::ffff:127.0.0.1".parse().unwrap(), false, None));
        // Through a proxy on the same host: only with the token.
        assert!(!access.allows("127.0.0.1".parse().unwrap(), true, None));
        assert!(access.allows("127.0.0.1".parse().unwrap(), true, Some(b"Bearer s3cret")));
        let outside: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(!access.allows(outside, false, None));
        assert!(!access.allows(outside, false, Some(b"Bearer wrong")));
        assert!(access.allows(outside, false, Some(b"Bearer s3cret")));
        let no_token = Access {
            allow: vec![],
            token: None,
        };
        assert!(!no_token.allows(outside, false, Some(b"Bearer ")));
    }

    #[test]
    fn requests_show_in_the_text() {
        let m = Metrics::new();
        m.received(RouteFamily::Manifests, 10);
        m.finished(
            RouteFamily::Manifests,
            MethodLabel::of(&hyper::Method::PUT),
            201,
            5,
            Duration::from_millis(3),
        );
        m.job_ran("gc", 200, Duration::from_secs(1));
        m.sent("webhooks", Some(503));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        for line in [
            r#"berth_http_requests_total{family="manifests",method="PUT",status="201"} 1"#,
            r#"berth_http_request_bytes_total{family="manifests"} 10"#,
            r#"berth_http_response_bytes_total{family="manifests"} 5"#,
            r#"berth_job_runs_total{job="gc",result="succeeded"} 1"#,
            r#"berth_outbound_requests_total{component="webhooks",result="5xx"} 1"#,
            r#"berth_http_request_duration_seconds_count{family="manifests"} 1"#,
        ] {
            assert!(out.contains(line), "{line} not in\n{out}");
        }
    }
}
