//! Spec files (`cuttle apply -f FILE`): the deployment model — cluster settings, environments,
//! tenants, lifecycles, variable sets, projects and their steps — read from TOML, checked as a
//! whole, and the pure functions that turn it into the scheduling core's tasks.
//!
//! # Format
//!
//! ```toml
//! [cluster]
//! task_cap = 10                      # optional: 0 to 4294967295 (absent: left as it is)
//!
//! [[environments]]
//! name = "QA"                        # description = "..." optional, on tenants too
//! [[tenants]]
//! name = "acme"
//!
//! [[lifecycles]]
//! name = "default"
//! phases = [{ name = "QA", environments = ["QA"], automatic = true },
//!           { name = "Production", environments = ["Production"] }]
//!
//! [[variable_sets]]
//! name = "concurrency"
//! [[variable_sets.variables]]
//! name = "Cuttle.BypassDeploymentMutex"
//! value = "true"
//! sensitive = false                  # optional
//! scope = { environments = ["QA"], roles = ["web"], tenants = ["acme"], targets = ["web01"] }
//!
//! [[projects]]
//! name = "web"
//! lifecycle = "default"              # optional: without one, any environment in any order
//! tenanted = false                   # optional (default false)
//! variable_sets = ["concurrency"]    # optional; a later set wins over an earlier one
//! [[projects.variables]]             # same fields as a set's variables
//! name = "Cuttle.Action.MaxParallelism"
//! value = "5"
//! [[projects.steps]]
//! name = "deploy"
//! roles = ["web"]
//! script = "echo deploying"
//! package = "web-app"                # optional, with acquire_script = "..."
//! timeout_ms = 600000                # optional (0: no limit)
//! lock = { name = "iis", scope = "target", capacity = 1 }   # optional; scope "target"
//!                                    # (default) or "cluster", capacity default 1
//! ```
//!
//! # Errors
//! Every problem is a [`Diagnostic`] printed as `FILE:LINE:COLUMN: FIELD: what is wrong and what
//! would be valid`, for instance `spec.toml:14:13: projects[0].lifecycle: unknown lifecycle
//! "defualt": define it under [[lifecycles]] or use one of: default`. The TOML is read strictly
//! first: a syntax error, an unknown field or a value of the wrong type stops the reading there and
//! is reported alone (by toml, at its position). Everything else (names, references, scopes,
//! special variables, limits) is checked as a whole and every problem is reported, in file order.
//!
//! A project that is not tenanted may not scope its own variables to tenants (they would never
//! apply: the file is refused). A variable set is shared by tenanted and untenanted projects, so its
//! tenant-scoped values are accepted and simply never apply to an untenanted project's deployments.
//!
//! # Layout
//! - `raw`: the TOML as written. `check`: the whole-file checker.
//! - [`model`]: the checked [`Model`].
//! - [`resolve`](mod@resolve): variable precedence and the core's [`TaskSpec`](cuttle_raft::sched::TaskSpec)
//!   and [`TaskPayload`](cuttle_raft::ledger::TaskPayload) of one deployment.
//! - [`lifecycle`]: which environments a release may reach, and automatic promotion.

mod check;
pub use cuttle_raft::ledger::lifecycle;
pub use cuttle_raft::ledger::model;
mod path;
mod raw;
pub use cuttle_raft::ledger::resolve;

pub use lifecycle::{LifecycleError, Progress};
pub use model::{
    ClusterSettings, Environment, Lifecycle, Model, Phase, Project, Scope, Step, Tenant,
    VariableDef, VariableSet,
};
pub use resolve::{resolve, task_spec, ResolveError, Resolved};

use std::ops::Range;
use std::path::Path;

/// One problem in a spec file, at a place in it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {}{message}", field_prefix(.field))]
pub struct Diagnostic {
    /// The file, as named by the user.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The field's path (`projects[0].steps[1].roles`); empty when it cannot be told.
    pub field: String,
    /// What is wrong, and what would be valid.
    pub message: String,
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

/// Why a spec could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read spec file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid spec: every problem found, in file order, one per line.
    #[error("{}", display_all(.0))]
    Invalid(Vec<Diagnostic>),
}

impl SpecError {
    /// The diagnostics (none for a read error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            SpecError::Invalid(d) => d,
            SpecError::Read { .. } => &[],
        }
    }
}

fn display_all(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and checks a spec file. The only function of the module that does I/O.
pub fn load(path: &Path) -> Result<Model, SpecError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&text, &shown)
}

/// Checks a spec given as TOML text; `file_name` names it in diagnostics.
pub fn parse(text: &str, file_name: &str) -> Result<Model, SpecError> {
    let source = Source {
        file: file_name,
        text,
    };
    let raw: raw::RawSpec = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let field = path::field_at(text, &span);
        SpecError::Invalid(vec![source.diagnostic(
            span,
            field,
            e.message().trim_end().to_string(),
        )])
    })?;
    let mut checker = check::Checker::new(source);
    let model = checker.check(raw);
    let mut diagnostics = checker.diagnostics;
    if diagnostics.is_empty() {
        return Ok(model);
    }
    diagnostics.sort_by_key(|d| (d.line, d.column));
    diagnostics.dedup();
    Err(SpecError::Invalid(diagnostics))
}

pub(crate) type Span = Range<usize>;

/// The text being checked, to turn byte spans into lines and columns.
pub(crate) struct Source<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    pub(crate) fn diagnostic(&self, span: Span, field: String, message: String) -> Diagnostic {
        let text = self.text;
        let mut start = span.start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        Diagnostic {
            file: self.file.to_string(),
            line: text[..start].matches('\n').count() + 1,
            column: text[line_start..start].chars().count() + 1,
            field,
            message,
        }
    }
}

/// How many of each thing a model holds, for `cuttle apply`'s summary.
pub fn summary(model: &Model) -> std::collections::BTreeMap<&'static str, usize> {
    [
        ("environments", model.environments.len()),
        ("tenants", model.tenants.len()),
        ("lifecycles", model.lifecycles.len()),
        ("variable sets", model.variable_sets.len()),
        ("projects", model.projects.len()),
    ]
    .into_iter()
    .collect()
}

/// Applies a checked model to the cluster in one replicated step; returns whether it changed
/// anything (the same model applied again changes nothing).
pub async fn apply(client: &cuttle_node::client::Client, model: Model) -> anyhow::Result<bool> {
    use anyhow::Context as _;
    let current: Model = serde_json::from_value(
        client
            .read("spec")
            .await
            .context("cannot read the applied spec")?,
    )
    .context("the cluster's spec does not decode")?;
    if current == model {
        return Ok(false);
    }
    let (result, _) = client
        .write(cuttle_raft::ledger::Request::ApplySpec(model))
        .await
        .context("cannot apply the spec")?;
    result.context("the cluster refused the spec")?;
    Ok(true)
}
