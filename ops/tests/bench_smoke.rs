//! The benchmark suite as a user runs it, at toy sizes (figures are not checked here, only that
//! each scenario runs, checks itself and writes what it promises): `cuttle bench scale` with its
//! light agents, and `cuttle bench all` writing its report and raw results.

use std::process::Command;

fn cuttle() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cuttle"));
    command.env("NO_COLOR", "1").env_remove("CUTTLE_ENDPOINTS");
    command
}

#[test]
fn bench_scale_dispatches_its_queue_to_light_agents_each_unit_once() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("scale.json");
    let output = cuttle()
        .args([
            "bench",
            "scale",
            "--tasks",
            "600",
            "--targets",
            "60",
            "--projects",
            "20",
            "--chunks",
            "2",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench scale failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("| agents | all welcomed s |"), "{stdout}");
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let dispatch = &raw["dispatch"];
    assert_eq!(dispatch["agents"], 60, "{raw}");
    assert_eq!(dispatch["deployments"], 600, "{raw}");
    // Each project's role is on 60 / 3 / 20 = 1 target of an environment: one unit a deployment.
    assert_eq!(dispatch["units_run"], 600, "{raw}");
    assert_eq!(raw["rates_per_s"].as_array().unwrap().len(), 2, "{raw}");
}

#[test]
fn bench_all_writes_the_machine_the_commands_the_tables_and_the_raw_results() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("results");
    let output = cuttle()
        .args(["bench", "all", "--quick", "--only", "rush", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "bench all failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for expected in [
        "| cores |",
        "| commit |",
        "## rush",
        "cuttle bench rush --releases 10 --repeats 1",
        "makespan",
    ] {
        assert!(report.contains(expected), "{expected:?} missing:\n{report}");
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(
        results["machine"]["cores"].as_u64().unwrap() >= 1,
        "{results}"
    );
    assert!(
        results["scenarios"]["rush"]["results"].is_object()
            || results["scenarios"]["rush"]["results"].is_array(),
        "{results}"
    );
    assert!(std::fs::read_to_string(out.join("rush.md"))
        .unwrap()
        .contains("makespan"));
}
