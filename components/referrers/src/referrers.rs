//! `GET /v2/<name>/referrers/<digest>`: an OCI index of the manifests whose
//! `subject` is `<digest>`, optionally filtered by `artifactType`. Entries
//! are indexed when a referrer is pushed, whether or not its subject exists.

use berth_domain::manifest::{Descriptor, OCI_INDEX};
use berth_domain::{OciError, keys};
use berth_guest::http::{Incoming, Reply};
use berth_guest::parse_digest;
use berth_guest::store::{fault, metadata};

const PAGE: u32 = 1000;

pub async fn list(req: &Incoming, name: &str, digest: &str) -> Result<Reply, OciError> {
    let digest = parse_digest(digest)?;
    let prefix = keys::referrer_prefix(name, digest.as_str());
    let filter = req.query("artifactType").filter(|t| !t.is_empty());
    let mut manifests = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = metadata::scan(prefix.clone(), after.clone(), PAGE)
            .await
            .map_err(fault)?;
        for e in &page {
            let d: Descriptor = serde_json::from_slice(&e.value)
                .map_err(|err| OciError::internal(format!("corrupt referrer record: {err}")))?;
            if filter.is_none_or(|f| d.artifact_type.as_deref() == Some(f)) {
                manifests.push(d);
            }
        }
        if page.len() < PAGE as usize {
            break;
        }
        after = page.last().map(|e| e.key.clone());
    }
    let body =
        serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut reply = Reply::new(200)
        .header("content-type", OCI_INDEX)
        .bytes(serde_json::to_vec(&body).unwrap());
    if filter.is_some() {
        reply = reply.header("oci-filters-applied", "artifactType");
    }
    Ok(reply)
}
