//! The validated deployment model a spec file describes: cluster settings, environments, tenants,
//! lifecycles, variable sets and projects with their steps. It is plain data, serde-encodable (it
//! is meant to be replicated through Raft), with a deterministic order: the named collections are
//! sorted by name; what the file orders on purpose (phases, steps, variables, a project's list of
//! variable sets) keeps the file's order, because that order has meaning.

use crate::sched::StepLockSpec;
use serde::{Deserialize, Serialize};

/// A whole spec, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// `[cluster]`.
    pub cluster: ClusterSettings,
    /// Environments, by name.
    pub environments: Vec<Environment>,
    /// Tenants, by name.
    pub tenants: Vec<Tenant>,
    /// Lifecycles, by name.
    pub lifecycles: Vec<Lifecycle>,
    /// Variable sets, by name.
    pub variable_sets: Vec<VariableSet>,
    /// Projects, by name.
    pub projects: Vec<Project>,
}

/// `[cluster]`: settings of the whole cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// The cluster task cap (0 pauses admission); `None` leaves the cluster's setting as it is.
    pub task_cap: Option<u32>,
}

/// `[[environments]]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Environment {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
}

/// `[[tenants]]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tenant {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
}

/// `[[lifecycles]]`: the order in which a release moves through environments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// Unique name.
    pub name: String,
    /// At least one phase, in order; an environment is in at most one phase.
    pub phases: Vec<Phase>,
}

/// One phase of a lifecycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    /// Unique in its lifecycle.
    pub name: String,
    /// At least one environment, as written.
    pub environments: Vec<String>,
    /// A release is deployed here by itself once the previous phase is complete (or, for the
    /// first phase, once the release is created).
    pub automatic: bool,
}

/// `[[variable_sets]]`: variables shared by the projects that list the set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableSet {
    /// Unique name.
    pub name: String,
    /// Its variables, in file order.
    pub variables: Vec<VariableDef>,
}

/// One value of a variable, with the scope it applies in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableDef {
    /// The variable's name (several values may share it, with different scopes).
    pub name: String,
    /// The value.
    pub value: String,
    /// Masked in task logs and never printed by the CLI.
    pub sensitive: bool,
    /// Where the value applies; empty applies everywhere.
    pub scope: Scope,
}

/// Where a value applies. Within one dimension the names are alternatives (any of them matches);
/// across dimensions all that are given must match. An empty dimension does not restrict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Environments (defined ones).
    pub environments: Vec<String>,
    /// Target roles (free-form).
    pub roles: Vec<String>,
    /// Tenants (defined ones).
    pub tenants: Vec<String>,
    /// Targets (free-form: targets register themselves).
    pub targets: Vec<String>,
}

impl Scope {
    /// Whether no dimension is restricted.
    pub fn is_empty(&self) -> bool {
        self.environments.is_empty()
            && self.roles.is_empty()
            && self.tenants.is_empty()
            && self.targets.is_empty()
    }
}

/// `[[projects]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Unique name.
    pub name: String,
    /// Its lifecycle; `None` lets a release deploy to any environment in any order.
    pub lifecycle: Option<String>,
    /// Deployed once per tenant (`true`) or once per environment (`false`).
    pub tenanted: bool,
    /// Variable sets it includes; a later set wins over an earlier one.
    pub variable_sets: Vec<String>,
    /// Its own variables, in file order.
    pub variables: Vec<VariableDef>,
    /// The deployment process, run in order (at least one step).
    pub steps: Vec<Step>,
}

/// `[[projects.steps]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Unique in its project.
    pub name: String,
    /// It runs on the deployment's targets with one of these roles.
    pub roles: Vec<String>,
    /// The script, run under the agent's shell.
    pub script: String,
    /// A package acquired first on each target.
    pub package: Option<String>,
    /// The script of the acquire unit.
    pub acquire_script: String,
    /// Stop the script after this long; 0 for no limit.
    pub timeout_ms: u64,
    /// A step lock each unit of the step takes.
    pub lock: Option<StepLockSpec>,
}

impl Model {
    /// The project of that name.
    pub fn project(&self, name: &str) -> Option<&Project> {
        find(&self.projects, name, |p| &p.name)
    }

    /// The lifecycle of that name.
    pub fn lifecycle(&self, name: &str) -> Option<&Lifecycle> {
        find(&self.lifecycles, name, |l| &l.name)
    }

    /// The variable set of that name.
    pub fn variable_set(&self, name: &str) -> Option<&VariableSet> {
        find(&self.variable_sets, name, |s| &s.name)
    }

    /// The environment of that name.
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        find(&self.environments, name, |e| &e.name)
    }

    /// The tenant of that name.
    pub fn tenant(&self, name: &str) -> Option<&Tenant> {
        find(&self.tenants, name, |t| &t.name)
    }

    /// The lifecycle of a project, if it has one.
    pub fn lifecycle_of(&self, project: &Project) -> Option<&Lifecycle> {
        project.lifecycle.as_deref().and_then(|l| self.lifecycle(l))
    }
}

fn find<'a, T>(items: &'a [T], name: &str, key: impl Fn(&T) -> &String) -> Option<&'a T> {
    items
        .binary_search_by(|item| key(item).as_str().cmp(name))
        .ok()
        .map(|i| &items[i])
}
