//! The scenario TOML as written: the raw types serde reads it into, strictly (unknown fields are
//! refused), each value with its place in the file, and the custom deserializers for whole
//! numbers, name lists and the flattened `variables` table. Checking them is [`super::check`]'s
//! job.

use super::Span;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) task_cap: Option<Count<0>>,
    #[serde(default)]
    pub(super) targets: Vec<Spanned<RawTarget>>,
    #[serde(default)]
    pub(super) tasks: Vec<Spanned<RawTask>>,
    #[serde(default)]
    pub(super) events: Vec<Spanned<RawEvent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) name: Spanned<String>,
    pub(super) environments: NameList,
    pub(super) roles: NameList,
    #[serde(default)]
    pub(super) tenants: NameList,
    pub(super) capacity: Option<Spanned<Count<1>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTask {
    pub(super) name: Option<Spanned<String>>,
    pub(super) project: Spanned<String>,
    pub(super) release: Option<Spanned<String>>,
    pub(super) environment: Option<Spanned<String>>,
    pub(super) environments: Option<Spanned<NameList>>,
    pub(super) tenant: Option<Spanned<String>>,
    pub(super) tenants: Option<Spanned<NameList>>,
    #[serde(default)]
    pub(super) at_ms: Millis,
    #[serde(default)]
    pub(super) variables: Variables,
    #[serde(default)]
    pub(super) steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) name: Spanned<String>,
    pub(super) roles: NameList,
    pub(super) package: Option<Spanned<String>>,
    pub(super) lock: Option<Spanned<RawLock>>,
    pub(super) duration_ms: Millis,
    pub(super) acquire_ms: Option<Spanned<Millis>>,
    #[serde(default)]
    pub(super) fail_on: NameList,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLock {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) scope: RawScope,
    pub(super) capacity: Option<Spanned<Count<1>>>,
}

#[derive(Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawScope {
    #[default]
    Target,
    Cluster,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvent {
    pub(super) at_ms: Millis,
    pub(super) cancel: Option<Spanned<String>>,
    pub(super) agent_lost: Option<Spanned<String>>,
    pub(super) task_cap: Option<Count<0>>,
}

/// A whole number of milliseconds.
#[derive(Clone, Copy, Default)]
pub(super) struct Millis(pub(super) u64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Millis;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number of milliseconds, 0 or more")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Millis, E> {
                u64::try_from(v)
                    .map(Millis)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Millis, E> {
                Ok(Millis(v))
            }
        }
        deserializer.deserialize_u64(V)
    }
}

/// A whole number from `MIN` to `u32::MAX`.
#[derive(Clone, Copy)]
pub(super) struct Count<const MIN: u32>(pub(super) u32);

impl<'de, const MIN: u32> Deserialize<'de> for Count<MIN> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<const MIN: u32>;
        impl<const MIN: u32> Visitor<'_> for V<MIN> {
            type Value = Count<MIN>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a whole number from {MIN} to {}", u32::MAX)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count<MIN>, E> {
                match u32::try_from(v) {
                    Ok(n) if n >= MIN => Ok(Count(n)),
                    _ => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count<MIN>, E> {
                match u32::try_from(v) {
                    Ok(n) if n >= MIN => Ok(Count(n)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
                }
            }
        }
        deserializer.deserialize_u32(V::<MIN>)
    }
}

/// A list of names, each with its place in the file.
#[derive(Default)]
pub(super) struct NameList(pub(super) Vec<Spanned<String>>);

impl NameList {
    pub(super) fn names(&self) -> Vec<String> {
        self.0.iter().map(|n| n.get_ref().clone()).collect()
    }
}

impl<'de> Deserialize<'de> for NameList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NameList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of names, such as [\"web\", \"db\"]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NameList, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<Spanned<String>>()? {
                    names.push(name);
                }
                Ok(NameList(names))
            }
        }
        deserializer.deserialize_seq(V)
    }
}

/// The `variables` table, flattened: dotted names written bare are nested tables in TOML, and come
/// back together here. Each entry has the place of its name.
#[derive(Default)]
pub(super) struct Variables(pub(super) Vec<(String, Span, String)>);

impl<'de> Deserialize<'de> for Variables {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut out = Vec::new();
        deserializer.deserialize_map(TableVisitor {
            prefix: String::new(),
            out: &mut out,
        })?;
        Ok(Variables(out))
    }
}

struct TableVisitor<'a> {
    prefix: String,
    out: &'a mut Vec<(String, Span, String)>,
}

impl<'de> Visitor<'de> for TableVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table of variable names and values, such as { OctopusBypassDeploymentMutex = \"True\" }")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let name = if self.prefix.is_empty() {
                key.get_ref().clone()
            } else {
                format!("{}.{}", self.prefix, key.get_ref())
            };
            map.next_value_seed(ValueSeed {
                name,
                key: key.span(),
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }
}

struct ValueSeed<'a> {
    name: String,
    key: Span,
    out: &'a mut Vec<(String, Span, String)>,
}

impl<'de> de::DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, a boolean or a whole number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.out.push((self.name, self.key, v.to_string()));
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        let value = if v { "True" } else { "False" };
        self.out.push((self.name, self.key, value.to_string()));
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.out.push((self.name, self.key, v.to_string()));
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.out.push((self.name, self.key, v.to_string()));
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        TableVisitor {
            prefix: self.name,
            out: self.out,
        }
        .visit_map(map)
    }
}
