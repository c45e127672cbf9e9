//! sha256 digests, checked while the bytes stream past.

use anyhow::{bail, Result};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};

/// A sha256 content address, kept as its 64 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses "sha256:<64 hex>". Other algorithms are refused by name.
    pub fn parse(s: &str) -> Result<Digest> {
        let Some((algo, hex)) = s.split_once(':') else {
            bail!("digest {s:?}: expected sha256:<hex>");
        };
        if algo != "sha256" {
            bail!("digest {s:?}: algorithm {algo} is not supported (only sha256)");
        }
        Digest::from_hex(hex)
            .ok_or_else(|| anyhow::anyhow!("digest {s:?}: not 64 lowercase hex characters"))
    }

    pub fn from_hex(hex: &str) -> Option<Digest> {
        let ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Digest {
            hex: hex.to_string(),
        })
    }

    pub fn of_bytes(data: &[u8]) -> Digest {
        Digest {
            hex: to_hex(&Sha256::digest(data)),
        }
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes everything read through it; `finish` compares with the expected
/// digest once the stream is exhausted.
pub struct HashingReader<R> {
    inner: R,
    /// None: a pass-through, for a stream with nothing to check.
    hasher: Option<Sha256>,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader::maybe(inner, true)
    }

    /// Hashes only when `enabled`; otherwise passes bytes through at no cost.
    pub fn maybe(inner: R, enabled: bool) -> Self {
        HashingReader {
            inner,
            hasher: enabled.then(Sha256::new),
            bytes: 0,
        }
    }

    /// Reads whatever the consumer left (tar stops at its end marker) and
    /// checks the digest. `what` names the blob in the error.
    pub fn finish(mut self, expected: &Digest, what: &str) -> Result<u64> {
        io::copy(&mut self, &mut io::sink())?;
        let bytes = self.bytes;
        self.finish_inner(expected, what)?;
        Ok(bytes)
    }

    /// Like `finish`, and hands back the reader underneath.
    pub fn finish_inner(mut self, expected: &Digest, what: &str) -> Result<R> {
        io::copy(&mut self, &mut io::sink())?;
        let Some(hasher) = self.hasher else {
            bail!("{what}: internal: no digest was computed");
        };
        let got = Digest {
            hex: to_hex(&hasher.finalize()),
        };
        if &got != expected {
            bail!("{what}: digest mismatch: expected {expected}, got {got} (the image is damaged or was tampered with)");
        }
        Ok(self.inner)
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_verify() {
        let d = Digest::of_bytes(b"hello");
        assert_eq!(
            d.hex(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert!(Digest::parse("sha512:abc")
            .unwrap_err()
            .to_string()
            .contains("sha512"));
        assert!(Digest::parse("sha256:XYZ").is_err());
        assert!(Digest::parse("sha256:../../etc/passwd").is_err());
        let r = HashingReader::new(&b"hello"[..]);
        assert_eq!(r.finish(&d, "blob").unwrap(), 5);
        let r = HashingReader::new(&b"hellO"[..]);
        let e = r.finish(&d, "blob x").unwrap_err().to_string();
        assert!(e.contains("blob x") && e.contains("mismatch"), "{e}");
    }
}
