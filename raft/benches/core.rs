//! Benchmarks of the scheduling core (`cuttle_raft::sched`): the figures recorded in
//! `docs/benchmarks.md`.
//!
//! ```text
//! cargo bench -p cuttle-raft --bench core                        # everything: ~1.5 min, 3 GB RSS
//! CUTTLE_BENCH_QUICK=1 cargo bench -p cuttle-raft --bench core   # up to 100k queued tasks
//! CUTTLE_BENCH_CRITERION=0 cargo bench -p cuttle-raft --bench core  # skip the criterion part
//! ```
//!
//! Run without `--bench` (as `cargo test --all-targets` does), it makes one tiny pass over every
//! section as a smoke test. `CUTTLE_BENCH_PROFILE` runs one workload for a profiler (see
//! [`profile`]).
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
//! 2. a timed section that measures every `N` in interleaved rounds (so noise hits all sizes alike),
//!    in wall time and in this thread's CPU time, and reports medians and the 1M/1k ratio;
//! 3. memory: a counting global allocator measures the bytes allocated and still live after
//!    queueing `N` tasks, divided by `N` (the resident set size delta is printed beside it), with
//!    the allocation sizes that hold them, and the symbol table's share;
//! 4. snapshot and restore of each state, with a check that the restored state re-encodes to the
//!    same bytes.
//!
//! It ends with markdown tables of the results.

use criterion::{BenchmarkId, Criterion, Throughput};
use cuttle_raft::sched::{
    BypassRule, Command, Event, Input, Phase, Scheduler, SettingsPatch, StepSpec, TargetSpec, Task,
    TaskSpec, Unit, UnitId, PARALLELISM_DEFAULT,
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

/// Live bytes and live allocations by exact allocation size (the last slot gathers the sizes
/// from `SIZE_SLOTS - 1` up), to tell which records the bytes belong to.
const SIZE_SLOTS: usize = 4_097;
static LIVE_BYTES_BY_SIZE: [AtomicI64; SIZE_SLOTS] = [const { AtomicI64::new(0) }; SIZE_SLOTS];
static LIVE_COUNT_BY_SIZE: [AtomicI64; SIZE_SLOTS] = [const { AtomicI64::new(0) }; SIZE_SLOTS];

fn by_size(size: usize, sign: i64) {
    let slot = size.min(SIZE_SLOTS - 1);
    LIVE_BYTES_BY_SIZE[slot].fetch_add(sign * size as i64, Relaxed);
    LIVE_COUNT_BY_SIZE[slot].fetch_add(sign, Relaxed);
}

fn count_alloc(size: usize) {
    LIVE_BYTES.fetch_add(size as i64, Relaxed);
    ALLOCATED_BYTES.fetch_add(size as u64, Relaxed);
    ALLOCATIONS.fetch_add(1, Relaxed);
    by_size(size, 1);
}

fn count_dealloc(size: usize) {
    LIVE_BYTES.fetch_sub(size as i64, Relaxed);
    by_size(size, -1);
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
            count_dealloc(layout.size());
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() && COUNTING.load(Relaxed) {
            count_dealloc(layout.size());
            count_alloc(new_size);
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

/// Net live growth of one allocation size in a window.
#[derive(Clone, Copy, Debug)]
struct SizeShare {
    /// The size in bytes (`SIZE_SLOTS - 1` stands for that size and larger).
    size: usize,
    count: i64,
    bytes: i64,
}

struct Window {
    rss: i64,
}

impl Window {
    fn open() -> Window {
        LIVE_BYTES.store(0, Relaxed);
        ALLOCATED_BYTES.store(0, Relaxed);
        ALLOCATIONS.store(0, Relaxed);
        for slot in LIVE_BYTES_BY_SIZE.iter().chain(&LIVE_COUNT_BY_SIZE) {
            slot.store(0, Relaxed);
        }
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

/// The allocation sizes that grew most in live bytes in the last window, largest first.
fn top_sizes(count: usize) -> Vec<SizeShare> {
    let mut shares: Vec<SizeShare> = (0..SIZE_SLOTS)
        .map(|size| SizeShare {
            size,
            count: LIVE_COUNT_BY_SIZE[size].load(Relaxed),
            bytes: LIVE_BYTES_BY_SIZE[size].load(Relaxed),
        })
        .filter(|s| s.bytes > 0)
        .collect();
    shares.sort_by_key(|s| std::cmp::Reverse(s.bytes));
    shares.truncate(count);
    shares
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
// Clocks. The machine may be shared: besides wall time, the timed section reads the CPU time of
// its thread, which leaves out the time other processes had the core.

/// Time spent on a run of cycles.
#[derive(Clone, Copy, Debug, Default)]
struct Spent {
    wall: Duration,
    /// CPU time of this thread (equal to `wall` where it cannot be read).
    cpu: Duration,
}

/// CPU time consumed by this thread so far.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn thread_cpu_time() -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` (two 64-bit fields on 64-bit Linux) to a
    // valid pointer.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall time since the first call, where the thread's CPU time cannot be read.
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn thread_cpu_time() -> Duration {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed()
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
    /// The allocation sizes that grew most while queueing.
    fill_sizes: Vec<SizeShare>,
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
            fill_sizes: Vec::new(),
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
        w.fill_sizes = top_sizes(8);
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

    /// One cycle: submit a task, finish the oldest dispatched unit. Not inlined, so that
    /// `valgrind --tool=callgrind --toggle-collect='core::Workload::cycle'` counts exactly the
    /// applied commands.
    #[inline(never)]
    fn cycle(&mut self, submit: Command) {
        self.step(submit);
    }

    /// The commands of one cycle, inlined into [`Workload::cycle`] and [`Workload::warm_up`].
    #[inline(always)]
    fn step(&mut self, submit: Command) {
        self.apply(submit);
        let (unit, attempt) = self.dispatched.pop_front().expect("a unit is dispatched");
        self.apply(Command::UnitFinished {
            unit,
            attempt,
            exit_code: 0,
        });
    }

    /// Runs `cycles` cycles that a profiler toggled on [`Workload::cycle`] leaves out (the same
    /// commands through a different function), to reach a steady state before profiling.
    #[inline(never)]
    fn warm_up(&mut self, cycles: u64) {
        for _ in 0..cycles {
            let submit = self.next_submit();
            self.step(submit);
        }
    }

    /// Runs `cycles` cycles and returns the time spent applying them (building the submit
    /// commands is left out).
    #[inline(never)]
    fn run(&mut self, cycles: u64) -> Spent {
        let mut spent = Spent::default();
        let mut left = cycles;
        let mut commands = Vec::with_capacity(CHUNK);
        while left > 0 {
            let chunk = left.min(CHUNK as u64);
            commands.extend((0..chunk).map(|_| self.next_submit()));
            let cpu = thread_cpu_time();
            let start = Instant::now();
            for command in commands.drain(..) {
                self.cycle(command);
            }
            spent.wall += start.elapsed();
            spent.cpu += thread_cpu_time().saturating_sub(cpu);
            left -= chunk;
        }
        black_box(&self.sched);
        spent
    }

    /// Cancels every queued task and queues the same tasks again (same names, so no new symbol),
    /// returning what the allocator saw while they were queued again. Distinct tags only: there
    /// the queued tasks are exactly the last `queued` ones submitted.
    fn requeue(&mut self) -> Counts {
        assert_eq!(self.tags, Tags::Distinct);
        let queued: Vec<_> = self
            .sched
            .tasks()
            .filter(|t| t.phase == Phase::Queued)
            .map(|t| t.id)
            .collect();
        assert_eq!(queued.len() as u64, self.queued);
        for task in queued {
            self.apply(Command::CancelTask { task });
        }
        let first = self.next - self.queued;
        let window = Window::open();
        for seq in first..self.next {
            self.apply(Command::SubmitTask(task_spec(seq % self.pool, seq)));
        }
        let counts = window.close();
        self.check();
        counts
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
            group.bench_function(id, |b| b.iter_custom(|iters| w.run(iters).wall));
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
    /// Wall-clock ns per command, one per round.
    ns: Vec<f64>,
    /// On-CPU ns per command, one per round.
    cpu_ns: Vec<f64>,
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
            cpu_ns: Vec::new(),
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
            let commands = (2 * config.round_cycles) as f64;
            result.ns.push(spent.wall.as_nanos() as f64 / commands);
            result.cpu_ns.push(spent.cpu.as_nanos() as f64 / commands);
            w.check();
        }
        eprintln!(
            "round {}/{}: {}",
            round + 1,
            config.rounds,
            results
                .iter()
                .map(|r| format!(
                    "{} {}: {:.0} ns ({:.0} on-CPU)",
                    r.tags.slug(),
                    size_label(r.queued),
                    r.ns.last().unwrap(),
                    r.cpu_ns.last().unwrap()
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
    requeue: Option<(u64, Counts)>,
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
        "Wall: elapsed time. On-CPU: this thread's CPU time, which leaves out time other \
         processes had the core. Medians over the rounds; min–max of the wall figures.\n"
    );
    let _ = writeln!(
        out,
        "| queue | N queued | ns/command, wall | min–max | ns/command, on-CPU | commands/s, wall | commands/s, on-CPU | allocations/command | bytes allocated/command |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in cycles {
        let wall = median(&r.ns);
        let cpu = median(&r.cpu_ns);
        let commands = (2 * r.cycles_counted).max(1) as f64;
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0}–{:.0} | {:.0} | {} | {} | {:.1} | {:.0} |",
            r.tags.name(),
            size_label(r.queued),
            wall,
            min(&r.ns),
            max(&r.ns),
            cpu,
            thousands(1e9 / wall),
            thousands(1e9 / cpu),
            r.counts.allocations as f64 / commands,
            r.counts.allocated_bytes as f64 / commands,
        );
    }
    let _ = writeln!(out);
    for tags in [Tags::Distinct, Tags::Shared] {
        let of = |n: u64| cycles.iter().find(|r| r.tags == tags && r.queued == n);
        let sizes = || cycles.iter().filter(|r| r.tags == tags).map(|r| r.queued);
        let (Some(lo), Some(hi)) = (sizes().min().and_then(of), sizes().max().and_then(of)) else {
            continue;
        };
        if lo.queued == hi.queued {
            continue;
        }
        let paired =
            |h: &[f64], l: &[f64]| median(&h.iter().zip(l).map(|(h, l)| h / l).collect::<Vec<_>>());
        let _ = writeln!(
            out,
            "- {}: ns/command at {} / at {}: wall {:.2} (ratio of medians), {:.2} (median of \
             per-round ratios); on-CPU {:.2}, {:.2}. Goal: at most 2.00.",
            tags.name(),
            size_label(hi.queued),
            size_label(lo.queued),
            median(&hi.ns) / median(&lo.ns),
            paired(&hi.ns, &lo.ns),
            median(&hi.cpu_ns) / median(&lo.cpu_ns),
            paired(&hi.cpu_ns, &lo.cpu_ns),
        );
    }
    if let Some(r) = cycles
        .iter()
        .find(|r| r.tags == Tags::Distinct && r.queued == 100_000)
    {
        let _ = writeln!(
            out,
            "- Throughput with 100k queued (distinct tags): {} commands/s wall, {} on-CPU. \
             Goal: at least 500,000.",
            thousands(1e9 / median(&r.ns)),
            thousands(1e9 / median(&r.cpu_ns)),
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

    for tags in [Tags::Distinct, Tags::Shared] {
        let Some(w) = workloads
            .iter()
            .filter(|w| w.tags == tags)
            .max_by_key(|w| w.queued)
        else {
            continue;
        };
        let n = w.queued as f64;
        let sizes: Vec<String> = w
            .fill_sizes
            .iter()
            .map(|s| {
                format!(
                    "{}{} B × {:.2} = {:.0} B",
                    s.size,
                    if s.size == SIZE_SLOTS - 1 { "+" } else { "" },
                    s.count as f64 / n,
                    s.bytes as f64 / n
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "\n{}, {}: live bytes per queued task by allocation size (size × allocations per \
             task = bytes per task), largest first: {}.",
            tags.name(),
            size_label(w.queued),
            sizes.join("; ")
        );
    }
    if let Some((n, counts)) = requeue {
        let fill = workloads
            .iter()
            .find(|w| w.tags == Tags::Distinct && w.queued == n)
            .map(|w| w.fill.live_bytes as f64 / n as f64)
            .unwrap_or(f64::NAN);
        let again = counts.live_bytes as f64 / n as f64;
        let _ = writeln!(
            out,
            "\nDistinct tags, {}: the same tasks cancelled and queued again (their names already \
             interned) take {:.0} live bytes per queued task, so the symbol table's share of the \
             {:.0} above is {:.0} bytes (two new names per task: project and tag).",
            size_label(n),
            again,
            fill,
            fill - again
        );
    }

    let _ = writeln!(
        out,
        "\n### Snapshot and restore (goal 4)\n\nMedians of {} encodes and decodes; the first \
         decode is also shown, as it runs on memory the process has not used before, like a \
         node that restores at start-up.\n",
        config.snapshot_reps
    );
    let _ = writeln!(
        out,
        "| queue | N queued | snapshot bytes | bytes / queued task | encode ms | decode ms | encode + decode ms | first decode ms (cold heap) | re-encodes identically |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for s in snapshots {
        let encode = median(&s.encode_ms);
        let decode = median(&s.decode_ms);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            s.tags.name(),
            size_label(s.queued),
            thousands(s.bytes as f64),
            s.bytes as f64 / s.queued as f64,
            encode,
            decode,
            encode + decode,
            s.decode_ms[0],
            if s.identical { "yes" } else { "NO" },
        );
    }
    let _ = writeln!(
        out,
        "\nInline sizes of the public records (heap parts not included): Task {} B, Unit {} B, \
         Command {} B, Event {} B.",
        std::mem::size_of::<Task>(),
        std::mem::size_of::<Unit>(),
        std::mem::size_of::<Command>(),
        std::mem::size_of::<Event>(),
    );
    out
}

/// `CUTTLE_BENCH_PROFILE=distinct:100000:200000[:snapshot]` (shape, queued tasks, cycles): builds
/// one workload and runs only the cycle (then, with `:snapshot`, one snapshot and restore), for a
/// profiler (`perf record`, or `valgrind --tool=callgrind --toggle-collect='core::Workload::cycle'`).
/// `CUTTLE_BENCH_PROFILE_WARM=11000` first runs that many cycles outside `Workload::cycle`, so that
/// the profiled cycles see the steady state of the timed section (ended tasks forgotten, names
/// reused, pages recycled); the default is none.
fn profile(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let tags = match parts.first().copied() {
        Some("shared") => Tags::Shared,
        _ => Tags::Distinct,
    };
    let queued = parts.get(1).and_then(|p| p.parse().ok()).unwrap_or(100_000);
    let cycles = parts.get(2).and_then(|p| p.parse().ok()).unwrap_or(200_000);
    let mut w = Workload::build(tags, queued);
    let warm: u64 = std::env::var("CUTTLE_BENCH_PROFILE_WARM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    w.warm_up(warm);
    eprintln!(
        "built {} {}, warmed up over {warm} cycles; running {cycles} cycles",
        tags.slug(),
        size_label(queued)
    );
    let spent = w.run(cycles);
    w.check();
    eprintln!(
        "{:.0} ns/command",
        spent.wall.as_nanos() as f64 / (2 * cycles).max(1) as f64
    );
    if parts.get(3) == Some(&"snapshot") {
        let (bytes, encode) = timed(|| w.sched.snapshot().expect("snapshot encodes"));
        let (restored, decode) = timed(|| Scheduler::restore(&bytes).expect("snapshot decodes"));
        eprintln!(
            "snapshot {} bytes, encode {:.0} ms, decode {:.0} ms",
            bytes.len(),
            ms(encode),
            ms(decode)
        );
        drop(restored);
    }
}

#[inline(never)]
fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let start = Instant::now();
    let result = f();
    (result, start.elapsed())
}

fn main() {
    if let Ok(spec) = std::env::var("CUTTLE_BENCH_PROFILE") {
        profile(&spec);
        return;
    }
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
    // Last, as it changes the state: the share of the symbol table in the memory per queued task.
    let requeue = workloads
        .iter_mut()
        .filter(|w| w.tags == Tags::Distinct)
        .max_by_key(|w| w.queued)
        .map(|w| (w.queued, w.requeue()));
    println!(
        "{}",
        report(&config, &workloads, &cycles, &snapshots, requeue)
    );
}
