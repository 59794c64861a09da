//! Feasibility and scoring: which nodes a pod fits on and which one wins. Pure: reads an owned
//! snapshot, returns a decision or kube-scheduler-shaped reasons.
//!
//! Filters run in kube-scheduler's default plugin order and a node reports the first filter it
//! fails (resources report every insufficient resource), so the aggregate message reads like
//! kube-scheduler's (`0/3 nodes are available: 3 Insufficient cpu.`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Namespace, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm,
    Taint, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use karpenter_apimachinery::selector::LabelSelector;

use crate::cluster::resources::{Resources, add_into, is_terminal, pod_requests, resources_of};

/// The taint the node lifecycle controller puts on nodes that are not Ready.
const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Which feasible node wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scoring {
    /// The node whose cpu and memory would be most allocated (bin-packing; what Karpenter's
    /// consolidation assumes). Ties go to the node name that sorts first.
    #[default]
    MostAllocated,
    /// The node whose cpu and memory would be least allocated (kube-scheduler's default
    /// `NodeResourcesFit` strategy). Ties go to the node name that sorts first.
    LeastAllocated,
}

/// One node as the scheduler sees it.
#[derive(Debug, Clone)]
pub(crate) struct NodeState {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    allocatable: Resources,
    requested: Resources,
    pod_count: i128,
    pods: Vec<Arc<Pod>>,
    /// NoSchedule/NoExecute taints, plus the not-ready taint for nodes that are not Ready.
    taints: Vec<Taint>,
    unschedulable: bool,
}

/// The snapshot one scheduling pass works on.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterState {
    nodes: Vec<NodeState>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Bound pods with required anti-affinity terms, as (node index, pod): every incoming pod
    /// must respect them, and keeping them apart saves a scan of all pods per incoming pod.
    anti_affinity_pods: Vec<(usize, Arc<Pod>)>,
}

/// What to do with a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Bind to this node.
    Bind(String),
    /// Fits nowhere; the message kube-scheduler would put in `PodScheduled`.
    Unschedulable(String),
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl ClusterState {
    /// Builds the snapshot from cached nodes, pods (only bound, unfinished ones count) and
    /// namespaces.
    pub(crate) fn new(
        nodes: &[Arc<Node>],
        pods: &[Arc<Pod>],
        namespaces: &[Arc<Namespace>],
    ) -> Self {
        let mut states: Vec<NodeState> = nodes
            .iter()
            .filter_map(|node| {
                let name = node.metadata.name.clone()?;
                let status = node.status.as_ref();
                let allocatable = resources_of(
                    status
                        .and_then(|s| s.allocatable.as_ref())
                        .or_else(|| status.and_then(|s| s.capacity.as_ref())),
                );
                let spec = node.spec.as_ref();
                let mut taints: Vec<Taint> = spec
                    .and_then(|s| s.taints.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
                    .collect();
                if !node_ready(node) && !taints.iter().any(|t| t.key == NOT_READY_TAINT) {
                    taints.push(Taint {
                        key: NOT_READY_TAINT.into(),
                        effect: "NoSchedule".into(),
                        ..Default::default()
                    });
                }
                Some(NodeState {
                    name,
                    labels: node.metadata.labels.clone().unwrap_or_default(),
                    allocatable,
                    requested: Resources::new(),
                    pod_count: 0,
                    pods: Vec::new(),
                    taints,
                    unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
                })
            })
            .collect();
        states.sort_by(|a, b| a.name.cmp(&b.name));
        let mut cluster = ClusterState {
            nodes: states,
            namespaces: namespaces
                .iter()
                .filter_map(|ns| {
                    Some((
                        ns.metadata.name.clone()?,
                        ns.metadata.labels.clone().unwrap_or_default(),
                    ))
                })
                .collect(),
            anti_affinity_pods: Vec::new(),
        };
        for pod in pods {
            if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone())
                && !is_terminal(pod)
            {
                cluster.assume(&node, pod.clone());
            }
        }
        cluster
    }

    /// Counts `pod` on `node` (a bound pod, or one this pass just bound).
    pub(crate) fn assume(&mut self, node: &str, pod: Arc<Pod>) {
        let Ok(i) = self.nodes.binary_search_by(|n| n.name.as_str().cmp(node)) else {
            return;
        };
        let Some(state) = self.nodes.get_mut(i) else {
            return;
        };
        if let Some(spec) = pod.spec.as_ref() {
            add_into(&mut state.requested, &pod_requests(spec));
        }
        state.pod_count += 1;
        if !required_terms(&pod, true).is_empty() {
            self.anti_affinity_pods.push((i, pod.clone()));
        }
        state.pods.push(pod);
    }

    /// Number of nodes.
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn pods(&self) -> impl Iterator<Item = (&NodeState, &Arc<Pod>)> {
        self.nodes
            .iter()
            .flat_map(|n| n.pods.iter().map(move |p| (n, p)))
    }
}

// ---- Matching helpers ----------------------------------------------------------------------

pub(crate) fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key = t.key.as_deref().unwrap_or("");
        let op = t.operator.as_deref().unwrap_or("Equal");
        let key_ok = if key.is_empty() {
            op == "Exists"
        } else {
            key == taint.key
        };
        let value_ok = op == "Exists"
            || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
        effect_ok && key_ok && value_ok
    })
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let int = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value.and_then(int), values) else {
                return false;
            };
            let Some(bound) = int(bound) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name)))
}

/// Whether the node satisfies the pod's `nodeSelector` and required node affinity.
pub(crate) fn node_selector_matches(
    pod: &Pod,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required: Option<&NodeSelector> = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok
        && required.is_none_or(|r| {
            r.node_selector_terms
                .iter()
                .any(|t| term_matches(t, name, labels))
        })
}

fn label_selector(
    selector: Option<&metav1::LabelSelector>,
    extra: Vec<metav1::LabelSelectorRequirement>,
) -> LabelSelector {
    let Some(s) = selector else {
        return LabelSelector::nothing();
    };
    let mut s = s.clone();
    s.match_expressions
        .get_or_insert_with(Vec::new)
        .extend(extra);
    LabelSelector::from_k8s(&s).unwrap_or_else(|_| LabelSelector::nothing())
}

fn labels_of(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}

fn namespace_of(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

fn key_requirements(
    labels: &BTreeMap<String, String>,
    keys: Option<&Vec<String>>,
    operator: &str,
) -> Vec<metav1::LabelSelectorRequirement> {
    keys.into_iter()
        .flatten()
        .filter_map(|k| {
            labels.get(k).map(|v| metav1::LabelSelectorRequirement {
                key: k.clone(),
                operator: operator.into(),
                values: Some(vec![v.clone()]),
            })
        })
        .collect()
}

/// A pod (anti-)affinity term with its namespaces and selector resolved for its owner pod.
struct Term {
    selector: LabelSelector,
    all_namespaces: bool,
    namespaces: BTreeSet<String>,
    topology_key: String,
}

impl Term {
    fn resolve(term: &PodAffinityTerm, owner: &Pod, cluster: &ClusterState) -> Self {
        let owner_labels = labels_of(owner);
        let mut extra = key_requirements(&owner_labels, term.match_label_keys.as_ref(), "In");
        extra.extend(key_requirements(
            &owner_labels,
            term.mismatch_label_keys.as_ref(),
            "NotIn",
        ));
        let selector = label_selector(term.label_selector.as_ref(), extra);
        let mut namespaces: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        let mut all_namespaces = false;
        match term.namespace_selector.as_ref() {
            Some(ns_sel)
                if ns_sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && ns_sel
                        .match_expressions
                        .as_ref()
                        .is_none_or(|m| m.is_empty()) =>
            {
                all_namespaces = true;
            }
            Some(ns_sel) => {
                let sel =
                    LabelSelector::from_k8s(ns_sel).unwrap_or_else(|_| LabelSelector::nothing());
                namespaces.extend(
                    cluster
                        .namespaces
                        .iter()
                        .filter(|(_, labels)| sel.matches(labels))
                        .map(|(name, _)| name.clone()),
                );
            }
            None if namespaces.is_empty() => {
                namespaces.insert(namespace_of(owner).to_string());
            }
            None => {}
        }
        Term {
            selector,
            all_namespaces,
            namespaces,
            topology_key: term.topology_key.clone(),
        }
    }

    fn matches(&self, pod: &Pod) -> bool {
        (self.all_namespaces || self.namespaces.contains(namespace_of(pod)))
            && self.selector.matches(&labels_of(pod))
    }
}

fn required_terms(pod: &Pod, anti: bool) -> Vec<PodAffinityTerm> {
    let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let terms = if anti {
        affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            })
    } else {
        affinity
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            })
    };
    terms.unwrap_or_default()
}

type TopologyCounts = BTreeMap<(String, String), i64>;

/// Pod (anti-)affinity state for one incoming pod, computed once per pod per pass.
struct InterPod {
    affinity_terms: Vec<Term>,
    affinity_counts: TopologyCounts,
    pod_matches_own_affinity: bool,
    anti_counts: TopologyCounts,
    existing_anti_counts: TopologyCounts,
}

impl InterPod {
    fn new(pod: &Pod, cluster: &ClusterState) -> Self {
        let affinity_terms: Vec<Term> = required_terms(pod, false)
            .iter()
            .map(|t| Term::resolve(t, pod, cluster))
            .collect();
        let anti_terms: Vec<Term> = required_terms(pod, true)
            .iter()
            .map(|t| Term::resolve(t, pod, cluster))
            .collect();
        let mut affinity_counts = TopologyCounts::new();
        let mut anti_counts = TopologyCounts::new();
        let mut existing_anti_counts = TopologyCounts::new();
        // Only pods with terms of their own need the scan over every bound pod.
        if !affinity_terms.is_empty() || !anti_terms.is_empty() {
            for (node, existing) in cluster.pods() {
                if !affinity_terms.is_empty() && affinity_terms.iter().all(|t| t.matches(existing))
                {
                    for t in &affinity_terms {
                        if let Some(v) = node.labels.get(&t.topology_key) {
                            *affinity_counts
                                .entry((t.topology_key.clone(), v.clone()))
                                .or_insert(0) += 1;
                        }
                    }
                }
                for t in &anti_terms {
                    if t.matches(existing)
                        && let Some(v) = node.labels.get(&t.topology_key)
                    {
                        *anti_counts
                            .entry((t.topology_key.clone(), v.clone()))
                            .or_insert(0) += 1;
                    }
                }
            }
        }
        for (index, existing) in &cluster.anti_affinity_pods {
            let Some(node) = cluster.nodes.get(*index) else {
                continue;
            };
            for term in required_terms(existing, true) {
                let t = Term::resolve(&term, existing, cluster);
                if t.matches(pod)
                    && let Some(v) = node.labels.get(&t.topology_key)
                {
                    *existing_anti_counts
                        .entry((t.topology_key.clone(), v.clone()))
                        .or_insert(0) += 1;
                }
            }
        }
        let pod_matches_own_affinity = affinity_terms.iter().all(|t| t.matches(pod));
        InterPod {
            affinity_terms,
            affinity_counts,
            pod_matches_own_affinity,
            anti_counts,
            existing_anti_counts,
        }
    }

    fn check(&self, node: &NodeState) -> Result<(), &'static str> {
        let mut pods_exist = true;
        for t in &self.affinity_terms {
            let Some(v) = node.labels.get(&t.topology_key) else {
                return Err("node(s) didn't match pod affinity rules");
            };
            if self
                .affinity_counts
                .get(&(t.topology_key.clone(), v.clone()))
                .copied()
                .unwrap_or(0)
                <= 0
            {
                pods_exist = false;
            }
        }
        // The first pod of a group with affinity to itself may go anywhere with the keys.
        let first_of_group = self.affinity_counts.is_empty() && self.pod_matches_own_affinity;
        if !pods_exist && !first_of_group {
            return Err("node(s) didn't match pod affinity rules");
        }
        let hit = |counts: &TopologyCounts| {
            counts
                .iter()
                .any(|((key, value), n)| *n > 0 && node.labels.get(key) == Some(value))
        };
        if hit(&self.anti_counts) {
            return Err("node(s) didn't match pod anti-affinity rules");
        }
        if hit(&self.existing_anti_counts) {
            return Err("node(s) didn't satisfy existing pods anti-affinity rules");
        }
        Ok(())
    }
}

/// One `DoNotSchedule` topology spread constraint with its counts for the incoming pod.
struct Spread {
    key: String,
    max_skew: i64,
    self_match: i64,
    counts: BTreeMap<String, i64>,
    global_min: i64,
}

fn spread_constraints(
    pod: &Pod,
    cluster: &ClusterState,
    tolerations: &[Toleration],
) -> Vec<Spread> {
    let constraints: Vec<&TopologySpreadConstraint> = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == "DoNotSchedule")
        .collect();
    if constraints.is_empty() {
        return Vec::new();
    }
    let pod_labels = labels_of(pod);
    let ns = namespace_of(pod);
    constraints
        .iter()
        .map(|c| {
            let extra = key_requirements(&pod_labels, c.match_label_keys.as_ref(), "In");
            let selector = label_selector(c.label_selector.as_ref(), extra);
            let honor_affinity = c.node_affinity_policy.as_deref() != Some("Ignore");
            let honor_taints = c.node_taints_policy.as_deref() == Some("Honor");
            let eligible: Vec<&NodeState> = cluster
                .nodes
                .iter()
                .filter(|n| {
                    constraints
                        .iter()
                        .all(|c| n.labels.contains_key(&c.topology_key))
                })
                .filter(|n| !honor_affinity || node_selector_matches(pod, &n.name, &n.labels))
                .filter(|n| !honor_taints || n.taints.iter().all(|t| tolerates(tolerations, t)))
                .collect();
            let mut counts: BTreeMap<String, i64> = BTreeMap::new();
            for n in &eligible {
                let Some(domain) = n.labels.get(&c.topology_key) else {
                    continue;
                };
                let matching = n
                    .pods
                    .iter()
                    .filter(|p| {
                        p.metadata.deletion_timestamp.is_none()
                            && namespace_of(p) == ns
                            && selector.matches(&labels_of(p))
                    })
                    .count() as i64;
                *counts.entry(domain.clone()).or_insert(0) += matching;
            }
            let min_domains = i64::from(c.min_domains.unwrap_or(1));
            let global_min = if (counts.len() as i64) < min_domains {
                0
            } else {
                counts.values().copied().min().unwrap_or(0)
            };
            Spread {
                key: c.topology_key.clone(),
                max_skew: i64::from(c.max_skew),
                self_match: i64::from(selector.matches(&pod_labels)),
                counts,
                global_min,
            }
        })
        .collect()
}

fn check_spread(spreads: &[Spread], node: &NodeState) -> Result<(), &'static str> {
    for s in spreads {
        let Some(domain) = node.labels.get(&s.key) else {
            return Err(
                "node(s) didn't match pod topology spread constraints (missing required label)",
            );
        };
        let count = s.counts.get(domain).copied().unwrap_or(0);
        if count + s.self_match - s.global_min > s.max_skew {
            return Err("node(s) didn't match pod topology spread constraints");
        }
    }
    Ok(())
}

/// `(hostIP, protocol, hostPort)` a pod asks for.
fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            let ip = p
                .host_ip
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into());
            Some((ip, p.protocol.clone().unwrap_or_else(|| "TCP".into()), port))
        })
        .collect()
}

fn ports_conflict(wanted: &[(String, String, i32)], node: &NodeState) -> bool {
    if wanted.is_empty() {
        return false;
    }
    node.pods
        .iter()
        .flat_map(|p| host_ports(p))
        .any(|(ip, proto, port)| {
            wanted.iter().any(|(wip, wproto, wport)| {
                *wport == port
                    && *wproto == proto
                    && (ip == *wip || ip == "0.0.0.0" || wip == "0.0.0.0")
            })
        })
}

fn resource_reasons(requests: &Resources, node: &NodeState) -> Vec<String> {
    let mut reasons = Vec::new();
    let max_pods = node.allocatable.get("pods").copied().unwrap_or(0) / 1000;
    if node.pod_count + 1 > max_pods {
        reasons.push("Too many pods".to_string());
    }
    for (name, want) in requests {
        if *want <= 0 || name == "pods" {
            continue;
        }
        let used = node.requested.get(name).copied().unwrap_or(0);
        let have = node.allocatable.get(name).copied().unwrap_or(0);
        if used + want > have {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    reasons
}

fn allocated_fraction(requests: &Resources, node: &NodeState) -> f64 {
    let mut total = 0.0;
    for r in ["cpu", "memory"] {
        let have = node.allocatable.get(r).copied().unwrap_or(0);
        if have > 0 {
            let used =
                node.requested.get(r).copied().unwrap_or(0) + requests.get(r).copied().unwrap_or(0);
            total += (used as f64 / have as f64).min(1.0);
        }
    }
    total / 2.0
}

/// Decides where `pod` goes in `cluster`.
pub(crate) fn schedule(pod: &Pod, cluster: &ClusterState, scoring: Scoring) -> Decision {
    if cluster.nodes.is_empty() {
        return Decision::Unschedulable("no nodes available to schedule pods".into());
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let requests = pod_requests(&spec);
    let ports = host_ports(pod);
    let spreads = spread_constraints(pod, cluster, &tolerations);
    let interpod = InterPod::new(pod, cluster);
    let unschedulable_taint = Taint {
        key: UNSCHEDULABLE_TAINT.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut best: Option<(f64, &NodeState)> = None;
    for node in &cluster.nodes {
        let failed: Vec<String> =
            if node.unschedulable && !tolerates(&tolerations, &unschedulable_taint) {
                vec!["node(s) were unschedulable".into()]
            } else if let Some(t) = node.taints.iter().find(|t| !tolerates(&tolerations, t)) {
                vec![format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    t.key,
                    t.value.as_deref().unwrap_or("")
                )]
            } else if !node_selector_matches(pod, &node.name, &node.labels) {
                vec!["node(s) didn't match Pod's node affinity/selector".into()]
            } else if ports_conflict(&ports, node) {
                vec!["node(s) didn't have free ports for the requested pod ports".into()]
            } else {
                let r = resource_reasons(&requests, node);
                if !r.is_empty() {
                    r
                } else if let Err(e) = check_spread(&spreads, node) {
                    vec![e.into()]
                } else if let Err(e) = interpod.check(node) {
                    vec![e.into()]
                } else {
                    Vec::new()
                }
            };
        if failed.is_empty() {
            let fraction = allocated_fraction(&requests, node);
            let score = match scoring {
                Scoring::MostAllocated => fraction,
                Scoring::LeastAllocated => -fraction,
            };
            // Nodes are visited in name order, so a strict comparison keeps the first name on ties.
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, node));
            }
        }
        for r in failed {
            *reasons.entry(r).or_insert(0) += 1;
        }
    }
    if let Some((_, node)) = best {
        return Decision::Bind(node.name.clone());
    }
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    Decision::Unschedulable(format!(
        "0/{} nodes are available: {}.",
        cluster.nodes.len(),
        parts.join(", ")
    ))
}

#[cfg(test)]
// Cases read best as literal node and pod lists, clones included.
#[allow(clippy::cloned_ref_to_slice_refs)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Chainable node builder (Ready, 4 cpu, 8Gi, 110 pods unless changed).
    #[derive(Clone)]
    struct N(Value);
    fn node(name: &str) -> N {
        N(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }))
    }
    impl N {
        fn label(mut self, k: &str, v: &str) -> Self {
            self.0["metadata"]["labels"][k] = json!(v);
            self
        }
        fn cpu(mut self, c: &str) -> Self {
            self.0["status"]["allocatable"]["cpu"] = json!(c);
            self
        }
        fn pods(mut self, n: &str) -> Self {
            self.0["status"]["allocatable"]["pods"] = json!(n);
            self
        }
        fn taint(mut self, k: &str, v: &str, effect: &str) -> Self {
            let t = json!({"key": k, "value": v, "effect": effect});
            match self.0["spec"]["taints"].as_array_mut() {
                Some(a) => a.push(t),
                None => self.0["spec"]["taints"] = json!([t]),
            }
            self
        }
        fn not_ready(mut self) -> Self {
            self.0["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
            self
        }
        fn cordoned(mut self) -> Self {
            self.0["spec"]["unschedulable"] = json!(true);
            self
        }
        fn build(&self) -> Arc<Node> {
            Arc::new(serde_json::from_value(self.0.clone()).unwrap())
        }
    }

    /// Chainable pod builder.
    #[derive(Clone)]
    struct P(Value);
    fn pod(name: &str) -> P {
        P(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {}}}]},
        }))
    }
    impl P {
        fn cpu(mut self, c: &str) -> Self {
            self.0["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!(c);
            self
        }
        fn label(mut self, k: &str, v: &str) -> Self {
            self.0["metadata"]["labels"][k] = json!(v);
            self
        }
        fn on(mut self, node: &str) -> Self {
            self.0["spec"]["nodeName"] = json!(node);
            self
        }
        fn spec(mut self, key: &str, v: Value) -> Self {
            self.0["spec"][key] = v;
            self
        }
        fn host_port(mut self, port: i64) -> Self {
            self.0["spec"]["containers"][0]["ports"] =
                json!([{"containerPort": port, "hostPort": port}]);
            self
        }
        fn node_expr(self, key: &str, op: &str, values: &[&str]) -> Self {
            self.spec(
                "affinity",
                json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": key, "operator": op, "values": values}]}
                ]}}}),
            )
        }
        fn pod_affinity(self, kind: &str, app: &str, key: &str) -> Self {
            self.spec(
                "affinity",
                json!({kind: {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}
                ]}}),
            )
        }
        fn spread(self, key: &str, max_skew: i64, app: &str, min_domains: Option<i64>) -> Self {
            let mut c = json!({"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
                               "labelSelector": {"matchLabels": {"app": app}}});
            if let Some(m) = min_domains {
                c["minDomains"] = json!(m);
            }
            self.spec("topologySpreadConstraints", json!([c]))
        }
        fn build(&self) -> Arc<Pod> {
            Arc::new(serde_json::from_value(self.0.clone()).unwrap())
        }
    }

    fn bind(n: &str) -> Decision {
        Decision::Bind(n.into())
    }
    fn fail(msg: &str) -> Decision {
        Decision::Unschedulable(msg.into())
    }

    fn check(nodes: &[N], existing: &[P], incoming: P, scoring: Scoring, want: Decision) {
        let nodes: Vec<Arc<Node>> = nodes.iter().map(N::build).collect();
        let pods: Vec<Arc<Pod>> = existing.iter().map(P::build).collect();
        let cluster = ClusterState::new(&nodes, &pods, &[]);
        let got = schedule(&incoming.build(), &cluster, scoring);
        assert_eq!(got, want, "pod {}", incoming.0);
    }

    use Scoring::{LeastAllocated as Least, MostAllocated as Most};

    #[test]
    fn resources_and_scoring() {
        let a = node("a");
        let b = node("b");
        let busy = pod("busy").cpu("3").on("b");
        check(
            &[a.clone(), b.clone()],
            &[busy.clone()],
            pod("p").cpu("500m"),
            Most,
            bind("b"),
        );
        check(
            &[a.clone(), b.clone()],
            &[busy.clone()],
            pod("p").cpu("500m"),
            Least,
            bind("a"),
        );
        check(
            &[a.clone(), b.clone()],
            &[],
            pod("p").cpu("1"),
            Most,
            bind("a"),
        );
        check(
            &[a.clone(), b.clone()],
            &[],
            pod("p").cpu("1"),
            Least,
            bind("a"),
        );
        check(
            &[a.clone(), b.clone()],
            &[busy.clone()],
            pod("p").cpu("2"),
            Most,
            bind("a"),
        );
        check(
            &[a.clone(), b.clone()],
            &[],
            pod("p").cpu("5"),
            Most,
            fail("0/2 nodes are available: 2 Insufficient cpu."),
        );
        check(
            &[a.clone().pods("1")],
            &[pod("x").on("a")],
            pod("p").cpu("5"),
            Most,
            fail("0/1 nodes are available: 1 Insufficient cpu, 1 Too many pods."),
        );
        // Finished pods free their resources.
        let done = pod("done").cpu("4").on("a");
        let mut done_json = done.0.clone();
        done_json["status"] = json!({"phase": "Succeeded"});
        check(
            &[a.clone()],
            &[P(done_json)],
            pod("p").cpu("4"),
            Most,
            bind("a"),
        );
        check(
            &[a.clone()],
            &[done],
            pod("p").cpu("4"),
            Most,
            fail("0/1 nodes are available: 1 Insufficient cpu."),
        );
        // Extended resources the node lacks.
        let gpu = pod("g").spec(
            "containers",
            json!([{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]),
        );
        check(
            &[a.clone()],
            &[],
            gpu,
            Most,
            fail("0/1 nodes are available: 1 Insufficient nvidia.com/gpu."),
        );
        check(
            &[],
            &[],
            pod("p"),
            Most,
            fail("no nodes available to schedule pods"),
        );
        check(
            &[node("small").cpu("1500m"), b.clone()],
            &[busy],
            pod("p").cpu("1200m"),
            Most,
            bind("small"),
        );
    }

    #[test]
    fn taints_readiness_and_cordons() {
        let tainted = node("t").taint("k", "v", "NoSchedule");
        check(
            &[tainted.clone()],
            &[],
            pod("p"),
            Most,
            fail("0/1 nodes are available: 1 node(s) had untolerated taint {k: v}."),
        );
        let tol = |t: Value| pod("p").spec("tolerations", t);
        check(
            &[tainted.clone()],
            &[],
            tol(json!([{"key": "k", "value": "v"}])),
            Most,
            bind("t"),
        );
        check(
            &[tainted.clone()],
            &[],
            tol(json!([{"key": "k", "operator": "Exists", "effect": "NoSchedule"}])),
            Most,
            bind("t"),
        );
        check(
            &[tainted.clone()],
            &[],
            tol(json!([{"operator": "Exists"}])),
            Most,
            bind("t"),
        );
        check(
            &[tainted.clone()],
            &[],
            tol(json!([{"key": "k", "value": "other"}])),
            Most,
            fail("0/1 nodes are available: 1 node(s) had untolerated taint {k: v}."),
        );
        check(
            &[tainted.clone()],
            &[],
            tol(json!([{"key": "k", "operator": "Exists", "effect": "NoExecute"}])),
            Most,
            fail("0/1 nodes are available: 1 node(s) had untolerated taint {k: v}."),
        );
        check(
            &[node("s").taint("k", "v", "PreferNoSchedule")],
            &[],
            pod("p"),
            Most,
            bind("s"),
        );
        check(
            &[node("n").not_ready()],
            &[],
            pod("p"),
            Most,
            fail(
                "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.",
            ),
        );
        check(
            &[node("n").not_ready()],
            &[],
            tol(json!([{"operator": "Exists"}])),
            Most,
            bind("n"),
        );
        check(
            &[node("c").cordoned()],
            &[],
            pod("p"),
            Most,
            fail("0/1 nodes are available: 1 node(s) were unschedulable."),
        );
        check(
            &[node("c").cordoned()],
            &[],
            tol(
                json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]),
            ),
            Most,
            bind("c"),
        );
    }

    #[test]
    fn node_selection() {
        let nodes = [
            node("a").label("gen", "5").label("zone", "x"),
            node("b").label("gen", "7"),
        ];
        let cases: Vec<(P, Decision)> = vec![
            (pod("p").spec("nodeSelector", json!({"zone": "x"})), bind("a")),
            (pod("p").node_expr("gen", "Gt", &["5"]), bind("b")),
            (pod("p").node_expr("gen", "Lt", &["6"]), bind("a")),
            (pod("p").node_expr("gen", "Gt", &["7"]), fail("0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.")),
            (pod("p").node_expr("zone", "DoesNotExist", &[]), bind("b")),
            (pod("p").node_expr("zone", "NotIn", &["x"]), bind("b")),
            (pod("p").node_expr("gen", "In", &["5", "7"]), bind("a")),
            (
                pod("p").spec(
                    "affinity",
                    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}
                    ]}}}),
                ),
                bind("b"),
            ),
            (
                // Terms are ORed; an empty term matches nothing.
                pod("p").spec(
                    "affinity",
                    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {}, {"matchExpressions": [{"key": "gen", "operator": "In", "values": ["7"]}]}
                    ]}}}),
                ),
                bind("b"),
            ),
        ];
        for (p, want) in cases {
            check(&nodes, &[], p, Most, want);
        }
    }

    #[test]
    fn host_ports() {
        let a = node("a");
        check(
            &[a.clone()],
            &[pod("x").host_port(80).on("a")],
            pod("p").host_port(80),
            Most,
            fail(
                "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
            ),
        );
        check(
            &[a.clone()],
            &[pod("x").host_port(80).on("a")],
            pod("p").host_port(81),
            Most,
            bind("a"),
        );
    }

    #[test]
    fn inter_pod_affinity() {
        let nodes = [node("a").label("zone", "1"), node("b").label("zone", "2")];
        let web_on_a = pod("w").label("app", "web").on("a");
        // Anti-affinity by hostname avoids the node with a matching pod.
        check(
            &nodes,
            &[web_on_a.clone()],
            pod("p").label("app", "web").pod_affinity(
                "podAntiAffinity",
                "web",
                "kubernetes.io/hostname",
            ),
            Most,
            bind("b"),
        );
        // Affinity by zone goes to the matching pod's zone.
        check(
            &nodes,
            &[web_on_a.clone().on("b")],
            pod("p").pod_affinity("podAffinity", "web", "zone"),
            Most,
            bind("b"),
        );
        // No matching pod anywhere: only a pod matching its own term may start the group.
        check(
            &nodes,
            &[],
            pod("p")
                .label("app", "web")
                .pod_affinity("podAffinity", "web", "zone"),
            Most,
            bind("a"),
        );
        check(
            &nodes,
            &[],
            pod("p").pod_affinity("podAffinity", "web", "zone"),
            Most,
            fail("0/2 nodes are available: 2 node(s) didn't match pod affinity rules."),
        );
        // An existing pod's anti-affinity keeps matching pods away from its zone.
        let guard = pod("g")
            .label("app", "guard")
            .pod_affinity("podAntiAffinity", "web", "zone")
            .on("a");
        check(
            &nodes,
            &[guard.clone()],
            pod("p").label("app", "web"),
            Least,
            bind("b"),
        );
        check(
            &[nodes[0].clone()],
            &[guard],
            pod("p").label("app", "web"),
            Most,
            fail(
                "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules.",
            ),
        );
        // Pods in other namespaces do not count unless the term names them.
        let mut other_ns = web_on_a.clone();
        other_ns.0["metadata"]["namespace"] = json!("other");
        check(
            &[nodes[0].clone()],
            &[other_ns],
            pod("p")
                .label("app", "web")
                .pod_affinity("podAntiAffinity", "web", "zone"),
            Most,
            bind("a"),
        );
    }

    #[test]
    fn topology_spread() {
        let nodes = [
            node("a").label("zone", "1"),
            node("b").label("zone", "2"),
            node("c"), // no zone label: not a domain
        ];
        let web = |n: &str, on: &str| pod(n).label("app", "web").on(on);
        let incoming = || pod("p").label("app", "web").spread("zone", 1, "web", None);
        check(&nodes, &[web("1", "a")], incoming(), Most, bind("b"));
        check(
            &nodes,
            &[web("1", "a"), web("2", "b")],
            incoming(),
            Most,
            bind("a"),
        );
        check(&nodes[..1], &[web("1", "a")], incoming(), Most, bind("a"));
        // minDomains above the domain count makes the global minimum 0.
        check(
            &nodes[..1],
            &[web("1", "a")],
            pod("p")
                .label("app", "web")
                .spread("zone", 1, "web", Some(2)),
            Most,
            fail(
                "0/1 nodes are available: 1 node(s) didn't match pod topology spread constraints.",
            ),
        );
        check(
            &nodes[2..],
            &[],
            incoming(),
            Most,
            fail(
                "0/1 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing required label).",
            ),
        );
    }
}
