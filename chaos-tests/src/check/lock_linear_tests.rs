//! Tests of the lock linearizability checker: hand-written histories (read from history events,
//! as a run records them), a broken-agent self-test at unit level, the bound on the search, and a
//! cross-check of the search against stateright's `LinearizabilityTester` on random small
//! histories, with a model written separately for it.

use super::*;
use crate::check::intervals::unit_runs;
use crate::history::{LockRef, LockStamp, Op, Stamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn op(t: u64, process: u32, f: &str, phase: OpPhase, key: &str, detail: &str) -> Event {
    Event::Op(Op {
        t_us: t,
        process,
        f: f.into(),
        phase,
        task: None,
        key: key.into(),
        detail: detail.into(),
    })
}

fn lstamp(edge: Edge, holder: &str, name: &str, capacity: u32, token: u64, t: u64) -> Event {
    Event::LockStamp(LockStamp {
        edge,
        holder: holder.into(),
        name: name.into(),
        capacity,
        token,
        t_us: t,
    })
}

/// A `cuttle lock run` that was invoked at `t.0`, ran its command over `t.1..t.2` and exited
/// at `t.3`, released (`ok`) or not (`info`).
fn lock_run(holder: &str, cap: u32, token: u64, t: [u64; 4], ok: bool) -> Vec<Event> {
    let (phase, detail) = if ok {
        (OpPhase::Ok, "")
    } else {
        (
            OpPhase::Info,
            "lease of lock \"a\" expired: stopping the command",
        )
    };
    let end = if ok { Edge::End } else { Edge::Term };
    vec![
        op(t[0], 9, "lock", OpPhase::Invoke, holder, "a"),
        lstamp(Edge::Start, holder, "a", cap, token, t[1]),
        lstamp(end, holder, "a", cap, token, t[2]),
        op(t[3], 9, "lock", phase, holder, detail),
    ]
}

fn verdict(history: &[Event]) -> Verdict {
    locks_linearizable(history, &unit_runs(history))
}

#[test]
fn holders_one_after_another_are_linearizable_and_counted() {
    let mut h = lock_run("w1", 1, 10, [0, 100, 200, 210], true);
    h.extend(lock_run("w2", 1, 12, [50, 250, 300, 310], true));
    // Invoked while w2 held it, granted after w2's release: token 13 is the next grant.
    h.extend(lock_run("w3", 1, 13, [260, 320, 400, 410], true));
    let v = verdict(&h);
    assert!(v.valid, "{v:?}");
    assert_eq!(v.checked, 6);
    assert!(v.notes[0].contains("3 lock runs"), "{v:?}");
}

#[test]
fn two_holders_overlapping_under_capacity_one_are_caught_and_named() {
    let mut h = lock_run("w1", 1, 10, [0, 100, 300, 310], true);
    h.extend(lock_run("w2", 1, 11, [50, 200, 400, 410], true));
    let v = verdict(&h);
    assert!(!v.valid);
    assert!(v.offenders[0].contains("not linearizable"), "{v:?}");
    assert!(
        v.offenders[0].contains("w1") && v.offenders[0].contains("w2"),
        "{v:?}"
    );
    // The same two holders fit a capacity of 2.
    let mut h = lock_run("w1", 2, 10, [0, 100, 300, 310], true);
    h.extend(lock_run("w2", 2, 11, [50, 200, 400, 410], true));
    assert!(verdict(&h).valid);
}

#[test]
fn tokens_going_backwards_in_real_time_are_caught_even_under_capacity_two() {
    // w1 was granted, ran and released before w2 was even asked for, yet has the larger token.
    let mut h = lock_run("w1", 2, 20, [0, 100, 200, 210], true);
    h.extend(lock_run("w2", 2, 15, [300, 400, 500, 510], true));
    let v = verdict(&h);
    assert!(!v.valid, "{v:?}");
    assert!(v.offenders[0].contains("token 15"), "{v:?}");
    // Concurrent asks may be granted in either order.
    let mut h = lock_run("w1", 2, 20, [0, 100, 200, 210], true);
    h.extend(lock_run("w2", 2, 15, [50, 150, 500, 510], true));
    assert!(verdict(&h).valid);
}

#[test]
fn a_release_before_its_acquire_is_not_linearizable() {
    let model = Semaphore { capacity: 1 };
    let ops = vec![
        Operation {
            call: 0,
            ret: Some(10),
            op: LockOp::Release { holder: 0 },
        },
        Operation {
            call: 20,
            ret: Some(30),
            op: LockOp::Acquire {
                holder: 0,
                token: 1,
            },
        },
    ];
    let outcome = wgl::check(&model, &ops, 1000);
    assert!(
        matches!(outcome, Outcome::NotLinearizable { stuck: 0, .. }),
        "{outcome:?}"
    );
    // Swap their times and it is fine.
    let ops = vec![
        Operation {
            call: 20,
            ret: Some(30),
            ..ops[0].clone()
        },
        Operation {
            call: 0,
            ret: Some(10),
            ..ops[1].clone()
        },
    ];
    assert!(matches!(
        wgl::check(&model, &ops, 1000),
        Outcome::Linearizable { .. }
    ));
}

#[test]
fn an_unconfirmed_release_may_come_late_but_never_inside_the_command() {
    // w1 lost its lease and stopped (`lterm` at 200, `info`): its release is unseen. w2 starts
    // at 250, after w1's command stopped: the expiry fits between them.
    let mut h = lock_run("w1", 1, 10, [0, 100, 200, 600], false);
    h.extend(lock_run("w2", 1, 11, [50, 250, 300, 310], true));
    assert!(verdict(&h).valid, "{:?}", verdict(&h));
    // w2 starts at 150, while w1's command still runs: no expiry can explain that.
    let mut h = lock_run("w1", 1, 10, [0, 100, 200, 600], false);
    h.extend(lock_run("w2", 1, 11, [50, 150, 300, 310], true));
    assert!(!verdict(&h).valid);
}

#[test]
fn a_contender_that_never_started_its_command_is_left_out() {
    let mut h = lock_run("w1", 1, 10, [0, 100, 300, 310], true);
    h.push(op(20, 8, "lock", OpPhase::Invoke, "w9", "a"));
    h.push(op(
        900,
        8,
        "lock",
        OpPhase::Info,
        "w9",
        "granted but not confirmed",
    ));
    let v = verdict(&h);
    assert!(v.valid);
    assert_eq!(v.checked, 2);
}

fn unit_stamp(edge: Edge, unit: u64, token: u64, t: u64) -> Event {
    Event::Stamp(Stamp {
        edge,
        target: format!("web0{unit}"),
        task: unit,
        unit,
        attempt: 1,
        token,
        exclusive: false,
        tag: "zeta/Production".into(),
        lock: Some(LockRef {
            name: "mig".into(),
            scope: "cluster".into(),
            capacity: 2,
        }),
        t_us: t,
    })
}

/// The self-test at unit level: an agent that reports its units finished at once (the unsafe
/// `early-finish` switch) frees the `mig` permit while the script still runs, so a third
/// holder starts under a capacity of 2. Its journal looks fine; the stamps do not.
#[test]
fn units_of_an_agent_that_reports_them_finished_early_are_caught_with_lock_runs() {
    let mut h = vec![
        unit_stamp(Edge::Start, 1, 30, 100),
        unit_stamp(Edge::Start, 2, 31, 110),
        unit_stamp(Edge::End, 1, 30, 700),
        unit_stamp(Edge::End, 2, 31, 710),
    ];
    h.extend(
        lock_run("w5", 2, 40, [50, 300, 500, 510], true)
            .into_iter()
            .map(|e| match e {
                Event::LockStamp(mut s) => {
                    s.name = "mig".into();
                    Event::LockStamp(s)
                }
                other => other,
            }),
    );
    let v = verdict(&h);
    assert!(!v.valid, "{v:?}");
    assert!(v.notes[0].contains("1 lock runs, 2 units"), "{v:?}");
    // With the units ended in time, the same grant is fine.
    for e in h.iter_mut() {
        if let Event::Stamp(s) = e {
            if s.edge == Edge::End {
                s.t_us -= 450;
            }
        }
    }
    assert!(verdict(&h).valid, "{:?}", verdict(&h));
}

#[test]
fn a_search_over_its_bound_is_unknown_and_not_valid() {
    let mut h = Vec::new();
    for i in 0..12u64 {
        // Twelve concurrent holders under capacity 12: many orders, one of them fine.
        h.extend(lock_run(
            &format!("w{i}"),
            12,
            100 - i,
            [0, 1000, 2000, 3000],
            true,
        ));
    }
    let locks = lock_histories(&h, &[]);
    let v = check_locks(&locks, 5);
    assert!(!v.valid);
    assert!(v.offenders[0].contains("unknown"), "{v:?}");
    assert!(check_locks(&locks, MAX_STATES).valid);
}

// ---- the cross-check against stateright -------------------------------------------------------

mod reference {
    //! A semaphore written again, for stateright, without sharing code with the checker's model.
    use stateright::semantics::SequentialSpec;

    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Call {
        Take(u32),
        Give(u32),
    }

    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Answer {
        Token(u64),
        Given,
        NoOp,
    }

    #[derive(Clone, Debug)]
    pub struct Sem {
        pub permits: usize,
        pub held_by: std::collections::BTreeSet<u32>,
        pub top: u64,
    }

    impl SequentialSpec for Sem {
        type Op = Call;
        type Ret = Answer;

        /// Only uncompleted operations are invoked without a result: an unseen give.
        fn invoke(&mut self, call: &Call) -> Answer {
            match call {
                Call::Give(h) if self.held_by.remove(h) => Answer::Given,
                _ => Answer::NoOp,
            }
        }

        fn is_valid_step(&mut self, call: &Call, answer: &Answer) -> bool {
            match (call, answer) {
                (Call::Take(h), Answer::Token(t)) => {
                    let ok = self.held_by.len() < self.permits
                        && !self.held_by.contains(h)
                        && *t > self.top;
                    if ok {
                        self.held_by.insert(*h);
                        self.top = *t;
                    }
                    ok
                }
                (Call::Give(h), Answer::Given) => self.held_by.remove(h),
                _ => false,
            }
        }
    }
}

/// Whether stateright finds `ops` linearizable under `capacity`.
fn stateright_says(capacity: u32, ops: &[Operation<LockOp>]) -> bool {
    use reference::{Answer, Call, Sem};
    use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
    let mut tester = LinearizabilityTester::new(Sem {
        permits: capacity as usize,
        held_by: Default::default(),
        top: 0,
    });
    // Calls before returns at equal times: spans that touch are concurrent, as in the checker.
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        events.push((o.call, false, i));
        if let Some(r) = o.ret {
            events.push((r, true, i));
        }
    }
    events.sort();
    for (_, is_return, i) in events {
        let (call, answer) = match ops[i].op {
            LockOp::Acquire { holder, token } => (Call::Take(holder), Answer::Token(token)),
            LockOp::Release { holder } => (Call::Give(holder), Answer::Given),
        };
        let done = if is_return {
            tester.on_return(i, answer).map(|_| ())
        } else {
            tester.on_invoke(i, call).map(|_| ())
        };
        done.expect("one operation per thread");
    }
    tester.serialized_history().is_some()
}

/// The checker's model without the eager releases, to cross-check that shortcut as well.
struct Plain(Semaphore);

impl Model for Plain {
    type State = SemState;
    type Op = LockOp;
    fn init(&self) -> SemState {
        self.0.init()
    }
    fn step(&self, state: &SemState, op: &LockOp) -> Option<SemState> {
        self.0.step(state, op)
    }
}

/// A random small history: a real sequential run of a semaphore with widened intervals around
/// each step's instant, then (when `mutate`) one change that may break it.
fn random_history(rng: &mut StdRng, mutate: bool) -> (u32, Vec<Operation<LockOp>>) {
    let mut capacity = rng.gen_range(1..=2);
    let holders = rng.gen_range(1..=4u32);
    let mut ops: Vec<Operation<LockOp>> = Vec::new();
    let mut held: Vec<u32> = Vec::new();
    let mut waiting: Vec<u32> = (0..holders).collect();
    let (mut now, mut token) = (0u64, 0u64);
    let mut acquire_at = BTreeMap::new();
    while !waiting.is_empty() || !held.is_empty() {
        now += 10;
        let take = !waiting.is_empty()
            && held.len() < capacity as usize
            && (held.is_empty() || rng.gen_bool(0.5));
        let op = if take {
            let h = waiting.remove(rng.gen_range(0..waiting.len()));
            token += rng.gen_range(1..=3);
            held.push(h);
            acquire_at.insert(h, now);
            LockOp::Acquire { holder: h, token }
        } else {
            let h = held.remove(rng.gen_range(0..held.len()));
            LockOp::Release { holder: h }
        };
        let call = now - rng.gen_range(0..=15).min(now);
        let ret = now + rng.gen_range(0..=15);
        let unseen = matches!(op, LockOp::Release { .. }) && rng.gen_bool(0.3);
        ops.push(Operation {
            call,
            ret: (!unseen).then_some(ret),
            op,
        });
    }
    let changes = if mutate { rng.gen_range(1..=3) } else { 0 };
    for _ in 0..changes {
        let i = rng.gen_range(0..ops.len());
        match rng.gen_range(0..4) {
            // Move one operation's span elsewhere.
            0 => {
                let at = rng.gen_range(0..=now + 20);
                ops[i].call = at;
                if let Some(r) = ops[i].ret.as_mut() {
                    *r = at + rng.gen_range(0..=15);
                }
            }
            // Give an acquire another token.
            1 => {
                let top = token_max(&ops);
                if let LockOp::Acquire { token, .. } = &mut ops[i].op {
                    *token = rng.gen_range(1..=top + 1);
                }
            }
            // Make a span tight around its end, so that it no longer overlaps its neighbours.
            2 => {
                if let Some(r) = ops[i].ret {
                    ops[i].call = r.saturating_sub(2).max(ops[i].call);
                }
            }
            // Lower the capacity.
            _ => capacity = (capacity - 1).max(1),
        }
    }
    (capacity, ops)
}

fn token_max(ops: &[Operation<LockOp>]) -> u64 {
    ops.iter()
        .filter_map(|o| match o.op {
            LockOp::Acquire { token, .. } => Some(token),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn the_search_agrees_with_stateright_on_random_small_histories() {
    let (mut yes, mut no) = (0, 0);
    for seed in 0..6_000u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mutate = seed % 3 != 0;
        let (capacity, ops) = random_history(&mut rng, mutate);
        let model = Semaphore { capacity };
        let ours = wgl::check(&model, &ops, 1_000_000);
        let plain = wgl::check(&Plain(model), &ops, 1_000_000);
        let theirs = stateright_says(capacity, &ops);
        let ours_yes = matches!(ours, Outcome::Linearizable { .. });
        assert!(
            !matches!(ours, Outcome::Unknown { .. }),
            "seed {seed}: unknown"
        );
        assert_eq!(
            ours_yes, theirs,
            "seed {seed}, capacity {capacity}: {ops:#?}\nours: {ours:?}"
        );
        assert_eq!(
            matches!(plain, Outcome::Linearizable { .. }),
            theirs,
            "seed {seed} without eager releases"
        );
        if !mutate {
            assert!(ours_yes, "seed {seed}: a real execution must linearize");
        }
        if let Outcome::Linearizable { order, .. } = &ours {
            // The order found is a legal run that respects real time and has every completed op.
            for (i, o) in ops.iter().enumerate() {
                assert!(
                    o.ret.is_none() || order.contains(&i),
                    "seed {seed}: {i} left out"
                );
            }
            let mut state = model.init();
            for (k, &i) in order.iter().enumerate() {
                state = model.step(&state, &ops[i].op).expect("legal step");
                for &j in &order[k + 1..] {
                    assert!(
                        ops[j].ret.is_none_or(|r| r >= ops[i].call),
                        "seed {seed}: {j} completed before {i} was invoked"
                    );
                }
            }
        }
        if theirs {
            yes += 1;
        } else {
            no += 1;
        }
    }
    // Both answers must be common, or the agreement says little.
    eprintln!("linearizable {yes}, not {no}");
    assert!(yes > 500 && no > 500, "linearizable {yes}, not {no}");
}
