//! `karpenter.sh/v1` NodeClaim: Karpenter's request for one node, and what it became.

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

use crate::common::{
    Condition, NodeClassReference, NodeSelectorRequirementWithMinValues, ResourceList,
    custom_resource, is_empty_map,
};
use crate::duration::{Duration, NillableDuration};

/// A NodeClaim: the constraints for one node, the instance launched for it and its lifecycle
/// conditions. The spec is immutable once created.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeClaim {
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// Desired state (immutable).
    pub spec: NodeClaimSpec,
    /// Observed state; absent until a controller writes it.
    pub status: Option<NodeClaimStatus>,
}

custom_resource!(
    NodeClaim, "NodeClaimList", "karpenter.sh", "nodeclaims",
    spec: NodeClaimSpec, status: NodeClaimStatus,
    missing_spec: return Err(serde::de::Error::missing_field("spec"))
);

/// `spec` of a NodeClaim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimSpec {
    /// Taints put on the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Taints present at startup that something else removes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
    /// Requirements the launched instance must satisfy.
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
    /// Resources the node must offer (scheduled pods' requests plus daemon overhead).
    #[serde(default, skip_serializing_if = "ResourceRequirements::is_empty")]
    pub resources: ResourceRequirements,
    /// The provider node class.
    pub node_class_ref: NodeClassReference,
    /// Longest the node may take to drain once deletion starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period: Option<Duration>,
    /// Node lifetime before forceful replacement; `Never` disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after: Option<NillableDuration>,
}

/// Resource requirements of a NodeClaim (requests only; upstream has no limits here).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ResourceRequirements {
    /// Minimum resources the node must offer.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub requests: ResourceList,
}

impl ResourceRequirements {
    /// Whether no requests are set.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

/// `status` of a NodeClaim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimStatus {
    /// Name of the Node that registered for this claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Cloud provider ID of the instance (`aws:///<zone>/<instance-id>`).
    #[serde(
        default,
        rename = "providerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<String>,
    /// Image the instance was launched from.
    #[serde(default, rename = "imageID", skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Capacity the instance type offers.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub capacity: ResourceList,
    /// Capacity minus expected overhead.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub allocatable: ResourceList,
    /// Lifecycle conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Last time a pod was bound to, or left, this node (drives `consolidateAfter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pod_event_time: Option<Time>,
}
