//! Benchmarks of the scheduling core (`cuttle_raft::sched`): the figures recorded in
//! `docs/benchmarks.md`.
//!
//! ```text
//! cargo bench -p cuttle-raft --bench core                        # everything, a few minutes
//! CUTTLE_BENCH_QUICK=1 cargo bench -p cuttle-raft --bench core   # up to 100k queued tasks
//! CUTTLE_BENCH_CRITERION=0 cargo bench -p cuttle-raft --bench core  # skip the criterion part
//! ```
//!
//! Run without `--bench` (as `cargo test --all-targets` does), it makes one tiny pass over every
//! section as a smoke test.
//!
//! # Workload
//! 10,000 targets in 10 environments, each target with its own role and a capacity of 4; cluster
//! task cap 100. Every task has one step that runs on one target (its role), so a task is one unit.
//! The state holds 100 running tasks (one dispatched unit each) and `N` queued tasks. One *cycle*
//! applies two commands: `SubmitTask` (one more queued task) and `UnitFinished` for the oldest
//! dispatched unit, which ends its task, admits the head of the queue and dispatches its unit; so
//! `N` stays steady. Two shapes of queue:
//! - *distinct tags*: every task has its own concurrency tag (`project-i/env-e`, `i` cycling over
//!   `N + 1,300` values so a tag is free again before it is reused), so all `N` tasks queue on the
//!   cap;
//! - *shared tags*: tasks cycle over 1,000 tags, so at most 900 tasks wait on the cap and the rest
//!   wait on their tags.
//!
//! # Sections
//! 1. criterion: the cycle at every `N` (throughput in commands, two per cycle);
//! 2. a timed section that measures every `N` in interleaved rounds (so noise hits all sizes alike)
//!    and reports medians and the 1M/1k ratio;
//! 3. memory: a counting global allocator measures the bytes allocated and still live after
//!    queueing `N` tasks, divided by `N` (the resident set size delta is printed beside it);
//! 4. snapshot and restore of each state, with a check that the restored state re-encodes to the
//!    same bytes.
//!
//! It ends with markdown tables of the results.

use criterion::{BenchmarkId, Criterion, Throughput};
use cuttle_raft::sched::{
    BypassRule, Command, Event, Input, Scheduler, SettingsPatch, StepSpec, TargetSpec, TaskSpec,
    UnitId, PARALLELISM_DEFAULT,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------------------------
// Counting allocator. It counts only inside a `Window`, so the timed sections pay one relaxed load
// per allocation and nothing more.

struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn count_alloc(size: usize) {
    LIVE_BYTES.fetch_add(size as i64, Relaxed);
    ALLOCATED_BYTES.fetch_add(size as u64, Relaxed);
    ALLOCATIONS.fetch_add(1, Relaxed);
}

// SAFETY: every method forwards to `System` with the same arguments; the counters have no effect
// on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() && COUNTING.load(Relaxed) {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() && COUNTING.load(Relaxed) {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        if COUNTING.load(Relaxed) {
            LIVE_BYTES.fetch_sub(layout.size() as i64, Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() && COUNTING.load(Relaxed) {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Relaxed);
            ALLOCATED_BYTES.fetch_add(new_size as u64, Relaxed);
            ALLOCATIONS.fetch_add(1, Relaxed);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// What the allocator saw between `Window::open` and `Window::close`.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// Net growth of live heap bytes (allocations minus frees, whoever made them).
    live_bytes: i64,
    /// Bytes handed out (a `realloc` counts its new size).
    allocated_bytes: u64,
    /// Allocations and reallocations.
    allocations: u64,
    /// Growth of the resident set, from `/proc/self/statm` (allocator overhead included).
    rss_bytes: i64,
}

struct Window {
    rss: i64,
}

impl Window {
    fn open() -> Window {
        LIVE_BYTES.store(0, Relaxed);
        ALLOCATED_BYTES.store(0, Relaxed);
        ALLOCATIONS.store(0, Relaxed);
        let rss = rss_bytes();
        COUNTING.store(true, Relaxed);
        Window { rss }
    }

    fn close(self) -> Counts {
        COUNTING.store(false, Relaxed);
        Counts {
            live_bytes: LIVE_BYTES.load(Relaxed),
            allocated_bytes: ALLOCATED_BYTES.load(Relaxed),
            allocations: ALLOCATIONS.load(Relaxed),
            rss_bytes: rss_bytes() - self.rss,
        }
    }
}

/// Resident set size in bytes (0 where `/proc` is missing).
fn rss_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

// ------------------------------------------------------------------------------------------------
// The workload.

const TARGETS: u32 = 10_000;
const ENVIRONMENTS: u32 = 10;
const TARGET_CAPACITY: u32 = 4;
const TASK_CAP: u32 = 100;
const SHARED_TAGS: u64 = 1_000;
/// Tags beyond `N + TASK_CAP` in the distinct-tags pool, so a tag is free when it comes round.
const DISTINCT_SLACK: u64 = 1_200;
/// Commands are built in chunks of this many cycles outside the timed loop.
const CHUNK: usize = 4_096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tags {
    Distinct,
    Shared,
}

impl Tags {
    fn name(self) -> &'static str {
        match self {
            Tags::Distinct => "distinct tags",
            Tags::Shared => "shared tags",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Tags::Distinct => "distinct_tags",
            Tags::Shared => "shared_tags",
        }
    }
}

fn target_spec(t: u32) -> TargetSpec {
    TargetSpec {
        name: format!("target-{t:05}"),
        environments: vec![format!("env-{}", t / (TARGETS / ENVIRONMENTS))],
        roles: vec![format!("role-{t:05}")],
        tenants: Vec::new(),
        capacity: TARGET_CAPACITY,
    }
}

/// Task number `seq`, whose tag is number `tag`: project `project-{tag}` deployed to the
/// environment of target `tag % TARGETS`, with one step on that target's role. The default
/// concurrency tag is `project-{tag}/env-{e}`.
fn task_spec(tag: u64, seq: u64) -> TaskSpec {
    let target = (tag % u64::from(TARGETS)) as u32;
    TaskSpec {
        project: format!("project-{tag}"),
        release: format!("1.0.{seq}"),
        environment: format!("env-{}", target / (TARGETS / ENVIRONMENTS)),
        tenant: None,
        concurrency_tag: None,
        bypass: BypassRule::default(),
        hold_targets: false,
        acquire_max_parallelism: PARALLELISM_DEFAULT,
        steps: vec![StepSpec {
            name: "deploy".into(),
            roles: vec![format!("role-{target:05}")],
            max_parallelism: PARALLELISM_DEFAULT,
            package: None,
            lock: None,
        }],
    }
}

/// A scheduler holding `TASK_CAP` running and `queued` queued tasks, and what drives it.
struct Workload {
    sched: Scheduler,
    tags: Tags,
    queued: u64,
    /// Number of tags cycled through.
    pool: u64,
    /// Sequence number of the next task.
    next: u64,
    now_ms: u64,
    events: Vec<Event>,
    /// Dispatched units not yet finished, oldest first.
    dispatched: VecDeque<(UnitId, u32)>,
    /// The allocator's view of queueing the `queued` tasks.
    fill: Counts,
    /// Time to submit the `queued` tasks.
    fill_time: Duration,
}

impl Workload {
    fn build(tags: Tags, queued: u64) -> Workload {
        let pool = match tags {
            Tags::Distinct => queued + u64::from(TASK_CAP) + DISTINCT_SLACK,
            Tags::Shared => SHARED_TAGS,
        };
        let mut w = Workload {
            sched: Scheduler::default(),
            tags,
            queued,
            pool,
            next: 0,
            now_ms: 1_000,
            events: Vec::new(),
            dispatched: VecDeque::new(),
            fill: Counts::default(),
            fill_time: Duration::ZERO,
        };
        w.apply(Command::SetSettings(SettingsPatch {
            task_cap: Some(TASK_CAP),
            ..SettingsPatch::default()
        }));
        for t in 0..TARGETS {
            w.apply(Command::UpsertTarget(target_spec(t)));
        }
        for _ in 0..TASK_CAP {
            let command = w.next_submit();
            w.apply(command);
        }
        assert_eq!(w.sched.running_tasks(), TASK_CAP);
        assert_eq!(w.dispatched.len(), TASK_CAP as usize);
        w.events = Vec::with_capacity(16);
        let window = Window::open();
        let start = Instant::now();
        for _ in 0..queued {
            let command = w.next_submit();
            w.apply(command);
        }
        w.fill_time = start.elapsed();
        w.fill = window.close();
        w.check();
        w
    }

    fn next_submit(&mut self) -> Command {
        let seq = self.next;
        self.next += 1;
        Command::SubmitTask(task_spec(seq % self.pool, seq))
    }

    fn apply(&mut self, command: Command) {
        self.now_ms += 1;
        let input = Input {
            now_ms: self.now_ms,
            command,
        };
        self.sched
            .apply(input, &mut self.events)
            .expect("command accepted");
        for event in &self.events {
            if let Event::UnitDispatched { unit, attempt, .. } = event {
                self.dispatched.push_back((*unit, *attempt));
            }
        }
    }

    /// One cycle: submit a task, finish the oldest dispatched unit.
    fn cycle(&mut self, submit: Command) {
        self.apply(submit);
        let (unit, attempt) = self.dispatched.pop_front().expect("a unit is dispatched");
        self.apply(Command::UnitFinished {
            unit,
            attempt,
            exit_code: 0,
        });
    }

    /// Runs `cycles` cycles and returns the time spent applying them (building the submit
    /// commands is left out).
    fn run(&mut self, cycles: u64) -> Duration {
        let mut spent = Duration::ZERO;
        let mut left = cycles;
        let mut commands = Vec::with_capacity(CHUNK);
        while left > 0 {
            let chunk = left.min(CHUNK as u64);
            commands.extend((0..chunk).map(|_| self.next_submit()));
            let start = Instant::now();
            for command in commands.drain(..) {
                self.cycle(command);
            }
            spent += start.elapsed();
            left -= chunk;
        }
        black_box(&self.sched);
        spent
    }

    /// The queue is as long as it should be.
    fn check(&self) {
        assert_eq!(u64::from(self.sched.queued_tasks()), self.queued);
        assert_eq!(self.sched.running_tasks(), TASK_CAP);
    }
}

// ------------------------------------------------------------------------------------------------
// Configuration.

struct Config {
    /// Label for the tables.
    mode: &'static str,
    sizes: Vec<u64>,
    criterion: bool,
    criterion_measure: Duration,
    rounds: usize,
    /// Cycles run once before the rounds.
    initial_warm_cycles: u64,
    /// Cycles run before each timed round (untimed).
    warm_cycles: u64,
    round_cycles: u64,
    snapshot_reps: usize,
}

impl Config {
    fn from_env() -> Config {
        let bench = std::env::args().any(|a| a == "--bench");
        let quick = std::env::var("CUTTLE_BENCH_QUICK").is_ok_and(|v| v != "0");
        let criterion = std::env::var("CUTTLE_BENCH_CRITERION").map_or(true, |v| v != "0");
        if !bench {
            return Config {
                mode: "smoke (no --bench)",
                sizes: vec![1_000],
                criterion: false,
                criterion_measure: Duration::ZERO,
                rounds: 1,
                initial_warm_cycles: 1_000,
                warm_cycles: 100,
                round_cycles: 100,
                snapshot_reps: 1,
            };
        }
        if quick {
            return Config {
                mode: "quick (CUTTLE_BENCH_QUICK=1)",
                sizes: vec![1_000, 10_000, 100_000],
                criterion,
                criterion_measure: Duration::from_secs(1),
                rounds: 7,
                initial_warm_cycles: 11_000,
                warm_cycles: 1_000,
                round_cycles: 5_000,
                snapshot_reps: 1,
            };
        }
        Config {
            mode: "full",
            sizes: vec![1_000, 10_000, 100_000, 1_000_000],
            criterion,
            criterion_measure: Duration::from_secs(3),
            rounds: 21,
            initial_warm_cycles: 11_000,
            warm_cycles: 2_000,
            round_cycles: 10_000,
            snapshot_reps: 3,
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Statistics and formatting.

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn size_label(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 && c != '-' {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ------------------------------------------------------------------------------------------------
// Sections.

/// Section 1: criterion, one benchmark per shape and size.
fn criterion_section(config: &Config, workloads: &mut [Workload]) {
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(config.criterion_measure)
        .configure_from_args();
    for tags in [Tags::Distinct, Tags::Shared] {
        let mut group = c.benchmark_group(format!("cycle_{}", tags.slug()));
        group.throughput(Throughput::Elements(2));
        for w in workloads.iter_mut().filter(|w| w.tags == tags) {
            let id = BenchmarkId::from_parameter(size_label(w.queued));
            group.bench_function(id, |b| b.iter_custom(|iters| w.run(iters)));
            w.check();
        }
        group.finish();
    }
    c.final_summary();
}

/// Section 2 result for one workload.
struct CycleResult {
    tags: Tags,
    queued: u64,
    /// ns per command, one per round.
    ns: Vec<f64>,
    /// Allocator counts over `round_cycles` cycles.
    counts: Counts,
    cycles_counted: u64,
}

/// Section 2: every workload, in interleaved rounds.
fn cycle_section(config: &Config, workloads: &mut [Workload]) -> Vec<CycleResult> {
    let mut results: Vec<CycleResult> = workloads
        .iter()
        .map(|w| CycleResult {
            tags: w.tags,
            queued: w.queued,
            ns: Vec::new(),
            counts: Counts::default(),
            cycles_counted: 0,
        })
        .collect();
    // Past the retention of ended tasks (10,000 by default), so forgetting them is measured too.
    for w in workloads.iter_mut() {
        w.run(config.initial_warm_cycles);
    }
    for round in 0..config.rounds {
        for (w, result) in workloads.iter_mut().zip(&mut results) {
            w.run(config.warm_cycles);
            let spent = w.run(config.round_cycles);
            result
                .ns
                .push(spent.as_nanos() as f64 / (2 * config.round_cycles) as f64);
            w.check();
        }
        eprintln!(
            "round {}/{}: {}",
            round + 1,
            config.rounds,
            results
                .iter()
                .map(|r| format!(
                    "{} {}: {:.0} ns",
                    r.tags.slug(),
                    size_label(r.queued),
                    r.ns.last().unwrap()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (w, result) in workloads.iter_mut().zip(&mut results) {
        let cycles = config.round_cycles.min(2_000);
        let mut commands: Vec<Command> = (0..cycles).map(|_| w.next_submit()).collect();
        let window = Window::open();
        for command in commands.drain(..) {
            w.cycle(command);
        }
        result.counts = window.close();
        result.cycles_counted = cycles;
        w.check();
    }
    results
}

/// Section 4 result for one workload.
struct SnapshotResult {
    tags: Tags,
    queued: u64,
    bytes: usize,
    encode_ms: Vec<f64>,
    decode_ms: Vec<f64>,
    identical: bool,
}

/// Section 4: snapshot and restore.
fn snapshot_section(config: &Config, workloads: &[Workload]) -> Vec<SnapshotResult> {
    let mut results = Vec::new();
    for w in workloads {
        let mut encode_ms = Vec::new();
        let mut decode_ms = Vec::new();
        let mut bytes = Vec::new();
        let mut identical = true;
        for rep in 0..config.snapshot_reps {
            drop(bytes);
            let start = Instant::now();
            bytes = w.sched.snapshot().expect("snapshot encodes");
            encode_ms.push(ms(start.elapsed()));
            let start = Instant::now();
            let restored = Scheduler::restore(&bytes).expect("snapshot decodes");
            decode_ms.push(ms(start.elapsed()));
            if rep == 0 {
                let again = restored.snapshot().expect("restored state encodes");
                identical &= again == bytes;
                identical &= restored == w.sched;
            }
            drop(restored);
        }
        eprintln!(
            "snapshot {} {}: {} bytes, encode {:.0} ms, decode {:.0} ms, identical: {identical}",
            w.tags.slug(),
            size_label(w.queued),
            bytes.len(),
            median(&encode_ms),
            median(&decode_ms)
        );
        results.push(SnapshotResult {
            tags: w.tags,
            queued: w.queued,
            bytes: bytes.len(),
            encode_ms,
            decode_ms,
            identical,
        });
    }
    results
}

// ------------------------------------------------------------------------------------------------
// Report.

fn report(
    config: &Config,
    workloads: &[Workload],
    cycles: &[CycleResult],
    snapshots: &[SnapshotResult],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## Results ({} mode; {} rounds of {} cycles, medians)\n",
        config.mode, config.rounds, config.round_cycles
    );
    let _ = writeln!(
        out,
        "Workload: {TARGETS} targets in {ENVIRONMENTS} environments, task cap {TASK_CAP}, \
         {TASK_CAP} running tasks, N queued; one cycle = SubmitTask + UnitFinished (2 commands).\n"
    );

    let _ = writeln!(out, "### Cost of applying a command (goals 1 and 2)\n");
    let _ = writeln!(
        out,
        "| queue | N queued | ns/command (median) | min–max | commands/s (median) | allocations/command | bytes allocated/command |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for r in cycles {
        let med = median(&r.ns);
        let commands = (2 * r.cycles_counted).max(1) as f64;
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0}–{:.0} | {} | {:.1} | {:.0} |",
            r.tags.name(),
            size_label(r.queued),
            med,
            min(&r.ns),
            max(&r.ns),
            thousands(1e9 / med),
            r.counts.allocations as f64 / commands,
            r.counts.allocated_bytes as f64 / commands,
        );
    }
    let _ = writeln!(out);
    for tags in [Tags::Distinct, Tags::Shared] {
        let of = |n: u64| cycles.iter().find(|r| r.tags == tags && r.queued == n);
        let smallest = cycles
            .iter()
            .filter(|r| r.tags == tags)
            .map(|r| r.queued)
            .min();
        let largest = cycles
            .iter()
            .filter(|r| r.tags == tags)
            .map(|r| r.queued)
            .max();
        if let (Some(lo), Some(hi)) = (smallest.and_then(of), largest.and_then(of)) {
            if lo.queued == hi.queued {
                continue;
            }
            let paired: Vec<f64> = hi.ns.iter().zip(&lo.ns).map(|(h, l)| h / l).collect();
            let _ = writeln!(
                out,
                "- {}: ns/command at {} / at {} = {:.2} (ratio of medians), {:.2} (median of per-round ratios); goal ≤ 2.00",
                tags.name(),
                size_label(hi.queued),
                size_label(lo.queued),
                median(&hi.ns) / median(&lo.ns),
                median(&paired),
            );
        }
    }
    if let Some(r) = cycles
        .iter()
        .find(|r| r.tags == Tags::Distinct && r.queued == 100_000)
    {
        let _ = writeln!(
            out,
            "- throughput with 100k queued (distinct tags): {} commands/s; goal ≥ 500,000",
            thousands(1e9 / median(&r.ns))
        );
    }

    let _ = writeln!(out, "\n### Memory per queued task (goal 3)\n");
    let _ = writeln!(
        out,
        "| queue | N queued | live heap bytes / queued task | allocations / queued task | RSS growth / queued task | submit time / task (fill) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for w in workloads {
        let n = w.queued as f64;
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.1} | {:.0} | {:.0} ns |",
            w.tags.name(),
            size_label(w.queued),
            w.fill.live_bytes as f64 / n,
            w.fill.allocations as f64 / n,
            w.fill.rss_bytes as f64 / n,
            w.fill_time.as_nanos() as f64 / n,
        );
    }

    let _ = writeln!(out, "\n### Snapshot and restore (goal 4)\n");
    let _ = writeln!(
        out,
        "| queue | N queued | snapshot bytes | bytes / queued task | encode ms | decode ms | encode + decode ms | re-encodes identically |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
    for s in snapshots {
        let encode = median(&s.encode_ms);
        let decode = median(&s.decode_ms);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            s.tags.name(),
            size_label(s.queued),
            thousands(s.bytes as f64),
            s.bytes as f64 / s.queued as f64,
            encode,
            decode,
            encode + decode,
            if s.identical { "yes" } else { "NO" },
        );
    }
    out
}

fn main() {
    let config = Config::from_env();
    eprintln!(
        "cuttle-raft core benchmarks, {} mode, sizes {:?}",
        config.mode, config.sizes
    );
    let mut workloads = Vec::new();
    for tags in [Tags::Distinct, Tags::Shared] {
        for &n in &config.sizes {
            let w = Workload::build(tags, n);
            eprintln!(
                "built {} {}: {:.0} live bytes/queued task, fill {:.0} ms",
                tags.slug(),
                size_label(n),
                w.fill.live_bytes as f64 / n as f64,
                ms(w.fill_time)
            );
            workloads.push(w);
        }
    }
    if config.criterion {
        criterion_section(&config, &mut workloads);
    }
    let cycles = cycle_section(&config, &mut workloads);
    let snapshots = snapshot_section(&config, &workloads);
    println!("{}", report(&config, &workloads, &cycles, &snapshots));
}
