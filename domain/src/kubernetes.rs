//! Kubernetes clusters registered in Berth, and the image update an image
//! trigger (`crate::triggers`) makes in one of them.
//!
//! A cluster is registered per tenant through Berth's admin API with its
//! API server URL, the CA that signs its certificate (base64 PEM, as a
//! kubeconfig's `certificate-authority-data`) and a bearer token (a
//! service account's), which is stored sealed and never shown.
//!
//! The update is what `kubectl set image` does: read the workload
//! (`GET /apis/apps/v1/namespaces/<ns>/<deployments|statefulsets>/<name>`),
//! then send a strategic merge patch of its pod template's containers,
//! merged by container `name` (Kubernetes API reference, "Update API
//! objects in place using kubectl patch"; `patchMergeKey: name`), with
//! `fieldManager=berth`. The image is pinned by digest
//! (`host/repository:tag@sha256:…`, a reference Kubernetes accepts), so a
//! tag pushed again still rolls the workload out and every pod runs
//! exactly the manifest that was pushed.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The clusters of `tenant`.
pub fn cluster_prefix(tenant: &str) -> String {
    format!("cluster/{tenant}/")
}

pub fn cluster_key(tenant: &str, id: &str) -> String {
    format!("{}{id}", cluster_prefix(tenant))
}

/// Clusters one tenant may register.
pub const MAX_CLUSTERS: usize = 50;

/// `POST /berth/v1/tenants/<tenant>/clusters`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterBody {
    /// What triggers name in `cluster_id`; generated when left out.
    #[serde(default)]
    pub id: Option<String>,
    /// What triggers may name in `cluster_name`.
    pub name: String,
    /// `cce` (the default) or `cci`: `cci` triggers name no cluster and
    /// use the tenant's one `cci` cluster.
    #[serde(default)]
    pub kind: Option<String>,
    /// The API server, `https://host:port` (a path prefix is kept, for
    /// API proxies). Only HTTPS: the token must not travel in clear.
    pub server: String,
    /// The organizations whose triggers may use the cluster (`*`: all of
    /// the tenant's): the token acts for whoever may create a trigger.
    pub organizations: Vec<String>,
    /// The Kubernetes namespaces their triggers may update (`*`: any the
    /// token reaches).
    pub namespaces: Vec<String>,
    /// Base64 of the PEM CA certificate(s), or the PEM itself; none: the
    /// host's trusted roots.
    #[serde(default)]
    pub certificate_authority_data: Option<String>,
    /// A bearer token allowed to get and patch the workloads.
    pub token: String,
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
}

impl std::fmt::Debug for ClusterBody {
    /// The token is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBody")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("server", &self.server)
            .field("organizations", &self.organizations)
            .field("namespaces", &self.namespaces)
            .finish_non_exhaustive()
    }
}

/// A registered cluster (JSON under [`cluster_key`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: String,
    pub tenant: String,
    pub name: String,
    /// `cce` or `cci`.
    pub kind: String,
    pub server: String,
    /// See [`ClusterBody::organizations`].
    #[serde(default)]
    pub organizations: Vec<String>,
    /// See [`ClusterBody::namespaces`].
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// PEM, if the cluster has its own CA (then only it is trusted, as
    /// kubectl does).
    pub ca_pem: Option<String>,
    pub insecure_skip_tls_verify: bool,
    /// The bearer token sealed by the host's key, as hex.
    pub sealed_token: String,
    pub creator: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

impl Cluster {
    /// Whether triggers of `organization` may update workloads in
    /// Kubernetes namespace `namespace` through this cluster.
    pub fn serves(&self, organization: &str, namespace: &str) -> bool {
        let has = |list: &[String], x: &str| list.iter().any(|e| e == "*" || e == x);
        has(&self.organizations, organization) && has(&self.namespaces, namespace)
    }
}

/// Largest `certificate_authority_data`, in bytes.
const MAX_CA: usize = 64 * 1024;

/// An id or a name: letters, digits, `-` or `_`; 1–64.
fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// What a valid registration body says: (kind, CA PEM).
pub fn validate_cluster(body: &ClusterBody) -> Result<(String, Option<String>), String> {
    if let Some(id) = &body.id
        && !is_valid_id(id)
    {
        return Err(format!("id {id:?}: letters, digits, - or _, at most 64"));
    }
    if !is_valid_id(&body.name) {
        return Err(format!(
            "name {:?}: letters, digits, - or _, at most 64",
            body.name
        ));
    }
    let kind = body.kind.as_deref().unwrap_or("cce");
    if !matches!(kind, "cce" | "cci") {
        return Err(format!("kind must be cce or cci, not {kind:?}"));
    }
    let rest = body
        .server
        .strip_prefix("https://")
        .ok_or("server must be an https:// URL (the token must not travel in clear)")?;
    if !is_server_url(rest) {
        return Err(format!(
            "server {:?} is not a URL of the form https://host[:port][/path] \
             (a DNS name or IP address, a port up to 65535, an ASCII path)",
            body.server
        ));
    }
    if body.organizations.is_empty()
        || body.organizations.len() > 100
        || !body
            .organizations
            .iter()
            .all(|o| o == "*" || crate::name::is_valid_name(o) && !o.contains('/'))
    {
        return Err(
            "organizations: 1 to 100 organization names whose triggers may use the cluster, or \"*\""
                .into(),
        );
    }
    if body.namespaces.is_empty()
        || body.namespaces.len() > 100
        || !body
            .namespaces
            .iter()
            .all(|n| n == "*" || crate::triggers::is_k8s_label(n))
    {
        return Err(
            "namespaces: 1 to 100 Kubernetes namespaces triggers may update, or \"*\"".into(),
        );
    }
    if body.token.is_empty()
        || body.token.len() > 8192
        || !body.token.chars().all(|c| c.is_ascii_graphic())
    {
        return Err("token must be 1 to 8192 visible ASCII characters".into());
    }
    if body
        .certificate_authority_data
        .as_ref()
        .is_some_and(|c| c.len() > MAX_CA)
    {
        return Err(format!(
            "certificate_authority_data is limited to {MAX_CA} bytes"
        ));
    }
    let ca = match body.certificate_authority_data.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(pem) if pem.starts_with("-----BEGIN") => Some(pem.to_string()),
        Some(b64) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| "certificate_authority_data is neither PEM nor base64 of PEM")?;
            Some(
                String::from_utf8(bytes)
                    .map_err(|_| "certificate_authority_data is not base64 of PEM")?,
            )
        }
    };
    if let Some(pem) = &ca
        && !is_certificate_pem(pem)
    {
        return Err(
            "certificate_authority_data must be PEM certificates (BEGIN/END CERTIFICATE blocks of base64)"
                .into(),
        );
    }
    Ok((kind.to_string(), ca))
}

/// `host[:port][/path]` after `https://`: a DNS name, an IPv4 address or
/// a bracketed IPv6 address; a port of 1–65535; a path of visible ASCII
/// without `?`, `#` or `%` escapes.
fn is_server_url(rest: &str) -> bool {
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((ip, port)) if ip.parse::<std::net::Ipv6Addr>().is_ok() => (ip, port),
            _ => return false,
        },
        None => match authority.split_once(':') {
            Some((h, p)) => (h, &authority[h.len()..][..p.len() + 1]),
            None => (authority, ""),
        },
    };
    let port_ok = match port.strip_prefix(':') {
        Some(p) => p.parse::<u16>().is_ok_and(|p| p > 0),
        None => port.is_empty(),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && (authority.starts_with('[')
            || host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }));
    let path_ok = path
        .chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '?' | '#' | '%' | '\\'));
    port_ok && host_ok && path_ok
}

/// Whether `pem` is one or more certificate blocks whose bodies are base64
/// (text between blocks is allowed, as in CA bundles).
fn is_certificate_pem(pem: &str) -> bool {
    use base64::Engine;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut rest = pem;
    let mut blocks = 0;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let Some(end) = after.find(END) else {
            return false;
        };
        let body: String = after[..end].split_whitespace().collect();
        if body.is_empty()
            || body.contains('-')
            || base64::engine::general_purpose::STANDARD
                .decode(&body)
                .is_err()
        {
            return false;
        }
        blocks += 1;
        rest = &after[end + END.len()..];
    }
    blocks > 0
}

/// The API path of a workload (`app_type`: `deployments` or
/// `statefulsets`, both `apps/v1`).
pub fn workload_path(app_type: &str, namespace: &str, name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{namespace}/{app_type}/{name}")
}

/// Whether an API server's `status` means the update cannot succeed by
/// being tried again (bad request, credentials refused, no such
/// workload, invalid patch): the delivery fails at once.
pub fn is_permanent(status: u16) -> bool {
    matches!(status, 400 | 401 | 403 | 404 | 422)
}

/// The content type of a strategic merge patch.
pub const PATCH_CONTENT_TYPE: &str = "application/strategic-merge-patch+json";

/// The `fieldManager` Berth's patches name.
pub const FIELD_MANAGER: &str = "berth";

/// The image reference set in the workload: `host/repository:tag@digest`.
pub fn image(registry_host: &str, repository: &str, tag: &str, digest: &str) -> String {
    format!("{registry_host}/{repository}:{tag}@{digest}")
}

/// `host/repository` of an image reference (tag and digest removed).
pub fn image_repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// The strategic merge patch that sets `new_image` in the workload's pod
/// template, and the containers it changes: the one named `container`, or
/// else every container whose image is `repository` (`host/name`, any tag
/// or digest). The patch carries the workload's `metadata.resourceVersion`
/// as read, so the API server refuses it (409) if the workload changed
/// since (a renamed container would otherwise be added). The error says
/// why nothing can be changed.
pub fn image_patch(
    workload: &Value,
    container: Option<&str>,
    repository: &str,
    new_image: &str,
) -> Result<(Vec<u8>, Vec<String>), String> {
    let containers = workload
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .ok_or("the workload has no pod template containers")?;
    let named = |c: &&Value| c.get("name").and_then(Value::as_str).map(str::to_string);
    let chosen: Vec<String> = match container {
        Some(want) => {
            let found = containers
                .iter()
                .filter_map(|c| named(&c))
                .find(|n| n == want);
            vec![found.ok_or_else(|| format!("the workload has no container {want:?}"))?]
        }
        None => containers
            .iter()
            .filter(|c| {
                c.get("image")
                    .and_then(Value::as_str)
                    .is_some_and(|i| image_repository(i) == repository)
            })
            .filter_map(|c| named(&c))
            .collect(),
    };
    if chosen.is_empty() {
        return Err(format!(
            "no container of the workload runs {repository}; name one in the trigger's container"
        ));
    }
    let mut patch = json!({
        "spec": { "template": { "spec": { "containers":
            chosen.iter().map(|n| json!({ "name": n, "image": new_image })).collect::<Vec<_>>()
        } } }
    });
    if let Some(rv) = workload.pointer("/metadata/resourceVersion") {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    Ok((serde_json::to_vec(&patch).expect("json"), chosen))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> ClusterBody {
        ClusterBody {
            id: Some("c1".into()),
            name: "prod".into(),
            kind: None,
            server: "https://10.0.0.1:6443".into(),
            certificate_authority_data: None,
            token: "abc.def".into(),
            organizations: vec!["team".into()],
            namespaces: vec!["*".into()],
            insecure_skip_tls_verify: false,
        }
    }

    #[test]
    fn cluster_registrations_are_checked() {
        assert_eq!(validate_cluster(&body()).unwrap(), ("cce".into(), None));
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        for ok in [
            "https://k8s.example.com",
            "https://10.0.0.1:6443",
            "https://[fd00::1]:6443/k8s/clusters/c-1",
        ] {
            assert!(
                validate_cluster(&ClusterBody {
                    server: ok.into(),
                    ..body()
                })
                .is_ok(),
                "{ok}"
            );
        }
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
        let with_ca = ClusterBody {
            certificate_authority_data: Some(b64),
            ..body()
        };
        assert_eq!(validate_cluster(&with_ca).unwrap().1.as_deref(), Some(pem));
        for bad in [
            ClusterBody {
                server: "ftp://x".into(),
                ..body()
            },
            ClusterBody {
                server: "https://".into(),
                ..body()
            },
            ClusterBody {
                server: "https://u:p@x".into(),
                ..body()
            },
            ClusterBody {
                server: "https://x/?a".into(),
                ..body()
            },
            ClusterBody {
                token: "a\r\nb".into(),
                ..body()
            },
            ClusterBody {
                token: String::new(),
                ..body()
            },
            ClusterBody {
                kind: Some("eks".into()),
                ..body()
            },
            ClusterBody {
                id: Some("a/b".into()),
                ..body()
            },
            ClusterBody {
                certificate_authority_data: Some("!!".into()),
                ..body()
            },
            ClusterBody {
                certificate_authority_data: Some("aGVsbG8=".into()),
                ..body()
            },
        ] {
            assert!(validate_cluster(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn image_references() {
        assert_eq!(
            image_repository("localhost:5000/team/web:v1"),
            "localhost:5000/team/web"
        );
        assert_eq!(
            image_repository("localhost:5000/team/web"),
            "localhost:5000/team/web"
        );
        assert_eq!(
            image_repository("localhost:5000/team/web:v1@sha256:ab"),
            "localhost:5000/team/web"
        );
        assert_eq!(
            image("h:1", "t/w", "v2", "sha256:ab"),
            "h:1/t/w:v2@sha256:ab"
        );
        assert_eq!(
            workload_path("statefulsets", "ns", "db"),
            "/apis/apps/v1/namespaces/ns/statefulsets/db"
        );
    }

    #[test]
    fn patches_the_containers_of_the_repository_or_the_named_one() {
        let w = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "reg:5000/team/web:v1"},
            {"name": "proxy", "image": "docker.io/library/nginx:1"},
            {"name": "worker", "image": "reg:5000/team/web@sha256:00"},
        ]}}}});
        let (patch, names) = image_patch(&w, None, "reg:5000/team/web", "NEW").unwrap();
        assert_eq!(names, ["app", "worker"]);
        let p: Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(
            p,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "NEW"}, {"name": "worker", "image": "NEW"}
            ]}}}})
        );
        let (_, names) = image_patch(&w, Some("proxy"), "reg:5000/team/web", "NEW").unwrap();
        assert_eq!(names, ["proxy"]);
        assert!(image_patch(&w, Some("db"), "reg:5000/team/web", "NEW").is_err());
        assert!(image_patch(&w, None, "reg:5000/other", "NEW").is_err());
        assert!(image_patch(&json!({"kind": "Deployment"}), None, "x", "NEW").is_err());
        let mut versioned = w.clone();
        versioned["metadata"] = json!({"resourceVersion": "42", "name": "web"});
        let (patch, _) = image_patch(&versioned, Some("app"), "x", "NEW").unwrap();
        let p: Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(p["metadata"], json!({"resourceVersion": "42"}));
        let c = Cluster {
            id: "c".into(),
            tenant: "t".into(),
            name: "c".into(),
            kind: "cce".into(),
            server: "https://x".into(),
            organizations: vec!["team".into()],
            namespaces: vec!["shop".into()],
            ca_pem: None,
            insecure_skip_tls_verify: false,
            sealed_token: String::new(),
            creator: String::new(),
            created: 0,
        };
        assert!(c.serves("team", "shop"));
        assert!(!c.serves("other", "shop") && !c.serves("team", "kube-system"));
        assert!(!format!("{:?}", body()).contains("abc.def"));
    }
}
