//! Runs the components of `[[trigger.cron]]` on their schedules, as Spin's
//! cron trigger does: at each time the host calls the job's tick
//! (`POST /berth/jobs/<job>/tick`) through the same handler HTTP requests
//! use, with a short-lived job token it signs (`berth_domain::jobs`). The
//! job's lease decides which host runs when several share one store: a
//! busy answer (409) means another run is under way, and is not an error.
//! A host never overlaps its own runs of one job: a time that passes while
//! a run is under way is skipped. Jobs declared `wake_on_events = true`
//! (Berth's addition to the cron trigger: the event consumers) also run
//! shortly after a commit appends to the event log; `wake_on_appends`
//! names other metadata prefixes that wake a job the same way. A job
//! with something under the prefixes that wake it (events included) when
//! the host starts runs at once.

use crate::capabilities::Backends;
use crate::manifest::Scheduled;
use crate::server::Server;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::sync::Arc;
use std::time::Duration;

/// How long a job woken by new events waits for more before it runs.
const WAKE_DELAY: Duration = Duration::from_millis(100);

/// The shortest wait before a run a job asked for.
const MIN_AGAIN: Duration = Duration::from_millis(100);

/// Lifetime of the token for one run's call, in seconds.
const TOKEN_TTL: u32 = 300;

/// Releases the job leases `host` held before it restarted (runs a crash
/// cut off), so the jobs run again at once rather than when the leases
/// lapse. Leases of other hosts sharing the store are left alone.
pub async fn release_leases(
    metadata: &crate::capabilities::metadata::Metadata,
    host: &str,
) -> anyhow::Result<()> {
    use crate::capabilities::metadata::{Precondition, WriteOp};
    let mut ops = Vec::new();
    for e in metadata.scan("job/", None, 10_000).await? {
        let Some(job) = e
            .key
            .strip_prefix("job/")
            .and_then(|k| k.strip_suffix("/lease"))
        else {
            continue;
        };
        let Ok(lease) = serde_json::from_slice::<berth_domain::jobs::Lease>(&e.value) else {
            continue;
        };
        if lease.host == host {
            tracing::warn!(job, run = %lease.holder, "releasing the lease of a run this host was doing when it stopped");
            ops.push(WriteOp::Delete(
                e.key.clone(),
                Precondition::Version(e.version),
            ));
        }
    }
    if !ops.is_empty() {
        metadata.commit(ops).await?;
    }
    Ok(())
}

/// Starts one task per schedule.
pub fn spawn(server: Arc<Server>, backends: Arc<Backends>) {
    for (i, job) in server.app.schedules.iter().enumerate() {
        tracing::info!(job = %job.component, schedule = %job.expression, "scheduled");
        let (server, backends) = (server.clone(), backends.clone());
        tokio::spawn(async move {
            let job: &Scheduled = &server.app.schedules[i];
            let events = backends.metadata.watch(&job.wake_on);
            // Armed before each run, so events committed during one wake
            // the next.
            let arm = || {
                let mut n = Box::pin(events.clone().notified_owned());
                n.as_mut().enable();
                n
            };
            let mut woken = arm();
            // When the last run asked to be run again (a retry due). Work
            // left waiting when the host stopped (a request a crash cut
            // off) runs at once, not at the next scheduled time.
            let mut waiting = false;
            for p in &job.wake_on {
                if backends
                    .metadata
                    .scan(p, None, 1)
                    .await
                    .is_ok_and(|found| !found.is_empty())
                {
                    waiting = true;
                    break;
                }
            }
            let mut again: Option<tokio::time::Instant> = waiting.then(tokio::time::Instant::now);
            loop {
                let Some(next) = job.schedule.upcoming(chrono::Utc).next() else {
                    tracing::warn!(job = %job.component, "the schedule has no further times");
                    return;
                };
                let mut wait = (next - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                if let Some(at) = again.take() {
                    wait = wait.min(at.saturating_duration_since(tokio::time::Instant::now()));
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = &mut woken, if !job.wake_on.is_empty() => {
                        // Let a burst of pushes land in one run.
                        tokio::time::sleep(WAKE_DELAY).await;
                    }
                }
                woken = arm();
                again = run(&server, &backends, &job.component)
                    .await
                    .map(|d| tokio::time::Instant::now() + d.max(MIN_AGAIN));
            }
        });
    }
}

/// Calls `job`'s tick once and logs the outcome; how soon the job asked
/// to run again (`result.next_run_in_ms` in its answer), if it did.
async fn run(server: &Server, backends: &Backends, job: &str) -> Option<Duration> {
    let claims = serde_json::to_string(&berth_domain::jobs::JobClaims::for_job(job))
        .expect("claims serialize");
    let token = match backends.credentials.issue_token(&claims, TOKEN_TTL) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(job, error = %e, "could not sign the job token");
            return None;
        }
    };
    let request = hyper::Request::builder()
        .method("POST")
        .uri(format!(
            "http://localhost{}",
            berth_domain::jobs::tick_path(job)
        ))
        .header("authorization", format!("Bearer {token}"))
        .header("content-length", "0")
        .body(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("static request");
    let handler = server.handlers.get(job)?;
    let start = std::time::Instant::now();
    let response = match handler.handle((), request).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(job, error = ?e, "scheduled job failed");
            crate::metrics::METRICS.job_ran(job, 500, start.elapsed());
            return None;
        }
    };
    let status = response.status().as_u16();
    let body = match response.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            tracing::warn!(job, error = ?e, "scheduled job's answer broke off");
            return None;
        }
    };
    crate::metrics::METRICS.job_ran(job, status, start.elapsed());
    let text = String::from_utf8_lossy(&body);
    match status {
        200 => tracing::info!(job, result = %text, "scheduled job ran"),
        409 => tracing::debug!(job, "scheduled job is running elsewhere"),
        _ => tracing::warn!(job, status, answer = %text, "scheduled job failed"),
    }
    let answer: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let ms = answer.get("result")?.get("next_run_in_ms")?.as_u64()?;
    Some(Duration::from_millis(ms))
}
