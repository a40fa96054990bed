//! Digests as the blob interfaces carry them (`algorithm:hex`, parsed by
//! `berth_domain`, so the host and this adapter refuse the same strings),
//! and the running hash every write and `verify` feeds its bytes through.

use crate::error::Error;
use sha2::Digest as _;

pub use berth_domain::digest::{Algorithm, Digest};

/// Parses `algorithm:hex` as the host does (`berth_domain`'s grammar:
/// lowercase hex of the algorithm's length, sha256 or sha512).
/// Errors: `invalid("invalid digest …")` for anything else, including
/// other algorithms, as the host's blob store answers.
pub fn parse(s: &str) -> Result<Digest, Error> {
    Digest::parse(s).map_err(|_| Error::Invalid(format!("invalid digest {s:?}")))
}

/// The digest a blob key's last two segments (`<alg>/<hex>`) name, if
/// they are well formed.
pub fn from_key_parts(alg: &str, hex: &str) -> Option<Digest> {
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

/// A running hash in either supported algorithm.
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// An empty hash in `algorithm`.
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Feeds `bytes`, after those fed before.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed, as `algorithm:hex`.
    pub fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_what_the_host_parses() {
        let d = parse(EMPTY_SHA256).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex(), &EMPTY_SHA256[7..]);
        let long = format!("sha512:{}", "a".repeat(128));
        assert_eq!(parse(&long).unwrap().algorithm(), Algorithm::Sha512);
        for bad in [
            "sha256:zz",
            "sha256",
            "",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            &EMPTY_SHA256.to_uppercase(),
            &format!("{EMPTY_SHA256}0"),
            &format!("sha512:{}", "a".repeat(64)),
        ] {
            assert!(matches!(parse(bad), Err(Error::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn hashes_in_both_algorithms() {
        assert_eq!(Hasher::new(Algorithm::Sha256).finish(), EMPTY_SHA256);
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"hel");
        h.update(b"lo");
        let d = h.finish();
        assert!(d.starts_with("sha512:9b71d224bd62f378"));
        assert!(Digest::parse(&d).is_ok());
    }
}
