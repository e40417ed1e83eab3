//! [`DenseMap`]: a map from ids handed out in one increasing sequence (tasks, units, lock requests)
//! to their records, with `O(1)` lookups and iteration in id order.
//!
//! The ids are split into pages of [`PAGE`] consecutive ids; a page is allocated while any of its
//! ids is live. The pages sit in a `VecDeque` that spans a window of page numbers, so finding an
//! id's page is an index. Live ids are mostly recent and close together, so the window is mostly
//! full. An id that outlives its neighbours by far (a lock a client holds for days while millions
//! of requests come and go) would stretch the window over millions of empty pages, so the window is
//! kept at most about twice as long as the number of pages in it: pages left far behind move to a
//! B-tree of outliers (and a page far ahead of the window starts a new one). Memory therefore stays
//! proportional to the live ids, whatever their spread.
//!
//! Everything about it is deterministic: iteration is in id order, and it serialises exactly as a
//! `BTreeMap` of the same entries would (a map in key order), so snapshots are unchanged.

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;

/// Ids per page.
pub(crate) const PAGE: usize = 64;

/// An id type whose values are handed out in one increasing sequence.
pub(crate) trait DenseKey: Copy {
    /// The id as a number.
    fn index(self) -> u64;
    /// The id of a number.
    fn from_index(index: u64) -> Self;
}

macro_rules! dense_key {
    ($($t:ty),*) => {$(
        impl DenseKey for $t {
            fn index(self) -> u64 {
                self.0
            }
            fn from_index(index: u64) -> Self {
                Self(index)
            }
        }
    )*};
}
dense_key!(
    crate::sched::ids::TaskId,
    crate::sched::ids::UnitId,
    crate::sched::ids::ReqId
);

impl DenseKey for crate::sched::ids::TargetId {
    fn index(self) -> u64 {
        u64::from(self.0)
    }
    fn from_index(index: u64) -> Self {
        Self(index as u32)
    }
}

/// Process ids.
impl DenseKey for u32 {
    fn index(self) -> u64 {
        u64::from(self)
    }
    fn from_index(index: u64) -> Self {
        index as u32
    }
}

/// A page: its slots on the heap, and how many are live. The page record itself sits in the
/// window (or the outliers), so finding a slot is one load from the window and one from the heap.
#[derive(Clone, Debug)]
struct Page<V> {
    live: u32,
    slots: Box<[Option<V>; PAGE]>,
}

impl<V> Page<V> {
    /// An empty page, built in place on the heap (a `Box::new` of the array would build it on the
    /// stack and copy it, which costs more than the rest of the page's life for large values).
    fn new() -> Page<V> {
        let mut slots = Vec::with_capacity(PAGE);
        slots.resize_with(PAGE, || None);
        let slots: Box<[Option<V>]> = slots.into_boxed_slice();
        Page {
            live: 0,
            slots: slots.try_into().ok().expect("PAGE slots"),
        }
    }
}

/// Empty pages a window may hold beyond the pages in it.
const SLACK: usize = 64;

/// A map from dense ids to values. See the module documentation.
#[derive(Clone)]
pub(crate) struct DenseMap<K, V> {
    /// The page number (id / [`PAGE`]) of `window[0]`.
    base: u64,
    /// Pages `base..base + window.len()`; `None` for a page without live ids. Never starts or
    /// ends with `None`.
    window: VecDeque<Option<Page<V>>>,
    /// Pages in the window.
    in_window: usize,
    /// Pages below `base` that are far from the others.
    outliers: BTreeMap<u64, Page<V>>,
    len: usize,
    /// The last page emptied, kept for the next page needed (a map whose ids move forward empties
    /// one page as it fills another).
    spare: Option<Page<V>>,
    key: PhantomData<fn() -> K>,
}

impl<K: DenseKey, V> Default for DenseMap<K, V> {
    fn default() -> Self {
        DenseMap::new()
    }
}

fn split(id: u64) -> (u64, usize) {
    (id / PAGE as u64, (id % PAGE as u64) as usize)
}

impl<K: DenseKey, V> DenseMap<K, V> {
    /// An empty map.
    pub(crate) fn new() -> Self {
        DenseMap {
            base: 0,
            window: VecDeque::new(),
            in_window: 0,
            outliers: BTreeMap::new(),
            len: 0,
            spare: None,
            key: PhantomData,
        }
    }

    /// An empty page: the spare one if there is one.
    fn fresh_page(&mut self) -> Page<V> {
        self.spare.take().unwrap_or_else(Page::new)
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn page(&self, number: u64) -> Option<&Page<V>> {
        match number.checked_sub(self.base) {
            Some(i) => self.window.get(usize::try_from(i).ok()?)?.as_ref(),
            None => self.outliers.get(&number),
        }
    }

    #[inline]
    fn page_mut(&mut self, number: u64) -> Option<&mut Page<V>> {
        match number.checked_sub(self.base) {
            Some(i) => self.window.get_mut(usize::try_from(i).ok()?)?.as_mut(),
            None => self.outliers.get_mut(&number),
        }
    }

    /// The value of an id.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        let (number, slot) = split(key.index());
        self.page(number)?.slots[slot].as_ref()
    }

    /// The value of an id, to change it.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let (number, slot) = split(key.index());
        self.page_mut(number)?.slots[slot].as_mut()
    }

    /// Whether the id has a value.
    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Creates the page of `number`.
    fn page_for_insert(&mut self, number: u64) {
        let below_outliers = self
            .outliers
            .last_key_value()
            .is_some_and(|(last, _)| number <= *last);
        if self.window.is_empty() && !below_outliers {
            self.base = number;
        }
        if number < self.base {
            let gap = (self.base - number) as usize;
            if below_outliers || gap > self.in_window + SLACK {
                let page = self.fresh_page();
                self.outliers.entry(number).or_insert(page);
                return;
            }
            for _ in 0..gap {
                self.window.push_front(None);
            }
            self.base = number;
        }
        let mut i = (number - self.base) as usize;
        if i >= self.window.len() && i - self.window.len() > self.in_window + SLACK {
            // Far ahead of the window: what it holds becomes outliers, and a new window starts.
            for (at, page) in std::mem::take(&mut self.window).into_iter().enumerate() {
                if let Some(page) = page {
                    self.outliers.insert(self.base + at as u64, page);
                }
            }
            self.in_window = 0;
            self.base = number;
            i = 0;
        }
        while self.window.len() <= i {
            self.window.push_back(None);
        }
        if self.window[i].is_none() {
            self.window[i] = Some(self.fresh_page());
            self.in_window += 1;
        }
    }

    /// Sets the value of an id; returns the value it replaces.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let (number, slot) = split(key.index());
        let page = match self.page_mut(number) {
            Some(page) => page,
            None => self.new_page(number),
        };
        let entry = &mut page.slots[slot];
        if entry.is_some() {
            return entry.replace(value);
        }
        // A new id (the usual case): written in place, without moving an old value out.
        *entry = Some(value);
        page.live += 1;
        self.len += 1;
        None
    }

    /// Makes the page of `number`, which does not exist.
    #[inline(never)]
    fn new_page(&mut self, number: u64) -> &mut Page<V> {
        self.page_for_insert(number);
        self.compact();
        self.page_mut(number).expect("just made")
    }

    /// Removes the value of an id.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let (number, slot) = split(key.index());
        let page = self.page_mut(number)?;
        let old = page.slots[slot].take()?;
        page.live -= 1;
        let emptied = page.live == 0;
        self.len -= 1;
        if emptied {
            self.drop_page(number);
        }
        Some(old)
    }

    /// Removes the value of an id and drops it where it lies (unlike [`DenseMap::remove`], which
    /// moves it out first: for a large value that reads all of it); returns whether there was one.
    pub(crate) fn delete(&mut self, key: &K) -> bool {
        let (number, slot) = split(key.index());
        let Some(page) = self.page_mut(number) else {
            return false;
        };
        if page.slots[slot].is_none() {
            return false;
        }
        page.slots[slot] = None;
        page.live -= 1;
        let emptied = page.live == 0;
        self.len -= 1;
        if emptied {
            self.drop_page(number);
        }
        true
    }

    #[inline(never)]
    fn drop_page(&mut self, number: u64) {
        let page = match number.checked_sub(self.base) {
            Some(i) => {
                self.in_window -= 1;
                self.window[i as usize].take()
            }
            None => self.outliers.remove(&number),
        };
        if self.spare.is_none() {
            self.spare = page;
        }
        self.compact();
    }

    /// Trims empty pages off the window's ends, and moves pages off its front to the outliers
    /// while it is mostly empty.
    fn compact(&mut self) {
        loop {
            while let Some(None) = self.window.front() {
                self.window.pop_front();
                self.base += 1;
            }
            while let Some(None) = self.window.back() {
                self.window.pop_back();
            }
            if self.window.len() <= 2 * self.in_window + SLACK {
                return;
            }
            let page = self.window.pop_front().flatten().expect("trimmed");
            self.outliers.insert(self.base, page);
            self.in_window -= 1;
            self.base += 1;
        }
    }

    /// The entries in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (K, &V)> + '_ {
        let outliers = self.outliers.iter().map(|(n, p)| (*n, p));
        let window = self
            .window
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((self.base + i as u64, p.as_ref()?)));
        outliers.chain(window).flat_map(|(number, page)| {
            page.slots.iter().enumerate().filter_map(move |(s, v)| {
                Some((K::from_index(number * PAGE as u64 + s as u64), v.as_ref()?))
            })
        })
    }

    /// The values in id order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// Pages in the window, the window's length, and outlier pages, for consistency checks.
    #[cfg(test)]
    fn shape(&self) -> (usize, usize, usize) {
        (self.in_window, self.window.len(), self.outliers.len())
    }
}

impl<K: DenseKey, V> std::ops::Index<&K> for DenseMap<K, V> {
    type Output = V;

    fn index(&self, key: &K) -> &V {
        self.get(key).expect("no entry for the id")
    }
}

impl<K: DenseKey, V: PartialEq> PartialEq for DenseMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .iter()
                .zip(other.iter())
                .all(|((a, x), (b, y))| a.index() == b.index() && x == y)
    }
}

impl<K: DenseKey, V: Eq> Eq for DenseMap<K, V> {}

impl<K: DenseKey + std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for DenseMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Serialised as a map in id order, exactly like a `BTreeMap<K, V>`.
impl<K: DenseKey + Serialize, V: Serialize> Serialize for DenseMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len))?;
        for (key, value) in self.iter() {
            map.serialize_entry(&key, value)?;
        }
        map.end()
    }
}

impl<'de, K, V> Deserialize<'de> for DenseMap<K, V>
where
    K: DenseKey + Deserialize<'de>,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<K, V>(PhantomData<fn() -> (K, V)>);

        impl<'de, K, V> Visitor<'de> for Entries<K, V>
        where
            K: DenseKey + Deserialize<'de>,
            V: Deserialize<'de>,
        {
            type Value = DenseMap<K, V>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = DenseMap::new();
                while let Some((key, value)) = access.next_entry::<K, V>()? {
                    map.insert(key, value);
                }
                Ok(map)
            }
        }

        deserializer.deserialize_map(Entries(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::ids::TaskId;
    use std::collections::BTreeMap;

    /// The map agrees with a `BTreeMap` under inserts and removes in any order, in content, in
    /// iteration order and in its encoding, and frees pages that hold nothing.
    #[test]
    fn behaves_like_a_btree_map() {
        let mut dense: DenseMap<TaskId, u32> = DenseMap::new();
        let mut tree: BTreeMap<TaskId, u32> = BTreeMap::new();
        let mut x: u64 = 7;
        for step in 0..20_000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let id = TaskId((x >> 33) % 1_000 + u64::from(step / 10));
            if x & 1 == 0 {
                assert_eq!(dense.insert(id, step), tree.insert(id, step));
            } else {
                assert_eq!(dense.remove(&id), tree.remove(&id));
            }
            assert_eq!(dense.get(&id), tree.get(&id));
            assert_eq!(dense.len(), tree.len());
        }
        assert!(dense.iter().eq(tree.iter().map(|(k, v)| (*k, v))));
        let config = bincode::config::standard();
        let a = bincode::serde::encode_to_vec(&dense, config).unwrap();
        assert_eq!(a, bincode::serde::encode_to_vec(&tree, config).unwrap());
        let (back, _): (DenseMap<TaskId, u32>, _) =
            bincode::serde::decode_from_slice(&a, config).unwrap();
        assert_eq!(back, dense);
        let keys: Vec<TaskId> = tree.keys().copied().collect();
        for id in keys {
            dense.remove(&id);
        }
        assert_eq!(dense.shape(), (0, 0, 0));
    }

    /// Ids far apart (one that lives on while millions pass, and damaged input) cost memory for
    /// the pages that hold them, not for the span between them; the map still agrees with a
    /// `BTreeMap` throughout.
    #[test]
    fn memory_follows_live_ids_not_their_spread() {
        let mut dense: DenseMap<TaskId, u64> = DenseMap::new();
        let mut tree: BTreeMap<TaskId, u64> = BTreeMap::new();
        let mut both = |id: u64, insert: bool| {
            let id = TaskId(id);
            if insert {
                assert_eq!(dense.insert(id, id.0), tree.insert(id, id.0));
            } else {
                assert_eq!(dense.remove(&id), tree.remove(&id));
            }
        };
        both(5, true);
        for id in 1_000..200_000u64 {
            both(id, true);
            if id >= 1_100 {
                both(id - 100, false);
            }
        }
        both(u64::MAX / 2, true);
        both(3, true);
        both(1 << 40, true);
        let (in_window, window, outliers) = dense.shape();
        assert!(window <= 2 * in_window + SLACK, "{window} {in_window}");
        assert!(outliers <= 4, "{outliers}");
        assert!(dense.iter().eq(tree.iter().map(|(k, v)| (*k, v))));
        for id in [3, 5, 199_950, 1 << 40, u64::MAX / 2, 7, 1_000] {
            assert_eq!(dense.get(&TaskId(id)), tree.get(&TaskId(id)));
        }
        let keys: Vec<TaskId> = tree.keys().copied().collect();
        for id in keys {
            assert_eq!(dense.remove(&id), tree.remove(&id));
        }
        assert_eq!(dense.shape(), (0, 0, 0));
    }
}
