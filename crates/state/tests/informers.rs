//! Cluster state fed by real kube-runtime watchers against the embedded API server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of a test binary may panic

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_cloudprovider::SystemClock;
use karpenter_sim::apiserver::{ApiServer, ApiServerConfig, ApiServerHandle};
use karpenter_state::{ClusterState, Informers, StateConfig};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

struct Env {
    server: ApiServerHandle,
    client: Client,
    state: Arc<ClusterState>,
    _informers: Informers,
}

fn crd(file: &str) -> CustomResourceDefinition {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crds")
        .join(file);
    serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

async fn start() -> Env {
    let server = ApiServer::start(ApiServerConfig {
        bookmark_interval: Duration::from_millis(200),
        ..ApiServerConfig::default()
    })
    .await
    .unwrap();
    let client = Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in [
        "karpenter.sh_nodepools.yaml",
        "karpenter.sh_nodeclaims.yaml",
        "karpenter.k8s.aws_ec2nodeclasses.yaml",
    ] {
        crds.create(&PostParams::default(), &crd(file))
            .await
            .unwrap();
    }
    let state = Arc::new(ClusterState::new(
        Arc::new(SystemClock),
        StateConfig::default(),
    ));
    let informers = Informers::start(client.clone(), state.clone());
    tokio::time::timeout(Duration::from_secs(30), state.wait_synced())
        .await
        .expect("state syncs against an empty cluster");
    Env {
        server,
        client,
        state,
        _informers: informers,
    }
}

/// Polls `check` until it holds or 20 s pass (a deadline, not a timing assertion).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn node(name: &str, provider: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"providerID": provider},
        "status": {"capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                   "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}}
    }))
    .unwrap()
}

fn pod(name: &str, cpu: &str, node: Option<&str>) -> Pod {
    let mut v: Value = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": cpu}}}]}
    });
    if let Some(n) = node {
        v["spec"]["nodeName"] = json!(n);
    }
    serde_json::from_value(v).unwrap()
}

fn nodeclaim(name: &str) -> NodeClaim {
    serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": {"name": name, "labels": {"karpenter.sh/nodepool": "default"}},
        "spec": {"requirements": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}],
                 "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}}
    }))
    .unwrap()
}

async fn set_provider_id(nodeclaims: &Api<NodeClaim>, name: &str, provider: &str) {
    nodeclaims
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"providerID": provider,
                "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}}})),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_converges_on_creates_and_deletes() {
    let env = start().await;
    let nodes: Api<Node> = Api::all(env.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(env.client.clone());
    let nodeclaims: Api<NodeClaim> = Api::all(env.client.clone());

    nodeclaims
        .create(&PostParams::default(), &nodeclaim("nc-1"))
        .await
        .unwrap();
    set_provider_id(&nodeclaims, "nc-1", "aws:///us-west-2a/i-1").await;
    nodes
        .create(
            &PostParams::default(),
            &node("ip-1", "aws:///us-west-2a/i-1"),
        )
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("bound", "1", Some("ip-1")))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("pending", "2", None))
        .await
        .unwrap();
    pods.patch_status(
        "pending",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}})),
    )
    .await
    .unwrap();

    let state = env.state.clone();
    eventually("nodes, NodeClaims and pods reach state", || {
        let snap = state.snapshot();
        snap.pod_count() == 2
            && snap.pending_provisionable_pods().len() == 1
            && snap
                .node("aws:///us-west-2a/i-1")
                .is_some_and(|n| n.managed() && !n.in_flight() && n.requested().cpu == 1000)
    })
    .await;
    assert!(env.state.is_synced());
    let input = env.state.snapshot().scheduling_input(vec![], vec![]);
    assert_eq!(input.nodes.len(), 1);
    assert_eq!(input.nodes[0].name, "ip-1");
    assert_eq!(input.nodes[0].used.cpu, 1000);

    pods.delete(
        "bound",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    nodes
        .delete("ip-1", &DeleteParams::default())
        .await
        .unwrap();
    eventually("deletes reach state", || {
        let snap = state.snapshot();
        snap.pod_count() == 1
            && snap
                .node("aws:///us-west-2a/i-1")
                .is_some_and(|n| n.in_flight() && n.requested().cpu == 0)
    })
    .await;
    env.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launching_nodeclaim_closes_the_synced_gate() {
    let env = start().await;
    let nodeclaims: Api<NodeClaim> = Api::all(env.client.clone());
    nodeclaims
        .create(&PostParams::default(), &nodeclaim("launching"))
        .await
        .unwrap();
    let state = env.state.clone();
    eventually("unsynced while a NodeClaim has no provider ID", || {
        !state.is_synced()
    })
    .await;
    set_provider_id(&nodeclaims, "launching", "aws:///us-west-2a/i-2").await;
    eventually("synced once it launched", || state.is_synced()).await;
    env.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_converges_after_dropped_watches_and_compaction() {
    let env = start().await;
    let pods: Api<Pod> = Api::default_namespaced(env.client.clone());
    let nodes: Api<Node> = Api::all(env.client.clone());
    nodes
        .create(&PostParams::default(), &node("ip-1", "aws:///a/i-1"))
        .await
        .unwrap();
    for name in ["a", "b"] {
        pods.create(&PostParams::default(), &pod(name, "1", Some("ip-1")))
            .await
            .unwrap();
    }
    let state = env.state.clone();
    eventually("initial pods", || state.snapshot().pod_count() == 2).await;

    // Disconnect: watchers resume from their last resourceVersion.
    env.server.faults().drop_watches();
    pods.create(&PostParams::default(), &pod("c", "1", Some("ip-1")))
        .await
        .unwrap();
    let zero = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods.delete("a", &zero).await.unwrap();
    eventually("after a disconnect", || {
        let snap = state.snapshot();
        snap.pod("default", "a").is_none()
            && snap.pod("default", "c").is_some()
            && snap.node("ip-1").is_some_and(|n| n.requested().cpu == 2000)
    })
    .await;

    // Compaction then disconnect: the resume gets 410, watchers relist, and the relist drops
    // what was deleted meanwhile.
    env.server.faults().compact_history();
    pods.create(&PostParams::default(), &pod("d", "1", Some("ip-1")))
        .await
        .unwrap();
    env.server.faults().compact_history();
    env.server.faults().drop_watches();
    pods.delete("b", &zero).await.unwrap();
    pods.delete("c", &zero).await.unwrap();
    eventually("after a relist", || {
        let snap = state.snapshot();
        snap.pod_count() == 1
            && snap.pod("default", "d").is_some()
            && snap.node("ip-1").is_some_and(|n| n.requested().cpu == 1000)
    })
    .await;
    env.server.shutdown().await;
}
