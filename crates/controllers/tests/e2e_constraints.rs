//! Scheduling constraints end to end (operator, embedded cluster, simulated EC2): the
//! NodeClaims Karpenter launches must let the simulated kube-scheduler place every pod.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "e2e_env/mod.rs"]
mod env;

use std::collections::BTreeSet;

use env::{
    Leadership, Replica, World, WorldOptions, deployment, eventually, label_of, nodeclass, nodepool,
};
use karpenter_apis::labels;
use serde_json::json;

async fn all_running(world: &World, app: &str, n: usize) {
    eventually(60, &format!("{n} {app} pods Running"), async || {
        let phases = world.pod_phases("default", app).await;
        (phases.get("Running") == Some(&n) && phases.len() == 1).then_some(())
    })
    .await;
}

async fn start() -> (World, Replica) {
    let world = World::start(WorldOptions::default()).await;
    let replica = Replica::start(&world, "solo", Leadership::Fixed);
    world.apply(nodeclass("default")).await;
    (world, replica)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_volume_pins_the_node_to_its_zone() {
    let (world, replica) = start().await;
    world.apply(nodepool("general", json!({}))).await;
    world
        .apply(json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "data-c"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "",
                     "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-0c"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-west-2c"]}]}]}}}}))
        .await;
    world
        .apply(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": "data-c",
                     "resources": {"requests": {"storage": "1Gi"}}}}))
        .await;
    world
        .apply(deployment(
            "default",
            "db",
            1,
            "1",
            json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}),
        ))
        .await;
    all_running(&world, "db", 1).await;
    let claims = world.nodeclaims().await;
    assert_eq!(claims.len(), 1);
    assert_eq!(
        label_of(&claims[0].metadata, labels::ZONE).as_deref(),
        Some("us-west-2c")
    );
    replica.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_hostname_anti_affinity_gets_a_node_per_pod() {
    let (world, replica) = start().await;
    world.apply(nodepool("general", json!({}))).await;
    world
        .apply(deployment(
            "default",
            "web",
            3,
            "100m",
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}}]}}}),
        ))
        .await;
    all_running(&world, "web", 3).await;
    let hosts: BTreeSet<String> = world
        .pods("default")
        .await
        .into_iter()
        .filter_map(|p| p.spec?.node_name)
        .collect();
    assert_eq!(hosts.len(), 3);
    assert_eq!(
        world.nodeclaims().await.len(),
        3,
        "one NodeClaim per pod, no more"
    );
    replica.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_zone_spread_launches_in_every_zone() {
    let (world, replica) = start().await;
    world.apply(nodepool("general", json!({}))).await;
    world
        .apply(deployment(
            "default",
            "web",
            4,
            "100m",
            json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]}),
        ))
        .await;
    all_running(&world, "web", 4).await;
    let claims = world.nodeclaims().await;
    let zones: BTreeSet<String> = claims
        .iter()
        .map(|nc| label_of(&nc.metadata, labels::ZONE).unwrap())
        .collect();
    assert_eq!(zones.len(), 4, "{zones:?}");
    assert_eq!(claims.len(), 4);
    replica.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_labels_and_taints_reach_the_node_and_select_the_pool() {
    let (world, replica) = start().await;
    world.apply(nodepool("general", json!({}))).await;
    world
        .apply(nodepool(
            "team",
            json!({"template": {
                "metadata": {"labels": {"example.com/team": "payments"}},
                "spec": {
                    "requirements": [
                        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}
                    ],
                    "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                    "taints": [{"key": "example.com/team", "value": "payments", "effect": "NoSchedule"}]
                }}}),
        ))
        .await;
    world
        .apply(deployment(
            "default",
            "pay",
            2,
            "500m",
            json!({"nodeSelector": {"example.com/team": "payments"},
                   "tolerations": [{"key": "example.com/team", "operator": "Equal", "value": "payments", "effect": "NoSchedule"}]}),
        ))
        .await;
    all_running(&world, "pay", 2).await;
    let claims = world.nodeclaims().await;
    assert!(!claims.is_empty());
    for nc in &claims {
        assert_eq!(env::nodepool_of(nc).as_deref(), Some("team"));
        let node = world
            .node(nc.status.as_ref().unwrap().node_name.as_ref().unwrap())
            .await
            .unwrap();
        assert_eq!(
            label_of(&node.metadata, "example.com/team").as_deref(),
            Some("payments")
        );
        let taints = node.spec.unwrap().taints.unwrap_or_default();
        assert!(
            taints
                .iter()
                .any(|t| t.key == "example.com/team" && t.effect == "NoSchedule"),
            "{taints:?}"
        );
    }
    replica.stop().await;
    world.stop().await;
}
