//! Retention policies' executions (`berth_domain::retention::policy`):
//! what the enterprise API and the retention job's schedule both write to
//! start one.

use crate::manage::fault;
use crate::store::{self, Precondition, WriteOp, metadata};
use berth_domain::retention::policy::{self as rp, Execution, ExecutionRef, Policy};
use berth_domain::swr::SwrError;

/// `n` (at least 1) fresh ids from `counter` (`rp::POLICY_IDS` …).
pub async fn ids(counter: &str, n: usize) -> Result<std::ops::RangeInclusive<u64>, SwrError> {
    let n = n.max(1) as u64;
    let last = metadata::increment(counter.to_string(), n as i64)
        .await
        .map_err(fault)? as u64;
    Ok(last + 1 - n..=last)
}

/// The writes that record a new execution of `policy` in progress and
/// ask the retention job to run it, and its id; 409 while another runs.
/// The writes fail the commit if another execution was asked for since.
pub async fn ask_for_execution(
    policy: &Policy,
    trigger: &str,
    dry_run: bool,
) -> Result<(Vec<WriteOp>, u64), SwrError> {
    // Read before looking for one in progress: an execution asked for
    // after this read conflicts with ours; one before it is seen.
    let latest = store::get(&rp::latest_execution(&policy.tenant, policy.id))
        .await
        .map_err(crate::manage::oci_fault)?;
    let prefix = rp::executions_prefix(&policy.tenant, policy.id);
    let recent = metadata::scan(prefix, None, 1).await.map_err(fault)?;
    if let Some(e) = recent.first()
        && let Ok(x) = serde_json::from_slice::<Execution>(&e.value)
        && x.status == "InProgress"
    {
        return Err(SwrError::conflict(format!(
            "execution {} of retention policy {} is still in progress",
            x.id, policy.id
        )));
    }
    let id = *ids(rp::EXECUTION_IDS, 1).await?.start();
    let execution = Execution {
        id,
        policy_id: policy.id,
        dry_run,
        status: "InProgress".into(),
        trigger: trigger.into(),
        start_time: store::now(),
        end_time: 0,
        error: String::new(),
    };
    let request = ExecutionRef {
        tenant: policy.tenant.clone(),
        policy: policy.id,
        id,
    };
    Ok((
        vec![
            WriteOp::Put((
                rp::execution(&policy.tenant, policy.id, id),
                serde_json::to_vec(&execution).expect("executions serialize"),
                Precondition::Absent,
            )),
            WriteOp::Put((
                rp::latest_execution(&policy.tenant, policy.id),
                id.to_string().into_bytes(),
                match latest {
                    Some(e) => Precondition::Version(e.version),
                    None => Precondition::Absent,
                },
            )),
            WriteOp::Append((
                rp::REQUESTS.to_string(),
                serde_json::to_vec(&request).expect("requests serialize"),
            )),
        ],
        id,
    ))
}
