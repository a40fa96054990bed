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

/// Resolves a `Range: bytes=…` header against a blob of `size` bytes.
/// `Ok(None)`: serve the whole blob.
pub fn parse_range(header: &str, size: u64) -> Result<Option<ByteRange>, Unsatisfiable> {
    let spec = header.trim().strip_prefix("bytes=").ok_or(Unsatisfiable)?;
    if spec.contains(',') {
        // Multipart ranges are not served; the whole blob is a valid answer.
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let suffix: u64 = b.parse().map_err(|_| Unsatisfiable)?;
        if suffix == 0 || size == 0 {
            return Err(Unsatisfiable);
        }
        ByteRange {
            start: size.saturating_sub(suffix),
            end: size - 1,
        }
    } else {
        let start: u64 = a.parse().map_err(|_| Unsatisfiable)?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse().map_err(|_| Unsatisfiable)?
        };
        if start >= size || end < start {
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
        assert_eq!(parse_range("bytes=5-2", 100), Err(Unsatisfiable));
        assert_eq!(parse_range("items=0-1", 100), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(parse_content_range("9-1"), None);
        assert_eq!(parse_content_range("x"), None);
    }
}
