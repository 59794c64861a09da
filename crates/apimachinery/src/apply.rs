//! Server-side apply and `metadata.managedFields` bookkeeping.
//!
//! The model follows the API server's field manager: every write records which manager owns
//! which fields. An apply makes the applied configuration's field set the manager's set, prunes
//! fields the manager stopped applying (unless someone else owns them), and refuses to change a
//! field another manager owns unless forced. Updates (POST/PUT/PATCH) take ownership of what they
//! changed and strip it from everyone else.

use std::fmt;

use serde_json::{Map, Value};

use crate::fields::{FieldPath, FieldSet, PathElement, canonical_json, display_path};
use crate::patch::json_equal;
use crate::schema::{ListStrategy, PatchSchema};

/// The operation recorded in a managedFields entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// A server-side apply.
    Apply,
    /// Any other write (create, update, patch).
    Update,
}

impl Operation {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One field another manager owns and the apply would change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// How that manager wrote the field.
    pub operation: Operation,
    /// The API version that manager wrote with.
    pub api_version: String,
    /// The subresource that manager wrote through, if any.
    pub subresource: Option<String>,
    /// The conflicting field in apply notation, e.g. `.spec.replicas`.
    pub field_path: String,
}

impl Conflict {
    /// How the API server names the manager: `"kubectl"`, `"kubectl" using v1`,
    /// `"kubelet" with subresource "status" using v1`.
    pub fn manager_display(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            out.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    /// The `message` of the `FieldManagerConflict` status cause for this conflict.
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager_display())
    }
}

/// Why an apply or an update could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change; the server answers 409.
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration, the request or the object is malformed; see
    /// [`ApplyError::http_status`] for which status the server answers with.
    #[error("{0}")]
    Invalid(String),
}

/// The request carried managedFields on an apply (the server answers 400).
pub const MANAGED_FIELDS_MUST_BE_NIL: &str = "metadata.managedFields must be nil";
/// An apply without a field manager (the server answers 400).
pub const FIELD_MANAGER_REQUIRED: &str = "PATCH request of type apply requires a fieldManager";

impl ApplyError {
    /// A stable, low-cardinality name for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            ApplyError::Conflicts(_) => "conflict",
            ApplyError::Invalid(_) => "invalid",
        }
    }

    /// The HTTP status the API server answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::Invalid(msg)
                if msg == MANAGED_FIELDS_MUST_BE_NIL || msg == FIELD_MANAGER_REQUIRED =>
            {
                400
            }
            ApplyError::Invalid(_) => 422,
        }
    }
}

/// The API server's conflict message: one line for one conflict, grouped by manager otherwise.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager_display(),
            only.field_path
        );
    }
    let mut by_manager: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for c in conflicts {
        by_manager
            .entry(c.manager_display())
            .or_default()
            .push(&c.field_path);
    }
    let mut lines = Vec::new();
    for (manager, paths) in by_manager {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(paths.into_iter().map(|p| format!("- {p}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// A decoded managedFields entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    manager: String,
    operation: Operation,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    /// Same owner slot: apply entries ignore the API version, update entries do not.
    fn same_identity(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    fn encode(&self) -> Value {
        let mut map = Map::new();
        map.insert("manager".into(), Value::String(self.manager.clone()));
        map.insert(
            "operation".into(),
            Value::String(self.operation.as_str().into()),
        );
        map.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(time) = &self.time {
            map.insert("time".into(), Value::String(time.clone()));
        }
        map.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        map.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(sub) = &self.subresource {
            map.insert("subresource".into(), Value::String(sub.clone()));
        }
        Value::Object(map)
    }

    fn decode(value: &Value) -> Result<Entry, ApplyError> {
        let invalid = |what: &str| ApplyError::Invalid(format!("metadata.managedFields: {what}"));
        let obj = value
            .as_object()
            .ok_or_else(|| invalid("entries must be objects"))?;
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let operation = match text("operation").as_deref() {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            other => {
                return Err(invalid(&format!(
                    "operation must be Apply or Update, got {other:?}"
                )));
            }
        };
        match text("fieldsType").as_deref() {
            Some("FieldsV1") | None => {}
            Some(other) => return Err(invalid(&format!("unsupported fieldsType {other:?}"))),
        }
        Ok(Entry {
            manager: text("manager").unwrap_or_default(),
            operation,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            fields: obj
                .get("fieldsV1")
                .map(FieldSet::from_fields_v1)
                .unwrap_or_default(),
        })
    }
}

fn decode_entries(object: Option<&Value>) -> Result<Vec<Entry>, ApplyError> {
    match object.and_then(|o| o.pointer("/metadata/managedFields")) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(Entry::decode).collect(),
        Some(_) => Err(ApplyError::Invalid(
            "metadata.managedFields must be a list".into(),
        )),
    }
}

/// Sorts like the API server (operation, time, manager, apiVersion, subresource) and encodes.
fn encode_entries(mut entries: Vec<Entry>) -> Value {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        (
            a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    Value::Array(entries.iter().map(Entry::encode).collect())
}

fn without_managed_fields(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    copy
}

fn set_managed_fields(object: &mut Value, entries: Vec<Entry>) {
    let encoded = encode_entries(entries);
    let Some(root) = object.as_object_mut() else {
        return;
    };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        if encoded.as_array().is_some_and(Vec::is_empty) {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), encoded);
        }
    }
}

/// Fields the API server never tracks ownership of (identity and server-set metadata).
fn is_untracked(path: &[PathElement]) -> bool {
    let field = |i: usize| match path.get(i) {
        Some(PathElement::Field(name)) => Some(name.as_str()),
        _ => None,
    };
    matches!(
        (path.len(), field(0), field(1)),
        (1, Some("apiVersion" | "kind" | "metadata"), _)
            | (
                _,
                Some("metadata"),
                Some(
                    "name"
                        | "namespace"
                        | "creationTimestamp"
                        | "selfLink"
                        | "uid"
                        | "clusterName"
                        | "generation"
                        | "managedFields"
                        | "resourceVersion"
                ),
            )
    )
}

/// What a walk found at a path: a value that counts as one field, or a container whose
/// fields are listed separately (`Map`: an object or a non-atomic list, never owned by an apply;
/// `Item`: an item of a keyed list, owned as `.`).
#[derive(Debug, Clone)]
enum Node<'a> {
    Leaf(&'a Value),
    Map,
    Item,
}

// Hashed: walks only look paths up; anything that reaches output goes through a sorted FieldSet.
type Nodes<'a> = std::collections::HashMap<FieldPath, Node<'a>>;

/// Lists every field and container of `value` under the schema's list and map rules.
/// `strict` rejects list items without their keys and duplicate keys (applied configurations);
/// live objects fall back to positions instead.
fn walk<'a>(
    value: &'a Value,
    schema: &dyn PatchSchema,
    strict: bool,
) -> Result<Nodes<'a>, ApplyError> {
    let mut nodes = Nodes::new();
    let mut segments = Vec::new();
    let mut path = Vec::new();
    walk_into(value, schema, strict, &mut segments, &mut path, &mut nodes)?;
    nodes.retain(|p, _| !p.is_empty() && !is_untracked(p));
    Ok(nodes)
}

fn walk_into<'a>(
    value: &'a Value,
    schema: &dyn PatchSchema,
    strict: bool,
    segments: &mut Vec<String>,
    path: &mut FieldPath,
    nodes: &mut Nodes<'a>,
) -> Result<(), ApplyError> {
    match value {
        Value::Object(map) => {
            let seg_refs: Vec<&str> = segments.iter().map(String::as_str).collect();
            if map.is_empty() || (!path.is_empty() && schema.is_atomic_map(&seg_refs)) {
                nodes.insert(path.clone(), Node::Leaf(value));
                return Ok(());
            }
            nodes.insert(path.clone(), Node::Map);
            for (key, child) in map {
                segments.push(key.clone());
                path.push(PathElement::Field(key.clone()));
                walk_into(child, schema, strict, segments, path, nodes)?;
                path.pop();
                segments.pop();
            }
            Ok(())
        }
        Value::Array(items) => {
            let seg_refs: Vec<&str> = segments.iter().map(String::as_str).collect();
            let strategy = schema.list_strategy(&seg_refs);
            if strategy != ListStrategy::Atomic {
                nodes.insert(path.clone(), Node::Map);
            }
            match strategy {
                ListStrategy::Atomic => {
                    nodes.insert(path.clone(), Node::Leaf(value));
                }
                ListStrategy::MergePrimitives => {
                    for item in items {
                        path.push(PathElement::Value(canonical_json(item)));
                        if strict && nodes.contains_key(path.as_slice()) {
                            return Err(duplicate(path));
                        }
                        nodes.insert(path.clone(), Node::Leaf(item));
                        path.pop();
                    }
                }
                ListStrategy::MergeByKey(keys) => {
                    for (index, item) in items.iter().enumerate() {
                        let element = match item_key(item, &keys) {
                            Ok(key) => PathElement::Key(key),
                            Err(reason) if strict => {
                                return Err(ApplyError::Invalid(format!(
                                    "{}: {reason}",
                                    display_path(path)
                                )));
                            }
                            Err(_) => PathElement::Index(index),
                        };
                        path.push(element);
                        if nodes.contains_key(path.as_slice()) {
                            if strict {
                                return Err(duplicate(path));
                            }
                            path.pop();
                            continue;
                        }
                        walk_into(item, schema, strict, segments, path, nodes)?;
                        nodes.insert(path.clone(), Node::Item);
                        path.pop();
                    }
                }
            }
            Ok(())
        }
        other => {
            nodes.insert(path.clone(), Node::Leaf(other));
            Ok(())
        }
    }
}

fn duplicate(path: &[PathElement]) -> ApplyError {
    ApplyError::Invalid(format!("{}: duplicate entries for key", display_path(path)))
}

/// The canonical JSON of an item's key fields, or why it has none.
fn item_key(item: &Value, keys: &[String]) -> Result<String, String> {
    let map = item
        .as_object()
        .ok_or_else(|| "associative list items must be objects".to_string())?;
    let mut key = Map::new();
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    for k in sorted {
        let v = map
            .get(k)
            .ok_or_else(|| format!("associative list item omits key field {k:?}"))?;
        key.insert(k.clone(), v.clone());
    }
    Ok(canonical_json(&Value::Object(key)))
}

/// Owned paths of an applied configuration: leaves and keyed-list items, not plain objects.
fn applied_field_set(nodes: &Nodes) -> FieldSet {
    nodes
        .iter()
        .filter(|(_, node)| !matches!(node, Node::Map))
        .map(|(path, _)| path.clone())
        .collect()
}

struct Comparison {
    changed: FieldSet,
    removed: FieldSet,
    same: bool,
}

/// What changed between two walks. New objects count as changed containers except the
/// top-level ones every object has, which is what the server's typed comparison reports.
fn compare(old: &Nodes, new: &Nodes) -> Comparison {
    let mut changed = FieldSet::new();
    let mut removed = FieldSet::new();
    for (path, node) in new {
        match (old.get(path), node) {
            (None, Node::Map) if path.len() <= 1 => {}
            (None, _) => changed.insert(path.clone()),
            (Some(Node::Leaf(a)), Node::Leaf(b)) if !json_equal(a, b) => {
                changed.insert(path.clone())
            }
            (Some(Node::Leaf(_)), Node::Map | Node::Item)
            | (Some(Node::Map | Node::Item), Node::Leaf(_)) => changed.insert(path.clone()),
            _ => {}
        }
    }
    for path in old.keys() {
        if !new.contains_key(path) {
            removed.insert(path.clone());
        }
    }
    let same = changed.is_empty() && removed.is_empty();
    Comparison {
        changed,
        removed,
        same,
    }
}

/// How a list item is recognised across lists (its key or value as canonical JSON).
type ItemIdentity = Box<dyn Fn(&Value) -> Option<String>>;

/// Merges an applied configuration over the live object: maps field by field, keyed lists
/// item by item, sets by value, atomic lists and maps replaced. `null` removes a field.
fn merge(
    live: Value,
    applied: &Value,
    schema: &dyn PatchSchema,
    segments: &mut Vec<String>,
) -> Value {
    let seg_refs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (live, applied) {
        (Value::Object(mut out), Value::Object(a))
            if segments.is_empty() || !schema.is_atomic_map(&seg_refs) =>
        {
            for (key, value) in a {
                let existing = out.remove(key);
                if value.is_null() {
                    continue;
                }
                segments.push(key.clone());
                let merged = match existing {
                    Some(existing) => merge(existing, value, schema, segments),
                    None => value.clone(),
                };
                segments.pop();
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(a)) => {
            let identity: ItemIdentity = match schema.list_strategy(&seg_refs) {
                ListStrategy::Atomic => return applied.clone(),
                ListStrategy::MergePrimitives => Box::new(|v: &Value| Some(canonical_json(v))),
                ListStrategy::MergeByKey(keys) => {
                    Box::new(move |v: &Value| item_key(v, &keys).ok())
                }
            };
            let mut item_segments = segments.clone();
            Value::Array(merge_list(l, a, &identity, |lv, av| {
                merge(lv, av, schema, &mut item_segments)
            }))
        }
        _ => applied.clone(),
    }
}

/// Interleaves two keyed lists the way the server's merge does: walking both, items only the
/// live list has are emitted where they stand, shared items are merged in the applied order,
/// and new items come where the applied list has them.
fn merge_list(
    live: Vec<Value>,
    applied: &[Value],
    identity: &dyn Fn(&Value) -> Option<String>,
    mut merge_item: impl FnMut(Value, &Value) -> Value,
) -> Vec<Value> {
    let live_ids: Vec<Option<String>> = live.iter().map(identity).collect();
    let applied_ids: Vec<Option<String>> = applied.iter().map(identity).collect();
    let mut live: Vec<Option<Value>> = live.into_iter().map(Some).collect();
    let in_applied = |id: &Option<String>| id.is_some() && applied_ids.contains(id);
    let live_position = |id: &Option<String>| {
        id.as_ref()
            .and_then(|_| live_ids.iter().position(|l| l == id))
    };
    // Shared items in applied order; the next one due decides which live item may go next.
    let mut shared: std::collections::VecDeque<&Option<String>> = applied_ids
        .iter()
        .filter(|id| id.is_some() && live_ids.contains(id))
        .collect();
    let mut merged_ids: Vec<&Option<String>> = Vec::new();
    let mut out = Vec::with_capacity(live.len() + applied.len());
    let (mut li, mut ri) = (0, 0);
    while li < live.len() || ri < applied.len() {
        if let (Some(lid), Some(rid), Some(r)) =
            (live_ids.get(li), applied_ids.get(ri), applied.get(ri))
        {
            if lid.is_some() && lid == rid {
                if let Some(l) = live.get_mut(li).and_then(Option::take) {
                    out.push(merge_item(l, r));
                }
                merged_ids.push(rid);
                li += 1;
                ri += 1;
                if shared.front() == Some(&rid) {
                    shared.pop_front();
                }
                continue;
            }
            if in_applied(lid) && shared.front().is_some_and(|next| *next != lid) {
                li += 1;
                continue;
            }
        }
        if let Some(lid) = live_ids.get(li) {
            if !in_applied(lid) {
                out.extend(live.get_mut(li).and_then(Option::take));
                li += 1;
                continue;
            }
            if merged_ids.contains(&lid) {
                li += 1;
                continue;
            }
        }
        if let (Some(rid), Some(r)) = (applied_ids.get(ri), applied.get(ri)) {
            let existing = live_position(rid).and_then(|i| live.get_mut(i).and_then(Option::take));
            match existing {
                Some(l) => out.push(merge_item(l, r)),
                None => out.push(r.clone()),
            }
            merged_ids.push(rid);
            ri += 1;
            if shared.front() == Some(&rid) {
                shared.pop_front();
            }
        } else {
            // Only live items that were already merged remain.
            li += 1;
        }
    }
    out
}

/// Whether `path` is a key field of a keyed-list item (`...[name="x"].name`): an item that
/// stays must keep its key, whoever owned it.
fn is_key_field_of_item(path: &[PathElement]) -> bool {
    let [.., PathElement::Key(key), PathElement::Field(field)] = path else {
        return false;
    };
    serde_json::from_str::<Value>(key).is_ok_and(|k| k.get(field).is_some())
}

/// Removes one owned path from an object; list items are found by their key or value.
fn remove_path(object: &mut Value, path: &[PathElement], schema: &dyn PatchSchema) {
    let mut segments = Vec::new();
    remove_at(object, path, schema, &mut segments);
}

fn remove_at(
    value: &mut Value,
    path: &[PathElement],
    schema: &dyn PatchSchema,
    segments: &mut Vec<String>,
) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    match (value, first) {
        (Value::Object(map), PathElement::Field(name)) => {
            if rest.is_empty() {
                return map.remove(name).is_some();
            }
            segments.push(name.clone());
            let removed = map
                .get_mut(name)
                .is_some_and(|child| remove_at(child, rest, schema, segments));
            segments.pop();
            // An object emptied by pruning goes too, as the server's prune does.
            if removed
                && map
                    .get(name)
                    .is_some_and(|c| c.as_object().is_some_and(Map::is_empty))
            {
                map.remove(name);
            }
            removed
        }
        (Value::Array(items), element) => {
            let seg_refs: Vec<&str> = segments.iter().map(String::as_str).collect();
            let position = match (element, schema.list_strategy(&seg_refs)) {
                (PathElement::Key(key), ListStrategy::MergeByKey(keys)) => items
                    .iter()
                    .position(|item| item_key(item, &keys).is_ok_and(|k| &k == key)),
                (PathElement::Value(v), _) => {
                    items.iter().position(|item| &canonical_json(item) == v)
                }
                (PathElement::Index(i), _) => (*i < items.len()).then_some(*i),
                _ => None,
            };
            let Some(pos) = position else {
                return false;
            };
            if rest.is_empty() {
                items.remove(pos);
                return true;
            }
            items
                .get_mut(pos)
                .is_some_and(|item| remove_at(item, rest, schema, segments))
        }
        _ => false,
    }
}

fn validate_object(object: &Value, what: &str) -> Result<(), ApplyError> {
    let map = object
        .as_object()
        .ok_or_else(|| ApplyError::Invalid(format!("{what} must be a JSON object")))?;
    for field in ["apiVersion", "kind"] {
        if map
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApplyError::Invalid(format!("{what}: {field} must be set")));
        }
    }
    Ok(())
}

fn api_version_of(object: &Value) -> String {
    object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Restricts a configuration to what a write through `subresource` may touch: the main
/// resource ignores `status`, the status subresource only carries `status`.
fn scope_to_subresource(object: &Value, subresource: Option<&str>) -> Value {
    let mut scoped = object.clone();
    let Some(map) = scoped.as_object_mut() else {
        return scoped;
    };
    match subresource {
        None => {
            map.remove("status");
        }
        Some("status") => {
            map.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
            if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace"));
            }
        }
        Some(_) => {}
    }
    scoped
}

/// Server-side apply of `applied` by `manager` onto `live` (`None` creates).
///
/// Returns the new object with `metadata.managedFields` updated. On the main resource
/// (`subresource == None`) the applied `status` is ignored; with `Some("status")` only the
/// applied `status` is. Fails with [`ApplyError::Conflicts`] when the apply would change a field
/// another manager owns to a different value, unless `force`, which transfers ownership.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    schema: &dyn PatchSchema,
    now: &str,
    subresource: Option<&str>,
) -> Result<Value, ApplyError> {
    validate_object(applied, "the applied configuration")?;
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApplyError::Invalid(MANAGED_FIELDS_MUST_BE_NIL.into()));
    }
    if manager.is_empty() {
        return Err(ApplyError::Invalid(FIELD_MANAGER_REQUIRED.into()));
    }
    let applied = scope_to_subresource(applied, subresource);
    let api_version = api_version_of(&applied);
    let mut entries = decode_entries(live)?;
    let live_obj = live
        .map(without_managed_fields)
        .unwrap_or_else(|| Value::Object(Map::new()));

    let applied_nodes = walk(&applied, schema, true)?;
    let new_set = applied_field_set(&applied_nodes);
    drop(applied_nodes);
    let identity = Entry {
        manager: manager.to_string(),
        operation: Operation::Apply,
        api_version,
        time: None,
        subresource: subresource.map(str::to_string),
        fields: FieldSet::new(),
    };
    let previous = entries.iter().position(|e| e.same_identity(&identity));
    // The applier's old entry is replaced below, so its set can be taken rather than copied.
    let (last_set, last_time) = match previous.and_then(|i| entries.get_mut(i)) {
        Some(old) => (std::mem::take(&mut old.fields), old.time.clone()),
        None => (FieldSet::new(), None),
    };
    let set_unchanged = previous.is_some() && last_set == new_set;

    let live_nodes = walk(&live_obj, schema, false)?;
    let mut merged = merge(live_obj.clone(), &applied, schema, &mut Vec::new());

    // Prune what this manager stopped applying, unless this apply or another applier still
    // owns it or something beneath it. Only appliers protect a field: an updater's
    // co-ownership does not (structured-merge-diff's prune adds back applied sets only).
    let other_appliers: Vec<&FieldSet> = entries
        .iter()
        .enumerate()
        .filter(|(i, e)| Some(*i) != previous && e.operation == Operation::Apply)
        .map(|(_, e)| &e.fields)
        .collect();
    let kept = |p: &FieldPath| new_set.contains(p) || other_appliers.iter().any(|s| s.contains(p));
    let kept_below = |p: &FieldPath| {
        new_set.has_descendant_of(p) || other_appliers.iter().any(|s| s.has_descendant_of(p))
    };
    // Sorted order visits an item before its fields, so a removed item takes its fields along.
    let mut removed: Vec<&FieldPath> = Vec::new();
    for path in last_set.iter() {
        if kept(path)
            || removed.iter().any(|r| path.starts_with(r))
            || kept_below(path)
            || is_key_field_of_item(path)
        {
            continue;
        }
        remove_path(&mut merged, path, schema);
        removed.push(path);
    }

    let merged_nodes = walk(&merged, schema, false)?;
    let diff = compare(&live_nodes, &merged_nodes);
    drop((live_nodes, merged_nodes));

    let mut conflicts = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if Some(i) == previous {
            continue;
        }
        for path in entry.fields.iter().filter(|p| diff.changed.contains(p)) {
            conflicts.push(Conflict {
                manager: entry.manager.clone(),
                operation: entry.operation,
                api_version: entry.api_version.clone(),
                subresource: entry.subresource.clone(),
                field_path: display_path(path),
            });
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort();
        return Err(ApplyError::Conflicts(conflicts));
    }
    for entry in entries.iter_mut() {
        entry
            .fields
            .retain(|p| !diff.changed.contains(p) && !diff.removed.contains(p));
    }

    // A no-op apply keeps the old timestamp so the object stays byte-identical.
    let time = if diff.same && set_unchanged {
        last_time
    } else {
        Some(now.to_string())
    };
    let me = Entry {
        time,
        fields: new_set,
        ..identity
    };
    match previous.and_then(|i| entries.get_mut(i)) {
        Some(slot) => *slot = me,
        None => entries.push(me),
    }
    set_managed_fields(&mut merged, entries);
    Ok(merged)
}

/// Records a non-apply write (create, update, patch) by `manager` in `new`'s managedFields.
///
/// The manager's `Update` entry gains the fields that changed between `old` (`None` for a
/// create) and `new`; other managers lose them; removed fields leave every entry. A `new`
/// carrying different, non-empty managedFields replaces the old ones first (as the server
/// honours client-sent managedFields); `[{}]` clears them all.
pub fn update_managed_fields(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    schema: &dyn PatchSchema,
    now: &str,
    subresource: Option<&str>,
) -> Result<Value, ApplyError> {
    validate_object(new, "the object")?;
    let old_entries_raw = old.and_then(|o| o.pointer("/metadata/managedFields"));
    let new_entries_raw = new.pointer("/metadata/managedFields");
    let mut entries = match new_entries_raw {
        Some(Value::Array(items))
            if items.len() == 1
                && items
                    .first()
                    .is_some_and(|v| v.as_object().is_some_and(Map::is_empty)) =>
        {
            let mut cleared = without_managed_fields(new);
            set_managed_fields(&mut cleared, Vec::new());
            return Ok(cleared);
        }
        // Like the server, client-sent entries that do not decode fall back to the live ones.
        Some(Value::Array(items)) if !items.is_empty() && new_entries_raw != old_entries_raw => {
            decode_entries(Some(new)).or_else(|_| decode_entries(old))?
        }
        _ => decode_entries(old)?,
    };
    let api_version = api_version_of(new);
    let old_obj = old
        .map(without_managed_fields)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut new_obj = without_managed_fields(new);

    let diff = compare(
        &walk(&old_obj, schema, false)?,
        &walk(&new_obj, schema, false)?,
    );
    let me = Entry {
        manager: manager.to_string(),
        operation: Operation::Update,
        api_version,
        time: Some(now.to_string()),
        subresource: subresource.map(str::to_string),
        fields: FieldSet::new(),
    };
    let previous = entries.iter().position(|e| e.same_identity(&me));
    for (i, entry) in entries.iter_mut().enumerate() {
        let mine = Some(i) == previous;
        entry
            .fields
            .retain(|p| (mine || !diff.changed.contains(p)) && !diff.removed.contains(p));
    }
    if !diff.changed.is_empty() {
        match previous.and_then(|i| entries.get_mut(i)) {
            Some(slot) => {
                slot.fields = slot.fields.union(&diff.changed);
                slot.time = Some(now.to_string());
            }
            None => entries.push(Entry {
                fields: diff.changed,
                ..me
            }),
        }
    }
    set_managed_fields(&mut new_obj, entries);
    Ok(new_obj)
}

/// The fields each manager owns, decoded from an object's managedFields, for inspection and tests.
pub fn managed_field_sets(object: &Value) -> Result<Vec<ManagedFieldSet>, ApplyError> {
    Ok(decode_entries(Some(object))?
        .into_iter()
        .map(|e| ManagedFieldSet {
            manager: e.manager,
            operation: e.operation,
            subresource: e.subresource,
            fields: e.fields.iter().map(|p| display_path(p)).collect(),
        })
        .collect())
}

/// One manager's owned fields in apply notation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedFieldSet {
    /// The manager name.
    pub manager: String,
    /// Apply or Update.
    pub operation: Operation,
    /// The subresource written through, if any.
    pub subresource: Option<String>,
    /// Owned paths such as `.spec.replicas`, sorted.
    pub fields: Vec<String>,
}

impl fmt::Display for ManagedFieldSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.manager,
            self.operation.as_str(),
            self.fields.join(" ")
        )
    }
}
