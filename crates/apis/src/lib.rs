//! Karpenter's API surface, exactly as upstream speaks it.
//!
//! Owns: the `karpenter.sh/v1` NodePool and NodeClaim types, the `karpenter.k8s.aws/v1`
//! EC2NodeClass type, the well-known labels, annotations, taints and finalizers, the drift
//! hashes, CRD generation and the validation engine (structural defaulting, OpenAPI v3 schema
//! and CEL rules) that the embedded API server applies to custom resources.
//!
//! Must never depend on: tokio, kube's client or runtime, aws-sdk-*, prometheus, the clock,
//! the environment or the filesystem. Everything here is data and pure functions.

pub mod common;
pub mod conditions;
pub mod crd;
pub mod duration;
pub mod ec2nodeclass;
pub mod hash;
pub mod labels;
pub mod nodeclaim;
pub mod nodepool;
pub mod validation;
