//! Deleting a NodeClaim through the whole operator: its pods drain through evictions, a PDB
//! that allows no disruption holds its pod until the NodeClaim's terminationGracePeriod
//! forces it, the instance terminates, the finalizers go, and the evicted workloads run on a
//! replacement node. (`termination_sim.rs` drives `node.termination` alone on a hand-made
//! NodeClaim; here the provisioner and the lifecycle controllers take part too.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "e2e_env/mod.rs"]
mod env;

use env::{Leadership, Replica, World, WorldOptions, deployment, eventually, nodeclass, nodepool};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::NodeClaim;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_nodeclaim_drains_it_the_grace_period_forces_the_pdb_and_everything_is_released()
{
    let world = World::start(WorldOptions::default()).await;
    let replica = Replica::start(&world, "solo", Leadership::Fixed);
    world.apply(nodeclass("default")).await;
    world
        .apply(nodepool(
            "general",
            json!({"template": {"spec": {
                "requirements": [
                    {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}
                ],
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "terminationGracePeriod": "8s"
            }}}),
        ))
        .await;
    // One batch, one node: both workloads share it.
    world
        .apply(deployment("default", "free", 2, "100m", json!({})))
        .await;
    world
        .apply(deployment("default", "guarded", 1, "100m", json!({})))
        .await;
    world
        .apply(
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "guarded", "namespace": "default"},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "guarded"}}}}),
        )
        .await;
    let (guarded_pod, node_name) = eventually(60, "every pod Running", async || {
        let pods = world.pods("default").await;
        let running = pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        if running != 3 {
            return None;
        }
        let guarded = pods
            .into_iter()
            .find(|p| p.name_any().starts_with("guarded-"))?;
        Some((guarded.name_any(), guarded.spec?.node_name?))
    })
    .await;
    let evictable: Vec<String> = world
        .pods("default")
        .await
        .into_iter()
        .filter(|p| {
            p.name_any().starts_with("free-")
                && p.spec.as_ref().and_then(|s| s.node_name.as_ref()) == Some(&node_name)
        })
        .map(|p| p.name_any())
        .collect();
    let claim = world
        .nodeclaims()
        .await
        .into_iter()
        .find(|nc| nc.status.as_ref().and_then(|s| s.node_name.as_ref()) == Some(&node_name))
        .unwrap();
    let claim_name = claim.name_any();
    let provider_id = claim.status.clone().unwrap().provider_id.unwrap();
    assert_eq!(
        claim
            .spec
            .termination_grace_period
            .as_ref()
            .map(|d| d.as_std()),
        Some(std::time::Duration::from_secs(8)),
        "the pool's grace period is on the claim"
    );

    Api::<NodeClaim>::all(world.client.clone())
        .delete(&claim_name, &DeleteParams::default())
        .await
        .unwrap();

    // Unguarded pods go through the Eviction API; the guarded one is refused meanwhile.
    for name in &evictable {
        eventually(30, &format!("{name} evicted"), async || {
            (!world.events(name, "Evicted").await.is_empty()).then_some(())
        })
        .await;
    }
    eventually(30, "PDB refusal reported", async || {
        world
            .events(&node_name, "FailedDraining")
            .await
            .iter()
            .any(|m| m.contains("PDB"))
            .then_some(())
    })
    .await;
    let node = world.node(&node_name).await.unwrap();
    let taints = node.spec.clone().unwrap().taints.unwrap_or_default();
    assert!(
        taints.iter().any(|t| t.key == labels::TAINT_DISRUPTED),
        "{taints:?}"
    );
    assert!(
        node.finalizers()
            .contains(&labels::TERMINATION_FINALIZER.to_string())
    );
    let nc = world.nodeclaim(&claim_name).await.unwrap();
    assert!(
        nc.annotations()
            .contains_key(labels::NODECLAIM_TERMINATION_TIMESTAMP)
    );
    assert!(
        world
            .pods("default")
            .await
            .iter()
            .any(|p| p.name_any() == guarded_pod),
        "the PDB holds the pod before the deadline"
    );

    // The deadline forces the guarded pod out, then the instance and both objects go.
    eventually(30, "guarded pod force-deleted", async || {
        (!world.events(&guarded_pod, "Disrupted").await.is_empty()).then_some(())
    })
    .await;
    eventually(30, "NodeClaim and Node gone", async || {
        (world.nodeclaim(&claim_name).await.is_none() && world.node(&node_name).await.is_none())
            .then_some(())
    })
    .await;
    assert!(
        world
            .live_instances()
            .iter()
            .all(|i| i.provider_id != provider_id),
        "the instance terminated"
    );
    // The workloads come back on a replacement.
    eventually(60, "every pod Running again", async || {
        let free = world.pod_phases("default", "free").await;
        let guarded = world.pod_phases("default", "guarded").await;
        (free.get("Running") == Some(&2)
            && free.len() == 1
            && guarded.get("Running") == Some(&1)
            && guarded.len() == 1)
            .then_some(())
    })
    .await;
    eventually(30, "cloud and cluster agree", async || {
        world.cloud_mismatch().await.is_none().then_some(())
    })
    .await;
    assert!(replica.counter("karpenter_pods_eviction_requests_total", &[("code", "429")]) >= 1.0);
    assert!(
        replica.counter("karpenter_pods_eviction_requests_total", &[("code", "200")])
            >= evictable.len() as f64
    );
    for family in [
        "karpenter_nodes_terminated_total",
        "karpenter_nodeclaims_terminated_total",
        "karpenter_nodes_drained_total",
    ] {
        assert_eq!(
            replica.counter(family, &[("nodepool", "general")]),
            1.0,
            "{family}"
        );
    }
    replica.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodeclaim_whose_node_never_registers_is_replaced_after_the_registration_timeout() {
    // A bootstrap that never joins the cluster.
    let world = World::start(WorldOptions {
        register_nodes: false,
        ..WorldOptions::default()
    })
    .await;
    let mut config = env::operator_config();
    config.lifecycle.registration_timeout = std::time::Duration::from_secs(2);
    let replica = env::Replica::start_with(&world, "solo", Leadership::Fixed, config);
    world.apply(nodeclass("default")).await;
    world.apply(nodepool("general", json!({}))).await;
    world
        .apply(deployment("default", "web", 1, "1", json!({})))
        .await;
    let first = eventually(30, "a launched NodeClaim", async || {
        world
            .nodeclaims()
            .await
            .into_iter()
            .find(|nc| env::condition_true(nc, "Launched"))
    })
    .await;
    let first_name = first.name_any();
    let first_instance = first.status.unwrap().provider_id.unwrap();
    eventually(30, "the unregistered NodeClaim deleted", async || {
        world.nodeclaim(&first_name).await.is_none().then_some(())
    })
    .await;
    assert!(
        world
            .live_instances()
            .iter()
            .all(|i| i.provider_id != first_instance),
        "its instance terminated"
    );
    // Every NodeClaim here that is deleted is given up on, and counted once. The replacement
    // times out too (2 s after its own launch), so the figure is checked against the claims
    // deleted so far rather than against 1, which a slow machine could overtake.
    eventually(30, "each NodeClaim given up on counted once", async || {
        let disrupted = replica.counter(
            "karpenter_nodeclaims_disrupted_total",
            &[("reason", "registration_timeout")],
        );
        let created = replica.counter("karpenter_nodeclaims_created_total", &[]);
        let live = world
            .nodeclaims()
            .await
            .iter()
            .filter(|nc| nc.metadata.deletion_timestamp.is_none())
            .count() as f64;
        (disrupted >= 1.0 && disrupted == created - live).then_some(())
    })
    .await;
    // The still-pending pod gets another NodeClaim.
    eventually(30, "a replacement NodeClaim", async || {
        world
            .nodeclaims()
            .await
            .iter()
            .any(|nc| nc.name_any() != first_name)
            .then_some(())
    })
    .await;
    replica.stop().await;
    world.stop().await;
}
