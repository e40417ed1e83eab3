//! The cuttle command line's library: the commands' logic, apart from argument parsing and
//! printing, so that tests and benchmarks can call it.
//!
//! - [`simulate`]: `cuttle simulate`, a discrete-event simulator of a deployment scenario through
//!   the real scheduling core.
//! - [`server`]: `cuttle server`, a node of a cluster: its configuration from a file and flags.
//! - [`bench_deploy`]: `cuttle bench deploy`, target hand-off gaps and failover under load, with
//!   agents in the bench process ([`bench_agents`]).
//! - [`bench_rush`]: `cuttle bench rush`, seed 002's release rush against its ideal makespan.
//! - [`bench_scale`]: `cuttle bench scale`, a queue of 100,000 deployments over 1,000 targets.
//! - [`bench`]: `cuttle bench cluster`, commit throughput, latency and failover time of a real cluster.
//! - [`bench_locks`]: `cuttle bench locks`, lock hand-off beside etcd's v3 lock ([`bench_etcd`]).
//! - [`agent_cmd`]: `cuttle agent` (run one, list them) and the arguments of `cuttle lock run`.
//! - [`views`]: the human tables of `task list` and `locks`.
//! - [`task`]: `cuttle task` (submit from a file, list, show, logs, cancel).
//! - [`lock_run`]: `cuttle lock run`, a command run while holding a named lock of the cluster.
//! - [`cluster`]: `cuttle cluster`, the operator's commands (status, add, remove, transfer-leader).
//! - [`deploy`]: `cuttle release create|list` and `cuttle deploy`.
//! - [`follow`]: live progress of tasks (`deploy --follow`): a bar per step, waits, the log's tail.
//! - [`dev`]: `cuttle dev`, a local three-node cluster with agents and the seeds' demo.
//! - [`style`]: colour on a terminal, `NO_COLOR` honoured.
//! - [`spec`]: spec files (`cuttle apply`): the deployment model, its checking, variables and lifecycles.

pub mod agent_cmd;
pub mod bench;
pub mod bench_agents;
pub mod bench_all;
pub mod bench_deploy;
pub mod bench_etcd;
pub mod bench_light_agents;
pub mod bench_locks;
pub mod bench_locks_report;
pub mod bench_rush;
pub mod bench_scale;
pub mod cluster;
pub mod deploy;
pub mod dev;
pub mod follow;
pub mod lock_run;
pub mod server;
pub mod simulate;
pub mod spec;
pub mod style;
pub mod task;
pub mod views;

/// How a command prints what it read or created.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Aligned text for people (colour on a terminal unless `NO_COLOR` is set).
    Human,
    /// JSON with the stable field names of docs/cli.md (`simulate`: format_version, makespan_ms,
    /// all_succeeded, task_cap, peak_running_tasks, peak_active_tasks, tasks, units, targets,
    /// waits, events).
    Json,
}
