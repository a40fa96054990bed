//! What SWR reports about a repository and its tags, gathered from the
//! registry's own records: sizes from the manifests' descriptors, times
//! from the repository, manifest and tag records, downloads from a counter.

use berth_domain::iam::records::{self, RepositoryMeta};
use berth_domain::keys;
use berth_domain::swr::{self, SwrError};
use berth_guest::manage::{fault, oci_fault};
use berth_guest::store::{self, metadata};
use std::collections::HashMap;

pub fn namespace_of(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// The name inside its organization.
pub fn short_name(name: &str) -> &str {
    name.split_once('/').map(|(_, r)| r).unwrap_or(name)
}

pub struct TagStats {
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub created: u64,
    pub updated: u64,
}

/// How a listing's model spells the tag's name: the v2 tag list
/// (`ShowReposTagResp`) says `Tag`, every other model `tag`.
pub enum TagField {
    Lower,
    Upper,
}

impl TagStats {
    pub fn json(&self, repo: &str, field: TagField) -> serde_json::Value {
        // Docker schema 2 manifests are "schema 2"; SWR reports OCI as 3.
        let schema = if self.media_type.starts_with("application/vnd.docker") {
            2
        } else {
            3
        };
        let mut v = serde_json::json!({
            "id": swr::numeric_id(&format!("{repo}:{}", self.tag)),
            "repo_id": swr::numeric_id(repo),
            "image_id": self.digest,
            "manifest": self.media_type,
            "digest": self.digest,
            "schema": schema,
            "path": format!("{repo}:{}", self.tag),
            "internal_path": format!("{repo}:{}", self.tag),
            "size": self.size,
            "is_trusted": false,
            "created": swr::rfc3339(self.created),
            "updated": swr::rfc3339(self.updated),
            "deleted": "",
            "domain_id": "",
            "scanned": false,
            "tag_type": 0,
        });
        let key = match field {
            TagField::Lower => "tag",
            TagField::Upper => "Tag",
        };
        v[key] = self.tag.clone().into();
        v
    }
}

pub struct RepoStats {
    pub meta: RepositoryMeta,
    pub created: u64,
    pub updated: u64,
    pub size: u64,
    pub downloads: i64,
    pub tags: Vec<TagStats>,
}

/// Bytes an image occupies: its manifest, config and layers (for an index,
/// the index and its manifests' own sizes).
fn image_size(body: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let sizes = |k: &str| -> u64 {
        v[k].as_array()
            .map(|a| a.iter().filter_map(|d| d["size"].as_u64()).sum())
            .unwrap_or(0)
    };
    body.len() as u64
        + v["config"]["size"].as_u64().unwrap_or(0)
        + sizes("layers")
        + sizes("manifests")
}

/// A repository's tags (name, digest) and, per tagged manifest, its media
/// type, image size and creation time: one scan and one batch read.
type Tagged = (Vec<(String, String)>, HashMap<String, (String, u64, u64)>);

async fn tagged(name: &str) -> Result<Tagged, SwrError> {
    let prefix = keys::tag_prefix(name);
    let entries = store::scan_all(&prefix).await.map_err(fault)?;
    with_manifests(name, &prefix, entries).await
}

/// The `(tag, digest)` of tag entries, and what their manifests say.
async fn with_manifests(
    name: &str,
    prefix: &str,
    entries: Vec<metadata::Entry>,
) -> Result<Tagged, SwrError> {
    let tags: Vec<(String, String)> = entries
        .into_iter()
        .map(|e| {
            (
                e.key[prefix.len()..].to_string(),
                String::from_utf8_lossy(&e.value).to_string(),
            )
        })
        .collect();
    let mut digests: Vec<String> = tags.iter().map(|(_, d)| d.clone()).collect();
    digests.sort();
    digests.dedup();
    let manifests = metadata::get_many(digests.iter().map(|d| keys::manifest(name, d)).collect())
        .await
        .map_err(fault)?;
    let mut by_digest = HashMap::new();
    for (d, m) in digests.into_iter().zip(&manifests) {
        if let Some((record, body)) = m.as_ref().and_then(|e| keys::decode_manifest(&e.value)) {
            by_digest.insert(d, (record.media_type, image_size(body), record.created));
        }
    }
    Ok((tags, by_digest))
}

/// Each tag's figures: its manifest's, and when the tag last moved.
async fn figures(name: &str, (tags, by_digest): &Tagged) -> Result<Vec<TagStats>, SwrError> {
    let infos = metadata::get_many(
        tags.iter()
            .map(|(t, d)| keys::manifest_tag(name, d, t))
            .collect(),
    )
    .await
    .map_err(fault)?;
    Ok(tags
        .iter()
        .zip(infos)
        .map(|((tag, digest), info)| {
            let (media_type, size, mcreated) =
                by_digest.get(digest.as_str()).cloned().unwrap_or_default();
            let updated = info
                .and_then(|e| serde_json::from_slice::<keys::TagInfo>(&e.value).ok())
                .map(|i| i.updated)
                .filter(|u| *u > 0)
                .unwrap_or(mcreated);
            TagStats {
                tag: tag.clone(),
                digest: digest.clone(),
                media_type,
                size,
                created: mcreated,
                updated,
            }
        })
        .collect())
}

/// One page of a repository's tags in name order, after tag `after`, at
/// most `limit`, with their figures, reading only that page from the store;
/// whether more follow.
pub async fn tag_page(
    name: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<TagStats>, bool), SwrError> {
    let prefix = keys::tag_prefix(name);
    let mut entries = metadata::scan(
        prefix.clone(),
        after.map(|a| format!("{prefix}{a}")),
        (limit + 1).min(u32::MAX as usize) as u32,
    )
    .await
    .map_err(fault)?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let tagged = with_manifests(name, &prefix, entries).await?;
    Ok((figures(name, &tagged).await?, more))
}

/// A repository's tag count and bytes stored, without the rest of its
/// statistics (usage totals add these up over a whole tenant).
pub async fn footprint(name: &str) -> Result<(usize, u64), SwrError> {
    let (tags, by_digest) = tagged(name).await?;
    Ok((tags.len(), by_digest.values().map(|(_, s, _)| s).sum()))
}

impl RepoStats {
    pub async fn load(name: &str) -> Result<RepoStats, SwrError> {
        let meta: RepositoryMeta = store::get_json(&records::repository_meta(name))
            .await
            .map_err(oci_fault)?
            .unwrap_or_default();
        let created = store::get_json::<keys::RepoRecord>(&keys::repo(name))
            .await
            .map_err(oci_fault)?
            .map(|r| r.created)
            .unwrap_or(0);
        let tagged = tagged(name).await?;
        let out = figures(name, &tagged).await?;
        let by_digest = &tagged.1;
        let downloads = metadata::counters(vec![keys::downloads(name)])
            .await
            .map_err(fault)?
            .first()
            .copied()
            .unwrap_or(0);
        let size = by_digest.values().map(|(_, s, _)| s).sum();
        let updated = out
            .iter()
            .map(|t| t.updated)
            .max()
            .unwrap_or(created)
            .max(created);
        Ok(RepoStats {
            meta,
            created,
            updated,
            size,
            downloads,
            tags: out,
        })
    }

    /// One row of a repository listing (v2 or v3 shape).
    pub fn listing(&self, name: &str, v3: bool) -> serde_json::Value {
        let ns = namespace_of(name);
        let mut row = serde_json::json!({
            "name": short_name(name),
            "category": self.meta.category,
            "description": self.meta.description,
            "size": self.size,
            "is_public": self.meta.public,
            "num_images": self.tags.len(),
            "num_download": self.downloads,
            "created_at": swr::rfc3339(self.created),
            "updated_at": swr::rfc3339(self.updated),
            "domain_name": "",
            "status": true,
        });
        let extra = if v3 {
            serde_json::json!({"id": swr::numeric_id(name), "namespace_name": ns})
        } else {
            serde_json::json!({
                "logo": "", "url": "", "path": name, "internal_path": name, "namespace": ns,
                "tags": self.tags.iter().map(|t| t.tag.clone()).collect::<Vec<_>>(),
                "total_range": 0,
            })
        };
        if let (Some(row), serde_json::Value::Object(extra)) = (row.as_object_mut(), extra) {
            row.extend(extra);
        }
        row
    }
}
