//! A two-stage pipeline for unpacking a layer: one thread reads, hashes
//! and decompresses while the caller's thread creates the files, so the
//! CPU-bound half and the syscall-bound half overlap on two cores.
//!
//! The stages meet in a small bounded queue of reused buffers, so memory
//! stays at a few hundred KiB whatever the layer's size. The producer
//! always reads its stream to the end (the digests cover every byte); the
//! consumer must drain the [`PipeReader`] before [`Producer::finish`] to
//! get the producer's verdict, or drop it to stop the producer early.

use anyhow::{anyhow, Result};
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Bytes per message: large enough that queue overhead is noise.
const CHUNK: usize = 256 * 1024;
/// Messages in flight: room for one side to run ahead of the other.
const DEPTH: usize = 4;

type Chunk = io::Result<Vec<u8>>;

/// The consuming end: reads the bytes the producer thread decoded.
pub struct PipeReader {
    rx: Receiver<Chunk>,
    /// Emptied buffers go back to the producer to be filled again.
    spent: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

/// The producing thread; [`Producer::finish`] gives its result.
pub struct Producer<T> {
    handle: JoinHandle<Result<T>>,
}

/// Starts a thread that reads `stream` to its end through the queue, then
/// calls `done(stream)` (where digests are checked) for its result.
pub fn spawn<R, T, F>(stream: R, done: F) -> Result<(PipeReader, Producer<T>)>
where
    R: Read + Send + 'static,
    T: Send + 'static,
    F: FnOnce(R) -> Result<T> + Send + 'static,
{
    let (tx, rx) = sync_channel::<Chunk>(DEPTH);
    let (spent, recycled) = sync_channel::<Vec<u8>>(DEPTH + 2);
    let handle = std::thread::Builder::new()
        .name("hpcc-layer-reader".into())
        .spawn(move || produce(stream, tx, recycled, done))
        .map_err(|e| anyhow!("starting the layer reader thread: {e}"))?;
    let reader = PipeReader {
        rx,
        spent,
        cur: Vec::new(),
        pos: 0,
    };
    Ok((reader, Producer { handle }))
}

fn produce<R: Read, T>(
    mut stream: R,
    tx: SyncSender<Chunk>,
    recycled: Receiver<Vec<u8>>,
    done: impl FnOnce(R) -> Result<T>,
) -> Result<T> {
    loop {
        let mut buf = recycled.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let n = match crate::fs::read_full(&mut stream, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                let _ = tx.send(Err(copy));
                return Err(anyhow!(e));
            }
        };
        if n == 0 {
            break;
        }
        buf.truncate(n);
        if tx.send(Ok(buf)).is_err() {
            // The consumer stopped (its own error): nothing to verify for.
            return Err(anyhow!("the layer was abandoned"));
        }
    }
    // Closing the queue is the consumer's end of file.
    drop(tx);
    done(stream)
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            let next = match self.rx.recv() {
                Ok(chunk) => chunk?,
                Err(_) => return Ok(0), // the producer closed the queue
            };
            let old = std::mem::replace(&mut self.cur, next);
            let _ = self.spent.try_send(old);
            self.pos = 0;
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl PipeReader {
    /// Reads what the consumer left (tar stops at its end marker).
    pub fn drain(mut self) -> io::Result<()> {
        io::copy(&mut self, &mut io::sink()).map(drop)
    }
}

impl<T> Producer<T> {
    /// Waits for the thread (it must be gone before the process makes a
    /// user namespace, which a multi-threaded process cannot) and returns
    /// its result.
    pub fn finish(self) -> Result<T> {
        self.handle
            .join()
            .map_err(|_| anyhow!("internal: the layer reader thread panicked"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_arrives_in_order_and_the_result_comes_back() {
        let data: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i % 251) as u8).collect();
        let (mut pipe, producer) =
            spawn(std::io::Cursor::new(data.clone()), |c| Ok(c.position())).unwrap();
        let mut got = Vec::new();
        // Small reads, as tar makes them.
        let mut buf = [0u8; 512];
        loop {
            let n = pipe.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got == data);
        assert_eq!(producer.finish().unwrap(), data.len() as u64);
    }

    #[test]
    fn a_read_error_reaches_the_consumer_and_the_producer() {
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "truncated gzip",
                    ));
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
        }
        let (pipe, producer) = spawn(Broken(1000), |_| Ok(())).unwrap();
        let e = pipe.drain().unwrap_err();
        assert!(e.to_string().contains("truncated gzip"), "{e}");
        let e = producer.finish().unwrap_err().to_string();
        assert!(e.contains("truncated gzip"), "{e}");
    }

    #[test]
    fn a_consumer_that_stops_stops_the_producer() {
        let endless = std::io::repeat(7);
        let (mut pipe, producer) = spawn(endless, |_| Ok(())).unwrap();
        let mut buf = [0u8; 10];
        pipe.read_exact(&mut buf).unwrap();
        drop(pipe);
        let e = producer.finish().unwrap_err().to_string();
        assert!(e.contains("abandoned"), "{e}");
    }
}
