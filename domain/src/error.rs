//! The distribution spec's error model: a code, its HTTP status, and the JSON
//! body `{"errors":[{"code","message","detail"}]}`.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    Toomanyrequests,
    RangeInvalid,
    /// Not in the spec's table, but what Distribution answers for server faults.
    Unknown,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            BlobUnknown | BlobUploadUnknown | ManifestUnknown | NameUnknown
            | ManifestBlobUnknown => 404,
            BlobUploadInvalid | DigestInvalid | ManifestInvalid | NameInvalid | SizeInvalid => 400,
            Unauthorized => 401,
            Denied => 403,
            Unsupported => 415,
            Toomanyrequests => 429,
            RangeInvalid => 416,
            Unknown => 500,
        }
    }
}

/// One protocol error, ready to be rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciError {
    pub code: ErrorCode,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    /// Overrides the code's usual status (e.g. 405 for a disabled method, 413).
    pub status: Option<u16>,
}

#[derive(Serialize)]
struct Body<'a> {
    errors: [Item<'a>; 1],
}
#[derive(Serialize)]
struct Item<'a> {
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a serde_json::Value>,
}

impl OciError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        OciError {
            code,
            message: message.into(),
            detail: None,
            status: None,
        }
    }
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    pub fn status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.code.status())
    }
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&Body {
            errors: [Item {
                code: self.code,
                message: &self.message,
                detail: self.detail.as_ref(),
            }],
        })
        .expect("error bodies serialize")
    }

    pub fn blob_unknown(digest: &str) -> Self {
        Self::new(ErrorCode::BlobUnknown, "blob unknown to registry")
            .with_detail(serde_json::json!({ "digest": digest }))
    }
    pub fn manifest_unknown(reference: &str) -> Self {
        Self::new(ErrorCode::ManifestUnknown, "manifest unknown")
            .with_detail(serde_json::json!({ "reference": reference }))
    }
    pub fn name_unknown(name: &str) -> Self {
        Self::new(
            ErrorCode::NameUnknown,
            "repository name not known to registry",
        )
        .with_detail(serde_json::json!({ "name": name }))
    }
    pub fn upload_unknown() -> Self {
        Self::new(
            ErrorCode::BlobUploadUnknown,
            "blob upload unknown to registry",
        )
    }
    pub fn digest_invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::DigestInvalid, msg)
    }
    pub fn manifest_invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::ManifestInvalid, msg)
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unknown, msg)
    }
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unsupported, msg)
    }
    pub fn method_not_allowed() -> Self {
        Self::new(ErrorCode::Unsupported, "the operation is unsupported").with_status(405)
    }
    pub fn too_large(what: &str, limit: u64) -> Self {
        Self::new(
            ErrorCode::SizeInvalid,
            format!("{what} exceeds the limit of {limit} bytes"),
        )
        .with_detail(serde_json::json!({ "limit": limit }))
        .with_status(413)
    }
}

/// The body of the host's answer to a request the HTTP layer could not
/// parse, so it never reached a component: 400 (a request line or header
/// field that is not HTTP/1.1, RFC 9112 §2–5), 414 (a request target too
/// long, RFC 9110 §15.5.15) and 431 (header fields too large or too many,
/// RFC 6585 §5). Which API the request was for is unknown (the registry and
/// SWR's management API share `/v2/`), so the one JSON object carries both
/// error shapes: the distribution spec's `errors` (code `UNSUPPORTED`) and
/// SWR's `errorCode`/`errorMsg` (`SVCSTG.SWR.<status>0001`). `None` for any
/// other status.
pub fn unparsable_request_body(status: u16) -> Option<Vec<u8>> {
    let message = match status {
        400 => "malformed request: the request line or a header field is not valid HTTP/1.1",
        414 => "the request target (path and query) is too long",
        431 => "the request's header fields are too large or too many (at most 100 fields)",
        _ => return None,
    };
    let swr = crate::swr::SwrError::new(status, 1, message);
    Some(
        serde_json::to_vec(&serde_json::json!({
            "errors": [{ "code": ErrorCode::Unsupported, "message": message }],
            "errorCode": swr.code,
            "errorMsg": message,
        }))
        .expect("error bodies serialize"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_spec_json() {
        let e = OciError::blob_unknown("sha256:00");
        assert_eq!(e.status(), 404);
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
        assert_eq!(v["errors"][0]["detail"]["digest"], "sha256:00");
    }

    #[test]
    fn unparsable_requests_answer_in_both_formats() {
        let body: serde_json::Value =
            serde_json::from_slice(&unparsable_request_body(431).unwrap()).unwrap();
        assert_eq!(body["errors"][0]["code"], "UNSUPPORTED");
        assert_eq!(body["errorCode"], "SVCSTG.SWR.4310001");
        assert_eq!(body["errorMsg"], body["errors"][0]["message"]);
        assert!(unparsable_request_body(500).is_none());
    }

    #[test]
    fn codes_have_spec_statuses() {
        assert_eq!(ErrorCode::RangeInvalid.status(), 416);
        assert_eq!(ErrorCode::NameInvalid.status(), 400);
        assert_eq!(ErrorCode::Toomanyrequests.status(), 429);
        assert_eq!(OciError::method_not_allowed().status(), 405);
        let v: serde_json::Value =
            serde_json::from_slice(&OciError::new(ErrorCode::Toomanyrequests, "x").body()).unwrap();
        assert_eq!(v["errors"][0]["code"], "TOOMANYREQUESTS");
    }
}
