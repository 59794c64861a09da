//! Objects as the store keeps them: the serialized JSON plus a small index of what storage
//! semantics, selectors and the garbage collector read.
//!
//! Why bytes and not a `serde_json::Value` tree: a tree costs 5-10x its JSON size (every map is
//! a B-tree node, every string its own allocation), which at 50,000 pods was most of the
//! server's memory; and lists and watches then had to serialize every object again for every
//! reader. Holding the bytes makes a list a concatenation and a watch event one copy per
//! watcher, while the few writers that need the tree parse it back (a few microseconds).

use std::collections::BTreeMap;

use axum::body::Bytes;
use serde_json::Value;

use super::error::ApiError;
use super::filter::{indexed_field_value, indexed_fields};
use super::object::{at, str_at};

/// One stored object: its JSON (storage form) and its index.
#[derive(Debug)]
pub struct StoredObject {
    json: Bytes,
    meta: StoredMeta,
}

/// The parts of an object the store and selectors read without parsing the JSON.
#[derive(Debug, Default)]
pub struct StoredMeta {
    /// `apiVersion` as stored.
    pub api_version: Box<str>,
    /// `kind` as stored.
    pub kind: Box<str>,
    /// `metadata.namespace` ("" for cluster-scoped objects).
    pub namespace: Box<str>,
    /// `metadata.name`.
    pub name: Box<str>,
    /// `metadata.uid`.
    pub uid: Box<str>,
    /// `metadata.resourceVersion`.
    pub resource_version: Box<str>,
    /// `metadata.labels`, sorted by key.
    pub labels: Box<[(Box<str>, Box<str>)]>,
    /// `metadata.deletionTimestamp`, when set.
    pub deletion_timestamp: Option<Box<str>>,
    /// `metadata.deletionGracePeriodSeconds`, when set.
    pub deletion_grace_period_seconds: Option<i64>,
    /// `metadata.finalizers`.
    pub finalizers: Box<[Box<str>]>,
    /// The `uid`s in `metadata.ownerReferences`.
    pub owner_uids: Box<[Box<str>]>,
    /// Values of the field-selector fields this resource supports (absent fields are left out).
    pub fields: Box<[(&'static str, Box<str>)]>,
}

impl StoredMeta {
    /// Whether `metadata.deletionTimestamp` is set.
    pub fn is_deleting(&self) -> bool {
        self.deletion_timestamp.is_some()
    }

    /// Whether the object carries this finalizer.
    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| &**f == finalizer)
    }

    /// Labels as the map label selectors match against.
    pub fn label_map(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The indexed value of a field-selector field; `None` when the object has no value.
    pub fn field(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| &**v)
    }
}

fn boxed(s: Option<&str>) -> Box<str> {
    s.unwrap_or("").into()
}

fn str_list(v: Option<&Value>) -> Box<[Box<str>]> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(Box::from).collect())
        .unwrap_or_default()
}

impl StoredObject {
    /// Serializes an object of a table and indexes it.
    pub fn new(storage: &str, obj: &Value) -> Result<Self, ApiError> {
        let json = serde_json::to_vec(obj)
            .map_err(|e| ApiError::internal(format!("serializing a stored object: {e}")))?;
        Ok(StoredObject {
            // Exact size: a serializer's buffer keeps up to twice the length as spare capacity.
            json: Bytes::from(json.into_boxed_slice()),
            meta: index_of(storage, obj),
        })
    }

    /// The stored JSON.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The index.
    pub fn meta(&self) -> &StoredMeta {
        &self.meta
    }

    /// The object as a JSON tree (parsed from the stored bytes).
    pub fn value(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(&self.json)
            .map_err(|e| ApiError::internal(format!("decoding a stored object: {e}")))
    }
}

fn index_of(storage: &str, obj: &Value) -> StoredMeta {
    let mut labels: Vec<(Box<str>, Box<str>)> = at(obj, &["metadata", "labels"])
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (Box::from(k.as_str()), Box::from(v))))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    let owner_uids = at(obj, &["metadata", "ownerReferences"])
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .map(Box::from)
                .collect()
        })
        .unwrap_or_default();
    let fields = indexed_fields(storage)
        .iter()
        .filter_map(|f| indexed_field_value(obj, f).map(|v| (*f, Box::from(v.as_str()))))
        .collect();
    StoredMeta {
        api_version: boxed(str_at(obj, &["apiVersion"])),
        kind: boxed(str_at(obj, &["kind"])),
        namespace: boxed(str_at(obj, &["metadata", "namespace"])),
        name: boxed(str_at(obj, &["metadata", "name"])),
        uid: boxed(str_at(obj, &["metadata", "uid"])),
        resource_version: boxed(str_at(obj, &["metadata", "resourceVersion"])),
        labels: labels.into_boxed_slice(),
        deletion_timestamp: at(obj, &["metadata", "deletionTimestamp"])
            .filter(|t| !t.is_null())
            .map(|t| match t.as_str() {
                Some(s) => Box::from(s),
                None => Box::from(t.to_string().as_str()),
            }),
        deletion_grace_period_seconds: at(obj, &["metadata", "deletionGracePeriodSeconds"])
            .and_then(Value::as_i64),
        finalizers: str_list(at(obj, &["metadata", "finalizers"])),
        owner_uids,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_indexes() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "d", "uid": "u1", "resourceVersion": "7",
                "labels": {"b": "2", "a": "1"}, "finalizers": ["f"],
                "deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 0,
                "ownerReferences": [{"uid": "o1"}]},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let s = StoredObject::new("pods", &pod).unwrap();
        assert_eq!(s.value().unwrap(), pod);
        let m = s.meta();
        assert_eq!(
            (&*m.name, &*m.namespace, &*m.uid, &*m.resource_version),
            ("p", "d", "u1", "7")
        );
        assert_eq!(m.label_map().into_iter().collect::<Vec<_>>()[0].0, "a");
        assert!(m.is_deleting() && m.has_finalizer("f") && !m.has_finalizer("g"));
        assert_eq!(m.deletion_grace_period_seconds, Some(0));
        assert_eq!(&*m.owner_uids[0], "o1");
        assert_eq!(m.field("spec.nodeName"), Some("n1"));
        assert_eq!(m.field("status.phase"), Some("Running"));
        assert_eq!(m.field("spec.hostNetwork"), Some("false"));
        assert_eq!(m.field("status.podIP"), None);
        let cm = StoredObject::new("configmaps", &json!({"metadata": {"name": "c"}})).unwrap();
        assert!(cm.meta().fields.is_empty() && !cm.meta().is_deleting());
    }
}
