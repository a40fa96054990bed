//! Starting the registries under test on loopback, and reading their CPU
//! time and peak memory from /proc.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bootstrap administrator's password of the Berth under test; the
/// benchmark authenticates every request with it (Basic), the heaviest of
/// Berth's authentication paths. Distribution runs without authentication.
pub const BERTH_PASSWORD: &str = "berth-bench";

pub struct Registry {
    pub name: String,
    pub host: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Registry {
    /// Berth built here, on the stores `runtime_config` names (the
    /// embedded defaults without one).
    pub fn berth(root: &Path, runtime_config: Option<&Path>) -> Result<Registry> {
        Self::berth_named(root, "berth", runtime_config)
    }

    /// Berth built in another checkout `root` (its `target/release/berth`
    /// and `spin.toml`), e.g. the commit before a change, measured in the
    /// same run under `name`.
    pub fn berth_named(root: &Path, name: &str, runtime_config: Option<&Path>) -> Result<Registry> {
        let bin = root.join("target/release/berth");
        if !bin.exists() {
            bail!("{} is missing: run `make build` first", bin.display());
        }
        // A first start fills the compiled-component cache, as the first start
        // of any deployment does; the measured instance starts warm.
        drop(Self::berth_once(root, &bin, name, runtime_config, None)?);
        Self::berth_once(root, &bin, name, runtime_config, None)
    }

    /// The Spin build (`make spin`) on `berth serve` as "spin": its host on
    /// the stores of `runtime_config`, its adapters given `variables`.
    pub fn spin(
        root: &Path,
        runtime_config: &Path,
        variables: &[(String, String)],
    ) -> Result<Registry> {
        let bin = root.join("target/release/berth");
        if !root.join("target/spin/registry.wasm").exists() {
            bail!("the Spin build is missing: run `make spin` first");
        }
        let launch =
            |()| Self::berth_once(root, &bin, "spin", Some(runtime_config), Some(variables));
        drop(launch(())?);
        launch(())
    }

    /// Starts `berth serve`; with `spin` (its variables), the Spin build.
    fn berth_once(
        root: &Path,
        bin: &Path,
        name: &str,
        runtime_config: Option<&Path>,
        spin: Option<&[(String, String)]>,
    ) -> Result<Registry> {
        use base64::Engine;
        let dir = tempfile::tempdir()?;
        let host = format!("127.0.0.1:{}", free_port()?);
        let child = Command::new(bin)
            .args([
                "serve",
                "--listen",
                &host,
                "--log-level",
                "warn",
                "--manifest",
            ])
            .arg(match spin {
                Some(_) => root.join("infra/spin/spin.toml"),
                None => root.join("spin.toml"),
            })
            .arg("--data-dir")
            .arg(dir.path())
            .args(
                runtime_config
                    .map(|c| ["--runtime-config-file".as_ref(), c.as_os_str()])
                    .into_iter()
                    .flatten(),
            )
            // Every workload pushes to its own organizations.
            .args(["--var", "namespace_quota=100000"])
            // The gc workload collects on its own ticks, without grace.
            .args(if name.starts_with("berth") {
                &[
                    "--var",
                    "gc_grace_seconds=0",
                    "--var",
                    "gc_fence_seconds=1",
                    "--var",
                    "gc_schedule=0 0 0 1 1 *",
                ][..]
            } else {
                &[]
            })
            // The webhook workload's receiver, and the Spin build's bucket,
            // listen on 127.0.0.1 (the baseline, an older Berth, may not
            // know the option).
            .args(if name.starts_with("berth") || spin.is_some() {
                &["--outbound-allow", "127.0.0.1"][..]
            } else {
                &[]
            })
            .envs(
                spin.unwrap_or_default()
                    .iter()
                    .map(|(k, v)| (format!("SPIN_VARIABLE_{}", k.to_uppercase()), v)),
            )
            .env("BERTH_ADMIN_PASSWORD", BERTH_PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("admin:{BERTH_PASSWORD}"));
        crate::client::authorize(&host, format!("Basic {basic}"));
        Self::ready(name, host, Some(child), Some(dir))
    }

    /// CNCF Distribution 2.8 (Debian's `docker-registry`), delete enabled:
    /// its filesystem driver, or the `storage:` section given (its S3
    /// driver, `Backends::distribution_storage`).
    pub fn distribution(storage: Option<String>) -> Result<Registry> {
        let dir = tempfile::tempdir()?;
        let host = format!("127.0.0.1:{}", free_port()?);
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error}}\n{}\nhttp: {{addr: {host}}}\n",
                storage.unwrap_or_else(|| format!(
                    "storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}",
                    dir.path().join("data").display()
                ))
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            // Its S3 driver (aws-sdk-go) fails to start with a CA bundle
            // over plain HTTP; the bucket is on loopback.
            .env_remove("AWS_CA_BUNDLE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting docker-registry (apt-get install docker-registry)")?;
        Self::ready("distribution", host, Some(child), Some(dir))
    }

    /// A registry someone else runs, given by URL (no CPU or memory figures).
    pub fn external(url: &str) -> Result<Registry> {
        let host = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Self::ready("third", host, None, None)
    }

    fn ready(
        name: &str,
        host: String,
        child: Option<Child>,
        dir: Option<tempfile::TempDir>,
    ) -> Result<Registry> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(&host) {
                use std::io::{Read, Write};
                let _ =
                    s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes());
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                // 401: up, and asking for credentials (Berth).
                if out.contains(" 200 ") || out.contains(" 401 ") {
                    return Ok(Registry {
                        name: name.into(),
                        host,
                        child,
                        _dir: dir,
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("{name} did not start on {host}")
    }

    /// Distribution's configuration file (for `garbage-collect`).
    pub fn config_path(&self) -> Option<PathBuf> {
        Some(self._dir.as_ref()?.path().join("config.yml"))
    }

    /// Distribution's storage root (for seeding it on disk).
    pub fn storage_root(&self) -> Option<PathBuf> {
        Some(self._dir.as_ref()?.path().join("data"))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// User + system CPU seconds the process has used.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?)).ok()?;
        let after = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        let ticks: f64 = fields[11].parse::<f64>().ok()? + fields[12].parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }

    /// Peak resident memory (VmHWM) in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Removing 100k tag directories takes minutes on this disk: leave it
        // to a detached `rm` rather than hold up the results.
        if let Some(dir) = self._dir.take() {
            let path = dir.keep();
            let _ = Command::new("rm")
                .arg("-rf")
                .arg(&path)
                .stdin(Stdio::null())
                .spawn();
        }
    }
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}
