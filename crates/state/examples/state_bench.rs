//! Cluster-state benchmark: applies 5,000 NodeClaims, 5,000 Nodes and 50,000 pods as watch
//! events would, then measures updates, snapshots (idle and under churn), the solver input and
//! resident memory.
//!
//! `cargo run --release -p karpenter-state --example state_bench`

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_cloudprovider::SystemClock;
use karpenter_scheduling::PodView;
use karpenter_state::{ClusterState, PodInfo, StateConfig};
use serde_json::json;

const NODES: usize = 5_000;
const PODS_PER_NODE: usize = 10;
const PENDING: usize = 1_000;
const BATCH: usize = 1_000;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn zone(i: usize) -> &'static str {
    ["us-west-2a", "us-west-2b", "us-west-2c"][i % 3]
}

fn provider(i: usize) -> String {
    format!("aws:///{}/i-{i:017x}", zone(i))
}

fn node(i: usize) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": format!("ip-10-0-{}-{}.us-west-2.compute.internal", i / 256, i % 256),
            "uid": format!("node-{i}"), "resourceVersion": "1",
            "labels": {
                "kubernetes.io/hostname": format!("ip-10-0-{}-{}", i / 256, i % 256),
                "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": "m5.2xlarge",
                "topology.kubernetes.io/zone": zone(i), "topology.kubernetes.io/region": "us-west-2",
                "karpenter.sh/nodepool": "default", "karpenter.sh/capacity-type": "on-demand",
                "karpenter.sh/registered": "true", "karpenter.sh/initialized": "true",
                "karpenter.k8s.aws/ec2nodeclass": "default",
                "karpenter.k8s.aws/instance-family": "m5", "karpenter.k8s.aws/instance-size": "2xlarge",
                "karpenter.k8s.aws/instance-cpu": "8", "karpenter.k8s.aws/instance-memory": "32768"
            },
            "annotations": {"alpha.kubernetes.io/provided-node-ip": "10.0.0.1", "node.alpha.kubernetes.io/ttl": "0"},
            "managedFields": [{"manager": "kubelet", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:conditions": {}}}}]},
        "spec": {"providerID": provider(i)},
        "status": {
            "capacity": {"cpu": "8", "memory": "32386452Ki", "pods": "58", "ephemeral-storage": "20959212Ki"},
            "allocatable": {"cpu": "7910m", "memory": "31369620Ki", "pods": "58", "ephemeral-storage": "18242267924"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
            "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1", "osImage": "Amazon Linux 2023",
                "containerRuntimeVersion": "containerd://1.7", "kubeletVersion": "v1.34.1", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
            "images": [{"names": ["registry/app:v1"], "sizeBytes": 123456}]
        }
    }))
    .unwrap_or_default()
}

fn nodeclaim(i: usize) -> Option<NodeClaim> {
    serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": {"name": format!("default-{i:05}"), "labels": {"karpenter.sh/nodepool": "default",
            "node.kubernetes.io/instance-type": "m5.2xlarge", "topology.kubernetes.io/zone": zone(i)}},
        "spec": {"requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.2xlarge"]}],
                 "resources": {"requests": {"cpu": "4", "pods": "10"}},
                 "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}},
        "status": {"providerID": provider(i), "nodeName": format!("ip-10-0-{}-{}.us-west-2.compute.internal", i / 256, i % 256),
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "58"}, "allocatable": {"cpu": "7910m", "memory": "30Gi", "pods": "58"},
            "conditions": [{"type": "Launched", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "Launched", "message": ""},
                           {"type": "Registered", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "Registered", "message": ""},
                           {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "Initialized", "message": ""}]}
    }))
    .ok()
}

fn pod(i: usize, node: Option<usize>, cpu: &str) -> Pod {
    let app = format!("app-{}", i % 200);
    let mut v = json!({
        "metadata": {"name": format!("{app}-{i:06}"), "namespace": format!("team-{}", i % 20), "uid": format!("pod-{i}"),
            "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": app, "pod-template-hash": "5d4f8c7b9"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-5d4f8c7b9"), "uid": "rs", "controller": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:containers": {}}}}]},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:v1.2.3",
                    "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "PORT", "value": "8080"}],
                    "ports": [{"containerPort": 8080}],
                    "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}, "limits": {"memory": "512Mi"}}}],
                 "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                 "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app": app}}}]},
        "status": {"phase": "Pending"}
    });
    match node {
        Some(n) => {
            v["spec"]["nodeName"] = json!(format!(
                "ip-10-0-{}-{}.us-west-2.compute.internal",
                n / 256,
                n % 256
            ));
            v["status"] = json!({"phase": "Running", "podIP": "10.0.0.5", "hostIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "registry.example/app:v1.2.3",
                    "imageID": "sha256:abc", "containerID": "containerd://0123456789abcdef"}]});
        }
        None => {
            v["status"]["conditions"] =
                json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]);
        }
    }
    serde_json::from_value(v).unwrap_or_default()
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let state = Arc::new(ClusterState::new(
        Arc::new(SystemClock),
        StateConfig::default(),
    ));
    let rss_start = rss_mib();

    // Objects are built in batches outside the timer and dropped after applying, so the
    // resident-memory figure is what state keeps.
    let mut applied = 0usize;
    let mut apply_time = Duration::ZERO;
    for chunk in (0..NODES).collect::<Vec<_>>().chunks(BATCH) {
        let claims: Vec<NodeClaim> = chunk.iter().filter_map(|i| nodeclaim(*i)).collect();
        let nodes: Vec<Node> = chunk.iter().map(|i| node(*i)).collect();
        let t = Instant::now();
        for c in &claims {
            state.apply(c);
        }
        for n in &nodes {
            state.apply(n);
        }
        apply_time += t.elapsed();
        applied += claims.len() + nodes.len();
    }
    let node_events = applied;
    let node_time = apply_time;
    let total_pods = NODES * PODS_PER_NODE;
    let mut pod_time = Duration::ZERO;
    for start in (0..total_pods).step_by(BATCH) {
        let pods: Vec<Pod> = (start..(start + BATCH).min(total_pods))
            .map(|i| pod(i, Some(i % NODES), "100m"))
            .collect();
        let t = Instant::now();
        for p in &pods {
            state.apply(p);
        }
        pod_time += t.elapsed();
    }
    let pending: Vec<Pod> = (0..PENDING)
        .map(|i| pod(total_pods + i, None, "500m"))
        .collect();
    let t = Instant::now();
    for p in &pending {
        state.apply(p);
    }
    pod_time += t.elapsed();
    drop(pending);
    let rss_loaded = rss_mib();

    // Updates: every bound pod modified again (a status change), as a resync would deliver.
    let mut update_time = Duration::ZERO;
    for start in (0..total_pods).step_by(BATCH) {
        let pods: Vec<Pod> = (start..(start + BATCH).min(total_pods))
            .map(|i| pod(i, Some(i % NODES), "200m"))
            .collect();
        let t = Instant::now();
        for p in &pods {
            state.apply(p);
        }
        update_time += t.elapsed();
    }

    // Snapshots on a quiet state.
    let rounds = 1_000;
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(state.snapshot());
    }
    let snapshot_idle = t.elapsed() / rounds;

    // Snapshots under churn: each round holds a snapshot while 50 pod updates land, so every
    // write pays the copy-on-write of its shard.
    let churn: Vec<Pod> = (0..50)
        .map(|i| pod(i * 997 % total_pods, Some(i % NODES), "300m"))
        .collect();
    let churn_rounds = 200;
    let t = Instant::now();
    for _ in 0..churn_rounds {
        let snap = state.snapshot();
        for p in &churn {
            state.apply(p);
        }
        std::hint::black_box(snap);
    }
    let churn_round = t.elapsed() / churn_rounds;

    // What the provisioner does per batch.
    let snap = state.snapshot();
    let t = Instant::now();
    let provisionable = snap.pending_provisionable_pods();
    let list_time = t.elapsed();
    let pending_views: Vec<PodView> = provisionable
        .iter()
        .map(|p: &Arc<PodInfo>| p.view.clone())
        .collect();
    let input_rounds = 10;
    let t = Instant::now();
    let mut input = None;
    for _ in 0..input_rounds {
        input = Some(snap.scheduling_input(pending_views.clone(), vec![]));
    }
    let input_time = t.elapsed() / input_rounds;
    let (input_nodes, input_bound) = input
        .as_ref()
        .map_or((0, 0), |i| (i.nodes.len(), i.bound_pods.len()));
    let t = Instant::now();
    let nodes_view = snap.nodes();
    let nodes_time = t.elapsed();
    let t = Instant::now();
    let usage = snap.nodepool_usage("default");
    let usage_time = t.elapsed();
    drop(input);

    let pods_held = state.pod_count();
    println!(
        "state_bench: {NODES} nodes + {NODES} nodeclaims, {total_pods} bound pods + {PENDING} pending"
    );
    println!(
        "apply nodes+nodeclaims: {node_events} events in {:.1} ms ({:.0} events/s)",
        node_time.as_secs_f64() * 1e3,
        per_sec(node_events, node_time)
    );
    println!(
        "apply pods (add):       {} events in {:.1} ms ({:.0} events/s)",
        total_pods + PENDING,
        pod_time.as_secs_f64() * 1e3,
        per_sec(total_pods + PENDING, pod_time)
    );
    println!(
        "apply pods (modify):    {total_pods} events in {:.1} ms ({:.0} events/s)",
        update_time.as_secs_f64() * 1e3,
        per_sec(total_pods, update_time)
    );
    println!(
        "snapshot (idle):        {:.2} µs",
        snapshot_idle.as_secs_f64() * 1e6
    );
    println!(
        "snapshot + 50 writes:   {:.1} µs per round (copy-on-write under a live snapshot)",
        churn_round.as_secs_f64() * 1e6
    );
    println!(
        "pending_provisionable:  {} pods in {:.2} ms",
        provisionable.len(),
        list_time.as_secs_f64() * 1e3
    );
    println!(
        "scheduling_input:       {:.1} ms ({input_nodes} node views, {input_bound} bound pods kept for topology)",
        input_time.as_secs_f64() * 1e3
    );
    println!(
        "snapshot.nodes():       {} state nodes in {:.2} ms; nodepool_usage {:.2} ms (cpu {}m)",
        nodes_view.len(),
        nodes_time.as_secs_f64() * 1e3,
        usage_time.as_secs_f64() * 1e3,
        usage.cpu
    );
    println!(
        "RSS: start {rss_start:.1} MiB, loaded {rss_loaded:.1} MiB (+{:.1} MiB for {pods_held} pods and {} state nodes: {:.2} KiB per pod incl. nodes)",
        rss_loaded - rss_start,
        state.node_count(),
        (rss_loaded - rss_start) * 1024.0 / pods_held as f64
    );
}
