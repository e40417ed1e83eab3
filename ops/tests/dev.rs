//! `cuttle dev` as a user runs it: it comes up with its agents, replays the seeds' demo with the
//! outcome the seeds describe, other commands find it without --endpoints, and Ctrl-C stops every
//! child it started.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn dev_runs_the_demo_serves_the_cli_and_stops_its_children_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .arg("dev")
        .current_dir(tmp.path())
        .env("HOME", tmp.path())
        .env("NO_COLOR", "1")
        .env_remove("CUTTLE_ENDPOINTS")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start cuttle dev");
    let pid = dev.id() as i32;
    let stdout = dev.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut output = String::new();
    let start = Instant::now();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120).saturating_sub(start.elapsed()))
            .unwrap_or_else(|_| panic!("cuttle dev did not get ready; output so far:\n{output}"));
        output.push_str(&line);
        output.push('\n');
        if line.contains("cuttle dev is running") {
            break;
        }
    }
    // Seed 001 as written: 1 and 2 together, 3 alone after both, 4 and 5 together.
    let row = |label: &str| {
        output
            .lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("no {label:?} in:\n{output}"))
            .to_string()
    };
    assert!(
        row("project1 deploy").contains("shared    alongside project2 deploy"),
        "{output}"
    );
    assert!(
        row("project3 deploy").contains("exclusive alone"),
        "{output}"
    );
    assert!(
        row("project4 deploy").contains("alongside project5 deploy"),
        "{output}"
    );
    assert!(
        output.contains("shop           1.0   → Staging     succeeded"),
        "{output}"
    );

    let list = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["task", "list", "--output", "json"])
        .current_dir(tmp.path())
        .env("HOME", tmp.path())
        .env_remove("CUTTLE_ENDPOINTS")
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let tasks: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 12, "{tasks:?}");
    assert!(tasks.iter().all(|t| t["state"] == "succeeded"), "{tasks:?}");

    let children: Vec<i32> = std::fs::read_to_string(tmp.path().join(".cuttle-dev/children"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(children.len(), 9, "3 nodes and 6 agents");
    assert!(children.iter().all(|&c| alive(c)));
    // SAFETY: SIGINT to the process this test started, as Ctrl-C would.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let start = Instant::now();
    let status = loop {
        if let Some(status) = dev.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "cuttle dev did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let left: Vec<i32> = children.into_iter().filter(|&c| alive(c)).collect();
    assert!(left.is_empty(), "children left running: {left:?}");
    assert!(
        !tmp.path().join(".cuttle-dev/endpoints").exists(),
        "the endpoints of a stopped cluster are removed"
    );
}
