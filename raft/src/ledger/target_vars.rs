//! Variables whose value depends on the target a unit runs on: plain values scoped to roles or
//! targets. A deployment's payload holds one value per name for the whole task; these are kept
//! beside it, with their precedence, and resolved for each unit when it is dispatched.

use crate::ledger::payload::Variable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How strongly a value claims its name (see [`super::resolve`]'s precedence); the greatest wins.
/// Fixed-width integers so that it encodes the same on every platform.
pub type Rank = (u32, u8, u64, bool, u64);

/// One value scoped to roles or targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetValue {
    /// The value, as a script would see it.
    pub variable: Variable,
    /// It applies to targets with any of these roles (empty: no restriction by role).
    pub roles: Vec<String>,
    /// It applies to these targets (empty: no restriction by name).
    pub targets: Vec<String>,
    /// Its precedence.
    pub rank: Rank,
}

/// The per-target part of one deployment's variables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetVariables {
    /// The role- or target-scoped values that apply to the deployment's environment and tenant.
    pub values: Vec<TargetValue>,
    /// For each name in `values` that also has a value for the whole task, that value's rank:
    /// a scoped value replaces it only when it ranks higher.
    pub task_ranks: BTreeMap<String, Rank>,
}

impl TargetVariables {
    /// Whether nothing depends on the target.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The variables a unit on `target`, with `roles`, sees: the task's, with each name replaced
    /// by the highest-ranked scoped value that matches the target, when it outranks the task's.
    /// Sorted by name, like the task's.
    pub fn for_target(&self, task: &[Variable], target: &str, roles: &[&str]) -> Vec<Variable> {
        let mut best: BTreeMap<&str, &TargetValue> = BTreeMap::new();
        for value in &self.values {
            let role_ok =
                value.roles.is_empty() || value.roles.iter().any(|r| roles.contains(&r.as_str()));
            let target_ok = value.targets.is_empty() || value.targets.iter().any(|t| t == target);
            if !(role_ok && target_ok) {
                continue;
            }
            let name = value.variable.name.as_str();
            if self.task_ranks.get(name).is_some_and(|r| *r > value.rank) {
                continue;
            }
            match best.get(name) {
                Some(old) if old.rank > value.rank => {}
                _ => {
                    best.insert(name, value);
                }
            }
        }
        let mut out: BTreeMap<&str, Variable> =
            task.iter().map(|v| (v.name.as_str(), v.clone())).collect();
        for (name, value) in best {
            out.insert(name, value.variable.clone());
        }
        out.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str, value: &str) -> Variable {
        Variable {
            name: name.into(),
            value: value.into(),
            sensitive: false,
        }
    }

    fn scoped(
        name: &str,
        value: &str,
        roles: &[&str],
        targets: &[&str],
        rank: Rank,
    ) -> TargetValue {
        TargetValue {
            variable: var(name, value),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
            rank,
        }
    }

    #[test]
    fn the_highest_ranked_matching_value_wins_per_target() {
        let vars = TargetVariables {
            values: vec![
                scoped("Port", "80", &["web"], &[], (1, 4, 0, false, 0)),
                scoped("Port", "8080", &[], &["web-2"], (1, 8, 0, false, 1)),
                scoped("Pool", "db", &["db"], &[], (1, 4, 0, false, 2)),
            ],
            task_ranks: [("Port".to_string(), (0, 0, 0, false, 0))].into(),
        };
        let task = [var("Port", "1"), var("Site", "s")];
        assert_eq!(
            vars.for_target(&task, "web-1", &["web"]),
            vec![var("Port", "80"), var("Site", "s")]
        );
        assert_eq!(
            vars.for_target(&task, "web-2", &["web"]),
            vec![var("Port", "8080"), var("Site", "s")]
        );
        assert_eq!(
            vars.for_target(&task, "db-1", &["db"]),
            vec![var("Pool", "db"), var("Port", "1"), var("Site", "s")]
        );
    }

    #[test]
    fn a_more_specific_task_value_beats_a_role_value() {
        // An environment+tenant value outranks a role-only one.
        let vars = TargetVariables {
            values: vec![scoped("Port", "80", &["web"], &[], (1, 4, 0, false, 0))],
            task_ranks: [("Port".to_string(), (2, 3, 0, false, 0))].into(),
        };
        let task = [var("Port", "1")];
        assert_eq!(
            vars.for_target(&task, "web-1", &["web"]),
            vec![var("Port", "1")]
        );
    }
}
