//! The failures of this adapter: `store-error` of `wit/store.wit`, case
//! for case (`lib.rs` converts), plus what keeps secrets out of the
//! `backend` messages.
//!
//! Requests go out as presigned URLs, so a URL carries a signature
//! (`X-Amz-Signature`): no message ever quotes one. Messages are built
//! from the S3 action's name, the object key, the HTTP status and the
//! `<Code>` of S3's error document (never its `<Message>`, which for
//! `SignatureDoesNotMatch` echoes what was signed), and transport errors
//! pass through [`redact`] since a host may quote the URL it failed on.
//! The secret key itself never leaves the guest: only signatures made
//! with it do.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The blob or upload does not exist.
    NotFound,
    /// The caller passed something unusable (a malformed digest).
    Invalid(String),
    /// More bytes than the caller's limit (that limit).
    TooLarge(u64),
    /// The bytes hash to another digest (the computed one).
    DigestMismatch(String),
    /// An append did not start at the upload's size (that size).
    BadOffset(u64),
    /// The bucket or the transport failed; for logs, free of secrets.
    Backend(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("not found"),
            Error::Invalid(m) => write!(f, "invalid: {m}"),
            Error::TooLarge(n) => write!(f, "larger than {n} bytes"),
            Error::DigestMismatch(d) => write!(f, "content hashes to {d}"),
            Error::BadOffset(n) => write!(f, "upload is at offset {n}"),
            Error::Backend(m) => f.write_str(m),
        }
    }
}

/// Query parameters whose values are secret or sign a request.
const SECRET_PARAMS: [&str; 3] = ["x-amz-signature=", "x-amz-security-token=", "signature="];

/// `text` with the value of every [`SECRET_PARAMS`] parameter replaced
/// by `…`.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for param in SECRET_PARAMS {
        let mut from = 0;
        // ASCII lowercasing keeps byte offsets, so positions found in the
        // lowered copy hold in the original.
        while let Some(at) = out[from..].to_ascii_lowercase().find(param) {
            let start = from + at + param.len();
            let end = out[start..]
                .find(['&', ' ', '"', '\'', ')', '>', '<', '\n'])
                .map_or(out.len(), |n| start + n);
            out.replace_range(start..end, "…");
            from = start + '…'.len_utf8();
        }
    }
    out
}

/// The `<Code>` of an S3 error document (`AccessDenied`, `NoSuchKey`…),
/// if it has one that looks like a code.
pub fn s3_error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let len = body[start..].find("</Code>")?;
    plain_code(&body[start..start + len])
}

/// `code` when it looks like an S3 error code (letters, digits, dots),
/// so nothing else a server wrote ends up in a message.
pub fn plain_code(code: &str) -> Option<&str> {
    let code = code.trim();
    let plain = !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
    plain.then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_signatures() {
        let text = "error sending request for url (http://127.0.0.1:3900/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abcdef0123&X-Amz-SignedHeaders=host)";
        let r = redact(text);
        assert!(!r.contains("abcdef0123"), "{r}");
        assert!(
            r.contains("X-Amz-Signature=…&X-Amz-SignedHeaders=host"),
            "{r}"
        );
        let twice = redact("x-amz-signature=aa x-amz-signature=bb)");
        assert_eq!(twice, "x-amz-signature=… x-amz-signature=…)");
        assert_eq!(redact("X-Amz-Signature=zz"), "X-Amz-Signature=…");
        assert_eq!(
            redact("X-Amz-Security-Token=t&a=b"),
            "X-Amz-Security-Token=…&a=b"
        );
    }

    #[test]
    fn keeps_only_the_code_of_an_error_document() {
        let doc = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>m</Message><SignatureProvided>abc</SignatureProvided></Error>";
        assert_eq!(s3_error_code(doc), Some("SignatureDoesNotMatch"));
        assert_eq!(s3_error_code("<Code>a b</Code>"), None);
        assert_eq!(s3_error_code("no xml"), None);
    }
}
