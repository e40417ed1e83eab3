//! The records of the incremental lock table ([`crate::sched::table::FifoLockTable`]): locks in a
//! slab addressed by a dense [`LockId`], the index from [`LockKey`] to `LockId`, the sorted maps that
//! hold a lock's queue and holders, and requests with their claims.
//!
//! Lock ids are an implementation detail: they are never serialised, and no decision depends on
//! their values (a restored table numbers its locks afresh). Everything the table decides depends
//! only on keys, request ids and the order of requests.

use crate::sched::dense::DenseMap;
use crate::sched::ids::{ReqId, Sym, TargetId, TaskId};
use crate::sched::lock::{LockKey, Mode};
use std::collections::btree_map;
use std::collections::BTreeMap;

/// A lock's slot in the slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LockId(pub u32);

impl LockId {
    pub(crate) fn slot(self) -> usize {
        self.0 as usize
    }
}

/// A claim's mode packed in 4 bytes: 0 is exclusive, `w > 0` is shared with weight `w` (a shared
/// claim weighs at least 1).
pub(crate) fn pack(mode: Mode) -> u32 {
    match mode {
        Mode::Exclusive => 0,
        Mode::Shared(w) => w,
    }
}

/// The mode of a packed claim.
pub(crate) fn unpack(weight: u32) -> Mode {
    match weight {
        0 => Mode::Exclusive,
        w => Mode::Shared(w),
    }
}

/// A request's place in a lock's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The mode, packed (see [`pack`]).
    pub weight: u32,
    /// Index of the claim in its request.
    pub claim: u16,
    pub admissible: bool,
}

impl Entry {
    pub(crate) fn mode(&self) -> Mode {
        unpack(self.weight)
    }
}

/// Longest queue kept as a sorted `Vec`; longer ones become a B-tree.
pub(crate) const SMALL_MAX: usize = 128;
/// A B-tree that shrinks below this becomes a sorted `Vec` again (the gap avoids converting back
/// and forth).
pub(crate) const BIG_MIN: usize = 32;

/// A map from request id to `V`, in id order: nothing or one entry held inline (most locks have at
/// most one holder and one waiter, and then need no allocation), a sorted `Vec` while short, a
/// B-tree when long (the task cap's queue can hold every queued task).
#[derive(Clone, Debug, Default)]
pub(crate) enum Sorted<V> {
    #[default]
    Empty,
    One((ReqId, V)),
    Small(Vec<(ReqId, V)>),
    Big(BTreeMap<ReqId, V>),
}

impl<V: Copy> Sorted<V> {
    /// From entries in strictly increasing id order.
    pub(crate) fn from_sorted(mut entries: Vec<(ReqId, V)>) -> Self {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        match entries.len() {
            0 => Sorted::Empty,
            1 => Sorted::One(entries.pop().expect("one")),
            n if n > SMALL_MAX => Sorted::Big(entries.into_iter().collect()),
            _ => Sorted::Small(entries),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Sorted::Empty => 0,
            Sorted::One(_) => 1,
            Sorted::Small(v) => v.len(),
            Sorted::Big(m) => m.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries, when not a B-tree.
    fn slice(&self) -> Option<&[(ReqId, V)]> {
        match self {
            Sorted::Empty => Some(&[]),
            Sorted::One(pair) => Some(std::slice::from_ref(pair)),
            Sorted::Small(v) => Some(v),
            Sorted::Big(_) => None,
        }
    }

    pub(crate) fn get(&self, id: ReqId) -> Option<&V> {
        match self {
            Sorted::Big(m) => m.get(&id),
            _ => {
                let v = self.slice().expect("not a B-tree");
                v.binary_search_by_key(&id, |e| e.0).ok().map(|i| &v[i].1)
            }
        }
    }

    pub(crate) fn contains(&self, id: ReqId) -> bool {
        self.get(id).is_some()
    }

    pub(crate) fn insert(&mut self, id: ReqId, value: V) -> Option<V> {
        match self {
            Sorted::Empty => {
                *self = Sorted::One((id, value));
                None
            }
            Sorted::One(pair) if pair.0 == id => Some(std::mem::replace(&mut pair.1, value)),
            Sorted::One(pair) => {
                let mut v = Vec::with_capacity(4);
                v.push(*pair);
                v.insert(usize::from(pair.0 < id), (id, value));
                *self = Sorted::Small(v);
                None
            }
            Sorted::Small(v) => {
                if v.last().is_none_or(|last| last.0 < id) {
                    v.push((id, value));
                } else {
                    match v.binary_search_by_key(&id, |e| e.0) {
                        Ok(i) => return Some(std::mem::replace(&mut v[i].1, value)),
                        Err(i) => v.insert(i, (id, value)),
                    }
                }
                if v.len() > SMALL_MAX {
                    *self = Sorted::Big(std::mem::take(v).into_iter().collect());
                }
                None
            }
            Sorted::Big(m) => m.insert(id, value),
        }
    }

    pub(crate) fn remove(&mut self, id: ReqId) -> Option<V> {
        match self {
            Sorted::Empty => None,
            Sorted::One(pair) if pair.0 == id => {
                let value = pair.1;
                *self = Sorted::Empty;
                Some(value)
            }
            Sorted::One(_) => None,
            Sorted::Small(v) => {
                let i = v.binary_search_by_key(&id, |e| e.0).ok()?;
                Some(v.remove(i).1)
            }
            Sorted::Big(m) => {
                let old = m.remove(&id)?;
                if m.len() < BIG_MIN {
                    *self = Sorted::Small(std::mem::take(m).into_iter().collect());
                }
                Some(old)
            }
        }
    }

    /// The largest id.
    pub(crate) fn last_id(&self) -> Option<ReqId> {
        match self {
            Sorted::Big(m) => m.last_key_value().map(|e| *e.0),
            _ => self.slice().expect("not a B-tree").last().map(|e| e.0),
        }
    }

    /// Number of entries with an id up to `id`.
    pub(crate) fn position(&self, id: ReqId) -> usize {
        match self {
            Sorted::Big(m) => m.range(..=id).count(),
            _ => self
                .slice()
                .expect("not a B-tree")
                .partition_point(|e| e.0 <= id),
        }
    }

    pub(crate) fn iter(&self) -> Iter<'_, V> {
        match self {
            Sorted::Big(m) => Iter::Big(m.iter()),
            _ => Iter::Small(self.slice().expect("not a B-tree").iter()),
        }
    }

    pub(crate) fn iter_mut(&mut self) -> IterMut<'_, V> {
        match self {
            Sorted::Empty => IterMut::Small([].iter_mut()),
            Sorted::One(pair) => IterMut::Small(std::slice::from_mut(pair).iter_mut()),
            Sorted::Small(v) => IterMut::Small(v.iter_mut()),
            Sorted::Big(m) => IterMut::Big(m.iter_mut()),
        }
    }

    /// Empties the map; keeps a small buffer for reuse, drops a large one.
    pub(crate) fn clear(&mut self) {
        match self {
            Sorted::Small(v) if v.capacity() <= 4 => v.clear(),
            _ => *self = Sorted::Empty,
        }
    }

    /// Whether the representation fits the length (see [`SMALL_MAX`] and [`BIG_MIN`]) and a
    /// short map is sorted. For audits.
    pub(crate) fn well_formed(&self) -> bool {
        match self {
            Sorted::Empty | Sorted::One(_) => true,
            Sorted::Small(v) => v.len() <= SMALL_MAX && v.windows(2).all(|w| w[0].0 < w[1].0),
            Sorted::Big(m) => m.len() >= BIG_MIN,
        }
    }
}

pub(crate) enum Iter<'a, V> {
    Small(std::slice::Iter<'a, (ReqId, V)>),
    Big(btree_map::Iter<'a, ReqId, V>),
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (ReqId, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Small(i) => i.next().map(|(id, v)| (*id, v)),
            Iter::Big(i) => i.next().map(|(id, v)| (*id, v)),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Small(i) => i.size_hint(),
            Iter::Big(i) => i.size_hint(),
        }
    }
}

impl<V> ExactSizeIterator for Iter<'_, V> {}

pub(crate) enum IterMut<'a, V> {
    Small(std::slice::IterMut<'a, (ReqId, V)>),
    Big(btree_map::IterMut<'a, ReqId, V>),
}

impl<'a, V> Iterator for IterMut<'a, V> {
    type Item = (ReqId, &'a mut V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            IterMut::Small(i) => i.next().map(|(id, v)| (*id, v)),
            IterMut::Big(i) => i.next().map(|(id, v)| (*id, v)),
        }
    }
}

/// One lock: its capacity, who holds it, and its queue of entered requests.
#[derive(Clone, Debug, Default)]
pub(crate) struct Lock {
    pub key: Option<LockKey>,
    pub capacity: u32,
    /// Requests (waiting or held) that name this lock; the lock is dropped at zero.
    pub refs: u32,
    pub held_weight: u64,
    pub held_exclusive: bool,
    /// Whether it is in the table's dirty list.
    pub dirty: bool,
    /// Number of queue entries flagged admissible (always a prefix of the queue).
    pub flagged: u32,
    pub holders: Sorted<Mode>,
    pub queue: Sorted<Entry>,
}

impl Lock {
    pub(crate) fn new(key: LockKey, capacity: u32) -> Lock {
        Lock {
            key: Some(key),
            capacity,
            ..Lock::default()
        }
    }

    /// The key of a lock in use.
    pub(crate) fn key(&self) -> LockKey {
        self.key.expect("lock in use")
    }
}

/// One claim of a request, sorted by lock key within the request: the lock and its rank packed in
/// 4 bytes, and the mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    /// `lock << 3 | rank`.
    lock_rank: u32,
    /// The mode, packed (see [`pack`]).
    pub weight: u32,
}

/// Lock ids must fit in the 29 bits a [`Claim`] has for them.
pub(crate) const LOCK_IDS_MAX: u32 = 1 << 29;

impl Claim {
    pub(crate) fn new(lock: LockId, rank: u8, mode: Mode) -> Claim {
        debug_assert!(lock.0 < LOCK_IDS_MAX && rank < 8);
        Claim {
            lock_rank: lock.0 << 3 | u32::from(rank),
            weight: pack(mode),
        }
    }

    pub(crate) fn lock(&self) -> LockId {
        LockId(self.lock_rank >> 3)
    }

    /// The rank of the lock.
    pub(crate) fn rank(&self) -> u8 {
        (self.lock_rank & 7) as u8
    }

    pub(crate) fn mode(&self) -> Mode {
        unpack(self.weight)
    }
}

/// Claims kept inside the request (no allocation) up to this many; every request of a task's
/// admission or of a unit fits.
const INLINE_CLAIMS: usize = 4;

/// A request's claims.
#[derive(Clone, Debug)]
pub(crate) enum Claims {
    Inline(u8, [Claim; INLINE_CLAIMS]),
    Heap(Box<[Claim]>),
}

impl std::ops::Deref for Claims {
    type Target = [Claim];

    fn deref(&self) -> &[Claim] {
        match self {
            Claims::Inline(n, claims) => &claims[..*n as usize],
            Claims::Heap(claims) => claims,
        }
    }
}

impl Claims {
    /// `len` claims made by `next`, or its first error.
    pub(crate) fn try_build<E>(
        len: usize,
        mut next: impl FnMut() -> Result<Claim, E>,
    ) -> Result<Claims, E> {
        if len <= INLINE_CLAIMS {
            let mut inline = [Claim {
                lock_rank: 0,
                weight: 0,
            }; INLINE_CLAIMS];
            for claim in &mut inline[..len] {
                *claim = next()?;
            }
            return Ok(Claims::Inline(len as u8, inline));
        }
        let mut all = Vec::new();
        for _ in 0..len {
            all.push(next()?);
        }
        Ok(Claims::Heap(all.into_boxed_slice()))
    }
}

impl FromIterator<Claim> for Claims {
    fn from_iter<I: IntoIterator<Item = Claim>>(iter: I) -> Claims {
        let mut iter = iter.into_iter();
        let mut inline = [Claim {
            lock_rank: 0,
            weight: 0,
        }; INLINE_CLAIMS];
        for n in 0..INLINE_CLAIMS {
            match iter.next() {
                Some(claim) => inline[n] = claim,
                None => return Claims::Inline(n as u8, inline),
            }
        }
        match iter.next() {
            None => Claims::Inline(INLINE_CLAIMS as u8, inline),
            Some(next) => {
                let mut all = inline.to_vec();
                all.push(next);
                all.extend(iter);
                Claims::Heap(all.into_boxed_slice())
            }
        }
    }
}

/// A request: its claims, how far it has entered them, and whether it holds them.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    /// Sorted by lock key, which sorts them by rank.
    pub claims: Claims,
    /// `claims[..entered]` are in their locks' queues.
    pub entered: u16,
    /// How many entered claims are flagged admissible.
    pub admissible: u16,
    pub held: bool,
}

/// Ids up to this are indexed by position in a `Vec`; larger ones (never made by the scheduler,
/// whose symbols and targets stay below it) go to the B-tree.
const DENSE_MAX: u32 = 1 << 22;
const NONE: u32 = u32::MAX;

/// Where each lock key's lock is in the slab. Concurrency tags, targets and agents are indexed by
/// their symbol or target id in plain `Vec`s (so a lookup costs one load whatever the number of
/// locks); parallelism and named locks, which are few, in a B-tree.
///
/// A task has one parallelism lock at a time (one per stage, and a stage starts when the previous
/// one's units have all ended), so those are indexed by task id, with the B-tree for any second one.
#[derive(Clone, Debug, Default)]
pub(crate) struct LockIndex {
    tags: Vec<u32>,
    task_cap: Option<LockId>,
    targets: Vec<u32>,
    parallelism: DenseMap<TaskId, (u16, LockId)>,
    agents: Vec<u32>,
    other: BTreeMap<LockKey, LockId>,
}

fn dense_slot(v: &mut Vec<u32>, i: u32) -> &mut u32 {
    let i = i as usize;
    if v.len() <= i {
        v.resize(i + 1, NONE);
    }
    &mut v[i]
}

fn dense_get(v: &[u32], i: u32) -> Option<LockId> {
    v.get(i as usize)
        .copied()
        .filter(|id| *id != NONE)
        .map(LockId)
}

impl LockIndex {
    fn dense(&self, key: LockKey) -> Option<(&Vec<u32>, u32)> {
        match key {
            LockKey::Tag(sym) if sym.0 < DENSE_MAX => Some((&self.tags, sym.0)),
            LockKey::Target(TargetId(t)) if t < DENSE_MAX => Some((&self.targets, t)),
            LockKey::AgentCapacity(TargetId(t)) if t < DENSE_MAX => Some((&self.agents, t)),
            _ => None,
        }
    }

    fn dense_mut(&mut self, key: LockKey) -> Option<&mut u32> {
        match key {
            LockKey::Tag(sym) if sym.0 < DENSE_MAX => Some(dense_slot(&mut self.tags, sym.0)),
            LockKey::Target(TargetId(t)) if t < DENSE_MAX => Some(dense_slot(&mut self.targets, t)),
            LockKey::AgentCapacity(TargetId(t)) if t < DENSE_MAX => {
                Some(dense_slot(&mut self.agents, t))
            }
            _ => None,
        }
    }

    pub(crate) fn get(&self, key: LockKey) -> Option<LockId> {
        if let Some((v, i)) = self.dense(key) {
            return dense_get(v, i);
        }
        match key {
            LockKey::TaskCap => self.task_cap,
            LockKey::Parallelism(task, stage) => match self.parallelism.get(&task) {
                Some((s, id)) if *s == stage => Some(*id),
                _ => self.other.get(&key).copied(),
            },
            _ => self.other.get(&key).copied(),
        }
    }

    pub(crate) fn insert(&mut self, key: LockKey, id: LockId) {
        if let Some(slot) = self.dense_mut(key) {
            debug_assert_eq!(*slot, NONE);
            *slot = id.0;
            return;
        }
        let old = match key {
            LockKey::TaskCap => self.task_cap.replace(id),
            LockKey::Parallelism(task, stage) if !self.parallelism.contains_key(&task) => {
                self.parallelism.insert(task, (stage, id)).map(|(_, id)| id)
            }
            _ => self.other.insert(key, id),
        };
        debug_assert!(old.is_none());
    }

    pub(crate) fn remove(&mut self, key: LockKey) {
        if let Some(slot) = self.dense_mut(key) {
            *slot = NONE;
            return;
        }
        match key {
            LockKey::TaskCap => self.task_cap = None,
            LockKey::Parallelism(task, stage)
                if self
                    .parallelism
                    .get(&task)
                    .is_some_and(|(s, _)| *s == stage) =>
            {
                self.parallelism.remove(&task);
            }
            _ => {
                self.other.remove(&key);
            }
        }
    }

    /// Every indexed lock, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (LockKey, LockId)> + '_ {
        let dense = dense_iter(&self.tags, |i| LockKey::Tag(Sym(i)))
            .chain(self.task_cap.map(|id| (LockKey::TaskCap, id)))
            .chain(dense_iter(&self.targets, |i| LockKey::Target(TargetId(i))))
            .chain(
                self.parallelism
                    .iter()
                    .map(|(task, (stage, id))| (LockKey::Parallelism(task, *stage), *id)),
            )
            .chain(dense_iter(&self.agents, |i| {
                LockKey::AgentCapacity(TargetId(i))
            }));
        Merge {
            a: dense.peekable(),
            b: self.other.iter().map(|(k, id)| (*k, *id)).peekable(),
        }
    }
}

fn dense_iter(
    ids: &[u32],
    key: fn(u32) -> LockKey,
) -> impl Iterator<Item = (LockKey, LockId)> + '_ {
    ids.iter()
        .enumerate()
        .filter(|(_, id)| **id != NONE)
        .map(move |(i, id)| (key(i as u32), LockId(*id)))
}

/// Merges two iterators sorted by key.
struct Merge<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = (LockKey, LockId)>,
    B: Iterator<Item = (LockKey, LockId)>,
{
    type Item = (LockKey, LockId);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(a), Some(b)) if b.0 < a.0 => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}
