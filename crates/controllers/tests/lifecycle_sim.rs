//! `nodeclaim.lifecycle` and `nodeclaim.garbagecollection` against the embedded API server,
//! the simulated kubelet and the simulated EC2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "lifecycle_env/mod.rs"]
mod env;

use std::sync::Arc;
use std::time::Duration;

use env::{Options, condition_true, eventually, nodeclaim, start};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_cloudprovider::{CloudProvider, ManualClock, OfferingKey};
use karpenter_sim::apiserver::{FaultRule, Verb};
use kube::api::{Api, DeleteParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodeclaim_launches_registers_and_initializes() {
    let mut env = start(Options::default()).await;
    env.run_controllers();
    env.create_nodeclaim(nodeclaim("a", None)).await;

    let nc = eventually(30, "nodeclaim Ready", || async {
        env.nodeclaim("a")
            .await
            .filter(|nc| condition_true(nc, "Ready"))
    })
    .await;
    for c in ["Launched", "Registered", "Initialized"] {
        assert!(condition_true(&nc, c), "{c}");
    }
    assert!(
        nc.metadata
            .finalizers
            .unwrap()
            .contains(&labels::TERMINATION_FINALIZER.to_string())
    );
    let nc_labels = nc.metadata.labels.unwrap();
    assert_eq!(nc_labels[labels::INSTANCE_TYPE], "m5.large");
    assert_eq!(nc_labels["team"], "payments");
    let status = nc.status.unwrap();
    let node_name = status.node_name.clone().unwrap();
    let instances = env.live_instances();
    assert_eq!(instances.len(), 1);
    assert_eq!(
        status.provider_id.as_deref(),
        Some(instances[0].provider_id.as_str())
    );
    assert_eq!(
        status.image_id.as_deref(),
        Some(instances[0].image_id.as_str())
    );

    let node = env.node(&node_name).await.unwrap();
    assert!(
        node.metadata
            .finalizers
            .unwrap()
            .contains(&labels::TERMINATION_FINALIZER.to_string())
    );
    let node_labels = node.metadata.labels.unwrap();
    assert_eq!(node_labels[labels::REGISTERED], "true");
    assert_eq!(node_labels[labels::INITIALIZED], "true");
    assert_eq!(node_labels["team"], "payments");
    let taints = node.spec.unwrap().taints.unwrap_or_default();
    assert!(
        !taints.iter().any(|t| t.key == labels::TAINT_UNREGISTERED),
        "{taints:?}"
    );
    assert_eq!(
        env.counter(
            "karpenter_nodes_created_total",
            &[("nodepool", "default"), ("zone", "us-west-2a")]
        ),
        1.0
    );
    assert_eq!(env.create_calls(), 1);
    eventually(30, "consistency checked", || async {
        env.nodeclaim("a")
            .await
            .filter(|nc| condition_true(nc, "ConsistentStateFound"))
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_capacity_on_the_only_offering_deletes_the_nodeclaim() {
    let mut env = start(Options::default()).await;
    env.ec2.set_offering_capacity(
        OfferingKey::new("m5.large", "us-west-2a", "on-demand"),
        Some(0),
    );
    env.run_controllers();
    env.create_nodeclaim(nodeclaim("ice", None)).await;

    env.until_nodeclaim_gone(30, "nodeclaim deleted", "ice")
        .await;
    // Events are written by the recorder's background task: the NodeClaim can be gone
    // before the event's POST has landed.
    let events = eventually(30, "InsufficientCapacityError event", || async {
        let events = env.events("ice", "InsufficientCapacityError").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains("insufficient capacity"), "{events:?}");
    assert_eq!(
        env.counter(
            "karpenter_nodeclaims_disrupted_total",
            &[("reason", "insufficient_capacity")]
        ),
        1.0
    );
    assert!(env.live_instances().is_empty());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_status_write_after_create_does_not_launch_twice() {
    let mut env = start(Options::default()).await;
    // The first two status writes fail: the first is the one right after create.
    env.cluster.apiserver().faults().add_rule(FaultRule::next(
        Some(Verb::Patch),
        Some("nodeclaims/status"),
        500,
        2,
    ));
    env.run_controllers();
    env.create_nodeclaim(nodeclaim("flaky", None)).await;
    eventually(30, "nodeclaim Ready", || async {
        env.nodeclaim("flaky")
            .await
            .filter(|nc| condition_true(nc, "Ready"))
    })
    .await;
    assert_eq!(env.create_calls(), 1);
    assert_eq!(env.live_instances().len(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_created_before_a_restart_is_adopted_not_duplicated() {
    let mut env = start(Options::default()).await;
    // A previous process created the instance and died before writing the status.
    let created = env.create_nodeclaim(nodeclaim("survivor", None)).await;
    let launched = env.ec2.create(&created).await.unwrap();
    let pid = launched.status.unwrap().provider_id.unwrap();

    env.run_controllers();
    let nc = eventually(30, "nodeclaim Ready", || async {
        env.nodeclaim("survivor")
            .await
            .filter(|nc| condition_true(nc, "Ready"))
    })
    .await;
    assert_eq!(nc.status.unwrap().provider_id, Some(pid));
    assert_eq!(env.create_calls(), 1, "only the pre-restart create");
    assert_eq!(env.live_instances().len(), 1);

    // Stop and start again: nothing changes.
    env.stop_controllers().await;
    env.run_controllers();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.create_calls(), 1);
    assert_eq!(env.live_instances().len(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_unlaunched_nodeclaim_after_a_restart_terminates_its_instance() {
    let mut env = start(Options::default()).await;
    let created = env.create_nodeclaim(nodeclaim("orphan", None)).await;
    // The finalizer was added and the instance created by a process that then died.
    Api::<NodeClaim>::all(env.client.clone())
        .patch(
            "orphan",
            &Default::default(),
            &kube::api::Patch::Merge(
                serde_json::json!({"metadata": {"finalizers": [labels::TERMINATION_FINALIZER]}}),
            ),
        )
        .await
        .unwrap();
    env.ec2.create(&created).await.unwrap();
    Api::<NodeClaim>::all(env.client.clone())
        .delete("orphan", &DeleteParams::default())
        .await
        .unwrap();
    env.run_controllers();
    env.until_nodeclaim_gone(30, "nodeclaim finalized", "orphan")
        .await;
    eventually(10, "instance terminated", || async {
        env.live_instances().is_empty().then_some(())
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_instances_are_terminated_and_vanished_ones_collected() {
    let mut env = start(Options::default()).await;
    env.run_controllers();
    env.create_nodeclaim(nodeclaim("kept", None)).await;
    let nc = eventually(30, "nodeclaim Ready", || async {
        env.nodeclaim("kept")
            .await
            .filter(|nc| condition_true(nc, "Ready"))
    })
    .await;

    // An instance with no NodeClaim at all.
    let ghost: NodeClaim = serde_json::from_value(nodeclaim("ghost", None)).unwrap();
    let ghost = env.ec2.create(&ghost).await.unwrap();
    let ghost_pid = ghost.status.unwrap().provider_id.unwrap();
    eventually(30, "leaked instance terminated", || async {
        (!env
            .live_instances()
            .iter()
            .any(|i| i.provider_id == ghost_pid))
        .then_some(())
    })
    .await;
    assert!(
        env.nodeclaim("kept").await.is_some(),
        "the owned instance stays"
    );

    // The kept NodeClaim's instance disappears behind Karpenter's back.
    let pid = nc.status.unwrap().provider_id.unwrap();
    let id = pid.rsplit('/').next().unwrap().to_string();
    env.ec2.terminate_instance(&id).unwrap();
    env.until_nodeclaim_gone(30, "nodeclaim of the vanished instance deleted", "kept")
        .await;
    env.stop().await;
}

/// Controllers running on a manual clock, and the NodeClaim `never-registers` launched but
/// with no Node (the cloud registers none).
async fn launched_nodeclaim_that_never_registers() -> (Arc<ManualClock>, env::Env) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let mut env = start(Options {
        clock: clock.clone(),
        register_nodes: false,
    })
    .await;
    env.run_controllers();
    env.create_nodeclaim(nodeclaim("never-registers", None))
        .await;
    eventually(30, "launched", || async {
        env.nodeclaim("never-registers")
            .await
            .filter(|nc| condition_true(nc, "Launched"))
    })
    .await;
    (clock, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodeclaims_that_do_not_come_up_in_time_are_deleted() {
    let (clock, env) = launched_nodeclaim_that_never_registers().await;
    // Launched but no Node: after 15 minutes it is given up on.
    clock.advance(Duration::from_secs(14 * 60));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(env.nodeclaim("never-registers").await.is_some(), "not yet");
    clock.advance(Duration::from_secs(2 * 60));
    env.until_nodeclaim_gone(
        30,
        "deleted after the registration timeout",
        "never-registers",
    )
    .await;
    assert_eq!(
        env.counter(
            "karpenter_nodeclaims_disrupted_total",
            &[("reason", "registration_timeout")]
        ),
        1.0
    );
    assert!(
        env.live_instances().is_empty(),
        "its instance is terminated"
    );

    // A launch that keeps failing is given up on after 5 minutes.
    clock.set(chrono::Utc::now());
    env.ec2.set_create_budget(Some(0));
    env.create_nodeclaim(nodeclaim("never-launches", None))
        .await;
    eventually(30, "launch failed", || async {
        env.nodeclaim("never-launches").await.filter(|nc| {
            nc.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Launched" && c.reason == "LaunchFailed")
            })
        })
    })
    .await;
    clock.advance(Duration::from_secs(6 * 60));
    env.until_nodeclaim_gone(30, "deleted after the launch timeout", "never-launches")
        .await;
    assert_eq!(
        env.counter(
            "karpenter_nodeclaims_disrupted_total",
            &[("reason", "launch_timeout")]
        ),
        1.0
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_whose_delete_fails_is_retried_and_counted_once() {
    let (clock, env) = launched_nodeclaim_that_never_registers().await;
    // The first two DELETEs of a NodeClaim fail; the reconcile retries until one is accepted.
    env.cluster.apiserver().faults().add_rule(FaultRule::next(
        Some(Verb::Delete),
        Some("nodeclaims"),
        500,
        2,
    ));
    clock.advance(Duration::from_secs(16 * 60));
    env.until_nodeclaim_gone(
        60,
        "deleted after the registration timeout",
        "never-registers",
    )
    .await;
    assert_eq!(
        env.cluster.apiserver().faults().injected_count(),
        2,
        "both failures were hit"
    );
    assert_eq!(
        env.counter(
            "karpenter_nodeclaims_disrupted_total",
            &[("reason", "registration_timeout")]
        ),
        1.0,
        "one NodeClaim, one disruption, however many DELETEs it took"
    );
    env.stop().await;
}
