//! The apiserver's custom-resource admission, reproduced: structural pruning, structural
//! defaulting, OpenAPI v3 schema validation and `x-kubernetes-validations` CEL rules, with
//! errors that name fields and read the way kube-apiserver's do.
//!
//! Build a [`CrdValidator`] once per CRD (patterns and CEL programs are compiled then), and run
//! every object through [`CrdValidator::admit`] (or the three steps separately, in the
//! apiserver's order: [`CrdValidator::prune`], [`CrdValidator::default`],
//! [`CrdValidator::validate`]).
//!
//! What is covered:
//! - keywords: `type`, `nullable`, `enum`, `pattern` (Rust `regex`, RE2-compatible), `format`
//!   (`date-time`, `date`, `byte`, `uuid`, `ipv4`, `ipv6`, `cidr`; others accepted as the
//!   apiserver accepts unknown formats), `minimum`/`maximum`/`exclusive*`, `multipleOf`,
//!   `minLength`/`maxLength` (characters), `minItems`/`maxItems`, `minProperties`/
//!   `maxProperties`, `required`, `properties`, `additionalProperties`, `items`, `allOf`/
//!   `anyOf`/`oneOf`/`not`, `x-kubernetes-int-or-string`, `x-kubernetes-preserve-unknown-fields`,
//!   `x-kubernetes-embedded-resource`, `x-kubernetes-list-type` (`set`/`map` duplicates),
//!   `x-kubernetes-map-type: atomic` (no old-value correlation), `default`;
//! - CEL: the standard library and macros, cel-go's strings and lists extensions, and the
//!   Kubernetes `find`, `findAll`, `isSorted`, `sum`, `min`, `max`, list `indexOf`/
//!   `lastIndexOf`, `sets.contains`/`equivalent`/`intersects`; `message`, `messageExpression`,
//!   `fieldPath`, `reason`, transition rules (`oldSelf`, skipped without an old value),
//!   `optionalOldSelf`, escaped property names (`x__dash__y`, `__namespace__`), and the
//!   resource root seeing only `metadata.name`/`generateName`;
//! - the apiserver's behaviour around them: CEL skipped (with its "some validation rules were
//!   not checked" error) after blocking schema errors, validation ratcheting on update, ObjectMeta
//!   name/generateName/namespace/labels/annotations checks, the 422 message and `Status`.
//!
//! Not covered: CEL cost estimation and runtime budgets, the quantity/URL/IP/CIDR/semver/format
//! CEL libraries, `format: date-time`/`duration` values as CEL timestamps/durations (they stay
//! strings), order-insensitive equality of set/map lists in CEL, static type checking of rules
//! (type errors surface at evaluation, not at construction).

mod cel_rules;
mod errors;
mod meta;
mod openapi;
mod path;
mod schema;
mod structural;

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use serde_json::Value;

pub use errors::{BadValue, ErrorType, FieldError, FieldErrors, SchemaError};
pub use path::{FieldPath, Segment};

use cel_rules::{CelEnv, Site};
use openapi::{Walk, correlate_item};
use schema::{Additional, Node};

/// The detail of the error the apiserver adds when schema errors kept CEL rules from running.
pub const RULES_NOT_CHECKED: &str = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// An object that passed admission, and the unknown fields pruned from it.
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    /// The pruned, defaulted object.
    pub object: Value,
    /// Paths of fields removed because the schema does not declare them (the apiserver's
    /// `unknown field "..."` warnings).
    pub unknown_fields: Vec<String>,
}

/// A CRD's validation compiled once: pruning, defaulting and validation for each version.
pub struct CrdValidator {
    group: String,
    kind: String,
    plural: String,
    namespaced: bool,
    versions: BTreeMap<String, Node>,
    cel: CelEnv,
}

impl std::fmt::Debug for CrdValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrdValidator")
            .field("group", &self.group)
            .field("kind", &self.kind)
            .field("versions", &self.versions.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CrdValidator {
    /// Compiles every version's schema: regexes, CEL rules (an expression that does not parse,
    /// or calls a function this engine lacks, is an error here, not at admission), fieldPaths.
    pub fn new(crd: &CustomResourceDefinition) -> Result<Self, SchemaError> {
        let cel = CelEnv::new()?;
        let spec = &crd.spec;
        let mut versions = BTreeMap::new();
        for version in &spec.versions {
            let schema = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .ok_or_else(|| SchemaError::MissingSchema {
                    version: version.name.clone(),
                })?;
            let node = schema::compile(schema, "", &cel)?;
            versions.insert(version.name.clone(), node);
        }
        Ok(Self {
            group: spec.group.clone(),
            kind: spec.names.kind.clone(),
            plural: spec.names.plural.clone(),
            namespaced: spec.scope == "Namespaced",
            versions,
            cel,
        })
    }

    /// The API group, e.g. `karpenter.sh`.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The kind, e.g. `NodePool`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The plural resource name, e.g. `nodepools`.
    pub fn plural(&self) -> &str {
        &self.plural
    }

    /// Whether objects live in namespaces.
    pub fn is_namespaced(&self) -> bool {
        self.namespaced
    }

    /// The versions with a schema, sorted.
    pub fn versions(&self) -> Vec<&str> {
        self.versions.keys().map(String::as_str).collect()
    }

    /// Removes fields the schema of `version` does not declare (keeping `apiVersion`, `kind`
    /// and ObjectMeta fields) and returns their paths. Unknown versions prune nothing.
    pub fn prune(&self, version: &str, object: &mut Value) -> Vec<String> {
        let mut unknown = Vec::new();
        if let Some(root) = self.versions.get(version) {
            structural::prune(root, object, &FieldPath::root(), true, &mut unknown);
        }
        unknown.sort();
        unknown
    }

    /// Applies the schema's defaults, as the apiserver does after pruning.
    pub fn default(&self, version: &str, object: &mut Value) {
        if let Some(root) = self.versions.get(version) {
            structural::default(root, object);
        }
    }

    /// Validates `new` (already pruned and defaulted). With `old` (an update), transition
    /// rules (`oldSelf`) run where both values exist, and values left unchanged are not
    /// re-validated (validation ratcheting).
    pub fn validate(
        &self,
        version: &str,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), FieldErrors> {
        let mut errors = Vec::new();
        let Some(root) = self.versions.get(version) else {
            let supported: Vec<String> = self
                .versions
                .keys()
                .map(|v| format!("{}/{v}", self.group))
                .collect();
            let got = new.get("apiVersion").cloned().unwrap_or(Value::Null);
            errors.push(FieldError::not_supported(
                FieldPath::new(["apiVersion"]),
                got,
                &supported,
            ));
            return Err(FieldErrors(errors));
        };
        self.type_meta(version, new, &mut errors);
        meta::validate_object_meta(
            new.get("metadata"),
            Some(self.namespaced),
            true,
            &FieldPath::new(["metadata"]),
            &mut errors,
        );
        Walk {
            errors: &mut errors,
        }
        .value(root, new, old, &FieldPath::root(), true);
        if root.has_rules() {
            let blocking = errors.iter().any(|e| {
                matches!(
                    e.error_type,
                    ErrorType::NotSupported
                        | ErrorType::Required
                        | ErrorType::TooLong
                        | ErrorType::TooMany
                        | ErrorType::TypeInvalid
                )
            });
            if blocking {
                errors.push(FieldError::invalid(
                    FieldPath::root(),
                    Value::Null,
                    RULES_NOT_CHECKED,
                ));
            } else {
                let root_site = Site {
                    path: &FieldPath::root(),
                    resource_root: true,
                    unchanged: false,
                };
                self.rules(root, new, old, root_site, &mut errors);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(FieldErrors(errors))
        }
    }

    /// Prunes, defaults and validates a copy of `object`, as the apiserver admits a create
    /// (`old` = `None`) or an update (`old` = the stored object). The stored object is
    /// defaulted too, as the apiserver defaults what it reads from storage, so a default added
    /// by a newer schema does not look like a change to a transition rule.
    pub fn admit(
        &self,
        version: &str,
        object: &Value,
        old: Option<&Value>,
    ) -> Result<Admitted, FieldErrors> {
        let mut object = object.clone();
        let unknown_fields = self.prune(version, &mut object);
        self.default(version, &mut object);
        let old = old.map(|stored| {
            let mut stored = stored.clone();
            self.prune(version, &mut stored);
            self.default(version, &mut stored);
            stored
        });
        self.validate(version, &object, old.as_ref())?;
        Ok(Admitted {
            object,
            unknown_fields,
        })
    }

    /// The 422 message for `errors` on the object named `name`:
    /// `NodePool.karpenter.sh "default" is invalid: ...`.
    pub fn invalid_message(&self, name: &str, errors: &FieldErrors) -> String {
        errors.invalid_message(&self.kind, &self.group, name)
    }

    /// The `metav1.Status` (code 422, reason `Invalid`, `details.causes`) for `errors`.
    pub fn invalid_status(&self, name: &str, errors: &FieldErrors) -> Status {
        errors.to_status(&self.kind, &self.group, name)
    }

    fn type_meta(&self, version: &str, object: &Value, errors: &mut Vec<FieldError>) {
        let expected_api_version = format!("{}/{version}", self.group);
        match object.get("apiVersion") {
            Some(Value::String(v)) if *v == expected_api_version => {}
            Some(other) => errors.push(FieldError::invalid(
                FieldPath::new(["apiVersion"]),
                other.clone(),
                format!("must be {expected_api_version}"),
            )),
            None => errors.push(FieldError::required(FieldPath::new(["apiVersion"]), "")),
        }
        match object.get("kind") {
            Some(Value::String(k)) if *k == self.kind => {}
            Some(other) => errors.push(FieldError::invalid(
                FieldPath::new(["kind"]),
                other.clone(),
                format!("must be {}", self.kind),
            )),
            None => errors.push(FieldError::required(FieldPath::new(["kind"]), "")),
        }
    }

    /// Evaluates CEL rules depth-first. `site.unchanged` is the parent's: it carries
    /// ratcheting into values that cannot be correlated with an old value (items of atomic
    /// lists).
    fn rules(
        &self,
        node: &Node,
        new: &Value,
        old: Option<&Value>,
        site: Site<'_>,
        errors: &mut Vec<FieldError>,
    ) {
        if new.is_null() || !node.has_rules() {
            return;
        }
        let unchanged = match old {
            Some(old) => old == new,
            None => site.unchanged,
        };
        let here = Site { unchanged, ..site };
        self.cel.evaluate(node, new, old, &here, errors);
        for branch in &node.all_of {
            self.cel.evaluate(branch, new, old, &here, errors);
        }
        match new {
            Value::Object(fields) => {
                let old_fields = if node.map_atomic {
                    None
                } else {
                    old.and_then(Value::as_object)
                };
                for (key, field) in fields {
                    if (here.resource_root || node.embedded) && key == "metadata" {
                        continue;
                    }
                    let old_field = old_fields.and_then(|o| o.get(key));
                    if let Some(property) = node.properties.get(key) {
                        self.rules(
                            property,
                            field,
                            old_field,
                            Site::nested(&here.path.child(key), unchanged),
                            errors,
                        );
                    } else if let Additional::Schema(values) = &node.additional {
                        self.rules(
                            values,
                            field,
                            old_field,
                            Site::nested(&here.path.key(key), unchanged),
                            errors,
                        );
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_node) = node.items.as_deref() {
                    for (i, item) in items.iter().enumerate() {
                        // Only list-type map items correlate for CEL, as in the apiserver.
                        let old_item = match &node.list_type {
                            schema::ListType::Map(_) => {
                                old.and_then(|o| correlate_item(&node.list_type, item, o))
                            }
                            _ => None,
                        };
                        self.rules(
                            item_node,
                            item,
                            old_item,
                            Site::nested(&here.path.index(i), unchanged),
                            errors,
                        );
                    }
                }
            }
            _ => {}
        }
    }
}
