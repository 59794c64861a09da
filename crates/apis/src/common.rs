//! Types shared by NodePool, NodeClaim and EC2NodeClass: requirements, node class references,
//! status conditions, resource lists, and the plumbing that makes each kind a Kubernetes
//! resource (apiVersion/kind on the wire, `k8s_openapi::Resource` so kube works with it).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};

/// Resource name → quantity, as in `corev1.ResourceList`. Ordered so output is deterministic.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Operator of a node selector requirement (Kubernetes' six plus Karpenter's `Gte`/`Lte`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeSelectorOperator {
    /// Label value is one of `values`.
    In,
    /// Label value is none of `values` (or the label is absent).
    NotIn,
    /// Label is present.
    Exists,
    /// Label is absent.
    DoesNotExist,
    /// Label value, as an integer, is greater than the single value.
    Gt,
    /// Label value, as an integer, is less than the single value.
    Lt,
    /// Label value, as an integer, is greater than or equal to the single value.
    Gte,
    /// Label value, as an integer, is less than or equal to the single value.
    Lte,
}

impl NodeSelectorOperator {
    /// Every operator, in the order the CRD's enum lists them.
    pub const ALL: [Self; 8] = [
        Self::In,
        Self::NotIn,
        Self::Exists,
        Self::DoesNotExist,
        Self::Gt,
        Self::Lt,
        Self::Gte,
        Self::Lte,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "In",
            Self::NotIn => "NotIn",
            Self::Exists => "Exists",
            Self::DoesNotExist => "DoesNotExist",
            Self::Gt => "Gt",
            Self::Lt => "Lt",
            Self::Gte => "Gte",
            Self::Lte => "Lte",
        }
    }
}

impl fmt::Display for NodeSelectorOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node selector requirement with an optional minimum number of distinct values
/// (upstream `NodeSelectorRequirementWithMinValues`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorRequirementWithMinValues {
    /// Label key.
    pub key: String,
    /// How the key relates to the values.
    pub operator: NodeSelectorOperator,
    /// Values; empty for `Exists`/`DoesNotExist`, one integer for `Gt`/`Lt`/`Gte`/`Lte`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Minimum number of distinct values scheduling must keep available (alpha upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_values: Option<u32>,
}

impl NodeSelectorRequirementWithMinValues {
    /// A requirement without minValues.
    pub fn new(
        key: impl Into<String>,
        operator: NodeSelectorOperator,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            key: key.into(),
            operator,
            values: values.into_iter().map(Into::into).collect(),
            min_values: None,
        }
    }
}

/// Reference from a NodePool/NodeClaim to its provider node class (e.g. an EC2NodeClass).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct NodeClassReference {
    /// API group of the node class, e.g. `karpenter.k8s.aws`.
    pub group: String,
    /// Kind of the node class, e.g. `EC2NodeClass`.
    pub kind: String,
    /// Name of the node class.
    pub name: String,
}

impl NodeClassReference {
    /// A reference to the named EC2NodeClass.
    pub fn ec2_node_class(name: impl Into<String>) -> Self {
        Self {
            group: crate::labels::AWS_GROUP.to_string(),
            kind: "EC2NodeClass".to_string(),
            name: name.into(),
        }
    }

    /// The label key Karpenter puts on NodeClaims/Nodes for this class: `<group>/<lowercase kind>`.
    pub fn label_key(&self) -> String {
        format!("{}/{}", self.group, self.kind.to_lowercase())
    }
}

/// Status of a condition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    Unknown,
}

impl ConditionStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status condition as operatorpkg writes it. `reason` and `message` are always serialized
/// (upstream has no `omitempty` on them and NodePool's CRD requires both).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed.
    pub last_transition_time: Time,
    /// CamelCase machine-readable reason.
    #[serde(default)]
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
}

/// Whether a map/list is empty; for `skip_serializing_if`.
pub(crate) fn is_empty_map<K, V>(map: &BTreeMap<K, V>) -> bool {
    map.is_empty()
}

/// Implements the Kubernetes plumbing for a cluster-scoped custom resource struct with
/// `metadata`, `spec` and `status: Option<_>` fields: `apiVersion`/`kind` on the wire,
/// `k8s_openapi::Resource`/`Metadata` (which gives `kube::Resource`), and `new`.
macro_rules! custom_resource {
    (
        $kind:ident, $list_kind:literal, $group:expr, $plural:literal,
        spec: $spec:ty, status: $status:ty, missing_spec: $missing_spec:expr
    ) => {
        impl $kind {
            /// A new object with the given name and spec and no status.
            pub fn new(name: &str, spec: $spec) -> Self {
                Self {
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        name: Some(name.to_string()),
                        ..Default::default()
                    },
                    spec,
                    status: None,
                }
            }
        }

        impl k8s_openapi::Resource for $kind {
            const API_VERSION: &'static str = concat!($group, "/v1");
            const GROUP: &'static str = $group;
            const KIND: &'static str = stringify!($kind);
            const VERSION: &'static str = "v1";
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = k8s_openapi::ClusterResourceScope;
        }

        impl k8s_openapi::ListableResource for $kind {
            const LIST_KIND: &'static str = $list_kind;
        }

        impl k8s_openapi::Metadata for $kind {
            type Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
            fn metadata(&self) -> &Self::Ty {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut Self::Ty {
                &mut self.metadata
            }
        }

        impl serde::Serialize for $kind {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                #[derive(serde::Serialize)]
                #[serde(rename_all = "camelCase")]
                struct Wire<'a> {
                    api_version: &'static str,
                    kind: &'static str,
                    metadata: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
                    spec: &'a $spec,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    status: &'a Option<$status>,
                }
                Wire {
                    api_version: <Self as k8s_openapi::Resource>::API_VERSION,
                    kind: <Self as k8s_openapi::Resource>::KIND,
                    metadata: &self.metadata,
                    spec: &self.spec,
                    status: &self.status,
                }
                .serialize(serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $kind {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                #[derive(serde::Deserialize)]
                struct Wire {
                    #[serde(default)]
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
                    #[serde(default)]
                    spec: Option<$spec>,
                    #[serde(default)]
                    status: Option<$status>,
                }
                let wire = Wire::deserialize(deserializer)?;
                let spec = match wire.spec {
                    Some(spec) => spec,
                    None => $missing_spec,
                };
                Ok(Self {
                    metadata: wire.metadata,
                    spec,
                    status: wire.status,
                })
            }
        }
    };
}

pub(crate) use custom_resource;
