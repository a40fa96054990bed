//! Runs the components of `[[trigger.cron]]` on their schedules, as Spin's
//! cron trigger does: at each time the host calls the job's tick
//! (`POST /berth/jobs/<job>/tick`) through the same handler HTTP requests
//! use, with a short-lived job token it signs (`berth_domain::jobs`). The
//! job's lease decides which host runs when several share one store: a
//! busy answer (409) means another run is under way, and is not an error.
//! A host never overlaps its own runs of one job: a time that passes while
//! a run is under way is skipped.

use crate::capabilities::Backends;
use crate::manifest::Scheduled;
use crate::server::Server;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::sync::Arc;
use std::time::Duration;

/// Lifetime of the token for one run's call, in seconds.
const TOKEN_TTL: u32 = 300;

/// Starts one task per schedule.
pub fn spawn(server: Arc<Server>, backends: Arc<Backends>) {
    for (i, job) in server.app.schedules.iter().enumerate() {
        tracing::info!(job = %job.component, schedule = %job.expression, "scheduled");
        let (server, backends) = (server.clone(), backends.clone());
        tokio::spawn(async move {
            let job: &Scheduled = &server.app.schedules[i];
            loop {
                let Some(next) = job.schedule.upcoming(chrono::Utc).next() else {
                    tracing::warn!(job = %job.component, "the schedule has no further times");
                    return;
                };
                let wait = (next - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                tokio::time::sleep(wait).await;
                run(&server, &backends, &job.component).await;
            }
        });
    }
}

/// Calls `job`'s tick once and logs the outcome.
async fn run(server: &Server, backends: &Backends, job: &str) {
    let claims = serde_json::to_string(&berth_domain::jobs::JobClaims::for_job(job))
        .expect("claims serialize");
    let token = match backends.credentials.issue_token(&claims, TOKEN_TTL) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(job, error = %e, "could not sign the job token");
            return;
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
    let Some(handler) = server.handlers.get(job) else {
        return;
    };
    let response = match handler.handle((), request).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(job, error = ?e, "scheduled job failed");
            return;
        }
    };
    let status = response.status().as_u16();
    let body = match response.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            tracing::warn!(job, error = ?e, "scheduled job's answer broke off");
            return;
        }
    };
    let body = String::from_utf8_lossy(&body);
    match status {
        200 => tracing::info!(job, result = %body, "scheduled job ran"),
        409 => tracing::debug!(job, "scheduled job is running elsewhere"),
        _ => tracing::warn!(job, status, answer = %body, "scheduled job failed"),
    }
}
