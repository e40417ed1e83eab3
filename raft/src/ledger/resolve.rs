//! Variable resolution for one deployment (project, environment, tenant) and the core's task of it:
//! the [`TaskSpec`] the scheduling core queues and the [`TaskPayload`] the agents run.
//!
//! # Which values apply
//! A value applies to a deployment when its scope's environments are empty or list the
//! deployment's environment, and its tenants are empty or list the deployment's tenant (a
//! tenant-scoped value never applies to an untenanted deployment). Roles and targets are decided
//! per target, later: special variables keep them (as [`ScopedValue`]s, one per role or per
//! target; a value scoped to targets counts as target-scoped even if it also names roles, as in the
//! core), and plain values scoped to roles or targets are set apart in [`Resolved::per_target`]
//! because a task's payload holds one value per name: they are resolved per unit, at dispatch,
//! with the same precedence (see [`super::target_vars`]).
//!
//! # Precedence
//! Among the values of one name that apply (for special variables: of one canonical name and one
//! role or target key), the winner is decided by, in order:
//! 1. specificity: the value scoped to more dimensions wins (each of environments, tenants, roles,
//!    targets counts once when non-empty, however many names it lists);
//! 2. at equal count, the dimensions themselves, ranked targets > roles > tenants > environments:
//!    the set of dimensions holding the highest-ranked dimension wins, then the next, so
//!    `{target}` beats `{role}`, `{role, environment}` beats `{tenant, environment}`, and
//!    `{target, environment}` beats `{role, tenant}`;
//! 3. the source: the project's own variable wins over a variable set's, and among sets the later
//!    one in the project's `variable_sets` list wins;
//! 4. a `Cuttle.` name wins over its Octopus alias (special variables);
//! 5. within one source, the later value in the file wins.
//!
//! Between different keys of a special variable (the default, a role, a target) the core decides
//! per target: a target-scoped value wins over role-scoped ones, which win over the default.

use crate::ledger::model::{Model, Project, VariableDef};
use crate::ledger::target_vars::{Rank, TargetValue, TargetVariables};
use crate::ledger::{StepPayload, TaskPayload, Variable};
use crate::sched::vars::{self, ScopedValue, VariableError};
use crate::sched::{Rejection, StepSpec, TaskSpec};
use std::collections::BTreeMap;

/// The variables of one deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The special variables (canonical names and aliases, as written), one winner per canonical
    /// name and role or target, ordered by canonical name, then default, roles, targets.
    pub special: Vec<ScopedValue>,
    /// Every value without a role or target scope that applies, one per name, by name: what the
    /// scripts see. Special variables are included.
    pub variables: Vec<Variable>,
    /// Plain (not special) values that apply to the environment and tenant but are scoped to roles
    /// or targets, with their ranks: resolved per unit when it is dispatched.
    pub per_target: TargetVariables,
}

/// Why a deployment's task could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No such project.
    #[error("unknown project {0:?}: apply a spec that defines it")]
    UnknownProject(String),
    /// No such environment.
    #[error("unknown environment {0:?}: apply a spec that defines it")]
    UnknownEnvironment(String),
    /// No such tenant.
    #[error("unknown tenant {0:?}: apply a spec that defines it")]
    UnknownTenant(String),
    /// A tenanted project deployed without a tenant.
    #[error("project {0} is tenanted: name the tenant to deploy to")]
    TenantRequired(String),
    /// An untenanted project deployed for a tenant.
    #[error("project {0} is not tenanted: deploy it without a tenant")]
    TenantNotAllowed(String),
    /// A special variable with a bad value.
    #[error(transparent)]
    Variable(#[from] VariableError),
    /// The core would refuse the task.
    #[error("the task would be refused: {0}")]
    Rejected(#[from] Rejection),
}

fn rank(def: &VariableDef, source: usize, position: usize) -> Rank {
    let s = &def.scope;
    let dims = [
        (!s.targets.is_empty(), 8u8),
        (!s.roles.is_empty(), 4),
        (!s.tenants.is_empty(), 2),
        (!s.environments.is_empty(), 1),
    ];
    let count = dims.iter().filter(|(on, _)| *on).count() as u32;
    let mask = dims.iter().filter(|(on, _)| *on).map(|(_, b)| b).sum();
    let canonical = vars::canonical(&def.name) == def.name;
    (count, mask, source as u64, canonical, position as u64)
}

fn applies(def: &VariableDef, environment: &str, tenant: Option<&str>) -> bool {
    let s = &def.scope;
    (s.environments.is_empty() || s.environments.iter().any(|e| e == environment))
        && (s.tenants.is_empty() || tenant.is_some_and(|t| s.tenants.iter().any(|x| x == t)))
}

/// The values that may apply to a project's deployments, each with its source index (sets in
/// list order, then the project) and its position in the source.
fn sources<'m>(model: &'m Model, project: &'m Project) -> Vec<(&'m VariableDef, usize, usize)> {
    let mut out = Vec::new();
    let sets = project
        .variable_sets
        .iter()
        .filter_map(|s| model.variable_set(s))
        .map(|s| &s.variables);
    for (source, list) in sets.chain([&project.variables]).enumerate() {
        out.extend(list.iter().enumerate().map(|(i, d)| (d, source, i)));
    }
    out
}

/// Resolves a project's variables for one environment and tenant (see the module doc for the
/// precedence). Names are not checked against the model here; [`task_spec`] does that.
pub fn resolve(
    model: &Model,
    project: &Project,
    environment: &str,
    tenant: Option<&str>,
) -> Resolved {
    // Special: key (canonical name, role, target) -> (rank, value).
    type Key = (String, Option<String>, Option<String>);
    let mut special: BTreeMap<Key, (Rank, ScopedValue)> = BTreeMap::new();
    let mut plain: BTreeMap<String, (Rank, Variable)> = BTreeMap::new();
    let mut per_target = TargetVariables::default();
    for (def, source, position) in sources(model, project) {
        if !applies(def, environment, tenant) {
            continue;
        }
        let r = rank(def, source, position);
        let canonical = vars::canonical(&def.name);
        let is_special = vars::NAMES.contains(&canonical);
        let s = &def.scope;
        if is_special {
            let keys: Vec<(Option<String>, Option<String>)> = if !s.targets.is_empty() {
                s.targets.iter().map(|t| (None, Some(t.clone()))).collect()
            } else if !s.roles.is_empty() {
                s.roles.iter().map(|r| (Some(r.clone()), None)).collect()
            } else {
                vec![(None, None)]
            };
            for (role, target) in keys {
                let value = ScopedValue {
                    name: def.name.clone(),
                    value: def.value.clone(),
                    role: role.clone(),
                    target: target.clone(),
                };
                let key = (canonical.to_string(), role, target);
                match special.get(&key) {
                    Some((old, _)) if *old > r => {}
                    _ => {
                        special.insert(key, (r, value));
                    }
                }
            }
        }
        if !s.roles.is_empty() || !s.targets.is_empty() {
            if !is_special {
                per_target.values.push(TargetValue {
                    variable: Variable {
                        name: def.name.clone(),
                        value: def.value.clone(),
                        sensitive: def.sensitive,
                    },
                    roles: s.roles.clone(),
                    targets: s.targets.clone(),
                    rank: r,
                });
            }
            continue;
        }
        let variable = Variable {
            name: def.name.clone(),
            value: def.value.clone(),
            sensitive: def.sensitive,
        };
        match plain.get(&def.name) {
            Some((old, _)) if *old > r => {}
            _ => {
                plain.insert(def.name.clone(), (r, variable));
            }
        }
    }
    for value in &per_target.values {
        if let Some((r, _)) = plain.get(&value.variable.name) {
            per_target
                .task_ranks
                .insert(value.variable.name.clone(), *r);
        }
    }
    let mut special: Vec<(Key, ScopedValue)> =
        special.into_iter().map(|(k, (_, v))| (k, v)).collect();
    // Default first, then roles, then targets, within each canonical name.
    special.sort_by(|(a, _), (b, _)| {
        let order = |k: &Key| {
            (
                k.0.clone(),
                k.2.is_some(),
                k.1.is_some(),
                k.1.clone(),
                k.2.clone(),
            )
        };
        order(a).cmp(&order(b))
    });
    Resolved {
        special: special.into_iter().map(|(_, v)| v).collect(),
        variables: plain.into_values().map(|(_, v)| v).collect(),
        per_target,
    }
}

/// Builds the core's task of one deployment of `release` of `project` to `environment` (and
/// `tenant`, for a tenanted project): the special variables steer the concurrency tag, the bypass
/// rule with its role and target scopes, the whole-task hold and the parallelism limits; the
/// payload carries each step's scripts and timeout and the resolved variables with their
/// sensitive flags. Both are checked as the core would check them. Lifecycle rules are
/// [`super::lifecycle`]'s business, not this function's.
pub fn task_spec(
    model: &Model,
    project: &str,
    release: &str,
    environment: &str,
    tenant: Option<&str>,
) -> Result<(TaskSpec, TaskPayload), ResolveError> {
    build(model, project, release, environment, tenant).map(|b| (b.spec, b.payload))
}

/// One deployment's task, built: what [`task_spec`] returns, and the variables resolved per target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    /// The core's task.
    pub spec: TaskSpec,
    /// Its scripts and the variables of the whole task.
    pub payload: TaskPayload,
    /// The values scoped to roles or targets, resolved per unit at dispatch.
    pub per_target: TargetVariables,
}

/// [`task_spec`], with the per-target variables.
pub fn build(
    model: &Model,
    project: &str,
    release: &str,
    environment: &str,
    tenant: Option<&str>,
) -> Result<Built, ResolveError> {
    let p = model
        .project(project)
        .ok_or_else(|| ResolveError::UnknownProject(project.into()))?;
    if model.environment(environment).is_none() {
        return Err(ResolveError::UnknownEnvironment(environment.into()));
    }
    match (p.tenanted, tenant) {
        (true, None) => return Err(ResolveError::TenantRequired(p.name.clone())),
        (false, Some(_)) => return Err(ResolveError::TenantNotAllowed(p.name.clone())),
        (true, Some(t)) if model.tenant(t).is_none() => {
            return Err(ResolveError::UnknownTenant(t.into()))
        }
        _ => {}
    }
    let resolved = resolve(model, p, environment, tenant);
    let special = vars::task_variables(&resolved.special)?;
    let spec = TaskSpec {
        project: p.name.clone(),
        release: release.into(),
        environment: environment.into(),
        tenant: tenant.map(String::from),
        concurrency_tag: special.concurrency_tag,
        bypass: special.bypass,
        hold_targets: special.hold_targets,
        acquire_max_parallelism: special.acquire_max_parallelism,
        steps: p
            .steps
            .iter()
            .map(|s| StepSpec {
                name: s.name.clone(),
                roles: s.roles.clone(),
                max_parallelism: special.action_max_parallelism,
                package: s.package.clone(),
                lock: s.lock.clone(),
            })
            .collect(),
    };
    let payload = TaskPayload {
        steps: p
            .steps
            .iter()
            .map(|s| StepPayload {
                script: s.script.clone(),
                acquire_script: s.acquire_script.clone(),
                timeout_ms: s.timeout_ms,
            })
            .collect(),
        variables: resolved.variables,
    };
    spec.validate()?;
    payload.validate(&spec)?;
    Ok(Built {
        spec,
        payload,
        per_target: resolved.per_target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::model::Scope;

    fn def(name: &str, scope: Scope) -> VariableDef {
        VariableDef {
            name: name.into(),
            value: String::new(),
            sensitive: false,
            scope,
        }
    }

    fn scope(dims: &str) -> Scope {
        let one = |c| {
            if dims.contains(c) {
                vec!["x".to_string()]
            } else {
                vec![]
            }
        };
        Scope {
            environments: one('e'),
            tenants: one('n'),
            roles: one('r'),
            targets: one('t'),
        }
    }

    #[test]
    fn ranks_follow_the_documented_order() {
        // Each entry outranks the one before it.
        let ladder = [
            "", "e", "n", "r", "t", "en", "er", "nr", "et", "rt", "enr", "nrt", "enrt",
        ];
        for pair in ladder.windows(2) {
            let low = rank(&def("X", scope(pair[0])), 9, 9);
            let high = rank(&def("X", scope(pair[1])), 0, 0);
            assert!(high > low, "{:?} should outrank {:?}", pair[1], pair[0]);
        }
        // Equal scopes: source first, then the Cuttle. name, then position.
        let s = Scope::default();
        let alias = def("OctopusBypassDeploymentMutex", s.clone());
        let canonical = def("Cuttle.BypassDeploymentMutex", s);
        assert!(rank(&alias, 1, 0) > rank(&canonical, 0, 5));
        assert!(rank(&canonical, 0, 0) > rank(&alias, 0, 5));
    }
}
