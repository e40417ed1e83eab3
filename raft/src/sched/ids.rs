//! Identifiers and the symbol table.
//!
//! Every name the core compares (project, environment, tenant, role, target, concurrency tag, lock
//! name) is interned once as a [`Sym`], so queues and locks hold 4-byte keys instead of strings and
//! comparisons never allocate. Symbols are never freed: their number is bounded by the distinct names
//! of the deployment model, and [`SYMBOLS_MAX`] turns a runaway into a clean error.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Upper bound on distinct interned names.
pub const SYMBOLS_MAX: usize = 4_000_000;
/// Upper bound on the length of any name, in bytes.
pub const NAME_BYTES_MAX: usize = 256;

/// An interned name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sym(pub u32);

/// A task: one deployment of one release of a project to one environment (and tenant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId(pub u64);

/// A unit: one execution of one step (or one package acquisition) on one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UnitId(pub u64);

/// A registered target (one agent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TargetId(pub u32);

/// A request in the lock table. Ids are handed out in one increasing sequence, so the id is also the
/// request's place in every FIFO queue it joins: a smaller id was asked for earlier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReqId(pub u64);

/// A fencing token: strictly increasing across the cluster, one per grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FencingToken(pub u64);

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl std::fmt::Display for UnitId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Interned names. Deterministic: the same sequence of `intern` calls gives the same symbols.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symbols {
    names: Vec<Box<str>>,
    by_name: BTreeMap<Box<str>, Sym>,
}

impl Symbols {
    /// The symbol of `name`, if it was interned.
    pub fn get(&self, name: &str) -> Option<Sym> {
        self.by_name.get(name).copied()
    }

    /// Interns `name`. The caller has checked it against [`NAME_BYTES_MAX`] and [`SYMBOLS_MAX`].
    pub(crate) fn intern(&mut self, name: &str) -> Sym {
        if let Some(sym) = self.by_name.get(name) {
            return *sym;
        }
        assert!(
            self.names.len() < SYMBOLS_MAX,
            "symbol table full: callers check first"
        );
        let sym = Sym(self.names.len() as u32);
        self.names.push(name.into());
        self.by_name.insert(name.into(), sym);
        sym
    }

    /// Whether interning one more new name stays within [`SYMBOLS_MAX`].
    pub(crate) fn has_room(&self, extra: usize) -> bool {
        self.names.len() + extra <= SYMBOLS_MAX
    }

    /// The text of a symbol.
    pub fn name(&self, sym: Sym) -> &str {
        &self.names[sym.0 as usize]
    }

    /// Number of interned names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether nothing was interned yet.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}
