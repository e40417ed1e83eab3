//! The Jepsen-style harness: real `cuttle server` and `cuttle agent` processes, a concurrent
//! workload of deployments and lock users, faults injected from a seeded schedule, a recorded
//! history, and checkers that read only that history. `docs/chaos.md` tells how to run it.
//!
//! Functional core: [`history`] (what a run records), [`check`] (verdicts from a history),
//! [`schedule`] (the seeded fault plan), [`report`] (the HTML page). Imperative shell: [`net`]
//! (network namespaces and the links between them), [`proxy`] (cutting agents off without
//! namespaces), [`procs`] (the processes of a run),
//! [`workload`] (the clients), [`nemesis`] (carrying the plan out), [`run`] (one run end to end).

pub mod check;
pub mod collect;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod procs;
pub mod proxy;
pub mod report;
pub mod run;
pub mod schedule;
pub mod workload;
