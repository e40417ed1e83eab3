//! The start gate: a unit's shell is spawned at once, but runs the script only when the agent lets
//! it, once the unit's start is durable in the journal.
//!
//! Why: the start record's fsync and the fork, exec and start-up of the shell each take about a
//! millisecond or more, and both sit on a busy target's hand-off from one unit to the next. Done
//! one after the other they add up; with the gate they overlap, and the journal's promise stays
//! whole: no script runs before its start is on disk.
//!
//! How: a pipe. The read end becomes the shell's fd 3, and the script is prefixed (on its first
//! line, so that line numbers stay the user's) with a read of one line from fd 3 that must say
//! `go`; anything else, or end of file, exits with [`NOT_RELEASED_EXIT_CODE`] before the first
//! command of the script. The agent writes `go` when the start is journaled, or closes the pipe
//! without it when journaling failed. Should the agent die in between, its end of the pipe closes
//! and the shell exits the same way (the kernel's `PR_SET_PDEATHSIG` kills it too). The prefix
//! closes fd 3 before the script runs, so nothing the script starts inherits it.

use std::io::Write as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use tokio::sync::oneshot;

/// The file descriptor the shell reads its release from.
pub const GATE_FD: RawFd = 3;

/// The exit code of a shell that was never let run its script.
pub const NOT_RELEASED_EXIT_CODE: i32 = 125;

/// Put in front of the script, on its first line.
pub const SCRIPT_PREFIX: &str = "{ IFS= read -r cuttle_gate <&3 && [ \"$cuttle_gate\" = go ]; } 2>/dev/null || exit 125; exec 3<&-; unset cuttle_gate; ";

/// The agent's side of the gate: whether the script may run, or why not.
pub type Releaser = oneshot::Sender<Result<(), String>>;

/// The runner's side of the gate: the agent's word, then the pipe to pass it on.
#[derive(Debug)]
pub struct Release(oneshot::Receiver<Result<(), String>>);

impl Release {
    /// A gate and the sender that opens (or refuses) it.
    pub fn new() -> (Releaser, Release) {
        let (releaser, release) = oneshot::channel();
        (releaser, Release(release))
    }

    /// A gate already open (tests and callers with nothing to wait for).
    pub fn now() -> Release {
        let (releaser, release) = Release::new();
        let _ = releaser.send(Ok(()));
        release
    }

    /// Waits for the agent's word; `Err` is why the unit must not run.
    pub async fn wait(self) -> Result<(), String> {
        self.0.await.unwrap_or_else(|_| {
            Err("not started: the agent stopped before the unit's start was journaled".into())
        })
    }

    /// Waits for the agent's word and passes it to the shell through `pipe`; `Err` is why the
    /// script will not run (the shell then exits with [`NOT_RELEASED_EXIT_CODE`]).
    pub async fn pass_on(self, pipe: std::fs::File) -> Result<(), String> {
        self.wait().await?;
        (&pipe)
            .write_all(b"go\n")
            .map_err(|e| format!("not started: the script could not be released: {e}"))
    }
}

/// The two ends of a gate's pipe, both close-on-exec in the agent.
pub struct Pipe {
    /// Becomes the shell's fd 3 ([`Pipe::install_in_child`]); the agent closes its copy after
    /// the spawn.
    pub read: OwnedFd,
    /// Where the agent writes the release.
    pub write: std::fs::File,
}

impl Pipe {
    pub fn new() -> std::io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe {
            read,
            write: std::fs::File::from(write),
        })
    }

    /// The raw read end, for [`install_in_child`].
    pub fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

/// Makes `read_fd` the child's fd 3, open across exec. Runs between fork and exec: only
/// async-signal-safe calls.
pub fn install_in_child(read_fd: RawFd) -> std::io::Result<()> {
    // SAFETY: dup2 and fcntl are async-signal-safe and touch only descriptors of this child.
    let ok = unsafe {
        if read_fd == GATE_FD {
            // dup2 onto itself would leave close-on-exec set.
            libc::fcntl(GATE_FD, libc::F_SETFD, 0) != -1
        } else {
            libc::dup2(read_fd, GATE_FD) != -1
        }
    };
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
