//! Scheduled jobs (the GC sweep; the webhook trigger, aging and replication
//! to come): one run at a time across every host and every caller.
//!
//! A job runs when its schedule fires on a host (`[[trigger.cron]]` in
//! spin.toml, which the local host runs itself) or when someone calls its
//! tick, `POST /berth/jobs/<job>/tick` (a Kubernetes CronJob on SpinKube,
//! which cannot run cron triggers; or an operator). Either way the run
//! first takes the job's lease, a metadata record written with a
//! precondition: whoever holds an unexpired lease runs, everyone else is
//! told the job is busy. A run that dies leaves its lease to expire.
//!
//! Who may tick: a host's scheduler (a token it signed for the job,
//! [`JobClaims`]) or an administrator of the system tenant (`Basic`).

use serde::{Deserialize, Serialize};

/// `job/<job>/lease` → [`Lease`]: who runs the job now.
pub fn lease_key(job: &str) -> String {
    format!("job/{job}/lease")
}

/// `job/<job>/last` → [`RunRecord`]: the outcome of the latest run.
pub fn last_run_key(job: &str) -> String {
    format!("job/{job}/last")
}

/// The route of a job's tick.
pub fn tick_path(job: &str) -> String {
    format!("/berth/jobs/{job}/tick")
}

/// Job names: what `[[trigger.cron]]` components are called.
pub fn is_valid_name(job: &str) -> bool {
    !job.is_empty()
        && job.len() <= 64
        && job
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// A random id of the run holding it.
    pub holder: String,
    /// Seconds since the epoch.
    pub acquired: u64,
    /// The lease lapses at this second unless renewed.
    pub expires: u64,
    /// The host process's data directory identity (`berth_host_id`): a
    /// host that restarts releases the leases its earlier life held, so a
    /// run cut off by a crash is taken up at once, not when it lapses.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
}

/// The config key a host sets to its identity ([`Lease::host`]).
pub const HOST_ID: &str = "berth_host_id";

/// What taking the lease needs, given the current record and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// No lease: create it (the key must still be absent).
    Create,
    /// An expired lease: replace it (at this version).
    Replace(u64),
    /// Someone else holds it.
    Busy(Lease),
}

/// Decides how to take the lease at `now`, given what is stored.
pub fn claim(current: Option<(Lease, u64)>, now: u64) -> Claim {
    match current {
        None => Claim::Create,
        Some((lease, version)) if lease.expires <= now => Claim::Replace(version),
        Some((lease, _)) => Claim::Busy(lease),
    }
}

/// The outcome of a run, kept for operators (`GET /berth/jobs/<job>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub holder: String,
    /// Seconds since the epoch.
    pub started: u64,
    pub finished: u64,
    /// `succeeded` or `failed`.
    pub outcome: String,
    /// What the run did (job-specific figures) or why it failed.
    pub detail: serde_json::Value,
    /// What started it: `schedule` (a host's scheduler) or `tick` (a call).
    pub trigger: String,
}

/// The claims of a token a host's scheduler signs to tick one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobClaims {
    /// Always `job`: other tokens (registry tokens) never tick.
    pub kind: String,
    pub job: String,
}

impl JobClaims {
    pub const KIND: &'static str = "job";

    pub fn for_job(job: &str) -> JobClaims {
        JobClaims {
            kind: Self::KIND.to_string(),
            job: job.to_string(),
        }
    }

    /// Whether `claims` (a verified token's JSON) let their holder tick `job`.
    pub fn allow(claims: &str, job: &str) -> bool {
        serde_json::from_str::<JobClaims>(claims)
            .is_ok_and(|c| c.kind == Self::KIND && c.job == job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(expires: u64) -> Lease {
        Lease {
            host: String::new(),
            holder: "h".into(),
            acquired: 0,
            expires,
        }
    }

    #[test]
    fn one_holder_until_the_lease_lapses() {
        assert_eq!(claim(None, 10), Claim::Create);
        assert_eq!(claim(Some((lease(11), 7)), 10), Claim::Busy(lease(11)));
        assert_eq!(claim(Some((lease(10), 7)), 10), Claim::Replace(7));
    }

    #[test]
    fn only_job_tokens_for_that_job_tick() {
        let t = serde_json::to_string(&JobClaims::for_job("gc")).unwrap();
        assert!(JobClaims::allow(&t, "gc"));
        assert!(!JobClaims::allow(&t, "webhooks"));
        assert!(!JobClaims::allow(
            r#"{"kind":"registry","tenant":"a","sub":"b","job":"gc"}"#,
            "gc"
        ));
        assert!(is_valid_name("gc") && !is_valid_name("../x") && !is_valid_name(""));
    }
}
