//! The history of one run: what the clients asked and heard, what the nemesis did, what ran on
//! each target (the workload scripts' stamps and the agents' journals) and what the cluster said at
//! the end. It is written as JSON lines (`history.jsonl`, one [`Event`] per line) and it is all the
//! checkers read.
//!
//! Times are microseconds of the machine's wall clock (`CLOCK_REALTIME`) since the Unix epoch:
//! every process of a run lives on one machine, scripts read the same clock through bash's
//! `$EPOCHREALTIME`, and the agents' journals stamp `ts_ms` with it.

use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::Path;

/// One entry of the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A client operation: its invocation, then exactly one of ok, fail or info (unknown).
    Op(Op),
    /// A fault the nemesis injected (`start`) or healed (`end`).
    Fault {
        t_us: u64,
        phase: Phase,
        kind: String,
        on: Vec<String>,
    },
    /// A process the harness started, stopped, killed, paused or resumed (`node1`, `web03`).
    Process {
        t_us: u64,
        name: String,
        action: String,
    },
    /// A line a workload script wrote on its target.
    Stamp(Stamp),
    /// A line a `cuttle lock run` command of the workload wrote while it held its lock.
    LockStamp(LockStamp),
    /// One record of an agent's journal, as the agent wrote it.
    Journal {
        agent: String,
        record: serde_json::Value,
    },
    /// A task as the cluster reported it after the run (`cuttle task show`).
    Final(FinalTask),
    /// A fact about the run: `task_cap`, `healed` (the final heal), `quiescent` (value 1 when every
    /// task had ended), `liveness_bound_ms`, `end`.
    Marker { t_us: u64, what: String, value: u64 },
}

/// A client operation, Jepsen style.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub t_us: u64,
    /// The client thread that ran it; one operation at a time per process.
    pub process: u32,
    /// `submit`, `cancel`, `lock`, or the nemesis's `member-add` and `member-remove`.
    pub f: String,
    pub phase: OpPhase,
    /// The task submitted (on `ok`) or cancelled.
    #[serde(default)]
    pub task: Option<u64>,
    /// The holder name of a `lock` operation, the project of a `submit`.
    #[serde(default)]
    pub key: String,
    /// What the client printed, shortened.
    #[serde(default)]
    pub detail: String,
}

/// The phases of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpPhase {
    Invoke,
    /// It took effect.
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// It may or may not have taken effect (timeout, no quorum, connection lost).
    Info,
}

/// Start or end of a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Start,
    End,
}

/// Which edge of a run a stamp marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edge {
    Start,
    /// The script ran to its end.
    End,
    /// The script was stopped by SIGTERM (cancel, timeout, lease lost).
    Term,
}

/// A step lock or named lock as the workload declared it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LockRef {
    pub name: String,
    /// `target` or `cluster`.
    pub scope: String,
    pub capacity: u32,
}

/// `start|end|term TARGET TASK UNIT ATTEMPT TOKEN x|s TAG LOCK T_US`, written by a unit's script.
/// `x` marks a unit the workload submitted without bypass (it must run alone on its target);
/// `TAG` is the concurrency tag the task must hold; `LOCK` is `-` or `NAME:SCOPE:CAPACITY`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub edge: Edge,
    pub target: String,
    pub task: u64,
    pub unit: u64,
    pub attempt: u32,
    pub token: u64,
    pub exclusive: bool,
    pub tag: String,
    #[serde(default)]
    pub lock: Option<LockRef>,
    pub t_us: u64,
}

/// `lstart|lend|lterm HOLDER NAME CAPACITY TOKEN T_US`, written by a `cuttle lock run` command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockStamp {
    pub edge: Edge,
    pub holder: String,
    pub name: String,
    pub capacity: u32,
    pub token: u64,
    pub t_us: u64,
}

/// A task after the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalTask {
    pub t_us: u64,
    pub task: u64,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`, or `unknown` when it could not be
    /// read.
    pub state: String,
    #[serde(default)]
    pub units: Vec<FinalUnit>,
}

/// A unit of a task after the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalUnit {
    pub unit: u64,
    pub attempt: u32,
    pub target: String,
    pub state: String,
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("stamp line {line:?}: {why}")]
    Stamp { line: String, why: String },
}

fn bad(line: &str, why: &str) -> ParseError {
    ParseError::Stamp {
        line: line.to_string(),
        why: why.to_string(),
    }
}

fn edge(word: &str) -> Option<Edge> {
    match word {
        "start" | "lstart" => Some(Edge::Start),
        "end" | "lend" => Some(Edge::End),
        "term" | "lterm" => Some(Edge::Term),
        _ => None,
    }
}

fn number<T: std::str::FromStr>(line: &str, word: &str, what: &str) -> Result<T, ParseError> {
    word.parse()
        .map_err(|_| bad(line, &format!("{what} {word:?} is not a number")))
}

/// Reads one line of a target's stamp file.
pub fn parse_stamp(line: &str) -> Result<Stamp, ParseError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.len() != 10 {
        return Err(bad(line, "expected 10 fields"));
    }
    let edge = edge(words[0]).ok_or_else(|| bad(line, "unknown edge"))?;
    let lock = match words[8] {
        "-" => None,
        text => {
            let parts: Vec<&str> = text.split(':').collect();
            if parts.len() != 3 {
                return Err(bad(line, "lock is not NAME:SCOPE:CAPACITY"));
            }
            Some(LockRef {
                name: parts[0].to_string(),
                scope: parts[1].to_string(),
                capacity: number(line, parts[2], "capacity")?,
            })
        }
    };
    Ok(Stamp {
        edge,
        target: words[1].to_string(),
        task: number(line, words[2], "task")?,
        unit: number(line, words[3], "unit")?,
        attempt: number(line, words[4], "attempt")?,
        token: number(line, words[5], "token")?,
        exclusive: words[6] == "x",
        tag: words[7].to_string(),
        lock,
        t_us: number(line, words[9], "time")?,
    })
}

/// Reads one line of the lock stamp file.
pub fn parse_lock_stamp(line: &str) -> Result<LockStamp, ParseError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.len() != 6 {
        return Err(bad(line, "expected 6 fields"));
    }
    Ok(LockStamp {
        edge: edge(words[0]).ok_or_else(|| bad(line, "unknown edge"))?,
        holder: words[1].to_string(),
        name: words[2].to_string(),
        capacity: number(line, words[3], "capacity")?,
        token: number(line, words[4], "token")?,
        t_us: number(line, words[5], "time")?,
    })
}

/// The time of an event, when it has one of its own.
pub fn time_of(event: &Event) -> Option<u64> {
    match event {
        Event::Op(op) => Some(op.t_us),
        Event::Fault { t_us, .. } | Event::Process { t_us, .. } | Event::Marker { t_us, .. } => {
            Some(*t_us)
        }
        Event::Stamp(stamp) => Some(stamp.t_us),
        Event::LockStamp(stamp) => Some(stamp.t_us),
        Event::Journal { record, .. } => record["ts_ms"].as_u64().map(|ms| ms * 1000),
        Event::Final(task) => Some(task.t_us),
    }
}

/// Writes the history as JSON lines.
pub fn write(path: &Path, events: &[Event]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for event in events {
        serde_json::to_writer(&mut out, event)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Reads a history written by [`write`].
pub fn read(path: &Path) -> std::io::Result<Vec<Event>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
        .collect()
}

/// The shared, append-only history of a running run; every thread of the harness records into it.
#[derive(Clone, Debug, Default)]
pub struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<Event>>>);

impl Recorder {
    pub fn push(&self, event: Event) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }

    /// Records that `name` was started, killed, paused, ... now.
    pub fn process(&self, name: &str, action: &str) {
        self.push(Event::Process {
            t_us: now_us(),
            name: name.to_string(),
            action: action.to_string(),
        });
    }

    pub fn marker(&self, what: &str, value: u64) {
        self.push(Event::Marker {
            t_us: now_us(),
            what: what.to_string(),
            value,
        });
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The wall clock now, in microseconds.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_parse_and_refuse_nonsense() {
        let s = parse_stamp("start web01 3 7 1 42 x alpha/Production db:target:1 1700").unwrap();
        assert_eq!(
            (s.edge, s.task, s.unit, s.attempt, s.token),
            (Edge::Start, 3, 7, 1, 42)
        );
        assert!(s.exclusive);
        assert_eq!(s.lock.unwrap().capacity, 1);
        let s = parse_stamp("term web01 3 7 2 42 s t/p/Production - 1800").unwrap();
        assert_eq!((s.edge, s.exclusive, s.lock), (Edge::Term, false, None));
        assert!(parse_stamp("start web01 3 7").is_err());
        assert!(parse_stamp("begin web01 3 7 1 42 x a - 1").is_err());
        assert!(parse_stamp("start web01 3 seven 1 42 x a - 1").is_err());
        let l = parse_lock_stamp("lstart w1-3 chaos-a 1 99 1234").unwrap();
        assert_eq!((l.edge, l.token, l.capacity), (Edge::Start, 99, 1));
    }

    #[test]
    fn events_round_trip_through_json() {
        let events = vec![
            Event::Op(Op {
                t_us: 1,
                process: 2,
                f: "submit".into(),
                phase: OpPhase::Ok,
                task: Some(4),
                key: "alpha".into(),
                detail: String::new(),
            }),
            Event::Marker {
                t_us: 5,
                what: "task_cap".into(),
                value: 3,
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        write(&path, &events).unwrap();
        assert_eq!(read(&path).unwrap(), events);
    }
}
