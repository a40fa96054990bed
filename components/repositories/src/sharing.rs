//! Sharing private repositories with other tenants (SWR "access domains"):
//! read permission until a deadline, and the listings of what a tenant
//! shared and what was shared with it.
//!
//! - `POST|GET …/repositories/<repo>/access-domains`, `GET|PATCH|DELETE …/<domain>`
//! - `GET /v2/manage/shared-repositories?center=self|thirdparty` (`Content-Range`)
//! - `GET /v3/manage/shared-repositories?shared_by=self|thirdparty` (`nextMarker`)

use crate::stats::{self, RepoStats};
use berth_domain::iam::records::{self, Share, Tenant};
use berth_domain::iam::{Action, Principal};
use berth_domain::swr::{self, SwrError};
use berth_guest::http::{Incoming, Reply};
use berth_guest::manage::{fault, oci_fault, ok_json, parse_body};
use berth_guest::store::{self, metadata};
use serde::Deserialize;
use spin_sdk::wasip3::http::types::Method;

#[derive(Deserialize)]
struct ShareBody {
    access_domain: Option<String>,
    permit: Option<String>,
    deadline: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// `forever`, or a time in the future.
fn deadline(s: &str) -> Result<u64, SwrError> {
    if s == "forever" {
        return Ok(u64::MAX);
    }
    let t = swr::parse_time(s).ok_or_else(|| {
        SwrError::bad_request(format!(
            "deadline {s:?} is not `forever` or a time like 2026-12-31T00:00:00Z"
        ))
    })?;
    if t <= store::now() {
        return Err(SwrError::bad_request("the deadline is in the past"));
    }
    Ok(t)
}

fn permit(p: Option<&str>) -> Result<(), SwrError> {
    match p {
        None | Some("read") => Ok(()),
        Some(other) => Err(SwrError::bad_request(format!(
            "permit {other:?}: a shared repository can only be read"
        ))),
    }
}

fn view(repo: &str, s: &Share) -> serde_json::Value {
    let (ns, name) = (stats::namespace_of(repo), stats::short_name(repo));
    serde_json::json!({
        "namespace": ns,
        "repository": name,
        "access_domain": s.tenant,
        "permit": "read",
        "deadline": if s.expires == u64::MAX { "forever".to_string() } else { swr::rfc3339(s.expires) },
        "description": s.description,
        "creator_id": "",
        "creator_name": s.creator,
        "created": swr::rfc3339(s.created),
        "updated": swr::rfc3339(s.updated),
        "status": s.in_force(store::now()),
    })
}

pub async fn access_domains(
    repo: &str,
    domain: Option<&str>,
    method: &Method,
    body: &[u8],
    who: &Principal,
) -> Result<Reply, SwrError> {
    match (domain, method) {
        (None, Method::Post) => {
            crate::authorized(repo, who, Action::Share).await?;
            let b: ShareBody = parse_body(body)?;
            permit(b.permit.as_deref())?;
            let target = b
                .access_domain
                .ok_or_else(|| SwrError::bad_request("access_domain is required"))?;
            if target == who.tenant {
                return Err(SwrError::bad_request(
                    "a repository is not shared with its own tenant",
                ));
            }
            if store::get_json::<Tenant>(&records::tenant(&target))
                .await
                .map_err(oci_fault)?
                .is_none()
            {
                return Err(SwrError::not_found(format!("no tenant {target}")));
            }
            let expires = deadline(b.deadline.as_deref().unwrap_or("forever"))?;
            let now = store::now();
            let share = Share {
                tenant: target.clone(),
                expires,
                description: b.description.unwrap_or_default(),
                creator: who.user.clone(),
                created: now,
                updated: now,
            };
            let ops = vec![
                store::WriteOp::Put((
                    records::share(repo, &target),
                    serde_json::to_vec(&share).expect("json"),
                    store::Precondition::Absent,
                )),
                store::put(records::shared_to(&target, repo), Vec::new()),
            ];
            match store::commit(ops).await {
                Ok(_) => Ok(Reply::new(201)),
                Err(store::StoreError::Conflict) => Err(SwrError::conflict(format!(
                    "{repo} is already shared with {target}"
                ))),
                Err(e) => Err(fault(e)),
            }
        }
        (None, Method::Get) => {
            crate::authorized_owner(repo, who, Action::GetRepository).await?;
            let mut out = Vec::new();
            for e in metadata::scan(records::share_prefix(repo), None, 10_000)
                .await
                .map_err(fault)?
            {
                if let Ok(s) = serde_json::from_slice::<Share>(&e.value) {
                    out.push(view(repo, &s));
                }
            }
            ok_json(200, &out)
        }
        (Some(d), Method::Get) => {
            // The owner, or the tenant it is shared with, about itself.
            if d == who.tenant {
                crate::authorized(repo, who, Action::GetRepository).await?;
            } else {
                crate::authorized_owner(repo, who, Action::GetRepository).await?;
            }
            let s = store::get_json::<Share>(&records::share(repo, d))
                .await
                .map_err(oci_fault)?;
            match s {
                Some(s) => {
                    let mut v = view(repo, &s);
                    v["exist"] = true.into();
                    ok_json(200, &v)
                }
                None => ok_json(200, &serde_json::json!({ "exist": false })),
            }
        }
        (Some(d), Method::Patch) => {
            crate::authorized(repo, who, Action::Share).await?;
            let b: ShareBody = parse_body(body)?;
            permit(b.permit.as_deref())?;
            let key = records::share(repo, d);
            let mut s: Share = store::get_json(&key)
                .await
                .map_err(oci_fault)?
                .ok_or_else(|| SwrError::not_found(format!("{repo} is not shared with {d}")))?;
            if let Some(dl) = b.deadline {
                s.expires = deadline(&dl)?;
            }
            if let Some(desc) = b.description {
                s.description = desc;
            }
            s.updated = store::now();
            store::commit(vec![store::put_json(key, &s)])
                .await
                .map_err(fault)?;
            Ok(Reply::new(201))
        }
        (Some(d), Method::Delete) => {
            crate::authorized(repo, who, Action::Share).await?;
            if !store::exists(&records::share(repo, d))
                .await
                .map_err(oci_fault)?
            {
                return Err(SwrError::not_found(format!(
                    "{repo} is not shared with {d}"
                )));
            }
            store::commit(vec![
                store::delete(records::share(repo, d)),
                store::delete(records::shared_to(d, repo)),
            ])
            .await
            .map_err(fault)?;
            Ok(Reply::new(204))
        }
        _ => Err(SwrError::method_not_allowed()),
    }
}

/// Repositories shared with the caller's tenant (`thirdparty`) or by it
/// (`self`), still in force.
pub async fn shared(req: &Incoming, who: &Principal, v3: bool) -> Result<Reply, SwrError> {
    let by_me = if v3 {
        req.query("shared_by") == Some("self")
    } else {
        req.query("center") == Some("self")
    };
    let mut names = Vec::new();
    if by_me {
        let prefix = records::tenant_repository_prefix(&who.tenant);
        for e in metadata::scan(prefix.clone(), None, 10_000)
            .await
            .map_err(fault)?
        {
            let repo = e.key[prefix.len()..].to_string();
            let shares = metadata::scan(records::share_prefix(&repo), None, 1)
                .await
                .map_err(fault)?;
            if !shares.is_empty() {
                names.push(repo);
            }
        }
    } else {
        let prefix = records::shared_to_prefix(&who.tenant);
        for e in metadata::scan(prefix.clone(), None, 10_000)
            .await
            .map_err(fault)?
        {
            let repo = e.key[prefix.len()..].to_string();
            let live = store::get_json::<Share>(&records::share(&repo, &who.tenant))
                .await
                .map_err(oci_fault)?
                .is_some_and(|s| s.in_force(store::now()));
            if live
                && store::exists(&berth_domain::keys::repo(&repo))
                    .await
                    .map_err(oci_fault)?
            {
                names.push(repo);
            }
        }
    }
    if let Some(ns) = req.query("namespace") {
        names.retain(|n| stats::namespace_of(n) == ns);
    }
    let limit: usize = req
        .query("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if v3 { 100 } else { usize::MAX })
        .min(1000);
    let offset: usize = req
        .query(if v3 { "marker" } else { "offset" })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let total = names.len();
    let mut rows = Vec::new();
    for n in names.iter().skip(offset).take(limit) {
        rows.push(RepoStats::load(n).await?.listing(n, v3));
    }
    if v3 {
        let mut body = serde_json::json!({ "repos": rows });
        if offset + rows.len() < total {
            body["nextMarker"] = (offset + rows.len()).into();
        }
        ok_json(200, &body)
    } else {
        let end = (offset + rows.len()).saturating_sub(1);
        Ok(ok_json(200, &rows)?.header("content-range", format!("{offset}-{end}/{total}")))
    }
}
