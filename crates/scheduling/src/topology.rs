//! Topology groups: one per distinct (kind, key, namespaces, selector, node filter), with
//! incremental per-domain counts so each check is a few hash lookups.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{LabelSelector, PodView, Toleration};
use crate::requirements::Requirements;

/// Which namespaces a term looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamespaceSet {
    /// Every namespace (an empty namespaceSelector).
    All,
    /// Exactly these.
    Some(BTreeSet<String>),
}

impl NamespaceSet {
    /// Whether `ns` is included.
    pub fn contains(&self, ns: &str) -> bool {
        match self {
            NamespaceSet::All => true,
            NamespaceSet::Some(s) => s.contains(ns),
        }
    }

    /// Resolves a term's namespaces: explicit names ∪ namespaces whose labels match the
    /// selector; neither given ⇒ the pod's own namespace.
    pub fn resolve(
        pod_namespace: &str,
        names: &[String],
        selector: Option<&LabelSelector>,
        namespace_labels: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> NamespaceSet {
        if let Some(sel) = selector
            && sel.match_labels.is_empty()
            && sel.match_expressions.is_empty()
        {
            return NamespaceSet::All;
        }
        let mut set: BTreeSet<String> = names.iter().cloned().collect();
        if let Some(sel) = selector {
            for (ns, labels) in namespace_labels {
                if sel.matches(labels) {
                    set.insert(ns.clone());
                }
            }
        }
        if names.is_empty() && selector.is_none() {
            set.insert(pod_namespace.to_string());
        }
        NamespaceSet::Some(set)
    }
}

/// Kind of constraint a group tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKind {
    /// Topology spread.
    Spread {
        /// maxSkew.
        max_skew: i32,
        /// minDomains (1 when unset).
        min_domains: i32,
    },
    /// Pod affinity.
    Affinity,
    /// Pod anti-affinity; only required terms constrain other pods (inverse anti-affinity).
    AntiAffinity {
        /// Required (vs preferred) term.
        required: bool,
    },
}

impl GroupKind {
    /// Human name for messages.
    pub fn describe(&self) -> &'static str {
        match self {
            GroupKind::Spread { .. } => "topology spread",
            GroupKind::Affinity => "pod affinity",
            GroupKind::AntiAffinity { .. } => "pod anti-affinity",
        }
    }
}

/// Which nodes count for a spread constraint (nodeAffinityPolicy / nodeTaintsPolicy Honor).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeFilter {
    /// The owner pod's required node requirements (nodeAffinityPolicy Honor).
    pub requirements: Option<Requirements>,
    /// The owner pod's tolerations (nodeTaintsPolicy Honor).
    pub tolerations: Option<Vec<Toleration>>,
}

/// Identity of a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    /// Kind.
    pub kind: GroupKind,
    /// Topology key.
    pub key: String,
    /// Namespaces counted.
    pub namespaces: NamespaceSet,
    /// Selector; `None` counts no pod.
    pub selector: Option<LabelSelector>,
    /// Node filter (spread only).
    pub node_filter: Option<NodeFilter>,
}

impl GroupKey {
    /// Whether `pod` counts in this group.
    pub fn selects(&self, pod: &PodView) -> bool {
        self.namespaces.contains(&pod.namespace)
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(&pod.labels))
    }
}

/// Incremental counts for one group.
#[derive(Debug, Clone)]
pub struct Group {
    /// Identity.
    pub key: GroupKey,
    /// Pods selected by the group, per domain.
    pub counts: HashMap<String, i64>,
    /// Total selected pods (any domain).
    pub total: i64,
    /// Domains where an owner of a required anti-affinity term sits.
    pub owners: HashMap<String, i64>,
    /// Distinct new-NodeClaim hostnames holding a selected pod (hostname key only).
    pub claim_domains: usize,
}

impl Group {
    /// New, empty.
    pub fn new(key: GroupKey) -> Group {
        Group {
            key,
            counts: HashMap::new(),
            total: 0,
            owners: HashMap::new(),
            claim_domains: 0,
        }
    }

    /// Selected pods in `domain`.
    pub fn count(&self, domain: &str) -> i64 {
        self.counts.get(domain).copied().unwrap_or(0)
    }

    /// Owners in `domain`.
    pub fn owners_in(&self, domain: &str) -> i64 {
        self.owners.get(domain).copied().unwrap_or(0)
    }

    /// Records a selected pod in `domain`.
    pub fn record(&mut self, domain: &str) {
        *self.counts.entry(domain.to_string()).or_insert(0) += 1;
        self.total += 1;
    }

    /// Records an anti-affinity owner in `domain`.
    pub fn record_owner(&mut self, domain: &str) {
        *self.owners.entry(domain.to_string()).or_insert(0) += 1;
    }

    /// Whether a pod of the owner side may land in `domain`, given the spread minimum `min`.
    pub fn allows_min(&self, domain: &str, self_selected: bool, min: i64) -> bool {
        match self.key.kind {
            GroupKind::Spread { max_skew, .. } => {
                self.count(domain) + i64::from(self_selected) - min <= i64::from(max_skew)
            }
            GroupKind::Affinity => self.count(domain) > 0 || (self.total == 0 && self_selected),
            GroupKind::AntiAffinity { .. } => self.count(domain) == 0,
        }
    }

    /// Whether a pod of the owner side may land in `domain`.
    ///
    /// `self_selected`: the owner pod itself is selected by this group. `eligible`: the
    /// eligible domains for the spread minimum (ignored for the hostname key, where a fresh
    /// node always offers a domain with 0).
    pub fn allows(
        &self,
        domain: &str,
        self_selected: bool,
        eligible: &[String],
        hostname_key: bool,
    ) -> bool {
        match self.key.kind {
            GroupKind::Spread {
                max_skew,
                min_domains,
            } => {
                let min = if hostname_key || (eligible.len() as i64) < i64::from(min_domains) {
                    0
                } else {
                    eligible.iter().map(|d| self.count(d)).min().unwrap_or(0)
                };
                self.count(domain) + i64::from(self_selected) - min <= i64::from(max_skew)
            }
            GroupKind::Affinity => self.count(domain) > 0 || (self.total == 0 && self_selected),
            GroupKind::AntiAffinity { .. } => self.count(domain) == 0,
        }
    }
}
