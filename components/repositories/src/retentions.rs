//! Image aging rules of a repository (SWR shared edition:
//! `create_retention`, `list_retentions`, `show_retention`,
//! `update_retention`, `delete_retention`, `list_retention_histories`);
//! `berth_domain::retention` holds the rules, the `aging` job component
//! applies them; `GET …/retentions/<id>/preview` is its dry run. Rules need `swr:repository:retention` on the organization.

use berth_domain::iam::{Action, Principal};
use berth_domain::retention::{self as rt, HistoryEntry, Retention, RetentionBody};
use berth_domain::swr::{SwrError, rfc3339};
use berth_guest::http::{Incoming, Reply};
use berth_guest::manage::{commit, fault, oci_fault, ok_json, organization_allowed, parse_body};
use berth_guest::store::{self, Precondition, WriteOp, metadata};
use spin_sdk::wasip3::http::types::Method;

/// `…/retentions[/<id>|/histories]` of repository `name` in `ns`.
pub async fn serve(
    req: &Incoming,
    ns: &str,
    name: &str,
    rest: &[&str],
    m: &Method,
    body: &[u8],
    who: &Principal,
) -> Result<Reply, SwrError> {
    match (rest, m) {
        ([], Method::Get) => list(ns, name, who).await,
        ([], Method::Post) => create(ns, name, body, who).await,
        (["histories"], Method::Get) => histories(req, ns, name, who).await,
        ([id, "preview"], Method::Get) => preview(ns, name, id, who).await,
        ([id], m) => one(ns, name, id, m, body, who).await,
        _ => Err(SwrError::method_not_allowed()),
    }
}

/// Whether `who` may manage the aging rules of repository `name` in
/// organization `ns`; the repository record (rules are written only while
/// it exists).
async fn allowed(ns: &str, name: &str, who: &Principal) -> Result<metadata::Entry, SwrError> {
    organization_allowed(who, ns, Action::Retention).await?;
    store::get(&berth_domain::keys::repo(name))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("repository {name} not found")))
}

/// The SDK's `Retention`.
fn view(r: &Retention) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "algorithm": r.algorithm,
        "rules": r.rules,
        "scope": "",
    })
}

async fn rules_of(name: &str, who: &Principal) -> Result<Vec<(Retention, u64)>, SwrError> {
    Ok(store::scan_all(&rt::repository_prefix(name))
        .await
        .map_err(fault)?
        .into_iter()
        .filter_map(|e| {
            serde_json::from_slice::<Retention>(&e.value)
                .ok()
                .filter(|r| r.tenant == who.tenant)
                .map(|r| (r, e.version))
        })
        .collect())
}

async fn create(ns: &str, name: &str, body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    let repo = allowed(ns, name, who).await?;
    let b: RetentionBody = parse_body(body)?;
    rt::validate(&b).map_err(SwrError::bad_request)?;
    if rules_of(name, who).await?.len() >= rt::MAX_PER_REPOSITORY {
        return Err(SwrError::conflict(format!(
            "repository {name} has an aging rule already: update it instead"
        )));
    }
    let id = metadata::increment(rt::IDS.to_string(), 1)
        .await
        .map_err(fault)? as u64;
    let retention = Retention {
        id,
        tenant: who.tenant.clone(),
        repository: name.to_string(),
        algorithm: b.algorithm,
        rules: b.rules,
        creator: who.user.clone(),
        created: store::now(),
    };
    let ops = vec![
        WriteOp::Put((
            rt::key(name, id),
            serde_json::to_vec(&retention).expect("rules serialize"),
            Precondition::Absent,
        )),
        // Only while the repository is there (its delete removes its rules).
        WriteOp::Put((repo.key, repo.value, Precondition::Version(repo.version))),
    ];
    commit(ops, || {
        format!("repository {name} changed meanwhile; try again")
    })
    .await?;
    ok_json(201, &serde_json::json!({ "id": id }))
}

/// A bare JSON array of `Retention`s (the SDK reads the whole body).
async fn list(ns: &str, name: &str, who: &Principal) -> Result<Reply, SwrError> {
    allowed(ns, name, who).await?;
    let out: Vec<_> = rules_of(name, who)
        .await?
        .iter()
        .map(|(r, _)| view(r))
        .collect();
    ok_json(200, &out)
}

/// `GET …/retentions/<id>/preview` (Berth's dry run of an aging rule):
/// what the aging sweep would do to the repository's tags now, changing
/// nothing: `{"retention_id", "remove": [{tag, digest, reason}], "keep": […]}`.
async fn preview(ns: &str, name: &str, id: &str, who: &Principal) -> Result<Reply, SwrError> {
    allowed(ns, name, who).await?;
    let id: u64 = id
        .parse()
        .map_err(|_| SwrError::bad_request(format!("retention id {id:?} is not a number")))?;
    let missing = || SwrError::not_found(format!("aging rule {id} not found on {name}"));
    let rule = store::get_json::<Retention>(&rt::key(name, id))
        .await
        .map_err(oci_fault)?
        .filter(|r| r.tenant == who.tenant)
        .ok_or_else(missing)?;
    let (tags, _) = berth_guest::retention::tags_of(name, false).await?;
    let (_, immutable) = store::owner_and_rules(name).await.map_err(oci_fault)?;
    let protection = immutable.protection();
    let plan = rt::plan(&rule, &tags, store::now(), |t| {
        protection.protecting(name, t)
    })
    .map_err(SwrError::internal)?;
    let side = |remove: bool| -> Vec<serde_json::Value> {
        plan.iter()
            .filter(|d| d.remove == remove)
            .map(|d| serde_json::json!({"tag": d.tag, "digest": d.digest, "reason": d.reason}))
            .collect()
    };
    ok_json(
        200,
        &serde_json::json!({"retention_id": id, "remove": side(true), "keep": side(false)}),
    )
}

async fn one(
    ns: &str,
    name: &str,
    id: &str,
    m: &Method,
    body: &[u8],
    who: &Principal,
) -> Result<Reply, SwrError> {
    allowed(ns, name, who).await?;
    let id: u64 = id
        .parse()
        .map_err(|_| SwrError::bad_request(format!("retention id {id:?} is not a number")))?;
    let key = rt::key(name, id);
    let missing = || SwrError::not_found(format!("aging rule {id} not found on {name}"));
    let entry = store::get(&key)
        .await
        .map_err(oci_fault)?
        .ok_or_else(missing)?;
    let mut r: Retention = serde_json::from_slice(&entry.value)
        .map_err(|e| SwrError::internal(format!("corrupt aging rule: {e}")))?;
    if r.tenant != who.tenant {
        return Err(missing());
    }
    let op = match m {
        Method::Get => return ok_json(200, &view(&r)),
        Method::Patch => {
            let b: RetentionBody = parse_body(body)?;
            rt::validate(&b).map_err(SwrError::bad_request)?;
            r.algorithm = b.algorithm;
            r.rules = b.rules;
            WriteOp::Put((
                key,
                serde_json::to_vec(&r).expect("rules serialize"),
                Precondition::Version(entry.version),
            ))
        }
        Method::Delete => WriteOp::Delete((key, Precondition::Version(entry.version))),
        _ => return Err(SwrError::method_not_allowed()),
    };
    commit(vec![op], || {
        format!("aging rule {id} changed meanwhile; try again")
    })
    .await?;
    Ok(Reply::new(200))
}

/// `list_retention_histories`: the tags aging removed from the
/// repository, newest first; `limit`/`offset` (or `filter=limit::N|offset::M`)
/// and `Content-Range`, as SWR pages.
async fn histories(
    req: &Incoming,
    ns: &str,
    name: &str,
    who: &Principal,
) -> Result<Reply, SwrError> {
    allowed(ns, name, who).await?;
    let (limit, offset, _) = berth_guest::manage::filter_page(req, 100, 1000)?;
    let entries = store::scan_all(&rt::history_prefix(name))
        .await
        .map_err(fault)?;
    let total = entries.len();
    let rows: Vec<_> = entries
        .iter()
        .rev()
        .skip(offset)
        .take(limit)
        .filter_map(|e| serde_json::from_slice::<HistoryEntry>(&e.value).ok())
        .map(|h| {
            serde_json::json!({
                "created_at": rfc3339(h.created),
                "id": h.id,
                "namespace": h.namespace,
                "repo": h.repo,
                "retention_id": h.retention_id,
                "rule_type": h.rule_type,
                "tag": h.tag,
                "digest": h.digest,
                "reason": h.reason,
            })
        })
        .collect();
    let range = berth_guest::manage::content_range(offset, rows.len(), total);
    let reply = ok_json(
        200,
        &serde_json::json!({ "retention_log": rows, "total": total }),
    )?;
    Ok(reply.header("content-range", range))
}
