//! The three PATCH content types of the Kubernetes API: JSON patch (RFC 6902), JSON merge patch
//! (RFC 7386) and strategic merge patch. Every function works on a copy: on error the caller's
//! document is untouched and nothing is half-applied.

use serde_json::{Map, Value};

pub use crate::schema::{BuiltinSchema, CrdSchema, ListStrategy, NoSchema, PatchSchema};

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is malformed.
    #[error("invalid patch: {0}")]
    Invalid(String),
    /// A JSON pointer does not parse.
    #[error("invalid JSON pointer {pointer:?}: {reason}")]
    Pointer {
        /// The pointer text.
        pointer: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An operation's target (or its parent) does not exist.
    #[error("{op} operation does not apply: doc is missing path: {path:?}")]
    MissingPath {
        /// The operation name.
        op: String,
        /// The pointer that was missing.
        path: String,
    },
    /// A `test` operation found a different value.
    #[error("testing value {path:?} failed: test operation failed")]
    TestFailed {
        /// The pointer that was tested.
        path: String,
    },
    /// A strategic merge patch that breaks the directive or merge-key rules.
    #[error("strategic merge patch at {path}: {reason}")]
    Strategic {
        /// Dotted field path where it went wrong.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl PatchError {
    /// A stable, low-cardinality name for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            PatchError::Invalid(_) => "invalid",
            PatchError::Pointer { .. } => "pointer",
            PatchError::MissingPath { .. } => "missing_path",
            PatchError::TestFailed { .. } => "test_failed",
            PatchError::Strategic { .. } => "strategic",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 6902
// ---------------------------------------------------------------------------------------------

/// Applies an RFC 6902 JSON patch (an array of operations) to a copy of `doc`.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError::Invalid("a JSON patch must be an array of operations".into()))?;
    let mut out = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        apply_op(&mut out, op).map_err(|e| match e {
            PatchError::Invalid(reason) => PatchError::Invalid(format!("operation {i}: {reason}")),
            other => other,
        })?;
    }
    Ok(out)
}

fn op_field<'a>(op: &'a Map<String, Value>, name: &str) -> Result<&'a Value, PatchError> {
    op.get(name)
        .ok_or_else(|| PatchError::Invalid(format!("missing {name:?}")))
}

fn op_str<'a>(op: &'a Map<String, Value>, name: &str) -> Result<&'a str, PatchError> {
    op_field(op, name)?
        .as_str()
        .ok_or_else(|| PatchError::Invalid(format!("{name:?} must be a string")))
}

fn apply_op(doc: &mut Value, op: &Value) -> Result<(), PatchError> {
    let op = op
        .as_object()
        .ok_or_else(|| PatchError::Invalid("an operation must be an object".into()))?;
    let kind = op_str(op, "op")?;
    let path = op_str(op, "path")?;
    let tokens = parse_pointer(path)?;
    match kind {
        "add" => add(doc, &tokens, op_field(op, "value")?.clone(), "add", path),
        "remove" => remove(doc, &tokens, "remove", path).map(|_| ()),
        "replace" => {
            let value = op_field(op, "value")?.clone();
            let target = get_mut(doc, &tokens).ok_or_else(|| missing("replace", path))?;
            *target = value;
            Ok(())
        }
        "move" => {
            let from = op_str(op, "from")?;
            let from_tokens = parse_pointer(from)?;
            if from_tokens.len() < tokens.len() && tokens.starts_with(&from_tokens) {
                return Err(PatchError::Invalid(format!(
                    "cannot move {from:?} into its own child {path:?}"
                )));
            }
            if from_tokens == tokens {
                return get(doc, &tokens)
                    .map(|_| ())
                    .ok_or_else(|| missing("move", from));
            }
            let value = remove(doc, &from_tokens, "move", from)?;
            add(doc, &tokens, value, "move", path)
        }
        "copy" => {
            let from = op_str(op, "from")?;
            let value = get(doc, &parse_pointer(from)?)
                .cloned()
                .ok_or_else(|| missing("copy", from))?;
            add(doc, &tokens, value, "copy", path)
        }
        "test" => {
            let want = op_field(op, "value")?;
            match get(doc, &tokens) {
                Some(have) if json_equal(have, want) => Ok(()),
                _ => Err(PatchError::TestFailed {
                    path: path.to_string(),
                }),
            }
        }
        other => Err(PatchError::Invalid(format!("unknown operation {other:?}"))),
    }
}

fn missing(op: &str, path: &str) -> PatchError {
    PatchError::MissingPath {
        op: op.to_string(),
        path: path.to_string(),
    }
}

/// Splits an RFC 6901 pointer into unescaped reference tokens.
fn parse_pointer(pointer: &str) -> Result<Vec<String>, PatchError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(PatchError::Pointer {
            pointer: pointer.to_string(),
            reason: "must be empty or start with '/'".into(),
        });
    };
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => {
                            return Err(PatchError::Pointer {
                                pointer: pointer.to_string(),
                                reason: "'~' must be followed by '0' or '1'".into(),
                            });
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

/// An array index token: digits without leading zeros.
fn parse_index(token: &str) -> Option<usize> {
    if token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_digit())
        || (token.len() > 1 && token.starts_with('0'))
    {
        return None;
    }
    token.parse().ok()
}

fn get<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens.iter().try_fold(doc, |cur, token| match cur {
        Value::Object(map) => map.get(token),
        Value::Array(items) => parse_index(token).and_then(|i| items.get(i)),
        _ => None,
    })
}

fn get_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens.iter().try_fold(doc, |cur, token| match cur {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => parse_index(token).and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

fn add(
    doc: &mut Value,
    tokens: &[String],
    value: Value,
    op: &str,
    path: &str,
) -> Result<(), PatchError> {
    let Some((last, parent_tokens)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = get_mut(doc, parent_tokens).ok_or_else(|| missing(op, path))?;
    match parent {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                parse_index(last).ok_or_else(|| missing(op, path))?
            };
            if index > items.len() {
                return Err(missing(op, path));
            }
            items.insert(index, value);
            Ok(())
        }
        _ => Err(missing(op, path)),
    }
}

fn remove(doc: &mut Value, tokens: &[String], op: &str, path: &str) -> Result<Value, PatchError> {
    let Some((last, parent_tokens)) = tokens.split_last() else {
        return Err(PatchError::Invalid(format!(
            "{op} of the whole document is not allowed"
        )));
    };
    match get_mut(doc, parent_tokens) {
        Some(Value::Object(map)) => map.remove(last).ok_or_else(|| missing(op, path)),
        Some(Value::Array(items)) => match parse_index(last) {
            Some(i) if i < items.len() => Ok(items.remove(i)),
            _ => Err(missing(op, path)),
        },
        _ => Err(missing(op, path)),
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 7386
// ---------------------------------------------------------------------------------------------

/// Applies an RFC 7386 JSON merge patch to a copy of `doc`.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let Value::Object(patch_map) = patch else {
        return patch.clone();
    };
    let mut target = match doc {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch_map {
        if value.is_null() {
            target.remove(key);
        } else {
            let merged = merge_patch(target.get(key).unwrap_or(&Value::Null), value);
            target.insert(key.clone(), merged);
        }
    }
    Value::Object(target)
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch
// ---------------------------------------------------------------------------------------------

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies a Kubernetes strategic merge patch to a copy of `doc`, merging lists the way
/// `schema` says (by key, as sets, or replaced) and honouring the `$patch`, `$retainKeys`,
/// `$setElementOrder/` and `$deleteFromPrimitiveList/` directives.
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    schema: &dyn PatchSchema,
) -> Result<Value, PatchError> {
    let (Value::Object(original), Value::Object(patch)) = (doc, patch) else {
        return Err(PatchError::Invalid(
            "a strategic merge patch and its target must be JSON objects".into(),
        ));
    };
    let mut path = Vec::new();
    merge_map(original.clone(), patch, schema, &mut path).map(Value::Object)
}

fn strategic_err(path: &[String], reason: impl Into<String>) -> PatchError {
    PatchError::Strategic {
        path: if path.is_empty() {
            "<root>".to_string()
        } else {
            path.join(".")
        },
        reason: reason.into(),
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    schema: &dyn PatchSchema,
    path: &mut Vec<String>,
) -> Result<Map<String, Value>, PatchError> {
    match patch.get(DIRECTIVE) {
        None => {}
        Some(Value::String(d)) if d == "replace" => {
            // The patch is the new value: strip directives from it and stop merging.
            return merge_map(Map::new(), &without_key(patch, DIRECTIVE), schema, path);
        }
        Some(Value::String(d)) if d == "delete" => return Ok(Map::new()),
        // apimachinery accepts only replace and delete on a map (`merge` included).
        Some(other) => {
            return Err(strategic_err(path, format!("unknown patch type {other}")));
        }
    }

    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let retain: Vec<&str> = retain
            .as_array()
            .map(|keys| keys.iter().filter_map(Value::as_str).collect())
            .ok_or_else(|| strategic_err(path, "$retainKeys must be a list of strings"))?;
        // Keys set to null are deletions and need not be listed.
        for (key, _) in patch
            .iter()
            .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
        {
            if !retain.contains(&key.as_str()) {
                return Err(strategic_err(
                    path,
                    format!(
                        "all fields of the patch must be listed in $retainKeys, {key:?} is not"
                    ),
                ));
            }
        }
        original.retain(|k, _| retain.contains(&k.as_str()));
    }

    for (key, values) in patch {
        let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) else {
            continue;
        };
        let values = values
            .as_array()
            .ok_or_else(|| strategic_err(path, format!("{key} must be a list")))?;
        match original.get_mut(field) {
            Some(Value::Array(items)) => {
                items.retain(|item| !values.iter().any(|v| json_equal(v, item)));
            }
            Some(Value::Null) | None => {}
            Some(_) => {
                return Err(strategic_err(
                    path,
                    format!("{key}: the field {field:?} is not a list"),
                ));
            }
        }
    }

    for (key, patch_value) in patch {
        if key.starts_with('$') {
            continue;
        }
        if patch_value.is_null() {
            original.remove(key);
            continue;
        }
        path.push(key.clone());
        let order = patch
            .get(&format!("{SET_ELEMENT_ORDER}{key}"))
            .map(|v| {
                v.as_array()
                    .cloned()
                    .ok_or_else(|| strategic_err(path, "$setElementOrder must be a list"))
            })
            .transpose()?;
        let current = original.remove(key);
        let merged = merge_value(current, patch_value, order.as_deref(), schema, path)?;
        path.pop();
        if let Some(merged) = merged {
            original.insert(key.clone(), merged);
        }
    }

    // A `$setElementOrder` for a list the patch did not otherwise touch still reorders it.
    for (key, order) in patch {
        let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) else {
            continue;
        };
        if patch.contains_key(field) {
            continue;
        }
        let order = order
            .as_array()
            .ok_or_else(|| strategic_err(path, "$setElementOrder must be a list"))?;
        if let Some(Value::Array(items)) = original.get_mut(field) {
            path.push(field.to_string());
            let keys = list_keys(schema, path);
            path.pop();
            let reordered = apply_element_order(std::mem::take(items), order, &keys);
            *items = reordered;
        }
    }
    Ok(original)
}

fn without_key(map: &Map<String, Value>, key: &str) -> Map<String, Value> {
    let mut copy = map.clone();
    copy.remove(key);
    copy
}

/// Merges one field's patch value into its current value; `None` means the field goes away.
fn merge_value(
    current: Option<Value>,
    patch: &Value,
    order: Option<&[Value]>,
    schema: &dyn PatchSchema,
    path: &mut Vec<String>,
) -> Result<Option<Value>, PatchError> {
    match (current, patch) {
        (Some(Value::Object(cur)), Value::Object(p)) => {
            Ok(Some(Value::Object(merge_map(cur, p, schema, path)?)))
        }
        (None | Some(Value::Null), Value::Object(p)) => {
            Ok(Some(Value::Object(merge_map(Map::new(), p, schema, path)?)))
        }
        (Some(Value::Array(cur)), Value::Array(p)) => {
            merge_list(cur, p, order, schema, path).map(|v| Some(Value::Array(v)))
        }
        (None | Some(Value::Null), Value::Array(p)) => {
            merge_list(Vec::new(), p, order, schema, path).map(|v| Some(Value::Array(v)))
        }
        // Scalars, and type changes, take the patch value.
        (_, other) => Ok(Some(other.clone())),
    }
}

/// The key fields of the list at `path`, empty for atomic and set lists.
fn list_keys(schema: &dyn PatchSchema, path: &[String]) -> Vec<String> {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    match schema.list_strategy(&segments) {
        ListStrategy::MergeByKey(keys) => keys,
        _ => Vec::new(),
    }
}

fn directive_of(item: &Value) -> Option<&str> {
    item.as_object()
        .and_then(|m| m.get(DIRECTIVE))
        .and_then(Value::as_str)
}

fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    order: Option<&[Value]>,
    schema: &dyn PatchSchema,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, PatchError> {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let strategy = schema.list_strategy(&segments);
    if let Some(order) = order {
        let keys = match &strategy {
            ListStrategy::MergeByKey(keys) => keys.as_slice(),
            _ => &[],
        };
        if !follows_element_order(patch, order, keys) {
            return Err(strategic_err(
                path,
                "the order in the patch list doesn't match the $setElementOrder list",
            ));
        }
    }

    // `{"$patch": "replace"}` anywhere in the list: the rest of the patch list is the value.
    if patch.iter().any(|item| {
        directive_of(item) == Some("replace") && item.as_object().is_some_and(|m| m.len() == 1)
    }) {
        let rest: Vec<Value> = patch
            .iter()
            .filter(|item| directive_of(item) != Some("replace"))
            .cloned()
            .collect();
        return merge_list(Vec::new(), &rest, order, schema, path);
    }

    let keys = match strategy {
        ListStrategy::Atomic => return Ok(strip_directives_in_list(patch)),
        ListStrategy::MergeByKey(keys)
            if original.iter().chain(patch).all(|item| item.is_object()) =>
        {
            keys
        }
        // Merge strategy over scalars (or a keyed list holding scalars): a set union.
        _ => {
            let mut out = original;
            for item in patch {
                if !out.iter().any(|have| json_equal(have, item)) {
                    out.push(item.clone());
                }
            }
            let mut deduped: Vec<Value> = Vec::with_capacity(out.len());
            for item in out {
                if !deduped.iter().any(|have| json_equal(have, &item)) {
                    deduped.push(item);
                }
            }
            return Ok(match order {
                Some(order) => apply_element_order(deduped, order, &[]),
                None => deduped,
            });
        }
    };

    let key_of = |item: &Value, path: &[String]| -> Result<Vec<Value>, PatchError> {
        let map = item
            .as_object()
            .ok_or_else(|| strategic_err(path, "list item is not an object"))?;
        keys.iter()
            .map(|k| {
                map.get(k).cloned().ok_or_else(|| {
                    strategic_err(
                        path,
                        format!("list item does not contain the merge key {k:?}"),
                    )
                })
            })
            .collect()
    };
    let same_key = |a: &[Value], b: &[Value]| a.iter().zip(b).all(|(x, y)| json_equal(x, y));

    let mut out = original;
    for item in patch {
        let item_key = key_of(item, path)?;
        match directive_of(item) {
            Some("delete") => {
                let mut kept = Vec::with_capacity(out.len());
                for existing in out {
                    let matches = key_of(&existing, path).is_ok_and(|k| same_key(&k, &item_key));
                    if !matches {
                        kept.push(existing);
                    }
                }
                out = kept;
            }
            Some("replace") | None => {
                let Value::Object(patch_item) = item else {
                    continue;
                };
                let position = out.iter().position(|existing| {
                    key_of(existing, path).is_ok_and(|k| same_key(&k, &item_key))
                });
                match position.and_then(|i| out.get_mut(i).map(|slot| (i, slot))) {
                    Some((_, Value::Object(existing))) => {
                        let merged = merge_map(std::mem::take(existing), patch_item, schema, path)?;
                        *existing = merged;
                    }
                    _ => {
                        let fresh = merge_map(Map::new(), patch_item, schema, path)?;
                        out.push(Value::Object(fresh));
                    }
                }
            }
            Some(other) => {
                return Err(strategic_err(path, format!("unknown patch type {other:?}")));
            }
        }
    }
    Ok(match order {
        Some(order) => apply_element_order(out, order, &keys),
        None => out,
    })
}

fn strip_directives_in_list(items: &[Value]) -> Vec<Value> {
    items
        .iter()
        .filter(|item| {
            directive_of(item).is_none() || item.as_object().is_some_and(|m| m.len() > 1)
        })
        .map(strip_directives)
        .collect()
}

fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Whether the patch items (directives aside) appear in the same relative order as in the
/// `$setElementOrder` list, which must name them all.
fn follows_element_order(patch: &[Value], order: &[Value], keys: &[String]) -> bool {
    let same = |a: &Value, b: &Value| {
        if keys.is_empty() {
            json_equal(a, b)
        } else {
            keys.iter().all(|k| match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) => json_equal(x, y),
                _ => false,
            })
        }
    };
    let mut remaining = order.iter();
    patch
        .iter()
        .filter(|item| directive_of(item).is_none())
        .all(|item| remaining.any(|o| same(item, o)))
}

/// Reorders a merged list by a `$setElementOrder` list.
///
/// Items named by `order` come in that order; items only the server had keep their own relative
/// order, and the two runs interleave by the items' positions in the server's list, so that
/// server-only items stay near where they were.
fn apply_element_order(merged: Vec<Value>, order: &[Value], keys: &[String]) -> Vec<Value> {
    let identity = |item: &Value| -> Value {
        if keys.is_empty() {
            return item.clone();
        }
        let mut id = Map::new();
        for k in keys {
            if let Some(v) = item.get(k) {
                id.insert(k.clone(), v.clone());
            }
        }
        Value::Object(id)
    };
    let order_ids: Vec<Value> = order.iter().map(identity).collect();
    let server_ids: Vec<Value> = merged.iter().map(identity).collect();
    let rank = |ids: &[Value], id: &Value| ids.iter().position(|x| json_equal(x, id));

    let mut listed: Vec<(usize, Value)> = Vec::new();
    let mut server_only: Vec<Value> = Vec::new();
    for item in merged {
        match rank(&order_ids, &identity(&item)) {
            Some(r) => listed.push((r, item)),
            None => server_only.push(item),
        }
    }
    listed.sort_by_key(|(r, _)| *r);

    let mut out = Vec::with_capacity(listed.len() + server_only.len());
    let mut listed = listed.into_iter().map(|(_, v)| v).peekable();
    let mut server_only = server_only.into_iter().peekable();
    loop {
        match (listed.peek(), server_only.peek()) {
            (Some(l), Some(s)) => {
                let take_listed = matches!(
                    (rank(&server_ids, &identity(l)), rank(&server_ids, &identity(s))),
                    (Some(a), Some(b)) if a < b
                );
                let next = if take_listed {
                    listed.next()
                } else {
                    server_only.next()
                };
                out.extend(next);
            }
            (Some(_), None) => out.extend(listed.next()),
            (None, Some(_)) => out.extend(server_only.next()),
            (None, None) => break,
        }
    }
    out
}
