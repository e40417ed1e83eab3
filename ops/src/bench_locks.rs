//! Lock hand-off, cuttle against etcd in the same run (`cuttle bench locks`), by the method of
//! `shared/notes/etcd-lock-anchor.md`: N clients each repeatedly acquire one shared capacity-1 lock,
//! hold it for no time and release it. This module owns the measurement (holds, the window,
//! hand-off latency, the mutual exclusion checks), cuttle's driver through its lock API, the
//! orchestration (a fresh cluster for every run, cuttle and etcd alternately) and the report
//! (medians, same-run ratios, JSON). etcd's side lives in [`crate::bench_etcd`].

use crate::bench::{percentile, Cluster};
use crate::bench_etcd::{self, EtcdMode};
pub use crate::bench_locks_report::*;
use anyhow::Context as _;
use cuttle_node::client::Client;
use cuttle_proto::v1::AcquireLockRequest;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The flags of `cuttle bench locks`.
#[derive(clap::Args, Debug)]
pub struct LocksBenchArgs {
    /// Contending clients, one run per count, system and repetition.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub clients: Vec<usize>,
    /// Measured seconds per run (after the warm-up).
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Warm-up milliseconds per run, not measured.
    #[arg(long, default_value_t = 1000)]
    pub warmup_ms: u64,
    /// Repetitions; the tables show medians, the ratios are medians of same-repetition ratios.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// `auto`: install etcd with `ops/bench/install-etcd.sh` when it is missing; `skip`: cuttle only.
    #[arg(long, value_enum, default_value_t = EtcdMode::Auto)]
    pub etcd: EtcdMode,
    #[command(flatten)]
    pub common: crate::bench::BenchCommon,
}

/// A cuttle lock request's lease; a waiting client renews it after each `Wait` that times out.
const CUTTLE_TTL_MS: u64 = 10_000;
/// How long one `Wait` long poll may hold on (a third of the lease, as etcd's keep-alive period).
const CUTTLE_WAIT_MS: u64 = 3_300;
/// The one lock every client contends for.
pub(crate) const LOCK_NAME: &str = "bench-lock";

/// One hold of the lock as a client saw it; times in ms since the run started.
#[derive(Clone, Debug, PartialEq)]
pub struct Hold {
    /// The position of the grant in the lock's history: cuttle's fencing token, or the etcd
    /// revision the lock was acquired at.
    pub order: i64,
    /// etcd only: the revision of the ownership key's deletion (the unlock).
    pub end_order: Option<i64>,
    /// The acquire was called.
    pub called_ms: f64,
    /// The acquire returned with the lock.
    pub granted_ms: f64,
    /// The release was about to be sent.
    pub release_issued_ms: f64,
    /// The release returned successfully.
    pub released_ms: Option<f64>,
}

/// What the holds of one run say.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// Cycles whose release returned inside the window.
    pub handoffs: usize,
    /// Sorted hand-off latencies (previous release issued → this grant) of grants in the window.
    pub handoff_ms: Vec<f64>,
    /// Sorted acquire-call → release-return times of cycles counted in `handoffs`.
    pub cycle_ms: Vec<f64>,
    /// Sorted acquire-call → grant times (queueing included) of those cycles.
    pub acquire_ms: Vec<f64>,
    /// Sorted release round trips of those cycles.
    pub release_ms: Vec<f64>,
    /// Holds checked for mutual exclusion (warm-up included).
    pub holds_checked: usize,
    /// Consecutive holds (in grant order) that overlap in real time, or share a position.
    pub order_violations: usize,
    /// etcd: consecutive holds whose unlock revision is after the next hold's lock revision.
    pub revision_violations: usize,
}

/// Sorts `holds` into grant order and measures them against the window `[from_ms, to_ms]`.
pub fn analyze(holds: &mut [Hold], from_ms: f64, to_ms: f64) -> Analysis {
    holds.sort_by_key(|h| h.order);
    let inside = |t: f64| t >= from_ms && t <= to_ms;
    let mut handoff_ms = Vec::new();
    let (mut order_violations, mut revision_violations) = (0, 0);
    for pair in holds.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        // With capacity 1 the next holder may learn of its grant only after the previous holder
        // let go; a grant seen earlier, or two holds at one position, means two holders at once.
        if prev.order == next.order || next.granted_ms < prev.release_issued_ms {
            order_violations += 1;
        }
        // etcd grants at revision A only when no earlier waiter's key exists at A, so a hold's
        // interval [A, R] must end before the next one starts.
        if prev.end_order.is_some_and(|r| r > next.order) {
            revision_violations += 1;
        }
        if inside(next.granted_ms) {
            handoff_ms.push(next.granted_ms - prev.release_issued_ms);
        }
    }
    let counted: Vec<(&Hold, f64)> = holds
        .iter()
        .filter_map(|h| Some((h, h.released_ms.filter(|t| inside(*t))?)))
        .collect();
    let sorted = |f: &dyn Fn(&Hold, f64) -> f64| {
        let mut v: Vec<f64> = counted.iter().map(|(h, t)| f(h, *t)).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    handoff_ms.sort_by(f64::total_cmp);
    Analysis {
        handoffs: counted.len(),
        handoff_ms,
        cycle_ms: sorted(&|h, t| t - h.called_ms),
        acquire_ms: sorted(&|h, _| h.granted_ms - h.called_ms),
        release_ms: sorted(&|h, t| t - h.release_issued_ms),
        holds_checked: holds.len(),
        order_violations,
        revision_violations,
    }
}

/// One run of one system at one client count.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LockRun {
    /// "cuttle" or "etcd".
    pub system: String,
    /// Contending clients.
    pub clients: usize,
    /// The repetition (0-based); a cuttle and an etcd run with the same one were run back to back.
    pub repeat: usize,
    /// The measurement window, seconds.
    pub window_s: f64,
    /// Completed cycles whose release returned in the window.
    pub handoffs: usize,
    /// `handoffs` per second of window.
    pub handoffs_per_s: f64,
    /// Median hand-off latency.
    pub handoff_p50_ms: f64,
    /// 99th percentile hand-off latency.
    pub handoff_p99_ms: f64,
    /// Longest hand-off.
    pub handoff_max_ms: f64,
    /// Median acquire → release cycle (includes queueing when N > 1).
    pub cycle_p50_ms: f64,
    /// 99th percentile cycle.
    pub cycle_p99_ms: f64,
    /// Median acquire call → grant (with N = 1, one uncontended acquire round trip).
    pub acquire_p50_ms: f64,
    /// Median release round trip.
    pub release_p50_ms: f64,
    /// Holds checked by the order (and, for etcd, revision) check.
    pub holds_checked: usize,
    /// Check 1: a client found the shared "held" flag already set when its acquire returned.
    pub violations_flag: usize,
    /// Check 2: overlapping holds in grant order (fencing token or lock revision).
    pub violations_order: usize,
    /// Check 3 (etcd): an unlock revision after the next lock revision.
    pub violations_revision: usize,
    /// All failed calls (acquire, release, keep-alive).
    pub errors: usize,
    /// Failed acquires (including waits).
    pub acquire_errors: usize,
    /// Failed releases.
    pub release_errors: usize,
    /// Failed lease keep-alives.
    pub keepalive_errors: usize,
    /// Leases or requests found expired by the client.
    pub lease_expiries: usize,
    /// The servers' own counters after the run (etcd: `/metrics`, log warnings); null for cuttle.
    pub server: serde_json::Value,
}

impl LockRun {
    /// Violations by any check.
    pub fn violations(&self) -> usize {
        self.violations_flag + self.violations_order + self.violations_revision
    }
}

/// What the clients of one run share.
pub(crate) struct Contest {
    base: Instant,
    /// Clients stop starting new cycles once set.
    pub stop: AtomicBool,
    held: AtomicBool,
    flag_violations: AtomicUsize,
    pub acquire_errors: AtomicUsize,
    pub release_errors: AtomicUsize,
    pub keepalive_errors: AtomicUsize,
    pub lease_expiries: AtomicUsize,
}

impl Contest {
    fn new() -> Contest {
        Contest {
            base: Instant::now(),
            stop: AtomicBool::new(false),
            held: AtomicBool::new(false),
            flag_violations: AtomicUsize::new(0),
            acquire_errors: AtomicUsize::new(0),
            release_errors: AtomicUsize::new(0),
            keepalive_errors: AtomicUsize::new(0),
            lease_expiries: AtomicUsize::new(0),
        }
    }

    /// Milliseconds since the run started.
    pub fn now_ms(&self) -> f64 {
        self.base.elapsed().as_secs_f64() * 1e3
    }

    /// Called when an acquire returned with the lock: check 1, then the (zero-length) hold ends.
    /// Returns the time to record as the release being issued.
    pub fn hold(&self) -> f64 {
        if self.held.swap(true, Ordering::SeqCst) {
            self.flag_violations.fetch_add(1, Ordering::Relaxed);
        }
        self.held.store(false, Ordering::SeqCst);
        self.now_ms()
    }

    pub fn count(counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Runs `clients` contenders (`client(i, contest)` each) through the warm-up and the window, then
/// lets each finish its cycle and measures the run.
pub(crate) async fn contest<F, Fut>(
    system: &str,
    clients: usize,
    repeat: usize,
    warmup: Duration,
    window: Duration,
    client: F,
) -> anyhow::Result<LockRun>
where
    F: Fn(usize, Arc<Contest>) -> Fut,
    Fut: Future<Output = Vec<Hold>> + Send + 'static,
{
    let contest = Arc::new(Contest::new());
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(i, contest.clone())))
        .collect();
    tokio::time::sleep(warmup).await;
    let from_ms = contest.now_ms();
    tokio::time::sleep(window).await;
    let to_ms = contest.now_ms();
    contest.stop.store(true, Ordering::Relaxed);
    let mut holds = Vec::new();
    for task in tasks {
        let abort = task.abort_handle();
        match tokio::time::timeout(Duration::from_secs(60), task).await {
            Ok(joined) => holds.extend(joined.context("a bench client panicked")?),
            Err(_) => {
                abort.abort();
                anyhow::bail!("a {system} bench client did not finish its cycle within 60 s of the window's end");
            }
        }
    }
    let a = analyze(&mut holds, from_ms, to_ms);
    let window_s = (to_ms - from_ms) / 1e3;
    let load = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    let (acquire_errors, release_errors, keepalive_errors) = (
        load(&contest.acquire_errors),
        load(&contest.release_errors),
        load(&contest.keepalive_errors),
    );
    Ok(LockRun {
        system: system.into(),
        clients,
        repeat,
        window_s,
        handoffs: a.handoffs,
        handoffs_per_s: a.handoffs as f64 / window_s,
        handoff_p50_ms: percentile(&a.handoff_ms, 50.0),
        handoff_p99_ms: percentile(&a.handoff_ms, 99.0),
        handoff_max_ms: a.handoff_ms.last().copied().unwrap_or(f64::NAN),
        cycle_p50_ms: percentile(&a.cycle_ms, 50.0),
        cycle_p99_ms: percentile(&a.cycle_ms, 99.0),
        acquire_p50_ms: percentile(&a.acquire_ms, 50.0),
        release_p50_ms: percentile(&a.release_ms, 50.0),
        holds_checked: a.holds_checked,
        violations_flag: load(&contest.flag_violations),
        violations_order: a.order_violations,
        violations_revision: a.revision_violations,
        errors: acquire_errors + release_errors + keepalive_errors,
        acquire_errors,
        release_errors,
        keepalive_errors,
        lease_expiries: load(&contest.lease_expiries),
        server: serde_json::Value::Null,
    })
}

/// One cuttle client: acquire (then `Wait` while queued), release at once, until told to stop.
async fn cuttle_client(client: Client, holder: String, c: Arc<Contest>) -> Vec<Hold> {
    let mut holds = Vec::new();
    while !c.stopped() {
        let called_ms = c.now_ms();
        let acquired = client
            .lock_acquire(AcquireLockRequest {
                name: LOCK_NAME.into(),
                target: String::new(),
                capacity: 1,
                holder: holder.clone(),
                ttl_ms: CUTTLE_TTL_MS,
            })
            .await;
        let mut state = match acquired {
            Ok(state) => state,
            Err(_) => {
                Contest::count(&c.acquire_errors);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while state.state == "queued" {
            match client.lock_wait(state.request, CUTTLE_WAIT_MS).await {
                Ok(next) if next.state == "queued" => {
                    // Waited a third of the lease: renew it, as a real client must.
                    if client.lock_keep_alive(state.request).await.is_err() {
                        Contest::count(&c.keepalive_errors);
                    }
                    state = next;
                }
                Ok(next) => state = next,
                Err(_) => {
                    Contest::count(&c.acquire_errors);
                    // Withdraw the request so that it does not block the others until it expires.
                    let _ = client.lock_release(state.request).await;
                    break;
                }
            }
        }
        if state.state != "granted" {
            if state.expired {
                Contest::count(&c.lease_expiries);
            }
            continue;
        }
        let granted_ms = c.now_ms();
        let release_issued_ms = c.hold();
        let released_ms = match client.lock_release(state.request).await {
            Ok(_) => Some(c.now_ms()),
            Err(_) => {
                Contest::count(&c.release_errors);
                None
            }
        };
        holds.push(Hold {
            order: state.token as i64,
            end_order: None,
            called_ms,
            granted_ms,
            release_issued_ms,
            released_ms,
        });
    }
    holds
}

/// One cuttle run against a running cluster (`endpoints` with the leader first).
pub(crate) async fn run_cuttle(
    endpoints: &[String],
    clients: usize,
    repeat: usize,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<LockRun> {
    let connections = (0..clients)
        .map(|_| Client::new(endpoints, Duration::from_secs(10)))
        .collect::<Result<Vec<_>, _>>()?;
    contest("cuttle", clients, repeat, warmup, window, |i, c| {
        cuttle_client(connections[i].clone(), format!("bench-{i}"), c)
    })
    .await
}

/// `cuttle bench cluster --lock-clients`: one cuttle run on the bench's cluster, one second of
/// warm-up and `seconds` measured.
pub async fn handoffs(
    endpoints: &[String],
    clients: usize,
    seconds: u64,
    run_id: usize,
) -> anyhow::Result<LockRun> {
    let warmup = Duration::from_secs(1);
    run_cuttle(
        endpoints,
        clients,
        run_id,
        warmup,
        Duration::from_secs(seconds),
    )
    .await
}

/// A fresh three-node cuttle cluster under `dir`, one run, and the cluster stopped.
async fn cuttle_once(
    args: &LocksBenchArgs,
    dir: &std::path::Path,
    clients: usize,
    repeat: usize,
) -> anyhow::Result<LockRun> {
    let cluster = Cluster::start(dir, &args.common.server_flags)?;
    let (_, leader) = cluster.leader().await?;
    // Leader first, as `cuttle bench cluster` does: a follower would forward every call.
    let mut endpoints = vec![leader.clone()];
    endpoints.extend(cluster.endpoints().into_iter().filter(|a| *a != leader));
    let run = run_cuttle(
        &endpoints,
        clients,
        repeat,
        Duration::from_millis(args.warmup_ms),
        Duration::from_secs(args.seconds),
    )
    .await;
    drop(cluster);
    run
}

/// Runs the benchmark, prints the tables, writes the JSON; `Ok(false)` when a check found a
/// violation of mutual exclusion.
pub fn run(args: &LocksBenchArgs) -> anyhow::Result<bool> {
    let etcd = bench_etcd::ensure(args.etcd);
    match &etcd {
        Ok(version) => eprintln!("etcd: {version}"),
        Err(why) => eprintln!("etcd will not run: {why}; measuring cuttle only"),
    }
    let root = std::env::temp_dir().join(format!("cuttle-bench-locks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    let mut counter = 0;
    let result = runtime.block_on(async {
        for repeat in 0..args.repeats {
            for &clients in &args.clients {
                // Alternate which system goes first, so that drift favours neither.
                let etcd_first = repeat % 2 == 1;
                for turn in 0..2 {
                    let is_etcd = (turn == 0) == etcd_first;
                    if is_etcd && etcd.is_err() {
                        continue;
                    }
                    counter += 1;
                    let dir = root.join(format!("run-{counter}"));
                    std::fs::create_dir_all(&dir)?;
                    let run = if is_etcd {
                        bench_etcd::etcd_once(&dir, clients, repeat, args).await
                    } else {
                        cuttle_once(args, &dir, clients, repeat).await
                    };
                    let _ = std::fs::remove_dir_all(&dir);
                    let run = run?;
                    eprintln!(
                        "rep {} {:>6} {clients:>3} clients: {:.0} hand-offs/s, p50 {:.2} ms, p99 {:.2} ms, {} errors, {} violations",
                        repeat + 1,
                        run.system,
                        run.handoffs_per_s,
                        run.handoff_p50_ms,
                        run.handoff_p99_ms,
                        run.errors,
                        run.violations()
                    );
                    runs.push(run);
                }
            }
        }
        anyhow::Ok(())
    });
    let _ = std::fs::remove_dir_all(&root);
    result?;
    let summary = summarize(&runs);
    let machine = machine();
    println!(
        "{}",
        report(args, &machine, etcd.as_ref().ok(), &summary, &runs)
    );
    if let Some(path) = &args.common.json {
        let json = serde_json::json!({
            "machine": machine,
            "cluster": "three nodes on 127.0.0.1, durable writes (cuttle: sled flush + fdatasync; etcd: defaults, WAL fsync)",
            "etcd": match &etcd { Ok(v) => serde_json::json!(v), Err(why) => serde_json::json!({"unavailable": why}) },
            "seconds": args.seconds,
            "warmup_ms": args.warmup_ms,
            "repeats": args.repeats,
            "clients": args.clients,
            "summary": summary,
            "runs": runs,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(runs.iter().all(|r| r.violations() == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hold at `order` granted at `granted` and released (issued) at `release`.
    fn hold(order: i64, granted: f64, release: f64) -> Hold {
        Hold {
            order,
            end_order: None,
            called_ms: granted - 1.0,
            granted_ms: granted,
            release_issued_ms: release,
            released_ms: Some(release + 1.0),
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), 2.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn median_of_even_counts_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn handoffs_pair_holds_in_grant_order_and_count_only_the_window() {
        // Recorded out of order, as clients return them; the window is [10, 30].
        let mut holds = vec![
            hold(3, 20.0, 21.0),
            hold(1, 5.0, 6.0),
            hold(2, 9.0, 12.0),
            hold(4, 24.0, 40.0),
        ];
        let a = analyze(&mut holds, 10.0, 30.0);
        assert_eq!(
            holds.iter().map(|h| h.order).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        // Grants inside the window: orders 3 (20 - 12) and 4 (24 - 21); order 2 was granted
        // before the window opened.
        assert_eq!(a.handoff_ms, [3.0, 8.0]);
        // Releases returned inside: orders 2 (13) and 3 (22); order 4 returned at 41.
        assert_eq!(a.handoffs, 2);
        assert_eq!(a.cycle_ms, [3.0, 5.0]);
        assert_eq!(a.acquire_ms, [1.0, 1.0]);
        assert_eq!(a.release_ms, [1.0, 1.0]);
        assert_eq!((a.order_violations, a.revision_violations), (0, 0));
        assert_eq!(a.holds_checked, 4);
    }

    #[test]
    fn overlapping_or_shared_grants_are_violations() {
        // Order 2 is granted at 5.5, before order 1 let go at 6.
        let mut overlap = vec![hold(1, 5.0, 6.0), hold(2, 5.5, 7.0)];
        assert_eq!(analyze(&mut overlap, 0.0, 100.0).order_violations, 1);
        let mut same = vec![hold(1, 5.0, 6.0), hold(1, 8.0, 9.0)];
        assert_eq!(analyze(&mut same, 0.0, 100.0).order_violations, 1);
        let mut fine = vec![hold(1, 5.0, 6.0), hold(2, 6.5, 7.0)];
        assert_eq!(analyze(&mut fine, 0.0, 100.0).order_violations, 0);
    }

    #[test]
    fn the_revision_check_wants_each_unlock_before_the_next_lock() {
        let with_end = |order, end, granted| Hold {
            end_order: Some(end),
            ..hold(order, granted, granted + 0.5)
        };
        // [10, 11] and [11, 12]: the unlock at 11 is the revision the next lock saw. Fine.
        let mut ok = vec![with_end(10, 11, 1.0), with_end(11, 12, 2.0)];
        assert_eq!(analyze(&mut ok, 0.0, 100.0).revision_violations, 0);
        // [10, 13] and [11, 12]: the second lock was granted while the first key existed.
        let mut bad = vec![with_end(10, 13, 1.0), with_end(11, 12, 2.0)];
        assert_eq!(analyze(&mut bad, 0.0, 100.0).revision_violations, 1);
    }

    fn run(system: &str, clients: usize, repeat: usize, rate: f64, p50: f64) -> LockRun {
        LockRun {
            system: system.into(),
            clients,
            repeat,
            window_s: 15.0,
            handoffs: 0,
            handoffs_per_s: rate,
            handoff_p50_ms: p50,
            handoff_p99_ms: p50 * 2.0,
            handoff_max_ms: p50 * 3.0,
            cycle_p50_ms: p50,
            cycle_p99_ms: p50,
            acquire_p50_ms: p50,
            release_p50_ms: p50,
            holds_checked: 0,
            violations_flag: 0,
            violations_order: usize::from(repeat == 2),
            violations_revision: 0,
            errors: 1,
            acquire_errors: 1,
            release_errors: 0,
            keepalive_errors: 0,
            lease_expiries: 0,
            server: serde_json::Value::Null,
        }
    }

    #[test]
    fn ratios_are_taken_within_each_repetition_then_their_median() {
        let runs = vec![
            run("cuttle", 8, 0, 400.0, 2.0),
            run("etcd", 8, 0, 100.0, 4.0),
            run("etcd", 8, 1, 250.0, 1.0),
            run("cuttle", 8, 1, 500.0, 2.0),
            run("cuttle", 8, 2, 300.0, 3.0),
            run("etcd", 8, 2, 150.0, 3.0),
            run("cuttle", 1, 0, 300.0, 3.0),
        ];
        let s = summarize(&runs);
        assert_eq!(s.len(), 2);
        let eight = &s[0];
        assert_eq!(eight.clients, 8);
        assert_eq!(eight.cuttle.runs, 3);
        assert_eq!(eight.cuttle.handoffs_per_s, 400.0);
        assert_eq!(eight.etcd.as_ref().unwrap().handoffs_per_s, 150.0);
        // Per repetition 4, 2 and 2: the median is 2, not the ratio of the medians (400 / 150).
        assert_eq!(eight.ratio_handoffs_per_s, 2.0);
        // p50 ratios 0.5, 2 and 1.
        assert_eq!(eight.ratio_handoff_p50, 1.0);
        assert_eq!(
            eight.cuttle.violations + eight.etcd.as_ref().unwrap().violations,
            2
        );
        assert_eq!(eight.cuttle.errors, 3);
        // Without etcd there is no ratio.
        assert!(s[1].etcd.is_none() && s[1].ratio_handoffs_per_s.is_nan());
    }
}
