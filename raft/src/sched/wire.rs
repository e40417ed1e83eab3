//! Helpers for decoding snapshots quickly without changing their bytes: [`Pairs`] reads an encoded
//! map (as written from a `BTreeMap`, in key order) into a `Vec`, from which the decoder builds its
//! own structure in bulk instead of inserting entry by entry.

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::marker::PhantomData;

/// The entries of an encoded map, in strictly increasing key order with one entry per key (what a
/// `BTreeMap` decoded from the same bytes would hold: a later duplicate wins).
#[derive(Debug)]
pub(crate) struct Pairs<K, V>(pub Vec<(K, V)>);

impl<K: Ord, V> Pairs<K, V> {
    /// Sorts by key (stably) and keeps the last of equal keys; nothing to do for a snapshot, whose
    /// maps are written in order.
    fn normalise(&mut self) {
        if self.0.windows(2).all(|w| w[0].0 < w[1].0) {
            return;
        }
        self.0.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(K, V)> = Vec::with_capacity(self.0.len());
        for pair in self.0.drain(..) {
            match out.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => out.push(pair),
            }
        }
        self.0 = out;
    }
}

/// Capacity to reserve for a length announced by the input: at most 1 MiB up front, so that a
/// damaged length cannot make the decoder allocate much before it fails.
pub(crate) fn cautious<T>(hint: Option<usize>) -> usize {
    let most = (1 << 20) / std::mem::size_of::<T>().max(1);
    hint.unwrap_or(0).min(most)
}

impl<'de, K, V> Deserialize<'de> for Pairs<K, V>
where
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<K, V>(PhantomData<fn() -> (K, V)>);

        impl<'de, K, V> Visitor<'de> for Entries<K, V>
        where
            K: Deserialize<'de> + Ord,
            V: Deserialize<'de>,
        {
            type Value = Pairs<K, V>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::with_capacity(cautious::<(K, V)>(access.size_hint()));
                while let Some(pair) = access.next_entry::<K, V>()? {
                    pairs.push(pair);
                }
                let mut pairs = Pairs(pairs);
                pairs.normalise();
                Ok(pairs)
            }
        }

        deserializer.deserialize_map(Entries(PhantomData))
    }
}

/// A string decoded straight into a `Box<str>`: from the input's bytes when the format lends them
/// (bincode does), without the zero-filled buffer and copy of decoding a `String` first.
pub(crate) struct BoxStr(pub Box<str>);

impl<'de> Deserialize<'de> for BoxStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;

        impl Visitor<'_> for Text {
            type Value = BoxStr;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<BoxStr, E> {
                Ok(BoxStr(text.into()))
            }

            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<BoxStr, E> {
                Ok(BoxStr(text.into_boxed_str()))
            }
        }

        deserializer.deserialize_str(Text)
    }
}

impl PartialEq for BoxStr {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for BoxStr {}

impl PartialOrd for BoxStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BoxStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// For `#[serde(deserialize_with)]` on a `Box<str>` field; see [`BoxStr`].
pub(crate) fn boxed_str<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Box<str>, D::Error> {
    BoxStr::deserialize(deserializer).map(|s| s.0)
}
