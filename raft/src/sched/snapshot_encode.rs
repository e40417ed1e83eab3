//! The snapshot encoder: writes exactly the bytes that bincode's serde encoder (standard
//! configuration) writes for [`Scheduler`], but writes the large parts (symbols, the lock table,
//! tasks, lock owners) directly instead of through serde's generic calls, which cost several times
//! more per value. The smaller parts go through serde as before. A struct's bincode encoding is its
//! fields' encodings one after another, so the two can be mixed field by field.
//!
//! The format rules used here (bincode 2, standard configuration): integers other than `u8` as
//! varints (up to 250 in one byte; else a marker byte 251, 252 or 253 and 2, 4 or 8 bytes, little
//! endian); `u8` and `bool` as one byte; `Option` as a 0 or 1 byte before the value; an enum as its
//! variant index (a varint) before its fields; a string, sequence or map as its length (a varint)
//! before its items. The tests below require this encoder and serde's to agree byte for byte on
//! states built by random commands, so a field added to the state without being added here fails
//! them.

use crate::sched::command::TaskOutcome;
use crate::sched::ids::{ReqId, Symbols};
use crate::sched::lock::{LockKey, Mode};
use crate::sched::state::{Owner, Phase, Scheduler, Task};
use crate::sched::table::FifoLockTable;
use bincode::error::EncodeError;
use serde::Serialize;

/// Appends encoded values to a `Vec`.
pub(crate) struct Out<'a>(pub &'a mut Vec<u8>);

impl bincode::enc::write::Writer for Out<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

impl Out<'_> {
    fn byte(&mut self, byte: u8) {
        self.0.push(byte);
    }

    fn bool(&mut self, value: bool) {
        self.byte(u8::from(value));
    }

    /// Any unsigned integer but `u8` (bincode writes `u16`, `u32`, `u64` and lengths alike).
    fn varint(&mut self, value: u64) {
        if value <= 250 {
            self.byte(value as u8);
        } else if value <= u64::from(u16::MAX) {
            self.byte(251);
            self.0.extend_from_slice(&(value as u16).to_le_bytes());
        } else if value <= u64::from(u32::MAX) {
            self.byte(252);
            self.0.extend_from_slice(&(value as u32).to_le_bytes());
        } else {
            self.byte(253);
            self.0.extend_from_slice(&value.to_le_bytes());
        }
    }

    fn len(&mut self, len: usize) {
        self.varint(len as u64);
    }

    fn str(&mut self, text: &str) {
        self.len(text.len());
        self.0.extend_from_slice(text.as_bytes());
    }

    fn option(&mut self, value: Option<u64>) {
        match value {
            None => self.byte(0),
            Some(v) => {
                self.byte(1);
                self.varint(v);
            }
        }
    }

    /// A value through serde, for the parts that are small or rare.
    fn serde<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        bincode::serde::encode_into_writer(value, Out(self.0), bincode::config::standard())
    }

    fn mode(&mut self, mode: Mode) {
        match mode {
            Mode::Exclusive => self.byte(0),
            Mode::Shared(w) => {
                self.byte(1);
                self.varint(u64::from(w));
            }
        }
    }

    fn lock_key(&mut self, key: LockKey) {
        match key {
            LockKey::Tag(sym) => {
                self.byte(0);
                self.varint(u64::from(sym.0));
            }
            LockKey::TaskCap => self.byte(1),
            LockKey::Target(target) => {
                self.byte(2);
                self.varint(u64::from(target.0));
            }
            LockKey::Parallelism(task, stage) => {
                self.byte(3);
                self.varint(task.0);
                self.varint(u64::from(stage));
            }
            LockKey::Named(name, target) => {
                self.byte(4);
                self.varint(u64::from(name.0));
                self.option(target.map(|t| u64::from(t.0)));
            }
            LockKey::AgentCapacity(target) => {
                self.byte(5);
                self.varint(u64::from(target.0));
            }
        }
    }

    fn symbols(&mut self, symbols: &Symbols) {
        let (names, by_name) = symbols.parts();
        self.len(names.len());
        for name in names {
            self.str(name);
        }
        self.len(by_name.len());
        for (name, sym) in by_name {
            self.str(name);
            self.varint(u64::from(sym.0));
        }
    }

    fn table(&mut self, table: &FifoLockTable) {
        self.len(table.live_locks());
        for (key, id) in table.index.iter() {
            let lock = &table.locks[id.slot()];
            self.lock_key(key);
            self.varint(u64::from(lock.capacity));
            self.varint(u64::from(lock.refs));
            self.varint(lock.held_weight);
            self.bool(lock.held_exclusive);
            self.len(lock.holders.len());
            for (request, mode) in lock.holders.iter() {
                self.varint(request.0);
                self.mode(*mode);
            }
            self.len(lock.queue.len());
            for (request, entry) in lock.queue.iter() {
                self.varint(request.0);
                self.mode(entry.mode());
                self.varint(u64::from(entry.claim));
                self.bool(entry.admissible);
            }
            self.varint(u64::from(lock.flagged));
        }
        self.len(table.requests.len());
        for (id, request) in table.requests.iter() {
            self.varint(id.0);
            self.len(request.claims.len());
            for claim in request.claims.iter() {
                self.lock_key(table.locks[claim.lock().slot()].key());
                self.mode(claim.mode());
            }
            self.varint(u64::from(request.entered));
            self.varint(u64::from(request.admissible));
            self.bool(request.held);
        }
        self.len(table.candidates.len());
        for id in table.candidates.iter() {
            self.varint(id.0);
        }
        let dirty = table.dirty_keys();
        self.len(dirty.len());
        for key in dirty {
            self.lock_key(key);
        }
        self.option(table.last_id.map(|id| id.0));
    }

    fn outcome(&mut self, outcome: &TaskOutcome) {
        match outcome {
            TaskOutcome::Succeeded => self.byte(0),
            TaskOutcome::Failed { reason } => {
                self.byte(1);
                self.str(reason);
            }
            TaskOutcome::Cancelled => self.byte(2),
        }
    }

    fn task(&mut self, task: &Task) {
        self.varint(task.id.0);
        self.varint(task.request.0);
        self.varint(u64::from(task.project.0));
        self.str(&task.release);
        self.varint(u64::from(task.environment.0));
        self.option(task.tenant.map(|t| u64::from(t.0)));
        self.varint(u64::from(task.tag.0));
        self.varint(u64::from(task.process));
        self.bool(task.bypass.default);
        for scoped in [&task.bypass.roles, &task.bypass.targets] {
            self.len(scoped.len());
            for (sym, value) in scoped {
                self.varint(u64::from(sym.0));
                self.bool(*value);
            }
        }
        self.bool(task.hold_targets);
        self.varint(u64::from(task.acquire_max_parallelism));
        self.len(task.plan.len());
        for targets in &task.plan {
            self.len(targets.len());
            for target in targets {
                self.varint(u64::from(target.0));
            }
        }
        match &task.phase {
            Phase::Queued => self.byte(0),
            Phase::Running {
                stage,
                open_units,
                stopping,
            } => {
                self.byte(1);
                self.varint(u64::from(*stage));
                self.varint(u64::from(*open_units));
                match stopping {
                    None => self.byte(0),
                    Some(outcome) => {
                        self.byte(1);
                        self.outcome(outcome);
                    }
                }
            }
            Phase::Ended(outcome) => {
                self.byte(2);
                self.outcome(outcome);
            }
        }
        self.len(task.units.len());
        for unit in &task.units {
            self.varint(unit.0);
        }
        self.option(task.token.map(|t| t.0));
        self.varint(task.submitted_ms);
        self.option(task.started_ms);
        self.option(task.ended_ms);
    }

    fn owner(&mut self, owner: Owner) {
        match owner {
            Owner::Task(task) => {
                self.byte(0);
                self.varint(task.0);
            }
            Owner::Unit(unit) => {
                self.byte(1);
                self.varint(unit.0);
            }
            Owner::Client => self.byte(2),
        }
    }
}

impl Scheduler<FifoLockTable> {
    /// Appends the state's encoding: the fields in declaration order, as serde's derive visits
    /// them.
    pub(crate) fn encode_into(&self, bytes: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut out = Out(bytes);
        out.varint(self.now_ms);
        out.serde(&self.settings)?;
        out.symbols(&self.symbols);
        out.table(&self.locks);
        for next in [
            self.next_request,
            self.next_task,
            self.next_unit,
            self.next_token,
        ] {
            out.varint(next);
        }
        out.varint(u64::from(self.next_target));
        out.serde(&self.targets)?;
        out.serde(&self.target_by_name)?;
        out.serde(&self.targets_by_env_role)?;
        out.serde(&self.target_units)?;
        out.serde(&self.processes)?;
        out.serde(&self.process_ids)?;
        out.varint(u64::from(self.next_process));
        out.len(self.tasks.len());
        for (id, task) in self.tasks.iter() {
            out.varint(id.0);
            out.task(task);
        }
        out.serde(&self.units)?;
        out.len(self.owners.len());
        for (request, owner) in self.owners.iter() {
            let ReqId(id) = request;
            out.varint(id);
            out.owner(*owner);
        }
        out.serde(&self.client_locks)?;
        out.serde(&self.named_locks)?;
        out.serde(&self.lease_expiry)?;
        out.varint(u64::from(self.queued_tasks));
        out.varint(u64::from(self.running_tasks));
        out.serde(&self.ended_tasks)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::sched::random_state::drive;
    use crate::sched::state::Scheduler;

    /// The direct encoder writes what serde's does, for states of every kind; and what it writes
    /// restores to an equal state that encodes the same again.
    #[test]
    fn writes_what_serde_writes() {
        let mut checked = 0;
        for seed in 0..8 {
            drive(seed, 1_000, |sched| {
                checked += 1;
                if checked % 4 != 0 {
                    return;
                }
                let mut direct = Vec::new();
                sched.encode_into(&mut direct).unwrap();
                let serde = bincode::serde::encode_to_vec(sched, bincode::config::standard());
                assert_eq!(direct, serde.unwrap(), "seed {seed}");
                if checked % 100 == 0 {
                    let bytes = sched.snapshot().unwrap();
                    let restored = Scheduler::restore(&bytes).unwrap();
                    assert_eq!(&restored, sched);
                    assert_eq!(restored.snapshot().unwrap(), bytes);
                    restored.lock_table().audit().unwrap();
                }
            });
        }
    }
}
