//! Linearizability of the named locks, checked with the search of [`super::wgl`] against a
//! sequential model of a counting lock. It owns the model, the reading of lock operations out of
//! a history, and the `locks-linearizable` verdict.
//!
//! # The model
//!
//! A named lock of the cluster is a semaphore of capacity `c` (every user of a name declares the
//! same capacity, semantics U4). Its state is the set of holders and the last fencing token it
//! granted. Two operations:
//! - `acquire(h) -> t`: allowed when fewer than `c` hold it, `h` does not, and `t` is larger than
//!   every token granted before (tokens come from one sequence of the replicated log, F1, so they
//!   rise in the order the grants take effect; tokens granted to other locks leave gaps);
//! - `release(h)`: allowed when `h` holds it; `h` no longer does.
//!
//! Each name is checked on its own (P-compositionality: a history is linearizable when the
//! sub-history of every object is), which keeps the search small.
//!
//! # What the history must show, and why the windows are sound
//!
//! The object under test is the lock *as its user sees it*: the cluster together with the client
//! that holds a lease for a command (`cuttle lock run`) or the agent that holds a unit's step
//! lock. Each holding gives two operations:
//!
//! | operation | invoked | completed |
//! |---|---|---|
//! | acquire, lock run | the `lock` op's invocation | the `lstart` stamp (the command starts only after the grant is confirmed) |
//! | release, lock run | the `lend`/`lterm` stamp (`lstart` if the command left none) | the `lock` op's `ok`, when `cuttle` exited 0 and did not say `could not release`; otherwise never seen |
//! | acquire, unit with a cluster step lock | the invocation of the `submit` that created its task (0 when unknown) | the unit's `start` stamp |
//! | release, unit | the unit's end, as [`super::intervals`] bounds it (its start when unbounded) | never seen |
//!
//! A holding whose command or script never started (no start stamp) is left out: it may or may
//! not have been granted, and an acquire that may be left out can only make the search easier,
//! so dropping it loses nothing a checker could use. An operation never seen to complete may take
//! effect at any point after its invocation, or never (Jepsen's `info`).
//!
//! **Lease expiry.** The cluster also ends a holding on its own when the lease runs out. The
//! model does not add a free `expire(h)` step: an expiry *is* a release, and it is folded into the
//! release operation, whose window opens only when the command or script stopped. The contract of
//! the lock is that a holder's command runs only while the cluster counts it as a holder: the
//! client stops its command a third of a lease before the lease can run out, and an agent stops
//! its scripts before the cluster declares it lost. So an expiry *inside* the run of a command is
//! not a legal step of the model but a violation, and that is exactly what bug 1 was. Letting the
//! checker expire a holder anywhere would make the capacity part vacuous: any overlap could be
//! explained by expiring someone. What the history cannot bound is how late after the command
//! the expiry comes, and that is what an unseen completion expresses.
//!
//! What the check adds to `locks-within-capacity` and `lock-tokens-rise`: tokens must rise in an
//! order that also respects real time and capacity for every capacity, with units and lock runs
//! together (for example, a holder of `mig` that was granted, ran and released entirely before
//! another was asked for must carry the smaller token).
//!
//! # Cost
//!
//! The search visits at most [`MAX_STATES`] (bitset, state) pairs per lock. Past that the verdict
//! is *unknown*, and unknown counts as a failure: a property that could not be checked is not
//! known to hold. Releases are linearized eagerly (see [`Model::eager`]): releasing earlier
//! only frees capacity and leaves tokens alone, so it can never prevent a later step.

use super::intervals::UnitRun;
use super::wgl::{self, Model, Operation, Outcome};
use super::{Findings, Verdict};
use crate::history::{Edge, Event, OpPhase};
use std::collections::BTreeMap;

/// The search gives up on one lock after this many states. Each state keeps a bitset of the
/// lock's operations, so this bounds the memory too: a few hundred MB for a lock of 1,000
/// operations.
pub const MAX_STATES: usize = 1_000_000;

/// An operation of the lock model; holders are numbered per lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockOp {
    Acquire { holder: u32, token: u64 },
    Release { holder: u32 },
}

/// The state of a semaphore: its holders (sorted) and the last token granted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct SemState {
    pub holders: Vec<u32>,
    pub last_token: u64,
}

/// A semaphore of `capacity` permits that hands out rising tokens.
#[derive(Clone, Copy, Debug)]
pub struct Semaphore {
    pub capacity: u32,
}

impl Model for Semaphore {
    type State = SemState;
    type Op = LockOp;

    fn init(&self) -> SemState {
        SemState::default()
    }

    fn step(&self, state: &SemState, op: &LockOp) -> Option<SemState> {
        match *op {
            LockOp::Acquire { holder, token } => {
                let at = state.holders.binary_search(&holder).err()?;
                if state.holders.len() >= self.capacity as usize || token <= state.last_token {
                    return None;
                }
                let mut next = state.clone();
                next.holders.insert(at, holder);
                next.last_token = token;
                Some(next)
            }
            LockOp::Release { holder } => {
                let at = state.holders.binary_search(&holder).ok()?;
                let mut next = state.clone();
                next.holders.remove(at);
                Some(next)
            }
        }
    }

    fn eager(&self, op: &LockOp) -> bool {
        matches!(op, LockOp::Release { .. })
    }
}

/// The operations on one lock, with a description of each holder for verdicts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockHistory {
    pub capacity: u32,
    /// Every capacity declared for the name (more than one is itself a finding).
    pub capacities: Vec<u32>,
    pub ops: Vec<Operation<LockOp>>,
    /// `holders[h]` describes holder `h`.
    pub holders: Vec<String>,
    pub lock_runs: usize,
    pub units: usize,
}

impl LockHistory {
    fn holding(&mut self, who: String, acquire: (u64, u64, u64), release: (u64, Option<u64>)) {
        let holder = self.holders.len() as u32;
        self.holders.push(who);
        let (call, ret, token) = acquire;
        self.ops.push(Operation {
            call,
            ret: Some(ret),
            op: LockOp::Acquire { holder, token },
        });
        self.ops.push(Operation {
            call: release.0,
            ret: release.1,
            op: LockOp::Release { holder },
        });
    }

    /// `lock run w3-7 acquire (token 12) over 100..200`, for verdicts.
    pub fn describe(&self, index: usize) -> String {
        let Some(o) = self.ops.get(index) else {
            return "nothing".to_string();
        };
        let ret = o.ret.map_or("unseen".to_string(), |r| r.to_string());
        match o.op {
            LockOp::Acquire { holder, token } => format!(
                "{} acquire (token {token}) over {}..{ret}",
                self.holders[holder as usize], o.call
            ),
            LockOp::Release { holder } => format!(
                "{} release over {}..{ret}",
                self.holders[holder as usize], o.call
            ),
        }
    }
}

/// One `cuttle lock run` as the history shows it.
#[derive(Default)]
struct RunSeen {
    invoked: Option<u64>,
    completed: Option<(OpPhase, u64, bool)>,
    started: Option<(u64, u64, String, u32)>,
    ended: Option<u64>,
}

/// The lock operations of `history`, per lock name of cluster scope: `cuttle lock run` holdings
/// and units whose step lock has cluster scope.
pub fn lock_histories(history: &[Event], runs: &[UnitRun]) -> BTreeMap<String, LockHistory> {
    let mut seen: BTreeMap<String, RunSeen> = BTreeMap::new();
    let mut submit_invoked: BTreeMap<u32, u64> = BTreeMap::new();
    let mut task_submitted: BTreeMap<u64, u64> = BTreeMap::new();
    for event in history {
        match event {
            Event::Op(op) if op.f == "lock" => {
                let run = seen.entry(op.key.clone()).or_default();
                if op.phase == OpPhase::Invoke {
                    run.invoked = Some(op.t_us);
                } else {
                    // `cuttle` prints this when its release call failed: the lease ends later.
                    // A shortened message may have hidden it, so it counts as unconfirmed too.
                    let released = op.phase == OpPhase::Ok
                        && !op.detail.contains("could not release")
                        && !op.detail.ends_with("...");
                    run.completed = Some((op.phase, op.t_us, released));
                }
            }
            Event::Op(op) if op.f == "submit" => match (op.phase, op.task) {
                (OpPhase::Invoke, _) => {
                    submit_invoked.insert(op.process, op.t_us);
                }
                (OpPhase::Ok, Some(task)) => {
                    if let Some(t) = submit_invoked.get(&op.process) {
                        task_submitted.insert(task, *t);
                    }
                }
                _ => {}
            },
            Event::LockStamp(stamp) => {
                let run = seen.entry(stamp.holder.clone()).or_default();
                match stamp.edge {
                    Edge::Start => {
                        if run.started.as_ref().is_none_or(|s| stamp.t_us < s.0) {
                            run.started =
                                Some((stamp.t_us, stamp.token, stamp.name.clone(), stamp.capacity));
                        }
                    }
                    Edge::End | Edge::Term => {
                        run.ended = Some(run.ended.map_or(stamp.t_us, |e| e.max(stamp.t_us)));
                    }
                }
            }
            _ => {}
        }
    }
    let mut locks: BTreeMap<String, LockHistory> = BTreeMap::new();
    for (holder, run) in &seen {
        let Some((start, token, name, capacity)) = run.started.clone() else {
            continue;
        };
        let lock = locks.entry(name).or_default();
        lock.capacities.push(capacity);
        lock.lock_runs += 1;
        let release_call = run.ended.unwrap_or(start).max(start);
        let release_ret = match run.completed {
            Some((OpPhase::Ok, t, true)) => Some(t.max(release_call)),
            _ => None,
        };
        lock.holding(
            format!("lock run {holder}"),
            (run.invoked.unwrap_or(0).min(start), start, token),
            (release_call, release_ret),
        );
    }
    for run in runs {
        let Some(step_lock) = run.lock.as_ref().filter(|l| l.scope == "cluster") else {
            continue;
        };
        let lock = locks.entry(step_lock.name.clone()).or_default();
        lock.capacities.push(step_lock.capacity);
        lock.units += 1;
        let submitted = task_submitted.get(&run.task).copied().unwrap_or(0);
        let end = if run.end_us == u64::MAX {
            run.start_us
        } else {
            run.end_us
        };
        lock.holding(
            format!(
                "unit {} attempt {} of task {} on {}",
                run.unit, run.attempt, run.task, run.target
            ),
            (submitted.min(run.start_us), run.start_us, run.token),
            (end, None),
        );
    }
    for lock in locks.values_mut() {
        lock.capacities.sort_unstable();
        lock.capacities.dedup();
        // Several declared capacities: the largest is the one least likely to cry wolf.
        lock.capacity = lock.capacities.last().copied().unwrap_or(1);
    }
    locks
}

/// Every named lock of cluster scope linearizes as a semaphore of its capacity with rising tokens.
pub fn locks_linearizable(history: &[Event], runs: &[UnitRun]) -> Verdict {
    check_locks(&lock_histories(history, runs), MAX_STATES)
}

/// [`locks_linearizable`] on lock histories already read, with a bound on the search.
pub fn check_locks(locks: &BTreeMap<String, LockHistory>, max_states: usize) -> Verdict {
    let mut findings = Findings::new(
        "locks-linearizable",
        "the grants and releases of each named lock linearize as a semaphore of its capacity whose tokens rise",
    );
    for (name, lock) in locks {
        findings.checked(lock.ops.len());
        if lock.capacities.len() > 1 {
            findings.violation(format!(
                "lock {name} was declared with capacities {:?}",
                lock.capacities
            ));
        }
        let model = Semaphore {
            capacity: lock.capacity,
        };
        let outcome = wgl::check(&model, &lock.ops, max_states);
        let what = match &outcome {
            Outcome::Linearizable { .. } => "linearizable".to_string(),
            Outcome::Unknown { states } => {
                findings.violation(format!(
                    "lock {name}: the search gave up after {states} states over {} operations: unknown, which does not count as valid",
                    lock.ops.len()
                ));
                "unknown".to_string()
            }
            Outcome::NotLinearizable {
                linearized,
                stuck,
                state,
                refused,
                ..
            } => {
                let holders: Vec<String> = state
                    .holders
                    .iter()
                    .map(|h| lock.holders[*h as usize].clone())
                    .collect();
                let refused: Vec<String> =
                    refused.iter().take(5).map(|i| lock.describe(*i)).collect();
                findings.violation(format!(
                    "lock {name} (capacity {}) is not linearizable: at best {linearized} of {} operations linearize, then {} cannot take effect before it completed; holders then: [{}], last token {}; refused there: [{}]",
                    lock.capacity,
                    lock.ops.len(),
                    lock.describe(*stuck),
                    holders.join("; "),
                    state.last_token,
                    refused.join("; ")
                ));
                "NOT linearizable".to_string()
            }
        };
        findings.note(format!(
            "lock {name} (capacity {}): {} operations ({} lock runs, {} units), {what}, {} search states",
            lock.capacity,
            lock.ops.len(),
            lock.lock_runs,
            lock.units,
            outcome.states()
        ));
    }
    findings.verdict()
}

#[cfg(test)]
#[path = "lock_linear_tests.rs"]
mod tests;
