//! Golden files: bytes written by this version of cuttle, kept in the repository, must still decode
//! to the same values (and this version must still write the same bytes). A rolling upgrade has a
//! newer node read what an older node wrote; when a format changes, keep the old file and its
//! decoder, and add a new file beside it.
//!
//! To write missing golden files (a new format version only): `CUTTLE_BLESS=1 cargo test -p
//! cuttle-raft --test golden`.

use cuttle_raft::cluster::codec;
use cuttle_raft::cluster::types::{decode_entry, BatchV1, TypeConfigV1};
use cuttle_raft::cluster::{Batch, TypeConfig};
use cuttle_raft::ledger::model::{
    Environment, Lifecycle, Model, Phase, Project, Scope, Step, Tenant, VariableDef,
};
use cuttle_raft::ledger::{
    LogLine, LogStream, Replicated, Request, StepPayload, TaskPayload, Variable,
};
use cuttle_raft::sched::*;
use openraft::{Entry, EntryPayload, LogId};
use std::path::PathBuf;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares `bytes` with the golden file, or writes it under CUTTLE_BLESS when it is missing.
fn check_golden(name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = golden(name);
    match std::fs::read(&path) {
        Ok(stored) => stored,
        Err(_) if std::env::var_os("CUTTLE_BLESS").is_some() => {
            std::fs::write(&path, bytes).expect("write golden file");
            bytes.to_vec()
        }
        Err(e) => panic!(
            "golden file {} is missing ({e}): it must be committed",
            path.display()
        ),
    }
}

fn sample_task() -> TaskSpec {
    match &sample_commands()[2] {
        Command::SubmitTask(task) => task.clone(),
        _ => unreachable!(),
    }
}

fn sample_commands() -> Vec<Command> {
    let target = TargetSpec {
        name: "web01".into(),
        environments: vec!["Production".into()],
        roles: vec!["web".into()],
        tenants: vec!["acme".into()],
        capacity: 4,
    };
    let task = TaskSpec {
        project: "shop".into(),
        release: "1.2.3".into(),
        environment: "Production".into(),
        tenant: Some("acme".into()),
        concurrency_tag: Some("group".into()),
        bypass: BypassRule {
            default: true,
            roles: vec![("db".into(), false)],
            targets: vec![("web02".into(), false)],
        },
        hold_targets: false,
        acquire_max_parallelism: 3,
        steps: vec![StepSpec {
            name: "deploy".into(),
            roles: vec!["web".into()],
            max_parallelism: 5,
            package: Some("shop.zip".into()),
            lock: Some(StepLockSpec {
                name: "iis".into(),
                scope: LockScope::Target,
                capacity: 1,
            }),
        }],
    };
    vec![
        Command::UpsertTarget(target),
        Command::SetSettings(SettingsPatch {
            task_cap: Some(7),
            ended_tasks_retained: None,
            queued_tasks_max: Some(9),
        }),
        Command::SubmitTask(task),
        Command::UnitStarted {
            unit: UnitId(1),
            attempt: 1,
        },
        Command::UnitFinished {
            unit: UnitId(1),
            attempt: 1,
            exit_code: 0,
        },
        Command::CancelTask { task: TaskId(1) },
        Command::AgentLost {
            name: "web01".into(),
        },
        Command::RemoveTarget {
            name: "web01".into(),
        },
        Command::AcquireLock(LockSpec {
            name: "db".into(),
            target: None,
            capacity: 1,
            holder: "ci".into(),
            ttl_ms: 30_000,
        }),
        Command::KeepAliveLock { request: ReqId(9) },
        Command::ReleaseLock { request: ReqId(9) },
        Command::Tick,
    ]
}

fn sample_payload() -> TaskPayload {
    TaskPayload {
        steps: vec![StepPayload {
            script: "echo deploying #{Cuttle.Release.Number}".into(),
            acquire_script: "true".into(),
            timeout_ms: 60_000,
        }],
        variables: vec![Variable {
            name: "DbPassword".into(),
            value: "hunter2".into(),
            sensitive: true,
        }],
    }
}

fn sample_batch() -> Batch {
    let mut commands: Vec<Request> = sample_commands().into_iter().map(Request::Core).collect();
    commands.push(Request::SubmitDeployment {
        spec: sample_task(),
        payload: sample_payload(),
    });
    commands.push(Request::AppendLog {
        unit: UnitId(1),
        attempt: 1,
        seq: 0,
        lines: vec![LogLine {
            ts_ms: 1_790_000_000_001,
            unit: None,
            stream: LogStream::Stderr,
            text: "warming up".into(),
        }],
    });
    Batch {
        now_ms: 1_790_000_000_000,
        commands,
    }
}

#[test]
fn a_log_entry_written_by_format_1_still_decodes() {
    let old = BatchV1 {
        now_ms: 1_790_000_000_000,
        commands: sample_commands(),
    };
    let entry: Entry<TypeConfigV1> = Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(3, 1), 42),
        payload: EntryPayload::Normal(old.clone()),
    };
    let mut bytes = 1u16.to_le_bytes().to_vec();
    bincode::serde::encode_into_std_write(&entry, &mut bytes, bincode::config::standard()).unwrap();
    let stored = check_golden("log_entry_v1.bin", &bytes);
    assert_eq!(stored, bytes, "format 1 is what it was");
    let decoded = decode_entry(&stored).expect("the golden format-1 log entry decodes");
    assert_eq!(decoded.log_id, entry.log_id);
    match decoded.payload {
        EntryPayload::Normal(batch) => assert_eq!(batch, Batch::from(old)),
        _ => panic!("payload kind changed"),
    }
}

#[test]
fn a_log_entry_written_by_format_2_still_decodes() {
    let entry: Entry<TypeConfig> = Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(4, 2), 43),
        payload: EntryPayload::Normal(sample_batch()),
    };
    let bytes = codec::encode(&entry).unwrap();
    let stored = check_golden("log_entry_v2.bin", &bytes);
    let decoded = decode_entry(&stored).expect("the golden log entry decodes");
    assert_eq!(decoded.log_id, entry.log_id);
    match (decoded.payload, entry.payload) {
        (EntryPayload::Normal(a), EntryPayload::Normal(b)) => assert_eq!(a, b),
        _ => panic!("payload kind changed"),
    }
    assert_eq!(stored, bytes, "this version writes log entries as format 2");
}

fn sample_replicated() -> Replicated {
    let mut state = Replicated::new(sample_state());
    let mut spec = sample_task();
    spec.release = "1.2.5".into();
    let deployment = Request::SubmitDeployment {
        spec,
        payload: sample_payload(),
    };
    state
        .apply(3_000, deployment, &mut Vec::new())
        .expect("the sample deployment is accepted");
    state
}

#[test]
fn a_replicated_snapshot_of_format_1_still_decodes() {
    let stored =
        std::fs::read(golden("replicated_snapshot_v1.bin")).expect("committed golden file");
    let restored = Replicated::restore(&stored).expect("the format-1 snapshot decodes");
    let expected = sample_replicated();
    assert_eq!(restored.scheduler, expected.scheduler);
    assert_eq!(restored.log(TaskId(3)), expected.log(TaskId(3)));
    assert_eq!(restored.payload(TaskId(3)), expected.payload(TaskId(3)));
    assert_eq!(restored.model(), &Model::default(), "format 1 had no model");
    assert_eq!(restored.snapshot().unwrap(), expected.snapshot().unwrap());
}

fn sample_model() -> Model {
    let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    Model {
        environments: ["Production", "QA"]
            .into_iter()
            .map(|name| Environment {
                name: name.into(),
                description: None,
            })
            .collect(),
        tenants: vec![Tenant {
            name: "acme".into(),
            description: Some("first customer".into()),
        }],
        lifecycles: vec![Lifecycle {
            name: "default".into(),
            phases: vec![
                Phase {
                    name: "QA".into(),
                    environments: names(&["QA"]),
                    automatic: true,
                },
                Phase {
                    name: "Production".into(),
                    environments: names(&["Production"]),
                    automatic: false,
                },
            ],
        }],
        projects: vec![Project {
            name: "shop".into(),
            lifecycle: Some("default".into()),
            tenanted: true,
            variable_sets: Vec::new(),
            variables: vec![VariableDef {
                name: "Port".into(),
                value: "8080".into(),
                sensitive: false,
                scope: Scope {
                    roles: names(&["web"]),
                    ..Scope::default()
                },
            }],
            steps: vec![Step {
                name: "deploy".into(),
                roles: names(&["web"]),
                script: "echo #{Port}".into(),
                package: None,
                acquire_script: String::new(),
                timeout_ms: 0,
                lock: None,
            }],
        }],
        ..Model::default()
    }
}

#[test]
fn a_replicated_snapshot_of_format_2_still_decodes() {
    let stored =
        std::fs::read(golden("replicated_snapshot_v2.bin")).expect("committed golden file");
    let restored = Replicated::restore(&stored).expect("the format-2 snapshot decodes");
    assert_eq!(restored.model().environments[0].name, "Production");
    let mut expected = sample_replicated();
    let model = Model {
        environments: vec![Environment {
            name: "Production".into(),
            description: None,
        }],
        ..Model::default()
    };
    expected
        .apply(3_001, Request::ApplySpec(model), &mut Vec::new())
        .expect("a model applies");
    assert_eq!(restored.snapshot().unwrap(), expected.snapshot().unwrap());
    assert_eq!(
        restored.releases().projects().count(),
        0,
        "format 2 had no releases"
    );
}

/// The sample state with a model, a release of a tenanted project auto-deployed to QA and a deploy
/// to Production asked for (refused: QA has not succeeded), and per-target variables.
fn sample_replicated_v3() -> Replicated {
    let mut state = sample_replicated();
    let apply =
        |state: &mut Replicated, now_ms, request| state.apply(now_ms, request, &mut Vec::new());
    apply(&mut state, 3_001, Request::ApplySpec(sample_model())).expect("the model applies");
    apply(
        &mut state,
        3_002,
        Request::CreateRelease {
            project: "shop".into(),
            version: "2.0.0".into(),
        },
    )
    .expect("the release is created");
    let refused = apply(
        &mut state,
        3_003,
        Request::Deploy {
            project: "shop".into(),
            release: "2.0.0".into(),
            environment: "Production".into(),
            tenants: vec!["acme".into()],
            all_tenants: false,
        },
    );
    assert!(
        refused.is_err(),
        "Production is not reached before QA succeeds"
    );
    state
}

#[test]
fn a_replicated_snapshot_written_by_this_format_still_decodes() {
    let state = sample_replicated_v3();
    let bytes = state.snapshot().unwrap();
    let stored = check_golden("replicated_snapshot_v3.bin", &bytes);
    let restored = Replicated::restore(&stored).expect("the golden snapshot decodes");
    assert_eq!(
        restored.snapshot().unwrap(),
        bytes,
        "it restores the same state"
    );
    assert_eq!(restored.model().projects[0].name, "shop");
    let release = restored.releases().release("shop", "2.0.0").expect("kept");
    assert_eq!(release.deployments, 1);
    assert_eq!(stored, bytes, "this version writes the golden bytes");
    let bare = Replicated::restore(&sample_state().snapshot().unwrap())
        .expect("a bare core snapshot (written before the ledger) restores");
    assert_eq!(bare.scheduler, sample_state());
}

#[test]
fn release_requests_in_a_log_entry_keep_their_bytes() {
    let batch = Batch {
        now_ms: 1_790_000_000_000,
        commands: vec![
            Request::ApplySpec(sample_model()),
            Request::CreateRelease {
                project: "shop".into(),
                version: "2.0.0".into(),
            },
            Request::Deploy {
                project: "shop".into(),
                release: "2.0.0".into(),
                environment: "QA".into(),
                tenants: vec!["acme".into()],
                all_tenants: false,
            },
        ],
    };
    let entry: Entry<TypeConfig> = Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(5, 1), 44),
        payload: EntryPayload::Normal(batch),
    };
    let bytes = codec::encode(&entry).unwrap();
    let stored = check_golden("log_entry_v2_releases.bin", &bytes);
    let decoded = decode_entry(&stored).expect("the golden log entry decodes");
    match (decoded.payload, entry.payload) {
        (EntryPayload::Normal(a), EntryPayload::Normal(b)) => assert_eq!(a, b),
        _ => panic!("payload kind changed"),
    }
    assert_eq!(stored, bytes, "this version writes the golden bytes");
}

/// A small state with something of everything: targets, a running task with a dispatched unit, a
/// queued task, a client lock.
fn sample_state() -> Scheduler {
    let mut sched: Scheduler = Scheduler::default();
    let mut apply = |now_ms: u64, command: Command| {
        sched
            .apply_one(now_ms, command)
            .expect("sample command accepted");
    };
    for (now_ms, command) in sample_commands().into_iter().take(3).enumerate() {
        apply(1_000 + now_ms as u64, command);
    }
    let mut second = sample_task();
    second.release = "1.2.4".into();
    apply(2_000, Command::SubmitTask(second));
    apply(
        2_001,
        Command::AcquireLock(LockSpec {
            name: "db".into(),
            target: None,
            capacity: 1,
            holder: "ci".into(),
            ttl_ms: 30_000,
        }),
    );
    sched
}

#[test]
fn a_snapshot_written_by_this_format_still_decodes() {
    let state = sample_state();
    assert!(
        state.queued_tasks() + state.running_tasks() >= 2,
        "the sample has tasks"
    );
    let bytes = state.snapshot().unwrap();
    let name = format!(
        "snapshot_v{}.bin",
        cuttle_raft::sched::snapshot::SNAPSHOT_FORMAT_VERSION
    );
    let stored = check_golden(&name, &bytes);
    let restored = Scheduler::restore(&stored).expect("the golden snapshot decodes");
    assert_eq!(
        restored, state,
        "the golden snapshot restores the same state"
    );
    assert_eq!(
        stored, bytes,
        "this version writes snapshots as the golden file"
    );
}
