//! How lists and maps of an object merge: the schema facts that strategic merge patch and
//! server-side apply need, for the built-in kinds the project writes and for CRD schemas.

use serde_json::Value;

/// How a list field merges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListStrategy {
    /// The list is one value: a patch or apply replaces it wholesale.
    Atomic,
    /// Items are objects identified by these key fields and merged item by item.
    MergeByKey(Vec<String>),
    /// Items are scalars merged as a set.
    MergePrimitives,
}

/// Schema facts for merging: the strategy of each list field, and which maps are atomic.
///
/// `path` is the chain of map keys from the object root (`["spec", "containers"]`); list items do
/// not add segments, so the `ports` of every container is `["spec", "containers", "ports"]`.
pub trait PatchSchema {
    /// How the list at `path` merges. Unknown paths are [`ListStrategy::Atomic`].
    fn list_strategy(&self, path: &[&str]) -> ListStrategy;

    /// Whether the object at `path` is owned and replaced as a unit by server-side apply
    /// (`+structType=atomic`, `x-kubernetes-map-type: atomic`). Strategic merge patch ignores it.
    fn is_atomic_map(&self, _path: &[&str]) -> bool {
        false
    }
}

/// A schema that knows nothing: every list is atomic, every map granular.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSchema;

impl PatchSchema for NoSchema {
    fn list_strategy(&self, _path: &[&str]) -> ListStrategy {
        ListStrategy::Atomic
    }
}

/// Path patterns to strategies; a `*` segment matches any one map key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PathTable {
    lists: Vec<(Vec<String>, ListStrategy)>,
    atomic_maps: Vec<Vec<String>>,
}

fn pattern_matches(pattern: &[String], path: &[&str]) -> bool {
    pattern.len() == path.len()
        && pattern
            .iter()
            .zip(path)
            .all(|(want, have)| want == "*" || want == have)
}

fn split(path: &str) -> Vec<String> {
    path.split('.').map(str::to_string).collect()
}

impl PathTable {
    fn list(&mut self, path: &str, strategy: ListStrategy) {
        self.lists.push((split(path), strategy));
    }

    fn keyed(&mut self, path: &str, key: &str) {
        self.list(path, ListStrategy::MergeByKey(vec![key.to_string()]));
    }

    fn set(&mut self, path: &str) {
        self.list(path, ListStrategy::MergePrimitives);
    }

    fn atomic_map(&mut self, path: &str) {
        self.atomic_maps.push(split(path));
    }

    fn list_strategy(&self, path: &[&str]) -> ListStrategy {
        self.lists
            .iter()
            .find(|(pattern, _)| pattern_matches(pattern, path))
            .map(|(_, strategy)| strategy.clone())
            .unwrap_or(ListStrategy::Atomic)
    }

    fn is_atomic_map(&self, path: &[&str]) -> bool {
        self.atomic_maps.iter().any(|p| pattern_matches(p, path))
    }

    /// `metadata.finalizers` (set) and `metadata.ownerReferences` (by uid), under `prefix`.
    fn object_meta(&mut self, prefix: &str) {
        self.set(&format!("{prefix}metadata.finalizers"));
        self.keyed(&format!("{prefix}metadata.ownerReferences"), "uid");
    }

    /// The merge keys of `core/v1.PodSpec` under `prefix` (e.g. `spec.` or `spec.template.spec.`).
    fn pod_spec(&mut self, prefix: &str) {
        for containers in ["containers", "initContainers", "ephemeralContainers"] {
            let c = format!("{prefix}{containers}");
            self.keyed(&c, "name");
            self.keyed(&format!("{c}.ports"), "containerPort");
            self.keyed(&format!("{c}.env"), "name");
            self.keyed(&format!("{c}.volumeMounts"), "mountPath");
            self.keyed(&format!("{c}.volumeDevices"), "devicePath");
        }
        self.keyed(&format!("{prefix}volumes"), "name");
        self.keyed(&format!("{prefix}imagePullSecrets"), "name");
        self.keyed(&format!("{prefix}hostAliases"), "ip");
        self.keyed(&format!("{prefix}resourceClaims"), "name");
        self.keyed(&format!("{prefix}schedulingGates"), "name");
        self.keyed(&format!("{prefix}topologySpreadConstraints"), "topologyKey");
        // Atomic (no patch strategy) on purpose: tolerations, readinessGates, args, command,
        // envFrom, resizePolicy — the default.
    }

    fn conditions(&mut self) {
        self.keyed("status.conditions", "type");
    }
}

/// The merge keys of the built-in kinds this project reads and writes.
///
/// Transcribed from the `patchStrategy`/`patchMergeKey` tags of k8s.io/api v1.34 (as carried by
/// k8s-openapi's generated merge code) and the `+structType=atomic` marker of
/// `metav1.LabelSelector`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinSchema {
    table: PathTable,
}

impl BuiltinSchema {
    /// The schema for a built-in kind, or `None` for kinds not described here.
    pub fn for_kind(group: &str, version: &str, kind: &str) -> Option<BuiltinSchema> {
        let mut t = PathTable::default();
        t.object_meta("");
        match (group, version, kind) {
            ("", "v1", "Pod") => {
                t.pod_spec("spec.");
                t.conditions();
                t.keyed("status.podIPs", "ip");
                t.keyed("status.hostIPs", "ip");
                t.keyed("status.resourceClaimStatuses", "name");
                // containerStatuses, initContainerStatuses, ephemeralContainerStatuses: atomic.
            }
            ("", "v1", "PodTemplate") => {
                t.object_meta("template.");
                t.pod_spec("template.spec.");
            }
            ("", "v1", "Node") => {
                t.set("spec.podCIDRs");
                // spec.taints has no patch strategy upstream: it is replaced wholesale.
                t.conditions();
                t.keyed("status.addresses", "type");
            }
            ("", "v1", "Service") => {
                t.keyed("spec.ports", "port");
                t.conditions();
            }
            ("", "v1", "Namespace") => {
                t.conditions();
            }
            ("", "v1", "ConfigMap" | "Secret" | "Event" | "Endpoints")
            | ("events.k8s.io", "v1", "Event")
            | ("coordination.k8s.io", "v1", "Lease") => {}
            ("apps", "v1", "Deployment" | "DaemonSet" | "ReplicaSet" | "StatefulSet") => {
                t.object_meta("spec.template.");
                t.pod_spec("spec.template.spec.");
                t.conditions();
                t.atomic_map("spec.selector");
            }
            ("batch", "v1", "Job") => {
                t.object_meta("spec.template.");
                t.pod_spec("spec.template.spec.");
                t.conditions();
                t.atomic_map("spec.selector");
            }
            ("policy", "v1", "PodDisruptionBudget") => {
                t.conditions();
                t.atomic_map("spec.selector");
            }
            ("batch", "v1", "CronJob") => {
                t.object_meta("spec.jobTemplate.spec.template.");
                t.pod_spec("spec.jobTemplate.spec.template.spec.");
                t.atomic_map("spec.jobTemplate.spec.selector");
            }
            ("", "v1", "PersistentVolumeClaim") => {
                t.conditions();
                t.atomic_map("spec.selector");
            }
            ("", "v1", "ServiceAccount") => {
                t.keyed("secrets", "name");
            }
            ("storage.k8s.io", "v1", "CSINode") => {
                t.keyed("spec.drivers", "name");
            }
            ("", "v1", "PersistentVolume")
            | ("storage.k8s.io", "v1", "StorageClass" | "VolumeAttachment" | "CSIDriver")
            | ("scheduling.k8s.io", "v1", "PriorityClass")
            | ("node.k8s.io", "v1", "RuntimeClass") => {}
            _ => return None,
        }
        Some(BuiltinSchema { table: t })
    }
}

impl BuiltinSchema {
    /// Only the `metadata` rules every object shares (finalizers as a set, owner references by
    /// uid): for kinds [`BuiltinSchema::for_kind`] does not describe.
    pub fn object_meta_only() -> BuiltinSchema {
        let mut table = PathTable::default();
        table.object_meta("");
        BuiltinSchema { table }
    }
}

impl PatchSchema for BuiltinSchema {
    fn list_strategy(&self, path: &[&str]) -> ListStrategy {
        self.table.list_strategy(path)
    }

    fn is_atomic_map(&self, path: &[&str]) -> bool {
        self.table.is_atomic_map(path)
    }
}

/// Merge facts read from a CRD version's `openAPIV3Schema` (`x-kubernetes-list-type`,
/// `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`), plus `metadata` as for every object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrdSchema {
    table: PathTable,
}

impl CrdSchema {
    /// Reads the merge facts out of an `openAPIV3Schema`. Unknown shapes are ignored (atomic).
    pub fn from_openapi(schema: &Value) -> CrdSchema {
        let mut table = PathTable::default();
        table.object_meta("");
        let mut path = Vec::new();
        walk_openapi(schema, &mut path, &mut table);
        CrdSchema { table }
    }
}

fn walk_openapi(schema: &Value, path: &mut Vec<String>, table: &mut PathTable) {
    let Some(obj) = schema.as_object() else {
        return;
    };
    if !path.is_empty() {
        match obj.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => {
                let keys: Vec<String> = obj
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|keys| {
                        keys.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                if !keys.is_empty() {
                    table
                        .lists
                        .push((path.clone(), ListStrategy::MergeByKey(keys)));
                }
            }
            Some("set") => table
                .lists
                .push((path.clone(), ListStrategy::MergePrimitives)),
            _ => {}
        }
        let atomic_struct =
            obj.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
        if atomic_struct {
            table.atomic_maps.push(path.clone());
        }
    }
    if let Some(properties) = obj.get("properties").and_then(Value::as_object) {
        for (name, sub) in properties {
            path.push(name.clone());
            walk_openapi(sub, path, table);
            path.pop();
        }
    }
    if let Some(items) = obj.get("items") {
        walk_openapi(items, path, table);
    }
    if let Some(additional) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        path.push("*".to_string());
        walk_openapi(additional, path, table);
        path.pop();
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        for sub in obj
            .get(combinator)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk_openapi(sub, path, table);
        }
    }
}

impl PatchSchema for CrdSchema {
    fn list_strategy(&self, path: &[&str]) -> ListStrategy {
        self.table.list_strategy(path)
    }

    fn is_atomic_map(&self, path: &[&str]) -> bool {
        self.table.is_atomic_map(path)
    }
}
