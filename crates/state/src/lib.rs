//! Cluster state for the controllers: a cache fed by watch events that keeps compact views of
//! pods, nodes, NodeClaims, NodePools, DaemonSets, PDBs, volumes, namespaces and EC2NodeClasses;
//! state nodes (Node and/or NodeClaim joined by provider ID) with marks and nominations; the
//! synced gate; and immutable, cheaply taken snapshots from which the provisioner and
//! disruption build the solver's input.
//!
//! Owns: turning API objects into decision-ready views, the incremental indexes (pods per node,
//! requested resources, provisionable pods, DaemonSet pods), upstream's rules for what an
//! uninitialized or in-flight node offers, the provisioning times of pending pods, and the
//! values of the `karpenter_cluster_state_*` gauges (their families are defined by the
//! operator's registry, which hands this crate the handles).
//!
//! Must never depend on: the controllers, the cloud provider implementations (only the
//! `Clock` from `karpenter-cloudprovider`), aws-sdk-*, or a global metrics registry. It never
//! writes to the API server.

mod cow;
pub mod informer;
pub mod metrics;
pub mod snapshot;
pub mod state;
pub mod views;

pub use cow::Key;
pub use informer::Informers;
pub use metrics::StateMetrics;
pub use snapshot::{InputOptions, Snapshot, StateNode};
pub use state::{ClusterState, Kind, NodeUsage, PodSchedulingTimes, StateConfig, Tracked};
pub use views::{
    ConditionInfo, DaemonSetInfo, NodeClaimInfo, NodeInfo, OwnerRef, PdbInfo, PodInfo, PodPhase,
    VolumeAttachmentInfo,
};

#[cfg(test)]
mod tests;
