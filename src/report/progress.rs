//! Progress of a build: one line per stage on stderr, with the time since
//! the build began, and the closing summary. On a terminal, spinners and
//! bars show the stage under way; the lines print above them.

use std::cell::RefCell;
use std::io::Write;
use std::time::Instant;

use indicatif::ProgressBar;
use serde_json::json;

use super::bars::{Bars, FetchBar, PackBar, PushBar};
use super::human_size;
use crate::sandbox::Output;

/// What the closing summary of a build says.
pub struct Summary<'a> {
    /// The image's name.
    pub name: &'a str,
    /// `sha256:<hex>` of its manifest.
    pub digest: &'a str,
    /// How many layers it has.
    pub layers: usize,
    /// Sum of the compressed layer sizes.
    pub compressed: u64,
    /// Sum of the layers' tar sizes.
    pub uncompressed: u64,
    /// Each phase, in order.
    pub phases: Vec<PhaseLine>,
}

/// One phase in the closing summary.
pub struct PhaseLine {
    /// Its name.
    pub name: String,
    /// Whether its diff came from the phase cache.
    pub cached: bool,
    /// How long it ran.
    pub seconds: f64,
}

/// Records and prints the stages of one build.
pub struct Progress {
    quiet: bool,
    began: Instant,
    stages: RefCell<Vec<(String, f64)>>,
    bars: Bars,
}

impl Progress {
    /// Starts the clock; `quiet` prints nothing. Bars are drawn only when
    /// stderr is a terminal.
    pub fn new(quiet: bool) -> Progress {
        Progress::with_bars(quiet, Bars::on_stderr(quiet))
    }

    fn with_bars(quiet: bool, bars: Bars) -> Progress {
        Progress {
            quiet,
            began: Instant::now(),
            stages: RefCell::new(Vec::new()),
            bars,
        }
    }

    /// A spinner with `label` and its elapsed time while a stage runs;
    /// cleared when dropped.
    pub fn spinner(&self, label: &str) -> ProgressBar {
        self.bars.spinner(label)
    }

    /// The bar over `layers` layers being packed.
    pub fn pack_bar(&self, layers: usize) -> PackBar {
        self.bars.pack(layers)
    }

    /// The bar over the store paths being realized.
    pub fn fetch_bar(&self) -> FetchBar {
        self.bars.fetch()
    }

    /// The bar over the blobs being pushed.
    pub fn push_bar(&self) -> PushBar {
        self.bars.push()
    }

    /// Where phase `name`'s commands write: `[name] line` on stderr, above
    /// the bars.
    pub fn phase_output(&self, name: &str) -> Output {
        let bars = self.bars.clone();
        Output::prefixed_stderr_with(name, move |write| bars.above(write))
    }

    /// Marks the end of stage `name`, printing `detail`.
    pub fn stage(&self, name: &str, detail: String) {
        let now = self.began.elapsed().as_secs_f64();
        let mut stages = self.stages.borrow_mut();
        let before: f64 = stages.iter().map(|(_, seconds)| seconds).sum();
        stages.push((name.to_string(), now - before));
        self.line(&format!("{name}: {detail}"));
    }

    /// Prints a line within a stage.
    pub fn note(&self, text: String) {
        self.line(&text);
    }

    fn line(&self, text: &str) {
        if !self.quiet {
            let seconds = self.began.elapsed().as_secs_f64();
            self.bars.above(|| {
                let _ = writeln!(std::io::stderr(), "[{seconds:7.1}s] {text}");
            });
        }
    }

    /// Seconds per stage, in order, as JSON.
    pub fn stages_json(&self) -> serde_json::Value {
        self.stages
            .borrow()
            .iter()
            .map(|(name, seconds)| json!({"name": name, "seconds": seconds}))
            .collect()
    }

    /// The closing summary on stderr.
    pub fn summary(&self, summary: &Summary<'_>) {
        if self.quiet {
            return;
        }
        let stages: Vec<String> = self
            .stages
            .borrow()
            .iter()
            .map(|(stage, seconds)| format!("{stage} {seconds:.1}s"))
            .collect();
        let phases: Vec<String> = summary
            .phases
            .iter()
            .map(|p| match p.cached {
                true => format!("{} cached", p.name),
                false => format!("{} ran ({:.1}s)", p.name, p.seconds),
            })
            .collect();
        let mut err = std::io::stderr().lock();
        let _ =
            writeln!(
            err,
            "built {} {}\n  {} layers, {} compressed, {} uncompressed\n  stages: {}\n  phases: {}",
            summary.name,
            summary.digest,
            summary.layers,
            human_size(summary.compressed),
            human_size(summary.uncompressed),
            stages.join(", "),
            if phases.is_empty() { "none".to_string() } else { phases.join(", ") },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_or_off_a_terminal_draws_no_bars() {
        for progress in [
            Progress::new(true),
            Progress::with_bars(false, Bars::new(false)),
        ] {
            assert!(progress.spinner("packages").is_hidden());
            assert!(!progress.bars.is_live());
        }
    }
}
