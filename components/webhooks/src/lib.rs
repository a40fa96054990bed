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
use berth_domain::triggers::{self, Condition, Trigger};
use berth_domain::webhooks::{self as wh, Attempt, Delivery, Outcome, Policy, RetryPolicy, status};
use berth_guest::jobs;
use berth_guest::manage::{fault, oci_fault};
use berth_guest::store::{self, Precondition, WriteOp, metadata};
use spin_sdk::wasip3::http::types::{ErrorCode, Request, Response};
use std::collections::HashMap;

mod kubernetes;

struct Webhooks;
spin_sdk::wasip3::http::service::export!(Webhooks);

const JOB: &str = "webhooks";
const LEASE_SECONDS: u64 = 300;
/// Events fanned out per metadata page, and pages per run.
const EVENT_PAGE: u32 = 200;
const EVENT_PAGES: usize = 10;

impl spin_sdk::wasip3::exports::http::handler::Guest for Webhooks {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        jobs::serve(request, JOB, LEASE_SECONDS, work).await
    }
}

/// What a queue of deliveries belongs to: a webhook policy (enterprise
/// edition) or an image trigger (shared edition), in one id space.
#[derive(Clone)]
enum Subscriber {
    Webhook(Policy),
    /// With its condition, parsed at most once per run, and only when an
    /// event may fire it (a run holds the conditions of the repositories
    /// it delivers for, not of every trigger).
    Trigger(Box<Trigger>, std::cell::OnceCell<Option<Condition>>),
}

/// A subscriber, with the key and version to update it.
#[derive(Clone)]
struct Sub {
    of: Subscriber,
    key: String,
    version: u64,
}

impl Sub {
    fn takes(&self, event: &Event) -> bool {
        match &self.of {
            Subscriber::Webhook(p) => p.takes(event),
            Subscriber::Trigger(t, condition) => {
                t.may_take(event)
                    && condition
                        .get_or_init(|| t.condition())
                        .as_ref()
                        .is_some_and(|c| t.takes(c, event))
            }
        }
    }
}

/// Every tenant's webhook policies and image triggers, by id.
async fn subscribers() -> Result<HashMap<u64, Sub>, SwrError> {
    let mut subs = HashMap::new();
    for e in store::scan_all(wh::ALL_POLICIES).await.map_err(fault)? {
        if let Ok(p) = serde_json::from_slice::<Policy>(&e.value) {
            let sub = Sub {
                key: e.key,
                version: e.version,
                of: Subscriber::Webhook(p.clone()),
            };
            subs.insert(p.id, sub);
        }
    }
    for e in store::scan_all(triggers::ALL).await.map_err(fault)? {
        let Ok(t) = serde_json::from_slice::<Trigger>(&e.value) else {
            continue;
        };
        let sub = Sub {
            key: e.key,
            version: e.version,
            of: Subscriber::Trigger(Box::new(t.clone()), Default::default()),
        };
        subs.insert(t.id, sub);
    }
    Ok(subs)
}

async fn work(run: &mut jobs::Run) -> Result<serde_json::Value, SwrError> {
    let mut policies = subscribers().await?;
    let fanned = fan_out(run, &policies).await?;
    let sent = deliver(run, &mut policies).await?;
    let pruned = prune_log(run, &policies).await?;
    Ok(serde_json::json!({
        "deliveries_pruned": pruned,
        "events_read": fanned.0,
        "deliveries_created": fanned.1,
        "delivered": sent.delivered,
        "retrying": sent.retrying,
        "dead_lettered": sent.dead,
        // The host's scheduler comes back then: at once when deliveries
        // were left for the next run, else when a retry is due.
        "next_run_in_ms": if sent.more || fanned.2 {
            Some(0)
        } else {
            sent.next_due_ms.map(|at| at.saturating_sub(now_ms()))
        },
    }))
}

/// Reads events after the cursor and creates their deliveries; returns
/// (events read, deliveries created).
async fn fan_out(
    run: &mut jobs::Run,
    policies: &HashMap<u64, Sub>,
) -> Result<(u64, u64, bool), SwrError> {
    let (mut read, mut created) = (0u64, 0u64);
    for page_no in 0..EVENT_PAGES {
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
            for (&id, sub) in policies {
                if !sub.takes(&event) {
                    continue;
                }
                let delivery = Delivery {
                    policy: id,
                    event: event.id,
                    event_type: wh::event_type(event.record.kind)
                        .unwrap_or_default()
                        .to_string(),
                    tag: event.record.tag.clone(),
                    status: status::PENDING.into(),
                    status_text: "waiting to be sent".into(),
                    attempts: Vec::new(),
                    next_at_ms: 0,
                    created: now,
                    updated: now,
                };
                ops.push(store::put_json(wh::job_key(id, event.id), &delivery));
                ops.push(store::put(wh::pending_key(id, event.id), Vec::new()));
                created += 1;
            }
        }
        if !run.commit(ops, LEASE_SECONDS).await? {
            // The cursor moved under us: leave the rest to the next run.
            break;
        }
        if page.len() < EVENT_PAGE as usize {
            break;
        }
        if page_no + 1 == EVENT_PAGES {
            // More events than one run reads: come back at once.
            return Ok((read, created, true));
        }
    }
    Ok((read, created, false))
}

/// Finished deliveries removed per run at most (the next run goes on).
const PRUNE_PER_RUN: usize = 2000;

/// Removes finished deliveries older than `webhook_log_retention_days`,
/// and every finished delivery of a policy or trigger that is gone;
/// returns how many. Per policy the log is in event order, so the scan
/// stops at the first delivery to keep: the work is one read per policy
/// with deliveries, plus the garbage's.
async fn prune_log(run: &mut jobs::Run, subs: &HashMap<u64, Sub>) -> Result<usize, SwrError> {
    let days = store::limit("webhook_log_retention_days", wh::LOG_RETENTION_DAYS);
    let now = store::now();
    let cutoff = now.saturating_sub(days.saturating_mul(86_400));
    // Runs come often (every new event wakes the job): prune hourly.
    let last = store::get(PRUNED)
        .await
        .map_err(oci_fault)?
        .and_then(|e| String::from_utf8_lossy(&e.value).parse::<u64>().ok());
    if days > 0 && last.is_some_and(|at| now < at + 3600) {
        return Ok(0);
    }
    let (mut removed, mut finished) = (0, true);
    let started = now_ms();
    let prunable = |e: &metadata::Entry, gone: bool| {
        serde_json::from_slice::<Delivery>(&e.value)
            .is_ok_and(|d| d.status != status::PENDING && (gone || d.updated < cutoff))
    };
    // Each policy's oldest delivery (one read per policy).
    let oldest = store::first_of_groups(wh::ALL_JOBS).await.map_err(fault)?;
    for first in &oldest {
        if removed >= PRUNE_PER_RUN || now_ms().saturating_sub(started) >= BUDGET_MS / 4 {
            finished = false;
            break;
        }
        let Some((policy, _)) = wh::parse_job(&first.key) else {
            continue;
        };
        let gone = !subs.contains_key(&policy);
        // The oldest is kept: nothing of this policy goes (the log is in
        // event order, roughly the order deliveries finish).
        if !prunable(first, gone) {
            continue;
        }
        loop {
            let page = metadata::scan(wh::job_prefix(policy), None, 200)
                .await
                .map_err(fault)?;
            let ops: Vec<WriteOp> = page
                .iter()
                .map_while(|e| {
                    prunable(e, gone)
                        .then(|| WriteOp::Delete((e.key.clone(), Precondition::Version(e.version))))
                })
                .collect();
            let n = ops.len();
            // A delivery changed meanwhile (a redelivery): leave this
            // policy to the next pass.
            if n == 0 || !run.commit(ops, LEASE_SECONDS).await? {
                break;
            }
            removed += n;
            if n < 200 || removed >= PRUNE_PER_RUN {
                break;
            }
        }
    }
    if finished && removed < PRUNE_PER_RUN {
        // Done: the next hour's run looks again (else the next run goes on).
        run.commit(
            vec![store::put(PRUNED.to_string(), now.to_string().into_bytes())],
            LEASE_SECONDS,
        )
        .await?;
    }
    Ok(removed)
}

/// When the delivery log was last pruned to the end (s since the epoch).
const PRUNED: &str = "webhook/pruned";

#[derive(Default)]
struct Sent {
    delivered: u32,
    retrying: u32,
    dead: u32,
    /// When the earliest waiting retry is due (ms since the epoch).
    next_due_ms: Option<u64>,
    /// Due deliveries were left for the next run (budget or per-policy cap).
    more: bool,
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

/// A run stops starting deliveries after this long (the next run goes on).
const BUDGET_MS: u64 = 60_000;
/// Deliveries of one policy looked at per run, so every tenant's turn comes.
const PER_POLICY: u32 = 50;
/// One attempt (connect, send, answer) may take this long.
const ATTEMPT_NS: u64 = 20_000_000_000;
/// The policy the last run served last: the next starts after it.
const ROTATION: &str = "webhook/rotation";

/// The policies with deliveries waiting, in id order (one scan per policy:
/// each skips past the policy's own entries).
async fn waiting_policies() -> Result<Vec<u64>, SwrError> {
    let firsts = store::first_of_groups(wh::PENDING).await.map_err(fault)?;
    Ok(firsts
        .iter()
        .filter_map(|e| wh::parse_pending(&e.key).map(|(policy, _)| policy))
        .collect())
}

/// Sends what is due: policy by policy (starting after the one the last
/// run ended with, so no tenant's backlog keeps others waiting), each in
/// event order, within the run's time budget.
async fn deliver(run: &mut jobs::Run, policies: &mut HashMap<u64, Sub>) -> Result<Sent, SwrError> {
    let retry = retry_policy();
    let registry = store::config::get("registry_host")
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost:5000".into());
    let mut order = waiting_policies().await?;
    let last = store::get(ROTATION)
        .await
        .map_err(oci_fault)?
        .and_then(|e| String::from_utf8_lossy(&e.value).parse::<u64>().ok());
    if let Some(last) = last {
        let split = order.partition_point(|p| *p <= last);
        order.rotate_left(split);
    }
    let mut sent = Sent::default();
    let started = now_ms();
    let mut served = None;
    for policy_id in order {
        if now_ms().saturating_sub(started) > BUDGET_MS {
            break;
        }
        served = Some(policy_id);
        let entries = metadata::scan(format!("{}{policy_id:020}/", wh::PENDING), None, PER_POLICY)
            .await
            .map_err(fault)?;
        let full = entries.len() == PER_POLICY as usize;
        let mut held = false;
        for entry in entries {
            let step = deliver_one(run, policies, &entry.key, &retry, &registry, &mut sent).await?;
            if !step {
                held = true;
                break;
            }
            if now_ms().saturating_sub(started) > BUDGET_MS {
                sent.more = true;
                break;
            }
        }
        // This policy has more waiting than one run serves.
        sent.more |= full && !held;
    }
    if let Some(p) = served {
        let ops = vec![store::put(ROTATION.to_string(), p.to_string().into_bytes())];
        run.commit(ops, LEASE_SECONDS).await?;
    }
    Ok(sent)
}

/// One pending delivery; whether the policy's next one may go now.
async fn deliver_one(
    run: &mut jobs::Run,
    policies: &mut HashMap<u64, Sub>,
    pending_key: &str,
    retry: &RetryPolicy,
    registry: &str,
    sent: &mut Sent,
) -> Result<bool, SwrError> {
    let Some((policy_id, event_id)) = wh::parse_pending(pending_key) else {
        return Ok(true);
    };
    let job_key = wh::job_key(policy_id, event_id);
    let Some(job) = store::get(&job_key).await.map_err(oci_fault)? else {
        let ops = vec![store::delete(pending_key.to_string())];
        run.commit(ops, LEASE_SECONDS).await?;
        return Ok(true);
    };
    let Ok(mut delivery) = serde_json::from_slice::<Delivery>(&job.value) else {
        return Ok(true);
    };
    if delivery.next_at_ms > now_ms() {
        // Later deliveries of this policy wait behind this one.
        sent.due_at(delivery.next_at_ms);
        return Ok(false);
    }
    let Some(sub) = policies.get(&policy_id).cloned() else {
        // The policy or trigger went; its deliveries go with it.
        let ops = vec![
            store::delete(pending_key.to_string()),
            store::delete(job_key),
        ];
        run.commit(ops, LEASE_SECONDS).await?;
        return Ok(true);
    };
    let event = store::get(&events::key(event_id))
        .await
        .map_err(oci_fault)?;
    let event = event.and_then(|e| Event::parse(&e.key, &e.value));
    // One attempt, or why none is made (the delivery stops).
    let attempt = match (&sub.of, event) {
        (_, None) => Err("the event is no longer in the log".to_string()),
        (Subscriber::Webhook(policy), Some(event)) => match policy.targets.first() {
            None => Err("the policy has no target".into()),
            Some(t) if t.gone => Err("the target answered 410 Gone earlier".into()),
            Some(_) if !policy.enabled => Err("the policy is disabled".into()),
            Some(t) => Ok(attempt_within(send(t, &event, registry)).await),
        },
        (Subscriber::Trigger(t, _), Some(_)) if !t.enabled => Err("the trigger is disabled".into()),
        (Subscriber::Trigger(t, _), Some(event)) => match kubernetes::cluster(t).await? {
            Err(why) => Err(why),
            Ok(cluster) => {
                Ok(attempt_within(kubernetes::update(t, &cluster, &event, registry)).await)
            }
        },
    };
    let mut ops = Vec::new();
    let mut go_on = true;
    // The policy was rewritten in this commit (410 Gone).
    let mut gone = false;
    match attempt {
        Err(why) => {
            delivery.status = status::STOPPED.into();
            delivery.status_text = why;
        }
        Ok(Tried {
            attempt,
            retry_after,
            permanent,
        }) => {
            let status = attempt.status;
            let detail = attempt.detail.clone();
            delivery.attempts.push(attempt);
            let n = delivery.attempts.len() as u32;
            let jitter = (store::now_ns() % 1000) as f64 / 1000.0;
            let outcome =
                match retry.after(status, n, delivery.created, now_ms(), retry_after, jitter) {
                    // Trying again cannot help: fail now, and let the later
                    // deliveries of this policy or trigger go.
                    Outcome::Retry(_) if permanent => Outcome::DeadLetter(
                        "the failure is permanent (see the attempt); not retried".into(),
                    ),
                    o => o,
                };
            match outcome {
                Outcome::Delivered => {
                    delivery.status = status::SUCCEED.into();
                    delivery.status_text =
                        detail.unwrap_or_else(|| format!("delivered: {}", status.unwrap_or(0)));
                    sent.delivered += 1;
                }
                Outcome::Retry(at) => {
                    delivery.status = status::PENDING.into();
                    delivery.status_text = format!("attempt {n} failed; retrying");
                    delivery.next_at_ms = at;
                    sent.retrying += 1;
                    sent.due_at(at);
                    go_on = false;
                }
                Outcome::DeadLetter(why) => {
                    delivery.status = status::FAILED.into();
                    delivery.status_text = format!("dead letter: {why}");
                    sent.dead += 1;
                }
                Outcome::Gone => {
                    delivery.status = status::FAILED.into();
                    sent.dead += 1;
                    if let Subscriber::Webhook(policy) = &sub.of {
                        delivery.status_text =
                            "410 Gone: the target is disabled until the policy is enabled again"
                                .into();
                        let mut updated = policy.clone();
                        for t in &mut updated.targets {
                            t.gone = true;
                        }
                        ops.push(WriteOp::Put((
                            sub.key.clone(),
                            serde_json::to_vec(&updated).expect("policies serialize"),
                            Precondition::Version(sub.version),
                        )));
                        policies.insert(
                            policy_id,
                            Sub {
                                of: Subscriber::Webhook(updated),
                                ..sub
                            },
                        );
                        gone = true;
                    } else {
                        delivery.status_text = "410 Gone from the Kubernetes API".into();
                    }
                }
            }
        }
    }
    delivery.updated = store::now();
    let last = delivery.status != status::PENDING;
    ops.push(store::put_json(job_key, &delivery));
    if last {
        ops.push(store::delete(pending_key.to_string()));
    }
    match run.commit(ops, LEASE_SECONDS).await? {
        true => {
            // One commit, one version: the policy's is the lease's.
            if gone && let Some(sub) = policies.get_mut(&policy_id) {
                sub.version = run.version();
            }
            Ok(go_on)
        }
        // The lease was lost, or the 410's policy write met an update: the
        // next run sees the current state.
        false => Ok(false),
    }
}

/// One attempt and what it tells about the next.
pub(crate) struct Tried {
    pub attempt: Attempt,
    /// The receiver's `Retry-After` (s), on 429 and 503.
    pub retry_after: Option<u64>,
    /// Trying again cannot succeed (a refused address, a missing workload).
    pub permanent: bool,
}

impl Tried {
    /// An attempt that failed with `error`.
    pub fn failed(at_ms: u64, status: Option<u16>, error: String, permanent: bool) -> Tried {
        Tried {
            attempt: Attempt {
                at_ms,
                status,
                latency_ms: now_ms().saturating_sub(at_ms),
                error: Some(error),
                detail: None,
            },
            retry_after: None,
            permanent,
        }
    }
}

/// `attempt`'s outcome, or a failed attempt when it takes longer than
/// [`ATTEMPT_NS`].
async fn attempt_within(attempt: impl Future<Output = Tried>) -> Tried {
    match berth_guest::within(ATTEMPT_NS, attempt).await {
        Some(done) => done,
        None => Tried::failed(
            now_ms().saturating_sub(ATTEMPT_NS / 1_000_000),
            None,
            format!("no complete answer within {} s", ATTEMPT_NS / 1_000_000_000),
            false,
        ),
    }
}

/// One attempt: what happened, and the receiver's `Retry-After` (s).
async fn send(target: &wh::StoredTarget, event: &Event, registry: &str) -> Tried {
    let payload = wh::payload(target.payload_format, event, registry);
    let mut builder = spin_sdk::http::Request::builder()
        .method("POST")
        .uri(&target.address)
        .header("content-type", payload.content_type)
        .header(
            "user-agent",
            concat!("berth-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header("x-berth-event-id", event.id.to_string());
    for (k, v) in &payload.headers {
        builder = builder.header(k, v);
    }
    let at_ms = now_ms();
    let failed = |error: String| Tried::failed(at_ms, None, error, false);
    // A secret that cannot be unsealed (another host's key) fails the
    // attempt: never send without the credentials the policy names.
    let unseal = |sealed: &Option<String>| -> Result<Option<String>, ()> {
        sealed
            .as_deref()
            .map(|s| berth_guest::auth::unseal_hex(s).ok_or(()))
            .transpose()
    };
    let (Ok(header), Ok(secret)) = (
        unseal(&target.sealed_auth_header),
        unseal(&target.sealed_secret),
    ) else {
        return failed(
            "the target's auth header or secret could not be unsealed by this host".into(),
        );
    };
    if let Some(header) = header {
        for (k, v) in wh::parse_auth_header(&header).unwrap_or_default() {
            builder = builder.header(k, v);
        }
    }
    if let Some(secret) = secret {
        builder = builder.header(
            "x-berth-signature-256",
            wh::signature(secret.as_bytes(), &payload.body),
        );
    }
    if target.skip_cert_verify {
        builder = builder.header("berth-insecure-tls", "1");
    }
    match exchange(builder, payload.body, 4096).await {
        Ok(answer) => {
            let status = answer.status;
            let text: String = String::from_utf8_lossy(&answer.body)
                .chars()
                .take(200)
                .collect();
            let error = (!(200..300).contains(&status)).then(|| format!("HTTP {status}: {text}"));
            Tried {
                attempt: Attempt {
                    at_ms,
                    status: Some(status),
                    latency_ms: now_ms() - at_ms,
                    error,
                    detail: None,
                },
                retry_after: answer.retry_after,
                permanent: false,
            }
        }
        Err(f) => Tried::failed(at_ms, None, f.text, f.permanent),
    }
}

/// An outbound answer.
pub(crate) struct Answer {
    pub status: u16,
    /// `Retry-After` in seconds.
    pub retry_after: Option<u64>,
    /// Its first bytes (as many as asked for).
    pub body: Vec<u8>,
}

/// Why a request got no answer.
pub(crate) struct Failure {
    pub text: String,
    /// The host refuses it whatever happens (an address or host not
    /// allowed, a URL it cannot send to).
    pub permanent: bool,
}

/// Sends the request `builder` makes with `body` through outbound
/// `wasi:http` and reads up to `read` bytes of the answer (an answer
/// whose body breaks off keeps its status).
pub(crate) async fn exchange(
    builder: http::request::Builder,
    body: Vec<u8>,
    read: usize,
) -> Result<Answer, Failure> {
    use http_body_util::BodyExt;
    use spin_sdk::wasip3::http::types::ErrorCode as E;
    let request = builder
        // A known length: receivers need not take chunked bodies.
        .header("content-length", body.len().to_string())
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| Failure {
            text: format!("invalid request: {e}"),
            permanent: true,
        })?;
    let response = spin_sdk::http::send(request).await.map_err(|e| match e {
        E::DestinationIpProhibited => Failure {
            text: "the host refuses this destination: a loopback, private or link-local \
                   address (an operator may allow it with --outbound-allow)"
                .into(),
            permanent: true,
        },
        E::HttpRequestDenied => Failure {
            text: "the host refuses this destination (allowed_outbound_hosts)".into(),
            permanent: true,
        },
        E::HttpRequestUriInvalid => Failure {
            text: "the URL cannot be sent to".into(),
            permanent: true,
        },
        other => Failure {
            text: format!("{other:?}"),
            permanent: false,
        },
    })?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut answer = Vec::new();
    let mut body = response.into_body();
    while answer.len() < read {
        match body.frame().await {
            Some(Ok(f)) => answer.extend_from_slice(f.data_ref().map_or(&[][..], |d| &d[..])),
            Some(Err(_)) | None => break,
        }
    }
    Ok(Answer {
        status,
        retry_after,
        body: answer,
    })
}
