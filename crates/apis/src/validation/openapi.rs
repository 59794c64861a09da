//! OpenAPI v3 value validation with kube-openapi's messages, plus the `x-kubernetes-list-type`
//! set/map uniqueness checks.

use std::collections::BTreeMap;

use serde_json::Value;

use super::errors::{BadValue, FieldError, go_quote};
use super::path::FieldPath;
use super::schema::{Additional, JsonType, ListType, Node};

/// The schema walk: where its errors go.
pub(crate) struct Walk<'a> {
    pub(crate) errors: &'a mut Vec<FieldError>,
}

/// The JSON type name kube-openapi reports for a value.
fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn type_matches(ty: JsonType, value: &Value) -> bool {
    match ty {
        JsonType::Object => value.is_object(),
        JsonType::Array => value.is_array(),
        JsonType::String => value.is_string(),
        JsonType::Integer => is_integer(value),
        JsonType::Number => value.is_number(),
        JsonType::Boolean => value.is_boolean(),
    }
}

/// Formats a float as Go's `%v` does for the bounds our schemas use.
pub(crate) fn go_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        let digits = format!("{}", f as i128);
        let magnitude = digits.trim_start_matches('-').len();
        if magnitude <= 21 && f.abs() < 1e6 {
            return digits;
        }
        let exponent = magnitude - 1;
        let mantissa = f / 10f64.powi(exponent as i32);
        let mantissa = format!("{mantissa}");
        return format!("{mantissa}e+{exponent:02}");
    }
    format!("{f}")
}

fn body_path(path: &FieldPath) -> String {
    if path.is_root() {
        String::new()
    } else {
        path.to_string()
    }
}

fn invalid(path: &FieldPath, value: &Value, message: String) -> FieldError {
    FieldError::invalid(
        path.clone(),
        value.clone(),
        format!("{} in body {message}", body_path(path)),
    )
}

fn type_error(path: &FieldPath, expected: &str, value: &Value) -> FieldError {
    let actual = json_type_name(value);
    FieldError::type_invalid(
        path.clone(),
        Value::String(actual.to_owned()),
        format!(
            "{} in body must be of type {expected}: {}",
            body_path(path),
            go_quote(actual)
        ),
    )
}

impl Walk<'_> {
    /// Validates `value` against `node`. `old` is the correlated old value on update; a value
    /// equal to its old one is not re-validated (the apiserver's validation ratcheting).
    /// `resource` marks a resource root, whose `metadata` is validated as ObjectMeta instead.
    pub(crate) fn value(
        &mut self,
        node: &Node,
        value: &Value,
        old: Option<&Value>,
        path: &FieldPath,
        resource: bool,
    ) {
        if old.is_some_and(|o| o == value) {
            return;
        }
        if value.is_null() {
            if !node.nullable
                && let Some(ty) = node.ty
            {
                self.errors.push(type_error(path, ty.name(), value));
            }
            return;
        }
        if let Some(ty) = node.ty {
            if !type_matches(ty, value) {
                self.errors.push(type_error(path, ty.name(), value));
                return;
            }
        } else if node.int_or_string
            && node.any_of.is_empty()
            && !(is_integer(value) || value.is_string())
        {
            self.errors.push(type_error(path, "integer,string", value));
            return;
        }
        self.keywords(node, value, path);
        match value {
            Value::Array(items) => self.array(node, items, old, path),
            Value::Object(fields) => {
                self.object(node, fields, old, path, resource || node.embedded)
            }
            _ => {}
        }
    }

    /// The keywords that apply to the value itself (not its children).
    fn keywords(&mut self, node: &Node, value: &Value, path: &FieldPath) {
        if let Some(allowed) = &node.enumeration
            && !allowed.contains(value)
        {
            let supported: Vec<String> = allowed
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            self.errors.push(FieldError::not_supported(
                path.clone(),
                value.clone(),
                &supported,
            ));
        }
        match value {
            Value::String(s) => self.string(node, s, value, path),
            Value::Number(n) => self.number(node, n.as_f64().unwrap_or(f64::NAN), value, path),
            _ => {}
        }
        self.combinators(node, value, path);
    }

    fn string(&mut self, node: &Node, s: &str, value: &Value, path: &FieldPath) {
        let chars = s.chars().count() as u64;
        if let Some(max) = node.max_length
            && chars > max
        {
            self.errors.push(FieldError::too_long(path.clone(), max));
        }
        if let Some(min) = node.min_length
            && chars < min
        {
            self.errors.push(invalid(
                path,
                value,
                format!("should be at least {min} chars long"),
            ));
        }
        if let Some((pattern, regex)) = &node.pattern
            && !regex.is_match(s)
        {
            self.errors
                .push(invalid(path, value, format!("should match '{pattern}'")));
        }
        if let Some(format) = &node.format
            && !format_ok(format, s)
        {
            self.errors.push(FieldError::type_invalid(
                path.clone(),
                value.clone(),
                format!(
                    "{} in body must be of type {format}: {}",
                    body_path(path),
                    go_quote(s)
                ),
            ));
        }
    }

    fn number(&mut self, node: &Node, n: f64, value: &Value, path: &FieldPath) {
        if let Some(min) = node.minimum {
            if node.exclusive_minimum && n <= min {
                self.errors.push(invalid(
                    path,
                    value,
                    format!("should be greater than {}", go_float(min)),
                ));
            } else if n < min {
                self.errors.push(invalid(
                    path,
                    value,
                    format!("should be greater than or equal to {}", go_float(min)),
                ));
            }
        }
        if let Some(max) = node.maximum {
            if node.exclusive_maximum && n >= max {
                self.errors.push(invalid(
                    path,
                    value,
                    format!("should be less than {}", go_float(max)),
                ));
            } else if n > max {
                self.errors.push(invalid(
                    path,
                    value,
                    format!("should be less than or equal to {}", go_float(max)),
                ));
            }
        }
        if let Some(factor) = node.multiple_of
            && factor != 0.0
            && (n / factor).fract() != 0.0
        {
            self.errors.push(invalid(
                path,
                value,
                format!("should be a multiple of {}", go_float(factor)),
            ));
        }
    }

    fn combinators(&mut self, node: &Node, value: &Value, path: &FieldPath) {
        for branch in &node.all_of {
            self.value(branch, value, None, path, false);
        }
        if !node.any_of.is_empty() {
            let mut best: Option<Vec<FieldError>> = None;
            let mut passed = false;
            for branch in &node.any_of {
                let errors = branch_errors(branch, value, path);
                if errors.is_empty() {
                    passed = true;
                    break;
                }
                if best.is_none() {
                    best = Some(errors);
                }
            }
            if !passed {
                self.errors.push(FieldError::invalid(
                    path.clone(),
                    Value::String(String::new()),
                    format!(
                        "{} must validate at least one schema (anyOf)",
                        body_path(path)
                    ),
                ));
                self.errors.extend(best.unwrap_or_default());
            }
        }
        if !node.one_of.is_empty() {
            let passing = node
                .one_of
                .iter()
                .filter(|b| branch_errors(b, value, path).is_empty())
                .count();
            if passing != 1 {
                self.errors.push(FieldError::invalid(
                    path.clone(),
                    Value::String(String::new()),
                    format!(
                        "{} must validate one and only one schema (oneOf)",
                        body_path(path)
                    ),
                ));
            }
        }
        if let Some(not) = &node.not
            && branch_errors(not, value, path).is_empty()
        {
            self.errors.push(FieldError::invalid(
                path.clone(),
                Value::String(String::new()),
                format!("{} must not validate the schema (not)", body_path(path)),
            ));
        }
    }

    fn array(&mut self, node: &Node, items: &[Value], old: Option<&Value>, path: &FieldPath) {
        let count = items.len() as u64;
        if let Some(max) = node.max_items
            && count > max
        {
            self.errors
                .push(FieldError::too_many(path.clone(), items.len(), max));
        }
        if let Some(min) = node.min_items
            && count < min
        {
            self.errors.push(invalid(
                path,
                &Value::from(items.len()),
                format!("should have at least {min} items"),
            ));
        }
        if let Some(item_node) = node.items.as_deref() {
            for (i, item) in items.iter().enumerate() {
                let old_item = old.and_then(|o| correlate_item(&node.list_type, item, o));
                self.value(item_node, item, old_item, &path.index(i), false);
            }
        }
        self.list_type(node, items, path);
    }

    fn list_type(&mut self, node: &Node, items: &[Value], path: &FieldPath) {
        match &node.list_type {
            ListType::Atomic => {}
            ListType::Set => {
                for (i, item) in items.iter().enumerate() {
                    if items.iter().take(i).any(|earlier| earlier == item) {
                        self.errors.push(FieldError::duplicate(
                            path.index(i),
                            BadValue::Json(item.clone()),
                        ));
                    }
                }
            }
            ListType::Map(keys) => {
                let mut seen: Vec<BTreeMap<String, Value>> = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let Some(fields) = item.as_object() else {
                        continue;
                    };
                    let key: BTreeMap<String, Value> = keys
                        .iter()
                        .filter_map(|k| fields.get(k).map(|v| (k.clone(), v.clone())))
                        .collect();
                    if seen.contains(&key) {
                        self.errors
                            .push(FieldError::duplicate(path.index(i), BadValue::MapKeys(key)));
                    } else {
                        seen.push(key);
                    }
                }
            }
        }
    }

    fn object(
        &mut self,
        node: &Node,
        fields: &serde_json::Map<String, Value>,
        old: Option<&Value>,
        path: &FieldPath,
        resource: bool,
    ) {
        let count = fields.len() as u64;
        if let Some(max) = node.max_properties
            && count > max
        {
            self.errors
                .push(FieldError::too_many(path.clone(), fields.len(), max));
        }
        if let Some(min) = node.min_properties
            && count < min
        {
            self.errors.push(invalid(
                path,
                &Value::from(fields.len()),
                format!("should have at least {min} properties"),
            ));
        }
        if node.embedded {
            for key in ["apiVersion", "kind"] {
                if fields
                    .get(key)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    self.errors
                        .push(FieldError::required(path.child(key), "must not be empty"));
                }
            }
            super::meta::validate_object_meta(
                fields.get("metadata"),
                None,
                false,
                &path.child("metadata"),
                self.errors,
            );
        }
        for required in &node.required {
            if !fields.contains_key(required) {
                self.errors
                    .push(FieldError::required(path.child(required), ""));
            }
        }
        let old_fields = if node.map_atomic {
            None
        } else {
            old.and_then(Value::as_object)
        };
        for (key, field) in fields {
            if resource && (key == "metadata" || key == "apiVersion" || key == "kind") {
                continue;
            }
            let old_field = old_fields.and_then(|o| o.get(key));
            if let Some(child) = node.properties.get(key) {
                self.value(child, field, old_field, &path.child(key), false);
            } else if let Additional::Schema(values) = &node.additional {
                // kube-openapi names map entries with a dot, and the apiserver keeps that path.
                self.value(values, field, old_field, &path.child(key), false);
            }
        }
    }
}

fn branch_errors(branch: &Node, value: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    Walk {
        errors: &mut errors,
    }
    .value(branch, value, None, path, false);
    errors
}

/// The old item an update correlates with `item`: for list-type map, the old item with the
/// same key fields; for a set, an equal old item; atomic lists do not correlate.
pub(crate) fn correlate_item<'a>(
    list_type: &ListType,
    item: &Value,
    old_list: &'a Value,
) -> Option<&'a Value> {
    let old_items = old_list.as_array()?;
    match list_type {
        ListType::Atomic => None,
        ListType::Set => old_items.iter().find(|o| *o == item),
        ListType::Map(keys) => {
            let fields = item.as_object()?;
            old_items.iter().find(|o| {
                o.as_object()
                    .is_some_and(|of| keys.iter().all(|k| of.get(k) == fields.get(k)))
            })
        }
    }
}

fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "byte" => is_base64(s),
        "uuid" => is_uuid(s),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => match s.split_once('/') {
            Some((ip, bits)) => {
                let bits: Option<u8> = bits.parse().ok();
                match (ip.parse::<std::net::IpAddr>(), bits) {
                    (Ok(std::net::IpAddr::V4(_)), Some(b)) => b <= 32,
                    (Ok(std::net::IpAddr::V6(_)), Some(b)) => b <= 128,
                    _ => false,
                }
            }
            None => false,
        },
        // Formats kube-openapi does not check, or we do not: accepted as the apiserver does
        // for unknown formats.
        _ => true,
    }
}

fn is_base64(s: &str) -> bool {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return false;
    }
    let padding = bytes.iter().rev().take_while(|b| **b == b'=').count();
    if padding > 2 {
        return false;
    }
    bytes[..bytes.len() - padding]
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    groups.len() == lengths.len()
        && groups
            .iter()
            .zip(lengths)
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}
