//! Runs one unit: the process group it runs in, its output (read line by line, masked, batched),
//! and how it is stopped (cancel, timeout, fencing, shutdown).
//!
//! What the script sees (folder, substitution, environment) is decided in [`crate::agent::script`];
//! this module runs `<shell> -c <script>` in its own process group, stdin from `/dev/null`, killed
//! by the kernel if the agent dies (`PR_SET_PDEATHSIG`).
//!
//! # Stopping
//!
//! A stop (cancel, timeout, fencing, shutdown) sends SIGTERM to the process group, then SIGKILL
//! after the stop's grace. The exit code is the script's, or 128 + N when signal N ended it, or -1
//! when it never started.

use crate::agent::process;
use crate::agent::script::{self, Masker};
use cuttle_proto::v1::{LogLine, LogStream, RunUnit};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A longer line is cut here and marked as cut.
pub const OUTPUT_LINE_BYTES_MAX: usize = 16 * 1024;
/// An output batch goes out when it holds this many lines ...
pub const OUTPUT_BATCH_LINES_MAX: usize = 256;
/// ... or this many bytes of text ...
pub const OUTPUT_BATCH_BYTES_MAX: usize = 64 * 1024;
/// ... or this long after its first line.
pub const OUTPUT_BATCH_DELAY_MS: u64 = 200;
/// After the script exits, output still arriving (from processes it left behind) is read this long.
pub const OUTPUT_DRAIN_AFTER_EXIT_MS: u64 = 2_000;

/// What the runner needs from the agent's configuration.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    pub agent_name: String,
    pub endpoints: Vec<String>,
    pub work_dir: PathBuf,
    pub shell: String,
    pub cancel_grace_ms: u64,
}

/// A request to stop a running unit.
#[derive(Clone, Debug)]
pub struct Stop {
    /// The reason reported if the stop ends the unit ("cancelled", "fenced: ...").
    pub reason: String,
    /// SIGKILL follows SIGTERM after this long.
    pub grace_ms: u64,
}

/// What a running unit tells the agent, in order: output batches, then exactly one `Finished`.
#[derive(Clone, Debug, PartialEq)]
pub enum RunnerEvent {
    Output {
        unit: u64,
        attempt: u32,
        lines: Vec<LogLine>,
    },
    Finished {
        unit: u64,
        attempt: u32,
        exit_code: i32,
        reason: String,
    },
}

/// A unit that was started.
#[derive(Debug)]
pub struct Launched {
    /// The process group of the script, if a process was started.
    pub pgid: Option<i32>,
    /// Stops the unit; dropping it does not.
    pub stop: mpsc::UnboundedSender<Stop>,
}

/// Starts units; the edge a simulator replaces. `Err` is the reason the unit could not start.
pub trait Launcher: Send + Sync {
    fn launch(&self, run: RunUnit, events: mpsc::Sender<RunnerEvent>) -> Result<Launched, String>;
}

/// Starts units as real processes.
#[derive(Clone, Debug)]
pub struct ProcessLauncher {
    config: Arc<RunnerConfig>,
}

impl ProcessLauncher {
    pub fn new(config: RunnerConfig) -> ProcessLauncher {
        ProcessLauncher {
            config: Arc::new(config),
        }
    }
}

impl Launcher for ProcessLauncher {
    fn launch(&self, run: RunUnit, events: mpsc::Sender<RunnerEvent>) -> Result<Launched, String> {
        launch_process(&self.config, run, events)
    }
}

/// Gathers lines into batches within the `OUTPUT_BATCH_*` limits.
#[derive(Debug, Default)]
pub struct Batcher {
    lines: Vec<LogLine>,
    bytes: usize,
    first_at: Option<Instant>,
}

impl Batcher {
    /// Adds `line`; returns a batch that must go out now: the lines before it when it would not
    /// fit, or the batch it completed.
    pub fn push(&mut self, line: LogLine, now: Instant) -> Option<Vec<LogLine>> {
        let mut ready = None;
        if !self.lines.is_empty() && self.bytes + line.text.len() > OUTPUT_BATCH_BYTES_MAX {
            ready = Some(self.take());
        }
        self.bytes += line.text.len();
        self.lines.push(line);
        self.first_at.get_or_insert(now);
        // A line that fills a batch alone (masking can lengthen one) waits for the next push or
        // the delay, so one call never has two batches to hand out.
        let full =
            self.lines.len() >= OUTPUT_BATCH_LINES_MAX || self.bytes >= OUTPUT_BATCH_BYTES_MAX;
        if full && ready.is_none() {
            ready = Some(self.take());
        }
        ready
    }

    /// When the current batch is due, if it holds a line.
    pub fn due_at(&self) -> Option<Instant> {
        self.first_at
            .map(|at| at + std::time::Duration::from_millis(OUTPUT_BATCH_DELAY_MS))
    }

    pub fn take(&mut self) -> Vec<LogLine> {
        self.bytes = 0;
        self.first_at = None;
        std::mem::take(&mut self.lines)
    }
}

/// A line the agent writes itself.
pub fn system_line(text: String) -> LogLine {
    LogLine {
        ts_ms: crate::agent::wall_ms(),
        stream: LogStream::System as i32,
        text,
    }
}

fn start_line(run: &RunUnit, agent_name: &str) -> LogLine {
    system_line(format!(
        "running step {} on {agent_name} (unit {} attempt {}, token {})",
        run.step, run.unit, run.attempt, run.token
    ))
}

fn launch_process(
    config: &RunnerConfig,
    run: RunUnit,
    events: mpsc::Sender<RunnerEvent>,
) -> Result<Launched, String> {
    let (stop, stop_rx) = mpsc::unbounded_channel();
    match run.kind.as_str() {
        "run" | "" => {}
        "acquire" if run.script.trim().is_empty() => {
            let lines = vec![
                start_line(&run, &config.agent_name),
                system_line(format!("package {}: nothing to fetch", run.package)),
            ];
            tokio::spawn(async move {
                let (unit, attempt) = (run.unit, run.attempt);
                let _ = events.send(RunnerEvent::Output { unit, attempt, lines }).await;
                let finished = RunnerEvent::Finished { unit, attempt, exit_code: 0, reason: String::new() };
                let _ = events.send(finished).await;
            });
            return Ok(Launched { pgid: None, stop });
        }
        "acquire" => {}
        other => {
            return Err(format!(
                "unknown unit kind {other:?}: this agent runs \"run\" and \"acquire\" units; upgrade it"
            ))
        }
    }
    let dir = script::unit_dir(&config.work_dir, &run);
    std::fs::create_dir_all(&dir).map_err(|e| {
        format!(
            "working directory {} could not be created: {e}",
            dir.display()
        )
    })?;
    let values = script::variable_values(&run, &config.agent_name);
    let (text, unknown) = script::substitute(&run.script, &values);
    let mut command = command(config, &run, &text, &dir);
    let mut child = command
        .spawn()
        .map_err(|e| format!("the script could not start: {}: {e}", config.shell))?;
    let pgid = child
        .id()
        .map(|id| id as i32)
        .ok_or("the script exited at once")?;
    let (line_tx, line_rx) = mpsc::channel(OUTPUT_BATCH_LINES_MAX);
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(
            stdout,
            LogStream::Stdout,
            line_tx.clone(),
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(stderr, LogStream::Stderr, line_tx)));
    }
    let mut supervised = Supervised {
        unit: run.unit,
        attempt: run.attempt,
        step: run.step.clone(),
        pgid,
        events,
        masker: Masker::new(&run),
        batcher: Batcher::default(),
    };
    supervised
        .batcher
        .push(start_line(&run, &config.agent_name), Instant::now());
    for name in unknown {
        let warning = format!("#{{{name}}} is not a variable of this deployment: left as written");
        supervised
            .batcher
            .push(system_line(warning), Instant::now());
    }
    if unsafe_test_fault_early_finish() {
        early_finish(&mut supervised);
    }
    let limits = (run.timeout_ms, config.cancel_grace_ms);
    tokio::spawn(supervised.run(child, line_rx, stop_rx, readers, limits));
    Ok(Launched {
        pgid: Some(pgid),
        stop,
    })
}

/// UNSAFE, TEST-ONLY. The environment variable of the chaos harness's deliberately broken switch
/// (`docs/chaos.md`): with the value `early-finish` the agent reports every unit that runs a script
/// as finished (exit code 0) the moment it starts, while the script keeps running, so the cluster
/// hands the target to the next unit too early. It exists only so that the harness can show that
/// its checkers catch a real overlap. Off unless set; never set it outside that self-test.
pub const UNSAFE_TEST_FAULT_ENV: &str = "CUTTLE_UNSAFE_TEST_FAULT";

/// Whether the broken switch is on; read once per process.
fn unsafe_test_fault_early_finish() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let on = std::env::var(UNSAFE_TEST_FAULT_ENV).is_ok_and(|v| v == "early-finish");
        if on {
            tracing::error!(
                "{UNSAFE_TEST_FAULT_ENV}=early-finish: this agent is deliberately broken for a test \
                 and reports units finished while their scripts still run"
            );
        }
        on
    })
}

/// UNSAFE, TEST-ONLY (see [`UNSAFE_TEST_FAULT_ENV`]): reports the unit finished now and silences
/// the supervisor's own reports (its channel has no receiver), while the supervisor still reaps
/// the script when it really ends.
fn early_finish(supervised: &mut Supervised) {
    let (unit, attempt) = (supervised.unit, supervised.attempt);
    let (closed, _) = mpsc::channel(1);
    let events = std::mem::replace(&mut supervised.events, closed);
    tokio::spawn(async move {
        let reason = String::new();
        let finished = RunnerEvent::Finished {
            unit,
            attempt,
            exit_code: 0,
            reason,
        };
        let _ = events.send(finished).await;
    });
}

fn command(
    config: &RunnerConfig,
    run: &RunUnit,
    text: &str,
    dir: &Path,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&config.shell);
    command
        .arg("-c")
        .arg(text)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .envs(script::environment(
            run,
            &config.agent_name,
            &config.endpoints,
        ));
    let agent_pid = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe functions.
    unsafe {
        command.pre_exec(move || {
            // The kernel kills the shell when the thread that forked it dies, so a kill -9 of the
            // agent takes its scripts down. The forking thread is a runtime worker, which lives
            // as long as the agent; never spawn units from a blocking-pool thread.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The agent may have died before prctl took effect.
            if libc::getppid() != agent_pid {
                return Err(std::io::Error::other("the agent exited during the spawn"));
            }
            Ok(())
        });
    }
    command
}

/// Reads `reader` line by line into `lines`, stamping each with the wall clock when read.
async fn read_lines<R: AsyncRead + Unpin>(
    reader: R,
    stream: LogStream,
    lines: mpsc::Sender<LogLine>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    while let Ok(buffer) = reader.fill_buf().await {
        if buffer.is_empty() {
            break;
        }
        let newline = buffer.iter().position(|&b| b == b'\n');
        let piece = &buffer[..newline.unwrap_or(buffer.len())];
        let room = OUTPUT_LINE_BYTES_MAX - line.len();
        line.extend_from_slice(&piece[..piece.len().min(room)]);
        cut |= piece.len() > room;
        let consumed = newline.map_or(buffer.len(), |at| at + 1);
        reader.consume(consumed);
        if newline.is_some() {
            let text = line_text(&line, cut);
            if lines
                .send(LogLine {
                    ts_ms: crate::agent::wall_ms(),
                    stream: stream as i32,
                    text,
                })
                .await
                .is_err()
            {
                return;
            }
            line.clear();
            cut = false;
        }
    }
    if !line.is_empty() || cut {
        let text = line_text(&line, cut);
        let _ = lines
            .send(LogLine {
                ts_ms: crate::agent::wall_ms(),
                stream: stream as i32,
                text,
            })
            .await;
    }
}

fn line_text(bytes: &[u8], cut: bool) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if cut {
        let _ = write!(text, " [line cut at {OUTPUT_LINE_BYTES_MAX} bytes]");
    }
    text
}

/// A running process and where its output goes.
struct Supervised {
    unit: u64,
    attempt: u32,
    step: String,
    pgid: i32,
    events: mpsc::Sender<RunnerEvent>,
    masker: Masker,
    batcher: Batcher,
}

impl Supervised {
    async fn run(
        mut self,
        mut child: tokio::process::Child,
        mut line_rx: mpsc::Receiver<LogLine>,
        mut stop_rx: mpsc::UnboundedReceiver<Stop>,
        readers: Vec<tokio::task::JoinHandle<()>>,
        (timeout_ms, cancel_grace_ms): (u64, u64),
    ) {
        let started = Instant::now();
        let timeout_at = (timeout_ms > 0).then(|| started + ms(timeout_ms));
        let mut stop_reason: Option<String> = None;
        let mut kill_at: Option<Instant> = None;
        let (mut lines_open, mut stops_open) = (true, true);
        let status = loop {
            let due = self.batcher.due_at();
            let mut stop = None;
            tokio::select! {
                status = child.wait() => break status,
                line = line_rx.recv(), if lines_open => match line {
                    Some(line) => self.push(line).await,
                    None => lines_open = false,
                },
                _ = sleep_until(due), if due.is_some() => self.flush().await,
                request = stop_rx.recv(), if stops_open => match request {
                    Some(request) => stop = Some(request),
                    None => stops_open = false,
                },
                _ = sleep_until(timeout_at), if timeout_at.is_some() && stop_reason.is_none() => {
                    let reason = format!("timed out after {timeout_ms} ms");
                    stop = Some(Stop { reason, grace_ms: cancel_grace_ms });
                }
                _ = sleep_until(kill_at), if kill_at.is_some() => {
                    kill_at = None;
                    self.signal(libc::SIGKILL);
                }
            }
            if let Some(stop) = stop {
                if stop_reason.is_none() {
                    self.push(system_line(format!("stopping: {}", stop.reason)))
                        .await;
                    self.signal(libc::SIGTERM);
                    stop_reason = Some(stop.reason);
                }
                let at = Instant::now() + ms(stop.grace_ms);
                kill_at = Some(kill_at.map_or(at, |earlier| earlier.min(at)));
            }
        };
        if stop_reason.is_some() {
            // The unit is over: nothing it started may outlive it.
            self.signal(libc::SIGKILL);
        }
        let drain_until = Instant::now() + ms(OUTPUT_DRAIN_AFTER_EXIT_MS);
        while lines_open {
            tokio::select! {
                line = line_rx.recv() => match line {
                    Some(line) => self.push(line).await,
                    None => lines_open = false,
                },
                _ = tokio::time::sleep_until(drain_until) => {
                    let note = "processes the script left behind still hold its output open; no longer reading it";
                    self.push(system_line(note.to_string())).await;
                    break;
                }
            }
        }
        for reader in readers {
            reader.abort();
        }
        let (exit_code, reason) = match status {
            Ok(status) => (exit_code(status), stop_reason.unwrap_or_default()),
            Err(error) => (-1, format!("waiting for the script failed: {error}")),
        };
        let mut end = format!("step {} ended with exit code {exit_code}", self.step);
        if !reason.is_empty() {
            let _ = write!(end, ": {reason}");
        }
        self.push(system_line(end)).await;
        self.flush().await;
        let finished = RunnerEvent::Finished {
            unit: self.unit,
            attempt: self.attempt,
            exit_code,
            reason,
        };
        let _ = self.events.send(finished).await;
    }

    async fn push(&mut self, mut line: LogLine) {
        if line.stream != LogStream::System as i32 {
            line.text = self.masker.mask(&line.text);
        }
        if let Some(lines) = self.batcher.push(line, Instant::now()) {
            self.send(lines).await;
        }
    }

    async fn flush(&mut self) {
        let lines = self.batcher.take();
        if !lines.is_empty() {
            self.send(lines).await;
        }
    }

    async fn send(&mut self, lines: Vec<LogLine>) {
        let output = RunnerEvent::Output {
            unit: self.unit,
            attempt: self.attempt,
            lines,
        };
        let _ = self.events.send(output).await;
    }

    fn signal(&self, signal: i32) {
        if let Err(error) = process::signal_group(self.pgid, signal) {
            tracing::warn!(
                unit = self.unit,
                pgid = self.pgid,
                "signal {signal} failed: {error}"
            );
        }
    }
}

/// The exit code as reported: the script's code, or 128 + N when signal N ended it.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    }
}

fn ms(value: u64) -> std::time::Duration {
    std::time::Duration::from_millis(value)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
