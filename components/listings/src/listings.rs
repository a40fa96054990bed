//! `GET /v2/_catalog` and `GET /v2/<name>/tags/list`: ordered, paged scans
//! of metadata indexes, never of storage.

use berth_domain::iam::{self, Action, Principal, records};
use berth_domain::{ErrorCode, OciError, keys, paging};
use berth_guest::auth;
use berth_guest::http::{Incoming, Reply};
use berth_guest::store::{self, fault, metadata};

/// One page of keys under `prefix`, without the prefix, keeping those
/// `keep` accepts, plus whether more follow.
async fn page(
    req: &Incoming,
    prefix: &str,
    keep: Option<&Principal>,
) -> Result<(Vec<String>, u32, bool), OciError> {
    let p = paging::parse(req.query("n"), req.query("last"))
        .map_err(|m| OciError::new(ErrorCode::Unsupported, m).with_status(400))?;
    if p.limit == 0 {
        return Ok((Vec::new(), 0, false));
    }
    let mut after = p.last.as_ref().map(|l| format!("{prefix}{l}"));
    let mut items = Vec::new();
    // Scan on until a page and one more are kept, or the keys run out.
    loop {
        let entries = metadata::scan(prefix.to_string(), after.clone(), p.limit + 1)
            .await
            .map_err(fault)?;
        let exhausted = entries.len() <= p.limit as usize;
        after = entries.last().map(|e| e.key.clone());
        for e in entries {
            let name = e.key[prefix.len()..].to_string();
            let kept = match keep {
                Some(who) => auth::may(Some(who), Action::Pull, &name).await?,
                None => true,
            };
            if kept {
                items.push(name);
            }
            if items.len() > p.limit as usize {
                break;
            }
        }
        if exhausted || items.len() > p.limit as usize {
            break;
        }
    }
    let more = items.len() > p.limit as usize;
    items.truncate(p.limit as usize);
    Ok((items, p.limit, more))
}

fn reply(path: &str, body: serde_json::Value, items: &[String], limit: u32, more: bool) -> Reply {
    let mut r = Reply::json(200, serde_json::to_vec(&body).unwrap());
    if more && let Some(last) = items.last() {
        r = r.header("link", paging::next_link(path, limit, last));
    }
    r
}

/// The repositories of the caller's tenant that the caller may pull;
/// nothing without a caller (the router always names one).
pub async fn catalog(req: &Incoming, caller: Option<(&str, &str)>) -> Result<Reply, OciError> {
    let Some((tenant, user)) = caller else {
        return Err(OciError::new(
            ErrorCode::Denied,
            "the catalog needs a caller",
        ));
    };
    let Some(who) = auth::principal(tenant, user).await? else {
        return Err(OciError::new(
            ErrorCode::Denied,
            "the caller is disabled or gone",
        ));
    };
    let prefix = records::tenant_repository_prefix(tenant);
    let keep = Some(&who).filter(|w| !iam::whole_tenant(w, Action::Pull));
    let (repos, limit, more) = page(req, &prefix, keep).await?;
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
    let (tags, limit, more) = page(req, &keys::tag_prefix(name), None).await?;
    Ok(reply(
        &req.path,
        serde_json::json!({ "name": name, "tags": tags }),
        &tags,
        limit,
        more,
    ))
}
