//! Starts the real `berth` binary for end-to-end tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bootstrap administrator of test registries (account `admin`).
pub const ADMIN: (&str, &str) = ("admin", "berth-test-admin");

pub struct Berth {
    child: Child,
    pub addr: String,
    _data: tempfile::TempDir,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

impl Berth {
    /// Runs `target/release/berth serve` on a free loopback port and waits for `/healthz`.
    pub fn start() -> Berth {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let data = tempfile::tempdir().unwrap();
        let bin = root().join("target/release/berth");
        assert!(
            bin.exists(),
            "build the host first: cargo build --release -p berth-host"
        );
        let mut child = Command::new(bin)
            .args(["serve", "--listen", &addr, "--manifest"])
            .arg(root().join("spin.toml"))
            .arg("--data-dir")
            .arg(data.path())
            .env("BERTH_ADMIN_PASSWORD", ADMIN.1)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start berth");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200") {
                    return Berth {
                        child,
                        addr,
                        _data: data,
                    };
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("berth did not become healthy");
    }
}

impl Berth {
    /// Runs `berth iam …` on this registry's data; its `key value` lines.
    pub fn iam(&self, args: &[&str]) -> std::collections::HashMap<String, String> {
        let out = Command::new(root().join("target/release/berth"))
            .arg("iam")
            .arg("--data-dir")
            .arg(self._data.path())
            .args(args)
            .output()
            .expect("run berth iam");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// One HTTP/1.1 request on a fresh connection; (status, body).
    pub fn http(&self, method: &str, path: &str, headers: &[(String, String)]) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.addr).expect("connect");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n",
            self.addr
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        let status = out[9..12].parse().expect("status");
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        // Chunked answers: keep the chunks' data only.
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            let mut data = String::new();
            let mut rest = body;
            while let Some((size, tail)) = rest.split_once("\r\n") {
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                if n == 0 {
                    break;
                }
                data.push_str(&tail[..n]);
                rest = &tail[n + 2..];
            }
            data
        } else {
            body.to_string()
        };
        (status, body)
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
