//! Bindings to Berth's store capabilities, and the small helpers every
//! endpoint uses on top of them.

use berth_domain::OciError;

spin_sdk::wit_bindgen::generate!({
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    world: "berth:registry/component-imports",
    path: "../../wit",
    generate_all,
});

pub use berth::registry::blobs::{self, DigestAlgorithm};
pub use berth::registry::metadata::{self, Precondition, Stat, WriteOp};
pub use berth::registry::types::StoreError;
pub use berth::registry::{config, credentials, uploads};

/// Server faults become `UNKNOWN` errors; the detail stays in the host's logs.
pub fn fault(e: StoreError) -> OciError {
    OciError::internal(format!("storage failure: {e:?}"))
}

pub async fn get(key: &str) -> Result<Option<metadata::Entry>, OciError> {
    metadata::get(key.to_string()).await.map_err(fault)
}

pub async fn exists(key: &str) -> Result<bool, OciError> {
    Ok(get(key).await?.is_some())
}

pub async fn get_json<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>, OciError> {
    match get(key).await? {
        Some(e) => serde_json::from_slice(&e.value)
            .map(Some)
            .map_err(|e| OciError::internal(format!("corrupt record {key}: {e}"))),
        None => Ok(None),
    }
}

pub async fn commit(ops: Vec<WriteOp>) -> Result<Vec<u64>, StoreError> {
    metadata::commit(ops).await
}

/// The first entry of each group under `prefix`, in key order, where a
/// group is the key's next segment (`<prefix><group>/…`): one read per
/// group, however many entries it has. Groups' entries must sort before
/// `~` (digits and names do), which is how a read skips past a group.
pub async fn first_of_groups(prefix: &str) -> Result<Vec<metadata::Entry>, StoreError> {
    let mut firsts = Vec::new();
    let mut after: Option<String> = None;
    while let Some(entry) = metadata::scan(prefix.to_string(), after.clone(), 1)
        .await?
        .pop()
    {
        after = Some(match entry.key[prefix.len()..].split_once('/') {
            Some((group, _)) => format!("{prefix}{group}/~"),
            // Not a grouped key: step over it.
            None => entry.key.clone(),
        });
        firsts.push(entry);
    }
    Ok(firsts)
}

/// Every entry under `prefix`, in key order (scanned a page at a time).
pub async fn scan_all(prefix: &str) -> Result<Vec<metadata::Entry>, StoreError> {
    const PAGE: u32 = 1000;
    let mut out: Vec<metadata::Entry> = Vec::new();
    loop {
        let after = out.last().map(|e| e.key.clone());
        let page = metadata::scan(prefix.to_string(), after, PAGE).await?;
        let n = page.len();
        out.extend(page);
        if n < PAGE as usize {
            return Ok(out);
        }
    }
}

/// Every entry under `prefix` that parses as JSON of `T`, with its entry
/// (for the version), in key order; others are skipped.
pub async fn scan_parsed<T: serde::de::DeserializeOwned>(
    prefix: &str,
) -> Result<Vec<(T, metadata::Entry)>, StoreError> {
    Ok(scan_all(prefix)
        .await?
        .into_iter()
        .filter_map(|e| Some((serde_json::from_slice(&e.value).ok()?, e)))
        .collect())
}

/// [`scan_parsed`] without the entries.
pub async fn scan_json<T: serde::de::DeserializeOwned>(prefix: &str) -> Result<Vec<T>, StoreError> {
    Ok(scan_parsed(prefix)
        .await?
        .into_iter()
        .map(|(t, _)| t)
        .collect())
}

/// The keys under `prefix`, without the prefix.
pub async fn scan_names(prefix: &str) -> Result<Vec<String>, StoreError> {
    Ok(scan_all(prefix)
        .await?
        .into_iter()
        .map(|e| e.key[prefix.len()..].to_string())
        .collect())
}

pub fn put(key: String, value: Vec<u8>) -> WriteOp {
    WriteOp::Put((key, value, Precondition::None))
}

pub fn put_json<T: serde::Serialize>(key: String, value: &T) -> WriteOp {
    put(key, serde_json::to_vec(value).expect("records serialize"))
}

pub fn delete(key: String) -> WriteOp {
    WriteOp::Delete((key, Precondition::None))
}

/// Appends `event` to the event log, in the commit these operations go in
/// (`berth_domain::events`).
pub fn event(event: &berth_domain::events::EventRecord) -> WriteOp {
    WriteOp::Append((berth_domain::events::PREFIX.to_string(), event.encode()))
}

/// An event of `kind` on repository `name` (owned by `tenant`), made now
/// by `operator` (`user@tenant`) through `req` (its client's address).
pub fn new_event(
    req: &crate::http::Incoming,
    kind: berth_domain::events::EventKind,
    tenant: &str,
    name: &str,
    operator: String,
) -> berth_domain::events::EventRecord {
    let mut e = berth_domain::events::EventRecord::new(kind, tenant, name, now_ns() as u64);
    e.operator = operator;
    e.client = req.header(CLIENT_ADDR).unwrap_or_default();
    e
}

/// The header through which the host (like Spin) tells components the
/// client's address; clients cannot set it.
pub const CLIENT_ADDR: &str = "spin-client-addr";

/// The tenant that owns repository `name` (its organization's), if any.
pub async fn owner(name: &str) -> Result<Option<String>, OciError> {
    let ns = name.split('/').next().unwrap_or(name);
    Ok(
        get_json::<berth_domain::iam::records::Namespace>(&berth_domain::iam::records::namespace(
            ns,
        ))
        .await?
        .map(|n| n.tenant),
    )
}

/// The tenant that owns repository `name` and its organization's
/// immutable-tag rules (`berth_domain::immutable`), in one read.
pub async fn owner_and_rules(
    name: &str,
) -> Result<(Option<String>, berth_domain::immutable::Rules), OciError> {
    use berth_domain::iam::records;
    let ns = name.split('/').next().unwrap_or(name);
    let found = metadata::get_many(vec![
        records::namespace(ns),
        berth_domain::immutable::key(ns),
    ])
    .await
    .map_err(fault)?;
    let parse = |i: usize| {
        found
            .get(i)
            .and_then(Option::as_ref)
            .map(|e| e.value.as_slice())
    };
    let org = parse(0).and_then(|v| serde_json::from_slice::<records::Namespace>(v).ok());
    let tenant = org.as_ref().map(|n| n.tenant.clone());
    let rules = match parse(1) {
        None => Default::default(),
        // Unreadable rules protect what they might: refuse, do not allow.
        Some(v) => serde_json::from_slice::<berth_domain::immutable::Rules>(v).map_err(|e| {
            OciError::internal(format!(
                "the organization's immutable tag rules are unreadable: {e}"
            ))
        })?,
    };
    // Rules left by an earlier organization of the name are not this one's.
    let rules = if org
        .as_ref()
        .is_some_and(|n| n.tenant == rules.tenant && n.id == rules.namespace_id)
    {
        rules
    } else {
        Default::default()
    };
    Ok((tenant, rules))
}

/// The refusal of a change to a tag an immutable-tag rule protects.
pub fn immutable_refusal(name: &str, tag: &str, rule: &berth_domain::immutable::Rule) -> OciError {
    OciError::new(
        berth_domain::ErrorCode::Denied,
        berth_domain::immutable::refusal(name, tag, rule),
    )
}

/// A limit from deployment config, or its default.
pub fn limit(key: &str, default: u64) -> u64 {
    config::get(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

pub const DEFAULT_MAX_LAYER: u64 = 10 * 1024 * 1024 * 1024;

pub fn max_layer() -> u64 {
    limit("max_layer_bytes", DEFAULT_MAX_LAYER)
}

pub fn max_manifest() -> u64 {
    limit(
        "max_manifest_bytes",
        berth_domain::manifest::DEFAULT_MAX_MANIFEST,
    )
}

fn now_nanos() -> u64 {
    spin_sdk::wasip3::clocks::system_clock::now().nanoseconds as u64
}

pub fn now() -> u64 {
    spin_sdk::wasip3::clocks::system_clock::now().seconds.max(0) as u64
}

/// Nanoseconds since the epoch (orders audit events).
pub fn now_ns() -> u128 {
    let t = spin_sdk::wasip3::clocks::system_clock::now();
    t.seconds.max(0) as u128 * 1_000_000_000 + t.nanoseconds as u128
}

/// 64 random bits as hex (std seeds its hasher keys from `wasi:random`).
pub fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    format!(
        "{:016x}",
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    )
}

/// Records that repository `name` exists (for the catalog), once.
pub async fn ensure_repo(name: &str) -> Result<Vec<WriteOp>, OciError> {
    use berth_domain::iam::records;
    let key = berth_domain::keys::repo(name);
    if exists(&key).await? {
        return Ok(Vec::new());
    }
    let record = berth_domain::keys::RepoRecord { created: now() };
    let mut ops = vec![WriteOp::Put((
        key,
        serde_json::to_vec(&record).unwrap(),
        Precondition::Absent,
    ))];
    // The owning tenant's catalog lists it from now on.
    let ns = name.split('/').next().unwrap_or(name);
    if let Some(ns) = get_json::<records::Namespace>(&records::namespace(ns)).await? {
        ops.push(put(
            records::tenant_repository(&ns.tenant, name),
            Vec::new(),
        ));
    }
    Ok(ops)
}

/// Commits the operations `build` returns, plus the repository record if it
/// is new, atomically. `build` reads what its preconditions need; when a
/// concurrent writer wins (a `conflict`), it runs again on fresh state.
pub async fn commit_in_repo<F>(name: &str, mut build: F) -> Result<(), OciError>
where
    F: AsyncFnMut() -> Result<Vec<WriteOp>, OciError>,
{
    // About 2 s in all: enough for a burst of writers to drain, and for a
    // garbage collection batch holding a referenced blob to end.
    for attempt in 0..64u64 {
        if attempt > 0 {
            // Back off a little (longer the more often we lost) so a burst of
            // writers to one key drains instead of starving someone.
            let nanos = attempt.min(40) * 1_000_000 + (now_nanos() % 1_000_000);
            spin_sdk::wasip3::clocks::monotonic_clock::wait_for(nanos).await;
        }
        let mut ops = build().await?;
        ops.extend(ensure_repo(name).await?);
        match commit(ops).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(fault(e)),
        }
    }
    Err(OciError::internal("too many concurrent writers; try again").with_status(503))
}
