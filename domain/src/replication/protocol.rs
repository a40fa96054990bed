//! The client side of the OCI Distribution API (distribution-spec v1.1)
//! as the replication job speaks it to a remote registry: auth challenges
//! and Docker token requests, upload sessions and their offsets, content
//! ranges, and the tag names signatures and attestations hang on.

/// What a registry's `WWW-Authenticate` asks for (RFC 7235; the Docker
/// token flow for `Bearer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

impl Challenge {
    /// Parses `Basic realm="…"` or `Bearer realm="…",service="…",scope="…"`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        let param = |name: &str| -> Option<String> {
            params_of(params)
                .into_iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        if scheme.eq_ignore_ascii_case("basic") {
            Some(Challenge::Basic)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            Some(Challenge::Bearer {
                realm: param("realm")?,
                service: param("service"),
            })
        } else {
            None
        }
    }
}

/// `k="v", k2=v2` pairs (quoted values may hold commas).
fn params_of(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_string(), &q[end + 1..]),
                None => (q.to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_string(), &after[end..]),
                None => (after.trim().to_string(), ""),
            }
        };
        out.push((k, v));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// The token request URL: the realm with `service` and each scope
/// (`repository:<name>:pull,push`) as query parameters.
pub fn token_url(realm: &str, service: Option<&str>, scopes: &[String]) -> String {
    let mut url = realm.to_string();
    let mut sep = if realm.contains('?') { '&' } else { '?' };
    if let Some(s) = service {
        url.push(sep);
        url.push_str("service=");
        url.push_str(&encode(s));
        sep = '&';
    }
    for scope in scopes {
        url.push(sep);
        url.push_str("scope=");
        url.push_str(&encode(scope));
        sep = '&';
    }
    url
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay),
/// as request signing does.
pub use crate::iam::signing::encode;

/// The next offset an upload session's `Range: 0-<last>` header reports
/// (the spec's form; `bytes=` tolerated). `0-0` is read as nothing
/// received yet: CNCF Distribution answers it for an empty session.
pub fn next_offset(range: &str) -> Option<u64> {
    let r = range.trim().trim_start_matches("bytes=");
    let (start, end) = r.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    let end: u64 = end.trim().parse().ok()?;
    Some(if end == 0 { 0 } else { end + 1 })
}

/// The `Content-Range` of a chunk of `len` bytes at `start` (inclusive
/// end, no unit: the spec's form for `PATCH`).
pub fn content_range(start: u64, len: u64) -> String {
    format!("{start}-{}", start + len.max(1) - 1)
}

/// `location` made absolute against `base` (`scheme://authority`).
pub fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        format!("{base}/{location}")
    }
}

/// An upload session URL with `digest=` added (the closing `PUT`).
pub fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={}", encode(digest))
}

/// `scheme://authority/path?query` split into its parts.
pub fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let cut = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(cut);
    if authority.is_empty() {
        return None;
    }
    Some((scheme, authority, if path.is_empty() { "/" } else { path }))
}

/// Whether a 200 answer to `GET /v2/` comes from a registry: it carries
/// `Docker-Distribution-API-Version: registry/2.0` (Distribution, Berth,
/// Harbor, Quay, GHCR…), or else its body is JSON or empty (the OCI
/// Distribution spec, "end-1", asks no more). A web server's HTML page is
/// no registry.
pub fn is_registry_answer(api_version: Option<&str>, content_type: Option<&str>) -> bool {
    if api_version.is_some_and(|v| v.trim().starts_with("registry/2.")) {
        return true;
    }
    match content_type.map(str::trim).filter(|c| !c.is_empty()) {
        None => true,
        Some(c) => {
            let c = c.to_ascii_lowercase();
            c.starts_with("application/json") || c.contains("+json")
        }
    }
}

/// Whether `a` and `b` name the same `scheme://authority` (credentials go
/// only to the registry itself, never to a redirect target elsewhere).
pub fn same_origin(a: &str, b: &str) -> bool {
    match (split_url(a), split_url(b)) {
        (Some((s1, a1, _)), Some((s2, a2, _))) => {
            s1.eq_ignore_ascii_case(s2) && a1.eq_ignore_ascii_case(a2)
        }
        _ => false,
    }
}

/// Every manifest media type, for `Accept` (a registry answers a
/// manifest in the type it was pushed in only if the client accepts it).
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.artifact.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// The tags that hang artifacts on manifest `digest` for registries and
/// tools without the referrers API: the referrers tag schema's index
/// (`sha256-<hex>`, distribution-spec v1.1 "Referrers Tag Schema") and
/// cosign's `sha256-<hex>.sig`, `.att` and `.sbom`.
pub fn artifact_tags(digest: &str) -> Vec<String> {
    let Some(index) = referrers_tag(digest) else {
        return Vec::new();
    };
    let mut tags: Vec<String> = ["sig", "att", "sbom"]
        .iter()
        .map(|s| format!("{index}.{s}"))
        .collect();
    tags.push(index);
    tags
}

/// The referrers tag schema's tag for `digest`: `<algorithm>-<hex>`.
pub fn referrers_tag(digest: &str) -> Option<String> {
    let (algorithm, hex) = digest.split_once(':')?;
    Some(format!("{algorithm}-{hex}"))
}

/// Whether `tag` is one of [`artifact_tags`]' (it follows its image
/// rather than being copied on its own).
pub fn is_artifact_tag(tag: &str) -> bool {
    let Some((algorithm, rest)) = tag.split_once('-') else {
        return false;
    };
    let hex = rest
        .strip_suffix(".sig")
        .or_else(|| rest.strip_suffix(".att"))
        .or_else(|| rest.strip_suffix(".sbom"))
        .unwrap_or(rest);
    let want = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == want && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The target of a `Link: <…>; rel="next"` header (RFC 8288), quoted or not.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_answers() {
        assert!(is_registry_answer(Some("registry/2.0"), Some("text/html")));
        assert!(is_registry_answer(
            None,
            Some("application/json; charset=utf-8")
        ));
        assert!(is_registry_answer(None, None));
        assert!(!is_registry_answer(None, Some("text/html")));
        assert!(!is_registry_answer(Some("1.0"), Some("text/plain")));
    }

    #[test]
    fn challenges_parse() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="http://127.0.0.1:5000/service/token",service="berth",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:5000/service/token".into(),
                service: Some("berth".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(
            token_url(
                "https://a/token",
                Some("reg istry"),
                &["repository:x/y:pull".into()]
            ),
            "https://a/token?service=reg%20istry&scope=repository%3Ax%2Fy%3Apull"
        );
    }

    #[test]
    fn upload_offsets_and_ranges() {
        assert_eq!(next_offset("0-1023"), Some(1024));
        assert_eq!(next_offset("bytes=0-9"), Some(10));
        assert_eq!(next_offset("0-0"), Some(0));
        assert_eq!(next_offset("5-9"), None);
        assert_eq!(next_offset("x"), None);
        assert_eq!(content_range(0, 10), "0-9");
        assert_eq!(content_range(10, 5), "10-14");
        assert_eq!(
            resolve("http://h:1", "/v2/a/blobs/uploads/u?x=1"),
            "http://h:1/v2/a/blobs/uploads/u?x=1"
        );
        assert_eq!(resolve("http://h:1", "http://o/u"), "http://o/u");
        assert_eq!(
            with_digest("http://h/u?_state=s", "sha256:ab"),
            "http://h/u?_state=s&digest=sha256%3Aab"
        );
        assert_eq!(
            split_url("http://h:1/v2/?x"),
            Some(("http", "h:1", "/v2/?x"))
        );
        assert_eq!(split_url("http://h:1"), Some(("http", "h:1", "/")));
        assert!(same_origin("http://H:1/a", "http://h:1/b"));
        assert!(!same_origin("http://h:1/a", "http://h:2/a"));
    }

    #[test]
    fn artifact_tag_schema() {
        let hex = "a".repeat(64);
        let tags = artifact_tags(&format!("sha256:{hex}"));
        assert_eq!(
            tags,
            [
                format!("sha256-{hex}.sig"),
                format!("sha256-{hex}.att"),
                format!("sha256-{hex}.sbom"),
                format!("sha256-{hex}"),
            ]
        );
        assert!(tags.iter().all(|t| is_artifact_tag(t)));
        assert!(!is_artifact_tag("v1.sig"));
        assert!(!is_artifact_tag("sha256-abc.sig"));
        assert!(!is_artifact_tag("sha256-release"));
    }

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(next_link("</x>; rel=next").as_deref(), Some("/x"));
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }
}
