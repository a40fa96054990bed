//! A tenant's usage: `GET /v2/manage/overview` (organizations,
//! repositories, images, bytes stored, bytes served) and
//! `GET /v2/manage/reports/<store|downflow>/<frequency>`.
//!
//! Berth keeps current totals, not their history: a report is one point,
//! today's value.

use crate::stats::RepoStats;
use berth_domain::iam::Principal;
use berth_domain::iam::records;
use berth_domain::keys;
use berth_domain::swr::{self, SwrError};
use berth_guest::http::Reply;
use berth_guest::manage::{fault, ok_json};
use berth_guest::namespaces;
use berth_guest::store::{self, metadata};

pub struct Usage {
    pub namespaces: usize,
    pub repositories: usize,
    pub images: usize,
    pub stored: u64,
    pub served: i64,
}

pub async fn usage(who: &Principal) -> Result<Usage, SwrError> {
    let owned = namespaces::owned(&who.tenant).await.map_err(fault)?;
    let repos = store::scan_names(&records::tenant_repository_prefix(&who.tenant))
        .await
        .map_err(fault)?;
    let (mut images, mut stored) = (0, 0);
    for r in &repos {
        let st = RepoStats::load(r).await?;
        images += st.tags.len();
        stored += st.size;
    }
    let served = metadata::counters(owned.iter().map(|n| keys::downflow(&n.name)).collect())
        .await
        .map_err(fault)?
        .iter()
        .sum();
    Ok(Usage {
        namespaces: owned.len(),
        repositories: repos.len(),
        images,
        stored,
        served,
    })
}

pub async fn overview(who: &Principal) -> Result<Reply, SwrError> {
    let u = usage(who).await?;
    ok_json(
        200,
        // `namspace_num` is spelled as SWR's model spells it.
        &serde_json::json!({
            "domain_id": who.tenant,
            "domain_name": who.tenant,
            "namspace_num": u.namespaces,
            "repo_num": u.repositories,
            "image_num": u.images,
            "store_space": u.stored as f64,
            "downflow_size": u.served as f64,
        }),
    )
}

pub async fn report(who: &Principal, kind: &str, frequency: &str) -> Result<Reply, SwrError> {
    if !matches!(frequency, "daily" | "weekly" | "monthly") {
        return Err(SwrError::bad_request(format!(
            "frequency {frequency:?} is not daily, weekly or monthly"
        )));
    }
    let u = usage(who).await?;
    let value = match kind {
        "store" => u.stored as f64,
        "downflow" => u.served as f64,
        _ => {
            return Err(SwrError::bad_request(format!(
                "resource type {kind:?} is not store or downflow"
            )));
        }
    };
    let today = swr::rfc3339(berth_guest::store::now())[..10].to_string();
    ok_json(200, &serde_json::json!([{ "date": today, "value": value }]))
}
