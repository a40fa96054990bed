//! AK/SK request signing as the Huawei Cloud SDKs do it
//! (`SDK-HMAC-SHA256`), checked on every management API call.
//!
//! canonical request = METHOD \n canonical URI (each path segment
//! percent-encoded, trailing `/`) \n sorted, encoded query \n
//! `name:value\n` per signed header \n signed header names `;`-joined \n
//! hex sha256 of the body as received;
//! string to sign = `SDK-HMAC-SHA256\n<X-Sdk-Date>\nhex sha256(canonical)`;
//! signature = hex HMAC-SHA256(SK, string to sign).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// How far the client's `X-Sdk-Date` may be from ours.
pub const MAX_SKEW_SECS: u64 = 15 * 60;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("missing Authorization header")]
    Missing,
    #[error(
        "malformed Authorization header: expected `SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`"
    )]
    Malformed,
    #[error("missing or malformed X-Sdk-Date header (expected YYYYMMDDTHHMMSSZ)")]
    Date,
    #[error("X-Sdk-Date is more than 15 minutes away from the server's clock")]
    Skew,
    #[error("signed header {0:?} is not in the request")]
    MissingHeader(String),
    #[error(
        "header {0:?} appears more than once (or is not text); a signed request carries it once"
    )]
    RepeatedHeader(String),
    #[error("the request signature does not match")]
    Mismatch,
    #[error(
        "X-Sdk-Content-Sha256 does not match the body received (unsigned payloads are not accepted: every Berth API takes a JSON body)"
    )]
    PayloadHash,
}

/// The parts of an `Authorization: SDK-HMAC-SHA256 …` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization {
    pub access: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

pub fn parse_authorization(value: &str) -> Result<Authorization, SignError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(SignError::Malformed)?;
    let (mut access, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(SignError::Malformed)?;
        match k {
            "Access" => access = Some(v.to_string()),
            "SignedHeaders" => signed = Some(v.split(';').map(str::to_lowercase).collect()),
            "Signature" => signature = Some(v.to_string()),
            _ => return Err(SignError::Malformed),
        }
    }
    match (access, signed, signature) {
        (Some(access), Some(signed_headers), Some(signature)) if !access.is_empty() => {
            Ok(Authorization {
                access,
                signed_headers,
                signature,
            })
        }
        _ => Err(SignError::Malformed),
    }
}

/// A request as the server received it.
pub struct Request<'a> {
    pub method: &'a str,
    /// Path as sent (percent-encoded), without the query.
    pub path: &'a str,
    /// Raw query string, without `?`.
    pub query: &'a str,
    /// Header names in any case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Request<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-encodes a path segment or query value: RFC 3986 unreserved
/// characters stay, everything else is `%XX`.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> String {
    crate::route::percent_decode(s)
}

pub fn canonical_request(req: &Request, signed_headers: &[String]) -> Result<String, SignError> {
    let mut uri = decode(req.path)
        .split('/')
        .map(encode)
        .collect::<Vec<_>>()
        .join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    let mut params: Vec<(String, String)> = req
        .query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    params.sort();
    let query = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers = String::new();
    for name in signed_headers {
        let v = req
            .header(name)
            .ok_or_else(|| SignError::MissingHeader(name.clone()))?;
        headers.push_str(&format!("{name}:{}\n", v.trim()));
    }
    // The body received is what is signed. `X-Sdk-Content-Sha256` is the
    // SDK's way to sign a payload it does not hash (`UNSIGNED-PAYLOAD`, for
    // non-JSON bodies): taking it on trust would let anyone swap the body of
    // a captured request, so it must name the body's own hash.
    let payload = hex::encode(Sha256::digest(req.body));
    if let Some(claimed) = req.header("x-sdk-content-sha256")
        && !(req.body.is_empty() || claimed.trim().eq_ignore_ascii_case(&payload))
    {
        return Err(SignError::PayloadHash);
    }
    Ok(format!(
        "{}\n{uri}\n{query}\n{headers}\n{}\n{payload}",
        req.method.to_uppercase(),
        signed_headers.join(";")
    ))
}

pub fn string_to_sign(canonical: &str, sdk_date: &str) -> String {
    format!(
        "{ALGORITHM}\n{sdk_date}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

pub fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks `req` was signed with `sk` less than 15 minutes from `now`
/// (seconds since the epoch). `auth` is the parsed Authorization header.
/// Returns the signing time (seconds since the epoch), the one
/// `X-Sdk-Date` the signature covers. Every header the check reads —
/// `Authorization`, `X-Sdk-Date`, `X-Sdk-Content-Sha256` and each signed
/// header — must appear once: with two copies, what was checked and what
/// the rest of the server reads could differ.
pub fn verify(req: &Request, auth: &Authorization, sk: &[u8], now: u64) -> Result<u64, SignError> {
    let read = ["authorization", "x-sdk-date", "x-sdk-content-sha256"];
    for name in read
        .iter()
        .copied()
        .chain(auth.signed_headers.iter().map(String::as_str))
    {
        let mut copies = req
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name));
        let first = copies.next();
        // Bytes that were not text arrive as U+FFFD (see the guest's
        // `header_pairs`).
        if copies.next().is_some() || first.is_some_and(|(_, v)| v.contains('\u{FFFD}')) {
            return Err(SignError::RepeatedHeader(name.to_string()));
        }
    }
    let date = req.header("x-sdk-date").ok_or(SignError::Date)?;
    let t = parse_sdk_date(date).ok_or(SignError::Date)?;
    if t.abs_diff(now) > MAX_SKEW_SECS {
        return Err(SignError::Skew);
    }
    let canonical = canonical_request(req, &auth.signed_headers)?;
    let expected = hmac_hex(sk, string_to_sign(&canonical, date).as_bytes());
    if constant_time_eq(
        expected.as_bytes(),
        auth.signature.to_lowercase().as_bytes(),
    ) {
        Ok(t)
    } else {
        Err(SignError::Mismatch)
    }
}

/// Whether a replay record `iam/signed/<date>/…` (see
/// [`super::records::signed_request`]) is past the skew window at `now`
/// (seconds since the epoch): a request signed then is refused by the date
/// check anyway, so its record can go.
pub fn replay_record_expired(key: &str, now: u64) -> bool {
    key.strip_prefix(super::records::SIGNED)
        .and_then(|rest| rest.split('/').next())
        .and_then(parse_sdk_date)
        .is_none_or(|t| t + MAX_SKEW_SECS < now)
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `YYYYMMDDTHHMMSSZ` → seconds since the epoch.
pub fn parse_sdk_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y as i64, mo as i64, d as i64) as u64 * 86400 + h * 3600 + mi * 60 + se)
}

/// Formats seconds since the epoch as `YYYYMMDDTHHMMSSZ`.
pub fn format_sdk_date(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86400) as i64);
    let s = secs % 86400;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_sdk_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_sdk_date("20261128T020304Z"), Some(1_795_831_384));
        assert_eq!(format_sdk_date(1_795_831_384), "20261128T020304Z");
        for bad in [
            "2026-11-28",
            "20261328T000000Z",
            "20261128T250000Z",
            "2026112xT000000Z",
        ] {
            assert_eq!(parse_sdk_date(bad), None, "{bad}");
        }
    }

    /// A request signed the way huaweicloudsdkcore's `Signer.sign` does it
    /// (canonical request computed by hand from its algorithm).
    #[test]
    fn verifies_an_sdk_style_signature() {
        let headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Host".to_string(), "127.0.0.1:5000".to_string()),
            ("X-Sdk-Date".to_string(), "20261128T020304Z".to_string()),
            ("X-Project-Id".to_string(), "p1".to_string()),
        ];
        let body = br#"{"namespace":"team-a"}"#;
        let req = Request {
            method: "POST",
            path: "/v2/manage/namespaces",
            query: "b=2&a=x%20y",
            headers: &headers,
            body,
        };
        let signed: Vec<String> = ["content-type", "host", "x-project-id", "x-sdk-date"]
            .map(String::from)
            .to_vec();
        let canonical = canonical_request(&req, &signed).unwrap();
        assert_eq!(
            canonical,
            format!(
                "POST\n/v2/manage/namespaces/\na=x%20y&b=2\ncontent-type:application/json\nhost:127.0.0.1:5000\nx-project-id:p1\nx-sdk-date:20261128T020304Z\n\ncontent-type;host;x-project-id;x-sdk-date\n{}",
                hex::encode(Sha256::digest(body))
            )
        );
        let sig = hmac_hex(
            b"secret",
            string_to_sign(&canonical, "20261128T020304Z").as_bytes(),
        );
        let header = format!(
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=content-type;host;x-project-id;x-sdk-date, Signature={sig}"
        );
        let auth = parse_authorization(&header).unwrap();
        assert_eq!(auth.access, "AK1");
        let now = 1_795_831_384;
        assert_eq!(verify(&req, &auth, b"secret", now + 60), Ok(now));
        // A second copy of a header the check reads is refused.
        let mut twice = headers.clone();
        twice.insert(0, ("X-Sdk-Date".into(), "\u{FFFD}".into()));
        let twice = Request {
            headers: &twice,
            ..req
        };
        assert_eq!(
            verify(&twice, &auth, b"secret", now),
            Err(SignError::RepeatedHeader("x-sdk-date".into()))
        );
        assert_eq!(verify(&req, &auth, b"wrong", now), Err(SignError::Mismatch));
        assert_eq!(
            verify(&req, &auth, b"secret", now + 16 * 60),
            Err(SignError::Skew)
        );
        let tampered = Request { body: b"{}", ..req };
        assert_eq!(
            verify(&tampered, &auth, b"secret", now),
            Err(SignError::Mismatch)
        );
        // An unsigned header claiming the original body's hash does not
        // stand in for the body received.
        let mut with_claim = headers.clone();
        with_claim.push((
            "X-Sdk-Content-Sha256".into(),
            hex::encode(Sha256::digest(body)),
        ));
        let swapped = Request {
            body: br#"{"namespace":"evil"}"#,
            headers: &with_claim,
            ..req
        };
        assert_eq!(
            verify(&swapped, &auth, b"secret", now),
            Err(SignError::PayloadHash)
        );
        let honest = Request {
            headers: &with_claim,
            ..req
        };
        assert_eq!(verify(&honest, &auth, b"secret", now), Ok(now));
        let mut unsigned = headers.clone();
        unsigned.push(("X-Sdk-Content-Sha256".into(), "UNSIGNED-PAYLOAD".into()));
        let unsigned = Request {
            headers: &unsigned,
            ..req
        };
        assert_eq!(
            verify(&unsigned, &auth, b"secret", now),
            Err(SignError::PayloadHash)
        );
    }

    #[test]
    fn replay_records_expire_after_the_skew_window() {
        let key = crate::iam::records::signed_request("20261128T020304Z", "ABC");
        assert_eq!(key, "iam/signed/20261128T020304Z/abc");
        let t = 1_795_831_384;
        assert!(!replay_record_expired(&key, t + MAX_SKEW_SECS));
        assert!(replay_record_expired(&key, t + MAX_SKEW_SECS + 1));
        assert!(replay_record_expired("iam/signed/garbage/x", t));
    }

    #[test]
    fn malformed_headers() {
        assert_eq!(parse_authorization("Basic abc"), Err(SignError::Malformed));
        assert_eq!(
            parse_authorization("SDK-HMAC-SHA256 Access=a, Signature=b"),
            Err(SignError::Malformed)
        );
    }
}
