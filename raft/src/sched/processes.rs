//! [`ProcessIds`]: which process record runs a given list of steps, so that tasks running the same
//! steps share one record.
//!
//! The snapshot holds this as a map from steps to process id, in step order; that map is kept as it
//! was. Lookups go through a hash index over it instead of comparing steps down the B-tree; the index
//! is never iterated or serialised, and a restored state rebuilds it from the map.

use crate::sched::dense::DenseMap;
use crate::sched::ids::Sym;
use crate::sched::names::{HashIndex, Hasher};
use crate::sched::state::{Process, Step};
use crate::sched::wire::Pairs;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// The process id of each distinct list of steps. See the module documentation.
#[derive(Clone, Default)]
pub(crate) struct ProcessIds {
    map: BTreeMap<Vec<Step>, u32>,
    index: HashIndex,
}

/// What identifies a step, borrowed: so that a submission can look its process up before (and
/// without) building the steps.
#[derive(Clone, Copy)]
pub(crate) struct StepKey<'a> {
    pub name: Sym,
    /// Sorted, without duplicates.
    pub roles: &'a [Sym],
    pub max_parallelism: u32,
    pub package: bool,
    /// Name, per target, capacity.
    pub lock: Option<(Sym, bool, u32)>,
}

impl<'a> StepKey<'a> {
    fn of(step: &'a Step) -> StepKey<'a> {
        StepKey {
            name: step.name,
            roles: &step.roles,
            max_parallelism: step.max_parallelism,
            package: step.package,
            lock: step
                .lock
                .as_ref()
                .map(|l| (l.name, l.per_target, l.capacity)),
        }
    }

    fn matches(&self, step: &Step) -> bool {
        let lock = step
            .lock
            .as_ref()
            .map(|l| (l.name, l.per_target, l.capacity));
        self.name == step.name
            && self.roles == &step.roles[..]
            && self.max_parallelism == step.max_parallelism
            && self.package == step.package
            && self.lock == lock
    }
}

/// A fixed hash of a list of steps.
fn hash_steps<'a>(steps: impl ExactSizeIterator<Item = StepKey<'a>>) -> u32 {
    let mut h = Hasher::new(steps.len() as u64);
    for step in steps {
        h = h
            .word(u64::from(step.name.0) << 32 | u64::from(step.max_parallelism))
            .word(step.roles.len() as u64 | u64::from(step.package) << 32);
        for role in step.roles {
            h = h.word(u64::from(role.0));
        }
        if let Some((name, per_target, capacity)) = step.lock {
            h = h
                .word(u64::from(name.0) << 32 | u64::from(capacity))
                .word(1 + u64::from(per_target));
        }
    }
    h.finish()
}

fn hash_of(steps: &[Step]) -> u32 {
    hash_steps(steps.iter().map(StepKey::of))
}

impl ProcessIds {
    /// The process running `steps`.
    pub(crate) fn get(&self, steps: &[Step], processes: &DenseMap<u32, Process>) -> Option<u32> {
        self.index
            .find(hash_of(steps), |id| processes[&id].steps == steps)
    }

    /// The process whose steps match `keys`.
    pub(crate) fn find<'a>(
        &self,
        keys: impl ExactSizeIterator<Item = StepKey<'a>> + Clone,
        processes: &DenseMap<u32, Process>,
    ) -> Option<u32> {
        self.index.find(hash_steps(keys.clone()), |id| {
            let steps = &processes[&id].steps;
            steps.len() == keys.len() && keys.clone().zip(steps).all(|(k, s)| k.matches(s))
        })
    }

    /// Records a new process.
    pub(crate) fn insert(&mut self, steps: Vec<Step>, id: u32) {
        self.index.insert(hash_of(&steps), id);
        let old = self.map.insert(steps, id);
        debug_assert!(old.is_none());
    }

    /// Forgets a process.
    pub(crate) fn remove(&mut self, steps: &[Step], id: u32) {
        self.index.remove(hash_of(steps), id);
        self.map.remove(steps);
    }
}

impl PartialEq for ProcessIds {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl Eq for ProcessIds {}

impl std::fmt::Debug for ProcessIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.map.fmt(f)
    }
}

/// Encoded as the map it always was.
impl Serialize for ProcessIds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ProcessIds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs: Pairs<Vec<Step>, u32> = Pairs::deserialize(deserializer)?;
        let mut index = HashIndex::default();
        for (steps, id) in &pairs.0 {
            index.insert(hash_of(steps), *id);
        }
        Ok(ProcessIds {
            map: pairs.0.into_iter().collect(),
            index,
        })
    }
}
