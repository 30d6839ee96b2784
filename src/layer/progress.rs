//! Watching [`pack_all`](super::pack_all) as it goes: a hook told of blob
//! bytes as they reach disk and of each finished layer.

use std::io::{self, Write};

use super::Layer;

/// Told how packing goes. Jobs run on rayon's threads, so it is `Sync` and
/// its calls arrive in any order.
pub trait PackProgress: Sync {
    /// `bytes` more of a new blob reached its file (compressed bytes;
    /// layers found in the cache write none).
    fn wrote(&self, _bytes: u64) {}

    /// One job's layer is ready, packed now or found in the cache.
    fn finished(&self, _layer: &Layer) {}
}

/// Watches nothing: what [`pack_all`](super::pack_all) uses.
pub struct NoProgress;

impl PackProgress for NoProgress {}

/// Passes writes on and tells `progress` how many bytes went through.
pub(super) struct ReportingWriter<'a, W> {
    inner: W,
    progress: &'a dyn PackProgress,
}

impl<'a, W: Write> ReportingWriter<'a, W> {
    /// Wraps `inner`.
    pub(super) fn new(inner: W, progress: &'a dyn PackProgress) -> Self {
        ReportingWriter { inner, progress }
    }
}

impl<W: Write> Write for ReportingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.progress.wrote(written as u64);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
