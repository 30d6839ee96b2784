//! Live progress on a terminal: a spinner while a stage or phase runs, bars
//! over the layers being packed and the blobs being pushed. Off a terminal
//! every bar here is hidden and draws nothing.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

use kiln_store::{Origin, RealizeProgress, StorePath};

use super::human_size;
use crate::layer::{Layer, PackProgress};
use crate::registry::{BlobFate, LayoutBlob, PushProgress};

/// How often spinners and elapsed times move when nothing else happens.
const TICK: Duration = Duration::from_millis(100);

/// The bars on the terminal, if any: log lines come from anywhere in kiln
/// and must print above them too (see [`print_above`]).
static DRAWN: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Runs `write`, which prints on stderr, above whatever bars are drawn.
pub fn print_above<R>(write: impl FnOnce() -> R) -> R {
    let drawn = DRAWN.lock().map(|drawn| drawn.clone()).ok().flatten();
    match drawn {
        Some(multi) => multi.suspend(write),
        None => write(),
    }
}

/// Where bars are drawn: stderr on a terminal, nowhere otherwise.
#[derive(Clone)]
pub struct Bars {
    multi: MultiProgress,
}

impl Bars {
    /// Bars drawn when stderr is a terminal, unless `quiet`.
    pub fn on_stderr(quiet: bool) -> Bars {
        Bars::new(!quiet && std::io::stderr().is_terminal())
    }

    /// Bars drawn on stderr when `live`, else hidden.
    pub fn new(live: bool) -> Bars {
        let target = match live {
            true => ProgressDrawTarget::stderr(),
            false => ProgressDrawTarget::hidden(),
        };
        let multi = MultiProgress::with_draw_target(target);
        if !multi.is_hidden() {
            if let Ok(mut drawn) = DRAWN.lock() {
                *drawn = Some(multi.clone());
            }
        }
        Bars { multi }
    }

    /// Whether bars are drawn at all.
    pub fn is_live(&self) -> bool {
        !self.multi.is_hidden()
    }

    /// Runs `write`, which prints on stderr, with the bars cleared first and
    /// drawn again after, so its lines stay whole.
    pub fn above<R>(&self, write: impl FnOnce() -> R) -> R {
        self.multi.suspend(write)
    }

    /// A spinner showing `label` and the time since it began; cleared when
    /// dropped.
    pub fn spinner(&self, label: &str) -> ProgressBar {
        self.add(
            ProgressBar::new_spinner().with_message(label.to_string()),
            "{spinner} {msg} [{elapsed}]",
        )
    }

    /// A bar over `layers` layers being packed.
    pub fn pack(&self, layers: usize) -> PackBar {
        let bar = self.add(
            ProgressBar::new(layers as u64).with_message(written(0)),
            "{spinner} pack [{bar:20}] {pos}/{len} layers [{elapsed}] {wide_msg}",
        );
        PackBar {
            bar,
            written: AtomicU64::new(0),
        }
    }

    /// A bar over the store paths of a realization.
    pub fn fetch(&self) -> FetchBar {
        // No length until the closure is known.
        let bar = self.add(
            ProgressBar::no_length(),
            "{spinner} packages [{bar:20}] {pos}/{len} store paths [{elapsed}] {wide_msg}",
        );
        FetchBar {
            bar,
            downloaded: AtomicU64::new(0),
        }
    }

    /// A bar over the blobs of a push.
    pub fn push(&self) -> PushBar {
        // No length until the push has read the manifest: an empty bar,
        // not a full one over nothing.
        let bar = self.add(
            ProgressBar::no_length(),
            "{spinner} push [{bar:20}] {pos}/{len} blobs [{elapsed}] {wide_msg}",
        );
        PushBar {
            bar,
            state: Mutex::new(PushState::default()),
        }
    }

    /// Adds `bar` drawn with `template`. Bars with counts end in
    /// `{wide_msg}`, which is cut to the terminal's width rather than
    /// wrapped.
    fn add(&self, bar: ProgressBar, template: &str) -> ProgressBar {
        let style = ProgressStyle::with_template(template)
            .expect("bar templates are valid")
            .progress_chars("=> ");
        let bar = self
            .multi
            .add(bar.with_style(style).with_finish(ProgressFinish::AndClear));
        if self.is_live() {
            bar.enable_steady_tick(TICK);
        }
        bar
    }
}

/// The pack bar: layers done, and compressed bytes written to new blobs.
pub struct PackBar {
    bar: ProgressBar,
    written: AtomicU64,
}

impl PackProgress for PackBar {
    fn wrote(&self, bytes: u64) {
        let total = self.written.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.bar.set_message(written(total));
    }

    fn finished(&self, _layer: &Layer) {
        self.bar.inc(1);
    }
}

fn written(bytes: u64) -> String {
    format!("{} written", human_size(bytes))
}

/// The packages bar: store paths ready, and bytes downloaded.
pub struct FetchBar {
    bar: ProgressBar,
    downloaded: AtomicU64,
}

impl RealizeProgress for FetchBar {
    fn started(&self, paths: usize, to_download: usize) {
        self.bar.set_length(paths as u64);
        if to_download > 0 {
            self.bar
                .set_message(format!("{to_download} to fetch or check"));
        }
    }

    fn downloaded(&self, bytes: u64) {
        let total = self.downloaded.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.bar
            .set_message(format!("{} downloaded", human_size(total)));
    }

    fn finished(&self, _path: &StorePath, _origin: &Origin) {
        self.bar.inc(1);
    }
}

/// The push bar: blobs in the repository, how they got there, and bytes
/// uploaded.
pub struct PushBar {
    bar: ProgressBar,
    state: Mutex<PushState>,
}

#[derive(Default)]
struct PushState {
    /// Bytes sent of each upload under way, by digest.
    sending: HashMap<String, u64>,
    /// Bytes of finished uploads.
    sent: u64,
    uploaded: usize,
    present: usize,
    mounted: usize,
}

impl PushState {
    fn bytes(&self) -> u64 {
        self.sent + self.sending.values().sum::<u64>()
    }
}

impl PushBar {
    /// Only what happened so far, so the line fits a narrow terminal.
    fn show(&self, state: &PushState) {
        let mut parts = Vec::new();
        if state.uploaded > 0 || !state.sending.is_empty() {
            parts.push(format!(
                "{} uploaded ({})",
                state.uploaded,
                human_size(state.bytes())
            ));
        }
        for (count, fate) in [(state.present, "present"), (state.mounted, "mounted")] {
            if count > 0 {
                parts.push(format!("{count} {fate}"));
            }
        }
        self.bar.set_message(parts.join(", "));
    }
}

impl PushProgress for PushBar {
    fn started(&self, blobs: usize) {
        self.bar.set_length(blobs as u64);
    }

    fn sending(&self, blob: &LayoutBlob, sent: u64) {
        let mut state = self.state.lock().expect("push bar state");
        state.sending.insert(blob.digest.clone(), sent);
        self.show(&state);
    }

    fn finished(&self, blob: &LayoutBlob, fate: BlobFate) {
        let mut state = self.state.lock().expect("push bar state");
        state.sending.remove(&blob.digest);
        match fate {
            BlobFate::Uploaded => {
                state.sent += blob.size;
                state.uploaded += 1;
            }
            BlobFate::Present => state.present += 1,
            BlobFate::Mounted => state.mounted += 1,
        }
        self.bar.inc(1);
        self.show(&state);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn blob(digest: &str, size: u64) -> LayoutBlob {
        LayoutBlob {
            digest: digest.to_string(),
            size,
            media_type: "application/octet-stream".to_string(),
            path: PathBuf::from("/nowhere"),
        }
    }

    #[test]
    fn off_a_terminal_nothing_is_drawn() {
        let bars = Bars::new(false);
        assert!(!bars.is_live());
        assert!(bars.spinner("phase build").is_hidden());
        assert!(bars.pack(3).bar.is_hidden());
        assert!(bars.push().bar.is_hidden());
        assert!(bars.fetch().bar.is_hidden());
        assert_eq!(bars.above(|| 7), 7);
        assert_eq!(print_above(|| 8), 8);
    }

    #[test]
    fn pack_bar_counts_layers_and_bytes() {
        let bars = Bars::new(false);
        let pack = bars.pack(2);
        pack.wrote(1000);
        pack.wrote(24);
        let layer = Layer {
            digest: String::new(),
            diff_id: String::new(),
            size: 1024,
            uncompressed_size: 4096,
            format: crate::layer::Format::Gzip,
            blob: PathBuf::new(),
            description: String::new(),
        };
        pack.finished(&layer);
        pack.finished(&layer);
        assert_eq!(pack.written.load(Ordering::Relaxed), 1024);
        assert_eq!(pack.bar.position(), 2);
        assert_eq!(pack.bar.message(), "1.0 KiB written");
    }

    #[test]
    fn fetch_bar_counts_paths_and_downloaded_bytes() {
        let bars = Bars::new(false);
        let fetch = bars.fetch();
        fetch.started(2, 1);
        assert_eq!(fetch.bar.length(), Some(2));
        assert_eq!(fetch.bar.message(), "1 to fetch or check");
        fetch.downloaded(2000);
        fetch.downloaded(48);
        assert_eq!(fetch.bar.message(), "2.0 KiB downloaded");
        let path = kiln_store::parse_store_path("/nix/store/0c5j5rbh8rmsm0dkx5hd4gfzfm0v0gyb-zlib")
            .unwrap();
        fetch.finished(&path, &Origin::AlreadyInStore);
        fetch.finished(&path, &Origin::HostStore);
        assert_eq!(fetch.bar.position(), 2);
    }

    #[test]
    fn push_bar_counts_fates_and_restarted_uploads_once() {
        let bars = Bars::new(false);
        let push = bars.push();
        push.started(3);
        let big = blob("sha256:big", 300);
        assert_eq!(push.bar.message(), "");
        push.sending(&big, 200);
        assert_eq!(push.bar.message(), "0 uploaded (200 B)");
        // A retry starts the blob over: its first attempt no longer counts.
        push.sending(&big, 100);
        assert_eq!(push.state.lock().unwrap().bytes(), 100);
        push.sending(&big, 300);
        push.finished(&big, BlobFate::Uploaded);
        push.finished(&blob("sha256:base", 50), BlobFate::Present);
        assert_eq!(push.bar.message(), "1 uploaded (300 B), 1 present");
        push.finished(&blob("sha256:config", 5), BlobFate::Mounted);
        assert_eq!(push.state.lock().unwrap().bytes(), 300);
        assert_eq!(push.bar.position(), 3);
        assert_eq!(
            push.bar.message(),
            "1 uploaded (300 B), 1 present, 1 mounted"
        );
    }
}
