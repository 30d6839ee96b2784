//! Running one phase, from the caller's side: prepare folders and mount
//! steps, fork the sandbox, write its id maps, stream its output, enforce
//! the timeout and cancellation, and clean up whatever happened.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

use super::child::{self, ChildPlan, ExtraStep};
use super::hide;
use super::idmap::IdMaps;
use super::interrupt;
use super::mounts::{self, Step};
use super::output::LineSplitter;
use super::protocol::{Record, RecordReader};
use super::scratch::Scratch;
use super::validate::validate;
use super::{preflight, Network, Output, PhaseDiff, Sandbox, SandboxError};

/// How often the caller checks the timeout and the cancel flag while the
/// sandbox is quiet.
const TICK: Duration = Duration::from_millis(50);

pub(super) fn run(mut sandbox: Sandbox) -> Result<PhaseDiff, SandboxError> {
    preflight::check()?;
    validate(&sandbox)?;
    let scratch = Scratch::new(&sandbox)?;
    let layout = scratch.layout();
    let io_error = |action, path: &Path| {
        let phase = sandbox.name.clone();
        let path = path.to_path_buf();
        move |source| SandboxError::Io {
            phase,
            action,
            path,
            source,
        }
    };
    let steps =
        mounts::plan(&sandbox, &layout).map_err(io_error("plan the mounts for", &sandbox.upper))?;
    let output = match &sandbox.output {
        Output::Lines(_) => Some(pipe2(OFlag::O_CLOEXEC).map_err(|e| pipe_error(&sandbox, e))?),
        Output::Inherit => None,
    };
    let (output_reader, output_writer) = match output {
        Some((reader, writer)) => (Some(reader), Some(writer)),
        None => (None, None),
    };
    let plan = child_plan(&sandbox, steps, output_writer)?;
    let maps = IdMaps::for_caller();
    let (status_reader, status_writer) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| pipe_error(&sandbox, e))?;
    let (go_reader, go_writer) = pipe2(OFlag::O_CLOEXEC).map_err(|e| pipe_error(&sandbox, e))?;

    // SAFETY: the child only runs `child::first_child`, which makes system
    // calls on data prepared here and `_exit`s (see the `child` module).
    let first = match unsafe { fork() } {
        Err(errno) => return Err(setup_error(&sandbox, "fork the sandbox", errno)),
        Ok(ForkResult::Child) => {
            drop(status_reader);
            drop(go_writer);
            drop(output_reader);
            child::first_child(&plan, status_writer, go_reader)
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    let interactive = matches!(sandbox.output, Output::Inherit);
    if interactive {
        interrupt::set_sandbox_group(Some(first));
    }
    drop(status_writer);
    drop(go_reader);
    let ChildPlan { steps, output, .. } = plan;
    drop(output);

    let mut watch = Watch {
        sandbox: &mut sandbox,
        steps: &steps,
        first,
        init: None,
        records: RecordReader::default(),
        lines: LineSplitter::new(),
        running: None,
        succeeded: 0,
        failure: None,
        killed: None,
    };
    let outcome = watch
        .start(&status_reader, &maps, go_writer)
        .and_then(|()| watch.follow(status_reader, output_reader));
    if outcome.is_err() {
        watch.kill();
    }
    let first_status = wait_all(first);
    if interactive {
        interrupt::set_sandbox_group(None);
    }
    let result = outcome.and_then(|()| watch.verdict(first_status));
    drop(scratch);
    result.map(|()| PhaseDiff {
        upper: sandbox.upper.clone(),
    })
}

/// Why the caller killed the sandbox.
#[derive(Debug, Clone, Copy)]
enum Kill {
    Timeout(Duration),
    Cancelled,
}

/// The caller's view of a running sandbox.
struct Watch<'a> {
    sandbox: &'a mut Sandbox,
    steps: &'a [Step],
    first: Pid,
    init: Option<Pid>,
    records: RecordReader,
    lines: LineSplitter,
    running: Option<u32>,
    succeeded: usize,
    failure: Option<SandboxError>,
    killed: Option<Kill>,
}

impl Watch<'_> {
    /// Waits until the sandbox entered its namespaces, writes its maps and
    /// lets it go on.
    fn start(&mut self, status: &OwnedFd, maps: &IdMaps, go: OwnedFd) -> Result<(), SandboxError> {
        loop {
            let mut buffer = [0u8; 64];
            let read = match nix::unistd::read(status.as_fd(), &mut buffer) {
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    return Err(setup_error(
                        self.sandbox,
                        "read the sandbox's reports",
                        errno,
                    ))
                }
                Ok(read) => read,
            };
            if read == 0 {
                return Err(self.failure.take().unwrap_or_else(|| SandboxError::Ended {
                    phase: self.sandbox.name.clone(),
                    detail: "before entering its namespaces".into(),
                }));
            }
            for record in self.records.push(&buffer[..read]) {
                if record == Record::Unshared {
                    maps.apply(self.first)?;
                    nix::unistd::write(go.as_fd(), &[1])
                        .map_err(|e| setup_error(self.sandbox, "start the sandbox", e))?;
                    return Ok(());
                }
                self.handle(record, None);
            }
        }
    }

    /// Streams output and records until both pipes close.
    fn follow(&mut self, status: OwnedFd, output: Option<OwnedFd>) -> Result<(), SandboxError> {
        if let Some(output) = &output {
            fcntl(output.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .map_err(|e| pipe_error(self.sandbox, e))?;
        }
        let started = Instant::now();
        let mut status = Some(status);
        let mut output = output;
        while status.is_some() || output.is_some() {
            let wait = self.check_limits(started);
            let mut fds = Vec::with_capacity(2);
            if let Some(fd) = &status {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
            if let Some(fd) = &output {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
            let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(errno) => return Err(pipe_error(self.sandbox, errno)),
            }
            let ready: Vec<bool> = fds.iter().map(|fd| fd.any().unwrap_or(true)).collect();
            drop(fds);
            let status_ready = status.is_some() && ready[0];
            let output_ready = output.is_some() && ready[ready.len() - 1];
            if output_ready && !self.drain(output.as_ref()) {
                output = None;
                self.finish_lines();
            }
            if status_ready && !self.read_records(status.as_ref(), output.as_ref()) {
                status = None;
            }
        }
        Ok(())
    }

    /// Kills the sandbox when its time is up or it was cancelled; returns how
    /// long to wait for news before checking again.
    fn check_limits(&mut self, started: Instant) -> Duration {
        if self.killed.is_some() {
            return TICK;
        }
        let cancelled = self
            .sandbox
            .cancel
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::SeqCst));
        if cancelled {
            self.killed = Some(Kill::Cancelled);
            self.kill();
            return TICK;
        }
        match self.sandbox.timeout {
            Some(limit) if started.elapsed() >= limit => {
                self.killed = Some(Kill::Timeout(limit));
                self.kill();
                TICK
            }
            Some(limit) => TICK.min(limit.saturating_sub(started.elapsed())),
            None => TICK,
        }
    }

    /// SIGKILL to init ends every process of the pid namespace; the first
    /// child follows.
    fn kill(&self) {
        if let Some(init) = self.init {
            let _ = kill(init, Signal::SIGKILL);
        }
        let _ = kill(self.first, Signal::SIGKILL);
    }

    /// Reads what output is available; false at end of stream.
    fn drain(&mut self, output: Option<&OwnedFd>) -> bool {
        let Some(output) = output else {
            return true;
        };
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match nix::unistd::read(output.as_fd(), &mut buffer) {
                Ok(0) => return false,
                Ok(read) => {
                    if let Output::Lines(sink) = &mut self.sandbox.output {
                        self.lines.push(&buffer[..read], sink.as_mut());
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return true,
                Err(_) => return false,
            }
        }
    }

    fn finish_lines(&mut self) {
        if let Output::Lines(sink) = &mut self.sandbox.output {
            self.lines.finish(sink.as_mut());
        }
    }

    /// Reads records; false at end of stream.
    fn read_records(&mut self, status: Option<&OwnedFd>, output: Option<&OwnedFd>) -> bool {
        let Some(status) = status else {
            return false;
        };
        let mut buffer = [0u8; 256];
        let read = match nix::unistd::read(status.as_fd(), &mut buffer) {
            Ok(0) | Err(_) => return false,
            Ok(read) => read,
        };
        for record in self.records.push(&buffer[..read]) {
            self.handle(record, output);
        }
        true
    }

    fn handle(&mut self, record: Record, output: Option<&OwnedFd>) {
        let phase = self.sandbox.name.clone();
        match record {
            Record::Unshared => {}
            Record::InitPid(pid) => self.init = Some(Pid::from_raw(pid)),
            Record::Begin(index) => {
                // The previous command has exited, so all its output is in
                // the pipe: read it before the next command's begins.
                self.drain(output);
                if let Output::Lines(sink) = &mut self.sandbox.output {
                    self.lines.next_command(sink.as_mut());
                }
                self.running = Some(index);
            }
            Record::Exited { code: 0, .. } => {
                self.succeeded += 1;
                self.running = None;
            }
            Record::Exited { index, code } => {
                self.command_failed(index, format!("exited with code {code}"), output)
            }
            Record::Signaled { index, signal } => {
                let name = Signal::try_from(signal)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| format!("signal {signal}"));
                self.command_failed(index, format!("was killed by {name}"), output)
            }
            Record::ExecFailed { index, errno } => {
                self.failure.get_or_insert(SandboxError::Exec {
                    phase,
                    command: self.command(index),
                    bash: self.sandbox.bash.clone(),
                    errno: Errno::from_raw(errno),
                });
            }
            Record::SetupFailed { step, errno } => {
                let what = match ExtraStep::from_number(step, self.steps.len()) {
                    Some(extra) => extra.what().to_string(),
                    None => self
                        .steps
                        .get(step as usize)
                        .map(|s| s.what.clone())
                        .unwrap_or_else(|| format!("carry out setup step {step}")),
                };
                let error = setup_error(self.sandbox, &what, Errno::from_raw(errno));
                self.failure.get_or_insert(error);
            }
        }
    }

    fn command_failed(&mut self, index: u32, ending: String, output: Option<&OwnedFd>) {
        self.drain(output);
        self.running = None;
        let error = SandboxError::CommandFailed {
            phase: self.sandbox.name.clone(),
            command: self.command(index),
            ending,
            last_lines: self.lines.tail(),
        };
        self.failure.get_or_insert(error);
    }

    fn command(&self, index: u32) -> String {
        match &self.sandbox.argv {
            Some(argv) => argv.join(" "),
            None => self
                .sandbox
                .commands
                .get(index as usize)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// The outcome once everything ended.
    fn verdict(&mut self, first: Option<WaitStatus>) -> Result<(), SandboxError> {
        let phase = self.sandbox.name.clone();
        let running = self.running.map(|index| self.command(index));
        match self.killed {
            Some(Kill::Timeout(timeout)) => {
                return Err(SandboxError::TimedOut {
                    phase,
                    timeout,
                    command: running,
                })
            }
            Some(Kill::Cancelled) => {
                return Err(SandboxError::Cancelled {
                    phase,
                    command: running,
                })
            }
            None => {}
        }
        if let Some(failure) = self.failure.take() {
            return Err(failure);
        }
        if self.succeeded == self.sandbox.argvs().len() {
            return Ok(());
        }
        Err(SandboxError::Ended {
            phase,
            detail: format!(
                "{} of {} commands finished; the sandbox process ended with {first:?}",
                self.succeeded,
                self.sandbox.argvs().len()
            ),
        })
    }
}

/// Reaps the first child (which exits right after init).
fn wait_all(first: Pid) -> Option<WaitStatus> {
    loop {
        match waitpid(first, None) {
            Err(Errno::EINTR) => continue,
            Ok(status) => return Some(status),
            Err(_) => return None,
        }
    }
}

fn child_plan(
    sandbox: &Sandbox,
    steps: Vec<Step>,
    output: Option<OwnedFd>,
) -> Result<ChildPlan, SandboxError> {
    let invalid = |reason: String| SandboxError::InvalidInput {
        phase: sandbox.name.clone(),
        reason,
    };
    let c_string = |text: &str, what: &str| {
        CString::new(text).map_err(|_| invalid(format!("{what} contains a NUL byte: {text:?}")))
    };
    let commands = sandbox
        .argvs()
        .iter()
        .map(|argv| {
            argv.iter()
                .map(|arg| c_string(arg, "the command"))
                .collect::<Result<Vec<_>, SandboxError>>()
        })
        .collect::<Result<Vec<_>, SandboxError>>()?;
    let env = sandbox
        .env
        .iter()
        .map(|(key, value)| {
            if key.is_empty() || key.contains('=') {
                return Err(invalid(format!(
                    "environment variable name {key:?} is empty or contains `=`"
                )));
            }
            c_string(&format!("{key}={value}"), "the environment")
        })
        .collect::<Result<Vec<_>, SandboxError>>()?;
    let mut namespaces = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if sandbox.network == Network::None {
        namespaces |= CloneFlags::CLONE_NEWNET;
    }
    Ok(ChildPlan {
        namespaces,
        steps,
        commands,
        env,
        dev_null: c_string("/dev/null", "path")?,
        output,
        caller_areas: hide::caller_areas(),
    })
}

fn setup_error(sandbox: &Sandbox, step: &str, errno: Errno) -> SandboxError {
    SandboxError::Setup {
        phase: sandbox.name.clone(),
        step: step.to_string(),
        errno,
    }
}

fn pipe_error(sandbox: &Sandbox, errno: Errno) -> SandboxError {
    setup_error(sandbox, "make a pipe to the sandbox", errno)
}
