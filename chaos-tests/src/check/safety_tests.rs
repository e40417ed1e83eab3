//! Tests of the safety checkers on hand-made histories, and of the sweep against brute force.

use super::*;
use crate::check::intervals::unit_runs;
use crate::history::{Edge, Event, LockRef, Stamp};
use proptest::prelude::*;

fn stamp(edge: Edge, target: &str, task: u64, unit: u64, excl: bool, tag: &str, t: u64) -> Event {
    Event::Stamp(Stamp {
        edge,
        target: target.into(),
        task,
        unit,
        attempt: 1,
        token: unit,
        exclusive: excl,
        tag: tag.into(),
        lock: None,
        t_us: t,
    })
}

fn run(target: &str, task: u64, unit: u64, excl: bool, tag: &str, span: (u64, u64)) -> Vec<Event> {
    vec![
        stamp(Edge::Start, target, task, unit, excl, tag, span.0),
        stamp(Edge::End, target, task, unit, excl, tag, span.1),
    ]
}

#[test]
fn an_exclusive_unit_overlapping_another_is_caught_and_shared_ones_are_not() {
    let mut history = run("web01", 1, 1, false, "a/P", (0, 10));
    history.extend(run("web01", 2, 2, false, "b/P", (5, 15)));
    assert!(exclusive_alone(&unit_runs(&history)).valid);
    history.extend(run("web01", 3, 3, true, "c/P", (14, 20)));
    let verdict = exclusive_alone(&unit_runs(&history));
    assert!(!verdict.valid);
    assert_eq!(verdict.violations, 1);
    assert!(verdict.offenders[0].contains("unit 2"), "{verdict:?}");
    // Back to back is not an overlap; another target does not count.
    let mut history = run("web01", 1, 1, true, "a/P", (0, 10));
    history.extend(run("web01", 2, 2, true, "b/P", (10, 20)));
    history.extend(run("web02", 3, 3, true, "c/P", (0, 20)));
    assert!(exclusive_alone(&unit_runs(&history)).valid);
}

#[test]
fn a_unit_killed_with_its_agent_ends_at_the_kill() {
    let mut history = vec![stamp(Edge::Start, "web01", 1, 1, true, "a/P", 0)];
    history.push(Event::Process {
        t_us: 10,
        name: "web01".into(),
        action: "kill".into(),
    });
    history.extend(run("web01", 2, 2, true, "b/P", (11, 20)));
    let runs = unit_runs(&history);
    assert_eq!(runs[0].end_us, 10);
    assert!(exclusive_alone(&runs).valid);
    // Without the kill it stays open and overlaps.
    let mut history = vec![stamp(Edge::Start, "web01", 1, 1, true, "a/P", 0)];
    history.extend(run("web01", 2, 2, true, "b/P", (11, 20)));
    assert!(!exclusive_alone(&unit_runs(&history)).valid);
}

#[test]
fn tasks_with_one_tag_overlapping_are_caught() {
    let mut history = run("web01", 1, 1, false, "shop/P", (0, 10));
    history.extend(run("web02", 1, 2, false, "shop/P", (20, 30)));
    history.extend(run("web03", 2, 3, false, "shop/P", (15, 18)));
    let verdict = tags_never_overlap(&unit_runs(&history));
    assert!(
        !verdict.valid,
        "task 1 spans 0..30 and holds the tag: {verdict:?}"
    );
    let mut history = run("web01", 1, 1, false, "shop/P", (0, 10));
    history.extend(run("web01", 2, 2, false, "shop/P", (10, 18)));
    history.extend(run("web01", 3, 3, false, "other/P", (5, 18)));
    assert!(tags_never_overlap(&unit_runs(&history)).valid);
}

#[test]
fn locks_over_capacity_and_tasks_over_the_cap_are_caught() {
    let lock = |t: u64, unit: u64, target: &str, span: (u64, u64)| {
        [Edge::Start, Edge::End].map(|edge| {
            Event::Stamp(Stamp {
                edge,
                target: target.into(),
                task: t,
                unit,
                attempt: 1,
                token: unit,
                exclusive: false,
                tag: format!("t{t}"),
                lock: Some(LockRef {
                    name: "db".into(),
                    scope: "target".into(),
                    capacity: 1,
                }),
                t_us: if edge == Edge::Start { span.0 } else { span.1 },
            })
        })
    };
    let mut history: Vec<Event> = lock(1, 1, "web01", (0, 10)).into();
    history.extend(lock(2, 2, "web02", (0, 10)));
    let runs = unit_runs(&history);
    assert!(
        locks_within_capacity(&runs, &[]).valid,
        "per target: two locks"
    );
    history.extend(lock(3, 3, "web01", (9, 12)));
    let runs = unit_runs(&history);
    assert!(!locks_within_capacity(&runs, &[]).valid);
    history.push(Event::Marker {
        t_us: 0,
        what: "task_cap".into(),
        value: 2,
    });
    let verdict = task_cap(&unit_runs(&history), &history);
    assert!(!verdict.valid, "three tasks at 9: {verdict:?}");
}

proptest! {
    #[test]
    fn the_sweep_agrees_with_brute_force(
        raw in proptest::collection::vec((0u64..50, 1u64..20), 0..12),
        capacity in 1usize..4,
    ) {
        let spans: Vec<(u64, u64)> = raw.iter().map(|(s, d)| (*s, s + d)).collect();
        let brute = (0..80u64).any(|t| spans.iter().filter(|(s, e)| *s <= t && t < *e).count() > capacity);
        prop_assert_eq!(!above_capacity(&spans, capacity).is_empty(), brute);
    }
}
