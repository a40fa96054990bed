//! Outbound HTTP for components: where `wasi:http` outgoing requests go.
//!
//! As on Spin, a component reaches only the URLs its
//! `allowed_outbound_hosts` (spin.toml) name; none listed, none reached.
//! Webhook and replication URLs are user input, so whatever the manifest
//! says the host refuses destinations that resolve to a loopback, private,
//! link-local, shared (CGNAT), multicast, broadcast or unspecified address
//! (server-side request forgery), unless `--outbound-allow` lists them. The
//! address checked is the address connected to: names are resolved once,
//! by the guard, so a rebinding DNS answer cannot slip past it.
//!
//! HTTP and HTTPS only. HTTPS verifies certificates against the system's
//! roots and an optional CA file (`--outbound-ca-file`). Redirects are not
//! followed (a 3xx is the answer), proxies from the environment are not
//! used, and connect, first-byte and between-bytes timeouts apply
//! (`wasi:http` request options, else 10 s, 30 s and 30 s). A response
//! body larger than `--outbound-max-response-bytes` fails with
//! `HTTP-response-body-size`.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// A Berth component sets this request header to skip certificate
/// verification for one request (a webhook's `skip_cert_verify`); the host
/// removes it before sending. Spin has no such switch.
pub const INSECURE_TLS_HEADER: &str = "berth-insecure-tls";

/// A Berth component sets this request header to base64 of PEM CA
/// certificates, the only ones trusted for one request (a registered
/// Kubernetes cluster's own CA); the host removes it before sending. Spin
/// has no such switch.
pub const TLS_CA_HEADER: &str = "berth-tls-ca";

/// A Berth component sets this request header to the largest response body
/// it takes for one request, in bytes, instead of
/// `--outbound-max-response-bytes` (the replication job pulling a blob
/// into the store); the host removes it before sending. Spin has no such
/// switch.
pub const MAX_RESPONSE_HEADER: &str = "berth-max-response-bytes";

/// Clients built for [`TLS_CA_HEADER`] CAs kept at once (then rebuilt).
const CA_CLIENTS: usize = 64;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

/// Host settings for outbound HTTP (`berth serve` options).
#[derive(Clone, Debug, Default)]
pub struct OutboundConfig {
    /// Networks the SSRF guard lets through (single addresses are /32 or
    /// /128), e.g. `127.0.0.1` for tests or `10.0.0.0/8` for an internal
    /// registry to replicate to.
    pub allow: Vec<IpNet>,
    /// PEM file of extra CA certificates trusted for HTTPS.
    pub ca_file: Option<PathBuf>,
    /// Largest response body accepted, in bytes.
    pub max_response_bytes: u64,
}

/// The shared clients (one verifying certificates, one not).
pub struct Outbound {
    verifying: reqwest::Client,
    insecure: reqwest::Client,
    /// Clients that trust a request's own CA, by its PEM.
    with_ca: std::sync::Mutex<std::collections::HashMap<String, reqwest::Client>>,
    allow: Arc<[IpNet]>,
    max_response_bytes: u64,
}

impl Outbound {
    pub fn new(config: &OutboundConfig) -> Result<Outbound> {
        let allow: Arc<[IpNet]> = config.allow.clone().into();
        let extra = match &config.ca_file {
            Some(path) => reqwest::Certificate::from_pem_bundle(
                &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("reading CA certificates from {}", path.display()))?,
            None => Vec::new(),
        };
        Ok(Outbound {
            verifying: client(&allow, TrustedRoots::SystemAnd(extra.clone()), false)?,
            insecure: client(&allow, TrustedRoots::SystemAnd(extra), true)?,
            with_ca: Default::default(),
            allow,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// The client that trusts only the PEM CA certificates `ca` (as
    /// kubectl trusts only a cluster's CA).
    fn client_with_ca(&self, ca: &str) -> Result<reqwest::Client, HttpError> {
        if let Some(c) = self.with_ca.lock().expect("not poisoned").get(ca) {
            return Ok(c.clone());
        }
        // Built outside the lock: other requests go on meanwhile.
        let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or(HttpError::TlsCertificateError)?;
        let c = client(&self.allow, TrustedRoots::Only(certs), false)
            .map_err(|_| HttpError::TlsCertificateError)?;
        let mut clients = self.with_ca.lock().expect("not poisoned");
        if clients.len() >= CA_CLIENTS
            && let Some(k) = clients.keys().next().cloned()
        {
            clients.remove(&k);
        }
        clients.insert(ca.to_string(), c.clone());
        Ok(c)
    }

    /// Sends `request` for a component allowed to reach `allowed`.
    async fn send(
        self: Arc<Self>,
        allowed: Arc<AllowedHosts>,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        let host = uri.host().ok_or(HttpError::HttpRequestUriInvalid)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(match scheme.as_str() {
            "https" => 443,
            _ => 80,
        });
        if !matches!(scheme.as_str(), "http" | "https") || !allowed.allows(&scheme, host, port) {
            tracing::debug!(%scheme, host, port, "outbound request denied by allowed_outbound_hosts");
            return Err(HttpError::HttpRequestDenied);
        }
        // Literal addresses never reach the resolver: check them here.
        if let Ok(ip) = host.parse::<IpAddr>()
            && !permitted(ip, &self.allow)
        {
            tracing::debug!(%ip, "outbound request to a non-public address refused");
            return Err(HttpError::DestinationIpProhibited);
        }
        let insecure = request.headers_mut().remove(INSECURE_TLS_HEADER).is_some();
        let max = match request.headers_mut().remove(MAX_RESPONSE_HEADER) {
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    HttpError::InternalError(Some(format!("invalid {MAX_RESPONSE_HEADER}")))
                })?,
            None => self.max_response_bytes,
        };
        let ca = match request.headers_mut().remove(TLS_CA_HEADER) {
            None => None,
            Some(v) => {
                use base64::Engine;
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(v.as_bytes())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or(HttpError::TlsCertificateError)?;
                Some(self.client_with_ca(&pem)?)
            }
        };
        let options = options.unwrap_or_default();
        let first_byte = options.first_byte_timeout.unwrap_or(FIRST_BYTE_TIMEOUT);
        let between = options
            .between_bytes_timeout
            .unwrap_or(BETWEEN_BYTES_TIMEOUT);
        let connect = options.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
        let request =
            request.map(|b| reqwest::Body::wrap(SyncBody(sync_wrapper::SyncWrapper::new(b))));
        let request =
            reqwest::Request::try_from(request).map_err(|_| HttpError::HttpRequestUriInvalid)?;
        // The URL as reqwest parsed it (WHATWG rules turn `2130706433`,
        // `0x7f.1` or `127.1` into 127.0.0.1) is what it connects to, and
        // an address in it never reaches the resolver: check it again.
        if let Some(ip) = request.url().host_str().and_then(|h| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok()
        }) && !permitted(ip, &self.allow)
        {
            tracing::debug!(%ip, "outbound request to a non-public address refused");
            return Err(HttpError::DestinationIpProhibited);
        }
        let client = match &ca {
            _ if insecure => &self.insecure,
            Some(c) => c,
            None => &self.verifying,
        };
        // The connect timeout is the client's; a shorter one asked for by
        // the request bounds connecting and the first byte together.
        let wait = first_byte + connect.min(CONNECT_TIMEOUT);
        let response = match tokio::time::timeout(wait, client.execute(request)).await {
            Err(_) => return Err(HttpError::HttpResponseTimeout),
            Ok(Err(e)) => return Err(send_error(&e)),
            Ok(Ok(r)) => r,
        };
        if let Some(length) = response.content_length()
            && length > max
        {
            return Err(HttpError::HttpResponseBodySize(Some(length)));
        }
        let response = http::Response::from(response);
        Ok(response.map(|body| {
            http_body_util::BodyExt::boxed_unsync(Capped {
                inner: body,
                left: max,
                limit: max,
                between,
                sleep: None,
            })
        }))
    }
}

/// Which certificate authorities a client trusts.
enum TrustedRoots {
    /// The system's roots and these (`--outbound-ca-file`).
    SystemAnd(Vec<reqwest::Certificate>),
    /// Only these.
    Only(Vec<reqwest::Certificate>),
}

/// A client whose requests stay within `allow` (the SSRF guard).
fn client(allow: &Arc<[IpNet]>, roots: TrustedRoots, insecure: bool) -> Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .dns_resolver(Arc::new(Guard {
            allow: allow.clone(),
        }))
        .tls_danger_accept_invalid_certs(insecure);
    let builder = match roots {
        TrustedRoots::SystemAnd(extra) => builder.tls_certs_merge(extra),
        TrustedRoots::Only(certs) => builder.tls_certs_only(certs),
    };
    Ok(builder.build()?)
}

/// The `wasi:http` hooks of one component: its outbound requests go
/// through [`Outbound`] within its `allowed_outbound_hosts`.
pub struct ComponentHooks {
    pub outbound: Arc<Outbound>,
    pub allowed: Arc<AllowedHosts>,
    /// Who sends (counted in `berth_outbound_requests_total`).
    pub component: Arc<str>,
}

type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for ComponentHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        // Request body errors reach the client through the body itself.
        drop(fut);
        let (outbound, allowed) = (self.outbound.clone(), self.allowed.clone());
        let component = self.component.clone();
        Box::new(async move {
            let sent = outbound.send(allowed, request, options).await;
            crate::metrics::METRICS
                .sent(&component, sent.as_ref().ok().map(|r| r.status().as_u16()));
            let response = sent?;
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

fn send_error(e: &reqwest::Error) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<Prohibited>().is_some() {
            return HttpError::DestinationIpProhibited;
        }
        source = s.source();
    }
    if e.is_timeout() {
        HttpError::ConnectionTimeout
    } else if e.is_connect() {
        let text = format!("{e:?}");
        if text.contains("certificate") || text.contains("Certificate") {
            HttpError::TlsCertificateError
        } else if text.contains("dns error") {
            HttpError::DestinationNotFound
        } else {
            HttpError::ConnectionRefused
        }
    } else {
        HttpError::InternalError(Some(e.to_string()))
    }
}

/// Resolves names and keeps only the addresses the guard permits.
struct Guard {
    allow: Arc<[IpNet]>,
}

/// Every address a name resolved to is non-public and not allowed.
#[derive(Debug)]
struct Prohibited(String);

impl std::fmt::Display for Prohibited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves only to non-public addresses", self.0)
    }
}

impl std::error::Error for Prohibited {}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| permitted(a.ip(), &allow))
                .collect();
            if kept.is_empty() {
                tracing::debug!(host, "outbound request to a non-public address refused");
                return Err(Box::new(Prohibited(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether the host may connect to `ip`: a public address, or one in
/// `allow`.
pub fn permitted(ip: IpAddr, allow: &[IpNet]) -> bool {
    // An IPv4-mapped IPv6 address is the IPv4 address.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if allow.iter().any(|n| n.contains(&ip)) {
        return true;
    }
    // IPv6 forms that carry an IPv4 address reach it: judge that one too.
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = embedded_v4(v6)
        && !is_public(IpAddr::V4(v4))
    {
        return false;
    }
    is_public(ip)
}

/// The IPv4 address inside IPv4-compatible (`::a.b.c.d`), NAT64
/// (`64:ff9b::/96`) and 6to4 (`2002::/16`) IPv6 addresses.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    if s[..6] == [0; 6] || (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4]) {
        Some(low(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(low(s[1], s[2]))
    } else {
        None
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
            || v4.is_private()
            || v4.is_link_local()
            || v4.is_unspecified()
            || v4.is_broadcast()
            || v4.is_multicast()
            || v4.is_documentation()
            // 0.0.0.0/8 ("this network"), 100.64.0.0/10 (shared, CGNAT),
            // 192.0.0.0/24 (protocol assignments), 198.18.0.0/15
            // (benchmarking), 240.0.0.0/4 (reserved).
            || v4.octets()[0] == 0
            || in_v4(v4, [100, 64, 0, 0], 10)
            || in_v4(v4, [192, 0, 0, 0], 24)
            || in_v4(v4, [198, 18, 0, 0], 15)
            || v4.octets()[0] >= 240)
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
            || v6.is_unspecified()
            || v6.is_multicast()
            // fc00::/7 (unique local), fe80::/10 (link-local), 2001:db8::/32
            // (documentation), 64:ff9b:1::/48 (local NAT64).
            || (v6.segments()[0] & 0xfe00) == 0xfc00
            || (v6.segments()[0] & 0xffc0) == 0xfe80
            || (v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8)
            || (v6.segments()[0] == 0x64 && v6.segments()[1] == 0xff9b && v6.segments()[2] == 1)
            // fec0::/10 (site-local), 100::/64 (discard).
            || (v6.segments()[0] & 0xffc0) == 0xfec0
            || (v6.segments()[0] == 0x100 && v6.segments()[1..4] == [0, 0, 0])
            || v6 == Ipv6Addr::from_bits(1))
        }
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = u32::MAX << (32 - bits);
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

/// A component's `allowed_outbound_hosts`, as Spin reads them:
/// `scheme://host[:port]`, where the scheme may be `*`, the host `*` or
/// `*.domain`, and the port `*` (no port: the scheme's default).
#[derive(Clone, Debug, Default)]
pub struct AllowedHosts(Vec<HostPattern>);

#[derive(Clone, Debug)]
struct HostPattern {
    scheme: Option<String>,
    host: String,
    port: Option<u16>,
}

impl AllowedHosts {
    pub fn parse(patterns: &[String]) -> Result<AllowedHosts> {
        let mut out = Vec::new();
        for p in patterns {
            let (scheme, rest) = p
                .split_once("://")
                .with_context(|| format!("allowed_outbound_hosts entry {p:?} has no scheme"))?;
            let rest = rest.trim_end_matches('/');
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, port)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(port)),
                _ => (rest, None),
            };
            let default = match scheme {
                "https" => Some(443),
                "http" => Some(80),
                _ => None,
            };
            let port = match port {
                Some("*") => None,
                Some(n) => Some(
                    n.parse()
                        .with_context(|| format!("bad port in allowed_outbound_hosts {p:?}"))?,
                ),
                None => Some(default.with_context(|| {
                    format!("allowed_outbound_hosts entry {p:?} needs a port for scheme {scheme}")
                })?),
            };
            out.push(HostPattern {
                scheme: (scheme != "*").then(|| scheme.to_ascii_lowercase()),
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase(),
                port,
            });
        }
        Ok(AllowedHosts(out))
    }

    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        self.0.iter().any(|p| {
            p.scheme.as_deref().is_none_or(|s| s == scheme)
                && p.port.is_none_or(|n| n == port)
                && (p.host == "*"
                    || p.host == host
                    || p.host
                        .strip_prefix("*.")
                        .is_some_and(|d| host.ends_with(&format!(".{d}"))))
        })
    }
}

/// A request body reqwest can take (it wants `Sync`; only one task ever
/// polls it).
struct SyncBody(sync_wrapper::SyncWrapper<WasiBody>);

impl Body for SyncBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        Pin::new(self.get_mut().0.get_mut()).poll_frame(cx)
    }
}

/// A response body with the size cap and the between-bytes timeout.
struct Capped {
    inner: reqwest::Body,
    left: u64,
    limit: u64,
    between: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for Capped {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => {
                let between = self.between;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(between)));
                ready!(sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
            Poll::Ready(frame) => {
                self.sleep = None;
                match frame {
                    None => Poll::Ready(None),
                    Some(Err(_)) => Poll::Ready(Some(Err(HttpError::ConnectionTerminated))),
                    Some(Ok(frame)) => {
                        let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                        if n > self.left {
                            let limit = self.limit;
                            return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                                limit,
                            )))));
                        }
                        self.left -= n;
                        Poll::Ready(Some(Ok(frame)))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_unless_allowed() {
        let none: &[IpNet] = &[];
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "fec0::1",
            "100::1",
        ] {
            assert!(!permitted(private.parse().unwrap(), none), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(permitted(public.parse().unwrap(), none), "{public}");
        }
        let allow: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        assert!(permitted("127.0.0.1".parse().unwrap(), &allow));
        assert!(permitted("10.9.9.9".parse().unwrap(), &allow));
        assert!(!permitted("127.0.0.2".parse().unwrap(), &allow));
    }

    #[test]
    fn allowed_outbound_hosts_as_spin_reads_them() {
        let hosts = AllowedHosts::parse(&[
            "https://example.com".into(),
            "http://*.internal:8080".into(),
            "*://*:*".into(),
        ])
        .unwrap();
        assert!(hosts.allows("https", "example.com", 443));
        assert!(hosts.allows("http", "a.internal", 9999)); // the wildcard entry
        let strict = AllowedHosts::parse(&[
            "https://example.com".into(),
            "http://*.internal:8080".into(),
        ])
        .unwrap();
        assert!(strict.allows("https", "EXAMPLE.com", 443));
        assert!(!strict.allows("https", "example.com", 8443));
        assert!(!strict.allows("http", "example.com", 80));
        assert!(strict.allows("http", "a.b.internal", 8080));
        assert!(!strict.allows("http", "internal", 8080));
        assert!(!AllowedHosts::default().allows("https", "example.com", 443));
        assert!(AllowedHosts::parse(&["example.com".into()]).is_err());
    }
}
