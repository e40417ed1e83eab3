//! Validation of task specs before anything changes: names, limits, step locks, and the default
//! concurrency tag. A submission either passes every check here or changes nothing.

use crate::sched::command::{Rejection, StepSpec, TaskSpec, LABELS_MAX, STEPS_PER_TASK_MAX};
use crate::sched::lock::LockTable;
use crate::sched::state::{check_name, check_name_at, Scheduler};

pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Rejection {
    Rejection::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Checks everything in a task spec that does not need the state; returns how many names it holds.
pub(crate) fn validate_spec(spec: &TaskSpec) -> Result<usize, Rejection> {
    check_name("project", &spec.project)?;
    check_name("release", &spec.release)?;
    check_name("environment", &spec.environment)?;
    if let Some(tenant) = &spec.tenant {
        check_name("tenant", tenant)?;
    }
    if let Some(tag) = &spec.concurrency_tag {
        check_name("concurrency_tag", tag)?;
    }
    if spec.acquire_max_parallelism == 0 {
        return Err(invalid(
            "acquire_max_parallelism",
            "is 0; allow at least 1 acquisition at a time",
        ));
    }
    if spec.steps.is_empty() || spec.steps.len() > STEPS_PER_TASK_MAX {
        return Err(invalid(
            "steps",
            format!(
                "has {} steps; a process has 1 to {STEPS_PER_TASK_MAX} steps",
                spec.steps.len()
            ),
        ));
    }
    let mut names = 5 + spec.bypass.roles.len() + spec.bypass.targets.len();
    for (i, (role, _)) in spec.bypass.roles.iter().enumerate() {
        check_name_at(role, || format!("bypass.roles[{i}]"))?;
    }
    for (i, (target, _)) in spec.bypass.targets.iter().enumerate() {
        check_name_at(target, || format!("bypass.targets[{i}]"))?;
    }
    for (i, step) in spec.steps.iter().enumerate() {
        names += validate_step(i, step)?;
        if spec.steps[..i].iter().any(|s| s.name == step.name) {
            return Err(invalid(
                format!("steps[{i}].name"),
                format!("{:?} names two steps; step names are unique", step.name),
            ));
        }
        let Some(lock) = &step.lock else { continue };
        let earlier = spec.steps[..i]
            .iter()
            .filter_map(|s| s.lock.as_ref())
            .find(|l| l.name == lock.name);
        if let Some(earlier) = earlier.filter(|l| l.capacity != lock.capacity) {
            return Err(invalid(
                format!("steps[{i}].lock.capacity"),
                format!(
                    "is {} but an earlier step declares lock {:?} with capacity {}; use one capacity per lock",
                    lock.capacity, lock.name, earlier.capacity
                ),
            ));
        }
    }
    Ok(names)
}

/// `project/environment`, or `tenant/project/environment`. A `/` or `\` inside a name is escaped
/// with `\`, so that no two different deployments share a default tag.
pub fn default_tag(spec: &TaskSpec) -> String {
    default_tag_of(spec.tenant.as_deref(), &spec.project, &spec.environment)
}

/// [`default_tag`] of a tenant, project and environment.
pub(crate) fn default_tag_of(tenant: Option<&str>, project: &str, environment: &str) -> String {
    let parts = [tenant, Some(project), Some(environment)];
    let parts = parts.iter().flatten();
    let escaped = |c: u8| c == b'/' || c == b'\\';
    let escapes: usize = parts
        .clone()
        .map(|p| p.bytes().filter(|c| escaped(*c)).count())
        .sum();
    let len = parts.clone().map(|p| p.len() + 1).sum::<usize>() - 1 + escapes;
    // Exactly the length, so that the string becomes a symbol without reallocating.
    let mut tag = String::with_capacity(len);
    for (i, part) in parts.enumerate() {
        if i > 0 {
            tag.push('/');
        }
        if escapes == 0 {
            tag.push_str(part);
            continue;
        }
        for c in part.chars() {
            if c == '/' || c == '\\' {
                tag.push('\\');
            }
            tag.push(c);
        }
    }
    debug_assert_eq!(tag.len(), len);
    tag
}

fn validate_step(i: usize, step: &StepSpec) -> Result<usize, Rejection> {
    check_name_at(&step.name, || format!("steps[{i}].name"))?;
    if step.roles.is_empty() || step.roles.len() > LABELS_MAX {
        return Err(invalid(
            format!("steps[{i}].roles"),
            format!("has {} roles; give 1 to {LABELS_MAX}", step.roles.len()),
        ));
    }
    for (j, role) in step.roles.iter().enumerate() {
        check_name_at(role, || format!("steps[{i}].roles[{j}]"))?;
    }
    if step.max_parallelism == 0 {
        return Err(invalid(
            format!("steps[{i}].max_parallelism"),
            "is 0; allow at least 1 unit at a time",
        ));
    }
    if let Some(package) = &step.package {
        check_name_at(package, || format!("steps[{i}].package"))?;
    }
    let mut names = 1 + step.roles.len();
    if let Some(lock) = &step.lock {
        check_name_at(&lock.name, || format!("steps[{i}].lock.name"))?;
        if lock.capacity == 0 {
            return Err(invalid(
                format!("steps[{i}].lock.capacity"),
                "is 0; a lock admits at least 1 holder",
            ));
        }
        names += 1;
    }
    Ok(names)
}

impl<L: LockTable> Scheduler<L> {
    /// A lock name has one capacity while anyone uses it: a task from submission to its end, a client
    /// from its request to its release.
    pub(crate) fn check_step_lock_capacities(&self, spec: &TaskSpec) -> Result<(), Rejection> {
        for step in &spec.steps {
            let Some(lock) = &step.lock else { continue };
            self.check_lock_capacity(&lock.name, lock.capacity)?;
        }
        Ok(())
    }

    pub(crate) fn check_lock_capacity(&self, name: &str, capacity: u32) -> Result<(), Rejection> {
        let existing = self
            .symbols
            .get(name)
            .and_then(|s| self.named_locks.get(&s));
        match existing {
            Some(used) if used.capacity != capacity => Err(Rejection::LockCapacityMismatch {
                name: name.to_string(),
                existing: used.capacity,
                requested: capacity,
            }),
            _ => Ok(()),
        }
    }
}
