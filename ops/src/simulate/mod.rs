//! `cuttle simulate`: replays a scenario through the real scheduling core
//! ([`cuttle_raft::sched::Scheduler`]) with virtual time, and reports what ran when, what ran in
//! parallel, what waited and why.
//!
//! It is a small exact simulator of the scheduling rules: the decisions are the core's own, only
//! the agents are simulated (a unit takes its step's `duration_ms`, then reports its exit code).
//!
//! - [`scenario`]: the TOML scenario format, read and checked into a [`Scenario`];
//! - [`engine`]: the event loop, [`simulate`] (the order of simultaneous happenings is documented
//!   there);
//! - [`result`]: the [`SimResult`] and its JSON form;
//! - [`report`]: the human form.
//!
//! ```no_run
//! let scenario = cuttle::simulate::load("scenarios/seed-001-five-projects.toml".as_ref())?;
//! let result = cuttle::simulate::simulate(&scenario)?;
//! println!("makespan {} ms", result.makespan_ms);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod engine;
pub mod report;
pub mod result;
pub mod scenario;

pub use engine::{simulate, SimError, CANCELLED_EXIT_CODE};
pub use result::{
    ScriptedRecord, SimResult, TargetRecord, TaskRecord, TaskResult, UnitRecord, UnitResult,
    WaitRecord, FORMAT_VERSION,
};
pub use scenario::{
    load, parse, Action, Deployment, Diagnostic, LoadError, Scenario, ScriptedEvent, StepBehaviour,
};
