//! A client of a remote registry (the OCI Distribution API) over outbound
//! `wasi:http`: what the registries API checks a target with and what the
//! replication job copies through.
//!
//! Authentication follows the registry's challenge on `GET /v2/` (or on
//! the first request it refuses with one): none,
//! `Basic`, or the Docker token flow (`Bearer realm=…`: a token per scope,
//! asked for with the registry's Basic credentials and reused until it
//! expires). Tokens are fetched before a request that carries a stream,
//! since a stream cannot be sent twice. Bodies are streams end to end:
//! a blob read from the local store goes out as a request body, and a
//! response body goes into the local store, without the guest copying or
//! hashing the bytes.

use berth_domain::replication::protocol::{self, Challenge};
use berth_domain::replication::registry::Registry;
use spin_sdk::wasip3::http::types::{
    ErrorCode, Fields, Method, Request, RequestOptions, Response, Scheme, Trailers,
};
use spin_sdk::wasip3::wit_bindgen::{self, FutureReader, StreamReader};
use spin_sdk::wasip3::{wit_future, wit_stream};
use std::cell::RefCell;
use std::collections::HashMap;

/// The host removes this request header and lets the response body be this
/// many bytes (its default cap protects guests from large answers; a blob
/// pulled into the store needs more).
pub const MAX_RESPONSE_HEADER: &str = "berth-max-response-bytes";

/// Why a remote request failed.
#[derive(Clone, Debug)]
pub struct RemoteError {
    pub kind: ErrorKind,
    /// For people: what happened, never a credential.
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connection, a timeout, a broken transfer: worth retrying.
    Unreachable,
    /// The host refuses the destination (SSRF guard, allowed hosts) or
    /// the URL: retrying cannot help.
    Refused,
    /// The registry refused the credentials.
    Unauthorized,
    /// The registry answered something the protocol does not allow, or
    /// refused the operation (the status says which).
    Protocol(u16),
}

impl RemoteError {
    fn new(kind: ErrorKind, text: impl Into<String>) -> RemoteError {
        RemoteError {
            kind,
            text: text.into(),
        }
    }

    /// Whether a later attempt may succeed.
    pub fn retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Unreachable => true,
            ErrorKind::Protocol(s) => berth_domain::replication::runs::retryable_status(s),
            _ => false,
        }
    }
}

fn transport(e: &ErrorCode) -> RemoteError {
    let (kind, text) = match e {
        ErrorCode::DestinationIpProhibited => (
            ErrorKind::Refused,
            "the host refuses this destination: a loopback, private or link-local address \
             (an operator may allow it with --outbound-allow)"
                .to_string(),
        ),
        ErrorCode::HttpRequestDenied => (
            ErrorKind::Refused,
            "the host refuses this destination (allowed_outbound_hosts)".to_string(),
        ),
        ErrorCode::HttpRequestUriInvalid => {
            (ErrorKind::Refused, "the URL cannot be sent to".to_string())
        }
        ErrorCode::DestinationNotFound => (
            ErrorKind::Unreachable,
            "the registry's host name does not resolve".to_string(),
        ),
        ErrorCode::ConnectionRefused => (
            ErrorKind::Unreachable,
            "the registry refused the connection".to_string(),
        ),
        ErrorCode::HttpResponseBodySize(_) => (
            ErrorKind::Refused,
            "the answer is larger than the copy allows".to_string(),
        ),
        ErrorCode::TlsCertificateError => (
            ErrorKind::Unreachable,
            "the registry's TLS certificate is not trusted (insecure skips the check)".to_string(),
        ),
        other => (
            ErrorKind::Unreachable,
            format!("transfer failed: {other:?}"),
        ),
    };
    RemoteError::new(kind, text)
}

/// A request body.
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// A stream of exactly this many bytes.
    Stream(StreamReader<u8>, u64),
}

/// A header list from name/value pairs.
pub fn headers(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// A body stream and the future that says whether it arrived whole.
pub type BodyStream = (
    StreamReader<u8>,
    FutureReader<Result<Option<Trailers>, ErrorCode>>,
);

/// `Ok` when a 200 to `GET /v2/` is a registry's
/// ([`protocol::is_registry_answer`]), not a web page's.
fn not_a_web_page(answer: &Answer) -> Result<(), RemoteError> {
    let content_type = answer.header("content-type");
    if protocol::is_registry_answer(
        answer.header("docker-distribution-api-version").as_deref(),
        content_type.as_deref(),
    ) {
        Ok(())
    } else {
        Err(RemoteError::new(
            ErrorKind::Protocol(200),
            format!(
                "GET /v2/ answered a {} page, not the Distribution API's answer",
                berth_domain::swr::quoted(
                    content_type
                        .unwrap_or_default()
                        .split(';')
                        .next()
                        .unwrap_or_default()
                )
            ),
        ))
    }
}

/// A registry's answer; its body is still a stream.
pub struct Answer {
    pub status: u16,
    headers: Fields,
    body: Option<BodyStream>,
}

impl Answer {
    /// The answer `response` carries (its body still a stream).
    pub fn of(response: Response) -> Answer {
        let status = response.get_status_code();
        let headers = response.get_headers();
        let (tx, rx) = wit_future::new(|| Ok(()));
        let (stream, end) = Response::consume_body(response, rx);
        drop(tx);
        Answer {
            status,
            headers,
            body: Some((stream, end)),
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .into_iter()
            .next()
            .and_then(|v| String::from_utf8(v).ok())
    }

    /// Reads the body, refusing more than `limit` bytes.
    pub async fn bytes(mut self, limit: usize) -> Result<Vec<u8>, RemoteError> {
        let Some((mut stream, end)) = self.body.take() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        loop {
            let (result, chunk) = stream.read(Vec::with_capacity(64 * 1024)).await;
            out.extend_from_slice(&chunk);
            if out.len() > limit {
                return Err(RemoteError::new(
                    ErrorKind::Protocol(self.status),
                    format!("the answer is larger than {limit} bytes"),
                ));
            }
            if !matches!(result, wit_bindgen::StreamResult::Complete(_)) {
                break;
            }
        }
        drop(stream);
        match end.await {
            Ok(_) => Ok(out),
            Err(e) => Err(transport(&e)),
        }
    }

    /// The body as a stream, and the future that says whether it arrived
    /// whole.
    pub fn into_stream(mut self) -> Option<BodyStream> {
        self.body.take()
    }

    /// A short excerpt of the body, for an error message.
    pub async fn excerpt(self) -> String {
        let status = self.status;
        let text = self
            .bytes(4096)
            .await
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .chars()
                    .take(300)
                    .collect::<String>()
            })
            .unwrap_or_default();
        format!("HTTP {status}: {}", text.trim())
    }
}

/// A token for one scope, and when it stops being used (ms).
struct Token {
    value: String,
    until_ms: u64,
}

/// A registry and the credentials to reach it.
pub struct Remote {
    /// `scheme://authority`.
    pub base: String,
    user: String,
    password: String,
    insecure: bool,
    /// Learned by [`Remote::ping`].
    challenge: RefCell<Option<Challenge>>,
    /// Tokens by scope (a `RefCell`: requests to one registry may be in
    /// flight at once; no borrow is held across an await).
    tokens: RefCell<HashMap<String, Token>>,
}

/// How long (ns) a request may wait for its answer's first byte: 30 s,
/// as for webhooks, except a request that carries a body stream (a
/// chunk is sent whole before the answer starts), which gets 300 s.
const FIRST_BYTE_NS: u64 = 30_000_000_000;
const FIRST_BYTE_STREAM_NS: u64 = 300_000_000_000;
/// How long (ns) a body may pause: a registry that trickles is cut off.
const BETWEEN_BYTES_NS: u64 = 30_000_000_000;

impl Remote {
    /// A client of `registry`; an error when its secret cannot be unsealed
    /// by this host.
    pub fn of(registry: &Registry) -> Result<Remote, RemoteError> {
        let password = if registry.sealed_secret.is_empty() {
            String::new()
        } else {
            crate::auth::unseal_hex(&registry.sealed_secret).ok_or_else(|| {
                RemoteError::new(
                    ErrorKind::Unauthorized,
                    "the registry's secret was sealed by another host's key",
                )
            })?
        };
        Ok(Remote::new(
            &registry.url,
            &registry.access_key,
            &password,
            registry.insecure,
        ))
    }

    pub fn new(base: &str, user: &str, password: &str, insecure: bool) -> Remote {
        Remote {
            base: base.trim_end_matches('/').to_string(),
            user: user.to_string(),
            password: password.to_string(),
            insecure,
            challenge: RefCell::new(None),
            tokens: RefCell::new(HashMap::new()),
        }
    }

    fn basic(&self) -> Option<String> {
        use base64::Engine;
        (!self.user.is_empty()).then(|| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", self.user, self.password))
            )
        })
    }

    /// Checks that the registry speaks the Distribution API and takes the
    /// credentials: `GET /v2/`, then, when challenged, a token (or Basic)
    /// and `GET /v2/` again.
    pub async fn ping(&mut self) -> Result<(), RemoteError> {
        let url = format!("{}/v2/", self.base);
        let answer = self.raw(Method::Get, &url, Vec::new(), Body::Empty).await?;
        match answer.status {
            200 => return not_a_web_page(&answer),
            401 => {}
            s => {
                let text = answer.excerpt().await;
                return Err(RemoteError::new(
                    ErrorKind::Protocol(s),
                    format!("GET /v2/ is not the Distribution API's answer ({text})"),
                ));
            }
        }
        let challenge = answer
            .header("www-authenticate")
            .and_then(|h| Challenge::parse(&h))
            .ok_or_else(|| {
                RemoteError::new(
                    ErrorKind::Protocol(401),
                    "GET /v2/ answered 401 without a Basic or Bearer challenge",
                )
            })?;
        // Anonymous: a Bearer challenge gets a token without credentials
        // (public images on Docker Hub, GHCR); Basic needs them.
        if self.user.is_empty() && challenge == Challenge::Basic {
            return Err(RemoteError::new(
                ErrorKind::Unauthorized,
                "the registry asks for credentials and none are registered",
            ));
        }
        *self.challenge.borrow_mut() = Some(challenge);
        let auth = self.authorization("").await?;
        let answer = self
            .raw(Method::Get, &url, auth.into_iter().collect(), Body::Empty)
            .await?;
        match answer.status {
            200 => not_a_web_page(&answer),
            401 | 403 => Err(RemoteError::new(
                ErrorKind::Unauthorized,
                "the registry refused the credentials",
            )),
            s => Err(RemoteError::new(
                ErrorKind::Protocol(s),
                answer.excerpt().await,
            )),
        }
    }

    /// The `Authorization` header for `scope` (`repository:<name>:<actions>`,
    /// or empty for a login check), fetching a token when needed.
    async fn authorization(&self, scope: &str) -> Result<Option<(String, Vec<u8>)>, RemoteError> {
        let header = |v: String| Some(("authorization".to_string(), v.into_bytes()));
        let challenge = self.challenge.borrow().clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.basic().and_then(header)),
            Some(Challenge::Bearer { realm, service }) => {
                let now = crate::store::now_ns() as u64 / 1_000_000;
                let cached = self
                    .tokens
                    .borrow()
                    .get(scope)
                    .filter(|t| t.until_ms > now)
                    .map(|t| t.value.clone());
                if let Some(value) = cached {
                    return Ok(header(format!("Bearer {value}")));
                }
                let scopes: Vec<String> = if scope.is_empty() {
                    Vec::new()
                } else {
                    scope.split(' ').map(str::to_string).collect()
                };
                let url = protocol::token_url(&realm, service.as_deref(), &scopes);
                // Credentials never go in clear to a token service when
                // the registry itself is reached over TLS.
                if self.base.starts_with("https://") && !realm.starts_with("https://") {
                    return Err(RemoteError::new(
                        ErrorKind::Refused,
                        "the registry's token service is not https: credentials are not sent to it",
                    ));
                }
                let mut headers = Vec::new();
                if let Some(b) = self.basic() {
                    headers.push(("authorization".to_string(), b.into_bytes()));
                }
                // The realm may be another host (a token service): it gets
                // the registry's credentials, as Docker's clients send them.
                let answer = self.raw(Method::Get, &url, headers, Body::Empty).await?;
                if answer.status == 401 || answer.status == 403 {
                    return Err(RemoteError::new(
                        ErrorKind::Unauthorized,
                        "the registry's token service refused the credentials",
                    ));
                }
                if answer.status != 200 {
                    // Its body is not echoed: the realm is the registry's
                    // choice of URL, not a page to read through Berth.
                    return Err(RemoteError::new(
                        ErrorKind::Protocol(503),
                        format!("the token service answered HTTP {}", answer.status),
                    ));
                }
                #[derive(serde::Deserialize)]
                struct TokenAnswer {
                    token: Option<String>,
                    access_token: Option<String>,
                    expires_in: Option<u64>,
                }
                let body = answer.bytes(64 * 1024).await?;
                let t: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
                    RemoteError::new(
                        ErrorKind::Protocol(502),
                        "the token service's answer is not JSON",
                    )
                })?;
                let value = t.token.or(t.access_token).ok_or_else(|| {
                    RemoteError::new(ErrorKind::Protocol(502), "the token service gave no token")
                })?;
                // Used until 10 s before it expires (60 s when unsaid).
                let life_ms = t.expires_in.unwrap_or(60).saturating_sub(10).max(1) * 1000;
                self.tokens.borrow_mut().insert(
                    scope.to_string(),
                    Token {
                        value: value.clone(),
                        until_ms: now + life_ms,
                    },
                );
                Ok(header(format!("Bearer {value}")))
            }
        }
    }

    /// Sends a request to `url` (absolute, on this registry) with the
    /// credentials for `scope`. A request without a stream body that is
    /// refused with 401 is sent once more with a fresh token.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: Vec<(String, Vec<u8>)>,
        body: Body,
        scope: &str,
    ) -> Result<Answer, RemoteError> {
        if !protocol::same_origin(url, &self.base) {
            let origin = protocol::split_url(url)
                .map(|(scheme, authority, _)| format!("{scheme}://{authority}"))
                .unwrap_or_default();
            return Err(RemoteError::new(
                ErrorKind::Refused,
                format!(
                    "the registry sent us to another origin ({origin}); credentials stay with the registry"
                ),
            ));
        }
        let replay = match &body {
            Body::Empty => Some(Vec::new()),
            Body::Bytes(b) => Some(b.clone()),
            Body::Stream(..) => None,
        };
        let mut all = headers.clone();
        all.extend(self.authorization(scope).await?);
        let answer = self.raw(method.clone(), url, all, body).await?;
        // A registry may challenge only now (its `/v2/` answered 200):
        // learn the challenge, and send a replayable request again.
        let learned = answer.status == 401
            && answer
                .header("www-authenticate")
                .and_then(|h| Challenge::parse(&h))
                .is_some_and(|c| {
                    let changed = self.challenge.borrow().as_ref() != Some(&c);
                    *self.challenge.borrow_mut() = Some(c);
                    changed
                });
        match (answer.status, replay) {
            (401, Some(bytes)) if learned || self.challenge.borrow().is_some() => {
                self.tokens.borrow_mut().remove(scope);
                let mut all = headers;
                all.extend(self.authorization(scope).await?);
                let body = if bytes.is_empty() {
                    Body::Empty
                } else {
                    Body::Bytes(bytes)
                };
                self.raw(method, url, all, body).await
            }
            (401, _) => Err(RemoteError::new(
                ErrorKind::Unauthorized,
                "the registry refused the credentials",
            )),
            _ => Ok(answer),
        }
    }

    /// Sends a request to a URL that is not the registry's (a blob
    /// redirect), without credentials.
    pub async fn send_elsewhere(
        &self,
        url: &str,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Result<Answer, RemoteError> {
        self.raw(Method::Get, url, headers, Body::Empty).await
    }

    async fn raw(
        &self,
        method: Method,
        url: &str,
        mut headers: Vec<(String, Vec<u8>)>,
        body: Body,
    ) -> Result<Answer, RemoteError> {
        let (scheme, authority, path) = protocol::split_url(url).ok_or_else(|| {
            RemoteError::new(ErrorKind::Refused, format!("{url:?} is not an http(s) URL"))
        })?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(RemoteError::new(ErrorKind::Refused, "http or https only")),
        };
        headers.push((
            "user-agent".into(),
            concat!("berth-replication/", env!("CARGO_PKG_VERSION")).into(),
        ));
        // `insecure` is the registry's own: not its token service's, nor
        // a storage redirect's.
        if self.insecure && protocol::same_origin(url, &self.base) {
            headers.push(("berth-insecure-tls".into(), b"1".to_vec()));
        }
        let options = RequestOptions::new();
        let first_byte = if matches!(body, Body::Stream(..)) {
            FIRST_BYTE_STREAM_NS
        } else {
            FIRST_BYTE_NS
        };
        let _ = options.set_first_byte_timeout(Some(first_byte));
        let _ = options.set_between_bytes_timeout(Some(BETWEEN_BYTES_NS));
        let request = request(
            method,
            Some((&scheme, authority)),
            path,
            headers,
            body,
            Some(options),
        )
        .map_err(|_| RemoteError::new(ErrorKind::Refused, format!("{url:?} cannot be sent to")))?;
        let response = spin_sdk::wasip3::http::client::send(request)
            .await
            .map_err(|e| transport(&e))?;
        Ok(Answer::of(response))
    }
}

/// A `wasi:http` request: to `authority` over `scheme` when given (an
/// outgoing request), else a path alone (a request handed to a component).
/// `headers` get the body's `Content-Length`.
pub fn request(
    method: Method,
    origin: Option<(&Scheme, &str)>,
    path: &str,
    mut headers: Vec<(String, Vec<u8>)>,
    body: Body,
    options: Option<RequestOptions>,
) -> Result<Request, String> {
    let contents = match body {
        Body::Empty => {
            if matches!(method, Method::Put | Method::Post | Method::Patch) {
                headers.push(("content-length".into(), b"0".to_vec()));
            }
            None
        }
        Body::Bytes(bytes) => {
            headers.push((
                "content-length".into(),
                bytes.len().to_string().into_bytes(),
            ));
            let (mut tx, rx) = wit_stream::new();
            wit_bindgen::spawn(async move {
                tx.write_all(bytes).await;
            });
            Some(rx)
        }
        Body::Stream(stream, len) => {
            headers.push(("content-length".into(), len.to_string().into_bytes()));
            Some(stream)
        }
    };
    let fields = Fields::from_list(&headers).map_err(|e| format!("invalid header: {e:?}"))?;
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let (request, _sent) = Request::new(fields, contents, trailers_rx, options);
    let bad = |what: &'static str| move |_| format!("invalid {what}");
    request.set_method(&method).map_err(bad("method"))?;
    if let Some((scheme, authority)) = origin {
        request.set_scheme(Some(scheme)).map_err(bad("scheme"))?;
        request
            .set_authority(Some(authority))
            .map_err(bad("authority"))?;
    }
    request
        .set_path_with_query(Some(path))
        .map_err(bad("path"))?;
    Ok(request)
}
