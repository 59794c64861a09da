//! Scale benchmark for the embedded API server: 5,000 nodes and 50,000 pods with several
//! concurrent watchers. Prints create throughput, watch fan-out, list latency and RSS.
//!
//! `cargo run --release -p karpenter-sim --example apiserver_bench [-- NODES PODS WATCHERS]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use karpenter_sim::apiserver::{ApiServer, ApiServerConfig, PodTermination, StoreConfig};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn node(i: usize) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": format!("ip-10-0-{}-{}.us-west-2.compute.internal", i / 250, i % 250),
            "labels": {"karpenter.sh/nodepool": "default", "node.kubernetes.io/instance-type": "m5.2xlarge",
                       "topology.kubernetes.io/zone": format!("us-west-2{}", ["a", "b", "c"][i % 3]),
                       "karpenter.sh/capacity-type": "on-demand", "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}},
        "spec": {"providerID": format!("aws:///us-west-2a/i-{i:017x}"), "taints": [{"key": "karpenter.sh/unregistered", "effect": "NoExecute"}]},
        "status": {"capacity": {"cpu": "8", "memory": "32Gi", "pods": "58"}, "allocatable": {"cpu": "7910m", "memory": "30Gi", "pods": "58"},
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                   "nodeInfo": {"kubeletVersion": "v1.34.1", "osImage": "Amazon Linux 2023", "kernelVersion": "6.1", "containerRuntimeVersion": "containerd://1.7", "architecture": "amd64", "operatingSystem": "linux", "bootID": "", "machineID": "", "systemUUID": "", "kubeProxyVersion": ""}}
    }))
    .unwrap()
}

fn pod(i: usize, nodes: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("inflate-{i:06}"), "labels": {"app": format!("app-{}", i % 100), "pod-template-hash": "5d8f7c9b4"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("app-{}-5d8f7c9b4", i % 100), "uid": format!("00000000-0000-4000-8000-{:012}", i % 100), "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"nodeName": format!("ip-10-0-{}-{}.us-west-2.compute.internal", (i % nodes) / 250, (i % nodes) % 250),
            "containers": [{"name": "app", "image": "public.ecr.aws/eks-distro/kubernetes/pause:3.7",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "ports": [{"containerPort": 8080, "protocol": "TCP"}], "env": [{"name": "MODE", "value": "bench"}]}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": format!("app-{}", i % 100)}}}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "podIP": format!("10.1.{}.{}", i / 250 % 250, i % 250)}
    }))
    .unwrap()
}

async fn create_all<K, F>(api: Api<K>, count: usize, make: F) -> Duration
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: Fn(usize) -> K + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let start = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let make = make.clone();
            async move {
                api.create(&PostParams::default(), &make(i))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(64)
        .for_each(|r| async move {
            if let Err(e) = r {
                eprintln!("create failed: {e}");
            }
        })
        .await;
    start.elapsed()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(5_000);
    let pods = args.get(1).copied().unwrap_or(50_000);
    let watchers = args.get(2).copied().unwrap_or(4);
    let server = ApiServer::start(ApiServerConfig {
        store: StoreConfig {
            pod_termination: PodTermination::KubeletConfirms,
            watch_history: 10_000,
            watcher_buffer: 65_536,
            ..StoreConfig::default()
        },
        pdb_controller: false,
        ..ApiServerConfig::default()
    })
    .await?;
    let mut config = kube::Config::new(server.url().parse()?);
    config.default_retry = false;
    let client = kube::Client::try_from(config)?;
    println!("embedded apiserver bench: {nodes} nodes, {pods} pods, {watchers} pod watchers");
    println!("rss at start: {:.1} MiB", rss_mib());

    let pod_api: Api<Pod> = Api::default_namespaced(client.clone());
    let received = Arc::new(AtomicUsize::new(0));
    let mut watcher_tasks = Vec::new();
    for _ in 0..watchers {
        let api = pod_api.clone();
        let received = received.clone();
        watcher_tasks.push(tokio::spawn(async move {
            let mut stream = api
                .watch(&WatchParams::default().timeout(3600), "0")
                .await
                .unwrap()
                .boxed();
            while let Some(ev) = stream.next().await {
                if let Ok(WatchEvent::Added(_)) = ev {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let node_api: Api<Node> = Api::all(client.clone());
    let t = create_all(node_api.clone(), nodes, node).await;
    println!(
        "create nodes: {nodes} in {:.2}s ({:.0}/s)",
        t.as_secs_f64(),
        nodes as f64 / t.as_secs_f64()
    );
    let fanout_start = Instant::now();
    let t = create_all(pod_api.clone(), pods, move |i| pod(i, nodes)).await;
    println!(
        "create pods: {pods} in {:.2}s ({:.0}/s, 64 concurrent clients)",
        t.as_secs_f64(),
        pods as f64 / t.as_secs_f64()
    );
    let want = pods * watchers;
    while received.load(Ordering::Relaxed) < want
        && fanout_start.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = received.load(Ordering::Relaxed);
    let fanout = fanout_start.elapsed();
    println!(
        "watch fan-out: {got}/{want} ADDED events delivered to {watchers} watchers {:.2}s after the first create ({:.0} events/s)",
        fanout.as_secs_f64(),
        got as f64 / fanout.as_secs_f64()
    );
    println!("rss after load: {:.1} MiB", rss_mib());

    for (label, lp) in [
        ("full list (no limit)", ListParams::default()),
        ("paged list (limit=500)", ListParams::default().limit(500)),
    ] {
        let start = Instant::now();
        let mut total = 0;
        let mut lp = lp;
        loop {
            let page = pod_api.list(&lp).await?;
            total += page.items.len();
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => break,
            }
        }
        println!(
            "list pods, {label}: {total} items in {:.0} ms",
            start.elapsed().as_secs_f64() * 1000.0
        );
    }
    let start = Instant::now();
    let on_node = pod_api
        .list(&ListParams::default().fields("spec.nodeName=ip-10-0-0-1.us-west-2.compute.internal"))
        .await?;
    println!(
        "list pods by spec.nodeName: {} items in {:.0} ms",
        on_node.items.len(),
        start.elapsed().as_secs_f64() * 1000.0
    );
    let start = Instant::now();
    let n = node_api.list(&ListParams::default()).await?.items.len();
    println!(
        "list nodes: {n} items in {:.0} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );

    let start = Instant::now();
    let (reader, writer) = reflector::store::<Pod>();
    let stream =
        reflector(writer, watcher(pod_api.clone(), watcher::Config::default())).applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    reader.wait_until_ready().await?;
    println!(
        "kube-runtime reflector initial sync: {} pods in {:.2}s",
        reader.state().len(),
        start.elapsed().as_secs_f64()
    );
    task.abort();
    println!("rss at end: {:.1} MiB", rss_mib());
    for t in watcher_tasks {
        t.abort();
    }
    server.shutdown().await;
    Ok(())
}
