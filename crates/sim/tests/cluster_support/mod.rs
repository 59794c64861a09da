//! Fixtures for the simulated-cluster tests: a started `SimCluster` with short delays, object
//! builders and a polling helper.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use karpenter_sim::cluster::ClusterConfig;
use karpenter_sim::{SimCluster, SimConfig};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

pub async fn start() -> SimCluster {
    let mut config = SimConfig {
        cluster: ClusterConfig::fast(),
        ..SimConfig::default()
    };
    config.apiserver.sweep_interval = Duration::from_millis(50);
    SimCluster::start(config).await.expect("cluster starts")
}

/// Polls `check` until it returns `Some` or 20 s pass (a deadline, not a timing assertion).
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Node with allocatable cpu/memory/pods, `Ready=False`, and optional taints.
pub fn node(name: &str, cpu: &str, labels: Value, taints: Value) -> Node {
    let mut all_labels = json!({"kubernetes.io/hostname": name});
    if let (Some(m), Some(extra)) = (all_labels.as_object_mut(), labels.as_object()) {
        m.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {"taints": taints},
        "status": {
            "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}],
        },
    }))
    .expect("node fixture")
}

pub async fn create_node(client: &Client, node: &Node) -> Node {
    let api: Api<Node> = Api::all(client.clone());
    api.create(&PostParams::default(), node)
        .await
        .expect("node created")
}

pub fn deployment(name: &str, replicas: i32, cpu: &str, pod_spec_extra: Value) -> Deployment {
    let mut spec = json!({"containers": [{"name": "app", "image": "nginx", "resources": {"requests": {"cpu": cpu}}}]});
    if let (Some(m), Some(extra)) = (spec.as_object_mut(), pod_spec_extra.as_object()) {
        m.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }))
    .expect("deployment fixture")
}

pub fn pod(name: &str, labels: Value, spec: Value) -> Pod {
    let mut s = json!({"containers": [{"name": "app", "image": "nginx"}]});
    if let (Some(m), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
        m.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": s,
    }))
    .expect("pod fixture")
}

pub async fn pods_with(client: &Client, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default().labels(selector))
        .await
        .expect("pods list")
        .items
}

pub fn condition<'a>(
    pod: &'a Pod,
    type_: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// `PodScheduled=False/Unschedulable` and not bound.
pub fn unschedulable(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_none()
        && condition(pod, "PodScheduled")
            .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
}

pub fn running_on(pod: &Pod) -> Option<String> {
    let phase = pod.status.as_ref()?.phase.as_deref()?;
    let ready = condition(pod, "Ready").is_some_and(|c| c.status == "True");
    (phase == "Running" && ready && pod.metadata.deletion_timestamp.is_none())
        .then(|| pod.spec.as_ref()?.node_name.clone())
        .flatten()
}

pub fn message(pod: &Pod) -> String {
    condition(pod, "PodScheduled")
        .and_then(|c| c.message.clone())
        .unwrap_or_default()
}
