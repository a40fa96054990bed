//! Signed requests to the bucket over outbound `wasi:http@0.3.0`.
//!
//! `rusty-s3` signs each S3 action as a presigned URL (AWS SigV4, query
//! string authentication, `UNSIGNED-PAYLOAD`) and parses S3's XML
//! answers; this module sends them with `wasi:http/client.send` and reads
//! the answers as streams. The secret key never leaves the guest: only
//! signatures derived from it travel, inside URLs, and no error message
//! quotes a URL (see `crate::error`).

use crate::error::{Error, plain_code, redact, s3_error_code};
use futures::future::join;
use rusty_s3::actions::{
    CreateMultipartUpload, DeleteObjectsResponse, ListObjectsV2, ObjectIdentifier,
};
use rusty_s3::{Credentials, S3Action, UrlStyle};
use spin_sdk::wasip3::http::types::{
    ErrorCode, Fields, Method, Request, RequestOptions, Response, Scheme, Trailers,
};
use spin_sdk::wasip3::{wit_future, wit_stream};
use spin_sdk::wit_bindgen::{FutureReader, StreamReader, StreamResult};
use std::time::Duration;
use url::Url;

/// Bytes read from an answer at a time (the host's blob store moves the
/// same chunks between streams and its backends).
pub const CHUNK: usize = 256 * 1024;

/// How long the URLs of this adapter's own requests stay valid: they are
/// sent at once, so this only has to cover clock skew with the bucket.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);
/// S3 takes presigned URLs valid from 1 second to 7 days.
const PRESIGN_MAX_SECONDS: u64 = 7 * 24 * 3600;

/// Transport timeouts (`wasi:http` request options, in ns), as the host's
/// S3 backend has them: connect within 5 s; the answer may take 300 s to
/// start (a part of 16 MiB, CompleteMultipartUpload of a large blob, a
/// CopyObject); a body may pause at most 60 s.
const CONNECT_NS: u64 = 5_000_000_000;
const FIRST_BYTE_NS: u64 = 300_000_000_000;
const BETWEEN_BYTES_NS: u64 = 60_000_000_000;

/// The largest XML answer read (a ListObjectsV2 page of 1000 keys is
/// some 300 KB).
const MAX_XML: usize = 16 * 1024 * 1024;

/// The Berth host (`infra/host/src/outbound.rs`) caps a response body at
/// `--outbound-max-response-bytes` (1 MiB by default) unless a request
/// carries this header, which it removes before sending. Every request
/// carries it, so the adapter also runs there: object bodies are
/// streamed and XML answers capped ([`MAX_XML`]) here. Spin passes it on,
/// and S3 ignores unsigned headers other than `x-amz-*`.
const MAX_RESPONSE_HEADER: &str = "berth-max-response-bytes";

/// S3 numbers parts from 1 to 10,000.
pub const MAX_PARTS: usize = 10_000;

/// A bucket and the credentials to sign for it.
pub struct Bucket {
    s3: rusty_s3::Bucket,
    credentials: Credentials,
}

/// An object as ListObjectsV2 lists it.
#[derive(Debug)]
pub struct ListedObject {
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// `LastModified`, when the server gave one that parses.
    pub last_modified: Option<jiff::Timestamp>,
}

/// One page of a ListObjectsV2 listing.
pub struct Listing {
    pub objects: Vec<ListedObject>,
    /// The `continuation-token` of the next page, if any.
    pub next: Option<String>,
}

/// What a GetObject found.
pub enum Fetched {
    /// The object's bytes (those of the range asked for, or all of them
    /// when `ranged` is false: a server that ignored the `Range`).
    Body { body: Body, ranged: bool },
    /// No such key (404).
    Missing,
    /// The range starts at or past the end (416).
    PastEnd,
}

/// The body of an answer, read as it arrives.
pub struct Body {
    stream: Option<StreamReader<u8>>,
    end: Option<FutureReader<Result<Option<Trailers>, ErrorCode>>>,
    /// `Action key`, for error messages.
    context: String,
}

/// A status line, headers and a body still to read.
struct Answer {
    status: u16,
    headers: Fields,
    body: Body,
}

/// The current time (`wasi:clocks/system-clock`), for signing and ages.
pub fn now() -> jiff::Timestamp {
    let t = spin_sdk::wasip3::clocks::system_clock::now();
    jiff::Timestamp::new(t.seconds, t.nanoseconds as i32).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

impl Bucket {
    /// `endpoint`: `http(s)://host[:port]` of an S3-compatible server,
    /// addressed path-style (`<endpoint>/<bucket>/<key>`, as Garage and
    /// MinIO want); none: AWS (`https://s3.<region>.amazonaws.com`,
    /// virtual-hosted style). Errors: a message naming what is wrong.
    pub fn new(
        endpoint: Option<&str>,
        region: &str,
        bucket: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<Bucket, String> {
        let (endpoint, style) = match endpoint {
            Some(e) => (e.to_string(), UrlStyle::Path),
            None => (
                format!("https://s3.{region}.amazonaws.com"),
                UrlStyle::VirtualHost,
            ),
        };
        if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
            return Err("the endpoint must be http(s)://host:port".into());
        }
        let url: Url = endpoint
            .parse()
            .map_err(|e| format!("the endpoint is not a URL: {e}"))?;
        let s3 = rusty_s3::Bucket::new(url, style, bucket.to_string(), region.to_string())
            .map_err(|e| format!("bucket {bucket:?} at this endpoint: {e}"))?;
        Ok(Bucket {
            s3,
            credentials: Credentials::new(access_key_id, secret_access_key),
        })
    }

    fn creds(&self) -> Option<&Credentials> {
        Some(&self.credentials)
    }

    /// The bucket's name, for `x-amz-copy-source`.
    pub fn name(&self) -> &str {
        self.s3.name()
    }

    /// A GetObject URL valid `ttl_seconds` (clamped to S3's 1 s … 7 days),
    /// for a client to read the object without this adapter.
    pub fn presigned_get(&self, key: &str, ttl_seconds: u32) -> String {
        self.presigned_get_at(key, ttl_seconds, &now())
    }

    fn presigned_get_at(&self, key: &str, ttl_seconds: u32, time: &jiff::Timestamp) -> String {
        let ttl = u64::from(ttl_seconds).clamp(1, PRESIGN_MAX_SECONDS);
        self.s3
            .get_object(self.creds(), key)
            .sign_with_time(Duration::from_secs(ttl), time)
            .to_string()
    }

    /// HeadObject: the object's size in bytes, none when there is none.
    pub async fn head(&self, key: &str) -> Result<Option<u64>, Error> {
        let action = self.s3.head_object(self.creds(), key);
        let a = self
            .send(&action, "HeadObject", key, Vec::new(), None)
            .await?;
        match a.status {
            404 => Ok(None),
            200..=299 => {
                let size = header(&a.headers, "content-length")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        Error::Backend(format!("S3 HeadObject {key}: no content-length"))
                    })?;
                Ok(Some(size))
            }
            _ => Err(a.failure().await),
        }
    }

    /// GetObject of the bytes from `offset`, `length` of them (to the end
    /// when none). An empty range must not be asked for: HTTP cannot say
    /// it.
    pub async fn get(&self, key: &str, offset: u64, length: Option<u64>) -> Result<Fetched, Error> {
        let action = self.s3.get_object(self.creds(), key);
        let range = match length {
            _ if offset == 0 && length.is_none() => None,
            Some(l) => Some(format!(
                "bytes={offset}-{}",
                offset.saturating_add(l.max(1)).saturating_sub(1)
            )),
            None => Some(format!("bytes={offset}-")),
        };
        let headers = range
            .iter()
            .map(|r| ("range".to_string(), r.clone()))
            .collect();
        let a = self.send(&action, "GetObject", key, headers, None).await?;
        match a.status {
            404 => Ok(Fetched::Missing),
            416 => Ok(Fetched::PastEnd),
            200..=299 => Ok(Fetched::Body {
                ranged: range.is_none() || a.status == 206,
                body: a.body,
            }),
            _ => Err(a.failure().await),
        }
    }

    /// PutObject of `bytes` (one request; for objects of up to one part),
    /// with its Content-MD5, which the bucket checks (`BadDigest` if the
    /// bytes changed on the way).
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), Error> {
        let action = self.s3.put_object(self.creds(), key);
        let a = self
            .send(
                &action,
                "PutObject",
                key,
                vec![content_md5(&bytes)],
                Some(bytes),
            )
            .await?;
        a.success().await.map(drop)
    }

    /// CopyObject of `from` to `to`, inside the bucket (S3 copies objects
    /// of up to 5 GiB this way, as the host's backend does).
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), Error> {
        let source = crate::keys::encode_copy_source(self.name(), from);
        let mut action = self.s3.put_object(self.creds(), to);
        // x-amz-* headers must be signed.
        action
            .headers_mut()
            .insert("x-amz-copy-source", source.clone());
        let headers = vec![("x-amz-copy-source".to_string(), source)];
        let a = self
            .send(&action, "CopyObject", to, headers, Some(Vec::new()))
            .await?;
        a.success_document().await.map(drop)
    }

    /// DeleteObject; deleting a missing key succeeds, as in S3.
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        let action = self.s3.delete_object(self.creds(), key);
        let a = self
            .send(&action, "DeleteObject", key, Vec::new(), None)
            .await?;
        match a.status {
            404 => Ok(()),
            _ => a.success().await.map(drop),
        }
    }

    /// DeleteObjects, 1000 keys a request (S3's limit). Keys already gone
    /// count as deleted.
    pub async fn delete_all(&self, keys: &[String]) -> Result<(), Error> {
        for batch in keys.chunks(1000) {
            let objects: Vec<ObjectIdentifier> = batch
                .iter()
                .map(|k| ObjectIdentifier::new(k.clone()))
                .collect();
            let mut action = self.s3.delete_objects(self.creds(), objects.iter());
            // Only failures are listed then.
            action.set_quiet(true);
            let url = action.sign_with_time(SIGNED_FOR, &now());
            let (xml, md5) = action.body_with_md5();
            let context = &batch[0];
            let headers = vec![
                ("content-md5".to_string(), md5),
                ("content-type".to_string(), "application/xml".to_string()),
            ];
            let a = self
                .send_url(
                    Method::Post,
                    url,
                    "DeleteObjects",
                    context,
                    headers,
                    Some(xml.into_bytes()),
                )
                .await?;
            let text = a.success().await?;
            let answer = DeleteObjectsResponse::parse(&text).map_err(|_| {
                Error::Backend(format!("S3 DeleteObjects {context}: unreadable answer"))
            })?;
            if let Some(e) = answer.errors.iter().find(|e| e.code != "NoSuchKey") {
                return Err(Error::Backend(format!(
                    "S3 DeleteObjects {}: {}",
                    e.key,
                    plain_code(&e.code).unwrap_or("error")
                )));
            }
        }
        Ok(())
    }

    /// One page of ListObjectsV2 under `prefix`: keys after `start_after`
    /// (when given) or from `token` (a previous page's `next`), at most
    /// `max_keys` (S3 gives 1000 at most).
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: usize,
    ) -> Result<Listing, Error> {
        let mut action = self.s3.list_objects_v2(self.creds());
        action.with_prefix(prefix);
        if let Some(a) = start_after {
            action.with_start_after(a);
        }
        if let Some(t) = token {
            action.with_continuation_token(t);
        }
        action.with_max_keys(max_keys.clamp(1, 1000));
        let a = self
            .send(&action, "ListObjectsV2", prefix, Vec::new(), None)
            .await?;
        let text = a.success().await?;
        listing(&text)
            .ok_or_else(|| Error::Backend(format!("S3 ListObjectsV2 {prefix}: unreadable answer")))
    }

    /// Every object under `prefix`, all pages of ListObjectsV2.
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<ListedObject>, Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list(prefix, None, token.as_deref(), 1000).await?;
            out.extend(page.objects);
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// CreateMultipartUpload: the upload id.
    pub async fn create_multipart(&self, key: &str) -> Result<String, Error> {
        let action = self.s3.create_multipart_upload(self.creds(), key);
        let a = self
            .send(
                &action,
                "CreateMultipartUpload",
                key,
                Vec::new(),
                Some(Vec::new()),
            )
            .await?;
        let text = a.success().await?;
        let answer = CreateMultipartUpload::parse_response(&text).map_err(|_| {
            Error::Backend(format!("S3 CreateMultipartUpload {key}: unreadable answer"))
        })?;
        Ok(answer.upload_id().to_string())
    }

    /// UploadPart number `number` (from 1): the part's ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: usize,
        bytes: Vec<u8>,
    ) -> Result<String, Error> {
        let number = u16::try_from(number)
            .ok()
            .filter(|n| (1..=MAX_PARTS as u16).contains(n))
            .ok_or_else(|| {
                Error::Backend(format!("S3 UploadPart {key}: more than {MAX_PARTS} parts"))
            })?;
        let action = self.s3.upload_part(self.creds(), key, number, upload_id);
        let a = self
            .send(
                &action,
                "UploadPart",
                key,
                vec![content_md5(&bytes)],
                Some(bytes),
            )
            .await?;
        let headers = a.success_headers().await?;
        header(&headers, "etag")
            .ok_or_else(|| Error::Backend(format!("S3 UploadPart {key}: no ETag")))
    }

    /// CompleteMultipartUpload with the parts' ETags in part order: the
    /// object appears whole under `key`.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), Error> {
        let action = self.s3.complete_multipart_upload(
            self.creds(),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign_with_time(SIGNED_FOR, &now());
        let xml = action.body();
        let a = self
            .send_url(
                Method::Post,
                url,
                "CompleteMultipartUpload",
                key,
                Vec::new(),
                Some(xml.into_bytes()),
            )
            .await?;
        // S3 may answer 200 and still fail: the document says which.
        a.success_document().await.map(drop)
    }

    /// AbortMultipartUpload, best effort: parts a failure leaves behind
    /// are what the bucket's lifecycle rule (AbortIncompleteMultipartUpload)
    /// removes, as for the host's backend.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) {
        let action = self.s3.abort_multipart_upload(self.creds(), key, upload_id);
        if let Ok(a) = self
            .send(&action, "AbortMultipartUpload", key, Vec::new(), None)
            .await
        {
            let _ = a.success().await;
        }
    }

    /// Signs `action` now and sends it.
    async fn send<'a, A: S3Action<'a>>(
        &self,
        action: &A,
        name: &str,
        key: &str,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, Error> {
        let method = match A::METHOD {
            rusty_s3::Method::Head => Method::Head,
            rusty_s3::Method::Get => Method::Get,
            rusty_s3::Method::Post => Method::Post,
            rusty_s3::Method::Put => Method::Put,
            rusty_s3::Method::Delete => Method::Delete,
        };
        let url = action.sign_with_time(SIGNED_FOR, &now());
        self.send_url(method, url, name, key, headers, body).await
    }

    /// Sends a signed `url`; `body` goes out with its `content-length`
    /// (an empty one as `content-length: 0` alone). Errors: `backend` when
    /// the request cannot be made or the transport fails (any status is
    /// an answer).
    async fn send_url(
        &self,
        method: Method,
        url: Url,
        name: &str,
        key: &str,
        mut headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, Error> {
        let context = format!("{name} {key}");
        let unsendable = || Error::Backend(format!("S3 {context}: the request cannot be made"));
        headers.push((MAX_RESPONSE_HEADER.to_string(), u64::MAX.to_string()));
        if let Some(b) = &body {
            headers.push(("content-length".to_string(), b.len().to_string()));
        }
        let body = body.filter(|b| !b.is_empty());
        let fields: Vec<(String, Vec<u8>)> = headers
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        let fields = Fields::from_list(&fields).map_err(|_| unsendable())?;
        let (contents_tx, contents) = match body.is_some() {
            true => {
                let (tx, rx) = wit_stream::new();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let (trailers_tx, trailers) = wit_future::new(|| Ok(None));
        drop(trailers_tx);
        let options = RequestOptions::new();
        // A host may not support some timeout: it then keeps its own.
        let _ = options.set_connect_timeout(Some(CONNECT_NS));
        let _ = options.set_first_byte_timeout(Some(FIRST_BYTE_NS));
        let _ = options.set_between_bytes_timeout(Some(BETWEEN_BYTES_NS));
        let (request, _sent) = Request::new(fields, contents, trailers, Some(options));
        let scheme = match url.scheme() {
            "https" => Scheme::Https,
            _ => Scheme::Http,
        };
        request.set_method(&method).map_err(|_| unsendable())?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|_| unsendable())?;
        request
            .set_authority(Some(
                &url[url::Position::BeforeHost..url::Position::AfterPort],
            ))
            .map_err(|_| unsendable())?;
        request
            .set_path_with_query(Some(
                &url[url::Position::BeforePath..url::Position::AfterQuery],
            ))
            .map_err(|_| unsendable())?;
        // The body is written while the request is under way: S3 answers
        // a PUT once it has all of it.
        let write = async move {
            if let (Some(mut tx), Some(bytes)) = (contents_tx, body) {
                tx.write_all(bytes).await;
            }
        };
        let (response, ()) = join(spin_sdk::wasip3::http::client::send(request), write).await;
        let response = response.map_err(|e| transport(&context, &e))?;
        Ok(Answer::of(response, context))
    }
}

/// A ListObjectsV2 answer (`ListBucketResult`), keys URL-decoded.
fn listing(xml: &str) -> Option<Listing> {
    let page = ListObjectsV2::parse_response(xml).ok()?;
    Some(Listing {
        objects: page
            .contents
            .into_iter()
            .map(|c| ListedObject {
                size: c.size.unwrap_or(0),
                last_modified: c.last_modified.and_then(|t| t.parse().ok()),
                key: c.key,
            })
            .collect(),
        next: page.next_continuation_token,
    })
}

/// A transport failure, without anything the host may have quoted of
/// the signed URL.
fn transport(context: &str, e: &ErrorCode) -> Error {
    Error::Backend(redact(&format!("S3 {context}: {e:?}")))
}

/// The first value of header `name`, as text.
fn header(fields: &Fields, name: &str) -> Option<String> {
    fields
        .get(name)
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok())
}

impl Answer {
    fn of(response: Response, context: String) -> Answer {
        let status = response.get_status_code();
        let headers = response.get_headers();
        let (res_tx, res) = wit_future::new(|| Ok(()));
        let (stream, end) = Response::consume_body(response, res);
        drop(res_tx);
        Answer {
            status,
            headers,
            body: Body {
                stream: Some(stream),
                end: Some(end),
                context,
            },
        }
    }

    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text when the status is a success; `backend` naming
    /// the status and S3's error code otherwise.
    async fn success(self) -> Result<String, Error> {
        if !self.ok() {
            return Err(self.failure().await);
        }
        self.body.text().await
    }

    /// The headers when the status is a success (the body is dropped).
    async fn success_headers(self) -> Result<Fields, Error> {
        if !self.ok() {
            return Err(self.failure().await);
        }
        Ok(self.headers)
    }

    /// For actions S3 may answer `200` with an `<Error>` document
    /// (CompleteMultipartUpload, CopyObject): success only without one.
    async fn success_document(self) -> Result<String, Error> {
        let context = self.body.context.clone();
        let text = self.success().await?;
        if text.contains("<Error>") {
            let code = s3_error_code(&text).unwrap_or("error");
            return Err(Error::Backend(format!("S3 {context}: {code}")));
        }
        Ok(text)
    }

    /// `backend("S3 <Action> <key>: HTTP <status> <Code>")`.
    async fn failure(self) -> Error {
        let status = self.status;
        let context = self.body.context.clone();
        let text = self.body.text().await.unwrap_or_default();
        match s3_error_code(&text) {
            Some(code) => Error::Backend(format!("S3 {context}: HTTP {status} {code}")),
            None => Error::Backend(format!("S3 {context}: HTTP {status}")),
        }
    }
}

impl Body {
    /// The next bytes (at most [`CHUNK`], never empty); none once the
    /// body has ended whole. Errors: `backend` when the transfer broke
    /// (a body cut short must never pass for a whole one: it would hash
    /// to another digest).
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, Error> {
        while let Some(stream) = self.stream.as_mut() {
            let (result, chunk) = stream.read(Vec::with_capacity(CHUNK)).await;
            match result {
                StreamResult::Complete(_) if chunk.is_empty() => {}
                StreamResult::Complete(_) => return Ok(Some(chunk)),
                StreamResult::Dropped | StreamResult::Cancelled => {
                    self.stream = None;
                }
            }
        }
        if let Some(end) = self.end.take()
            && let Err(e) = end.await
        {
            return Err(transport(&self.context, &e));
        }
        Ok(None)
    }

    /// The whole body as text (at most [`MAX_XML`] bytes): S3's XML.
    async fn text(mut self) -> Result<String, Error> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next().await? {
            out.extend_from_slice(&chunk);
            if out.len() > MAX_XML {
                return Err(Error::Backend(format!(
                    "S3 {}: answer larger than {MAX_XML} bytes",
                    self.context
                )));
            }
        }
        String::from_utf8(out)
            .map_err(|_| Error::Backend(format!("S3 {}: answer is not UTF-8", self.context)))
    }
}

/// The `Content-MD5` header of a request body (RFC 1864: base64 of the
/// MD5), which S3 checks against what it received.
fn content_md5(body: &[u8]) -> (String, String) {
    use base64::Engine;
    use md5::Digest;
    (
        "content-md5".to_string(),
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_md5_is_base64_of_the_md5() {
        // RFC 1321's MD5 of "" and of "abc".
        assert_eq!(content_md5(b"").1, "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert_eq!(content_md5(b"abc").1, "kAFQmDzST7DWlj99KOF/cg==");
    }

    #[test]
    fn presigns_path_style_urls_without_the_secret() {
        let b = Bucket::new(
            Some("http://127.0.0.1:3900"),
            "garage",
            "berth",
            "GK1",
            "s3cr3t",
        )
        .unwrap();
        let t: jiff::Timestamp = "2024-05-01T10:00:00Z".parse().unwrap();
        let url = b.presigned_get_at("r/blobs/sha256/ab", 60, &t);
        assert!(
            url.starts_with("http://127.0.0.1:3900/berth/r/blobs/sha256/ab?"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=60"), "{url}");
        assert!(
            url.contains("X-Amz-Credential=GK1%2F20240501%2Fgarage%2Fs3%2Faws4_request"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert!(!url.contains("s3cr3t"), "{url}");
        // S3 refuses more than 7 days.
        assert!(
            b.presigned_get_at("k", u32::MAX, &t)
                .contains("X-Amz-Expires=604800")
        );
        let aws = Bucket::new(None, "eu-west-1", "berth", "AK", "s").unwrap();
        assert!(
            aws.presigned_get_at("k", 1, &t)
                .starts_with("https://berth.s3.eu-west-1.amazonaws.com/k?")
        );
        assert!(Bucket::new(Some("ftp://x"), "r", "b", "a", "s").is_err());
    }

    #[test]
    fn reads_listings_as_garage_and_aws_write_them() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>berth</Name><Prefix>r%2Fblobs%2F</Prefix><StartAfter>r%2Fblobs%2Fsha256%2Faa</StartAfter><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><Delimiter></Delimiter><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><NextContinuationToken>tok+1</NextContinuationToken><Contents><Key>r%2Fblobs%2Fsha256%2Fab</Key><LastModified>2024-05-01T10:00:00.123Z</LastModified><ETag>&quot;5d41&quot;</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>r/uploads/ab/00000000000000000000</Key><LastModified>bad</LastModified><Size>0</Size></Contents></ListBucketResult>"#;
        let page = listing(xml).unwrap();
        assert_eq!(page.next.as_deref(), Some("tok+1"));
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].key, "r/blobs/sha256/ab");
        assert_eq!(page.objects[0].size, 5);
        assert_eq!(
            page.objects[0].last_modified.map(|t| t.as_millisecond()),
            Some(1_714_557_600_123)
        );
        assert_eq!(page.objects[1].last_modified, None);
        let last = r#"<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>false</IsTruncated><EncodingType>url</EncodingType></ListBucketResult>"#;
        let page = listing(last).unwrap();
        assert!(page.objects.is_empty() && page.next.is_none());
        assert!(listing("<Error><Code>AccessDenied</Code></Error>").is_none());
    }

    #[test]
    fn reads_multipart_and_delete_answers() {
        let created = r#"<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>berth</Bucket><Key>k</Key><UploadId>0123abcd</UploadId></InitiateMultipartUploadResult>"#;
        assert_eq!(
            CreateMultipartUpload::parse_response(created)
                .unwrap()
                .upload_id(),
            "0123abcd"
        );
        let deleted = r#"<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Error><Key>k</Key><Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>"#;
        let answer = DeleteObjectsResponse::parse(deleted).unwrap();
        assert_eq!(answer.errors[0].code, "AccessDenied");
        let quiet =
            r#"<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></DeleteResult>"#;
        assert!(
            DeleteObjectsResponse::parse(quiet)
                .unwrap()
                .errors
                .is_empty()
        );
    }
}
