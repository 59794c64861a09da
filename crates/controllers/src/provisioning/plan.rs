//! The provisioner's pure half: which NodePools may provision, what each new NodeClaim looks
//! like on the wire, and the plan (creates, nominations, failures) a solve turns into. Nothing
//! here does I/O or reads the clock; the shell in [`super::Provisioner`] applies the plan.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use karpenter_apis::common::{NodeSelectorOperator, NodeSelectorRequirementWithMinValues};
use karpenter_apis::conditions;
use karpenter_apis::hash::{NODEPOOL_HASH_VERSION_VALUE, nodepool_hash};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::{NodeClaim, NodeClaimSpec, ResourceRequirements};
use karpenter_apis::nodepool::NodePool;
use karpenter_cloudprovider::resource_list;
use karpenter_scheduling::model::OfferingFilter;
use karpenter_scheduling::results::IgnoreReason;
use karpenter_scheduling::{
    NewNodeClaim, NodePoolView, Operator, PodError, Requirement, Requirements, Resources,
    SchedulingResults,
};

use crate::nodepool::readiness::{NodeClassReadiness, nodeclass_readiness};

/// Why a NodePool takes no part in a solve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePoolSkip {
    /// Its `Ready` condition is not True.
    NotReady,
    /// It has a deletion timestamp.
    Deleting,
    /// It is a static pool (`spec.replicas`), provisioned by other controllers.
    Static,
    /// Its NodeClass is missing, terminating or not Ready.
    NodeClassNotReady(String),
}

/// Whether `nodepool` may provision now, given the NodeClass it references (`None` when that
/// NodeClass is not in state). Upstream's rule: Ready=True, not deleting, not static, and its
/// NodeClass Ready. A NodeClass without any `Ready` condition counts as Ready until the AWS
/// provider's NodeClass controller exists to write one (see [`nodeclass_readiness`]).
pub fn usable_nodepool(
    nodepool: &NodePool,
    nodeclass: Option<&karpenter_apis::ec2nodeclass::EC2NodeClass>,
) -> Result<(), NodePoolSkip> {
    if nodepool.metadata.deletion_timestamp.is_some() {
        return Err(NodePoolSkip::Deleting);
    }
    if nodepool.spec.is_static() {
        return Err(NodePoolSkip::Static);
    }
    let pool_conditions = nodepool
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    if !conditions::is_true(pool_conditions, conditions::READY) {
        return Err(NodePoolSkip::NotReady);
    }
    match nodeclass_readiness(&nodepool.spec.template.spec.node_class_ref, nodeclass) {
        NodeClassReadiness::Ready => Ok(()),
        other => Err(NodePoolSkip::NodeClassNotReady(other.reason().to_string())),
    }
}

/// [`usable_nodepool`] with the NodeClass looked up in `snapshot`, as the provisioner sees it.
pub fn usable_in(
    snapshot: &karpenter_state::Snapshot,
    nodepool: &NodePool,
) -> Result<(), NodePoolSkip> {
    let class = snapshot.nodeclass(&nodepool.spec.template.spec.node_class_ref.name);
    usable_nodepool(nodepool, class.as_deref())
}

/// How many of the pool's instance types survive its own requirements and template labels
/// with at least one available, allowed offering (upstream's pre-filter; zero ⇒ the
/// `NoCompatibleInstanceTypes` event).
pub fn compatible_instance_types(view: &NodePoolView) -> usize {
    let template = template_requirements(view);
    let filter = OfferingFilter::new(&template);
    view.instance_types
        .iter()
        .filter(|it| {
            it.requirements.intersects(&template).is_ok()
                && it.offerings.iter().any(|o| o.available && filter.allows(o))
        })
        .count()
}

fn template_requirements(view: &NodePoolView) -> Requirements {
    let mut template = view.requirements.clone();
    template.add_all(&Requirements::from_labels(view.labels.iter()));
    template.add(
        labels::NODEPOOL,
        Requirement::in_values([view.name.clone()]),
    );
    template
}

/// Zones any pool could launch into: available offerings compatible with the pool's template.
/// Given to the solver as the zone topology domains, so spread constraints see empty zones.
pub fn zone_domains(views: &[NodePoolView]) -> BTreeSet<String> {
    let mut zones = BTreeSet::new();
    for view in views {
        let template = template_requirements(view);
        let filter = OfferingFilter::new(&template);
        for it in &view.instance_types {
            if it.requirements.intersects(&template).is_err() {
                continue;
            }
            for o in &it.offerings {
                if o.available && filter.allows(o) {
                    zones.insert(o.zone.clone());
                }
            }
        }
    }
    zones
}

/// `zone` label of `karpenter_scheduler_pending_pods_by_effective_zone_count` for a pod whose
/// zone requirements leave several zones (or none is required).
pub const FLEXIBLE_ZONE: &str = "flexible";
/// `zone` label for a pod whose zone requirements leave no zone at all.
pub const NO_ZONE: &str = "none";

/// The zone a pending pod is bound to by its own requirements (node selector and required
/// node affinity; an OR over affinity terms): that zone's name when exactly one of `zones`
/// (plus any zone the pod names) qualifies, [`FLEXIBLE_ZONE`] when several do or the pod does
/// not constrain zones, [`NO_ZONE`] when none does.
pub fn effective_zone(pod: &karpenter_scheduling::PodView, zones: &BTreeSet<String>) -> String {
    let selector = pod.node_selector.get(labels::ZONE);
    let terms: Vec<Option<Requirement>> = pod
        .required_node_affinity
        .iter()
        .map(|term| {
            let zone_specs: Vec<_> = term
                .iter()
                .filter(|spec| spec.key == labels::ZONE)
                .cloned()
                .collect();
            Requirements::from_specs(&zone_specs).ok().map(|r| {
                r.get(labels::ZONE)
                    .cloned()
                    .unwrap_or_else(Requirement::exists)
            })
        })
        .collect();
    let constrains_zone = selector.is_some()
        || terms
            .iter()
            .any(|t| t.as_ref().is_none_or(|r| r.operator() != Operator::Exists));
    if !constrains_zone {
        return FLEXIBLE_ZONE.to_string();
    }
    let named = selector.into_iter().cloned().chain(
        pod.required_node_affinity
            .iter()
            .flatten()
            .filter(|spec| spec.key == labels::ZONE && spec.operator == Operator::In)
            .flat_map(|spec| spec.values.iter().cloned()),
    );
    let candidates: BTreeSet<String> = zones.iter().cloned().chain(named).collect();
    let allowed: Vec<&String> = candidates
        .iter()
        .filter(|zone| selector.is_none_or(|s| s == *zone))
        .filter(|zone| {
            terms.is_empty()
                || terms
                    .iter()
                    .flatten()
                    .any(|r| r.matches_label(Some(zone.as_str())))
        })
        .collect();
    match allowed.as_slice() {
        [] => NO_ZONE.to_string(),
        [one] => (*one).clone(),
        _ => FLEXIBLE_ZONE.to_string(),
    }
}

/// Requirement keys that only exist inside a solve and never reach a NodeClaim.
const SIMULATION_ONLY_KEYS: [&str; 3] = [labels::HOSTNAME, labels::REGISTERED, labels::INITIALIZED];

fn api_operator(op: Operator) -> NodeSelectorOperator {
    match op {
        Operator::In => NodeSelectorOperator::In,
        Operator::NotIn => NodeSelectorOperator::NotIn,
        Operator::Exists => NodeSelectorOperator::Exists,
        Operator::DoesNotExist => NodeSelectorOperator::DoesNotExist,
        Operator::Gt => NodeSelectorOperator::Gt,
        Operator::Lt => NodeSelectorOperator::Lt,
        Operator::Gte => NodeSelectorOperator::Gte,
        Operator::Lte => NodeSelectorOperator::Lte,
    }
}

/// The NodeClaim upstream would create for `new` from `nodepool`: `generateName <pool>-`, a
/// non-controller owner reference to the pool, template labels and annotations plus the pool,
/// NodeClass, hash and min-values-relaxed stamps, the solved requirements (instance types
/// cheapest first, capacity types), the template's taints, durations and NodeClass, the pods'
/// requests plus DaemonSet overhead, and the termination finalizer.
pub fn nodeclaim_for(new: &NewNodeClaim, nodepool: &NodePool) -> NodeClaim {
    let pool_name = nodepool.metadata.name.clone().unwrap_or_default();
    let template = &nodepool.spec.template;
    let mut node_labels = template.metadata.labels.clone();
    node_labels.extend(new.labels.clone());
    node_labels.insert(labels::NODEPOOL.to_string(), pool_name.clone());
    let class_ref = &template.spec.node_class_ref;
    node_labels.insert(class_ref.label_key(), class_ref.name.clone());

    let mut annotations = template.metadata.annotations.clone();
    annotations.extend(new.annotations.clone());
    annotations.insert(labels::NODEPOOL_HASH.to_string(), nodepool_hash(nodepool));
    annotations.insert(
        labels::NODEPOOL_HASH_VERSION.to_string(),
        NODEPOOL_HASH_VERSION_VALUE.to_string(),
    );
    annotations.insert(
        labels::NODECLAIM_MIN_VALUES_RELAXED.to_string(),
        new.min_values_relaxed.to_string(),
    );

    let requirements = new
        .requirement_specs()
        .into_iter()
        .filter(|r| !SIMULATION_ONLY_KEYS.contains(&r.key.as_str()))
        .map(|r| NodeSelectorRequirementWithMinValues {
            key: r.key,
            operator: api_operator(r.operator),
            values: r.values,
            min_values: r.min_values,
        })
        .collect();

    let base = template.to_nodeclaim_spec();
    NodeClaim {
        metadata: ObjectMeta {
            generate_name: Some(format!("{pool_name}-")),
            labels: Some(node_labels),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: format!("{}/v1", labels::GROUP),
                kind: "NodePool".to_string(),
                name: pool_name,
                uid: nodepool.metadata.uid.clone().unwrap_or_default(),
                block_owner_deletion: Some(true),
                controller: None,
            }]),
            finalizers: Some(vec![labels::TERMINATION_FINALIZER.to_string()]),
            ..ObjectMeta::default()
        },
        spec: NodeClaimSpec {
            requirements,
            resources: ResourceRequirements {
                requests: resource_list(&new.requests),
            },
            ..base
        },
        status: None,
    }
}

/// The first limit of `limits` that current `usage` already exceeds, as upstream words it.
pub fn exceeded_limit(limits: &BTreeMap<String, i64>, usage: &Resources) -> Option<String> {
    limits.iter().find_map(|(name, limit)| {
        let used = usage.get(name);
        (used > *limit).then(|| {
            format!(
                "{name} resource usage of {} exceeds limit of {}",
                karpenter_scheduling::quantity::format_resource(name, used),
                karpenter_scheduling::quantity::format_resource(name, *limit)
            )
        })
    })
}

/// A pod, as events and logs name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    /// UID (the event dedupe key).
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Where a pod was placed among existing capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTarget {
    /// The state node's key (provider ID or name), what nominations are keyed by.
    pub key: String,
    /// Its NodeClaim, if managed.
    pub nodeclaim: Option<String>,
    /// Its Node, once registered.
    pub node: Option<String>,
}

/// `Nominated`'s message: "Pod should schedule on: nodeclaim/X, node/Y".
pub fn nominated_message(nodeclaim: Option<&str>, node: Option<&str>) -> String {
    let mut parts = Vec::new();
    if let Some(nc) = nodeclaim {
        parts.push(format!("nodeclaim/{nc}"));
    }
    if let Some(n) = node {
        parts.push(format!("node/{n}"));
    }
    format!("Pod should schedule on: {}", parts.join(", "))
}

/// `FailedScheduling`'s message.
pub fn failed_scheduling_message(reason: &impl std::fmt::Display) -> String {
    format!("Failed to schedule pod, {reason}")
}

/// One NodeClaim to create and the pods it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCreate {
    /// The object to POST.
    pub nodeclaim: NodeClaim,
    /// Its NodePool.
    pub nodepool: String,
    /// The pool's limits (re-checked against live usage right before the create).
    pub limits: BTreeMap<String, i64>,
    /// Pods the solver put on it.
    pub pods: Vec<PodRef>,
    /// BestEffort minValues lowered a requirement (metric label).
    pub min_values_relaxed: bool,
}

/// One pod placed on existing or in-flight capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nomination {
    /// The pod.
    pub pod: PodRef,
    /// Where.
    pub target: NodeTarget,
}

/// One pod left out, with the event message (or none: upstream ignores some pods silently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The pod.
    pub pod: PodRef,
    /// `FailedScheduling` message; `None` = no event.
    pub message: Option<String>,
    /// The pod was ignored rather than found unschedulable.
    pub ignored: bool,
}

/// Everything one provisioning pass will do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// NodeClaims to create, in the solver's order.
    pub creates: Vec<PlannedCreate>,
    /// Pods nominated onto existing or in-flight nodes.
    pub nominations: Vec<Nomination>,
    /// Pods that could not be placed.
    pub failures: Vec<Failure>,
}

impl Plan {
    /// Pods found unschedulable (ignored pods excluded), for the gauge.
    pub fn unschedulable_count(&self) -> usize {
        self.failures.iter().filter(|f| !f.ignored).count()
    }

    /// Pods ignored, for the gauge.
    pub fn ignored_count(&self) -> usize {
        self.failures.iter().filter(|f| f.ignored).count()
    }
}

/// Turns a solve's results into a plan. `pods` maps UIDs to pods; `nodepools` the pools by
/// name; `target` resolves a placement's node name to the state node. Claims whose pool is
/// unknown (it vanished mid-pass) fail their pods rather than being created half-informed.
pub fn plan(
    results: &SchedulingResults,
    pods: &BTreeMap<String, PodRef>,
    nodepools: &BTreeMap<String, (NodePool, BTreeMap<String, i64>)>,
    target: impl Fn(&str) -> NodeTarget,
) -> Plan {
    let pod = |uid: &str| {
        pods.get(uid).cloned().unwrap_or_else(|| PodRef {
            uid: uid.to_string(),
            namespace: String::new(),
            name: String::new(),
        })
    };
    let mut out = Plan::default();
    for new in &results.new_nodeclaims {
        let claim_pods: Vec<PodRef> = new.pods.iter().map(|u| pod(u)).collect();
        match nodepools.get(&new.nodepool) {
            Some((np, limits)) => out.creates.push(PlannedCreate {
                nodeclaim: nodeclaim_for(new, np),
                nodepool: new.nodepool.clone(),
                limits: limits.clone(),
                pods: claim_pods,
                min_values_relaxed: new.min_values_relaxed,
            }),
            None => out.failures.extend(claim_pods.into_iter().map(|p| Failure {
                pod: p,
                message: Some(failed_scheduling_message(&format!(
                    "nodepool {:?} not found",
                    new.nodepool
                ))),
                ignored: false,
            })),
        }
    }
    for (uid, node) in &results.existing_placements {
        out.nominations.push(Nomination {
            pod: pod(uid),
            target: target(node),
        });
    }
    for (uid, error) in &results.unschedulable {
        // A stopped solve never reached these pods: nothing is known against them, so no
        // event and no failure; they stay pending for the next pass.
        if matches!(error, PodError::NotTried) {
            continue;
        }
        let ignored = matches!(error, PodError::Ignored(_));
        // Upstream drops pods that require `karpenter.sh/nodepool DoesNotExist` without a word:
        // they ask to stay off Karpenter's nodes.
        let silent = matches!(error, PodError::Ignored(IgnoreReason::NodePoolDoesNotExist));
        out.failures.push(Failure {
            pod: pod(uid),
            message: (!silent).then(|| failed_scheduling_message(error)),
            ignored,
        });
    }
    out
}

#[cfg(test)]
mod tests;
