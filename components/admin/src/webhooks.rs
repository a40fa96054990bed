//! What SWR's webhook API lacks, in Berth's admin API: a policy's
//! delivery log with every attempt, and redelivery.
//!
//! - `GET /berth/v1/webhooks/<policy>/deliveries?status=&after=&limit=`:
//!   deliveries oldest first (`after`: an event id; `limit` 1–1000,
//!   default 100), each with its attempts (time, status, latency, error).
//! - `POST /berth/v1/webhooks/<policy>/deliveries/<event>/redeliver`: sends
//!   the delivery again (whatever its state) at the next run of the
//!   webhooks job, in its place in the policy's order; the log is kept.
//!
//! `<policy>` is a webhook policy's id or an image trigger's (the `id` that
//! `show_trigger` adds to SWR's fields). For its tenant, with
//! `swr:repository:trigger` on its organization.

use berth_domain::iam::Principal;
use berth_domain::swr::{SwrError, rfc3339};
use berth_domain::triggers::{self, Trigger};
use berth_domain::webhooks::{self as wh, Delivery, Policy, status};
use berth_guest::http::{Incoming, Reply};
use berth_guest::manage::{fault, oci_fault, ok_json, trigger_allowed};
use berth_guest::store::{self, Precondition, WriteOp, metadata};

fn number(s: &str, what: &str) -> Result<u64, SwrError> {
    s.parse()
        .map_err(|_| SwrError::bad_request(format!("{what} {s:?} is not a number")))
}

/// The caller's webhook policy or image trigger `id` (one id space), if
/// it may manage it.
async fn policy(who: &Principal, id: &str) -> Result<u64, SwrError> {
    let id = number(id, "policy")?;
    let missing = || SwrError::not_found(format!("webhook policy or trigger {id} not found"));
    let policy: Option<Policy> = store::get_json(&wh::policy_key(&who.tenant, id))
        .await
        .map_err(oci_fault)?;
    if let Some(p) = policy {
        trigger_allowed(who, &p.namespace).await?;
        return Ok(id);
    }
    let key = store::get(&triggers::id_key(id))
        .await
        .map_err(oci_fault)?
        .ok_or_else(missing)?;
    let trigger: Trigger = store::get_json(&String::from_utf8_lossy(&key.value))
        .await
        .map_err(oci_fault)?
        .ok_or_else(missing)?;
    if trigger.tenant != who.tenant {
        return Err(missing());
    }
    let ns = trigger.repository.split('/').next().unwrap_or_default();
    trigger_allowed(who, ns).await?;
    Ok(id)
}

fn view(d: &Delivery) -> serde_json::Value {
    serde_json::json!({
        "event_id": d.event.to_string(),
        "event_type": d.event_type,
        "status": d.status,
        "status_text": d.status_text,
        "created_at": rfc3339(d.created),
        "updated_at": rfc3339(d.updated),
        "next_attempt_ms": (d.status == status::PENDING).then_some(d.next_at_ms),
        "attempts": d.attempts,
    })
}

pub async fn deliveries(req: &Incoming, who: &Principal, id: &str) -> Result<Reply, SwrError> {
    let p = policy(who, id).await?;
    let limit = berth_guest::manage::limit_param(req, 100, 1000)?;
    let after = req
        .query("after")
        .map(|a| number(a, "after").map(|e| wh::job_key(p, e)))
        .transpose()?;
    let state = req.query("status");
    if let Some(s) = state
        && !status::ALL.contains(&s)
    {
        return Err(SwrError::bad_request(format!(
            "status must be one of {}",
            status::ALL.join(", ")
        )));
    }
    let page = metadata::scan(wh::job_prefix(p), after, limit)
        .await
        .map_err(fault)?;
    let out: Vec<_> = page
        .iter()
        .filter_map(|e| serde_json::from_slice::<Delivery>(&e.value).ok())
        .filter(|d| state.is_none_or(|s| d.status == s))
        .map(|d| view(&d))
        .collect();
    let next = (page.len() == limit as usize)
        .then(|| page.last().and_then(|e| e.key.rsplit('/').next()))
        .flatten()
        .map(|k| k.trim_start_matches('0').to_string());
    ok_json(200, &serde_json::json!({ "deliveries": out, "next": next }))
}

pub async fn redeliver(who: &Principal, id: &str, event: &str) -> Result<Reply, SwrError> {
    let p = policy(who, id).await?;
    let event = number(event, "event")?;
    let key = wh::job_key(p, event);
    let entry = store::get(&key)
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("no delivery of event {event}")))?;
    let mut d: Delivery = serde_json::from_slice(&entry.value)
        .map_err(|e| SwrError::internal(format!("corrupt delivery record: {e}")))?;
    d.status = status::PENDING.into();
    d.status_text = format!("redelivery requested by {}@{}", who.user, who.tenant);
    d.next_at_ms = 0;
    // The retry limits count from now.
    d.created = store::now();
    d.updated = d.created;
    let ops = vec![
        WriteOp::Put((
            key,
            serde_json::to_vec(&d).expect("deliveries serialize"),
            Precondition::Version(entry.version),
        )),
        store::put(wh::pending_key(p, event), Vec::new()),
    ];
    berth_guest::manage::commit(ops, || {
        "the delivery changed meanwhile (it is being sent); try again".into()
    })
    .await?;
    ok_json(202, &view(&d))
}
