//! Layout of metadata keys. Every listing the registry serves is a prefix
//! scan in key order, so keys are built to sort the way answers are paged.
//! `:` separates a repository from what follows: it cannot occur in a
//! repository name, so one repository's prefix never matches another's.

use serde::{Deserialize, Serialize};

/// `repo/<name>` → [`RepoRecord`]; the catalog is a scan of this prefix.
pub const REPO: &str = "repo/";
pub fn repo(name: &str) -> String {
    format!("{REPO}{name}")
}

/// `tag/<name>:<tag>` → digest of the tagged manifest.
pub fn tag_prefix(name: &str) -> String {
    format!("tag/{name}:")
}
pub fn tag(name: &str, tag: &str) -> String {
    format!("tag/{name}:{tag}")
}

/// `manifest/<name>:<digest>` → [`ManifestRecord`] followed by the manifest bytes.
pub fn manifest(name: &str, digest: &str) -> String {
    format!("manifest/{name}:{digest}")
}

/// `mtag/<name>:<digest>:<tag>` → [`TagInfo`]: the tags pointing at a
/// manifest, so deleting a manifest removes its tags without scanning all of
/// them (older records hold an empty value).
pub fn manifest_tag_prefix(name: &str, digest: &str) -> String {
    format!("mtag/{name}:{digest}:")
}
pub fn manifest_tag(name: &str, digest: &str, tag: &str) -> String {
    format!("mtag/{name}:{digest}:{tag}")
}

/// `blob/<name>:<digest>` → [`BlobLink`]: the repository may serve this blob.
pub fn blob_link(name: &str, digest: &str) -> String {
    format!("blob/{name}:{digest}")
}

/// `referrer/<name>:<subject>:<referrer>` → descriptor JSON of the referrer.
pub fn referrer_prefix(name: &str, subject: &str) -> String {
    format!("referrer/{name}:{subject}:")
}
pub fn referrer(name: &str, subject: &str, referrer: &str) -> String {
    format!("referrer/{name}:{subject}:{referrer}")
}

/// `count/download/<name>` (a counter): manifests served with their body.
pub fn downloads(name: &str) -> String {
    format!("count/download/{name}")
}

/// `count/downflow/<organization>` (a counter): blob bytes served.
pub fn downflow(name: &str) -> String {
    format!("count/downflow/{}", name.split('/').next().unwrap_or(name))
}

/// `count/downflow-day/<organization>/<YYYY-MM-DD>` (a counter): blob
/// bytes served that day (usage reports).
pub fn downflow_day(name: &str, date: &str) -> String {
    format!(
        "count/downflow-day/{}/{date}",
        name.split('/').next().unwrap_or(name)
    )
}

/// `pulled/<name>:<digest>` (a statistic, raised on each pull): when the
/// manifest was last pulled, in seconds (0: never), for the last-pull
/// retention templates (`latestPulledN`, `nDaysSinceLastPull`).
pub fn pulled(name: &str, digest: &str) -> String {
    format!("pulled/{name}:{digest}")
}

/// `upload/<id>` → [`UploadRecord`]: which repository an upload belongs to.
pub fn upload(id: &str) -> String {
    format!("upload/{id}")
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepoRecord {
    /// Seconds since the epoch.
    pub created: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobLink {
    pub size: u64,
    /// Set by garbage collection when it marks the blob (seconds): reads of
    /// a marked link take part in the collection protocol
    /// (`berth_domain::gc`); a new link clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marked: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadRecord {
    pub repo: String,
    pub created: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TagInfo {
    /// When the tag was last pointed at its manifest (seconds).
    #[serde(default)]
    pub updated: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestRecord {
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub created: u64,
}

/// A manifest value: a JSON header line, then the exact bytes pushed (which
/// must be served back unchanged, since the digest covers them).
pub fn encode_manifest(record: &ManifestRecord, body: &[u8]) -> Vec<u8> {
    let mut v = serde_json::to_vec(record).expect("record serializes");
    v.push(b'\n');
    v.extend_from_slice(body);
    v
}

pub fn decode_manifest(value: &[u8]) -> Option<(ManifestRecord, &[u8])> {
    let nl = value.iter().position(|&b| b == b'\n')?;
    let record = serde_json::from_slice(&value[..nl]).ok()?;
    Some((record, &value[nl + 1..]))
}

/// The component setting that turns blob GETs into `307` redirects to the
/// blob store (presigned URLs valid this many seconds): the host sets it
/// from the runtime config's `redirect_seconds`, absent otherwise.
pub const BLOB_REDIRECT_SECONDS: &str = "blob_redirect_seconds";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_do_not_leak_across_repositories() {
        // "a" and "a-b" and "a/b" must not share a tag prefix.
        let p = tag_prefix("a");
        assert!(tag("a", "x").starts_with(&p));
        assert!(!tag("a-b", "x").starts_with(&p));
        assert!(!tag("a/b", "x").starts_with(&p));
    }

    #[test]
    fn manifest_values_round_trip() {
        let r = ManifestRecord {
            media_type: "m".into(),
            subject: None,
            created: 7,
        };
        let body = b"{\n \"x\": 1\n}";
        let v = encode_manifest(&r, body);
        let (r2, b2) = decode_manifest(&v).unwrap();
        assert_eq!(r2, r);
        assert_eq!(b2, body);
    }
}
