//! Unit tests of the state core, fed with synthetic objects (no API server).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::NodePool;
use karpenter_cloudprovider::ManualClock;
use karpenter_scheduling::Resources;
use karpenter_scheduling::model::{LabelSelector, TopologySpreadConstraint};
use serde_json::{Value, json};

use crate::{ClusterState, InputOptions, Kind, StateConfig, StateNode};

// ---- builders ------------------------------------------------------------------------------

struct PodB(Value);

fn pod(name: &str) -> PodB {
    PodB(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "c", "image": "img", "resources": {"requests": {}}}]},
        "status": {"phase": "Pending"}
    }))
}

impl PodB {
    fn req(mut self, name: &str, q: &str) -> Self {
        self.0["spec"]["containers"][0]["resources"]["requests"][name] = json!(q);
        self
    }
    fn cpu(self, q: &str) -> Self {
        self.req("cpu", q)
    }
    fn node(mut self, n: &str) -> Self {
        self.0["spec"]["nodeName"] = json!(n);
        self.0["status"]["phase"] = json!("Running");
        self
    }
    fn unschedulable(mut self) -> Self {
        self.0["status"]["conditions"] =
            json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]);
        self
    }
    fn phase(mut self, p: &str) -> Self {
        self.0["status"]["phase"] = json!(p);
        self
    }
    fn owner(mut self, api_version: &str, kind: &str, name: &str) -> Self {
        self.0["metadata"]["ownerReferences"] = json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": "o", "controller": true}]);
        self
    }
    fn label(mut self, k: &str, v: &str) -> Self {
        self.0["metadata"]["labels"][k] = json!(v);
        self
    }
    fn annotation(mut self, k: &str, v: &str) -> Self {
        self.0["metadata"]["annotations"][k] = json!(v);
        self
    }
    fn deleting(mut self) -> Self {
        self.0["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        self
    }
    fn nominated(mut self, n: &str) -> Self {
        self.0["status"]["nominatedNodeName"] = json!(n);
        self
    }
    fn host_port(mut self, port: i32) -> Self {
        self.0["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": port, "hostPort": port}]);
        self
    }
    fn anti_affinity(mut self, app: &str) -> Self {
        self.0["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}]}});
        self
    }
    fn build(self) -> Pod {
        serde_json::from_value(self.0).unwrap()
    }
}

struct NodeB(Value);

fn node(name: &str) -> NodeB {
    NodeB(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                   "allocatable": {"cpu": "3800m", "memory": "15Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
}

impl NodeB {
    fn provider(mut self, p: &str) -> Self {
        self.0["spec"]["providerID"] = json!(p);
        self
    }
    fn label(mut self, k: &str, v: &str) -> Self {
        self.0["metadata"]["labels"][k] = json!(v);
        self
    }
    /// Managed and fully through Karpenter's lifecycle.
    fn registered(self) -> Self {
        self.label("karpenter.sh/registered", "true")
    }
    fn initialized(self) -> Self {
        self.registered().label("karpenter.sh/initialized", "true")
    }
    fn alloc(mut self, name: &str, q: &str) -> Self {
        self.0["status"]["allocatable"][name] = json!(q);
        self.0["status"]["capacity"][name] = json!(q);
        self
    }
    fn taint(mut self, key: &str, effect: &str) -> Self {
        let mut ts = self.0["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ts.push(json!({"key": key, "effect": effect}));
        self.0["spec"]["taints"] = json!(ts);
        self
    }
    fn deleting(mut self) -> Self {
        self.0["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        self
    }
    fn build(self) -> Node {
        serde_json::from_value(self.0).unwrap()
    }
}

struct ClaimB(Value);

fn claim(name: &str, nodepool: &str) -> ClaimB {
    ClaimB(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": {"name": name, "labels": {"karpenter.sh/nodepool": nodepool,
                     "node.kubernetes.io/instance-type": "m5.xlarge"}},
        "spec": {"requirements": [], "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}},
        "status": {"capacity": {"cpu": "4", "memory": "16Gi", "pods": "58", "nvidia.com/gpu": "1"},
                   "allocatable": {"cpu": "3920m", "memory": "14Gi", "pods": "58", "nvidia.com/gpu": "1"}}
    }))
}

impl ClaimB {
    fn provider(mut self, p: &str) -> Self {
        self.0["status"]["providerID"] = json!(p);
        self
    }
    fn taint(mut self, field: &str, key: &str, effect: &str) -> Self {
        let mut ts = self.0["spec"][field]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ts.push(json!({"key": key, "effect": effect}));
        self.0["spec"][field] = json!(ts);
        self
    }
    fn label(mut self, k: &str, v: &str) -> Self {
        self.0["metadata"]["labels"][k] = json!(v);
        self
    }
    fn build(self) -> NodeClaim {
        serde_json::from_value(self.0).unwrap()
    }
}

fn daemonset(name: &str, cpu: &str) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "kube-system", "uid": format!("ds-{name}")},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "d", "resources": {"requests": {"cpu": cpu}}}]}}}
    }))
    .unwrap()
}

fn ds_pod(name: &str, ds: &str, node: &str, cpu: &str) -> Pod {
    let mut p = pod(name)
        .cpu(cpu)
        .node(node)
        .owner("apps/v1", "DaemonSet", ds)
        .label("app", ds)
        .0;
    p["metadata"]["namespace"] = json!("kube-system");
    // What the DaemonSet controller adds: pin to the node by name.
    p["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}});
    serde_json::from_value(p).unwrap()
}

fn pdb(name: &str, app: &str, max_unavailable: Value) -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": app}}, "maxUnavailable": max_unavailable},
        "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
    }))
    .unwrap()
}

struct Env {
    clock: Arc<ManualClock>,
    state: ClusterState,
}

fn env() -> Env {
    let clock = Arc::new(ManualClock::at_epoch_2026());
    let state = ClusterState::new(clock.clone(), StateConfig::default());
    Env { clock, state }
}

fn cpu(r: &Resources) -> i64 {
    r.cpu
}

fn all_listed(state: &ClusterState) {
    for k in Kind::ALL {
        state.mark_listed(k);
    }
}

// ---- state nodes ---------------------------------------------------------------------------

fn describe(nodes: &[StateNode]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| {
            format!(
                "{} name={} managed={} in_flight={} registered={} initialized={}",
                n.key(),
                n.name(),
                n.managed(),
                n.in_flight(),
                n.registered(),
                n.initialized()
            )
        })
        .collect()
}

#[test]
fn nodes_and_nodeclaims_join_by_provider_id() {
    let e = env();
    e.state
        .apply(&claim("nc-1", "default").provider("aws:///a/i-1").build());
    assert_eq!(
        describe(&e.state.snapshot().nodes()),
        ["aws:///a/i-1 name=nc-1 managed=true in_flight=true registered=false initialized=false"]
    );
    e.state
        .apply(&node("ip-1").provider("aws:///a/i-1").registered().build());
    e.state
        .apply(&node("ip-2").provider("aws:///a/i-2").build());
    e.state.apply(&node("kind-node").build());
    assert_eq!(
        describe(&e.state.snapshot().nodes()),
        [
            "aws:///a/i-1 name=ip-1 managed=true in_flight=false registered=true initialized=false",
            "aws:///a/i-2 name=ip-2 managed=false in_flight=false registered=true initialized=true",
            "kind-node name=kind-node managed=false in_flight=false registered=true initialized=true",
        ]
    );
    assert_eq!(e.state.node_count(), 3);
    // Lookup by provider ID, Node name or NodeClaim name finds the same joined node.
    let snap = e.state.snapshot();
    for key in ["aws:///a/i-1", "ip-1", "nc-1"] {
        let n = snap.node(key).unwrap();
        assert_eq!((n.name(), n.managed()), ("ip-1", true), "{key}");
    }
    // The NodeClaim goes: the Node stays, now unmanaged.
    e.state.delete(Kind::NodeClaim, "nc-1");
    let n = e.state.snapshot().node("aws:///a/i-1").unwrap();
    assert_eq!((n.name(), n.managed()), ("ip-1", false));
    // A Node changing provider ID moves its index entry.
    e.state
        .apply(&node("ip-2").provider("aws:///a/i-9").build());
    assert!(e.state.snapshot().node("aws:///a/i-2").is_none());
    assert_eq!(
        e.state.snapshot().node("aws:///a/i-9").unwrap().name(),
        "ip-2"
    );
    e.state.delete(Kind::Node, "ip-2");
    assert!(e.state.snapshot().node("aws:///a/i-9").is_none());
    assert_eq!(e.state.node_count(), 2);
}

// ---- node views: in-flight and uninitialized rules ----------------------------------------

struct ViewCase {
    name: &'static str,
    node: Option<Node>,
    claim: Option<NodeClaim>,
    want_labels_from: &'static str,
    want_taints: &'static [&'static str],
    want_cpu_alloc: i64,
    want_gpu_alloc: i64,
    want_initialized: bool,
    want_in_flight: bool,
}

fn check_view(c: ViewCase) {
    let e = env();
    if let Some(n) = &c.node {
        e.state.apply(n);
    }
    if let Some(nc) = &c.claim {
        e.state.apply(nc);
    }
    let input = e.state.snapshot().scheduling_input(vec![], vec![]);
    assert_eq!(input.nodes.len(), 1, "{}", c.name);
    let v = &input.nodes[0];
    assert_eq!(
        v.labels.get("from").map(String::as_str),
        Some(c.want_labels_from),
        "{}: labels",
        c.name
    );
    let taints: Vec<String> = v.taints.iter().map(|t| t.key.clone()).collect();
    assert_eq!(taints, c.want_taints, "{}: taints", c.name);
    assert_eq!(v.allocatable.cpu, c.want_cpu_alloc, "{}: cpu", c.name);
    assert_eq!(
        v.allocatable.get("nvidia.com/gpu"),
        c.want_gpu_alloc,
        "{}: gpu",
        c.name
    );
    assert_eq!(v.initialized, c.want_initialized, "{}: initialized", c.name);
    assert_eq!(v.in_flight, c.want_in_flight, "{}: in_flight", c.name);
}

#[test]
fn node_views_follow_the_uninitialized_node_rules() {
    let base_claim = || {
        claim("nc", "default")
            .provider("aws:///a/i-1")
            .label("from", "claim")
            .taint("taints", "team", "NoSchedule")
            .taint("startupTaints", "cilium.io/agent-not-ready", "NoExecute")
    };
    let base_node = || {
        node("ip-1")
            .provider("aws:///a/i-1")
            .label("from", "node")
            .taint("team", "NoSchedule")
            .taint("cilium.io/agent-not-ready", "NoExecute")
            .taint("node.kubernetes.io/not-ready", "NoSchedule")
            .alloc("nvidia.com/gpu", "0")
    };
    let cases = [
        ViewCase {
            name: "in flight: everything from the NodeClaim, startup taints ignored",
            node: None,
            claim: Some(base_claim().build()),
            want_labels_from: "claim",
            want_taints: &["team"],
            want_cpu_alloc: 3920,
            want_gpu_alloc: 1,
            want_initialized: false,
            want_in_flight: true,
        },
        ViewCase {
            name: "node joined but not registered: labels and taints still from the NodeClaim",
            node: Some(base_node().build()),
            claim: Some(base_claim().build()),
            want_labels_from: "claim",
            want_taints: &["team"],
            want_cpu_alloc: 3800,
            want_gpu_alloc: 1,
            want_initialized: false,
            want_in_flight: false,
        },
        ViewCase {
            name: "registered, not initialized: node labels/taints minus startup and ephemeral; zero GPU falls back",
            node: Some(base_node().registered().build()),
            claim: Some(base_claim().build()),
            want_labels_from: "node",
            want_taints: &["team"],
            want_cpu_alloc: 3800,
            want_gpu_alloc: 1,
            want_initialized: false,
            want_in_flight: false,
        },
        ViewCase {
            name: "initialized: the Node as it is",
            node: Some(base_node().initialized().build()),
            claim: Some(base_claim().build()),
            want_labels_from: "node",
            want_taints: &[
                "team",
                "cilium.io/agent-not-ready",
                "node.kubernetes.io/not-ready",
            ],
            want_cpu_alloc: 3800,
            want_gpu_alloc: 0,
            want_initialized: true,
            want_in_flight: false,
        },
        ViewCase {
            name: "unmanaged: the Node as it is, always initialized",
            node: Some(base_node().build()),
            claim: None,
            want_labels_from: "node",
            want_taints: &[
                "team",
                "cilium.io/agent-not-ready",
                "node.kubernetes.io/not-ready",
            ],
            want_cpu_alloc: 3800,
            want_gpu_alloc: 0,
            want_initialized: true,
            want_in_flight: false,
        },
    ];
    for c in cases {
        check_view(c);
    }
}

#[test]
fn used_resources_follow_binds_unbinds_and_daemonsets() {
    let e = env();
    e.state.apply(&node("n1").label("pool", "a").build());
    e.state.apply(
        &node("n2")
            .label("pool", "b")
            .taint("dedicated", "NoSchedule")
            .build(),
    );
    let used = |state: &ClusterState,
                pending: Vec<karpenter_scheduling::PodView>|
     -> BTreeMap<String, i64> {
        state
            .snapshot()
            .scheduling_input(pending, vec![])
            .nodes
            .iter()
            .map(|n| (n.name.clone(), cpu(&n.used)))
            .collect()
    };
    let want = |pairs: &[(&str, i64)]| -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };
    e.state.apply(&pod("a").cpu("1").node("n1").build());
    e.state.apply(&pod("b").cpu("500m").node("n1").build());
    e.state
        .apply(&pod("done").cpu("2").node("n1").phase("Succeeded").build());
    assert_eq!(used(&e.state, vec![]), want(&[("n1", 1500), ("n2", 0)]));
    // Rebinding moves the requests; a phase change to terminal releases them.
    e.state.apply(&pod("b").cpu("500m").node("n2").build());
    e.state
        .apply(&pod("a").cpu("1").node("n1").phase("Failed").build());
    assert_eq!(used(&e.state, vec![]), want(&[("n1", 0), ("n2", 500)]));
    e.state.delete(Kind::Pod, "default/b");
    assert_eq!(used(&e.state, vec![]), want(&[("n1", 0), ("n2", 0)]));
    // A DaemonSet counts where it would run (n2's taint keeps it off) until its pod is there.
    e.state.apply(&daemonset("agent", "100m"));
    assert_eq!(used(&e.state, vec![]), want(&[("n1", 100), ("n2", 0)]));
    e.state.apply(&ds_pod("agent-x", "agent", "n1", "100m"));
    assert_eq!(used(&e.state, vec![]), want(&[("n1", 100), ("n2", 0)]));
    // A preempting pod reserves room on its nominated node, unless it is being scheduled now.
    let preempting = pod("p").cpu("2").nominated("n1").build();
    e.state.apply(&preempting);
    assert_eq!(used(&e.state, vec![]), want(&[("n1", 2100), ("n2", 0)]));
    let pending = crate::PodInfo::from_pod(&preempting).unwrap().view;
    assert_eq!(
        used(&e.state, vec![pending]),
        want(&[("n1", 100), ("n2", 0)])
    );
    e.state.delete(Kind::Pod, "default/p");
    e.state.delete(Kind::Pod, "kube-system/agent-x");
    assert_eq!(used(&e.state, vec![]), want(&[("n1", 100), ("n2", 0)]));
    // Usage entries disappear with their last pod.
    e.state.delete(Kind::Pod, "default/a");
    e.state.delete(Kind::Pod, "default/done");
    assert!(e.state.snapshot().node("n1").unwrap().usage.is_none());
}

#[test]
fn daemonset_representatives_prefer_a_running_pod_without_its_node_pin() {
    let e = env();
    e.state.apply(&daemonset("agent", "100m"));
    e.state.apply(&daemonset("logs", "50m"));
    e.state.apply(&ds_pod("agent-x", "agent", "n1", "150m"));
    let reps = e.state.snapshot().daemonset_pods();
    let got: Vec<(String, i64, bool, usize)> = reps
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.requests.cpu,
                p.uses_match_fields,
                p.required_node_affinity.len(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("agent-x".to_string(), 150, false, 0),
            ("logs".to_string(), 50, false, 0)
        ]
    );
}

// ---- nominations, marks --------------------------------------------------------------------

#[test]
fn nominations_expire_after_the_window() {
    let e = env();
    e.state.apply(&node("n1").provider("aws:///a/i-1").build());
    e.state.nominate("aws:///a/i-1");
    let nominated = |e: &Env| {
        (
            e.state.is_nominated("aws:///a/i-1"),
            e.state.snapshot().node("n1").unwrap().nominated,
        )
    };
    assert_eq!(nominated(&e), (true, true));
    e.clock.advance(Duration::from_secs(19));
    assert_eq!(nominated(&e), (true, true));
    e.clock.advance(Duration::from_secs(1));
    assert_eq!(nominated(&e), (false, false), "window is 20s by default");
    // A longer batch window widens it: max(2 × 30s, 10s).
    assert_eq!(
        StateConfig::from_batch_max_duration(Duration::from_secs(30)).nomination_window,
        Duration::from_secs(60)
    );
    assert_eq!(
        StateConfig::from_batch_max_duration(Duration::from_secs(1)).nomination_window,
        Duration::from_secs(10)
    );
}

// ---- synced gate and metrics ---------------------------------------------------------------

fn gauge(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .find(|f| f.name() == name)
        .map(|f| f.get_metric()[0].get_gauge().get_value())
        .unwrap()
}

#[test]
fn synced_gate_transitions_and_gauges() {
    let clock = Arc::new(ManualClock::at_epoch_2026());
    let registry = prometheus::Registry::new();
    // The operator's registry defines the families; state only gets the handles.
    let register = |name: &str| {
        let g = prometheus::Gauge::new(name, "test").unwrap();
        registry.register(Box::new(g.clone())).unwrap();
        g
    };
    let metrics = crate::StateMetrics::new(
        register("karpenter_cluster_state_node_count"),
        register("karpenter_cluster_state_synced"),
        register("karpenter_cluster_state_unsynced_time_seconds"),
    );
    let state = ClusterState::new(clock.clone(), StateConfig::default()).with_metrics(metrics);
    let ncs = vec!["nc-1".to_string()];
    let nodes = vec!["ip-1".to_string()];
    assert!(!state.is_synced(), "nothing listed");
    state.apply(&claim("nc-1", "default").provider("aws:///a/i-1").build());
    state.apply(&node("ip-1").provider("aws:///a/i-1").build());
    for k in Kind::ALL.iter().filter(|k| **k != Kind::Pod) {
        state.mark_listed(*k);
    }
    assert!(
        !state.confirm_api_names(&ncs, &nodes),
        "pods not listed yet"
    );
    assert!(!state.is_synced());
    clock.advance(Duration::from_secs(7));
    state.refresh_metrics();
    assert_eq!(
        gauge(&registry, "karpenter_cluster_state_unsynced_time_seconds"),
        7.0
    );
    assert_eq!(gauge(&registry, "karpenter_cluster_state_synced"), 0.0);
    state.mark_listed(Kind::Pod);
    assert!(
        !state.confirm_api_names(&["nc-1".to_string(), "nc-2".to_string()], &nodes),
        "the API has a NodeClaim state has not seen"
    );
    assert!(state.confirm_api_names(&ncs, &nodes));
    assert!(state.is_synced());
    assert_eq!(gauge(&registry, "karpenter_cluster_state_synced"), 1.0);
    assert_eq!(
        gauge(&registry, "karpenter_cluster_state_unsynced_time_seconds"),
        0.0
    );
    assert_eq!(gauge(&registry, "karpenter_cluster_state_node_count"), 1.0);
    // A NodeClaim still launching closes the gate until it has a provider ID.
    state.apply(&claim("nc-2", "default").build());
    assert!(!state.is_synced());
    assert_eq!(gauge(&registry, "karpenter_cluster_state_node_count"), 2.0);
    clock.advance(Duration::from_secs(3));
    state.refresh_metrics();
    assert_eq!(
        gauge(&registry, "karpenter_cluster_state_unsynced_time_seconds"),
        3.0
    );
    state.apply(&claim("nc-2", "default").provider("aws:///a/i-2").build());
    assert!(state.is_synced(), "latched: the API check is not repeated");
}

#[tokio::test]
async fn wait_synced_returns_once_the_gate_opens() {
    let e = Arc::new(env());
    let waiter = {
        let e = e.clone();
        tokio::spawn(async move { e.state.wait_synced().await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    all_listed(&e.state);
    assert!(e.state.confirm_api_names(&[], &[]));
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
}

// ---- pod filters ---------------------------------------------------------------------------

#[test]
fn provisionable_pods_follow_upstreams_filter() {
    let cases: Vec<(&str, Pod, bool)> = vec![
        ("unschedulable", pod("a").unschedulable().build(), true),
        ("no PodScheduled condition yet", pod("b").build(), false),
        ("bound", pod("c").unschedulable().node("n1").build(), false),
        (
            "preempting",
            pod("d").unschedulable().nominated("n1").build(),
            false,
        ),
        (
            "daemonset",
            pod("e")
                .unschedulable()
                .owner("apps/v1", "DaemonSet", "ds")
                .build(),
            false,
        ),
        (
            "mirror",
            pod("f").unschedulable().owner("v1", "Node", "n1").build(),
            false,
        ),
        (
            "mirror by annotation",
            pod("g")
                .unschedulable()
                .annotation("kubernetes.io/config.mirror", "x")
                .build(),
            false,
        ),
        (
            "terminal",
            pod("h").unschedulable().phase("Failed").build(),
            false,
        ),
        (
            "terminating",
            pod("i").unschedulable().deleting().build(),
            false,
        ),
        (
            "replicaset-owned",
            pod("j")
                .unschedulable()
                .owner("apps/v1", "ReplicaSet", "rs")
                .build(),
            true,
        ),
    ];
    let e = env();
    for (_, p, _) in &cases {
        e.state.apply(p);
    }
    let got: BTreeSet<String> = e
        .state
        .snapshot()
        .pending_provisionable_pods()
        .iter()
        .map(|p| p.view.name.clone())
        .collect();
    for (what, p, want) in &cases {
        let name = p.metadata.name.clone().unwrap();
        assert_eq!(got.contains(&name), *want, "{what}");
    }
    // The index follows updates: the pod gets bound.
    e.state.apply(&pod("a").unschedulable().node("n1").build());
    assert!(
        e.state
            .snapshot()
            .pending_provisionable_pods()
            .iter()
            .all(|p| p.view.name != "a")
    );
}

#[test]
fn pods_on_deleting_nodes_are_the_reschedulable_ones() {
    let e = env();
    e.state.apply(&node("gone").deleting().build());
    e.state
        .apply(&node("marked").provider("aws:///a/i-m").build());
    e.state.apply(&node("live").build());
    e.state.apply(&pdb("block", "blocked", json!(0)));
    e.state.apply(&pdb("soft", "soft", json!("10%")));
    let cases: Vec<(&str, Pod, bool)> = vec![
        (
            "plain pod on a deleting node",
            pod("a").node("gone").build(),
            true,
        ),
        (
            "plain pod on a marked node",
            pod("b").node("marked").build(),
            true,
        ),
        ("pod on a live node", pod("c").node("live").build(), false),
        (
            "daemonset pod",
            pod("d")
                .node("gone")
                .owner("apps/v1", "DaemonSet", "x")
                .build(),
            false,
        ),
        (
            "mirror pod",
            pod("e").node("gone").owner("v1", "Node", "gone").build(),
            false,
        ),
        (
            "do-not-disrupt",
            pod("f")
                .node("gone")
                .annotation("karpenter.sh/do-not-disrupt", "true")
                .build(),
            false,
        ),
        (
            "terminal",
            pod("g").node("gone").phase("Succeeded").build(),
            false,
        ),
        (
            "terminating deployment pod",
            pod("h")
                .node("gone")
                .owner("apps/v1", "ReplicaSet", "r")
                .deleting()
                .build(),
            false,
        ),
        (
            "terminating statefulset pod",
            pod("i")
                .node("gone")
                .owner("apps/v1", "StatefulSet", "s")
                .deleting()
                .build(),
            true,
        ),
        (
            "fully blocked by a PDB",
            pod("j").node("gone").label("app", "blocked").build(),
            false,
        ),
        (
            "PDB that allows some",
            pod("k").node("gone").label("app", "soft").build(),
            true,
        ),
    ];
    for (_, p, _) in &cases {
        e.state.apply(p);
    }
    e.state.mark_for_deletion(["aws:///a/i-m"]);
    let got: BTreeSet<String> = e
        .state
        .snapshot()
        .pods_on_deleting_nodes()
        .iter()
        .map(|p| p.view.name.clone())
        .collect();
    for (what, p, want) in &cases {
        assert_eq!(
            got.contains(p.metadata.name.as_deref().unwrap()),
            *want,
            "{what}"
        );
    }
    e.state.unmark_for_deletion(["aws:///a/i-m"]);
    assert!(!e.state.is_marked_for_deletion("aws:///a/i-m"));
    let after: Vec<String> = e
        .state
        .snapshot()
        .pods_on_deleting_nodes()
        .iter()
        .map(|p| p.view.name.clone())
        .collect();
    assert!(!after.contains(&"b".to_string()));
    // Deleting and marked nodes are not capacity.
    let names: Vec<String> = e
        .state
        .snapshot()
        .scheduling_input(vec![], vec![])
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect();
    assert_eq!(
        names,
        ["marked", "live"],
        "ordered by key: the provider ID sorts first"
    );
}

#[test]
fn nodepool_usage_counts_in_flight_capacity() {
    let e = env();
    e.state
        .apply(&claim("a-1", "a").provider("aws:///a/i-1").build());
    e.state.apply(
        &node("ip-1")
            .provider("aws:///a/i-1")
            .initialized()
            .label("karpenter.sh/nodepool", "a")
            .build(),
    );
    e.state
        .apply(&claim("a-2", "a").provider("aws:///a/i-2").build());
    e.state
        .apply(&claim("b-1", "b").provider("aws:///a/i-3").build());
    let snap = e.state.snapshot();
    let a = snap.nodepool_usage("a");
    // ip-1 reports 4 CPUs; the in-flight a-2 counts its NodeClaim capacity (4).
    assert_eq!(
        (a.cpu, a.get("nodes"), a.get("nvidia.com/gpu")),
        (8000, 2, 1)
    );
    assert_eq!(snap.nodepool_usage("b").get("nodes"), 1);
    assert_eq!(
        snap.nodepool_usage("none"),
        Resources::new().with("nodes", 0)
    );
    let names: Vec<String> = snap
        .nodeclaims_for_nodepool("a")
        .iter()
        .map(|n| n.name.clone())
        .collect();
    assert_eq!(names, ["a-1", "a-2"]);
}

// ---- snapshots, relists, conversion --------------------------------------------------------

#[test]
fn snapshots_do_not_see_later_events() {
    let e = env();
    e.state.apply(&node("n1").build());
    e.state.apply(&pod("a").cpu("1").node("n1").build());
    let before = e.state.snapshot();
    e.state.apply(&pod("b").cpu("1").node("n1").build());
    e.state.delete(Kind::Node, "n1");
    assert_eq!(before.pod_count(), 1);
    assert_eq!(before.nodes().len(), 1);
    assert_eq!(before.node("n1").unwrap().requested().cpu, 1000);
    let after = e.state.snapshot();
    assert_eq!((after.pod_count(), after.nodes().len()), (2, 0));
}

#[test]
fn relist_removes_objects_the_new_list_lacks() {
    let e = env();
    e.state.apply(&node("n1").build());
    for name in ["a", "b", "c"] {
        e.state.apply(&pod(name).cpu("1").node("n1").build());
    }
    let seen: HashSet<crate::Key> = ["default/a", "default/c"]
        .into_iter()
        .map(crate::Key::from)
        .collect();
    e.state.retain(Kind::Pod, &seen);
    let snap = e.state.snapshot();
    assert_eq!(snap.pod_count(), 2);
    assert_eq!(snap.node("n1").unwrap().requested().cpu, 2000);
}

#[test]
fn objects_that_do_not_convert_are_dropped_not_kept_stale() {
    let e = env();
    e.state.apply(&pod("a").cpu("1").node("n1").build());
    e.state.apply(&pod("a").cpu("lots").node("n1").build());
    assert_eq!(e.state.pod_count(), 0);
    assert_eq!(e.state.rejected_count(), 1);
    assert!(e.state.snapshot().node("n1").is_none());
}

#[test]
fn only_decision_fields_are_kept() {
    let mut p = pod("big")
        .cpu("1")
        .annotation(
            "kubectl.kubernetes.io/last-applied-configuration",
            &"x".repeat(10_000),
        )
        .annotation("karpenter.sh/do-not-disrupt", "true")
        .0;
    p["metadata"]["managedFields"] = json!([{"manager": "kubectl-secret-manager", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]);
    p["spec"]["containers"][0]["env"] = json!([{"name": "SECRET_ENV", "value": "hunter2"}]);
    p["spec"]["containers"][0]["image"] = json!("registry.example/app:v1");
    p["status"]["containerStatuses"] = json!([{"name": "c", "ready": true, "restartCount": 0, "image": "registry.example/app:v1", "imageID": "sha", "containerID": "containerd://abc"}]);
    let info = crate::PodInfo::from_pod(&serde_json::from_value(p).unwrap()).unwrap();
    let kept = format!("{info:?}");
    for dropped in [
        "xxxxxxxxxx",
        "kubectl-secret-manager",
        "hunter2",
        "registry.example",
        "containerd://",
    ] {
        assert!(!kept.contains(dropped), "{dropped} should not be kept");
    }
    assert!(info.do_not_disrupt);
    assert_eq!(info.view.requests.cpu, 1000);

    let e = env();
    let mut np: NodePool = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {"name": "default", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"template": {"spec": {"requirements": [], "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}}}}
    }))
    .unwrap();
    np.metadata.managed_fields = Some(vec![Default::default()]);
    e.state.apply(&np);
    let stored = e.state.snapshot().nodepool("default").unwrap();
    assert!(stored.metadata.managed_fields.is_none());
    assert!(
        !stored
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .contains_key("kubectl.kubernetes.io/last-applied-configuration")
    );
}

// ---- scheduling input ----------------------------------------------------------------------

#[test]
fn bound_pods_are_limited_to_those_that_can_affect_topology() {
    let e = env();
    e.state.apply(&node("n1").build());
    e.state.apply(
        &pod("web-1")
            .node("n1")
            .label("app", "web")
            .host_port(8080)
            .build(),
    );
    e.state
        .apply(&pod("db-1").node("n1").label("app", "db").build());
    e.state.apply(
        &pod("guard")
            .node("n1")
            .label("app", "guard")
            .anti_affinity("web")
            .build(),
    );
    e.state.apply(
        &pod("web-old")
            .node("n1")
            .label("app", "web")
            .deleting()
            .build(),
    );
    let mut pending = crate::PodInfo::from_pod(&pod("web-2").label("app", "web").build())
        .unwrap()
        .view;
    pending.topology_spread.push(TopologySpreadConstraint {
        max_skew: 1,
        topology_key: "topology.kubernetes.io/zone".into(),
        when_unsatisfiable: karpenter_scheduling::model::WhenUnsatisfiable::DoNotSchedule,
        label_selector: Some(LabelSelector::labels(&[("app", "web")])),
        min_domains: None,
        node_affinity_policy: karpenter_scheduling::model::InclusionPolicy::Honor,
        node_taints_policy: karpenter_scheduling::model::InclusionPolicy::Ignore,
        match_label_keys: vec![],
    });
    let snap = e.state.snapshot();
    let names = |input: &karpenter_scheduling::SchedulingInput| -> BTreeSet<String> {
        input.bound_pods.iter().map(|p| p.name.clone()).collect()
    };
    let input = snap.scheduling_input(vec![pending.clone()], vec![]);
    assert_eq!(
        names(&input),
        BTreeSet::from(["web-1".to_string(), "guard".to_string()])
    );
    // Host ports come with the node view whether or not the pod is passed.
    assert_eq!(input.nodes[0].host_ports.len(), 1);
    let all = snap.scheduling_input_with(
        vec![pending],
        vec![],
        &InputOptions {
            all_bound_pods: true,
            ..Default::default()
        },
    );
    assert_eq!(
        names(&all),
        BTreeSet::from(["web-1".to_string(), "guard".to_string(), "db-1".to_string()])
    );
    let excluded = snap.scheduling_input_with(
        vec![],
        vec![],
        &InputOptions {
            exclude_nodes: BTreeSet::from(["n1".to_string()]),
            ..Default::default()
        },
    );
    assert!(excluded.nodes.is_empty() && excluded.bound_pods.is_empty());
}

#[test]
fn daemonsets_selecting_lifecycle_labels_count_on_nodes_still_starting() {
    let e = env();
    let mut ds = daemonset("agent", "200m");
    if let Some(spec) = ds.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.node_selector =
            Some([("karpenter.sh/initialized".to_string(), "true".to_string())].into());
    }
    e.state.apply(&ds);
    e.state
        .apply(&claim("nc", "default").provider("aws:///a/i-1").build());
    e.state.apply(&node("unmanaged").build());
    let used: BTreeMap<String, i64> = e
        .state
        .snapshot()
        .scheduling_input(vec![], vec![])
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.used.cpu))
        .collect();
    assert_eq!(
        used,
        BTreeMap::from([("nc".to_string(), 200), ("unmanaged".to_string(), 0)])
    );
}

// ---- provisioning times of pods --------------------------------------------------------------

#[test]
fn pod_scheduling_times_follow_ack_decision_and_the_pod() {
    use karpenter_cloudprovider::Clock;
    let e = env();
    let t0 = e.clock.now();
    let a = pod("a").unschedulable().build();
    let b = pod("b").unschedulable().build();
    e.state.apply(&a);
    e.state.apply(&b);
    let snap = e.state.snapshot();
    let views: Vec<_> = snap
        .pending_provisionable_pods()
        .iter()
        .map(|p| p.view.clone())
        .collect();
    // A pod state does not hold is never acknowledged (nothing would remove it).
    let mut ghost = views[0].clone();
    ghost.uid = "uid-ghost".into();
    ghost.name = "ghost".into();
    e.state.ack_pods(views.iter().chain([&ghost]));
    e.clock.advance(Duration::from_secs(3));
    // A second ack keeps the first time.
    e.state.ack_pods(views.iter());
    let times = e.state.snapshot().pod_scheduling("uid-a").unwrap();
    assert_eq!(
        (times.acked, times.decided, times.schedulable),
        (t0, None, None)
    );
    assert_eq!(e.state.snapshot().pod_scheduling("uid-ghost"), None);

    // a placed, b failed: each decided once; only a is schedulable.
    let first =
        e.state
            .mark_pod_decisions([("uid-a", true), ("uid-b", false), ("uid-ghost", true)]);
    assert_eq!(first, vec![3.0, 3.0]);
    e.clock.advance(Duration::from_secs(2));
    let again = e
        .state
        .mark_pod_decisions([("uid-a", true), ("uid-b", true)]);
    assert!(again.is_empty(), "decision durations are observed once");
    let snap = e.state.snapshot();
    let t3 = t0 + chrono::Duration::seconds(3);
    let t5 = t0 + chrono::Duration::seconds(5);
    assert_eq!(snap.pod_scheduling("uid-a").unwrap().schedulable, Some(t3));
    assert_eq!(snap.pod_scheduling("uid-b").unwrap().decided, Some(t3));
    assert_eq!(snap.pod_scheduling("uid-b").unwrap().schedulable, Some(t5));

    // Cleared explicitly, on delete, and when the name comes back as another pod.
    e.state.clear_pod_scheduling(["uid-a"]);
    assert_eq!(e.state.snapshot().pod_scheduling("uid-a"), None);
    e.state.apply(&pod("b").label("v", "2").build());
    assert!(
        e.state.snapshot().pod_scheduling("uid-b").is_some(),
        "same pod updated"
    );
    let mut reborn = pod("b").unschedulable().build();
    reborn.metadata.uid = Some("uid-b2".into());
    e.state.apply(&reborn);
    assert_eq!(e.state.snapshot().pod_scheduling("uid-b"), None);
    e.state.ack_pods(
        e.state
            .snapshot()
            .pending_provisionable_pods()
            .iter()
            .map(|p| &p.view),
    );
    assert!(e.state.snapshot().pod_scheduling("uid-b2").is_some());
    e.state.delete(Kind::Pod, "default/b");
    assert_eq!(e.state.snapshot().pod_scheduling("uid-b2"), None);
}
