//! `karpenter.sh/v1` NodePool: a template for NodeClaims plus disruption rules and limits.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::common::{
    Condition, NodeClassReference, NodeSelectorRequirementWithMinValues, ResourceList,
    custom_resource, is_empty_map,
};
use crate::duration::{Duration, NillableDuration};

/// Default `spec.template.spec.expireAfter` (30 days).
pub const DEFAULT_EXPIRE_AFTER: &str = "720h";
/// Default `spec.disruption.consolidateAfter` (upstream main; v1.0–v1.14 required it).
pub const DEFAULT_CONSOLIDATE_AFTER: &str = "0s";
/// Default budget `nodes` value.
pub const DEFAULT_BUDGET_NODES: &str = "10%";

/// A NodePool: constraints and a template for the NodeClaims Karpenter launches for pending
/// pods, plus how those nodes may be disrupted.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePool {
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: NodePoolSpec,
    /// Observed state; absent until a controller writes it.
    pub status: Option<NodePoolStatus>,
}

custom_resource!(
    NodePool, "NodePoolList", "karpenter.sh", "nodepools",
    spec: NodePoolSpec, status: NodePoolStatus,
    missing_spec: return Err(serde::de::Error::missing_field("spec"))
);

/// `spec` of a NodePool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    /// Template every NodeClaim of this pool starts from.
    pub template: NodeClaimTemplate,
    /// Disruption settings; the API server defaults an absent value to `{consolidateAfter: 0s}`.
    #[serde(default, skip_serializing_if = "Disruption::is_unset")]
    pub disruption: Disruption,
    /// Upper bounds on the summed capacity of the pool's nodes (any resource, incl. `nodes`).
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub limits: ResourceList,
    /// Priority among pools; higher first, absent ≡ 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Fixed node count for a static pool (alpha upstream, gate `StaticCapacity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
}

impl NodePoolSpec {
    /// Whether this is a static pool (has `replicas`).
    pub fn is_static(&self) -> bool {
        self.replicas.is_some()
    }
}

/// Disruption settings of a NodePool. Every field is optional on the wire; the `*_or_default`
/// accessors apply the CRD defaults for objects that did not pass through an API server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Disruption {
    /// How long a node must be consolidatable before consolidation acts; `Never` disables
    /// consolidation and emptiness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consolidate_after: Option<NillableDuration>,
    /// Which nodes consolidation may act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consolidation_policy: Option<ConsolidationPolicy>,
    /// Disruption budgets; absent means the default single `nodes: 10%` budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budgets: Option<Vec<Budget>>,
}

impl Disruption {
    /// Whether nothing is set (so the field is left out on the wire).
    pub fn is_unset(&self) -> bool {
        self.consolidate_after.is_none()
            && self.consolidation_policy.is_none()
            && self.budgets.is_none()
    }

    /// `consolidateAfter`, defaulting to `0s`.
    pub fn consolidate_after_or_default(&self) -> NillableDuration {
        self.consolidate_after.clone().unwrap_or_else(|| {
            NillableDuration::from_trusted(
                DEFAULT_CONSOLIDATE_AFTER,
                Some(std::time::Duration::ZERO),
            )
        })
    }

    /// `consolidationPolicy`, defaulting to `WhenEmptyOrUnderutilized`.
    pub fn consolidation_policy_or_default(&self) -> ConsolidationPolicy {
        self.consolidation_policy.unwrap_or_default()
    }

    /// `budgets`, defaulting to one `nodes: 10%` budget.
    pub fn budgets_or_default(&self) -> Vec<Budget> {
        self.budgets
            .clone()
            .unwrap_or_else(|| vec![Budget::default()])
    }
}

/// Which nodes consolidation may act on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ConsolidationPolicy {
    /// Only nodes without (non-daemon) pods.
    WhenEmpty,
    /// Empty nodes and nodes whose pods fit elsewhere more cheaply.
    #[default]
    WhenEmptyOrUnderutilized,
    /// Like `WhenEmptyOrUnderutilized` but weighing savings against disruption (v1.14).
    Balanced,
}

impl ConsolidationPolicy {
    /// Every policy, in CRD enum order.
    pub const ALL: [Self; 3] = [
        Self::WhenEmpty,
        Self::WhenEmptyOrUnderutilized,
        Self::Balanced,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WhenEmpty => "WhenEmpty",
            Self::WhenEmptyOrUnderutilized => "WhenEmptyOrUnderutilized",
            Self::Balanced => "Balanced",
        }
    }
}

impl fmt::Display for ConsolidationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Voluntary disruption reasons a budget can be scoped to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DisruptionReason {
    /// Consolidation of underutilized nodes.
    Underutilized,
    /// Removal of empty nodes.
    Empty,
    /// Replacement of drifted nodes.
    Drifted,
}

impl DisruptionReason {
    /// Every reason, in CRD enum order.
    pub const ALL: [Self; 3] = [Self::Underutilized, Self::Empty, Self::Drifted];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Underutilized => "Underutilized",
            Self::Empty => "Empty",
            Self::Drifted => "Drifted",
        }
    }
}

impl fmt::Display for DisruptionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A disruption budget: at most `nodes` of the pool may be disrupted at once, optionally only
/// during a cron window and only for some reasons.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Reasons this budget applies to; empty means all reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<DisruptionReason>,
    /// Node count (`5`) or percentage of the pool (`10%`, rounded up).
    #[serde(default = "default_budget_nodes")]
    pub nodes: String,
    /// Cron schedule (UTC) at which the budget window opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How long the window stays open after each schedule hit (hours/minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
}

impl Budget {
    /// How many of `total_nodes` this budget lets be disrupted at once, ignoring its schedule:
    /// a count as written, or a percentage rounded up (like upstream). `None` if `nodes` is not
    /// a count or a percentage of at most 100.
    pub fn allowed_disruptions(&self, total_nodes: usize) -> Option<usize> {
        match self.nodes.strip_suffix('%') {
            Some(percent) => {
                let percent: usize = percent.parse().ok().filter(|p| *p <= 100)?;
                Some((total_nodes * percent).div_ceil(100))
            }
            None => self.nodes.parse().ok(),
        }
    }
}

fn default_budget_nodes() -> String {
    DEFAULT_BUDGET_NODES.to_string()
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            reasons: Vec::new(),
            nodes: default_budget_nodes(),
            schedule: None,
            duration: None,
        }
    }
}

/// Labels and annotations copied onto every NodeClaim of the pool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TemplateMetadata {
    /// Labels for the NodeClaim and its Node.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub labels: BTreeMap<String, String>,
    /// Annotations for the NodeClaim.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub annotations: BTreeMap<String, String>,
}

impl TemplateMetadata {
    /// Whether neither labels nor annotations are set.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// `spec.template` of a NodePool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NodeClaimTemplate {
    /// Labels and annotations for the NodeClaims.
    #[serde(default, skip_serializing_if = "TemplateMetadata::is_empty")]
    pub metadata: TemplateMetadata,
    /// NodeClaim spec without resource requests.
    pub spec: NodeClaimTemplateSpec,
}

/// `spec.template.spec` of a NodePool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimTemplateSpec {
    /// Taints put on the nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Taints present at startup that something else removes; pods need not tolerate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
    /// Scheduling requirements every node of the pool satisfies.
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
    /// The provider node class.
    pub node_class_ref: NodeClassReference,
    /// Longest a node may take to drain once deletion starts; absent waits forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period: Option<Duration>,
    /// Node lifetime before forceful replacement; `Never` disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after: Option<NillableDuration>,
}

impl NodeClaimTemplate {
    /// The NodeClaim spec this template describes (without resource requests, which scheduling
    /// fills in).
    pub fn to_nodeclaim_spec(&self) -> crate::nodeclaim::NodeClaimSpec {
        let spec = &self.spec;
        crate::nodeclaim::NodeClaimSpec {
            taints: spec.taints.clone(),
            startup_taints: spec.startup_taints.clone(),
            requirements: spec.requirements.clone(),
            resources: Default::default(),
            node_class_ref: spec.node_class_ref.clone(),
            termination_grace_period: spec.termination_grace_period.clone(),
            expire_after: spec.expire_after.clone(),
        }
    }
}

impl NodeClaimTemplateSpec {
    /// `expireAfter`, defaulting to `720h`.
    pub fn expire_after_or_default(&self) -> NillableDuration {
        self.expire_after.clone().unwrap_or_else(|| {
            NillableDuration::from_trusted(
                DEFAULT_EXPIRE_AFTER,
                Some(std::time::Duration::from_secs(720 * 3600)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allowed_disruptions() {
        let cases: &[(&str, usize, Option<usize>)] = &[
            ("10%", 10, Some(1)),
            ("10%", 11, Some(2)),
            ("10%", 0, Some(0)),
            ("5%", 1, Some(1)),
            ("100%", 7, Some(7)),
            ("0%", 7, Some(0)),
            ("0", 7, Some(0)),
            ("3", 1, Some(3)),
            ("101%", 7, None),
            ("abc", 7, None),
            ("", 7, None),
        ];
        for (nodes, total, want) in cases {
            let budget = Budget {
                nodes: nodes.to_string(),
                ..Budget::default()
            };
            assert_eq!(
                budget.allowed_disruptions(*total),
                *want,
                "{nodes} of {total}"
            );
        }
    }
}

/// `status` of a NodePool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolStatus {
    /// Summed capacity of the pool's nodes (always has cpu, memory, pods, ephemeral-storage,
    /// nodes once written by the counter controller).
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub resources: ResourceList,
    /// Number of nodes in the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<i64>,
    /// Generation of the referenced node class last seen by the registration-health controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_class_observed_generation: Option<i64>,
    /// Status conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
