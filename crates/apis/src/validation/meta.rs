//! ObjectMeta validation the apiserver applies to every custom resource: name (DNS-1123
//! subdomain), generateName, namespace vs scope, label and annotation syntax.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::errors::FieldError;
use super::path::FieldPath;

const DNS1123_SUBDOMAIN: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MAX: usize = 63;
const ANNOTATIONS_MAX_BYTES: u64 = 256 * 1024;

/// Compiles a constant pattern anchored at both ends. The patterns are known to compile; were
/// one not to, its check is skipped rather than panicking.
fn anchored(pattern: &str) -> Option<Regex> {
    Regex::new(&format!("^(?:{pattern})$")).ok()
}

fn matches(regex: &Option<Regex>, value: &str) -> bool {
    regex.as_ref().is_none_or(|r| r.is_match(value))
}

static SUBDOMAIN_RE: LazyLock<Option<Regex>> = LazyLock::new(|| anchored(DNS1123_SUBDOMAIN));
static QUALIFIED_NAME_RE: LazyLock<Option<Regex>> = LazyLock::new(|| anchored(QUALIFIED_NAME));
static LABEL_VALUE_RE: LazyLock<Option<Regex>> = LazyLock::new(|| anchored(LABEL_VALUE));

fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// Problems with `value` as a DNS-1123 subdomain, in the apiserver's words.
pub(crate) fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !matches(&SUBDOMAIN_RE, value) {
        errors.push(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{DNS1123_SUBDOMAIN}')"
        ));
    }
    errors
}

/// Problems with `value` as a qualified name (label or annotation key).
pub(crate) fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                errors.extend(
                    dns1123_subdomain_errors(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED_NAME}') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errors.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX)));
    }
    if !name.is_empty() && !matches(&QUALIFIED_NAME_RE, name) {
        errors.push(format!(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED_NAME}')"
        ));
    }
    errors
}

/// Problems with `value` as a label value.
pub(crate) fn label_value_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        errors.push(max_len_error(LABEL_VALUE_MAX));
    }
    if !matches(&LABEL_VALUE_RE, value) {
        errors.push(format!(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '{LABEL_VALUE}')"
        ));
    }
    errors
}

fn string_field<'a>(meta: &'a serde_json::Map<String, Value>, key: &str) -> &'a str {
    meta.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Validates `metadata` at `path` (`metadata` of a resource, or of an embedded resource, where
/// a name is optional).
pub(crate) fn validate_object_meta(
    metadata: Option<&Value>,
    namespaced: Option<bool>,
    name_required: bool,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) {
    let empty = serde_json::Map::new();
    let meta = match metadata {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(meta)) => meta,
        Some(other) => {
            errors.push(FieldError::type_invalid(
                path.clone(),
                Value::String("object".to_owned()),
                format!("must be of type object: {}", other),
            ));
            return;
        }
    };
    let name = string_field(meta, "name");
    let generate_name = string_field(meta, "generateName");
    if !generate_name.is_empty() {
        let masked = match generate_name.strip_suffix('-') {
            Some(stem) if !stem.is_empty() => format!("{stem}a"),
            _ => generate_name.to_owned(),
        };
        for message in dns1123_subdomain_errors(&masked) {
            errors.push(FieldError::invalid(
                path.child("generateName"),
                Value::from(generate_name),
                message,
            ));
        }
    }
    if name.is_empty() {
        if name_required && generate_name.is_empty() {
            errors.push(FieldError::required(
                path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        for message in dns1123_subdomain_errors(name) {
            errors.push(FieldError::invalid(
                path.child("name"),
                Value::from(name),
                message,
            ));
        }
    }
    let namespace = string_field(meta, "namespace");
    match namespaced {
        Some(false) if !namespace.is_empty() => {
            errors.push(FieldError::forbidden(
                path.child("namespace"),
                "not allowed on this type",
            ));
        }
        Some(true) if namespace.is_empty() => {
            errors.push(FieldError::required(path.child("namespace"), ""))
        }
        Some(true) => {
            for message in dns1123_label_errors(namespace) {
                errors.push(FieldError::invalid(
                    path.child("namespace"),
                    Value::from(namespace),
                    message,
                ));
            }
        }
        _ => {}
    }
    if let Some(Value::Object(labels)) = meta.get("labels") {
        let labels_path = path.child("labels");
        for (key, value) in labels {
            for message in qualified_name_errors(key) {
                errors.push(FieldError::invalid(
                    labels_path.clone(),
                    Value::from(key.as_str()),
                    message,
                ));
            }
            let value = value.as_str().unwrap_or("");
            for message in label_value_errors(value) {
                errors.push(FieldError::invalid(
                    labels_path.key(key),
                    Value::from(value),
                    message,
                ));
            }
        }
    }
    if let Some(Value::Object(annotations)) = meta.get("annotations") {
        let annotations_path = path.child("annotations");
        let mut total: u64 = 0;
        for (key, value) in annotations {
            for message in qualified_name_errors(&key.to_lowercase()) {
                errors.push(FieldError::invalid(
                    annotations_path.clone(),
                    Value::from(key.as_str()),
                    message,
                ));
            }
            total += (key.len() + value.as_str().map_or(0, str::len)) as u64;
        }
        if total > ANNOTATIONS_MAX_BYTES {
            errors.push(FieldError::too_long(
                annotations_path,
                ANNOTATIONS_MAX_BYTES,
            ));
        }
    }
}

fn dns1123_label_errors(value: &str) -> Vec<String> {
    const LABEL: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
    static LABEL_RE: LazyLock<Option<Regex>> = LazyLock::new(|| anchored(LABEL));
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push(max_len_error(63));
    }
    if !matches(&LABEL_RE, value) {
        errors.push(format!(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{LABEL}')"
        ));
    }
    errors
}
