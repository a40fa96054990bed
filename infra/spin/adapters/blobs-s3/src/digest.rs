//! Digests as the blob interfaces carry them (`algorithm:hex`), and the
//! running hash every write and `verify` feeds its bytes through. The
//! grammar is the one `berth_domain::digest::Digest::parse` accepts for
//! the two supported algorithms, so the host and this adapter refuse the
//! same strings.

use crate::error::Error;
use sha2::Digest as _;

/// A supported digest algorithm (`digest-algorithm` in `wit/store.wit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name before the `:` (and the folder under `blobs/`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex encoding.
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// A well-formed digest of a supported algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    algorithm: Algorithm,
    /// `algorithm:hex`, lowercase.
    text: String,
}

impl Digest {
    /// Parses `algorithm:hex` (lowercase hex of the algorithm's length).
    /// Errors: `invalid("invalid digest …")` for anything else, including
    /// other algorithms, as the host's blob store answers.
    pub fn parse(s: &str) -> Result<Digest, Error> {
        Self::from_parts_of(s).ok_or_else(|| Error::Invalid(format!("invalid digest {s:?}")))
    }

    fn from_parts_of(s: &str) -> Option<Digest> {
        let (name, hex) = s.split_once(':')?;
        let algorithm = Algorithm::from_name(name)?;
        let well_formed = hex.len() == algorithm.hex_len()
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        well_formed.then(|| Digest {
            algorithm,
            text: s.to_string(),
        })
    }

    /// The digest a blob key's last two segments (`<alg>/<hex>`) name, if
    /// they are well formed.
    pub fn from_key_parts(alg: &str, hex: &str) -> Option<Digest> {
        Self::from_parts_of(&format!("{alg}:{hex}"))
    }

    /// The algorithm before the `:`.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex after the `:`.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.name().len() + 1..]
    }

    /// `algorithm:hex`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
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
        let d = Digest::parse(EMPTY_SHA256).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex(), &EMPTY_SHA256[7..]);
        let long = format!("sha512:{}", "a".repeat(128));
        assert_eq!(Digest::parse(&long).unwrap().algorithm(), Algorithm::Sha512);
        for bad in [
            "sha256:zz",
            "sha256",
            "",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            &EMPTY_SHA256.to_uppercase(),
            &format!("{EMPTY_SHA256}0"),
            &format!("sha512:{}", "a".repeat(64)),
        ] {
            assert!(
                matches!(Digest::parse(bad), Err(Error::Invalid(_))),
                "{bad}"
            );
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
