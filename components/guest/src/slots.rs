//! At most `n` holders of something at once across every host sharing the
//! store: `n` lease records `<prefix><i>` (`berth_domain::jobs::Lease`),
//! each taken as a job's lease is ([`berth_domain::jobs::claim`]) and
//! lapsing after its time to live when its holder died without giving it
//! back. Used where one caller could otherwise hold many instances and
//! connections at once (a registry check waits up to 30 s on a remote), and
//! SWR's limit of concurrent layer uploads per tenant (`berth_domain::admission`).

use crate::store::{self, Precondition, StoreError, WriteOp};
use berth_domain::jobs::{self, Claim, Lease};

/// A slot held; give it back with [`Slot::release`].
pub struct Slot {
    key: String,
    version: u64,
}

/// Takes a free slot among `<prefix>0` … `<prefix><n-1>` for
/// `ttl_seconds`; `None` while all `n` are held.
pub async fn take(prefix: &str, n: usize, ttl_seconds: u64) -> Result<Option<Slot>, StoreError> {
    let now = store::now();
    // Every slot's record in one read; then a write for a free one.
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let records = store::metadata::get_many(keys.clone()).await?;
    for (key, record) in keys.into_iter().zip(records) {
        let current = record.and_then(|e| {
            serde_json::from_slice::<Lease>(&e.value)
                .ok()
                .map(|l| (l, e.version))
        });
        let precondition = match jobs::claim(current, now) {
            Claim::Create => Precondition::Absent,
            Claim::Replace(v) => Precondition::Version(v),
            Claim::Busy(_) => continue,
        };
        let lease = Lease {
            holder: store::nonce(),
            acquired: now,
            expires: now + ttl_seconds,
            host: String::new(),
        };
        let value = serde_json::to_vec(&lease).expect("leases serialize");
        match store::commit(vec![WriteOp::Put((key.clone(), value, precondition))]).await {
            Ok(versions) => {
                return Ok(Some(Slot {
                    key,
                    version: versions[0],
                }));
            }
            // Another caller took it meanwhile: try the next.
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

impl Slot {
    /// Gives the slot back (only if still this holder's).
    pub async fn release(self) {
        let _ = store::commit(vec![WriteOp::Delete((
            self.key,
            Precondition::Version(self.version),
        ))])
        .await;
    }
}
