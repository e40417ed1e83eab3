//! Property tests over random command sequences: after every command, the safety invariants hold;
//! at the end, letting every unit finish drains the queue completely; replicas agree byte for byte;
//! and the incremental lock table grants exactly what the from-scratch reference grants.

mod common;

use common::checked::Checked;
use common::workload::{command_for, drain, op_strategy, setup_commands, Op};
use cuttle_raft::sched::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Everything that must hold after any command. `events` are the command's decisions.
fn check_invariants(sched: &Scheduler<Checked>, events: &[Event], last_token: &mut u64) {
    sched.lock_table().check();
    let active: Vec<&Unit> = sched.units().filter(|u| u.is_active()).collect();

    // Target isolation: an exclusive unit is alone on its target; a target a task holds whole runs
    // only that task's units.
    let mut by_target: BTreeMap<TargetId, Vec<&Unit>> = BTreeMap::new();
    for u in &active {
        by_target.entry(u.target).or_default().push(u);
    }
    for (target, units) in &by_target {
        if units.iter().any(|u| u.exclusive) {
            assert_eq!(
                units.len(),
                1,
                "exclusive unit shares target {target:?}: {units:?}"
            );
        }
    }
    for task in sched
        .tasks()
        .filter(|t| t.hold_targets && matches!(t.phase, Phase::Running { .. }))
    {
        for target in task.plan.iter().flatten() {
            for u in by_target.get(target).into_iter().flatten() {
                assert_eq!(
                    u.task, task.id,
                    "task {} holds {target:?} whole, yet task {} runs there",
                    task.id, u.task
                );
            }
        }
    }

    // Concurrency tags: never two running tasks with one tag.
    let mut tags = BTreeSet::new();
    for task in sched
        .tasks()
        .filter(|t| matches!(t.phase, Phase::Running { .. }))
    {
        assert!(
            tags.insert(task.tag),
            "two running tasks share tag {:?}",
            task.tag
        );
    }

    // The cap: a command that admits a task leaves at most `task_cap` running.
    if events
        .iter()
        .any(|e| matches!(e, Event::TaskStarted { .. }))
    {
        assert!(
            sched.running_tasks() <= sched.settings().task_cap,
            "running tasks above the cap"
        );
    }
    let running = sched
        .tasks()
        .filter(|t| matches!(t.phase, Phase::Running { .. }))
        .count() as u32;
    let queued = sched.tasks().filter(|t| t.phase == Phase::Queued).count() as u32;
    assert_eq!(
        (running, queued),
        (sched.running_tasks(), sched.queued_tasks()),
        "task counters out of step"
    );

    // Parallelism per stage, agent capacity at dispatch, semaphores within capacity.
    let mut per_stage: BTreeMap<(TaskId, u16, UnitKind), u32> = BTreeMap::new();
    for u in &active {
        *per_stage.entry((u.task, u.step, u.kind)).or_default() += 1;
    }
    for ((task, step, kind), n) in per_stage {
        let t = sched.task(task).unwrap();
        let limit = match kind {
            UnitKind::Acquire => t.acquire_max_parallelism,
            UnitKind::Run => sched.process(t.process).unwrap().steps[step as usize].max_parallelism,
        };
        assert!(
            n <= limit,
            "task {task} step {step} runs {n} units, limit {limit}"
        );
    }
    for event in events {
        if let Event::UnitDispatched { target, .. } = event {
            let capacity = sched.target(*target).unwrap().capacity;
            assert!(
                by_target[target].len() as u32 <= capacity,
                "agent {target:?} above its capacity"
            );
        }
    }
    let mut named: BTreeMap<LockKey, u32> = BTreeMap::new();
    for u in &active {
        let t = sched.task(u.task).unwrap();
        if u.kind == UnitKind::Run {
            if let Some(lock) = &sched.process(t.process).unwrap().steps[u.step as usize].lock {
                let key = LockKey::Named(lock.name, lock.per_target.then_some(u.target));
                *named.entry(key).or_default() += 1;
            }
        }
    }
    for (_, lock) in sched.client_locks() {
        if lock.token.is_some() {
            *named
                .entry(LockKey::Named(lock.name, lock.target))
                .or_default() += 1;
        }
    }
    for (key, n) in named {
        let capacity = sched.lock_table().capacity(key).expect("held lock exists");
        assert!(n <= capacity, "{key:?} held {n} times, capacity {capacity}");
    }

    // Fencing tokens rise strictly.
    for event in events {
        let token = match event {
            Event::TaskStarted { token, .. }
            | Event::UnitDispatched { token, .. }
            | Event::LockGranted { token, .. } => token,
            _ => continue,
        };
        assert!(
            token.0 > *last_token,
            "fencing token {} after {}",
            token.0,
            last_token
        );
        *last_token = token.0;
    }
}

/// Concurrency-tag order: tasks with one tag start in submission order.
fn check_tag_fifo(sched: &Scheduler<Checked>) {
    let mut last_start: BTreeMap<Sym, (TaskId, u64)> = BTreeMap::new();
    let mut tasks: Vec<&Task> = sched.tasks().filter(|t| t.token.is_some()).collect();
    tasks.sort_by_key(|t| t.token);
    for t in tasks {
        if let Some((earlier, _)) = last_start.get(&t.tag) {
            assert!(
                *earlier < t.id,
                "task {} started before earlier task {earlier} of the same tag",
                t.id
            );
        }
        last_start.insert(t.tag, (t.id, t.token.unwrap().0));
    }
}

fn run(ops: &[Op]) {
    let mut sched: Scheduler<Checked> = Scheduler::default();
    let mut clock_ms = 1_000;
    let mut last_token = 0;
    for command in setup_commands() {
        sched.apply_one(clock_ms, command).expect("setup accepted");
    }
    for op in ops {
        let Some(command) = command_for(&sched, &mut clock_ms, op) else {
            continue;
        };
        // Rejections are allowed (removing a busy target, a stale unit); they must change nothing.
        let before = sched.lock_table().outstanding();
        match sched.apply_one(clock_ms, command) {
            Ok(events) => check_invariants(&sched, &events, &mut last_token),
            Err(_) => assert_eq!(before, sched.lock_table().outstanding()),
        }
    }
    check_tag_fifo(&sched);
    drain(&mut sched, &mut clock_ms, |s, _, events| {
        check_invariants(s, events, &mut last_token)
    });
    assert_eq!(
        sched.queued_tasks(),
        0,
        "tasks stuck in the queue after every unit finished"
    );
    assert_eq!(
        sched.running_tasks(),
        0,
        "tasks still running after every unit finished"
    );
    assert_eq!(
        sched.lock_table().outstanding(),
        0,
        "locks held or waited for at rest"
    );
    assert!(sched.lock_table().is_empty());
    check_tag_fifo(&sched);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    /// Safety after every command, drain at the end, and lockstep agreement with the reference.
    #[test]
    fn invariants_hold_and_queue_drains(ops in proptest::collection::vec(op_strategy(), 1..120)) {
        run(&ops);
    }

    /// Two replicas fed the same commands hold the same bytes; a replica restored from a snapshot
    /// taken half-way ends with the same bytes too.
    #[test]
    fn replicas_agree_byte_for_byte(ops in proptest::collection::vec(op_strategy(), 1..120)) {
        let mut a: Scheduler = Scheduler::default();
        let mut b: Scheduler = Scheduler::default();
        let mut restored: Option<Scheduler> = None;
        let (mut clock_a, mut clock_b) = (1_000, 1_000);
        for command in setup_commands() {
            a.apply_one(clock_a, command.clone()).unwrap();
            b.apply_one(clock_b, command).unwrap();
        }
        for (i, op) in ops.iter().enumerate() {
            if i == ops.len() / 2 {
                restored = Some(Scheduler::restore(&a.snapshot().unwrap()).unwrap());
            }
            let command = command_for(&a, &mut clock_a, op);
            let command_b = command_for(&b, &mut clock_b, op);
            prop_assert_eq!(&command, &command_b);
            let Some(command) = command else { continue };
            let ra = a.apply_one(clock_a, command.clone());
            let rb = b.apply_one(clock_b, command.clone());
            prop_assert_eq!(&ra, &rb);
            if let Some(r) = restored.as_mut() {
                prop_assert_eq!(r.apply_one(clock_a, command), ra);
            }
        }
        let bytes = a.snapshot().unwrap();
        prop_assert_eq!(&bytes, &b.snapshot().unwrap());
        if let Some(r) = restored {
            prop_assert_eq!(&bytes, &r.snapshot().unwrap());
        }
        let back = Scheduler::restore(&bytes).unwrap();
        prop_assert_eq!(bytes, back.snapshot().unwrap());
    }

    /// The differential test: the scheduler over the incremental table and over the reference table
    /// make the same decisions, grants included, in the same order.
    #[test]
    fn differential_same_grants_in_same_order(ops in proptest::collection::vec(op_strategy(), 1..150)) {
        let mut fast: Scheduler<FifoLockTable> = Scheduler::default();
        let mut reference: Scheduler<ReferenceLockTable> = Scheduler::default();
        let mut clock = 1_000;
        let mut clock_r = 1_000;
        for command in setup_commands() {
            prop_assert_eq!(fast.apply_one(clock, command.clone()), reference.apply_one(clock, command));
        }
        for op in &ops {
            let command = command_for(&fast, &mut clock, op);
            prop_assert_eq!(&command, &command_for(&reference, &mut clock_r, op));
            let Some(command) = command else { continue };
            prop_assert_eq!(fast.apply_one(clock, command.clone()), reference.apply_one(clock, command));
        }
    }
}

/// The random workload must reach every kind of wait, or the properties above prove little.
#[test]
fn workload_reaches_every_kind_of_wait() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut waits: BTreeMap<u8, usize> = BTreeMap::new();
    let mut events: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..60 {
        let ops = proptest::collection::vec(op_strategy(), 1..120)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let mut sched: Scheduler = Scheduler::default();
        let mut clock = 1_000;
        for command in setup_commands() {
            sched.apply_one(clock, command).unwrap();
        }
        for op in &ops {
            let Some(command) = command_for(&sched, &mut clock, op) else {
                continue;
            };
            for event in sched.apply_one(clock, command).unwrap_or_default() {
                let kind = match event {
                    Event::TaskStarted { .. } => "task started",
                    Event::UnitDispatched { .. } => "unit dispatched",
                    Event::UnitCancelRequested { .. } => "unit cancel requested",
                    Event::LockGranted { .. } => "lock granted",
                    Event::LockEnded { expired: true, .. } => "lease expired",
                    _ => continue,
                };
                *events.entry(kind).or_default() += 1;
            }
            let requests: Vec<ReqId> = sched
                .tasks()
                .filter(|t| t.phase == Phase::Queued)
                .map(|t| t.request)
                .chain(
                    sched
                        .units()
                        .filter(|u| u.state == UnitState::Waiting)
                        .map(|u| u.request),
                )
                .collect();
            for request in requests {
                let wait = sched
                    .explain_request(request)
                    .expect("a waiting request explains itself");
                *waits.entry(wait.lock.rank()).or_default() += 1;
            }
        }
    }
    for rank in 0..=5u8 {
        assert!(
            waits.get(&rank).copied().unwrap_or(0) >= 20,
            "rank {rank} waits seen: {waits:?}"
        );
    }
    for kind in [
        "task started",
        "unit dispatched",
        "unit cancel requested",
        "lock granted",
        "lease expired",
    ] {
        assert!(
            events.get(kind).copied().unwrap_or(0) >= 20,
            "{kind}: {events:?}"
        );
    }
}
