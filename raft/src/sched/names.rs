//! Hash indexes for lookups only: [`NameIndex`] finds the symbol of a name and [`TagIndex`] the
//! default concurrency tag of a deployment, for [`crate::sched::ids::Symbols`]; [`HashIndex`] finds
//! a process by its steps.
//!
//! A [`HashIndex`] is an open-addressing hash table (linear probing, power-of-two size, at most 7/8
//! full) whose slots hold a 32-bit id and the 32-bit hash of what it names; the thing named stays
//! where it lives, and the caller says how to compare it. The hash functions are fixed (no random
//! seed), though nothing depends on them but speed: an index is only ever asked "which id names
//! this", whose answer does not depend on the hash, and it is never iterated, compared or serialised
//! (a restored state rebuilds it from what it indexes).

use crate::sched::ids::Sym;

#[derive(Clone, Copy, Default)]
struct Slot {
    hash: u32,
    /// The id plus one; 0 is an empty slot.
    id: u32,
}

/// A slot of one of the open-addressing tables below: vacant or holding an entry with its hash.
trait Probed: Copy {
    const VACANT: Self;
    fn is_vacant(&self) -> bool;
    fn hash(&self) -> u32;
}

/// Grows `slots` to hold `total` entries at most 7/8 full, re-placing every entry; nothing when
/// they already fit.
fn reserve_slots<S: Probed>(slots: &mut Vec<S>, total: usize) {
    let needed = (total * 8).div_ceil(7).max(16).next_power_of_two();
    if needed <= slots.len() {
        return;
    }
    let old = std::mem::replace(slots, vec![S::VACANT; needed]);
    for slot in old.into_iter().filter(|s| !s.is_vacant()) {
        place_slot(slots, slot);
    }
}

/// Puts `slot` in the first vacant place of its probe sequence (there is one: tables are never full).
fn place_slot<S: Probed>(slots: &mut [S], slot: S) {
    let mask = slots.len() - 1;
    let mut i = slot.hash() as usize & mask;
    while !slots[i].is_vacant() {
        i = (i + 1) & mask;
    }
    slots[i] = slot;
}

impl Probed for Slot {
    const VACANT: Slot = Slot { hash: 0, id: 0 };
    fn is_vacant(&self) -> bool {
        self.id == 0
    }
    fn hash(&self) -> u32 {
        self.hash
    }
}

/// Ids found by hash. See the module documentation.
#[derive(Clone, Default)]
pub(crate) struct HashIndex {
    slots: Vec<Slot>,
    len: usize,
}

/// Mixes 64-bit words into a 32-bit hash (FxHash-style word mixing, then a 64-bit finaliser).
#[derive(Clone, Copy)]
pub(crate) struct Hasher(u64);

impl Hasher {
    pub(crate) fn new(seed: u64) -> Hasher {
        Hasher(seed)
    }

    pub(crate) fn word(self, word: u64) -> Hasher {
        Hasher((self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95))
    }

    pub(crate) fn bytes(mut self, bytes: &[u8]) -> Hasher {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self = self.word(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self = self.word(u64::from_le_bytes(word));
        }
        self
    }

    pub(crate) fn finish(self) -> u32 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h as u32
    }
}

/// The hash of a name.
fn hash_name(name: &str) -> u32 {
    Hasher::new(name.len() as u64)
        .bytes(name.as_bytes())
        .finish()
}

impl HashIndex {
    /// The id with this hash for which `is` holds.
    pub(crate) fn find(&self, hash: u32, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot.id == 0 {
                return None;
            }
            if slot.hash == hash && is(slot.id - 1) {
                return Some(slot.id - 1);
            }
            i = (i + 1) & mask;
        }
    }

    /// Indexes `id`, which is not indexed yet, under `hash`.
    pub(crate) fn insert(&mut self, hash: u32, id: u32) {
        self.reserve(self.len + 1);
        place_slot(&mut self.slots, Slot { hash, id: id + 1 });
        self.len += 1;
    }

    /// Removes `id`, indexed under `hash`, shifting back the entries after it so that no probe
    /// sequence breaks.
    pub(crate) fn remove(&mut self, hash: u32, id: u32) {
        let mask = self.slots.len() - 1;
        let mut hole = hash as usize & mask;
        while self.slots[hole].id != id + 1 {
            assert!(
                self.slots[hole].id != 0,
                "removing an id that is not indexed"
            );
            hole = (hole + 1) & mask;
        }
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let slot = self.slots[i];
            if slot.id == 0 {
                break;
            }
            // The entry may move into the hole unless its home lies cyclically in (hole, i].
            let home = slot.hash as usize & mask;
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                self.slots[hole] = slot;
                hole = i;
            }
        }
        self.slots[hole] = Slot::VACANT;
        self.len -= 1;
    }

    /// Makes room for `total` ids without growing again.
    pub(crate) fn reserve(&mut self, total: usize) {
        reserve_slots(&mut self.slots, total);
    }
}

/// Symbols by name, over the list of names that `Symbols` keeps. A slot holds the symbol, the
/// name's hash and, for a name of up to [`INLINE_NAME`] bytes (most names), its text: such a name
/// is found by reading its slot alone, without following the symbol to its text elsewhere in
/// memory (a miss for a name last used long ago). Longer names are compared with their text in
/// `names`.
#[derive(Clone, Default)]
pub(crate) struct NameIndex {
    slots: Vec<NameSlot>,
    len: usize,
}

/// Names of up to this many bytes are kept in their slot.
const INLINE_NAME: usize = 23;
/// `NameSlot::len` of a name longer than [`INLINE_NAME`].
const LONG_NAME: u8 = u8::MAX;

/// 32 bytes, two to a cache line.
#[derive(Clone, Copy)]
struct NameSlot {
    /// The symbol plus one; 0 is an empty slot.
    id: u32,
    hash: u32,
    /// The length of an inline name, or [`LONG_NAME`].
    len: u8,
    text: [u8; INLINE_NAME],
}

impl Probed for NameSlot {
    const VACANT: NameSlot = NameSlot::EMPTY;
    fn is_vacant(&self) -> bool {
        self.id == 0
    }
    fn hash(&self) -> u32 {
        self.hash
    }
}

impl NameSlot {
    const EMPTY: NameSlot = NameSlot {
        id: 0,
        hash: 0,
        len: 0,
        text: [0; INLINE_NAME],
    };

    fn new(sym: u32, hash: u32, name: &str) -> NameSlot {
        let mut slot = NameSlot {
            id: sym + 1,
            hash,
            len: LONG_NAME,
            text: [0; INLINE_NAME],
        };
        if name.len() <= INLINE_NAME {
            slot.len = name.len() as u8;
            slot.text[..name.len()].copy_from_slice(name.as_bytes());
        }
        slot
    }
}

impl NameIndex {
    /// The symbol whose name in `names` is `name`.
    #[inline]
    pub(crate) fn find(&self, names: &[Box<str>], name: &str) -> Option<Sym> {
        if self.slots.is_empty() {
            return None;
        }
        let hash = hash_name(name);
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = &self.slots[i];
            if slot.id == 0 {
                return None;
            }
            if slot.hash == hash {
                let same = if slot.len == LONG_NAME {
                    name.len() > INLINE_NAME && *names[slot.id as usize - 1] == *name
                } else {
                    usize::from(slot.len) == name.len()
                        && slot.text[..name.len()] == *name.as_bytes()
                };
                if same {
                    return Some(Sym(slot.id - 1));
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Indexes `sym`, whose name `names[sym]` is not indexed yet.
    pub(crate) fn insert(&mut self, names: &[Box<str>], sym: Sym) {
        let name = &names[sym.0 as usize];
        self.reserve(self.len + 1);
        place_slot(&mut self.slots, NameSlot::new(sym.0, hash_name(name), name));
        self.len += 1;
    }

    fn reserve(&mut self, total: usize) {
        reserve_slots(&mut self.slots, total);
    }

    /// The index of every name in `names`, placed in the order of the slots the names land in
    /// (a counting sort on the top bits of their home slot), so that building a large index
    /// writes memory in order rather than at random.
    pub(crate) fn build(names: &[Box<str>]) -> NameIndex {
        let mut index = NameIndex::default();
        index.reserve(names.len());
        let mask = index.slots.len() - 1;
        let shift = mask.count_ones().saturating_sub(16);
        let hashes: Vec<u32> = names.iter().map(|n| hash_name(n)).collect();
        let mut counts = vec![0u32; (mask >> shift) + 2];
        for h in &hashes {
            counts[((*h as usize & mask) >> shift) + 1] += 1;
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let mut order = vec![0u32; names.len()];
        for (id, h) in hashes.iter().enumerate() {
            let group = (*h as usize & mask) >> shift;
            order[counts[group] as usize] = id as u32;
            counts[group] += 1;
        }
        for id in order {
            let i = id as usize;
            place_slot(&mut index.slots, NameSlot::new(id, hashes[i], &names[i]));
        }
        index.len = names.len();
        index
    }
}

/// The default concurrency tag of a (project, environment, tenant), by their symbols: a cache
/// that spares a submission building the tag's text and looking it up by name. Open addressing
/// with the key in the slot, so a lookup reads one slot (and the next ones on a collision), never
/// a name's text. Like [`NameIndex`] it only says which symbol a tag already has: an entry is
/// added after the tag is interned by its text, nothing is ever removed (symbols are never freed),
/// and a restored state starts with it empty and fills it as tasks are submitted. It is never
/// iterated, compared or serialised.
#[derive(Clone, Default)]
pub(crate) struct TagIndex {
    slots: Vec<TagSlot>,
    len: usize,
}

/// `tag` is [`TagSlot::EMPTY`] in an empty slot; `tenant` is `u32::MAX` for no tenant.
#[derive(Clone, Copy)]
struct TagSlot {
    project: u32,
    environment: u32,
    tenant: u32,
    tag: u32,
}

impl TagSlot {
    const EMPTY: u32 = u32::MAX;
}

fn tag_key(project: Sym, environment: Sym, tenant: Option<Sym>) -> (u32, u32, u32, u32) {
    let tenant = tenant.map_or(u32::MAX, |t| t.0);
    let hash = Hasher::new(0x7467)
        .word(u64::from(project.0) << 32 | u64::from(environment.0))
        .word(u64::from(tenant))
        .finish();
    (hash, project.0, environment.0, tenant)
}

impl TagIndex {
    /// The default tag of this project, environment and tenant, if it was recorded.
    #[inline]
    pub(crate) fn find(&self, project: Sym, environment: Sym, tenant: Option<Sym>) -> Option<Sym> {
        if self.slots.is_empty() {
            return None;
        }
        let (hash, p, e, t) = tag_key(project, environment, tenant);
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot.tag == TagSlot::EMPTY {
                return None;
            }
            if slot.project == p && slot.environment == e && slot.tenant == t {
                return Some(Sym(slot.tag));
            }
            i = (i + 1) & mask;
        }
    }

    /// Records the default tag of a project, environment and tenant not recorded yet.
    pub(crate) fn insert(&mut self, project: Sym, environment: Sym, tenant: Option<Sym>, tag: Sym) {
        debug_assert!(self.find(project, environment, tenant).is_none());
        assert!(tag.0 != TagSlot::EMPTY, "symbols stay below u32::MAX");
        reserve_slots(&mut self.slots, self.len + 1);
        let (_, p, e, t) = tag_key(project, environment, tenant);
        place_slot(
            &mut self.slots,
            TagSlot {
                project: p,
                environment: e,
                tenant: t,
                tag: tag.0,
            },
        );
        self.len += 1;
    }
}

impl Probed for TagSlot {
    const VACANT: TagSlot = TagSlot {
        project: 0,
        environment: 0,
        tenant: 0,
        tag: TagSlot::EMPTY,
    };
    fn is_vacant(&self) -> bool {
        self.tag == TagSlot::EMPTY
    }
    fn hash(&self) -> u32 {
        let tenant = (self.tenant != u32::MAX).then_some(Sym(self.tenant));
        tag_key(Sym(self.project), Sym(self.environment), tenant).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_name_and_no_other() {
        let names: Vec<Box<str>> = (0..50_000)
            .map(|i| format!("project-{i}/env-{}", i % 7).into())
            .collect();
        let mut index = NameIndex::default();
        for sym in 0..names.len() {
            assert_eq!(index.find(&names, &names[sym]), None);
            index.insert(&names, Sym(sym as u32));
        }
        for (sym, name) in names.iter().enumerate() {
            assert_eq!(index.find(&names, name), Some(Sym(sym as u32)));
        }
        assert_eq!(index.find(&names, "project-50000/env-1"), None);
        let built = NameIndex::build(&names);
        for (sym, name) in names.iter().enumerate() {
            assert_eq!(built.find(&names, name), Some(Sym(sym as u32)));
        }
        assert_eq!(built.find(&names, "project-50000/env-1"), None);
        assert_eq!(index.find(&names, ""), None);
        // Long names (compared with their text) beside short ones (compared in the slot).
        let mut names = names;
        let mut index = built;
        for i in 0..2_000 {
            names.push(format!("a-long-name-of-more-than-23-bytes-{i}").into());
            index.insert(&names, Sym(names.len() as u32 - 1));
        }
        for (sym, name) in names.iter().enumerate() {
            assert_eq!(index.find(&names, name), Some(Sym(sym as u32)));
        }
        assert_eq!(
            index.find(&names, "a-long-name-of-more-than-23-bytes-x"),
            None
        );
        assert_eq!(index.find(&names, "exactly-23-bytes-long-n"), None);
        assert_ne!(hash_name("a"), hash_name("a\0"));
    }

    #[test]
    fn tag_index_finds_what_was_recorded() {
        let mut index = TagIndex::default();
        assert_eq!(index.find(Sym(1), Sym(2), None), None);
        for p in 0..3_000u32 {
            let tenant = (p % 3 == 0).then_some(Sym(p / 3));
            index.insert(Sym(p), Sym(p % 10), tenant, Sym(100_000 + p));
        }
        for p in 0..3_000u32 {
            let tenant = (p % 3 == 0).then_some(Sym(p / 3));
            assert_eq!(
                index.find(Sym(p), Sym(p % 10), tenant),
                Some(Sym(100_000 + p))
            );
            assert_eq!(index.find(Sym(p), Sym(p % 10 + 1), tenant), None);
            let other = if tenant.is_some() { None } else { Some(Sym(0)) };
            assert_eq!(index.find(Sym(p), Sym(p % 10), other), None);
        }
    }

    /// Removal keeps every other id findable, with hashes chosen to collide a lot.
    #[test]
    fn removes_without_losing_others() {
        let mut index = HashIndex::default();
        let mut live = std::collections::BTreeSet::new();
        let hash = |id: u32| id.wrapping_mul(2_654_435_761) % 37;
        let mut x: u64 = 1;
        for step in 0..20_000u32 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let id = ((x >> 33) % 300) as u32;
            if live.contains(&id) {
                index.remove(hash(id), id);
                live.remove(&id);
            } else {
                index.insert(hash(id), id);
                live.insert(id);
            }
            if step % 97 == 0 {
                for id in 0..300 {
                    let found = index.find(hash(id), |i| i == id);
                    assert_eq!(found.is_some(), live.contains(&id), "id {id}");
                }
            }
        }
    }
}
