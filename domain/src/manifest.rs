//! Manifest parsing and validation for Docker schema 2, Docker manifest
//! lists, OCI image manifests, OCI indexes and OCI artifacts.
//!
//! Parsing is deliberately lenient about unknown fields (artifacts carry
//! their own) and strict about what the registry relies on: media types,
//! descriptor digests and sizes, and the references a manifest makes.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Default limit on manifest bodies (the spec's 4 MiB recommendation).
pub const DEFAULT_MAX_MANIFEST: u64 = 4 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An image manifest (OCI or Docker): references blobs.
    Image,
    /// An index or manifest list: references manifests.
    Index,
}

/// What the registry needs to know about a valid manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub media_type: String,
    pub kind: Kind,
    /// Blobs that must exist in the repository (config and layers, minus
    /// non-distributable layers, which live elsewhere).
    pub blobs: Vec<Digest>,
    /// Manifests that must exist in the repository: index entries whose
    /// `mediaType` is a manifest type ([`is_manifest_type`]).
    pub manifests: Vec<Digest>,
    /// Other index entries (BuildKit's registry cache lists layers and its
    /// `application/vnd.buildkit.cacheconfig.v0` blob; artifacts may list
    /// anything): must exist in the repository as a blob or a manifest.
    pub content: Vec<(Digest, String)>,
    pub subject: Option<Digest>,
    /// The type a referrers listing reports: `artifactType`, else the config's media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

fn invalid(msg: impl Into<String>) -> String {
    msg.into()
}

fn check_descriptor(d: &Descriptor, what: &str) -> Result<Digest, String> {
    if d.media_type.is_empty() {
        return Err(invalid(format!("{what} has no mediaType")));
    }
    if d.size < 0 {
        return Err(invalid(format!("{what} has a negative size")));
    }
    Digest::parse(&d.digest)
        .map_err(|_| invalid(format!("{what} has an invalid digest {:?}", d.digest)))
}

/// A media type's essence (RFC 9110 §8.3.1): type and subtype lower-cased,
/// parameters dropped, so matching ignores case and parameters.
pub fn essence(media_type: &str) -> String {
    bare(media_type).to_ascii_lowercase()
}

/// `type/subtype` without parameters, as written.
fn bare(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or("").trim()
}

/// Whether two media types name the same type (case and parameters aside).
pub fn same_type(a: &str, b: &str) -> bool {
    bare(a).eq_ignore_ascii_case(bare(b))
}

/// The manifest types an index entry may point at as a manifest.
pub fn is_manifest_type(media_type: &str) -> bool {
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST]
        .iter()
        .any(|t| same_type(t, media_type))
}

fn is_nondistributable(media_type: &str) -> bool {
    let t = essence(media_type);
    t.contains("nondistributable") || t.contains("foreign")
}

/// Validates `body` sent with `content_type`. Errors are messages for a
/// `MANIFEST_INVALID` answer.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Parsed, String> {
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    let header = content_type.map(essence).filter(|c| !c.is_empty());
    if raw.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let media_type = match (&raw.media_type, header) {
        (Some(body_type), Some(h)) if !same_type(body_type, &h) => {
            return Err(invalid(format!(
                "mediaType {body_type:?} does not match Content-Type {h:?}"
            )));
        }
        (Some(t), _) => essence(t),
        (None, Some(h)) => h,
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };
    let kind = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => Kind::Image,
        OCI_INDEX | DOCKER_LIST => Kind::Index,
        DOCKER_SCHEMA1 => return Err(invalid("Docker schema 1 manifests are not supported")),
        // Some clients send a generic type; fall back to the body's shape.
        "application/json" | "application/octet-stream" if raw.manifests.is_some() => Kind::Index,
        "application/json" | "application/octet-stream" if raw.config.is_some() => Kind::Image,
        other => {
            return Err(invalid(format!(
                "unsupported manifest media type {other:?}"
            )));
        }
    };
    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    let mut content = Vec::new();
    let artifact_type = match kind {
        Kind::Image => {
            if raw.manifests.is_some() {
                return Err(invalid("an image manifest cannot list manifests"));
            }
            let config = raw
                .config
                .as_ref()
                .ok_or_else(|| invalid("image manifest has no config"))?;
            blobs.push(check_descriptor(config, "config")?);
            let layers = raw
                .layers
                .as_ref()
                .ok_or_else(|| invalid("image manifest has no layers"))?;
            if media_type == DOCKER_MANIFEST && layers.is_empty() {
                return Err(invalid("a Docker image manifest needs at least one layer"));
            }
            for (i, layer) in layers.iter().enumerate() {
                let d = check_descriptor(layer, &format!("layer {i}"))?;
                if !is_nondistributable(&layer.media_type) {
                    blobs.push(d);
                }
            }
            raw.artifact_type
                .clone()
                .or_else(|| Some(config.media_type.clone()))
        }
        Kind::Index => {
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(invalid("an index cannot have config or layers"));
            }
            let list = raw
                .manifests
                .as_ref()
                .ok_or_else(|| invalid("index has no manifests"))?;
            // Each entry is judged by its own mediaType: a manifest type
            // must be a manifest, anything else any content of the repository.
            for (i, m) in list.iter().enumerate() {
                let d = check_descriptor(m, &format!("manifest {i}"))?;
                if is_manifest_type(&m.media_type) {
                    manifests.push(d);
                } else {
                    content.push((d, m.media_type.clone()));
                }
            }
            raw.artifact_type.clone()
        }
    };
    let subject = raw
        .subject
        .as_ref()
        .map(|s| check_descriptor(s, "subject"))
        .transpose()?;
    Ok(Parsed {
        media_type,
        kind,
        blobs,
        manifests,
        content,
        subject,
        artifact_type,
        annotations: raw.annotations,
    })
}

/// Media types a manifest GET may answer with, from an `Accept` header list.
/// Empty means the client did not say (any type is fine).
pub fn accepts(accept_headers: &[&str], media_type: &str) -> bool {
    let mut any = true;
    for value in accept_headers {
        for item in value.split(',') {
            let t = bare(item);
            if t.is_empty() {
                continue;
            }
            any = false;
            if same_type(t, media_type) || t == "*/*" || t.eq_ignore_ascii_case("application/*") {
                return true;
            }
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn image(extra: serde_json::Value) -> Vec<u8> {
        let mut v = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(1), "size": 10},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d(2), "size": 20}],
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn image_manifest_references_config_and_layers() {
        let p = parse(&image(json!({})), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(p.kind, Kind::Image);
        assert_eq!(
            p.blobs.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            vec![d(1), d(2)]
        );
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn artifact_with_subject() {
        let body = image(
            json!({"artifactType": "application/vnd.example.sbom", "subject": {"mediaType": OCI_MANIFEST, "digest": d(9), "size": 5}}),
        );
        let p = parse(&body, None).unwrap();
        assert_eq!(p.subject.unwrap().to_string(), d(9));
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
    }

    #[test]
    fn index_references_manifests() {
        let body = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": DOCKER_LIST,
            "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": d(3), "size": 1, "platform": {"os": "linux", "architecture": "amd64"}}]})).unwrap();
        let p = parse(&body, Some(DOCKER_LIST)).unwrap();
        assert_eq!(p.kind, Kind::Index);
        assert_eq!(p.manifests[0].to_string(), d(3));
        assert!(p.blobs.is_empty());
    }

    /// BuildKit's registry cache: an index of layer blobs and one cache
    /// config blob, none of them manifests.
    #[test]
    fn index_entries_are_judged_by_their_media_type() {
        let body = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": "application/vnd.buildkit.cacheconfig.v0", "digest": d(5), "size": 26},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d(6), "size": 3},
                {"mediaType": "Application/VND.OCI.Image.Manifest.v1+JSON; charset=utf-8", "digest": d(7), "size": 3},
                {"mediaType": "application/x-unknown", "digest": d(8), "size": 3}]})).unwrap();
        let p = parse(&body, Some(OCI_INDEX)).unwrap();
        assert_eq!(
            p.manifests
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>(),
            vec![d(7)]
        );
        assert_eq!(
            p.content
                .iter()
                .map(|(x, _)| x.to_string())
                .collect::<Vec<_>>(),
            vec![d(5), d(6), d(8)]
        );
    }

    #[test]
    fn media_types_match_without_case_or_parameters() {
        let p = parse(
            &image(json!({})),
            Some("Application/VND.OCI.Image.Manifest.v1+JSON; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(p.media_type, OCI_MANIFEST);
        let upper = image(json!({"mediaType": "APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON"}));
        assert_eq!(parse(&upper, Some(OCI_MANIFEST)).unwrap().kind, Kind::Image);
        assert!(accepts(
            &["APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON;q=0.9"],
            OCI_MANIFEST
        ));
    }

    #[test]
    fn rejects_bad_manifests() {
        assert!(parse(b"not json", None).is_err());
        assert!(parse(&image(json!({"schemaVersion": 1})), None).is_err());
        assert!(
            parse(&image(json!({})), Some(DOCKER_MANIFEST))
                .unwrap_err()
                .contains("does not match")
        );
        assert!(
            parse(
                &image(json!({"layers": [{"mediaType": "x", "digest": "sha256:zz", "size": 1}]})),
                None
            )
            .is_err()
        );
        assert!(
            parse(
                &image(json!({"config": {"mediaType": "x", "digest": d(1), "size": -1}})),
                None
            )
            .is_err()
        );
        assert!(
            parse(
                &image(json!({"mediaType": "text/plain"})),
                Some("text/plain")
            )
            .is_err()
        );
        assert!(parse(&image(json!({"manifests": []})), None).is_err());
    }

    #[test]
    fn nondistributable_layers_are_not_required() {
        let body = image(
            json!({"layers": [{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": d(4), "size": 1, "urls": ["https://example.invalid/x"]}]}),
        );
        assert_eq!(parse(&body, None).unwrap().blobs.len(), 1);
    }

    #[test]
    fn accept_negotiation() {
        assert!(accepts(&[], OCI_MANIFEST));
        assert!(accepts(
            &[&format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.5")],
            OCI_MANIFEST
        ));
        assert!(!accepts(&[DOCKER_MANIFEST], OCI_INDEX));
        assert!(accepts(&["*/*"], OCI_INDEX));
    }
}
