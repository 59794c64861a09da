//! The controller process killed (SIGKILL: no cleanup) at each step of a node's life and
//! started again from nothing but the API server and the cloud: no NodeClaim is created
//! twice for the same pods, no instance leaks, and every pod ends Running or the deleted node
//! is fully terminated.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "e2e_env/mod.rs"]
mod env;

use std::collections::BTreeSet;
use std::time::Duration;

use env::{
    Leadership, Replica, StalledApiServer, World, WorldOptions, condition_true, deployment,
    eventually, nodeclass, nodepool, operator_config,
};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::NodeClaim;
use kube::api::{Api, DeleteParams};
use serde_json::json;

/// Pods of the workload each test runs: more than one node's worth, so several NodeClaims
/// are in flight when the process dies.
const PODS: i32 = 3;

async fn setup(world: &World) {
    world.apply(nodeclass("default")).await;
    // Every pod exists and is unschedulable before the NodePool does, so the first
    // provisioning pass decides for all of them. With launches held no second pass can come
    // (the provisioner waits until every NodeClaim has launched), and under load the
    // Deployment's pods can arrive further apart than one batch window.
    world
        .apply(deployment("default", "web", PODS, "1", json!({})))
        .await;
    eventually(60, "every pod created and unschedulable", async || {
        let pods = world.pods("default").await;
        let unschedulable = pods
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c.type_ == "PodScheduled" && c.status == "False")
                    })
            })
            .count();
        (unschedulable == PODS as usize).then_some(())
    })
    .await;
    // Two-vCPU types only: each 1-CPU pod needs a node of its own.
    world
        .apply(nodepool(
            "general",
            json!({"template": {"spec": {
                "requirements": [
                    {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                    {"key": "karpenter.k8s.aws/instance-cpu", "operator": "In", "values": ["2"]}
                ],
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}
            }}}),
        ))
        .await;
}

fn names(claims: &[NodeClaim]) -> BTreeSet<String> {
    claims
        .iter()
        .map(|nc| nc.metadata.name.clone().unwrap())
        .collect()
}

/// Waits until the provisioner has decided for every pod (each has a `Nominated` event) and
/// returns the NodeClaims then.
async fn decided(world: &World) -> BTreeSet<String> {
    eventually(60, "every pod nominated", async || {
        let pods = world.pods("default").await;
        if pods.len() != PODS as usize {
            return None;
        }
        for p in &pods {
            if world
                .events(p.metadata.name.as_deref().unwrap(), "Nominated")
                .await
                .is_empty()
            {
                return None;
            }
        }
        Some(())
    })
    .await;
    names(&world.nodeclaims().await)
}

/// After the restart: the same NodeClaims (none added, none lost), one create call each,
/// every pod Running, cloud and cluster in agreement.
async fn settles_on(world: &World, claims: &BTreeSet<String>) {
    eventually(60, "every pod Running", async || {
        let phases = world.pod_phases("default", "web").await;
        (phases.get("Running") == Some(&(PODS as usize)) && phases.len() == 1).then_some(())
    })
    .await;
    eventually(30, "cloud and cluster agree", async || {
        world.cloud_mismatch().await.is_none().then_some(())
    })
    .await;
    let now = eventually(30, "every NodeClaim initialized", async || {
        let now = world.nodeclaims().await;
        now.iter()
            .all(|nc| condition_true(nc, "Initialized"))
            .then_some(now)
    })
    .await;
    assert_eq!(&names(&now), claims, "no NodeClaim added or lost");
    assert_eq!(
        world.create_calls(),
        claims.len(),
        "one launch per NodeClaim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_nodeclaim_create_before_launch() {
    let world = World::start(WorldOptions::default()).await;
    world.hold_creates(true);
    let mut first = Replica::start(&world, "first", Leadership::Fixed);
    setup(&world).await;
    let claims = decided(&world).await;
    assert_eq!(claims.len(), PODS as usize);
    assert_eq!(world.create_calls(), 0, "the launches are still held");
    first.kill();
    world.hold_creates(false);

    let second = Replica::start(&world, "second", Leadership::Fixed);
    settles_on(&world, &claims).await;
    assert_eq!(
        second.counter("karpenter_nodeclaims_created_total", &[]),
        0.0
    );
    second.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_cloud_launched_before_the_answer_was_recorded() {
    let world = World::start(WorldOptions::default()).await;
    world.hold_create_answers(true);
    let mut first = Replica::start(&world, "first", Leadership::Fixed);
    setup(&world).await;
    let claims = decided(&world).await;
    eventually(30, "every launch reached the cloud", async || {
        (world.create_calls() == claims.len()).then_some(())
    })
    .await;
    first.kill();
    world.hold_create_answers(false);
    assert!(
        world.nodeclaims().await.iter().all(|nc| nc
            .status
            .as_ref()
            .and_then(|s| s.provider_id.as_ref())
            .is_none()),
        "no launch was recorded"
    );
    assert_eq!(world.live_instances().len(), claims.len());

    // The new process adopts the instances instead of launching again.
    let second = Replica::start(&world, "second", Leadership::Fixed);
    settles_on(&world, &claims).await;
    second.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_launch_before_registration() {
    // Nodes register long after launch, so the kill lands between the two.
    let world = World::start(WorldOptions {
        boot_delay: Duration::from_secs(3),
        ..WorldOptions::default()
    })
    .await;
    let mut first = Replica::start(&world, "first", Leadership::Fixed);
    setup(&world).await;
    let claims = decided(&world).await;
    eventually(30, "every NodeClaim launched", async || {
        let now = world.nodeclaims().await;
        now.iter()
            .all(|nc| condition_true(nc, "Launched"))
            .then_some(())
    })
    .await;
    first.kill();
    let unregistered = world
        .nodeclaims()
        .await
        .iter()
        .filter(|nc| !condition_true(nc, "Registered"))
        .count();

    let second = Replica::start(&world, "second", Leadership::Fixed);
    settles_on(&world, &claims).await;
    // Registration was the new process's work.
    assert!(unregistered > 0, "the kill came after registration");
    assert!(second.counter("karpenter_nodes_created_total", &[]) >= unregistered as f64);
    second.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_registration() {
    let world = World::start(WorldOptions::default()).await;
    let mut first = Replica::start(&world, "first", Leadership::Fixed);
    setup(&world).await;
    let claims = decided(&world).await;
    eventually(30, "every NodeClaim registered", async || {
        let now = world.nodeclaims().await;
        now.iter()
            .all(|nc| condition_true(nc, "Registered"))
            .then_some(())
    })
    .await;
    first.kill();

    let second = Replica::start(&world, "second", Leadership::Fixed);
    settles_on(&world, &claims).await;
    for node in world.nodes().await {
        let taints = node.spec.unwrap().taints.unwrap_or_default();
        assert!(
            !taints.iter().any(|t| t.key == labels::TAINT_UNREGISTERED),
            "{taints:?}"
        );
    }
    second.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_drain_the_node_still_terminates_fully() {
    let world = World::start(WorldOptions::default()).await;
    let mut first = Replica::start(&world, "first", Leadership::Fixed);
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
    world
        .apply(deployment("default", "guarded", 1, "500m", json!({})))
        .await;
    world
        .apply(
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "guarded", "namespace": "default"},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "guarded"}}}}),
        )
        .await;
    let node_name = eventually(60, "guarded pod Running", async || {
        let pod = world
            .pods("default")
            .await
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))?;
        pod.spec?.node_name
    })
    .await;
    // The pod can start on the Node before registration has recorded the Node's name on the
    // NodeClaim.
    let claim =
        eventually(30, "the NodeClaim records its Node", async || {
            world.nodeclaims().await.into_iter().find(|nc| {
                nc.status.as_ref().and_then(|s| s.node_name.as_ref()) == Some(&node_name)
            })
        })
        .await;
    let claim_name = claim.metadata.name.clone().unwrap();
    let provider_id = claim.status.unwrap().provider_id.unwrap();
    Api::<NodeClaim>::all(world.client.clone())
        .delete(&claim_name, &DeleteParams::default())
        .await
        .unwrap();
    eventually(30, "the PDB blocks the drain", async || {
        world
            .events(&node_name, "FailedDraining")
            .await
            .iter()
            .any(|m| m.contains("PDB"))
            .then_some(())
    })
    .await;
    first.kill();
    assert!(
        world.node(&node_name).await.is_some(),
        "still draining at the kill"
    );

    let second = Replica::start(&world, "second", Leadership::Fixed);
    eventually(60, "NodeClaim and Node gone", async || {
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
    eventually(60, "the guarded pod runs elsewhere", async || {
        let phases = world.pod_phases("default", "guarded").await;
        (phases.get("Running") == Some(&1) && phases.len() == 1).then_some(())
    })
    .await;
    eventually(30, "cloud and cluster agree", async || {
        world.cloud_mismatch().await.is_none().then_some(())
    })
    .await;
    assert_eq!(
        world.nodeclaims().await.len(),
        1,
        "one replacement, no duplicate"
    );
    assert!(second.counter("karpenter_nodeclaims_terminated_total", &[]) >= 1.0);
    second.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_again_and_again_while_scaling_up_settles_on_one_node_per_pod() {
    const SCALED: usize = 6;
    let world = World::start(WorldOptions::default()).await;
    let mut replica = Replica::start(&world, "r0", Leadership::Fixed);
    setup(&world).await;
    world.scale("default", "web", SCALED as i32).await;
    // Crashes land at different points of batching, creating, launching and registering.
    for (i, pause_ms) in [150u64, 400, 250, 700, 100, 550, 300]
        .into_iter()
        .enumerate()
    {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        replica.kill();
        replica = Replica::start(&world, &format!("r{}", i + 1), Leadership::Fixed);
    }
    eventually(90, "every pod Running", async || {
        let phases = world.pod_phases("default", "web").await;
        (phases.get("Running") == Some(&SCALED) && phases.len() == 1).then_some(())
    })
    .await;
    eventually(30, "cloud and cluster agree", async || {
        world.cloud_mismatch().await.is_none().then_some(())
    })
    .await;
    // Each 1-CPU pod needs a 2-vCPU node of its own: one more NodeClaim would be a duplicate
    // (nothing consolidates here, so it would stay).
    let claims = world.nodeclaims().await;
    assert_eq!(claims.len(), SCALED, "{:?}", names(&claims));
    assert_eq!(world.create_calls(), SCALED, "one launch per NodeClaim");
    replica.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodeclaim_deleted_while_its_launch_answer_was_lost_leaves_no_instance() {
    let world = World::start(WorldOptions::default()).await;
    world.hold_create_answers(true);
    let mut first = Replica::start(&world, "first", Leadership::Fixed);
    setup(&world).await;
    let claims = decided(&world).await;
    eventually(30, "every launch reached the cloud", async || {
        (world.create_calls() == claims.len()).then_some(())
    })
    .await;
    first.kill();
    world.hold_create_answers(false);
    // The user deletes one NodeClaim while no controller runs; its instance exists but no
    // NodeClaim records it.
    let victim = claims.iter().next().unwrap().clone();
    Api::<NodeClaim>::all(world.client.clone())
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();

    // Without the leaked-instance sweep: finalization itself must find the instance.
    let mut config = env::operator_config();
    config.lifecycle.gc_leaked_instances = false;
    let second = Replica::start_with(&world, "second", Leadership::Fixed, config);
    eventually(60, "the deleted NodeClaim is gone", async || {
        world.nodeclaim(&victim).await.is_none().then_some(())
    })
    .await;
    eventually(60, "every pod Running", async || {
        let phases = world.pod_phases("default", "web").await;
        (phases.get("Running") == Some(&(PODS as usize)) && phases.len() == 1).then_some(())
    })
    .await;
    eventually(30, "cloud and cluster agree", async || {
        world.cloud_mismatch().await.is_none().then_some(())
    })
    .await;
    assert!(
        world
            .live_instances()
            .iter()
            .all(|i| i.node_claim != victim),
        "the deleted NodeClaim's instance terminated"
    );
    // Its pod got exactly one replacement.
    assert_eq!(world.nodeclaims().await.len(), PODS as usize);
    second.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_again_and_again_while_every_node_drains() {
    let world = World::start(WorldOptions::default()).await;
    let mut replica = Replica::start(&world, "r0", Leadership::Fixed);
    setup(&world).await;
    world
        .apply(
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}}),
        )
        .await;
    let claims = decided(&world).await;
    settles_on(&world, &claims).await;
    let old_instances: BTreeSet<String> = world
        .live_instances()
        .into_iter()
        .map(|i| i.instance_id)
        .collect();
    let old_nodes: BTreeSet<String> = world
        .nodes()
        .await
        .into_iter()
        .map(|n| n.metadata.name.unwrap())
        .collect();
    for name in &claims {
        Api::<NodeClaim>::all(world.client.clone())
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    for (i, pause_ms) in [300u64, 600, 200, 900, 400].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        replica.kill();
        replica = Replica::start(&world, &format!("r{}", i + 1), Leadership::Fixed);
    }
    eventually(90, "the old NodeClaims and Nodes gone", async || {
        let claims_left = world
            .nodeclaims()
            .await
            .iter()
            .any(|nc| claims.contains(nc.metadata.name.as_ref().unwrap()));
        let nodes_left = world
            .nodes()
            .await
            .iter()
            .any(|n| old_nodes.contains(n.metadata.name.as_ref().unwrap()));
        (!claims_left && !nodes_left).then_some(())
    })
    .await;
    assert!(
        world
            .live_instances()
            .iter()
            .all(|i| !old_instances.contains(&i.instance_id)),
        "every old instance terminated"
    );
    eventually(60, "every pod Running on the replacements", async || {
        let phases = world.pod_phases("default", "web").await;
        (phases.get("Running") == Some(&(PODS as usize)) && phases.len() == 1).then_some(())
    })
    .await;
    eventually(30, "cloud and cluster agree", async || {
        world.cloud_mismatch().await.is_none().then_some(())
    })
    .await;
    // One replacement per pod (each needs a node of its own), none twice.
    assert_eq!(world.nodeclaims().await.len(), PODS as usize);
    replica.stop().await;
    world.stop().await;
}

/// A replica stopped before its controllers' caches ever listed (stopped right after it
/// started, or its API server hangs) still shuts down: the controllers must not wait for a
/// first sync that the shutdown itself prevents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_before_its_caches_listed_still_shuts_down() {
    let world = World::start(WorldOptions::default()).await;
    let apiserver = StalledApiServer::start().await;
    let replica = Replica::start_against(
        &world,
        "unsynced",
        Leadership::Fixed,
        operator_config(),
        &apiserver.url,
    );
    // Every watch of the controllers has asked for its first list (cluster-state informers,
    // the Node index and the status loops ask too): the controllers are running and waiting.
    let watches = [
        ("/api/v1/nodes", 5),
        ("/api/v1/pods", 2),
        ("/apis/karpenter.sh/v1/nodeclaims", 4),
        ("/apis/karpenter.sh/v1/nodepools", 5),
    ];
    eventually(
        30,
        "every controller's watch asked for its first list",
        async || {
            watches
                .iter()
                .all(|(path, n)| apiserver.requests_for(path) >= *n)
                .then_some(())
        },
    )
    .await;
    replica.stop().await;
    world.stop().await;
}

/// A replica stopped while its launches wait on a cloud call that does not answer still
/// shuts down (the calls are cut off as a crash would cut them), and a fresh replica then
/// launches each NodeClaim exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_while_launches_are_held_still_shuts_down() {
    let world = World::start(WorldOptions::default()).await;
    world.hold_creates(true);
    let first = Replica::start(&world, "first", Leadership::Fixed);
    setup(&world).await;
    let claims = decided(&world).await;
    eventually(30, "every launch waits on the cloud", async || {
        (world.creates_waiting() == PODS as usize).then_some(())
    })
    .await;
    first.stop().await;
    eventually(10, "the held launches are cut off", async || {
        (world.creates_waiting() == 0).then_some(())
    })
    .await;
    assert_eq!(world.create_calls(), 0);
    world.hold_creates(false);

    let second = Replica::start(&world, "second", Leadership::Fixed);
    settles_on(&world, &claims).await;
    second.stop().await;
    world.stop().await;
}
