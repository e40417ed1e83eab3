//! Safety of the schedule as the targets saw it: what ran at the same instant, from the scripts'
//! own stamps (never from what the cluster or the agents believe).

use super::intervals::{LockHold, UnitRun};
use super::{Findings, Verdict};
use crate::history::Event;
use std::collections::BTreeMap;

/// Pairs of spans that overlap, among `spans` sorted by start: `(i, j)` with `i < j`.
fn overlapping_pairs(spans: &[(u64, u64)]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for i in 0..spans.len() {
        for j in i + 1..spans.len() {
            if spans[j].0 >= spans[i].1 {
                break;
            }
            if super::intervals::overlaps(spans[i], spans[j]) {
                pairs.push((i, j));
            }
        }
    }
    pairs
}

/// Instants at which more than `capacity` of `spans` were on, each with the spans on then.
/// Spans are half-open: one that ends at `t` and one that starts at `t` do not overlap.
pub fn above_capacity(spans: &[(u64, u64)], capacity: usize) -> Vec<(u64, Vec<usize>)> {
    let mut edges: Vec<(u64, bool, usize)> = Vec::with_capacity(spans.len() * 2);
    for (index, (start, end)) in spans.iter().enumerate() {
        edges.push((*start, true, index));
        edges.push((*end, false, index));
    }
    // Ends sort before starts at the same instant (false < true).
    edges.sort();
    let mut on: Vec<usize> = Vec::new();
    let mut found = Vec::new();
    for (at, is_start, index) in edges {
        if is_start {
            on.push(index);
            if on.len() > capacity {
                found.push((at, on.clone()));
            }
        } else {
            on.retain(|i| *i != index);
        }
    }
    found
}

/// No exclusive unit overlaps any other unit on its target.
pub fn exclusive_alone(runs: &[UnitRun]) -> Verdict {
    let mut findings = Findings::new(
        "exclusive-alone",
        "no unit submitted without bypass overlaps any other unit on the same target",
    );
    let mut by_target: BTreeMap<&str, Vec<&UnitRun>> = BTreeMap::new();
    for run in runs {
        by_target.entry(&run.target).or_default().push(run);
    }
    for target_runs in by_target.values() {
        findings.checked(target_runs.len());
        let spans: Vec<(u64, u64)> = target_runs.iter().map(|r| (r.start_us, r.end_us)).collect();
        for (i, j) in overlapping_pairs(&spans) {
            let (a, b) = (target_runs[i], target_runs[j]);
            if a.exclusive || b.exclusive {
                findings.violation(format!("{} overlaps {}", a.describe(), b.describe()));
            }
        }
    }
    findings.verdict()
}

/// Tasks with the same concurrency tag never overlap. A task's span runs from its first unit's
/// start to its last unit's end: the tag is held at least that long.
pub fn tags_never_overlap(runs: &[UnitRun]) -> Verdict {
    let mut findings = Findings::new(
        "tags-never-overlap",
        "two tasks with the same concurrency tag never run at the same time",
    );
    let mut spans: BTreeMap<&str, BTreeMap<u64, (u64, u64)>> = BTreeMap::new();
    for run in runs {
        let span = spans
            .entry(&run.tag)
            .or_default()
            .entry(run.task)
            .or_insert((run.start_us, run.end_us));
        span.0 = span.0.min(run.start_us);
        span.1 = span.1.max(run.end_us);
    }
    for (tag, tasks) in spans {
        findings.checked(tasks.len());
        let mut list: Vec<(u64, (u64, u64))> = tasks.into_iter().collect();
        list.sort_by_key(|(_, span)| *span);
        let only: Vec<(u64, u64)> = list.iter().map(|(_, s)| *s).collect();
        for (i, j) in overlapping_pairs(&only) {
            findings.violation(format!(
                "tag {tag}: task {} ({}..{}) overlaps task {} ({}..{})",
                list[i].0, only[i].0, only[i].1, list[j].0, only[j].0, only[j].1
            ));
        }
    }
    findings.verdict()
}

/// One lock's capacity, its holders' spans, and each holder described.
type LockUse = (u32, Vec<(u64, u64)>, Vec<String>);

/// Step locks and named locks never hold more than their capacity, counting units (per target
/// for scope `target`) and `cuttle lock run` commands (scope `cluster`) together: one name in one
/// scope is one semaphore.
pub fn locks_within_capacity(runs: &[UnitRun], holds: &[LockHold]) -> Verdict {
    let mut findings = Findings::new(
        "locks-within-capacity",
        "no step lock or named lock is held by more than its capacity at once",
    );
    let mut locks: BTreeMap<String, LockUse> = BTreeMap::new();
    for run in runs {
        let Some(lock) = &run.lock else { continue };
        let key = if lock.scope == "target" {
            format!("lock {} on target {}", lock.name, run.target)
        } else {
            format!("lock {} (cluster)", lock.name)
        };
        let entry = locks.entry(key).or_insert((lock.capacity, vec![], vec![]));
        entry.1.push((run.start_us, run.end_us));
        entry.2.push(run.describe());
    }
    for hold in holds {
        let key = format!("lock {} (cluster)", hold.name);
        let entry = locks.entry(key).or_insert((hold.capacity, vec![], vec![]));
        entry.1.push((hold.start_us, hold.end_us));
        entry.2.push(format!(
            "lock run {} (token {}) held {}..{}",
            hold.holder, hold.token, hold.start_us, hold.end_us
        ));
    }
    for (key, (capacity, spans, names)) in locks {
        findings.checked(spans.len());
        for (at, on) in above_capacity(&spans, capacity as usize) {
            let who: Vec<&str> = on.iter().map(|i| names[*i].as_str()).collect();
            findings.violation(format!(
                "{key} (capacity {capacity}) had {} holders at {at}: {}",
                on.len(),
                who.join("; ")
            ));
        }
    }
    findings.verdict()
}

/// Tasks running at once (a task runs at least from its first unit's start to its last unit's
/// end) never exceed the task cap set for the run.
pub fn task_cap(runs: &[UnitRun], history: &[Event]) -> Verdict {
    let mut findings = Findings::new(
        "task-cap",
        "no more tasks run at once than the task cap allows",
    );
    let cap = history.iter().find_map(|e| match e {
        Event::Marker { what, value, t_us } if what == "task_cap" => Some((*value, *t_us)),
        _ => None,
    });
    let Some((cap, since)) = cap else {
        return findings.verdict();
    };
    let mut spans: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.start_us >= since) {
        let span = spans.entry(run.task).or_insert((run.start_us, run.end_us));
        span.0 = span.0.min(run.start_us);
        span.1 = span.1.max(run.end_us);
    }
    findings.checked(spans.len());
    let tasks: Vec<u64> = spans.keys().copied().collect();
    let list: Vec<(u64, u64)> = spans.values().copied().collect();
    for (at, on) in above_capacity(&list, cap as usize) {
        let ids: Vec<String> = on.iter().map(|i| tasks[*i].to_string()).collect();
        findings.violation(format!(
            "{} tasks ran at {at} under a cap of {cap}: {}",
            on.len(),
            ids.join(", ")
        ));
    }
    findings.verdict()
}

#[cfg(test)]
#[path = "safety_tests.rs"]
mod tests;
