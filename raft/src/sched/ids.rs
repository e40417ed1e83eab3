//! Identifiers and the symbol table.
//!
//! Every name the core compares (project, environment, tenant, role, target, concurrency tag, lock
//! name) is interned once as a [`Sym`], so queues and locks hold 4-byte keys instead of strings and
//! comparisons never allocate. Symbols are never freed: their number is bounded by the distinct names
//! of the deployment model, and [`SYMBOLS_MAX`] turns a runaway into a clean error.

use crate::sched::names::{NameIndex, TagIndex};
use crate::sched::wire::{BoxStr, Pairs};
use serde::de::Error as _;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
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
///
/// `names` holds the text of each symbol; `by_name` is the same names in sorted order, which the
/// snapshot records (so its bytes stay as they were). Lookups go through `index`, a hash index
/// over `names` that is never iterated, never serialised and rebuilt on restore: it changes only
/// how fast a name is found, never which symbol it is.
#[derive(Clone, Default)]
pub struct Symbols {
    names: Vec<Box<str>>,
    by_name: BTreeMap<Box<str>, Sym>,
    index: NameIndex,
    /// Default concurrency tags by (project, environment, tenant): a cache, see [`TagIndex`].
    tags: TagIndex,
}

impl Symbols {
    /// The symbol of `name`, if it was interned.
    pub fn get(&self, name: &str) -> Option<Sym> {
        self.index.find(&self.names, name)
    }

    /// Interns `name`. The caller has checked it against [`NAME_BYTES_MAX`] and [`SYMBOLS_MAX`].
    pub(crate) fn intern(&mut self, name: &str) -> Sym {
        match self.get(name) {
            Some(sym) => sym,
            None => self.push(name.into()),
        }
    }

    /// Interns a name the caller built, reusing its allocation when the name is new.
    pub(crate) fn intern_owned(&mut self, name: String) -> Sym {
        match self.get(&name) {
            Some(sym) => sym,
            None => self.push(name.into_boxed_str()),
        }
    }

    /// The default tag of a project, environment and tenant, if [`Symbols::record_default_tag`]
    /// recorded it (since the state was built or restored).
    #[inline]
    pub(crate) fn default_tag(
        &self,
        project: Sym,
        environment: Sym,
        tenant: Option<Sym>,
    ) -> Option<Sym> {
        self.tags.find(project, environment, tenant)
    }

    /// Records that `tag` is the (interned) default tag of a project, environment and tenant.
    pub(crate) fn record_default_tag(
        &mut self,
        project: Sym,
        environment: Sym,
        tenant: Option<Sym>,
        tag: Sym,
    ) {
        self.tags.insert(project, environment, tenant, tag);
    }

    fn push(&mut self, name: Box<str>) -> Sym {
        assert!(
            self.names.len() < SYMBOLS_MAX,
            "symbol table full: callers check first"
        );
        let sym = Sym(self.names.len() as u32);
        self.by_name.insert(name.clone(), sym);
        self.names.push(name);
        self.index.insert(&self.names, sym);
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

    /// The names by symbol, and the symbols by name (in name order), for the encoder.
    pub(crate) fn parts(&self) -> (&[Box<str>], &BTreeMap<Box<str>, Sym>) {
        (&self.names, &self.by_name)
    }

    /// Whether nothing was interned yet.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Equal when the same names were interned in the same order (`by_name` and `index` follow).
impl PartialEq for Symbols {
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names
    }
}

impl Eq for Symbols {}

impl std::fmt::Debug for Symbols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbols")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// Encoded as it always was: `names`, then `by_name` (a map in name order).
impl Serialize for Symbols {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("Symbols", 2)?;
        out.serialize_field("names", &self.names)?;
        out.serialize_field("by_name", &self.by_name)?;
        out.end()
    }
}

impl<'de> Deserialize<'de> for Symbols {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename = "Symbols")]
        struct Wire {
            names: Vec<BoxStr>,
            by_name: Pairs<BoxStr, Sym>,
        }
        let wire = Wire::deserialize(deserializer)?;
        let names: Vec<Box<str>> = wire.names.into_iter().map(|n| n.0).collect();
        // The encoded `by_name` is sorted, so the B-tree is built in bulk.
        let by_name: BTreeMap<Box<str>, Sym> =
            wire.by_name.0.into_iter().map(|(n, s)| (n.0, s)).collect();
        Symbols::from_parts(names, by_name).map_err(D::Error::custom)
    }
}

impl Symbols {
    /// The table of decoded `names` and `by_name`, with its index built.
    pub(crate) fn from_parts(
        names: Vec<Box<str>>,
        by_name: BTreeMap<Box<str>, Sym>,
    ) -> Result<Symbols, String> {
        if by_name.len() != names.len() {
            return Err(format!(
                "{} names but {} in the name index",
                names.len(),
                by_name.len()
            ));
        }
        let index = NameIndex::build(&names);
        Ok(Symbols {
            names,
            by_name,
            index,
            tags: TagIndex::default(),
        })
    }
}
