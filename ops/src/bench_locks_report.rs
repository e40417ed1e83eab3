//! The report of `cuttle bench locks`: medians over repetitions, cuttle/etcd ratios taken within
//! each repetition, the machine's description, the markdown tables and the JSON document. The
//! measurement itself is [`crate::bench_locks`]'s.

use crate::bench_etcd;
use crate::bench_locks::*;
/// The median (mean of the middle two for an even count); NaN when empty. NaNs are left out.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Medians of one system's runs at one client count.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Medians {
    pub runs: usize,
    pub handoffs_per_s: f64,
    pub handoff_p50_ms: f64,
    pub handoff_p99_ms: f64,
    pub cycle_p50_ms: f64,
    pub violations: usize,
    pub errors: usize,
}

/// One client count: each system's medians, and cuttle/etcd ratios taken within each repetition
/// (then their median), so that both sides of a ratio saw the same noise.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    pub clients: usize,
    pub cuttle: Medians,
    pub etcd: Option<Medians>,
    pub ratio_handoffs_per_s: f64,
    pub ratio_handoff_p50: f64,
    pub ratio_handoff_p99: f64,
}

fn medians(runs: &[&LockRun]) -> Medians {
    let col = |f: fn(&LockRun) -> f64| median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
    Medians {
        runs: runs.len(),
        handoffs_per_s: col(|r| r.handoffs_per_s),
        handoff_p50_ms: col(|r| r.handoff_p50_ms),
        handoff_p99_ms: col(|r| r.handoff_p99_ms),
        cycle_p50_ms: col(|r| r.cycle_p50_ms),
        violations: runs.iter().map(|r| r.violations()).sum(),
        errors: runs.iter().map(|r| r.errors).sum(),
    }
}

/// Groups runs by client count (in first-seen order) into medians and same-run ratios.
pub fn summarize(runs: &[LockRun]) -> Vec<Summary> {
    let mut counts: Vec<usize> = Vec::new();
    for r in runs {
        if !counts.contains(&r.clients) {
            counts.push(r.clients);
        }
    }
    counts
        .into_iter()
        .map(|clients| {
            let of = |system: &str| -> Vec<&LockRun> {
                runs.iter()
                    .filter(|r| r.clients == clients && r.system == system)
                    .collect()
            };
            let (cuttle, etcd) = (of("cuttle"), of("etcd"));
            let ratio = |f: fn(&LockRun) -> f64| {
                let per_repeat: Vec<f64> = cuttle
                    .iter()
                    .filter_map(|c| {
                        let e = etcd.iter().find(|e| e.repeat == c.repeat)?;
                        Some(f(c) / f(e))
                    })
                    .collect();
                median(&per_repeat)
            };
            Summary {
                clients,
                cuttle: medians(&cuttle),
                etcd: (!etcd.is_empty()).then(|| medians(&etcd)),
                ratio_handoffs_per_s: ratio(|r| r.handoffs_per_s),
                ratio_handoff_p50: ratio(|r| r.handoff_p50_ms),
                ratio_handoff_p99: ratio(|r| r.handoff_p99_ms),
            }
        })
        .collect()
}

/// The machine, as the report states it.
pub(crate) fn machine() -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    serde_json::json!({
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory": memory,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
    })
}

fn num(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:.decimals$}")
    }
}

/// The markdown the bench prints: what was measured where, the medians with the same-run ratios,
/// and every run.
pub fn report(
    args: &LocksBenchArgs,
    machine: &serde_json::Value,
    etcd: Option<&String>,
    summary: &[Summary],
    runs: &[LockRun],
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Machine: {} × {}, {} memory, kernel {}. Cluster: three nodes on 127.0.0.1, durable writes, \
         a fresh cluster for every run; {}. Run length: {} ms warm-up, then {} s measured; {} repetitions, \
         cuttle and etcd alternately.\n",
        machine["cpus"], machine["cpu"].as_str().unwrap_or("?"), machine["memory"].as_str().unwrap_or("?"),
        machine["kernel"].as_str().unwrap_or("?"),
        etcd.map_or("etcd not run".to_string(), |v| v.clone()),
        args.warmup_ms, args.seconds, args.repeats,
    );
    let _ = writeln!(out, "| clients | runs | cuttle hand-offs/s | etcd hand-offs/s | ratio (goal ≥ 2) | cuttle p50 ms | etcd p50 ms | ratio (goal ≤ 0.5) | cuttle p99 ms | etcd p99 ms | ratio (goal ≤ 0.5) | violations | errors |");
    let _ = writeln!(
        out,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in summary {
        let e = s.etcd.clone().unwrap_or(Medians {
            handoffs_per_s: f64::NAN,
            handoff_p50_ms: f64::NAN,
            handoff_p99_ms: f64::NAN,
            ..Medians::default()
        });
        let _ = writeln!(
            out,
            "| {} | {} + {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.clients,
            s.cuttle.runs,
            e.runs,
            num(s.cuttle.handoffs_per_s, 0),
            num(e.handoffs_per_s, 0),
            num(s.ratio_handoffs_per_s, 2),
            num(s.cuttle.handoff_p50_ms, 2),
            num(e.handoff_p50_ms, 2),
            num(s.ratio_handoff_p50, 2),
            num(s.cuttle.handoff_p99_ms, 2),
            num(e.handoff_p99_ms, 2),
            num(s.ratio_handoff_p99, 2),
            s.cuttle.violations + e.violations,
            s.cuttle.errors + e.errors,
        );
    }
    let _ = writeln!(out, "\n| rep | system | clients | hand-offs/s | p50 ms | p99 ms | max ms | cycle p50 / p99 ms | acquire / release p50 ms | holds checked | violations | errors | server |");
    let _ = writeln!(
        out,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} | {} | {} | {} |",
            r.repeat + 1,
            r.system,
            r.clients,
            num(r.handoffs_per_s, 1),
            num(r.handoff_p50_ms, 2),
            num(r.handoff_p99_ms, 2),
            num(r.handoff_max_ms, 2),
            num(r.cycle_p50_ms, 2),
            num(r.cycle_p99_ms, 2),
            num(r.acquire_p50_ms, 2),
            num(r.release_p50_ms, 2),
            r.holds_checked,
            r.violations(),
            r.errors,
            bench_etcd::describe_counters(&r.server),
        );
    }
    out
}
