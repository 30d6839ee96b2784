//! Everything kiln prints: results on stdout ([`stdout`], `outln!`), log
//! lines ([`logging`]), the stage lines and closing summary of a build
//! ([`progress`]) and live bars on a terminal ([`bars`]).
//!
//! Stages report through the types here and never print themselves, so
//! one place decides what a person sees on a terminal, in CI logs and
//! with `--json`.

pub mod bars;
pub mod logging;
pub mod progress;
pub mod stdout;

pub use progress::{PhaseLine, Progress, Summary};
pub(crate) use stdout::outln;

/// `bytes` the way people write sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(30 * 1024 * 1024), "30.0 MiB");
    }
}
