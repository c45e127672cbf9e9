//! A zstd stream of any number of frames, as the format allows and as
//! real layers are written: `pzstd` cuts its output into frames, each
//! after a skippable frame; `cat a.zst b.zst` is a valid stream; and
//! podman's `zstd:chunked` layers are one frame per file plus skippable
//! frames holding their table of contents.
//! `zstd -d` decodes all of them; ruzstd's own streaming reader stops
//! after the first frame, which leaves a tar cut short.
//!
//! Each frame's content checksum, where the frame has one, is checked
//! when the frame ends, so a damaged frame is named as such (the layer's
//! digests are checked too, whatever the frames say).

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use std::io::{self, BufRead, Read};

/// Whether `head` (the first bytes of a layer) starts a zstd stream: a
/// frame, or a skippable frame before one.
pub fn is_zstd(head: &[u8]) -> bool {
    match head.get(..4) {
        Some(m) => {
            let magic = u32::from_le_bytes([m[0], m[1], m[2], m[3]]);
            magic == 0xFD2F_B528 || (0x184D_2A50..=0x184D_2A5F).contains(&magic)
        }
        None => false,
    }
}

/// Decodes every frame of `source` in turn, skipping skippable frames.
pub struct ZstdFrames<R: BufRead> {
    source: R,
    decoder: FrameDecoder,
    /// The decoder holds a frame that is not yet read to its end.
    in_frame: bool,
    /// Frames decoded so far, for error messages.
    frames: u64,
}

impl<R: BufRead> ZstdFrames<R> {
    pub fn new(source: R) -> Self {
        ZstdFrames {
            source,
            decoder: FrameDecoder::new(),
            in_frame: false,
            frames: 0,
        }
    }

    pub fn into_inner(self) -> R {
        self.source
    }

    /// Starts the next frame that holds data; false at the end of the
    /// stream.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => {
                    self.in_frame = true;
                    self.frames += 1;
                    return Ok(true);
                }
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let want = u64::from(length);
                    let skipped = io::copy(&mut (&mut self.source).take(want), &mut io::sink())?;
                    if skipped < want {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "zstd: a skippable frame of {want} bytes is cut short after {skipped}"
                            ),
                        ));
                    }
                }
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "zstd: frame {}: {e}",
                        self.frames + 1
                    )))
                }
            }
        }
    }

    /// At the end of a frame: its checksum, where it carries one.
    fn end_frame(&mut self) -> io::Result<()> {
        self.in_frame = false;
        if let (Some(stored), Some(computed)) = (
            self.decoder.get_checksum_from_data(),
            self.decoder.get_calculated_checksum(),
        ) {
            if stored != computed {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "zstd: frame {} is damaged (content checksum {computed:08x}, the frame says {stored:08x})",
                        self.frames
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                let d = &mut self.decoder;
                // Decode until a whole buffer can be given, or the frame
                // ends: fewer, larger reads for the tar reader above.
                while d.can_collect() < buf.len() && !d.is_finished() {
                    let need = buf.len() - d.can_collect();
                    d.decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(need))
                        .map_err(|e| {
                            io::Error::other(format!("zstd: frame {}: {e}", self.frames))
                        })?;
                }
                let n = d.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.end_frame()?;
            }
            if !self.next_frame()? {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruzstd::encoding::{compress_to_vec, CompressionLevel};

    fn frame(data: &[u8]) -> Vec<u8> {
        compress_to_vec(data, CompressionLevel::Fastest)
    }

    fn skippable(magic_low: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0x50 | magic_low, 0x2a, 0x4d, 0x18];
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    fn decode(stream: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ZstdFrames::new(stream).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn every_frame_is_decoded_and_skippable_frames_are_skipped() {
        let a: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let b = b"the second frame".repeat(1000);
        let mut s = skippable(0, b"pzstd puts a size here");
        s.extend(frame(&a));
        s.extend(frame(&b));
        s.extend(frame(b""));
        s.extend(skippable(0xf, b"a table of contents"));
        assert!(is_zstd(&s));
        let want: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        assert_eq!(decode(&s).unwrap(), want);
        assert_eq!(decode(&frame(&a)).unwrap(), a);
    }

    #[test]
    fn damage_is_named() {
        let mut s = frame(b"hello");
        s.extend(skippable(1, b"0123456789"));
        // A skippable frame cut short.
        let cut = &s[..s.len() - 3];
        let e = decode(cut).unwrap_err().to_string();
        assert!(
            e.contains("skippable frame of 10 bytes is cut short"),
            "{e}"
        );
        // Bytes after the last frame that are no frame at all.
        let mut junk = frame(b"hello");
        junk.extend_from_slice(b"not zstd");
        let e = decode(&junk).unwrap_err().to_string();
        assert!(e.contains("zstd: frame 2"), "{e}");
        // A frame whose content checksum does not match.
        let mut bad = frame(b"hello world");
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let e = decode(&bad).unwrap_err().to_string();
        assert!(e.contains("frame 1 is damaged"), "{e}");
        assert!(!is_zstd(b"\x1f\x8b\x08\x00"));
        assert!(!is_zstd(b"\x28\xb5"));
    }
}
