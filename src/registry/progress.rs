//! Watching a push as it goes: a hook told of the blobs to send, the bytes
//! of each upload, and how each blob got into the repository.

use super::layout::LayoutBlob;

/// How a blob got into the destination repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobFate {
    /// The repository had it already.
    Present,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Sent over the wire.
    Uploaded,
}

/// Told how a push goes. Blobs move concurrently, so calls about different
/// blobs interleave.
pub trait PushProgress: Send + Sync {
    /// The push begins with `blobs` blobs (layers and config) to make
    /// present.
    fn started(&self, _blobs: usize) {}

    /// `sent` bytes of `blob` have gone to the registry so far in this
    /// attempt; a retried or restarted upload counts again from zero.
    fn sending(&self, _blob: &LayoutBlob, _sent: u64) {}

    /// `blob` is in the repository now.
    fn finished(&self, _blob: &LayoutBlob, _fate: BlobFate) {}
}

/// Watches nothing: what [`push_layout`](super::push_layout) uses.
pub struct NoPushProgress;

impl PushProgress for NoPushProgress {}
