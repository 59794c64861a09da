//! Two controller replicas electing a leader on the Lease, each running `operator::run`: only
//! the leader acts, and when it is killed the other takes over and provisions what comes next.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "e2e_env/mod.rs"]
mod env;

use std::time::{Duration, Instant};

use env::{
    LEASE_NAME, LEASE_NAMESPACE, Leadership, Replica, World, WorldOptions, deployment, eventually,
    nodeclass, nodepool,
};
use k8s_openapi::api::coordination::v1::Lease;
use karpenter_controllers::operator::Stopped;
use kube::api::Api;
use serde_json::json;

const LEASE: Duration = Duration::from_secs(3);

async fn holder(world: &World) -> Option<String> {
    Api::<Lease>::namespaced(world.client.clone(), LEASE_NAMESPACE)
        .get_opt(LEASE_NAME)
        .await
        .unwrap()?
        .spec?
        .holder_identity
}

async fn running(world: &World, app: &str, n: usize) {
    eventually(60, &format!("{n} {app} pods Running"), async || {
        let phases = world.pod_phases("default", app).await;
        (phases.get("Running") == Some(&n) && phases.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_a_killed_leader_is_replaced() {
    let world = World::start(WorldOptions::default()).await;
    let mut a = Replica::start(&world, "a", Leadership::lease("a", LEASE));
    let mut b = Replica::start(&world, "b", Leadership::lease("b", LEASE));
    eventually(30, "a leader", async || {
        (a.is_leading() || b.is_leading()).then_some(())
    })
    .await;
    let (leader, follower) = if a.is_leading() {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert_eq!(holder(&world).await.as_deref(), Some(leader.name.as_str()));

    world.apply(nodeclass("default")).await;
    world.apply(nodepool("general", json!({}))).await;
    world
        .apply(deployment("default", "before", 3, "1", json!({})))
        .await;
    running(&world, "before", 3).await;
    let claims = world.nodeclaims().await.len();
    assert!(claims >= 1);
    assert!(!follower.is_leading(), "never two leaders");
    assert_eq!(
        leader.counter("karpenter_nodeclaims_created_total", &[]),
        claims as f64,
        "every NodeClaim is the leader's"
    );
    assert_eq!(
        follower.counter("karpenter_nodeclaims_created_total", &[]),
        0.0
    );
    assert!(
        follower.published_reasons().is_empty(),
        "the follower published {:?}",
        follower.published_reasons()
    );
    assert!(leader.published_reasons().contains(&"Nominated"));
    // Its informers are warm all along, but it never asked the cloud for anything.
    assert_eq!(
        follower.histogram_count("karpenter_cloudprovider_duration_seconds", &[]),
        0
    );
    assert!(leader.histogram_count("karpenter_cloudprovider_duration_seconds", &[]) > 0);

    // SIGKILL: the Lease is not released, so the follower waits for it to expire.
    leader.kill();
    let killed_at = Instant::now();
    eventually(30, "the follower takes over", async || {
        follower.is_leading().then_some(())
    })
    .await;
    let handover = killed_at.elapsed();
    assert_eq!(
        holder(&world).await.as_deref(),
        Some(follower.name.as_str())
    );
    // Reported, not asserted (no timed assertions): expected within the lease duration plus a
    // retry period.
    println!("handover after {handover:?} (lease {LEASE:?})");

    world
        .apply(deployment("default", "after", 2, "1", json!({})))
        .await;
    running(&world, "after", 2).await;
    running(&world, "before", 3).await;
    let now = world.nodeclaims().await.len();
    assert!(now > claims, "new pods need new nodes");
    assert_eq!(
        follower.counter("karpenter_nodeclaims_created_total", &[]),
        (now - claims) as f64,
        "the new leader created exactly the new NodeClaims"
    );
    eventually(30, "cloud and cluster agree", async || {
        world.cloud_mismatch().await.is_none().then_some(())
    })
    .await;
    b.stop().await;
    a.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stops_every_controller() {
    let world = World::start(WorldOptions::default()).await;
    let mut replica = Replica::start(&world, "a", Leadership::lease("a", LEASE));
    eventually(30, "leading", async || replica.is_leading().then_some(())).await;
    world.apply(nodeclass("default")).await;
    world.apply(nodepool("general", json!({}))).await;

    // Someone else takes the Lease (as `kubectl edit` could).
    let leases = Api::<Lease>::namespaced(world.client.clone(), LEASE_NAMESPACE);
    // The leader renews all the while: retry on a write conflict.
    eventually(30, "the Lease taken", async || {
        let mut lease = leases.get(LEASE_NAME).await.unwrap();
        let spec = lease.spec.as_mut().unwrap();
        spec.holder_identity = Some("intruder".to_string());
        spec.lease_duration_seconds = Some(3600);
        leases
            .replace(LEASE_NAME, &Default::default(), &lease)
            .await
            .ok()
    })
    .await;
    assert_eq!(
        replica.operator_stopped(30).await,
        Some(Stopped::LostLeadership)
    );
    assert!(!replica.is_leading());

    // Nothing acts on pods that arrive now, over several batch windows.
    world
        .apply(deployment("default", "orphaned", 2, "1", json!({})))
        .await;
    eventually(30, "the pods exist", async || {
        (world.pod_phases("default", "orphaned").await.get("Pending") == Some(&2)).then_some(())
    })
    .await;
    tokio::time::sleep(3 * env::settings().batch_max_duration).await;
    assert!(world.nodeclaims().await.is_empty());
    assert_eq!(
        replica.counter("karpenter_nodeclaims_created_total", &[]),
        0.0
    );

    // The process exits on losing the lease and is restarted; it leads once the Lease is
    // free again.
    replica.kill();
    leases
        .patch(
            LEASE_NAME,
            &Default::default(),
            &kube::api::Patch::Merge(json!({"spec": {"holderIdentity": null}})),
        )
        .await
        .unwrap();
    let restarted = Replica::start(&world, "a", Leadership::lease("a", LEASE));
    running(&world, "orphaned", 2).await;
    assert!(restarted.counter("karpenter_nodeclaims_created_total", &[]) >= 1.0);
    restarted.stop().await;
    world.stop().await;
}
