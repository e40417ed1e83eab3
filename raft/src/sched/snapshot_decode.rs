//! The snapshot decoder: reads what `snapshot_encode.rs` (and bincode's serde encoder) writes, the
//! large parts (symbols, the lock table, tasks, lock owners) directly and the rest through serde,
//! field by field in declaration order. It accepts exactly what serde's decoder accepts and builds
//! the same state (the tests below check both on valid and on damaged snapshots), several times
//! faster for a large state. The format rules are listed in `snapshot_encode.rs`.

use crate::sched::command::TaskOutcome;
use crate::sched::dense::DenseMap;
use crate::sched::ids::{FencingToken, ReqId, Sym, Symbols, TargetId, TaskId, UnitId};
use crate::sched::lock::{LockKey, Mode};
use crate::sched::state::{Bypass, Owner, Phase, Scheduler, Task};
use crate::sched::table::{mark_dirty, FifoLockTable};
use crate::sched::table_store::{
    pack, Claim, Claims, Entry, Lock, LockId, Request, Sorted, LOCK_IDS_MAX,
};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Why the input does not decode. Boxed into one word, so that results stay two words wide on the
/// fast path (a `String` would make every `Result` four words).
#[derive(Debug, PartialEq)]
#[allow(clippy::box_collection)]
pub(crate) struct Bad(Box<String>);

impl Bad {
    #[cold]
    fn new(message: String) -> Bad {
        Bad(Box::new(message))
    }
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, Bad>;

/// Reads values from the encoded bytes.
pub(crate) struct In<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// The widest integer a field holds: a wider varint marker is an error, as in bincode.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Width {
    U16,
    U32,
    U64,
}

impl<'a> In<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> In<'a> {
        In { bytes, pos: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn read(&self) -> usize {
        self.pos
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        match self.bytes.get(self.pos..).and_then(|rest| rest.get(..n)) {
            Some(taken) => {
                self.pos += n;
                Ok(taken)
            }
            None => Err(self.end()),
        }
    }

    #[cold]
    fn end(&self) -> Bad {
        Bad::new(format!("unexpected end of input at byte {}", self.pos))
    }

    #[inline]
    fn byte(&mut self) -> Result<u8> {
        match self.bytes.get(self.pos) {
            Some(byte) => {
                self.pos += 1;
                Ok(*byte)
            }
            None => Err(self.end()),
        }
    }

    #[inline]
    fn varint(&mut self, width: Width) -> Result<u64> {
        match self.bytes.get(self.pos) {
            Some(small @ 0..=250) => {
                self.pos += 1;
                Ok(u64::from(*small))
            }
            _ => self.long_varint(width),
        }
    }

    fn long_varint(&mut self, width: Width) -> Result<u64> {
        let at = self.pos;
        match self.byte()? {
            small @ 0..=250 => Ok(u64::from(small)),
            251 => Ok(u64::from(u16::from_le_bytes(
                self.take(2)?.try_into().expect("2 bytes"),
            ))),
            252 if width >= Width::U32 => Ok(u64::from(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            ))),
            253 if width == Width::U64 => Ok(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            marker => Err(Bad::new(format!(
                "invalid integer marker {marker} at byte {at}"
            ))),
        }
    }

    #[inline]
    fn u16(&mut self) -> Result<u16> {
        Ok(self.varint(Width::U16)? as u16)
    }

    #[inline]
    fn u32(&mut self) -> Result<u32> {
        Ok(self.varint(Width::U32)? as u32)
    }

    #[inline]
    fn u64(&mut self) -> Result<u64> {
        self.varint(Width::U64)
    }

    /// A length, and room to reserve for it: never more items than bytes left.
    fn len(&mut self) -> Result<(usize, usize)> {
        let len = usize::try_from(self.u64()?).map_err(|e| Bad::new(e.to_string()))?;
        Ok((len, len.min(self.bytes.len() - self.pos)))
    }

    #[inline]
    fn bool(&mut self) -> Result<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(Bad::new(format!(
                "invalid bool {other} at byte {}",
                self.pos - 1
            ))),
        }
    }

    #[inline]
    fn option<T>(&mut self, mut read: impl FnMut(&mut Self) -> Result<T>) -> Result<Option<T>> {
        match self.byte()? {
            0 => Ok(None),
            1 => Ok(Some(read(self)?)),
            other => Err(Bad::new(format!(
                "invalid option tag {other} at byte {}",
                self.pos - 1
            ))),
        }
    }

    fn variant(&mut self, of: &str, count: u32) -> Result<u32> {
        let at = self.pos;
        let index = self.u32()?;
        if index < count {
            Ok(index)
        } else {
            Err(Bad::new(format!(
                "invalid {of} variant {index} at byte {at}"
            )))
        }
    }

    fn str(&mut self) -> Result<&'a str> {
        let (len, _) = self.len()?;
        let at = self.pos;
        std::str::from_utf8(self.take(len)?)
            .map_err(|e| Bad::new(format!("{e} in the string at byte {at}")))
    }

    fn sym(&mut self) -> Result<Sym> {
        self.u32().map(Sym)
    }

    /// A value through serde.
    pub(crate) fn serde<T: Deserialize<'a>>(&mut self) -> Result<T> {
        let rest = &self.bytes[self.pos..];
        let (value, read) =
            bincode::serde::borrow_decode_from_slice(rest, bincode::config::standard())
                .map_err(|e| Bad::new(e.to_string()))?;
        self.pos += read;
        Ok(value)
    }

    fn mode(&mut self) -> Result<Mode> {
        Ok(match self.variant("Mode", 2)? {
            0 => Mode::Exclusive,
            _ => Mode::Shared(self.u32()?),
        })
    }

    fn lock_key(&mut self) -> Result<LockKey> {
        Ok(match self.variant("LockKey", 6)? {
            0 => LockKey::Tag(self.sym()?),
            1 => LockKey::TaskCap,
            2 => LockKey::Target(TargetId(self.u32()?)),
            3 => LockKey::Parallelism(TaskId(self.u64()?), self.u16()?),
            4 => LockKey::Named(self.sym()?, self.option(|r| r.u32().map(TargetId))?),
            _ => LockKey::AgentCapacity(TargetId(self.u32()?)),
        })
    }

    /// A map's entries, put in key order with the last of equal keys kept (as a `BTreeMap`
    /// decoded from them would hold).
    fn pairs<K: Ord, V>(
        &mut self,
        mut entry: impl FnMut(&mut Self) -> Result<(K, V)>,
    ) -> Result<Vec<(K, V)>> {
        let (len, room) = self.len()?;
        let mut pairs = Vec::with_capacity(room);
        for _ in 0..len {
            pairs.push(entry(self)?);
        }
        if !pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            let mut kept: Vec<(K, V)> = Vec::with_capacity(pairs.len());
            for pair in pairs {
                match kept.last_mut() {
                    Some(last) if last.0 == pair.0 => *last = pair,
                    _ => kept.push(pair),
                }
            }
            pairs = kept;
        }
        Ok(pairs)
    }

    fn symbols(&mut self) -> Result<Symbols> {
        let (len, room) = self.len()?;
        let mut names: Vec<Box<str>> = Vec::with_capacity(room);
        for _ in 0..len {
            names.push(self.str()?.into());
        }
        let by_name = self.pairs(|r| Ok((Box::<str>::from(r.str()?), r.sym()?)))?;
        let by_name: BTreeMap<Box<str>, Sym> = by_name.into_iter().collect();
        Symbols::from_parts(names, by_name).map_err(Bad::new)
    }

    fn table(&mut self) -> Result<FifoLockTable> {
        let mut table = FifoLockTable::default();
        let (len, room) = self.len()?;
        table.locks.reserve_exact(room);
        for _ in 0..len {
            let key = self.lock_key()?;
            let capacity = self.u32()?;
            let refs = self.u32()?;
            let held_weight = self.u64()?;
            let held_exclusive = self.bool()?;
            let holders = self.pairs(|r| Ok((ReqId(r.u64()?), r.mode()?)))?;
            let queue = self.pairs(|r| {
                let id = ReqId(r.u64()?);
                let weight = pack(r.mode()?);
                let claim = r.u16()?;
                let admissible = r.bool()?;
                Ok((
                    id,
                    Entry {
                        weight,
                        claim,
                        admissible,
                    },
                ))
            })?;
            let flagged = self.u32()?;
            if table.index.get(key).is_some() {
                return Err(Bad::new(format!("lock {key:?} is encoded twice")));
            }
            let slot = u32::try_from(table.locks.len()).unwrap_or(u32::MAX);
            if slot >= LOCK_IDS_MAX {
                return Err(Bad::new("more locks than a table holds".into()));
            }
            table.locks.push(Lock {
                key: Some(key),
                capacity,
                refs,
                held_weight,
                held_exclusive,
                dirty: false,
                flagged,
                holders: Sorted::from_sorted(holders),
                queue: Sorted::from_sorted(queue),
            });
            table.index.insert(key, LockId(slot));
        }
        let (len, _) = self.len()?;
        for _ in 0..len {
            let id = ReqId(self.u64()?);
            let (claims, _) = self.len()?;
            let claims = Claims::try_build(claims, || self.claim(&table, id))?;
            let request = Request {
                claims,
                entered: self.u16()?,
                admissible: self.u16()?,
                held: self.bool()?,
            };
            if table.requests.insert(id, request).is_some() {
                return Err(Bad::new(format!("request {id:?} is encoded twice")));
            }
        }
        let (len, _) = self.len()?;
        table.candidates = (0..len)
            .map(|_| self.u64().map(ReqId))
            .collect::<Result<BTreeSet<ReqId>>>()?
            .into();
        let (len, _) = self.len()?;
        let dirty = (0..len)
            .map(|_| self.lock_key())
            .collect::<Result<BTreeSet<LockKey>>>()?;
        // A dirty key without a lock was dropped from the table; there is nothing to recompute.
        for key in dirty {
            if let Some(id) = table.index.get(key) {
                mark_dirty(&mut table.dirty, &mut table.locks[id.slot()], id);
            }
        }
        table.last_id = self.option(|r| r.u64().map(ReqId))?;
        Ok(table)
    }

    fn claim(&mut self, table: &FifoLockTable, id: ReqId) -> Result<Claim> {
        let key = self.lock_key()?;
        let mode = self.mode()?;
        let lock = table.index.get(key).ok_or_else(|| {
            Bad::new(format!(
                "request {id:?} claims {key:?}, which the table does not hold"
            ))
        })?;
        Ok(Claim::new(lock, key.rank(), mode))
    }

    fn outcome(&mut self) -> Result<TaskOutcome> {
        Ok(match self.variant("TaskOutcome", 3)? {
            0 => TaskOutcome::Succeeded,
            1 => TaskOutcome::Failed {
                reason: self.str()?.to_string(),
            },
            _ => TaskOutcome::Cancelled,
        })
    }

    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        let (len, room) = self.len()?;
        let mut items = Vec::with_capacity(room);
        for _ in 0..len {
            items.push(item(self)?);
        }
        Ok(items)
    }

    fn task(&mut self) -> Result<Task> {
        Ok(Task {
            id: TaskId(self.u64()?),
            request: ReqId(self.u64()?),
            project: self.sym()?,
            release: self.str()?.into(),
            environment: self.sym()?,
            tenant: self.option(Self::sym)?,
            tag: self.sym()?,
            process: self.u32()?,
            bypass: Bypass {
                default: self.bool()?,
                roles: self.list(|r| Ok((r.sym()?, r.bool()?)))?,
                targets: self.list(|r| Ok((r.sym()?, r.bool()?)))?,
            },
            hold_targets: self.bool()?,
            acquire_max_parallelism: self.u32()?,
            plan: self.list(|r| r.list(|r| r.u32().map(TargetId)))?,
            phase: match self.variant("Phase", 3)? {
                0 => Phase::Queued,
                1 => Phase::Running {
                    stage: self.u16()?,
                    open_units: self.u32()?,
                    stopping: self.option(Self::outcome)?,
                },
                _ => Phase::Ended(self.outcome()?),
            },
            units: self.list(|r| r.u64().map(UnitId))?,
            token: self.option(|r| r.u64().map(FencingToken))?,
            submitted_ms: self.u64()?,
            started_ms: self.option(Self::u64)?,
            ended_ms: self.option(Self::u64)?,
        })
    }

    fn owner(&mut self) -> Result<Owner> {
        Ok(match self.variant("Owner", 3)? {
            0 => Owner::Task(TaskId(self.u64()?)),
            1 => Owner::Unit(UnitId(self.u64()?)),
            _ => Owner::Client,
        })
    }

    /// The state, field by field in declaration order.
    pub(crate) fn scheduler(&mut self) -> Result<Scheduler> {
        let now_ms = self.u64()?;
        let settings = self.serde()?;
        let symbols = self.symbols()?;
        let locks = self.table()?;
        let next_request = self.u64()?;
        let next_task = self.u64()?;
        let next_unit = self.u64()?;
        let next_token = self.u64()?;
        let next_target = self.u32()?;
        let targets = self.serde()?;
        let target_by_name = self.serde()?;
        let targets_by_env_role = self.serde()?;
        let target_units = self.serde()?;
        let processes = self.serde()?;
        let process_ids = self.serde()?;
        let next_process = self.u32()?;
        let (len, _) = self.len()?;
        let mut tasks = DenseMap::new();
        for _ in 0..len {
            let id = TaskId(self.u64()?);
            tasks.insert(id, self.task()?);
        }
        let units = self.serde()?;
        let (len, _) = self.len()?;
        let mut owners = DenseMap::new();
        for _ in 0..len {
            let id = ReqId(self.u64()?);
            owners.insert(id, self.owner()?);
        }
        Ok(Scheduler {
            now_ms,
            settings,
            symbols,
            locks,
            next_request,
            next_task,
            next_unit,
            next_token,
            next_target,
            targets,
            target_by_name,
            targets_by_env_role,
            target_units,
            processes,
            process_ids,
            next_process,
            tasks,
            units,
            owners,
            client_locks: self.serde()?,
            named_locks: self.serde()?,
            lease_expiry: self.serde()?,
            queued_tasks: self.u32()?,
            running_tasks: self.u32()?,
            ended_tasks: self.serde()?,
            spare: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::In;
    use crate::sched::random_state::drive;
    use crate::sched::state::Scheduler;

    /// What serde's decoder makes of `body`: the state and the bytes it read, or that it failed.
    fn by_serde(body: &[u8]) -> Option<(Scheduler, usize)> {
        bincode::serde::decode_from_slice(body, bincode::config::standard()).ok()
    }

    fn direct(body: &[u8]) -> Option<(Scheduler, usize)> {
        let mut input = In::new(body);
        let state = input.scheduler().ok()?;
        Some((state, input.read()))
    }

    /// The direct decoder builds what serde's builds from every state the random commands reach.
    #[test]
    fn reads_what_serde_reads() {
        let mut seen = 0;
        for seed in 0..6 {
            drive(seed, 800, |sched| {
                seen += 1;
                if seen % 5 != 0 {
                    return;
                }
                let mut body = Vec::new();
                sched.encode_into(&mut body).unwrap();
                let (state, read) = direct(&body).expect("decodes");
                assert_eq!(read, body.len());
                assert_eq!(&state, sched);
                assert_eq!(Some((state, read)), by_serde(&body));
            });
        }
    }

    /// On damaged input (cut short, or a byte changed) the direct decoder fails exactly when
    /// serde's does, and otherwise builds the same state from the same bytes.
    #[test]
    fn fails_where_serde_fails() {
        let mut states = Vec::new();
        drive(99, 60, |sched| states.push(sched.clone()));
        let sched = &states[states.len() - 1];
        let mut body = Vec::new();
        sched.encode_into(&mut body).unwrap();
        for cut in 0..body.len() {
            assert_eq!(
                direct(&body[..cut]).is_some(),
                by_serde(&body[..cut]).is_some(),
                "cut {cut}"
            );
        }
        let mut x: u64 = 17;
        // Every byte plus one, then every fifth byte set at random.
        for i in (0..body.len()).chain((body.len()..body.len() * 2).step_by(5)) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let mut damaged = body.clone();
            let at = i % body.len();
            damaged[at] = match i / body.len() {
                0 => damaged[at].wrapping_add(1),
                _ => (x >> 56) as u8,
            };
            assert_eq!(
                direct(&damaged),
                by_serde(&damaged),
                "byte {at} set to {}",
                damaged[at]
            );
        }
    }
}
