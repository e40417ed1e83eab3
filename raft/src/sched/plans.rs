//! Planning: which targets each step of a task runs on, fixed when the task is admitted (at
//! submission for a whole-task hold): the online targets of the task's environment that have one
//! of the step's roles and serve the task's tenant.

use crate::sched::command::TaskSpec;
use crate::sched::ids::{Sym, TargetId};
use crate::sched::lock::LockTable;
use crate::sched::state::{Scheduler, Task};

impl<L: LockTable> Scheduler<L> {
    /// Fills `plan` (reusing the vectors it holds) with the online targets of each step: in the
    /// task's environment, with one of the step's roles, and serving the task's tenant if it has
    /// one.
    pub(crate) fn plan_into(&self, task: &Task, plan: &mut Vec<Vec<TargetId>>) {
        let steps = &self.processes[&task.process].steps;
        let roles = steps.iter().map(|s| &s.roles[..]);
        self.plan_for_into(task.environment, Some(task.tenant), roles, plan);
    }

    /// The plan of a task before its names are interned: an unknown name matches no target.
    pub(crate) fn plan_spec(&self, spec: &TaskSpec) -> Vec<Vec<TargetId>> {
        let tenant = match &spec.tenant {
            None => Some(None),
            Some(name) => self.symbols.get(name).map(Some),
        };
        let roles: Vec<Vec<Sym>> = spec
            .steps
            .iter()
            .map(|s| s.roles.iter().filter_map(|r| self.symbols.get(r)).collect())
            .collect();
        match self.symbols.get(&spec.environment) {
            Some(environment) => self.plan_for(environment, tenant, roles.iter().map(|r| &r[..])),
            None => roles.iter().map(|_| Vec::new()).collect(),
        }
    }

    /// Online targets per step: in `environment`, with one of the step's roles, serving the tenant
    /// (`Some(None)`: untenanted, any target; `None`: an unknown tenant, no target).
    fn plan_for<'a>(
        &self,
        environment: Sym,
        tenant: Option<Option<Sym>>,
        roles: impl Iterator<Item = &'a [Sym]>,
    ) -> Vec<Vec<TargetId>> {
        let mut plan = Vec::new();
        self.plan_for_into(environment, tenant, roles, &mut plan);
        plan
    }

    /// [`Self::plan_for`] into `plan`, reusing the vectors it holds.
    fn plan_for_into<'a>(
        &self,
        environment: Sym,
        tenant: Option<Option<Sym>>,
        roles: impl Iterator<Item = &'a [Sym]>,
        plan: &mut Vec<Vec<TargetId>>,
    ) {
        let mut steps = 0;
        for step_roles in roles {
            if plan.len() == steps {
                plan.push(Vec::new());
            }
            let targets = &mut plan[steps];
            targets.clear();
            steps += 1;
            let Some(tenant) = tenant else {
                continue;
            };
            for role in step_roles {
                let from = (environment, *role, TargetId(0));
                targets.extend(
                    self.targets_by_env_role
                        .range(from..)
                        .take_while(|(e, r, _)| *e == environment && r == role)
                        .map(|(_, _, t)| *t)
                        .filter(|t| {
                            let target = &self.targets[t];
                            target.online
                                && tenant.is_none_or(|tn| target.tenants.binary_search(&tn).is_ok())
                        }),
                );
            }
            targets.sort();
            targets.dedup();
        }
        plan.truncate(steps);
    }
}
