//! Names the field at a place in the TOML text (`projects[0].steps[1].roles`), for the errors that
//! toml itself reports (unknown fields, wrong types) with a position but without a path. The text
//! is read again into a tree of keys and values that only remembers where each one is.

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use toml::Spanned;

enum Node {
    Table(Vec<(Spanned<String>, Spanned<Node>)>),
    Array(Vec<Spanned<Node>>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Node>>()? {
                    items.push(item);
                }
                Ok(Node::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<Spanned<Node>>()?;
                    entries.push((key, value));
                }
                Ok(Node::Table(entries))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The path of the narrowest key or value of `text` whose place holds `span.start`, or an empty
/// string when the text cannot be read or nothing holds it. (The places toml gives to tables of an
/// array of tables do not cover their sub-tables, so the narrowest place is searched in the whole
/// tree rather than by descending.)
pub(super) fn field_at(text: &str, span: &std::ops::Range<usize>) -> String {
    let Ok(root) = toml::from_str::<Node>(text) else {
        return String::new();
    };
    let mut best: Option<(usize, String)> = None;
    visit(&root, "", span.start, &mut best);
    best.map(|(_, path)| path).unwrap_or_default()
}

fn consider(
    place: std::ops::Range<usize>,
    path: &str,
    at: usize,
    best: &mut Option<(usize, String)>,
) {
    let holds = place.contains(&at) || (place.is_empty() && place.start == at);
    if holds && best.as_ref().is_none_or(|(len, _)| place.len() <= *len) {
        *best = Some((place.len(), path.to_string()));
    }
}

fn visit(node: &Node, path: &str, at: usize, best: &mut Option<(usize, String)>) {
    match node {
        Node::Table(entries) => {
            for (key, value) in entries {
                let sub = if path.is_empty() {
                    key.get_ref().clone()
                } else {
                    format!("{path}.{}", key.get_ref())
                };
                consider(value.span(), &sub, at, best);
                consider(key.span(), &sub, at, best);
                visit(value.get_ref(), &sub, at, best);
            }
        }
        Node::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let sub = format!("{path}[{i}]");
                consider(item.span(), &sub, at, best);
                visit(item.get_ref(), &sub, at, best);
            }
        }
        Node::Leaf => {}
    }
}

#[cfg(test)]
mod tests {
    use super::field_at;

    #[test]
    fn names_nested_fields() {
        let text = "[[projects]]\nname = \"a\"\n[[projects]]\nname = \"b\"\n[[projects.steps]]\nname = \"s\"\nroles = [\"web\", 3]\n";
        let at = text.find('3').unwrap();
        assert_eq!(
            field_at(text, &(at..at + 1)),
            "projects[1].steps[0].roles[1]"
        );
        let at = text.find("name = \"b\"").unwrap();
        assert_eq!(field_at(text, &(at..at + 4)), "projects[1].name");
    }
}
