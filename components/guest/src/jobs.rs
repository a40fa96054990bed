//! A scheduled job's tick (`berth_domain::jobs`): who may call it, and the
//! lease that keeps one run at a time across hosts and callers.

use crate::auth;
use crate::http::{Incoming, Reply};
use crate::manage::{fault, oci_fault, ok_json};
use crate::store::{self, Precondition, StoreError, WriteOp, credentials};
use berth_domain::iam::{admin, docker};
use berth_domain::jobs::{self, Claim, JobClaims, Lease, RunRecord};
use berth_domain::swr::SwrError;

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A host's scheduler (a job token it signed).
    Schedule,
    /// An administrator's call (a Kubernetes CronJob, an operator).
    Tick,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Tick => "tick",
        }
    }
}

/// Who may run `job`: the bearer of a job token the host signed for it,
/// or an administrator of the system tenant (`Basic user@tenant:password`).
/// 401 otherwise (403 for a user who is not such an administrator).
pub async fn authorize(req: &Incoming, job: &str) -> Result<Trigger, SwrError> {
    // The console's session of a system administrator.
    if let Some(p) = crate::manage::session_principal(req).await? {
        return if admin::may_manage_tenants(&p) {
            Ok(Trigger::Tick)
        } else {
            Err(SwrError::forbidden(
                "only the system tenant's administrators run jobs",
            ))
        };
    }
    let header = req.header("authorization").unwrap_or_default();
    if let Some(token) = header.strip_prefix("Bearer ") {
        return match credentials::verify_token(token.trim()) {
            Some(claims) if JobClaims::allow(&claims, job) => Ok(Trigger::Schedule),
            _ => Err(SwrError::unauthorized("the token does not run this job")),
        };
    }
    let Some((user, password)) = docker::parse_basic(&header) else {
        return Err(SwrError::unauthorized(
            "a job runs for an administrator (Basic credentials) or a host's scheduler",
        ));
    };
    match auth::login(&user, &password).await.map_err(oci_fault)? {
        Some(p) if admin::may_manage_tenants(&p) => Ok(Trigger::Tick),
        Some(_) => Err(SwrError::forbidden(
            "only the system tenant's administrators run jobs",
        )),
        None => Err(SwrError::unauthorized("wrong user name or password")),
    }
}

/// A run holding its job's lease.
pub struct Run {
    job: String,
    lease: Lease,
    version: u64,
    trigger: Trigger,
}

/// A run that could not start: the lease is held (409, with who holds it
/// until when), or the store failed.
pub async fn begin(job: &str, ttl_seconds: u64, trigger: Trigger) -> Result<Run, SwrError> {
    let key = jobs::lease_key(job);
    let now = store::now();
    let current = store::get(&key).await.map_err(oci_fault)?;
    let stored = current.and_then(|e| {
        serde_json::from_slice::<Lease>(&e.value)
            .ok()
            .map(|l| (l, e.version))
    });
    let precondition = match jobs::claim(stored, now) {
        Claim::Create => Precondition::Absent,
        Claim::Replace(v) => Precondition::Version(v),
        Claim::Busy(lease) => return Err(busy(job, &lease)),
    };
    let lease = Lease {
        host: store::config::get(jobs::HOST_ID).unwrap_or_default(),
        holder: store::nonce(),
        acquired: now,
        expires: now + ttl_seconds,
    };
    let value = serde_json::to_vec(&lease).expect("leases serialize");
    match store::commit(vec![WriteOp::Put((key, value, precondition))]).await {
        Ok(versions) => Ok(Run {
            job: job.to_string(),
            lease,
            version: versions[0],
            trigger,
        }),
        // Someone took it between the read and the write.
        Err(StoreError::Conflict) => {
            Err(SwrError::conflict(format!("job {job} is already running")))
        }
        Err(e) => Err(fault(e)),
    }
}

fn busy(job: &str, lease: &Lease) -> SwrError {
    SwrError::new(
        409,
        3,
        format!(
            "job {job} is already running (run {} holds it until {})",
            lease.holder,
            berth_domain::swr::rfc3339(lease.expires)
        ),
    )
}

impl Run {
    /// The lease's current version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A write that renews the lease for `ttl_seconds` only if it is still
    /// this run's: put it in every commit of the run's work, so a run that
    /// lost its lease (it lapsed and another run took it) changes nothing.
    /// After the commit, give its versions to [`Run::fenced`].
    pub fn fence(&mut self, ttl_seconds: u64) -> WriteOp {
        self.lease.expires = store::now() + ttl_seconds;
        WriteOp::Put((
            jobs::lease_key(&self.job),
            serde_json::to_vec(&self.lease).expect("leases serialize"),
            Precondition::Version(self.version),
        ))
    }

    /// Takes the new lease version from a fenced commit's versions (one
    /// commit, one version).
    pub fn fenced(&mut self, versions: &[u64]) {
        if let Some(v) = versions.last() {
            self.version = *v;
        }
    }

    /// Commits `ops` with the lease's fence added: `true` when done,
    /// `false` when one of `ops`' own preconditions failed (the lease still
    /// held), and an error (409) once the run lost its lease, so a run that
    /// lost it changes nothing more.
    pub async fn commit(
        &mut self,
        mut ops: Vec<WriteOp>,
        ttl_seconds: u64,
    ) -> Result<bool, SwrError> {
        ops.push(self.fence(ttl_seconds));
        match store::commit(ops).await {
            Ok(versions) => {
                self.fenced(&versions);
                Ok(true)
            }
            Err(StoreError::Conflict) if self.still_held().await? => Ok(false),
            Err(StoreError::Conflict) => Err(SwrError::conflict(format!(
                "job {}: the run lost its lease to another run",
                self.job
            ))),
            Err(e) => Err(fault(e)),
        }
    }

    /// Whether the lease is still this run's (after a conflict).
    pub async fn still_held(&self) -> Result<bool, SwrError> {
        let lease: Option<Lease> = store::get_json(&jobs::lease_key(&self.job))
            .await
            .map_err(oci_fault)?;
        Ok(lease.is_some_and(|l| l.holder == self.lease.holder))
    }

    /// Gives the lease back (only if still ours) without recording a run:
    /// for a job that held another job's lease to keep it out.
    pub async fn release(self) {
        let _ = store::commit(vec![WriteOp::Delete((
            jobs::lease_key(&self.job),
            Precondition::Version(self.version),
        ))])
        .await;
    }

    /// Records the outcome and gives the lease back (only if still ours).
    pub async fn finish(self, result: &Result<serde_json::Value, SwrError>) -> RunRecord {
        let (outcome, detail) = match result {
            Ok(d) => ("succeeded", d.clone()),
            Err(e) => ("failed", serde_json::json!({ "error": e.message })),
        };
        let record = RunRecord {
            holder: self.lease.holder.clone(),
            started: self.lease.acquired,
            finished: store::now(),
            outcome: outcome.to_string(),
            detail,
            trigger: self.trigger.name().to_string(),
        };
        let ops = vec![
            store::put_json(jobs::last_run_key(&self.job), &record),
            WriteOp::Delete((
                jobs::lease_key(&self.job),
                Precondition::Version(self.version),
            )),
        ];
        if let Err(e) = store::commit(ops).await {
            // A lost lease (or a store fault): the record is not written
            // and the lease, if ours, lapses by itself.
            eprintln!("job {}: outcome not recorded: {e:?}", self.job);
        }
        record
    }
}

/// The last run of `job` and its lease, for `GET /berth/jobs/<job>`.
pub async fn status(job: &str) -> Result<serde_json::Value, SwrError> {
    let last: Option<RunRecord> = store::get_json(&jobs::last_run_key(job))
        .await
        .map_err(oci_fault)?;
    let lease: Option<Lease> = store::get_json(&jobs::lease_key(job))
        .await
        .map_err(oci_fault)?;
    let running = lease.filter(|l| l.expires > store::now());
    Ok(serde_json::json!({
        "job": job,
        "running": running.map(|l| serde_json::json!({
            "holder": l.holder,
            "since": berth_domain::swr::rfc3339(l.acquired),
            "lease_expires": berth_domain::swr::rfc3339(l.expires),
        })),
        "last_run": last.map(|r| serde_json::json!({
            "holder": r.holder,
            "trigger": r.trigger,
            "started": berth_domain::swr::rfc3339(r.started),
            "finished": berth_domain::swr::rfc3339(r.finished),
            "outcome": r.outcome,
            "detail": r.detail,
        })),
    }))
}

/// Serves a job component's API: `POST /berth/jobs/<job>/tick` runs
/// `work` under the job's lease (`lease_seconds`) and answers 200 with
/// `{"job", "run", "trigger", "result"}` (409 while another run holds the
/// lease); `GET /berth/jobs/<job>` answers [`status`]. Both for the callers
/// [`authorize`] accepts; errors in SWR's format.
pub async fn serve<F>(
    request: spin_sdk::wasip3::http::types::Request,
    job: &str,
    lease_seconds: u64,
    work: F,
) -> Result<spin_sdk::wasip3::http::types::Response, spin_sdk::wasip3::http::types::ErrorCode>
where
    F: AsyncFnOnce(&mut Run) -> Result<serde_json::Value, SwrError>,
{
    use spin_sdk::wasip3::http::types::Method;
    let req = Incoming::new(request);
    let tick = jobs::tick_path(job);
    let status_path = format!("/berth/jobs/{job}");
    let path = req.path.trim_end_matches('/').to_string();
    let answer: Result<Reply, SwrError> = match (&req.method, path.as_str()) {
        (Method::Post, p) if p == tick => {
            async {
                let trigger = authorize(&req, job).await?;
                let mut run = begin(job, lease_seconds, trigger).await?;
                let result = work(&mut run).await;
                let record = run.finish(&result).await;
                ok_json(
                    200,
                    &serde_json::json!({
                        "job": job,
                        "run": record.holder,
                        "trigger": record.trigger,
                        "result": result?,
                    }),
                )
            }
            .await
        }
        (Method::Get, p) if p == status_path => {
            async {
                authorize(&req, job).await?;
                ok_json(200, &status(job).await?)
            }
            .await
        }
        (_, p) if p == tick || p == status_path => Err(SwrError::method_not_allowed()),
        _ => Err(SwrError::not_found(format!("no job API at {}", req.path))),
    };
    let reply = answer.unwrap_or_else(|e| Reply::json(e.status, e.body()));
    Ok(reply.into_response(req))
}
