//! The lifecycle of tasks, units, targets and client locks, one behaviour per test, with the
//! exact events and messages users and operators see.

mod common;

use common::{target, task, Harness};
use cuttle_raft::sched::*;

fn one_target(capacity: u32) -> Harness {
    let mut h: Harness = Harness::new();
    h.add_target(target("web01", &["Production"], &["web"], &[], capacity));
    h
}

fn cap(h: &mut Harness, cap: u32) {
    h.ok(Command::SetSettings(SettingsPatch {
        task_cap: Some(cap),
        ..Default::default()
    }));
}

#[test]
fn a_failed_unit_fails_its_task_skips_waiting_units_and_stops_running_ones() {
    let mut h: Harness = Harness::new();
    for name in ["w1", "w2", "w3"] {
        h.add_target(target(name, &["Production"], &["web"], &[], 1));
    }
    let mut spec = task("shop", "Production", &[("deploy", "web"), ("smoke", "web")]);
    spec.steps[0].max_parallelism = 2;
    let t = h.submit(spec);
    let active: Vec<UnitId> = h.active_units().iter().map(|u| u.id).collect();
    assert_eq!(active.len(), 2, "parallelism 2 of 3 targets");
    let events = h.finish(active[0], 3);
    assert!(events.contains(&Event::UnitEnded {
        unit: active[0],
        outcome: UnitOutcome::Failed { exit_code: 3 }
    }));
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::UnitEnded {
                outcome: UnitOutcome::Skipped,
                ..
            }
        )),
        "the waiting unit is skipped"
    );
    assert!(events.contains(&Event::UnitCancelRequested {
        unit: active[1],
        target: h.sched.unit(active[1]).unwrap().target
    }));
    assert!(
        matches!(
            h.phase(t),
            Phase::Running {
                stopping: Some(_),
                ..
            }
        ),
        "ends once the running unit stopped"
    );
    let events = h.finish(active[1], 143);
    assert!(events.contains(&Event::UnitEnded {
        unit: active[1],
        outcome: UnitOutcome::Cancelled
    }));
    assert_eq!(
        h.phase(t),
        Phase::Ended(TaskOutcome::Failed {
            reason: format!("unit {} on w1 failed with exit code 3", active[0])
        })
    );
    assert!(h.sched.lock_table().is_empty(), "every lock released");
    assert!(
        h.sched.units().all(|u| u.step == 0),
        "the second step never started"
    );
}

#[test]
fn cancelling_a_queued_task_removes_it_from_every_queue() {
    let mut h = one_target(1);
    let a = h.submit(task("shop", "Production", &[("deploy", "web")]));
    let b = h.submit(task("shop", "Production", &[("deploy", "web")]));
    let c = h.submit(task("shop", "Production", &[("deploy", "web")]));
    let events = h.ok(Command::CancelTask { task: b });
    assert_eq!(
        events,
        vec![Event::TaskEnded {
            task: b,
            outcome: TaskOutcome::Cancelled
        }]
    );
    let wait = h.sched.explain_task(c).unwrap();
    assert_eq!((wait.position, wait.queue_len), (1, 1), "c moved up");
    h.finish_task_unit(a);
    assert_eq!(h.active_tasks(), vec![c]);
    assert_eq!(
        h.apply(Command::CancelTask { task: b }),
        Err(Rejection::TaskEnded(b))
    );
    assert_eq!(
        h.apply(Command::CancelTask { task: TaskId(99) })
            .unwrap_err()
            .to_string(),
        "unknown task 99: it never existed or ended long enough ago to be forgotten"
    );
}

#[test]
fn cancelling_a_running_task_stops_its_units_and_ends_when_they_report() {
    let mut h = one_target(1);
    let t = h.submit(task("shop", "Production", &[("deploy", "web")]));
    let unit = h.active_unit_of(t);
    let events = h.ok(Command::CancelTask { task: t });
    assert_eq!(
        events,
        vec![Event::UnitCancelRequested {
            unit,
            target: TargetId(0)
        }]
    );
    assert_eq!(
        h.ok(Command::CancelTask { task: t }),
        vec![],
        "a second cancel asks nothing new"
    );
    let events = h.finish(unit, 143);
    assert_eq!(
        events,
        vec![
            Event::UnitEnded {
                unit,
                outcome: UnitOutcome::Cancelled
            },
            Event::TaskEnded {
                task: t,
                outcome: TaskOutcome::Cancelled
            }
        ]
    );
}

#[test]
fn a_lost_agent_fails_its_units_releases_their_locks_and_takes_no_new_units() {
    let mut h: Harness = Harness::new();
    h.add_target(target("web01", &["Production"], &["web"], &[], 1));
    h.add_target(target("web02", &["Production"], &["web"], &[], 1));
    let a = h.submit(task("shop", "Production", &[("deploy", "web")]));
    let b = h.submit(task("blog", "Production", &[("deploy", "web")]));
    assert_eq!(h.active_tasks(), vec![a], "b waits for both targets");
    let events = h.ok(Command::AgentLost {
        name: "web01".into(),
    });
    assert!(events.contains(&Event::TargetLost {
        target: TargetId(0)
    }));
    assert!(
        matches!(
            h.phase(a),
            Phase::Running {
                stopping: Some(_),
                ..
            }
        ),
        "a's unit on web02 still runs"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::UnitEnded {
            outcome: UnitOutcome::TargetLost,
            ..
        }
    )));
    h.finish_task_unit(a);
    assert_eq!(
        h.phase(a),
        Phase::Ended(TaskOutcome::Failed {
            reason: "target web01 was lost while unit 1 waited or ran".into()
        })
    );
    // b was planned on both targets; its waiting unit on web01 failed with the loss.
    assert!(matches!(
        h.phase(b),
        Phase::Ended(TaskOutcome::Failed { .. })
            | Phase::Running {
                stopping: Some(_),
                ..
            }
    ));
    // A task submitted now plans around the lost target.
    let c = h.submit(task("docs", "Production", &[("deploy", "web")]));
    for u in h.active_units().iter().map(|u| u.id).collect::<Vec<_>>() {
        h.finish(u, 0);
    }
    assert_eq!(h.phase(c), Phase::Ended(TaskOutcome::Succeeded));
    assert!(h
        .sched
        .units()
        .filter(|u| u.task == c)
        .all(|u| u.target == TargetId(1)));
    // The agent registers again: it takes units again.
    h.add_target(target("web01", &["Production"], &["web"], &[], 1));
    assert!(h.sched.target(TargetId(0)).unwrap().online);
}

#[test]
fn unit_reports_are_idempotent_and_stale_ones_are_refused() {
    let mut h = one_target(1);
    let t = h.submit(task("shop", "Production", &[("deploy", "web")]));
    let unit = h.active_unit_of(t);
    h.ok(Command::UnitStarted { unit, attempt: 1 });
    h.ok(Command::UnitStarted { unit, attempt: 1 });
    assert_eq!(
        h.sched.unit(unit).unwrap().state,
        UnitState::Running {
            cancel_requested: false
        }
    );
    assert_eq!(
        h.apply(Command::UnitFinished {
            unit,
            attempt: 2,
            exit_code: 0
        })
        .unwrap_err()
        .to_string(),
        "unit 1 is at attempt 1, not 2: the report is stale"
    );
    assert_eq!(h.finish(unit, 0).len(), 2, "unit ended and task ended");
    assert_eq!(
        h.finish(unit, 0),
        vec![],
        "reported again (to a new leader): recorded once"
    );
    assert_eq!(
        h.finish(unit, 1),
        vec![],
        "a conflicting late report changes nothing"
    );
    assert_eq!(h.phase(t), Phase::Ended(TaskOutcome::Succeeded));
    assert_eq!(
        h.apply(Command::UnitStarted {
            unit: UnitId(77),
            attempt: 1
        }),
        Err(Rejection::UnknownUnit(UnitId(77)))
    );
}

#[test]
fn whole_task_hold_keeps_other_tasks_off_its_targets_between_steps() {
    let mut h = one_target(4);
    let mut holder = task(
        "iis-config",
        "Production",
        &[("stop", "web"), ("configure", "web"), ("start", "web")],
    );
    holder.hold_targets = true;
    let mut other = task("shop", "Production", &[("deploy", "web")]);
    other.bypass = BypassRule::always(true);
    let first = h.submit(other.clone());
    let hold = h.submit(holder);
    assert_eq!(
        h.phase(hold),
        Phase::Queued,
        "the hold waits until the target is free"
    );
    assert_eq!(
        h.sched.describe(&h.sched.explain_task(hold).unwrap()),
        "waiting for target web01: task 1 holds it shared (position 1 of 1)"
    );
    h.finish_task_unit(first);
    assert!(matches!(h.phase(hold), Phase::Running { .. }));
    let second = h.submit(other);
    for _step in 0..3 {
        assert_eq!(
            h.active_tasks(),
            vec![hold],
            "nothing else runs on the held target between steps"
        );
        h.finish_task_unit(hold);
    }
    assert_eq!(h.phase(hold), Phase::Ended(TaskOutcome::Succeeded));
    assert_eq!(h.active_tasks(), vec![second]);
}

#[test]
fn packages_are_acquired_with_their_own_parallelism_before_the_step_runs() {
    let mut h: Harness = Harness::new();
    for i in 0..5 {
        h.add_target(target(
            &format!("web{i}"),
            &["Production"],
            &["web"],
            &[],
            4,
        ));
    }
    let mut spec = task("shop", "Production", &[("deploy", "web")]);
    spec.steps[0].package = Some("shop.zip".into());
    spec.steps[0].max_parallelism = 3;
    spec.acquire_max_parallelism = 2;
    spec.bypass = BypassRule::always(true);
    let t = h.submit(spec);
    let mut peak = (0, 0);
    let mut order = Vec::new();
    while !h.active_units().is_empty() {
        let kinds: Vec<UnitKind> = h.active_units().iter().map(|u| u.kind).collect();
        let acquire = kinds.iter().filter(|k| **k == UnitKind::Acquire).count();
        assert!(
            acquire == 0 || acquire == kinds.len(),
            "acquire and run stages do not overlap"
        );
        peak.0 = peak.0.max(acquire);
        peak.1 = peak.1.max(kinds.len() - acquire);
        let unit = h.active_units()[0].id;
        order.push(h.sched.unit(unit).unwrap().kind);
        h.finish(unit, 0);
    }
    assert_eq!(
        peak,
        (2, 3),
        "2 acquisitions at once (Acquire.MaxParallelism), 3 runs (Action.MaxParallelism)"
    );
    assert_eq!(order.iter().filter(|k| **k == UnitKind::Acquire).count(), 5);
    assert_eq!(h.phase(t), Phase::Ended(TaskOutcome::Succeeded));
}

#[test]
fn a_concurrency_tag_override_serialises_a_hosting_group() {
    let mut h: Harness = Harness::new();
    h.add_target(target("host1", &["Production"], &["web"], &["a", "b"], 4));
    h.add_target(target("host2", &["Production"], &["web"], &["c"], 4));
    let spec = |tenant: &str| {
        let mut spec = task("site", "Production", &[("deploy", "web")]);
        spec.tenant = Some(tenant.into());
        spec.bypass = BypassRule::always(true);
        spec.concurrency_tag = Some("hosting-group-1".into());
        spec
    };
    let a = h.submit(spec("a"));
    let b = h.submit(spec("b"));
    let c = h.submit(spec("c"));
    assert_eq!(
        h.active_tasks(),
        vec![a],
        "one tenant of the group at a time"
    );
    h.finish_task_unit(a);
    assert_eq!(h.active_tasks(), vec![b]);
    h.finish_task_unit(b);
    assert_eq!(h.active_tasks(), vec![c]);
}

#[test]
fn the_task_cap_changes_at_run_time_and_zero_pauses_admission() {
    let mut h = one_target(10);
    cap(&mut h, 0);
    let mut spec = task("p", "Production", &[("deploy", "web")]);
    spec.bypass = BypassRule::always(true);
    let tasks: Vec<TaskId> = (0..3)
        .map(|i| {
            h.submit(TaskSpec {
                project: format!("p{i}"),
                ..spec.clone()
            })
        })
        .collect();
    assert_eq!(h.sched.running_tasks(), 0, "cap 0 pauses admission");
    cap(&mut h, 2);
    assert_eq!(
        h.active_tasks(),
        tasks[..2].to_vec(),
        "earliest submitted first"
    );
    cap(&mut h, 1);
    h.finish_task_unit(tasks[0]);
    assert_eq!(
        h.active_tasks(),
        vec![tasks[1]],
        "lowering the cap revokes nothing and admits nothing above it"
    );
    h.finish_task_unit(tasks[1]);
    assert_eq!(h.active_tasks(), vec![tasks[2]]);
}

#[test]
fn a_task_waiting_for_its_tag_does_not_hold_back_a_free_slot() {
    let mut h = one_target(10);
    cap(&mut h, 2);
    let mut spec = task("shop", "Production", &[("deploy", "web")]);
    spec.bypass = BypassRule::always(true);
    let first = h.submit(spec.clone());
    let same_tag = h.submit(spec.clone());
    let other = h.submit(TaskSpec {
        project: "blog".into(),
        ..spec
    });
    assert_eq!(
        h.active_tasks(),
        vec![first, other],
        "blog takes the free slot while shop's second deployment waits for its tag"
    );
    assert_eq!(
        h.sched.describe(&h.sched.explain_task(same_tag).unwrap()),
        "waiting for concurrency tag shop/Production: task 1 holds it exclusively (position 1 of 1)"
    );
}

#[test]
fn a_step_without_targets_fails_the_task_at_admission_with_the_reason() {
    let mut h = one_target(1);
    let mut spec = task(
        "shop",
        "Production",
        &[("deploy", "web"), ("migrate", "db")],
    );
    spec.tenant = None;
    let t = h.submit(spec.clone());
    assert_eq!(
        h.phase(t),
        Phase::Ended(TaskOutcome::Failed {
            reason: "step migrate has no online target with role db in environment Production"
                .into()
        })
    );
    assert!(
        h.sched.lock_table().is_empty(),
        "its tag and cap slot were released"
    );
    spec.tenant = Some("acme".into());
    let t = h.submit(spec);
    assert_eq!(
        h.phase(t),
        Phase::Ended(TaskOutcome::Failed {
            reason: "step deploy has no online target with role web in environment Production serving tenant acme".into()
        })
    );
}

#[test]
fn explanations_name_the_parallelism_limit_and_the_agent_slot() {
    let mut h: Harness = Harness::new();
    h.add_target(target("w1", &["Production"], &["web"], &[], 1));
    h.add_target(target("w2", &["Production"], &["web"], &[], 1));
    let mut spec = task("shop", "Production", &[("deploy", "web")]);
    spec.steps[0].max_parallelism = 1;
    spec.bypass = BypassRule::always(true);
    let t = h.submit(spec.clone());
    assert_eq!(h.explain_task_units(t), vec!["waiting for step deploy's parallelism limit of 1: 1 unit of the step runs (position 1 of 1)"]);
    spec.steps[0].max_parallelism = 10;
    let u = h.submit(TaskSpec {
        project: "blog".into(),
        ..spec
    });
    assert_eq!(
        h.explain_task_units(u),
        vec!["waiting for a free slot on agent w1: task 1 holds it (position 1 of 1)"]
    );
}

#[test]
fn named_locks_are_fifo_fenced_and_leased() {
    let mut h = one_target(1);
    let spec = |holder: &str| LockSpec {
        name: "db-migrations".into(),
        target: None,
        capacity: 1,
        holder: holder.into(),
        ttl_ms: 1_000,
    };
    let first = h.ok(Command::AcquireLock(spec("ci-1")));
    let [Event::LockQueued { request: r1 }, Event::LockGranted {
        request: g1,
        token: t1,
    }] = first[..]
    else {
        panic!("{first:?}")
    };
    assert_eq!(r1, g1);
    let second = h.ok(Command::AcquireLock(spec("ci-2")));
    let [Event::LockQueued { request: r2 }] = second[..] else {
        panic!("{second:?}")
    };
    let wait = h.sched.explain_request(r2).unwrap();
    assert_eq!(
        h.sched.describe(&wait),
        "waiting for lock db-migrations: ci-1 holds it (position 1 of 1)"
    );
    let third = h.ok(Command::AcquireLock(spec("ci-3")));
    let [Event::LockQueued { request: r3 }] = third[..] else {
        panic!("{third:?}")
    };
    // ci-1 releases: ci-2 is next, with a higher token.
    let events = h.ok(Command::ReleaseLock { request: r1 });
    let [Event::LockEnded {
        request,
        expired: false,
    }, Event::LockGranted {
        request: g2,
        token: t2,
    }] = events[..]
    else {
        panic!("{events:?}")
    };
    assert_eq!((request, g2), (r1, r2));
    assert!(t2 > t1);
    // ci-3 keeps its lease alive; ci-2 does not: its lease runs out and ci-3 gets the lock.
    h.now_ms += 600;
    h.ok(Command::KeepAliveLock { request: r3 });
    h.now_ms += 600;
    let events = h.ok(Command::Tick);
    assert_eq!(
        events[0],
        Event::LockEnded {
            request: r2,
            expired: true
        }
    );
    assert!(
        matches!(events[1], Event::LockGranted { request, token } if request == r3 && token > t2)
    );
    assert_eq!(
        h.apply(Command::ReleaseLock { request: r2 }),
        Err(Rejection::UnknownLockRequest(r2))
    );
    let wrong = LockSpec {
        capacity: 3,
        ..spec("ci-4")
    };
    assert_eq!(
        h.apply(Command::AcquireLock(wrong)).unwrap_err().to_string(),
        "lock \"db-migrations\" exists with capacity 1, not 3: use the same capacity as its other users"
    );
    let elsewhere = LockSpec {
        target: Some("nowhere".into()),
        ..spec("ci-5")
    };
    assert_eq!(
        h.apply(Command::AcquireLock(elsewhere))
            .unwrap_err()
            .to_string(),
        "unknown target \"nowhere\": register its agent first"
    );
}

#[test]
fn a_step_lock_and_a_client_lock_of_one_name_are_one_semaphore() {
    let mut h = one_target(4);
    let mut spec = task("shop", "Production", &[("iis", "web")]);
    spec.bypass = BypassRule::always(true);
    spec.steps[0].lock = Some(StepLockSpec {
        name: "iis".into(),
        scope: LockScope::Target,
        capacity: 1,
    });
    let t = h.submit(spec);
    let events = h.ok(Command::AcquireLock(LockSpec {
        name: "iis".into(),
        target: Some("web01".into()),
        capacity: 1,
        holder: "script".into(),
        ttl_ms: 10_000,
    }));
    let [Event::LockQueued { request }] = events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(
        h.sched.describe(&h.sched.explain_request(request).unwrap()),
        "waiting for lock iis on target web01: task 1 holds it (position 1 of 1)"
    );
    let events = h.finish_task_unit(t);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::LockGranted { request: r, .. } if *r == request)));
}

#[test]
fn bad_commands_are_refused_with_what_is_wrong_and_what_would_be_right() {
    let mut h = one_target(1);
    let refuse = |h: &mut Harness, spec: TaskSpec| {
        h.apply(Command::SubmitTask(spec)).unwrap_err().to_string()
    };
    let good = task("shop", "Production", &[("deploy", "web")]);
    assert_eq!(
        refuse(
            &mut h,
            TaskSpec {
                project: "".into(),
                ..good.clone()
            }
        ),
        "invalid project: \"\" is empty; give a name"
    );
    let mut spec = good.clone();
    spec.steps[0].max_parallelism = 0;
    assert_eq!(
        refuse(&mut h, spec),
        "invalid steps[0].max_parallelism: is 0; allow at least 1 unit at a time"
    );
    let spec = task(
        "shop",
        "Production",
        &[("deploy", "web"), ("deploy", "web")],
    );
    assert_eq!(
        refuse(&mut h, spec),
        "invalid steps[1].name: \"deploy\" names two steps; step names are unique"
    );
    let spec = TaskSpec {
        steps: vec![],
        ..good.clone()
    };
    assert_eq!(
        refuse(&mut h, spec),
        "invalid steps: has 0 steps; a process has 1 to 256 steps"
    );
    let long = "x".repeat(300);
    assert_eq!(
        refuse(
            &mut h,
            TaskSpec {
                environment: long.clone(),
                ..good.clone()
            }
        ),
        format!("invalid environment: {long:?} is 300 bytes long; names are at most 256 bytes")
    );
    let mut zero = target("w9", &["E"], &["r"], &[], 0);
    assert_eq!(
        h.apply(Command::UpsertTarget(zero.clone()))
            .unwrap_err()
            .to_string(),
        "invalid capacity: is 0; a target runs at least 1 unit at a time"
    );
    zero.capacity = 1;
    h.ok(Command::SetSettings(SettingsPatch {
        queued_tasks_max: Some(1),
        task_cap: Some(0),
        ..Default::default()
    }));
    h.submit(good.clone());
    assert_eq!(
        refuse(&mut h, good.clone()),
        "the queue holds 1 tasks, its limit: wait for tasks to end or raise queued_tasks_max"
    );
    cap(&mut h, 1);
    assert_eq!(
        h.apply(Command::RemoveTarget { name: "web01".into() }).unwrap_err().to_string(),
        "target \"web01\" is still used by 1 waiting or running units or whole-task holds: let them end, or cancel their tasks, before removing it"
    );
}

#[test]
fn ended_tasks_are_forgotten_beyond_the_retention_setting() {
    let mut h = one_target(1);
    h.ok(Command::SetSettings(SettingsPatch {
        ended_tasks_retained: Some(2),
        ..Default::default()
    }));
    let tasks: Vec<TaskId> = (0..3)
        .map(|_| {
            let t = h.submit(task("shop", "Production", &[("deploy", "web")]));
            h.finish_task_unit(t);
            t
        })
        .collect();
    assert!(
        h.sched.task(tasks[0]).is_none(),
        "the oldest ended task is forgotten"
    );
    assert!(h.sched.task(tasks[2]).is_some());
    assert_eq!(h.sched.units().count(), 2, "with its units");
}

#[test]
fn snapshots_refuse_what_they_cannot_read() {
    let mut h = one_target(1);
    h.submit(task("shop", "Production", &[("deploy", "web")]));
    let bytes = h.sched.snapshot().unwrap();
    let restored = Scheduler::restore(&bytes).unwrap();
    assert_eq!(restored, h.sched, "restores exactly");
    assert_eq!(
        Scheduler::restore(b"not a snapshot")
            .unwrap_err()
            .to_string(),
        "not a cuttle state snapshot: the first bytes are not [67, 85, 84, 84, 76, 69, 83, 77]"
    );
    let mut newer = bytes.clone();
    newer[8] = 9;
    assert_eq!(
        Scheduler::restore(&newer).unwrap_err().to_string(),
        "snapshot format version 9 is not supported by this build (it reads version 1): run a build that supports it"
    );
    let truncated = &bytes[..bytes.len() - 5];
    assert!(Scheduler::restore(truncated)
        .unwrap_err()
        .to_string()
        .starts_with("snapshot body does not decode"));
}

#[test]
fn default_concurrency_tags_of_different_deployments_never_collide() {
    let spec = |project: &str, env: &str, tenant: Option<&str>| TaskSpec {
        tenant: tenant.map(str::to_string),
        ..task(project, env, &[("deploy", "web")])
    };
    assert_eq!(default_tag(&spec("shop", "QA", None)), "shop/QA");
    assert_eq!(
        default_tag(&spec("shop", "QA", Some("acme"))),
        "acme/shop/QA"
    );
    let a = default_tag(&spec("a/b", "c", None));
    let b = default_tag(&spec("a", "b/c", None));
    let c = default_tag(&spec("b", "c", Some("a")));
    assert_eq!(a, "a\\/b/c");
    assert!(a != b && b != c && a != c, "{a} {b} {c}");
}

#[test]
fn a_lock_name_has_one_capacity_while_anyone_uses_it() {
    let mut h: Harness = one_target(4);
    let with_lock = |capacity: u32| {
        let mut spec = task("shop", "Production", &[("iis", "web")]);
        spec.steps[0].lock = Some(StepLockSpec {
            name: "iis".into(),
            scope: LockScope::Target,
            capacity,
        });
        spec
    };
    let t = h.submit(with_lock(1));
    assert_eq!(
        h.apply(Command::SubmitTask(TaskSpec {
            project: "blog".into(),
            ..with_lock(3)
        }))
        .unwrap_err()
        .to_string(),
        "lock \"iis\" exists with capacity 1, not 3: use the same capacity as its other users"
    );
    let mut two = task("x", "Production", &[("a", "web"), ("b", "web")]);
    two.steps[0].lock = Some(StepLockSpec {
        name: "l".into(),
        scope: LockScope::Cluster,
        capacity: 1,
    });
    two.steps[1].lock = Some(StepLockSpec {
        name: "l".into(),
        scope: LockScope::Cluster,
        capacity: 2,
    });
    assert_eq!(
        h.apply(Command::SubmitTask(two)).unwrap_err().to_string(),
        "invalid steps[1].lock.capacity: is 2 but an earlier step declares lock \"l\" with capacity 1; use one capacity per lock"
    );
    h.finish_task_unit(t);
    // Once no one uses the name, a new capacity takes effect.
    let t = h.submit(TaskSpec {
        project: "blog".into(),
        ..with_lock(3)
    });
    assert!(matches!(h.phase(t), Phase::Running { .. }));
}

#[test]
fn a_whole_task_hold_beyond_the_claim_limit_is_refused_at_submission() {
    let mut h: Harness = Harness::new();
    for i in 0..4_100 {
        h.add_target(target(
            &format!("t{i}"),
            &["Production"],
            &[if i % 2 == 0 { "a" } else { "b" }],
            &[],
            1,
        ));
    }
    let mut spec = task("big", "Production", &[("one", "a"), ("two", "b")]);
    spec.hold_targets = true;
    assert_eq!(
        h.apply(Command::SubmitTask(spec.clone())).unwrap_err().to_string(),
        "invalid hold_targets: the task would hold 4100 targets; a whole-task hold takes at most 4094: split the deployment or drop Cuttle.Task.HoldTargets"
    );
    spec.steps[0].roles = vec!["a".into(), "b".into()];
    assert_eq!(
        h.apply(Command::SubmitTask(spec)).unwrap_err().to_string(),
        "invalid hold_targets: step one matches 4100 targets; a step runs on at most 4000"
    );
    assert_eq!(h.sched.queued_tasks(), 0);
}

#[test]
fn a_wait_names_the_request_in_the_way_and_every_kind_of_holder() {
    let mut h: Harness = one_target(1);
    let shared = |project: &str| TaskSpec {
        bypass: BypassRule::always(true),
        ..task(project, "Production", &[("deploy", "web")])
    };
    h.submit(shared("p1"));
    h.submit(shared("p2"));
    h.submit(TaskSpec {
        bypass: BypassRule::always(false),
        ..shared("p3")
    });
    let p4 = h.submit(shared("p4"));
    // p2 may share the target but waits for the agent's only slot; p3's exclusive claim is what
    // keeps p4 out.
    assert_eq!(
        h.explain_task_units(p4),
        vec!["waiting for target web01: task 1 holds it shared and task 3 waits ahead for it exclusively (position 3 of 3)"]
    );
    let mut h: Harness = one_target(4);
    let mut spec = shared("shop");
    spec.steps[0].lock = Some(StepLockSpec {
        name: "iis".into(),
        scope: LockScope::Cluster,
        capacity: 2,
    });
    h.submit(spec);
    let lock = |holder: &str| LockSpec {
        name: "iis".into(),
        target: None,
        capacity: 2,
        holder: holder.into(),
        ttl_ms: 1_000,
    };
    h.ok(Command::AcquireLock(lock("ci-1")));
    let events = h.ok(Command::AcquireLock(lock("ci-2")));
    let [Event::LockQueued { request }] = events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(
        h.sched.describe(&h.sched.explain_request(request).unwrap()),
        "waiting for lock iis: task 1 and ci-1 hold it (position 1 of 1)"
    );
}

/// Regression: with no ended task retained, a task that fails while it has several units must not
/// be forgotten while its units are still being stopped (it panicked the state machine).
#[test]
fn a_failing_task_with_several_units_and_no_retention_ends_cleanly() {
    let mut h: Harness = Harness::new();
    for name in ["w1", "w2", "w3"] {
        h.add_target(target(name, &["Production"], &["web"], &[], 1));
    }
    h.ok(Command::SetSettings(SettingsPatch {
        ended_tasks_retained: Some(0),
        ..Default::default()
    }));
    let mut spec = task("shop", "Production", &[("deploy", "web")]);
    spec.steps[0].max_parallelism = 1;
    let t = h.submit(spec);
    let unit = h.active_unit_of(t);
    let events = h.finish(unit, 1);
    assert!(events.iter().any(|e| matches!(e, Event::TaskEnded { task, outcome: TaskOutcome::Failed { .. } } if *task == t)));
    assert!(
        h.sched.task(t).is_none(),
        "forgotten at the end of the command"
    );
    assert!(h.sched.lock_table().is_empty());
}
