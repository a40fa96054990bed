//! The management API's error format, as Huawei Cloud SWR answers and its
//! SDKs parse it: `{"errorCode": "SVCSTG.SWR.<status><nnn>", "errorMsg": "…"}`.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SwrError {
    #[serde(skip)]
    pub status: u16,
    #[serde(rename = "errorCode")]
    pub code: String,
    #[serde(rename = "errorMsg")]
    pub message: String,
}

impl SwrError {
    /// `detail` numbers errors of one status (`SVCSTG.SWR.4000001`…).
    pub fn new(status: u16, detail: u16, message: impl Into<String>) -> SwrError {
        SwrError {
            status,
            code: format!("SVCSTG.SWR.{status}{detail:04}"),
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> SwrError {
        SwrError::new(400, 1, message)
    }
    pub fn invalid_name(message: impl Into<String>) -> SwrError {
        SwrError::new(400, 2, message)
    }
    pub fn quota(message: impl Into<String>) -> SwrError {
        SwrError::new(400, 3, message)
    }
    pub fn not_empty(message: impl Into<String>) -> SwrError {
        SwrError::new(400, 4, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> SwrError {
        SwrError::new(401, 1, message)
    }
    pub fn forbidden(message: impl Into<String>) -> SwrError {
        SwrError::new(403, 1, message)
    }
    pub fn not_found(message: impl Into<String>) -> SwrError {
        SwrError::new(404, 1, message)
    }
    pub fn method_not_allowed() -> SwrError {
        SwrError::new(405, 1, "method not allowed on this resource")
    }
    pub fn conflict(message: impl Into<String>) -> SwrError {
        SwrError::new(409, 1, message)
    }
    /// A signed change received a second time (the replay defence of the
    /// management router): 409, as for any duplicate of a change made.
    pub fn replayed() -> SwrError {
        SwrError::new(
            409,
            2,
            "this signed request was already received (a replay, or the same change sent twice within one second): sign a new request to repeat a change",
        )
    }
    /// 429: the caller has too many of something under way; retry later.
    pub fn too_many(message: impl Into<String>) -> SwrError {
        SwrError::new(429, 1, message)
    }
    pub fn internal(message: impl Into<String>) -> SwrError {
        SwrError::new(500, 1, message)
    }
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("errors serialize")
    }
}

/// `value` quoted for an error message, cut at 64 characters (`"…"…`): a
/// caller's oversized input is named, not echoed back whole.
pub fn quoted(value: &str) -> String {
    const SHOWN: usize = 64;
    match value.char_indices().nth(SHOWN) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
    }
}

/// `2026-11-28T02:03:04Z`, the time format of SWR's responses.
pub fn rfc3339(secs: u64) -> String {
    let d = crate::iam::signing::format_sdk_date(secs);
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &d[0..4],
        &d[4..6],
        &d[6..8],
        &d[9..11],
        &d[11..13],
        &d[13..15]
    )
}

/// Parses SWR's times (`2026-12-31T00:00:00Z`, with optional fraction, or
/// a bare `2026-12-31`) into seconds since the epoch.
pub fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00"));
    let time = time.split('.').next()?;
    let compact = format!("{}T{}Z", date.replace('-', ""), time.replace(':', ""));
    crate::iam::signing::parse_sdk_date(&compact)
}

/// A stable numeric id for a name (SWR's API gives repositories and tags
/// integer ids): 53 bits of FNV-1a, exact in JSON numbers.
pub fn numeric_id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h & ((1 << 53) - 1)
}

/// SWR writes a repository name's `/` as `$` in paths.
pub fn repository_from_path(segment: &str) -> String {
    crate::route::percent_decode(segment).replace('$', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_ids_and_names() {
        assert_eq!(rfc3339(1_795_831_384), "2026-11-28T02:03:04Z");
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
        let long = "名".repeat(1000);
        assert_eq!(quoted(&long), format!("{:?}…", "名".repeat(64)));
        assert_eq!(numeric_id("a/b"), numeric_id("a/b"));
        assert_ne!(numeric_id("a/b"), numeric_id("a/c"));
        assert!(numeric_id("x") < 1 << 53);
        assert_eq!(repository_from_path("group$app"), "group/app");
        assert_eq!(parse_time("2026-11-28T02:03:04.000Z"), Some(1_795_831_384));
        assert_eq!(parse_time("2026-11-28T02:03:04Z"), Some(1_795_831_384));
        assert_eq!(parse_time("2026-11-28"), Some(1_795_831_384 - 7384));
        assert_eq!(parse_time("forever"), None);
        assert_eq!(repository_from_path("group%2Fapp"), "group/app");
    }

    #[test]
    fn format() {
        let e = SwrError::not_found("namespace x not found");
        assert_eq!(e.status, 404);
        assert_eq!(
            String::from_utf8(e.body()).unwrap(),
            r#"{"errorCode":"SVCSTG.SWR.4040001","errorMsg":"namespace x not found"}"#
        );
    }
}
