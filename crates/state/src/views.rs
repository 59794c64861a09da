//! Compact per-kind views: what the controllers decide on, converted once when an event
//! arrives. Whole objects are never kept for the high-volume kinds (pods, nodes, NodeClaims):
//! managed fields, most annotations, container specs, images, status noise and the like are
//! dropped at conversion.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, Pod, Taint as K8sTaint,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{CSINode, StorageClass, VolumeAttachment};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use karpenter_apis::common::{
    ConditionStatus, NodeClassReference, NodeSelectorRequirementWithMinValues,
};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_scheduling::convert::{self, ConvertError};
use karpenter_scheduling::model::{
    LabelSelector, NodeSelectorTerm, PodView, PvView, PvcView, StorageClassView, Taint,
};
use karpenter_scheduling::{Operator, RequirementSpec, Resources};

use crate::cow::Key;

/// Annotation the kubelet puts on mirror (static) pods.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// `namespace/name`.
pub fn namespaced_key(namespace: &str, name: &str) -> Key {
    Key::from(format!("{namespace}/{name}"))
}

pub(crate) fn time(t: &meta::Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

fn resources(
    object: &str,
    map: Option<&BTreeMap<String, Quantity>>,
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

fn taints(object: &str, ts: &[K8sTaint]) -> Result<Vec<Taint>, ConvertError> {
    ts.iter().map(|t| convert::taint(object, t)).collect()
}

fn annotation_true(md: &meta::ObjectMeta, key: &str) -> bool {
    md.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .is_some_and(|v| v == "true")
}

/// Converts a Kubernetes label selector.
pub fn label_selector(s: &meta::LabelSelector) -> LabelSelector {
    LabelSelector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        match_expressions: s
            .match_expressions
            .iter()
            .flatten()
            .map(|e| RequirementSpec {
                key: e.key.clone(),
                // An unknown operator never matches (Gt is meaningless in label selectors).
                operator: Operator::parse(&e.operator).unwrap_or(Operator::Gt),
                values: e.values.clone().unwrap_or_default(),
                min_values: None,
            })
            .collect(),
    }
}

// ---- Pods ----------------------------------------------------------------------------------

/// Pod lifecycle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum PodPhase {
    /// Accepted, not all containers running.
    #[default]
    Pending,
    /// Bound and running.
    Running,
    /// Terminated successfully.
    Succeeded,
    /// Terminated with a failure.
    Failed,
    /// Unknown to the API server.
    Unknown,
}

impl PodPhase {
    fn parse(s: Option<&str>) -> PodPhase {
        match s {
            Some("Running") => PodPhase::Running,
            Some("Succeeded") => PodPhase::Succeeded,
            Some("Failed") => PodPhase::Failed,
            Some("Unknown") => PodPhase::Unknown,
            _ => PodPhase::Pending,
        }
    }
}

/// The controlling owner of an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerRef {
    /// `apps/v1`, `v1`…
    pub api_version: String,
    /// `ReplicaSet`, `DaemonSet`, `Node`…
    pub kind: String,
    /// Owner name (same namespace as the pod).
    pub name: String,
}

/// What state keeps of a pod: the solver's view plus the lifecycle facts the provisioner and
/// disruption read.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    /// The solver's view (requests, labels, constraints, `node_name`).
    pub view: PodView,
    /// `status.phase`.
    pub phase: PodPhase,
    /// Controlling owner (or the first owner when none is marked controller).
    pub owner: Option<OwnerRef>,
    /// `metadata.deletionTimestamp`.
    pub deletion_timestamp: Option<DateTime<Utc>>,
    /// `PodScheduled=False` with reason `Unschedulable` (kube-scheduler gave up on it).
    pub unschedulable: bool,
    /// `status.nominatedNodeName` (the pod is preempting on that node).
    pub nominated_node_name: Option<String>,
    /// A static pod mirrored by the kubelet.
    pub mirror: bool,
    /// `karpenter.sh/do-not-disrupt: "true"`.
    pub do_not_disrupt: bool,
    /// `Ready=True`.
    pub ready: bool,
    /// When `Ready` last turned True (for `karpenter_pods_startup_duration_seconds`).
    pub ready_at: Option<DateTime<Utc>>,
    /// When `PodScheduled` turned True (for `karpenter_pods_bound_duration_seconds`).
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Summed container limits (for `karpenter_nodes_total_pod_limits`); resources without a
    /// limit count zero.
    pub limits: Resources,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// `controller.kubernetes.io/pod-deletion-cost` (0 when unset or invalid).
    pub deletion_cost: i32,
    /// Fingerprint of the `PodScheduled` condition's status, reason and message. kube-scheduler
    /// rewrites the message only when an attempt's outcome differs (new nodes, nodes filled
    /// up), so a change is upstream's cue (its pod trigger) to look at a pending pod again.
    pub scheduling_fingerprint: u64,
}

impl PodInfo {
    /// Converts a pod, keeping only what decisions need.
    pub fn from_pod(pod: &Pod) -> Result<PodInfo, ConvertError> {
        let view = convert::pod_view(pod)?;
        let md = &pod.metadata;
        let status = pod.status.as_ref();
        let owners = md.owner_references.as_deref().unwrap_or_default();
        let owner = owners
            .iter()
            .find(|o| o.controller == Some(true))
            .or_else(|| owners.first())
            .map(|o| OwnerRef {
                api_version: o.api_version.clone(),
                kind: o.kind.clone(),
                name: o.name.clone(),
            });
        let condition = |type_: &str| {
            status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        };
        let unschedulable = condition("PodScheduled")
            .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"));
        let ready = condition("Ready").is_some_and(|c| c.status == "True");
        let scheduling_fingerprint = condition("PodScheduled").map_or(0, |c| {
            // SipHash with fixed keys: the same condition gives the same value on every run.
            let mut h = std::hash::DefaultHasher::new();
            (&c.status, &c.reason, &c.message).hash(&mut h);
            h.finish()
        });
        let true_since = |type_: &str| {
            condition(type_)
                .filter(|c| c.status == "True")
                .and_then(|c| c.last_transition_time.as_ref())
                .map(time)
        };
        let mut limits = Resources::new();
        for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            if let Some(l) = c.resources.as_ref().and_then(|r| r.limits.as_ref()) {
                // A malformed limit was already rejected by the requests conversion above or
                // is irrelevant to decisions: it only drops out of the limits gauge.
                if let Ok(parsed) =
                    Resources::parse(l.iter().map(|(k, v)| (k.as_str(), v.0.as_str())))
                {
                    limits.add(&parsed);
                }
            }
        }
        let mirror = md
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION))
            || owners
                .iter()
                .any(|o| o.kind == "Node" && o.api_version == "v1");
        Ok(PodInfo {
            phase: PodPhase::parse(status.and_then(|s| s.phase.as_deref())),
            owner,
            deletion_timestamp: md.deletion_timestamp.as_ref().map(time),
            unschedulable,
            nominated_node_name: status
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty()),
            mirror,
            do_not_disrupt: annotation_true(md, labels::DO_NOT_DISRUPT),
            ready,
            ready_at: true_since("Ready"),
            scheduled_at: true_since("PodScheduled"),
            limits,
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            deletion_cost: md
                .annotations
                .as_ref()
                .and_then(|a| a.get(labels::POD_DELETION_COST))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            scheduling_fingerprint,
            view,
        })
    }

    /// `namespace/name`.
    pub fn key(&self) -> Key {
        namespaced_key(&self.view.namespace, &self.view.name)
    }

    /// The node it is bound to.
    pub fn node_name(&self) -> Option<&str> {
        self.view.node_name.as_deref().filter(|n| !n.is_empty())
    }

    /// Succeeded or Failed.
    pub fn is_terminal(&self) -> bool {
        matches!(self.phase, PodPhase::Succeeded | PodPhase::Failed)
    }

    /// Has a deletion timestamp.
    pub fn is_terminating(&self) -> bool {
        self.deletion_timestamp.is_some()
    }

    /// Owned by an `apps/v1` DaemonSet.
    pub fn is_owned_by_daemonset(&self) -> bool {
        self.owner
            .as_ref()
            .is_some_and(|o| o.kind == "DaemonSet" && o.api_version.starts_with("apps/"))
    }

    /// Owned by an `apps/v1` StatefulSet.
    pub fn is_owned_by_statefulset(&self) -> bool {
        self.owner
            .as_ref()
            .is_some_and(|o| o.kind == "StatefulSet" && o.api_version.starts_with("apps/"))
    }

    /// `namespace/name` of the owning DaemonSet.
    pub fn daemonset_key(&self) -> Option<Key> {
        self.owner
            .as_ref()
            .filter(|_| self.is_owned_by_daemonset())
            .map(|o| namespaced_key(&self.view.namespace, &o.name))
    }

    /// Upstream's provisionable filter: kube-scheduler marked it Unschedulable, it is not bound,
    /// not preempting (`nominatedNodeName`), not a DaemonSet or mirror pod, not terminal.
    pub fn is_provisionable(&self) -> bool {
        self.unschedulable
            && self.node_name().is_none()
            && self.nominated_node_name.is_none()
            && !self.is_owned_by_daemonset()
            && !self.mirror
            && !self.is_terminal()
            && !self.is_terminating()
    }

    /// Whether its requests count against the node it is bound to (bound and not terminal).
    pub fn counts_on_node(&self) -> bool {
        self.node_name().is_some() && !self.is_terminal()
    }
}

// ---- Nodes ---------------------------------------------------------------------------------

/// What state keeps of a Node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// `spec.providerID`.
    pub provider_id: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `status.capacity`.
    pub capacity: Resources,
    /// `status.allocatable`.
    pub allocatable: Resources,
    /// `Ready=True`.
    pub ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// `metadata.deletionTimestamp`.
    pub deletion_timestamp: Option<DateTime<Utc>>,
    /// `metadata.creationTimestamp`.
    pub creation_timestamp: Option<DateTime<Utc>>,
    /// `karpenter.sh/do-not-disrupt: "true"`.
    pub do_not_disrupt: bool,
}

impl NodeInfo {
    /// Converts a Node.
    pub fn from_node(node: &Node) -> Result<NodeInfo, ConvertError> {
        let md = &node.metadata;
        let name = md.name.clone().unwrap_or_default();
        let object = format!("node {name}");
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        Ok(NodeInfo {
            provider_id: spec
                .and_then(|s| s.provider_id.clone())
                .filter(|p| !p.is_empty()),
            labels: md.labels.clone().unwrap_or_default(),
            taints: taints(
                &object,
                spec.and_then(|s| s.taints.as_deref()).unwrap_or_default(),
            )?,
            capacity: resources(&object, status.and_then(|s| s.capacity.as_ref()))?,
            allocatable: resources(&object, status.and_then(|s| s.allocatable.as_ref()))?,
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True"),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            deletion_timestamp: md.deletion_timestamp.as_ref().map(time),
            creation_timestamp: md.creation_timestamp.as_ref().map(time),
            do_not_disrupt: annotation_true(md, labels::DO_NOT_DISRUPT),
            name,
        })
    }
}

// ---- NodeClaims ----------------------------------------------------------------------------

/// One status condition, without its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionInfo {
    /// Type (`Launched`, `Registered`…).
    pub type_: String,
    /// Status.
    pub status: ConditionStatus,
    /// Reason.
    pub reason: String,
    /// When the status last changed.
    pub last_transition_time: DateTime<Utc>,
}

/// What state keeps of a NodeClaim.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeClaimInfo {
    /// Name.
    pub name: String,
    /// Labels (resolved by the cloud provider once launched).
    pub labels: BTreeMap<String, String>,
    /// `karpenter.sh/do-not-disrupt: "true"`.
    pub do_not_disrupt: bool,
    /// `status.providerID`.
    pub provider_id: Option<String>,
    /// `status.nodeName`.
    pub node_name: Option<String>,
    /// `status.imageID`.
    pub image_id: Option<String>,
    /// Status conditions (messages dropped).
    pub conditions: Vec<ConditionInfo>,
    /// `spec.resources.requests`.
    pub requests: Resources,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `spec.startupTaints`.
    pub startup_taints: Vec<Taint>,
    /// `spec.requirements`.
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
    /// `spec.nodeClassRef`.
    pub node_class_ref: NodeClassReference,
    /// `spec.terminationGracePeriod` as written.
    pub termination_grace_period: Option<String>,
    /// `status.capacity`.
    pub capacity: Resources,
    /// `status.allocatable`.
    pub allocatable: Resources,
    /// `metadata.deletionTimestamp`.
    pub deletion_timestamp: Option<DateTime<Utc>>,
    /// `metadata.creationTimestamp`.
    pub creation_timestamp: Option<DateTime<Utc>>,
}

impl NodeClaimInfo {
    /// Converts a NodeClaim.
    pub fn from_nodeclaim(nc: &NodeClaim) -> Result<NodeClaimInfo, ConvertError> {
        let md = &nc.metadata;
        let name = md.name.clone().unwrap_or_default();
        let object = format!("nodeclaim {name}");
        let status = nc.status.as_ref();
        Ok(NodeClaimInfo {
            labels: md.labels.clone().unwrap_or_default(),
            do_not_disrupt: annotation_true(md, labels::DO_NOT_DISRUPT),
            provider_id: status
                .and_then(|s| s.provider_id.clone())
                .filter(|p| !p.is_empty()),
            node_name: status
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            image_id: status.and_then(|s| s.image_id.clone()),
            conditions: status
                .map(|s| {
                    s.conditions
                        .iter()
                        .map(|c| ConditionInfo {
                            type_: c.type_.clone(),
                            status: c.status,
                            reason: c.reason.clone(),
                            last_transition_time: time(&c.last_transition_time),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            requests: resources(&object, Some(&nc.spec.resources.requests))?,
            taints: taints(&object, &nc.spec.taints)?,
            startup_taints: taints(&object, &nc.spec.startup_taints)?,
            requirements: nc.spec.requirements.clone(),
            node_class_ref: nc.spec.node_class_ref.clone(),
            termination_grace_period: nc
                .spec
                .termination_grace_period
                .as_ref()
                .map(|d| d.to_string()),
            capacity: resources(&object, status.map(|s| &s.capacity))?,
            allocatable: resources(&object, status.map(|s| &s.allocatable))?,
            deletion_timestamp: md.deletion_timestamp.as_ref().map(time),
            creation_timestamp: md.creation_timestamp.as_ref().map(time),
            name,
        })
    }

    /// The `karpenter.sh/nodepool` label.
    pub fn nodepool(&self) -> Option<&str> {
        self.labels.get(labels::NODEPOOL).map(String::as_str)
    }

    /// The condition of this type.
    pub fn condition(&self, type_: &str) -> Option<&ConditionInfo> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of this type is True.
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_)
            .is_some_and(|c| c.status == ConditionStatus::True)
    }
}

// ---- DaemonSets, PDBs, volumes -------------------------------------------------------------

/// What state keeps of a DaemonSet: the pod its template describes.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSetInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The template as a pod view (owner kind `DaemonSet`).
    pub template: PodView,
}

impl DaemonSetInfo {
    /// Converts a DaemonSet's pod template.
    pub fn from_daemonset(ds: &DaemonSet) -> Result<DaemonSetInfo, ConvertError> {
        let namespace = ds
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let name = ds.metadata.name.clone().unwrap_or_default();
        let template = ds.spec.as_ref().map(|s| &s.template);
        let pod = Pod {
            metadata: meta::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                uid: ds.metadata.uid.clone(),
                labels: template.and_then(|t| t.metadata.as_ref()?.labels.clone()),
                ..Default::default()
            },
            spec: template.and_then(|t| t.spec.clone()),
            status: None,
        };
        let mut view = convert::pod_view(&pod)?;
        view.owner_kind = Some("DaemonSet".to_string());
        Ok(DaemonSetInfo {
            namespace,
            name,
            template: view,
        })
    }
}

/// What state keeps of a PodDisruptionBudget.
#[derive(Debug, Clone, PartialEq)]
pub struct PdbInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.selector`; `None` selects no pod.
    pub selector: Option<LabelSelector>,
    /// `spec.maxUnavailable` as written (`"0"`, `"10%"`).
    pub max_unavailable: Option<String>,
    /// `spec.minAvailable` as written.
    pub min_available: Option<String>,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i32,
    /// `spec.unhealthyPodEvictionPolicy: AlwaysAllow`.
    pub always_allow_unhealthy: bool,
}

fn int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

impl PdbInfo {
    /// Converts a PodDisruptionBudget.
    pub fn from_pdb(pdb: &PodDisruptionBudget) -> PdbInfo {
        let spec = pdb.spec.as_ref();
        PdbInfo {
            namespace: pdb
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            name: pdb.metadata.name.clone().unwrap_or_default(),
            selector: spec.and_then(|s| s.selector.as_ref()).map(label_selector),
            max_unavailable: spec
                .and_then(|s| s.max_unavailable.as_ref())
                .map(int_or_string),
            min_available: spec
                .and_then(|s| s.min_available.as_ref())
                .map(int_or_string),
            disruptions_allowed: pdb.status.as_ref().map_or(0, |s| s.disruptions_allowed),
            always_allow_unhealthy: spec.and_then(|s| s.unhealthy_pod_eviction_policy.as_deref())
                == Some("AlwaysAllow"),
        }
    }

    /// Whether it selects `pod`.
    pub fn selects(&self, pod: &PodView) -> bool {
        pod.namespace == self.namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(&pod.labels))
    }

    /// No eviction can ever pass: `maxUnavailable: 0`/`"0%"` or `minAvailable: "100%"`.
    pub fn fully_blocking(&self) -> bool {
        matches!(self.max_unavailable.as_deref(), Some("0" | "0%"))
            || self.min_available.as_deref() == Some("100%")
    }
}

fn node_selector_terms(
    object: &str,
    terms: &[k8s_openapi::api::core::v1::NodeSelectorTerm],
) -> Result<Vec<NodeSelectorTerm>, ConvertError> {
    terms
        .iter()
        .map(|t| {
            t.match_expressions
                .iter()
                .flatten()
                .map(|e| {
                    Ok(RequirementSpec {
                        key: e.key.clone(),
                        operator: Operator::parse(&e.operator).ok_or_else(|| {
                            ConvertError::Unsupported {
                                object: object.to_string(),
                                field: "nodeAffinity.required.nodeSelectorTerms.operator",
                                value: e.operator.clone(),
                            }
                        })?,
                        values: e.values.clone().unwrap_or_default(),
                        min_values: None,
                    })
                })
                .collect()
        })
        .collect()
}

/// Converts a PersistentVolumeClaim.
pub fn pvc_view(pvc: &PersistentVolumeClaim) -> PvcView {
    let spec = pvc.spec.as_ref();
    PvcView {
        storage_class: spec
            .and_then(|s| s.storage_class_name.clone())
            .filter(|s| !s.is_empty()),
        volume_name: spec
            .and_then(|s| s.volume_name.clone())
            .filter(|s| !s.is_empty()),
    }
}

/// Converts a PersistentVolume.
pub fn pv_view(pv: &PersistentVolume) -> Result<PvView, ConvertError> {
    let object = format!(
        "persistentvolume {}",
        pv.metadata.name.as_deref().unwrap_or("")
    );
    let spec = pv.spec.as_ref();
    Ok(PvView {
        node_affinity: node_selector_terms(
            &object,
            spec.and_then(|s| s.node_affinity.as_ref())
                .and_then(|a| a.required.as_ref())
                .map(|r| r.node_selector_terms.as_slice())
                .unwrap_or_default(),
        )?,
        csi_driver: spec.and_then(|s| s.csi.as_ref()).map(|c| c.driver.clone()),
        local: spec.is_some_and(|s| s.local.is_some() || s.host_path.is_some()),
    })
}

/// Converts a StorageClass.
pub fn storage_class_view(sc: &StorageClass) -> StorageClassView {
    StorageClassView {
        provisioner: sc.provisioner.clone(),
        wait_for_first_consumer: sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"),
        allowed_topologies: sc
            .allowed_topologies
            .iter()
            .flatten()
            .map(|t| {
                t.match_label_expressions
                    .iter()
                    .flatten()
                    .map(|e| RequirementSpec {
                        key: e.key.clone(),
                        operator: Operator::In,
                        values: e.values.clone(),
                        min_values: None,
                    })
                    .collect()
            })
            .collect(),
    }
}

/// Attachable volume count per CSI driver of a CSINode.
pub fn csinode_limits(csinode: &CSINode) -> BTreeMap<String, i64> {
    csinode
        .spec
        .drivers
        .iter()
        .filter_map(|d| {
            let count = d.allocatable.as_ref()?.count?;
            Some((d.name.clone(), i64::from(count)))
        })
        .collect()
}

/// What state keeps of a VolumeAttachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeAttachmentInfo {
    /// Name.
    pub name: String,
    /// Node the volume is attached to.
    pub node_name: String,
    /// `spec.source.persistentVolumeName`.
    pub persistent_volume: Option<String>,
    /// CSI driver doing the attach.
    pub attacher: String,
    /// `status.attached`.
    pub attached: bool,
}

impl VolumeAttachmentInfo {
    /// Converts a VolumeAttachment.
    pub fn from_volume_attachment(va: &VolumeAttachment) -> VolumeAttachmentInfo {
        VolumeAttachmentInfo {
            name: va.metadata.name.clone().unwrap_or_default(),
            node_name: va.spec.node_name.clone(),
            persistent_volume: va.spec.source.persistent_volume_name.clone(),
            attacher: va.spec.attacher.clone(),
            attached: va.status.as_ref().is_some_and(|s| s.attached),
        }
    }
}

/// Drops what no decision reads from an object kept whole (NodePools, EC2NodeClasses).
pub(crate) fn strip_metadata(md: &mut meta::ObjectMeta) {
    md.managed_fields = None;
    if let Some(a) = md.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}
