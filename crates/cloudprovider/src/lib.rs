//! The boundary between Karpenter's core and a cloud: the [`CloudProvider`] trait, the typed
//! errors the core matches on ([`CloudProviderError`], with upstream's metric categories), the
//! metrics decorator ([`MetricsCloudProvider`]) and the injected [`Clock`].
//!
//! Owns: what a provider must answer (launch, terminate, look up, list, instance types, drift,
//! repair policies) and how failures are classified. Implementations live elsewhere: the AWS
//! provider in `karpenter-aws`, the simulated EC2 in `karpenter-sim` (the one fake every test
//! uses).
//!
//! The [`Clock`] lives here because this is the first I/O crate that needs time; later crates
//! (state, controllers) reuse it rather than define their own.
//!
//! Must never depend on: kube's client or runtime, aws-sdk-*, a tokio runtime, or a global
//! metrics registry. The instance-type model is `karpenter-scheduling`'s, re-exported so
//! implementations need not depend on the solver crate directly.

pub mod clock;
pub mod convert;
pub mod error;
pub mod metrics;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::NodePool;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use convert::{node_claim_requirements, parse_resource_list, resource_list};
pub use error::{CloudProviderError, OfferingKey, Result};
pub use karpenter_scheduling::model::allocatable;
pub use karpenter_scheduling::quantity::QuantityError;
pub use karpenter_scheduling::requirements::RequirementError;
pub use karpenter_scheduling::{
    InstanceType, Offering, Operator, Overhead, Requirement, RequirementSpec, Requirements,
    Resources,
};
pub use metrics::{CloudProviderMetrics, MetricsCloudProvider};

/// The provider calls the metrics decorator times and counts, spelled as upstream's `method`
/// label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// [`CloudProvider::create`].
    Create,
    /// [`CloudProvider::delete`].
    Delete,
    /// [`CloudProvider::get`].
    Get,
    /// [`CloudProvider::list`].
    List,
    /// [`CloudProvider::get_instance_types`].
    GetInstanceTypes,
    /// [`CloudProvider::is_drifted`].
    IsDrifted,
}

impl Method {
    /// Every method, in declaration order.
    pub const ALL: [Method; 6] = [
        Method::Create,
        Method::Delete,
        Method::Get,
        Method::List,
        Method::GetInstanceTypes,
        Method::IsDrifted,
    ];

    /// The `method` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Create => "Create",
            Method::Delete => "Delete",
            Method::Get => "Get",
            Method::List => "List",
            Method::GetInstanceTypes => "GetInstanceTypes",
            Method::IsDrifted => "IsDrifted",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a provider considers a launched NodeClaim drifted; becomes the reason of the NodeClaim's
/// `Drifted` condition (e.g. `AMIDrift`, `SubnetDrift`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DriftReason(pub String);

impl DriftReason {
    /// The reason string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DriftReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Node condition that, held for long enough, makes the node unhealthy enough to replace
/// (used by NodeRepair).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepairPolicy {
    /// Node condition type, e.g. `Ready`.
    pub condition_type: String,
    /// The unhealthy status: `True`, `False` or `Unknown`.
    pub condition_status: String,
    /// How long the condition may hold before the node is repaired.
    pub toleration_duration: Duration,
}

impl RepairPolicy {
    /// A policy for `condition_type` in `condition_status` tolerated for `toleration_duration`.
    pub fn new(
        condition_type: &str,
        condition_status: &str,
        toleration_duration: Duration,
    ) -> Self {
        RepairPolicy {
            condition_type: condition_type.to_string(),
            condition_status: condition_status.to_string(),
            toleration_duration,
        }
    }
}

/// A NodeClass kind a provider understands (group/version/kind of the CRD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeClassKind {
    /// API group, e.g. `karpenter.k8s.aws`.
    pub group: &'static str,
    /// API version, e.g. `v1`.
    pub version: &'static str,
    /// Kind, e.g. `EC2NodeClass`.
    pub kind: &'static str,
}

impl NodeClassKind {
    /// `karpenter.k8s.aws/v1 EC2NodeClass`.
    pub const EC2_NODE_CLASS: NodeClassKind = NodeClassKind {
        group: karpenter_apis::labels::AWS_GROUP,
        version: "v1",
        kind: "EC2NodeClass",
    };
}

/// What the core asks of a cloud. Implementations must be safe to call concurrently.
///
/// Contract (as upstream's): `create` launches one instance for the NodeClaim and returns the
/// NodeClaim with resolved labels, `status.providerID`, `status.imageID`, `status.capacity` and
/// `status.allocatable`; `delete` starts termination and keeps answering `Ok` until the instance
/// is gone, then [`CloudProviderError::NodeClaimNotFound`] (callers retry until they see it);
/// `get_instance_types` returns every type, including those without an available offering.
#[async_trait]
pub trait CloudProvider: Send + Sync {
    /// Launches an instance for `node_claim`.
    async fn create(&self, node_claim: &NodeClaim) -> Result<NodeClaim>;

    /// Terminates the instance behind `node_claim` (found by `status.providerID`).
    async fn delete(&self, node_claim: &NodeClaim) -> Result<()>;

    /// The NodeClaim view of the instance with this provider ID.
    async fn get(&self, provider_id: &str) -> Result<NodeClaim>;

    /// NodeClaim views of every instance this cluster owns (also finds leaked instances).
    async fn list(&self) -> Result<Vec<NodeClaim>>;

    /// Every instance type the NodePool could use, with offerings marked (un)available.
    async fn get_instance_types(&self, node_pool: &NodePool) -> Result<Arc<[InstanceType]>>;

    /// Why the NodeClaim's instance no longer matches its NodeClass, if it does not.
    async fn is_drifted(&self, node_claim: &NodeClaim) -> Result<Option<DriftReason>>;

    /// Node conditions that make a node eligible for repair.
    fn repair_policies(&self) -> Vec<RepairPolicy>;

    /// The provider's name (the `provider` metric label).
    fn name(&self) -> &'static str;

    /// NodeClass kinds this provider understands; the first is the default.
    fn supported_node_classes(&self) -> Vec<NodeClassKind>;
}

/// Shared providers are providers: lets one instance sit behind several decorators
/// (one [`MetricsCloudProvider`] per calling controller).
#[async_trait]
impl<P: CloudProvider + ?Sized> CloudProvider for Arc<P> {
    async fn create(&self, node_claim: &NodeClaim) -> Result<NodeClaim> {
        (**self).create(node_claim).await
    }

    async fn delete(&self, node_claim: &NodeClaim) -> Result<()> {
        (**self).delete(node_claim).await
    }

    async fn get(&self, provider_id: &str) -> Result<NodeClaim> {
        (**self).get(provider_id).await
    }

    async fn list(&self) -> Result<Vec<NodeClaim>> {
        (**self).list().await
    }

    async fn get_instance_types(&self, node_pool: &NodePool) -> Result<Arc<[InstanceType]>> {
        (**self).get_instance_types(node_pool).await
    }

    async fn is_drifted(&self, node_claim: &NodeClaim) -> Result<Option<DriftReason>> {
        (**self).is_drifted(node_claim).await
    }

    fn repair_policies(&self) -> Vec<RepairPolicy> {
        (**self).repair_policies()
    }

    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn supported_node_classes(&self) -> Vec<NodeClassKind> {
        (**self).supported_node_classes()
    }
}
