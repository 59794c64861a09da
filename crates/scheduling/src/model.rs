//! The owned views the solver reads: pods, existing nodes, NodePools with their instance types,
//! taints and tolerations, affinity terms, topology spread and volumes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::requirements::{Operator, Requirement, RequirementError, RequirementSpec, Requirements};
use crate::resources::Resources;

// ---- Taints and tolerations ----------------------------------------------------------------

/// Taint effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaintEffect {
    /// New pods that do not tolerate it are not scheduled.
    NoSchedule,
    /// Soft NoSchedule: Karpenter treats it as required until a pod's preferences are relaxed.
    PreferNoSchedule,
    /// Like NoSchedule, and running pods are evicted.
    NoExecute,
}

impl TaintEffect {
    /// Parses the manifest spelling.
    pub fn parse(s: &str) -> Option<TaintEffect> {
        match s {
            "NoSchedule" => Some(TaintEffect::NoSchedule),
            "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
            "NoExecute" => Some(TaintEffect::NoExecute),
            _ => None,
        }
    }

    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Optional value.
    pub value: Option<String>,
    /// Effect.
    pub effect: TaintEffect,
}

impl Taint {
    /// A taint.
    pub fn new(key: &str, value: Option<&str>, effect: TaintEffect) -> Taint {
        Taint {
            key: key.to_string(),
            value: value.map(str::to_string),
            effect,
        }
    }
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={}:{}", self.key, v, self.effect.as_str()),
            None => write!(f, "{}:{}", self.key, self.effect.as_str()),
        }
    }
}

/// A pod toleration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Toleration {
    /// Key; `None` with `exists` tolerates every key.
    pub key: Option<String>,
    /// `true` for operator Exists, `false` for Equal.
    pub exists: bool,
    /// Value compared under Equal.
    pub value: Option<String>,
    /// Effect; `None` matches every effect.
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    /// Whether this toleration tolerates `taint` (Kubernetes semantics).
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if let Some(e) = self.effect
            && e != taint.effect
        {
            return false;
        }
        match &self.key {
            None => self.exists,
            Some(k) => {
                if *k != taint.key {
                    return false;
                }
                self.exists
                    || self.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
            }
        }
    }

    /// Tolerates every PreferNoSchedule taint (what preference relaxation adds).
    pub fn prefer_no_schedule_wildcard() -> Toleration {
        Toleration {
            key: None,
            exists: true,
            value: None,
            effect: Some(TaintEffect::PreferNoSchedule),
        }
    }
}

/// The first taint in `taints` that `tolerations` do not tolerate (PreferNoSchedule counts as
/// a taint to tolerate unless `ignore_prefer_no_schedule`).
pub fn first_untolerated<'a>(
    taints: impl IntoIterator<Item = &'a Taint>,
    tolerations: &[Toleration],
    ignore_prefer_no_schedule: bool,
) -> Option<&'a Taint> {
    taints.into_iter().find(|t| {
        let soft_and_ignored =
            ignore_prefer_no_schedule && t.effect == TaintEffect::PreferNoSchedule;
        !(soft_and_ignored || tolerations.iter().any(|tol| tol.tolerates(t)))
    })
}

// ---- Label selectors -----------------------------------------------------------------------

/// A label selector (`matchLabels` + `matchExpressions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSelector {
    /// Exact label matches.
    pub match_labels: BTreeMap<String, String>,
    /// Expressions; operators In, NotIn, Exists, DoesNotExist.
    pub match_expressions: Vec<RequirementSpec>,
}

impl LabelSelector {
    /// Whether the selector matches `labels` (an empty selector matches everything).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let v = labels.get(&e.key);
                match e.operator {
                    Operator::In => v.is_some_and(|v| e.values.contains(v)),
                    Operator::NotIn => v.is_none_or(|v| !e.values.contains(v)),
                    Operator::Exists => v.is_some(),
                    Operator::DoesNotExist => v.is_none(),
                    // Not valid in label selectors: match nothing rather than everything.
                    _ => false,
                }
            })
    }

    /// A selector from `matchLabels` pairs.
    pub fn labels(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            match_expressions: vec![],
        }
    }
}

// ---- Affinity and topology spread ----------------------------------------------------------

/// A node-selector term: requirements that must all hold (AND).
pub type NodeSelectorTerm = Vec<RequirementSpec>;

/// A weighted preferred node-affinity term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PreferredNodeTerm {
    /// 1–100.
    pub weight: i32,
    /// The term.
    pub term: NodeSelectorTerm,
}

/// A pod (anti-)affinity term.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodAffinityTerm {
    /// Which pods; `None` selects no pod.
    pub label_selector: Option<LabelSelector>,
    /// Namespaces named explicitly.
    pub namespaces: Vec<String>,
    /// Namespaces selected by label (`Some(empty)` = all namespaces).
    pub namespace_selector: Option<LabelSelector>,
    /// The node label that defines a domain.
    pub topology_key: String,
}

/// A weighted preferred pod (anti-)affinity term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WeightedPodAffinityTerm {
    /// 1–100.
    pub weight: i32,
    /// The term.
    pub term: PodAffinityTerm,
}

/// What a spread constraint does when it cannot be met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WhenUnsatisfiable {
    /// Hard constraint.
    DoNotSchedule,
    /// Soft: treated as hard until relaxed.
    ScheduleAnyway,
}

/// Inclusion policy for spread counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InclusionPolicy {
    /// Only nodes that pass the filter count.
    Honor,
    /// Every node counts.
    Ignore,
}

/// A topology spread constraint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopologySpreadConstraint {
    /// Largest allowed difference between a domain and the least-populated eligible domain.
    pub max_skew: i32,
    /// The node label that defines a domain.
    pub topology_key: String,
    /// Hard or soft.
    pub when_unsatisfiable: WhenUnsatisfiable,
    /// Which pods count; `None` counts none.
    pub label_selector: Option<LabelSelector>,
    /// With fewer eligible domains than this, the global minimum is taken as 0.
    pub min_domains: Option<i32>,
    /// Default Honor: only nodes matching the pod's node selector/affinity count.
    pub node_affinity_policy: InclusionPolicy,
    /// Default Ignore: with Honor only nodes whose taints the pod tolerates count.
    pub node_taints_policy: InclusionPolicy,
    /// Label keys whose values (from the pod's own labels) join the selector.
    pub match_label_keys: Vec<String>,
}

/// A host port a pod binds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// Port number.
    pub port: i32,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// Host IP; empty or `0.0.0.0` means every address.
    pub host_ip: String,
}

impl HostPort {
    /// Whether two host ports collide.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.port == other.port
            && self.protocol == other.protocol
            && (wildcard(&self.host_ip)
                || wildcard(&other.host_ip)
                || self.host_ip == other.host_ip)
    }
}

// ---- Pods ----------------------------------------------------------------------------------

/// What the solver needs to know about a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    /// UID (tie-break of the queue order).
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Creation time in any monotone unit (seconds since the epoch from the converters).
    pub creation_timestamp: i64,
    /// Requests with Kubernetes semantics, including `pods: 1`.
    pub requests: Resources,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity: OR of terms.
    pub required_node_affinity: Vec<NodeSelectorTerm>,
    /// Preferred node affinity.
    pub preferred_node_affinity: Vec<PreferredNodeTerm>,
    /// Required pod affinity terms.
    pub pod_affinity: Vec<PodAffinityTerm>,
    /// Preferred pod affinity terms.
    pub preferred_pod_affinity: Vec<WeightedPodAffinityTerm>,
    /// Required pod anti-affinity terms.
    pub pod_anti_affinity: Vec<PodAffinityTerm>,
    /// Preferred pod anti-affinity terms.
    pub preferred_pod_anti_affinity: Vec<WeightedPodAffinityTerm>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
    /// Topology spread constraints.
    pub topology_spread: Vec<TopologySpreadConstraint>,
    /// Host ports.
    pub host_ports: Vec<HostPort>,
    /// PersistentVolumeClaim names (in the pod's namespace).
    pub pvcs: Vec<String>,
    /// Kind of the controlling owner (`ReplicaSet`, `DaemonSet`, `StatefulSet`…).
    pub owner_kind: Option<String>,
    /// Node the pod is bound to (for running pods).
    pub node_name: Option<String>,
    /// Node-selector terms used `matchFields` (upstream ignores such pods).
    pub uses_match_fields: bool,
}

impl PodView {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

// ---- Instance types ------------------------------------------------------------------------

/// Resources an instance type loses to the system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overhead {
    /// kubelet `kubeReserved`.
    pub kube_reserved: Resources,
    /// kubelet `systemReserved`.
    pub system_reserved: Resources,
    /// Hard eviction thresholds.
    pub eviction_threshold: Resources,
}

impl Overhead {
    /// Sum of the three parts.
    pub fn total(&self) -> Resources {
        let mut t = self.kube_reserved.clone();
        t.add(&self.system_reserved);
        t.add(&self.eviction_threshold);
        t
    }
}

/// Allocatable = capacity − overhead, with hugepages also taken out of memory; never negative.
pub fn allocatable(capacity: &Resources, overhead: &Overhead) -> Resources {
    let mut a = capacity.minus(&overhead.total());
    let hugepages: i64 = capacity
        .extended
        .iter()
        .filter(|(n, _)| n.starts_with("hugepages-"))
        .map(|(_, v)| *v)
        .sum();
    a.memory -= hugepages;
    a.clamp_non_negative();
    a
}

/// Where and how an instance type can be bought.
#[derive(Debug, Clone, PartialEq)]
pub struct Offering {
    /// `topology.kubernetes.io/zone`.
    pub zone: String,
    /// `on-demand`, `spot` or `reserved`.
    pub capacity_type: String,
    /// USD per hour.
    pub price: f64,
    /// Whether it can be launched now.
    pub available: bool,
    /// Capacity reservation ID (reserved offerings).
    pub reservation_id: Option<String>,
    /// Instances still free in the reservation.
    pub reservation_capacity: Option<i64>,
    /// Further offering labels (e.g. `topology.k8s.aws/zone-id`).
    pub labels: BTreeMap<String, String>,
    /// Capacity override for this offering.
    pub capacity: Option<Resources>,
    /// Overhead override for this offering.
    pub overhead: Option<Overhead>,
}

impl Offering {
    /// An available offering without overrides.
    pub fn new(zone: &str, capacity_type: &str, price: f64) -> Offering {
        Offering {
            zone: zone.to_string(),
            capacity_type: capacity_type.to_string(),
            price,
            available: true,
            reservation_id: None,
            reservation_capacity: None,
            labels: BTreeMap::new(),
            capacity: None,
            overhead: None,
        }
    }

    /// The value this offering has for an offering label key.
    pub fn label(&self, key: &str) -> Option<&str> {
        match key {
            karpenter_apis::labels::ZONE => Some(&self.zone),
            karpenter_apis::labels::CAPACITY_TYPE => Some(&self.capacity_type),
            _ => self.labels.get(key).map(String::as_str),
        }
    }

    /// Whether this offering satisfies `reqs` on the keys it defines.
    pub fn compatible(&self, reqs: &Requirements) -> bool {
        OfferingFilter::new(reqs).allows(self)
    }
}

/// Requirements pre-resolved for checking many offerings: the zone and capacity-type entries
/// are looked up once instead of once per offering.
pub struct OfferingFilter<'a> {
    zone: Option<&'a Requirement>,
    capacity_type: Option<&'a Requirement>,
    reqs: &'a Requirements,
}

impl<'a> OfferingFilter<'a> {
    /// Resolves the offering keys of `reqs`.
    pub fn new(reqs: &'a Requirements) -> OfferingFilter<'a> {
        OfferingFilter {
            zone: reqs.get(karpenter_apis::labels::ZONE),
            capacity_type: reqs.get(karpenter_apis::labels::CAPACITY_TYPE),
            reqs,
        }
    }

    /// Whether `o` satisfies the requirements on the keys it defines.
    #[inline]
    pub fn allows(&self, o: &Offering) -> bool {
        self.zone.is_none_or(|r| r.has(&o.zone))
            && self.capacity_type.is_none_or(|r| r.has(&o.capacity_type))
            && (o.labels.is_empty()
                || o.labels
                    .iter()
                    .all(|(k, v)| self.reqs.get(k).is_none_or(|r| r.has(v))))
    }
}

/// A purchasable machine shape.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceType {
    /// Name (`m5.large`).
    pub name: String,
    /// Its labels as requirements (single values, `DoesNotExist` for absent well-known labels;
    /// zone/capacity-type come from the offerings).
    pub requirements: Requirements,
    /// Capacity.
    pub capacity: Resources,
    /// System overhead.
    pub overhead: Overhead,
    /// Offerings.
    pub offerings: Vec<Offering>,
}

impl InstanceType {
    /// Allocatable for an offering (offering overrides win).
    pub fn allocatable_for(&self, offering: &Offering) -> Resources {
        allocatable(
            offering.capacity.as_ref().unwrap_or(&self.capacity),
            offering.overhead.as_ref().unwrap_or(&self.overhead),
        )
    }

    /// Allocatable without offering overrides.
    pub fn allocatable(&self) -> Resources {
        allocatable(&self.capacity, &self.overhead)
    }

    /// Capacity for an offering.
    pub fn capacity_for<'a>(&'a self, offering: &'a Offering) -> &'a Resources {
        offering.capacity.as_ref().unwrap_or(&self.capacity)
    }

    /// Requirements including the zone and capacity-type values its offerings span.
    pub fn requirements_with_offerings(&self) -> Requirements {
        let mut r = self.requirements.clone();
        if !r.has(karpenter_apis::labels::ZONE) {
            r.add(
                karpenter_apis::labels::ZONE,
                Requirement::in_values(self.offerings.iter().map(|o| o.zone.clone())),
            );
        }
        if !r.has(karpenter_apis::labels::CAPACITY_TYPE) {
            r.add(
                karpenter_apis::labels::CAPACITY_TYPE,
                Requirement::in_values(self.offerings.iter().map(|o| o.capacity_type.clone())),
            );
        }
        r
    }
}

// ---- NodePools and nodes -------------------------------------------------------------------

/// Reference to the NodeClass a NodePool uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeClassRef {
    /// API group (`karpenter.k8s.aws`).
    pub group: String,
    /// Kind (`EC2NodeClass`).
    pub kind: String,
    /// Name.
    pub name: String,
}

/// What the solver needs to know about a NodePool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodePoolView {
    /// Name.
    pub name: String,
    /// Higher is tried first (unset ≡ 0).
    pub weight: i32,
    /// `spec.template.spec.requirements`.
    pub requirements: Requirements,
    /// `spec.template.metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.template.metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// Taints pods must tolerate.
    pub taints: Vec<Taint>,
    /// Startup taints (not required to be tolerated).
    pub startup_taints: Vec<Taint>,
    /// `spec.limits` in the crate's integer units (`nodes` is a count); empty = unlimited.
    pub limits: BTreeMap<String, i64>,
    /// `spec.template.spec.nodeClassRef`.
    pub node_class_ref: NodeClassRef,
    /// The instance types the cloud provider offers for this NodePool.
    pub instance_types: Vec<InstanceType>,
}

/// An existing node or an in-flight NodeClaim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeView {
    /// Node name (or NodeClaim name while in flight).
    pub name: String,
    /// Labels (for an in-flight NodeClaim: its resolved labels).
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
    /// Startup taints, ignored until the node is initialized.
    pub startup_taints: Vec<Taint>,
    /// Capacity (counted against NodePool limits).
    pub capacity: Resources,
    /// Allocatable.
    pub allocatable: Resources,
    /// Requests of pods already bound or nominated (daemonsets included).
    pub used: Resources,
    /// Host ports already taken.
    pub host_ports: Vec<HostPort>,
    /// Attachable volume limit per CSI driver.
    pub volume_limits: BTreeMap<String, i64>,
    /// Volume IDs attached per CSI driver.
    pub volumes_attached: BTreeMap<String, BTreeSet<String>>,
    /// Karpenter has marked it initialized (or it is not managed).
    pub initialized: bool,
    /// A NodeClaim that has not registered a Node yet.
    pub in_flight: bool,
}

impl NodeView {
    /// The NodePool that owns it, from its label.
    pub fn nodepool(&self) -> Option<&str> {
        self.labels
            .get(karpenter_apis::labels::NODEPOOL)
            .map(String::as_str)
    }

    /// Domain of this node for a topology key (hostname falls back to the node name).
    pub fn domain(&self, key: &str) -> Option<&str> {
        match self.labels.get(key) {
            Some(v) => Some(v),
            None if key == karpenter_apis::labels::HOSTNAME => Some(&self.name),
            None => None,
        }
    }

    /// Taints that apply for scheduling: ephemeral and startup taints are ignored until the node
    /// is initialized.
    pub fn effective_taints(&self) -> impl Iterator<Item = &Taint> {
        self.taints.iter().filter(move |t| {
            self.initialized
                || !(karpenter_apis::labels::is_ephemeral_taint(
                    &t.key,
                    t.value.as_deref(),
                    t.effect.as_str(),
                ) || self.startup_taints.contains(t))
        })
    }
}

// ---- Volumes -------------------------------------------------------------------------------

/// A PersistentVolumeClaim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PvcView {
    /// StorageClass name.
    pub storage_class: Option<String>,
    /// Bound PersistentVolume name.
    pub volume_name: Option<String>,
}

/// A PersistentVolume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PvView {
    /// Required node affinity (OR of terms).
    pub node_affinity: Vec<NodeSelectorTerm>,
    /// CSI driver, if CSI.
    pub csi_driver: Option<String>,
    /// `local`/`hostPath` volume: hostname terms are ignored (the node will be new).
    pub local: bool,
}

/// A StorageClass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageClassView {
    /// Provisioner (the CSI driver name).
    pub provisioner: String,
    /// `volumeBindingMode: WaitForFirstConsumer`.
    pub wait_for_first_consumer: bool,
    /// `allowedTopologies` (OR of terms).
    pub allowed_topologies: Vec<NodeSelectorTerm>,
}

/// Volumes known to the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Volumes {
    /// PVCs keyed `namespace/name`.
    pub pvcs: BTreeMap<String, PvcView>,
    /// PVs by name.
    pub pvs: BTreeMap<String, PvView>,
    /// StorageClasses by name.
    pub storage_classes: BTreeMap<String, StorageClassView>,
}

/// One volume a pod needs: its ID, CSI driver and topology alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedVolume {
    /// PV name, or `namespace/pvc` when not yet bound.
    pub id: String,
    /// CSI driver counting against attach limits.
    pub driver: Option<String>,
    /// OR of requirement sets (empty = anywhere).
    pub topology: Vec<Requirements>,
}

impl Volumes {
    /// Resolves a pod's PVCs. Missing PVCs / StorageClasses are reported by name.
    pub fn resolve(&self, pod: &PodView) -> Result<Vec<ResolvedVolume>, String> {
        let mut out = Vec::new();
        for claim in &pod.pvcs {
            let key = format!("{}/{}", pod.namespace, claim);
            let pvc = self
                .pvcs
                .get(&key)
                .ok_or_else(|| format!("persistentvolumeclaim {key:?} not found"))?;
            let terms_to_reqs = |terms: &[NodeSelectorTerm], drop_hostname: bool| {
                terms
                    .iter()
                    .filter_map(|t| {
                        let specs: Vec<RequirementSpec> = t
                            .iter()
                            .filter(|s| {
                                !(drop_hostname && s.key == karpenter_apis::labels::HOSTNAME)
                            })
                            .cloned()
                            .collect();
                        Requirements::from_specs(&specs).ok()
                    })
                    .collect::<Vec<_>>()
            };
            if let Some(pv_name) = &pvc.volume_name {
                let pv = self
                    .pvs
                    .get(pv_name)
                    .ok_or_else(|| format!("persistentvolume {pv_name:?} not found"))?;
                out.push(ResolvedVolume {
                    id: pv_name.clone(),
                    driver: pv.csi_driver.clone(),
                    topology: terms_to_reqs(&pv.node_affinity, pv.local),
                });
            } else {
                let sc = match &pvc.storage_class {
                    Some(name) => Some(
                        self.storage_classes
                            .get(name)
                            .ok_or_else(|| format!("storageclass {name:?} not found"))?,
                    ),
                    None => None,
                };
                out.push(ResolvedVolume {
                    id: key,
                    driver: sc.map(|s| s.provisioner.clone()),
                    topology: sc
                        .filter(|s| s.wait_for_first_consumer)
                        .map(|s| terms_to_reqs(&s.allowed_topologies, false))
                        .unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }
}

/// Alternatives of node requirements that satisfy every volume (cross product of their OR terms).
pub fn volume_alternatives(volumes: &[ResolvedVolume]) -> Vec<Requirements> {
    let mut alts = vec![Requirements::new()];
    for v in volumes {
        if v.topology.is_empty() {
            continue;
        }
        let mut next = Vec::new();
        for a in &alts {
            for t in &v.topology {
                let mut m = a.clone();
                m.add_all(t);
                if m.iter().all(|(_, r)| !r.is_empty()) {
                    next.push(m);
                }
            }
        }
        alts = next;
    }
    alts
}

/// Parses a node-selector term into requirements (keys normalised).
pub fn term_requirements(term: &NodeSelectorTerm) -> Result<Requirements, RequirementError> {
    Requirements::from_specs(term)
}
