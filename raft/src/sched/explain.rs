//! Why something waits: for a queued task or a waiting unit, the lock or cap it waits for, who holds
//! it, and its place in the queue, as data ([`Wait`]) and as a sentence ([`Scheduler::describe`]).

use crate::sched::ids::{ReqId, TaskId, UnitId};
use crate::sched::lock::{LockKey, LockTable, Mode};
use crate::sched::state::{Owner, Phase, Scheduler, UnitState};

/// One holder of a lock, seen from a waiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The holder's lock request.
    pub request: ReqId,
    /// The task that holds it (a task's admission, or the task of a unit).
    pub task: Option<TaskId>,
    /// The unit that holds it.
    pub unit: Option<UnitId>,
    /// The client that holds it (named locks).
    pub client: Option<String>,
    /// How.
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

    /// Why a lock request waits.
    pub fn explain_request(&self, request: ReqId) -> Option<Wait> {
        let stuck = self.locks.stuck(request)?;
        let holders = self
            .locks
            .holders(stuck.lock)
            .into_iter()
            .map(|(request, mode)| {
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
            })
            .collect();
        Some(Wait {
            lock: stuck.lock,
            mode: stuck.mode,
            capacity: self.locks.capacity(stuck.lock).unwrap_or(0),
            holders,
            position: stuck.position,
            queue_len: stuck.queue_len,
        })
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
            LockKey::Parallelism(task, stage) => {
                format!("the parallelism limit of task {task} stage {stage}")
            }
            LockKey::Named(name, None) => format!("lock {}", self.symbols.name(name)),
            LockKey::Named(name, Some(t)) => format!(
                "lock {} on target {}",
                self.symbols.name(name),
                target_name(t)
            ),
            LockKey::AgentCapacity(t) => format!("a free slot on agent {}", target_name(t)),
        }
    }

    /// The explanation as a sentence, such as
    /// `waiting for target web01: task 12 holds it exclusively (position 2 of 3)`.
    pub fn describe(&self, wait: &Wait) -> String {
        let mut tasks: Vec<TaskId> = wait.holders.iter().filter_map(|h| h.task).collect();
        tasks.sort();
        tasks.dedup();
        let clients: Vec<&str> = wait
            .holders
            .iter()
            .filter_map(|h| h.client.as_deref())
            .collect();
        let how = match wait.holders.first().map(|h| h.mode) {
            Some(Mode::Exclusive) => " exclusively",
            Some(Mode::Shared(_)) if matches!(wait.lock, LockKey::Target(_)) => " shared",
            _ => "",
        };
        let who = if !tasks.is_empty() {
            let list: Vec<String> = tasks.iter().map(|t| t.to_string()).collect();
            let (noun, verb) = if list.len() == 1 {
                ("task", "holds")
            } else {
                ("tasks", "hold")
            };
            format!("{noun} {} {verb} it{how}", join_words(&list))
        } else if !clients.is_empty() {
            let list: Vec<String> = clients.iter().map(|c| c.to_string()).collect();
            format!(
                "{} {} it",
                join_words(&list),
                if list.len() == 1 { "holds" } else { "hold" }
            )
        } else if wait.position > 1 {
            "earlier requests come first".to_string()
        } else {
            "it is not free".to_string()
        };
        format!(
            "waiting for {}: {who} (position {} of {})",
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
