//! API errors and their `metav1.Status` wire form.

use serde_json::{Map, Value, json};

/// One `details.causes` entry of a Status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCause {
    /// Machine-readable reason, e.g. `FieldValueInvalid`.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// Field path, e.g. `spec.replicas`.
    pub field: String,
}

/// An error answer of the API server: HTTP code, `reason`, message and details.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// The `metav1.StatusReason` (`NotFound`, `Conflict`, ...).
    pub reason: String,
    /// Human-readable message, worded like kube-apiserver's.
    pub message: String,
    /// `details` (boxed to keep `Result<_, ApiError>` small).
    pub details: Box<ErrorDetails>,
}

/// The `details` of a Status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ErrorDetails {
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind` (a resource plural for most errors, a Kind for `Invalid`).
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<StatusCause>,
    /// `details.retryAfterSeconds`.
    pub retry_after_seconds: Option<u32>,
}

/// Names a resource the way apiserver messages do: `pods`, `nodepools.karpenter.sh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedResource {
    /// API group ("" for core).
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl QualifiedResource {
    /// Builds a qualified resource.
    pub fn new(group: &str, resource: &str) -> Self {
        QualifiedResource {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

impl std::fmt::Display for QualifiedResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

impl ApiError {
    fn base(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: Box::default(),
        }
    }

    fn with_resource(mut self, qr: &QualifiedResource, name: &str) -> Self {
        self.details.name = Some(name.to_string());
        if !qr.group.is_empty() {
            self.details.group = Some(qr.group.clone());
        }
        self.details.kind = Some(qr.resource.clone());
        self
    }

    /// 404 `pods "x" not found`.
    pub fn not_found(qr: &QualifiedResource, name: &str) -> Self {
        Self::base(404, "NotFound", format!("{qr} \"{name}\" not found")).with_resource(qr, name)
    }

    /// 404 for a path that names nothing.
    pub fn not_found_path() -> Self {
        Self::base(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 409 `pods "x" already exists`.
    pub fn already_exists(qr: &QualifiedResource, name: &str) -> Self {
        Self::base(
            409,
            "AlreadyExists",
            format!("{qr} \"{name}\" already exists"),
        )
        .with_resource(qr, name)
    }

    /// 409 Conflict with apiserver's optimistic-concurrency wording.
    pub fn conflict_modified(qr: &QualifiedResource, name: &str) -> Self {
        Self::conflict(
            qr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 `Operation cannot be fulfilled on <qr> "<name>": <why>`.
    pub fn conflict(qr: &QualifiedResource, name: &str, why: &str) -> Self {
        Self::base(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {qr} \"{name}\": {why}"),
        )
        .with_resource(qr, name)
    }

    /// 422 Invalid: `<Kind>[.group] "<name>" is invalid: <causes>`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<StatusCause>) -> Self {
        let qualified_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let rendered: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let joined = match rendered.len() {
            1 => rendered.join(""),
            _ => format!("[{}]", rendered.join(", ")),
        };
        let mut err = Self::base(
            422,
            "Invalid",
            format!("{qualified_kind} \"{name}\" is invalid: {joined}"),
        );
        err.details.name = Some(name.to_string());
        if !group.is_empty() {
            err.details.group = Some(group.to_string());
        }
        err.details.kind = Some(kind.to_string());
        err.details.causes = causes;
        err
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::base(400, "BadRequest", message)
    }

    /// 403 Forbidden.
    pub fn forbidden(qr: &QualifiedResource, name: &str, why: &str) -> Self {
        Self::base(
            403,
            "Forbidden",
            format!("{qr} \"{name}\" is forbidden: {why}"),
        )
        .with_resource(qr, name)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::base(405, "MethodNotAllowed", message)
    }

    /// 406 NotAcceptable.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::base(406, "NotAcceptable", message)
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::base(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {content_type}"
            ),
        )
    }

    /// 410 Expired.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::base(410, "Expired", message)
    }

    /// 429 TooManyRequests.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::base(429, "TooManyRequests", message)
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::base(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// 504 Timeout.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::base(504, "Timeout", message)
    }

    /// An arbitrary error, for fault injection.
    pub fn custom(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self::base(code, reason, message)
    }

    /// Adds a cause.
    pub fn with_cause(mut self, reason: &str, message: &str, field: &str) -> Self {
        self.details.causes.push(StatusCause {
            reason: reason.to_string(),
            message: message.to_string(),
            field: field.to_string(),
        });
        self
    }

    /// The `metav1.Status` JSON body.
    pub fn to_status(&self) -> Value {
        let mut details = Map::new();
        if let Some(name) = &self.details.name {
            details.insert("name".into(), json!(name));
        }
        if let Some(group) = &self.details.group {
            details.insert("group".into(), json!(group));
        }
        if let Some(kind) = &self.details.kind {
            details.insert("kind".into(), json!(kind));
        }
        if !self.details.causes.is_empty() {
            let causes: Vec<Value> = self
                .details
                .causes
                .iter()
                .map(|c| {
                    let mut m = Map::new();
                    m.insert("reason".into(), json!(c.reason));
                    m.insert("message".into(), json!(c.message));
                    if !c.field.is_empty() {
                        m.insert("field".into(), json!(c.field));
                    }
                    Value::Object(m)
                })
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(secs) = self.details.retry_after_seconds {
            details.insert("retryAfterSeconds".into(), json!(secs));
        }
        let mut status = Map::new();
        status.insert("kind".into(), json!("Status"));
        status.insert("apiVersion".into(), json!("v1"));
        status.insert("metadata".into(), json!({}));
        status.insert("status".into(), json!("Failure"));
        status.insert("message".into(), json!(self.message));
        status.insert("reason".into(), json!(self.reason));
        if !details.is_empty() {
            status.insert("details".into(), Value::Object(details));
        }
        status.insert("code".into(), json!(self.code));
        Value::Object(status)
    }
}

/// A `metav1.Status` with `status: Success`.
pub fn success_status(details: Option<Value>) -> Value {
    let mut status = Map::new();
    status.insert("kind".into(), json!("Status"));
    status.insert("apiVersion".into(), json!("v1"));
    status.insert("metadata".into(), json!({}));
    status.insert("status".into(), json!("Success"));
    if let Some(d) = details {
        status.insert("details".into(), d);
    }
    Value::Object(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_shapes_match_apiserver() {
        let qr = QualifiedResource::new("karpenter.sh", "nodepools");
        let nf = ApiError::not_found(&qr, "default").to_status();
        assert_eq!(
            nf["message"],
            "nodepools.karpenter.sh \"default\" not found"
        );
        assert_eq!(nf["details"]["kind"], "nodepools");
        assert_eq!(nf["details"]["group"], "karpenter.sh");
        assert_eq!(nf["code"], 404);
        let conflict = ApiError::conflict_modified(&QualifiedResource::new("", "pods"), "x");
        assert_eq!(
            conflict.message,
            "Operation cannot be fulfilled on pods \"x\": the object has been modified; please apply your changes to the latest version and try again"
        );
        let invalid = ApiError::invalid(
            "karpenter.sh",
            "NodePool",
            "np",
            vec![StatusCause {
                reason: "FieldValueInvalid".into(),
                message: "Invalid value: bad".into(),
                field: "spec.limits".into(),
            }],
        );
        assert_eq!(
            invalid.message,
            "NodePool.karpenter.sh \"np\" is invalid: spec.limits: Invalid value: bad"
        );
        assert_eq!(
            invalid.to_status()["details"]["causes"][0]["field"],
            "spec.limits"
        );
    }
}
