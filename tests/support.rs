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

impl Drop for Berth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
