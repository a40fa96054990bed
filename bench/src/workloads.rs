//! The workloads. Each runs against one registry and returns named figures;
//! `main` alternates registries round by round and takes medians.

use crate::client::{self, Conn};
use anyhow::{Result, bail};
use bytes::Bytes;
use hyper::Method;
use sha2::Digest;
use std::time::{Duration, Instant};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MIB: f64 = 1024.0 * 1024.0;

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// Deterministic, incompressible-looking bytes (xorshift), distinct per seed.
pub fn bytes(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

pub struct Image {
    pub layers: Vec<(String, Bytes)>,
    pub config: (String, Bytes),
    pub manifest: Bytes,
}

pub fn image(seed: u64, layers: usize, size: usize) -> Image {
    let layers: Vec<(String, Bytes)> = (0..layers)
        .map(|i| {
            let b = bytes(seed * 1000 + i as u64, size);
            (sha256(&b), b)
        })
        .collect();
    let config = Bytes::from(format!(
        r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#
    ));
    let config = (sha256(&config), config);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1.len()},
        "layers": layers.iter().map(|(d, b)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": b.len()})).collect::<Vec<_>>(),
    });
    Image {
        layers,
        config,
        manifest: Bytes::from(serde_json::to_vec(&manifest).unwrap()),
    }
}

pub async fn push_image(host: &str, repo: &str, tag: &str, img: &Image) -> Result<()> {
    let mut c = Conn::open(host).await?;
    for (d, b) in img.layers.iter().chain(std::iter::once(&img.config)) {
        c.push_blob(repo, d, client::full(b.clone()), b.len() as u64)
            .await?;
    }
    c.put_manifest(repo, tag, OCI_MANIFEST, img.manifest.clone())
        .await
}

/// Pulls as a client does: manifest, config, then each layer; returns bytes read.
pub async fn pull_image(host: &str, repo: &str, tag: &str) -> Result<u64> {
    let mut c = Conn::open(host).await?;
    let m = c
        .get(
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("accept", OCI_MANIFEST.into())],
        )
        .await?;
    if m.status != 200 {
        bail!("manifest GET answered {}", m.status);
    }
    let m: serde_json::Value = serde_json::from_slice(&m.body)?;
    let mut digests = vec![
        m["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    ];
    digests.extend(
        m["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(str::to_string)),
    );
    let mut total = 0;
    for d in digests {
        let r = c
            .send(
                Method::GET,
                &format!("/v2/{repo}/blobs/{d}"),
                &[],
                client::empty(),
                true,
            )
            .await?;
        if r.status != 200 {
            bail!("blob GET answered {}", r.status);
        }
        total += r.body.len() as u64;
    }
    Ok(total)
}

/// Push then pull of an image of `layers` × `size`: seconds for each.
pub async fn image_round_trip(
    host: &str,
    seed: u64,
    layers: usize,
    size: usize,
) -> Result<(f64, f64)> {
    let img = image(seed, layers, size);
    let repo = format!("bench/img{seed}");
    let t = Instant::now();
    push_image(host, &repo, "v1", &img).await?;
    let push = t.elapsed().as_secs_f64();
    let t = Instant::now();
    pull_image(host, &repo, "v1").await?;
    Ok((push, t.elapsed().as_secs_f64()))
}

/// A large layer: monolithic PUT, streamed PATCH, and a pull. MiB/s for each.
pub async fn big_layer(host: &str, seed: u64, size: u64) -> Result<(f64, f64, f64)> {
    let block = bytes(seed, 4 << 20);
    let digest = client::repeated_digest(&block, size);
    let mut c = Conn::open(host).await?;
    let t = Instant::now();
    c.push_blob(
        &format!("bench/big{seed}"),
        &digest,
        client::repeated(block.clone(), size),
        size,
    )
    .await?;
    let put = size as f64 / MIB / t.elapsed().as_secs_f64();
    let t = Instant::now();
    c.push_blob_patch(
        &format!("bench/bigpatch{seed}"),
        &digest,
        client::repeated(block, size),
    )
    .await?;
    let patch = size as f64 / MIB / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let r = c
        .send(
            Method::GET,
            &format!("/v2/bench/big{seed}/blobs/{digest}"),
            &[],
            client::empty(),
            false,
        )
        .await?;
    if r.status != 200 {
        bail!("big blob GET answered {}", r.status);
    }
    let pull = size as f64 / MIB / t.elapsed().as_secs_f64();
    Ok((put, patch, pull))
}

/// `clients` concurrent pulls of one image; seconds for all to finish.
pub async fn concurrent_pulls(host: &str, repo: &str, clients: usize) -> Result<f64> {
    let t = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (host, repo) = (host.to_string(), repo.to_string());
            tokio::spawn(async move { pull_image(&host, &repo, "v1").await })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(t.elapsed().as_secs_f64())
}

pub struct Load {
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// `concurrency` connections sending `method path` back to back for `secs`.
pub async fn load(
    host: &str,
    method: Method,
    path: &str,
    accept: Option<&str>,
    concurrency: usize,
    secs: f64,
) -> Result<Load> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (host, path, method) = (host.to_string(), path.to_string(), method.clone());
            let headers: Vec<(&'static str, String)> = accept
                .map(|a| vec![("accept", a.to_string())])
                .unwrap_or_default();
            tokio::spawn(async move {
                let mut c = Conn::open(&host).await?;
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let r = c
                        .send(method.clone(), &path, &headers, client::empty(), false)
                        .await?;
                    if r.status != 200 {
                        bail!("{method} {path} answered {}", r.status);
                    }
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                Ok::<_, anyhow::Error>(lat)
            })
        })
        .collect();
    let start = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Ok(Load {
        requests: all.len() as u64,
        rps: all.len() as f64 / elapsed,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    })
}

/// zb-style mixed load: `clients` workers, 75% pulls and 25% pushes of
/// blobs of the given sizes; returns operations per second.
pub async fn mixed(
    host: &str,
    seed: u64,
    sizes: &[usize],
    clients: usize,
    ops_per_client: usize,
) -> Result<f64> {
    let repo = format!("bench/mixed{seed}");
    let mut c = Conn::open(host).await?;
    let mut seeded = Vec::new();
    for (i, &s) in sizes.iter().enumerate() {
        let b = bytes(seed * 77 + i as u64, s);
        let d = sha256(&b);
        c.push_blob(&repo, &d, client::full(b), s as u64).await?;
        seeded.push(d);
    }
    let t = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|w| {
            let (host, repo, seeded, sizes) = (
                host.to_string(),
                repo.clone(),
                seeded.clone(),
                sizes.to_vec(),
            );
            tokio::spawn(async move {
                let mut c = Conn::open(&host).await?;
                for op in 0..ops_per_client {
                    let pick = (w * 31 + op * 17) % 100;
                    let which = (w + op) % sizes.len();
                    if pick < 75 {
                        let r = c
                            .send(
                                Method::GET,
                                &format!("/v2/{repo}/blobs/{}", seeded[which]),
                                &[],
                                client::empty(),
                                false,
                            )
                            .await?;
                        if r.status != 200 {
                            bail!("mixed GET answered {}", r.status);
                        }
                    } else {
                        let b = bytes(seed * 1_000_003 + (w * 10_000 + op) as u64, sizes[which]);
                        let d = sha256(&b);
                        c.push_blob(&repo, &d, client::full(b), sizes[which] as u64)
                            .await?;
                    }
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok((clients * ops_per_client) as f64 / t.elapsed().as_secs_f64())
}

/// Fills one repository with `tags` tags and the registry with `repos`
/// repositories, `concurrency` requests at a time.
/// Tags `t000000…` in `tags_repo` and repositories `scale/repo00000…`,
/// each a manifest PUT (plus its two small blobs for a new repository).
pub async fn fill_metadata(
    host: &str,
    tags_repo: &str,
    tags: std::ops::Range<usize>,
    repos: std::ops::Range<usize>,
    concurrency: usize,
) -> Result<()> {
    let img = image(424242, 1, 1024);
    push_image(host, tags_repo, "seed", &img).await?;
    let jobs: Vec<(String, String, bool)> = tags
        .map(|i| (tags_repo.to_string(), format!("t{i:06}"), false))
        .chain(repos.map(|i| (format!("scale/repo{i:05}"), "v1".to_string(), true)))
        .collect();
    if jobs.is_empty() {
        return Ok(());
    }
    let chunks: Vec<Vec<(String, String, bool)>> = jobs
        .chunks(jobs.len().div_ceil(concurrency).max(1))
        .map(|c| c.to_vec())
        .collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let host = host.to_string();
            let (config, layer, manifest) = (
                img.config.clone(),
                img.layers[0].clone(),
                img.manifest.clone(),
            );
            tokio::spawn(async move {
                let mut c = Conn::open(&host).await?;
                for (repo, tag, new_repo) in chunk {
                    if new_repo {
                        for (d, b) in [&config, &layer] {
                            c.push_blob(&repo, d, client::full(b.clone()), b.len() as u64)
                                .await?;
                        }
                    }
                    c.put_manifest(&repo, &tag, OCI_MANIFEST, manifest.clone())
                        .await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Median latency in ms of `n` GETs of `path`.
pub async fn latency_ms(host: &str, path: &str, n: usize) -> Result<f64> {
    let mut c = Conn::open(host).await?;
    let mut lat = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let r = c.get(path, &[]).await?;
        if r.status != 200 {
            bail!("GET {path} answered {}", r.status);
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(lat[lat.len() / 2])
}

/// Writes the rest of the metadata-scale data straight into Distribution's
/// filesystem layout, because over HTTP Distribution slows to ~40 tags/s past
/// 25k tags (every tag PUT lists the tag directory). Tag `t{first}` and
/// `scale/repo{first}` must already exist (pushed over HTTP): their files
/// are copied, so the layout is exactly the one Distribution wrote itself.
pub fn seed_distribution(
    root: &std::path::Path,
    tags: std::ops::Range<usize>,
    repos: std::ops::Range<usize>,
) -> Result<()> {
    use anyhow::Context;
    let repositories = root.join("docker/registry/v2/repositories/scale");
    let tag_dir = repositories.join("tags/_manifests/tags");
    let template = tag_dir.join(format!("t{:06}", tags.start.saturating_sub(1)));
    let files = files_under(&template).context("reading the template tag")?;
    for i in tags {
        let dest = tag_dir.join(format!("t{i:06}"));
        for (rel, content) in &files {
            let path = dest.join(rel);
            std::fs::create_dir_all(path.parent().unwrap())?;
            std::fs::write(path, content)?;
        }
    }
    let template = repositories.join(format!("repo{:05}", repos.start.saturating_sub(1)));
    let files = files_under(&template).context("reading the template repository")?;
    for i in repos {
        let dest = repositories.join(format!("repo{i:05}"));
        for (rel, content) in &files {
            let path = dest.join(rel);
            std::fs::create_dir_all(path.parent().unwrap())?;
            std::fs::write(path, content)?;
        }
    }
    Ok(())
}

/// Every file under `dir`, as (relative path, content).
fn files_under(dir: &std::path::Path) -> Result<Vec<(std::path::PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else {
                out.push((path.strip_prefix(dir)?.to_path_buf(), std::fs::read(&path)?));
            }
        }
    }
    Ok(out)
}
