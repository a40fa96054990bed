//! The console workload: in Debian's chromium (playwright-core,
//! `tests/browser/bench.mjs`), how soon a repository page with many tags
//! answers and shows its first 100 tags, and how fast a `docker save`
//! archive uploads through the console's page — against `skopeo copy` of an
//! archive of the same size into the same Berth, in the same run.

use crate::registry::{BERTH_PASSWORD, Registry};
use crate::workloads;
use anyhow::{Context, Result, bail};
use sha2::Digest;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

pub struct Figures {
    /// The page's own first byte (its HTML), median, ms.
    pub page_ttfb_ms: f64,
    /// The tag list API call's first byte, median, ms.
    pub tags_ttfb_ms: f64,
    /// From navigation to 100 tag rows on screen, median, ms.
    pub rendered_ms: f64,
    pub console_mib_s: f64,
    pub skopeo_mib_s: f64,
}

/// Fills `consolebench/tags` with `tags` tags, then measures. Archives of
/// `archive_bytes` (one layer of random bytes) are written under `work`.
pub async fn run(
    root: &Path,
    berth: &Registry,
    tags: usize,
    archive_bytes: u64,
    work: &Path,
) -> Result<Figures> {
    workloads::fill_metadata(&berth.host, "consolebench/tags", 0..tags, 0..0, 16).await?;
    let ours = archive(work, "console", 1, archive_bytes)?;
    let theirs = archive(work, "skopeo", 2, archive_bytes)?;

    let browser = root.join("tests/browser");
    if !browser.join("node_modules/playwright-core").exists() {
        bail!("tests/browser has no playwright-core: run `make deps` (npm ci there)");
    }
    let config = serde_json::json!({
        "url": format!("http://{}", berth.host), "user": "admin", "password": BERTH_PASSWORD,
        "repo": "consolebench/tags", "loads": 5, "archive": ours, "org": "consolebench",
    });
    let out = tokio::process::Command::new("node")
        .arg(browser.join("bench.mjs"))
        .current_dir(&browser)
        .env("BERTH_CONSOLE_BENCH", config.to_string())
        .output()
        .await
        .context("running node (apt-get install nodejs)")?;
    if !out.status.success() {
        bail!(
            "the console bench failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let got: serde_json::Value = serde_json::from_str(line.lines().last().unwrap_or_default())
        .context("the console bench printed no figures")?;
    let number = |k: &str| got[k].as_f64().with_context(|| format!("no {k} in {got}"));
    let mib = archive_bytes as f64 / (1 << 20) as f64;

    let home = tempfile::tempdir()?;
    let t = Instant::now();
    let skopeo = tokio::process::Command::new("skopeo")
        .arg("--tmpdir")
        .arg(home.path())
        .args(["copy", "--dest-tls-verify=false", "--dest-creds"])
        .arg(format!("admin:{BERTH_PASSWORD}"))
        .arg(format!("docker-archive:{theirs}"))
        .arg(format!("docker://{}/consolebench/skopeo:v1", berth.host))
        .env("HOME", home.path())
        .output()
        .await
        .context("running skopeo (apt-get install skopeo)")?;
    let skopeo_secs = t.elapsed().as_secs_f64();
    if !skopeo.status.success() {
        bail!(
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&skopeo.stderr)
        );
    }
    Ok(Figures {
        page_ttfb_ms: number("page_ttfb_ms")?,
        tags_ttfb_ms: number("tags_ttfb_ms")?,
        rendered_ms: number("rendered_ms")?,
        console_mib_s: mib / number("upload_s")?,
        skopeo_mib_s: mib / skopeo_secs,
    })
}

/// A `docker save` archive (written by `skopeo copy` from an OCI layout)
/// of one image `consolebench/<name>:v1` with one layer of `size` random
/// bytes; its path.
fn archive(work: &Path, name: &str, seed: u64, size: u64) -> Result<String> {
    let layout = work.join(format!("{name}-layout"));
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    // The layer, streamed to disk and hashed as it goes (no 1 GiB buffer).
    let tmp = blobs.join("layer.partial");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let mut hash = sha2::Sha256::new();
    let mut left = size;
    let mut chunk = 0u64;
    while left > 0 {
        let n = left.min(16 << 20);
        let b = workloads::bytes(seed * 1_000_003 + chunk, n as usize);
        hash.update(&b);
        file.write_all(&b)?;
        left -= n;
        chunk += 1;
    }
    file.flush()?;
    drop(file);
    let layer = hex::encode(hash.finalize());
    std::fs::rename(&tmp, blobs.join(&layer))?;
    let put = |bytes: Vec<u8>| -> Result<(String, usize)> {
        let hex = hex::encode(sha2::Sha256::digest(&bytes));
        std::fs::write(blobs.join(&hex), &bytes)?;
        Ok((format!("sha256:{hex}"), bytes.len()))
    };
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer}")]},
    });
    let (config_digest, config_size) = put(serde_json::to_vec(&config)?)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer}"), "size": size}],
    });
    let (manifest_digest, manifest_size) = put(serde_json::to_vec(&manifest)?)?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                       "size": manifest_size, "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    let tar = work.join(format!("{name}.tar"));
    let home = tempfile::tempdir()?;
    let out = std::process::Command::new("skopeo")
        .arg("--tmpdir")
        .arg(home.path())
        .arg("copy")
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!(
            "docker-archive:{}:consolebench/{name}:v1",
            tar.display()
        ))
        .env("HOME", home.path())
        .output()
        .context("running skopeo (apt-get install skopeo)")?;
    if !out.status.success() {
        bail!(
            "skopeo could not write the archive: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(&layout)?;
    Ok(tar.display().to_string())
}
