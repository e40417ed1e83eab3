//! The examples of the seed documents, one named test each, with the seeds' words in the assertions.

mod common;

use common::{target, task, Harness};
use cuttle_raft::sched::vars::{task_variables, ScopedValue};
use cuttle_raft::sched::*;

fn bypass_task(project: &str, bypass: bool) -> TaskSpec {
    let mut spec = task(project, "Production", &[("deploy", "web")]);
    spec.bypass = BypassRule::always(bypass);
    spec
}

/// Seed 000/001: "Given five projects with the OctopusBypassDeploymentMutex set as True, True, False,
/// True and True respectively. Then assuming they are started in that order, the first two will run
/// in parallel, but the third will wait until they have finished. The last two will then also be
/// blocked until project three completes at which point they both will run in parallel."
#[test]
fn seed_001_five_projects_bypass_true_true_false_true_true() {
    let mut h: Harness = Harness::new();
    h.add_target(target("web01", &["Production"], &["web"], &[], 10));
    let flags = [true, true, false, true, true];
    let tasks: Vec<TaskId> = flags
        .iter()
        .enumerate()
        .map(|(i, b)| h.submit(bypass_task(&format!("project{}", i + 1), *b)))
        .collect();
    let [p1, p2, p3, p4, p5] = tasks[..] else {
        unreachable!()
    };

    assert_eq!(
        h.active_tasks(),
        vec![p1, p2],
        "the first two will run in parallel"
    );
    assert_eq!(
        h.explain_task_units(p3),
        vec!["waiting for target web01: tasks 1 and 2 hold it shared (position 1 of 3)"],
        "the third will wait until they have finished"
    );
    assert_eq!(
        h.explain_task_units(p4),
        vec!["waiting for target web01: tasks 1 and 2 hold it shared and task 3 waits ahead for it exclusively (position 2 of 3)"],
        "the fourth could share the target with the first two, but nothing overtakes the waiting third"
    );

    h.finish_task_unit(p1);
    assert_eq!(
        h.active_tasks(),
        vec![p2],
        "the third waits until *both* have finished"
    );
    h.finish_task_unit(p2);
    assert_eq!(
        h.active_tasks(),
        vec![p3],
        "the third runs alone once the first two finished"
    );
    assert_eq!(
        h.explain_task_units(p5),
        vec!["waiting for target web01: task 3 holds it exclusively (position 2 of 2)"],
        "the last two will then also be blocked until project three completes"
    );
    h.finish_task_unit(p3);
    assert_eq!(
        h.active_tasks(),
        vec![p4, p5],
        "at which point they both will run in parallel"
    );
    h.finish_task_unit(p4);
    h.finish_task_unit(p5);
    for t in tasks {
        assert_eq!(h.phase(t), Phase::Ended(TaskOutcome::Succeeded));
    }
}

/// Seed 000: "deployments of the same project to the same environment (and, if applicable, the same
/// tenant) are not able to be run in parallel even when using this variable."
#[test]
fn seed_000_same_project_and_environment_never_parallel_even_with_bypass() {
    let mut h: Harness = Harness::new();
    h.add_target(target("web01", &["Production"], &["web"], &[], 10));
    h.add_target(target("web02", &["Production"], &["web"], &[], 10));
    let first = h.submit(bypass_task("shop", true));
    let second = h.submit(bypass_task("shop", true));
    assert!(matches!(h.phase(first), Phase::Running { .. }));
    assert_eq!(
        h.phase(second),
        Phase::Queued,
        "same project, same environment: not in parallel"
    );
    let wait = h
        .sched
        .explain_task(second)
        .expect("queued task explains itself");
    assert_eq!(h.sched.describe(&wait), "waiting for concurrency tag shop/Production: task 1 holds it exclusively (position 1 of 1)");
    // Another environment of the same project is another deployment: it runs.
    let mut staging = bypass_task("shop", true);
    staging.environment = "Staging".into();
    h.add_target(target("stg01", &["Staging"], &["web"], &[], 10));
    let third = h.submit(staging);
    assert!(matches!(h.phase(third), Phase::Running { .. }));
    // Finishing the first admits the second.
    for unit in h
        .active_units()
        .iter()
        .filter(|u| u.task == first)
        .map(|u| u.id)
        .collect::<Vec<_>>()
    {
        h.finish(unit, 0);
    }
    assert!(matches!(h.phase(second), Phase::Running { .. }));
}

fn tenanted(project: &str, tenant: &str, bypass: bool) -> TaskSpec {
    let mut spec = task(project, "Production", &[("deploy", "web")]);
    spec.tenant = Some(tenant.into());
    spec.bypass = BypassRule::always(bypass);
    spec
}

/// Seed 003: one project, one server hosting 10 tenants. With OctopusBypassDeploymentMutex "all
/// Tenants on the same Deployment Target were updated at the same time", and "the total number of
/// Tasks ... would then be limited by the Task Cap".
#[test]
fn seed_003_tenants_on_one_target_run_together_up_to_the_task_cap() {
    let mut h: Harness = Harness::new();
    let tenants: Vec<String> = (1..=10).map(|i| format!("tenant{i}")).collect();
    let refs: Vec<&str> = tenants.iter().map(|s| s.as_str()).collect();
    h.add_target(target("server", &["Production"], &["web"], &refs, 10));
    h.ok(Command::SetSettings(SettingsPatch {
        task_cap: Some(4),
        ..Default::default()
    }));
    let tasks: Vec<TaskId> = tenants
        .iter()
        .map(|t| h.submit(tenanted("project1", t, true)))
        .collect();
    assert_eq!(
        h.active_tasks(),
        tasks[..4].to_vec(),
        "limited by the task cap (4)"
    );
    let wait = h.sched.explain_task(tasks[4]).expect("waits");
    assert_eq!(
        h.sched.describe(&wait),
        "waiting for a slot under the task cap of 4: tasks 1, 2, 3 and 4 hold it (position 1 of 6)"
    );
    h.ok(Command::SetSettings(SettingsPatch {
        task_cap: Some(10),
        ..Default::default()
    }));
    assert_eq!(
        h.active_tasks(),
        tasks,
        "all tenants on the same target at the same time"
    );
}

/// Seed 003 without the bypass: "running Steps 1 to 6 for Tenant 1, then running Steps 1 to 6 for
/// Tenant 2": the tasks are admitted (different tenants, different tags) but their units take the
/// server one at a time.
#[test]
fn seed_003_tenants_on_one_target_without_bypass_take_turns() {
    let mut h: Harness = Harness::new();
    h.add_target(target(
        "server",
        &["Production"],
        &["web"],
        &["t1", "t2", "t3"],
        10,
    ));
    let tasks: Vec<TaskId> = ["t1", "t2", "t3"]
        .iter()
        .map(|t| h.submit(tenanted("project1", t, false)))
        .collect();
    for t in &tasks {
        assert!(
            matches!(h.phase(*t), Phase::Running { .. }),
            "different tenants: different concurrency tags"
        );
    }
    for (i, t) in tasks.iter().enumerate() {
        assert_eq!(
            h.active_tasks(),
            vec![*t],
            "one process per target at a time (turn {i})"
        );
        h.finish_task_unit(*t);
    }
}

/// Seed 003: (Deployment#1) Project#1 to Environment#1 for Tenant#1 and (Deployment#2) Project#1 to
/// Environment#1 for Tenant#2 run simultaneously with the mutex set to true.
#[test]
fn seed_003_same_project_two_tenants_run_simultaneously_with_bypass() {
    let mut h: Harness = Harness::new();
    h.add_target(target(
        "server",
        &["Production"],
        &["web"],
        &["Tenant1", "Tenant2"],
        10,
    ));
    let d1 = h.submit(tenanted("Project1", "Tenant1", true));
    let d2 = h.submit(tenanted("Project1", "Tenant2", true));
    assert_eq!(h.active_tasks(), vec![d1, d2]);
    // And the same tenant twice is the same deployment twice: never in parallel.
    let d3 = h.submit(tenanted("Project1", "Tenant1", true));
    assert_eq!(h.phase(d3), Phase::Queued);
    let wait = h.sched.explain_task(d3).unwrap();
    assert_eq!(h.sched.describe(&wait), "waiting for concurrency tag Tenant1/Project1/Production: task 1 holds it exclusively (position 1 of 1)");
}

/// Seed 004: steps a, b and c of a tenanted deployment, tenants on one server. "when 'b' is running
/// for tenant T1, I do not want to start 'b' for any other tenants T2...n. I also do want steps 'a' &
/// 'c' to run in parallel in all tenants on all servers." A step lock of capacity 1 per target.
#[test]
fn seed_004_step_b_one_tenant_at_a_time_per_server_a_and_c_in_parallel() {
    let mut h: Harness = Harness::new();
    let tenants = ["T1", "T2", "T3"];
    h.add_target(target("server1", &["Production"], &["app"], &tenants, 10));
    h.add_target(target("server2", &["Production"], &["app"], &tenants, 10));
    let spec = |tenant: &str| {
        let mut spec = task(
            "hosted",
            "Production",
            &[("a", "app"), ("b", "app"), ("c", "app")],
        );
        spec.tenant = Some(tenant.into());
        spec.bypass = BypassRule::always(true);
        spec.steps[1].lock = Some(StepLockSpec {
            name: "b".into(),
            scope: LockScope::Target,
            capacity: 1,
        });
        spec
    };
    let tasks: Vec<TaskId> = tenants.iter().map(|t| h.submit(spec(t))).collect();
    let step_counts = |h: &Harness| {
        let mut counts = std::collections::BTreeMap::<(String, TargetId), usize>::new();
        for u in h.active_units() {
            *counts.entry((h.step_name(u), u.target)).or_default() += 1;
        }
        counts
    };
    // Step a runs in parallel for all tenants on all servers.
    let counts = step_counts(&h);
    assert_eq!(
        counts.get(&("a".to_string(), TargetId(0))),
        Some(&3),
        "a in parallel in all tenants"
    );
    assert_eq!(
        counts.get(&("a".to_string(), TargetId(1))),
        Some(&3),
        "a in parallel on all servers"
    );
    let mut saw_b_beside_c = false;
    let mut rounds = 0;
    while !h.active_units().is_empty() {
        rounds += 1;
        assert!(rounds < 100);
        let counts = step_counts(&h);
        for ((step, server), n) in &counts {
            if step == "b" {
                assert!(
                    *n <= 1,
                    "b runs for one tenant at a time on {server:?}, saw {n}"
                );
                saw_b_beside_c |= counts
                    .get(&("c".to_string(), *server))
                    .is_some_and(|c| *c > 0);
            }
        }
        // Finish the oldest active unit.
        let unit = h.active_units()[0].id;
        h.finish(unit, 0);
    }
    assert!(saw_b_beside_c, "while one tenant runs b, another runs c");
    for t in tasks {
        assert_eq!(h.phase(t), Phase::Ended(TaskOutcome::Succeeded));
    }
}

/// Seed 004, the explanation: a tenant's b waits for the step lock held by another tenant's b.
#[test]
fn seed_004_waiting_b_explains_the_step_lock() {
    let mut h: Harness = Harness::new();
    h.add_target(target(
        "server1",
        &["Production"],
        &["app"],
        &["T1", "T2"],
        10,
    ));
    let spec = |tenant: &str| {
        let mut spec = task("hosted", "Production", &[("b", "app")]);
        spec.tenant = Some(tenant.into());
        spec.bypass = BypassRule::always(true);
        spec.steps[0].lock = Some(StepLockSpec {
            name: "b".into(),
            scope: LockScope::Target,
            capacity: 1,
        });
        spec
    };
    let t1 = h.submit(spec("T1"));
    let t2 = h.submit(spec("T2"));
    assert_eq!(h.active_tasks(), vec![t1]);
    assert_eq!(
        h.explain_task_units(t2),
        vec!["waiting for lock b on target server1: task 1 holds it (position 1 of 1)"]
    );
}

/// Seed 002: "Can OctopusBypassDeploymentMutex be defined in a Variable Set?" It can: the variable
/// is read by name wherever it was resolved from, under its Octopus name or its cuttle name.
#[test]
fn seed_002_bypass_variable_from_a_variable_set_and_its_alias() {
    let vars = task_variables(&[ScopedValue::new("OctopusBypassDeploymentMutex", "True")]).unwrap();
    assert!(vars.bypass.default);
    let vars =
        task_variables(&[ScopedValue::new("Cuttle.BypassDeploymentMutex", "false")]).unwrap();
    assert!(!vars.bypass.default);
    let err =
        task_variables(&[ScopedValue::new("OctopusBypassDeploymentMutex", "yes")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "variable OctopusBypassDeploymentMutex = \"yes\" is not valid: use True or False"
    );
    let vars = task_variables(&[
        ScopedValue::new("Octopus.Action.MaxParallelism", "5"),
        ScopedValue::new("Octopus.Acquire.MaxParallelism", "3"),
        ScopedValue::new("Octopus.Task.ConcurrencyTag", "hosting-group-1"),
    ])
    .unwrap();
    assert_eq!(
        (vars.action_max_parallelism, vars.acquire_max_parallelism),
        (5, 3)
    );
    assert_eq!(vars.concurrency_tag.as_deref(), Some("hosting-group-1"));
}

/// Seed 001: "it's possible to scope the OctopusBypassDeploymentMutex variable ... to a specific
/// Environment or target role". A role-scoped value decides per target.
#[test]
fn seed_001_bypass_scoped_to_a_role() {
    let mut h: Harness = Harness::new();
    h.add_target(target("web01", &["QA"], &["web"], &[], 10));
    h.add_target(target("db01", &["QA"], &["db"], &[], 10));
    let spec = |project: &str| {
        let mut spec = task(project, "QA", &[("deploy", "web"), ("migrate", "db")]);
        spec.steps[1].roles = vec!["db".into()];
        spec.steps[0].roles = vec!["web".into(), "db".into()];
        spec.bypass = BypassRule {
            default: false,
            roles: vec![("web".into(), true)],
            targets: vec![],
        };
        spec
    };
    let a = h.submit(spec("a"));
    let b = h.submit(spec("b"));
    let on = |h: &Harness, name: &str| {
        let id = h.sched.target_id(name).unwrap();
        let mut tasks: Vec<TaskId> = h
            .active_units()
            .iter()
            .filter(|u| u.target == id)
            .map(|u| u.task)
            .collect();
        tasks.sort();
        tasks
    };
    assert_eq!(
        on(&h, "web01"),
        vec![a, b],
        "bypass scoped to role web: shared on web01"
    );
    assert_eq!(
        on(&h, "db01"),
        vec![a],
        "not scoped to db: exclusive on db01"
    );
}
