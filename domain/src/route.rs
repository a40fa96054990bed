//! Routing of `/v2/` paths. Repository names span several path segments, so
//! a path is matched from its end: the last endpoint marker whose tail holds
//! no further `/` decides the route.

use crate::name::is_valid_name;

#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Route<'a> {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags { name: &'a str },
    /// `/v2/<name>/manifests/<reference>`
    Manifest { name: &'a str, reference: &'a str },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: &'a str, digest: &'a str },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: &'a str },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload { name: &'a str, id: &'a str },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: &'a str, digest: &'a str },
}

impl Route<'_> {
    /// The repository a route addresses, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    /// Not a registry path at all.
    NotFound,
    /// A registry path whose repository name breaks the grammar.
    NameInvalid,
}

/// Whether `path` is in SWR's enterprise-edition API
/// (`/v2/<project_id>/instances[/...]`), which shares `/v2/` with the
/// registry: only asked of paths that are no registry route.
pub fn is_enterprise(path: &str) -> bool {
    let mut segs = path.trim_start_matches('/').split('/');
    segs.next() == Some("v2")
        && segs.next().is_some_and(|p| !p.is_empty())
        && segs.next() == Some("instances")
}

pub fn parse(path: &str) -> Result<Route<'_>, RouteError> {
    let rest = match path.strip_prefix("/v2") {
        Some("") | Some("/") => return Ok(Route::Base),
        Some(r) => r.strip_prefix('/').ok_or(RouteError::NotFound)?,
        None => return Err(RouteError::NotFound),
    };
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let route = if let Some(name) = rest.strip_suffix("/tags/list") {
        Route::Tags { name }
    } else if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        Route::UploadStart { name }
    } else if let Some((name, id)) = split_tail(rest, "/blobs/uploads/") {
        Route::Upload { name, id }
    } else if let Some((name, digest)) = split_tail(rest, "/blobs/") {
        Route::Blob { name, digest }
    } else if let Some((name, reference)) = split_tail(rest, "/manifests/") {
        Route::Manifest { name, reference }
    } else if let Some((name, digest)) = split_tail(rest, "/referrers/") {
        Route::Referrers { name, digest }
    } else {
        return Err(RouteError::NotFound);
    };
    match route.name() {
        Some(n) if is_valid_name(n) => Ok(route),
        _ => Err(RouteError::NameInvalid),
    }
}

fn split_tail<'a>(s: &'a str, marker: &str) -> Option<(&'a str, &'a str)> {
    let (head, tail) = s.rsplit_once(marker)?;
    (!tail.is_empty() && !tail.contains('/') && !head.is_empty()).then_some((head, tail))
}

/// Decoded `key=value` pairs of a query string.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn query_get<'q>(pairs: &'q [(String, String)], key: &str) -> Option<&'q str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse("/v2/"), Ok(Route::Base));
        assert_eq!(parse("/v2"), Ok(Route::Base));
        assert_eq!(parse("/v2/_catalog"), Ok(Route::Catalog));
        assert_eq!(parse("/v2/a/b/tags/list"), Ok(Route::Tags { name: "a/b" }));
        assert_eq!(
            parse("/v2/a/manifests/latest"),
            Ok(Route::Manifest {
                name: "a",
                reference: "latest"
            })
        );
        assert_eq!(
            parse("/v2/a/b/blobs/uploads/"),
            Ok(Route::UploadStart { name: "a/b" })
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads/xyz"),
            Ok(Route::Upload {
                name: "a",
                id: "xyz"
            })
        );
        assert_eq!(
            parse("/v2/a/blobs/sha256:00"),
            Ok(Route::Blob {
                name: "a",
                digest: "sha256:00"
            })
        );
        assert_eq!(
            parse("/v2/x/referrers/sha256:00"),
            Ok(Route::Referrers {
                name: "x",
                digest: "sha256:00"
            })
        );
        // A repository may itself contain endpoint words.
        assert_eq!(
            parse("/v2/blobs/manifests/blobs/sha256:1"),
            Ok(Route::Blob {
                name: "blobs/manifests",
                digest: "sha256:1"
            })
        );
        assert_eq!(
            parse("/v2/a/tags/list/manifests/v1"),
            Ok(Route::Manifest {
                name: "a/tags/list",
                reference: "v1"
            })
        );
    }

    #[test]
    fn bad_paths() {
        assert_eq!(parse("/v3/"), Err(RouteError::NotFound));
        assert_eq!(parse("/v2/a/nothing"), Err(RouteError::NotFound));
        assert_eq!(parse("/v2/A/tags/list"), Err(RouteError::NameInvalid));
        assert_eq!(parse("/v2/a//b/manifests/x"), Err(RouteError::NameInvalid));
        assert_eq!(parse("/v2//tags/list"), Err(RouteError::NameInvalid));
    }

    #[test]
    fn queries() {
        let q = query_pairs("n=10&last=a%2Fb&digest=sha256%3Aab&flag");
        assert_eq!(query_get(&q, "n"), Some("10"));
        assert_eq!(query_get(&q, "last"), Some("a/b"));
        assert_eq!(query_get(&q, "digest"), Some("sha256:ab"));
        assert_eq!(query_get(&q, "flag"), Some(""));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_encode("a/b:c"), "a%2Fb%3Ac");
    }
}
