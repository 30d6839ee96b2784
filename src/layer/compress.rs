//! Layer compression: gzip or zstd over fixed-size blocks compressed in
//! parallel, the way pigz does, so one huge store path uses every core.
//!
//! Each block becomes an independent gzip member or zstd frame; readers
//! decompress the concatenation as one stream. Blocks depend only on the
//! input and the block size, never on the thread count, so the output is
//! byte-identical with 1 or 64 threads.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

/// Bytes of uncompressed input per independent block. Fixed: changing it
/// changes every digest.
pub const BLOCK_SIZE: usize = 1 << 20;

/// How long a waiting rayon worker sleeps before it looks for queued work
/// again.
const IDLE_WAIT: Duration = Duration::from_millis(1);

/// gzip header OS byte: 255 ("unknown"), so the host never shows in a digest.
const GZIP_OS_UNKNOWN: u8 = 255;

/// Compression format of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// gzip (RFC 1952), readable everywhere.
    Gzip,
    /// zstd (RFC 8878), faster and smaller, needs a recent runtime.
    Zstd,
}

impl Format {
    /// The compression a layer media type (OCI or Docker spelling) names;
    /// `None` for an uncompressed tar.
    pub fn of_media_type(media_type: &str) -> Option<Format> {
        if media_type.ends_with("+zstd") || media_type.ends_with(".zstd") {
            Some(Format::Zstd)
        } else if media_type.ends_with("gzip") {
            Some(Format::Gzip)
        } else {
            None
        }
    }

    /// The OCI media type of a layer in this format.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Format::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Compression format and level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Compression {
    /// gzip or zstd.
    pub format: Format,
    /// gzip 1-9, zstd 1-19.
    pub level: u32,
}

/// A compression level outside the format's range.
#[derive(Debug, thiserror::Error)]
#[error("compression level {level} is out of range for {format:?} (use {min}-{max})")]
pub struct LevelError {
    /// The format asked for.
    pub format: Format,
    /// The level asked for.
    pub level: u32,
    /// Lowest accepted level.
    pub min: u32,
    /// Highest accepted level.
    pub max: u32,
}

impl Compression {
    /// `format` at `level`, or at its default level (gzip 6, zstd 3).
    pub fn new(format: Format, level: Option<u32>) -> Result<Compression, LevelError> {
        let (default, min, max) = match format {
            Format::Gzip => (6, 1, 9),
            Format::Zstd => (3, 1, 19),
        };
        let level = level.unwrap_or(default);
        if !(min..=max).contains(&level) {
            return Err(LevelError {
                format,
                level,
                min,
                max,
            });
        }
        Ok(Compression { format, level })
    }

    /// The OCI media type of a layer compressed this way.
    pub fn media_type(&self) -> &'static str {
        self.format.media_type()
    }

    /// A short stable name, part of layer cache keys.
    pub fn key(&self) -> String {
        let name = match self.format {
            Format::Gzip => "gzip",
            Format::Zstd => "zstd",
        };
        format!("{name}-{}-block{BLOCK_SIZE}", self.level)
    }

    fn compress_block(&self, block: &[u8]) -> io::Result<Vec<u8>> {
        match self.format {
            Format::Gzip => {
                let out = Vec::with_capacity(block.len() / 2);
                let mut encoder = flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(GZIP_OS_UNKNOWN)
                    .write(out, flate2::Compression::new(self.level));
                encoder.write_all(block)?;
                encoder.finish()
            }
            Format::Zstd => {
                // Levels are range-checked in `new`, so the cast is lossless.
                zstd::bulk::compress(block, self.level as i32)
            }
        }
    }
}

/// A reader that decompresses a layer blob of `format` (every member or
/// frame, not just the first).
pub fn decompress<'a, R: Read + 'a>(format: Format, reader: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match format {
        Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(
            reader,
        ))),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
    })
}

/// A writer that cuts its input into [`BLOCK_SIZE`] blocks, compresses them
/// on the rayon pool and writes the results to `out` in order.
pub struct BlockCompressor<W: Write> {
    compression: Compression,
    out: W,
    block: Vec<u8>,
    in_flight: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_in_flight: usize,
}

impl<W: Write> BlockCompressor<W> {
    /// Compresses into `out`.
    pub fn new(compression: Compression, out: W) -> Self {
        BlockCompressor {
            compression,
            out,
            block: Vec::with_capacity(BLOCK_SIZE),
            in_flight: VecDeque::new(),
            // Bounds memory at a few blocks per thread while keeping every
            // thread busy; does not affect the output.
            max_in_flight: rayon::current_num_threads() * 2 + 1,
        }
    }

    /// Compresses what is left, writes every block and returns `out`.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.block.is_empty() || self.in_flight.is_empty() {
            self.submit();
        }
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        self.out.flush()?;
        Ok(self.out)
    }

    fn submit(&mut self) {
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_SIZE));
        let compression = self.compression;
        let (send, receive) = mpsc::sync_channel(1);
        rayon::spawn(move || {
            // The receiver is gone only when the writer was dropped on an
            // error; the block is not needed then.
            let _ = send.send(compression.compress_block(&block));
        });
        self.in_flight.push_back(receive);
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(receive) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let compressed = wait_helping_pool(&receive)?;
        self.out.write_all(&compressed)
    }
}

// Waiting inside a rayon worker while the block sits in the same pool's
// queue would deadlock a one-thread pool, so a worker runs queued jobs
// while it waits.
fn wait_helping_pool(receive: &Receiver<io::Result<Vec<u8>>>) -> io::Result<Vec<u8>> {
    let lost = || io::Error::other("a compression task ended without a result");
    loop {
        match receive.try_recv() {
            Ok(result) => return result,
            Err(TryRecvError::Disconnected) => return Err(lost()),
            Err(TryRecvError::Empty) => match rayon::yield_now() {
                Some(rayon::Yield::Executed) => {}
                // Nothing queued: the block is being compressed elsewhere.
                // Sleep on the channel briefly rather than spin, then look
                // for queued work again.
                Some(rayon::Yield::Idle) => match receive.recv_timeout(IDLE_WAIT) {
                    Ok(result) => return result,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Err(lost()),
                },
                None => return receive.recv().map_err(|_| lost())?,
            },
        }
    }
}

impl<W: Write> Write for BlockCompressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK_SIZE - self.block.len();
        let taken = room.min(buf.len());
        self.block.extend_from_slice(&buf[..taken]);
        if self.block.len() == BLOCK_SIZE {
            self.submit();
            while self.in_flight.len() > self.max_in_flight {
                self.write_oldest()?;
            }
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_u32;
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                if i % 3 == 0 {
                    b'a'
                } else {
                    state as u8
                }
            })
            .collect()
    }

    fn compress_with_threads(compression: Compression, data: &[u8], threads: usize) -> Vec<u8> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut writer = BlockCompressor::new(compression, Vec::new());
            for chunk in data.chunks(7919) {
                writer.write_all(chunk).unwrap();
            }
            writer.finish().unwrap()
        })
    }

    #[test]
    fn round_trips_and_ignores_thread_count() {
        let data = sample(BLOCK_SIZE * 3 + 12345);
        for format in [Format::Gzip, Format::Zstd] {
            let compression = Compression::new(format, None).unwrap();
            let one = compress_with_threads(compression, &data, 1);
            let three = compress_with_threads(compression, &data, 3);
            assert_eq!(one, three, "{format:?} output depends on threads");
            let mut back = Vec::new();
            decompress(format, one.as_slice())
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{format:?} round trip");
        }
    }

    // Layer digests must not depend on the machine: zlib-rs picks SIMD or
    // scalar code by CPU, and both must give these bytes. When a deflate
    // upgrade changes them, bump `LAYER_FORMAT_VERSION` in the cache too.
    #[test]
    fn gzip_output_is_pinned() {
        let data = sample(BLOCK_SIZE * 2 + 4321);
        let out = compress_with_threads(Compression::new(Format::Gzip, None).unwrap(), &data, 2);
        assert_eq!(
            crate::layer::digest::sha256_digest(&out),
            "sha256:9ea9e82e765cace87606b6629b07722a973068bae614816e8d0449adc480843a"
        );
    }

    #[test]
    fn gzip_header_has_no_time_and_fixed_os() {
        let out = compress_with_threads(Compression::new(Format::Gzip, None).unwrap(), b"x", 1);
        assert_eq!(&out[..3], &[0x1f, 0x8b, 8]);
        assert_eq!(&out[4..8], &[0, 0, 0, 0], "mtime");
        assert_eq!(out[9], GZIP_OS_UNKNOWN);
    }

    #[test]
    fn empty_input_is_a_valid_stream() {
        let out = compress_with_threads(Compression::new(Format::Gzip, None).unwrap(), b"", 2);
        let mut back = Vec::new();
        decompress(Format::Gzip, out.as_slice())
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn levels_are_checked() {
        assert!(Compression::new(Format::Gzip, Some(0)).is_err());
        assert!(Compression::new(Format::Zstd, Some(20)).is_err());
        assert_eq!(Compression::new(Format::Zstd, None).unwrap().level, 3);
    }

    #[test]
    fn nested_waits_on_one_thread_do_not_deadlock() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let data = sample(BLOCK_SIZE * 2 + 1);
        let outputs: Vec<Vec<u8>> = pool.install(|| {
            use rayon::prelude::*;
            (0..3)
                .into_par_iter()
                .map(|_| {
                    let mut writer = BlockCompressor::new(
                        Compression::new(Format::Gzip, Some(1)).unwrap(),
                        Vec::new(),
                    );
                    writer.write_all(&data).unwrap();
                    writer.finish().unwrap()
                })
                .collect()
        });
        assert!(outputs.windows(2).all(|w| w[0] == w[1]));
    }
}
