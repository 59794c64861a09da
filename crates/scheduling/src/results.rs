//! What a solve returns: new NodeClaims, placements on existing nodes, and structured reasons for
//! every pod that could not be placed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::model::{NodeClassRef, Taint};
use crate::requirements::{Incompatibility, Requirement, RequirementSpec, Requirements};
use crate::resources::Resources;

/// A NodeClaim the solver wants created.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNodeClaim {
    /// Placeholder hostname (stable within one solve), also its topology domain.
    pub hostname: String,
    /// Owning NodePool.
    pub nodepool: String,
    /// Requirements including `karpenter.sh/capacity-type In [...]`. The instance-type list is
    /// kept in `instance_types` (shared, not copied per claim); [`NewNodeClaim::requirement_specs`]
    /// merges it back as `node.kubernetes.io/instance-type In [...]`.
    pub requirements: Requirements,
    /// Instance-type names, cheapest first (at most `max_instance_types`).
    pub instance_types: Vec<Arc<str>>,
    /// minValues of the instance-type requirement, if the NodePool set one.
    pub instance_type_min_values: Option<u32>,
    /// Capacity types of the offerings still allowed.
    pub capacity_types: Vec<String>,
    /// Cheapest price among the allowed offerings (USD/h).
    pub cheapest_price: f64,
    /// Σ pod requests + the smallest DaemonSet overhead among its instance types.
    pub requests: Resources,
    /// DaemonSet overhead included in `requests`.
    pub daemonset_overhead: Resources,
    /// UIDs of the pods placed on it, in placement order.
    pub pods: Vec<String>,
    /// Labels for the NodeClaim (template labels, nodepool, nodeclass, single-valued custom keys).
    pub labels: BTreeMap<String, String>,
    /// Annotations from the template (plus min-values-relaxed).
    pub annotations: BTreeMap<String, String>,
    /// Template taints.
    pub taints: Vec<Taint>,
    /// Template startup taints.
    pub startup_taints: Vec<Taint>,
    /// NodeClass reference.
    pub node_class_ref: NodeClassRef,
    /// A BestEffort minValues relaxation happened.
    pub min_values_relaxed: bool,
}

impl NewNodeClaim {
    /// Requirements as NodeClaim specs (Gte/Lte, both bounds as two entries).
    pub fn requirement_specs(&self) -> Vec<RequirementSpec> {
        let mut r = self.requirements.clone();
        let mut types = Requirement::in_values(self.instance_types.iter().map(|t| t.to_string()));
        types.min_values = self.instance_type_min_values;
        r.remove(karpenter_apis::labels::INSTANCE_TYPE);
        r.add(karpenter_apis::labels::INSTANCE_TYPE, types);
        r.to_specs()
    }
}

/// Everything a solve decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulingResults {
    /// NodeClaims to create, in creation order.
    pub new_nodeclaims: Vec<NewNodeClaim>,
    /// Pod UID → existing node (or in-flight NodeClaim) name.
    pub existing_placements: BTreeMap<String, String>,
    /// Pod UID → why it could not be placed.
    pub unschedulable: BTreeMap<String, PodError>,
    /// Preferences dropped per pod UID while placing it.
    pub relaxed: BTreeMap<String, Vec<Relaxation>>,
    /// The caller stopped the solve early ([`crate::solver::solve_until`]): what is placed is
    /// valid and kept, the pods it did not reach are [`PodError::NotTried`], and the cost
    /// re-pack was skipped.
    pub stopped: bool,
}

impl SchedulingResults {
    /// Total pods placed (existing + new).
    pub fn placed(&self) -> usize {
        self.existing_placements.len()
            + self
                .new_nodeclaims
                .iter()
                .map(|n| n.pods.len())
                .sum::<usize>()
    }
}

/// One preference dropped, in upstream's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relaxation {
    /// The first remaining required node-affinity OR-term was dropped.
    RequiredNodeAffinityTerm,
    /// The heaviest preferred pod-affinity term was dropped.
    PreferredPodAffinity,
    /// The heaviest preferred pod-anti-affinity term was dropped.
    PreferredPodAntiAffinity,
    /// The heaviest preferred node-affinity term was dropped.
    PreferredNodeAffinity,
    /// A ScheduleAnyway spread constraint was dropped.
    ScheduleAnywaySpread {
        /// Its topology key.
        topology_key: String,
    },
    /// PreferNoSchedule taints became tolerated.
    ToleratePreferNoSchedule,
}

/// Why a pod was left out.
#[derive(Debug, Clone, PartialEq)]
pub enum PodError {
    /// Not considered at all (upstream emits "ignoring pod").
    Ignored(IgnoreReason),
    /// Considered, but no existing node or NodePool could take it.
    Unschedulable {
        /// How many existing / in-flight nodes were tried.
        existing_nodes: usize,
        /// Why each NodePool (in the order tried) refused the pod.
        nodepools: Vec<NodePoolRejection>,
    },
    /// A NodeClaim was found, but truncating its instance types to the maximum broke a Strict
    /// minValues requirement, so the claim was dropped.
    MinValuesAfterTruncation {
        /// The NodePool.
        nodepool: String,
        /// The key whose minValues could not be kept.
        key: String,
    },
    /// No NodePool has any usable instance type.
    NoNodePools,
    /// The solve was stopped (its caller's time limit) before this pod was tried; nothing is
    /// known against it, so callers retry it rather than report it unschedulable.
    NotTried,
}

/// Why a pod is not scheduled at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreReason {
    /// The pod requires `karpenter.sh/nodepool DoesNotExist`.
    NodePoolDoesNotExist,
    /// nodeSelector / required node affinity names a restricted key.
    RestrictedLabel {
        /// The key.
        key: String,
        /// Why it is restricted.
        reason: String,
    },
    /// Node-selector terms use `matchFields`.
    MatchFields,
    /// A requirement could not be parsed.
    InvalidRequirement(String),
    /// A PVC / PV / StorageClass is missing.
    MissingVolume(String),
}

/// One NodePool's refusal.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePoolRejection {
    /// The NodePool.
    pub nodepool: String,
    /// Why.
    pub reason: Rejection,
}

/// Why a node, NodeClaim or NodePool refused a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// The NodePool's own requirements left no instance type.
    NoCompatibleInstanceTypes,
    /// A taint is not tolerated.
    TaintNotTolerated(Taint),
    /// A requirement conflicts.
    IncompatibleRequirements(Incompatibility),
    /// Volume topology conflicts with the node.
    VolumeTopology(Incompatibility),
    /// `limits.nodes` is used up.
    NodeLimitExhausted,
    /// Every instance type would exceed a limit.
    LimitsExceeded {
        /// The limited resources that block.
        resources: Vec<String>,
    },
    /// No instance type has room / a matching offering.
    NoInstanceTypeFits {
        /// What had to fit (pods + DaemonSet overhead of the closest type).
        requests: Resources,
        /// The requirements the types had to meet.
        requirements: String,
        /// The instance type that came closest.
        closest: Option<ClosestMiss>,
    },
    /// Topology (spread / affinity / anti-affinity) cannot be met.
    Topology(TopologyRejection),
    /// A host port is already taken.
    HostPortConflict {
        /// Port.
        port: i32,
        /// Protocol.
        protocol: String,
    },
    /// The node has no room.
    InsufficientResources {
        /// (resource, requested, free).
        missing: Vec<(String, i64, i64)>,
    },
    /// Per-driver volume attach limit reached.
    VolumeLimit {
        /// CSI driver.
        driver: String,
        /// Its limit.
        limit: i64,
    },
    /// Strict minValues cannot be met.
    MinValues {
        /// The key.
        key: String,
        /// minValues.
        required: u32,
        /// Distinct values left.
        available: u32,
    },
}

/// The closest instance type and what it lacked.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosestMiss {
    /// Instance type name.
    pub instance_type: String,
    /// What was wrong: requirement conflict, no offering, or missing resources.
    pub problem: MissKind,
}

/// What kept the closest instance type out.
#[derive(Debug, Clone, PartialEq)]
pub enum MissKind {
    /// A requirement conflict.
    Requirements(Incompatibility),
    /// No available offering matches the zone / capacity-type requirements.
    NoOffering,
    /// (resource, requested incl. overhead, allocatable).
    Resources(Vec<(String, i64, i64)>),
}

/// A topology failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyRejection {
    /// `topology spread`, `pod affinity`, `pod anti-affinity` or `inverse pod anti-affinity`.
    pub kind: &'static str,
    /// Topology key.
    pub key: String,
    /// Domains that would have been acceptable (empty = none).
    pub allowed_domains: Vec<String>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NoCompatibleInstanceTypes => {
                f.write_str("nodepool requirements filtered out all available instance types")
            }
            Rejection::TaintNotTolerated(t) => write!(f, "did not tolerate taint {t}"),
            Rejection::IncompatibleRequirements(i) => write!(f, "{i}"),
            Rejection::VolumeTopology(i) => write!(f, "volume topology: {i}"),
            Rejection::NodeLimitExhausted => {
                f.write_str("node limits have been exhausted for nodepool")
            }
            Rejection::LimitsExceeded { resources } => write!(
                f,
                "all available instance types exceed limits for nodepool ({})",
                resources.join(", ")
            ),
            Rejection::NoInstanceTypeFits {
                requests,
                requirements,
                closest,
            } => {
                write!(
                    f,
                    "no instance type met the scheduling requirements or had enough resources, requests={requests}, requirements={requirements}"
                )?;
                if let Some(c) = closest {
                    write!(f, ", closest {}: ", c.instance_type)?;
                    match &c.problem {
                        MissKind::Requirements(i) => write!(f, "{i}")?,
                        MissKind::NoOffering => f.write_str(
                            "no available offering in the allowed zones/capacity types",
                        )?,
                        MissKind::Resources(m) => {
                            for (i, (n, want, have)) in m.iter().enumerate() {
                                if i > 0 {
                                    f.write_str(", ")?;
                                }
                                write!(
                                    f,
                                    "{n} needs {} but has {}",
                                    crate::quantity::format_resource(n, *want),
                                    crate::quantity::format_resource(n, *have)
                                )?;
                            }
                        }
                    }
                }
                Ok(())
            }
            Rejection::Topology(t) => {
                write!(f, "unsatisfiable {} on {}", t.kind, t.key)?;
                if !t.allowed_domains.is_empty() {
                    write!(f, " (allowed domains: {})", t.allowed_domains.join(", "))?;
                }
                Ok(())
            }
            Rejection::HostPortConflict { port, protocol } => {
                write!(f, "host port {port}/{protocol} already in use")
            }
            Rejection::InsufficientResources { missing } => {
                f.write_str("insufficient ")?;
                for (i, (n, want, have)) in missing.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(
                        f,
                        "{n} (requested {}, free {})",
                        crate::quantity::format_resource(n, *want),
                        crate::quantity::format_resource(n, *have)
                    )?;
                }
                Ok(())
            }
            Rejection::VolumeLimit { driver, limit } => {
                write!(f, "volume attach limit {limit} reached for driver {driver}")
            }
            Rejection::MinValues {
                key,
                required,
                available,
            } => write!(
                f,
                "minValues requirement is not met for label {key} (needs {required}, {available} available)"
            ),
        }
    }
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IgnoreReason::NodePoolDoesNotExist => {
                f.write_str("pod requires karpenter.sh/nodepool DoesNotExist")
            }
            IgnoreReason::RestrictedLabel { key, reason } => {
                write!(f, "label {key:?} is restricted: {reason}")
            }
            IgnoreReason::MatchFields => f.write_str("node selector terms use matchFields"),
            IgnoreReason::InvalidRequirement(e) => write!(f, "invalid requirement: {e}"),
            IgnoreReason::MissingVolume(e) => write!(f, "{e}"),
        }
    }
}

impl fmt::Display for PodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodError::Ignored(r) => write!(f, "ignoring pod, {r}"),
            PodError::NoNodePools => f.write_str("no nodepools found"),
            PodError::NotTried => f.write_str(
                "not tried: the scheduling simulation was stopped before reaching this pod",
            ),
            PodError::MinValuesAfterTruncation { nodepool, key } => write!(
                f,
                "nodepool {nodepool:?} couldn't meet minValues requirements for {key} after truncating instance types"
            ),
            PodError::Unschedulable {
                existing_nodes,
                nodepools,
            } => {
                if nodepools.is_empty() {
                    return write!(
                        f,
                        "no nodepool could be tried; {existing_nodes} existing nodes refused the pod"
                    );
                }
                for (i, r) in nodepools.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(
                        f,
                        "incompatible with nodepool {:?}, {}",
                        r.nodepool, r.reason
                    )?;
                }
                Ok(())
            }
        }
    }
}
