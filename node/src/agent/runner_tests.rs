//! Tests of the runner with a real `bash`: environment, substitution, exit codes, output capture,
//! masking, stopping, timeouts, working directories and batching.

use super::*;
use crate::agent::script::unit_dir;
use cuttle_proto::v1::Variable;
use std::time::Duration;

fn config(work_dir: &Path) -> RunnerConfig {
    RunnerConfig {
        agent_name: "web01".into(),
        endpoints: vec!["127.0.0.1:7101".into(), "127.0.0.1:7102".into()],
        work_dir: work_dir.to_path_buf(),
        shell: "bash".into(),
        cancel_grace_ms: 10_000,
    }
}

fn unit(script: &str) -> RunUnit {
    RunUnit {
        unit: 7,
        attempt: 2,
        task: 3,
        project: "shop".into(),
        release: "1.2.3".into(),
        environment: "Production".into(),
        tenant: String::new(),
        step: "deploy".into(),
        step_index: 0,
        kind: "run".into(),
        exclusive: true,
        token: 42,
        locks: vec!["target".into()],
        script: script.into(),
        variables: Vec::new(),
        timeout_ms: 0,
        package: String::new(),
    }
}

fn variable(name: &str, value: &str, sensitive: bool) -> Variable {
    Variable {
        name: name.into(),
        value: value.into(),
        sensitive,
    }
}

/// What one unit produced.
#[derive(Debug)]
struct Outcome {
    batches: Vec<Vec<LogLine>>,
    exit_code: i32,
    reason: String,
}

impl Outcome {
    fn lines(&self, stream: LogStream) -> Vec<String> {
        self.batches
            .iter()
            .flatten()
            .filter(|l| l.stream == stream as i32)
            .map(|l| l.text.clone())
            .collect()
    }
}

/// Collects a launched unit's events until it finishes (at most 30 s).
async fn finish(unit: u64, events: &mut mpsc::Receiver<RunnerEvent>) -> Outcome {
    let mut batches = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the unit finishes within 30 s")
            .expect("the runner sends Finished before it stops");
        match event {
            RunnerEvent::Output { unit: u, lines, .. } => {
                assert_eq!(u, unit);
                batches.push(lines);
            }
            RunnerEvent::Finished {
                exit_code, reason, ..
            } => {
                return Outcome {
                    batches,
                    exit_code,
                    reason,
                }
            }
        }
    }
}

async fn run(config: RunnerConfig, run: RunUnit) -> Outcome {
    let (tx, mut rx) = mpsc::channel(64);
    let unit = run.unit;
    let launched = ProcessLauncher::new(config)
        .launch(run, tx)
        .expect("the unit starts");
    let outcome = finish(unit, &mut rx).await;
    drop(launched);
    outcome
}

#[tokio::test]
async fn the_script_sees_its_environment_and_substituted_variables() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = unit(concat!(
        "echo \"$CUTTLE_TASK_ID|$CUTTLE_PROJECT|$CUTTLE_RELEASE|$CUTTLE_ENVIRONMENT|[$CUTTLE_TENANT]|",
        "$CUTTLE_TARGET|$CUTTLE_STEP|$CUTTLE_FENCING_TOKEN|$CUTTLE_UNIT_ID|$CUTTLE_UNIT_ATTEMPT|$CUTTLE_ENDPOINTS\"\n",
        "echo \"$CUTTLE_VAR_APP_POOL_NAME $CUTTLE_VAR_OCTOPUS_ACTION_X_\"\n",
        "echo '#{App.Pool Name} #{Cuttle.Release.Number} #{Cuttle.Machine.Name} #{Cuttle.Task.Id} #{Missing} #{Missing}'\n",
        "pwd\n",
    ));
    job.variables = vec![
        variable("App.Pool Name", "shop-pool", false),
        variable("Octopus.Action[x]", "bracketed", false),
    ];
    let expected_dir = unit_dir(dir.path(), &job);
    let outcome = run(config(dir.path()), job).await;
    assert_eq!((outcome.exit_code, outcome.reason.as_str()), (0, ""));
    assert_eq!(
        outcome.lines(LogStream::Stdout),
        vec![
            "3|shop|1.2.3|Production|[]|web01|deploy|42|7|2|127.0.0.1:7101,127.0.0.1:7102"
                .to_string(),
            "shop-pool bracketed".to_string(),
            "shop-pool 1.2.3 web01 3 #{Missing} #{Missing}".to_string(),
            expected_dir.canonicalize().unwrap().display().to_string(),
        ]
    );
    let system = outcome.lines(LogStream::System);
    assert_eq!(
        system[0],
        "running step deploy on web01 (unit 7 attempt 2, token 42)"
    );
    let warnings: Vec<&String> = system.iter().filter(|l| l.contains("#{Missing}")).collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning per unknown name: {system:?}"
    );
    assert_eq!(system.last().unwrap(), "step deploy ended with exit code 0");
}

#[tokio::test]
async fn exit_codes_are_the_scripts_or_128_plus_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(config(dir.path()), unit("exit 3")).await;
    assert_eq!(outcome.exit_code, 3);
    assert_eq!(outcome.reason, "");
    let outcome = run(config(dir.path()), unit("kill -9 $$")).await;
    assert_eq!(outcome.exit_code, 137);
}

#[tokio::test]
async fn a_shell_that_cannot_start_is_a_launch_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = config(dir.path());
    bad.shell = "/nonexistent/shell".into();
    let (tx, _rx) = mpsc::channel(4);
    let error = ProcessLauncher::new(bad)
        .launch(unit("true"), tx)
        .unwrap_err();
    assert!(
        error.starts_with("the script could not start: /nonexistent/shell:"),
        "{error}"
    );
    let (tx, _rx) = mpsc::channel(4);
    let mut strange = unit("true");
    strange.kind = "teleport".into();
    let error = ProcessLauncher::new(config(dir.path()))
        .launch(strange, tx)
        .unwrap_err();
    assert!(error.contains("unknown unit kind \"teleport\""), "{error}");
}

#[tokio::test]
async fn stdout_and_stderr_are_captured_with_timestamps_and_masked() {
    let dir = tempfile::tempdir().unwrap();
    let before = crate::agent::wall_ms();
    let mut job = unit("echo out1; echo \"err1 $CUTTLE_VAR_PASSWORD\" >&2; echo 'pw=#{Password}'; printf 'no newline'");
    job.variables = vec![
        variable("Password", "hunter2", true),
        variable("User", "bob", false),
    ];
    let outcome = run(config(dir.path()), job).await;
    let after = crate::agent::wall_ms();
    assert_eq!(
        outcome.lines(LogStream::Stdout),
        vec!["out1", "pw=********", "no newline"]
    );
    assert_eq!(outcome.lines(LogStream::Stderr), vec!["err1 ********"]);
    for line in outcome.batches.iter().flatten() {
        assert!(before <= line.ts_ms && line.ts_ms <= after, "{line:?}");
        assert!(!line.text.contains("hunter2"));
    }
}

#[tokio::test]
async fn a_script_that_ignores_sigterm_is_killed_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut fast = config(dir.path());
    fast.cancel_grace_ms = 300;
    let (tx, mut rx) = mpsc::channel(64);
    let job = unit("trap 'echo got TERM' TERM; echo ready; while true; do sleep 0.05; done");
    let launched = ProcessLauncher::new(fast).launch(job, tx).unwrap();
    // Wait for the trap to be set before stopping.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let RunnerEvent::Output { lines, .. } = event {
            if lines.iter().any(|l| l.text == "ready") {
                break;
            }
        }
    }
    let stopped_at = Instant::now();
    let stop = Stop {
        reason: "cancelled".into(),
        grace_ms: 300,
    };
    launched.stop.send(stop).unwrap();
    let outcome = finish(7, &mut rx).await;
    assert!(stopped_at.elapsed() >= Duration::from_millis(300));
    assert_eq!(outcome.exit_code, 137, "{outcome:?}");
    assert_eq!(outcome.reason, "cancelled");
    assert!(outcome
        .lines(LogStream::Stdout)
        .contains(&"got TERM".to_string()));
    assert!(outcome
        .lines(LogStream::System)
        .contains(&"stopping: cancelled".to_string()));
}

#[tokio::test]
async fn a_unit_past_its_timeout_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = unit("sleep 30");
    job.timeout_ms = 300;
    let started = Instant::now();
    let outcome = run(config(dir.path()), job).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(outcome.exit_code, 128 + libc::SIGTERM);
    assert_eq!(outcome.reason, "timed out after 300 ms");
}

#[tokio::test]
async fn releases_and_tenants_get_separate_working_directories() {
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    for (release, tenant) in [("1.0", ""), ("1.1", ""), ("1.0", "acme"), ("1.0", "globex")] {
        let mut job = unit("pwd; ls; touch mine");
        job.release = release.into();
        job.tenant = tenant.into();
        jobs.push(job);
    }
    let mut dirs = Vec::new();
    for job in jobs {
        let outcome = run(config(dir.path()), job).await;
        let stdout = outcome.lines(LogStream::Stdout);
        assert_eq!(stdout.len(), 1, "each folder starts empty: {stdout:?}");
        dirs.push(stdout[0].clone());
    }
    let distinct: std::collections::BTreeSet<&String> = dirs.iter().collect();
    assert_eq!(distinct.len(), 4, "{dirs:?}");
    assert!(
        dirs[0].ends_with("/units/shop/Production/_untenanted/1.0"),
        "{}",
        dirs[0]
    );
    assert!(
        dirs[2].ends_with("/units/shop/Production/acme/1.0"),
        "{}",
        dirs[2]
    );
}

#[tokio::test]
async fn output_goes_out_in_batches_within_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let script = "for i in $(seq 1 1000); do printf '%0100d\\n' $i; done; head -c 70000 /dev/zero | tr '\\0' x; echo";
    let outcome = run(config(dir.path()), unit(script)).await;
    assert_eq!(outcome.exit_code, 0);
    for batch in &outcome.batches {
        assert!(batch.len() <= OUTPUT_BATCH_LINES_MAX);
        let bytes: usize = batch.iter().map(|l| l.text.len()).sum();
        assert!(bytes <= OUTPUT_BATCH_BYTES_MAX, "{bytes}");
    }
    assert!(
        outcome.batches.len() >= 4,
        "1000 lines need at least 4 batches"
    );
    let stdout = outcome.lines(LogStream::Stdout);
    assert_eq!(stdout.len(), 1001);
    for (index, line) in stdout[..1000].iter().enumerate() {
        assert_eq!(line.trim_start_matches('0'), (index + 1).to_string());
    }
    let marker = format!(" [line cut at {OUTPUT_LINE_BYTES_MAX} bytes]");
    assert_eq!(
        stdout[1000],
        format!("{}{marker}", "x".repeat(OUTPUT_LINE_BYTES_MAX))
    );
}

#[test]
fn a_batch_is_due_after_its_first_line_and_full_at_the_limits() {
    let now = Instant::now();
    let line = |text: &str| LogLine {
        ts_ms: 0,
        stream: 0,
        text: text.into(),
    };
    let mut batcher = Batcher::default();
    assert_eq!(batcher.due_at(), None);
    assert!(batcher.push(line("a"), now).is_none());
    assert!(batcher
        .push(line("b"), now + Duration::from_millis(50))
        .is_none());
    assert_eq!(
        batcher.due_at(),
        Some(now + Duration::from_millis(OUTPUT_BATCH_DELAY_MS))
    );
    for _ in 2..OUTPUT_BATCH_LINES_MAX - 1 {
        assert!(batcher.push(line("c"), now).is_none());
    }
    let full = batcher
        .push(line("d"), now)
        .expect("256 lines make a batch");
    assert_eq!(full.len(), OUTPUT_BATCH_LINES_MAX);
    assert_eq!(batcher.due_at(), None);
    let big = "y".repeat(OUTPUT_LINE_BYTES_MAX);
    for _ in 0..3 {
        assert!(batcher.push(line(&big), now).is_none());
    }
    let before = batcher.push(line("z"), now);
    assert!(before.is_none(), "3 x 16 KiB + 1 byte still fits");
    let ready = batcher
        .push(line(&big), now)
        .expect("the next 16 KiB does not fit");
    assert_eq!(ready.len(), 4);
    assert_eq!(batcher.take().len(), 1);
}

#[tokio::test]
async fn an_acquire_unit_with_nothing_to_fetch_succeeds_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = unit("");
    job.kind = "acquire".into();
    job.package = "shop-web".into();
    let outcome = run(config(dir.path()), job).await;
    assert_eq!((outcome.exit_code, outcome.reason.as_str()), (0, ""));
    assert!(outcome
        .lines(LogStream::System)
        .contains(&"package shop-web: nothing to fetch".to_string()));
}
