//! Image triggers' deliveries: the image update in a Kubernetes cluster
//! (`berth_domain::kubernetes`): read the workload, then patch the image
//! of its containers, as `kubectl set image` does.

use crate::{Tried, exchange, now_ms};
use berth_domain::events::Event;
use berth_domain::kubernetes::{self as k8s, Cluster};
use berth_domain::swr::SwrError;
use berth_domain::triggers::Trigger;
use berth_domain::webhooks::Attempt;
use berth_guest::manage::oci_fault;
use berth_guest::store;

/// A workload's JSON is read up to this size (bytes).
const MAX_WORKLOAD: usize = 1 << 20;

/// The cluster `t` names with its unsealed token, or why there is none
/// (then the delivery stops: retrying would not help).
pub async fn cluster(t: &Trigger) -> Result<Result<(Cluster, String), String>, SwrError> {
    let cluster: Option<Cluster> = store::get_json(&k8s::cluster_key(&t.tenant, &t.cluster_id))
        .await
        .map_err(oci_fault)?;
    let Some(cluster) = cluster else {
        return Ok(Err(format!(
            "cluster {} is no longer registered",
            t.cluster_id
        )));
    };
    match berth_guest::auth::unseal_hex(&cluster.sealed_token) {
        Some(token) => Ok(Ok((cluster, token))),
        None => Ok(Err(format!(
            "the token of cluster {} could not be unsealed by this host",
            cluster.id
        ))),
    }
}

/// The request to `path` of the cluster, authenticated and trusting its CA.
fn request(
    (cluster, token): &(Cluster, String),
    method: &str,
    path: &str,
) -> http::request::Builder {
    use base64::Engine;
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", cluster.server))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json")
        .header(
            "user-agent",
            concat!("berth-webhooks/", env!("CARGO_PKG_VERSION")),
        );
    if cluster.insecure_skip_tls_verify {
        b = b.header("berth-insecure-tls", "1");
    } else if let Some(pem) = &cluster.ca_pem {
        b = b.header(
            "berth-tls-ca",
            base64::engine::general_purpose::STANDARD.encode(pem),
        );
    }
    b
}

/// One attempt at updating `t`'s workload to the image `event` pushed.
/// A missing workload or container, or credentials the API server refuses,
/// are permanent failures: the delivery fails at once.
pub async fn update(
    t: &Trigger,
    cluster: &(Cluster, String),
    event: &Event,
    registry: &str,
) -> Tried {
    let at_ms = now_ms();
    let failed = |status, error, permanent| Tried::failed(at_ms, status, error, permanent);
    let answer_text =
        |body: &[u8]| -> String { String::from_utf8_lossy(body).chars().take(200).collect() };
    let r = &event.record;
    let (Some(tag), Some(digest)) = (&r.tag, &r.digest) else {
        return failed(None, "the event names no tag and digest".into(), true);
    };
    let path = k8s::workload_path(&t.app_type, &t.cluster_ns, &t.application);
    let what = format!("{} {}/{}", t.app_type, t.cluster_ns, t.application);
    let read = match exchange(request(cluster, "GET", &path), Vec::new(), MAX_WORKLOAD).await {
        Ok(a) => a,
        Err(f) => return failed(None, format!("reading {what}: {}", f.text), f.permanent),
    };
    if read.status != 200 {
        let status = read.status;
        let error = format!("reading {what}: HTTP {status}: {}", answer_text(&read.body));
        return Tried {
            retry_after: read.retry_after,
            ..failed(Some(status), error, k8s::is_permanent(status))
        };
    }
    let workload = match serde_json::from_slice::<serde_json::Value>(&read.body) {
        Ok(w) => w,
        Err(e) => return failed(None, format!("reading {what}: not JSON: {e}"), false),
    };
    let repository = format!("{registry}/{}", r.repository);
    let container = Some(t.container.as_str()).filter(|c| !c.is_empty());
    let image = k8s::image(registry, &r.repository, tag, digest);
    let (patch, containers) = match k8s::image_patch(&workload, container, &repository, &image) {
        Ok(p) => p,
        Err(e) => return failed(None, format!("{what}: {e}"), true),
    };
    let path = format!("{path}?fieldManager={}", k8s::FIELD_MANAGER);
    let patch_request =
        request(cluster, "PATCH", &path).header("content-type", k8s::PATCH_CONTENT_TYPE);
    match exchange(patch_request, patch, 4096).await {
        Ok(a) if (200..300).contains(&a.status) => Tried {
            attempt: Attempt {
                at_ms,
                status: Some(a.status),
                latency_ms: now_ms() - at_ms,
                error: None,
                detail: Some(format!("{what}: {} set to {image}", containers.join(", "))),
            },
            retry_after: None,
            permanent: false,
        },
        // 409: the workload changed since it was read; the retry reads it again.
        Ok(a) => Tried {
            retry_after: a.retry_after,
            ..failed(
                Some(a.status),
                format!(
                    "patching {what}: HTTP {}: {}",
                    a.status,
                    answer_text(&a.body)
                ),
                k8s::is_permanent(a.status),
            )
        },
        Err(f) => failed(None, format!("patching {what}: {}", f.text), f.permanent),
    }
}
