//! The simulated workload controllers and node agent lifecycles against the embedded API server.

mod cluster_support;

use cluster_support::*;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn daemonset_runs_one_pinned_pod_per_eligible_node() {
    let sim = start().await;
    let client = sim.client();
    create_node(
        &client,
        &node("n1", "2", json!({"role": "worker"}), json!([])),
    )
    .await;
    create_node(
        &client,
        &node("n2", "2", json!({"role": "worker"}), json!([])),
    )
    .await;
    create_node(
        &client,
        &node("n3", "2", json!({"role": "infra"}), json!([])),
    )
    .await;
    create_node(
        &client,
        &node(
            "n4",
            "2",
            json!({"role": "worker"}),
            json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]),
        ),
    )
    .await;
    let ds: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                "nodeSelector": {"role": "worker"},
                "containers": [{"name": "a", "image": "agent", "resources": {"requests": {"cpu": "100m"}}}],
            }},
        },
    }))
    .unwrap();
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &ds).await.unwrap();
    let pods = wait_for("daemon pods running on n1 and n2", || async {
        let pods = pods_with(&client, "app=agent").await;
        let mut nodes: Vec<String> = pods.iter().filter_map(running_on).collect();
        nodes.sort();
        (pods.len() == 2 && nodes == ["n1", "n2"]).then_some(pods)
    })
    .await;
    for p in &pods {
        let spec = p.spec.as_ref().unwrap();
        let terms = &spec
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap();
        let fields = terms
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms[0]
            .match_fields
            .as_ref()
            .unwrap();
        assert_eq!(fields[0].key, "metadata.name");
        assert_eq!(
            fields[0].values.as_ref().unwrap(),
            &vec![spec.node_name.clone().unwrap()]
        );
        assert!(
            spec.tolerations
                .as_ref()
                .unwrap()
                .iter()
                .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unschedulable"))
        );
    }
    wait_for("daemonset status", || async {
        let s = api.get("agent").await.unwrap().status?;
        (s.desired_number_scheduled == 2
            && s.current_number_scheduled == 2
            && s.number_ready == 2
            && s.number_misscheduled == 0)
            .then_some(())
    })
    .await;
    // A new eligible node gets its pod too.
    create_node(
        &client,
        &node("n5", "2", json!({"role": "worker"}), json!([])),
    )
    .await;
    wait_for("third daemon pod", || async {
        let pods = pods_with(&client, "app=agent").await;
        pods.iter()
            .any(|p| running_on(p).as_deref() == Some("n5"))
            .then_some(())
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn pdb_status_follows_ready_pods() {
    let sim = start().await;
    let client = sim.client();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let pdb = |name: &str, rule: serde_json::Value| -> PodDisruptionBudget {
        let mut spec = json!({"selector": {"matchLabels": {"app": "db"}}});
        if let (Some(m), Some(r)) = (spec.as_object_mut(), rule.as_object()) {
            m.extend(r.clone());
        }
        serde_json::from_value(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name}, "spec": spec})).unwrap()
    };
    pdbs.create(
        &PostParams::default(),
        &pdb("min-pct", json!({"minAvailable": "50%"})),
    )
    .await
    .unwrap();
    pdbs.create(
        &PostParams::default(),
        &pdb("max-one", json!({"maxUnavailable": 1})),
    )
    .await
    .unwrap();
    pdbs.create(
        &PostParams::default(),
        &pdb("min-int", json!({"minAvailable": 4})),
    )
    .await
    .unwrap();
    pdbs.create(
        &PostParams::default(),
        &pdb("max-pct", json!({"maxUnavailable": "30%"})),
    )
    .await
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    // 5 replicas of 1 cpu on a 3-cpu node: 3 run, 2 stay pending.
    deployments
        .create(&PostParams::default(), &deployment("db", 5, "1", json!({})))
        .await
        .unwrap();
    create_node(&client, &node("n1", "3", json!({}), json!([]))).await;
    let numbers = |p: &PodDisruptionBudget| {
        p.status.as_ref().map(|s| {
            (
                s.expected_pods,
                s.desired_healthy,
                s.current_healthy,
                s.disruptions_allowed,
            )
        })
    };
    // (expected, desired healthy, current healthy, disruptions allowed)
    let cases = [
        ("min-pct", (5, 3, 3, 0)),
        ("max-one", (5, 4, 3, 0)),
        ("min-int", (5, 4, 3, 0)),
        ("max-pct", (5, 3, 3, 0)),
    ];
    for (name, want) in cases {
        wait_for(&format!("{name} status {want:?}"), || async {
            (numbers(&pdbs.get(name).await.unwrap()) == Some(want)).then_some(())
        })
        .await;
    }
    // More capacity: all 5 healthy.
    create_node(&client, &node("n2", "3", json!({}), json!([]))).await;
    let cases = [
        ("min-pct", (5, 3, 5, 2)),
        ("max-one", (5, 4, 5, 1)),
        ("min-int", (5, 4, 5, 1)),
        ("max-pct", (5, 3, 5, 2)),
    ];
    for (name, want) in cases {
        let p = wait_for(&format!("{name} status {want:?}"), || async {
            let p = pdbs.get(name).await.unwrap();
            (numbers(&p) == Some(want)).then_some(p)
        })
        .await;
        let status = p.status.unwrap();
        assert_eq!(status.observed_generation, p.metadata.generation);
        let cond = &status.conditions.unwrap()[0];
        assert_eq!(
            (
                cond.type_.as_str(),
                cond.status.as_str(),
                cond.reason.as_str()
            ),
            ("DisruptionAllowed", "True", "SufficientPods")
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn graceful_deletion_finishes_on_the_node() {
    let sim = start().await;
    let client = sim.client();
    create_node(&client, &node("n1", "2", json!({}), json!([]))).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "slow",
            json!({}),
            json!({"terminationGracePeriodSeconds": 600}),
        ),
    )
    .await
    .unwrap();
    wait_for("running", || async {
        running_on(&pods.get("slow").await.unwrap())
    })
    .await;
    pods.delete("slow", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("slow").await.unwrap();
    assert!(
        terminating.metadata.deletion_timestamp.is_some(),
        "a bound pod terminates gracefully first"
    );
    assert_eq!(
        terminating.metadata.deletion_grace_period_seconds,
        Some(600)
    );
    // The agent's cap (200ms in tests) ends the 600s grace period.
    wait_for("pod gone", || async {
        pods.get_opt("slow").await.unwrap().is_none().then_some(())
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn deleting_a_node_deletes_its_pods_and_replacements_pend() {
    let sim = start().await;
    let client = sim.client();
    create_node(&client, &node("doomed", "4", json!({}), json!([]))).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &deployment("app", 2, "500m", json!({})),
        )
        .await
        .unwrap();
    let before = wait_for("2 running", || async {
        let pods = pods_with(&client, "app=app").await;
        (pods.len() == 2 && pods.iter().all(|p| running_on(p).is_some())).then_some(pods)
    })
    .await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let old_uids: Vec<String> = before
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    wait_for("2 new pending replacements", || async {
        let pods = pods_with(&client, "app=app").await;
        let fresh = pods
            .iter()
            .all(|p| !old_uids.contains(p.metadata.uid.as_ref().unwrap()));
        (pods.len() == 2 && fresh && pods.iter().all(unschedulable)).then_some(())
    })
    .await;
    sim.shutdown().await;
}
