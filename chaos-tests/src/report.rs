//! The report page of a run: one self-contained HTML file (inline SVG and CSS, no external
//! assets) with the verdicts and their offenders, a Gantt timeline of the units on each target
//! (exclusive red, shared blue, lock holders green) with the faults shaded, and the latency and
//! throughput of client operations over time. Pure: a history in, a string out.

use crate::check::intervals::{lock_holds, unit_runs};
use crate::check::Verdict;
use crate::history::{time_of, Event, OpPhase, Phase};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 90.0;
const ROW: f64 = 22.0;

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Axis {
    t0: u64,
    t1: u64,
}

impl Axis {
    fn x(&self, t: u64) -> f64 {
        let t = t.clamp(self.t0, self.t1);
        LEFT + (t - self.t0) as f64 / (self.t1 - self.t0).max(1) as f64 * (WIDTH - LEFT - 10.0)
    }

    fn ticks(&self, out: &mut String, top: f64, bottom: f64) {
        let span_s = (self.t1 - self.t0) / 1_000_000;
        let step = [1, 5, 10, 30, 60, 300]
            .into_iter()
            .find(|s| span_s / s <= 12)
            .unwrap_or(600);
        let mut s = 0;
        while s <= span_s {
            let x = self.x(self.t0 + s * 1_000_000);
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke="#ddd"/><text x="{x:.1}" y="{}" font-size="10" text-anchor="middle">{s}s</text>"##,
                bottom + 12.0
            );
            s += step;
        }
    }
}

fn fault_spans(history: &[Event], end: u64) -> Vec<(u64, u64, String)> {
    let mut open: Vec<(u64, String)> = Vec::new();
    let mut spans = Vec::new();
    for event in history {
        if let Event::Fault {
            t_us,
            phase,
            kind,
            on,
        } = event
        {
            let label = format!("{kind} {}", on.join(","));
            match phase {
                Phase::Start => open.push((*t_us, label)),
                Phase::End => {
                    if let Some(at) = open.iter().position(|(_, l)| *l == label) {
                        let (start, label) = open.remove(at);
                        spans.push((start, *t_us, label));
                    }
                }
            }
        }
    }
    spans.extend(open.into_iter().map(|(s, l)| (s, end, l)));
    spans
}

fn gantt(history: &[Event], axis: &Axis) -> String {
    let runs = unit_runs(history);
    let holds = lock_holds(history);
    let mut rows: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        let next = rows.len();
        rows.entry(run.target.clone()).or_insert(next);
    }
    let lock_row = rows.len();
    let height = (lock_row + 1) as f64 * ROW + 30.0;
    let mut svg =
        format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}">"#);
    axis.ticks(&mut svg, 0.0, height - 20.0);
    for (start, end, label) in fault_spans(history, axis.t1) {
        let (x0, x1) = (axis.x(start), axis.x(end));
        let _ = write!(
            svg,
            r##"<rect x="{x0:.1}" y="0" width="{:.1}" height="{}" fill="#f0ad4e" opacity="0.25"><title>{}</title></rect>"##,
            (x1 - x0).max(1.0),
            height - 20.0,
            escape(&label)
        );
    }
    for (target, row) in &rows {
        let y = *row as f64 * ROW;
        let _ = write!(
            svg,
            r#"<text x="4" y="{:.1}" font-size="11">{}</text>"#,
            y + 14.0,
            escape(target)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="4" y="{:.1}" font-size="11">lock run</text>"#,
        lock_row as f64 * ROW + 14.0
    );
    for run in &runs {
        let y = rows[&run.target] as f64 * ROW + 3.0;
        let (x0, x1) = (axis.x(run.start_us), axis.x(run.end_us.min(axis.t1)));
        let colour = if run.exclusive { "#d9534f" } else { "#5b9bd5" };
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{colour}" opacity="0.6"><title>{}</title></rect>"#,
            (x1 - x0).max(1.0),
            ROW - 6.0,
            escape(&run.describe())
        );
    }
    for hold in &holds {
        let y = lock_row as f64 * ROW + 3.0;
        let (x0, x1) = (axis.x(hold.start_us), axis.x(hold.end_us.min(axis.t1)));
        let _ = write!(
            svg,
            r##"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#5cb85c" opacity="0.6"><title>{} {} token {}</title></rect>"##,
            (x1 - x0).max(1.0),
            ROW - 6.0,
            escape(&hold.holder),
            escape(&hold.name),
            hold.token
        );
    }
    svg.push_str("</svg>");
    svg
}

/// (completion time, latency in µs, phase, f) of every completed operation.
fn latencies(history: &[Event]) -> Vec<(u64, u64, OpPhase, String)> {
    let mut invoked: BTreeMap<u32, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for event in history {
        let Event::Op(op) = event else { continue };
        if op.phase == OpPhase::Invoke {
            invoked.insert(op.process, op.t_us);
        } else if let Some(at) = invoked.remove(&op.process) {
            out.push((op.t_us, op.t_us.saturating_sub(at), op.phase, op.f.clone()));
        }
    }
    out
}

fn latency_chart(history: &[Event], axis: &Axis) -> String {
    let points = latencies(history);
    let height = 220.0;
    let max = points.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{}">"#,
        height + 20.0
    );
    axis.ticks(&mut svg, 0.0, height);
    for (start, end, label) in fault_spans(history, axis.t1) {
        let (x0, x1) = (axis.x(start), axis.x(end));
        let _ = write!(
            svg,
            r##"<rect x="{x0:.1}" y="0" width="{:.1}" height="{height}" fill="#f0ad4e" opacity="0.2"><title>{}</title></rect>"##,
            (x1 - x0).max(1.0),
            escape(&label)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="4" y="12" font-size="10">{:.1} s</text><text x="4" y="{height}" font-size="10">0</text>"#,
        max / 1e6
    );
    for (at, latency, phase, f) in &points {
        let colour = match phase {
            OpPhase::Ok => "#337ab7",
            OpPhase::Fail => "#777",
            _ => "#d9534f",
        };
        let y = height - *latency as f64 / max * (height - 10.0);
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{y:.1}" r="2" fill="{colour}"><title>{f} {:?} {} ms</title></circle>"#,
            axis.x(*at),
            phase,
            latency / 1000
        );
    }
    // Throughput: acknowledged operations per second, as a line.
    let mut per_second: BTreeMap<u64, u32> = BTreeMap::new();
    for (at, _, phase, _) in &points {
        if *phase == OpPhase::Ok {
            *per_second.entry((at - axis.t0) / 1_000_000).or_default() += 1;
        }
    }
    let peak = per_second.values().copied().max().unwrap_or(1).max(1) as f64;
    let line: Vec<String> = per_second
        .iter()
        .map(|(s, n)| {
            let x = axis.x(axis.t0 + s * 1_000_000 + 500_000);
            format!("{x:.1},{:.1}", height - *n as f64 / peak * (height - 10.0))
        })
        .collect();
    let _ = write!(
        svg,
        r##"<polyline points="{}" fill="none" stroke="#5cb85c" stroke-width="1.5"/><text x="{}" y="12" font-size="10" fill="#5cb85c" text-anchor="end">throughput, peak {peak} ok/s</text></svg>"##,
        line.join(" "),
        WIDTH - 12.0
    );
    svg
}

fn verdict_table(verdicts: &[Verdict]) -> String {
    let mut html = String::from(
        "<table><tr><th>checker</th><th>property</th><th>verdict</th><th>checked</th><th>violations</th></tr>",
    );
    for v in verdicts {
        let (class, word) = if v.valid {
            ("ok", "valid")
        } else {
            ("bad", "INVALID")
        };
        let _ = write!(
            html,
            r#"<tr><td>{}</td><td>{}</td><td class="{class}">{word}</td><td>{}</td><td>{}</td></tr>"#,
            escape(&v.checker),
            escape(&v.property),
            v.checked,
            v.violations
        );
        html += &details_row("offenders", " open", &v.offenders);
        html += &details_row("notes", "", &v.notes);
    }
    html.push_str("</table>");
    html
}

/// The whole page.
pub fn html(title: &str, history: &[Event], verdicts: &[Verdict], unreadable: &[String]) -> String {
    let times: Vec<u64> = history.iter().filter_map(time_of).collect();
    let t0 = times.iter().copied().min().unwrap_or(0);
    let t1 = times.iter().copied().max().unwrap_or(t0 + 1).max(t0 + 1);
    let axis = Axis { t0, t1 };
    let ops = history.iter().filter(|e| matches!(e, Event::Op(_))).count();
    let mut page = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>{t}</title><style>
body{{font-family:sans-serif;margin:16px}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:3px 6px;font-size:13px;text-align:left;vertical-align:top}}
.ok{{color:#3c763d;font-weight:bold}} .bad{{color:#a94442;font-weight:bold}} li{{font-family:monospace;font-size:12px}}
</style></head><body><h1>{t}</h1><p>{} events, {ops} client operation records. Verdict: <b class="{}">{}</b></p>"#,
        history.len(),
        if verdicts.iter().all(|v| v.valid) {
            "ok"
        } else {
            "bad"
        },
        if verdicts.iter().all(|v| v.valid) {
            "every checker passed"
        } else {
            "a checker failed"
        },
        t = escape(title)
    );
    page += "<h2>Verdicts</h2>";
    page += &verdict_table(verdicts);
    page += "<h2>Units per target</h2><p>Red: exclusive units; blue: shared; green: <code>cuttle lock run</code> holders; orange bands: faults (hover for details).</p>";
    page += &gantt(history, &axis);
    page += "<h2>Client operations</h2><p>Latency of each completed operation (blue ok, grey failed, red unknown) and acknowledged operations per second (green).</p>";
    page += &latency_chart(history, &axis);
    if !unreadable.is_empty() {
        page += "<h2>Unreadable lines</h2><ul>";
        for line in unreadable.iter().take(100) {
            let _ = write!(page, "<li>{}</li>", escape(line));
        }
        page += "</ul>";
    }
    page += "</body></html>\n";
    page
}

/// A table row with a folding list of `items` under `summary`; empty when there are none.
fn details_row(summary: &str, open: &str, items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let items: String = items
        .iter()
        .map(|o| format!("<li>{}</li>", escape(o)))
        .collect();
    format!(
        r#"<tr><td></td><td colspan="4"><details{open}><summary>{summary}</summary><ul>{items}</ul></details></td></tr>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Edge, Stamp};

    #[test]
    fn the_page_is_self_contained_and_shows_runs_and_faults() {
        let stamp = |edge, t| {
            Event::Stamp(Stamp {
                edge,
                target: "web01".into(),
                task: 1,
                unit: 1,
                attempt: 1,
                token: 3,
                exclusive: true,
                tag: "a<b".into(),
                lock: None,
                t_us: t,
            })
        };
        let history = vec![
            stamp(Edge::Start, 1_000_000),
            Event::Fault {
                t_us: 1_500_000,
                phase: Phase::Start,
                kind: "kill-leader".into(),
                on: vec!["n1".into()],
            },
            Event::Fault {
                t_us: 2_500_000,
                phase: Phase::End,
                kind: "kill-leader".into(),
                on: vec!["n1".into()],
            },
            stamp(Edge::End, 3_000_000),
        ];
        let verdicts = crate::check::check_all(&history);
        let page = html("t", &history, &verdicts, &[]);
        assert!(page.contains("web01") && page.contains("kill-leader n1"));
        assert!(page.contains("a&lt;b"), "escaped");
        assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    }
}
