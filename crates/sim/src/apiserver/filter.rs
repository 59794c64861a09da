//! List/watch filtering (namespace, label and field selectors) and version conversion.

use std::borrow::Cow;
use std::sync::Arc;

use karpenter_apimachinery::selector::{FieldSelector, LabelSelector};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::object::{self, at, str_at};
use super::registry::ResourceInfo;

/// What a list or watch selects.
#[derive(Debug, Clone)]
pub struct ObjectFilter {
    /// Namespace restriction.
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    res: Arc<ResourceInfo>,
}

impl ObjectFilter {
    /// Parses the selectors of a request, rejecting unsupported field labels like apiserver.
    pub fn new(
        res: Arc<ResourceInfo>,
        namespace: Option<String>,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Self, ApiError> {
        let labels = match label_selector {
            Some(s) if !s.is_empty() => LabelSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            _ => LabelSelector::everything(),
        };
        let fields = match field_selector {
            Some(s) if !s.is_empty() => FieldSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?,
            _ => FieldSelector::everything(),
        };
        for field in fields.fields() {
            if !supported_field(&res, field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
        }
        Ok(ObjectFilter {
            namespace,
            labels,
            fields,
            res,
        })
    }

    /// Whether only the namespace restricts the selection.
    pub fn selects_all_in_namespace(&self) -> bool {
        self.labels.is_everything() && self.fields.is_everything()
    }

    /// Whether an object (in storage form) is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && object::namespace(obj) != ns
        {
            return false;
        }
        if !self.labels.is_everything() && !self.labels.matches(&object::labels(obj)) {
            return false;
        }
        if !self.fields.is_everything() && !self.fields.matches(|f| field_value(&self.res, obj, f))
        {
            return false;
        }
        true
    }
}

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
];

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

fn supported_field(res: &ResourceInfo, field: &str) -> bool {
    if field == "metadata.name" || field == "metadata.namespace" {
        return true;
    }
    match (res.group.as_str(), res.plural.as_str()) {
        ("", "pods") => POD_FIELDS.contains(&field),
        ("", "nodes") => field == "spec.unschedulable",
        ("", "events") => EVENT_FIELDS.contains(&field),
        ("events.k8s.io", "events") => {
            EVENT_FIELDS.contains(&field)
                || field.starts_with("regarding.")
                || field == "reportingController"
                || field == "deprecatedSource"
        }
        ("", "namespaces") => field == "status.phase",
        ("", "secrets") => field == "type",
        ("apps", "replicasets") => field == "status.replicas",
        _ => false,
    }
}

/// The value a field selector compares against (apiserver's per-kind field sets).
pub fn field_value(res: &ResourceInfo, obj: &Value, field: &str) -> Option<String> {
    match field {
        "metadata.name" => return Some(object::name(obj).to_string()),
        "metadata.namespace" => return Some(object::namespace(obj).to_string()),
        _ => {}
    }
    let field = match (res.group.as_str(), field) {
        ("events.k8s.io", f) if f.starts_with("regarding.") => {
            Cow::Owned(format!("involvedObject.{}", &f["regarding.".len()..]))
        }
        ("events.k8s.io", "reportingController") => Cow::Borrowed("reportingComponent"),
        ("events.k8s.io", "deprecatedSource") => Cow::Borrowed("source"),
        (_, f) => Cow::Borrowed(f),
    };
    match field.as_ref() {
        "spec.hostNetwork" => Some(
            at(obj, &["spec", "hostNetwork"])
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
        ),
        "spec.unschedulable" => Some(
            at(obj, &["spec", "unschedulable"])
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
        ),
        "status.podIPs" => at(obj, &["status", "podIPs"])
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|ip| ip.get("ip").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        "source" => str_at(obj, &["source", "component"]).map(str::to_string),
        "status.replicas" => at(obj, &["status", "replicas"]).map(|v| v.to_string()),
        other => {
            let path: Vec<&str> = other.split('.').collect();
            match at(obj, &path) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                Some(v) => Some(v.to_string()),
            }
        }
    }
}

/// The object as the requested version serves it (storage may hold another version's shape).
pub fn present<'a>(res: &ResourceInfo, obj: &'a Value) -> Cow<'a, Value> {
    let api_version = res.api_version();
    if str_at(obj, &["apiVersion"]) == Some(api_version.as_str())
        && str_at(obj, &["kind"]) == Some(res.kind.as_str())
    {
        return Cow::Borrowed(obj);
    }
    let mut out = if res.group == "events.k8s.io" {
        core_event_to_events_v1(obj)
    } else {
        obj.clone()
    };
    if let Some(m) = out.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(res.kind));
    }
    Cow::Owned(out)
}

/// Converts an incoming object of the requested version into the storage shape.
pub fn to_storage(res: &ResourceInfo, mut obj: Value) -> Value {
    if res.group == "events.k8s.io" {
        obj = events_v1_to_core_event(&obj);
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), json!("v1"));
            m.insert("kind".into(), json!("Event"));
        }
    }
    obj
}

const EVENT_RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(obj: &Value, from_core: bool) -> Value {
    let Some(m) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let renamed = EVENT_RENAMES.iter().find_map(|(core, v1)| {
            if from_core && k == core {
                Some(*v1)
            } else if !from_core && k == v1 {
                Some(*core)
            } else {
                None
            }
        });
        out.insert(renamed.unwrap_or(k).to_string(), v.clone());
    }
    Value::Object(out)
}

fn core_event_to_events_v1(obj: &Value) -> Value {
    rename(obj, true)
}

fn events_v1_to_core_event(obj: &Value) -> Value {
    let mut out = rename(obj, false);
    // core/v1 consumers (kubectl get events) key on these; events.k8s.io writers leave them unset.
    if let Some(m) = out.as_object_mut() {
        if !m.contains_key("lastTimestamp")
            && let Some(t) = m.get("eventTime").cloned()
            && let Some(s) = t.as_str()
        {
            let secs = s.split('.').next().unwrap_or(s).trim_end_matches('Z');
            m.insert("lastTimestamp".into(), json!(format!("{secs}Z")));
        }
        if let Some(series) = m.get("series").cloned()
            && let Some(count) = series.get("count")
        {
            m.insert("count".into(), count.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::Registry;

    #[test]
    fn field_selectors_by_kind() {
        let reg = Registry::with_builtins();
        let pods = reg.get("", "v1", "pods").unwrap();
        let f = ObjectFilter::new(
            pods.clone(),
            None,
            Some("app=web"),
            Some("spec.nodeName=n1,status.phase!=Failed"),
        )
        .unwrap();
        let pod = json!({"metadata": {"name": "a", "namespace": "d", "labels": {"app": "web"}}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert!(f.matches(&pod));
        let unbound = ObjectFilter::new(pods.clone(), None, None, Some("spec.nodeName=")).unwrap();
        assert!(!unbound.matches(&pod));
        let err = ObjectFilter::new(pods, None, None, Some("spec.foo=x")).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (400, "field label not supported: spec.foo")
        );
        let nodes = reg.get("", "v1", "nodes").unwrap();
        let f = ObjectFilter::new(nodes, None, None, Some("spec.unschedulable=false")).unwrap();
        assert!(f.matches(&json!({"metadata": {"name": "n"}, "spec": {}})));
    }

    #[test]
    fn events_convert_both_ways() {
        let reg = Registry::with_builtins();
        let ev = reg.get("events.k8s.io", "v1", "events").unwrap();
        let incoming = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "regarding": {"kind": "Node", "name": "n"}, "note": "hi", "eventTime": "2026-01-01T00:00:00.000000Z"});
        let stored = to_storage(&ev, incoming);
        assert_eq!(stored["involvedObject"]["name"], "n");
        assert_eq!(stored["message"], "hi");
        assert_eq!(stored["lastTimestamp"], "2026-01-01T00:00:00Z");
        let back = present(&ev, &stored);
        assert_eq!(back["regarding"]["kind"], "Node");
        assert_eq!(back["apiVersion"], "events.k8s.io/v1");
    }
}
