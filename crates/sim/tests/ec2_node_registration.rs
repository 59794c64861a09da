//! The simulated EC2 registers Nodes through the Kubernetes API (the embedded API server here)
//! and deletes them when their instances terminate, respecting finalizers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of a test binary may panic

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Taint};
use karpenter_apis::common::{
    NodeClassReference, NodeSelectorOperator, NodeSelectorRequirementWithMinValues,
};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::{NodeClaim, NodeClaimSpec};
use karpenter_cloudprovider::{CloudProvider, SystemClock};
use karpenter_sim::apiserver::{ApiServer, ApiServerConfig, ApiServerHandle};
use karpenter_sim::ec2::{InstanceState, SimEc2Config, SimulatedEc2};
use kube::api::{Api, Patch, PatchParams};

struct Env {
    server: ApiServerHandle,
    nodes: Api<Node>,
    ec2: SimulatedEc2,
}

async fn start() -> Env {
    let server = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let ec2 = SimulatedEc2::new(
        SimEc2Config {
            launch_delay: Duration::from_millis(10),
            termination_delay: Duration::from_millis(10),
            ..Default::default()
        },
        Arc::new(SystemClock),
    )
    .unwrap()
    .with_node_registrar(client.clone(), Duration::from_millis(10));
    Env {
        server,
        nodes: Api::all(client),
        ec2,
    }
}

/// Polls until `check` holds; the 20 s deadline only guards against hangs.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: None,
        effect: effect.into(),
        time_added: None,
    }
}

fn node_claim(name: &str) -> NodeClaim {
    let mut c = NodeClaim::new(
        name,
        NodeClaimSpec {
            taints: vec![taint("dedicated", "NoSchedule")],
            startup_taints: vec![taint("example.com/agent-not-ready", "NoExecute")],
            requirements: vec![
                NodeSelectorRequirementWithMinValues::new(
                    labels::INSTANCE_TYPE,
                    NodeSelectorOperator::In,
                    ["m6g.large"],
                ),
                NodeSelectorRequirementWithMinValues::new(
                    labels::ZONE,
                    NodeSelectorOperator::In,
                    ["us-west-2b"],
                ),
            ],
            resources: Default::default(),
            node_class_ref: NodeClassReference::ec2_node_class("workers"),
            termination_grace_period: None,
            expire_after: None,
        },
    );
    c.metadata.labels = Some(BTreeMap::from([
        (labels::NODEPOOL.to_string(), "general".to_string()),
        ("team".to_string(), "payments".to_string()),
    ]));
    c
}

/// Waits for the Node with this provider ID.
async fn registered(nodes: &Api<Node>, provider_id: &str) -> Node {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(node) = node_for(nodes, provider_id).await {
            return node;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for node {provider_id}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn node_for(nodes: &Api<Node>, provider_id: &str) -> Option<Node> {
    nodes
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|n| n.spec.as_ref().and_then(|s| s.provider_id.as_deref()) == Some(provider_id))
}

#[tokio::test]
async fn a_launched_instance_registers_its_node_through_the_api() {
    let env = start().await;
    let created = env.ec2.create(&node_claim("general-abc12")).await.unwrap();
    let provider_id = created
        .status
        .as_ref()
        .unwrap()
        .provider_id
        .clone()
        .unwrap();
    let node = registered(&env.nodes, &provider_id).await;
    let instance = env.ec2.instances().remove(0);
    let name = node.metadata.name.clone().unwrap();
    assert_eq!(name, instance.node_name);
    assert!(
        name.starts_with("ip-10-") && name.ends_with(".us-west-2.compute.internal"),
        "{name}"
    );

    // The simulated kubelet learns which taints to lift from this annotation.
    let announced = node
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .remove(karpenter_sim::cluster::STARTUP_TAINTS_ANNOTATION)
        .expect("startup taints announced");
    let patterns = karpenter_sim::cluster::node_agent::parse_startup_taints(&announced);
    assert_eq!(patterns.len(), 1, "{announced}");

    let node_labels = node.metadata.labels.clone().unwrap();
    let expect = [
        (labels::HOSTNAME, name.as_str()),
        (labels::INSTANCE_TYPE, "m6g.large"),
        (labels::ZONE, "us-west-2b"),
        (labels::CAPACITY_TYPE, "spot"),
        (labels::ARCH, "arm64"),
        (labels::OS, "linux"),
        (labels::REGION, "us-west-2"),
        (labels::NODEPOOL, "general"),
        (labels::AWS_EC2NODECLASS, "workers"),
        (labels::AWS_INSTANCE_FAMILY, "m6g"),
        ("team", "payments"),
    ];
    for (k, v) in expect {
        assert_eq!(node_labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    assert!(node_labels.contains_key(labels::AWS_ZONE_ID));

    let spec = node.spec.clone().unwrap();
    let taints: Vec<(String, String)> = spec
        .taints
        .unwrap()
        .into_iter()
        .map(|t| (t.key, t.effect))
        .collect();
    assert_eq!(
        taints,
        vec![
            ("dedicated".to_string(), "NoSchedule".to_string()),
            (
                "example.com/agent-not-ready".to_string(),
                "NoExecute".to_string()
            ),
            (
                labels::TAINT_UNREGISTERED.to_string(),
                "NoExecute".to_string()
            ),
        ]
    );
    let status = node.status.clone().unwrap();
    assert_eq!(status.capacity.as_ref().unwrap()["cpu"].0, "2");
    assert_eq!(
        status.allocatable.as_ref().unwrap()["cpu"],
        created.status.as_ref().unwrap().allocatable["cpu"]
    );
    let info = status.node_info.unwrap();
    assert!(info.kubelet_version.starts_with("v1.34."));
    assert_eq!(info.architecture, "arm64");
    assert_eq!(info.operating_system, "linux");
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(env.ec2.instances()[0].state, InstanceState::Running);
    env.server.shutdown().await;
}

#[tokio::test]
async fn termination_deletes_the_node_and_finalizers_hold_it() {
    let env = start().await;
    let created = env.ec2.create(&node_claim("general-abc12")).await.unwrap();
    let provider_id = created
        .status
        .as_ref()
        .unwrap()
        .provider_id
        .clone()
        .unwrap();
    let name = registered(&env.nodes, &provider_id)
        .await
        .metadata
        .name
        .unwrap();
    // Karpenter's termination finalizer keeps the Node until its drain finishes.
    env.nodes
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"finalizers": [labels::TERMINATION_FINALIZER]}}),
            ),
        )
        .await
        .unwrap();

    env.ec2.delete(&created).await.unwrap();
    eventually("node marked for deletion", || async {
        env.nodes
            .get_opt(&name)
            .await
            .unwrap()
            .is_some_and(|n| n.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert!(env.ec2.get(&provider_id).await.unwrap_err().is_not_found());

    env.nodes
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    eventually("node gone", || async {
        env.nodes.get_opt(&name).await.unwrap().is_none()
    })
    .await;

    // Without a finalizer an externally terminated instance's Node just goes away.
    let second = env.ec2.create(&node_claim("general-def34")).await.unwrap();
    let second_id = second.status.as_ref().unwrap().provider_id.clone().unwrap();
    registered(&env.nodes, &second_id).await;
    let instance_id = second_id.rsplit('/').next().unwrap().to_string();
    env.ec2.terminate_instance(&instance_id).unwrap();
    eventually("second node gone", || async {
        node_for(&env.nodes, &second_id).await.is_none()
    })
    .await;
    env.server.shutdown().await;
}

#[tokio::test]
async fn an_instance_terminated_before_booting_never_registers() {
    let env = start().await;
    let created = env.ec2.create(&node_claim("general-abc12")).await.unwrap();
    env.ec2.delete(&created).await.unwrap();
    eventually("instance terminated", || async {
        env.ec2.instances()[0].state == InstanceState::Terminated
    })
    .await;
    // Past launch + boot delays: still no Node.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        env.nodes
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(!env.ec2.instances()[0].node_registered);
    env.server.shutdown().await;
}
