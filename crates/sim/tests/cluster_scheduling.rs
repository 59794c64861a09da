//! The simulated scheduler and node agent against the embedded API server, through kube-rs.

mod cluster_support;

use cluster_support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn deployment_waits_for_a_node_then_runs_and_scales() {
    let sim = start().await;
    let client = sim.client();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &deployment("web", 3, "500m", json!({})),
        )
        .await
        .unwrap();

    let pods = wait_for("3 unschedulable pods", || async {
        let pods = pods_with(&client, "app=web").await;
        (pods.len() == 3 && pods.iter().all(unschedulable)).then_some(pods)
    })
    .await;
    for p in &pods {
        assert!(
            p.metadata.name.as_deref().unwrap().starts_with("web-"),
            "{:?}",
            p.metadata.name
        );
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "ReplicaSet");
        assert_eq!(message(p), "no nodes available to schedule pods");
    }
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_for("FailedScheduling events", || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedScheduling"))
            .then_some(())
    })
    .await;

    create_node(&client, &node("node-a", "4", json!({}), json!([]))).await;
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for("node Ready", || async {
        let n = nodes.get("node-a").await.unwrap();
        let conds = n.status?.conditions?;
        conds
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;
    wait_for("3 pods running on node-a", || async {
        let pods = pods_with(&client, "app=web").await;
        (pods.len() == 3
            && pods
                .iter()
                .all(|p| running_on(p).as_deref() == Some("node-a")))
        .then_some(())
    })
    .await;
    let running = pods_with(&client, "app=web").await;
    let status = running[0].status.as_ref().unwrap();
    assert!(status.pod_ip.is_some() && status.start_time.is_some());
    assert!(status.container_statuses.as_ref().unwrap()[0].ready);
    wait_for("deployment status 3 ready", || async {
        let d = deployments.get("web").await.unwrap();
        let s = d.status?;
        (s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.updated_replicas == Some(3))
        .then_some(())
    })
    .await;

    // Scale up through the scale subresource: 5 x 500m fit on 4 cpus.
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    wait_for("5 running", || async {
        let pods = pods_with(&client, "app=web").await;
        (pods.iter().filter(|p| running_on(p).is_some()).count() == 5 && pods.len() == 5)
            .then_some(())
    })
    .await;
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    wait_for("1 pod left after graceful deletion", || async {
        let pods = pods_with(&client, "app=web").await;
        (pods.len() == 1 && running_on(&pods[0]).is_some()).then_some(())
    })
    .await;
    wait_for("deployment status 1", || async {
        let s = deployments.get("web").await.unwrap().status?;
        (s.replicas == Some(1) && s.ready_replicas == Some(1) && s.observed_generation == Some(3))
            .then_some(())
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn requests_taints_and_selectors_decide_placement() {
    let sim = start().await;
    let client = sim.client();
    create_node(
        &client,
        &node("small", "1", json!({"zone": "a"}), json!([])),
    )
    .await;
    create_node(
        &client,
        &node(
            "gpu",
            "8",
            json!({"zone": "b"}),
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        ),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let cpu = |c: &str| json!({"containers": [{"name": "app", "image": "nginx", "resources": {"requests": {"cpu": c}}}]});
    pods.create(
        &PostParams::default(),
        &pod("fits", json!({"t": "1"}), cpu("600m")),
    )
    .await
    .unwrap();
    wait_for("first pod runs on small", || async {
        (running_on(&pods.get("fits").await.unwrap()).as_deref() == Some("small")).then_some(())
    })
    .await;
    pods.create(
        &PostParams::default(),
        &pod("too-big", json!({"t": "1"}), cpu("600m")),
    )
    .await
    .unwrap();
    let p = wait_for("second pod unschedulable", || async {
        let p = pods.get("too-big").await.unwrap();
        unschedulable(&p).then_some(p)
    })
    .await;
    assert_eq!(
        message(&p),
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."
    );

    let mut tolerating = cpu("600m");
    tolerating["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    pods.create(
        &PostParams::default(),
        &pod("tolerates", json!({}), tolerating),
    )
    .await
    .unwrap();
    wait_for("tolerating pod runs on gpu", || async {
        (running_on(&pods.get("tolerates").await.unwrap()).as_deref() == Some("gpu")).then_some(())
    })
    .await;

    let mut selecting = cpu("100m");
    selecting["nodeSelector"] = json!({"zone": "b"});
    pods.create(
        &PostParams::default(),
        &pod("selects-b", json!({}), selecting),
    )
    .await
    .unwrap();
    let p = wait_for("selector pod unschedulable", || async {
        let p = pods.get("selects-b").await.unwrap();
        unschedulable(&p).then_some(p)
    })
    .await;
    assert_eq!(
        message(&p),
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}."
    );

    // Required node affinity with Gt picks the node whose label is large enough.
    let mut gt = cpu("100m");
    gt["tolerations"] = json!([{"operator": "Exists"}]);
    gt["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}, {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["small"]}]}
    ]}}});
    pods.create(&PostParams::default(), &pod("affinity", json!({}), gt))
        .await
        .unwrap();
    wait_for("affinity pod runs on gpu", || async {
        (running_on(&pods.get("affinity").await.unwrap()).as_deref() == Some("gpu")).then_some(())
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn anti_affinity_keeps_the_second_replica_pending() {
    let sim = start().await;
    let client = sim.client();
    create_node(&client, &node("only", "8", json!({}), json!([]))).await;
    let extra = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "spread"}}, "topologyKey": "kubernetes.io/hostname"}
    ]}}});
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &deployment("spread", 2, "100m", extra),
        )
        .await
        .unwrap();
    let pending = wait_for("one running, one pending", || async {
        let pods = pods_with(&client, "app=spread").await;
        let running = pods.iter().filter(|p| running_on(p).is_some()).count();
        let pending: Vec<Pod> = pods.into_iter().filter(unschedulable).collect();
        (running == 1 && pending.len() == 1).then_some(pending)
    })
    .await;
    assert_eq!(
        message(&pending[0]),
        "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules."
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn registration_and_startup_taints_hold_pods_until_removed() {
    let sim = start().await;
    let client = sim.client();
    let mut n = node(
        "claimed",
        "4",
        json!({}),
        json!([
            {"key": "karpenter.sh/unregistered", "effect": "NoExecute"},
            {"key": "example.com/agent-not-ready", "effect": "NoSchedule"},
        ]),
    );
    n.metadata.annotations = Some(
        [(
            karpenter_sim::cluster::STARTUP_TAINTS_ANNOTATION.to_string(),
            "example.com/agent-not-ready:NoSchedule".to_string(),
        )]
        .into(),
    );
    create_node(&client, &n).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("waits", json!({}), json!({})))
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    // The agent makes it Ready and drops the startup taint, but never Karpenter's taint.
    wait_for("startup taint removed", || async {
        let node = nodes.get("claimed").await.unwrap();
        let taints = node.spec?.taints.unwrap_or_default();
        (taints.len() == 1 && taints[0].key == "karpenter.sh/unregistered").then_some(())
    })
    .await;
    let p = wait_for("pod unschedulable on the unregistered node", || async {
        let p = pods.get("waits").await.unwrap();
        (unschedulable(&p) && message(&p).contains("karpenter.sh/unregistered")).then_some(p)
    })
    .await;
    assert_eq!(
        message(&p),
        "0/1 nodes are available: 1 node(s) had untolerated taint {karpenter.sh/unregistered: }."
    );
    // Karpenter registers the node: the taint goes and the pod runs.
    nodes
        .patch(
            "claimed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": null}})),
        )
        .await
        .unwrap();
    wait_for("pod runs", || async {
        running_on(&pods.get("waits").await.unwrap()).map(|_| ())
    })
    .await;
    sim.shutdown().await;
}
