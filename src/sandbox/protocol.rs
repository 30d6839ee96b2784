//! The records the sandbox's own processes send their parent over a pipe.
//!
//! Each record is 12 bytes, below `PIPE_BUF`, so a write is atomic and
//! records from the two sandbox processes never interleave.

use std::os::fd::{AsFd, BorrowedFd};

/// Size of one record on the wire.
pub(super) const RECORD_LEN: usize = 12;

/// What a sandbox process reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Record {
    /// The first sandbox process entered its namespaces; its maps can be
    /// written.
    Unshared,
    /// The sandbox's init process started, with this pid in the caller's
    /// namespace.
    InitPid(i32),
    /// Setup step `step` failed with `errno`.
    SetupFailed { step: u32, errno: i32 },
    /// Command `index` starts.
    Begin(u32),
    /// Command `index` could not be started (`execve` failed with `errno`).
    ExecFailed { index: u32, errno: i32 },
    /// Command `index` exited with `code`.
    Exited { index: u32, code: i32 },
    /// Command `index` was killed by `signal`.
    Signaled { index: u32, signal: i32 },
}

impl Record {
    /// The record's bytes: a tag, three bytes of padding, two numbers.
    pub(super) fn encode(self) -> [u8; RECORD_LEN] {
        let (tag, a, b): (u8, u32, i32) = match self {
            Record::Unshared => (b'U', 0, 0),
            Record::InitPid(pid) => (b'P', 0, pid),
            Record::SetupFailed { step, errno } => (b'S', step, errno),
            Record::Begin(index) => (b'B', index, 0),
            Record::ExecFailed { index, errno } => (b'X', index, errno),
            Record::Exited { index, code } => (b'E', index, code),
            Record::Signaled { index, signal } => (b'K', index, signal),
        };
        let mut bytes = [0u8; RECORD_LEN];
        bytes[0] = tag;
        bytes[4..8].copy_from_slice(&a.to_le_bytes());
        bytes[8..12].copy_from_slice(&b.to_le_bytes());
        bytes
    }

    /// Parses one record; `None` for bytes no sandbox process writes.
    pub(super) fn decode(bytes: &[u8; RECORD_LEN]) -> Option<Record> {
        let a = u32::from_le_bytes(bytes[4..8].try_into().ok()?);
        let b = i32::from_le_bytes(bytes[8..12].try_into().ok()?);
        Some(match bytes[0] {
            b'U' => Record::Unshared,
            b'P' => Record::InitPid(b),
            b'S' => Record::SetupFailed { step: a, errno: b },
            b'B' => Record::Begin(a),
            b'X' => Record::ExecFailed { index: a, errno: b },
            b'E' => Record::Exited { index: a, code: b },
            b'K' => Record::Signaled {
                index: a,
                signal: b,
            },
            _ => return None,
        })
    }

    /// Sends the record. Used in forked children, so it only makes one
    /// `write` call and ignores failure: a parent that stopped listening
    /// cannot be told anything more.
    pub(super) fn send(self, fd: BorrowedFd<'_>) {
        let _ = nix::unistd::write(fd.as_fd(), &self.encode());
    }
}

/// Splits a byte stream into records, keeping a partial record for later.
#[derive(Debug, Default)]
pub(super) struct RecordReader {
    pending: Vec<u8>,
}

impl RecordReader {
    /// Adds bytes read from the pipe and returns every complete record.
    /// Unknown records are dropped: they can only come from a bug, and the
    /// missing outcome is reported as an unexpected end.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Vec<Record> {
        self.pending.extend_from_slice(bytes);
        let complete = self.pending.len() / RECORD_LEN * RECORD_LEN;
        let records = self.pending[..complete]
            .chunks_exact(RECORD_LEN)
            .filter_map(|chunk| Record::decode(chunk.try_into().ok()?))
            .collect();
        self.pending.drain(..complete);
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_round_trips() {
        let records = [
            Record::Unshared,
            Record::InitPid(4242),
            Record::SetupFailed { step: 7, errno: 1 },
            Record::Begin(3),
            Record::ExecFailed { index: 2, errno: 2 },
            Record::Exited { index: 1, code: -1 },
            Record::Signaled {
                index: 0,
                signal: 9,
            },
        ];
        for record in records {
            assert_eq!(Record::decode(&record.encode()), Some(record));
        }
    }

    #[test]
    fn reader_joins_split_records_and_drops_garbage() {
        let mut reader = RecordReader::default();
        let begin = Record::Begin(5).encode();
        assert!(reader.push(&begin[..5]).is_empty());
        assert_eq!(reader.push(&begin[5..]), [Record::Begin(5)]);
        let garbage = [0xffu8; RECORD_LEN];
        let mut bytes = garbage.to_vec();
        bytes.extend_from_slice(&Record::Exited { index: 5, code: 0 }.encode());
        assert_eq!(reader.push(&bytes), [Record::Exited { index: 5, code: 0 }]);
    }
}
