//! Karpenter's controllers and the operator-level pieces every controller shares.
//!
//! Owns: the one [`metrics::Metrics`] registry of every upstream metric we emit (names, types,
//! labels and buckets exactly as upstream so its dashboards work), [`leader`] election on a
//! `coordination.k8s.io/v1` Lease that controllers gate on, and the Kubernetes client's
//! [`ratelimit`] (QPS/burst), the reconcilers (provisioning, NodePool, NodeClaim, termination)
//! and the [`operator`] that runs them all while this replica leads.
//!
//! Must never depend on: aws-sdk-* (the AWS provider sits behind the `CloudProvider` trait), the
//! simulator (only as a test fixture), or a global metrics registry.

pub mod context;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod nodeclaim;
pub mod nodepool;
pub mod observability;
pub mod operator;
pub mod provisioning;
pub mod ratelimit;
pub mod status;
pub mod termination;
