//! What an agent needs to run a task's units: each step's script, its acquisition script and
//! timeout, and the task's resolved variables (sensitive ones masked in the log).

use crate::sched::command::{Rejection, TaskSpec};
use serde::{Deserialize, Serialize};

/// Longest script of one step.
pub const SCRIPT_BYTES_MAX: usize = 256 * 1024;
/// Most variables of one task.
pub const VARIABLES_MAX: usize = 4_096;
/// Longest variable value.
pub const VARIABLE_VALUE_BYTES_MAX: usize = 64 * 1024;
/// Longest step timeout (a week).
pub const STEP_TIMEOUT_MS_MAX: u64 = 7 * 24 * 3_600_000;

/// The runnable part of a task, parallel to its [`TaskSpec`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPayload {
    /// One per step of the spec, in the same order.
    pub steps: Vec<StepPayload>,
    /// The task's variables, resolved for its environment and tenant.
    pub variables: Vec<Variable>,
}

/// One step's scripts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepPayload {
    /// Run on every target of the step, under the agent's shell.
    pub script: String,
    /// Run for the step's acquire unit (a packaged step); empty does nothing.
    pub acquire_script: String,
    /// Stop the script after this long; 0 for no limit.
    pub timeout_ms: u64,
}

/// A resolved variable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    /// Its name (`Cuttle.Action.MaxParallelism`, `DatabaseUrl`).
    pub name: String,
    /// Its value.
    pub value: String,
    /// Masked in task logs and never printed by the CLI.
    pub sensitive: bool,
}

impl TaskPayload {
    /// A payload whose steps run `script` each, without variables: for tests and tools.
    pub fn scripts<S: Into<String>>(scripts: impl IntoIterator<Item = S>) -> TaskPayload {
        TaskPayload {
            steps: scripts
                .into_iter()
                .map(|script| StepPayload {
                    script: script.into(),
                    ..StepPayload::default()
                })
                .collect(),
            variables: Vec::new(),
        }
    }

    /// Checks the payload against its spec and the limits; changes nothing.
    pub fn validate(&self, spec: &TaskSpec) -> Result<(), Rejection> {
        let invalid = |field: String, problem: String| Err(Rejection::Invalid { field, problem });
        if self.steps.len() != spec.steps.len() {
            return invalid(
                "payload.steps".into(),
                format!(
                    "has {} entries but the process has {} steps: give one script per step, in order",
                    self.steps.len(),
                    spec.steps.len()
                ),
            );
        }
        for (index, step) in self.steps.iter().enumerate() {
            for (what, script) in [
                ("script", &step.script),
                ("acquire_script", &step.acquire_script),
            ] {
                if script.len() > SCRIPT_BYTES_MAX {
                    return invalid(
                        format!("steps[{index}].{what}"),
                        format!(
                            "is {} bytes, more than the {SCRIPT_BYTES_MAX} allowed: ship a script file in a package and call it",
                            script.len()
                        ),
                    );
                }
            }
            if step.timeout_ms > STEP_TIMEOUT_MS_MAX {
                return invalid(
                    format!("steps[{index}].timeout_ms"),
                    format!(
                        "is {} ms; at most {STEP_TIMEOUT_MS_MAX} (a week), or 0 for none",
                        step.timeout_ms
                    ),
                );
            }
        }
        if self.variables.len() > VARIABLES_MAX {
            return invalid(
                "variables".into(),
                format!(
                    "has {} entries; at most {VARIABLES_MAX}",
                    self.variables.len()
                ),
            );
        }
        for (index, variable) in self.variables.iter().enumerate() {
            if variable.name.is_empty() || variable.name.len() > crate::sched::ids::NAME_BYTES_MAX {
                return invalid(
                    format!("variables[{index}].name"),
                    format!("must be 1 to {} bytes", crate::sched::ids::NAME_BYTES_MAX),
                );
            }
            if variable.value.len() > VARIABLE_VALUE_BYTES_MAX {
                return invalid(
                    format!("variables[{index}].value"),
                    format!(
                        "is {} bytes; at most {VARIABLE_VALUE_BYTES_MAX}",
                        variable.value.len()
                    ),
                );
            }
        }
        Ok(())
    }

    /// The values to mask in logs: sensitive, non-empty, longest first (so that a value containing
    /// another is masked whole).
    pub fn secrets(&self) -> Vec<&str> {
        let mut secrets: Vec<&str> = self
            .variables
            .iter()
            .filter(|v| v.sensitive && !v.value.is_empty())
            .map(|v| v.value.as_str())
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets
    }
}
