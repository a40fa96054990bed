//! Byte ranges: `Range` on blob GETs and `Content-Range` on upload PATCHes.

/// A resolved, non-empty byte range `[start, end]` (inclusive) within a blob.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A `Range` that cannot be served (answer 416).
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// Resolves a `Range` header against a blob of `size` bytes, as RFC 9110
/// §14 says: `Ok(None)` serves the whole blob (a unit other than `bytes`,
/// a malformed or multi-range set — which a server may ignore), `Ok(Some)`
/// one range (206), `Err` a well-formed range the blob cannot satisfy (416
/// with `Content-Range: bytes */<size>`).
pub fn parse_range(header: &str, size: u64) -> Result<Option<ByteRange>, Unsatisfiable> {
    let Some((unit, spec)) = header.trim().split_once('=') else {
        return Ok(None);
    };
    // Range units are case-insensitive (§14.1).
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ok(None);
    }
    if spec.contains(',') {
        // Multipart ranges are not served; the whole blob is a valid answer.
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let r = if a.is_empty() {
        if !digits(b) {
            return Ok(None);
        }
        // A suffix too long to count is still "the whole blob".
        let suffix: u64 = b.parse().unwrap_or(u64::MAX);
        if suffix == 0 || size == 0 {
            return Err(Unsatisfiable);
        }
        ByteRange {
            start: size.saturating_sub(suffix),
            end: size - 1,
        }
    } else {
        if !digits(a) || !(b.is_empty() || digits(b)) {
            return Ok(None);
        }
        let Ok(start) = a.parse::<u64>() else {
            return Err(Unsatisfiable);
        };
        let end: u64 = if b.is_empty() {
            u64::MAX
        } else {
            b.parse().unwrap_or(u64::MAX)
        };
        // last < first makes the range invalid, which is ignored (§14.1.1).
        if end < start {
            return Ok(None);
        }
        if start >= size {
            return Err(Unsatisfiable);
        }
        ByteRange {
            start,
            end: end.min(size - 1),
        }
    };
    Ok(Some(r))
}

/// Reads an upload chunk's `Content-Range: <start>-<end>` (a `bytes ` prefix
/// and a `/total` suffix are tolerated). Returns `(start, end)` inclusive.
pub fn parse_content_range(header: &str) -> Option<(u64, u64)> {
    let v = header.trim();
    let v = v
        .strip_prefix("bytes ")
        .or_else(|| v.strip_prefix("bytes="))
        .unwrap_or(v);
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    let (start, end) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (end >= start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            Ok(Some(ByteRange { start: 0, end: 9 }))
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            Ok(Some(ByteRange { start: 90, end: 99 }))
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Ok(Some(ByteRange { start: 90, end: 99 }))
        );
        assert_eq!(
            parse_range("bytes=50-1000", 100),
            Ok(Some(ByteRange { start: 50, end: 99 }))
        );
        assert_eq!(parse_range("bytes=100-", 100), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=-0", 100), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=0-0", 0), Err(Unsatisfiable));
        // Ignored (the whole blob): other units, invalid ranges, several.
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=5-2", 100), Ok(None));
        assert_eq!(parse_range("bytes=x-1", 100), Ok(None));
        assert_eq!(parse_range("bytes 0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(
            parse_range("Bytes=0-0", 100),
            Ok(Some(ByteRange { start: 0, end: 0 }))
        );
        assert_eq!(
            parse_range("bytes=-99999999999999999999999", 100),
            Ok(Some(ByteRange { start: 0, end: 99 }))
        );
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(parse_content_range("9-1"), None);
        assert_eq!(parse_content_range("x"), None);
    }
}
