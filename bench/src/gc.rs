//! Garbage collection: how long collecting `garbage` unreferenced blobs
//! takes among `live` referenced ones, and again among ten times as many
//! live ones (Berth's cost follows the garbage; Distribution's offline
//! mark-and-sweep, `registry garbage-collect`, walks everything), and the
//! manifest GET rate while Berth collects, as a ratio to the rate without
//! (Distribution must be read-only or stopped while it collects).
//!
//! Blobs are 64-byte, distinct, in manifests of [`LAYERS`] layers; garbage
//! is made by deleting its manifests. Berth runs with a zero grace window
//! and a 1 s fence: a collection is two ticks (mark, then delete) and its
//! time is the two ticks' time, the fence wait left out.

use crate::client::{self, Conn};
use crate::registry::Registry;
use crate::workloads::{self, OCI_MANIFEST};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hyper::Method;
use std::time::{Duration, Instant};

pub const LAYERS: usize = 100;

/// Pushes `count` manifests' worth of blobs into `repo` (manifest `i` has
/// blobs seeded from `seed`, `i`); returns the manifests' digests.
async fn push(
    host: &str,
    repo: &str,
    seed: u64,
    manifests: std::ops::Range<usize>,
    concurrency: usize,
) -> Result<Vec<String>> {
    let ids: Vec<usize> = manifests.collect();
    let chunks: Vec<Vec<usize>> = ids
        .chunks(ids.len().div_ceil(concurrency).max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let (host, repo) = (host.to_string(), repo.to_string());
            tokio::spawn(async move {
                let mut c = Conn::open(&host).await?;
                let mut digests = Vec::new();
                for i in chunk {
                    let layers: Vec<(String, Bytes)> = (0..LAYERS)
                        .map(|l| {
                            let b = workloads::bytes(
                                seed.wrapping_mul(1 << 40) + (i * LAYERS + l) as u64,
                                64,
                            );
                            (workloads::sha256(&b), b)
                        })
                        .collect();
                    for (d, b) in &layers {
                        c.push_blob(&repo, d, client::full(b.clone()), b.len() as u64)
                            .await?;
                    }
                    let config = Bytes::from(format!(r#"{{"seed":{seed},"i":{i}}}"#));
                    let cd = workloads::sha256(&config);
                    c.push_blob(&repo, &cd, client::full(config.clone()), config.len() as u64)
                        .await?;
                    let manifest = serde_json::json!({
                        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
                        "layers": layers.iter().map(|(d, b)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": b.len()})).collect::<Vec<_>>(),
                    });
                    let body = Bytes::from(serde_json::to_vec(&manifest)?);
                    let digest = workloads::sha256(&body);
                    c.put_manifest(&repo, &format!("m{i}"), OCI_MANIFEST, body)
                        .await?;
                    digests.push(digest);
                }
                Ok::<_, anyhow::Error>(digests)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

async fn delete_manifests(host: &str, repo: &str, digests: &[String]) -> Result<()> {
    let mut c = Conn::open(host).await?;
    for d in digests {
        let r = c
            .send(
                Method::DELETE,
                &format!("/v2/{repo}/manifests/{d}"),
                &[],
                client::empty(),
                false,
            )
            .await?;
        if r.status != 202 {
            bail!("manifest DELETE answered {}", r.status);
        }
    }
    Ok(())
}

/// One Berth collection (ticks until nothing is due soon, the fence
/// waited out between them): the ticks' time in seconds, the blobs
/// deleted, and with `gets` (a manifest path), the manifest GET rate
/// measured while the ticks ran.
async fn berth_collect(host: &str, gets: Option<&str>) -> Result<(f64, u64, Option<f64>)> {
    let mut busy = 0.0;
    let mut deleted = 0;
    let mut requests = 0;
    for round in 0..4 {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let h = host.to_string();
        let t = Instant::now();
        let tick = tokio::spawn(async move {
            let mut c = Conn::open(&h).await?;
            c.send(
                Method::POST,
                "/berth/jobs/gc/tick",
                &[("content-length", "0".into())],
                client::empty(),
                true,
            )
            .await
        });
        if let Some(path) = gets {
            while !tick.is_finished() {
                requests += workloads::load(host, Method::GET, path, Some(OCI_MANIFEST), 8, 0.1)
                    .await?
                    .requests;
            }
        }
        let r = tick.await??;
        busy += t.elapsed().as_secs_f64();
        if r.status != 200 {
            bail!("gc tick answered {}: {:?}", r.status, r.body);
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body)?;
        let out = &v["result"]["collection"];
        deleted += out["blobs_deleted"].as_u64().unwrap_or(0);
        if out["next_due"].is_null() {
            break;
        }
    }
    Ok((busy, deleted, gets.map(|_| requests as f64 / busy)))
}

/// Distribution's offline collection of its storage, timed.
fn distribution_collect(reg: &Registry) -> Result<(f64, u64)> {
    let config = reg.config_path().context("Distribution's config")?;
    let t = Instant::now();
    let out = std::process::Command::new("docker-registry")
        .arg("garbage-collect")
        .arg(config)
        .output()?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "garbage-collect failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // It prints one "blob eligible for deletion" line per blob.
    let deleted = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| l.contains("blob eligible for deletion"))
        .count() as u64;
    Ok((secs, deleted))
}

pub struct Figures {
    /// (live blobs, GC seconds, blobs deleted)
    pub runs: Vec<(usize, f64, u64)>,
    /// Berth only: the first collection after seeding (the queue of every
    /// upload drained), seconds.
    pub drain_secs: Vec<f64>,
    /// Berth only: manifest GETs per second during a collection / without.
    pub get_ratio: Option<f64>,
    pub gc_during_load_secs: Option<f64>,
}

/// The whole workload on one registry: `live` then `10 × live` live blobs,
/// `garbage` garbage blobs collected at each size.
pub async fn run(reg: &Registry, live: usize, garbage: usize) -> Result<Figures> {
    let berth = reg.name != "distribution";
    let host = &reg.host;
    let per = |blobs: usize| blobs.div_ceil(LAYERS);
    let mut figures = Figures {
        runs: Vec::new(),
        drain_secs: Vec::new(),
        get_ratio: None,
        gc_during_load_secs: None,
    };
    let mut seeded = 0;
    for (round, target) in [live, live * 10].into_iter().enumerate() {
        push(host, "bench-gc/live", 1, per(seeded)..per(target), 16).await?;
        seeded = target;
        if berth {
            let (secs, _, _) = berth_collect(host, None).await?;
            figures.drain_secs.push(secs);
        }
        let repo = format!("bench-gc/garbage{round}");
        let digests = push(host, &repo, 100 + round as u64, 0..per(garbage), 16).await?;
        delete_manifests(host, &repo, &digests).await?;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (secs, deleted) = if berth {
            let (secs, deleted, _) = berth_collect(host, None).await?;
            (secs, deleted)
        } else {
            distribution_collect(reg)?
        };
        figures.runs.push((target, secs, deleted));
    }
    if berth {
        // GETs while a collection of as much garbage runs, against GETs
        // without: the same manifest, 8 clients, for the collection's time.
        let path = "/v2/bench-gc/live/manifests/m0";
        let quiet = workloads::load(host, Method::GET, path, Some(OCI_MANIFEST), 8, 3.0).await?;
        let digests = push(host, "bench-gc/garbage9", 109, 0..per(garbage), 16).await?;
        delete_manifests(host, "bench-gc/garbage9", &digests).await?;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (secs, _, during) = berth_collect(host, Some(path)).await?;
        figures.get_ratio = during.map(|d| d / quiet.rps);
        figures.gc_during_load_secs = Some(secs);
    }
    Ok(figures)
}
