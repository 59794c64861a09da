//! The served resources: what discovery lists and what the router resolves paths against.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use karpenter_apimachinery::patch::PatchSchema;

use serde_json::Value;

use super::error::QualifiedResource;
use super::store::{Special, TableMeta};

/// The verbs of a full resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Where a scale subresource reads and writes replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// JSON path of the desired replicas, e.g. `.spec.replicas`.
    pub spec_replicas: String,
    /// JSON path of the observed replicas, e.g. `.status.replicas`.
    pub status_replicas: String,
    /// JSON path of the serialized label selector, if any.
    pub label_selector: Option<String>,
}

/// A subresource of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`.
    Status,
    /// `/scale` (autoscaling/v1 Scale).
    Scale(ScalePaths),
    /// `pods/binding`.
    Binding,
    /// `pods/eviction`.
    Eviction,
}

impl Subresource {
    /// The path segment.
    pub fn name(&self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale(_) => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
        }
    }
}

/// A CRD printer column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Header.
    pub name: String,
    /// OpenAPI type (`string`, `integer`, `date`, ...).
    pub type_: String,
    /// OpenAPI format.
    pub format: String,
    /// Description.
    pub description: String,
    /// 0 = always shown, >0 = `-o wide` only.
    pub priority: i64,
    /// JSONPath evaluated against the object.
    pub json_path: String,
}

/// One served group/version/resource.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural (the path segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Short names (`po`, `np`, ...).
    pub short_names: Vec<String>,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Verbs served on the main resource.
    pub verbs: Vec<String>,
    /// Subresources.
    pub subresources: Vec<Subresource>,
    /// Categories (`all`, `karpenter`).
    pub categories: Vec<String>,
    /// Storage table key; resources of several versions/groups may share one.
    pub storage: String,
    /// Special storage behaviour.
    pub special: Special,
    /// Printer columns for CRDs (built-ins have fixed renderers).
    pub printer_columns: Vec<PrinterColumn>,
    /// The CRD object this resource comes from.
    pub crd: Option<Arc<Value>>,
    /// Whether this is the group's storage/preferred version.
    pub preferred: bool,
    /// The merge schema, built on first use: building one walks the whole pod spec (or parses a
    /// CRD's OpenAPI schema), which every write that records managed fields needs.
    pub patch_schema: SchemaCache,
}

/// A lazily built merge schema shared by every request on one [`ResourceInfo`]. A CRD update
/// builds new `ResourceInfo`s, so a cached CRD schema never outlives its CRD version.
#[derive(Default, Clone)]
pub struct SchemaCache(OnceLock<Arc<dyn PatchSchema + Send + Sync>>);

impl SchemaCache {
    /// The cached schema, built with `build` the first time.
    pub fn get_or_build(
        &self,
        build: impl FnOnce() -> Arc<dyn PatchSchema + Send + Sync>,
    ) -> Arc<dyn PatchSchema + Send + Sync> {
        self.0.get_or_init(build).clone()
    }
}

impl std::fmt::Debug for SchemaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "SchemaCache(built)"
        } else {
            "SchemaCache(empty)"
        })
    }
}

impl ResourceInfo {
    /// `group/version`, or `v1` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Resource for messages.
    pub fn qualified(&self) -> QualifiedResource {
        QualifiedResource::new(&self.group, &self.plural)
    }

    /// Whether a status subresource exists.
    pub fn has_status(&self) -> bool {
        self.subresources.contains(&Subresource::Status)
    }

    /// The scale subresource paths, if any.
    pub fn scale(&self) -> Option<&ScalePaths> {
        self.subresources.iter().find_map(|s| match s {
            Subresource::Scale(p) => Some(p),
            _ => None,
        })
    }

    /// What the store needs to know.
    pub fn table_meta(&self) -> TableMeta {
        TableMeta {
            storage: self.storage.clone(),
            qualified: self.qualified(),
            kind: self.kind.clone(),
            namespaced: self.namespaced,
            has_status: self.has_status(),
            special: self.special,
        }
    }

    /// Whether the resource is a custom resource.
    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }
}

struct BuiltinSpec {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    subs: &'static [&'static str],
    categories: &'static [&'static str],
    /// Storage table shared with another group's resource (events.k8s.io events live with core events).
    shared_storage: Option<&'static str>,
}

// One row of the built-in table; positional arguments keep the table readable.
#[allow(clippy::too_many_arguments)]
const fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    subs: &'static [&'static str],
    categories: &'static [&'static str],
) -> BuiltinSpec {
    BuiltinSpec {
        group,
        version,
        kind,
        plural,
        short,
        namespaced,
        subs,
        categories,
        shared_storage: None,
    }
}

const BUILTINS: &[BuiltinSpec] = &[
    b(
        "",
        "v1",
        "Namespace",
        "namespaces",
        &["ns"],
        false,
        &["status"],
        &[],
    ),
    b(
        "",
        "v1",
        "Pod",
        "pods",
        &["po"],
        true,
        &["status", "binding", "eviction"],
        &["all"],
    ),
    b("", "v1", "Node", "nodes", &["no"], false, &["status"], &[]),
    b("", "v1", "Event", "events", &["ev"], true, &[], &[]),
    b("", "v1", "ConfigMap", "configmaps", &["cm"], true, &[], &[]),
    b("", "v1", "Secret", "secrets", &[], true, &[], &[]),
    b(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        &["sa"],
        true,
        &[],
        &[],
    ),
    b(
        "",
        "v1",
        "Service",
        "services",
        &["svc"],
        true,
        &["status"],
        &["all"],
    ),
    b(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        &["pv"],
        false,
        &["status"],
        &[],
    ),
    b(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        &["pvc"],
        true,
        &["status"],
        &[],
    ),
    b(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        &["deploy"],
        true,
        &["status", "scale"],
        &["all"],
    ),
    b(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        &["rs"],
        true,
        &["status", "scale"],
        &["all"],
    ),
    b(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        &["ds"],
        true,
        &["status"],
        &["all"],
    ),
    b(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        &["sts"],
        true,
        &["status", "scale"],
        &["all"],
    ),
    b(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        &["pdb"],
        true,
        &["status"],
        &[],
    ),
    b(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        &[],
        true,
        &[],
        &[],
    ),
    BuiltinSpec {
        shared_storage: Some("events"),
        ..b(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            &["ev"],
            true,
            &[],
            &[],
        )
    },
    b(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        &["sc"],
        false,
        &[],
        &[],
    ),
    b(
        "storage.k8s.io",
        "v1",
        "CSINode",
        "csinodes",
        &[],
        false,
        &[],
        &[],
    ),
    b(
        "storage.k8s.io",
        "v1",
        "CSIDriver",
        "csidrivers",
        &[],
        false,
        &[],
        &[],
    ),
    b(
        "storage.k8s.io",
        "v1",
        "VolumeAttachment",
        "volumeattachments",
        &[],
        false,
        &["status"],
        &[],
    ),
    b(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        &["pc"],
        false,
        &[],
        &[],
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        &["crd", "crds"],
        false,
        &["status"],
        &[],
    ),
];

fn builtin(spec: &BuiltinSpec) -> ResourceInfo {
    let storage = match spec.shared_storage {
        Some(s) => s.to_string(),
        None if spec.group.is_empty() => spec.plural.to_string(),
        None => format!("{}.{}", spec.plural, spec.group),
    };
    let subresources = spec
        .subs
        .iter()
        .filter_map(|s| match *s {
            "status" => Some(Subresource::Status),
            "scale" => Some(Subresource::Scale(ScalePaths {
                spec_replicas: ".spec.replicas".into(),
                status_replicas: ".status.replicas".into(),
                label_selector: Some(".status.selector".into()),
            })),
            "binding" => Some(Subresource::Binding),
            "eviction" => Some(Subresource::Eviction),
            _ => None,
        })
        .collect();
    let special = match spec.plural {
        "pods" => Special::Pod,
        "namespaces" => Special::Namespace,
        _ => Special::None,
    };
    ResourceInfo {
        group: spec.group.into(),
        version: spec.version.into(),
        kind: spec.kind.into(),
        plural: spec.plural.into(),
        singular: spec.kind.to_lowercase(),
        short_names: spec.short.iter().map(|s| s.to_string()).collect(),
        namespaced: spec.namespaced,
        verbs: ALL_VERBS.iter().map(|s| s.to_string()).collect(),
        subresources,
        categories: spec.categories.iter().map(|s| s.to_string()).collect(),
        storage,
        special,
        printer_columns: Vec::new(),
        crd: None,
        preferred: true,
        patch_schema: SchemaCache::default(),
    }
}

/// The set of served resources. Cheap to read concurrently; CRD changes swap entries in.
#[derive(Debug, Default)]
pub struct Registry {
    /// Keyed by (group, version, plural).
    resources: RwLock<BTreeMap<(String, String, String), Arc<ResourceInfo>>>,
}

impl Registry {
    /// A registry with the built-in resources.
    pub fn with_builtins() -> Self {
        let reg = Registry::default();
        for spec in BUILTINS {
            reg.add(builtin(spec));
        }
        reg
    }

    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<(String, String, String), Arc<ResourceInfo>>> {
        self.resources.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, BTreeMap<(String, String, String), Arc<ResourceInfo>>>
    {
        self.resources.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces a resource.
    pub fn add(&self, info: ResourceInfo) {
        self.write().insert(
            (
                info.group.clone(),
                info.version.clone(),
                info.plural.clone(),
            ),
            Arc::new(info),
        );
    }

    /// Removes every version of a group's resource.
    pub fn remove(&self, group: &str, plural: &str) {
        self.write()
            .retain(|(g, _, p), _| !(g == group && p == plural));
    }

    /// Looks up a resource by path components.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.read()
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Finds a resource by group and kind (preferring the preferred version).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        let all = self.read();
        let mut found: Option<Arc<ResourceInfo>> = None;
        for r in all.values() {
            if r.group == group && r.kind == kind {
                if r.preferred {
                    return Some(r.clone());
                }
                found.get_or_insert_with(|| r.clone());
            }
        }
        found
    }

    /// Every resource, sorted by (group, version, plural).
    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        self.read().values().cloned().collect()
    }

    /// Groups with their versions, preferred version first; core ("") included.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<(bool, String)>> = BTreeMap::new();
        for r in self.read().values() {
            let versions = out.entry(r.group.clone()).or_default();
            if !versions.iter().any(|(_, v)| *v == r.version) {
                versions.push((r.preferred, r.version.clone()));
            }
        }
        out.into_iter()
            .map(|(g, mut vs)| {
                vs.sort_by(|a, b| {
                    b.0.cmp(&a.0)
                        .then_with(|| version_priority(&b.1).cmp(&version_priority(&a.1)))
                });
                (g, vs.into_iter().map(|(_, v)| v).collect())
            })
            .collect()
    }

    /// Resources of one group/version.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceInfo>> {
        self.read()
            .values()
            .filter(|r| r.group == group && r.version == version)
            .cloned()
            .collect()
    }
}

/// Kubernetes version ordering: GA > beta > alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major: u32 = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (stage, n) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    (stage, major, n.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_resolve_and_share_event_storage() {
        let reg = Registry::with_builtins();
        let pods = reg.get("", "v1", "pods").unwrap();
        assert!(pods.namespaced && pods.has_status());
        let core_ev = reg.get("", "v1", "events").unwrap();
        let ev = reg.get("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(core_ev.storage, ev.storage);
        assert_eq!(
            reg.get("apps", "v1", "deployments").unwrap().storage,
            "deployments.apps"
        );
        assert!(reg.groups().contains_key("apps"));
    }

    #[test]
    fn version_order() {
        let mut v = vec!["v1beta1", "v1", "v2", "v1alpha5"];
        v.sort_by_key(|s| std::cmp::Reverse(version_priority(s)));
        assert_eq!(v, vec!["v2", "v1", "v1beta1", "v1alpha5"]);
    }
}
