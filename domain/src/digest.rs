//! Content digests (`algorithm:hex`), sha256 and sha512 as the OCI spec registers them.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated digest. Only registered algorithms with lower-case hex of the
/// right length are accepted, so a digest is always safe in a key or a path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

#[derive(Debug, PartialEq, Eq)]
pub enum DigestError {
    /// Not of the form `algorithm:encoded`, or bad encoding.
    Invalid,
    /// Well formed, but the algorithm is not one Berth supports.
    Unsupported(String),
}

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let (alg, hex) = s.split_once(':').ok_or(DigestError::Invalid)?;
        // Grammar from the image spec: algorithm-component [+._-] separated.
        if alg.is_empty()
            || !alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
        {
            return Err(DigestError::Invalid);
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => {
                if hex.is_empty()
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
                {
                    return Err(DigestError::Invalid);
                }
                return Err(DigestError::Unsupported(other.to_string()));
            }
        };
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Invalid);
        }
        Ok(Digest(s.to_string()))
    }

    pub fn algorithm(&self) -> Algorithm {
        if self.0.starts_with("sha512:") {
            Algorithm::Sha512
        } else {
            Algorithm::Sha256
        }
    }

    pub fn hex(&self) -> &str {
        &self.0[self.0.find(':').map_or(0, |i| i + 1)..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn accepts_sha256_and_sha512() {
        let d = Digest::parse(&format!("sha256:{H256}")).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex(), H256);
        let d = Digest::parse(&format!("sha512:{}", "a".repeat(128))).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            &format!("sha256:{}", H256.to_uppercase()),
            &format!("SHA256:{H256}"),
            &format!("sha256:{H256}0"),
            "sha512:abcd",
            &format!("sha256:../{}", &H256[3..]),
        ] {
            assert_eq!(Digest::parse(bad), Err(DigestError::Invalid), "{bad}");
        }
    }

    #[test]
    fn unknown_algorithm_is_unsupported_not_invalid() {
        assert_eq!(
            Digest::parse("blake3:abcd"),
            Err(DigestError::Unsupported("blake3".into()))
        );
    }
}
