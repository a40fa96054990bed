//! The webhook trigger, a scheduled job (`berth_domain::jobs`): it reads
//! the event log after its cursor, creates one delivery per event and
//! webhook policy that takes it (in the same commit that moves the
//! cursor, so none is made twice or lost), and sends due deliveries to the
//! policies' targets through outbound `wasi:http`.
//!
//! Delivery is at least once (receivers deduplicate by event id) and in
//! order per policy, hence per repository: a delivery waiting for a retry
//! holds back the later ones of its policy. Failures are retried with
//! exponential backoff and jitter (`Retry-After` honoured on 429/503) up to
//! `webhook_max_attempts` or `webhook_max_age_seconds`, then dead-lettered
//! (`Failed`); a 410 Gone disables the target. Every attempt is logged in
//! the delivery (`list_instance_webhook_jobs`, `job_detail`).
//!
//! - `POST /berth/jobs/webhooks/tick`: one run; 200 with what it did
//!   (`result.next_run_in_ms`: when a retry is due, so the caller can come
//!   back then), 409 while another run holds the lease.
//! - `GET /berth/jobs/webhooks`: the running lease and the last run.

use berth_domain::events::{self, Event};
use berth_domain::swr::SwrError;
use berth_domain::webhooks::{self as wh, Attempt, Delivery, Outcome, Policy, RetryPolicy, status};
use berth_guest::http::{Incoming, Reply};
use berth_guest::jobs;
use berth_guest::manage::{fault, oci_fault, ok_json};
use berth_guest::store::{self, Precondition, StoreError, WriteOp, credentials, metadata};
use spin_sdk::wasip3::http::types::{ErrorCode, Method, Request, Response};
use std::collections::HashMap;

struct Webhooks;
spin_sdk::wasip3::http::service::export!(Webhooks);

const JOB: &str = "webhooks";
const LEASE_SECONDS: u64 = 300;
/// Events fanned out per metadata page, and pages per run.
const EVENT_PAGE: u32 = 200;
const EVENT_PAGES: usize = 10;
/// Deliveries looked at per run.
const DELIVERIES: u32 = 500;

impl spin_sdk::wasip3::exports::http::handler::Guest for Webhooks {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let req = Incoming::new(request);
        let reply = match dispatch(&req).await {
            Ok(r) => r,
            Err(e) => Reply::json(e.status, e.body()),
        };
        Ok(reply.into_response(req))
    }
}

async fn dispatch(req: &Incoming) -> Result<Reply, SwrError> {
    let tick = berth_domain::jobs::tick_path(JOB);
    let status_path = format!("/berth/jobs/{JOB}");
    let path = req.path.trim_end_matches('/');
    match (&req.method, path) {
        (Method::Post, p) if p == tick => {
            let trigger = jobs::authorize(req, JOB).await?;
            let mut run = jobs::begin(JOB, LEASE_SECONDS, trigger).await?;
            let result = work(&mut run).await;
            let record = run.finish(&result).await;
            ok_json(
                200,
                &serde_json::json!({
                    "job": JOB,
                    "run": record.holder,
                    "trigger": record.trigger,
                    "result": result?,
                }),
            )
        }
        (Method::Get, p) if p == status_path => {
            jobs::authorize(req, JOB).await?;
            ok_json(200, &jobs::status(JOB).await?)
        }
        (_, p) if p == tick || p == status_path => Err(SwrError::method_not_allowed()),
        _ => Err(SwrError::not_found(format!("no job API at {}", req.path))),
    }
}

/// Every tenant's policies, by id (with the key and version to update them).
async fn policies() -> Result<HashMap<u64, (Policy, String, u64)>, SwrError> {
    let entries = store::scan_all(wh::ALL_POLICIES).await.map_err(fault)?;
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let p: Policy = serde_json::from_slice(&e.value).ok()?;
            Some((p.id, (p, e.key, e.version)))
        })
        .collect())
}

async fn work(run: &mut jobs::Run) -> Result<serde_json::Value, SwrError> {
    let mut policies = policies().await?;
    let fanned = fan_out(&policies).await?;
    run.renew(LEASE_SECONDS).await?;
    let sent = deliver(run, &mut policies).await?;
    Ok(serde_json::json!({
        "events_read": fanned.0,
        "deliveries_created": fanned.1,
        "delivered": sent.delivered,
        "retrying": sent.retrying,
        "dead_lettered": sent.dead,
        // The host's scheduler comes back then (a retry is due).
        "next_run_in_ms": sent.next_due_ms.map(|at| at.saturating_sub(now_ms())),
    }))
}

/// Reads events after the cursor and creates their deliveries; returns
/// (events read, deliveries created).
async fn fan_out(policies: &HashMap<u64, (Policy, String, u64)>) -> Result<(u64, u64), SwrError> {
    let (mut read, mut created) = (0u64, 0u64);
    for _ in 0..EVENT_PAGES {
        let cursor = store::get(wh::CURSOR).await.map_err(oci_fault)?;
        let (after, precondition) = match &cursor {
            Some(e) => (
                String::from_utf8_lossy(&e.value).parse::<u64>().ok(),
                Precondition::Version(e.version),
            ),
            None => (None, Precondition::Absent),
        };
        let page = metadata::scan(
            events::PREFIX.to_string(),
            after.map(events::key),
            EVENT_PAGE,
        )
        .await
        .map_err(fault)?;
        let Some(last) = page.last().and_then(|e| events::id_of(&e.key)) else {
            break;
        };
        let now = store::now();
        let mut ops = vec![WriteOp::Put((
            wh::CURSOR.to_string(),
            last.to_string().into_bytes(),
            precondition,
        ))];
        for entry in &page {
            let Some(event) = Event::parse(&entry.key, &entry.value) else {
                continue;
            };
            read += 1;
            for (policy, _, _) in policies.values() {
                if !policy.takes(&event) {
                    continue;
                }
                let delivery = Delivery {
                    policy: policy.id,
                    event: event.id,
                    event_type: wh::event_type(event.record.kind)
                        .unwrap_or_default()
                        .to_string(),
                    status: status::PENDING.into(),
                    status_text: "waiting to be sent".into(),
                    attempts: Vec::new(),
                    next_at_ms: 0,
                    created: now,
                    updated: now,
                };
                ops.push(store::put_json(wh::job_key(policy.id, event.id), &delivery));
                ops.push(store::put(wh::pending_key(policy.id, event.id), Vec::new()));
                created += 1;
            }
        }
        store::commit(ops).await.map_err(fault)?;
        if page.len() < EVENT_PAGE as usize {
            break;
        }
    }
    Ok((read, created))
}

#[derive(Default)]
struct Sent {
    delivered: u32,
    retrying: u32,
    dead: u32,
    /// When the earliest waiting retry is due (ms since the epoch).
    next_due_ms: Option<u64>,
}

impl Sent {
    fn due_at(&mut self, at: u64) {
        self.next_due_ms = Some(self.next_due_ms.map_or(at, |n| n.min(at)));
    }
}

fn retry_policy() -> RetryPolicy {
    let d = RetryPolicy::default();
    RetryPolicy {
        max_attempts: store::limit("webhook_max_attempts", d.max_attempts.into()) as u32,
        max_age_secs: store::limit("webhook_max_age_seconds", d.max_age_secs),
        base_ms: store::limit("webhook_retry_base_ms", d.base_ms),
        ..d
    }
}

fn now_ms() -> u64 {
    (store::now_ns() / 1_000_000) as u64
}

/// Sends what is due, policy by policy in event order.
async fn deliver(
    run: &mut jobs::Run,
    policies: &mut HashMap<u64, (Policy, String, u64)>,
) -> Result<Sent, SwrError> {
    let retry = retry_policy();
    let registry = store::config::get("registry_host")
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost:5000".into());
    let pending = metadata::scan(wh::PENDING.to_string(), None, DELIVERIES)
        .await
        .map_err(fault)?;
    let mut sent = Sent::default();
    let mut held: std::collections::HashSet<u64> = Default::default();
    let started = now_ms();
    for entry in pending {
        let Some((policy_id, event_id)) = wh::parse_pending(&entry.key) else {
            continue;
        };
        if held.contains(&policy_id) {
            continue;
        }
        // Long runs keep their lease.
        if now_ms() - started > 60_000 {
            run.renew(LEASE_SECONDS).await?;
        }
        let job_key = wh::job_key(policy_id, event_id);
        let Some(job) = store::get(&job_key).await.map_err(oci_fault)? else {
            store::commit(vec![store::delete(entry.key)])
                .await
                .map_err(fault)?;
            continue;
        };
        let Ok(mut delivery) = serde_json::from_slice::<Delivery>(&job.value) else {
            continue;
        };
        let now = now_ms();
        if delivery.next_at_ms > now {
            // Later deliveries of this policy wait behind this one.
            held.insert(policy_id);
            sent.due_at(delivery.next_at_ms);
            continue;
        }
        let Some((policy, policy_key, policy_version)) = policies.get(&policy_id).cloned() else {
            // The policy went; its deliveries go with it.
            store::commit(vec![store::delete(entry.key), store::delete(job_key)])
                .await
                .map_err(fault)?;
            continue;
        };
        let target = policy.targets.first().cloned();
        let stop = |d: &mut Delivery, text: &str| {
            d.status = status::STOPPED.into();
            d.status_text = text.into();
        };
        let event = store::get(&events::key(event_id))
            .await
            .map_err(oci_fault)?;
        let event = event.and_then(|e| Event::parse(&e.key, &e.value));
        let mut ops = Vec::new();
        match (target, event) {
            (None, _) => stop(&mut delivery, "the policy has no target"),
            (Some(t), _) if t.gone => stop(&mut delivery, "the target answered 410 Gone earlier"),
            (Some(_), _) if !policy.enabled => stop(&mut delivery, "the policy is disabled"),
            (_, None) => stop(&mut delivery, "the event is no longer in the log"),
            (Some(target), Some(event)) => {
                let attempt = send(&target, &event, &registry).await;
                let status = attempt.0.status;
                delivery.attempts.push(attempt.0);
                let n = delivery.attempts.len() as u32;
                let jitter = (store::now_ns() % 1000) as f64 / 1000.0;
                match retry.after(status, n, delivery.created, now_ms(), attempt.1, jitter) {
                    Outcome::Delivered => {
                        delivery.status = status::SUCCEED.into();
                        delivery.status_text = format!("delivered: {}", status.unwrap_or(0));
                        sent.delivered += 1;
                    }
                    Outcome::Retry(at) => {
                        delivery.status = status::PENDING.into();
                        delivery.status_text = format!("attempt {n} failed; retrying");
                        delivery.next_at_ms = at;
                        held.insert(policy_id);
                        sent.retrying += 1;
                        sent.due_at(at);
                    }
                    Outcome::DeadLetter(why) => {
                        delivery.status = status::FAILED.into();
                        delivery.status_text = format!("dead letter: {why}");
                        sent.dead += 1;
                    }
                    Outcome::Gone => {
                        delivery.status = status::FAILED.into();
                        delivery.status_text =
                            "410 Gone: the target is disabled until the policy is enabled again"
                                .into();
                        let mut updated = policy.clone();
                        for t in &mut updated.targets {
                            t.gone = true;
                        }
                        ops.push(WriteOp::Put((
                            policy_key.clone(),
                            serde_json::to_vec(&updated).expect("policies serialize"),
                            Precondition::Version(policy_version),
                        )));
                        policies.insert(policy_id, (updated, policy_key, policy_version + 1));
                        sent.dead += 1;
                    }
                }
            }
        }
        delivery.updated = store::now();
        let last = delivery.status != status::PENDING;
        ops.push(store::put_json(job_key, &delivery));
        if last {
            ops.push(store::delete(entry.key));
        }
        match store::commit(ops).await {
            Ok(v) => {
                // Track the policy's new version after a 410.
                if let Some((p, _, version)) = policies.get_mut(&policy_id)
                    && p.targets.iter().any(|t| t.gone)
                    && v.len() > 1
                {
                    *version = v[0];
                }
            }
            // The policy changed meanwhile: the next run sees it.
            Err(StoreError::Conflict) => {
                held.insert(policy_id);
            }
            Err(e) => return Err(fault(e)),
        }
    }
    Ok(sent)
}

/// One attempt: what happened, and the receiver's `Retry-After` (s).
async fn send(target: &wh::StoredTarget, event: &Event, registry: &str) -> (Attempt, Option<u64>) {
    use http_body_util::BodyExt;
    let payload = wh::payload(target.payload_format, event, registry);
    let mut builder = spin_sdk::http::Request::builder()
        .method("POST")
        .uri(&target.address)
        .header("content-type", payload.content_type)
        .header(
            "user-agent",
            concat!("berth-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header("x-berth-event-id", event.id.to_string())
        // A known length: receivers need not take chunked bodies.
        .header("content-length", payload.body.len().to_string());
    for (k, v) in &payload.headers {
        builder = builder.header(k, v);
    }
    let unseal = |hex_text: &Option<String>| -> Option<String> {
        let sealed = hex::decode(hex_text.as_ref()?).ok()?;
        String::from_utf8(credentials::unseal(&sealed)?).ok()
    };
    if let Some(header) = unseal(&target.sealed_auth_header) {
        for (k, v) in wh::parse_auth_header(&header).unwrap_or_default() {
            builder = builder.header(k, v);
        }
    }
    if let Some(secret) = unseal(&target.sealed_secret) {
        builder = builder.header(
            "x-berth-signature-256",
            wh::signature(secret.as_bytes(), &payload.body),
        );
    }
    if target.skip_cert_verify {
        builder = builder.header("berth-insecure-tls", "1");
    }
    let at_ms = now_ms();
    let body = http_body_util::Full::new(bytes::Bytes::from(payload.body));
    let request = match builder.body(body) {
        Ok(r) => r,
        Err(e) => {
            return (
                Attempt {
                    at_ms,
                    status: None,
                    latency_ms: 0,
                    error: Some(format!("invalid request: {e}")),
                },
                None,
            );
        }
    };
    match spin_sdk::http::send(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            // Read (a little of) the answer, for the log of failures.
            let text = match response.into_body().collect().await {
                Ok(b) => String::from_utf8_lossy(&b.to_bytes()[..])
                    .chars()
                    .take(200)
                    .collect(),
                Err(_) => String::new(),
            };
            let error = (!(200..300).contains(&status)).then(|| format!("HTTP {status}: {text}"));
            (
                Attempt {
                    at_ms,
                    status: Some(status),
                    latency_ms: now_ms() - at_ms,
                    error,
                },
                retry_after,
            )
        }
        Err(e) => (
            Attempt {
                at_ms,
                status: None,
                latency_ms: now_ms() - at_ms,
                error: Some(format!("{e:?}")),
            },
            None,
        ),
    }
}
