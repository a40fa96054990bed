//! A tenant's usage: `GET /v2/manage/overview` (organizations,
//! repositories, images, bytes stored — the distinct blobs of each
//! organization —, bytes served) and
//! `GET /v2/manage/reports/<store|downflow>/<frequency>`.
//!
//! Reports come from daily figures: bytes served per day (a counter per
//! organization and day, kept as blobs are served) and bytes stored as
//! last computed on a day (recorded by every usage computation; days
//! nobody asked about carry no figure).

use crate::stats;
use berth_domain::iam::Principal;
use berth_domain::iam::records;
use berth_domain::keys;
use berth_domain::reports::{self, Aggregate, Frequency};
use berth_domain::swr::SwrError;
use berth_guest::http::Reply;
use berth_guest::manage::{fault, oci_fault, ok_json};
use berth_guest::namespaces;
use berth_guest::store::{self, metadata};

pub struct Usage {
    pub namespaces: usize,
    pub repositories: usize,
    pub images: usize,
    pub stored: u64,
    pub served: i64,
    /// Per organization: (name, bytes stored, bytes served).
    pub per_namespace: Vec<(String, u64, i64)>,
}

pub async fn usage(who: &Principal) -> Result<Usage, SwrError> {
    let owned = namespaces::owned(&who.tenant).await.map_err(fault)?;
    let repos = store::scan_names(&records::tenant_repository_prefix(&who.tenant))
        .await
        .map_err(fault)?;
    // Bytes stored: each organization's distinct blobs (a layer shared by
    // its repositories counts once), as storage holds them until garbage
    // collection removes their links.
    let mut images = 0;
    let mut blobs: std::collections::HashMap<&str, std::collections::HashMap<String, u64>> =
        Default::default();
    for r in &repos {
        let (tags, _) = stats::footprint(r).await?;
        images += tags;
        let prefix = keys::blob_link(r, "");
        let org = blobs.entry(stats::namespace_of(r)).or_default();
        for e in store::scan_all(&prefix).await.map_err(fault)? {
            if let Ok(link) = serde_json::from_slice::<keys::BlobLink>(&e.value) {
                org.insert(e.key[prefix.len()..].to_string(), link.size);
            }
        }
    }
    let stored: u64 = blobs.values().flat_map(|b| b.values()).sum();
    let served_per = metadata::counters(owned.iter().map(|n| keys::downflow(&n.name)).collect())
        .await
        .map_err(fault)?;
    let served = served_per.iter().sum();
    let per_namespace = owned
        .iter()
        .zip(&served_per)
        .map(|(n, s)| {
            let stored = blobs.get(n.name.as_str()).map_or(0, |b| b.values().sum());
            (n.name.clone(), stored, *s)
        })
        .collect();
    // Today's figure for the reports; written only when it changed.
    let snapshot = records::stored_on(&who.tenant, &reports::date(store::now()));
    let figure = stored.to_string().into_bytes();
    let recorded = store::get(&snapshot).await.map_err(oci_fault)?;
    if recorded.is_none_or(|e| e.value != figure) {
        store::commit(vec![store::put(snapshot, figure)])
            .await
            .map_err(fault)?;
    }
    Ok(Usage {
        namespaces: owned.len(),
        repositories: repos.len(),
        images,
        stored,
        served,
        per_namespace,
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
            // Berth's addition: the figures per organization.
            "namespaces": u.per_namespace.iter().map(|(name, stored, served)| serde_json::json!({
                "name": name, "store_space": *stored as f64, "downflow_size": *served as f64,
            })).collect::<Vec<_>>(),
        }),
    )
}

/// `namespace` (Berth's addition, for `downflow`): one organization's.
pub async fn report(
    who: &Principal,
    kind: &str,
    frequency: &str,
    namespace: Option<&str>,
) -> Result<Reply, SwrError> {
    let frequency = Frequency::parse(frequency).ok_or_else(|| {
        SwrError::bad_request(format!(
            "frequency {frequency:?} is not daily, weekly or monthly"
        ))
    })?;
    let days = reports::last_days(store::now(), reports::days_covered(frequency));
    let (daily, aggregate): (Vec<Option<f64>>, _) = match kind {
        "store" => {
            // Computing today's usage records today's figure.
            usage(who).await?;
            let keys = days
                .iter()
                .map(|d| records::stored_on(&who.tenant, d))
                .collect();
            let got = metadata::get_many(keys).await.map_err(fault)?;
            let values = got
                .iter()
                .map(|e| {
                    e.as_ref()
                        .and_then(|e| std::str::from_utf8(&e.value).ok()?.parse::<f64>().ok())
                })
                .collect();
            (values, Aggregate::Last)
        }
        "downflow" => {
            let mut orgs = namespaces::owned(&who.tenant).await.map_err(fault)?;
            if let Some(ns) = namespace {
                orgs.retain(|n| n.name == ns);
                if orgs.is_empty() {
                    return Err(SwrError::not_found(format!("organization {ns} not found")));
                }
            }
            let keys = days
                .iter()
                .flat_map(|d| orgs.iter().map(move |n| keys::downflow_day(&n.name, d)))
                .collect();
            let counts = metadata::counters(keys).await.map_err(fault)?;
            let per_day = orgs.len().max(1);
            let values = (0..days.len())
                .map(|i| {
                    let day = counts.get(i * per_day..(i + 1) * per_day).unwrap_or(&[]);
                    Some(day.iter().sum::<i64>() as f64)
                })
                .collect();
            (values, Aggregate::Sum)
        }
        _ => {
            return Err(SwrError::bad_request(format!(
                "resource type {kind:?} is not store or downflow"
            )));
        }
    };
    let daily: Vec<(String, Option<f64>)> = days.into_iter().zip(daily).collect();
    let points: Vec<serde_json::Value> = reports::series(&daily, frequency, aggregate)
        .into_iter()
        .map(|(date, value)| serde_json::json!({ "date": date, "value": value }))
        .collect();
    ok_json(200, &points)
}
