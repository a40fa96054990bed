//! The collection index of a store written before it existed: built once,
//! before anything is collected, by walking every manifest and blob link
//! (`berth_domain::gc::INDEXED` records that it is done). Stores that
//! started with the index skip this: writers keep it.

use berth_domain::gc::{self, Candidate, Holder};
use berth_domain::manifest;
use berth_domain::swr::SwrError;
use berth_guest::jobs::Run;
use berth_guest::manage::{fault, oci_fault};
use berth_guest::store::{self, metadata};

use crate::LEASE_SECONDS;

const PAGE: u32 = 500;

/// Builds the index if the store has none; whether it did.
pub async fn ensure(run: &mut Run) -> Result<bool, SwrError> {
    let done = store::get(gc::INDEXED)
        .await
        .map_err(oci_fault)?
        .and_then(|e| String::from_utf8(e.value).ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|v| v >= gc::INDEX_VERSION);
    if done {
        return Ok(false);
    }
    let now = store::now();
    // Manifests: their references (idempotent puts).
    walk(run, "manifest/", |key, value| {
        let Some((name, digest)) = key["manifest/".len()..].rsplit_once(':') else {
            return Vec::new();
        };
        // `<name>:<algorithm>:<hex>`: the repository ends at the
        // digest's algorithm.
        let Some((name, algorithm)) = name.rsplit_once(':') else {
            return Vec::new();
        };
        let digest = format!("{algorithm}:{digest}");
        let Some((record, body)) = berth_domain::keys::decode_manifest(value) else {
            return Vec::new();
        };
        match manifest::parse(body, Some(&record.media_type)) {
            Ok(parsed) => berth_guest::gc::index(name, &digest, &parsed),
            Err(_) => Vec::new(),
        }
    })
    .await?;
    // Links: their holders, linked now (the grace starts today), and a
    // candidate each, so blobs no manifest uses are found.
    walk(run, "blob/", |key, _| {
        let Some((name, digest)) = key["blob/".len()..].split_once(':') else {
            return Vec::new();
        };
        vec![
            store::put_json(gc::holder(digest, name), &Holder { linked: now }),
            berth_guest::gc::enqueue(&Candidate::blob(digest, now)),
        ]
    })
    .await?;
    run.commit(
        vec![store::put(
            gc::INDEXED.to_string(),
            gc::INDEX_VERSION.to_string().into_bytes(),
        )],
        LEASE_SECONDS,
    )
    .await?;
    Ok(true)
}

/// Commits `ops_for(key, value)` for every entry under `prefix`, a page
/// per commit.
async fn walk<F>(run: &mut Run, prefix: &str, ops_for: F) -> Result<(), SwrError>
where
    F: Fn(&str, &[u8]) -> Vec<store::WriteOp>,
{
    let mut after: Option<String> = None;
    loop {
        let page = metadata::scan(prefix.to_string(), after.clone(), PAGE)
            .await
            .map_err(fault)?;
        let ops: Vec<_> = page
            .iter()
            .flat_map(|e| ops_for(&e.key, &e.value))
            .collect();
        if !ops.is_empty() {
            run.commit(ops, LEASE_SECONDS).await?;
        }
        if page.len() < PAGE as usize {
            return Ok(());
        }
        after = page.last().map(|e| e.key.clone());
    }
}
