//! `node.termination` and the eviction queue against the embedded API server (which enforces
//! PodDisruptionBudgets on evictions), the simulated kubelet and the simulated EC2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "lifecycle_env/mod.rs"]
mod env;

use env::{Options, condition_true, eventually, nodeclaim, start};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::NodeClaim;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

async fn create_pod(env: &env::Env, name: &str, node: &str, app: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "tolerations": [{"key": labels::TAINT_UNREGISTERED, "operator": "Exists"}],
            "containers": [{"name": "c", "image": "nginx",
                            "resources": {"requests": {"cpu": "100m"}}}],
        },
    }))
    .unwrap();
    Api::<Pod>::namespaced(env.client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_nodeclaim_drains_through_evictions_until_the_grace_period_forces_it() {
    let mut env = start(Options::default()).await;
    env.run_controllers();
    // Pods get at most 6s on this node once its deletion starts.
    env.create_nodeclaim(nodeclaim("drain", Some("6s"))).await;
    let nc = eventually(30, "nodeclaim Ready", || async {
        env.nodeclaim("drain")
            .await
            .filter(|nc| condition_true(nc, "Ready"))
    })
    .await;
    let node_name = nc.status.as_ref().unwrap().node_name.clone().unwrap();

    create_pod(&env, "free", &node_name, "free").await;
    create_pod(&env, "guarded", &node_name, "guarded").await;
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "guarded", "namespace": "default"},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "guarded"}}},
    }))
    .unwrap();
    Api::<PodDisruptionBudget>::namespaced(env.client.clone(), "default")
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap();
    eventually(30, "pods running", || async {
        let pods = Api::<Pod>::namespaced(env.client.clone(), "default");
        let mut running = 0;
        for name in ["free", "guarded"] {
            let p = pods.get(name).await.unwrap();
            if p.status.and_then(|s| s.phase).as_deref() == Some("Running") {
                running += 1;
            }
        }
        (running == 2).then_some(())
    })
    .await;

    eventually(30, "lastPodEventTime stamped", || async {
        env.nodeclaim("drain")
            .await
            .and_then(|nc| nc.status?.last_pod_event_time)
    })
    .await;

    Api::<NodeClaim>::all(env.client.clone())
        .delete("drain", &DeleteParams::default())
        .await
        .unwrap();

    // The unguarded pod is evicted; the guarded one is refused by its PDB meanwhile.
    eventually(30, "free pod evicted", || async {
        (!env.events("free", "Evicted").await.is_empty()).then_some(())
    })
    .await;
    eventually(30, "PDB refusal reported", || async {
        env.events(&node_name, "FailedDraining")
            .await
            .iter()
            .any(|m| m.contains("violates a PDB"))
            .then_some(())
    })
    .await;
    let node = env.node(&node_name).await.unwrap();
    let taints = node.spec.unwrap().taints.unwrap_or_default();
    assert!(
        taints
            .iter()
            .any(|t| t.key == labels::TAINT_DISRUPTED && t.effect == "NoSchedule"),
        "{taints:?}"
    );
    assert_eq!(
        node.metadata.labels.unwrap()[labels::EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS],
        "karpenter"
    );
    let nc = env.nodeclaim("drain").await.unwrap();
    assert!(
        nc.annotations()
            .contains_key(labels::NODECLAIM_TERMINATION_TIMESTAMP),
        "{:?}",
        nc.metadata.annotations
    );
    assert!(
        Api::<Pod>::namespaced(env.client.clone(), "default")
            .get_opt("guarded")
            .await
            .unwrap()
            .is_some(),
        "the PDB holds the pod before the deadline"
    );

    // At the deadline minus the pod's grace period it is deleted regardless, then the
    // instance terminates and both finalizers go.
    eventually(30, "guarded pod force-deleted", || async {
        (!env.events("guarded", "Disrupted").await.is_empty()).then_some(())
    })
    .await;
    eventually(30, "nodeclaim and node gone", || async {
        (env.nodeclaim("drain").await.is_none() && env.node(&node_name).await.is_none())
            .then_some(())
    })
    .await;
    eventually(10, "instance terminated", || async {
        env.live_instances().is_empty().then_some(())
    })
    .await;
    assert!(env.counter("karpenter_pods_eviction_requests_total", &[("code", "429")]) >= 1.0);
    assert!(env.counter("karpenter_pods_eviction_requests_total", &[("code", "200")]) >= 1.0);
    assert_eq!(
        env.counter(
            "karpenter_nodes_terminated_total",
            &[("nodepool", "default")]
        ),
        1.0
    );
    assert_eq!(
        env.counter(
            "karpenter_nodeclaims_terminated_total",
            &[("nodepool", "default")]
        ),
        1.0
    );
    assert_eq!(
        env.counter("karpenter_nodes_drained_total", &[("nodepool", "default")]),
        1.0
    );
    env.stop().await;
}

use kube::ResourceExt;
