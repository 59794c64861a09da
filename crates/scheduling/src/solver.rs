//! The bin-packing solver: `solve(input, options) -> SchedulingResults`.
//!
//! Upstream's shape, kept on purpose: pods are queued by CPU, memory, creation time, UID; each pod
//! tries existing nodes first, then this batch's NodeClaims (fewest pods first), then a fresh
//! NodeClaim per NodePool in weight order; preferences relax one step at a time; the loop stops
//! when a full pass over the queue made no progress.
//!
//! Where this differs from upstream (deliberately):
//! - Topology domains for a new NodeClaim are chosen among *viable* domains: if the
//!   least-populated zone has no instance type with an available offering that fits, the next
//!   zone is tried instead of failing the pod (upstream picks one domain and fails).
//! - A NodeClaim that counts a pod in a zone/capacity-type group is always pinned to a single
//!   domain, so topology counts are never attributed to a NodeClaim whose domain is undecided.
//! - NodePool limits reserve the max capacity of a NodeClaim's *current* candidate types, and
//!   the reservation shrinks as the candidate set shrinks (upstream keeps the first, larger,
//!   reservation for the whole solve and so refuses pods it could have placed).
//! - Instance types with per-offering capacity overrides are judged by their smallest
//!   allocatable among the allowed offerings, so every offering the NodeClaim allows fits
//!   (upstream accepts a type if *some* offering fits and may then launch one that does not).
//! - Cost-aware packing guard: a pod does not join an in-flight NodeClaim when that would make
//!   the claim's cheapest type cost more than twice "claim as is + the pod on its own node";
//!   upstream keeps packing while any type fits, which on the real catalog ends on 6–24 TB
//!   memory giants. After 16 such refusals a fresh NodeClaim is opened (bounded scan).
//! - Cost-efficient steering (not in upstream): a new NodeClaim first tries only the NodePool's
//!   types priced within 5 % of the value of their room at the batch's LP shadow prices for CPU
//!   and memory (`efficient_types`), so claims grow towards shapes a cheap packing uses; when the
//!   solve finishes the claim again lists every type that fits its pods (cheapest first). Off
//!   for NodePools with limits, reserved offerings or minValues, and for single-pod batches.
//! - Cost re-pack (not in upstream, `repack`): after the greedy pass, pods without placement
//!   constraints (no topology spread, pod (anti-)affinity of their own or selecting them, host
//!   ports, volumes, preferences, or node requirements beyond the NodePool's; topology keys
//!   other than hostname are allowed, the pod then keeps its claim's domain for them) are taken out of
//!   their NodeClaims and packed again from the fractional covering optimum over pod shapes ×
//!   types ([`crate::cover`]); the result is kept only when its launch prices (cheapest type
//!   that fits each NodeClaim) are strictly cheaper in total. Same NodePools as the steering.
//!   Upstream's first-fit fills a claim towards its largest listed type and lets the first pods
//!   choose the family for everything after them: on the real catalog (2,000 pods) 1.37×
//!   the pod-shape bound on-demand, against 1.022× after the re-pack (1.025× with spot,
//!   1.015× with GPUs). Candidates: rounding of the covering LP, a value-per-dollar greedy, and the
//!   rounding of a configuration LP over whole-pod node fills, per class of pinned domains and
//!   for all classes together (pinned pods ride in the slack of nodes in their domain).
//! - `PreparedNodePools` / `solve_prepared`: the per-NodePool digest of instance types is built
//!   once and reused across solves (upstream rebuilds it every time).
//! - Open-ended custom requirements (`Exists`, `NotIn`, bounds) get a concrete, deterministic
//!   label value on the NodeClaim (upstream generates a random one).
//! - NodeClaim output keeps the instance-type list in `instance_types` (shared `Arc<str>`
//!   names) instead of duplicating it inside `requirements`; `requirement_specs()` merges it.

// Rejections carry data for explanations; they are built only on the cold failure path.
#![allow(clippy::result_large_err)]

mod repack;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use karpenter_apis::labels;

use crate::model::{
    HostPort, InstanceType, NodePoolView, NodeView, PodView, ResolvedVolume, Toleration, Volumes,
    WhenUnsatisfiable, first_untolerated, volume_alternatives,
};
use crate::requirements::{Incompatibility, Operator, Requirement, Requirements};
use crate::resources::{NODES, Resources};
use crate::results::{
    ClosestMiss, IgnoreReason, MissKind, NewNodeClaim, NodePoolRejection, PodError, Rejection,
    Relaxation, SchedulingResults, TopologyRejection,
};
use crate::topology::{Group, GroupKey, GroupKind, NamespaceSet, NodeFilter};

/// In-flight NodeClaims that could take a pod only by getting dearer are tried at most this many
/// times per pod before a fresh NodeClaim is opened.
const MAX_COSTLY_CLAIMS_TRIED: usize = 16;

/// A type counts as cost-efficient when its price is at most this much above the value of its
/// room at the batch's shadow prices (1.05 = 5 % dearer than the fractional optimum's rate).
const EFFICIENT_SLACK: f64 = 1.05;

/// The types worth packing new NodeClaims against: those priced within `EFFICIENT_SLACK` of
/// the value of their allocatable CPU and memory at the shadow prices of the fractional
/// covering problem "cover the batch's total CPU and memory with any mix of types at least
/// cost" (the LP dual: per-resource prices `y` maximising `y·demand` with `y·room ≤ price` for
/// every type). Only types on (or near) the LP's optimal face can be part of a cheap packing;
/// upstream's "any type that fits" drifts to whatever family the first pods happen to suit.
/// `None` when there is nothing to steer by (no demand, no priced types, or every type is
/// efficient).
fn efficient_types(room: &[Resources], prices: &[f64], pods: &[PodView]) -> Option<Bits> {
    const GIB: f64 = (1u64 << 30) as f64;
    let (mut demand_cpu, mut demand_mem) = (0f64, 0f64);
    for p in pods {
        demand_cpu += p.requests.cpu.max(0) as f64 / 1000.0;
        demand_mem += p.requests.memory.max(0) as f64 / GIB;
    }
    if demand_cpu <= 0.0 && demand_mem <= 0.0 {
        return None;
    }
    // (index, cores, GiB, $/h) of every priced type with room for both.
    let points: Vec<(usize, f64, f64, f64)> = room
        .iter()
        .zip(prices)
        .enumerate()
        .filter_map(|(i, (r, &price))| {
            let (c, m) = (r.cpu as f64 / 1000.0, r.memory as f64 / GIB);
            (c > 0.0 && m > 0.0 && price.is_finite() && price > 0.0).then_some((i, c, m, price))
        })
        .collect();
    if points.is_empty() {
        return None;
    }
    // For a memory price λ the best CPU price is min (p − λm)/c; the dual objective is concave
    // in λ, so a ternary search finds its maximum.
    let cpu_price = |lambda: f64| {
        points
            .iter()
            .map(|&(_, c, m, price)| (price - lambda * m) / c)
            .fold(f64::INFINITY, f64::min)
    };
    let dual = |lambda: f64| demand_cpu * cpu_price(lambda) + demand_mem * lambda;
    let (mut lo, mut hi) = (
        0f64,
        points
            .iter()
            .map(|&(_, _, m, price)| price / m)
            .fold(f64::INFINITY, f64::min),
    );
    for _ in 0..40 {
        let a = lo + (hi - lo) / 3.0;
        let b = hi - (hi - lo) / 3.0;
        if dual(a) < dual(b) {
            lo = a;
        } else {
            hi = b;
        }
    }
    let y_mem = (lo + hi) / 2.0;
    let y_cpu = cpu_price(y_mem).max(0.0);
    let mut out = Bits::zeros(room.len());
    let mut count = 0usize;
    for &(i, c, m, price) in &points {
        let value = y_cpu * c + y_mem * m;
        if value > 0.0 && price <= EFFICIENT_SLACK * value {
            out.set(i);
            count += 1;
        }
    }
    (count > 0 && count < room.len()).then_some(out)
}

/// Whether soft preferences are honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PreferencePolicy {
    /// Preferences are treated as required until relaxed (upstream default).
    #[default]
    Respect,
    /// Preferred affinities and ScheduleAnyway spreads are ignored.
    Ignore,
}

/// How minValues is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinValuesPolicy {
    /// A NodeClaim must keep minValues distinct values (upstream default).
    #[default]
    Strict,
    /// minValues is lowered to what is achievable and the NodeClaim is annotated.
    BestEffort,
}

/// Solver knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolveOptions {
    /// Preference policy.
    pub preference_policy: PreferencePolicy,
    /// minValues policy.
    pub min_values_policy: MinValuesPolicy,
    /// Instance types written into a NodeClaim (upstream: 600).
    pub max_instance_types: usize,
    /// When a reserved offering is compatible, only reserved capacity may be used
    /// (`DisableReservedCapacityFallback`): a NodeClaim whose compatible reservations are used up
    /// is dropped and its pods report "no instance type fits" under `capacity-type In [reserved]`
    /// with a no-offering miss. Reservations are
    /// assigned to NodeClaims in creation order when the solve finishes.
    pub reserved_capacity_strict: bool,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            preference_policy: PreferencePolicy::Respect,
            min_values_policy: MinValuesPolicy::Strict,
            max_instance_types: 600,
            reserved_capacity_strict: false,
        }
    }
}

/// An owned snapshot: everything a solve reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulingInput {
    /// Pods to place.
    pub pods: Vec<PodView>,
    /// Existing nodes and in-flight NodeClaims.
    pub nodes: Vec<NodeView>,
    /// Pods already running (with `node_name`), for topology, anti-affinity and host ports.
    pub bound_pods: Vec<PodView>,
    /// NodePools with their instance types (any order; the solver orders by weight, then name
    /// descending).
    pub nodepools: Vec<NodePoolView>,
    /// One representative pod per DaemonSet.
    pub daemonsets: Vec<PodView>,
    /// Extra topology domains per key (e.g. every zone of the region).
    pub topology_domains: BTreeMap<String, BTreeSet<String>>,
    /// Namespace labels (for namespaceSelector).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// PVCs, PVs, StorageClasses.
    pub volumes: Volumes,
}

/// A fixed-size bitset over a NodePool's instance types.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    fn zeros(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
    fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
    fn and(&self, other: &Bits) -> Bits {
        Bits(
            self.0
                .iter()
                .zip(other.0.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a & b)
                .collect(),
        )
    }
    fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(wi * 64 + b)
            })
        })
    }
}

#[derive(Debug)]
struct DsGroup {
    overhead: Resources,
    ports: Vec<HostPort>,
}

/// NodePool-derived state that does not depend on the pods or nodes of a solve: computed once
/// per NodePool (and DaemonSet set) and shared by every solve that reuses it.
#[derive(Debug)]
pub(crate) struct PreparedPool {
    name: String,
    type_count: usize,
    template: Requirements,
    /// Indices into the NodePool's `instance_types` of the types the template admits.
    type_idx: Vec<usize>,
    /// Allocatable minus DaemonSet overhead, for types without offering overrides.
    room: Vec<Resources>,
    uniform: Vec<bool>,
    max_capacity: Vec<Resources>,
    ds_of_type: Vec<usize>,
    ds_groups: Vec<DsGroup>,
    has_min_values: bool,
    all: Bits,
    /// Distinct capacity types over the pool's offerings (bit positions in offer summaries).
    ct_names: Vec<String>,
    /// Per type, per offering: index into `ct_names`.
    offer_ct: Vec<Vec<u8>>,
    has_reserved: bool,
    names: Vec<Arc<str>>,
    /// Per type: the cheapest available offering the template allows.
    template_prices: Vec<f64>,
    /// Caches seeded for the bare template (the requirement set of every unconstrained pod).
    template_compat: Option<Arc<Bits>>,
    template_offers: Option<Arc<OfferSummary>>,
}

struct Pool<'a> {
    np: &'a NodePoolView,
    prep: Arc<PreparedPool>,
    types: Vec<&'a InstanceType>,
    compat_cache: RefCell<HashMap<Requirements, Arc<Bits>>>,
    /// limits − usage − reservations of this batch's NodeClaims; `None` = unlimited.
    remaining: Option<BTreeMap<String, i64>>,
    /// Per requirement set: per type (cheapest allowed price, capacity-type bits), and the
    /// type indices with an allowed offering sorted by (price, name).
    offer_cache: RefCell<HashMap<Requirements, Arc<OfferSummary>>>,
    /// Types whose price is within `EFFICIENT_SLACK` of the value of their room at the batch's
    /// shadow prices: new NodeClaims pack against these first (`None` = no restriction).
    efficient: Option<Bits>,
}

// The shared, prepared part reads like the pool's own fields (`pool.room`, `pool.template`):
// the solver's many call sites stay unchanged whether the pool was prepared now or reused.
impl std::ops::Deref for Pool<'_> {
    type Target = PreparedPool;
    fn deref(&self) -> &PreparedPool {
        &self.prep
    }
}

#[derive(Debug)]
struct OfferSummary {
    per_type: Vec<(f64, u64)>,
    by_price: Vec<usize>,
}

struct Claim {
    pool: usize,
    hostname: String,
    requirements: Requirements,
    types: Bits,
    requests: Resources,
    pods: Vec<usize>,
    host_ports: Vec<HostPort>,
    reservation: Resources,
    min_values_relaxed: bool,
    /// Cheapest price over the candidate types' allowed offerings.
    price: f64,
    /// When packing was steered to the pool's cost-efficient types: the unrestricted
    /// candidates, re-filtered against the final requests when the solve finishes so the
    /// NodeClaim still lists every type that fits (the cheapest of those is launched).
    wide: Option<Bits>,
    /// Per-resource max of room over candidate types: a quick upper bound for rejects
    /// (`None` when offering overrides make the base allocatable no bound).
    max_room: Option<Resources>,
}

struct NodeState<'a> {
    node: &'a NodeView,
    remaining: Resources,
    host_ports: Vec<HostPort>,
    volumes: BTreeMap<String, BTreeSet<String>>,
}

struct PodState<'a> {
    pod: &'a PodView,
    requests: Resources,
    selector_reqs: Requirements,
    required_terms: Vec<Requirements>,
    term_idx: usize,
    preferred_terms: Vec<Requirements>,
    pref_idx: usize,
    requirements: Requirements,
    volumes: Vec<ResolvedVolume>,
    volume_alts: Vec<Requirements>,
    required_groups: Vec<usize>,
    preferred_affinity: Vec<usize>,
    pa_idx: usize,
    preferred_anti: Vec<usize>,
    pn_idx: usize,
    schedule_anyway: Vec<usize>,
    sa_idx: usize,
    counted_in: Vec<usize>,
    tolerations: Vec<Toleration>,
    tolerate_pns: bool,
    relaxations: Vec<Relaxation>,
}

impl PodState<'_> {
    fn active_groups(&self) -> impl Iterator<Item = usize> + '_ {
        self.required_groups
            .iter()
            .chain(self.preferred_affinity.iter().skip(self.pa_idx))
            .chain(self.preferred_anti.iter().skip(self.pn_idx))
            .chain(self.schedule_anyway.iter().skip(self.sa_idx))
            .copied()
    }

    fn rebuild_requirements(&mut self) {
        let mut r = self.selector_reqs.clone();
        if let Some(t) = self.required_terms.get(self.term_idx) {
            r.add_all(t);
        }
        if let Some(t) = self.preferred_terms.get(self.pref_idx) {
            r.add_all(t);
        }
        self.requirements = r;
    }
}

/// Where a topology decision lands on a NodeClaim.
struct Plan {
    requirements: Option<Requirements>,
    types: Bits,
    min_values_relaxed: bool,
}

/// NodePools' instance types digested once (template filtering, allocatable minus DaemonSet
/// overhead, offering summaries) for reuse across many solves: the provisioner prepares when
/// NodePools, their instance types or the DaemonSets change and solves every batch against it.
/// Cheap to clone (shared). A prepared NodePool is used only when its name and instance-type
/// count match the input's NodePool and the DaemonSets are equal; otherwise that NodePool is
/// prepared afresh inside the solve. The check is shallow on purpose (it must stay cheap):
/// callers rebuild whenever a NodePool's requirements or its instance types' offerings,
/// prices or capacities change, or a stale digest is used.
#[derive(Debug, Clone, Default)]
pub struct PreparedNodePools {
    pools: Vec<Arc<PreparedPool>>,
    daemonsets: Vec<PodView>,
}

impl PreparedNodePools {
    /// Prepares every NodePool for the given DaemonSets.
    pub fn new(nodepools: &[NodePoolView], daemonsets: &[PodView]) -> PreparedNodePools {
        PreparedNodePools {
            pools: nodepools
                .iter()
                .map(|np| prepare_pool(np, daemonsets))
                .collect(),
            daemonsets: daemonsets.to_vec(),
        }
    }
}

/// Runs the solver. Deterministic: the same input and options give the same output.
pub fn solve(input: &SchedulingInput, options: &SolveOptions) -> SchedulingResults {
    solve_until(input, None, options, &|| false)
}

/// [`solve`] reusing NodePools prepared by [`PreparedNodePools::new`] (same output as `solve`
/// when the preparation matches the input's NodePools, instance types and DaemonSets).
pub fn solve_prepared(
    input: &SchedulingInput,
    prepared: &PreparedNodePools,
    options: &SolveOptions,
) -> SchedulingResults {
    solve_until(input, Some(prepared), options, &|| false)
}

/// [`solve`] that asks `stop` before each pod it tries and stops placing once it answers true,
/// keeping what it has placed (upstream keeps a timed-out solve's results). The crate has no
/// clock, so the caller's `stop` carries the time limit. Pods not reached come back as
/// [`PodError::NotTried`] and [`SchedulingResults::stopped`] is set; the cost re-pack is
/// skipped then, so a stopped solve returns promptly.
pub fn solve_until(
    input: &SchedulingInput,
    prepared: Option<&PreparedNodePools>,
    options: &SolveOptions,
    stop: &dyn Fn() -> bool,
) -> SchedulingResults {
    let mut s = Solver::new(input, prepared, options);
    s.run(stop);
    if !s.results.stopped {
        s.repack();
    }
    s.finish()
}

struct Solver<'a> {
    input: &'a SchedulingInput,
    opts: &'a SolveOptions,
    pools: Vec<Pool<'a>>,
    nodes: Vec<NodeState<'a>>,
    claims: Vec<Claim>,
    claim_order: BTreeSet<(usize, usize)>,
    groups: Vec<Group>,
    group_index: HashMap<GroupKey, usize>,
    pods: Vec<PodState<'a>>,
    universe: BTreeMap<String, Vec<String>>,
    results: SchedulingResults,
}

fn sort_by_weight(terms: &mut [(i32, usize)]) {
    terms.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
}

impl<'a> Solver<'a> {
    fn new(
        input: &'a SchedulingInput,
        prepared: Option<&PreparedNodePools>,
        opts: &'a SolveOptions,
    ) -> Solver<'a> {
        let mut s = Solver {
            input,
            opts,
            pools: Vec::new(),
            nodes: Vec::new(),
            claims: Vec::new(),
            claim_order: BTreeSet::new(),
            groups: Vec::new(),
            group_index: HashMap::new(),
            pods: Vec::new(),
            universe: BTreeMap::new(),
            results: SchedulingResults::default(),
        };
        s.build_nodes();
        s.build_pools(prepared);
        s.build_pods();
        s.build_universe();
        s.count_bound_pods();
        s
    }

    // ---- setup -------------------------------------------------------------------------

    fn build_nodes(&mut self) {
        let mut order: Vec<&NodeView> = self.input.nodes.iter().collect();
        order.sort_by(|a, b| b.initialized.cmp(&a.initialized).then(a.name.cmp(&b.name)));
        for n in order {
            let mut ports = n.host_ports.clone();
            for p in &self.input.bound_pods {
                if p.node_name.as_deref() == Some(n.name.as_str()) {
                    ports.extend(p.host_ports.iter().cloned());
                }
            }
            self.nodes.push(NodeState {
                node: n,
                remaining: n.allocatable.minus(&n.used),
                host_ports: ports,
                volumes: n.volumes_attached.clone(),
            });
        }
    }

    fn build_pools(&mut self, prepared: Option<&PreparedNodePools>) {
        let mut nps: Vec<&NodePoolView> = self.input.nodepools.iter().collect();
        nps.sort_by(|a, b| b.weight.cmp(&a.weight).then(b.name.cmp(&a.name)));
        for np in nps {
            let reuse = prepared
                .filter(|pr| pr.daemonsets == self.input.daemonsets)
                .and_then(|pr| {
                    pr.pools
                        .iter()
                        .find(|pp| pp.name == np.name && pp.type_count == np.instance_types.len())
                        .cloned()
                });
            let prep = reuse.unwrap_or_else(|| prepare_pool(np, &self.input.daemonsets));
            let remaining = (!np.limits.is_empty()).then(|| {
                let mut rem = np.limits.clone();
                for n in &self.input.nodes {
                    if n.nodepool() == Some(np.name.as_str()) {
                        for (k, v) in rem.iter_mut() {
                            *v -= if k == NODES { 1 } else { n.capacity.get(k) };
                        }
                    }
                }
                rem
            });
            let mut pool = Pool::new(np, prep, remaining);
            pool.efficient = if pool.remaining.is_none()
                && !pool.has_reserved
                && !pool.has_min_values
                && self.input.pods.len() > 1
            {
                efficient_types(&pool.room, &pool.template_prices, &self.input.pods)
            } else {
                None
            };
            self.pools.push(pool);
        }
    }

    fn group_id(&mut self, key: GroupKey) -> usize {
        if let Some(g) = self.group_index.get(&key) {
            return *g;
        }
        self.groups.push(Group::new(key.clone()));
        let id = self.groups.len() - 1;
        self.group_index.insert(key, id);
        id
    }

    fn affinity_key(
        &self,
        pod: &PodView,
        term: &crate::model::PodAffinityTerm,
        kind: GroupKind,
    ) -> GroupKey {
        GroupKey {
            kind,
            key: labels::normalize_label_key(&term.topology_key).to_string(),
            namespaces: NamespaceSet::resolve(
                &pod.namespace,
                &term.namespaces,
                term.namespace_selector.as_ref(),
                &self.input.namespaces,
            ),
            selector: term.label_selector.clone(),
            node_filter: None,
        }
    }

    fn build_pods(&mut self) {
        let respect = self.opts.preference_policy == PreferencePolicy::Respect;
        let input = self.input;
        for pod in &input.pods {
            let mut requests = pod.requests.clone();
            if requests.pods == 0 {
                requests.pods = 1;
            }
            let mut st = PodState {
                pod,
                requests,
                selector_reqs: Requirements::new(),
                required_terms: Vec::new(),
                term_idx: 0,
                preferred_terms: Vec::new(),
                pref_idx: 0,
                requirements: Requirements::new(),
                volumes: Vec::new(),
                volume_alts: Vec::new(),
                required_groups: Vec::new(),
                preferred_affinity: Vec::new(),
                pa_idx: 0,
                preferred_anti: Vec::new(),
                pn_idx: 0,
                schedule_anyway: Vec::new(),
                sa_idx: 0,
                counted_in: Vec::new(),
                tolerations: pod.tolerations.clone(),
                tolerate_pns: false,
                relaxations: Vec::new(),
            };
            match self.validate(pod, &mut st) {
                Ok(()) => {}
                Err(reason) => {
                    self.results
                        .unschedulable
                        .insert(pod.uid.clone(), PodError::Ignored(reason));
                    self.pods.push(st);
                    continue;
                }
            }
            st.rebuild_requirements();
            // Topology groups owned by this pod.
            for term in &pod.pod_affinity {
                let k = self.affinity_key(pod, term, GroupKind::Affinity);
                st.required_groups.push(self.group_id(k));
            }
            for term in &pod.pod_anti_affinity {
                let k = self.affinity_key(pod, term, GroupKind::AntiAffinity { required: true });
                st.required_groups.push(self.group_id(k));
            }
            if respect {
                let mut pa: Vec<(i32, usize)> = Vec::new();
                for (i, w) in pod.preferred_pod_affinity.iter().enumerate() {
                    let k = self.affinity_key(pod, &w.term, GroupKind::Affinity);
                    let g = self.group_id(k);
                    pa.push((w.weight, i));
                    st.preferred_affinity.push(g);
                }
                sort_by_weight(&mut pa);
                st.preferred_affinity = pa
                    .iter()
                    .filter_map(|(_, i)| st.preferred_affinity.get(*i).copied())
                    .collect();
                let mut pn: Vec<(i32, usize)> = Vec::new();
                for (i, w) in pod.preferred_pod_anti_affinity.iter().enumerate() {
                    let k = self.affinity_key(
                        pod,
                        &w.term,
                        GroupKind::AntiAffinity { required: false },
                    );
                    let g = self.group_id(k);
                    pn.push((w.weight, i));
                    st.preferred_anti.push(g);
                }
                sort_by_weight(&mut pn);
                st.preferred_anti = pn
                    .iter()
                    .filter_map(|(_, i)| st.preferred_anti.get(*i).copied())
                    .collect();
            }
            for tsc in &pod.topology_spread {
                if tsc.when_unsatisfiable == WhenUnsatisfiable::ScheduleAnyway && !respect {
                    continue;
                }
                let mut selector = tsc.label_selector.clone();
                if let Some(sel) = selector.as_mut() {
                    for k in &tsc.match_label_keys {
                        if let Some(v) = pod.labels.get(k) {
                            sel.match_labels.insert(k.clone(), v.clone());
                        }
                    }
                }
                let node_filter = {
                    let reqs = (tsc.node_affinity_policy == crate::model::InclusionPolicy::Honor
                        && !st.strict_requirements().is_empty())
                    .then(|| st.strict_requirements());
                    let tols = (tsc.node_taints_policy == crate::model::InclusionPolicy::Honor)
                        .then(|| pod.tolerations.clone());
                    (reqs.is_some() || tols.is_some()).then_some(NodeFilter {
                        requirements: reqs,
                        tolerations: tols,
                    })
                };
                let key = GroupKey {
                    kind: GroupKind::Spread {
                        max_skew: tsc.max_skew.max(1),
                        min_domains: tsc.min_domains.unwrap_or(1).max(1),
                    },
                    key: labels::normalize_label_key(&tsc.topology_key).to_string(),
                    namespaces: NamespaceSet::Some([pod.namespace.clone()].into_iter().collect()),
                    selector,
                    node_filter,
                };
                let g = self.group_id(key);
                match tsc.when_unsatisfiable {
                    WhenUnsatisfiable::DoNotSchedule => st.required_groups.push(g),
                    WhenUnsatisfiable::ScheduleAnyway => st.schedule_anyway.push(g),
                }
            }
            if !respect {
                st.tolerate_pns = true;
            }
            self.pods.push(st);
        }
        // Required anti-affinity of running pods constrains every pod they select.
        for bp in &input.bound_pods {
            for term in &bp.pod_anti_affinity {
                let k = self.affinity_key(bp, term, GroupKind::AntiAffinity { required: true });
                self.group_id(k);
            }
        }
        // Which groups count each pending pod.
        for st in &mut self.pods {
            st.counted_in = self
                .groups
                .iter()
                .enumerate()
                .filter(|(_, g)| g.key.selects(st.pod))
                .map(|(i, _)| i)
                .collect();
        }
    }

    fn validate(&self, pod: &PodView, st: &mut PodState<'_>) -> Result<(), IgnoreReason> {
        if pod.uses_match_fields {
            return Err(IgnoreReason::MatchFields);
        }
        let check_key = |key: &str| -> Result<(), IgnoreReason> {
            match labels::restricted_label_reason(labels::normalize_label_key(key), false) {
                Some(reason) => Err(IgnoreReason::RestrictedLabel {
                    key: key.to_string(),
                    reason: reason.to_string(),
                }),
                None => Ok(()),
            }
        };
        for k in pod.node_selector.keys() {
            check_key(k)?;
        }
        st.selector_reqs = Requirements::from_labels(pod.node_selector.iter());
        for term in &pod.required_node_affinity {
            for r in term {
                check_key(&r.key)?;
                if r.key == labels::NODEPOOL && r.operator == Operator::DoesNotExist {
                    return Err(IgnoreReason::NodePoolDoesNotExist);
                }
            }
            let reqs = Requirements::from_specs(term)
                .map_err(|e| IgnoreReason::InvalidRequirement(e.to_string()))?;
            st.required_terms.push(reqs);
        }
        let mut prefs: Vec<(i32, usize)> = Vec::new();
        let mut parsed = Vec::new();
        if self.opts.preference_policy == PreferencePolicy::Respect {
            for (i, p) in pod.preferred_node_affinity.iter().enumerate() {
                // An unusable preferred term is dropped rather than ignoring the pod.
                if p.term.iter().any(|r| check_key(&r.key).is_err()) {
                    continue;
                }
                if let Ok(reqs) = Requirements::from_specs(&p.term) {
                    prefs.push((p.weight, i));
                    parsed.push((i, reqs));
                }
            }
        }
        sort_by_weight(&mut prefs);
        st.preferred_terms = prefs
            .iter()
            .filter_map(|(_, i)| parsed.iter().find(|(j, _)| j == i).map(|(_, r)| r.clone()))
            .collect();
        st.volumes = self
            .input
            .volumes
            .resolve(pod)
            .map_err(IgnoreReason::MissingVolume)?;
        st.volume_alts = volume_alternatives(&st.volumes);
        Ok(())
    }

    fn build_universe(&mut self) {
        let keys: BTreeSet<String> = self.groups.iter().map(|g| g.key.key.clone()).collect();
        for key in keys {
            if key == labels::HOSTNAME {
                continue;
            }
            let mut set: BTreeSet<String> = BTreeSet::new();
            for n in &self.input.nodes {
                if let Some(d) = n.domain(&key) {
                    set.insert(d.to_string());
                }
            }
            if let Some(extra) = self.input.topology_domains.get(&key) {
                set.extend(extra.iter().cloned());
            }
            for pool in &self.pools {
                let tmpl = pool.template.get(&key);
                for t in pool.types.iter() {
                    let mut vals: Vec<String> = Vec::new();
                    if key == labels::ZONE
                        || key == labels::CAPACITY_TYPE
                        || t.offerings.iter().any(|o| o.labels.contains_key(&key))
                    {
                        for o in &t.offerings {
                            if o.available
                                && o.compatible(&pool.template)
                                && let Some(v) = o.label(&key)
                            {
                                vals.push(v.to_string());
                            }
                        }
                    } else if let Some(r) = t.requirements.get(&key) {
                        if r.is_finite() {
                            vals.extend(r.values().iter().cloned());
                        }
                    } else if let Some(r) = tmpl
                        && r.is_finite()
                    {
                        vals.extend(r.values().iter().cloned());
                    }
                    for v in vals {
                        if tmpl.is_none_or(|r| r.has(&v)) {
                            set.insert(v);
                        }
                    }
                }
            }
            self.universe.insert(key, set.into_iter().collect());
        }
    }

    fn count_bound_pods(&mut self) {
        let by_name: HashMap<&str, &NodeView> = self
            .input
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n))
            .collect();
        for bp in &self.input.bound_pods {
            let Some(node) = bp.node_name.as_deref().and_then(|n| by_name.get(n)) else {
                continue;
            };
            for g in &mut self.groups {
                let Some(d) = node.domain(&g.key.key) else {
                    continue;
                };
                if g.key.selects(bp) && node_passes_filter(g.key.node_filter.as_ref(), node) {
                    g.record(d);
                }
            }
            for term in &bp.pod_anti_affinity {
                let key = GroupKey {
                    kind: GroupKind::AntiAffinity { required: true },
                    key: labels::normalize_label_key(&term.topology_key).to_string(),
                    namespaces: NamespaceSet::resolve(
                        &bp.namespace,
                        &term.namespaces,
                        term.namespace_selector.as_ref(),
                        &self.input.namespaces,
                    ),
                    selector: term.label_selector.clone(),
                    node_filter: None,
                };
                if let Some(gi) = self.group_index.get(&key)
                    && let (Some(g), Some(d)) = (self.groups.get_mut(*gi), node.domain(&key.key))
                {
                    g.record_owner(d);
                }
            }
        }
    }

    // ---- main loop ---------------------------------------------------------------------

    fn run(&mut self, stop: &dyn Fn() -> bool) {
        let mut order: Vec<usize> = (0..self.pods.len())
            .filter(|i| {
                self.pods
                    .get(*i)
                    .is_some_and(|p| !self.results.unschedulable.contains_key(&p.pod.uid))
            })
            .collect();
        order.sort_by(|&a, &b| {
            let (pa, pb) = match (self.pods.get(a), self.pods.get(b)) {
                (Some(x), Some(y)) => (x, y),
                _ => return std::cmp::Ordering::Equal,
            };
            pb.requests
                .cpu
                .cmp(&pa.requests.cpu)
                .then(pb.requests.memory.cmp(&pa.requests.memory))
                .then(pa.pod.creation_timestamp.cmp(&pb.pod.creation_timestamp))
                .then(pa.pod.uid.cmp(&pb.pod.uid))
        });
        let mut queue: VecDeque<usize> = order.into();
        let mut failed_at: HashMap<usize, usize> = HashMap::new();
        let mut errors: HashMap<usize, PodError> = HashMap::new();
        while let Some(p) = queue.pop_front() {
            if failed_at.get(&p) == Some(&(queue.len() + 1)) {
                // A whole pass without progress: everything left is unschedulable.
                queue.push_front(p);
                break;
            }
            if stop() {
                queue.push_front(p);
                self.results.stopped = true;
                break;
            }
            match self.try_schedule(p) {
                Ok(()) => {
                    errors.remove(&p);
                }
                Err(e) => {
                    errors.insert(p, e);
                    queue.push_back(p);
                    failed_at.insert(p, queue.len());
                }
            }
        }
        let stopped = self.results.stopped;
        for p in queue {
            if let Some(st) = self.pods.get(p) {
                // A stopped solve may leave pods it never tried: they get no verdict.
                let fallback = if stopped {
                    PodError::NotTried
                } else {
                    PodError::NoNodePools
                };
                let e = errors.remove(&p).unwrap_or(fallback);
                self.results.unschedulable.insert(st.pod.uid.clone(), e);
            }
        }
    }

    fn try_schedule(&mut self, p: usize) -> Result<(), PodError> {
        loop {
            match self.add(p) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if !self.relax(p) {
                        return Err(e);
                    }
                }
            }
        }
    }

    fn relax(&mut self, p: usize) -> bool {
        let any_pns = self.pools.iter().any(|pl| {
            pl.np
                .taints
                .iter()
                .any(|t| t.effect == crate::model::TaintEffect::PreferNoSchedule)
        }) || self.nodes.iter().any(|n| {
            n.node
                .taints
                .iter()
                .any(|t| t.effect == crate::model::TaintEffect::PreferNoSchedule)
        });
        let Some(st) = self.pods.get_mut(p) else {
            return false;
        };
        let step = if st.required_terms.len() > st.term_idx + 1 {
            st.term_idx += 1;
            Relaxation::RequiredNodeAffinityTerm
        } else if st.pa_idx < st.preferred_affinity.len() {
            st.pa_idx += 1;
            Relaxation::PreferredPodAffinity
        } else if st.pn_idx < st.preferred_anti.len() {
            st.pn_idx += 1;
            Relaxation::PreferredPodAntiAffinity
        } else if st.pref_idx < st.preferred_terms.len() {
            st.pref_idx += 1;
            Relaxation::PreferredNodeAffinity
        } else if st.sa_idx < st.schedule_anyway.len() {
            let g = st.schedule_anyway.get(st.sa_idx).copied();
            st.sa_idx += 1;
            Relaxation::ScheduleAnywaySpread {
                topology_key: g
                    .and_then(|g| self.groups.get(g))
                    .map(|g| g.key.key.clone())
                    .unwrap_or_default(),
            }
        } else if !st.tolerate_pns && any_pns {
            st.tolerate_pns = true;
            st.tolerations
                .push(Toleration::prefer_no_schedule_wildcard());
            Relaxation::ToleratePreferNoSchedule
        } else {
            return false;
        };
        st.rebuild_requirements();
        st.relaxations.push(step);
        true
    }

    fn add(&mut self, p: usize) -> Result<(), PodError> {
        for ni in 0..self.nodes.len() {
            if self.try_node(p, ni).is_ok() {
                self.commit_node(p, ni);
                return Ok(());
            }
        }
        let Some(st) = self.pods.get(p) else {
            return Err(PodError::NoNodePools);
        };
        let req = st.requests.clone();
        // A pod with hostname anti-affinity against pods already on every NodeClaim can skip
        // them all (the common "one per node" workload would otherwise be quadratic).
        // Likewise when an anti-affinity term already has a selected pod in every domain of a
        // non-hostname key (e.g. every zone).
        let skip_claims = st.active_groups().any(|g| {
            self.groups.get(g).is_some_and(|g| {
                if !matches!(g.key.kind, GroupKind::AntiAffinity { .. }) {
                    return false;
                }
                if g.key.key == labels::HOSTNAME {
                    return g.claim_domains >= self.claim_order.len();
                }
                self.universe
                    .get(&g.key.key)
                    .is_some_and(|u| !u.is_empty() && u.iter().all(|d| g.count(d) > 0))
            })
        });
        // Own hostname-keyed groups: checked per claim with one lookup before the full attempt.
        // Own groups on other keys are checked the same way against claims already pinned to a
        // domain (the spread minimum does not depend on the claim).
        let hostname_groups: Vec<(usize, bool)> = st
            .active_groups()
            .filter_map(|g| {
                let group = self.groups.get(g)?;
                (group.key.key == labels::HOSTNAME).then(|| (g, group.key.selects(st.pod)))
            })
            .collect();
        let pinned_groups: Vec<(usize, bool, i64)> = st
            .active_groups()
            .filter_map(|g| {
                let group = self.groups.get(g)?;
                (group.key.key != labels::HOSTNAME)
                    .then(|| (g, group.key.selects(st.pod), self.spread_min(group)))
            })
            .collect();
        let mut standalone: Option<f64> = None;
        let mut too_dear = 0usize;
        let mut cursor = if skip_claims {
            None
        } else {
            self.claim_order.iter().next().copied()
        };
        while let Some(entry) = cursor {
            let ci = entry.1;
            let quick_ok = self.claims.get(ci).is_some_and(|c| {
                c.max_room
                    .as_ref()
                    .is_none_or(|m| m.fits(&c.requests.plus(&req)))
                    && hostname_groups.iter().all(|(g, self_sel)| {
                        self.groups
                            .get(*g)
                            .is_none_or(|group| group.allows_min(&c.hostname, *self_sel, 0))
                    })
                    && pinned_groups.iter().all(|(g, self_sel, min)| {
                        self.groups.get(*g).is_none_or(|group| {
                            c.requirements
                                .get(&group.key.key)
                                .and_then(|r| r.single_value())
                                .is_none_or(|d| group.allows_min(d, *self_sel, *min))
                        })
                    })
            });
            if quick_ok && let Ok(plan) = self.try_claim(p, ci) {
                if self.worth_joining(p, ci, &plan, &mut standalone) {
                    self.commit_claim(p, ci, plan);
                    return Ok(());
                }
                // Bounded search: after this many claims that fit but would get dearer, a
                // fresh NodeClaim is the better home (and the scan stays linear).
                too_dear += 1;
                if too_dear >= MAX_COSTLY_CLAIMS_TRIED {
                    break;
                }
            }
            cursor = self
                .claim_order
                .range((std::ops::Bound::Excluded(entry), std::ops::Bound::Unbounded))
                .next()
                .copied();
        }
        let mut rejections = Vec::new();
        for pi in 0..self.pools.len() {
            match self.try_new_claim(p, pi) {
                Ok(()) => return Ok(()),
                Err(reason) => rejections.push(NodePoolRejection {
                    nodepool: self
                        .pools
                        .get(pi)
                        .map(|x| x.np.name.clone())
                        .unwrap_or_default(),
                    reason,
                }),
            }
        }
        if self.pools.is_empty() && self.nodes.is_empty() {
            return Err(PodError::NoNodePools);
        }
        Err(PodError::Unschedulable {
            existing_nodes: self.nodes.len(),
            nodepools: rejections,
        })
    }

    /// Cost-aware packing guard (not in upstream): joining an in-flight NodeClaim is refused
    /// when the claim's cheapest price would exceed twice the price of keeping the claim as it
    /// is plus running the pod on a node of its own. Upstream keeps adding pods while *any* instance type still fits, which with a real
    /// catalog ends in a handful of exotic giants (12 TB-memory `u7i` types) at many times the
    /// cost of ordinary nodes.
    fn worth_joining(
        &self,
        p: usize,
        ci: usize,
        plan: &Plan,
        standalone: &mut Option<f64>,
    ) -> bool {
        let Some(claim) = self.claims.get(ci) else {
            return false;
        };
        let Some(pool) = self.pools.get(claim.pool) else {
            return false;
        };
        let reqs = plan.requirements.as_ref().unwrap_or(&claim.requirements);
        let after = pool.cheapest(reqs, &plan.types);
        let increase = after - claim.price;
        if increase <= 1e-9 {
            return true;
        }
        let alone = *standalone.get_or_insert_with(|| self.standalone_price(p));
        // Joining may cost more than the pod alone would (bigger nodes pack better later), but
        // never more than twice what running the claim and the pod apart would cost.
        after <= 2.0 * (claim.price + alone) + 1e-9
    }

    /// The cheapest price at which the pod could run alone, over all pools (∞ if nowhere).
    fn standalone_price(&self, p: usize) -> f64 {
        let Some(st) = self.pods.get(p) else {
            return f64::INFINITY;
        };
        let mut best = f64::INFINITY;
        for pool in &self.pools {
            let mut reqs = pool.template.clone();
            if pool.template.compatible(&st.requirements).is_err() {
                continue;
            }
            reqs.add_all(&st.requirements);
            let compat = pool.compat(&reqs);
            let summary = pool.offer_summary(&reqs);
            for t in compat.ones() {
                if pool.fits(t, Some(&reqs), &st.requests)
                    && let Some((price, _)) = summary.per_type.get(t)
                {
                    best = best.min(*price);
                }
            }
        }
        best
    }

    // ---- existing nodes ----------------------------------------------------------------

    fn try_node(&self, p: usize, ni: usize) -> Result<(), Rejection> {
        let st = self
            .pods
            .get(p)
            .ok_or(Rejection::NoCompatibleInstanceTypes)?;
        let ns = self
            .nodes
            .get(ni)
            .ok_or(Rejection::NoCompatibleInstanceTypes)?;
        let node = ns.node;
        if let Some(t) =
            first_untolerated(node.effective_taints(), &st.tolerations, st.tolerate_pns)
        {
            return Err(Rejection::TaintNotTolerated(t.clone()));
        }
        if !ns.remaining.fits(&st.requests) {
            return Err(Rejection::InsufficientResources {
                missing: ns.remaining.shortfall(&st.requests),
            });
        }
        if let Some(hp) = st
            .pod
            .host_ports
            .iter()
            .find(|hp| ns.host_ports.iter().any(|x| x.conflicts(hp)))
        {
            return Err(Rejection::HostPortConflict {
                port: hp.port,
                protocol: hp.protocol.clone(),
            });
        }
        self.check_volume_limits(st, &ns.volumes, &node.volume_limits)?;
        st.requirements
            .matches_labels(&node.labels)
            .map_err(Rejection::IncompatibleRequirements)?;
        if !st.volume_alts.is_empty()
            && !st
                .volume_alts
                .iter()
                .any(|a| a.matches_labels(&node.labels).is_ok())
        {
            let e = st
                .volume_alts
                .first()
                .and_then(|a| a.matches_labels(&node.labels).err())
                .unwrap_or(Incompatibility {
                    key: String::new(),
                    wanted: String::new(),
                    available: String::new(),
                });
            return Err(Rejection::VolumeTopology(e));
        }
        // Topology with fixed domains.
        for g in st.active_groups() {
            let Some(group) = self.groups.get(g) else {
                continue;
            };
            let key = &group.key.key;
            let Some(d) = node.domain(key) else {
                if matches!(group.key.kind, GroupKind::AntiAffinity { .. }) {
                    continue;
                }
                return Err(topology_rejection(group, vec![]));
            };
            if !group.allows_min(d, group.key.selects(st.pod), self.spread_min(group)) {
                return Err(topology_rejection(group, vec![]));
            }
        }
        for &g in &st.counted_in {
            let Some(group) = self.groups.get(g) else {
                continue;
            };
            if group.key.kind != (GroupKind::AntiAffinity { required: true }) {
                continue;
            }
            if let Some(d) = node.domain(&group.key.key)
                && group.owners_in(d) > 0
            {
                return Err(Rejection::Topology(TopologyRejection {
                    kind: "inverse pod anti-affinity",
                    key: group.key.key.clone(),
                    allowed_domains: vec![],
                }));
            }
        }
        Ok(())
    }

    fn check_volume_limits(
        &self,
        st: &PodState<'_>,
        attached: &BTreeMap<String, BTreeSet<String>>,
        limits: &BTreeMap<String, i64>,
    ) -> Result<(), Rejection> {
        let mut extra: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for v in &st.volumes {
            if let Some(d) = &v.driver
                && !attached.get(d).is_some_and(|s| s.contains(&v.id))
            {
                extra.entry(d).or_default().insert(&v.id);
            }
        }
        for (driver, new) in extra {
            if let Some(limit) = limits.get(driver) {
                let have = attached.get(driver).map_or(0, |s| s.len()) as i64;
                if have + new.len() as i64 > *limit {
                    return Err(Rejection::VolumeLimit {
                        driver: driver.to_string(),
                        limit: *limit,
                    });
                }
            }
        }
        Ok(())
    }

    /// The global minimum a spread constraint measures skew against (0 for the hostname key,
    /// where a fresh node is always possible, and when fewer than minDomains are eligible).
    fn spread_min(&self, group: &Group) -> i64 {
        let GroupKind::Spread { min_domains, .. } = group.key.kind else {
            return 0;
        };
        let key = &group.key.key;
        if key == labels::HOSTNAME {
            return 0;
        }
        let Some(all) = self.universe.get(key) else {
            return 0;
        };
        let honor = group
            .key
            .node_filter
            .as_ref()
            .and_then(|f| f.requirements.as_ref())
            .and_then(|r| r.get(key));
        let mut eligible = 0i64;
        let mut min = i64::MAX;
        for d in all.iter().filter(|d| honor.is_none_or(|r| r.has(d))) {
            eligible += 1;
            min = min.min(group.count(d));
        }
        if eligible < i64::from(min_domains) || min == i64::MAX {
            0
        } else {
            min
        }
    }

    fn commit_node(&mut self, p: usize, ni: usize) {
        let Some(st) = self.pods.get(p) else { return };
        let Some(ns) = self.nodes.get_mut(ni) else {
            return;
        };
        ns.remaining.sub(&st.requests);
        ns.host_ports.extend(st.pod.host_ports.iter().cloned());
        for v in &st.volumes {
            if let Some(d) = &v.driver {
                ns.volumes
                    .entry(d.clone())
                    .or_default()
                    .insert(v.id.clone());
            }
        }
        let node = ns.node;
        let own: Vec<usize> = st.active_groups().collect();
        for &g in &st.counted_in {
            if let Some(group) = self.groups.get_mut(g)
                && let Some(d) = node.domain(&group.key.key)
                && node_passes_filter(group.key.node_filter.as_ref(), node)
            {
                group.record(d);
            }
        }
        for g in own {
            if let Some(group) = self.groups.get_mut(g)
                && group.key.kind == (GroupKind::AntiAffinity { required: true })
                && let Some(d) = node.domain(&group.key.key)
            {
                group.record_owner(d);
            }
        }
        self.results
            .existing_placements
            .insert(st.pod.uid.clone(), node.name.clone());
        if !st.relaxations.is_empty() {
            self.results
                .relaxed
                .insert(st.pod.uid.clone(), st.relaxations.clone());
        }
    }

    // ---- NodeClaims --------------------------------------------------------------------

    fn try_new_claim(&mut self, p: usize, pi: usize) -> Result<(), Rejection> {
        let pool = self
            .pools
            .get(pi)
            .ok_or(Rejection::NoCompatibleInstanceTypes)?;
        if pool.types.is_empty() {
            return Err(Rejection::NoCompatibleInstanceTypes);
        }
        let st = self
            .pods
            .get(p)
            .ok_or(Rejection::NoCompatibleInstanceTypes)?;
        if let Some(t) = first_untolerated(pool.np.taints.iter(), &st.tolerations, st.tolerate_pns)
        {
            return Err(Rejection::TaintNotTolerated(t.clone()));
        }
        pool.template
            .compatible(&st.requirements)
            .map_err(Rejection::IncompatibleRequirements)?;
        // Limits: the node count, then types that would not fit in what is left.
        let mut base = pool.all.clone();
        if let Some(rem) = &pool.remaining {
            if rem.get(NODES).is_some_and(|n| *n < 1) {
                return Err(Rejection::NodeLimitExhausted);
            }
            let mut blocked: BTreeSet<String> = BTreeSet::new();
            let mut b = Bits::zeros(pool.types.len());
            for i in pool.all.ones() {
                let Some(cap) = pool.max_capacity.get(i) else {
                    continue;
                };
                let over: Vec<&String> = rem
                    .iter()
                    .filter(|(n, left)| n.as_str() != NODES && cap.get(n) > **left)
                    .map(|(n, _)| n)
                    .collect();
                if over.is_empty() {
                    b.set(i);
                } else {
                    blocked.extend(over.into_iter().cloned());
                }
            }
            if b.is_empty() {
                return Err(Rejection::LimitsExceeded {
                    resources: blocked.into_iter().collect(),
                });
            }
            base = b;
        }
        // Steer the new NodeClaim to the cost-efficient types first; the unrestricted set is the
        // fallback (and the source of the explanation when nothing fits).
        let steered = pool
            .efficient
            .as_ref()
            .map(|eff| base.and(eff))
            .filter(|b| !b.is_empty() && *b != base);
        let template = pool.template.clone();
        if let Some(narrow) = steered
            && self
                .open_claim(p, pi, template.clone(), narrow, Some(base.clone()))
                .is_ok()
        {
            return Ok(());
        }
        self.open_claim(p, pi, template, base, None)
    }

    fn open_claim(
        &mut self,
        p: usize,
        pi: usize,
        requirements: Requirements,
        types: Bits,
        wide: Option<Bits>,
    ) -> Result<(), Rejection> {
        let hostname = format!("hostname-placeholder-{:04}", self.claims.len());
        let claim = Claim {
            pool: pi,
            hostname,
            requirements,
            types,
            requests: Resources::new(),
            pods: Vec::new(),
            host_ports: Vec::new(),
            reservation: Resources::new(),
            min_values_relaxed: false,
            max_room: None,
            price: 0.0,
            wide,
        };
        self.claims.push(claim);
        let ci = self.claims.len() - 1;
        match self.try_claim(p, ci) {
            Ok(plan) => {
                self.claim_order.insert((0, ci));
                self.commit_claim(p, ci, plan);
                Ok(())
            }
            Err(e) => {
                self.claims.pop();
                Err(e)
            }
        }
    }

    fn try_claim(&self, p: usize, ci: usize) -> Result<Plan, Rejection> {
        let st = self
            .pods
            .get(p)
            .ok_or(Rejection::NoCompatibleInstanceTypes)?;
        let claim = self
            .claims
            .get(ci)
            .ok_or(Rejection::NoCompatibleInstanceTypes)?;
        let pool = self
            .pools
            .get(claim.pool)
            .ok_or(Rejection::NoCompatibleInstanceTypes)?;
        if let Some(t) = first_untolerated(pool.np.taints.iter(), &st.tolerations, st.tolerate_pns)
        {
            return Err(Rejection::TaintNotTolerated(t.clone()));
        }
        if let Some(hp) = st
            .pod
            .host_ports
            .iter()
            .find(|hp| claim.host_ports.iter().any(|x| x.conflicts(hp)))
        {
            return Err(Rejection::HostPortConflict {
                port: hp.port,
                protocol: hp.protocol.clone(),
            });
        }
        claim
            .requirements
            .compatible(&st.requirements)
            .map_err(Rejection::IncompatibleRequirements)?;
        let mut base: Option<Requirements> = None;
        if !st.requirements.is_empty() {
            let mut r = claim.requirements.clone();
            if r.add_all(&st.requirements) {
                base = Some(r);
            }
        }
        let total = claim.requests.plus(&st.requests);
        let alts: Vec<Option<&Requirements>> = if st.volume_alts.is_empty() {
            vec![None]
        } else {
            st.volume_alts.iter().map(Some).collect()
        };
        let mut last_err = None;
        for alt in alts {
            let mut reqs = base.clone();
            if let Some(a) = alt {
                let cur = reqs.as_ref().unwrap_or(&claim.requirements);
                if let Err(e) = cur.compatible(a) {
                    last_err = Some(Rejection::VolumeTopology(e));
                    continue;
                }
                let mut r = cur.clone();
                if r.add_all(a) {
                    reqs = Some(r);
                }
            }
            match self.plan_topology(p, ci, reqs, &total) {
                Ok(plan) => return Ok(plan),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or(Rejection::NoCompatibleInstanceTypes))
    }

    /// Decides topology domains for every key the pod's groups use, trying viable domains in
    /// preference order, and filters instance types.
    fn plan_topology(
        &self,
        p: usize,
        ci: usize,
        reqs: Option<Requirements>,
        total: &Resources,
    ) -> Result<Plan, Rejection> {
        let st = self
            .pods
            .get(p)
            .ok_or(Rejection::NoCompatibleInstanceTypes)?;
        let claim = self
            .claims
            .get(ci)
            .ok_or(Rejection::NoCompatibleInstanceTypes)?;
        // Keys still to decide: (key, allowed domains, first group deciding the order).
        let mut keys: Vec<(String, Vec<String>, usize)> = Vec::new();
        let cur = reqs.as_ref().unwrap_or(&claim.requirements);
        let own_count = st.active_groups().count();
        for (i, g) in st
            .active_groups()
            .chain(st.counted_in.iter().copied())
            .enumerate()
        {
            let Some(group) = self.groups.get(g) else {
                continue;
            };
            let key = &group.key.key;
            let is_own = i < own_count || st.active_groups().any(|x| x == g);
            let inverse = !is_own && group.key.kind == (GroupKind::AntiAffinity { required: true });
            if !is_own
                && !inverse
                && (key == labels::HOSTNAME
                    || cur.get(key).is_some_and(|r| r.single_value().is_some()))
            {
                continue;
            }
            let self_sel = is_own && group.key.selects(st.pod);
            let min = if is_own { self.spread_min(group) } else { 0 };
            let ok = |d: &str| {
                if is_own {
                    group.allows_min(d, self_sel, min)
                } else if inverse {
                    group.owners_in(d) == 0
                } else {
                    true
                }
            };
            let fail = || {
                let kind = if is_own {
                    group.key.kind.describe()
                } else {
                    "inverse pod anti-affinity"
                };
                Rejection::Topology(TopologyRejection {
                    kind,
                    key: key.clone(),
                    allowed_domains: vec![],
                })
            };
            // Fixed domain: the claim's own hostname, or a key already pinned to one value.
            let fixed = if key == labels::HOSTNAME {
                Some(claim.hostname.as_str())
            } else {
                cur.get(key).and_then(|r| r.single_value())
            };
            if let Some(d) = fixed {
                if !ok(d) {
                    return Err(fail());
                }
                continue;
            }
            let candidates: Vec<String> = match cur.get(key) {
                Some(r) if r.is_finite() => r.values().iter().cloned().collect(),
                Some(r) => self
                    .universe
                    .get(key)
                    .map(|u| u.iter().filter(|d| r.has(d)).cloned().collect())
                    .unwrap_or_default(),
                None => self.universe.get(key).cloned().unwrap_or_default(),
            };
            let allowed: Vec<String> = candidates.into_iter().filter(|d| ok(d)).collect();
            match keys.iter_mut().find(|(k, _, _)| k == key) {
                Some((_, prev, _)) => prev.retain(|d| allowed.contains(d)),
                None => keys.push((key.clone(), allowed, g)),
            }
            if keys.iter().any(|(k, v, _)| k == key && v.is_empty()) {
                return Err(fail());
            }
        }
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        let mut reqs = reqs;
        for (key, mut allowed, first_group) in keys {
            let cur = reqs.as_ref().unwrap_or(&claim.requirements);
            if allowed.len() == 1
                && cur.get(&key).and_then(|r| r.single_value())
                    == allowed.first().map(String::as_str)
            {
                continue;
            }
            // Preference: least populated first for spreads, most populated first for
            // affinity, name otherwise.
            if let Some(g) = self.groups.get(first_group) {
                match g.key.kind {
                    GroupKind::Affinity => {
                        allowed.sort_by(|a, b| g.count(b).cmp(&g.count(a)).then(a.cmp(b)))
                    }
                    _ => allowed.sort_by(|a, b| g.count(a).cmp(&g.count(b)).then(a.cmp(b))),
                }
            }
            let mut chosen = None;
            let mut last_err = None;
            for d in &allowed {
                let mut r = cur.clone();
                r.add(&key, Requirement::in_values([d.clone()]));
                match self.filter_types(
                    claim.pool,
                    &claim.types,
                    Some(&r),
                    total,
                    &st.pod.host_ports,
                ) {
                    Ok(_) => {
                        chosen = Some(r);
                        break;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            match chosen {
                Some(r) => reqs = Some(r),
                None => {
                    return Err(last_err.unwrap_or(Rejection::Topology(TopologyRejection {
                        kind: "topology",
                        key,
                        allowed_domains: allowed,
                    })));
                }
            }
        }
        let (types, relaxed) = self.filter_types(
            claim.pool,
            &claim.types,
            reqs.as_ref(),
            total,
            &st.pod.host_ports,
        )?;
        Ok(Plan {
            requirements: reqs,
            types,
            min_values_relaxed: relaxed,
        })
    }

    fn filter_types(
        &self,
        pi: usize,
        base: &Bits,
        reqs: Option<&Requirements>,
        total: &Resources,
        pod_ports: &[HostPort],
    ) -> Result<(Bits, bool), Rejection> {
        let opts = self.opts;
        let Some(pool) = self.pools.get(pi) else {
            return Err(Rejection::NoCompatibleInstanceTypes);
        };
        let compat = reqs.map(|r| pool.compat(r));
        let mut out = Bits::zeros(pool.types.len());
        let mut any = false;
        for t in base.ones() {
            if compat.as_ref().is_some_and(|c| !c.get(t)) {
                continue;
            }
            if !pool.fits(t, reqs, total) {
                continue;
            }
            if !pod_ports.is_empty() {
                let clash = pool
                    .ds_of_type
                    .get(t)
                    .and_then(|g| pool.ds_groups.get(*g))
                    .is_some_and(|g| {
                        g.ports
                            .iter()
                            .any(|x| pod_ports.iter().any(|y| x.conflicts(y)))
                    });
                if clash {
                    continue;
                }
            }
            out.set(t);
            any = true;
        }
        if !any {
            return Err(pool.explain(base, reqs, total));
        }
        let mut relaxed = false;
        if pool.has_min_values {
            let r = reqs.unwrap_or(&pool.template);
            for (key, req) in r.iter() {
                let Some(min) = req.min_values else { continue };
                let have = pool.distinct_values(&out, key, r);
                if have < min as usize {
                    match opts.min_values_policy {
                        MinValuesPolicy::Strict => {
                            return Err(Rejection::MinValues {
                                key: key.clone(),
                                required: min,
                                available: have as u32,
                            });
                        }
                        MinValuesPolicy::BestEffort => relaxed = true,
                    }
                }
            }
        }
        Ok((out, relaxed))
    }

    fn commit_claim(&mut self, p: usize, ci: usize, plan: Plan) {
        let Some(st) = self.pods.get(p) else { return };
        let Some(claim) = self.claims.get_mut(ci) else {
            return;
        };
        let Some(pool) = self.pools.get_mut(claim.pool) else {
            return;
        };
        let old_count = claim.pods.len();
        let types_changed = claim.types != plan.types || old_count == 0;
        if types_changed || plan.requirements.is_some() {
            let reqs = plan.requirements.as_ref().unwrap_or(&claim.requirements);
            claim.price = pool.cheapest(reqs, &plan.types);
        }
        if let Some(r) = plan.requirements {
            claim.requirements = r;
        }
        claim.types = plan.types;
        claim.min_values_relaxed |= plan.min_values_relaxed;
        claim.requests.add(&st.requests);
        claim.pods.push(p);
        claim.host_ports.extend(st.pod.host_ports.iter().cloned());
        if types_changed {
            // Quick-reject bound and limit reservation from the surviving candidates.
            let mut max_room = Resources::new();
            let mut reservation = Resources::new();
            for t in claim.types.ones() {
                if let Some(r) = pool.room.get(t) {
                    max_room.max_with(r);
                }
                if let Some(c) = pool.max_capacity.get(t) {
                    reservation.max_with(c);
                }
            }
            // Overrides can exceed the base allocatable: no quick reject then.
            claim.max_room = pool.uniform.iter().all(|u| *u).then_some(max_room);
            if let Some(rem) = pool.remaining.as_mut() {
                for (k, v) in rem.iter_mut() {
                    if k == NODES {
                        if old_count == 0 {
                            *v -= 1;
                        }
                    } else {
                        *v += claim.reservation.get(k) - reservation.get(k);
                    }
                }
            }
            claim.reservation = reservation;
        }
        let np = pool.np;
        self.claim_order.remove(&(old_count, ci));
        self.claim_order.insert((old_count + 1, ci));
        // Re-borrow the claim immutably so the groups can be updated without cloning it.
        let Some(claim) = self.claims.get(ci) else {
            return;
        };
        let (creqs, hostname, taints) = (&claim.requirements, claim.hostname.as_str(), &np.taints);
        let own: Vec<usize> = st.active_groups().collect();
        for &g in &st.counted_in {
            if let Some(group) = self.groups.get_mut(g) {
                let d = claim_domain(creqs, hostname, &group.key.key);
                if let Some(d) = d
                    && claim_passes_filter(group.key.node_filter.as_ref(), creqs, taints)
                {
                    if group.key.key == labels::HOSTNAME && group.count(&d) == 0 {
                        group.claim_domains += 1;
                    }
                    group.record(&d);
                }
            }
        }
        for g in own {
            if let Some(group) = self.groups.get_mut(g)
                && group.key.kind == (GroupKind::AntiAffinity { required: true })
                && let Some(d) = claim_domain(creqs, hostname, &group.key.key)
            {
                group.record_owner(&d);
            }
        }
        if !st.relaxations.is_empty() {
            self.results
                .relaxed
                .insert(st.pod.uid.clone(), st.relaxations.clone());
        }
    }

    // ---- output ------------------------------------------------------------------------

    fn finish(mut self) -> SchedulingResults {
        let mut reservations: BTreeMap<String, i64> = BTreeMap::new();
        for pool in &self.pools {
            for t in &pool.types {
                for o in &t.offerings {
                    if let (Some(id), Some(cap)) = (&o.reservation_id, o.reservation_capacity) {
                        reservations.entry(id.clone()).or_insert(cap);
                    }
                }
            }
        }
        let claims = std::mem::take(&mut self.claims);
        for mut claim in claims {
            if claim.pods.is_empty() {
                continue;
            }
            if let Some(wide) = claim.wide.take()
                && let Ok((widened, false)) = self.filter_types(
                    claim.pool,
                    &wide,
                    Some(&claim.requirements),
                    &claim.requests,
                    &claim.host_ports,
                )
            {
                claim.types = widened;
            }
            let Some(pool) = self.pools.get(claim.pool) else {
                continue;
            };
            let mut reqs = claim.requirements.clone();
            // Candidates with their cheapest allowed offering.
            let summary = pool.offer_summary(&reqs);
            let mut cands: Vec<(f64, &str, usize)> = summary
                .by_price
                .iter()
                .filter(|t| claim.types.get(**t))
                .filter_map(|t| {
                    let price = summary.per_type.get(*t)?.0;
                    Some((price, pool.types.get(*t)?.name.as_str(), *t))
                })
                .collect();
            // Reserved capacity: pin to reserved when a reservation with room is compatible.
            let reserved_ok = |o: &crate::model::Offering, res: &BTreeMap<String, i64>| {
                o.capacity_type == labels::CAPACITY_TYPE_RESERVED
                    && o.available
                    && o.compatible(&reqs)
                    && o.reservation_id
                        .as_ref()
                        .is_none_or(|id| res.get(id).is_none_or(|c| *c > 0))
            };
            let reserved_pick = cands
                .iter()
                .filter(|_| pool.has_reserved)
                .find_map(|(_, _, t)| {
                    pool.types
                        .get(*t)
                        .and_then(|it| it.offerings.iter().find(|o| reserved_ok(o, &reservations)))
                        .map(|o| o.reservation_id.clone())
                });
            if let Some(rid) = reserved_pick {
                let zone = cands.iter().find_map(|(_, _, t)| {
                    pool.types
                        .get(*t)
                        .and_then(|it| it.offerings.iter().find(|o| reserved_ok(o, &reservations)))
                        .map(|o| o.zone.clone())
                });
                if let Some(z) = zone {
                    reqs.add(labels::ZONE, Requirement::in_values([z]));
                }
                if let Some(id) = &rid {
                    if let Some(c) = reservations.get_mut(id) {
                        *c -= 1;
                    }
                    reqs.add(
                        labels::AWS_CAPACITY_RESERVATION_ID,
                        Requirement::in_values([id.clone()]),
                    );
                }
                reqs.add(
                    labels::CAPACITY_TYPE,
                    Requirement::in_values([labels::CAPACITY_TYPE_RESERVED]),
                );
                cands.retain(|(_, _, t)| {
                    pool.types.get(*t).is_some_and(|it| {
                        it.offerings.iter().any(|o| {
                            o.capacity_type == labels::CAPACITY_TYPE_RESERVED
                                && o.available
                                && o.compatible(&reqs)
                                && rid
                                    .as_ref()
                                    .is_none_or(|id| o.reservation_id.as_ref() == Some(id))
                        })
                    })
                });
            } else {
                let reserved_compatible = pool.has_reserved
                    && cands.iter().any(|(_, _, t)| {
                        pool.types.get(*t).is_some_and(|it| {
                            it.offerings.iter().any(|o| {
                                o.capacity_type == labels::CAPACITY_TYPE_RESERVED
                                    && o.compatible(&reqs)
                            })
                        })
                    });
                if reserved_compatible && self.opts.reserved_capacity_strict {
                    // Reported as "no instance type fits" with the reserved-only requirement
                    // and a no-offering miss: the reservations it could use are all taken.
                    let mut reserved_only = reqs.clone();
                    reserved_only.add(
                        labels::CAPACITY_TYPE,
                        Requirement::in_values([labels::CAPACITY_TYPE_RESERVED]),
                    );
                    let closest = cands.first().map(|(_, name, _)| ClosestMiss {
                        instance_type: name.to_string(),
                        problem: MissKind::NoOffering,
                    });
                    for p in &claim.pods {
                        if let Some(st) = self.pods.get(*p) {
                            self.results.unschedulable.insert(
                                st.pod.uid.clone(),
                                PodError::Unschedulable {
                                    existing_nodes: self.nodes.len(),
                                    nodepools: vec![NodePoolRejection {
                                        nodepool: pool.np.name.clone(),
                                        reason: Rejection::NoInstanceTypeFits {
                                            requests: claim.requests.clone(),
                                            requirements: reserved_only.to_string(),
                                            closest: closest.clone(),
                                        },
                                    }],
                                },
                            );
                            self.results.relaxed.remove(&st.pod.uid);
                        }
                    }
                    continue;
                }
                let non_reserved = Requirement::not_in([labels::CAPACITY_TYPE_RESERVED]);
                if pool.has_reserved
                    && cands.iter().any(|(_, _, t)| {
                        pool.types.get(*t).is_some_and(|it| {
                            it.offerings.iter().any(|o| {
                                o.capacity_type == labels::CAPACITY_TYPE_RESERVED
                                    && o.compatible(&reqs)
                            })
                        })
                    })
                {
                    reqs.add(labels::CAPACITY_TYPE, non_reserved);
                }
            }
            cands.truncate(self.opts.max_instance_types);
            let mut kept = Bits::zeros(pool.types.len());
            for (_, _, t) in &cands {
                kept.set(*t);
            }
            let mut truncation_broke: Option<String> = None;
            let mut relaxed = claim.min_values_relaxed;
            for (key, req) in reqs.iter() {
                if let Some(min) = req.min_values
                    && pool.distinct_values(&kept, key, &reqs) < min as usize
                {
                    match self.opts.min_values_policy {
                        MinValuesPolicy::Strict => truncation_broke = Some(key.clone()),
                        MinValuesPolicy::BestEffort => relaxed = true,
                    }
                }
            }
            if cands.is_empty() && truncation_broke.is_none() {
                truncation_broke = Some(labels::INSTANCE_TYPE.to_string());
            }
            if let Some(key) = truncation_broke {
                for p in &claim.pods {
                    if let Some(st) = self.pods.get(*p) {
                        self.results.unschedulable.insert(
                            st.pod.uid.clone(),
                            PodError::MinValuesAfterTruncation {
                                nodepool: pool.np.name.clone(),
                                key: key.clone(),
                            },
                        );
                        self.results.relaxed.remove(&st.pod.uid);
                    }
                }
                continue;
            }
            let names: Vec<Arc<str>> = cands
                .iter()
                .filter_map(|(_, _, t)| pool.names.get(*t).cloned())
                .collect();
            let mut capacity_types: BTreeSet<String> = BTreeSet::new();
            let mut ds = None::<Resources>;
            let summary = pool.offer_summary(&reqs);
            let mut ct_bits = 0u64;
            for (_, _, t) in &cands {
                ct_bits |= summary.per_type.get(*t).map_or(0, |s| s.1);
            }
            for (i, name) in pool.ct_names.iter().enumerate() {
                if ct_bits & (1 << i) != 0 {
                    capacity_types.insert(name.clone());
                }
            }
            for (_, _, t) in &cands {
                let o = pool
                    .ds_of_type
                    .get(*t)
                    .and_then(|g| pool.ds_groups.get(*g))
                    .map(|g| g.overhead.clone())
                    .unwrap_or_default();
                match ds.as_mut() {
                    None => ds = Some(o),
                    Some(cur) => {
                        if o < *cur {
                            *cur = o;
                        }
                    }
                }
            }
            let instance_type_min_values = reqs
                .remove(labels::INSTANCE_TYPE)
                .and_then(|r| r.min_values);
            reqs.add(
                labels::CAPACITY_TYPE,
                Requirement::in_values(capacity_types.iter().cloned()),
            );
            let ds = ds.unwrap_or_default();
            let mut requests = claim.requests.clone();
            requests.add(&ds);
            let mut node_labels = pool.np.labels.clone();
            node_labels.insert(labels::NODEPOOL.to_string(), pool.np.name.clone());
            let ncr = &pool.np.node_class_ref;
            if !ncr.group.is_empty() && !ncr.kind.is_empty() {
                node_labels.insert(
                    format!("{}/{}", ncr.group, ncr.kind.to_lowercase()),
                    ncr.name.clone(),
                );
            }
            for (k, r) in reqs.iter() {
                if labels::is_well_known(k) || node_labels.contains_key(k) {
                    continue;
                }
                // Like upstream, a custom key the node must carry gets a concrete value even when
                // the requirement is open-ended (Exists / NotIn / bounds); ours is deterministic.
                if let Some(v) = concrete_value(r, &claim.hostname) {
                    node_labels.insert(k.clone(), v);
                }
            }
            let mut annotations = pool.np.annotations.clone();
            annotations.insert(
                labels::NODECLAIM_MIN_VALUES_RELAXED.to_string(),
                relaxed.to_string(),
            );
            let cheapest = cands.first().map_or(0.0, |c| c.0);
            self.results.new_nodeclaims.push(NewNodeClaim {
                hostname: claim.hostname.clone(),
                nodepool: pool.np.name.clone(),
                requirements: reqs,
                instance_types: names,
                instance_type_min_values,
                capacity_types: capacity_types.into_iter().collect(),
                cheapest_price: cheapest,
                requests,
                daemonset_overhead: ds,
                pods: claim
                    .pods
                    .iter()
                    .filter_map(|p| self.pods.get(*p).map(|s| s.pod.uid.clone()))
                    .collect(),
                labels: node_labels,
                annotations,
                taints: pool.np.taints.clone(),
                startup_taints: pool.np.startup_taints.clone(),
                node_class_ref: pool.np.node_class_ref.clone(),
                min_values_relaxed: relaxed,
            });
        }
        self.results
    }
}

impl PodState<'_> {
    /// Requirements without preferences (node filter for spread counting).
    fn strict_requirements(&self) -> Requirements {
        let mut r = self.selector_reqs.clone();
        if let Some(t) = self.required_terms.first() {
            r.add_all(t);
        }
        r
    }
}

/// Derives the pod-independent solver state of one NodePool.
fn prepare_pool(np: &NodePoolView, daemonsets: &[PodView]) -> Arc<PreparedPool> {
    let mut template = np.requirements.clone();
    template.add_all(&Requirements::from_labels(np.labels.iter()));
    template.add(labels::NODEPOOL, Requirement::in_values([np.name.clone()]));
    let mut types = Vec::new();
    let template_filter = crate::model::OfferingFilter::new(&template);
    for it in &np.instance_types {
        if it.requirements.intersects(&template).is_ok()
            && it
                .offerings
                .iter()
                .any(|o| o.available && template_filter.allows(o))
        {
            types.push(it);
        }
    }
    // Input order is kept (deterministic already); price ties break by name later.
    // DaemonSet overhead per type, grouped by the exact set of DaemonSets that land.
    let mut ds_groups: Vec<DsGroup> = Vec::new();
    let mut ds_index: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
    let mut ds_of_type = Vec::new();
    for t in &types {
        if daemonsets.is_empty() {
            ds_of_type.push(0);
            continue;
        }
        let mut node_reqs = template.clone();
        node_reqs.add_all(&t.requirements_with_offerings());
        let members: Vec<usize> = daemonsets
            .iter()
            .enumerate()
            .filter(|(_, d)| daemonset_lands(d, np, &node_reqs))
            .map(|(i, _)| i)
            .collect();
        let gi = match ds_index.get(&members) {
            Some(g) => *g,
            None => {
                let mut overhead = Resources::new();
                let mut ports = Vec::new();
                for i in &members {
                    if let Some(d) = daemonsets.get(*i) {
                        overhead.add(&d.requests);
                        ports.extend(d.host_ports.iter().cloned());
                    }
                }
                ds_groups.push(DsGroup { overhead, ports });
                ds_index.insert(members, ds_groups.len() - 1);
                ds_groups.len() - 1
            }
        };
        ds_of_type.push(gi);
    }
    if ds_groups.is_empty() {
        ds_groups.push(DsGroup {
            overhead: Resources::new(),
            ports: Vec::new(),
        });
    }
    let mut room = Vec::new();
    let mut uniform = Vec::new();
    let mut max_capacity = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let ds = ds_of_type
            .get(i)
            .and_then(|g| ds_groups.get(*g))
            .map(|g| g.overhead.clone())
            .unwrap_or_default();
        room.push(t.allocatable().minus(&ds));
        uniform.push(
            t.offerings
                .iter()
                .all(|o| o.capacity.is_none() && o.overhead.is_none()),
        );
        let mut cap = t.capacity.clone();
        for o in &t.offerings {
            cap.max_with(t.capacity_for(o));
        }
        max_capacity.push(cap);
    }
    let mut all = Bits::zeros(types.len());
    for i in 0..types.len() {
        all.set(i);
    }
    let has_min_values = template.iter().any(|(_, r)| r.min_values.is_some());
    let ct_names: Vec<String> = types
        .iter()
        .flat_map(|t| t.offerings.iter().map(|o| o.capacity_type.as_str()))
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .take(64)
        .map(str::to_string)
        .collect();
    let offer_ct: Vec<Vec<u8>> = types
        .iter()
        .map(|t| {
            t.offerings
                .iter()
                .map(|o| {
                    ct_names
                        .iter()
                        .position(|c| *c == o.capacity_type)
                        .map_or(u8::MAX, |i| i as u8)
                })
                .collect()
        })
        .collect();
    let has_reserved = types.iter().any(|t| {
        t.offerings
            .iter()
            .any(|o| o.capacity_type == labels::CAPACITY_TYPE_RESERVED)
    });
    let names: Vec<Arc<str>> = types.iter().map(|t| Arc::from(t.name.as_str())).collect();
    let template_prices: Vec<f64> = types
        .iter()
        .map(|t| {
            t.offerings
                .iter()
                .filter(|o| o.available && template_filter.allows(o))
                .map(|o| o.price)
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    let type_idx: Vec<usize> = np
        .instance_types
        .iter()
        .enumerate()
        .filter(|(_, it)| types.iter().any(|t| std::ptr::eq(*t, *it)))
        .map(|(i, _)| i)
        .collect();
    let prep = Arc::new(PreparedPool {
        name: np.name.clone(),
        type_count: np.instance_types.len(),
        template,
        type_idx,
        room,
        uniform,
        max_capacity,
        ds_of_type,
        ds_groups,
        has_min_values,
        all,
        ct_names,
        offer_ct,
        has_reserved,
        names,
        template_prices,
        template_compat: None,
        template_offers: None,
    });
    // Seed the two lookups every unconstrained pod makes, so a reused prepared pool skips
    // them as well.
    let (compat, offers) = {
        let pool = Pool::new(np, prep.clone(), None);
        (
            pool.compat(&prep.template),
            pool.offer_summary(&prep.template),
        )
    };
    match Arc::try_unwrap(prep) {
        Ok(mut p) => {
            p.template_compat = Some(compat);
            p.template_offers = Some(offers);
            Arc::new(p)
        }
        Err(shared) => shared,
    }
}

impl<'a> Pool<'a> {
    fn new(
        np: &'a NodePoolView,
        prep: Arc<PreparedPool>,
        remaining: Option<BTreeMap<String, i64>>,
    ) -> Pool<'a> {
        let types = prep
            .type_idx
            .iter()
            .filter_map(|i| np.instance_types.get(*i))
            .collect();
        let mut compat_cache = HashMap::new();
        if let Some(c) = &prep.template_compat {
            compat_cache.insert(prep.template.clone(), c.clone());
        }
        let mut offer_cache = HashMap::new();
        if let Some(o) = &prep.template_offers {
            offer_cache.insert(prep.template.clone(), o.clone());
        }
        Pool {
            np,
            prep,
            types,
            compat_cache: RefCell::new(compat_cache),
            remaining,
            offer_cache: RefCell::new(offer_cache),
            efficient: None,
        }
    }
}

impl Pool<'_> {
    fn compat(&self, reqs: &Requirements) -> Arc<Bits> {
        if let Some(b) = self.compat_cache.borrow().get(reqs) {
            return b.clone();
        }
        let mut b = Bits::zeros(self.types.len());
        let filter = crate::model::OfferingFilter::new(reqs);
        for (i, t) in self.types.iter().enumerate() {
            let ok = t.requirements.intersects(reqs).is_ok()
                && t.offerings.iter().any(|o| o.available && filter.allows(o));
            if ok {
                b.set(i);
            }
        }
        let b = Arc::new(b);
        let mut cache = self.compat_cache.borrow_mut();
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(reqs.clone(), b.clone());
        b
    }

    /// Per type: the cheapest available offering allowed by `reqs` and the capacity types of
    /// all such offerings (bits over `ct_names`). Cached: NodeClaims share requirement sets.
    fn offer_summary(&self, reqs: &Requirements) -> Arc<OfferSummary> {
        if let Some(v) = self.offer_cache.borrow().get(reqs) {
            return v.clone();
        }
        let filter = crate::model::OfferingFilter::new(reqs);
        let per_type: Vec<(f64, u64)> = self
            .types
            .iter()
            .enumerate()
            .map(|(ti, it)| {
                let mut price = f64::INFINITY;
                let mut bits = 0u64;
                let cts = self.offer_ct.get(ti);
                for (oi, o) in it.offerings.iter().enumerate() {
                    if !(o.available && filter.allows(o)) {
                        continue;
                    }
                    price = price.min(o.price);
                    if let Some(&i) = cts.and_then(|c| c.get(oi))
                        && i < 64
                    {
                        bits |= 1 << i;
                    }
                }
                (price, bits)
            })
            .collect();
        let mut by_price: Vec<usize> = (0..per_type.len())
            .filter(|t| per_type.get(*t).is_some_and(|p| p.0.is_finite()))
            .collect();
        by_price.sort_by(|a, b| {
            let pa = per_type.get(*a).map_or(f64::INFINITY, |p| p.0);
            let pb = per_type.get(*b).map_or(f64::INFINITY, |p| p.0);
            let na = self.types.get(*a).map(|t| t.name.as_str());
            let nb = self.types.get(*b).map(|t| t.name.as_str());
            pa.total_cmp(&pb).then(na.cmp(&nb))
        });
        let v = Arc::new(OfferSummary { per_type, by_price });
        let mut cache = self.offer_cache.borrow_mut();
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(reqs.clone(), v.clone());
        v
    }

    /// Cheapest allowed offering price over the types in `set`.
    fn cheapest(&self, reqs: &Requirements, set: &Bits) -> f64 {
        let summary = self.offer_summary(reqs);
        set.ones()
            .filter_map(|t| summary.per_type.get(t).map(|p| p.0))
            .fold(f64::INFINITY, f64::min)
    }

    fn fits(&self, t: usize, reqs: Option<&Requirements>, total: &Resources) -> bool {
        if self.uniform.get(t).copied().unwrap_or(true) {
            return self.room.get(t).is_some_and(|r| r.fits(total));
        }
        let Some(it) = self.types.get(t) else {
            return false;
        };
        let r = reqs.unwrap_or(&self.template);
        let ds = self
            .ds_of_type
            .get(t)
            .and_then(|g| self.ds_groups.get(*g))
            .map(|g| g.overhead.clone())
            .unwrap_or_default();
        let need = total.plus(&ds);
        let mut any = false;
        for o in it
            .offerings
            .iter()
            .filter(|o| o.available && o.compatible(r))
        {
            any = true;
            if !it.allocatable_for(o).fits(&need) {
                return false;
            }
        }
        any
    }

    fn distinct_values(&self, set: &Bits, key: &str, reqs: &Requirements) -> usize {
        let mut vals: BTreeSet<&str> = BTreeSet::new();
        for t in set.ones() {
            if key == labels::INSTANCE_TYPE {
                if let Some(it) = self.types.get(t) {
                    vals.insert(it.name.as_str());
                }
                continue;
            }
            let Some(it) = self.types.get(t) else {
                continue;
            };
            if key == labels::ZONE || key == labels::CAPACITY_TYPE {
                for o in it
                    .offerings
                    .iter()
                    .filter(|o| o.available && o.compatible(reqs))
                {
                    if let Some(v) = o.label(key) {
                        vals.insert(v);
                    }
                }
                continue;
            }
            if let Some(r) = it.requirements.get(key)
                && r.is_finite()
            {
                for v in r.values() {
                    if reqs.get(key).is_none_or(|x| x.has(v)) {
                        vals.insert(v.as_str());
                    }
                }
            }
        }
        vals.len()
    }

    /// Why no type in `base` survived (slow path, only on failure).
    fn explain(&self, base: &Bits, reqs: Option<&Requirements>, total: &Resources) -> Rejection {
        let r = reqs.unwrap_or(&self.template);
        let mut closest: Option<(i64, ClosestMiss, Resources)> = None;
        let mut first_req_err = None;
        let mut first_offer_err = None;
        for t in base.ones() {
            let Some(it) = self.types.get(t) else {
                continue;
            };
            if let Err(e) = it.requirements.intersects(r) {
                if first_req_err.is_none() {
                    first_req_err = Some(ClosestMiss {
                        instance_type: it.name.clone(),
                        problem: MissKind::Requirements(e),
                    });
                }
                continue;
            }
            let offers: Vec<_> = it
                .offerings
                .iter()
                .filter(|o| o.available && o.compatible(r))
                .collect();
            if offers.is_empty() {
                if first_offer_err.is_none() {
                    first_offer_err = Some(ClosestMiss {
                        instance_type: it.name.clone(),
                        problem: MissKind::NoOffering,
                    });
                }
                continue;
            }
            let ds = self
                .ds_of_type
                .get(t)
                .and_then(|g| self.ds_groups.get(*g))
                .map(|g| g.overhead.clone())
                .unwrap_or_default();
            let need = total.plus(&ds);
            let alloc = offers
                .iter()
                .map(|o| it.allocatable_for(o))
                .reduce(|mut a, b| {
                    a.min_with(&b);
                    a
                })
                .unwrap_or_default();
            let missing = alloc.shortfall(&need);
            // Score: permille of the request that is missing, summed over resources.
            let score: i64 = missing
                .iter()
                .map(|(_, want, have)| {
                    if *want > 0 {
                        (want - have).saturating_mul(1000) / want
                    } else {
                        0
                    }
                })
                .sum();
            if closest.as_ref().is_none_or(|(s, _, _)| score < *s) {
                closest = Some((
                    score,
                    ClosestMiss {
                        instance_type: it.name.clone(),
                        problem: MissKind::Resources(missing),
                    },
                    need,
                ));
            }
        }
        match closest {
            Some((_, miss, need)) => Rejection::NoInstanceTypeFits {
                requests: need,
                requirements: r.to_string(),
                closest: Some(miss),
            },
            None => Rejection::NoInstanceTypeFits {
                requests: total.clone(),
                requirements: r.to_string(),
                closest: first_offer_err.or(first_req_err),
            },
        }
    }
}

/// A value satisfying `r`, if one is needed and can be found: the single value of an `In`, the
/// lower (or upper) bound of a range, or a generated value outside a `NotIn` set.
fn concrete_value(r: &Requirement, seed: &str) -> Option<String> {
    if r.is_finite() {
        return r.single_value().map(str::to_string);
    }
    match r.bounds() {
        (Some(lo), _) if r.has(&lo.to_string()) => return Some(lo.to_string()),
        (None, Some(hi)) if r.has(&hi.to_string()) => return Some(hi.to_string()),
        (None, None) => {}
        _ => return None,
    }
    let mut v = seed.trim_start_matches("hostname-placeholder-").to_string();
    v.insert_str(0, "generated-");
    while !r.has(&v) {
        v.push('x');
    }
    Some(v)
}

fn topology_rejection(group: &Group, allowed: Vec<String>) -> Rejection {
    Rejection::Topology(TopologyRejection {
        kind: group.key.kind.describe(),
        key: group.key.key.clone(),
        allowed_domains: allowed,
    })
}

fn claim_domain(reqs: &Requirements, hostname: &str, key: &str) -> Option<String> {
    if key == labels::HOSTNAME {
        return Some(hostname.to_string());
    }
    reqs.get(key)
        .and_then(|r| r.single_value())
        .map(str::to_string)
}

fn node_passes_filter(filter: Option<&NodeFilter>, node: &NodeView) -> bool {
    let Some(f) = filter else { return true };
    f.requirements
        .as_ref()
        .is_none_or(|r| r.matches_labels(&node.labels).is_ok())
        && f.tolerations
            .as_ref()
            .is_none_or(|t| first_untolerated(node.effective_taints(), t, true).is_none())
}

fn claim_passes_filter(
    filter: Option<&NodeFilter>,
    reqs: &Requirements,
    taints: &[crate::model::Taint],
) -> bool {
    let Some(f) = filter else { return true };
    f.requirements
        .as_ref()
        .is_none_or(|r| reqs.compatible(r).is_ok())
        && f.tolerations
            .as_ref()
            .is_none_or(|t| first_untolerated(taints.iter(), t, true).is_none())
}

/// Whether a DaemonSet's pod would run on a node with these requirements and the pool's taints.
pub(crate) fn daemonset_lands(ds: &PodView, np: &NodePoolView, node_reqs: &Requirements) -> bool {
    if first_untolerated(np.taints.iter(), &ds.tolerations, true).is_some() {
        return false;
    }
    let selector = Requirements::from_labels(ds.node_selector.iter());
    if node_reqs.compatible(&selector).is_err() {
        return false;
    }
    if ds.required_node_affinity.is_empty() {
        return true;
    }
    ds.required_node_affinity
        .iter()
        .any(|term| Requirements::from_specs(term).is_ok_and(|r| node_reqs.compatible(&r).is_ok()))
}
