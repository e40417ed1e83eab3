//! Lifecycles, purely: given a project's lifecycle and the environments where a release already has
//! a successful deployment, which phase the release has reached, whether it may be deployed to an
//! environment, and where it goes next by itself.
//!
//! # Rules
//! - A phase is **complete** for a release when every environment of the phase has a successful
//!   deployment of it (a failed or running deployment does not count; a later failure does not
//!   undo an earlier success).
//! - The release has **reached** a phase when every phase before it is complete. It may be
//!   deployed (again) to any environment of a reached phase; an environment in a later phase is
//!   refused, and so is one that is in no phase of the lifecycle.
//! - A project without a lifecycle may deploy to any environment in any order.
//! - **Automatic promotion**: when a release is created and the first phase is `automatic`, it is
//!   deployed to every environment of that phase. When a success completes a phase and so makes the
//!   release reach the next one, and that phase is `automatic`, it is deployed to every environment
//!   of that phase where it has no success yet. Nothing else deploys by itself.

use crate::ledger::model::{Lifecycle, Model, Phase, Project};
use std::collections::BTreeSet;

/// Where a release stands in its lifecycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The index of the first phase that is not complete: it and every phase before it are
    /// reached. Equal to the number of phases when every phase is complete.
    pub reached: usize,
    /// The names of the complete phases, in order.
    pub complete: Vec<String>,
}

/// Why a deployment is refused by the lifecycle.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// The environment is in a phase the release has not reached.
    #[error("release {release} of {project} has not reached {environment}: deploy it to {} first (phase {phase})", missing.join(", "))]
    NotReached {
        /// The release.
        release: String,
        /// The project.
        project: String,
        /// The environment asked for.
        environment: String,
        /// The first phase that is not complete.
        phase: String,
        /// Its environments without a success.
        missing: Vec<String>,
    },
    /// The environment is in no phase of the project's lifecycle.
    #[error("environment {environment} is not in lifecycle {lifecycle} of project {project}: deploy to one of {}", environments.join(", "))]
    NotInLifecycle {
        /// The project.
        project: String,
        /// Its lifecycle.
        lifecycle: String,
        /// The environment asked for.
        environment: String,
        /// The lifecycle's environments, in phase order.
        environments: Vec<String>,
    },
}

/// Whether every environment of the phase has a success.
pub fn phase_complete(phase: &Phase, succeeded: &BTreeSet<String>) -> bool {
    phase.environments.iter().all(|e| succeeded.contains(e))
}

/// Where a release stands, given the environments where it has a success.
pub fn progress(lifecycle: &Lifecycle, succeeded: &BTreeSet<String>) -> Progress {
    let reached = lifecycle
        .phases
        .iter()
        .position(|p| !phase_complete(p, succeeded))
        .unwrap_or(lifecycle.phases.len());
    Progress {
        reached,
        complete: lifecycle.phases[..reached]
            .iter()
            .map(|p| p.name.clone())
            .collect(),
    }
}

/// Checks that `release` of `project` may be deployed to `environment`, given the environments
/// where it has a success. A project without a lifecycle (or whose lifecycle is not in the model)
/// may deploy anywhere.
pub fn check_deploy(
    model: &Model,
    project: &Project,
    release: &str,
    environment: &str,
    succeeded: &BTreeSet<String>,
) -> Result<(), LifecycleError> {
    let Some(lifecycle) = model.lifecycle_of(project) else {
        return Ok(());
    };
    let Some(index) = lifecycle
        .phases
        .iter()
        .position(|p| p.environments.iter().any(|e| e == environment))
    else {
        return Err(LifecycleError::NotInLifecycle {
            project: project.name.clone(),
            lifecycle: lifecycle.name.clone(),
            environment: environment.into(),
            environments: lifecycle
                .phases
                .iter()
                .flat_map(|p| p.environments.iter().cloned())
                .collect(),
        });
    };
    let reached = progress(lifecycle, succeeded).reached;
    if index <= reached {
        return Ok(());
    }
    let phase = &lifecycle.phases[reached];
    Err(LifecycleError::NotReached {
        release: release.into(),
        project: project.name.clone(),
        environment: environment.into(),
        phase: phase.name.clone(),
        missing: phase
            .environments
            .iter()
            .filter(|e| !succeeded.contains(*e))
            .cloned()
            .collect(),
    })
}

/// The environments a new release deploys to by itself: the first phase's, when it is automatic.
pub fn on_release_created(model: &Model, project: &Project) -> Vec<String> {
    match model.lifecycle_of(project).and_then(|l| l.phases.first()) {
        Some(first) if first.automatic => first.environments.clone(),
        _ => Vec::new(),
    }
}

/// The environments a release deploys to by itself after a success in `environment`, given the
/// environments where it had a success before: those of the phase the success makes it reach, when
/// that phase is automatic, less those where it already has a success.
pub fn after_success(
    model: &Model,
    project: &Project,
    succeeded_before: &BTreeSet<String>,
    environment: &str,
) -> Vec<String> {
    let Some(lifecycle) = model.lifecycle_of(project) else {
        return Vec::new();
    };
    let before = progress(lifecycle, succeeded_before).reached;
    let mut after_set = succeeded_before.clone();
    after_set.insert(environment.to_string());
    let after = progress(lifecycle, &after_set).reached;
    if after <= before {
        return Vec::new();
    }
    match lifecycle.phases.get(after) {
        Some(phase) if phase.automatic => phase
            .environments
            .iter()
            .filter(|e| !after_set.contains(*e))
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(envs: &[&str], automatic: bool) -> Phase {
        Phase {
            name: envs.join("+"),
            environments: envs.iter().map(|e| e.to_string()).collect(),
            automatic,
        }
    }

    #[test]
    fn a_phase_is_complete_when_every_environment_succeeded() {
        let p = phase(&["A", "B"], false);
        let mut done = BTreeSet::new();
        assert!(!phase_complete(&p, &done));
        done.insert("A".to_string());
        assert!(!phase_complete(&p, &done));
        done.insert("B".to_string());
        assert!(phase_complete(&p, &done));
    }

    #[test]
    fn progress_counts_complete_phases_in_order() {
        let l = Lifecycle {
            name: "l".into(),
            phases: vec![phase(&["A"], true), phase(&["B"], false)],
        };
        // A success in a later phase does not complete an earlier one.
        let only_b: BTreeSet<String> = ["B".to_string()].into();
        assert_eq!(progress(&l, &only_b).reached, 0);
        let both: BTreeSet<String> = ["A".to_string(), "B".to_string()].into();
        let p = progress(&l, &both);
        assert_eq!((p.reached, p.complete), (2, vec!["A".into(), "B".into()]));
    }
}
