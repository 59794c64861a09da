//! CustomResourceDefinitions: serving a CRD's resources as soon as it is stored, and admitting
//! custom objects through `karpenter_apis::validation` (pruning, defaulting, OpenAPI and CEL).

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use karpenter_apis::validation::{CrdValidator, FieldErrors};
use serde_json::{Value, json};

use super::Server;
use super::error::{ApiError, StatusCause};
use super::object::{self, at, str_at};
use super::registry::{PrinterColumn, ResourceInfo, ScalePaths, Subresource, version_priority};
use super::store::Special;

fn is_crd_resource(res: &ResourceInfo) -> bool {
    res.group == "apiextensions.k8s.io" && res.plural == "customresourcedefinitions"
}

fn field_errors_to_api(validator: &CrdValidator, name: &str, errors: &FieldErrors) -> ApiError {
    let causes = errors
        .errors()
        .iter()
        .map(|e| StatusCause {
            reason: e.error_type.reason().to_string(),
            message: e.body(),
            field: e.field.to_string(),
        })
        .collect();
    let mut err = ApiError::invalid(validator.group(), validator.kind(), name, causes);
    err.message = validator.invalid_message(name, errors);
    err
}

/// Admits a custom object: prune, default, validate (with the stored object on updates).
/// Returns the pruned unknown fields.
pub(crate) fn admit(
    server: &Server,
    res: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    super::builtin::validate_metadata(res, obj)?;
    let Some(validator) = server.validator(&res.storage) else {
        return Err(ApiError::internal(format!(
            "no validator registered for {}",
            res.storage
        )));
    };
    if old.is_none()
        && res.has_status()
        && let Some(m) = obj.as_object_mut()
    {
        // With a status subresource, status is not writable through create.
        m.remove("status");
    }
    let name = object::name(obj).to_string();
    let admitted = validator
        .admit(&res.version, obj, old)
        .map_err(|errs| field_errors_to_api(&validator, &name, &errs))?;
    *obj = admitted.object;
    Ok(admitted.unknown_fields)
}

/// The OpenAPI v3 schema of a custom resource's version.
pub fn version_schema(res: &ResourceInfo) -> Option<Value> {
    let crd = res.crd.as_ref()?;
    at(crd, &["spec", "versions"])?
        .as_array()?
        .iter()
        .find(|v| str_at(v, &["name"]) == Some(res.version.as_str()))
        .and_then(|v| at(v, &["schema", "openAPIV3Schema"]))
        .cloned()
}

fn crd_invalid(obj: &Value, field: &str, message: String) -> ApiError {
    ApiError::invalid(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        object::name(obj),
        vec![StatusCause {
            reason: "FieldValueInvalid".into(),
            message,
            field: field.into(),
        }],
    )
}

/// Validates a CRD, compiles its validator (a schema or CEL rule this engine cannot compile is
/// a 422 here rather than a surprise at admission) and fills in `status` the way the
/// apiextensions controllers do once the names are accepted.
pub(crate) fn prepare_crd(obj: &mut Value, creating: bool) -> Result<(), ApiError> {
    let group = str_at(obj, &["spec", "group"]).unwrap_or("").to_string();
    let plural = str_at(obj, &["spec", "names", "plural"])
        .unwrap_or("")
        .to_string();
    let kind = str_at(obj, &["spec", "names", "kind"])
        .unwrap_or("")
        .to_string();
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Err(crd_invalid(
            obj,
            "spec",
            "Required value: spec.group, spec.names.plural and spec.names.kind are required".into(),
        ));
    }
    let name = object::name(obj).to_string();
    if name != format!("{plural}.{group}") {
        return Err(crd_invalid(
            obj,
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let versions = at(obj, &["spec", "versions"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage: Vec<String> = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| str_at(v, &["name"]).map(str::to_string))
        .collect();
    if storage.len() != 1 {
        return Err(crd_invalid(
            obj,
            "spec.versions",
            "Invalid value: must have exactly one version marked as storage version".into(),
        ));
    }
    let typed: CustomResourceDefinition = serde_json::from_value(obj.clone()).map_err(|e| {
        ApiError::bad_request(format!("CustomResourceDefinition cannot be decoded: {e}"))
    })?;
    CrdValidator::new(&typed)
        .map_err(|e| crd_invalid(obj, "spec.versions", format!("Invalid value: {e}")))?;
    let names = at(obj, &["spec", "names"])
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut accepted = names.clone();
    if let Some(m) = accepted.as_object_mut() {
        m.entry("singular")
            .or_insert_with(|| json!(kind.to_lowercase()));
        m.entry("listKind")
            .or_insert_with(|| json!(format!("{kind}List")));
    }
    if creating || at(obj, &["status", "acceptedNames"]).is_none() {
        let now = object::format_time(chrono::Utc::now());
        let status = json!({
            "acceptedNames": accepted,
            "storedVersions": storage,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now}
            ]
        });
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), status);
        }
    }
    Ok(())
}

/// The resources a CRD serves, one per served version.
pub fn resources_of(crd: &Value) -> Vec<ResourceInfo> {
    let group = str_at(crd, &["spec", "group"]).unwrap_or("").to_string();
    let names = at(crd, &["spec", "names"])
        .cloned()
        .unwrap_or_else(|| json!({}));
    let plural = str_at(&names, &["plural"]).unwrap_or("").to_string();
    let kind = str_at(&names, &["kind"]).unwrap_or("").to_string();
    let singular = str_at(&names, &["singular"])
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let strings = |key: &str| -> Vec<String> {
        names
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = str_at(crd, &["spec", "scope"]) == Some("Namespaced");
    let versions = at(crd, &["spec", "versions"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let served: Vec<&Value> = versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) != Some(false))
        .collect();
    let preferred = served
        .iter()
        .filter_map(|v| str_at(v, &["name"]))
        .max_by_key(|n| version_priority(n))
        .unwrap_or("")
        .to_string();
    let crd_arc = Arc::new(crd.clone());
    served
        .iter()
        .map(|v| {
            let version = str_at(v, &["name"]).unwrap_or("").to_string();
            let mut subresources = Vec::new();
            if at(v, &["subresources", "status"]).is_some() {
                subresources.push(Subresource::Status);
            }
            if let Some(scale) = at(v, &["subresources", "scale"]) {
                subresources.push(Subresource::Scale(ScalePaths {
                    spec_replicas: str_at(scale, &["specReplicasPath"])
                        .unwrap_or(".spec.replicas")
                        .to_string(),
                    status_replicas: str_at(scale, &["statusReplicasPath"])
                        .unwrap_or(".status.replicas")
                        .to_string(),
                    label_selector: str_at(scale, &["labelSelectorPath"]).map(str::to_string),
                }));
            }
            let printer_columns = v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|cols| {
                    cols.iter()
                        .map(|c| PrinterColumn {
                            name: str_at(c, &["name"]).unwrap_or("").to_string(),
                            type_: str_at(c, &["type"]).unwrap_or("string").to_string(),
                            format: str_at(c, &["format"]).unwrap_or("").to_string(),
                            description: str_at(c, &["description"]).unwrap_or("").to_string(),
                            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                            json_path: str_at(c, &["jsonPath"]).unwrap_or("").to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            ResourceInfo {
                group: group.clone(),
                preferred: version == preferred,
                version,
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                short_names: strings("shortNames"),
                namespaced,
                verbs: super::registry::ALL_VERBS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                subresources,
                categories: strings("categories"),
                storage: format!("{plural}.{group}"),
                special: Special::None,
                printer_columns,
                crd: Some(crd_arc.clone()),
                patch_schema: Default::default(),
            }
        })
        .collect()
}

/// Starts serving a stored CRD's resources (or refreshes them after an update).
pub(crate) fn register(server: &Server, crd: &Value) -> Result<(), ApiError> {
    let typed: CustomResourceDefinition = serde_json::from_value(crd.clone())
        .map_err(|e| ApiError::internal(format!("stored CRD does not decode: {e}")))?;
    let validator = CrdValidator::new(&typed)
        .map_err(|e| ApiError::internal(format!("stored CRD does not compile: {e}")))?;
    let resources = resources_of(crd);
    let Some(first) = resources.first() else {
        return Ok(());
    };
    server
        .validators
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(first.storage.clone(), Arc::new(validator));
    server.store.register_table(first.table_meta());
    server.registry.remove(&first.group, &first.plural);
    for r in resources {
        server.registry.add(r);
    }
    Ok(())
}

/// Hook after a successful write of any object.
pub(crate) fn after_write(
    server: &Server,
    res: &ResourceInfo,
    obj: &Value,
) -> Result<(), ApiError> {
    if is_crd_resource(res) && !object::is_deleting(obj) {
        register(server, obj)?;
    }
    Ok(())
}

/// Hook after an object is gone.
pub(crate) fn after_delete(server: &Server, res: &ResourceInfo, obj: &Value) {
    if !is_crd_resource(res) {
        return;
    }
    let group = str_at(obj, &["spec", "group"]).unwrap_or("");
    let plural = str_at(obj, &["spec", "names", "plural"]).unwrap_or("");
    let storage = format!("{plural}.{group}");
    server.registry.remove(group, plural);
    server.store.unregister_table(&storage);
    server
        .validators
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&storage);
}
