//! Shared fixtures for the API server conformance tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use karpenter_sim::apiserver::{ApiServer, ApiServerConfig, ApiServerHandle};
use kube::Client;
use serde_json::{Value, json};

/// A started server and a kube-rs client pointed at it.
pub struct Env {
    pub server: ApiServerHandle,
    pub client: Client,
}

pub async fn start_with(config: ApiServerConfig) -> Env {
    let server = ApiServer::start(config).await.expect("server starts");
    let mut config = kube::Config::new(server.url().parse().expect("url parses"));
    // kube-rs retries 429/503/504 by default (15 times, exponential backoff); the tests look at
    // the server's raw answers, so they turn that off.
    config.default_retry = false;
    let client = Client::try_from(config).expect("client builds");
    Env { server, client }
}

pub async fn start() -> Env {
    start_with(ApiServerConfig {
        bookmark_interval: Duration::from_millis(200),
        ..ApiServerConfig::default()
    })
    .await
}

/// Polls `check` until it returns true or 20 s pass (a deadline, not a timing assertion).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn pod_json(name: &str, labels: Value, node: Option<&str>) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec})
}

pub fn pod(name: &str, labels: Value, node: Option<&str>) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(pod_json(name, labels, node)).expect("pod fixture")
}

pub fn deployment(name: &str, replicas: i32) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        }
    }))
    .expect("deployment fixture")
}

/// The repository root (crates/sim/../..).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads a generated CRD from `crds/`.
pub fn crd(
    file: &str,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    let path = repo_root().join("crds").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).expect("CRD parses")
}
