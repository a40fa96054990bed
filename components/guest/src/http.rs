//! Thin glue between raw `wasi:http@0.3.0` requests/responses and the
//! endpoint modules. Raw types (not the SDK's buffered wrappers) keep body
//! streams as streams.

use berth_domain::OciError;
use spin_sdk::wasip3::http::types::{ErrorCode, Fields, Method, Request, Response, Trailers};
use spin_sdk::wasip3::wit_bindgen::{self, FutureReader, StreamReader};
use spin_sdk::wasip3::{wit_future, wit_stream};

pub struct Incoming {
    pub method: Method,
    pub path: String,
    /// `host[:port]` the client addressed (the host passes `Host` here).
    pub authority: Option<String>,
    raw_query: String,
    pub query: Vec<(String, String)>,
    headers: Fields,
    request: std::cell::Cell<Option<Request>>,
}

impl Incoming {
    pub fn new(request: Request) -> Self {
        let pq = request.get_path_with_query().unwrap_or_default();
        let (path, query) = pq.split_once('?').unwrap_or((&pq, ""));
        Incoming {
            method: request.get_method(),
            path: path.to_string(),
            authority: request.get_authority(),
            raw_query: query.to_string(),
            query: berth_domain::route::query_pairs(query),
            headers: request.get_headers(),
            request: std::cell::Cell::new(Some(request)),
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .into_iter()
            .next()
            .and_then(|v| String::from_utf8(v).ok())
    }

    /// The query string as sent (percent-encoded), without `?`.
    pub fn raw_query(&self) -> String {
        self.raw_query.clone()
    }

    pub fn path_with_query(&self) -> String {
        if self.raw_query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.raw_query)
        }
    }

    /// A copy of every header (for forwarding, or to check a signature).
    pub fn fields(&self) -> Fields {
        self.headers.clone()
    }

    /// Every header as text, repeats included; bytes that are not UTF-8
    /// become U+FFFD rather than vanishing (so a signature check sees a
    /// repeated header even when one copy is not text).
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        self.headers
            .copy_all()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect()
    }

    pub fn headers_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get(name)
            .into_iter()
            .filter_map(|v| String::from_utf8(v).ok())
            .collect()
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        berth_domain::route::query_get(&self.query, key)
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// Whether the request may carry body bytes at all: a `Content-Length`
    /// above 0, or none (a chunked HTTP/1.1 body, whose `Transfer-Encoding`
    /// wasi:http hides as hop-by-hop, or an HTTP/2 body of unknown length).
    pub fn has_body(&self) -> bool {
        self.content_length().is_none_or(|n| n > 0)
    }

    /// Takes the body as a byte stream (once), with how it ended. A stream
    /// ends the same way whether the client finished or the body broke off
    /// (disconnect, malformed chunked framing, fewer bytes than
    /// `Content-Length`): only [`BodyEnd::complete`] tells, so nothing may be
    /// committed from a body before it says the body was whole.
    pub fn body_stream(&self) -> (StreamReader<u8>, BodyEnd) {
        let request = self.request.take().expect("request body taken twice");
        let (tx, rx) = wit_future::new(|| Ok(()));
        let (stream, trailers) = Request::consume_body(request, rx);
        drop(tx);
        (stream, BodyEnd(trailers))
    }

    /// Reads a small body into memory, refusing more than `limit` bytes or
    /// a body that broke off.
    pub async fn body_bytes(&self, limit: u64) -> Result<Vec<u8>, OciError> {
        if let Some(n) = self.content_length()
            && n > limit
        {
            return Err(OciError::too_large("request body", limit));
        }
        let (mut stream, end) = self.body_stream();
        let mut out = Vec::new();
        loop {
            let (result, chunk) = stream.read(Vec::with_capacity(64 * 1024)).await;
            out.extend_from_slice(&chunk);
            if out.len() as u64 > limit {
                return Err(OciError::too_large("request body", limit));
            }
            if !matches!(result, wit_bindgen::StreamResult::Complete(_)) {
                break;
            }
        }
        drop(stream);
        end.complete().await?;
        Ok(out)
    }
}

/// How a request body ended (`wasi:http`'s trailers future, which carries
/// the transport's error when the body broke off).
pub struct BodyEnd(FutureReader<Result<Option<Trailers>, ErrorCode>>);

impl BodyEnd {
    /// `Ok` once the body was received whole; an error (400, in the
    /// registry's format) when it broke off or was malformed. Await it only
    /// after the stream was read to its end (or dropped).
    pub async fn complete(self) -> Result<(), OciError> {
        match self.0.await {
            Ok(_) => Ok(()),
            Err(e) => Err(OciError::new(
                berth_domain::ErrorCode::BlobUploadInvalid,
                format!("the request body was cut off or malformed ({e:?})"),
            )
            .with_status(400)),
        }
    }
}

pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    Stream(StreamReader<u8>),
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Body,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers
            .push((name.to_string(), value.into().into_bytes()));
        self
    }
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Reply::new(status)
            .header("content-type", "application/json")
            .bytes(body)
    }
    pub fn bytes(mut self, body: Vec<u8>) -> Self {
        self.headers
            .push(("content-length".into(), body.len().to_string().into_bytes()));
        self.body = Body::Bytes(body);
        self
    }
    pub fn stream(mut self, body: StreamReader<u8>) -> Self {
        self.body = Body::Stream(body);
        self
    }
    pub fn error(err: &OciError) -> Self {
        Reply::json(err.status(), err.body())
    }

    pub fn into_response(mut self, req: Incoming) -> Response {
        self.headers.push((
            "docker-distribution-api-version".into(),
            b"registry/2.0".to_vec(),
        ));
        let is_head = matches!(req.method, Method::Head);
        // Drop an unread request body now so the host can finish reading it.
        drop(req);
        let headers = Fields::from_list(&self.headers).unwrap_or_else(|_| Fields::new());
        let contents = match (self.body, is_head) {
            (Body::Empty, _) => None,
            (Body::Bytes(_), true) => None,
            (Body::Stream(s), true) => {
                drop(s);
                None
            }
            (Body::Bytes(bytes), false) => {
                let (mut tx, rx) = wit_stream::new();
                wit_bindgen::spawn(async move {
                    tx.write_all(bytes).await;
                });
                Some(rx)
            }
            (Body::Stream(s), false) => Some(s),
        };
        let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
        drop(trailers_tx);
        let (response, sent) = Response::new(headers, contents, trailers_rx);
        // Stay alive until the host has sent the whole body: a blob stream
        // is host-to-host, and an instance with no live task may be
        // recycled, which would cut the download short.
        wit_bindgen::spawn(async move {
            let _ = sent.await;
        });
        let _ = response.set_status_code(self.status);
        response
    }
}
