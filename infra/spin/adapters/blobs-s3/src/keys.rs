//! The object keys, the same as the host's S3 backend
//! (`infra/host/src/capabilities/blobs/s3.rs`) writes, so a host and the
//! Spin build can share one bucket. Under the configured prefix (`""`, or
//! a path ending in `/`):
//!
//! - `blobs/<alg>/<hex>`: published, immutable blobs;
//! - `uploads/<id>/open`: an upload exists (written at its creation);
//! - `uploads/<id>/<offset, 20 digits>`: one segment per append, the bytes
//!   from that offset; an upload's size is where its last segment ends;
//! - `tmp/<id>`: a blob of unknown digest being written (larger than a
//!   part: smaller ones are hashed before they are written).
//!
//! Pure functions: no bucket here.

use crate::digest::Digest;
use crate::error::Error;

/// Object keys under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

/// One segment of an upload, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Where its bytes start in the upload.
    pub offset: u64,
    /// Its length in bytes.
    pub size: u64,
    pub key: String,
}

impl Keys {
    /// `prefix`: `""` or a path ending in `/` that does not start with one
    /// (what the host's runtime config accepts).
    pub fn new(prefix: &str) -> Result<Keys, String> {
        if !prefix.is_empty() && (!prefix.ends_with('/') || prefix.starts_with('/')) {
            return Err("empty, or a path ending in / (\"registry/\")".into());
        }
        Ok(Keys {
            prefix: prefix.to_string(),
        })
    }

    /// `<prefix>blobs/`: what `list` lists.
    pub fn blobs_root(&self) -> String {
        format!("{}blobs/", self.prefix)
    }

    /// `<prefix>blobs/<alg>/<hex>`.
    pub fn blob(&self, digest: &Digest) -> String {
        format!(
            "{}blobs/{}/{}",
            self.prefix,
            digest.algorithm().name(),
            digest.hex()
        )
    }

    /// Where a listing of blobs strictly after digest `after` starts
    /// (ListObjectsV2 `start-after`): `blobs/<alg>/<hex>` sorts as
    /// `<alg>:<hex>`, since algorithm names hold neither `:` nor `/`.
    pub fn blob_listing_start(&self, after: &str) -> String {
        format!("{}{}", self.blobs_root(), after.replacen(':', "/", 1))
    }

    /// The digest a listed key under [`Keys::blobs_root`] names; none for
    /// anything else found there.
    pub fn digest_of(&self, key: &str) -> Option<Digest> {
        let rest = key.strip_prefix(&self.blobs_root())?;
        let (alg, hex) = rest.split_once('/')?;
        crate::digest::from_key_parts(alg, hex)
    }

    /// `<prefix>tmp/<id>`.
    pub fn tmp(&self, id: &str) -> String {
        format!("{}tmp/{id}", self.prefix)
    }

    /// `<prefix>uploads/`: what `expire` lists.
    pub fn uploads_root(&self) -> String {
        format!("{}uploads/", self.prefix)
    }

    /// `<prefix>uploads/<id>/`, for an id this adapter or the host could
    /// have made (hex, at most 64 digits); `not-found` for any other, so
    /// an id can never reach outside its upload.
    pub fn upload_dir(&self, id: &str) -> Result<String, Error> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NotFound);
        }
        Ok(format!("{}{id}/", self.uploads_root()))
    }

    /// The id of the upload a listed key under [`Keys::uploads_root`]
    /// belongs to.
    pub fn upload_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(&self.uploads_root())?;
        let (id, _) = rest.split_once('/')?;
        (!id.is_empty()).then_some(id)
    }
}

/// The marker written when an upload starts, in its directory.
pub fn open_marker(dir: &str) -> String {
    format!("{dir}open")
}

/// The segment holding the bytes from `offset`, in an upload's directory:
/// the offset as 20 digits, so segments list in offset order.
pub fn segment(dir: &str, offset: u64) -> String {
    format!("{dir}{offset:020}")
}

/// An upload as listed: whether its `open` marker is there, and its
/// segments.
#[derive(Debug, Default)]
pub struct Listed {
    pub open: bool,
    pub segments: Vec<Segment>,
}

impl Listed {
    /// Files one listed object of the upload directory `dir`.
    pub fn add(&mut self, dir: &str, key: String, size: u64) {
        let Some(name) = key.strip_prefix(dir) else {
            return;
        };
        if name == "open" {
            self.open = true;
        } else if let Ok(offset) = name.parse::<u64>() {
            self.segments.push(Segment { offset, size, key });
        }
    }

    /// The segments in offset order and the upload's size (where the last
    /// ends). `not-found` when neither marker nor segment exists (no such
    /// upload).
    ///
    /// Appends racing at one offset (each told the offset was the upload's
    /// size) leave segments that do not follow one another: one starting
    /// inside what an earlier one covers, or past a gap a shorter rewrite
    /// of an earlier offset left. The upload is what follows on from
    /// offset 0 without a gap; the rest is superseded (the later part
    /// stays, as on the host) and removed with the upload — never a reason
    /// to refuse every later request on it.
    pub fn into_segments(mut self) -> Result<(Vec<Segment>, u64), Error> {
        if !self.open && self.segments.is_empty() {
            return Err(Error::NotFound);
        }
        self.segments.sort_by_key(|s| s.offset);
        let mut size = 0u64;
        self.segments.retain(|s| {
            let follows = s.offset == size;
            if follows {
                size += s.size;
            }
            follows
        });
        Ok((self.segments, size))
    }
}

/// `key` percent-encoded for an `x-amz-copy-source` header: everything
/// but unreserved characters and `/`.
pub fn encode_copy_source(bucket: &str, key: &str) -> String {
    std::iter::once(bucket)
        .chain(key.split('/'))
        .map(berth_domain::route::percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn lays_keys_out_as_the_host_does() {
        let k = Keys::new("r/").unwrap();
        let d = crate::digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(k.blob(&d), format!("r/blobs/sha256/{HEX}"));
        assert_eq!(k.digest_of(&k.blob(&d)), Some(d.clone()));
        assert_eq!(k.digest_of("r/blobs/sha256/zz"), None);
        assert_eq!(k.digest_of("other/blobs/sha256/zz"), None);
        assert_eq!(
            k.blob_listing_start(d.as_str()),
            format!("r/blobs/sha256/{HEX}")
        );
        assert_eq!(k.tmp("ab"), "r/tmp/ab");
        let dir = k.upload_dir("0a1b").unwrap();
        assert_eq!(dir, "r/uploads/0a1b/");
        assert_eq!(open_marker(&dir), "r/uploads/0a1b/open");
        assert_eq!(segment(&dir, 42), "r/uploads/0a1b/00000000000000000042");
        assert_eq!(k.upload_of("r/uploads/0a1b/open"), Some("0a1b"));
        assert_eq!(k.upload_of("r/uploads/x"), None);
        let bare = Keys::new("").unwrap();
        assert_eq!(bare.blob(&d), format!("blobs/sha256/{HEX}"));
        for bad in ["/x/", "x", "/"] {
            assert!(Keys::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_ids_it_could_not_have_made() {
        let k = Keys::new("").unwrap();
        for bad in ["../x", "", "zz", &"a".repeat(65), "ab/cd"] {
            assert_eq!(k.upload_dir(bad), Err(Error::NotFound), "{bad}");
        }
    }

    #[test]
    fn sizes_uploads_from_their_segments() {
        let dir = "uploads/ab/";
        let mut l = Listed::default();
        assert_eq!(
            Listed::default().into_segments().unwrap_err(),
            Error::NotFound
        );
        l.add(dir, segment(dir, 5), 3);
        l.add(dir, open_marker(dir), 0);
        l.add(dir, segment(dir, 0), 5);
        l.add(dir, format!("{dir}stray"), 9);
        let (segments, size) = l.into_segments().unwrap();
        assert_eq!(size, 8);
        assert_eq!(
            segments.iter().map(|s| s.offset).collect::<Vec<_>>(),
            [0, 5]
        );
        // An upload with its marker and nothing yet: size 0.
        let mut l = Listed::default();
        l.add(dir, open_marker(dir), 0);
        assert_eq!(l.into_segments().unwrap().1, 0);
        // Racing appends: a 20-byte rewrite of offset 0 supersedes an
        // append at 10 made after the first, 10-byte, one.
        let mut l = Listed::default();
        l.add(dir, segment(dir, 0), 20);
        l.add(dir, segment(dir, 10), 5);
        let (segments, size) = l.into_segments().unwrap();
        assert_eq!((segments.len(), size), (1, 20));
        // A 2-byte rewrite of offset 0 after an append at 3: the upload is
        // what follows on from 0, the part past the gap is superseded.
        let mut l = Listed::default();
        l.add(dir, segment(dir, 0), 2);
        l.add(dir, segment(dir, 3), 2);
        let (segments, size) = l.into_segments().unwrap();
        assert_eq!((segments.len(), size), (1, 2));
    }

    #[test]
    fn encodes_copy_sources() {
        assert_eq!(encode_copy_source("b", "r x/tmp/a+b"), "b/r%20x/tmp/a%2Bb");
    }
}
