//! `n`/`last` pagination of tag lists and the catalog, with the `Link` header.

use crate::route::percent_encode;

/// Largest page served, whatever `n` asks for.
pub const MAX_PAGE: u32 = 1000;
/// Page size when the client gives no `n`.
pub const DEFAULT_PAGE: u32 = 1000;

#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub last: Option<String>,
}

/// Reads `n` and `last`. `n=0` is a valid, empty page.
pub fn parse(n: Option<&str>, last: Option<&str>) -> Result<Page, String> {
    let limit = match n {
        None | Some("") => DEFAULT_PAGE,
        Some(v) => v
            .parse::<u32>()
            .map_err(|_| format!("invalid n {v:?}"))?
            .min(MAX_PAGE),
    };
    Ok(Page {
        limit,
        last: last.filter(|l| !l.is_empty()).map(str::to_string),
    })
}

/// `Link: <path?n=N&last=X>; rel="next"` for the page after `last_item`.
pub fn next_link(path: &str, limit: u32, last_item: &str) -> String {
    format!(
        "<{path}?n={limit}&last={}>; rel=\"next\"",
        percent_encode(last_item)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        assert_eq!(
            parse(None, None).unwrap(),
            Page {
                limit: DEFAULT_PAGE,
                last: None
            }
        );
        assert_eq!(
            parse(Some("5"), Some("b")).unwrap(),
            Page {
                limit: 5,
                last: Some("b".into())
            }
        );
        assert_eq!(parse(Some("999999"), None).unwrap().limit, MAX_PAGE);
        assert!(parse(Some("-1"), None).is_err());
        assert_eq!(
            next_link("/v2/a/tags/list", 2, "v1"),
            "</v2/a/tags/list?n=2&last=v1>; rel=\"next\""
        );
    }
}
