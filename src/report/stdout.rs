//! Results printed on stdout.
//!
//! `println!` panics when stdout is closed early (`kiln plan . | head`);
//! results go through [`write_line`] instead, and a closed stdout ends kiln
//! quietly (see [`is_closed_stdout`]).

use std::fmt;
use std::io::{self, Write};

/// Prints one line of results: `outln!("{digest}")?` in a function that
/// returns `anyhow::Result`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::report::stdout::write_line(format_args!($($arg)*))?
    };
}
pub(crate) use outln;

/// Writes `args` and a newline to stdout.
pub fn write_line(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_fmt(args)?;
    stdout.write_all(b"\n")?;
    stdout.flush()
}

/// True when `err` comes from stdout being closed by its reader, which is
/// the reader's choice and no failure of kiln's.
pub fn is_closed_stdout(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
