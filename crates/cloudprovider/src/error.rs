//! The errors a cloud provider returns, classified the way the core reacts to them.

use std::fmt;

/// `Result` with [`CloudProviderError`].
pub type Result<T, E = CloudProviderError> = std::result::Result<T, E>;

/// One place an instance can be bought: instance type × zone × capacity type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OfferingKey {
    /// Instance type name, e.g. `m5.large`.
    pub instance_type: String,
    /// Zone name, e.g. `us-west-2a`.
    pub zone: String,
    /// `on-demand`, `spot` or `reserved`.
    pub capacity_type: String,
}

impl OfferingKey {
    /// The key for `instance_type` in `zone` bought as `capacity_type`.
    pub fn new(instance_type: &str, zone: &str, capacity_type: &str) -> Self {
        OfferingKey {
            instance_type: instance_type.to_string(),
            zone: zone.to_string(),
            capacity_type: capacity_type.to_string(),
        }
    }
}

impl fmt::Display for OfferingKey {
    /// Upstream's unavailable-offerings cache key order: `<capacityType>:<instanceType>:<zone>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.capacity_type, self.instance_type, self.zone
        )
    }
}

/// Why a cloud-provider call failed. The core matches on the variant (never on the message):
/// an insufficient-capacity or node-class-not-ready launch deletes the NodeClaim so its pods are
/// scheduled again; not-found ends termination and garbage collection; a create error becomes
/// the reason of the NodeClaim's `Launched` condition.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CloudProviderError {
    /// The instance behind the NodeClaim (or provider ID) does not exist (any more).
    #[error("nodeclaim not found: {message}")]
    NodeClaimNotFound {
        /// What was looked for.
        message: String,
    },
    /// No compatible offering could be launched.
    #[error("insufficient capacity: {message}")]
    InsufficientCapacity {
        /// What happened.
        message: String,
        /// The offerings that were tried (empty when none was even eligible).
        offerings: Vec<OfferingKey>,
    },
    /// The NodeClaim's NodeClass cannot be launched from yet.
    #[error("nodeclass not ready: {message}")]
    NodeClassNotReady {
        /// Why.
        message: String,
    },
    /// The launch failed for a reason worth surfacing on the NodeClaim's `Launched` condition.
    #[error("creating instance: {condition_reason}: {condition_message}")]
    Create {
        /// CamelCase reason, e.g. `LaunchTemplateNotFound`.
        condition_reason: String,
        /// Human-readable detail.
        condition_message: String,
    },
    /// The provider cannot yet compute instance types for this NodePool (e.g. its NodeClass
    /// has not been resolved); the caller should skip the NodePool for now.
    #[error("nodepool {node_pool} has not been evaluated yet")]
    UnevaluatedNodePool {
        /// The NodePool.
        node_pool: String,
    },
    /// Anything else (API failures, bad input).
    #[error("{message}")]
    Other {
        /// What went wrong.
        message: String,
    },
}

impl CloudProviderError {
    /// The `error` label of `karpenter_cloudprovider_errors_total`, exactly as upstream: one
    /// value per error kind the core reacts to, empty for everything else.
    pub fn category(&self) -> &'static str {
        match self {
            CloudProviderError::InsufficientCapacity { .. } => "InsufficientCapacityError",
            CloudProviderError::NodeClaimNotFound { .. } => "NodeClaimNotFoundError",
            CloudProviderError::NodeClassNotReady { .. } => "NodeClassNotReadyError",
            CloudProviderError::Create { .. }
            | CloudProviderError::UnevaluatedNodePool { .. }
            | CloudProviderError::Other { .. } => "",
        }
    }

    /// A not-found error.
    pub fn not_found(message: impl Into<String>) -> Self {
        CloudProviderError::NodeClaimNotFound {
            message: message.into(),
        }
    }

    /// An insufficient-capacity error naming the offerings tried.
    pub fn insufficient_capacity(message: impl Into<String>, offerings: Vec<OfferingKey>) -> Self {
        CloudProviderError::InsufficientCapacity {
            message: message.into(),
            offerings,
        }
    }

    /// Any other error.
    pub fn other(message: impl Into<String>) -> Self {
        CloudProviderError::Other {
            message: message.into(),
        }
    }

    /// Whether this is [`CloudProviderError::NodeClaimNotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, CloudProviderError::NodeClaimNotFound { .. })
    }

    /// Whether this is [`CloudProviderError::InsufficientCapacity`].
    pub fn is_insufficient_capacity(&self) -> bool {
        matches!(self, CloudProviderError::InsufficientCapacity { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: CloudProviderError, category: &str) {
        assert_eq!(error.category(), category, "{error:?}");
    }

    #[test]
    fn categories_are_upstreams_error_label_values() {
        let table = [
            (
                CloudProviderError::insufficient_capacity(
                    "all offerings exhausted",
                    vec![OfferingKey::new("m5.large", "us-west-2a", "spot")],
                ),
                "InsufficientCapacityError",
            ),
            (
                CloudProviderError::not_found("i-0123"),
                "NodeClaimNotFoundError",
            ),
            (
                CloudProviderError::NodeClassNotReady {
                    message: "AMIs not resolved".into(),
                },
                "NodeClassNotReadyError",
            ),
            (
                CloudProviderError::Create {
                    condition_reason: "LaunchTemplateNotFound".into(),
                    condition_message: "gone".into(),
                },
                "",
            ),
            (
                CloudProviderError::UnevaluatedNodePool {
                    node_pool: "default".into(),
                },
                "",
            ),
            (CloudProviderError::other("throttled"), ""),
        ];
        for (error, category) in table {
            check(error, category);
        }
    }

    #[test]
    fn offering_key_displays_like_the_unavailable_offerings_cache_key() {
        assert_eq!(
            OfferingKey::new("m5.large", "us-west-2a", "spot").to_string(),
            "spot:m5.large:us-west-2a"
        );
    }

    #[test]
    fn messages_name_what_failed() {
        let e = CloudProviderError::Create {
            condition_reason: "InvalidAMIID".into(),
            condition_message: "ami-1 does not exist".into(),
        };
        assert_eq!(
            e.to_string(),
            "creating instance: InvalidAMIID: ami-1 does not exist"
        );
        assert!(CloudProviderError::not_found("x").is_not_found());
        assert!(!CloudProviderError::other("x").is_not_found());
        assert!(CloudProviderError::insufficient_capacity("x", vec![]).is_insufficient_capacity());
    }
}
