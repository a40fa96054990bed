//! `GET /v2/_catalog` and `GET /v2/<name>/tags/list`: ordered, paged scans
//! of metadata indexes, never of storage.

use berth_domain::{ErrorCode, OciError, keys, paging};
use berth_guest::http::{Incoming, Reply};
use berth_guest::store::{self, fault, metadata};

/// One page of keys under `prefix`, without the prefix, plus whether more follow.
async fn page(req: &Incoming, prefix: &str) -> Result<(Vec<String>, u32, bool), OciError> {
    let p = paging::parse(req.query("n"), req.query("last"))
        .map_err(|m| OciError::new(ErrorCode::Unsupported, m).with_status(400))?;
    if p.limit == 0 {
        return Ok((Vec::new(), 0, false));
    }
    let after = p.last.as_ref().map(|l| format!("{prefix}{l}"));
    let entries = metadata::scan(prefix.to_string(), after, p.limit + 1)
        .await
        .map_err(fault)?;
    let more = entries.len() > p.limit as usize;
    let items = entries
        .into_iter()
        .take(p.limit as usize)
        .map(|e| e.key[prefix.len()..].to_string())
        .collect();
    Ok((items, p.limit, more))
}

fn reply(path: &str, body: serde_json::Value, items: &[String], limit: u32, more: bool) -> Reply {
    let mut r = Reply::json(200, serde_json::to_vec(&body).unwrap());
    if more && let Some(last) = items.last() {
        r = r.header("link", paging::next_link(path, limit, last));
    }
    r
}

pub async fn catalog(req: &Incoming) -> Result<Reply, OciError> {
    // The router names the caller's tenant: a catalog lists its own
    // repositories only.
    let prefix = match req.query("berth-tenant") {
        Some(t) => berth_domain::iam::records::tenant_repository_prefix(t),
        None => keys::REPO.to_string(),
    };
    let (repos, limit, more) = page(req, &prefix).await?;
    Ok(reply(
        &req.path,
        serde_json::json!({ "repositories": repos }),
        &repos,
        limit,
        more,
    ))
}

pub async fn tags(req: &Incoming, name: &str) -> Result<Reply, OciError> {
    if !store::exists(&keys::repo(name)).await? {
        return Err(OciError::name_unknown(name));
    }
    let (tags, limit, more) = page(req, &keys::tag_prefix(name)).await?;
    Ok(reply(
        &req.path,
        serde_json::json!({ "name": name, "tags": tags }),
        &tags,
        limit,
        more,
    ))
}
