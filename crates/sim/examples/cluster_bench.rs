//! Measures the simulated cluster end to end: N nodes, a Deployment of M replicas, time until
//! every pod is Running, then time until a scale-down to 0 is finished.
//!
//! `cargo run -p karpenter-sim --example cluster_bench [--release] -- [nodes] [replicas]`

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use karpenter_sim::cluster::ClusterConfig;
use karpenter_sim::{SimCluster, SimConfig};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// `(VmRSS, VmHWM)` of this process in MiB (server, simulated components and client together).
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn running(pods: &Api<Pod>) -> anyhow::Result<(usize, usize)> {
    let list = pods
        .list(&ListParams::default().labels("app=bench"))
        .await?;
    let running = list
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count();
    Ok((list.items.len(), running))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(50);
    let replicas = args.get(1).copied().unwrap_or(1000);
    let mut config = SimConfig {
        cluster: ClusterConfig::fast(),
        ..SimConfig::default()
    };
    config.apiserver.sweep_interval = Duration::from_millis(50);
    let sim = SimCluster::start(config).await?;
    let client = sim.client();
    let node_api: Api<Node> = Api::all(client.clone());
    for i in 0..nodes {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": format!("node-{i:04}"), "labels": {"kubernetes.io/hostname": format!("node-{i:04}")}},
            "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"}},
        }))?;
        node_api.create(&PostParams::default(), &node).await?;
    }
    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}},
                 "template": {"metadata": {"labels": {"app": "bench"}}, "spec": {"containers": [
                     {"name": "c", "image": "x", "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}]}}},
    }))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    deployments.create(&PostParams::default(), &deploy).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (total, up) = running(&pods).await?;
        if total == replicas && up == replicas {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {up}/{replicas} running after 600s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let up_time = start.elapsed();
    let (rss_up, hwm_up) = memory_mib();
    let start = Instant::now();
    deployments
        .patch_scale(
            "bench",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await?;
    loop {
        let (total, _) = running(&pods).await?;
        if total == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{total} pods left after scale-down"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let down_time = start.elapsed();
    let (rss_end, hwm_end) = memory_mib();
    println!(
        "nodes={nodes} replicas={replicas} all_running={:.2}s ({:.0} pods/s) scaled_to_zero={:.2}s",
        up_time.as_secs_f64(),
        replicas as f64 / up_time.as_secs_f64(),
        down_time.as_secs_f64()
    );
    println!(
        "process memory (server + simulated components + client): all running VmRSS {rss_up:.1} MiB VmHWM {hwm_up:.1} MiB; after scale-down VmRSS {rss_end:.1} MiB VmHWM {hwm_end:.1} MiB"
    );
    sim.shutdown().await;
    Ok(())
}
