//! The account `cuttle dev` prints after its demo, built from what the cluster reported (task
//! views with their units, and the waiting reasons seen while following them): per target, each
//! unit's run with the units it ran alongside and why it waited; per task, why it waited to start.
//! Pure: JSON in, text out.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Most names listed as running alongside a unit.
const ALONGSIDE_MAX: usize = 4;

/// What the demo saw.
#[derive(Debug, Default)]
pub struct Observed {
    /// The final view of each task (`task:ID`), in id order.
    pub tasks: Vec<Value>,
    /// The first reason each task was seen waiting to start, by task id.
    pub task_waits: BTreeMap<u64, String>,
    /// The first reason each unit was seen waiting, by unit id.
    pub unit_waits: BTreeMap<u64, String>,
}

struct Run {
    label: String,
    task: u64,
    unit: u64,
    start_ms: u64,
    end_ms: u64,
    exclusive: bool,
}

fn label(task: &Value, step: &str) -> String {
    let who = match task["tenant"].as_str() {
        Some(t) => format!("{}/{t}", task["project"].as_str().unwrap_or("?")),
        None => task["project"].as_str().unwrap_or("?").to_string(),
    };
    format!("{who} {step}")
}

/// The account, with a heading per target from `titles` (target name -> what it shows).
pub fn account(observed: &Observed, titles: &BTreeMap<String, String>) -> String {
    let mut by_target: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for task in &observed.tasks {
        let units = task["units"].as_array().cloned().unwrap_or_default();
        for u in units {
            let (Some(start_ms), Some(end_ms)) =
                (u["dispatched_ms"].as_u64(), u["ended_ms"].as_u64())
            else {
                continue;
            };
            by_target
                .entry(u["target"].as_str().unwrap_or("?").to_string())
                .or_default()
                .push(Run {
                    label: label(task, u["step"].as_str().unwrap_or("?")),
                    task: task["id"].as_u64().unwrap_or(0),
                    unit: u["id"].as_u64().unwrap_or(0),
                    start_ms,
                    end_ms,
                    exclusive: u["exclusive"] == true,
                });
        }
    }
    let t0 = by_target
        .values()
        .flatten()
        .map(|r| r.start_ms)
        .min()
        .unwrap_or(0);
    let secs = |ms: u64| (ms.saturating_sub(t0)) as f64 / 1000.0;
    let mut out = String::new();
    let _ = writeln!(out, "What ran where (seconds from the first dispatch):");
    for (target, runs) in &mut by_target {
        runs.sort_by_key(|r| (r.start_ms, r.unit));
        let title = titles
            .get(target)
            .map(|t| format!(" — {t}"))
            .unwrap_or_default();
        let _ = writeln!(out, "\n  {}{title}", crate::style::bold(target));
        for run in runs.iter() {
            let alongside: Vec<&str> = runs
                .iter()
                .filter(|o| {
                    o.task != run.task && o.start_ms < run.end_ms && run.start_ms < o.end_ms
                })
                .map(|o| o.label.as_str())
                .collect();
            let with = match alongside.len() {
                0 => "alone".to_string(),
                n if n > ALONGSIDE_MAX => format!(
                    "alongside {} and {} more",
                    alongside[..ALONGSIDE_MAX].join(", "),
                    n - ALONGSIDE_MAX
                ),
                _ => format!("alongside {}", alongside.join(", ")),
            };
            let _ = writeln!(
                out,
                "    {:>5.1}–{:<5.1} {:<18} {:<9} {with}",
                secs(run.start_ms),
                secs(run.end_ms),
                run.label,
                if run.exclusive { "exclusive" } else { "shared" },
            );
            if let Some(why) = observed.unit_waits.get(&run.unit) {
                let _ = writeln!(
                    out,
                    "                 {}",
                    crate::style::dim(&format!("waited: {why}"))
                );
            }
        }
    }
    let waited: Vec<&Value> = observed
        .tasks
        .iter()
        .filter(|t| {
            t["id"]
                .as_u64()
                .is_some_and(|id| observed.task_waits.contains_key(&id))
        })
        .collect();
    if !waited.is_empty() {
        let _ = writeln!(out, "\nTasks that waited to start:");
        for t in waited {
            let id = t["id"].as_u64().unwrap_or(0);
            let _ = writeln!(
                out,
                "  task {id} {}: {}",
                label(t, "").trim_end(),
                observed.task_waits[&id]
            );
        }
    }
    let _ = writeln!(out, "\nOutcomes:");
    for t in &observed.tasks {
        let _ = writeln!(
            out,
            "  task {:<3} {:<14} {:<5} → {:<11} {}",
            t["id"],
            label(t, "").trim_end(),
            t["release"].as_str().unwrap_or("?"),
            t["environment"].as_str().unwrap_or("?"),
            crate::style::state(t["state"].as_str().unwrap_or("?"))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(id: u64, project: &str, units: Value) -> Value {
        json!({"id": id, "project": project, "tenant": null, "release": "1.0",
               "environment": "Production", "state": "succeeded", "units": units})
    }

    #[test]
    fn overlapping_units_are_named_and_waits_shown() {
        console::set_colors_enabled(false);
        let observed = Observed {
            tasks: vec![
                task(
                    1,
                    "p1",
                    json!([{"id": 1, "step": "deploy", "target": "web01", "exclusive": false, "dispatched_ms": 1000, "ended_ms": 2000}]),
                ),
                task(
                    2,
                    "p2",
                    json!([{"id": 2, "step": "deploy", "target": "web01", "exclusive": false, "dispatched_ms": 1000, "ended_ms": 3000}]),
                ),
                task(
                    3,
                    "p3",
                    json!([{"id": 3, "step": "deploy", "target": "web01", "exclusive": true, "dispatched_ms": 3000, "ended_ms": 4000}]),
                ),
            ],
            task_waits: BTreeMap::new(),
            unit_waits: [(3, "target web01 is held by tasks 1, 2".to_string())].into(),
        };
        let text = account(&observed, &BTreeMap::new());
        assert!(text.contains("p1 deploy"), "{text}");
        assert!(text.contains("shared    alongside p2 deploy"), "{text}");
        assert!(text.contains("exclusive alone"), "{text}");
        assert!(
            text.contains("waited: target web01 is held by tasks 1, 2"),
            "{text}"
        );
        assert!(text.contains("2.0–3.0"), "{text}");
    }
}
