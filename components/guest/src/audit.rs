//! The audit log's reads and writes (`berth_domain::audit`): recording an
//! event, querying a tenant's log newest first, and pruning what is past
//! the retention.

use crate::store::{self, StoreError, metadata};
use berth_domain::audit::{self, Query};
use berth_domain::iam::records::{self, AuditEvent};
use std::collections::VecDeque;

/// Records an event in `event.tenant`'s log (a failure to record is
/// logged, and does not undo the change it records).
pub async fn record(event: AuditEvent) {
    let key = records::audit(&event.tenant, store::now_ns(), &store::nonce());
    if let Err(e) = store::commit(vec![store::put_json(key, &event)]).await {
        eprintln!("audit event not recorded: {e:?}");
    }
}

/// Events scanned per store call.
const PAGE: u32 = 1000;

/// The largest `skip` a query takes: what a scan keeps in memory is
/// bounded by `skip + take`.
pub const MAX_SKIP: usize = 10_000;

/// One page of a query, newest first.
pub struct Page {
    /// `(key, event)`, newest first.
    pub events: Vec<(String, AuditEvent)>,
    /// How many events match the query in all.
    pub total: u64,
}

/// The events of `tenant`'s log matching `query` older than `before` (a
/// time in nanoseconds; none: up to the newest), newest first: `take` of
/// them after skipping the `skip` newest. Scans the query's time range once
/// (`since` bounds where it starts).
pub async fn newest(
    tenant: &str,
    query: &Query,
    before: Option<u128>,
    skip: usize,
    take: usize,
) -> Result<Page, StoreError> {
    let prefix = audit::prefix(tenant);
    let mut after = query.since.and_then(|s| audit::start_after(tenant, s));
    let keep = skip.min(MAX_SKIP) + take;
    let mut ring: VecDeque<(String, AuditEvent)> = VecDeque::with_capacity(keep.min(1024));
    let mut total = 0u64;
    'scan: loop {
        let page = metadata::scan(prefix.clone(), after.take(), PAGE).await?;
        let full = page.len() == PAGE as usize;
        for entry in page {
            let ns = audit::time_ns(&entry.key).unwrap_or_default();
            if query.past_end(ns) || before.is_some_and(|b| ns >= b) {
                break 'scan;
            }
            // The next page starts after this entry, readable or not.
            after = Some(entry.key.clone());
            let Ok(event) = serde_json::from_slice::<AuditEvent>(&entry.value) else {
                continue;
            };
            if !query.matches(&event) {
                continue;
            }
            total += 1;
            if keep > 0 {
                if ring.len() == keep {
                    ring.pop_front();
                }
                ring.push_back((entry.key, event));
            }
        }
        if !full {
            break;
        }
    }
    let events = ring.into_iter().rev().skip(skip).take(take).collect();
    Ok(Page { events, total })
}

/// Removes `tenant`'s events older than `cutoff` (seconds since the
/// epoch), at most `budget` of them; how many it removed.
pub async fn prune(tenant: &str, cutoff: u64, budget: usize) -> Result<usize, StoreError> {
    let prefix = audit::prefix(tenant);
    let cutoff_ns = u128::from(cutoff) * 1_000_000_000;
    let mut removed = 0;
    while removed < budget {
        let limit = (budget - removed).min(PAGE as usize) as u32;
        let page = metadata::scan(prefix.clone(), None, limit).await?;
        let old: Vec<_> = page
            .into_iter()
            .take_while(|e| audit::time_ns(&e.key).is_some_and(|ns| ns < cutoff_ns))
            .map(|e| store::delete(e.key))
            .collect();
        if old.is_empty() {
            break;
        }
        let n = old.len();
        store::commit(old).await?;
        removed += n;
        if n < limit as usize {
            break;
        }
    }
    Ok(removed)
}
