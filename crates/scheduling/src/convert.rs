//! Conversions from Kubernetes API objects (`k8s_openapi`) into the solver's views.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use karpenter_apis::labels;

use crate::model::{
    HostPort, InclusionPolicy, LabelSelector, NodeSelectorTerm, NodeView, PodAffinityTerm, PodView,
    PreferredNodeTerm, Taint, TaintEffect, Toleration, TopologySpreadConstraint,
    WeightedPodAffinityTerm, WhenUnsatisfiable,
};
use crate::quantity::QuantityError;
use crate::requirements::{Operator, RequirementSpec};
use crate::resources::{ContainerRequests, Resources, pod_requests};

/// Why an object could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A resource quantity did not parse.
    #[error("{object}: {source}")]
    Quantity {
        /// `namespace/name` of the object and the field.
        object: String,
        /// The parse error.
        source: QuantityError,
    },
    /// A NodePool requirement is invalid.
    #[error("{object}: {source}")]
    Requirement {
        /// The object.
        object: String,
        /// What is wrong.
        source: crate::requirements::RequirementError,
    },
    /// An operator or enum value is not known.
    #[error("{object}: unsupported value {value:?} in {field}")]
    Unsupported {
        /// The object.
        object: String,
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
    },
}

impl ConvertError {
    /// Stable short label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            ConvertError::Quantity { .. } => "invalid_quantity",
            ConvertError::Unsupported { .. } => "unsupported_value",
            ConvertError::Requirement { .. } => "invalid_requirement",
        }
    }
}

fn resource_map(
    object: &str,
    map: Option<&BTreeMap<String, K8sQuantity>>,
) -> Result<Resources, ConvertError> {
    let Some(map) = map else {
        return Ok(Resources::new());
    };
    Resources::parse(map.iter().map(|(k, v)| (k.as_str(), v.0.as_str()))).map_err(|source| {
        ConvertError::Quantity {
            object: object.to_string(),
            source,
        }
    })
}

fn container_requests(object: &str, c: &core::Container) -> Result<Resources, ConvertError> {
    let res = c.resources.as_ref();
    let mut requests = resource_map(object, res.and_then(|r| r.requests.as_ref()))?;
    // The API server defaults missing requests to limits; objects built elsewhere may not be.
    let limits = resource_map(object, res.and_then(|r| r.limits.as_ref()))?;
    for (name, v) in limits.iter() {
        if requests.get(name) == 0
            && res
                .and_then(|r| r.requests.as_ref())
                .is_none_or(|m| !m.contains_key(name))
        {
            requests.set(name, v);
        }
    }
    Ok(requests)
}

fn label_selector(s: &meta::LabelSelector) -> LabelSelector {
    LabelSelector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        match_expressions: s
            .match_expressions
            .iter()
            .flatten()
            .map(|e| RequirementSpec {
                key: e.key.clone(),
                // Unknown operators become Gt (never matches in selectors): safe, not permissive.
                operator: Operator::parse(&e.operator).unwrap_or(Operator::Gt),
                values: e.values.clone().unwrap_or_default(),
                min_values: None,
            })
            .collect(),
    }
}

fn node_term(object: &str, t: &core::NodeSelectorTerm) -> Result<NodeSelectorTerm, ConvertError> {
    t.match_expressions
        .iter()
        .flatten()
        .map(|e| {
            Ok(RequirementSpec {
                key: e.key.clone(),
                operator: Operator::parse(&e.operator).ok_or_else(|| {
                    ConvertError::Unsupported {
                        object: object.to_string(),
                        field: "nodeSelectorTerms.matchExpressions.operator",
                        value: e.operator.clone(),
                    }
                })?,
                values: e.values.clone().unwrap_or_default(),
                min_values: None,
            })
        })
        .collect()
}

fn affinity_term(t: &core::PodAffinityTerm) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: t.label_selector.as_ref().map(label_selector),
        namespaces: t.namespaces.clone().unwrap_or_default(),
        namespace_selector: t.namespace_selector.as_ref().map(label_selector),
        topology_key: t.topology_key.clone(),
    }
}

/// Converts a Kubernetes taint.
pub fn taint(object: &str, t: &core::Taint) -> Result<Taint, ConvertError> {
    Ok(Taint {
        key: t.key.clone(),
        value: t.value.clone().filter(|v| !v.is_empty()),
        effect: TaintEffect::parse(&t.effect).ok_or_else(|| ConvertError::Unsupported {
            object: object.to_string(),
            field: "taints.effect",
            value: t.effect.clone(),
        })?,
    })
}

/// Converts a Kubernetes pod into the solver's view (requests with Kubernetes semantics).
pub fn pod_view(pod: &core::Pod) -> Result<PodView, ConvertError> {
    let md = &pod.metadata;
    let object = format!(
        "pod {}/{}",
        md.namespace.as_deref().unwrap_or(""),
        md.name.as_deref().unwrap_or("")
    );
    let spec = pod.spec.clone().unwrap_or_default();
    let containers = spec
        .containers
        .iter()
        .map(|c| container_requests(&object, c))
        .collect::<Result<Vec<_>, _>>()?;
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            Ok(ContainerRequests {
                requests: container_requests(&object, c)?,
                restartable: c.restart_policy.as_deref() == Some("Always"),
            })
        })
        .collect::<Result<Vec<_>, ConvertError>>()?;
    let overhead = resource_map(&object, spec.overhead.as_ref())?;
    let requests = pod_requests(&containers, &init, Some(&overhead));

    let mut view = PodView {
        uid: md.uid.clone().unwrap_or_default(),
        namespace: md
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        name: md.name.clone().unwrap_or_default(),
        labels: md.labels.clone().unwrap_or_default(),
        creation_timestamp: md
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        requests,
        node_selector: spec.node_selector.clone().unwrap_or_default(),
        node_name: spec.node_name.clone(),
        owner_kind: md
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.kind.clone()),
        ..Default::default()
    };
    if let Some(aff) = &spec.affinity {
        if let Some(na) = &aff.node_affinity {
            if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
                for t in &req.node_selector_terms {
                    if t.match_fields.as_ref().is_some_and(|f| !f.is_empty()) {
                        view.uses_match_fields = true;
                    }
                    view.required_node_affinity.push(node_term(&object, t)?);
                }
            }
            for p in na
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                view.preferred_node_affinity.push(PreferredNodeTerm {
                    weight: p.weight,
                    term: node_term(&object, &p.preference)?,
                });
            }
        }
        if let Some(pa) = &aff.pod_affinity {
            view.pod_affinity = pa
                .required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .map(affinity_term)
                .collect();
            view.preferred_pod_affinity = pa
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .map(|w| WeightedPodAffinityTerm {
                    weight: w.weight,
                    term: affinity_term(&w.pod_affinity_term),
                })
                .collect();
        }
        if let Some(pa) = &aff.pod_anti_affinity {
            view.pod_anti_affinity = pa
                .required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .map(affinity_term)
                .collect();
            view.preferred_pod_anti_affinity = pa
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .map(|w| WeightedPodAffinityTerm {
                    weight: w.weight,
                    term: affinity_term(&w.pod_affinity_term),
                })
                .collect();
        }
    }
    for t in spec.tolerations.iter().flatten() {
        let effect = match t.effect.as_deref() {
            None | Some("") => None,
            Some(e) => Some(
                TaintEffect::parse(e).ok_or_else(|| ConvertError::Unsupported {
                    object: object.clone(),
                    field: "tolerations.effect",
                    value: e.to_string(),
                })?,
            ),
        };
        view.tolerations.push(Toleration {
            key: t.key.clone().filter(|k| !k.is_empty()),
            exists: t.operator.as_deref() == Some("Exists"),
            value: t.value.clone(),
            effect,
        });
    }
    for c in spec.topology_spread_constraints.iter().flatten() {
        let policy = |v: Option<&str>, default| match v {
            Some("Honor") => InclusionPolicy::Honor,
            Some("Ignore") => InclusionPolicy::Ignore,
            _ => default,
        };
        view.topology_spread.push(TopologySpreadConstraint {
            max_skew: c.max_skew,
            topology_key: c.topology_key.clone(),
            when_unsatisfiable: if c.when_unsatisfiable == "ScheduleAnyway" {
                WhenUnsatisfiable::ScheduleAnyway
            } else {
                WhenUnsatisfiable::DoNotSchedule
            },
            label_selector: c.label_selector.as_ref().map(label_selector),
            min_domains: c.min_domains,
            node_affinity_policy: policy(c.node_affinity_policy.as_deref(), InclusionPolicy::Honor),
            node_taints_policy: policy(c.node_taints_policy.as_deref(), InclusionPolicy::Ignore),
            match_label_keys: c.match_label_keys.clone().unwrap_or_default(),
        });
    }
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for p in c.ports.iter().flatten() {
            if let Some(hp) = p.host_port.filter(|p| *p > 0) {
                view.host_ports.push(HostPort {
                    port: hp,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                    host_ip: p.host_ip.clone().unwrap_or_default(),
                });
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(pvc) = &v.persistent_volume_claim {
            view.pvcs.push(pvc.claim_name.clone());
        } else if v.ephemeral.is_some() {
            // Generic ephemeral volumes create a PVC named <pod>-<volume>.
            view.pvcs.push(format!("{}-{}", view.name, v.name));
        }
    }
    Ok(view)
}

fn api_operator(op: karpenter_apis::common::NodeSelectorOperator) -> Operator {
    use karpenter_apis::common::NodeSelectorOperator as O;
    match op {
        O::In => Operator::In,
        O::NotIn => Operator::NotIn,
        O::Exists => Operator::Exists,
        O::DoesNotExist => Operator::DoesNotExist,
        O::Gt => Operator::Gt,
        O::Lt => Operator::Lt,
        O::Gte => Operator::Gte,
        O::Lte => Operator::Lte,
    }
}

/// Writes requirements as NodeClaim `spec.requirements` entries (Gte/Lte like upstream, both
/// bounds as two entries, minValues kept).
pub fn nodeclaim_requirements(
    specs: &[RequirementSpec],
) -> Vec<karpenter_apis::common::NodeSelectorRequirementWithMinValues> {
    use karpenter_apis::common::NodeSelectorOperator as O;
    specs
        .iter()
        .map(
            |s| karpenter_apis::common::NodeSelectorRequirementWithMinValues {
                key: s.key.clone(),
                operator: match s.operator {
                    Operator::In => O::In,
                    Operator::NotIn => O::NotIn,
                    Operator::Exists => O::Exists,
                    Operator::DoesNotExist => O::DoesNotExist,
                    Operator::Gt => O::Gt,
                    Operator::Lt => O::Lt,
                    Operator::Gte => O::Gte,
                    Operator::Lte => O::Lte,
                },
                values: s.values.clone(),
                min_values: s.min_values,
            },
        )
        .collect()
}

/// Converts a `karpenter.sh/v1` NodePool (plus the instance types the cloud provider offers for
/// it) into the solver's view. Limits are parsed into the crate's integer units.
pub fn nodepool_view(
    np: &karpenter_apis::nodepool::NodePool,
    instance_types: Vec<crate::model::InstanceType>,
) -> Result<crate::model::NodePoolView, ConvertError> {
    let name = np.metadata.name.clone().unwrap_or_default();
    let object = format!("nodepool {name}");
    let spec = &np.spec.template.spec;
    let mut requirements = crate::requirements::Requirements::new();
    for r in &spec.requirements {
        let key = labels::normalize_label_key(&r.key);
        let mut req =
            crate::requirements::Requirement::new(key, api_operator(r.operator), &r.values)
                .map_err(|source| ConvertError::Requirement {
                    object: object.clone(),
                    source,
                })?;
        req.min_values = r.min_values;
        requirements.add(key, req);
    }
    let taints = |ts: &[core::Taint]| {
        ts.iter()
            .map(|t| taint(&object, t))
            .collect::<Result<Vec<_>, _>>()
    };
    let mut limits = BTreeMap::new();
    for (k, v) in &np.spec.limits {
        let amount =
            crate::quantity::parse_resource(k, &v.0).map_err(|source| ConvertError::Quantity {
                object: format!("{object} limits.{k}"),
                source,
            })?;
        limits.insert(k.clone(), amount);
    }
    Ok(crate::model::NodePoolView {
        name,
        weight: np.spec.weight.unwrap_or(0),
        requirements,
        labels: np.spec.template.metadata.labels.clone(),
        annotations: np.spec.template.metadata.annotations.clone(),
        taints: taints(&spec.taints)?,
        startup_taints: taints(&spec.startup_taints)?,
        limits,
        node_class_ref: crate::model::NodeClassRef {
            group: spec.node_class_ref.group.clone(),
            kind: spec.node_class_ref.kind.clone(),
            name: spec.node_class_ref.name.clone(),
        },
        instance_types,
    })
}

/// Converts a Kubernetes node and the pods bound to it into a node view. `used` sums the
/// requests of the given pods (callers pass the non-terminal pods bound to this node).
pub fn node_view(node: &core::Node, pods: &[PodView]) -> Result<NodeView, ConvertError> {
    let object = format!("node {}", node.metadata.name.as_deref().unwrap_or(""));
    let status = node.status.clone().unwrap_or_default();
    let labels_map = node.metadata.labels.clone().unwrap_or_default();
    let mut used = Resources::new();
    let mut host_ports = Vec::new();
    for p in pods {
        used.add(&p.requests);
        host_ports.extend(p.host_ports.iter().cloned());
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|ts| {
            ts.iter()
                .map(|t| taint(&object, t))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let managed = labels_map.contains_key(labels::NODEPOOL);
    let initialized = !managed
        || labels_map
            .get(labels::INITIALIZED)
            .is_some_and(|v| v == "true");
    Ok(NodeView {
        name: node.metadata.name.clone().unwrap_or_default(),
        labels: labels_map,
        taints,
        startup_taints: Vec::new(),
        capacity: resource_map(&object, status.capacity.as_ref())?,
        allocatable: resource_map(&object, status.allocatable.as_ref())?,
        used,
        host_ports,
        volume_limits: BTreeMap::new(),
        volumes_attached: BTreeMap::new(),
        initialized,
        in_flight: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_from_json() {
        let pod: core::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "labels": {"app": "web"},
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
                     "ports": [{"containerPort": 80, "hostPort": 8080}]},
                    {"name": "b", "resources": {"limits": {"cpu": "1", "nvidia.com/gpu": "1"}}}
                ],
                "initContainers": [
                    {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                    {"name": "init", "resources": {"requests": {"cpu": "4"}}}
                ],
                "overhead": {"cpu": "10m"},
                "nodeSelector": {"kubernetes.io/arch": "arm64"},
                "tolerations": [{"key": "team", "operator": "Equal", "value": "a", "effect": "NoSchedule"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}]}]}}},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-0"}}]
            }
        }))
        .unwrap();
        let v = pod_view(&pod).unwrap();
        // max(init 4 + sidecar 0.1, 0.5 + 1 + 0.1) + 0.01
        assert_eq!(v.requests.cpu, 4110);
        assert_eq!(v.requests.memory, 256 << 20);
        assert_eq!(v.requests.get("nvidia.com/gpu"), 1);
        assert_eq!(v.requests.pods, 1);
        assert_eq!(v.host_ports.len(), 1);
        assert_eq!(v.required_node_affinity.len(), 1);
        assert_eq!(v.tolerations.len(), 1);
        assert_eq!(v.topology_spread.len(), 1);
        assert_eq!(v.pvcs, vec!["data-0"]);
        assert_eq!(v.creation_timestamp, 1_704_067_200);
    }

    #[test]
    fn nodepool_from_yaml_shape() {
        let np: karpenter_apis::nodepool::NodePool = serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": {"name": "default"},
            "spec": {
                "weight": 10,
                "limits": {"cpu": "1000", "memory": "1000Gi"},
                "template": {
                    "metadata": {"labels": {"team": "riker"}},
                    "spec": {
                        "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                        "taints": [{"key": "dedicated", "value": "riker", "effect": "NoSchedule"}],
                        "requirements": [
                            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"]},
                            {"key": "karpenter.k8s.aws/instance-cpu", "operator": "Gt", "values": ["2"]},
                            {"key": "node.kubernetes.io/instance-type", "operator": "Exists", "minValues": 5}
                        ]
                    }
                }
            }
        }))
        .unwrap();
        let v = nodepool_view(&np, vec![]).unwrap();
        assert_eq!(v.weight, 10);
        assert_eq!(v.limits.get("cpu"), Some(&1_000_000));
        assert_eq!(v.taints.len(), 1);
        assert_eq!(v.labels.get("team").map(String::as_str), Some("riker"));
        assert_eq!(
            v.requirements
                .get(labels::INSTANCE_TYPE)
                .and_then(|r| r.min_values),
            Some(5)
        );
        assert!(
            v.requirements
                .get(labels::AWS_INSTANCE_CPU)
                .is_some_and(|r| r.has("3") && !r.has("2"))
        );
        let written = nodeclaim_requirements(&v.requirements.to_specs());
        let cpu = written
            .iter()
            .find(|r| r.key == labels::AWS_INSTANCE_CPU)
            .unwrap();
        assert_eq!(cpu.operator.as_str(), "Gte");
        assert_eq!(cpu.values, vec!["3"]);
    }

    #[test]
    fn node_from_json() {
        let node: core::Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "labels": {"karpenter.sh/nodepool": "default", "topology.kubernetes.io/zone": "a"}},
            "spec": {"taints": [{"key": "karpenter.sh/unregistered", "effect": "NoExecute"}]},
            "status": {"allocatable": {"cpu": "1930m", "memory": "6903Mi", "pods": "29"},
                       "capacity": {"cpu": "2", "memory": "7577Mi", "pods": "29"}}
        }))
        .unwrap();
        let v = node_view(&node, &[]).unwrap();
        assert_eq!(v.allocatable.cpu, 1930);
        assert!(!v.initialized, "managed node without the initialized label");
        assert_eq!(
            v.effective_taints().count(),
            0,
            "ephemeral taint ignored until initialized"
        );
        let bad: core::Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n2"}, "status": {"allocatable": {"cpu": "lots"}}
        }))
        .unwrap();
        let err = node_view(&bad, &[]).unwrap_err();
        assert!(err.to_string().contains("cpu"), "{err}");
    }
}
