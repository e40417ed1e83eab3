//! Turns the stamps of a history into intervals: when each unit attempt really ran on its target,
//! and when each `cuttle lock run` command really held its lock.
//!
//! A script stamps its start and its end (or SIGTERM). A script killed outright (SIGKILL of its
//! agent, which takes the script down through `PR_SET_PDEATHSIG`) leaves no end stamp; its end is
//! then bounded by the earliest of: the agent's journal `end` record of that attempt, the next kill
//! of that agent recorded by the harness. Without either it stays open to the end of the history,
//! which can only make a checker stricter, never blind.

use crate::history::{Edge, Event, LockRef};
use std::collections::BTreeMap;

/// One unit attempt on its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitRun {
    pub target: String,
    pub task: u64,
    pub unit: u64,
    pub attempt: u32,
    pub token: u64,
    pub exclusive: bool,
    pub tag: String,
    pub lock: Option<LockRef>,
    pub start_us: u64,
    pub end_us: u64,
    /// Whether the script stamped its own end.
    pub end_stamped: bool,
    /// How many start stamps this (unit, attempt) has: more than one is a duplicate run.
    pub starts: u32,
}

impl UnitRun {
    /// Whether the two runs were on at the same instant.
    pub fn overlaps(&self, other: &UnitRun) -> bool {
        overlaps((self.start_us, self.end_us), (other.start_us, other.end_us))
    }

    /// `unit 7 attempt 1 of task 3 on web01 [start, end]`, for verdicts.
    pub fn describe(&self) -> String {
        let end = if self.end_us == u64::MAX {
            "never ended".to_string()
        } else {
            self.end_us.to_string()
        };
        format!(
            "unit {} attempt {} of task {} on {} ({}, tag {}, token {}) ran {}..{}{}",
            self.unit,
            self.attempt,
            self.task,
            self.target,
            if self.exclusive {
                "exclusive"
            } else {
                "shared"
            },
            self.tag,
            self.token,
            self.start_us,
            end,
            if self.end_stamped {
                ""
            } else {
                " (end not stamped)"
            }
        )
    }
}

/// One holding of a named lock by a `cuttle lock run` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHold {
    pub holder: String,
    pub name: String,
    pub capacity: u32,
    pub token: u64,
    pub start_us: u64,
    pub end_us: u64,
}

/// Half-open overlap of two `[start, end)` spans.
pub fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Every unit attempt that stamped a start, ordered by start.
pub fn unit_runs(history: &[Event]) -> Vec<UnitRun> {
    let mut runs: BTreeMap<(u64, u32), UnitRun> = BTreeMap::new();
    let mut ends: BTreeMap<(u64, u32), u64> = BTreeMap::new();
    for event in history {
        let Event::Stamp(stamp) = event else { continue };
        let key = (stamp.unit, stamp.attempt);
        match stamp.edge {
            Edge::Start => {
                let run = runs.entry(key).or_insert_with(|| UnitRun {
                    target: stamp.target.clone(),
                    task: stamp.task,
                    unit: stamp.unit,
                    attempt: stamp.attempt,
                    token: stamp.token,
                    exclusive: stamp.exclusive,
                    tag: stamp.tag.clone(),
                    lock: stamp.lock.clone(),
                    start_us: stamp.t_us,
                    end_us: u64::MAX,
                    end_stamped: false,
                    starts: 0,
                });
                run.starts += 1;
                run.start_us = run.start_us.min(stamp.t_us);
            }
            Edge::End | Edge::Term => {
                let end = ends.entry(key).or_insert(stamp.t_us);
                *end = (*end).max(stamp.t_us);
            }
        }
    }
    let journal_ends = journal_ends(history);
    let kills = kills(history);
    for (key, run) in runs.iter_mut() {
        if let Some(end) = ends.get(key) {
            run.end_us = *end;
            run.end_stamped = true;
            continue;
        }
        let from_journal = journal_ends.get(key).copied();
        let from_kill = kills
            .get(&run.target)
            .and_then(|times| times.iter().find(|t| **t >= run.start_us).copied());
        run.end_us = [from_journal, from_kill]
            .into_iter()
            .flatten()
            .filter(|t| *t >= run.start_us)
            .min()
            .unwrap_or(u64::MAX);
    }
    let mut runs: Vec<UnitRun> = runs.into_values().collect();
    runs.sort_by_key(|r| (r.start_us, r.unit, r.attempt));
    runs
}

/// The journal's `end` time of each (unit, attempt), in microseconds.
fn journal_ends(history: &[Event]) -> BTreeMap<(u64, u32), u64> {
    let mut ends = BTreeMap::new();
    for event in history {
        let Event::Journal { record, .. } = event else {
            continue;
        };
        if record["event"] != "end" {
            continue;
        }
        let (Some(unit), Some(attempt), Some(ts)) = (
            record["unit"].as_u64(),
            record["attempt"].as_u64(),
            record["ts_ms"].as_u64(),
        ) else {
            continue;
        };
        // The journal has millisecond times: round up so that the bound stays an upper bound.
        ends.entry((unit, attempt as u32))
            .or_insert(ts * 1000 + 999);
    }
    ends
}

/// When each process was killed (kill -9) or stopped by the harness, in order.
fn kills(history: &[Event]) -> BTreeMap<String, Vec<u64>> {
    let mut kills: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for event in history {
        if let Event::Process { t_us, name, action } = event {
            if action == "kill" || action == "stop" {
                kills.entry(name.clone()).or_default().push(*t_us);
            }
        }
    }
    for times in kills.values_mut() {
        times.sort_unstable();
    }
    kills
}

/// Every lock holding that stamped a start, ordered by start. A holding without an end stamp ends
/// when its `lock` operation completed (the command cannot outlive `cuttle lock run`'s own end by
/// more than its stop grace, which the operation's completion already includes).
pub fn lock_holds(history: &[Event]) -> Vec<LockHold> {
    let mut holds: BTreeMap<String, LockHold> = BTreeMap::new();
    let mut op_ends: BTreeMap<String, u64> = BTreeMap::new();
    for event in history {
        match event {
            Event::LockStamp(stamp) => {
                let hold = holds
                    .entry(stamp.holder.clone())
                    .or_insert_with(|| LockHold {
                        holder: stamp.holder.clone(),
                        name: stamp.name.clone(),
                        capacity: stamp.capacity,
                        token: stamp.token,
                        start_us: u64::MAX,
                        end_us: u64::MAX,
                    });
                match stamp.edge {
                    Edge::Start => hold.start_us = hold.start_us.min(stamp.t_us),
                    Edge::End | Edge::Term => hold.end_us = stamp.t_us,
                }
            }
            Event::Op(op) if op.f == "lock" && op.phase != crate::history::OpPhase::Invoke => {
                op_ends.insert(op.key.clone(), op.t_us);
            }
            _ => {}
        }
    }
    let mut holds: Vec<LockHold> = holds
        .into_values()
        .filter(|h| h.start_us != u64::MAX)
        .map(|mut h| {
            if h.end_us == u64::MAX {
                h.end_us = op_ends.get(&h.holder).copied().unwrap_or(u64::MAX);
            }
            h
        })
        .collect();
    holds.sort_by_key(|h| (h.start_us, h.token));
    holds
}
