//! Carries the fault plan out on the processes and the network of a run, recording each fault's
//! start and end, and heals everything at the end (every link restored, every process resumed or
//! started again).

use crate::history::{now_us, Event, Op, OpPhase, Phase, Recorder};
use crate::procs::Procs;
use crate::schedule::{Fault, Planned};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A node restarted during a rolling restart must answer within this long.
pub const NODE_BACK_WITHIN: Duration = Duration::from_secs(20);
/// `cuttle cluster add/remove` is given up after this long (the add waits for the learner).
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(40);
/// A removal is tried this many times.
pub const MEMBERSHIP_TRIES_MAX: usize = 3;
/// The process number of the nemesis's own operations in the history.
pub const NEMESIS_PROCESS: u32 = 1_000;

fn record(recorder: &Recorder, phase: Phase, fault: &Fault, on: Vec<String>) {
    recorder.push(Event::Fault {
        t_us: now_us(),
        phase,
        kind: fault.kind().to_string(),
        on,
    });
}

/// Sleeps until `at` or until `stop` is set; returns false when stopped.
pub fn sleep_until(at: Instant, stop: &AtomicBool) -> bool {
    while Instant::now() < at {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep((at - Instant::now()).min(Duration::from_millis(100)));
    }
    !stop.load(Ordering::SeqCst)
}

fn node_names(procs: &Procs, indexes: &[usize]) -> Vec<String> {
    indexes
        .iter()
        .filter_map(|i| procs.nodes.get(*i).map(|n| n.name.clone()))
        .collect()
}

/// Starts `fault`; returns the hosts it touched (empty when it could not be applied, e.g. no
/// leader was known).
fn start(procs: &mut Procs, fault: &Fault) -> Vec<String> {
    match fault {
        Fault::KillLeader | Fault::PauseLeader | Fault::IsolateLeader => {
            let Some(leader) = procs.clients().leader() else {
                return Vec::new();
            };
            let name = procs.nodes[leader].name.clone();
            match fault {
                Fault::KillLeader => procs.kill(&name),
                Fault::PauseLeader => procs.pause(&name, true),
                _ => {
                    let others: Vec<String> = procs
                        .net
                        .hosts()
                        .into_iter()
                        .filter(|n| *n != name)
                        .collect();
                    for other in others {
                        let _ = procs.net.cut(&name, &other);
                    }
                }
            }
            vec![name]
        }
        Fault::KillNode { node } => {
            let names = node_names(procs, &[*node]);
            names.iter().for_each(|n| procs.kill(n));
            names
        }
        Fault::KillMajority { nodes } => {
            let names = node_names(procs, nodes);
            names.iter().for_each(|n| procs.kill(n));
            names
        }
        Fault::PauseNode { node } => {
            let names = node_names(procs, &[*node]);
            names.iter().for_each(|n| procs.pause(n, true));
            names
        }
        Fault::SplitNodes { minority } => {
            let all: Vec<usize> = (0..procs.nodes.len()).collect();
            let majority: Vec<usize> = all.into_iter().filter(|i| !minority.contains(i)).collect();
            cut_groups(procs, minority, &majority);
            node_names(procs, minority)
        }
        Fault::Bridge { bridge, left } => {
            let right: Vec<usize> = (0..procs.nodes.len())
                .filter(|i| i != bridge && !left.contains(i))
                .collect();
            cut_groups(procs, left, &right);
            node_names(procs, &[*bridge])
        }
        Fault::CutAgent { agent } => {
            let Some(name) = procs.agents.get(*agent).map(|a| a.name.clone()) else {
                return Vec::new();
            };
            procs.cut_agent(&name);
            vec![name]
        }
        Fault::CutLocker { locker } => {
            let host = format!("locker{}", locker + 1);
            let nodes: Vec<String> = procs.nodes.iter().map(|n| n.name.clone()).collect();
            for node in nodes {
                let _ = procs.net.cut(&host, &node);
            }
            vec![host]
        }
        Fault::KillAgent { agent } => {
            let Some(name) = procs.agents.get(*agent).map(|a| a.name.clone()) else {
                return Vec::new();
            };
            procs.kill(&name);
            vec![name]
        }
        Fault::PauseAgent { agent } => {
            let Some(name) = procs.agents.get(*agent).map(|a| a.name.clone()) else {
                return Vec::new();
            };
            procs.pause(&name, true);
            vec![name]
        }
        Fault::RollingRestart => rolling_restart(procs),
        Fault::GrowShrink { node } => grow(procs, *node),
    }
}

/// Records a membership operation of the nemesis (process [`NEMESIS_PROCESS`]) around `run`.
fn membership_op(procs: &Procs, f: &str, args: &[&str]) -> bool {
    let op = |phase, detail: &str| {
        procs.recorder.push(Event::Op(Op {
            t_us: now_us(),
            process: NEMESIS_PROCESS,
            f: f.to_string(),
            phase,
            task: None,
            key: args.join(" "),
            detail: detail.to_string(),
        }))
    };
    op(OpPhase::Invoke, "");
    let out = procs.clients().cli(args, MEMBERSHIP_TIMEOUT);
    let ok = out.code == Some(0);
    op(
        if ok { OpPhase::Ok } else { OpPhase::Info },
        out.stderr.trim(),
    );
    ok
}

/// Starts spare node `index` with an empty data directory and adds it to the cluster.
fn grow(procs: &mut Procs, index: usize) -> Vec<String> {
    let Some(node) = procs.nodes.get(index) else {
        return Vec::new();
    };
    if node.member || node.child.is_some() {
        return Vec::new();
    }
    let (name, addr, dir) = (node.name.clone(), node.addr.clone(), node.dir.clone());
    let _ = std::fs::remove_dir_all(&dir);
    if procs.start_node(index).is_err() {
        return Vec::new();
    }
    let id = (index + 1).to_string();
    // Added or not, it counts as a member from here: an add that timed out may have taken
    // effect, and only a confirmed removal makes it a spare again.
    procs.nodes[index].member = true;
    membership_op(
        procs,
        "member-add",
        &["cluster", "add", "--id", &id, "--addr", &addr],
    );
    vec![name]
}

/// Removes spare node `index` again, stops it and clears its data directory. A removal that
/// cannot be confirmed leaves it a running member.
fn shrink(procs: &mut Procs, index: usize) {
    let id = (index + 1).to_string();
    for _ in 0..MEMBERSHIP_TRIES_MAX {
        if membership_op(procs, "member-remove", &["cluster", "remove", "--id", &id]) {
            let name = procs.nodes[index].name.clone();
            procs.stop(&name);
            procs.nodes[index].member = false;
            let _ = std::fs::remove_dir_all(&procs.nodes[index].dir);
            return;
        }
    }
}

fn cut_groups(procs: &mut Procs, left: &[usize], right: &[usize]) {
    for a in node_names(procs, left) {
        for b in node_names(procs, right) {
            let _ = procs.net.cut(&a, &b);
        }
    }
}

/// Each node in turn: SIGTERM, start again, wait until the cluster answers with a leader.
fn rolling_restart(procs: &mut Procs) -> Vec<String> {
    let mut touched = Vec::new();
    for index in 0..procs.nodes.len() {
        if !procs.nodes[index].member {
            continue;
        }
        let name = procs.nodes[index].name.clone();
        procs.stop(&name);
        let _ = procs.start_node(index);
        touched.push(name);
        let deadline = Instant::now() + NODE_BACK_WITHIN;
        while procs.clients().leader().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    touched
}

/// Undoes every fault: links restored, paused processes resumed, dead ones started again.
pub fn heal(procs: &mut Procs) -> std::io::Result<()> {
    procs.heal_proxies();
    procs
        .net
        .heal_all()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    procs.restore_all()
}

/// Runs the plan from `began`; stops early (healed) when `stop` is set. A fault that takes longer
/// than planned (a rolling restart waits for each node) pushes the rest of the plan later, so that
/// every fault keeps its quiet time before it and its hold time; faults that would then end after
/// `end` are left out.
pub fn run(procs: &mut Procs, plan: &[Planned], began: Instant, end: Instant, stop: &AtomicBool) {
    let mut late = Duration::ZERO;
    for planned in plan {
        let at = began + late + Duration::from_millis(planned.at_ms);
        if at + Duration::from_millis(planned.hold_ms) > end || !sleep_until(at, stop) {
            return;
        }
        let started_us = now_us();
        let on = start(procs, &planned.fault);
        procs.recorder.push(Event::Fault {
            t_us: started_us,
            phase: Phase::Start,
            kind: planned.fault.kind().to_string(),
            on: on.clone(),
        });
        let until = Instant::now().max(at + Duration::from_millis(planned.hold_ms));
        late += until - (at + Duration::from_millis(planned.hold_ms));
        let completed = sleep_until(until, stop);
        if let Fault::GrowShrink { node } = planned.fault {
            if let Err(error) = heal(procs) {
                eprintln!("cuttle-chaos: healing before a removal: {error}");
            }
            shrink(procs, node);
        }
        if let Err(error) = heal(procs) {
            eprintln!(
                "cuttle-chaos: healing after {}: {error}",
                planned.fault.kind()
            );
        }
        record(&procs.recorder, Phase::End, &planned.fault, on);
        if !completed {
            return;
        }
    }
}
