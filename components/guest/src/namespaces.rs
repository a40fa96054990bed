//! Creating organizations (SWR namespaces): from the management API and
//! implicitly by a first push, with the same name rules and quota.

use crate::store::{self, Precondition, StoreError, WriteOp, metadata};
use berth_domain::iam::Principal;
use berth_domain::iam::records::{self, Namespace};

/// SWR's default: each user creates at most 5 organizations.
pub const DEFAULT_QUOTA: u64 = 5;

#[derive(Debug, PartialEq, Eq)]
pub enum CreateError {
    InvalidName,
    /// Another organization (of any tenant) has the name.
    Exists,
    /// The user has created as many organizations as the quota allows.
    Quota(u64),
    /// Another tenant deleted an organization of this name moments ago;
    /// the name is free in this many seconds.
    Held(u64),
    Store(String),
}

pub fn quota() -> u64 {
    store::limit("namespace_quota", DEFAULT_QUOTA)
}

/// Organizations of `tenant`, in name order.
pub async fn owned(tenant: &str) -> Result<Vec<Namespace>, StoreError> {
    let keys: Vec<String> = store::scan_names(&records::owned_namespace_prefix(tenant))
        .await?
        .iter()
        .map(|n| records::namespace(n))
        .collect();
    Ok(metadata::get_many(keys)
        .await?
        .into_iter()
        .flatten()
        .filter_map(|e| serde_json::from_slice::<Namespace>(&e.value).ok())
        .collect())
}

/// Creates organization `name` owned by `who`'s tenant. The caller has
/// already been authorized for `swr:namespace:create`.
///
/// The quota check and the creation are one atomic step: each commit also
/// rewrites the user's marker record (`count/ns-created/…`) at the version
/// read before counting, so of two racing creations one commits and the
/// other counts again.
pub async fn create(who: &Principal, name: &str) -> Result<Namespace, CreateError> {
    if !records::valid_namespace_name(name) {
        return Err(CreateError::InvalidName);
    }
    let store_err = |e: StoreError| CreateError::Store(format!("{e:?}"));
    let quota = quota();
    let marker = records::namespaces_created(&who.tenant, &who.user);
    for _ in 0..16 {
        let seen = metadata::get(marker.clone()).await.map_err(store_err)?;
        let created_by_user = owned(&who.tenant)
            .await
            .map_err(store_err)?
            .iter()
            .filter(|n| n.creator == who.user)
            .count() as u64;
        if created_by_user >= quota {
            return Err(CreateError::Quota(quota));
        }
        let id = metadata::increment("count/namespace-id".into(), 1)
            .await
            .map_err(store_err)?;
        let ns = Namespace {
            id: id as u64,
            name: name.to_string(),
            tenant: who.tenant.clone(),
            creator: who.user.clone(),
            created: store::now(),
        };
        let guard = match &seen {
            Some(e) => Precondition::Version(e.version),
            None => Precondition::Absent,
        };
        // A name just released by another tenant is held a little longer;
        // one released earlier is taken, its record consumed in the same
        // commit (and a release racing this commit makes it retry).
        let released_key = records::released_namespace(name);
        let released = metadata::get(released_key.clone())
            .await
            .map_err(store_err)?;
        let release_guard = match &released {
            Some(e) => {
                if let Ok(r) = serde_json::from_slice::<records::ReleasedNamespace>(&e.value)
                    && let Some(left) = r.held_from(&who.tenant, store::now())
                {
                    return Err(CreateError::Held(left));
                }
                Precondition::Version(e.version)
            }
            None => Precondition::Absent,
        };
        let ops = vec![
            WriteOp::Put((
                records::namespace(name),
                serde_json::to_vec(&ns).expect("records serialize"),
                Precondition::Absent,
            )),
            store::put(records::owned_namespace(&who.tenant, name), Vec::new()),
            WriteOp::Put((
                marker.clone(),
                (created_by_user + 1).to_string().into_bytes(),
                guard,
            )),
            WriteOp::Delete((released_key, release_guard)),
        ];
        match store::commit(ops).await {
            Ok(_) => return Ok(ns),
            // Either the name is taken, or the user created another
            // organization meanwhile: count again.
            Err(StoreError::Conflict) => {
                if store::exists(&records::namespace(name))
                    .await
                    .map_err(|e| CreateError::Store(e.message))?
                {
                    return Err(CreateError::Exists);
                }
            }
            Err(e) => return Err(store_err(e)),
        }
    }
    Err(CreateError::Store(
        "too many concurrent creations; try again".into(),
    ))
}
