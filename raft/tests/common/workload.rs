//! Random workloads for property and differential tests: abstract operations that pick their
//! targets (a task, a unit, a lock request) from the state when they run.

use super::{target, task};
use cuttle_raft::sched::*;
use proptest::prelude::*;

const TARGETS: [&str; 4] = ["t0", "t1", "t2", "t3"];
const ENVS: [&str; 2] = ["E1", "E2"];
const ROLES: [&str; 2] = ["web", "db"];
const TENANTS: [&str; 2] = ["A", "B"];

/// One abstract operation.
#[derive(Clone, Debug)]
pub enum Op {
    Target {
        index: usize,
        envs: Vec<usize>,
        roles: Vec<usize>,
        tenants: Vec<usize>,
        capacity: u32,
    },
    Lost {
        index: usize,
    },
    Remove {
        index: usize,
    },
    Cap {
        cap: u32,
    },
    Submit(Box<TaskSpec>),
    Cancel {
        pick: usize,
    },
    Start {
        pick: usize,
    },
    Finish {
        pick: usize,
        exit_code: i32,
    },
    Acquire {
        name: usize,
        target: Option<usize>,
        capacity: u32,
        ttl_ms: u64,
    },
    Release {
        pick: usize,
    },
    KeepAlive {
        pick: usize,
    },
    Tick {
        advance_ms: u64,
    },
}

fn subset(max: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::btree_set(0..max, 1..=max).prop_map(|s| s.into_iter().collect())
}

/// Roles, parallelism, package, and (lock name, per target, capacity).
type StepDraw = (Vec<usize>, u32, bool, Option<(usize, bool, u32)>);

fn step_strategy() -> impl Strategy<Value = StepDraw> {
    (
        subset(ROLES.len()),
        1u32..=3,
        prop::bool::weighted(0.2),
        prop::option::weighted(0.35, (0usize..2, any::<bool>(), 1u32..=2)),
    )
}

fn task_strategy() -> impl Strategy<Value = TaskSpec> {
    (
        0usize..3,
        0usize..ENVS.len(),
        prop::option::weighted(0.4, 0usize..TENANTS.len()),
        prop::option::weighted(0.1, Just("group")),
        (
            any::<bool>(),
            prop::option::weighted(0.2, (0usize..ROLES.len(), any::<bool>())),
        ),
        prop::bool::weighted(0.12),
        1u32..=3,
        proptest::collection::vec(step_strategy(), 1..=3),
    )
        .prop_map(
            |(project, env, tenant, tag, (bypass, role_bypass), hold, acquire, steps)| {
                let mut spec = task(&format!("p{project}"), ENVS[env], &[]);
                spec.tenant = tenant.map(|t| TENANTS[t].to_string());
                spec.concurrency_tag = tag.map(str::to_string);
                spec.bypass = BypassRule {
                    default: bypass,
                    roles: role_bypass
                        .map(|(r, v)| (ROLES[r].to_string(), v))
                        .into_iter()
                        .collect(),
                    targets: Vec::new(),
                };
                spec.hold_targets = hold;
                spec.acquire_max_parallelism = acquire;
                spec.steps = steps
                    .into_iter()
                    .enumerate()
                    .map(|(i, (roles, parallelism, package, lock))| StepSpec {
                        name: format!("s{i}"),
                        roles: roles.into_iter().map(|r| ROLES[r].to_string()).collect(),
                        max_parallelism: parallelism,
                        package: package.then(|| "pkg".to_string()),
                        lock: lock.map(|(name, per_target, capacity)| StepLockSpec {
                            name: format!("L{name}"),
                            scope: if per_target {
                                LockScope::Target
                            } else {
                                LockScope::Cluster
                            },
                            // One capacity per name, as a validated spec would have it.
                            capacity: if name == 0 { 1 } else { capacity.max(2) },
                        }),
                    })
                    .collect();
                spec
            },
        )
}

pub fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0usize..TARGETS.len(), subset(ENVS.len()), subset(ROLES.len()), proptest::collection::vec(0usize..TENANTS.len(), 0..=2), 1u32..=3)
            .prop_map(|(index, envs, roles, tenants, capacity)| Op::Target { index, envs, roles, tenants, capacity }),
        1 => (0usize..TARGETS.len()).prop_map(|index| Op::Lost { index }),
        1 => (0usize..TARGETS.len()).prop_map(|index| Op::Remove { index }),
        1 => (0u32..=4).prop_map(|cap| Op::Cap { cap }),
        8 => task_strategy().prop_map(|t| Op::Submit(Box::new(t))),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Start { pick }),
        10 => (any::<usize>(), prop_oneof![6 => Just(0), 1 => Just(1)]).prop_map(|(pick, exit_code)| Op::Finish { pick, exit_code }),
        2 => (0usize..2, prop::option::of(0usize..TARGETS.len()), 1u32..=2, 1u64..50)
            .prop_map(|(name, target, capacity, ttl_ms)| Op::Acquire { name, target, capacity: if name == 0 { 1 } else { capacity.max(2) }, ttl_ms }),
        1 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        1 => any::<usize>().prop_map(|pick| Op::KeepAlive { pick }),
        1 => (1u64..40).prop_map(|advance_ms| Op::Tick { advance_ms }),
    ]
}

/// Every run starts with these targets, so that tasks find targets and contend for them.
pub fn setup_commands() -> Vec<Command> {
    TARGETS
        .iter()
        .zip([1, 2, 3, 1])
        .map(|(name, capacity)| {
            Command::UpsertTarget(target(name, &ENVS, &ROLES, &TENANTS, capacity))
        })
        .collect()
}

fn pick<T: Copy>(items: &[T], pick: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[pick % items.len()])
}

/// Turns an abstract operation into a command against the current state, or `None` when it has
/// nothing to act on. The returned time is the command's `now_ms`.
pub fn command_for<L: LockTable>(
    sched: &Scheduler<L>,
    clock_ms: &mut u64,
    op: &Op,
) -> Option<Command> {
    *clock_ms += 1;
    let active = |sched: &Scheduler<L>| -> Vec<UnitId> {
        sched
            .units()
            .filter(|u| u.is_active())
            .map(|u| u.id)
            .collect()
    };
    let client_locks =
        |sched: &Scheduler<L>| -> Vec<ReqId> { sched.client_locks().map(|(id, _)| id).collect() };
    Some(match op {
        Op::Target {
            index,
            envs,
            roles,
            tenants,
            capacity,
        } => {
            let envs: Vec<&str> = envs.iter().map(|i| ENVS[*i]).collect();
            let roles: Vec<&str> = roles.iter().map(|i| ROLES[*i]).collect();
            let tenants: Vec<&str> = tenants.iter().map(|i| TENANTS[*i]).collect();
            Command::UpsertTarget(target(TARGETS[*index], &envs, &roles, &tenants, *capacity))
        }
        Op::Lost { index } => Command::AgentLost {
            name: TARGETS[*index].into(),
        },
        Op::Remove { index } => Command::RemoveTarget {
            name: TARGETS[*index].into(),
        },
        Op::Cap { cap } => Command::SetSettings(SettingsPatch {
            task_cap: Some(*cap),
            ..Default::default()
        }),
        Op::Submit(spec) => Command::SubmitTask((**spec).clone()),
        Op::Cancel { pick: p } => {
            let live: Vec<TaskId> = sched
                .tasks()
                .filter(|t| !matches!(t.phase, Phase::Ended(_)))
                .map(|t| t.id)
                .collect();
            Command::CancelTask {
                task: pick(&live, *p)?,
            }
        }
        Op::Start { pick: p } => {
            let unit = pick(&active(sched), *p)?;
            Command::UnitStarted {
                unit,
                attempt: sched.unit(unit)?.attempt,
            }
        }
        Op::Finish { pick: p, exit_code } => {
            let unit = pick(&active(sched), *p)?;
            Command::UnitFinished {
                unit,
                attempt: sched.unit(unit)?.attempt,
                exit_code: *exit_code,
            }
        }
        Op::Acquire {
            name,
            target,
            capacity,
            ttl_ms,
        } => Command::AcquireLock(LockSpec {
            name: format!("L{name}"),
            target: target.map(|t| TARGETS[t].to_string()),
            capacity: *capacity,
            holder: "client".into(),
            ttl_ms: *ttl_ms,
        }),
        Op::Release { pick: p } => Command::ReleaseLock {
            request: pick(&client_locks(sched), *p)?,
        },
        Op::KeepAlive { pick: p } => Command::KeepAliveLock {
            request: pick(&client_locks(sched), *p)?,
        },
        Op::Tick { advance_ms } => {
            *clock_ms += advance_ms;
            Command::Tick
        }
    })
}

/// Commands that bring a state to rest: every unit ends with success, every client lock is
/// released, the cap lets tasks through; `check` sees every command and its events.
pub fn drain<L: LockTable>(
    sched: &mut Scheduler<L>,
    clock_ms: &mut u64,
    mut check: impl FnMut(&Scheduler<L>, &Command, &[Event]),
) {
    let mut apply = |sched: &mut Scheduler<L>, clock_ms: &mut u64, command: Command| {
        *clock_ms += 1;
        let events = sched
            .apply_one(*clock_ms, command.clone())
            .expect("drain command accepted");
        check(sched, &command, &events);
    };
    if sched.settings().task_cap == 0 {
        apply(
            sched,
            clock_ms,
            Command::SetSettings(SettingsPatch {
                task_cap: Some(2),
                ..Default::default()
            }),
        );
    }
    for _round in 0..10_000 {
        let active: Vec<(UnitId, u32)> = sched
            .units()
            .filter(|u| u.is_active())
            .map(|u| (u.id, u.attempt))
            .collect();
        let clients: Vec<ReqId> = sched.client_locks().map(|(id, _)| id).collect();
        if active.is_empty() && clients.is_empty() {
            return;
        }
        for (unit, attempt) in active {
            apply(
                sched,
                clock_ms,
                Command::UnitFinished {
                    unit,
                    attempt,
                    exit_code: 0,
                },
            );
        }
        for request in clients {
            if sched.client_lock(request).is_some() {
                apply(sched, clock_ms, Command::ReleaseLock { request });
            }
        }
    }
    panic!("the state did not come to rest");
}
