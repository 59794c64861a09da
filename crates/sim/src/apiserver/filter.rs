//! List/watch filtering (namespace, label and field selectors) and version conversion.

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Bytes;

use karpenter_apimachinery::selector::{FieldSelector, LabelSelector};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::object::{self, at, str_at};
use super::registry::ResourceInfo;
use super::stored::StoredObject;

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
    /// Whether every field the selector reads is in the store's index (else objects are parsed).
    fields_indexed: bool,
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
        let indexed = indexed_fields(&res.storage);
        let fields_indexed = fields.fields().iter().all(|f| {
            let f = storage_field(&res.group, f);
            f == "metadata.name" || f == "metadata.namespace" || indexed.contains(&f.as_ref())
        });
        Ok(ObjectFilter {
            namespace,
            labels,
            fields,
            res,
            fields_indexed,
        })
    }

    /// Whether only the namespace restricts the selection.
    pub fn selects_all_in_namespace(&self) -> bool {
        self.labels.is_everything() && self.fields.is_everything()
    }

    /// Whether a stored object is selected, answered from its index where possible.
    pub fn matches(&self, obj: &StoredObject) -> bool {
        let m = obj.meta();
        if let Some(ns) = &self.namespace
            && &*m.namespace != ns.as_str()
        {
            return false;
        }
        if !self.labels.is_everything() && !self.labels.matches(&m.label_map()) {
            return false;
        }
        if self.fields.is_everything() {
            return true;
        }
        if !self.fields_indexed {
            return obj.value().is_ok_and(|v| self.matches_value(&v));
        }
        self.fields.matches(|f| {
            let f = storage_field(&self.res.group, f);
            match f.as_ref() {
                "metadata.name" => Some(m.name.to_string()),
                "metadata.namespace" => Some(m.namespace.to_string()),
                f => m.field(f).map(str::to_string),
            }
        })
    }

    /// Whether an object (in storage form) is selected.
    pub fn matches_value(&self, obj: &Value) -> bool {
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

/// The field-selector fields the store indexes for a table: every field apiserver supports for
/// the resource besides `metadata.name`/`metadata.namespace`, named as in storage.
pub fn indexed_fields(storage: &str) -> &'static [&'static str] {
    match storage {
        "pods" => POD_FIELDS,
        "nodes" => &["spec.unschedulable"],
        "events" => EVENT_FIELDS,
        "namespaces" => &["status.phase"],
        "secrets" => &["type"],
        "replicasets.apps" => &["status.replicas"],
        _ => &[],
    }
}

/// A field as named in storage (events.k8s.io names some core/v1 Event fields differently).
fn storage_field<'a>(group: &str, field: &'a str) -> Cow<'a, str> {
    match (group, field) {
        ("events.k8s.io", f) if f.starts_with("regarding.") => {
            Cow::Owned(format!("involvedObject.{}", &f["regarding.".len()..]))
        }
        ("events.k8s.io", "reportingController") => Cow::Borrowed("reportingComponent"),
        ("events.k8s.io", "deprecatedSource") => Cow::Borrowed("source"),
        (_, f) => Cow::Borrowed(f),
    }
}

/// The value a field selector compares against (apiserver's per-kind field sets).
pub fn field_value(res: &ResourceInfo, obj: &Value, field: &str) -> Option<String> {
    match field {
        "metadata.name" => return Some(object::name(obj).to_string()),
        "metadata.namespace" => return Some(object::namespace(obj).to_string()),
        _ => {}
    }
    indexed_field_value(obj, &storage_field(&res.group, field))
}

/// The value of a field (named as in storage) of a stored object.
pub fn indexed_field_value(obj: &Value, field: &str) -> Option<String> {
    match field {
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

/// A stored object's JSON as the requested version serves it: the stored bytes themselves when
/// the version matches (no parse, no copy), else parsed, converted and serialized.
pub fn present_json(res: &ResourceInfo, obj: &StoredObject) -> Result<Bytes, ApiError> {
    let m = obj.meta();
    if *m.kind == *res.kind && m.api_version.as_ref() == res.api_version() {
        return Ok(obj.json().clone());
    }
    let value = obj.value()?;
    serde_json::to_vec(present(res, &value).as_ref())
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("serializing: {e}")))
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
        let stored = StoredObject::new("pods", &pod).unwrap();
        assert!(f.matches_value(&pod) && f.matches(&stored));
        let unbound = ObjectFilter::new(pods.clone(), None, None, Some("spec.nodeName=")).unwrap();
        assert!(!unbound.matches_value(&pod) && !unbound.matches(&stored));
        let other_app = ObjectFilter::new(pods.clone(), None, Some("app!=web"), None).unwrap();
        assert!(!other_app.matches(&stored));
        let other_ns = ObjectFilter::new(pods.clone(), Some("x".into()), None, None).unwrap();
        assert!(!other_ns.matches(&stored));
        let err = ObjectFilter::new(pods, None, None, Some("spec.foo=x")).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (400, "field label not supported: spec.foo")
        );
        let nodes = reg.get("", "v1", "nodes").unwrap();
        let f = ObjectFilter::new(nodes, None, None, Some("spec.unschedulable=false")).unwrap();
        let node = json!({"metadata": {"name": "n"}, "spec": {}});
        assert!(f.matches_value(&node));
        assert!(f.matches(&StoredObject::new("nodes", &node).unwrap()));
    }

    #[test]
    fn stored_index_and_parsed_object_select_alike() {
        let reg = Registry::with_builtins();
        let ev = reg.get("events.k8s.io", "v1", "events").unwrap();
        let core_ev = reg.get("", "v1", "events").unwrap();
        let stored_json = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "d"},
            "involvedObject": {"kind": "Node", "name": "n", "extra": "x"}, "reason": "Boom", "source": {"component": "kubelet"}});
        let stored = StoredObject::new("events", &stored_json).unwrap();
        // (resource, field selector, selected); `regarding.extra` is not indexed and is read by
        // parsing the stored object.
        let cases = [
            (&ev, "regarding.name=n", true),
            (&ev, "regarding.kind=Pod", false),
            (&ev, "regarding.extra=x", true),
            (&ev, "regarding.extra=y", false),
            (&ev, "reportingController=", true),
            (&ev, "deprecatedSource=kubelet", true),
            (&core_ev, "source=kubelet", true),
            (&core_ev, "reason!=Boom", false),
            (&core_ev, "metadata.name=e,metadata.namespace=d", true),
            (&core_ev, "involvedObject.uid=", true),
        ];
        for (res, selector, want) in cases {
            let f = ObjectFilter::new((*res).clone(), None, None, Some(selector)).unwrap();
            assert_eq!(
                (selector, f.matches(&stored), f.matches_value(&stored_json)),
                (selector, want, want)
            );
        }
        let shown = present_json(&ev, &stored).unwrap();
        let shown: Value = serde_json::from_slice(&shown).unwrap();
        assert_eq!(
            (&shown["apiVersion"], &shown["regarding"]["name"]),
            (&json!("events.k8s.io/v1"), &json!("n"))
        );
        assert_eq!(present_json(&core_ev, &stored).unwrap(), stored.json());
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
