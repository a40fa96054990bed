//! A minimal HTTP/1.1 client: one keep-alive connection per task, so a
//! load of N tasks is N connections, as with wrk or hey.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

pub type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

pub fn empty() -> Body {
    Empty::new().boxed()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// Block `i` of [`repeated`]: `block` rotated by `i * 7`, cut at `total`.
fn nth_block(block: &[u8], total: u64, i: u64) -> Vec<u8> {
    let start = (i as usize * 7) % block.len();
    let mut b = Vec::with_capacity(block.len());
    b.extend_from_slice(&block[start..]);
    b.extend_from_slice(&block[..start]);
    let remaining = total - i * block.len() as u64;
    b.truncate(remaining.min(block.len() as u64) as usize);
    b
}

/// `total` bytes made of `block` repeated (rotated per block so blocks differ).
pub fn repeated(block: Bytes, total: u64) -> Body {
    let n = total.div_ceil(block.len() as u64);
    let stream = futures::stream::iter((0..n).map(move |i| {
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(nth_block(&block, total, i))))
    }));
    StreamBody::new(stream).boxed()
}

/// The sha256 digest of what [`repeated`] sends.
pub fn repeated_digest(block: &[u8], total: u64) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for i in 0..total.div_ceil(block.len() as u64) {
        h.update(nth_block(block, total, i));
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

pub struct Conn {
    host: String,
    sender: SendRequest<Body>,
    authorization: Option<String>,
}

/// `Authorization` values to send to a host (registries that require auth).
static AUTHORIZATION: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Requests to `host` from now on authenticate as real clients do: with a
/// Bearer token per repository from the registry's token endpoint (fetched
/// once with these Basic credentials, renewed before it expires), and with
/// `authorization` itself elsewhere.
pub fn authorize(host: &str, authorization: String) {
    AUTHORIZATION
        .lock()
        .unwrap()
        .push((host.to_string(), authorization));
}

/// Cached tokens by (host, repository), with when they were issued.
type Tokens = std::collections::HashMap<(String, String), (String, std::time::Instant)>;
static TOKENS: std::sync::LazyLock<std::sync::Mutex<Tokens>> =
    std::sync::LazyLock::new(Default::default);
/// Tokens live 300 s; renew well before.
const TOKEN_RENEW: std::time::Duration = std::time::Duration::from_secs(200);

/// The repository a `/v2/<name>/…` path addresses.
fn repository(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    let rest = rest.split('?').next()?;
    // The last marker: names may contain `tags` or `blobs` segments.
    ["/blobs/", "/manifests/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|m| rest.rfind(m))
        .max()
        .map(|i| &rest[..i])
}

async fn bearer(host: &str, basic: &str, repo: &str) -> Result<String> {
    let key = (host.to_string(), repo.to_string());
    if let Some((t, at)) = TOKENS.lock().unwrap().get(&key)
        && at.elapsed() < TOKEN_RENEW
    {
        return Ok(format!("Bearer {t}"));
    }
    let mut c = Conn::open(host).await?;
    c.authorization = Some(basic.to_string());
    let r = c
        .get(
            &format!("/service/token?service=berth&scope=repository:{repo}:pull,push,delete"),
            &[],
        )
        .await?;
    if r.status != 200 {
        anyhow::bail!("token endpoint answered {}", r.status);
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    let t = v["token"].as_str().context("no token")?.to_string();
    TOKENS
        .lock()
        .unwrap()
        .insert(key, (t.clone(), std::time::Instant::now()));
    Ok(format!("Bearer {t}"))
}

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

impl Conn {
    pub async fn open(host: &str) -> Result<Conn> {
        let stream = tokio::net::TcpStream::connect(host)
            .await
            .with_context(|| format!("connecting to {host}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let authorization = AUTHORIZATION
            .lock()
            .unwrap()
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, a)| a.clone());
        Ok(Conn {
            host: host.to_string(),
            sender,
            authorization,
        })
    }

    /// Sends a request; the body is read fully (`keep` false: counted, not kept).
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
        keep: bool,
    ) -> Result<Reply> {
        // The context is built only on failure: this is the load generator's hot path.
        let m = method.clone();
        self.send_(method, path, headers, body, keep)
            .await
            .with_context(|| format!("{m} http://{}{path}", self.host))
    }

    async fn send_(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
        keep: bool,
    ) -> Result<Reply> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if let Some(basic) = &self.authorization {
            let value = match repository(path) {
                Some(repo) => Box::pin(bearer(&self.host, basic, repo)).await?,
                None => basic.clone(),
            };
            req = req.header("authorization", value);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        self.sender.ready().await?;
        let resp = self.sender.send_request(req.body(body)?).await?;
        let status = resp.status().as_u16();
        let (parts, mut incoming) = resp.into_parts();
        let mut kept = Vec::new();
        while let Some(frame) = incoming.frame().await {
            if let Ok(data) = frame?.into_data()
                && keep
            {
                kept.extend_from_slice(&data);
            }
        }
        Ok(Reply {
            status,
            headers: parts.headers,
            body: Bytes::from(kept),
        })
    }

    pub async fn get(&mut self, path: &str, headers: &[(&str, String)]) -> Result<Reply> {
        self.send(Method::GET, path, headers, empty(), true).await
    }

    /// Opens an upload session; returns its location (path and query).
    async fn start_upload(&mut self, repo: &str) -> Result<String> {
        let r = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                empty(),
                false,
            )
            .await?;
        location(&r, &self.host)
    }

    /// Pushes a blob as containerd does: POST for a session, then one PUT.
    pub async fn push_blob(
        &mut self,
        repo: &str,
        digest: &str,
        body: Body,
        len: u64,
    ) -> Result<()> {
        let loc = self.start_upload(repo).await?;
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .send(
                Method::PUT,
                &format!("{loc}{sep}digest={digest}"),
                &[
                    ("content-length", len.to_string()),
                    ("content-type", "application/octet-stream".into()),
                ],
                body,
                false,
            )
            .await?;
        if r.status != 201 {
            bail!("blob PUT answered {}", r.status);
        }
        Ok(())
    }

    /// Pushes a blob as docker does: POST, one streamed PATCH without length, then PUT.
    pub async fn push_blob_patch(&mut self, repo: &str, digest: &str, body: Body) -> Result<()> {
        let loc = self.start_upload(repo).await?;
        let r = self
            .send(
                Method::PATCH,
                &loc,
                &[("content-type", "application/octet-stream".into())],
                body,
                false,
            )
            .await?;
        if r.status != 202 {
            bail!("PATCH answered {}", r.status);
        }
        let loc = location(&r, &self.host)?;
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .send(
                Method::PUT,
                &format!("{loc}{sep}digest={digest}"),
                &[("content-length", "0".into())],
                empty(),
                false,
            )
            .await?;
        if r.status != 201 {
            bail!("final PUT answered {}", r.status);
        }
        Ok(())
    }

    pub async fn put_manifest(
        &mut self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: Bytes,
    ) -> Result<()> {
        let r = self
            .send(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("content-type", media_type.into())],
                full(body),
                false,
            )
            .await?;
        if r.status != 201 {
            bail!("manifest PUT answered {}", r.status);
        }
        Ok(())
    }
}

fn location(r: &Reply, host: &str) -> Result<String> {
    if r.status != 202 && r.status != 201 {
        bail!(
            "upload answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    let loc = r.header("location").context("no Location")?;
    // Distribution answers absolute URLs; keep the path and query.
    Ok(match loc.find(host) {
        Some(i) => loc[i + host.len()..].to_string(),
        None => loc,
    })
}
