//! Field paths and field sets as server-side apply tracks them, with the `FieldsV1` wire
//! encoding used in `metadata.managedFields` (`f:<field>`, `k:<key json>`, `v:<value json>`,
//! `i:<index>`, and `.` for "the element itself").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a field path.
///
/// The variant order (field, key, value, index) is the order structured-merge-diff sorts and
/// emits children in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A named field of an object: `f:name`.
    Field(String),
    /// An item of a map-list, by its key fields as canonical JSON: `k:{"name":"x"}`.
    Key(String),
    /// An item of a set-list, by its value as canonical JSON: `v:"x"`.
    Value(String),
    /// An item of a list without keys, by position: `i:0`.
    Index(usize),
}

impl PathElement {
    /// The `FieldsV1` map key for this element.
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(json) => format!("k:{json}"),
            PathElement::Value(json) => format!("v:{json}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `FieldsV1` map key (other than `.`).
    pub fn from_fields_v1_key(key: &str) -> Option<PathElement> {
        let (kind, rest) = key.split_at_checked(2)?;
        match kind {
            "f:" => Some(PathElement::Field(rest.to_string())),
            "k:" => serde_json::from_str::<Value>(rest)
                .ok()
                .filter(Value::is_object)
                .map(|v| PathElement::Key(canonical_json(&v))),
            "v:" => serde_json::from_str::<Value>(rest)
                .ok()
                .map(|v| PathElement::Value(canonical_json(&v))),
            "i:" => rest.parse().ok().map(PathElement::Index),
            _ => None,
        }
    }
}

impl fmt::Display for PathElement {
    /// The form used in apply conflict messages: `.name`, `[name="x"]`, `[="x"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(json) => {
                let parsed: Value = serde_json::from_str(json).unwrap_or(Value::Null);
                let parts: Vec<String> = parsed
                    .as_object()
                    .map(|m| {
                        sorted_entries(m)
                            .into_iter()
                            .map(|(k, v)| format!("{k}={}", canonical_json(v)))
                            .collect()
                    })
                    .unwrap_or_default();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(json) => write!(f, "[={json}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the object root.
pub type FieldPath = Vec<PathElement>;

/// Renders a path the way apply conflict messages do: `.spec.containers[name="a"].image`.
pub fn display_path(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// Compact JSON with object keys sorted, whatever serde_json's map ordering is.
pub fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let parts: Vec<String> = sorted_entries(map)
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical_json(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// A set of field paths; a path is in the set when that field (or element) is owned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSet {
    paths: BTreeSet<FieldPath>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        FieldSet::default()
    }

    /// Adds a path.
    pub fn insert(&mut self, path: FieldPath) {
        self.paths.insert(path);
    }

    /// Whether `path` is a member.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.paths.contains(path)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Number of member paths.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// The member paths in sorted order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &FieldPath> {
        self.paths.iter()
    }

    /// Members of `self` or `other`.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            paths: self.paths.union(&other.paths).cloned().collect(),
        }
    }

    /// Members of `self` not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            paths: self.paths.difference(&other.paths).cloned().collect(),
        }
    }

    /// Members of both.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            paths: self.paths.intersection(&other.paths).cloned().collect(),
        }
    }

    /// Whether some member lies strictly below `path`.
    pub fn has_descendant_of(&self, path: &[PathElement]) -> bool {
        self.paths
            .range::<[PathElement], _>((
                std::ops::Bound::Excluded(path),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .is_some_and(|p| p.len() > path.len() && p.starts_with(path))
    }

    /// Keeps only the members `keep` approves of.
    pub fn retain(&mut self, keep: impl FnMut(&FieldPath) -> bool) {
        self.paths.retain(keep);
    }

    /// Encodes as a `FieldsV1` object.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Tree::default();
        for path in &self.paths {
            let mut node = &mut root;
            for element in path {
                node = node.children.entry(element.clone()).or_default();
            }
            node.member = true;
        }
        root.encode(false)
    }

    /// Decodes a `FieldsV1` object; keys it cannot read are skipped.
    pub fn from_fields_v1(value: &Value) -> FieldSet {
        let mut set = FieldSet::new();
        let mut path = Vec::new();
        decode_into(value, &mut path, &mut set);
        set
    }
}

impl FromIterator<FieldPath> for FieldSet {
    fn from_iter<I: IntoIterator<Item = FieldPath>>(iter: I) -> Self {
        FieldSet {
            paths: iter.into_iter().collect(),
        }
    }
}

#[derive(Default)]
struct Tree {
    member: bool,
    children: BTreeMap<PathElement, Tree>,
}

impl Tree {
    fn encode(&self, include_self: bool) -> Value {
        let mut map = Map::new();
        if include_self && self.member && !self.children.is_empty() {
            map.insert(".".to_string(), Value::Object(Map::new()));
        }
        for (element, child) in &self.children {
            map.insert(element.to_fields_v1_key(), child.encode(true));
        }
        Value::Object(map)
    }
}

fn decode_into(value: &Value, path: &mut FieldPath, set: &mut FieldSet) {
    let Some(map) = value.as_object() else {
        return;
    };
    if !path.is_empty() && (map.is_empty() || map.contains_key(".")) {
        set.insert(path.clone());
    }
    for (key, child) in map {
        if key == "." {
            continue;
        }
        if let Some(element) = PathElement::from_fields_v1_key(key) {
            path.push(element);
            decode_into(child, path, set);
            path.pop();
        }
    }
}
