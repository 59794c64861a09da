//! Chainable builders and the `check(scenario, expect)` helper shared by this crate's tests and
//! (with the `testing` feature) other crates' tests.
//!
//! ```text
//! pod().cpu("2").zone("a")
//! nodepool("default").weight(10).taint("team", Some("a"), TaintEffect::NoSchedule)
//! instance_type("m5.large").cpu(2).mem("8Gi").offering("a", "spot", 0.04)
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};

use karpenter_apis::labels;

use crate::checker::check_solution;
use crate::model::*;
use crate::quantity::parse_resource;
use crate::requirements::{Operator, Requirement, RequirementSpec, Requirements};
use crate::resources::{CPU, MEMORY, PODS, Resources};
use crate::results::SchedulingResults;
use crate::solver::{SchedulingInput, SolveOptions, solve_until};

fn q(name: &str, v: &str) -> i64 {
    parse_resource(name, v).unwrap()
}

fn spec(key: &str, op: Operator, vals: &[&str]) -> RequirementSpec {
    RequirementSpec::new(key, op, vals)
}

// ---- pods ------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct PodBuilder(pub PodView);

pub fn pod() -> PodBuilder {
    PodBuilder(PodView {
        namespace: "default".into(),
        requests: Resources::new().with(PODS, 1),
        ..Default::default()
    })
}

impl PodBuilder {
    pub fn name(mut self, n: &str) -> Self {
        self.0.name = n.into();
        self.0.uid = n.into();
        self
    }
    pub fn ns(mut self, n: &str) -> Self {
        self.0.namespace = n.into();
        self
    }
    pub fn created(mut self, t: i64) -> Self {
        self.0.creation_timestamp = t;
        self
    }
    pub fn cpu(mut self, v: &str) -> Self {
        self.0.requests.cpu = q(CPU, v);
        self
    }
    pub fn mem(mut self, v: &str) -> Self {
        self.0.requests.memory = q(MEMORY, v);
        self
    }
    pub fn res(mut self, name: &str, v: &str) -> Self {
        self.0.requests.set(name, q(name, v));
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0.labels.insert(k.into(), v.into());
        self
    }
    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.0.node_selector.insert(k.into(), v.into());
        self
    }
    pub fn zone(self, z: &str) -> Self {
        self.node_selector(labels::ZONE, z)
    }
    pub fn capacity_type(self, ct: &str) -> Self {
        self.node_selector(labels::CAPACITY_TYPE, ct)
    }
    /// Adds a requirement to the first required node-affinity term.
    pub fn require(mut self, key: &str, op: Operator, vals: &[&str]) -> Self {
        if self.0.required_node_affinity.is_empty() {
            self.0.required_node_affinity.push(vec![]);
        }
        if let Some(t) = self.0.required_node_affinity.first_mut() {
            t.push(spec(key, op, vals));
        }
        self
    }
    /// Adds another OR-ed required node-affinity term.
    pub fn or_term(mut self, term: &[(&str, Operator, &[&str])]) -> Self {
        self.0
            .required_node_affinity
            .push(term.iter().map(|(k, o, v)| spec(k, *o, v)).collect());
        self
    }
    pub fn prefer(mut self, weight: i32, key: &str, op: Operator, vals: &[&str]) -> Self {
        self.0.preferred_node_affinity.push(PreferredNodeTerm {
            weight,
            term: vec![spec(key, op, vals)],
        });
        self
    }
    pub fn tolerate(mut self, key: &str, value: Option<&str>, effect: Option<TaintEffect>) -> Self {
        self.0.tolerations.push(Toleration {
            key: Some(key.into()),
            exists: value.is_none(),
            value: value.map(Into::into),
            effect,
        });
        self
    }
    pub fn tolerate_everything(mut self) -> Self {
        self.0.tolerations.push(Toleration {
            key: None,
            exists: true,
            value: None,
            effect: None,
        });
        self
    }
    fn selector(pairs: &[(&str, &str)]) -> Option<LabelSelector> {
        Some(LabelSelector::labels(pairs))
    }
    pub fn spread(
        self,
        key: &str,
        max_skew: i32,
        when: WhenUnsatisfiable,
        sel: &[(&str, &str)],
    ) -> Self {
        self.spread_with(TopologySpreadConstraint {
            max_skew,
            topology_key: key.into(),
            when_unsatisfiable: when,
            label_selector: Self::selector(sel),
            min_domains: None,
            node_affinity_policy: InclusionPolicy::Honor,
            node_taints_policy: InclusionPolicy::Ignore,
            match_label_keys: vec![],
        })
    }
    pub fn spread_with(mut self, c: TopologySpreadConstraint) -> Self {
        self.0.topology_spread.push(c);
        self
    }
    fn term(key: &str, sel: &[(&str, &str)]) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Self::selector(sel),
            namespaces: vec![],
            namespace_selector: None,
            topology_key: key.into(),
        }
    }
    pub fn affinity(mut self, key: &str, sel: &[(&str, &str)]) -> Self {
        self.0.pod_affinity.push(Self::term(key, sel));
        self
    }
    pub fn affinity_term(mut self, t: PodAffinityTerm) -> Self {
        self.0.pod_affinity.push(t);
        self
    }
    pub fn anti_affinity(mut self, key: &str, sel: &[(&str, &str)]) -> Self {
        self.0.pod_anti_affinity.push(Self::term(key, sel));
        self
    }
    pub fn anti_affinity_term(mut self, t: PodAffinityTerm) -> Self {
        self.0.pod_anti_affinity.push(t);
        self
    }
    pub fn preferred_affinity(mut self, weight: i32, key: &str, sel: &[(&str, &str)]) -> Self {
        self.0.preferred_pod_affinity.push(WeightedPodAffinityTerm {
            weight,
            term: Self::term(key, sel),
        });
        self
    }
    pub fn preferred_anti_affinity(mut self, weight: i32, key: &str, sel: &[(&str, &str)]) -> Self {
        self.0
            .preferred_pod_anti_affinity
            .push(WeightedPodAffinityTerm {
                weight,
                term: Self::term(key, sel),
            });
        self
    }
    pub fn host_port(mut self, port: i32) -> Self {
        self.0.host_ports.push(HostPort {
            port,
            protocol: "TCP".into(),
            host_ip: String::new(),
        });
        self
    }
    pub fn pvc(mut self, name: &str) -> Self {
        self.0.pvcs.push(name.into());
        self
    }
    pub fn on_node(mut self, node: &str) -> Self {
        self.0.node_name = Some(node.into());
        self
    }
    pub fn match_fields(mut self) -> Self {
        self.0.uses_match_fields = true;
        self
    }
    pub fn build(self) -> PodView {
        self.0
    }
}

/// `n` copies of a pod named `prefix-0..n`.
pub fn pods(n: usize, prefix: &str, b: PodBuilder) -> Vec<PodView> {
    (0..n)
        .map(|i| b.clone().name(&format!("{prefix}-{i}")).build())
        .collect()
}

// ---- instance types ------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct InstanceTypeBuilder(pub InstanceType);

pub fn instance_type(name: &str) -> InstanceTypeBuilder {
    InstanceTypeBuilder(InstanceType {
        name: name.into(),
        requirements: Requirements::new()
            .with(labels::INSTANCE_TYPE, Requirement::in_values([name]))
            .with(labels::ARCH, Requirement::in_values(["amd64"]))
            .with(labels::OS, Requirement::in_values(["linux"])),
        capacity: Resources::new().with(PODS, 110),
        overhead: Overhead::default(),
        offerings: vec![],
    })
}

impl InstanceTypeBuilder {
    pub fn cpu(mut self, cores: i64) -> Self {
        self.0.capacity.cpu = cores * 1000;
        self
    }
    pub fn cpu_q(mut self, v: &str) -> Self {
        self.0.capacity.cpu = q(CPU, v);
        self
    }
    pub fn mem(mut self, v: &str) -> Self {
        self.0.capacity.memory = q(MEMORY, v);
        self
    }
    pub fn pods(mut self, n: i64) -> Self {
        self.0.capacity.pods = n;
        self
    }
    pub fn res(mut self, name: &str, v: &str) -> Self {
        self.0.capacity.set(name, q(name, v));
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0.requirements.remove(k);
        self.0.requirements.add(k, Requirement::in_values([v]));
        self
    }
    pub fn arch(self, a: &str) -> Self {
        self.label(labels::ARCH, a)
    }
    pub fn kube_reserved(mut self, cpu: &str, mem: &str) -> Self {
        self.0.overhead.kube_reserved = Resources::new()
            .with(CPU, q(CPU, cpu))
            .with(MEMORY, q(MEMORY, mem));
        self
    }
    pub fn eviction(mut self, mem: &str) -> Self {
        self.0.overhead.eviction_threshold = Resources::new().with(MEMORY, q(MEMORY, mem));
        self
    }
    pub fn offering(mut self, zone: &str, ct: &str, price: f64) -> Self {
        self.0.offerings.push(Offering::new(zone, ct, price));
        self
    }
    pub fn unavailable(mut self, zone: &str, ct: &str, price: f64) -> Self {
        let mut o = Offering::new(zone, ct, price);
        o.available = false;
        self.0.offerings.push(o);
        self
    }
    pub fn reserved(mut self, zone: &str, price: f64, id: &str, capacity: i64) -> Self {
        let mut o = Offering::new(zone, labels::CAPACITY_TYPE_RESERVED, price);
        o.reservation_id = Some(id.into());
        o.reservation_capacity = Some(capacity);
        self.0.offerings.push(o);
        self
    }
    pub fn offering_with_capacity(
        mut self,
        zone: &str,
        ct: &str,
        price: f64,
        cap: Resources,
    ) -> Self {
        let mut o = Offering::new(zone, ct, price);
        o.capacity = Some(cap);
        self.0.offerings.push(o);
        self
    }
    /// Offerings in zones `a`, `b`, `c` for on-demand at `price` and spot at 0.6 × price.
    pub fn everywhere(mut self, price: f64) -> Self {
        for z in ["a", "b", "c"] {
            self = self
                .offering(z, "on-demand", price)
                .offering(z, "spot", price * 0.6);
        }
        self
    }
    pub fn build(self) -> InstanceType {
        self.0
    }
}

/// A small catalog: `c-N` types with N cores, 2N GiB, 110 pods, priced 0.05/core, everywhere.
pub fn small_catalog() -> Vec<InstanceType> {
    [1, 2, 4, 8, 16]
        .iter()
        .map(|&n| {
            instance_type(&format!("c-{n}"))
                .cpu(n)
                .mem(&format!("{}Gi", 2 * n))
                .everywhere(0.05 * n as f64)
                .build()
        })
        .collect()
}

// ---- nodepools -----------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct NodePoolBuilder(pub NodePoolView);

pub fn nodepool(name: &str) -> NodePoolBuilder {
    NodePoolBuilder(NodePoolView {
        name: name.into(),
        node_class_ref: NodeClassRef {
            group: labels::AWS_GROUP.into(),
            kind: "EC2NodeClass".into(),
            name: "default".into(),
        },
        instance_types: small_catalog(),
        ..Default::default()
    })
}

impl NodePoolBuilder {
    pub fn weight(mut self, w: i32) -> Self {
        self.0.weight = w;
        self
    }
    pub fn require(mut self, key: &str, op: Operator, vals: &[&str]) -> Self {
        let r = Requirement::new(
            key,
            op,
            &vals.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        self.0.requirements.add(key, r);
        self
    }
    pub fn min_values(mut self, key: &str, op: Operator, vals: &[&str], min: u32) -> Self {
        let mut r = Requirement::new(
            key,
            op,
            &vals.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        r.min_values = Some(min);
        self.0.requirements.add(key, r);
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0.labels.insert(k.into(), v.into());
        self
    }
    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.0.annotations.insert(k.into(), v.into());
        self
    }
    pub fn taint(mut self, key: &str, value: Option<&str>, effect: TaintEffect) -> Self {
        self.0.taints.push(Taint::new(key, value, effect));
        self
    }
    pub fn startup_taint(mut self, key: &str, value: Option<&str>, effect: TaintEffect) -> Self {
        self.0.startup_taints.push(Taint::new(key, value, effect));
        self
    }
    pub fn limit(mut self, name: &str, v: &str) -> Self {
        self.0.limits.insert(name.into(), q(name, v));
        self
    }
    pub fn types(mut self, types: Vec<InstanceType>) -> Self {
        self.0.instance_types = types;
        self
    }
    pub fn build(self) -> NodePoolView {
        self.0
    }
}

// ---- nodes ---------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct NodeBuilder(pub NodeView);

pub fn node(name: &str) -> NodeBuilder {
    let mut labels_map = BTreeMap::new();
    labels_map.insert(labels::HOSTNAME.to_string(), name.to_string());
    NodeBuilder(NodeView {
        name: name.into(),
        labels: labels_map,
        allocatable: Resources::new().with(PODS, 110),
        capacity: Resources::new().with(PODS, 110),
        initialized: true,
        ..Default::default()
    })
}

impl NodeBuilder {
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.0.labels.insert(k.into(), v.into());
        self
    }
    pub fn zone(self, z: &str) -> Self {
        self.label(labels::ZONE, z)
    }
    pub fn nodepool(self, np: &str) -> Self {
        self.label(labels::NODEPOOL, np)
    }
    pub fn cpu(mut self, v: &str) -> Self {
        self.0.allocatable.cpu = q(CPU, v);
        self.0.capacity.cpu = q(CPU, v);
        self
    }
    pub fn mem(mut self, v: &str) -> Self {
        self.0.allocatable.memory = q(MEMORY, v);
        self.0.capacity.memory = q(MEMORY, v);
        self
    }
    pub fn used_cpu(mut self, v: &str) -> Self {
        self.0.used.cpu = q(CPU, v);
        self
    }
    pub fn taint(mut self, key: &str, value: Option<&str>, effect: TaintEffect) -> Self {
        self.0.taints.push(Taint::new(key, value, effect));
        self
    }
    pub fn startup_taint(mut self, key: &str, value: Option<&str>, effect: TaintEffect) -> Self {
        let t = Taint::new(key, value, effect);
        self.0.taints.push(t.clone());
        self.0.startup_taints.push(t);
        self
    }
    pub fn uninitialized(mut self) -> Self {
        self.0.initialized = false;
        self
    }
    pub fn in_flight(mut self) -> Self {
        self.0.in_flight = true;
        self.0.initialized = false;
        self
    }
    pub fn volume_limit(mut self, driver: &str, n: i64) -> Self {
        self.0.volume_limits.insert(driver.into(), n);
        self
    }
    pub fn attached(mut self, driver: &str, id: &str) -> Self {
        self.0
            .volumes_attached
            .entry(driver.into())
            .or_default()
            .insert(id.into());
        self
    }
    pub fn port_in_use(mut self, port: i32) -> Self {
        self.0.host_ports.push(HostPort {
            port,
            protocol: "TCP".into(),
            host_ip: String::new(),
        });
        self
    }
    pub fn build(self) -> NodeView {
        self.0
    }
}

// ---- scenario and expectations -------------------------------------------------------------

/// Input plus options.
#[derive(Clone, Debug, Default)]
pub struct Scenario {
    pub input: SchedulingInput,
    pub options: SolveOptions,
    /// Stop the solve after it has asked this many times (see [`crate::solver::solve_until`]).
    pub stop_after: Option<usize>,
}

pub fn scenario() -> Scenario {
    Scenario::default()
}

impl Scenario {
    pub fn pod(mut self, p: PodBuilder) -> Self {
        self.input.pods.push(p.build());
        self
    }
    pub fn pods(mut self, ps: Vec<PodView>) -> Self {
        self.input.pods.extend(ps);
        self
    }
    pub fn nodepool(mut self, np: NodePoolBuilder) -> Self {
        self.input.nodepools.push(np.build());
        self
    }
    pub fn node(mut self, n: NodeBuilder) -> Self {
        self.input.nodes.push(n.build());
        self
    }
    pub fn bound(mut self, p: PodBuilder) -> Self {
        self.input.bound_pods.push(p.build());
        self
    }
    pub fn daemonset(mut self, p: PodBuilder) -> Self {
        self.input.daemonsets.push(p.build());
        self
    }
    pub fn domains(mut self, key: &str, values: &[&str]) -> Self {
        self.input
            .topology_domains
            .insert(key.into(), values.iter().map(|s| s.to_string()).collect());
        self
    }
    pub fn namespace(mut self, ns: &str, lbls: &[(&str, &str)]) -> Self {
        self.input.namespaces.insert(
            ns.into(),
            lbls.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self
    }
    pub fn pvc(
        mut self,
        ns: &str,
        name: &str,
        storage_class: Option<&str>,
        volume: Option<&str>,
    ) -> Self {
        self.input.volumes.pvcs.insert(
            format!("{ns}/{name}"),
            PvcView {
                storage_class: storage_class.map(Into::into),
                volume_name: volume.map(Into::into),
            },
        );
        self
    }
    pub fn pv(mut self, name: &str, zone: Option<&str>, driver: Option<&str>) -> Self {
        self.input.volumes.pvs.insert(
            name.into(),
            PvView {
                node_affinity: zone
                    .map(|z| vec![vec![spec(labels::ZONE, Operator::In, &[z])]])
                    .unwrap_or_default(),
                csi_driver: driver.map(Into::into),
                local: false,
            },
        );
        self
    }
    pub fn storage_class(
        mut self,
        name: &str,
        provisioner: &str,
        wffc: bool,
        zones: &[&str],
    ) -> Self {
        self.input
            .storage_classes_insert(name, provisioner, wffc, zones);
        self
    }
    pub fn options(mut self, o: SolveOptions) -> Self {
        self.options = o;
        self
    }
    /// The solve's caller says stop after `asks` pods were tried.
    pub fn stop_after(mut self, asks: usize) -> Self {
        self.stop_after = Some(asks);
        self
    }
}

impl SchedulingInput {
    fn storage_classes_insert(
        &mut self,
        name: &str,
        provisioner: &str,
        wffc: bool,
        zones: &[&str],
    ) {
        self.volumes.storage_classes.insert(
            name.into(),
            StorageClassView {
                provisioner: provisioner.into(),
                wait_for_first_consumer: wffc,
                allowed_topologies: if zones.is_empty() {
                    vec![]
                } else {
                    vec![vec![spec(labels::ZONE, Operator::In, zones)]]
                },
            },
        );
    }
}

/// A named assertion on an outcome.
type OutcomeCheck = Box<dyn Fn(&Outcome) -> bool>;

/// A stop signal for [`solve_until`] that answers "go on" `asks` times, then "stop".
pub fn stop_after(asks: usize) -> impl Fn() -> bool {
    let asked = std::cell::Cell::new(0usize);
    move || {
        asked.set(asked.get().saturating_add(1));
        asked.get() > asks
    }
}

/// What a solve should produce. Every field left `None`/empty is not checked.
#[derive(Default)]
pub struct Expect {
    claims: Option<usize>,
    placed: Option<usize>,
    unschedulable: Vec<String>,
    scheduled: Vec<String>,
    checks: Vec<(String, OutcomeCheck)>,
}

pub fn expect() -> Expect {
    Expect::default()
}

impl Expect {
    pub fn claims(mut self, n: usize) -> Self {
        self.claims = Some(n);
        self
    }
    pub fn placed(mut self, n: usize) -> Self {
        self.placed = Some(n);
        self
    }
    pub fn unschedulable(mut self, pods: &[&str]) -> Self {
        self.unschedulable
            .extend(pods.iter().map(|s| s.to_string()));
        self
    }
    pub fn scheduled(mut self, pods: &[&str]) -> Self {
        self.scheduled.extend(pods.iter().map(|s| s.to_string()));
        self
    }
    /// A free-form assertion on the outcome.
    pub fn that(mut self, what: &str, f: impl Fn(&Outcome) -> bool + 'static) -> Self {
        self.checks.push((what.into(), Box::new(f)));
        self
    }
    pub fn zone(self, pod: &str, zone: &str) -> Self {
        let (p, z) = (pod.to_string(), zone.to_string());
        self.that(&format!("{pod} in zone {zone}"), move |o| {
            o.label_of(&p, labels::ZONE).as_deref() == Some(z.as_str())
        })
    }
    pub fn nodepool_of(self, pod: &str, np: &str) -> Self {
        let (p, n) = (pod.to_string(), np.to_string());
        self.that(&format!("{pod} on nodepool {np}"), move |o| {
            o.claim_of(&p).is_some_and(|c| c.nodepool == n)
        })
    }
    pub fn on_node(self, pod: &str, node: &str) -> Self {
        let (p, n) = (pod.to_string(), node.to_string());
        self.that(&format!("{pod} on node {node}"), move |o| {
            o.node_of(&p).as_deref() == Some(n.as_str())
        })
    }
    pub fn same_node(self, a: &str, b: &str) -> Self {
        let (a2, b2) = (a.to_string(), b.to_string());
        self.that(&format!("{a} and {b} share a node"), move |o| {
            o.node_of(&a2).is_some() && o.node_of(&a2) == o.node_of(&b2)
        })
    }
    pub fn different_nodes(self, a: &str, b: &str) -> Self {
        let (a2, b2) = (a.to_string(), b.to_string());
        self.that(&format!("{a} and {b} on different nodes"), move |o| {
            o.node_of(&a2).is_some() && o.node_of(&b2).is_some() && o.node_of(&a2) != o.node_of(&b2)
        })
    }
    pub fn reason_contains(self, pod: &str, text: &str) -> Self {
        let (p, t) = (pod.to_string(), text.to_string());
        self.that(&format!("reason of {pod} mentions {text:?}"), move |o| {
            o.reason_of(&p).is_some_and(|r| r.contains(&t))
        })
    }
    pub fn instance_types_of(self, pod: &str, types: &[&str]) -> Self {
        let p = pod.to_string();
        let want: Vec<String> = types.iter().map(|s| s.to_string()).collect();
        self.that(&format!("{pod} instance types {types:?}"), move |o| {
            o.claim_of(&p).is_some_and(|c| {
                c.instance_types
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    == want
            })
        })
    }
    pub fn cheapest_type_of(self, pod: &str, t: &str) -> Self {
        let (p, t2) = (pod.to_string(), t.to_string());
        self.that(&format!("{pod} cheapest type {t}"), move |o| {
            o.claim_of(&p).is_some_and(|c| {
                c.instance_types.first().map(|t| t.to_string()) == Some(t2.clone())
            })
        })
    }
    pub fn capacity_types_of(self, pod: &str, cts: &[&str]) -> Self {
        let p = pod.to_string();
        let want: Vec<String> = cts.iter().map(|s| s.to_string()).collect();
        self.that(&format!("{pod} capacity types {cts:?}"), move |o| {
            o.claim_of(&p).is_some_and(|c| c.capacity_types == want)
        })
    }
    pub fn distinct_zones(self, n: usize) -> Self {
        self.that(
            &format!("{n} distinct zones across placed pods"),
            move |o| {
                let zones: BTreeSet<String> = o
                    .input
                    .pods
                    .iter()
                    .filter_map(|p| o.label_of(&p.name, labels::ZONE))
                    .collect();
                zones.len() == n
            },
        )
    }
}

/// A finished solve with lookups by pod name.
pub struct Outcome {
    pub input: SchedulingInput,
    pub results: SchedulingResults,
}

impl Outcome {
    fn uid(&self, pod: &str) -> Option<String> {
        self.input
            .pods
            .iter()
            .find(|p| p.name == pod)
            .map(|p| p.uid.clone())
    }
    pub fn claim_of(&self, pod: &str) -> Option<&crate::results::NewNodeClaim> {
        let uid = self.uid(pod)?;
        self.results
            .new_nodeclaims
            .iter()
            .find(|c| c.pods.contains(&uid))
    }
    /// Existing node name or new NodeClaim hostname.
    pub fn node_of(&self, pod: &str) -> Option<String> {
        let uid = self.uid(pod)?;
        if let Some(n) = self.results.existing_placements.get(&uid) {
            return Some(n.clone());
        }
        self.claim_of(pod).map(|c| c.hostname.clone())
    }
    /// A label's value where the pod landed (single-valued requirement on a new NodeClaim).
    pub fn label_of(&self, pod: &str, key: &str) -> Option<String> {
        let uid = self.uid(pod)?;
        if let Some(n) = self.results.existing_placements.get(&uid) {
            return self
                .input
                .nodes
                .iter()
                .find(|x| &x.name == n)?
                .labels
                .get(key)
                .cloned();
        }
        let c = self.claim_of(pod)?;
        c.requirements.get(key)?.single_value().map(str::to_string)
    }
    pub fn reason_of(&self, pod: &str) -> Option<String> {
        let uid = self.uid(pod)?;
        self.results.unschedulable.get(&uid).map(|e| e.to_string())
    }
}

/// Solves, verifies the solution with the independent checker, verifies determinism, then
/// asserts `expect`. Panics with the case name on any failure.
pub fn check(name: &str, s: Scenario, e: Expect) -> Outcome {
    let mut input = s.input;
    for (i, p) in input.pods.iter_mut().enumerate() {
        if p.name.is_empty() {
            p.name = format!("pod-{i}");
        }
        if p.uid.is_empty() {
            p.uid = p.name.clone();
        }
    }
    // A fresh stop signal for each solve.
    let solve_once = || {
        let stop = stop_after(s.stop_after.unwrap_or(usize::MAX));
        solve_until(&input, None, &s.options, &stop)
    };
    let results = solve_once();
    let again = solve_once();
    assert_eq!(results, again, "[{name}] solve is not deterministic");
    let violations = check_solution(&input, &s.options, &results);
    assert!(
        violations.is_empty(),
        "[{name}] checker rejected the solution: {violations:#?}\n{results:#?}"
    );
    let o = Outcome { input, results };
    if let Some(n) = e.claims {
        assert_eq!(
            o.results.new_nodeclaims.len(),
            n,
            "[{name}] new NodeClaims\n{:#?}",
            o.results
        );
    }
    if let Some(n) = e.placed {
        assert_eq!(
            o.results.placed(),
            n,
            "[{name}] placed pods\n{:#?}",
            o.results
        );
    }
    for p in &e.unschedulable {
        assert!(
            o.reason_of(p).is_some(),
            "[{name}] {p} should be unschedulable\n{:#?}",
            o.results
        );
    }
    for p in &e.scheduled {
        assert!(
            o.node_of(p).is_some(),
            "[{name}] {p} should be scheduled: {:?}",
            o.reason_of(p)
        );
    }
    for (what, f) in &e.checks {
        assert!(f(&o), "[{name}] expected {what}\n{:#?}", o.results);
    }
    o
}
