//! Live progress of tasks until they end (`cuttle deploy --follow`, `release create --follow`):
//! on a terminal, a line per task with its state and what it waits for, and a bar per step over
//! its targets, with the log scrolling above; elsewhere, the log and each change of state as
//! plain lines; with `--output json`, one JSON object per line.
//!
//! It polls the cluster's linearizable reads (`task:ID`, `task-log:ID:FROM`): a follower of
//! several tasks costs two small reads per task per poll, and nothing on the server keeps state
//! for it, so a client that goes away leaves nothing behind.

use crate::style;
use anyhow::Context as _;
use cuttle_node::client::Client;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::time::Duration;

/// Pause between polls when nothing new arrived.
const POLL_INTERVAL_MS: u64 = 250;
/// Longest waiting reason shown on a bar.
const REASON_CHARS_MAX: usize = 90;

/// What one followed task looks like on screen.
struct Followed {
    id: u64,
    log_next: u64,
    state: String,
    ended: bool,
    header: Option<ProgressBar>,
    steps: BTreeMap<(u64, String), ProgressBar>,
}

/// The steps of a task view, in process order: (order, label) -> (units, ended units, running,
/// first waiting reason).
fn steps(view: &Value) -> BTreeMap<(u64, String), (u64, u64, u64, Option<String>)> {
    let mut out: BTreeMap<(u64, String), (u64, u64, u64, Option<String>)> = BTreeMap::new();
    let units = view["units"].as_array().cloned().unwrap_or_default();
    let mut order: Vec<String> = Vec::new();
    for u in &units {
        let label = match u["kind"].as_str() {
            Some("acquire") => format!("{} (acquire)", u["step"].as_str().unwrap_or("?")),
            _ => u["step"].as_str().unwrap_or("?").to_string(),
        };
        let index = match order.iter().position(|l| *l == label) {
            Some(i) => i,
            None => {
                order.push(label.clone());
                order.len() - 1
            }
        };
        let entry = out.entry((index as u64, label)).or_default();
        entry.0 += 1;
        match u["state"].as_str() {
            Some("running") | Some("dispatched") => entry.2 += 1,
            Some("waiting") => {
                if entry.3.is_none() {
                    entry.3 = u["waiting_for"].as_str().map(String::from);
                }
            }
            _ => entry.1 += 1,
        }
    }
    out
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= REASON_CHARS_MAX {
        return text.to_string();
    }
    let cut: String = text.chars().take(REASON_CHARS_MAX - 1).collect();
    format!("{cut}…")
}

fn title(view: &Value) -> String {
    let tenant = view["tenant"]
        .as_str()
        .map(|t| format!(" for {t}"))
        .unwrap_or_default();
    format!(
        "task {} {} {} → {}{tenant}",
        view["id"],
        view["project"].as_str().unwrap_or("?"),
        view["release"].as_str().unwrap_or("?"),
        view["environment"].as_str().unwrap_or("?")
    )
}

fn status(view: &Value) -> String {
    let state = view["state"].as_str().unwrap_or("?");
    let why = view["waiting_for"]
        .as_str()
        .or(view["reason"].as_str())
        .map(|w| format!(": {}", shorten(w)))
        .unwrap_or_default();
    format!("{}{}", style::state(state), style::dim(&why))
}

/// Follows `ids` until every one has ended; returns whether all succeeded.
pub async fn follow(client: &Client, ids: &[u64], json: bool) -> anyhow::Result<bool> {
    let live = !json && std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if live {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let bar_style = ProgressStyle::with_template("  {prefix:<22} [{bar:28}] {pos}/{len} {msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    let header_style = ProgressStyle::with_template("{prefix} {msg}").expect("a valid template");
    let mut followed: Vec<Followed> = ids
        .iter()
        .map(|&id| Followed {
            id,
            log_next: 0,
            state: String::new(),
            ended: false,
            header: None,
            steps: BTreeMap::new(),
        })
        .collect();
    loop {
        let mut news = false;
        for f in followed.iter_mut().filter(|f| !f.ended) {
            let page = client
                .read(&format!("task-log:{}:{}", f.id, f.log_next))
                .await
                .with_context(|| format!("cannot read the log of task {}", f.id))?;
            let lines = page["lines"].as_array().cloned().unwrap_or_default();
            news |= !lines.is_empty();
            for line in &lines {
                let text = line["text"].as_str().unwrap_or("");
                if json {
                    println!("{}", json!({"task": f.id, "log": line}));
                } else if live {
                    multi.println(format!("{} {text}", style::dim(&format!("[{}]", f.id))))?;
                } else {
                    println!("[{}] {text}", f.id);
                }
            }
            f.log_next = page["next"].as_u64().unwrap_or(f.log_next);
            let view = client
                .read(&format!("task:{}", f.id))
                .await
                .with_context(|| format!("cannot read task {}", f.id))?;
            let state = view["state"].as_str().unwrap_or("?").to_string();
            let log_done = lines.is_empty();
            if state != f.state {
                if json {
                    println!(
                        "{}",
                        json!({"task": f.id, "state": state, "reason": view["reason"]})
                    );
                } else if !live {
                    println!("task {} {}", f.id, status(&view));
                }
                f.state = state.clone();
            }
            if live {
                let header = f.header.get_or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(header_style.clone());
                    bar.set_prefix(style::bold(&title(&view)));
                    bar
                });
                header.set_message(status(&view));
                for (key, (total, done, running, waiting)) in steps(&view) {
                    let bar = f.steps.entry(key.clone()).or_insert_with(|| {
                        let bar = multi.add(ProgressBar::new(total));
                        bar.set_style(bar_style.clone());
                        bar.set_prefix(key.1.clone());
                        bar
                    });
                    bar.set_length(total);
                    bar.set_position(done);
                    let mut msg = Vec::new();
                    if running > 0 {
                        msg.push(format!("{running} running"));
                    }
                    if let Some(why) = waiting {
                        msg.push(format!("waiting: {}", shorten(&why)));
                    }
                    bar.set_message(style::dim(&msg.join(" · ")));
                }
            }
            f.ended = view["ended_ms"].as_u64().is_some() && log_done;
        }
        if followed.iter().all(|f| f.ended) {
            break;
        }
        if !news {
            tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        }
    }
    for f in &followed {
        if let Some(h) = &f.header {
            h.finish();
        }
        for bar in f.steps.values() {
            bar.finish();
        }
    }
    let all = followed.iter().all(|f| f.state == "succeeded");
    if json {
        let states: Vec<Value> = followed
            .iter()
            .map(|f| json!({"id": f.id, "state": f.state}))
            .collect();
        println!("{}", json!({"tasks": states, "all_succeeded": all}));
    } else {
        for f in &followed {
            println!("task {} {}", f.id, style::state(&f.state));
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_counted_in_process_order_with_the_first_wait() {
        let view = json!({"units": [
            {"step": "b", "kind": "run", "state": "waiting", "waiting_for": "target web01 held by task 3"},
            {"step": "a", "kind": "run", "state": "succeeded"},
            {"step": "b", "kind": "run", "state": "running"},
            {"step": "a", "kind": "run", "state": "failed"},
        ]});
        let steps: Vec<_> = steps(&view).into_iter().collect();
        assert_eq!(
            steps,
            vec![
                (
                    (0, "b".to_string()),
                    (2, 0, 1, Some("target web01 held by task 3".to_string()))
                ),
                ((1, "a".to_string()), (2, 2, 0, None)),
            ]
        );
    }
}
