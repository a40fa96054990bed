//! The machine's own limits, measured in the same run, so each figure can
//! be read against what the hardware allows.

use crate::workloads;
use anyhow::{Context, Result};
use hyper::Method;
use sha2::Digest;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const MIB: f64 = 1024.0 * 1024.0;

pub fn sha256_mib_s(size: usize) -> f64 {
    let data = workloads::bytes(1, size);
    let t = Instant::now();
    let _ = sha2::Sha256::digest(&data);
    size as f64 / MIB / t.elapsed().as_secs_f64()
}

pub fn fdatasync_write_mib_s(dir: &std::path::Path, size: usize) -> Result<f64> {
    let block = workloads::bytes(2, 4 << 20);
    let path = dir.join("ceiling-write");
    let mut f = std::fs::File::create(&path)?;
    let t = Instant::now();
    let mut written = 0;
    while written < size {
        f.write_all(&block)?;
        written += block.len();
    }
    f.sync_data()?;
    let v = written as f64 / MIB / t.elapsed().as_secs_f64();
    std::fs::remove_file(path)?;
    Ok(v)
}

/// nginx serving static files: the ceiling for small requests and big pulls.
pub struct Nginx {
    child: Child,
    pub host: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start(big: u64) -> Result<Nginx> {
        let dir = tempfile::tempdir()?;
        let www = dir.path().join("www");
        std::fs::create_dir(&www)?;
        std::fs::write(www.join("1k"), workloads::bytes(3, 1024))?;
        let mut f = std::fs::File::create(www.join("big"))?;
        let block = workloads::bytes(4, 4 << 20);
        let mut n = 0;
        while n < big {
            f.write_all(&block)?;
            n += block.len() as u64;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let host = format!("127.0.0.1:{port}");
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "user root; daemon off; worker_processes 2; pid {d}/nginx.pid; error_log {d}/error.log;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{ access_log off; sendfile on; keepalive_requests 10000000; client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
                 server {{ listen {host}; root {d}/www; }} }}\n"
            ),
        )?;
        let child = Command::new("nginx")
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx")?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(&host).is_ok() {
                return Ok(Nginx {
                    child,
                    host,
                    _dir: dir,
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        anyhow::bail!("nginx did not start")
    }

    pub async fn small_rps(&self, secs: f64) -> Result<f64> {
        Ok(
            workloads::load(&self.host, Method::GET, "/1k", None, 32, secs)
                .await?
                .rps,
        )
    }

    pub async fn big_mib_s(&self, size: u64) -> Result<f64> {
        let mut c = crate::client::Conn::open(&self.host).await?;
        let t = Instant::now();
        c.send(Method::GET, "/big", &[], crate::client::empty(), false)
            .await?;
        Ok(size as f64 / MIB / t.elapsed().as_secs_f64())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
