//! The human form of a [`SimResult`]: a timeline per target, the deployments, the waits and the
//! makespan, as aligned plain-text tables.

use crate::simulate::result::{SimResult, TaskResult, UnitRecord, UnitResult};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Most task ids listed in the `alongside` column before "+N more".
const ALONGSIDE_MAX: usize = 6;

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// A plain-text table: a header and rows, columns padded to their widest cell.
struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.columns[i].0.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let header: Vec<String> = self.columns.iter().map(|c| c.0.to_string()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::from(" ");
            for (i, cell) in cells.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                line.push(' ');
                match self.columns[i].1 {
                    Align::Right => {
                        line.push_str(&" ".repeat(pad));
                        line.push_str(cell);
                    }
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&" ".repeat(pad));
                    }
                }
                line.push(' ');
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

fn ms(value: Option<u64>) -> String {
    value.map_or("-".to_string(), |v| v.to_string())
}

fn project_tenant(project: &str, tenant: Option<&str>) -> String {
    match tenant {
        Some(tenant) => format!("{project}/{tenant}"),
        None => project.to_string(),
    }
}

fn unit_outcome(unit: &UnitRecord) -> String {
    match (unit.outcome, unit.exit_code) {
        (UnitResult::Failed, Some(code)) => format!("failed (exit {code})"),
        (outcome, _) => serde_json::to_value(outcome)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
            .unwrap_or_default(),
    }
}

fn task_outcome(outcome: TaskResult) -> &'static str {
    match outcome {
        TaskResult::Succeeded => "succeeded",
        TaskResult::Failed => "failed",
        TaskResult::Cancelled => "cancelled",
        TaskResult::Unfinished => "unfinished",
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The report `cuttle simulate` prints by default.
pub fn human(result: &SimResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Simulated {} on {}, task cap {}.",
        plural(result.tasks.len(), "deployment", "deployments"),
        plural(result.targets.len(), "target", "targets"),
        result.task_cap
    );

    let by_id: BTreeMap<u64, &UnitRecord> = result.units.iter().map(|u| (u.id, u)).collect();
    for target in &result.targets {
        let units: Vec<&UnitRecord> = target
            .units
            .iter()
            .filter_map(|id| by_id.get(id).copied())
            .collect();
        let _ = writeln!(
            out,
            "\nTarget {}: {}, at most {} at once",
            target.name,
            plural(units.len(), "unit", "units"),
            target.peak_units
        );
        if units.is_empty() {
            continue;
        }
        let mut table = Table::new(&[
            ("from ms", Align::Right),
            ("to ms", Align::Right),
            ("task", Align::Right),
            ("project/tenant", Align::Left),
            ("step", Align::Left),
            ("alongside", Align::Left),
            ("outcome", Align::Left),
        ]);
        for unit in &units {
            table.row(vec![
                ms(unit.dispatched_ms),
                ms(unit.ended_ms),
                unit.task.to_string(),
                project_tenant(&unit.project, unit.tenant.as_deref()),
                if unit.kind == "acquire" {
                    format!("{} (acquire)", unit.step)
                } else {
                    unit.step.clone()
                },
                alongside(unit, &units),
                unit_outcome(unit),
            ]);
        }
        table.render(&mut out);
    }

    out.push_str("\nDeployments\n");
    let mut table = Table::new(&[
        ("task", Align::Right),
        ("deployment", Align::Left),
        ("queued ms", Align::Right),
        ("started ms", Align::Right),
        ("ended ms", Align::Right),
        ("waited ms", Align::Right),
        ("outcome", Align::Left),
    ]);
    for task in &result.tasks {
        let outcome = match &task.reason {
            Some(reason) => format!("{}: {reason}", task_outcome(task.outcome)),
            None => task_outcome(task.outcome).to_string(),
        };
        table.row(vec![
            task.id.to_string(),
            task.name.clone(),
            task.submitted_ms.to_string(),
            ms(task.started_ms),
            ms(task.ended_ms),
            ms(task.waited_ms),
            outcome,
        ]);
    }
    table.render(&mut out);

    if !result.events.is_empty() {
        out.push_str("\nEvents\n");
        let mut table = Table::new(&[
            ("at ms", Align::Right),
            ("action", Align::Left),
            ("subject", Align::Left),
            ("effect", Align::Left),
        ]);
        for event in &result.events {
            table.row(vec![
                event.at_ms.to_string(),
                event.action.clone(),
                event.subject.clone(),
                event.effect.clone(),
            ]);
        }
        table.render(&mut out);
    }

    // A wait that ended at the instant it began is an artefact of applying one command at a time
    // (two units ending at one instant end one after the other): left out here, kept in JSON.
    let waits: Vec<_> = result
        .waits
        .iter()
        .filter(|w| w.until_ms != Some(w.at_ms))
        .collect();
    let instant = result.waits.len() - waits.len();
    if waits.is_empty() {
        out.push_str("\nNothing waited.\n");
    } else {
        out.push_str("\nWaits (the reason when each began to wait)\n");
        let mut table = Table::new(&[
            ("from ms", Align::Right),
            ("to ms", Align::Right),
            ("who", Align::Left),
            ("reason", Align::Left),
        ]);
        for wait in waits {
            let who = match (&wait.step, &wait.target) {
                (Some(step), Some(target)) => format!("task {} {step} on {target}", wait.task),
                _ => format!("task {}", wait.task),
            };
            table.row(vec![
                wait.at_ms.to_string(),
                ms(wait.until_ms),
                who,
                wait.reason.clone(),
            ]);
        }
        table.render(&mut out);
    }
    if instant > 0 {
        let _ = writeln!(
            out,
            "({} of 0 ms left out: they ended at the instant they began.)",
            plural(instant, "wait", "waits")
        );
    }

    let _ = write!(
        out,
        "\nMakespan {} ms. At most {} admitted at once, {} with units running. ",
        result.makespan_ms,
        plural(result.peak_running_tasks, "deployment", "deployments"),
        result.peak_active_tasks,
    );
    let count = |outcome| result.tasks.iter().filter(|t| t.outcome == outcome).count();
    if result.all_succeeded {
        let _ = writeln!(out, "All {} succeeded.", result.tasks.len());
    } else {
        let parts: Vec<String> = [
            TaskResult::Succeeded,
            TaskResult::Failed,
            TaskResult::Cancelled,
            TaskResult::Unfinished,
        ]
        .into_iter()
        .filter(|o| count(*o) > 0)
        .map(|o| format!("{} {}", count(o), task_outcome(o)))
        .collect();
        let _ = writeln!(out, "Of {}: {}.", result.tasks.len(), parts.join(", "));
    }
    out
}

/// The other tasks whose units ran on the same target at some time during this unit.
fn alongside(unit: &UnitRecord, on_target: &[&UnitRecord]) -> String {
    let (Some(from), to) = (unit.dispatched_ms, unit.ended_ms.unwrap_or(u64::MAX)) else {
        return String::new();
    };
    let tasks: BTreeSet<u64> = on_target
        .iter()
        .filter(|other| other.id != unit.id && other.task != unit.task)
        .filter(|other| {
            other.dispatched_ms.is_some_and(|o_from| {
                let o_to = other.ended_ms.unwrap_or(u64::MAX);
                o_from < to && from < o_to
            })
        })
        .map(|other| other.task)
        .collect();
    if tasks.is_empty() {
        return "-".to_string();
    }
    let mut words: Vec<String> = tasks
        .iter()
        .take(ALONGSIDE_MAX)
        .map(u64::to_string)
        .collect();
    if tasks.len() > ALONGSIDE_MAX {
        words.push(format!("+{} more", tasks.len() - ALONGSIDE_MAX));
    }
    words.join(", ")
}
