//! [`Candidates`]: the lock table's grant candidates (waiting requests admissible on every claim),
//! in id order. There are almost always none or a few, taken smallest first, so they live in a
//! `Vec` kept in descending order (taking the smallest is a `pop`, and a new request, the largest
//! id, is an insert at the front of a short vector); past [`SMALL_MAX`] they move to a B-tree, so
//! that a burst of candidates costs `O(log n)` each. It reads, compares and serialises exactly as
//! the `BTreeSet<ReqId>` it replaces.

use crate::sched::ids::ReqId;
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};
use std::collections::BTreeSet;

/// Most candidates kept in the vector.
const SMALL_MAX: usize = 64;

/// Grant candidates by id. See the module documentation.
#[derive(Clone, Debug)]
pub(crate) enum Candidates {
    /// Descending.
    Small(Vec<ReqId>),
    Big(BTreeSet<ReqId>),
}

impl Default for Candidates {
    fn default() -> Self {
        Candidates::Small(Vec::new())
    }
}

impl Candidates {
    pub(crate) fn len(&self) -> usize {
        match self {
            Candidates::Small(v) => v.len(),
            Candidates::Big(s) => s.len(),
        }
    }

    pub(crate) fn contains(&self, id: &ReqId) -> bool {
        match self {
            Candidates::Small(v) => v.binary_search_by(|x| id.cmp(x)).is_ok(),
            Candidates::Big(s) => s.contains(id),
        }
    }

    /// Adds `id`; returns whether it was new.
    pub(crate) fn insert(&mut self, id: ReqId) -> bool {
        match self {
            Candidates::Small(v) => match v.binary_search_by(|x| id.cmp(x)) {
                Ok(_) => false,
                Err(at) => {
                    if v.len() < SMALL_MAX {
                        v.insert(at, id);
                    } else {
                        let mut set: BTreeSet<ReqId> = v.drain(..).collect();
                        set.insert(id);
                        *self = Candidates::Big(set);
                    }
                    true
                }
            },
            Candidates::Big(s) => s.insert(id),
        }
    }

    /// Removes `id`; returns whether it was there.
    pub(crate) fn remove(&mut self, id: &ReqId) -> bool {
        match self {
            Candidates::Small(v) => match v.binary_search_by(|x| id.cmp(x)) {
                Ok(at) => {
                    v.remove(at);
                    true
                }
                Err(_) => false,
            },
            Candidates::Big(s) => {
                let removed = s.remove(id);
                self.shrink();
                removed
            }
        }
    }

    /// Takes the smallest id.
    pub(crate) fn pop_first(&mut self) -> Option<ReqId> {
        match self {
            Candidates::Small(v) => v.pop(),
            Candidates::Big(s) => {
                let first = s.pop_first();
                self.shrink();
                first
            }
        }
    }

    /// Back to the vector once the B-tree is short again.
    fn shrink(&mut self) {
        if let Candidates::Big(s) = self {
            if s.len() < SMALL_MAX / 2 {
                *self = Candidates::Small(s.iter().rev().copied().collect());
            }
        }
    }

    /// The ids in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &ReqId> + '_ {
        let (small, big) = match self {
            Candidates::Small(v) => (Some(v.iter().rev()), None),
            Candidates::Big(s) => (None, Some(s.iter())),
        };
        small.into_iter().flatten().chain(big.into_iter().flatten())
    }
}

impl FromIterator<ReqId> for Candidates {
    fn from_iter<I: IntoIterator<Item = ReqId>>(iter: I) -> Self {
        let mut candidates = Candidates::default();
        for id in iter {
            candidates.insert(id);
        }
        candidates
    }
}

impl From<BTreeSet<ReqId>> for Candidates {
    fn from(set: BTreeSet<ReqId>) -> Self {
        if set.len() <= SMALL_MAX {
            Candidates::Small(set.into_iter().rev().collect())
        } else {
            Candidates::Big(set)
        }
    }
}

impl PartialEq for Candidates {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Candidates {}

/// As a `BTreeSet<ReqId>`: a sequence in increasing order.
impl Serialize for Candidates {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for id in self.iter() {
            seq.serialize_element(id)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agrees with a `BTreeSet` through growth into a B-tree and back.
    #[test]
    fn behaves_like_a_btree_set() {
        let mut ours = Candidates::default();
        let mut theirs = BTreeSet::new();
        let mut x: u64 = 7;
        for step in 0..50_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let id = ReqId((x >> 33) % 300);
            match (x >> 20) % 4 {
                0 | 1 if step % 5000 < 4000 => assert_eq!(ours.insert(id), theirs.insert(id)),
                2 => assert_eq!(ours.remove(&id), theirs.remove(&id)),
                _ => assert_eq!(ours.pop_first(), theirs.pop_first()),
            }
            assert_eq!(ours.len(), theirs.len());
            assert_eq!(ours.contains(&id), theirs.contains(&id));
            if step % 97 == 0 {
                assert!(ours.iter().eq(theirs.iter()));
                assert_eq!(ours, Candidates::from(theirs.clone()));
                let a = bincode::serde::encode_to_vec(&ours, bincode::config::standard());
                let b = bincode::serde::encode_to_vec(&theirs, bincode::config::standard());
                assert_eq!(a.unwrap(), b.unwrap());
            }
        }
    }
}
