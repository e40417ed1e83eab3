//! The fencing guard: decides whether a `RunUnit` may start on this agent. Pure: no I/O, no clock.
//!
//! The cluster hands every grant a fencing token that rises across the cluster and across leaders.
//! A leader that was deposed, or a message that was delayed, can still deliver an old grant; the
//! guard refuses it when a newer grant was already accepted for one of the same locks. It also
//! keeps the isolation rules locally (an exclusive unit runs alone, at most `capacity` units run),
//! so a confused or stale cluster can never make this target run two deployments that exclude each
//! other. The journal replays its records into a guard after a restart, so the rules survive it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The (unit, attempt) pairs the guard remembers; the oldest are forgotten beyond this. The
/// cluster resends only units that have not ended, so a pair this old never comes back.
pub const SEEN_UNITS_MAX: usize = 1_000_000;

/// What the guard needs to know of a unit (the fields of `RunUnit` it looks at).
#[derive(Clone, Copy, Debug)]
pub struct FenceInput<'a> {
    /// The unit's id.
    pub unit: u64,
    /// The dispatch attempt.
    pub attempt: u32,
    /// The grant's fencing token.
    pub token: u64,
    /// The locks on this target the grant covers ("target", "lock:NAME").
    pub locks: &'a [String],
    /// Whether the unit holds the target's isolation lock exclusively.
    pub exclusive: bool,
}

impl<'a> From<&'a cuttle_proto::v1::RunUnit> for FenceInput<'a> {
    fn from(run: &'a cuttle_proto::v1::RunUnit) -> FenceInput<'a> {
        FenceInput {
            unit: run.unit,
            attempt: run.attempt,
            token: run.token,
            locks: &run.locks,
            exclusive: run.exclusive,
        }
    }
}

/// The guard's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// This (unit, attempt) was seen before (it runs, ran, or was refused): ignore it silently.
    Duplicate,
    /// Start it; the guard now counts it as running.
    Run,
    /// Do not start it; the reason starts with "refused: " and is what the agent reports.
    Refuse(String),
}

/// The guard's memory: the highest token accepted per lock, every (unit, attempt) seen, and what runs.
#[derive(Clone, Debug)]
pub struct Fence {
    capacity: u32,
    tokens_max: BTreeMap<String, u64>,
    seen: BTreeSet<(u64, u32)>,
    seen_order: VecDeque<(u64, u32)>,
    /// Running units and whether each is exclusive.
    running: BTreeMap<(u64, u32), bool>,
    refusals: u64,
}

impl Fence {
    /// A guard that lets at most `capacity` units run at once (the agent's `max_concurrency`).
    pub fn new(capacity: u32) -> Fence {
        assert!(capacity >= 1, "an agent runs at least one unit at once");
        Fence {
            capacity,
            tokens_max: BTreeMap::new(),
            seen: BTreeSet::new(),
            seen_order: VecDeque::new(),
            running: BTreeMap::new(),
            refusals: 0,
        }
    }

    /// Decides on `input`; `Run` marks it running, `Refuse` counts a refusal. Both mark it seen.
    pub fn admit(&mut self, input: &FenceInput<'_>) -> Admission {
        let key = (input.unit, input.attempt);
        if self.seen.contains(&key) {
            return Admission::Duplicate;
        }
        self.remember_seen(key);
        if let Some(reason) = self.refusal(input) {
            self.refusals += 1;
            return Admission::Refuse(reason);
        }
        self.accept_tokens(input.token, input.locks);
        self.running.insert(key, input.exclusive);
        Admission::Run
    }

    /// The first rule `input` breaks, as the sentence the agent reports.
    fn refusal(&self, input: &FenceInput<'_>) -> Option<String> {
        for lock in input.locks {
            if let Some(&newer) = self.tokens_max.get(lock) {
                if input.token < newer {
                    return Some(format!(
                        "refused: fencing token {} is older than token {newer} already accepted for lock {lock}",
                        input.token
                    ));
                }
            }
        }
        if input.exclusive {
            if let Some(&(unit, attempt)) = self.running.keys().next() {
                return Some(format!(
                    "refused: unit {} needs the target alone, but unit {unit} attempt {attempt} runs",
                    input.unit
                ));
            }
        } else if let Some((&(unit, attempt), _)) = self.running.iter().find(|(_, &ex)| ex) {
            return Some(format!(
                "refused: unit {unit} attempt {attempt} holds the target exclusively"
            ));
        }
        if self.running.len() >= self.capacity as usize {
            return Some(format!(
                "refused: {} units run already, the agent's capacity",
                self.running.len()
            ));
        }
        None
    }

    /// The unit ended (or never started after `Run`): it no longer counts as running.
    pub fn finish(&mut self, unit: u64, attempt: u32) {
        self.running.remove(&(unit, attempt));
    }

    /// Replays a journaled start: the unit was accepted with `token` for `locks` (it is not running).
    pub fn replay_accepted(&mut self, unit: u64, attempt: u32, token: u64, locks: &[String]) {
        let key = (unit, attempt);
        if !self.seen.contains(&key) {
            self.remember_seen(key);
        }
        self.accept_tokens(token, locks);
    }

    /// Replays a journaled refusal: the unit was seen, nothing was accepted.
    pub fn replay_refused(&mut self, unit: u64, attempt: u32) {
        let key = (unit, attempt);
        if !self.seen.contains(&key) {
            self.remember_seen(key);
        }
    }

    /// Units refused by this guard since it was made (for heartbeats).
    pub fn refusals(&self) -> u64 {
        self.refusals
    }

    /// The (unit, attempt) pairs running now, in id order.
    pub fn running(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.running.keys().copied()
    }

    /// The highest token accepted for `lock`, if any.
    pub fn token_max(&self, lock: &str) -> Option<u64> {
        self.tokens_max.get(lock).copied()
    }

    fn accept_tokens(&mut self, token: u64, locks: &[String]) {
        for lock in locks {
            let max = self.tokens_max.entry(lock.clone()).or_insert(token);
            *max = (*max).max(token);
        }
    }

    fn remember_seen(&mut self, key: (u64, u32)) {
        self.seen.insert(key);
        self.seen_order.push_back(key);
        while self.seen_order.len() > SEEN_UNITS_MAX {
            if let Some(old) = self.seen_order.pop_front() {
                // A running unit stays seen, or a resend of it would start it twice.
                if self.running.contains_key(&old) {
                    self.seen_order.push_back(old);
                } else {
                    self.seen.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input(unit: u64, token: u64, locks: &[String], exclusive: bool) -> FenceInput<'_> {
        FenceInput {
            unit,
            attempt: 1,
            token,
            locks,
            exclusive,
        }
    }

    fn target() -> Vec<String> {
        vec!["target".to_string()]
    }

    #[test]
    fn a_new_unit_runs_and_a_second_delivery_is_a_duplicate() {
        let mut fence = Fence::new(1);
        let locks = target();
        assert_eq!(fence.admit(&input(1, 5, &locks, true)), Admission::Run);
        assert_eq!(
            fence.admit(&input(1, 5, &locks, true)),
            Admission::Duplicate
        );
        fence.finish(1, 1);
        assert_eq!(
            fence.admit(&input(1, 5, &locks, true)),
            Admission::Duplicate
        );
        assert_eq!(fence.refusals(), 0);
    }

    #[test]
    fn a_new_attempt_of_the_same_unit_is_not_a_duplicate() {
        let mut fence = Fence::new(1);
        let locks = target();
        assert_eq!(fence.admit(&input(1, 5, &locks, true)), Admission::Run);
        fence.finish(1, 1);
        let again = FenceInput {
            attempt: 2,
            ..input(1, 6, &locks, true)
        };
        assert_eq!(fence.admit(&again), Admission::Run);
    }

    #[test]
    fn an_older_token_for_a_lock_is_refused_and_counted() {
        let mut fence = Fence::new(4);
        let locks = target();
        assert_eq!(fence.admit(&input(1, 9, &locks, false)), Admission::Run);
        assert_eq!(
            fence.admit(&input(2, 7, &locks, false)),
            Admission::Refuse(
                "refused: fencing token 7 is older than token 9 already accepted for lock target"
                    .into()
            )
        );
        assert_eq!(fence.refusals(), 1);
        // The refused unit is remembered: a resend is ignored, not refused again.
        assert_eq!(
            fence.admit(&input(2, 7, &locks, false)),
            Admission::Duplicate
        );
        assert_eq!(fence.refusals(), 1);
    }

    #[test]
    fn tokens_are_compared_per_lock() {
        let mut fence = Fence::new(4);
        let step_lock = vec!["lock:iis".to_string()];
        let both = vec!["target".to_string(), "lock:iis".to_string()];
        assert_eq!(fence.admit(&input(1, 9, &step_lock, false)), Admission::Run);
        // A lower token on another lock is fine ...
        assert_eq!(fence.admit(&input(2, 4, &target(), false)), Admission::Run);
        // ... but not when it also names the lock that saw 9.
        let refused = fence.admit(&input(3, 8, &both, false));
        assert_eq!(
            refused,
            Admission::Refuse(
                "refused: fencing token 8 is older than token 9 already accepted for lock lock:iis"
                    .into()
            )
        );
        assert_eq!(fence.token_max("lock:iis"), Some(9));
        assert_eq!(fence.token_max("target"), Some(4));
    }

    #[test]
    fn an_equal_token_is_not_older() {
        let mut fence = Fence::new(4);
        let locks = target();
        assert_eq!(fence.admit(&input(1, 9, &locks, false)), Admission::Run);
        assert_eq!(fence.admit(&input(2, 9, &locks, false)), Admission::Run);
    }

    #[test]
    fn an_exclusive_unit_is_refused_while_another_runs() {
        let mut fence = Fence::new(4);
        let locks = target();
        assert_eq!(fence.admit(&input(1, 1, &locks, false)), Admission::Run);
        let answer = fence.admit(&input(2, 2, &locks, true));
        assert_eq!(
            answer,
            Admission::Refuse(
                "refused: unit 2 needs the target alone, but unit 1 attempt 1 runs".into()
            )
        );
        // The refusal accepted no token: an older grant for the lock still runs later.
        assert_eq!(fence.token_max("target"), Some(1));
    }

    #[test]
    fn a_shared_unit_is_refused_while_an_exclusive_one_runs() {
        let mut fence = Fence::new(4);
        let locks = target();
        assert_eq!(fence.admit(&input(1, 1, &locks, true)), Admission::Run);
        assert_eq!(
            fence.admit(&input(2, 2, &locks, false)),
            Admission::Refuse("refused: unit 1 attempt 1 holds the target exclusively".into())
        );
        fence.finish(1, 1);
        assert_eq!(fence.admit(&input(3, 3, &locks, false)), Admission::Run);
    }

    #[test]
    fn no_more_than_capacity_units_run() {
        let mut fence = Fence::new(2);
        let locks = target();
        assert_eq!(fence.admit(&input(1, 1, &locks, false)), Admission::Run);
        assert_eq!(fence.admit(&input(2, 2, &locks, false)), Admission::Run);
        assert_eq!(
            fence.admit(&input(3, 3, &locks, false)),
            Admission::Refuse("refused: 2 units run already, the agent's capacity".into())
        );
        fence.finish(2, 1);
        assert_eq!(fence.admit(&input(4, 4, &locks, false)), Admission::Run);
        assert_eq!(fence.running().collect::<Vec<_>>(), vec![(1, 1), (4, 1)]);
    }

    #[test]
    fn replayed_records_restore_tokens_and_duplicates() {
        let mut fence = Fence::new(1);
        fence.replay_accepted(1, 1, 9, &target());
        fence.replay_refused(2, 1);
        assert_eq!(fence.running().count(), 0);
        assert_eq!(
            fence.admit(&input(1, 9, &target(), true)),
            Admission::Duplicate
        );
        assert_eq!(
            fence.admit(&input(2, 10, &target(), true)),
            Admission::Duplicate
        );
        assert!(matches!(
            fence.admit(&input(3, 8, &target(), true)),
            Admission::Refuse(_)
        ));
        assert_eq!(fence.admit(&input(4, 10, &target(), true)), Admission::Run);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Admit {
            unit: u64,
            token: u64,
            locks: Vec<String>,
            exclusive: bool,
        },
        Finish(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let lock = prop_oneof![Just("target"), Just("lock:a"), Just("lock:b")];
        prop_oneof![
            3 => (0u64..30, 0u64..40, proptest::collection::vec(lock, 0..3), any::<bool>()).prop_map(
                |(unit, token, locks, exclusive)| Op::Admit {
                    unit,
                    token,
                    locks: locks.into_iter().map(String::from).collect(),
                    exclusive,
                }
            ),
            2 => (0usize..8).prop_map(Op::Finish),
        ]
    }

    proptest! {
        #[test]
        fn random_sequences_keep_exclusivity_capacity_and_token_order(
            capacity in 1u32..4,
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let mut fence = Fence::new(capacity);
            let mut running: BTreeMap<u64, bool> = BTreeMap::new();
            let mut accepted: BTreeMap<String, u64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Admit { unit, token, locks, exclusive } => {
                        let answer = fence.admit(&input(unit, token, &locks, exclusive));
                        if answer == Admission::Run {
                            for lock in &locks {
                                if let Some(&max) = accepted.get(lock) {
                                    prop_assert!(token >= max, "token {token} after {max} on {lock}");
                                }
                                accepted.insert(lock.clone(), token.max(*accepted.get(lock).unwrap_or(&0)));
                            }
                            running.insert(unit, exclusive);
                        }
                    }
                    Op::Finish(index) => {
                        if let Some(&unit) = running.keys().nth(index) {
                            running.remove(&unit);
                            fence.finish(unit, 1);
                        }
                    }
                }
                let exclusive = running.values().filter(|&&ex| ex).count();
                prop_assert!(exclusive == 0 || running.len() == 1, "{running:?}");
                prop_assert!(running.len() <= capacity as usize);
                prop_assert_eq!(fence.running().count(), running.len());
            }
        }
    }
}
