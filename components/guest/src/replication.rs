//! What the sync APIs, the replication policies' API and the replication
//! job share: finding a tenant's registries, and asking for copies (an
//! execution and its items, `berth_domain::replication::runs`).

use crate::manage::{fault, ids, oci_fault};
use crate::store::{self, Precondition, WriteOp};
use berth_domain::keys;
use berth_domain::replication::protocol;
use berth_domain::replication::registry::{self as reg, Registry};
use berth_domain::replication::rules::Policy;
use berth_domain::replication::runs::{self, Direction, Execution, Item, Status};
use berth_domain::swr::SwrError;

/// The registry `id` of `tenant`, if any.
pub async fn registry(tenant: &str, id: u64) -> Result<Option<Registry>, SwrError> {
    store::get_json(&reg::key(tenant, id))
        .await
        .map_err(oci_fault)
}

/// The registry named `name` (a sync "region") of `tenant`; a 400 naming
/// the registered ones when there is none.
pub async fn region(tenant: &str, name: &str) -> Result<Registry, SwrError> {
    let id = store::get(&reg::name_key(tenant, name))
        .await
        .map_err(oci_fault)?
        .and_then(|e| String::from_utf8(e.value).ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(id) = id
        && let Some(r) = registry(tenant, id).await?
    {
        return Ok(r);
    }
    let known: Vec<String> = store::scan_json::<Registry>(&reg::tenant_prefix(tenant))
        .await
        .map_err(fault)?
        .into_iter()
        .map(|r| r.name)
        .collect();
    Err(SwrError::bad_request(format!(
        "unknown region {name:?}: a registry registered in the enterprise registries API \
         ({})",
        if known.is_empty() {
            "none yet".to_string()
        } else {
            format!("registered: {}", known.join(", "))
        }
    )))
}

/// Registry `id` of `tenant` and a write that rewrites its record under
/// its version: a commit that makes a rule, policy or items for it
/// conflicts with the registry's deletion meanwhile. 400 when there is
/// no such registry.
pub async fn registry_guard(tenant: &str, id: u64) -> Result<(Registry, WriteOp), SwrError> {
    let key = reg::key(tenant, id);
    let e = store::get(&key)
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::bad_request(format!("unknown registry {id}")))?;
    let r: Registry = serde_json::from_slice(&e.value)
        .map_err(|_| SwrError::internal(format!("registry {id} is unreadable")))?;
    Ok((
        r,
        WriteOp::Put((key, e.value, Precondition::Version(e.version))),
    ))
}

/// One tag to copy.
pub struct ItemSpec {
    pub source: String,
    pub destination: String,
    pub tag: String,
}

/// A batch of copies to ask for.
pub struct Batch<'a> {
    pub tenant: &'a str,
    /// The replication policy (0: a shared-edition sync).
    pub policy_id: u64,
    /// `manual`, `scheduled`, `event_based` or `backfill`.
    pub trigger: &'a str,
    pub registry: &'a Registry,
    pub direction: Direction,
    pub override_: bool,
    pub operator: &'a str,
    pub operator_id: &'a str,
    /// Items for an execution recorded already (a pull the job planned):
    /// its id; none: a new execution.
    pub execution: Option<u64>,
    /// The execution's items are yet to be listed (a pull's, by the job).
    pub planning: bool,
    /// Wake the replication job (false when the job itself asks).
    pub wake: bool,
}

/// The writes that record an execution of `items` and queue them for the
/// replication job (waking it), and the execution's id. Shared-edition
/// syncs (`policy_id` 0) also index each item as a sync job of its
/// source repository (`show_sync_job`).
pub async fn enqueue(
    batch: &Batch<'_>,
    items: &[ItemSpec],
) -> Result<(u64, Vec<WriteOp>), SwrError> {
    let execution_id = match batch.execution {
        Some(id) => id,
        None => *ids(runs::EXECUTION_IDS, 1).await?.start(),
    };
    let item_ids = ids(runs::ITEM_IDS, items.len()).await?;
    let mut repos: Vec<&str> = items.iter().map(|i| i.source.as_str()).collect();
    repos.sort_unstable();
    repos.dedup();
    let task_ids = ids(runs::TASK_IDS, repos.len()).await?;
    let task_of =
        |repo: &str| task_ids.start() + repos.binary_search(&repo).unwrap_or_default() as u64;
    let now = store::now();
    // A planned pull keeps when it was asked for.
    let created = match batch.execution {
        Some(id) => store::get_json::<Execution>(&runs::execution(batch.tenant, id))
            .await
            .map_err(oci_fault)?
            .map_or(now, |e| e.created),
        None => now,
    };
    let execution = Execution {
        id: execution_id,
        tenant: batch.tenant.to_string(),
        policy_id: batch.policy_id,
        trigger: batch.trigger.to_string(),
        registry_id: batch.registry.id,
        total: items.len() as u64,
        succeed: 0,
        failed: 0,
        stopped: 0,
        created,
        updated: now,
        error: String::new(),
        planning: batch.planning,
        cancelled: false,
        operator: batch.operator.to_string(),
    };
    let mut ops = vec![WriteOp::Put((
        runs::execution(batch.tenant, execution_id),
        serde_json::to_vec(&execution).expect("executions serialize"),
        if batch.execution.is_some() {
            Precondition::None
        } else {
            Precondition::Absent
        },
    ))];
    for (spec, id) in items.iter().zip(item_ids) {
        let item = Item {
            id,
            execution_id,
            task_id: task_of(&spec.source),
            tenant: batch.tenant.to_string(),
            direction: batch.direction,
            registry_id: batch.registry.id,
            region: batch.registry.name.clone(),
            source: spec.source.clone(),
            destination: spec.destination.clone(),
            tag: spec.tag.clone(),
            digest: String::new(),
            override_: batch.override_,
            status: Status::Waiting,
            status_text: String::new(),
            attempts: 0,
            not_before_ms: 0,
            created: now,
            started: 0,
            ended: 0,
            operator: batch.operator.to_string(),
            operator_id: batch.operator_id.to_string(),
            bytes: 0,
            blobs_copied: 0,
            blobs_present: 0,
            blobs_mounted: 0,
            manifests: 0,
            resume: None,
            resumed_from: 0,
        };
        let key = runs::item(batch.tenant, execution_id, id);
        ops.push(store::put(
            runs::pending(batch.tenant, execution_id, id),
            key.clone().into_bytes(),
        ));
        if batch.policy_id == 0 {
            ops.push(store::put(
                runs::sync_job(batch.tenant, &spec.source, id),
                key.clone().into_bytes(),
            ));
        }
        ops.push(store::put_json(key, &item));
    }
    if items.is_empty() && !batch.planning {
        // Nothing to copy: over at once.
        ops.push(store::event(
            &execution.completed("", store::now_ns() as u64),
        ));
    }
    if batch.wake {
        ops.push(WriteOp::Append((
            runs::REQUESTS.to_string(),
            execution_id.to_string().into_bytes(),
        )));
    }
    Ok((execution_id, ops))
}

/// The writes that start an execution of `policy` (a push's items listed
/// now, a pull's planned by the job), and its id.
pub async fn start(
    policy: &Policy,
    trigger: &str,
    operator: &str,
) -> Result<(u64, Vec<WriteOp>), SwrError> {
    let registry = registry(&policy.tenant, policy.registry())
        .await?
        .ok_or_else(|| SwrError::bad_request(format!("registry {} is gone", policy.registry())))?;
    let items = if policy.is_pull() {
        Vec::new()
    } else {
        push_items(policy).await?
    };
    let batch = Batch {
        tenant: &policy.tenant,
        policy_id: policy.id,
        trigger,
        registry: &registry,
        direction: if policy.is_pull() {
            Direction::Pull
        } else {
            Direction::Push
        },
        override_: policy.override_,
        operator,
        operator_id: "",
        execution: None,
        planning: policy.is_pull(),
        wake: true,
    };
    let (id, mut ops) = enqueue(&batch, &items).await?;
    if policy.is_pull() {
        ops.push(store::put(
            runs::plan(&policy.tenant, id),
            policy.id.to_string().into_bytes(),
        ));
    }
    Ok((id, ops))
}

/// The tags of the tenant's repositories a push policy selects.
async fn push_items(policy: &Policy) -> Result<Vec<ItemSpec>, SwrError> {
    let mut items = Vec::new();
    for ns in crate::namespaces::owned(&policy.tenant)
        .await
        .map_err(fault)?
    {
        let names = store::scan_names(&keys::repo(&format!("{}/", ns.name)))
            .await
            .map_err(fault)?;
        for rest in names {
            let repo = format!("{}/{rest}", ns.name);
            if !policy.selects_repository(&repo) {
                continue;
            }
            for tag in store::scan_names(&keys::tag_prefix(&repo))
                .await
                .map_err(fault)?
            {
                if !protocol::is_artifact_tag(&tag) && policy.selects_tag(&tag) {
                    items.push(ItemSpec {
                        source: repo.clone(),
                        destination: policy.destination(&repo),
                        tag,
                    });
                }
            }
        }
    }
    Ok(items)
}
