//! Where the commands' output goes, and the last lines kept for errors.

use std::collections::VecDeque;
use std::io::Write;

/// How many lines of a failed command an error shows.
pub(super) const TAIL_LINES: usize = 30;

/// Longest line passed on whole; longer ones are cut into pieces so a
/// command printing no newline cannot make kiln hold all its output.
const MAX_LINE: usize = 64 * 1024;

/// Where the commands' output goes.
pub enum Output {
    /// Every line (stdout and stderr merged, in order), as it arrives.
    Lines(Box<dyn FnMut(&str) + Send>),
    /// The caller's own stdin, stdout and stderr (an interactive shell).
    /// Even then the commands run in a session of their own, so a terminal
    /// there is not their controlling terminal: they cannot type into the
    /// caller's shell, and get no job control; pass Ctrl-C on with
    /// [`super::forward_interrupts`].
    Inherit,
}

impl Output {
    /// Lines on kiln's stderr as `[name] line`.
    pub fn prefixed_stderr(name: &str) -> Output {
        Output::prefixed_stderr_with(name, |write| write())
    }

    /// [`Output::prefixed_stderr`], each line written inside `around`, which
    /// can clear a progress bar before and draw it again after.
    pub fn prefixed_stderr_with(
        name: &str,
        around: impl Fn(&mut dyn FnMut()) + Send + 'static,
    ) -> Output {
        let prefix = format!("[{name}] ");
        Output::Lines(Box::new(move |line| {
            around(&mut || {
                let _ = writeln!(std::io::stderr().lock(), "{prefix}{line}");
            })
        }))
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Output::Lines(_) => "Output::Lines",
            Output::Inherit => "Output::Inherit",
        })
    }
}

/// Cuts the output stream into lines for the sink and keeps the last ones.
pub(super) struct LineSplitter {
    partial: Vec<u8>,
    tail: VecDeque<String>,
}

impl LineSplitter {
    pub(super) fn new() -> LineSplitter {
        LineSplitter {
            partial: Vec::new(),
            tail: VecDeque::with_capacity(TAIL_LINES),
        }
    }

    /// Takes bytes as they arrive.
    pub(super) fn push(&mut self, bytes: &[u8], sink: &mut dyn FnMut(&str)) {
        for &byte in bytes {
            if byte == b'\n' {
                self.emit(sink);
            } else {
                self.partial.push(byte);
                if self.partial.len() >= MAX_LINE {
                    self.emit(sink);
                }
            }
        }
    }

    /// Passes on a last line that had no newline.
    pub(super) fn finish(&mut self, sink: &mut dyn FnMut(&str)) {
        if !self.partial.is_empty() {
            self.emit(sink);
        }
    }

    /// Starts a new command: the kept lines are its own from now on.
    pub(super) fn next_command(&mut self, sink: &mut dyn FnMut(&str)) {
        self.finish(sink);
        self.tail.clear();
    }

    /// The last lines so far, oldest first.
    pub(super) fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    fn emit(&mut self, sink: &mut dyn FnMut(&str)) {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        sink(&line);
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_reads_and_tail_keeps_thirty() {
        let mut seen = Vec::new();
        let mut sink = |line: &str| seen.push(line.to_string());
        let mut splitter = LineSplitter::new();
        splitter.push(b"first\nsec", &mut sink);
        splitter.push(b"ond\n", &mut sink);
        splitter.next_command(&mut sink);
        for n in 0..40 {
            splitter.push(format!("line {n}\n").as_bytes(), &mut sink);
        }
        splitter.push(b"no newline \xff", &mut sink);
        splitter.finish(&mut sink);
        assert_eq!(seen[..2], ["first", "second"]);
        assert_eq!(seen.len(), 43);
        let tail = splitter.tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[0], "line 11");
        assert_eq!(tail[29], "no newline \u{fffd}");
    }

    #[test]
    fn endless_lines_are_cut() {
        let mut count = 0;
        let mut splitter = LineSplitter::new();
        splitter.push(&vec![b'x'; MAX_LINE * 2 + 1], &mut |_| count += 1);
        assert_eq!(count, 2);
    }
}
