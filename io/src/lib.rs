//! The durable-file, hashing-stream and retry building blocks that `kiln`
//! and `kiln-store` share, so both keep one promise the same way: anything
//! in kiln's cache is complete or absent, every byte that passes is hashed
//! once, and a flaky server is asked again on one schedule.
//!
//! - [`write_atomically`], [`AtomicFile`] and [`commit_dir`]: a file or
//!   folder appears under its final name whole and on disk, or not at all.
//! - [`hold`]: shared locks that keep an entry from being pruned while a
//!   process uses it, and the claim a prune takes before removing one.
//! - [`HashingWriter`] and [`HashingReader`]: sha256 and byte count of a
//!   stream while it passes through.
//! - [`retry`]: the backoff schedule, `Retry-After` and which HTTP answers
//!   are worth asking again. The loops stay with the clients, one blocking
//!   and one async, so this crate needs no runtime.

#![warn(missing_docs)]

mod atomic;
mod hashing;
pub mod hold;
pub mod retry;

pub use atomic::{commit_dir, write_atomically, write_atomically_held, AtomicFile};
pub use hashing::{HashingReader, HashingWriter};
