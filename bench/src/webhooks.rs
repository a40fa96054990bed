//! The webhook trigger under load (Berth only): pushes with and without a
//! webhook policy and an image trigger on their repository (the fill rate
//! must not drop more than 10 %), the time from each push's
//! acknowledgement to its webhook delivery at a receiver on 127.0.0.1, and
//! deliveries per second. The receiver also stands in for the trigger's
//! Kubernetes API (a Deployment on GET, 200 on PATCH), so image updates
//! run alongside.

use crate::client::{self, Conn};
use crate::workloads::{self, OCI_MANIFEST};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Figures {
    pub fill_without: f64,
    pub fill_with: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub delivered_per_s: f64,
    /// Image updates (PATCHes) the trigger made by the time the last
    /// webhook arrived.
    pub image_updates: usize,
}

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;
type Patches = Arc<std::sync::atomic::AtomicUsize>;

/// A minimal HTTP/1.1 receiver: answers 200 to every POST and PATCH and
/// records when each tag's delivery arrived (Harbor payloads name it); a
/// GET gets `deployment`. With `tls`, it speaks HTTPS.
async fn receiver(
    deployment: Vec<u8>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<(String, Arrivals, Patches)> {
    let deployment: Arc<[u8]> = deployment.into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/hook", listener.local_addr()?);
    let arrivals: Arrivals = Default::default();
    let patches: Patches = Default::default();
    let (seen, patched) = (arrivals.clone(), patches.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (seen, patched) = (seen.clone(), patched.clone());
            let (deployment, tls) = (deployment.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => answer(s, seen, patched, deployment).await,
                    Some(tls) => {
                        if let Ok(s) = tls.accept(s).await {
                            answer(s, seen, patched, deployment).await
                        }
                    }
                }
            });
        }
    });
    Ok((url, arrivals, patches))
}

/// Serves one connection of [`receiver`].
async fn answer(
    mut s: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    seen: Arrivals,
    patched: Patches,
    deployment: Arc<[u8]>,
) {
    let mut buf = Vec::new();
    loop {
        // One request: the head, then Content-Length bytes.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 8192];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: serde_json::Value =
            serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or_default();
        if let Some(tag) = body["event_data"]["resources"][0]["tag"].as_str() {
            seen.lock()
                .unwrap()
                .entry(tag.to_string())
                .or_insert_with(Instant::now);
        }
        buf.drain(..head_end + length);
        if head.starts_with("patch ") {
            patched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let answer = if head.starts_with("get ") {
            let mut a = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                deployment.len()
            )
            .into_bytes();
            a.extend_from_slice(&deployment);
            a
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()
        };
        if s.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it (made with the
/// `openssl` CLI, which the test dependencies install): the acceptor and
/// the CA's PEM.
fn stand_in_tls() -> Result<(tokio_rustls::TlsAcceptor, String)> {
    use tokio_rustls::rustls;
    let dir = tempfile::tempdir()?;
    let run = |args: &[&str]| -> Result<()> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .context("running openssl")?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-days",
            "2",
            "-subj",
            "/CN=bench-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    ]
    .concat())?;
    run(&[
        &["req"][..],
        &ec,
        &[
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
        ],
    ]
    .concat())?;
    std::fs::write(
        dir.path().join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )?;
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "srv.pem",
        "-extfile",
        "ext.cnf",
    ])?;
    let read = |f: &str| std::fs::read(dir.path().join(f));
    let certs = rustls_pemfile::certs(&mut &read("srv.pem")?[..]).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut &read("srv.key")?[..])?.context("no key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let ca = String::from_utf8(read("ca.pem")?)?;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca))
}

/// Signs and sends one management call (`SDK-HMAC-SHA256`, as the SDKs);
/// `path` may carry a query.
pub async fn signed(
    host: &str,
    ak: &str,
    sk: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Bytes)> {
    use berth_domain::iam::signing;
    let date = signing::format_sdk_date(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    );
    let headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("host".to_string(), host.to_string()),
        ("x-sdk-date".to_string(), date.clone()),
    ];
    let signed_headers: Vec<String> = headers.iter().map(|(k, _)| k.clone()).collect();
    let (bare, query) = path.split_once('?').unwrap_or((path, ""));
    let req = signing::Request {
        method,
        path: bare,
        query,
        headers: &headers,
        body,
    };
    let canonical = signing::canonical_request(&req, &signed_headers)
        .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
    let signature = signing::hmac_hex(
        sk.as_bytes(),
        signing::string_to_sign(&canonical, &date).as_bytes(),
    );
    let stream = tokio::net::TcpStream::connect(host).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut request = hyper::Request::builder().method(method).uri(path);
    for (k, v) in &headers {
        request = request.header(k, v);
    }
    let request = request
        .header(
            "authorization",
            format!(
                "SDK-HMAC-SHA256 Access={ak}, SignedHeaders={}, Signature={signature}",
                signed_headers.join(";")
            ),
        )
        .body(client::full(Bytes::copy_from_slice(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Pushes `tags` of one small image to `repo` over `concurrency`
/// connections; the time each PUT was acknowledged, and the PUT rate.
async fn push_tags(
    host: &str,
    repo: &str,
    tags: &[String],
    concurrency: usize,
) -> Result<(HashMap<String, Instant>, f64)> {
    let img = workloads::image(515151, 1, 1024);
    workloads::push_image(host, repo, "seed", &img).await?;
    let start = Instant::now();
    let tasks: Vec<_> = tags
        .chunks(tags.len().div_ceil(concurrency).max(1))
        .map(|chunk| {
            let (host, repo, chunk, manifest) = (
                host.to_string(),
                repo.to_string(),
                chunk.to_vec(),
                img.manifest.clone(),
            );
            tokio::spawn(async move {
                let mut c = Conn::open(&host).await?;
                let mut acks = Vec::new();
                for tag in chunk {
                    c.put_manifest(&repo, &tag, OCI_MANIFEST, manifest.clone())
                        .await?;
                    acks.push((tag, Instant::now()));
                }
                Ok::<_, anyhow::Error>(acks)
            })
        })
        .collect();
    let mut acked = HashMap::new();
    for t in tasks {
        acked.extend(t.await??);
    }
    let rate = tags.len() as f64 / start.elapsed().as_secs_f64();
    Ok((acked, rate))
}

/// An access key of the administrator and its project, to sign SWR's
/// enterprise API (made once per registry: keys per user are limited).
pub struct Signer {
    pub ak: String,
    pub sk: String,
    pub project: String,
    tenant: String,
}

pub async fn signer(host: &str) -> Result<Signer> {
    let mut admin = Conn::open(host).await?;
    let me = admin.get("/berth/v1/whoami", &[]).await?;
    let me: serde_json::Value = serde_json::from_slice(&me.body).context("whoami")?;
    let (tenant, user) = (
        me["user"]["tenant"]
            .as_str()
            .unwrap_or("system")
            .to_string(),
        me["user"]["name"].as_str().unwrap_or("admin").to_string(),
    );
    let project = me["project_id"]
        .as_str()
        .context("no project id")?
        .to_string();
    let key = admin
        .send(
            hyper::Method::POST,
            &format!("/berth/v1/tenants/{tenant}/users/{user}/keys"),
            &[("content-type", "application/json".into())],
            client::full(Bytes::from_static(b"{}")),
            true,
        )
        .await?;
    let key: serde_json::Value = serde_json::from_slice(&key.body).context("key")?;
    Ok(Signer {
        ak: key["access"].as_str().context("no access key")?.to_string(),
        sk: key["secret"].as_str().context("no secret key")?.to_string(),
        project,
        tenant,
    })
}

pub async fn run(host: &str, pushes: usize, round: u64, signer: &Signer) -> Result<Figures> {
    let (plain, hooked) = (format!("hookless{round}/app"), format!("hooked{round}/app"));
    // The trigger's workload runs the hooked repository (`registry_host`
    // is left at its default).
    let deployment = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "bench"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": format!("localhost:5000/{hooked}:seed")}]}}}});
    let deployment = serde_json::to_vec(&deployment)?;
    let (url, arrivals, _) = receiver(deployment.clone(), None).await?;
    let (tls, ca) = stand_in_tls()?;
    let (kube, _, patches) = receiver(deployment, Some(tls)).await?;
    let (ak, sk, project) = (&signer.ak, &signer.sk, &signer.project);
    let tags = |p: &str| {
        (0..pushes)
            .map(|i| format!("{p}{i:05}"))
            .collect::<Vec<_>>()
    };
    // Both organizations exist before either is measured.
    let (_, fill_without) = push_tags(host, &plain, &tags("n"), 16).await?;
    let img = workloads::image(616161, 1, 512);
    workloads::push_image(host, &hooked, "seed", &img).await?;
    let policy = serde_json::json!({
        "name": "bench", "enabled": true, "event_types": ["PUSH_ARTIFACT"],
        "targets": [{"type": "http", "address": url, "address_type": "internal"}],
        "scope_rules": [{"repo_scope_mode": "regular",
            "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
            "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}}],
    });
    let ns = hooked.split('/').next().unwrap_or_default();
    let (status, body) = signed(
        host,
        ak,
        sk,
        "POST",
        &format!("/v2/{project}/instances/{project}/namespaces/{ns}/webhook/policies"),
        &serde_json::to_vec(&policy)?,
    )
    .await?;
    if status != 201 {
        bail!(
            "creating the webhook policy answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // An image trigger on the same repository, updating a Deployment in a
    // "cluster" whose API is the receiver.
    let server = kube.trim_end_matches("/hook");
    let cluster = serde_json::json!({"id": format!("bench{round}"), "name": format!("bench{round}"),
        "server": server, "token": "bench", "organizations": [ns], "namespaces": ["bench"],
        "certificate_authority_data": ca});
    let trigger = serde_json::json!({"name": "bench", "action": "update", "enable": "true",
        "trigger_type": "all", "condition": ".*", "cluster_id": format!("bench{round}"),
        "cluster_ns": "bench", "app_type": "deployments", "application": "app"});
    for (path, body) in [
        (
            format!("/berth/v1/tenants/{}/clusters", signer.tenant),
            cluster,
        ),
        (
            format!("/v2/manage/namespaces/{ns}/repos/app/triggers"),
            trigger,
        ),
    ] {
        let (status, answer) =
            signed(host, ak, sk, "POST", &path, &serde_json::to_vec(&body)?).await?;
        if status != 201 {
            bail!(
                "POST {path} answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    let names = tags("h");
    let (acked, fill_with) = push_tags(host, &hooked, &names, 16).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let arrived_count = || {
        let a = arrivals.lock().unwrap();
        names.iter().filter(|t| a.contains_key(*t)).count()
    };
    while arrived_count() < names.len() {
        if Instant::now() > deadline {
            bail!("{} of {} webhooks arrived", arrived_count(), names.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrived = arrivals.lock().unwrap().clone();
    let mut latencies: Vec<f64> = names
        .iter()
        .map(|t| (arrived[t].saturating_duration_since(acked[t])).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let first = names.iter().map(|t| acked[t]).min().context("no pushes")?;
    let last = names
        .iter()
        .map(|t| arrived[t])
        .max()
        .context("no arrivals")?;
    Ok(Figures {
        fill_without,
        fill_with,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        delivered_per_s: names.len() as f64 / last.duration_since(first).as_secs_f64(),
        image_updates: patches.load(std::sync::atomic::Ordering::Relaxed),
    })
}
