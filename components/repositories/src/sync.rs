//! Image sync of a repository (SWR shared edition: `list_sync_regions`,
//! `create_image_sync_repo`, `list_image_auto_sync_repos_details`,
//! `delete_image_sync_repo`, `create_manual_image_sync_repo`,
//! `show_sync_job`). A region is a registry the tenant registered
//! (`berth_domain::replication::registry`), named by `remoteRegionId`; the
//! `replication` job component copies. Changes need
//! `swr:repository:sync` on the organization; listings need to see it.

use berth_domain::iam::{Action, Principal};
use berth_domain::keys;
use berth_domain::replication::protocol;
use berth_domain::replication::registry::{self as reg, Registry};
use berth_domain::replication::rules::{self, ManualSyncBody, SyncRule, SyncRuleBody};
use berth_domain::replication::runs::{self, Direction, Item};
use berth_domain::swr::SwrError;
use berth_guest::http::{Incoming, Reply};
use berth_guest::manage::{
    commit, content_range, fault, filter_page, ids, oci_fault, ok_json, organization_allowed,
    parse_body,
};
use berth_guest::replication::{Batch, ItemSpec, enqueue, region, registry_guard};
use berth_guest::store::{self, Precondition, WriteOp};
use spin_sdk::wasip3::http::types::Method;

/// `GET /v2/manage/regions`: the registries of the caller's tenant.
pub async fn regions(who: &Principal) -> Result<Reply, SwrError> {
    let all: Vec<Registry> = store::scan_json(&reg::tenant_prefix(&who.tenant))
        .await
        .map_err(fault)?;
    let rows: Vec<_> = all
        .iter()
        .map(|r| serde_json::json!({ "regionID": r.name, "type": r.kind, "status": r.status }))
        .collect();
    ok_json(200, &rows)
}

/// A write asserting the repository exists as read: a rule or items
/// for it conflict with its deletion meanwhile. 404 when it does not.
async fn repository(name: &str) -> Result<WriteOp, SwrError> {
    let e = store::get(&keys::repo(name))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("repository {name} not found")))?;
    Ok(WriteOp::Check((
        keys::repo(name),
        Precondition::Version(e.version),
    )))
}

/// The guard of the registry a region names (`registry_guard`).
async fn region_guard(r: &Registry) -> Result<WriteOp, SwrError> {
    Ok(registry_guard(&r.tenant, r.id).await?.1)
}

/// The repository's tags worth copying on their own (cosign's
/// `sha256-<hex>.sig` tags follow their images).
async fn tags_of(name: &str) -> Result<Vec<String>, SwrError> {
    let prefix = keys::tag_prefix(name);
    Ok(store::scan_names(&prefix)
        .await
        .map_err(fault)?
        .into_iter()
        .filter(|t| !protocol::is_artifact_tag(t))
        .collect())
}

pub async fn serve(
    req: &Incoming,
    ns: &str,
    name: &str,
    op: &str,
    body: &[u8],
    who: &Principal,
) -> Result<Reply, SwrError> {
    match (op, &req.method) {
        ("sync_repo", Method::Post) => create(ns, name, body, who).await,
        ("sync_repo", Method::Get) => list(ns, name, who).await,
        ("sync_repo", Method::Delete) => delete(ns, name, body, who).await,
        ("sync_images", Method::Post) => manual(ns, name, body, who).await,
        ("sync_job", Method::Get) => jobs(req, ns, name, who).await,
        _ => Err(SwrError::method_not_allowed()),
    }
}

/// `create_image_sync_repo`. Beyond SWR, the repository's existing tags
/// are copied at once (a backfill execution, which the answer names).
async fn create(ns: &str, name: &str, body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    organization_allowed(who, ns, Action::Sync).await?;
    let exists = repository(name).await?;
    let body: SyncRuleBody = parse_body(body)?;
    rules::validate_sync(&body.remote_region_id, &body.remote_namespace)
        .map_err(SwrError::bad_request)?;
    let registry = region(&who.tenant, &body.remote_region_id).await?;
    let existing = store::scan_names(&rules::sync_rules_of(&who.tenant, name))
        .await
        .map_err(fault)?;
    if existing.len() >= rules::MAX_SYNC_RULES {
        return Err(SwrError::quota(format!(
            "at most {} sync rules per repository",
            rules::MAX_SYNC_RULES
        )));
    }
    let id = *ids(rules::SYNC_RULE_IDS, 1).await?.start();
    let now = store::now();
    let rule = SyncRule {
        id,
        tenant: who.tenant.clone(),
        namespace: ns.to_string(),
        repository: name.to_string(),
        region: registry.name.clone(),
        registry_id: registry.id,
        remote_namespace: body.remote_namespace.clone(),
        sync_auto: body.sync_auto,
        override_: body.override_,
        created: now,
        updated: now,
    };
    let mut ops = vec![
        WriteOp::Put((
            rules::sync_rule(&who.tenant, name, registry.id, &body.remote_namespace),
            serde_json::to_vec(&rule).expect("rules serialize"),
            Precondition::Absent,
        )),
        region_guard(&registry).await?,
        exists,
    ];
    // An automatic rule copies what the repository has too (beyond SWR,
    // which copies only later pushes); a manual one copies on request.
    let tags = if rule.sync_auto {
        tags_of(name).await?
    } else {
        Vec::new()
    };
    let mut execution = None;
    if !tags.is_empty() {
        let items: Vec<ItemSpec> = tags
            .iter()
            .map(|t| ItemSpec {
                source: name.to_string(),
                destination: rule.destination(),
                tag: t.clone(),
            })
            .collect();
        let (exec, more) =
            enqueue(&batch(who, &registry, "backfill", rule.override_), &items).await?;
        ops.extend(more);
        execution = Some(exec);
    }
    commit(ops, || {
        format!(
            "a sync rule of {name} to {}/{} exists, or the region changed meanwhile",
            registry.name, body.remote_namespace
        )
    })
    .await?;
    ok_json(
        201,
        &serde_json::json!({
            "id": id,
            "backfill": {
                "execution_id": execution,
                "tags": tags.len(),
                "note": if rule.sync_auto {
                    "the repository's existing tags are being copied too"
                } else {
                    "syncAuto is off: nothing is copied until a manual sync"
                },
            },
        }),
    )
}

fn batch<'a>(
    who: &'a Principal,
    registry: &'a Registry,
    trigger: &'a str,
    override_: bool,
) -> Batch<'a> {
    Batch {
        tenant: &who.tenant,
        policy_id: 0,
        trigger,
        registry,
        direction: Direction::Push,
        override_,
        operator: &who.user,
        operator_id: &who.user_id,
        execution: None,
        planning: false,
        wake: true,
    }
}

/// `list_image_auto_sync_repos_details`: a bare array of `SyncRepo`.
async fn list(ns: &str, name: &str, who: &Principal) -> Result<Reply, SwrError> {
    organization_allowed(who, ns, Action::GetNamespace).await?;
    repository(name).await?;
    let tenant_id = tenant_id(who).await?;
    let all: Vec<SyncRule> = store::scan_json(&rules::sync_rules_of(&who.tenant, name))
        .await
        .map_err(fault)?;
    // A registry renamed since: its name now (what a delete takes).
    let names: std::collections::HashMap<u64, String> =
        store::scan_json::<Registry>(&reg::tenant_prefix(&who.tenant))
            .await
            .map_err(fault)?
            .into_iter()
            .map(|r| (r.id, r.name))
            .collect();
    let rows: Vec<_> = all
        .into_iter()
        .map(|mut r| {
            if let Some(n) = names.get(&r.registry_id) {
                r.region = n.clone();
            }
            r.view(&tenant_id)
        })
        .collect();
    ok_json(200, &rows)
}

async fn tenant_id(who: &Principal) -> Result<String, SwrError> {
    use berth_domain::iam::records::{self, Tenant};
    Ok(store::get_json::<Tenant>(&records::tenant(&who.tenant))
        .await
        .map_err(oci_fault)?
        .map(|t| t.project_id)
        .unwrap_or_default())
}

/// `delete_image_sync_repo` (a `DELETE` with a JSON body naming the
/// region and organization). Copies already asked for go on.
async fn delete(ns: &str, name: &str, body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    organization_allowed(who, ns, Action::Sync).await?;
    #[derive(serde::Deserialize)]
    struct DeleteBody {
        #[serde(rename = "remoteRegionId")]
        region: String,
        #[serde(rename = "remoteNamespace")]
        namespace: String,
    }
    let body: DeleteBody = parse_body(body)?;
    let registry = region(&who.tenant, &body.region).await?;
    let key = rules::sync_rule(&who.tenant, name, registry.id, &body.namespace);
    let e = store::get(&key).await.map_err(oci_fault)?.ok_or_else(|| {
        SwrError::not_found(format!(
            "no sync rule of {name} to {}/{}",
            body.region, body.namespace
        ))
    })?;
    commit(
        vec![WriteOp::Delete((key, Precondition::Version(e.version)))],
        || "the sync rule changed meanwhile".to_string(),
    )
    .await?;
    Ok(Reply::new(200))
}

/// `create_manual_image_sync_repo`: copies the tags now; answers the tags
/// queued (a bare array).
async fn manual(ns: &str, name: &str, body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    organization_allowed(who, ns, Action::Sync).await?;
    let exists = repository(name).await?;
    let body: ManualSyncBody = parse_body(body)?;
    rules::validate_sync(&body.remote_region_id, &body.remote_namespace)
        .map_err(SwrError::bad_request)?;
    rules::validate_tags(&body.image_tag).map_err(SwrError::bad_request)?;
    let registry = region(&who.tenant, &body.remote_region_id).await?;
    let mut tags = body.image_tag.clone();
    tags.sort();
    tags.dedup();
    let keys: Vec<String> = tags.iter().map(|t| keys::tag(name, t)).collect();
    let found = store::metadata::get_many(keys.clone())
        .await
        .map_err(fault)?;
    let missing: Vec<&str> = tags
        .iter()
        .zip(found)
        .filter(|(_, f)| f.is_none())
        .map(|(t, _)| t.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(SwrError::not_found(format!(
            "{name} has no tag {}",
            missing.join(", ")
        )));
    }
    let destination = rules::retarget(name, &body.remote_namespace);
    let items: Vec<ItemSpec> = tags
        .iter()
        .map(|t| ItemSpec {
            source: name.to_string(),
            destination: destination.clone(),
            tag: t.clone(),
        })
        .collect();
    let (_, mut ops) = enqueue(&batch(who, &registry, "manual", body.override_), &items).await?;
    ops.push(region_guard(&registry).await?);
    ops.push(exists);
    commit(ops, || {
        "the region changed meanwhile; try again".to_string()
    })
    .await?;
    ok_json(200, &tags)
}

/// `show_sync_job`: the repository's sync jobs (one per tag copied),
/// newest first, paged by `filter=limit::N|offset::M|order::desc`, with
/// `Content-Range`.
async fn jobs(req: &Incoming, ns: &str, name: &str, who: &Principal) -> Result<Reply, SwrError> {
    organization_allowed(who, ns, Action::GetNamespace).await?;
    if req.query("filter").is_none() && req.query("limit").is_none() {
        return Err(SwrError::bad_request(
            "filter is required: limit::<n>|offset::<m>[|order::desc|asc]",
        ));
    }
    let (limit, offset, desc) = filter_page(req, 10, 1000)?;
    let mut index = store::scan_all(&runs::sync_jobs_of(&who.tenant, name))
        .await
        .map_err(fault)?;
    if !desc {
        index.reverse();
    }
    let total = index.len();
    let keys: Vec<String> = index
        .iter()
        .skip(offset)
        .take(limit)
        .map(|e| String::from_utf8_lossy(&e.value).into_owned())
        .collect();
    let tenant_id = tenant_id(who).await?;
    let rows: Vec<_> = store::metadata::get_many(keys)
        .await
        .map_err(fault)?
        .into_iter()
        .flatten()
        .filter_map(|e| serde_json::from_slice::<Item>(&e.value).ok())
        .map(|i| i.sync_job_view(&tenant_id))
        .collect();
    let range = content_range(offset, rows.len(), total);
    Ok(ok_json(200, &rows)?.header("content-range", range))
}
