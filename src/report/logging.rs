//! Log output through `tracing`, to stderr so stdout stays for results.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over the
/// level chosen by `-v`/`-q`.
pub fn init(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| AboveBars)
        .with_target(false)
        .init();
}

/// stderr, written above any progress bars so a log line never lands in
/// the middle of one.
struct AboveBars;

impl Write for AboveBars {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        super::bars::print_above(|| io::stderr().write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
