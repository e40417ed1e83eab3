//! The agent's local journal: what it started, spawned, ended and refused; a start is durable
//! before the agent acts on it.
//!
//! # Format
//!
//! JSON Lines: one object per line, UTF-8, each line ending in `\n`, each written with one
//! `write_all`. A start (and a refusal) is then made durable with `sync_data` (fsync) *before* the
//! script's process is spawned: that is what keeps a unit attempt from running twice across agent
//! restarts. `spawned` and `end` lines are written beside the work and not synced on their own
//! (the next start's fsync, the kernel's writeback or the agent's stop makes them durable): a
//! killed agent loses nothing it wrote (the page cache holds it), and a machine that crashes first
//! restarts with the unit started and not ended, which is handled as below. Their fsyncs would
//! otherwise hold the journal while the next unit's start waits to be journaled, and load the disk
//! the servers' own log fsyncs share. An agent restarted with a unit started and not ended treats
//! it as interrupted (journaling exit code -2) and reports an end the cluster ignores, as it
//! already recorded the real one. Field names are stable (the chaos
//! checker reads them); new fields may be added.
//!
//! | `event` | fields | written |
//! |---|---|---|
//! | `"start"` | `ts_ms`, unit fields | before the unit's process is spawned |
//! | `"spawned"` | `ts_ms`, `unit`, `attempt`, `pgid` | right after the spawn |
//! | `"end"` | `ts_ms`, unit fields, `exit_code`, `reason` | when the unit ended, beside the report |
//! | `"refused"` | `ts_ms`, unit fields, `reason` | when the fencing guard refused a unit |
//!
//! The unit fields are `unit`, `attempt`, `task`, `project`, `environment`, `tenant` (empty when
//! untenanted), `target` (the agent's name), `step`, `token` (the fencing token), `locks` (array of
//! strings) and `exclusive` (bool). `ts_ms` is the agent's wall clock in milliseconds since the
//! Unix epoch; `pgid` is the process group of the unit's shell; `exit_code` follows
//! `UnitFinished.exit_code` (128 + N for signal N, -1 when the script never ran, -2 when an agent
//! restart interrupted it). Example:
//!
//! ```text
//! {"event":"start","ts_ms":1700000000000,"unit":7,"attempt":1,"task":3,"project":"shop","environment":"Production","tenant":"","target":"web01","step":"deploy","token":42,"locks":["target"],"exclusive":true}
//! {"event":"spawned","ts_ms":1700000000003,"unit":7,"attempt":1,"pgid":31337}
//! {"event":"end","ts_ms":1700000004211,"unit":7,"attempt":1,"task":3,"project":"shop","environment":"Production","tenant":"","target":"web01","step":"deploy","token":42,"locks":["target"],"exclusive":true,"exit_code":0,"reason":""}
//! ```
//!
//! # Replay
//!
//! [`Journal::open`] reads an existing journal back: it restores the fencing guard (the highest
//! token per lock, every unit seen), and treats each unit that started but never ended as
//! interrupted. A leftover process group of such a unit is killed (only when one of its processes
//! carries the unit's `CUTTLE_UNIT_ID` and `CUTTLE_UNIT_ATTEMPT`), and an end with exit code -2 is
//! journaled for it. A torn last line (a crash mid-write) is cut off with a warning; any other
//! malformed line is an error naming the file and the line. The journal is locked (`flock`) while
//! an agent has it open, so two agents never share one.

use crate::agent::fence::Fence;
use crate::agent::process;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The ends reported again at start-up, most recent last: they cover a report lost when the agent
/// died before sending it (the cluster ignores duplicates).
pub const RECENT_ENDS_MAX: usize = 1_000;

/// The reason journaled and reported for a unit that an agent restart interrupted.
pub const INTERRUPTED_REASON: &str = "interrupted by an agent restart";

/// The exit code journaled and reported for a unit that an agent restart interrupted.
pub const INTERRUPTED_EXIT_CODE: i32 = -2;

/// What identifies a unit in the journal; flattened into `start`, `end` and `refused` lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRecord {
    pub unit: u64,
    pub attempt: u32,
    pub task: u64,
    pub project: String,
    pub environment: String,
    pub tenant: String,
    pub target: String,
    pub step: String,
    pub token: u64,
    pub locks: Vec<String>,
    pub exclusive: bool,
}

impl UnitRecord {
    /// The record of `run` on the agent called `target`.
    pub fn of(run: &cuttle_proto::v1::RunUnit, target: &str) -> UnitRecord {
        UnitRecord {
            unit: run.unit,
            attempt: run.attempt,
            task: run.task,
            project: run.project.clone(),
            environment: run.environment.clone(),
            tenant: run.tenant.clone(),
            target: target.to_string(),
            step: run.step.clone(),
            token: run.token,
            locks: run.locks.clone(),
            exclusive: run.exclusive,
        }
    }
}

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Record {
    Start {
        ts_ms: u64,
        #[serde(flatten)]
        unit: UnitRecord,
    },
    Spawned {
        ts_ms: u64,
        unit: u64,
        attempt: u32,
        pgid: i32,
    },
    End {
        ts_ms: u64,
        #[serde(flatten)]
        unit: UnitRecord,
        exit_code: i32,
        reason: String,
    },
    Refused {
        ts_ms: u64,
        #[serde(flatten)]
        unit: UnitRecord,
        reason: String,
    },
}

/// A unit's end as reported to the cluster (`UnitFinished` without its report id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    pub unit: u64,
    pub attempt: u32,
    pub exit_code: i32,
    pub reason: String,
}

/// What [`Journal::open`] found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Units that started and never ended; now journaled as ended with exit code -2.
    pub interrupted: Vec<Ended>,
    /// The last [`RECENT_ENDS_MAX`] ends and refusals, oldest first (interrupted units included).
    pub recent_ends: Vec<Ended>,
    /// Leftover process groups of interrupted units that were killed.
    pub groups_killed: Vec<i32>,
}

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("journal {path} line {line}: {reason}; repair or move the file away (an agent with an empty journal forgets which units it ran and which fencing tokens it saw)")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("journal {path} is open in another agent process: run one agent per journal (set journal_path or work_dir apart)")]
    InUse { path: PathBuf },
}

/// The open journal; appends are durable when they return.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Opens (or creates) the journal at `path`, replays it into `fence`, and deals with the units
    /// an earlier agent left running (see the module doc). `now_ms` stamps the ends it journals.
    pub fn open(
        path: &Path,
        fence: &mut Fence,
        now_ms: u64,
    ) -> Result<(Journal, Replay), JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor we own; it is released when the file is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(JournalError::InUse {
                path: path.to_path_buf(),
            });
        }
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io)?;
        let mut journal = Journal {
            path: path.to_path_buf(),
            file,
        };
        let records = journal.parse(&text)?;
        let replay = journal.replay(records, fence, now_ms)?;
        Ok((journal, replay))
    }

    /// Parses every line; cuts a torn last line off the file.
    fn parse(&mut self, text: &[u8]) -> Result<Vec<Record>, JournalError> {
        let mut records = Vec::new();
        let mut offset = 0usize;
        let mut number = 0usize;
        while offset < text.len() {
            number += 1;
            let end = text[offset..].iter().position(|&b| b == b'\n');
            let line = &text[offset..offset + end.unwrap_or(text.len() - offset)];
            let parsed = if line.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                Some(serde_json::from_slice::<Record>(line))
            };
            match (parsed, end) {
                (None, _) => {}
                (Some(Ok(record)), _) => records.push(record),
                (Some(Err(error)), None) => {
                    // Only the last line can be torn: each line is one write, fsynced before the next.
                    tracing::warn!(
                        journal = %self.path.display(),
                        line = number,
                        "skipping a torn last line (the agent stopped while writing it): {error}"
                    );
                    self.truncate(offset as u64)?;
                    return Ok(records);
                }
                (Some(Err(error)), Some(_)) => {
                    return Err(JournalError::Malformed {
                        path: self.path.clone(),
                        line: number,
                        reason: error.to_string(),
                    })
                }
            }
            match end {
                Some(end) => offset += end + 1,
                None => {
                    // A complete record that lost only its newline: complete the line.
                    self.write_durably(b"\n")?;
                    offset = text.len();
                }
            }
        }
        Ok(records)
    }

    fn truncate(&mut self, length: u64) -> Result<(), JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.set_len(length).map_err(io)?;
        self.file.seek(SeekFrom::End(0)).map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    fn replay(
        &mut self,
        records: Vec<Record>,
        fence: &mut Fence,
        now_ms: u64,
    ) -> Result<Replay, JournalError> {
        let mut open: BTreeMap<(u64, u32), (UnitRecord, Option<i32>)> = BTreeMap::new();
        let mut recent: VecDeque<Ended> = VecDeque::new();
        let mut push_recent = |ended: Ended| {
            recent.push_back(ended);
            if recent.len() > RECENT_ENDS_MAX {
                recent.pop_front();
            }
        };
        for record in records {
            match record {
                Record::Start { unit, .. } => {
                    fence.replay_accepted(unit.unit, unit.attempt, unit.token, &unit.locks);
                    open.insert((unit.unit, unit.attempt), (unit, None));
                }
                Record::Spawned {
                    unit,
                    attempt,
                    pgid,
                    ..
                } => {
                    if let Some(entry) = open.get_mut(&(unit, attempt)) {
                        entry.1 = Some(pgid);
                    }
                }
                Record::End {
                    unit,
                    exit_code,
                    reason,
                    ..
                } => {
                    open.remove(&(unit.unit, unit.attempt));
                    push_recent(ended(&unit, exit_code, reason));
                }
                Record::Refused { unit, reason, .. } => {
                    fence.replay_refused(unit.unit, unit.attempt);
                    push_recent(ended(&unit, -1, reason));
                }
            }
        }
        let mut replay = Replay::default();
        for (unit, pgid) in open.into_values() {
            // Without a `spawned` record (the agent died right after the spawn), the groups are
            // found by the unit's environment instead.
            let groups = match pgid {
                Some(pgid) => vec![pgid],
                None => process::unit_groups(unit.unit, unit.attempt),
            };
            for pgid in groups {
                match process::kill_leftover_unit(pgid, unit.unit, unit.attempt) {
                    Ok(true) => {
                        tracing::warn!(
                            unit = unit.unit,
                            attempt = unit.attempt,
                            pgid,
                            "killed the process group an earlier agent left running"
                        );
                        replay.groups_killed.push(pgid);
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::error!(unit = unit.unit, pgid,
                        "could not kill the process group an earlier agent left running: {error}")
                    }
                }
            }
            self.append(&Record::End {
                ts_ms: now_ms,
                unit: unit.clone(),
                exit_code: INTERRUPTED_EXIT_CODE,
                reason: INTERRUPTED_REASON.to_string(),
            })?;
            let end = ended(&unit, INTERRUPTED_EXIT_CODE, INTERRUPTED_REASON.to_string());
            replay.interrupted.push(end.clone());
            push_recent(end);
        }
        replay.recent_ends = recent.into();
        Ok(replay)
    }

    /// Appends `record` as one line and fsyncs it; when this returns `Ok`, the record is durable.
    pub fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).expect("journal records always serialise");
        line.push(b'\n');
        self.write_durably(&line)
    }

    /// Appends `record` as one line without an fsync of its own: it survives the agent's death
    /// (the page cache holds it) and becomes durable with the next [`Journal::append`] or
    /// [`Journal::sync`].
    pub fn append_unsynced(&mut self, record: &Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).expect("journal records always serialise");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Makes every line written so far durable.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn write_durably(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        self.file
            .write_all(bytes)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.sync()
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn ended(unit: &UnitRecord, exit_code: i32, reason: String) -> Ended {
    Ended {
        unit: unit.unit,
        attempt: unit.attempt,
        exit_code,
        reason,
    }
}

/// The journal shared with the async agent: appends run on tokio's blocking pool so an fsync never
/// stalls the runtime's workers, and each append is awaited before the action it records.
#[derive(Clone, Debug)]
pub struct JournalHandle(Arc<Mutex<Journal>>);

impl JournalHandle {
    pub fn new(journal: Journal) -> JournalHandle {
        JournalHandle(Arc::new(Mutex::new(journal)))
    }

    /// Appends `record` durably.
    pub async fn append(&self, record: Record) -> Result<(), JournalError> {
        self.with(move |journal| journal.append(&record)).await
    }

    /// Appends `record` without an fsync of its own ([`Journal::append_unsynced`]).
    pub async fn append_unsynced(&self, record: Record) -> Result<(), JournalError> {
        self.with(move |journal| journal.append_unsynced(&record))
            .await
    }

    /// Makes every line written so far durable.
    pub async fn sync(&self) -> Result<(), JournalError> {
        self.with(Journal::sync).await
    }

    async fn with(
        &self,
        io: impl FnOnce(&mut Journal) -> Result<(), JournalError> + Send + 'static,
    ) -> Result<(), JournalError> {
        let journal = self.0.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut journal = journal
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            io(&mut journal)
        });
        match done.await {
            Ok(result) => result,
            Err(join) => Err(JournalError::Io {
                path: self.path(),
                source: std::io::Error::other(join.to_string()),
            }),
        }
    }

    /// The journal's file.
    pub fn path(&self) -> PathBuf {
        let journal = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        journal.path().to_path_buf()
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
