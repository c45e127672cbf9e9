//! Layer decompression: gzip, zstd or plain tar, told apart by the first
//! bytes, with the hashing reader underneath kept reachable so the blob's
//! digest can be finished after the tar ends.

use super::digest::HashingReader;
use super::zstd_frames::{is_zstd, ZstdFrames};
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read};

/// A reader over a decompressed layer that still gives back the hashing
/// reader underneath, so the blob digest can be finished.
pub enum Decoded<R: Read> {
    Plain(BufReader<R>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<R>>>),
    Zstd(Box<ZstdFrames<BufReader<R>>>),
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Gzip(r) => r.read(buf),
            Decoded::Zstd(r) => r.read(buf),
        }
    }
}

impl<R: Read> Decoded<HashingReader<R>> {
    /// Drains the decoder (trailing padding included) and returns the
    /// hashing reader for its final check.
    pub fn into_inner_hashing(mut self) -> HashingReader<R> {
        let _ = std::io::copy(&mut self, &mut std::io::sink());
        match self {
            Decoded::Plain(r) => r.into_inner(),
            Decoded::Gzip(r) => r.into_inner().into_inner(),
            Decoded::Zstd(r) => r.into_inner().into_inner(),
        }
    }
}

/// Picks the decompressor from the first bytes, whatever the media type
/// claims: gzip, zstd or a plain tar.
pub fn decompress<R: Read>(r: R) -> Result<Decoded<R>> {
    let mut br = BufReader::with_capacity(256 * 1024, r);
    let head = br.fill_buf().context("reading layer")?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Decoded::Gzip(Box::new(
            flate2::bufread::MultiGzDecoder::new(br),
        )))
    } else if is_zstd(head) {
        Ok(Decoded::Zstd(Box::new(ZstdFrames::new(br))))
    } else {
        Ok(Decoded::Plain(br))
    }
}
