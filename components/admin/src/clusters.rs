//! Kubernetes clusters that image triggers update (`berth_domain::kubernetes`):
//! what SWR learns from CCE/CCI, Berth is told here.
//!
//! - `GET|POST /berth/v1/tenants/<tenant>/clusters`
//! - `GET|DELETE /berth/v1/tenants/<tenant>/clusters/<id>`
//!
//! For the tenant's administrators. A cluster names the organizations
//! whose triggers may use it and the Kubernetes namespaces they may
//! update (its token acts for whoever may create a trigger there). The
//! bearer token is sealed by the host's key and never shown again;
//! triggers naming a deleted cluster stop (their deliveries say why).

use super::{administered, all, json_bytes, versioned};
use berth_domain::iam::Principal;
use berth_domain::kubernetes::{self as k8s, Cluster, ClusterBody};
use berth_domain::swr::{SwrError, rfc3339};
use berth_guest::auth::seal_hex;
use berth_guest::http::Reply;
use berth_guest::manage::{commit, ok_json, parse_body};
use berth_guest::store::{self, Precondition, WriteOp};
use serde_json::json;
use spin_sdk::wasip3::http::types::Method;

fn view(c: &Cluster) -> serde_json::Value {
    json!({
        "id": c.id,
        "name": c.name,
        "kind": c.kind,
        "server": c.server,
        "organizations": c.organizations,
        "namespaces": c.namespaces,
        "certificate_authority": c.ca_pem.is_some(),
        "insecure_skip_tls_verify": c.insecure_skip_tls_verify,
        "creator": c.creator,
        "created": rfc3339(c.created),
    })
}

/// [`administered`], with a refusal that speaks of clusters.
async fn cluster_admin(who: &Principal, tenant: &str) -> Result<(), SwrError> {
    match administered(who, tenant).await {
        Ok(_) => Ok(()),
        Err(e) if e.status == 403 => Err(SwrError::forbidden(format!(
            "only administrators of tenant {tenant} register its Kubernetes clusters"
        ))),
        Err(e) => Err(e),
    }
}

/// The key that keeps cluster names (and the one `cci` cluster) unique
/// per tenant under concurrent registrations.
fn name_key(tenant: &str, name: &str) -> String {
    format!("cluster-name/{tenant}/{name}")
}

pub async fn list(who: &Principal, tenant: &str) -> Result<Reply, SwrError> {
    cluster_admin(who, tenant).await?;
    let clusters: Vec<Cluster> = all(&k8s::cluster_prefix(tenant)).await?;
    let clusters: Vec<_> = clusters.iter().map(view).collect();
    ok_json(200, &json!({ "clusters": clusters }))
}

pub async fn create(who: &Principal, tenant: &str, body: &[u8]) -> Result<Reply, SwrError> {
    cluster_admin(who, tenant).await?;
    let b: ClusterBody = parse_body(body)?;
    let (kind, ca_pem) = k8s::validate_cluster(&b).map_err(SwrError::bad_request)?;
    let existing: Vec<Cluster> = all(&k8s::cluster_prefix(tenant)).await?;
    if existing.len() >= k8s::MAX_CLUSTERS {
        return Err(SwrError::quota(format!(
            "a tenant registers at most {} clusters",
            k8s::MAX_CLUSTERS
        )));
    }
    if existing.iter().any(|c| c.name == b.name) {
        return Err(SwrError::conflict(format!(
            "a cluster named {} is registered already",
            b.name
        )));
    }
    if kind == "cci" && existing.iter().any(|c| c.kind == "cci") {
        return Err(SwrError::conflict(
            "a tenant has one cci cluster, and one is registered already",
        ));
    }
    if let Some(id) = &b.id
        && existing.iter().any(|c| &c.id == id)
    {
        return Err(SwrError::conflict(format!(
            "a cluster with id {id} is registered already"
        )));
    }
    let cluster = Cluster {
        id: b.id.clone().unwrap_or_else(store::nonce),
        tenant: tenant.to_string(),
        name: b.name,
        kind,
        server: b.server.trim_end_matches('/').to_string(),
        organizations: b.organizations,
        namespaces: b.namespaces,
        ca_pem,
        insecure_skip_tls_verify: b.insecure_skip_tls_verify,
        sealed_token: seal_hex(&b.token),
        creator: who.user.clone(),
        created: store::now(),
    };
    let mut ops = vec![
        WriteOp::Put((
            k8s::cluster_key(tenant, &cluster.id),
            json_bytes(&cluster),
            Precondition::Absent,
        )),
        WriteOp::Put((
            name_key(tenant, &cluster.name),
            cluster.id.clone().into_bytes(),
            Precondition::Absent,
        )),
    ];
    if cluster.kind == "cci" {
        // `~` is no name: the tenant's one cci cluster.
        ops.push(WriteOp::Put((
            name_key(tenant, "~cci"),
            cluster.id.clone().into_bytes(),
            Precondition::Absent,
        )));
    }
    commit(ops, || {
        format!(
            "cluster {} (or its name, or the tenant's cci cluster) was registered meanwhile",
            cluster.id
        )
    })
    .await?;
    ok_json(201, &view(&cluster))
}

pub async fn one(who: &Principal, tenant: &str, id: &str, m: &Method) -> Result<Reply, SwrError> {
    cluster_admin(who, tenant).await?;
    let key = k8s::cluster_key(tenant, id);
    let (cluster, version): (Cluster, u64) =
        versioned(&key, || format!("cluster {id} not found")).await?;
    match m {
        Method::Get => ok_json(200, &view(&cluster)),
        Method::Delete => {
            let mut ops = vec![
                WriteOp::Delete((key, Precondition::Version(version))),
                store::delete(name_key(tenant, &cluster.name)),
            ];
            if cluster.kind == "cci" {
                ops.push(store::delete(name_key(tenant, "~cci")));
            }
            commit(ops, || format!("cluster {id} changed meanwhile; try again")).await?;
            Ok(Reply::new(204))
        }
        _ => Err(SwrError::method_not_allowed()),
    }
}
