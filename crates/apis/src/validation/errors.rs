//! Field errors, the apiserver's 422 message and `metav1.Status`, and schema (CRD) errors.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};
use serde_json::Value;

use super::path::FieldPath;

/// What kind of problem a [`FieldError`] reports; mirrors `field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorType {
    /// `FieldValueNotFound`.
    NotFound,
    /// `FieldValueRequired`.
    Required,
    /// `FieldValueDuplicate`.
    Duplicate,
    /// `FieldValueInvalid`.
    Invalid,
    /// `FieldValueNotSupported` (an enum violation).
    NotSupported,
    /// `FieldValueForbidden`.
    Forbidden,
    /// `FieldValueTooLong`.
    TooLong,
    /// `FieldValueTooMany`.
    TooMany,
    /// `InternalError`.
    Internal,
    /// `FieldValueTypeInvalid` (the value has the wrong JSON type).
    TypeInvalid,
}

impl ErrorType {
    /// The machine-readable cause type carried in `Status.details.causes[].reason`.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The human-readable lead of the message, e.g. `Invalid value`.
    pub fn text(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        }
    }

    /// Parses a CEL rule's `reason` (`FieldValueInvalid`, `FieldValueForbidden`, ...).
    pub fn from_rule_reason(reason: &str) -> Option<Self> {
        match reason {
            "FieldValueInvalid" => Some(ErrorType::Invalid),
            "FieldValueForbidden" => Some(ErrorType::Forbidden),
            "FieldValueRequired" => Some(ErrorType::Required),
            "FieldValueDuplicate" => Some(ErrorType::Duplicate),
            _ => None,
        }
    }
}

/// The offending value an error quotes, printed as the apiserver's Go code prints it.
#[derive(Clone, Debug, PartialEq)]
pub enum BadValue {
    /// Nothing is printed (`Required`, `Forbidden`, `TooLong` never print a value).
    Omitted,
    /// A JSON value: strings quoted, numbers and booleans bare, `null` as `"null"`.
    Json(Value),
    /// The key fields of a list-map item, printed as Go prints a `map[string]interface{}`.
    MapKeys(BTreeMap<String, Value>),
}

impl BadValue {
    fn render(&self) -> Option<String> {
        match self {
            BadValue::Omitted => None,
            BadValue::Json(Value::Null) => Some("\"null\"".to_owned()),
            BadValue::Json(Value::String(s)) => Some(go_quote(s)),
            BadValue::Json(other) => Some(other.to_string()),
            BadValue::MapKeys(keys) => {
                let inner: Vec<String> = keys
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::String(s) => go_quote(s),
                            other => other.to_string(),
                        };
                        format!("{}:{v}", go_quote(k))
                    })
                    .collect();
                Some(format!("map[string]interface {{}}{{{}}}", inner.join(", ")))
            }
        }
    }
}

/// Quotes a string the way Go's `%q` does for the characters our inputs contain.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One field-level validation error, like the apiserver's `*field.Error`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// The kind of problem.
    pub error_type: ErrorType,
    /// Where the problem is.
    pub field: FieldPath,
    /// The offending value as printed in the message.
    pub bad_value: BadValue,
    /// Extra explanation appended after the value.
    pub detail: String,
}

impl FieldError {
    /// `Required value[: detail]`.
    pub fn required(field: FieldPath, detail: impl Into<String>) -> Self {
        Self::build(ErrorType::Required, field, BadValue::Omitted, detail)
    }

    /// `Forbidden: detail`.
    pub fn forbidden(field: FieldPath, detail: impl Into<String>) -> Self {
        Self::build(ErrorType::Forbidden, field, BadValue::Omitted, detail)
    }

    /// `Invalid value: <value>: detail`.
    pub fn invalid(field: FieldPath, value: Value, detail: impl Into<String>) -> Self {
        Self::build(ErrorType::Invalid, field, BadValue::Json(value), detail)
    }

    /// `Invalid value: <value>: detail`, typed `FieldValueTypeInvalid`.
    pub fn type_invalid(field: FieldPath, value: Value, detail: impl Into<String>) -> Self {
        Self::build(ErrorType::TypeInvalid, field, BadValue::Json(value), detail)
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(field: FieldPath, value: Value, supported: &[String]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::build(
            ErrorType::NotSupported,
            field,
            BadValue::Json(value),
            detail,
        )
    }

    /// `Too long: may not be more than N bytes`.
    pub fn too_long(field: FieldPath, max: u64) -> Self {
        let unit = if max == 1 { "byte" } else { "bytes" };
        Self::build(
            ErrorType::TooLong,
            field,
            BadValue::Omitted,
            format!("may not be more than {max} {unit}"),
        )
    }

    /// `Too many: <actual>: must have at most N items`.
    pub fn too_many(field: FieldPath, actual: usize, max: u64) -> Self {
        let unit = if max == 1 { "item" } else { "items" };
        Self::build(
            ErrorType::TooMany,
            field,
            BadValue::Json(Value::from(actual)),
            format!("must have at most {max} {unit}"),
        )
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: FieldPath, value: BadValue) -> Self {
        Self::build(ErrorType::Duplicate, field, value, "")
    }

    /// `Internal error: detail`.
    pub fn internal(field: FieldPath, detail: impl Into<String>) -> Self {
        Self::build(ErrorType::Internal, field, BadValue::Omitted, detail)
    }

    fn build(
        error_type: ErrorType,
        field: FieldPath,
        bad_value: BadValue,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            error_type,
            field,
            bad_value,
            detail: detail.into(),
        }
    }

    /// The message without the field path (`field.Error.ErrorBody()`), as carried in `causes[].message`.
    pub fn body(&self) -> String {
        let mut s = self.error_type.text().to_owned();
        let prints_value = !matches!(
            self.error_type,
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal
        );
        if prints_value && let Some(value) = self.bad_value.render() {
            s.push_str(": ");
            s.push_str(&value);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Every error found in one object, in the order they were found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    /// The errors.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether any error at `path` (rendered) has a message containing `fragment`.
    pub fn contains(&self, path: &str, fragment: &str) -> bool {
        self.0
            .iter()
            .any(|e| e.field.to_string() == path && e.to_string().contains(fragment))
    }

    /// The errors with repeated messages dropped, as `ErrorList.ToAggregate()` does.
    fn deduplicated(&self) -> Vec<&FieldError> {
        let mut seen = BTreeSet::new();
        self.0
            .iter()
            .filter(|e| seen.insert(e.to_string()))
            .collect()
    }

    /// The 422 message: `<Kind>.<group> "<name>" is invalid: <errors>`, errors bracketed when
    /// there are several.
    pub fn invalid_message(&self, kind: &str, group: &str, name: &str) -> String {
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        format!("{qualified} {} is invalid: {self}", go_quote(name))
    }

    /// The `metav1.Status` the apiserver answers with (HTTP 422, reason `Invalid`).
    pub fn to_status(&self, kind: &str, group: &str, name: &str) -> Status {
        let causes = self
            .0
            .iter()
            .map(|e| StatusCause {
                field: Some(e.field.to_string()),
                message: Some(e.body()),
                reason: Some(e.error_type.reason().to_owned()),
            })
            .collect();
        Status {
            code: Some(422),
            details: Some(StatusDetails {
                causes: Some(causes),
                group: Some(group.to_owned()),
                kind: Some(kind.to_owned()),
                name: Some(name.to_owned()),
                retry_after_seconds: None,
                uid: None,
            }),
            message: Some(self.invalid_message(kind, group, name)),
            metadata: Default::default(),
            reason: Some("Invalid".to_owned()),
            status: Some("Failure".to_owned()),
        }
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.deduplicated();
        match errors.as_slice() {
            [] => Ok(()),
            [only] => write!(f, "{only}"),
            many => {
                let rendered: Vec<String> = many.iter().map(|e| e.to_string()).collect();
                write!(f, "[{}]", rendered.join(", "))
            }
        }
    }
}

impl std::error::Error for FieldErrors {}

impl From<Vec<FieldError>> for FieldErrors {
    fn from(errors: Vec<FieldError>) -> Self {
        Self(errors)
    }
}

/// A CRD the validator cannot be built from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    /// The CRD declares no version with a schema.
    #[error("version {version:?} has no openAPIV3Schema")]
    MissingSchema {
        /// The version.
        version: String,
    },
    /// A `pattern` is not a regular expression the engine can compile.
    #[error("{path}: invalid pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// Schema location.
        path: String,
        /// The pattern.
        pattern: String,
        /// Why it failed.
        reason: String,
    },
    /// A CEL rule (or messageExpression) does not parse.
    #[error("{path}: CEL expression {rule:?} does not compile: {reason}")]
    CelCompile {
        /// Schema location.
        path: String,
        /// The expression.
        rule: String,
        /// Why it failed.
        reason: String,
    },
    /// A CEL rule calls a function this engine does not provide.
    #[error("{path}: CEL expression {rule:?} calls unsupported function {function:?}")]
    UnsupportedFunction {
        /// Schema location.
        path: String,
        /// The expression.
        rule: String,
        /// The function.
        function: String,
    },
    /// A rule's `fieldPath` does not name a field of the schema it sits on.
    #[error("{path}: fieldPath {field_path:?} is invalid: {reason}")]
    InvalidFieldPath {
        /// Schema location.
        path: String,
        /// The fieldPath.
        field_path: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A rule's `reason` is not one of the four the apiserver accepts.
    #[error("{path}: unsupported rule reason {reason:?}")]
    InvalidReason {
        /// Schema location.
        path: String,
        /// The reason.
        reason: String,
    },
    /// The CEL environment could not be set up (a bug in this crate).
    #[error("CEL environment: {0}")]
    Environment(String),
}

impl SchemaError {
    /// A short, stable label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            SchemaError::MissingSchema { .. } => "missing_schema",
            SchemaError::InvalidPattern { .. } => "invalid_pattern",
            SchemaError::CelCompile { .. } => "cel_compile",
            SchemaError::UnsupportedFunction { .. } => "cel_unsupported_function",
            SchemaError::InvalidFieldPath { .. } => "invalid_field_path",
            SchemaError::InvalidReason { .. } => "invalid_reason",
            SchemaError::Environment(_) => "cel_environment",
        }
    }
}
