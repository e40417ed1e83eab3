//! Targets and cluster settings: registration, removal, loss of an agent, run-time settings.

use crate::sched::command::{Event, Rejection, SettingsPatch, TargetSpec, LABELS_MAX};
use crate::sched::ids::{Sym, TargetId};
use crate::sched::lock::{LockKey, LockTable};
use crate::sched::state::{check_name, check_name_at, Owner, Scheduler, Target};

impl<L: LockTable> Scheduler<L> {
    pub(crate) fn upsert_target(
        &mut self,
        spec: TargetSpec,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        check_name("name", &spec.name)?;
        let lists = [
            ("environments", &spec.environments),
            ("roles", &spec.roles),
            ("tenants", &spec.tenants),
        ];
        let mut names = 1;
        for (field, list) in lists {
            if list.len() > LABELS_MAX {
                return Err(Rejection::Invalid {
                    field: field.into(),
                    problem: format!("{} entries; at most {LABELS_MAX}", list.len()),
                });
            }
            for (i, name) in list.iter().enumerate() {
                check_name_at(name, || format!("{field}[{i}]"))?;
            }
            names += list.len();
        }
        if spec.capacity == 0 {
            return Err(Rejection::Invalid {
                field: "capacity".into(),
                problem: "is 0; a target runs at least 1 unit at a time".into(),
            });
        }
        if !self.symbols.has_room(names) {
            return Err(Rejection::Invalid {
                field: "name".into(),
                problem: "the state holds the most distinct names it can".into(),
            });
        }
        let name = self.symbols.intern(&spec.name);
        let intern_all = |symbols: &mut crate::sched::ids::Symbols, list: &[String]| -> Vec<Sym> {
            let mut syms: Vec<Sym> = list.iter().map(|n| symbols.intern(n)).collect();
            syms.sort();
            syms.dedup();
            syms
        };
        let target = Target {
            name,
            environments: intern_all(&mut self.symbols, &spec.environments),
            roles: intern_all(&mut self.symbols, &spec.roles),
            tenants: intern_all(&mut self.symbols, &spec.tenants),
            capacity: spec.capacity,
            online: true,
        };
        let id = match self.target_by_name.get(&name) {
            Some(id) => {
                let id = *id;
                self.unindex_target(id);
                id
            }
            None => {
                let id = TargetId(self.next_target);
                self.next_target += 1;
                self.target_by_name.insert(name, id);
                id
            }
        };
        for env in &target.environments {
            for role in &target.roles {
                self.targets_by_env_role.insert((*env, *role, id));
            }
        }
        self.locks
            .set_capacity(LockKey::AgentCapacity(id), target.capacity);
        self.targets.insert(id, target);
        events.push(Event::TargetUpserted { target: id });
        Ok(())
    }

    fn unindex_target(&mut self, id: TargetId) {
        let old = &self.targets[&id];
        for env in &old.environments {
            for role in &old.roles {
                self.targets_by_env_role.remove(&(*env, *role, id));
            }
        }
    }

    fn known_target(&self, name: &str) -> Result<TargetId, Rejection> {
        self.target_id(name)
            .ok_or_else(|| Rejection::UnknownTarget(name.to_string()))
    }

    pub(crate) fn remove_target(
        &mut self,
        name: &str,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        let id = self.known_target(name)?;
        let units = self
            .target_units
            .range((id, crate::sched::ids::UnitId(0))..)
            .take_while(|(t, _)| *t == id)
            .count();
        // Whole-task holds that hold the target or wait in its queue use it too.
        let lock = LockKey::Target(id);
        let holds = self
            .locks
            .holders(lock)
            .into_iter()
            .chain(self.locks.queue(lock));
        let holds = holds
            .filter(|(r, _)| matches!(self.owners.get(r), Some(Owner::Task(_))))
            .count();
        if units + holds > 0 {
            return Err(Rejection::TargetBusy {
                name: name.to_string(),
                users: units + holds,
            });
        }
        self.unindex_target(id);
        let target = self.targets.remove(&id).expect("known target");
        self.target_by_name.remove(&target.name);
        events.push(Event::TargetRemoved { target: id });
        Ok(())
    }

    pub(crate) fn agent_lost(
        &mut self,
        name: &str,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        let id = self.known_target(name)?;
        let target = self.targets.get_mut(&id).expect("known target");
        if !target.online {
            return Ok(());
        }
        target.online = false;
        events.push(Event::TargetLost { target: id });
        let units: Vec<_> = self
            .target_units
            .range((id, crate::sched::ids::UnitId(0))..)
            .take_while(|(t, _)| *t == id)
            .map(|(_, u)| *u)
            .collect();
        for unit in units {
            self.unit_lost(unit, events);
        }
        Ok(())
    }

    pub(crate) fn set_settings(
        &mut self,
        patch: SettingsPatch,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        if patch.queued_tasks_max == Some(0) {
            return Err(Rejection::Invalid {
                field: "queued_tasks_max".into(),
                problem: "is 0; allow at least 1 queued task (use task_cap = 0 to pause admission)"
                    .into(),
            });
        }
        if let Some(cap) = patch.task_cap {
            self.settings.task_cap = cap;
            self.locks.set_capacity(LockKey::TaskCap, cap);
        }
        if let Some(max) = patch.queued_tasks_max {
            self.settings.queued_tasks_max = max;
        }
        if let Some(retained) = patch.ended_tasks_retained {
            self.settings.ended_tasks_retained = retained;
            self.forget_old_tasks();
        }
        events.push(Event::SettingsChanged);
        Ok(())
    }
}
