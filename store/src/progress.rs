//! Watching a realization as it goes: a hook told the size of the closure,
//! of compressed bytes as downloads arrive, and of each path made ready.

use std::io::{self, Read};

use nix_derivation::StorePath;

use crate::realize::Origin;

/// Told how a realization goes. Paths are fetched on several threads, so
/// it is `Sync` and its calls arrive in any order.
pub trait RealizeProgress: Sync {
    /// The closure is known: `paths` store paths, of which `to_download`
    /// are not in kiln's store yet (some may still be used in place from
    /// the host's store).
    fn started(&self, _paths: usize, _to_download: usize) {}

    /// `bytes` more of a download arrived (as the cache sends them,
    /// compressed).
    fn downloaded(&self, _bytes: u64) {}

    /// `path` is ready, from `origin`.
    fn finished(&self, _path: &StorePath, _origin: &Origin) {}
}

/// Watches nothing.
pub struct NoProgress;

impl RealizeProgress for NoProgress {}

/// Passes a download on and tells `progress` how many bytes went through.
pub(crate) struct ReportingReader<'a, R> {
    inner: R,
    progress: &'a dyn RealizeProgress,
}

impl<'a, R: Read> ReportingReader<'a, R> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: R, progress: &'a dyn RealizeProgress) -> Self {
        ReportingReader { inner, progress }
    }
}

impl<R: Read> Read for ReportingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.progress.downloaded(read as u64);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[derive(Default)]
    struct Count(AtomicU64);

    impl RealizeProgress for Count {
        fn downloaded(&self, bytes: u64) {
            self.0.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    #[test]
    fn every_byte_read_is_reported() {
        let count = Count::default();
        let data = vec![7u8; 100_000];
        let mut reader = ReportingReader::new(&data[..], &count);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert_eq!(count.0.load(Ordering::Relaxed), 100_000);
    }
}
