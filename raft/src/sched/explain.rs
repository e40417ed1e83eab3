//! Why something waits: for a queued task or a waiting unit, the lock or cap it waits for, who holds
//! it, who waits ahead of it, and its place in the queue, as data ([`Wait`]) and as a sentence
//! ([`Scheduler::describe`]).

use crate::sched::command::UnitKind;
use crate::sched::ids::{ReqId, TaskId, UnitId};
use crate::sched::lock::{LockKey, LockTable, Mode};
use crate::sched::state::{Owner, Phase, Scheduler, UnitState};

/// A request that holds a lock or waits for it, seen from a waiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Its lock request.
    pub request: ReqId,
    /// Its task (a task's admission, or the task of a unit).
    pub task: Option<TaskId>,
    /// Its unit.
    pub unit: Option<UnitId>,
    /// Its client (named locks).
    pub client: Option<String>,
    /// How it holds or wants the lock.
    pub mode: Mode,
}

/// Why a task or unit waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    /// The lock it waits for.
    pub lock: LockKey,
    /// How it wants it.
    pub mode: Mode,
    /// The lock's capacity.
    pub capacity: u32,
    /// Who holds it now.
    pub holders: Vec<Holder>,
    /// Who waits ahead of it in the lock's queue.
    pub ahead: Vec<Holder>,
    /// True when the holders alone keep it waiting; false when the holders would leave room for it
    /// and it waits because requests ahead of it come first.
    pub blocked_by_holders: bool,
    /// 1-based place in the lock's queue.
    pub position: usize,
    /// Requests in the lock's queue.
    pub queue_len: usize,
}

impl<L: LockTable> Scheduler<L> {
    /// Why a queued task waits; `None` when it does not wait.
    pub fn explain_task(&self, id: TaskId) -> Option<Wait> {
        let task = self.tasks.get(&id)?;
        if task.phase != Phase::Queued {
            return None;
        }
        self.explain_request(task.request)
    }

    /// Why a unit waits; `None` when it does not wait.
    pub fn explain_unit(&self, id: UnitId) -> Option<Wait> {
        let unit = self.units.get(&id)?;
        if unit.state != UnitState::Waiting {
            return None;
        }
        self.explain_request(unit.request)
    }

    fn party(&self, request: ReqId, mode: Mode) -> Holder {
        let (task, unit, client) = match self.owners.get(&request) {
            Some(Owner::Task(t)) => (Some(*t), None, None),
            Some(Owner::Unit(u)) => (self.units.get(u).map(|u| u.task), Some(*u), None),
            Some(Owner::Client) => (
                None,
                None,
                self.client_locks
                    .get(&request)
                    .map(|c| c.holder.to_string()),
            ),
            None => (None, None, None),
        };
        Holder {
            request,
            task,
            unit,
            client,
            mode,
        }
    }

    /// Why a lock request waits.
    pub fn explain_request(&self, request: ReqId) -> Option<Wait> {
        let stuck = self.locks.stuck(request)?;
        let capacity = self.locks.capacity(stuck.lock).unwrap_or(0);
        let holders: Vec<Holder> = self
            .locks
            .holders(stuck.lock)
            .into_iter()
            .map(|(r, m)| self.party(r, m))
            .collect();
        let ahead: Vec<Holder> = self
            .locks
            .queue(stuck.lock)
            .into_iter()
            .take_while(|(r, _)| *r < request)
            .map(|(r, m)| self.party(r, m))
            .collect();
        let held_weight: u64 = holders
            .iter()
            .map(|h| match h.mode {
                Mode::Exclusive => u64::MAX / 2,
                Mode::Shared(w) => u64::from(w),
            })
            .sum();
        let blocked_by_holders = match stuck.mode {
            Mode::Exclusive => !holders.is_empty(),
            Mode::Shared(w) => held_weight + u64::from(w) > u64::from(capacity),
        };
        Some(Wait {
            lock: stuck.lock,
            mode: stuck.mode,
            capacity,
            holders,
            ahead,
            blocked_by_holders,
            position: stuck.position,
            queue_len: stuck.queue_len,
        })
    }

    /// A lock's holders and its queue (in grant order), each with its task, unit or client.
    pub fn lock_parties(&self, lock: LockKey) -> (Vec<Holder>, Vec<Holder>) {
        let holders = self
            .locks
            .holders(lock)
            .into_iter()
            .map(|(r, m)| self.party(r, m))
            .collect();
        let queue = self
            .locks
            .queue(lock)
            .into_iter()
            .map(|(r, m)| self.party(r, m))
            .collect();
        (holders, queue)
    }

    /// The name of a lock in words: `target web01`, `concurrency tag web/QA`, ...
    pub fn lock_name(&self, lock: LockKey) -> String {
        let target_name = |t| {
            self.targets
                .get(&t)
                .map(|t| self.symbols.name(t.name))
                .unwrap_or("(removed)")
                .to_string()
        };
        match lock {
            LockKey::Tag(tag) => format!("concurrency tag {}", self.symbols.name(tag)),
            LockKey::TaskCap => format!("a slot under the task cap of {}", self.settings.task_cap),
            LockKey::Target(t) => format!("target {}", target_name(t)),
            LockKey::Parallelism(task, stage) => self.parallelism_name(task, stage),
            LockKey::Named(name, None) => format!("lock {}", self.symbols.name(name)),
            LockKey::Named(name, Some(t)) => format!(
                "lock {} on target {}",
                self.symbols.name(name),
                target_name(t)
            ),
            LockKey::AgentCapacity(t) => format!("a free slot on agent {}", target_name(t)),
        }
    }

    fn parallelism_name(&self, task: TaskId, stage: u16) -> String {
        let capacity = self
            .locks
            .capacity(LockKey::Parallelism(task, stage))
            .unwrap_or(0);
        let step = self.tasks.get(&task).and_then(|t| {
            let (step, kind) = self.stage_of(t.process, stage)?;
            Some((
                self.symbols
                    .name(self.processes[&t.process].steps[step as usize].name),
                kind,
            ))
        });
        match step {
            Some((name, UnitKind::Run)) => format!("step {name}'s parallelism limit of {capacity}"),
            Some((name, UnitKind::Acquire)) => {
                format!("step {name}'s package acquisition limit of {capacity}")
            }
            None => format!("the parallelism limit of task {task}"),
        }
    }

    /// Names a group of holders or waiters: `task 12`, `tasks 1 and 2`, `ci-1`, `2 units of the step`.
    fn who(&self, lock: LockKey, parties: &[Holder]) -> (String, bool) {
        if let LockKey::Parallelism(..) = lock {
            let plural = parties.len() != 1;
            let noun = if plural { "units" } else { "unit" };
            return (format!("{} {noun} of the step", parties.len()), plural);
        }
        let mut tasks: Vec<TaskId> = parties.iter().filter_map(|h| h.task).collect();
        tasks.sort();
        tasks.dedup();
        let mut names: Vec<String> = Vec::new();
        if !tasks.is_empty() {
            let list: Vec<String> = tasks.iter().map(|t| t.to_string()).collect();
            let noun = if list.len() == 1 { "task" } else { "tasks" };
            names.push(format!("{noun} {}", join_words(&list)));
        }
        names.extend(parties.iter().filter_map(|h| h.client.clone()));
        let plural = tasks.len() + names.len() > 2
            || tasks.len() > 1
            || (tasks.is_empty() && names.len() > 1);
        (join_words(&names), plural)
    }

    /// The explanation as a sentence, such as
    /// `waiting for target web01: task 12 holds it exclusively (position 2 of 3)`.
    pub fn describe(&self, wait: &Wait) -> String {
        let how = |mode: Option<Mode>| match mode {
            Some(Mode::Exclusive) => " exclusively",
            Some(Mode::Shared(_)) if matches!(wait.lock, LockKey::Target(_)) => " shared",
            _ => "",
        };
        let holding = (!wait.holders.is_empty()).then(|| {
            let (who, plural) = self.who(wait.lock, &wait.holders);
            let verb = match (wait.lock, plural) {
                (LockKey::Parallelism(..), false) => "runs",
                (LockKey::Parallelism(..), true) => "run",
                (_, false) => "holds it",
                (_, true) => "hold it",
            };
            format!("{who} {verb}{}", how(wait.holders.first().map(|h| h.mode)))
        });
        let reason = if wait.blocked_by_holders || wait.ahead.is_empty() {
            holding.unwrap_or_else(|| "it is not free".to_string())
        } else {
            // The holders leave room, but requests ahead come first: name the one in the way (for a
            // shared claim, an exclusive request ahead if there is one).
            let blocking = match wait.mode {
                Mode::Shared(_) => wait
                    .ahead
                    .iter()
                    .position(|h| h.mode == Mode::Exclusive)
                    .unwrap_or(0),
                Mode::Exclusive => 0,
            };
            let first = &wait.ahead[blocking..=blocking];
            let (who, _) = self.who(wait.lock, first);
            let ahead = format!("{who} waits ahead for it{}", how(Some(first[0].mode)));
            match holding {
                Some(holding) => format!("{holding} and {ahead}"),
                None => ahead,
            }
        };
        format!(
            "waiting for {}: {reason} (position {} of {})",
            self.lock_name(wait.lock),
            wait.position,
            wait.queue_len
        )
    }
}

fn join_words(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
