//! Replication throughput: Berth's replication job copying an image from
//! the Berth under test to the Distribution under test (a shared-edition
//! manual sync, timed from the call to the sync job's `success`), side by
//! side with `skopeo copy` between the same two registries, and the peak
//! resident memory of each while it copies (Berth's host process; skopeo's
//! process). Each round copies fresh content (its own seed), so neither
//! finds the blobs at the destination already, and skopeo starts without
//! a blob-info cache.

use crate::client::{self, Conn};
use crate::registry::{BERTH_PASSWORD, Registry};
use crate::webhooks::{Signer, signed};
use crate::workloads::{self, OCI_MANIFEST};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Figures {
    pub berth_mib_s: f64,
    pub skopeo_mib_s: f64,
    pub berth_peak_rss_mib: f64,
    pub skopeo_peak_rss_mib: f64,
}

/// The Distribution under test, registered once as the sync region
/// `bench-dist`.
pub async fn register(berth: &Registry, dist: &Registry, signer: &Signer) -> Result<()> {
    let body = serde_json::json!({
        "name": "bench-dist", "type": "distribution", "url": format!("http://{}", dist.host),
        "credential": {"type": "basic", "access_key": "", "access_secret": ""}, "insecure": false,
    });
    let path = format!("/v2/{p}/instances/{p}/registries", p = signer.project);
    let (status, answer) = signed(
        &berth.host,
        &signer.ak,
        &signer.sk,
        "POST",
        &path,
        body.to_string().as_bytes(),
    )
    .await?;
    if status != 201 && status != 409 {
        bail!(
            "registering Distribution: {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(())
}

/// Pushes an image of `layers` layers of `size` bytes (each a repeated
/// 4 MiB block, streamed) to `repo:v1`; its total bytes.
async fn push(host: &str, repo: &str, seed: u64, layers: usize, size: u64) -> Result<u64> {
    let mut c = Conn::open(host).await?;
    let mut descriptors = Vec::new();
    for i in 0..layers {
        let block = workloads::bytes(seed * 1000 + i as u64, (4 << 20).min(size as usize));
        let digest = client::repeated_digest(&block, size);
        c.push_blob(repo, &digest, client::repeated(block, size), size)
            .await?;
        descriptors.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size}));
    }
    let config = Bytes::from(format!(
        r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#
    ));
    let config_digest = workloads::sha256(&config);
    c.push_blob(
        repo,
        &config_digest,
        client::full(config.clone()),
        config.len() as u64,
    )
    .await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descriptors,
    });
    c.put_manifest(
        repo,
        "v1",
        OCI_MANIFEST,
        Bytes::from(serde_json::to_vec(&manifest)?),
    )
    .await?;
    Ok(layers as u64 * size + config.len() as u64)
}

/// Samples a process's resident memory every 10 ms; the peak (MiB) when
/// dropped through [`Sampler::stop`].
struct Sampler {
    peak: Arc<AtomicU64>,
    done: Arc<std::sync::atomic::AtomicBool>,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, d) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                match rss_kib(pid) {
                    Some(k) => {
                        p.fetch_max(k, Ordering::Relaxed);
                    }
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Sampler { peak, done }
    }

    fn stop(self) -> f64 {
        self.done.store(true, Ordering::Relaxed);
        self.peak.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

/// One round: the image (`layers` × `size` bytes) copied by skopeo and by
/// Berth's replication, in an order that alternates with `seed`.
pub async fn run(
    berth: &Registry,
    dist: &Registry,
    signer: &Signer,
    seed: u64,
    layers: usize,
    size: u64,
) -> Result<Figures> {
    let ns = format!("repl{seed}");
    let total = push(&berth.host, &format!("{ns}/app"), seed, layers, size).await? as f64;
    let mib = total / (1024.0 * 1024.0);
    let mut figures = Figures {
        berth_mib_s: 0.0,
        skopeo_mib_s: 0.0,
        berth_peak_rss_mib: 0.0,
        skopeo_peak_rss_mib: 0.0,
    };
    for turn in 0..2 {
        if (turn + seed).is_multiple_of(2) {
            let (secs, rss) = skopeo(berth, dist, &ns).await?;
            figures.skopeo_mib_s = mib / secs;
            figures.skopeo_peak_rss_mib = rss;
        } else {
            let (secs, rss) = replicate(berth, signer, &ns).await?;
            figures.berth_mib_s = mib / secs;
            figures.berth_peak_rss_mib = rss;
        }
    }
    Ok(figures)
}

/// `skopeo copy` of `<ns>/app:v1` to `skopeo-<ns>/app:v1`: seconds, peak
/// RSS (MiB).
async fn skopeo(berth: &Registry, dist: &Registry, ns: &str) -> Result<(f64, f64)> {
    let home = tempfile::tempdir()?;
    let t = Instant::now();
    let child = std::process::Command::new("skopeo")
        .args(["--tmpdir"])
        .arg(home.path())
        .args([
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--dest-no-creds",
            "--src-creds",
            &format!("admin:{BERTH_PASSWORD}"),
            &format!("docker://{}/{ns}/app:v1", berth.host),
            &format!("docker://{}/skopeo-{ns}/app:v1", dist.host),
        ])
        .env("HOME", home.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running skopeo (apt-get install skopeo)")?;
    let sampler = Sampler::start(child.id());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    let secs = t.elapsed().as_secs_f64();
    let rss = sampler.stop();
    if !out.status.success() {
        bail!("skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((secs, rss))
}

/// A manual sync of `<ns>/app:v1` to organization `berth-<ns>` of
/// `bench-dist`, until its sync job succeeds: seconds, the Berth host's
/// peak RSS meanwhile (MiB).
async fn replicate(berth: &Registry, signer: &Signer, ns: &str) -> Result<(f64, f64)> {
    let pid = berth.pid().context("Berth runs here")?;
    let sampler = Sampler::start(pid);
    let base = format!("/v2/manage/namespaces/{ns}/repos/app");
    let body = serde_json::json!({
        "imageTag": ["v1"], "remoteRegionId": "bench-dist", "remoteNamespace": format!("berth-{ns}"),
    });
    let t = Instant::now();
    let (status, answer) = signed(
        &berth.host,
        &signer.ak,
        &signer.sk,
        "POST",
        &format!("{base}/sync_images"),
        body.to_string().as_bytes(),
    )
    .await?;
    if status != 200 {
        bail!("manual sync: {status} {}", String::from_utf8_lossy(&answer));
    }
    loop {
        let (status, answer) = signed(
            &berth.host,
            &signer.ak,
            &signer.sk,
            "GET",
            &format!("{base}/sync_job?filter=limit::1%7Coffset::0"),
            b"",
        )
        .await?;
        if status != 200 {
            bail!("sync job: {status} {}", String::from_utf8_lossy(&answer));
        }
        let jobs: serde_json::Value = serde_json::from_slice(&answer)?;
        match jobs[0]["status"].as_str() {
            Some("success") => break,
            Some("failed" | "timeout" | "cancel" | "existed") => {
                bail!("the sync job ended {}", jobs[0])
            }
            _ if t.elapsed() > Duration::from_secs(600) => {
                bail!("the sync job took over 10 minutes")
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    Ok((t.elapsed().as_secs_f64(), sampler.stop()))
}
