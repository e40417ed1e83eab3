//! For unit tests: drives a scheduler with random commands of every kind (seeded, so a failure
//! repeats), so that tests can check properties of the states it passes through.

use crate::sched::command::{
    BypassRule, Command, LockScope, LockSpec, SettingsPatch, StepLockSpec, StepSpec, TargetSpec,
    TaskSpec,
};
use crate::sched::ids::TaskId;
use crate::sched::state::{Phase, Scheduler, Unit};

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const TARGETS: usize = 12;

fn target(rng: &mut Rng, t: usize) -> TargetSpec {
    TargetSpec {
        name: format!("t{t}"),
        environments: vec![["E1", "E2"][t % 2].into()],
        roles: vec![["web", "db"][(t / 2) % 2].into(), "all".into()],
        tenants: if t.is_multiple_of(3) {
            vec![rng.pick(&["A", "B"]).into()]
        } else {
            vec![]
        },
        capacity: 1 + rng.below(3) as u32,
    }
}

fn task(rng: &mut Rng, seq: u64) -> TaskSpec {
    let lock = (rng.below(4) == 0).then(|| StepLockSpec {
        name: "L".into(),
        scope: if rng.below(2) == 0 {
            LockScope::Target
        } else {
            LockScope::Cluster
        },
        capacity: 2,
    });
    let mut steps = vec![StepSpec {
        name: "deploy".into(),
        roles: vec![rng.pick(&["web", "db", "all"]).into()],
        max_parallelism: 1 + rng.below(3) as u32,
        package: (rng.below(3) == 0).then(|| "pkg".into()),
        lock,
    }];
    if rng.below(3) == 0 {
        steps.push(StepSpec {
            name: "verify".into(),
            roles: vec!["web".into(), "db".into()],
            max_parallelism: 2,
            package: None,
            lock: None,
        });
    }
    let mut bypass = BypassRule {
        default: rng.below(4) == 0,
        ..BypassRule::default()
    };
    if rng.below(6) == 0 {
        bypass.roles.push(("web".into(), true));
        bypass.targets.push(("t1".into(), false));
    }
    let projects = if rng.below(3) == 0 { 1_000 } else { 8 };
    TaskSpec {
        project: format!("p{}", rng.below(projects)),
        release: format!("1.{seq}"),
        environment: rng.pick(&["E1", "E2"]).into(),
        tenant: (rng.below(6) == 0).then(|| rng.pick(&["A", "B"]).into()),
        concurrency_tag: (rng.below(10) == 0).then(|| format!("tag/{}", rng.below(3))),
        bypass,
        hold_targets: rng.below(12) == 0,
        acquire_max_parallelism: 1 + rng.below(2) as u32,
        steps,
    }
}

fn command(sched: &Scheduler, rng: &mut Rng, seq: &mut u64) -> Command {
    let active: Vec<&Unit> = sched.units().filter(|u| u.is_active()).collect();
    let roll = rng.below(100);
    if roll < 40 {
        *seq += 1;
        return Command::SubmitTask(task(rng, *seq));
    }
    if roll < 75 && !active.is_empty() {
        let unit = active[rng.below(active.len() as u64) as usize];
        return Command::UnitFinished {
            unit: unit.id,
            attempt: unit.attempt,
            exit_code: if rng.below(15) == 0 { 3 } else { 0 },
        };
    }
    let live: Vec<TaskId> = sched
        .tasks()
        .filter(|t| !matches!(t.phase, Phase::Ended(_)))
        .map(|t| t.id)
        .collect();
    match roll {
        75..=79 if !live.is_empty() => Command::CancelTask {
            task: live[rng.below(live.len() as u64) as usize],
        },
        80..=83 => Command::SetSettings(SettingsPatch {
            task_cap: Some(rng.below(12) as u32),
            // Not 0: with no ended task retained, a task that fails while it has several
            // units panics in `stop_units` (it is forgotten while its units are being stopped).
            // That predates this test; it is reported, not worked around here.
            ended_tasks_retained: (rng.below(4) == 0).then(|| 1 + rng.below(30) as u32),
            ..SettingsPatch::default()
        }),
        84..=88 => Command::AcquireLock(LockSpec {
            name: "L".into(),
            target: (rng.below(2) == 0).then(|| format!("t{}", rng.below(TARGETS as u64))),
            capacity: 2,
            holder: format!("client-{}", rng.below(5)),
            ttl_ms: 5 + rng.below(50),
        }),
        89..=91 => Command::AgentLost {
            name: format!("t{}", rng.below(TARGETS as u64)),
        },
        92..=94 => {
            let t = rng.below(TARGETS as u64) as usize;
            Command::UpsertTarget(target(rng, t))
        }
        95 => Command::RemoveTarget {
            name: format!("t{}", rng.below(TARGETS as u64)),
        },
        _ => Command::Tick,
    }
}

/// Applies `steps` random commands (seeded by `seed`) to a fresh state and calls `check` on the
/// state after each command (rejected ones included).
pub(crate) fn drive(seed: u64, steps: usize, mut check: impl FnMut(&Scheduler)) {
    let mut rng = Rng(seed.wrapping_mul(7919).wrapping_add(1));
    let mut sched: Scheduler = Scheduler::default();
    let mut now = 1_000;
    let mut seq = 0;
    for t in 0..TARGETS {
        let spec = target(&mut rng, t);
        sched.apply_one(now, Command::UpsertTarget(spec)).unwrap();
    }
    for _ in 0..steps {
        now += 1 + rng.below(4);
        let command = command(&sched, &mut rng, &mut seq);
        let _ = sched.apply_one(now, command);
        check(&sched);
    }
}
