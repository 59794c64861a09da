//! Structural pruning and defaulting, in the apiserver's order: prune unknown fields, then
//! drop non-nullable nulls and apply `default`s.

use serde_json::{Map, Value};

use super::path::FieldPath;
use super::schema::{Additional, Node};

/// The `ObjectMeta` fields the apiserver keeps under `metadata`; anything else there is
/// dropped as unknown.
pub(crate) const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Removes fields the schema does not declare, recording each removed field's path.
/// `resource` is true at the root of a resource (or an embedded resource), where `apiVersion`,
/// `kind` and `metadata` are always kept.
pub(crate) fn prune(
    node: &Node,
    value: &mut Value,
    path: &FieldPath,
    resource: bool,
    unknown: &mut Vec<String>,
) {
    match value {
        Value::Object(fields) => {
            let is_resource = resource || node.embedded;
            let keeps_unknown =
                node.preserve_unknown || matches!(node.additional, Additional::Bool(true));
            let mut removed = Vec::new();
            for (key, field) in fields.iter_mut() {
                let field_path = path.child(key);
                if is_resource && (key == "apiVersion" || key == "kind") {
                    continue;
                }
                if is_resource && key == "metadata" {
                    prune_metadata(field, &field_path, unknown);
                    continue;
                }
                if let Some(child) = node.properties.get(key) {
                    prune(child, field, &field_path, false, unknown);
                } else if let Additional::Schema(values) = &node.additional {
                    prune(values, field, &path.key(key), false, unknown);
                } else if !keeps_unknown {
                    removed.push(key.clone());
                }
            }
            for key in removed {
                fields.remove(&key);
                unknown.push(path.child(&key).to_string());
            }
        }
        Value::Array(items) => {
            if let Some(item_node) = node.items.as_deref() {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item_node, item, &path.index(i), false, unknown);
                }
            }
        }
        _ => {}
    }
}

fn prune_metadata(metadata: &mut Value, path: &FieldPath, unknown: &mut Vec<String>) {
    if let Value::Object(fields) = metadata {
        let removed: Vec<String> = fields
            .keys()
            .filter(|k| !OBJECT_META_FIELDS.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in removed {
            fields.remove(&key);
            unknown.push(path.child(&key).to_string());
        }
    }
}

/// Applies `default`s for absent properties (and for nulls in non-nullable ones), deep-copied,
/// then recurses so defaults nested inside a just-defaulted object apply too. Non-nullable
/// nulls without a default are removed.
pub(crate) fn default(node: &Node, value: &mut Value) {
    match value {
        Value::Object(fields) => {
            default_properties(node, fields);
            for (key, field) in fields.iter_mut() {
                if let Some(child) = node.child(key) {
                    default(child, field);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_node) = node.items.as_deref() {
                for item in items.iter_mut() {
                    default(item_node, item);
                }
            }
        }
        _ => {}
    }
}

fn default_properties(node: &Node, fields: &mut Map<String, Value>) {
    for (key, child) in &node.properties {
        let is_null = fields.get(key).is_some_and(Value::is_null);
        let absent = !fields.contains_key(key);
        match &child.default {
            Some(default) if absent || (is_null && !child.nullable) => {
                fields.insert(key.clone(), default.clone());
            }
            None if is_null && !child.nullable => {
                fields.remove(key);
            }
            _ => {}
        }
    }
}
