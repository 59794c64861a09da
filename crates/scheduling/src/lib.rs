//! The pure scheduling core of karpenter-rs.
//!
//! Owns: Kubernetes quantities and resource arithmetic, the node-requirements algebra, the
//! instance-type / offering / NodePool / node / pod views, taints and tolerations, topology
//! (spread, pod affinity and anti-affinity), volume topology and attach limits, DaemonSet
//! overhead, and the bin-packing solver that turns an owned snapshot into new NodeClaims,
//! placements on existing nodes and structured reasons for every pod left out. Also an
//! independent checker of solutions.
//!
//! Must never depend on: tokio, kube's client or runtime, aws-sdk-*, prometheus, the clock,
//! the environment, the filesystem or logging. Decisions are returned as data.

pub mod checker;
pub mod convert;
pub mod cover;
pub mod lp;
pub mod model;
pub mod quantity;
pub mod requirements;
pub mod resources;
pub mod results;
pub mod solver;
pub mod topology;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

pub use model::{
    HostPort, InstanceType, LabelSelector, NodeClassRef, NodePoolView, NodeView, Offering,
    Overhead, PodAffinityTerm, PodView, Taint, TaintEffect, Toleration, TopologySpreadConstraint,
};
pub use requirements::{Operator, Requirement, RequirementSpec, Requirements};
pub use resources::Resources;
pub use results::{NewNodeClaim, PodError, Rejection, SchedulingResults};
pub use solver::{
    MinValuesPolicy, PreferencePolicy, PreparedNodePools, SchedulingInput, SolveOptions, solve,
    solve_prepared, solve_until,
};
