//! The special variables that steer scheduling, and their Octopus aliases, turned into the fields
//! of a [`TaskSpec`](crate::sched::command::TaskSpec). The shell resolves a project's variables for
//! the task's environment and tenant; values that remain scoped to a role or a target come here with
//! that scope, because they are decided per target when units are created.

use crate::sched::command::{BypassRule, PARALLELISM_DEFAULT};

/// Lets units share their target (shared isolation lock).
pub const BYPASS_DEPLOYMENT_MUTEX: &str = "Cuttle.BypassDeploymentMutex";
/// Units of one step of one task at once.
pub const ACTION_MAX_PARALLELISM: &str = "Cuttle.Action.MaxParallelism";
/// Package acquisitions of one step at once.
pub const ACQUIRE_MAX_PARALLELISM: &str = "Cuttle.Acquire.MaxParallelism";
/// Overrides the concurrency tag.
pub const TASK_CONCURRENCY_TAG: &str = "Cuttle.Task.ConcurrencyTag";
/// Holds every target from admission to the end.
pub const TASK_HOLD_TARGETS: &str = "Cuttle.Task.HoldTargets";

/// Every special variable's canonical name.
pub const NAMES: &[&str] = &[
    BYPASS_DEPLOYMENT_MUTEX,
    ACTION_MAX_PARALLELISM,
    ACQUIRE_MAX_PARALLELISM,
    TASK_CONCURRENCY_TAG,
    TASK_HOLD_TARGETS,
];

/// Octopus names accepted for the same variables.
pub const ALIASES: &[(&str, &str)] = &[
    ("OctopusBypassDeploymentMutex", BYPASS_DEPLOYMENT_MUTEX),
    ("Octopus.Action.MaxParallelism", ACTION_MAX_PARALLELISM),
    ("Octopus.Acquire.MaxParallelism", ACQUIRE_MAX_PARALLELISM),
    ("Octopus.Task.ConcurrencyTag", TASK_CONCURRENCY_TAG),
];

/// The canonical name of a variable (the `Cuttle.` name for an Octopus alias).
pub fn canonical(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map(|(_, c)| *c)
        .unwrap_or(name)
}

/// A resolved variable value, possibly still scoped to a role or a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopedValue {
    /// The variable's name (canonical or alias).
    pub name: String,
    /// Its value.
    pub value: String,
    /// The role it is scoped to.
    pub role: Option<String>,
    /// The target it is scoped to.
    pub target: Option<String>,
}

impl ScopedValue {
    /// An unscoped value.
    pub fn new(name: &str, value: &str) -> ScopedValue {
        ScopedValue {
            name: name.into(),
            value: value.into(),
            role: None,
            target: None,
        }
    }
}

/// The scheduling settings of one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskVariables {
    /// `Cuttle.Task.ConcurrencyTag`.
    pub concurrency_tag: Option<String>,
    /// `Cuttle.BypassDeploymentMutex` with its scopes.
    pub bypass: BypassRule,
    /// `Cuttle.Task.HoldTargets`.
    pub hold_targets: bool,
    /// `Cuttle.Action.MaxParallelism`.
    pub action_max_parallelism: u32,
    /// `Cuttle.Acquire.MaxParallelism`.
    pub acquire_max_parallelism: u32,
}

/// A special variable with a value it cannot take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("variable {name} = {value:?} is not valid: {expected}")]
pub struct VariableError {
    /// The variable as written.
    pub name: String,
    /// The value.
    pub value: String,
    /// What would be valid.
    pub expected: String,
}

fn parse_bool(v: &ScopedValue) -> Result<bool, VariableError> {
    match v.value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(VariableError {
            name: v.name.clone(),
            value: v.value.clone(),
            expected: "use True or False".into(),
        }),
    }
}

fn parse_limit(v: &ScopedValue) -> Result<u32, VariableError> {
    match v.value.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(VariableError {
            name: v.name.clone(),
            value: v.value.clone(),
            expected: format!("use a whole number from 1 to {}", u32::MAX),
        }),
    }
}

fn unscoped_only(v: &ScopedValue) -> Result<(), VariableError> {
    if v.role.is_some() || v.target.is_some() {
        return Err(VariableError {
            name: v.name.clone(),
            value: v.value.clone(),
            expected: "scope it to environments or tenants only: it applies to the whole task"
                .into(),
        });
    }
    Ok(())
}

/// Reads the special variables among `values`. Later values of the same name and scope win, and a
/// `Cuttle.` name wins over its alias.
pub fn task_variables(values: &[ScopedValue]) -> Result<TaskVariables, VariableError> {
    let mut out = TaskVariables {
        concurrency_tag: None,
        bypass: BypassRule::default(),
        hold_targets: false,
        action_max_parallelism: PARALLELISM_DEFAULT,
        acquire_max_parallelism: PARALLELISM_DEFAULT,
    };
    // Aliases first, so that canonical names overwrite them.
    let mut ordered: Vec<&ScopedValue> = values
        .iter()
        .filter(|v| canonical(&v.name) != v.name)
        .collect();
    ordered.extend(values.iter().filter(|v| canonical(&v.name) == v.name));
    for v in ordered {
        match canonical(&v.name) {
            BYPASS_DEPLOYMENT_MUTEX => {
                let value = parse_bool(v)?;
                match (&v.target, &v.role) {
                    (Some(t), _) => set_scoped(&mut out.bypass.targets, t, value),
                    (None, Some(r)) => set_scoped(&mut out.bypass.roles, r, value),
                    (None, None) => out.bypass.default = value,
                }
            }
            ACTION_MAX_PARALLELISM => {
                unscoped_only(v)?;
                out.action_max_parallelism = parse_limit(v)?;
            }
            ACQUIRE_MAX_PARALLELISM => {
                unscoped_only(v)?;
                out.acquire_max_parallelism = parse_limit(v)?;
            }
            TASK_CONCURRENCY_TAG => {
                unscoped_only(v)?;
                let tag = v.value.trim();
                out.concurrency_tag = (!tag.is_empty()).then(|| tag.to_string());
            }
            TASK_HOLD_TARGETS => {
                unscoped_only(v)?;
                out.hold_targets = parse_bool(v)?;
            }
            _ => {}
        }
    }
    Ok(out)
}

fn set_scoped(list: &mut Vec<(String, bool)>, key: &str, value: bool) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => list.push((key.to_string(), value)),
    }
}
