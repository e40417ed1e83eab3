//! The scenario file: its TOML format, and its checking into a [`Scenario`] the simulator runs.
//!
//! # Format
//!
//! ```toml
//! task_cap = 4                          # optional: the cluster task cap (default 10; 0 pauses)
//!
//! [[targets]]                           # registered at time 0, in file order
//! name = "web01"
//! environments = ["Production"]
//! roles = ["web"]
//! tenants = ["tenant1", "tenant2"]      # optional: the tenants it serves (default none)
//! capacity = 10                         # optional: units it runs at once (default 10)
//!
//! [[tasks]]                             # deployments
//! project = "shop"
//! release = "1.2.0"                     # optional (default "1.0.0")
//! environment = "Production"            # or environments = [..]: one deployment each, in order
//! tenant = "tenant1"                    # optional; or tenants = [..]: one deployment each
//! at_ms = 0                             # optional: when it is submitted (default 0)
//! name = "shop-prod"                    # optional: how events refer to it (default
//!                                       # "[tenant/]project/environment"); one deployment only
//! variables = { OctopusBypassDeploymentMutex = "True" }   # optional: scheduling variables
//!
//! [[tasks.steps]]                       # the deployment process, run in order
//! name = "deploy"
//! roles = ["web"]
//! duration_ms = 1000                    # how long each unit of the step runs
//! package = "shop-web"                  # optional: acquire a package first, on each target
//! acquire_ms = 200                      # optional, with a package: how long acquiring takes
//! lock = { name = "iis", scope = "target", capacity = 1 }  # optional step lock; scope
//!                                       # "target" (default) or "cluster", capacity default 1
//! fail_on = ["web01"]                   # optional: the unit on these targets exits 1
//!
//! [[events]]                            # optional scripted events; each does one thing
//! at_ms = 1500
//! cancel = "shop-prod"                  # cancel a deployment, by name
//! # agent_lost = "web01"                # or: the agent of a target is lost
//! # task_cap = 2                        # or: change the task cap
//! ```
//!
//! Variables are the scheduling variables of [`cuttle_raft::sched::vars`], under their `Cuttle.`
//! names or their Octopus aliases; a dotted name may be written bare (`Cuttle.Task.HoldTargets =
//! true` in a `[tasks.variables]` table) or quoted. Values are strings, booleans or whole numbers.
//! Other variable names are refused: they would not change the simulation, so they are typos.
//!
//! Every problem is reported with the file, line and column it is at, and what would be valid.
//! The TOML is read strictly (unknown fields are refused; a syntax or type error stops the reading
//! there, so it is reported alone), then checked as a whole, every problem reported, with the
//! scheduling core's own validation run on every target and deployment, so that a scenario that
//! loads is one the core accepts.
//!
//! # Layout
//! This file holds the public types, [`load`] and [`parse`], and the placing of diagnostics in the
//! file; `raw` holds the TOML as written and its deserializers, `check` the whole-file checker,
//! and `task` the checking of one `[[tasks]]` entry.

mod check;
mod raw;
mod task;

use check::Checker;
use cuttle_raft::sched::{TargetSpec, TaskSpec};
use raw::RawScenario;
use std::ops::Range;
use std::path::Path;

/// Default agent capacity of a target in a scenario.
pub const TARGET_CAPACITY_DEFAULT: u32 = 10;
/// Default release of a deployment in a scenario.
pub const RELEASE_DEFAULT: &str = "1.0.0";

/// A checked scenario, ready to simulate. [`parse`] and [`load`] make one from TOML; a program (a
/// benchmark, say) may also build one by hand, and then learns what the core refuses from
/// [`SimError`](crate::simulate::SimError).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The cluster task cap at time 0; `None` keeps the core's default.
    pub task_cap: Option<u32>,
    /// Targets, registered at time 0 in this order (so target ids follow it).
    pub targets: Vec<TargetSpec>,
    /// Deployments, submitted at their `at_ms`; among equal times, in this order.
    pub deployments: Vec<Deployment>,
    /// Scripted events; among equal times, in this order.
    pub events: Vec<ScriptedEvent>,
}

/// One deployment: a task to submit, and how its units behave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// Its name in the scenario; events refer to it by this name.
    pub name: String,
    /// When it is submitted (virtual milliseconds from the start).
    pub at_ms: u64,
    /// The task submitted.
    pub spec: TaskSpec,
    /// How the units of each step behave, one entry per step of `spec.steps`.
    pub steps: Vec<StepBehaviour>,
}

/// How the units of one step behave in the simulation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepBehaviour {
    /// How long a run unit takes, from dispatch to its end.
    pub duration_ms: u64,
    /// How long an acquire unit takes (steps with a package).
    pub acquire_ms: u64,
    /// Targets on which the run unit exits with code 1.
    pub fail_on: Vec<String>,
}

/// Something that happens at a set time besides submissions and unit ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedEvent {
    /// When.
    pub at_ms: u64,
    /// What.
    pub action: Action,
}

/// What a scripted event does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A user cancels a deployment.
    Cancel {
        /// Its index in [`Scenario::deployments`].
        deployment: usize,
    },
    /// The agent of a target stops sending heartbeats.
    AgentLost {
        /// The target's name.
        target: String,
    },
    /// An operator changes the task cap.
    SetTaskCap {
        /// The new cap.
        task_cap: u32,
    },
}

/// One problem in a scenario file, at a place in it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct Diagnostic {
    /// The file, as named by the user.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, and what would be valid.
    pub message: String,
    /// The text of the line, for showing it.
    pub line_text: String,
    /// How many characters of the line the problem covers (at least 1).
    pub width: usize,
}

impl Diagnostic {
    /// The line with a caret under the problem, as two lines of text (the gutter included).
    pub fn snippet(&self) -> String {
        let number = self.line.to_string();
        let pad = " ".repeat(number.len());
        format!(
            "{pad} |\n{number} | {}\n{pad} | {}{}",
            self.line_text,
            " ".repeat(self.column.saturating_sub(1)),
            "^".repeat(self.width.max(1))
        )
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read scenario file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid scenario: every problem found, in file order.
    #[error("{}", display_all(.0))]
    Invalid(Vec<Diagnostic>),
}

fn display_all(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and checks a scenario file.
pub fn load(path: &Path) -> Result<Scenario, LoadError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&text, &shown)
}

/// Checks a scenario given as TOML text; `file` names it in diagnostics.
pub fn parse(text: &str, file: &str) -> Result<Scenario, LoadError> {
    let source = Source { file, text };
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        LoadError::Invalid(vec![source.diagnostic(span, e.message().trim_end())])
    })?;
    let mut checker = Checker {
        source,
        diagnostics: Vec::new(),
    };
    let scenario = checker.check(raw);
    let mut diagnostics = checker.diagnostics;
    if diagnostics.is_empty() {
        return Ok(scenario);
    }
    diagnostics.sort_by_key(|d| (d.line, d.column));
    diagnostics.dedup();
    Err(LoadError::Invalid(diagnostics))
}

type Span = Range<usize>;

struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn diagnostic(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        let text = self.text;
        let mut start = span.start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let mut end = span.end.clamp(start, line_end);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Diagnostic {
            file: self.file.to_string(),
            line: text[..start].matches('\n').count() + 1,
            column: text[line_start..start].chars().count() + 1,
            message: message.into(),
            line_text: text[line_start..line_end]
                .trim_end_matches('\r')
                .to_string(),
            width: text[start..end].chars().count().max(1),
        }
    }

    /// The span of the value written after a key (`key = value`), or the key's own span.
    fn value_after_key(&self, key: &Span) -> Span {
        let rest = &self.text[key.end.min(self.text.len())..];
        let trimmed = rest.trim_start_matches([' ', '\t']);
        let Some(after_eq) = trimmed.strip_prefix('=') else {
            return key.clone();
        };
        let value = after_eq.trim_start_matches([' ', '\t']);
        let start = self.text.len() - value.len();
        let len = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].find(q).map_or(value.len(), |i| i + 2),
            _ => value
                .find(|c: char| c.is_whitespace() || c == ',' || c == '}' || c == '#')
                .unwrap_or(value.len()),
        };
        if len == 0 {
            return key.clone();
        }
        start..start + len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse(text, "s.toml") {
            Ok(_) => Vec::new(),
            Err(LoadError::Invalid(d)) => d.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    const BASE: &str = "[[targets]]\nname = \"web01\"\nenvironments = [\"Production\"]\nroles = [\"web\"]\n\n[[tasks]]\nproject = \"p\"\nenvironment = \"Production\"\n";

    #[test]
    fn dotted_variable_names_bare_or_quoted() {
        let text = format!("{BASE}[tasks.variables]\nCuttle.Task.ConcurrencyTag = \"g\"\n\"Cuttle.BypassDeploymentMutex\" = true\n[[tasks.steps]]\nname = \"s\"\nroles = [\"web\"]\nduration_ms = 5\n");
        let scenario = parse(&text, "s.toml").unwrap();
        let spec = &scenario.deployments[0].spec;
        assert_eq!(spec.concurrency_tag.as_deref(), Some("g"));
        assert!(spec.bypass.default);
    }

    #[test]
    fn fan_out_over_environments_and_tenants() {
        let text = "[[tasks]]\nproject = \"p\"\nenvironments = [\"A\", \"B\"]\ntenants = [\"t1\", \"t2\"]\n[[tasks.steps]]\nname = \"s\"\nroles = [\"web\"]\nduration_ms = 5\n";
        let scenario = parse(text, "s.toml").unwrap();
        let names: Vec<&str> = scenario
            .deployments
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(names, ["t1/p/A", "t2/p/A", "t1/p/B", "t2/p/B"]);
    }

    #[test]
    fn core_rejections_point_at_the_field() {
        let text =
            format!("{BASE}[[tasks.steps]]\nname = \"s\"\nroles = [\"\"]\nduration_ms = 5\n");
        assert_eq!(
            errors(&text),
            ["s.toml:11:10: invalid tasks[0].steps[0].roles[0]: \"\" is empty; give a name"]
        );
    }

    #[test]
    fn events_are_checked() {
        let text = format!("{BASE}[[tasks.steps]]\nname = \"s\"\nroles = [\"web\"]\nduration_ms = 5\nfail_on = [\"web02\"]\n[[events]]\nat_ms = 3\ncancel = \"q/Production\"\n[[events]]\nat_ms = 3\n");
        assert_eq!(
            errors(&text),
            [
                "s.toml:13:12: fail_on names target \"web02\", which is not defined: the targets are web01",
                "s.toml:16:10: cancel names deployment \"q/Production\", which is not defined: the deployments are p/Production",
                "s.toml:17:1: an event does one thing: give exactly one of cancel = \"deployment name\", agent_lost = \"target name\" or task_cap = N",
            ]
        );
    }
}
