//! Admission of built-in kinds: decoding through the k8s-openapi types (which is how unknown
//! fields are found and dropped), the defaults clients rely on, and the validation that matters
//! to this project. Full built-in validation is out of scope.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use k8s_openapi::api::{apps, coordination, core, policy, scheduling, storage};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use super::error::{ApiError, StatusCause};
use super::object::{self, at, set_at, str_at};
use super::registry::ResourceInfo;

/// Admits a built-in object; returns the unknown fields that were dropped.
pub(crate) fn admit(
    res: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    validate_metadata(res, obj)?;
    let unknown = decode(res, obj)?;
    defaults(res, obj, old);
    validate(res, obj, old)?;
    if res.group == "apiextensions.k8s.io" && res.kind == "CustomResourceDefinition" {
        super::custom::prepare_crd(obj, old.is_none())?;
    }
    Ok(unknown)
}

fn roundtrip<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Value, String> {
    // Decoding from the borrowed tree: no copy of the whole object first.
    let typed = T::deserialize(obj).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

fn decode(res: &ResourceInfo, obj: &mut Value) -> Result<Vec<String>, ApiError> {
    let result = match (res.group.as_str(), res.kind.as_str()) {
        ("", "Pod") => roundtrip::<core::v1::Pod>(obj),
        ("", "Node") => roundtrip::<core::v1::Node>(obj),
        ("", "Namespace") => roundtrip::<core::v1::Namespace>(obj),
        ("", "Event") | ("events.k8s.io", "Event") => roundtrip::<core::v1::Event>(obj),
        ("", "ConfigMap") => roundtrip::<core::v1::ConfigMap>(obj),
        ("", "Secret") => roundtrip::<core::v1::Secret>(obj),
        ("", "ServiceAccount") => roundtrip::<core::v1::ServiceAccount>(obj),
        ("", "Service") => roundtrip::<core::v1::Service>(obj),
        ("", "PersistentVolume") => roundtrip::<core::v1::PersistentVolume>(obj),
        ("", "PersistentVolumeClaim") => roundtrip::<core::v1::PersistentVolumeClaim>(obj),
        ("apps", "Deployment") => roundtrip::<apps::v1::Deployment>(obj),
        ("apps", "ReplicaSet") => roundtrip::<apps::v1::ReplicaSet>(obj),
        ("apps", "DaemonSet") => roundtrip::<apps::v1::DaemonSet>(obj),
        ("apps", "StatefulSet") => roundtrip::<apps::v1::StatefulSet>(obj),
        ("policy", "PodDisruptionBudget") => roundtrip::<policy::v1::PodDisruptionBudget>(obj),
        ("coordination.k8s.io", "Lease") => roundtrip::<coordination::v1::Lease>(obj),
        ("storage.k8s.io", "StorageClass") => roundtrip::<storage::v1::StorageClass>(obj),
        ("storage.k8s.io", "CSINode") => roundtrip::<storage::v1::CSINode>(obj),
        ("storage.k8s.io", "CSIDriver") => roundtrip::<storage::v1::CSIDriver>(obj),
        ("storage.k8s.io", "VolumeAttachment") => roundtrip::<storage::v1::VolumeAttachment>(obj),
        ("scheduling.k8s.io", "PriorityClass") => roundtrip::<scheduling::v1::PriorityClass>(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            roundtrip::<CustomResourceDefinition>(obj)
        }
        _ => return Ok(Vec::new()),
    };
    let decoded = result.map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
            kind = res.kind,
            version = res.version
        ))
    })?;
    let mut unknown = Vec::new();
    unknown_fields(obj, &decoded, &mut String::new(), &mut unknown);
    *obj = decoded;
    if let Some(m) = obj.as_object_mut() {
        m.insert(
            "apiVersion".into(),
            json!(if res.group == "events.k8s.io" {
                "v1".to_string()
            } else {
                res.api_version()
            }),
        );
        m.insert("kind".into(), json!(res.kind));
    }
    Ok(unknown)
}

/// Paths present (non-null) in `given` but absent from `decoded`. `path` is the current path,
/// extended and cut back in place so that only the unknown paths allocate.
fn unknown_fields(given: &Value, decoded: &Value, path: &mut String, out: &mut Vec<String>) {
    let len = path.len();
    match (given, decoded) {
        (Value::Object(g), Value::Object(d)) => {
            for (k, v) in g {
                if v.is_null() {
                    continue;
                }
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match d.get(k) {
                    None => out.push(path.clone()),
                    Some(dv) => unknown_fields(v, dv, path, out),
                }
                path.truncate(len);
            }
        }
        (Value::Array(g), Value::Array(d)) => {
            for (i, (gv, dv)) in g.iter().zip(d.iter()).enumerate() {
                path.push('[');
                path.push_str(&i.to_string());
                path.push(']');
                unknown_fields(gv, dv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn defaults(res: &ResourceInfo, obj: &mut Value, old: Option<&Value>) {
    let set_default = |obj: &mut Value, path: &[&str], v: Value| {
        if at(obj, path).is_none_or(Value::is_null) {
            set_at(obj, path, v);
        }
    };
    let pod_spec_defaults = |obj: &mut Value, prefix: &[&str]| {
        let p = |rest: &[&'static str]| -> Vec<&str> {
            let mut v: Vec<&str> = prefix.to_vec();
            v.extend_from_slice(rest);
            v
        };
        set_default(obj, &p(&["schedulerName"]), json!("default-scheduler"));
        set_default(obj, &p(&["restartPolicy"]), json!("Always"));
        set_default(obj, &p(&["terminationGracePeriodSeconds"]), json!(30));
        set_default(obj, &p(&["dnsPolicy"]), json!("ClusterFirst"));
    };
    match (res.group.as_str(), res.kind.as_str()) {
        ("", "Pod") => {
            pod_spec_defaults(obj, &["spec"]);
            if at(obj, &["spec", "priorityClassName"]).is_none() {
                set_default(obj, &["spec", "priority"], json!(0));
            }
            if old.is_none() {
                // Like the pod strategy: status is the server's on create.
                let qos = qos_class(obj);
                if let Some(m) = obj.as_object_mut() {
                    m.insert(
                        "status".into(),
                        json!({"phase": "Pending", "qosClass": qos}),
                    );
                }
            }
        }
        ("apps", _) if old.is_none() && obj.get("status").is_some() => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
            defaults(res, obj, old);
        }
        ("apps", "Deployment") => {
            set_default(obj, &["spec", "replicas"], json!(1));
            set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
            set_default(obj, &["spec", "progressDeadlineSeconds"], json!(600));
            set_default(
                obj,
                &["spec", "strategy"],
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            );
            pod_spec_defaults(obj, &["spec", "template", "spec"]);
        }
        ("apps", "ReplicaSet") | ("apps", "StatefulSet") => {
            set_default(obj, &["spec", "replicas"], json!(1));
            pod_spec_defaults(obj, &["spec", "template", "spec"]);
        }
        ("apps", "DaemonSet") => {
            set_default(
                obj,
                &["spec", "updateStrategy"],
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
            pod_spec_defaults(obj, &["spec", "template", "spec"]);
        }
        ("", "Namespace") => {
            let name = object::name(obj).to_string();
            if !name.is_empty() {
                set_at(
                    obj,
                    &["metadata", "labels", "kubernetes.io/metadata.name"],
                    json!(name),
                );
            }
            if old.is_none() {
                set_default(obj, &["status", "phase"], json!("Active"));
            }
        }
        ("policy", "PodDisruptionBudget") if old.is_none() => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        _ => {}
    }
}

/// The pod QoS class from container requests and limits.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| at(pod, &["spec", k]).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let requests = at(c, &["resources", "requests"]).and_then(Value::as_object);
        let limits = at(c, &["resources", "limits"]).and_then(Value::as_object);
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for resource in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(resource));
            let request = requests.and_then(|r| r.get(resource)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn invalid(res: &ResourceInfo, obj: &Value, causes: Vec<StatusCause>) -> ApiError {
    ApiError::invalid(&res.group, &res.kind, object::name(obj), causes)
}

fn cause(reason: &str, field: &str, message: String) -> StatusCause {
    StatusCause {
        reason: reason.into(),
        message,
        field: field.into(),
    }
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Checks `metadata.name` (when set) and label syntax.
pub(crate) fn validate_metadata(res: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let name = object::name(obj);
    if !name.is_empty() {
        let label_only =
            res.group.is_empty() && (res.plural == "namespaces" || res.plural == "services");
        if label_only && !is_dns_label(name) {
            causes.push(cause(
                "FieldValueInvalid",
                "metadata.name",
                format!("Invalid value: {name:?}: {DNS1123_LABEL_MSG}"),
            ));
        } else if !label_only && !is_dns_subdomain(name) {
            causes.push(cause(
                "FieldValueInvalid",
                "metadata.name",
                format!("Invalid value: {name:?}: {DNS1123_SUBDOMAIN_MSG}"),
            ));
        }
    }
    for (k, v) in object::labels(obj) {
        if let Err(e) = karpenter_apimachinery::selector::validate_label_key(&k) {
            causes.push(cause(
                "FieldValueInvalid",
                "metadata.labels",
                format!("Invalid value: {k:?}: {e}"),
            ));
        }
        if let Err(e) = karpenter_apimachinery::selector::validate_label_value(&k, &v) {
            causes.push(cause(
                "FieldValueInvalid",
                &format!("metadata.labels.{k}"),
                format!("Invalid value: {v:?}: {e}"),
            ));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(res, obj, causes))
    }
}

fn validate(res: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let check_pod_spec = |spec_path: &str, spec: Option<&Value>, causes: &mut Vec<StatusCause>| {
        let containers = spec
            .and_then(|s| s.get("containers"))
            .and_then(Value::as_array);
        match containers {
            None => causes.push(cause(
                "FieldValueRequired",
                &format!("{spec_path}.containers"),
                "Required value".into(),
            )),
            Some(cs) if cs.is_empty() => causes.push(cause(
                "FieldValueRequired",
                &format!("{spec_path}.containers"),
                "Required value".into(),
            )),
            Some(cs) => {
                for (i, c) in cs.iter().enumerate() {
                    if str_at(c, &["name"]).unwrap_or("").is_empty() {
                        causes.push(cause(
                            "FieldValueRequired",
                            &format!("{spec_path}.containers[{i}].name"),
                            "Required value".into(),
                        ));
                    }
                    if str_at(c, &["image"]).unwrap_or("").is_empty() {
                        causes.push(cause(
                            "FieldValueRequired",
                            &format!("{spec_path}.containers[{i}].image"),
                            "Required value".into(),
                        ));
                    }
                }
            }
        }
    };
    match (res.group.as_str(), res.kind.as_str()) {
        ("", "Pod") => {
            check_pod_spec("spec", obj.get("spec"), &mut causes);
            if let Some(old) = old {
                let old_node = str_at(old, &["spec", "nodeName"]).unwrap_or("");
                let new_node = str_at(obj, &["spec", "nodeName"]).unwrap_or("");
                if old_node != new_node {
                    causes.push(cause(
                        "FieldValueForbidden",
                        "spec",
                        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into(),
                    ));
                }
            }
        }
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet") => {
            check_pod_spec(
                "spec.template.spec",
                at(obj, &["spec", "template", "spec"]),
                &mut causes,
            );
            match at(obj, &["spec", "selector"]) {
                None => causes.push(cause(
                    "FieldValueRequired",
                    "spec.selector",
                    "Required value".into(),
                )),
                Some(sel) => {
                    let template_labels =
                        object::string_map(at(obj, &["spec", "template", "metadata", "labels"]));
                    let typed: Result<
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
                        _,
                    > = serde_json::from_value(sel.clone());
                    let matches = typed
                        .ok()
                        .and_then(|s| {
                            karpenter_apimachinery::selector::LabelSelector::from_k8s(&s).ok()
                        })
                        .is_some_and(|s| !s.is_everything() && s.matches(&template_labels));
                    if !matches {
                        causes.push(cause(
                            "FieldValueInvalid",
                            "spec.template.metadata.labels",
                            format!(
                                "Invalid value: {}: `selector` does not match template `labels`",
                                go_map(&template_labels)
                            ),
                        ));
                    }
                    if let Some(old) = old
                        && at(old, &["spec", "selector"]) != Some(sel)
                    {
                        causes.push(cause(
                            "FieldValueInvalid",
                            "spec.selector",
                            "Invalid value: field is immutable".into(),
                        ));
                    }
                }
            }
            if object::i64_at(obj, &["spec", "replicas"]).is_some_and(|r| r < 0) {
                causes.push(cause(
                    "FieldValueInvalid",
                    "spec.replicas",
                    "Invalid value: must be greater than or equal to 0".into(),
                ));
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(res, obj, causes))
    }
}

fn go_map(m: &std::collections::BTreeMap<String, String>) -> String {
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
    format!("map[string]string{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::Registry;

    #[test]
    fn decoding_finds_unknown_fields_and_defaults_pods() {
        let reg = Registry::with_builtins();
        let pods = reg.get("", "v1", "pods").unwrap();
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"foo": 1, "containers": [{"name": "c", "image": "i", "bar": true}]}});
        let unknown = admit(&pods, &mut pod, None).unwrap();
        assert_eq!(
            unknown,
            vec!["spec.containers[0].bar".to_string(), "spec.foo".to_string()]
        );
        assert_eq!(pod["spec"]["schedulerName"], "default-scheduler");
        assert_eq!(pod["status"]["phase"], "Pending");
        assert!(pod["spec"].get("foo").is_none());
    }

    #[test]
    fn validation_rejects_bad_names_and_missing_containers() {
        let reg = Registry::with_builtins();
        let pods = reg.get("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": []}});
        let err = admit(&pods, &mut pod, None).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(err.message.contains("RFC 1123"), "{}", err.message);
        let mut pod = json!({"metadata": {"name": "ok"}, "spec": {"containers": []}});
        let err = admit(&pods, &mut pod, None).unwrap_err();
        assert_eq!(err.details.causes[0].field, "spec.containers");
        let deploy = reg.get("apps", "v1", "deployments").unwrap();
        let mut d = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let err = admit(&deploy, &mut d, None).unwrap_err();
        assert!(
            err.message.contains("does not match template"),
            "{}",
            err.message
        );
    }
}
