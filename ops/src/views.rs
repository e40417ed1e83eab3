//! Human views of the cluster's JSON reads: aligned tables for `cuttle task list` and
//! `cuttle locks`. The JSON itself is printed as the cluster returns it (fields in docs/cli.md).

use crate::task::format_ms;
use serde_json::Value;
use std::fmt::Write as _;

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `cuttle task list`: one row per task.
pub fn task_table(tasks: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<18} {:<10} {:<12} {:<10} {:<10} {:<12} {:<12} {:<12} WAITING FOR",
        "ID",
        "PROJECT",
        "RELEASE",
        "ENVIRONMENT",
        "TENANT",
        "STATE",
        "SUBMITTED",
        "STARTED",
        "FINISHED"
    );
    for t in tasks {
        let time = |field: &str| {
            t[field]
                .as_u64()
                .map(format_ms)
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            out,
            "{:<6} {:<18} {:<10} {:<12} {:<10} {} {:<12} {:<12} {:<12} {}",
            text(&t["id"]),
            text(&t["project"]),
            text(&t["release"]),
            text(&t["environment"]),
            text(&t["tenant"]),
            console::pad_str(
                &crate::style::state(&text(&t["state"])),
                10,
                console::Alignment::Left,
                None
            ),
            time("submitted_ms"),
            time("started_ms"),
            time("ended_ms"),
            t["waiting_for"].as_str().unwrap_or("")
        );
    }
    out
}

fn party(p: &Value) -> String {
    let who = match (p["unit"].as_u64(), p["task"].as_u64(), p["client"].as_str()) {
        (Some(u), Some(t), _) => format!("task {t} unit {u}"),
        (None, Some(t), _) => format!("task {t}"),
        (_, _, Some(c)) => c.to_string(),
        _ => format!("request {}", text(&p["request"])),
    };
    format!("{who} ({})", text(&p["mode"]))
}

/// `cuttle locks`: one block per lock, holders then the queue in order.
pub fn lock_table(locks: &Value) -> String {
    let mut out = String::new();
    let locks = locks.as_array().cloned().unwrap_or_default();
    if locks.is_empty() {
        out.push_str("no lock is held or waited for\n");
    }
    for lock in locks {
        let holders: Vec<String> = lock["holders"]
            .as_array()
            .into_iter()
            .flatten()
            .map(party)
            .collect();
        let queue: Vec<String> = lock["queue"]
            .as_array()
            .into_iter()
            .flatten()
            .map(party)
            .collect();
        let _ = writeln!(
            out,
            "{} [{}, capacity {}]\n  held by: {}\n  queue:   {}",
            text(&lock["lock"]),
            text(&lock["kind"]),
            text(&lock["capacity"]),
            if holders.is_empty() {
                "-".into()
            } else {
                holders.join(", ")
            },
            if queue.is_empty() {
                "-".into()
            } else {
                queue.join(", ")
            },
        );
    }
    out
}

/// `cuttle task show`: the task, then one row per unit by step and target with its state,
/// fencing token, times and what it waits for.
pub fn task_detail(view: &Value) -> String {
    let mut out = String::new();
    let time = |v: &Value| v.as_u64().map(format_ms).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "task {}: {} {} to {}{} — {}{}",
        text(&view["id"]),
        text(&view["project"]),
        text(&view["release"]),
        text(&view["environment"]),
        view["tenant"]
            .as_str()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default(),
        crate::style::state(&text(&view["state"])),
        view["waiting_for"]
            .as_str()
            .or(view["reason"].as_str())
            .map(|w| format!(": {w}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "submitted {}, started {}, finished {}",
        time(&view["submitted_ms"]),
        time(&view["started_ms"]),
        time(&view["ended_ms"])
    );
    let _ = writeln!(
        out,
        "{:<6} {:<16} {:<12} {:<12} {:<6} {:<12} {:<12} WAITING FOR",
        "UNIT", "STEP", "TARGET", "STATE", "TOKEN", "DISPATCHED", "ENDED"
    );
    for u in view["units"].as_array().into_iter().flatten() {
        let step = match u["kind"].as_str() {
            Some("acquire") => format!("{} (acquire)", text(&u["step"])),
            _ => text(&u["step"]),
        };
        let _ = writeln!(
            out,
            "{:<6} {:<16} {:<12} {} {:<6} {:<12} {:<12} {}",
            text(&u["id"]),
            step,
            text(&u["target"]),
            console::pad_str(
                &crate::style::state(&text(&u["state"])),
                12,
                console::Alignment::Left,
                None
            ),
            text(&u["token"]),
            time(&u["dispatched_ms"]),
            time(&u["ended_ms"]),
            u["waiting_for"].as_str().unwrap_or("")
        );
    }
    out
}
