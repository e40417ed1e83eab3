//! The end of a simulation: the records sorted and summed up into a [`SimResult`], with each
//! target's timeline of units and the peaks of parallelism.

use super::Sim;
use crate::simulate::result::{SimResult, TargetRecord, TaskResult, UnitRecord, FORMAT_VERSION};
use cuttle_raft::sched::TASK_CAP_DEFAULT;
use std::collections::BTreeMap;

impl Sim<'_> {
    pub(super) fn finish(self) -> SimResult {
        let mut units = self.units;
        units.sort_by_key(|u| u.id);
        let mut targets: Vec<TargetRecord> = self
            .scenario
            .targets
            .iter()
            .map(|t| TargetRecord {
                name: t.name.clone(),
                units: Vec::new(),
                peak_units: 0,
            })
            .collect();
        let mut dispatched: Vec<&UnitRecord> =
            units.iter().filter(|u| u.dispatched_ms.is_some()).collect();
        dispatched.sort_by_key(|u| (u.dispatched_ms, u.id));
        for unit in dispatched {
            if let Some(target) = targets.iter_mut().find(|t| t.name == unit.target) {
                target.units.push(unit.id);
            }
        }
        let by_id: BTreeMap<u64, &UnitRecord> = units.iter().map(|u| (u.id, u)).collect();
        for target in &mut targets {
            target.peak_units = peak(target.units.iter().filter_map(|id| {
                let u = by_id.get(id)?;
                Some((u.dispatched_ms?, u.ended_ms.unwrap_or(u64::MAX)))
            }));
        }
        let peak_active_tasks = peak_active(
            units
                .iter()
                .filter_map(|u| Some((u.task, u.dispatched_ms?, u.ended_ms.unwrap_or(u64::MAX)))),
        );
        let makespan_ms = self
            .tasks
            .iter()
            .filter_map(|t| t.ended_ms)
            .max()
            .unwrap_or(0);
        let peak_running_tasks = peak(
            self.tasks
                .iter()
                .filter_map(|t| Some((t.started_ms?, t.ended_ms.unwrap_or(u64::MAX)))),
        );
        let all_succeeded = self
            .tasks
            .iter()
            .all(|t| t.outcome == TaskResult::Succeeded);
        SimResult {
            format_version: FORMAT_VERSION,
            makespan_ms,
            all_succeeded,
            task_cap: self.scenario.task_cap.unwrap_or(TASK_CAP_DEFAULT),
            peak_running_tasks,
            peak_active_tasks,
            tasks: self.tasks,
            units,
            targets,
            waits: self.waits,
            events: self.scripted,
        }
    }
}

/// The most half-open intervals `[from, to)` that overlap at one time.
pub(crate) fn peak(intervals: impl Iterator<Item = (u64, u64)>) -> usize {
    let mut points: Vec<(u64, i32)> = Vec::new();
    for (from, to) in intervals {
        if to > from {
            points.push((from, 1));
            points.push((to, -1));
        }
    }
    // Ends before starts at one time: touching intervals do not overlap.
    points.sort();
    let mut current = 0i32;
    let mut best = 0i32;
    for (_, delta) in points {
        current += delta;
        best = best.max(current);
    }
    best as usize
}

/// The most tasks with a unit running at one time, from `(task, from, to)` unit intervals.
pub(crate) fn peak_active(units: impl Iterator<Item = (u64, u64, u64)>) -> usize {
    let mut points: Vec<(u64, i32, u64)> = Vec::new();
    for (task, from, to) in units {
        if to > from {
            points.push((from, 1, task));
            points.push((to, -1, task));
        }
    }
    points.sort();
    let mut running: BTreeMap<u64, i32> = BTreeMap::new();
    let mut best = 0;
    for (_, delta, task) in points {
        let count = running.entry(task).or_insert(0);
        *count += delta;
        if *count == 0 {
            running.remove(&task);
        }
        best = best.max(running.len());
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_treat_touching_intervals_as_apart() {
        assert_eq!(peak([(0, 10), (10, 20), (5, 15)].into_iter()), 2);
        assert_eq!(
            peak_active([(1, 0, 10), (1, 10, 20), (2, 10, 20)].into_iter()),
            2
        );
    }
}
