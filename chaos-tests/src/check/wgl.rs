//! A generic linearizability search: Wing & Gong's algorithm with Lowe's just-in-time
//! linearization and memoization of (linearized operations as a bitset, model state), as Knossos
//! and Porcupine do it. It owns only the search; what the operations mean is a [`Model`]'s
//! business (see `lock_linear.rs` for the lock model).
//!
//! A history is a set of operations, each with an invocation time and, when its outcome was
//! seen, a completion time. An operation without a completion (Jepsen's `info`) may take effect
//! at any point after its invocation, or never. Operation `a` precedes `b` in real time when `a`
//! completed strictly before `b` was invoked; operations whose spans touch or overlap are
//! concurrent. A history is linearizable when some total order of all completed operations, and
//! of any subset of the uncompleted ones, respects real-time precedence and is a legal run of the
//! model from its initial state.
//!
//! The search walks the list of call and return entries sorted by time. At a call entry it tries
//! to linearize that operation now (the model must accept it, and the pair (bitset, new state)
//! must be new); at a return entry of an unlinearized operation it must backtrack, because that
//! operation's deadline passed. Its cost is bounded by `max_states`: past it the answer is
//! [`Outcome::Unknown`], never a silent pass.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification: a state machine whose steps are operations with their observed
/// results. `step` returns the next state, or `None` when the operation cannot happen there.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Op: Debug;
    fn init(&self) -> Self::State;
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
    /// Whether linearizing `op` as early as the model and real time allow can never prevent a
    /// later step, so that the search need not try it later (a dominance argument the model
    /// must make; for the lock model, a release). Such operations are linearized as soon as
    /// they can be, without branching. The default is `false`.
    fn eager(&self, _op: &Self::Op) -> bool {
        false
    }
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<Op> {
    pub call: u64,
    /// `None`: never seen to complete; it may take effect after `call`, or never.
    pub ret: Option<u64>,
    pub op: Op,
}

/// The answer of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<State> {
    /// Some order works; `order` lists the indexes of the operations it linearized, in order.
    Linearizable { states: usize, order: Vec<usize> },
    /// No order works. `stuck` is the operation whose completion could not be reached at the
    /// deepest point of the search, `linearized` how many operations preceded it there, and
    /// `state` the model's state then.
    NotLinearizable {
        states: usize,
        linearized: usize,
        stuck: usize,
        state: State,
        /// Operations that could have been linearized next at that point but were refused.
        refused: Vec<usize>,
    },
    /// The search visited `states` states without an answer.
    Unknown { states: usize },
}

impl<S> Outcome<S> {
    pub fn states(&self) -> usize {
        match self {
            Outcome::Linearizable { states, .. }
            | Outcome::NotLinearizable { states, .. }
            | Outcome::Unknown { states } => *states,
        }
    }
}

/// One entry of the doubly linked list: a call or a return of operation `op`.
#[derive(Clone, Copy, Debug)]
struct Entry {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

/// Checks `history` against `model`, visiting at most `max_states` new (bitset, state) pairs.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Op>],
    max_states: usize,
) -> Outcome<M::State> {
    let n = history.len();
    let required = history.iter().filter(|o| o.ret.is_some()).count();
    // Entries sorted by time; at equal times calls first, so that touching spans are concurrent.
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (index, o) in history.iter().enumerate() {
        order.push((o.call, false, index));
        order.push((o.ret.unwrap_or(u64::MAX), true, index));
    }
    order.sort();
    // Index 0 is the head sentinel; entries are 1..=2n; `usize::MAX` ends the list.
    const END: usize = usize::MAX;
    let mut list = vec![Entry {
        op: usize::MAX,
        is_call: false,
        prev: END,
        next: if order.is_empty() { END } else { 1 },
    }];
    let mut call_of = vec![0; n];
    let mut ret_of = vec![0; n];
    for (position, (_, is_return, op)) in order.iter().enumerate() {
        let at = position + 1;
        list.push(Entry {
            op: *op,
            is_call: !is_return,
            prev: at - 1,
            next: if at == order.len() { END } else { at + 1 },
        });
        if *is_return {
            ret_of[*op] = at;
        } else {
            call_of[*op] = at;
        }
    }
    let unlink = |list: &mut Vec<Entry>, at: usize| {
        let (prev, next) = (list[at].prev, list[at].next);
        list[prev].next = next;
        if next != END {
            list[next].prev = prev;
        }
    };
    let relink = |list: &mut Vec<Entry>, at: usize| {
        let (prev, next) = (list[at].prev, list[at].next);
        list[prev].next = at;
        if next != END {
            list[next].prev = at;
        }
    };

    let words = n.div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut state = model.init();
    // Each frame: the operation linearized, the state before it, and whether it was forced.
    let mut stack: Vec<(usize, M::State, bool)> = Vec::new();
    let mut done_required = 0;
    let mut states = 0;
    let mut deepest: Option<(usize, usize, M::State, Vec<usize>)> = None;
    let mut refused_here: Vec<usize> = Vec::new();
    let mut entry = list[0].next;
    loop {
        if done_required == required {
            return Outcome::Linearizable {
                states,
                order: stack.iter().map(|(op, _, _)| *op).collect(),
            };
        }
        // A completed operation is left, so its return entry lies ahead: the walk stops there.
        assert!(entry != END, "the walk passed a pending return entry");
        let e = list[entry];
        if e.is_call {
            let op = e.op;
            let forced = model.eager(&history[op].op);
            match model.step(&state, &history[op].op) {
                None => {
                    refused_here.push(op);
                    entry = e.next;
                    continue;
                }
                Some(next) => {
                    linearized[op / 64] |= 1 << (op % 64);
                    if seen.insert((linearized.clone(), next.clone())) {
                        states += 1;
                        if states > max_states {
                            return Outcome::Unknown { states };
                        }
                        stack.push((op, std::mem::replace(&mut state, next), forced));
                        if history[op].ret.is_some() {
                            done_required += 1;
                        }
                        unlink(&mut list, call_of[op]);
                        unlink(&mut list, ret_of[op]);
                        refused_here.clear();
                        entry = list[0].next;
                        continue;
                    }
                    linearized[op / 64] &= !(1 << (op % 64));
                    if !forced {
                        entry = e.next;
                        continue;
                    }
                    // A forced operation whose next state already failed: this prefix fails.
                }
            }
        } else if deepest.as_ref().is_none_or(|d| stack.len() > d.0) {
            // A deadline passed: remember the deepest such point for the report.
            deepest = Some((stack.len(), e.op, state.clone(), refused_here.clone()));
        }
        // Backtrack: undo the last choice; undo forced steps too, since they had no alternative.
        refused_here.clear();
        loop {
            let Some((op, previous, forced)) = stack.pop() else {
                let (linearized, stuck, state, refused) =
                    deepest.unwrap_or((0, usize::MAX, model.init(), Vec::new()));
                return Outcome::NotLinearizable {
                    states,
                    linearized,
                    stuck,
                    state,
                    refused,
                };
            };
            state = previous;
            if history[op].ret.is_some() {
                done_required -= 1;
            }
            linearized[op / 64] &= !(1 << (op % 64));
            relink(&mut list, ret_of[op]);
            relink(&mut list, call_of[op]);
            if !forced {
                entry = list[call_of[op]].next;
                break;
            }
        }
    }
}
