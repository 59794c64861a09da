//! Restart safety of the simulated EC2: a fresh simulation (a restarted controller process)
//! adopts the instances an earlier one registered as Nodes, so get/list/delete by provider ID
//! keep working and new launches never reuse an adopted instance's ID or Node name.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of a test binary may panic

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use karpenter_apis::common::{
    NodeClassReference, NodeSelectorOperator, NodeSelectorRequirementWithMinValues,
};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::{NodeClaim, NodeClaimSpec};
use karpenter_cloudprovider::{CloudProvider, CloudProviderError, SystemClock};
use karpenter_sim::apiserver::{ApiServer, ApiServerConfig};
use karpenter_sim::ec2::adoption::{INSTANCE_ANNOTATION, INSTANCE_ID_LABEL, SkipReason};
use karpenter_sim::ec2::{InstanceState, SimEc2Config, SimEc2Error, SimulatedEc2};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn config() -> SimEc2Config {
    SimEc2Config {
        launch_delay: Duration::from_millis(10),
        termination_delay: Duration::from_millis(10),
        ..Default::default()
    }
}

/// A simulation sharing `template`'s catalog (loading it is slow in debug builds), with the
/// same seed, as a restarted process would have.
fn restarted(template: &SimulatedEc2, client: &kube::Client) -> SimulatedEc2 {
    SimulatedEc2::from_catalog(config(), Arc::new(SystemClock), template.catalog().clone())
        .unwrap()
        .with_node_registrar(client.clone(), Duration::from_millis(10))
}

fn node_claim(name: &str, instance_type: &str, zone: &str, capacity_type: &str) -> NodeClaim {
    let req = |key: &str, value: &str| {
        NodeSelectorRequirementWithMinValues::new(key, NodeSelectorOperator::In, [value])
    };
    let mut c = NodeClaim::new(
        name,
        NodeClaimSpec {
            taints: vec![],
            startup_taints: vec![],
            requirements: vec![
                req(labels::INSTANCE_TYPE, instance_type),
                req(labels::ZONE, zone),
                req(labels::CAPACITY_TYPE, capacity_type),
            ],
            resources: Default::default(),
            node_class_ref: NodeClassReference::ec2_node_class("default"),
            termination_grace_period: None,
            expire_after: None,
        },
    );
    c.metadata.labels = Some(BTreeMap::from([(
        labels::NODEPOOL.to_string(),
        "general".to_string(),
    )]));
    c
}

fn provider_id(c: &NodeClaim) -> String {
    c.status.as_ref().unwrap().provider_id.clone().unwrap()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn node_names(nodes: &Api<Node>) -> BTreeSet<String> {
    nodes
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect()
}

#[tokio::test]
async fn a_restarted_simulation_adopts_the_instances_it_registered() {
    let server = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let nodes: Api<Node> = Api::all(client.clone());

    let first = SimulatedEc2::new(config(), Arc::new(SystemClock))
        .unwrap()
        .with_node_registrar(client.clone(), Duration::from_millis(10));
    let mut claims = Vec::new();
    for (name, t, zone, ct) in [
        ("general-a", "m5.large", "us-west-2a", "on-demand"),
        ("general-b", "c6g.xlarge", "us-west-2b", "spot"),
        ("general-c", "r5.2xlarge", "us-west-2c", "on-demand"),
    ] {
        claims.push(first.create(&node_claim(name, t, zone, ct)).await.unwrap());
    }
    eventually("three nodes registered", async || {
        node_names(&nodes).await.len() == 3
    })
    .await;
    // Registration is marked before the Node is created; wait until every instance says so.
    eventually("instances marked registered", async || {
        first.instances().iter().all(|i| i.node_registered)
    })
    .await;
    let node = nodes
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .remove(0);
    let marked = node.metadata.labels.as_ref().unwrap();
    let annotations = node.metadata.annotations.as_ref().unwrap();
    assert!(marked.contains_key(INSTANCE_ID_LABEL));
    assert!(annotations.contains_key(INSTANCE_ANNOTATION));

    // A Node the simulation did not register is ignored; one with a corrupt record is reported.
    let foreign: Node = serde_json::from_value(json!({
        "metadata": {"name": "foreign"},
        "spec": {"providerID": "aws:///us-west-2a/i-0aaaaaaaaaaaaaaaa"}
    }))
    .unwrap();
    nodes
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let broken: Node = serde_json::from_value(json!({
        "metadata": {"name": "broken", "labels": {INSTANCE_ID_LABEL: "i-0bbbbbbbbbbbbbbbb"},
                     "annotations": {INSTANCE_ANNOTATION: "{not json"}},
        "spec": {"providerID": "aws:///us-west-2a/i-0bbbbbbbbbbbbbbbb"}
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &broken).await.unwrap();

    // The "process restarts": a fresh simulation with the same seed knows nothing until it adopts.
    let second = restarted(&first, &client);
    let pid = provider_id(&claims[0]);
    assert!(matches!(
        second.get(&pid).await,
        Err(CloudProviderError::NodeClaimNotFound { .. })
    ));
    let adoption = second.adopt_registered_nodes().await.unwrap();
    let mut want: Vec<String> = first
        .instances()
        .into_iter()
        .map(|i| i.instance_id)
        .collect();
    want.sort();
    assert_eq!(adoption.adopted, want);
    assert_eq!(adoption.already_known, 0);
    assert_eq!(adoption.skipped.len(), 1, "{:?}", adoption.skipped);
    assert_eq!(adoption.skipped[0].0, "broken");
    assert!(matches!(adoption.skipped[0].1, SkipReason::BadRecord(_)));

    // Every adopted instance is the one the first simulation launched, field for field.
    for before in first.instances() {
        let after = second.instance(&before.instance_id).unwrap();
        assert_eq!(after, before);
        assert_eq!(after.state, InstanceState::Running);
    }
    for claim in &claims {
        let got = second.get(&provider_id(claim)).await.unwrap();
        let was = first.get(&provider_id(claim)).await.unwrap();
        assert_eq!(got, was);
        assert_eq!(got.metadata.name, claim.metadata.name);
    }
    assert_eq!(second.list().await.unwrap().len(), 3);

    // Adopting again changes nothing.
    let again = second.adopt_registered_nodes().await.unwrap();
    assert_eq!((again.adopted.len(), again.already_known), (0, 3));

    // New launches never reuse an adopted instance ID or Node name.
    let before = node_names(&nodes).await;
    let fresh = second
        .create(&node_claim(
            "general-d",
            "m5.large",
            "us-west-2a",
            "on-demand",
        ))
        .await
        .unwrap();
    let fresh_id = provider_id(&fresh);
    assert!(!want.iter().any(|id| fresh_id.ends_with(id.as_str())));
    eventually("the new instance registers its own node", async || {
        node_names(&nodes).await.len() == before.len() + 1
    })
    .await;
    let new_instance = second
        .instances()
        .into_iter()
        .find(|i| i.provider_id == fresh_id)
        .unwrap();
    assert!(!before.contains(&new_instance.node_name));

    // Deleting an adopted instance terminates it and deletes its Node, as for any instance.
    let doomed = second.instance(&want[0]).unwrap();
    let with_pid = {
        let mut c = claims
            .iter()
            .find(|c| provider_id(c) == doomed.provider_id)
            .unwrap()
            .clone();
        c.status.as_mut().unwrap().provider_id = Some(doomed.provider_id.clone());
        c
    };
    second.delete(&with_pid).await.unwrap();
    eventually("the adopted instance's node is deleted", async || {
        !node_names(&nodes).await.contains(&doomed.node_name)
    })
    .await;
    assert!(matches!(
        second.get(&doomed.provider_id).await,
        Err(CloudProviderError::NodeClaimNotFound { .. })
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn a_record_that_disagrees_with_its_node_is_not_adopted() {
    let server = ApiServer::start(ApiServerConfig::default()).await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let first = SimulatedEc2::new(config(), Arc::new(SystemClock))
        .unwrap()
        .with_node_registrar(client.clone(), Duration::from_millis(10));
    first
        .create(&node_claim(
            "general-a",
            "m5.large",
            "us-west-2a",
            "on-demand",
        ))
        .await
        .unwrap();
    eventually("node registered", async || {
        node_names(&nodes).await.len() == 1
    })
    .await;
    let name = node_names(&nodes).await.pop_first().unwrap();
    nodes
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {INSTANCE_ID_LABEL: "i-0cccccccccccccccc"}}}),
            ),
        )
        .await
        .unwrap();
    let second = restarted(&first, &client);
    let adoption = second.adopt_registered_nodes().await.unwrap();
    assert!(adoption.adopted.is_empty());
    assert_eq!(adoption.skipped.len(), 1);
    assert!(
        matches!(&adoption.skipped[0].1, SkipReason::Mismatch { label, .. } if label == "i-0cccccccccccccccc"),
        "{:?}",
        adoption.skipped
    );

    // Without a registrar there is nothing to adopt from.
    let unattached =
        SimulatedEc2::from_catalog(config(), Arc::new(SystemClock), first.catalog().clone())
            .unwrap();
    assert!(matches!(
        unattached.adopt_registered_nodes().await,
        Err(SimEc2Error::NoRegistrar)
    ));
    server.shutdown().await;
}
