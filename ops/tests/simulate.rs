//! `cuttle simulate` end to end: the built binary on the shipped scenarios, asserting on its JSON
//! output and exit codes, and on its errors for bad input.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CUTTLE: &str = env!("CARGO_BIN_EXE_cuttle");

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

fn cuttle(args: &[&str]) -> Output {
    Command::new(CUTTLE)
        .args(args)
        .output()
        .expect("the cuttle binary runs")
}

/// Runs a scenario with `--output json`; returns the exit code and the document.
fn simulate_json(path: &Path) -> (i32, Value) {
    let out = cuttle(&["simulate", "-f", path.to_str().unwrap(), "--output", "json"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), json)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The task record of a project (the first one, for fanned-out entries use `task_where`).
fn task<'a>(doc: &'a Value, project: &str) -> &'a Value {
    task_where(doc, |t| t["project"] == project)
}

fn task_where(doc: &Value, f: impl Fn(&Value) -> bool) -> &Value {
    doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| f(t))
        .expect("task found")
}

fn units<'a>(doc: &'a Value, f: impl Fn(&Value) -> bool + 'a) -> Vec<&'a Value> {
    doc["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| f(u))
        .collect()
}

/// `[from, to)` of a dispatched unit.
fn span(unit: &Value) -> (u64, u64) {
    (u(&unit["dispatched_ms"]), u(&unit["ended_ms"]))
}

fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Most of the half-open intervals that overlap at one time.
fn peak(intervals: &[(u64, u64)]) -> usize {
    let mut points: Vec<(u64, i32)> = intervals
        .iter()
        .flat_map(|(from, to)| [(*from, 1), (*to, -1)])
        .collect();
    points.sort();
    let (mut now, mut best) = (0, 0);
    for (_, d) in points {
        now += d;
        best = best.max(now);
    }
    best as usize
}

#[test]
fn seed_001_two_in_parallel_then_three_alone_then_four_and_five_together() {
    let (code, doc) = simulate_json(&scenario("seed-001-five-projects.toml"));
    assert_eq!(code, 0, "every deployment succeeds");
    assert_eq!(doc["all_succeeded"], true);
    let unit_of = |project: &str| {
        let found = units(&doc, move |u| u["project"] == project);
        assert_eq!(found.len(), 1);
        span(found[0])
    };
    let (p1, p2, p3, p4, p5) = (
        unit_of("project1"),
        unit_of("project2"),
        unit_of("project3"),
        unit_of("project4"),
        unit_of("project5"),
    );
    assert!(
        overlap(p1, p2),
        "the first two run in parallel: {p1:?} {p2:?}"
    );
    assert_eq!(
        p3.0,
        p1.1.max(p2.1),
        "the third starts only once both have finished"
    );
    assert!(!overlap(p3, p1) && !overlap(p3, p2));
    assert_eq!(p4.0, p3.1, "the fourth starts when the third completes");
    assert_eq!(p5.0, p3.1, "the fifth starts when the third completes");
    assert!(overlap(p4, p5), "the last two run in parallel");
    assert_eq!(u(&doc["makespan_ms"]), 4500);
    assert_eq!(u(&doc["peak_active_tasks"]), 2);
    assert_eq!(doc["targets"][0]["name"], "web01");
    assert_eq!(u(&doc["targets"][0]["peak_units"]), 2);

    // The third explains its wait: the first two hold the target shared.
    let id3 = u(&task(&doc, "project3")["id"]);
    let wait = doc["waits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["task"] == id3)
        .expect("project3 waited");
    assert_eq!(wait["target"], "web01");
    assert_eq!((u(&wait["at_ms"]), u(&wait["until_ms"])), (0, 2000));
    assert!(
        wait["reason"]
            .as_str()
            .unwrap()
            .starts_with("waiting for target web01: tasks 1 and 2 hold it shared"),
        "{}",
        wait["reason"]
    );
}

#[test]
fn seed_001_human_output_has_the_timeline_and_makespan() {
    let out = cuttle(&[
        "simulate",
        "-f",
        scenario("seed-001-five-projects.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Target web01: 5 units, at most 2 at once"),
        "{text}"
    );
    assert!(
        text.contains("from ms  to ms  task  project/tenant  step    alongside  outcome"),
        "{text}"
    );
    assert!(
        text.contains("     2000   3000     3  project3        deploy  -          succeeded"),
        "{text}"
    );
    assert!(text.contains("Makespan 4500 ms."), "{text}");
}

#[test]
fn seed_003_never_more_than_the_task_cap_of_4() {
    let (code, doc) = simulate_json(&scenario("seed-003-tenants.toml"));
    assert_eq!(code, 0);
    let tasks = doc["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 10, "one deployment per tenant");
    let admitted: Vec<(u64, u64)> = tasks
        .iter()
        .map(|t| (u(&t["started_ms"]), u(&t["ended_ms"])))
        .collect();
    assert_eq!(peak(&admitted), 4, "limited by the task cap (4)");
    let running: Vec<(u64, u64)> = units(&doc, |_| true).into_iter().map(span).collect();
    assert_eq!(
        peak(&running),
        4,
        "four tenants' units on the server at once"
    );
    assert_eq!(u(&doc["peak_running_tasks"]), 4);
    assert_eq!(
        u(&doc["makespan_ms"]),
        9000,
        "10 tenants, 4 at a time, 3 s each"
    );
    let fifth = task_where(&doc, |t| t["tenant"] == "tenant05");
    let waits = doc["waits"].as_array().unwrap();
    let wait = waits.iter().find(|w| w["task"] == fifth["id"]).unwrap();
    assert!(wait["reason"]
        .as_str()
        .unwrap()
        .starts_with("waiting for a slot under the task cap of 4: tasks 1, 2, 3 and 4 hold it"));
}

#[test]
fn seed_004_step_b_one_tenant_at_a_time_a_and_c_in_parallel() {
    let (code, doc) = simulate_json(&scenario("seed-004-steps-abc.toml"));
    assert_eq!(code, 0);
    let step = |name: &'static str| -> Vec<(u64, u64)> {
        units(&doc, move |u| u["step"] == name && u["target"] == "server1")
            .into_iter()
            .map(span)
            .collect()
    };
    let (a, b, c) = (step("a"), step("b"), step("c"));
    assert_eq!((a.len(), b.len(), c.len()), (5, 5, 5));
    for (i, x) in b.iter().enumerate() {
        for y in &b[i + 1..] {
            assert!(
                !overlap(*x, *y),
                "two b units at once on server1: {x:?} {y:?}"
            );
        }
    }
    assert_eq!(peak(&a), 5, "a runs in parallel for all tenants");
    assert!(
        b.iter().any(|x| c.iter().any(|y| overlap(*x, *y))),
        "while one tenant runs b, another runs c"
    );
}

#[test]
fn seed_002_rush_bypass_shortens_it_and_tags_keep_each_project_in_order() {
    let (code, serial) = simulate_json(&scenario("seed-002-rush.toml"));
    assert_eq!(code, 0);
    let (code, bypass) = simulate_json(&scenario("seed-002-rush-bypass.toml"));
    assert_eq!(code, 0);
    for doc in [&serial, &bypass] {
        for p in 1..=5 {
            let project = format!("app{p}");
            let env = |e: &str| {
                let t = task_where(doc, |t| {
                    t["project"] == project.as_str() && t["environment"] == e
                });
                (u(&t["started_ms"]), u(&t["ended_ms"]))
            };
            let (qa, staging, production) = (env("QA"), env("Staging"), env("Production"));
            assert!(
                qa.1 <= staging.0 && staging.1 <= production.0,
                "{project} goes QA, Staging, Production"
            );
        }
    }
    // Without bypass the one QA machine takes the projects one at a time.
    let qa: Vec<(u64, u64)> = units(&serial, |u| u["target"] == "qa01")
        .into_iter()
        .map(span)
        .collect();
    assert_eq!(peak(&qa), 1);
    assert!(
        u(&bypass["makespan_ms"]) < u(&serial["makespan_ms"]),
        "bypass: {} ms, without: {} ms",
        bypass["makespan_ms"],
        serial["makespan_ms"]
    );
}

#[test]
fn events_a_failing_unit_a_cancel_and_a_lost_agent_exit_1() {
    let (code, doc) = simulate_json(&scenario("events.toml"));
    assert_eq!(code, 1, "not every deployment succeeded");
    assert_eq!(doc["all_succeeded"], false);
    assert_eq!(task(&doc, "shop")["outcome"], "failed");
    assert_eq!(task(&doc, "blog")["outcome"], "cancelled");
    assert_eq!(task(&doc, "billing")["outcome"], "failed");
    assert_eq!(task(&doc, "docs")["outcome"], "succeeded");
    let failed = units(&doc, |u| u["outcome"] == "failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["target"], "web01");
    assert_eq!(failed[0]["exit_code"], 1);
    let stopped = units(&doc, |u| u["project"] == "shop" && u["target"] == "web02");
    assert_eq!(
        stopped[0]["outcome"], "cancelled",
        "the failing task's other unit is stopped"
    );
    let lost = units(&doc, |u| u["project"] == "billing");
    assert_eq!(lost[0]["outcome"], "target_lost");
    assert_eq!(u(&lost[0]["ended_ms"]), 1000);
    assert_eq!(
        u(&task(&doc, "billing")["started_ms"]),
        300,
        "admitted when the cap rose"
    );
    let events: Vec<&str> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["task_cap", "agent_lost", "cancel"]);
}

#[test]
fn json_output_is_deterministic() {
    let path = scenario("seed-004-steps-abc.toml");
    let args = ["simulate", "-f", path.to_str().unwrap(), "--output", "json"];
    assert_eq!(cuttle(&args).stdout, cuttle(&args).stdout);
}

/// Writes a scenario to a file of its own; returns its path.
fn write_scenario(name: &str, text: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs a bad scenario: exit code 2, nothing on stdout; returns the first line of stderr.
fn bad_input(name: &str, text: &str) -> (String, String) {
    let path = write_scenario(name, text);
    let out = cuttle(&["simulate", "-f", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "bad input exits 2");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    (
        stderr.lines().next().unwrap_or_default().to_string(),
        path.display().to_string(),
    )
}

const TARGET: &str = r#"[[targets]]
name = "web01"
environments = ["Production"]
roles = ["web"]

[[tasks]]
project = "shop"
environment = "Production"
"#;

#[test]
fn unknown_field_names_its_place_and_the_valid_fields() {
    let (line, path) = bad_input(
        "unknown-field",
        &format!(
            "{TARGET}[[tasks.steps]]\nname = \"deploy\"\nroles = [\"web\"]\ndurations_ms = 1000\n"
        ),
    );
    assert_eq!(
        line,
        format!("error: {path}:12:1: unknown field `durations_ms`, expected one of `name`, `roles`, `package`, `lock`, `duration_ms`, `acquire_ms`, `fail_on`")
    );
}

#[test]
fn wrong_type_names_its_place_and_what_is_expected() {
    let (line, path) = bad_input(
        "wrong-type",
        &format!("{TARGET}[[tasks.steps]]\nname = \"deploy\"\nroles = [\"web\"]\nduration_ms = \"fast\"\n"),
    );
    assert_eq!(
        line,
        format!("error: {path}:12:15: invalid type: string \"fast\", expected a whole number of milliseconds, 0 or more")
    );
}

#[test]
fn bad_variable_value_names_its_place_and_the_valid_values() {
    let (line, path) = bad_input(
        "bad-variable",
        &format!("{TARGET}variables = {{ OctopusBypassDeploymentMutex = \"yes\" }}\n[[tasks.steps]]\nname = \"deploy\"\nroles = [\"web\"]\nduration_ms = 1000\n"),
    );
    assert_eq!(
        line,
        format!("error: {path}:9:46: variable OctopusBypassDeploymentMutex = \"yes\" is not valid: use True or False")
    );
}

#[test]
fn unknown_variable_and_unknown_fail_on_target_are_both_reported() {
    let path = write_scenario(
        "unknown-variable",
        &format!("{TARGET}[tasks.variables]\nOctopusBypassDeploymentMutx = \"True\"\n[[tasks.steps]]\nname = \"deploy\"\nroles = [\"web\"]\nduration_ms = 1000\nfail_on = [\"web09\"]\n"),
    );
    let out = cuttle(&["simulate", "-f", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let p = path.display();
    assert!(stderr.contains(&format!("error: {p}:10:1: unknown variable OctopusBypassDeploymentMutx: the simulation reads only Cuttle.BypassDeploymentMutex, ")), "{stderr}");
    assert!(stderr.contains(&format!("error: {p}:15:12: fail_on names target \"web09\", which is not defined: the targets are web01")), "{stderr}");
    assert!(
        stderr.contains("error: the scenario has 2 problems"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "10 | OctopusBypassDeploymentMutx = \"True\"\n   | ^^^^^^^^^^^^^^^^^^^^^^^^^^^"
        ),
        "{stderr}"
    );
}

#[test]
fn missing_file_and_usage_errors_exit_2() {
    let out = cuttle(&["simulate", "-f", "/nonexistent/scenario.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(
            "error: cannot read scenario file /nonexistent/scenario.toml\n  caused by: "
        ),
        "{stderr}"
    );
    assert_eq!(cuttle(&["simulate"]).status.code(), Some(2), "no -f");
    assert_eq!(
        cuttle(&["simulate", "-f", "x", "--output", "yaml"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(cuttle(&[]).status.code(), Some(2), "no command");
}

#[test]
fn help_and_version() {
    let out = cuttle(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("cuttle {}", env!("CARGO_PKG_VERSION"))
    );
    let help = String::from_utf8(cuttle(&["--help"]).stdout).unwrap();
    assert!(help.contains("simulate"), "{help}");
    let help = String::from_utf8(cuttle(&["simulate", "--help"]).stdout).unwrap();
    assert!(help.contains("-f, --file <SCENARIO.toml>"), "{help}");
    assert!(help.contains("--output <OUTPUT>"), "{help}");
}
