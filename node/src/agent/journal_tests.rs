//! Tests of the journal: its stable format, replay into the fencing guard, torn and malformed
//! lines, and the killing of a unit an earlier agent left running.

use super::*;
use crate::agent::fence::{Admission, FenceInput};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

fn unit(unit: u64, token: u64) -> UnitRecord {
    UnitRecord {
        unit,
        attempt: 1,
        task: 3,
        project: "shop".into(),
        environment: "Production".into(),
        tenant: String::new(),
        target: "web01".into(),
        step: "deploy".into(),
        token,
        locks: vec!["target".into()],
        exclusive: true,
    }
}

fn start(u: u64, token: u64) -> Record {
    Record::Start {
        ts_ms: 1,
        unit: unit(u, token),
    }
}

fn end(u: u64, token: u64, exit_code: i32) -> Record {
    Record::End {
        ts_ms: 2,
        unit: unit(u, token),
        exit_code,
        reason: String::new(),
    }
}

fn write_lines(path: &Path, records: &[Record]) {
    let mut text = String::new();
    for record in records {
        text.push_str(&serde_json::to_string(record).unwrap());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn lines_have_the_documented_field_names() {
    let line = serde_json::to_string(&start(7, 42)).unwrap();
    assert_eq!(
        line,
        r#"{"event":"start","ts_ms":1,"unit":7,"attempt":1,"task":3,"project":"shop","environment":"Production","tenant":"","target":"web01","step":"deploy","token":42,"locks":["target"],"exclusive":true}"#
    );
    let spawned = Record::Spawned {
        ts_ms: 3,
        unit: 7,
        attempt: 1,
        pgid: 31337,
    };
    assert_eq!(
        serde_json::to_string(&spawned).unwrap(),
        r#"{"event":"spawned","ts_ms":3,"unit":7,"attempt":1,"pgid":31337}"#
    );
    let end_line = serde_json::to_string(&end(7, 42, 0)).unwrap();
    assert!(end_line.starts_with(r#"{"event":"end","ts_ms":2,"unit":7,"#));
    assert!(end_line.ends_with(r#""exclusive":true,"exit_code":0,"reason":""}"#));
    let refused = Record::Refused {
        ts_ms: 4,
        unit: unit(8, 5),
        reason: "refused: x".into(),
    };
    let refused_line = serde_json::to_string(&refused).unwrap();
    assert!(refused_line.starts_with(r#"{"event":"refused","ts_ms":4,"unit":8,"#));
    for record in [start(7, 42), spawned, end(7, 42, 0), refused] {
        let line = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), record);
    }
}

#[test]
fn replay_restores_tokens_duplicates_and_recent_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let refused = Record::Refused {
        ts_ms: 5,
        unit: unit(3, 4),
        reason: "refused: old".into(),
    };
    write_lines(
        &path,
        &[
            start(1, 9),
            end(1, 9, 0),
            start(2, 11),
            end(2, 11, 1),
            refused,
        ],
    );
    let mut fence = Fence::new(1);
    let (_journal, replay) = Journal::open(&path, &mut fence, 100).unwrap();
    assert!(replay.interrupted.is_empty());
    let ends: Vec<(u64, i32)> = replay
        .recent_ends
        .iter()
        .map(|e| (e.unit, e.exit_code))
        .collect();
    assert_eq!(ends, vec![(1, 0), (2, 1), (3, -1)]);
    assert_eq!(fence.token_max("target"), Some(11));
    let locks = vec!["target".to_string()];
    let again = FenceInput {
        unit: 2,
        attempt: 1,
        token: 11,
        locks: &locks,
        exclusive: true,
    };
    assert_eq!(fence.admit(&again), Admission::Duplicate);
    let stale = FenceInput {
        unit: 4,
        token: 10,
        ..again
    };
    assert!(matches!(fence.admit(&stale), Admission::Refuse(_)));
}

#[test]
fn a_torn_last_line_is_cut_off_and_the_journal_stays_appendable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    write_lines(&path, &[start(1, 9), end(1, 9, 0)]);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(r#"{"event":"start","ts_ms":1,"unit":2,"att"#);
    std::fs::write(&path, &text).unwrap();
    let mut fence = Fence::new(1);
    let (mut journal, replay) = Journal::open(&path, &mut fence, 100).unwrap();
    assert!(
        replay.interrupted.is_empty(),
        "the torn start never happened"
    );
    journal.append(&start(3, 12)).unwrap();
    drop(journal);
    let lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 3);
    for line in &lines {
        serde_json::from_str::<Record>(line).unwrap();
    }
}

#[test]
fn a_complete_last_line_without_its_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    std::fs::write(&path, serde_json::to_string(&end(1, 9, 0)).unwrap()).unwrap();
    let mut fence = Fence::new(1);
    let (mut journal, replay) = Journal::open(&path, &mut fence, 100).unwrap();
    assert_eq!(replay.recent_ends.len(), 1);
    journal.append(&end(2, 10, 0)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
}

#[test]
fn a_malformed_line_before_the_last_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let good = serde_json::to_string(&start(1, 9)).unwrap();
    std::fs::write(&path, format!("{good}\n{{\"event\":\"bogus\"}}\n{good}\n")).unwrap();
    let error = Journal::open(&path, &mut Fence::new(1), 100).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, JournalError::Malformed { line: 2, .. }),
        "{message}"
    );
    assert!(message.contains("journal.jsonl line 2"), "{message}");
}

#[test]
fn a_journal_open_in_one_agent_is_refused_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let _first = Journal::open(&path, &mut Fence::new(1), 1).unwrap();
    let second = Journal::open(&path, &mut Fence::new(1), 1).unwrap_err();
    assert!(matches!(second, JournalError::InUse { .. }), "{second}");
}

/// Starts `sleep 60` in its own process group with the unit's environment, as the runner would.
fn leftover(unit: u64, attempt: u32) -> std::process::Child {
    std::process::Command::new("sleep")
        .arg("60")
        .env("CUTTLE_UNIT_ID", unit.to_string())
        .env("CUTTLE_UNIT_ATTEMPT", attempt.to_string())
        .process_group(0)
        .spawn()
        .unwrap()
}

fn exited_within(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn an_interrupted_unit_is_killed_journaled_and_reported() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let mut ours = leftover(5, 2);
    // Same process-group shape, but another unit's environment: it must survive the replay.
    let mut stranger = leftover(5, 3);
    let spawned = |pgid: u32, attempt| Record::Spawned {
        ts_ms: 1,
        unit: 5,
        attempt,
        pgid: pgid as i32,
    };
    let mut started = unit(5, 20);
    started.attempt = 2;
    let mut started_stranger = unit(5, 21);
    started_stranger.attempt = 4;
    write_lines(
        &path,
        &[
            start(1, 9),
            end(1, 9, 0),
            Record::Start {
                ts_ms: 1,
                unit: started,
            },
            spawned(ours.id(), 2),
            Record::Start {
                ts_ms: 1,
                unit: started_stranger,
            },
            // The stranger's group is recorded under attempt 4, but its environment says 3.
            spawned(stranger.id(), 4),
        ],
    );
    let mut fence = Fence::new(1);
    let (journal, replay) = Journal::open(&path, &mut fence, 100).unwrap();
    drop(journal);
    let status =
        exited_within(&mut ours, Duration::from_secs(5)).expect("the leftover unit was killed");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(exited_within(&mut stranger, Duration::from_millis(200)).is_none());
    stranger.kill().unwrap();
    stranger.wait().unwrap();

    assert_eq!(replay.groups_killed, vec![ours.id() as i32]);
    let interrupted: Vec<(u64, u32, i32, &str)> = replay
        .interrupted
        .iter()
        .map(|e| (e.unit, e.attempt, e.exit_code, e.reason.as_str()))
        .collect();
    assert_eq!(
        interrupted,
        vec![
            (5, 2, -2, INTERRUPTED_REASON),
            (5, 4, -2, INTERRUPTED_REASON)
        ]
    );
    assert_eq!(replay.recent_ends.len(), 3);
    assert_eq!(replay.recent_ends.last(), replay.interrupted.last());
    // The ends are durable: a second replay finds nothing interrupted.
    let (_journal, again) = Journal::open(&path, &mut Fence::new(1), 200).unwrap();
    assert!(again.interrupted.is_empty());
    assert_eq!(again.recent_ends.len(), 3);
}

#[test]
fn a_unit_without_a_spawned_record_is_found_by_its_environment() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    // The agent died after the spawn, before the `spawned` record reached the disk.
    let unit_number = 900_000 + u64::from(std::process::id() % 1000);
    let mut ours = leftover(unit_number, 1);
    let mut started = unit(unit_number, 30);
    started.attempt = 1;
    write_lines(
        &path,
        &[Record::Start {
            ts_ms: 1,
            unit: started,
        }],
    );
    // Right after the spawn, /proc may still show the parent's environment: wait for the exec.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !crate::agent::process::runs_unit(ours.id() as i32, unit_number, 1) {
        assert!(
            Instant::now() < deadline,
            "the leftover never showed its environment"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (_journal, replay) = Journal::open(&path, &mut Fence::new(1), 100).unwrap();
    let status =
        exited_within(&mut ours, Duration::from_secs(5)).expect("the leftover unit was killed");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(replay.groups_killed, vec![ours.id() as i32]);
    assert_eq!(replay.interrupted.len(), 1);
}
