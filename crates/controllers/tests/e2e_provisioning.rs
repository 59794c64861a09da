//! End to end, through `operator::run` with every controller, on the embedded cluster and the
//! simulated EC2: pending pods become NodeClaims, instances, registered and initialized Nodes
//! and Running pods; limits, impossible requirements and insufficient capacity behave as
//! upstream's do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "e2e_env/mod.rs"]
mod env;

use std::collections::{BTreeMap, BTreeSet};

use env::{
    Leadership, Replica, World, WorldOptions, claimed_cpu_millis, condition_true, cpu_millis,
    deployment, eventually, label_of, nodeclass, nodepool, pod,
};
use karpenter_apis::labels;
use karpenter_apis::nodepool::NodePool;
use karpenter_cloudprovider::OfferingKey;
use kube::api::Api;
use serde_json::json;

/// Seed 000 (eksdemo's Karpenter install): the default NodePool and EC2NodeClass exactly as
/// the guide's dry run prints them.
const SEED_000_NODEPOOL_AND_CLASS: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    spec:
      requirements:
        - key: kubernetes.io/arch
          operator: In
          values: ["amd64"]
        - key: kubernetes.io/os
          operator: In
          values: ["linux"]
        - key: karpenter.sh/capacity-type
          operator: In
          values: ["on-demand", "spot"]
        - key: karpenter.k8s.aws/instance-category
          operator: In
          values: ["c", "m", "r"]
        - key: karpenter.k8s.aws/instance-generation
          operator: Gt
          values: ["2"]
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: default
      expireAfter: 720h
  limits:
    cpu: 1000
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 1m
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: default
spec:
  amiFamily: AL2
  role: KarpenterNodeRole-blue
  subnetSelectorTerms:
    - tags:
        Name: eksctl-blue-cluster/SubnetPrivate*
  securityGroupSelectorTerms:
    - tags:
        aws:eks:cluster-name: blue
  tags:
    eksdemo.io/version: v0.16.0
  amiSelectorTerms:
    - id: ami-0d6c6ac554d62a745
    - id: ami-0eb2ae1eda347f8cf
"#;

/// Seed 000's `example-inflate --replicas 10 --spread` manifest, as printed.
const SEED_000_INFLATE: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: inflate
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: inflate
  namespace: inflate
spec:
  replicas: 10
  selector:
    matchLabels:
      app: inflate
  template:
    metadata:
      labels:
        app: inflate
    spec:
      terminationGracePeriodSeconds: 0
      securityContext:
        runAsUser: 1000
        runAsGroup: 3000
        fsGroup: 2000
      containers:
      - name: inflate
        image: public.ecr.aws/eks-distro/kubernetes/pause:3.7
        resources:
          requests:
            cpu: 1
        securityContext:
          allowPrivilegeEscalation: false
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: topology.kubernetes.io/zone
        whenUnsatisfiable: ScheduleAnyway
        labelSelector:
          matchLabels:
            app: inflate
"#;

/// Waits until exactly `n` pods of `app` run in `ns` and none is pending.
async fn all_running(world: &World, ns: &str, app: &str, n: usize) {
    eventually(90, &format!("{n} {app} pods Running"), async || {
        let phases = world.pod_phases(ns, app).await;
        (phases.get("Running") == Some(&n) && phases.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_inflate_spreads_over_three_zones_and_scales_to_twenty() {
    let world = World::start(WorldOptions::default()).await;
    let replica = Replica::start(&world, "solo", Leadership::Fixed);
    world.apply_yaml(SEED_000_NODEPOOL_AND_CLASS).await;
    // A pass before the pool is Ready rightly answers "no nodepools found", which would fail
    // the no-FailedScheduling check below.
    replica.nodepools_ready(&["default"]).await;
    world.apply_yaml(SEED_000_INFLATE).await;

    all_running(&world, "inflate", "inflate", 10).await;
    let claims = eventually(30, "every NodeClaim initialized", async || {
        let claims = world.nodeclaims().await;
        claims
            .iter()
            .all(|nc| {
                ["Launched", "Registered", "Initialized", "Ready"]
                    .iter()
                    .all(|c| condition_true(nc, c))
            })
            .then_some(claims)
    })
    .await;
    let zones: BTreeSet<String> = claims
        .iter()
        .map(|nc| label_of(&nc.metadata, labels::ZONE).unwrap())
        .collect();
    // The simulated us-west-2 has four zones (the seed's cluster had subnets in three).
    assert!(zones.len() >= 3, "zone spread: {zones:?}");
    let nodes: BTreeMap<String, _> = world
        .nodes()
        .await
        .into_iter()
        .map(|n| (n.metadata.name.clone().unwrap(), n))
        .collect();
    for nc in &claims {
        let status = nc.status.as_ref().unwrap();
        let node = &nodes[status.node_name.as_ref().unwrap()];
        assert_eq!(
            node.spec.as_ref().unwrap().provider_id,
            status.provider_id,
            "the Node is the NodeClaim's instance"
        );
        let node_labels = node.metadata.labels.clone().unwrap();
        assert_eq!(node_labels[labels::NODEPOOL], "default");
        for (k, v) in nc.metadata.labels.as_ref().unwrap() {
            assert_eq!(
                node_labels.get(k),
                Some(v),
                "Node lacks NodeClaim label {k}"
            );
        }
        let taints = node
            .spec
            .as_ref()
            .unwrap()
            .taints
            .clone()
            .unwrap_or_default();
        assert!(
            !taints.iter().any(|t| t.key == labels::TAINT_UNREGISTERED),
            "{taints:?}"
        );
        assert!(
            node.metadata
                .finalizers
                .as_ref()
                .unwrap()
                .contains(&labels::TERMINATION_FINALIZER.to_string())
        );
    }
    // Every pod went through Karpenter (nominated), none was left without a decision.
    for p in world.pods("inflate").await {
        let name = p.metadata.name.unwrap();
        assert!(
            world.events(&name, "FailedScheduling").await.is_empty(),
            "{name}"
        );
    }
    assert_eq!(world.cloud_mismatch().await, None);
    let before = claims.len();

    // Seed 001's next step: scale the deployment up.
    world.scale("inflate", "inflate", 20).await;
    all_running(&world, "inflate", "inflate", 20).await;
    let claims = eventually(30, "new NodeClaims initialized", async || {
        let claims = world.nodeclaims().await;
        claims
            .iter()
            .all(|nc| condition_true(nc, "Initialized"))
            .then_some(claims)
    })
    .await;
    assert!(claims.len() > before, "{} <= {before}", claims.len());
    eventually(20, "cloud and cluster agree", async || {
        world.cloud_mismatch().await.is_none().then_some(())
    })
    .await;
    // Nothing was deleted: every NodeClaim ever created is still here, and registered once.
    assert_eq!(
        replica.counter(
            "karpenter_nodeclaims_created_total",
            &[("nodepool", "default")]
        ),
        claims.len() as f64
    );
    assert_eq!(
        replica.counter("karpenter_nodes_created_total", &[("nodepool", "default")]),
        claims.len() as f64
    );
    // nodepool.counter sums the pool's Nodes into its status.
    let node_cpu: i64 = world
        .nodes()
        .await
        .iter()
        .map(|n| cpu_millis(&n.status.as_ref().unwrap().capacity.as_ref().unwrap()["cpu"].0))
        .sum();
    eventually(30, "NodePool status counts the nodes", async || {
        let np = Api::<NodePool>::all(world.client.clone())
            .get("default")
            .await
            .unwrap();
        let status = np.status?;
        (status.nodes == Some(claims.len() as i64)
            && cpu_millis(&status.resources.get("cpu")?.0) == node_cpu)
            .then_some(())
    })
    .await;
    replica.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_limit_caps_capacity_and_the_rest_stays_pending_naming_the_limit() {
    let world = World::start(WorldOptions::default()).await;
    let replica = Replica::start(&world, "solo", Leadership::Fixed);
    world.apply(nodeclass("default")).await;
    world
        .apply(nodepool("small", json!({"limits": {"cpu": "4"}})))
        .await;
    // FailedScheduling is deduped per pod for 5 minutes: a pass before the pool is Ready
    // would give every pod "no nodepools found" as its only event.
    replica.nodepools_ready(&["small"]).await;
    world
        .apply(deployment("default", "web", 8, "1", json!({})))
        .await;

    // Some pods run on what the limit allows; some can never be placed. Capacity is sampled
    // all along: it must never exceed the limit, not just at the end.
    let mut most_cpu = 0;
    let message = eventually(60, "a FailedScheduling naming the limit", async || {
        most_cpu = most_cpu.max(claimed_cpu_millis(&world.nodeclaims().await));
        let phases = world.pod_phases("default", "web").await;
        if phases.get("Running").copied().unwrap_or(0) == 0 {
            return None;
        }
        world
            .events_with_reason("FailedScheduling")
            .await
            .into_iter()
            .map(|(_, m)| m)
            .find(|m| m.contains("limit"))
    })
    .await;
    assert!(message.contains("nodepool \"small\""), "{message}");
    assert!(message.contains("exceed limits"), "{message}");
    assert!(message.contains("cpu"), "{message}");
    // An in-flight claim counts at its largest possible type until it launches, so a second
    // claim may follow once the first one's real size is known; wait until three passes in
    // a row create nothing.
    let mut baseline = (
        replica.counter("karpenter_nodeclaims_created_total", &[]),
        solves(&replica),
    );
    eventually(60, "three passes creating nothing", async || {
        most_cpu = most_cpu.max(claimed_cpu_millis(&world.nodeclaims().await));
        let created = replica.counter("karpenter_nodeclaims_created_total", &[]);
        if created != baseline.0 {
            baseline = (created, solves(&replica));
            return None;
        }
        (solves(&replica) >= baseline.1 + 3).then_some(())
    })
    .await;
    assert!(most_cpu <= 4000, "NodeClaims held {most_cpu}m CPU");
    assert!(!world.nodeclaims().await.is_empty());
    // Three passes can run within a second of the last NodeClaim's launch, so its Node may
    // still be coming up and its pods be nominated, neither Running nor refused. Judge the
    // pods once every NodeClaim is Initialized and the pods that fit have started.
    let (claims, fitting) = eventually(60, "the pods that fit Running", async || {
        let claims = world.nodeclaims().await;
        if !claims.iter().all(|nc| condition_true(nc, "Initialized")) {
            return None;
        }
        let fitting: i64 = claims
            .iter()
            .map(|nc| cpu_millis(&nc.status.as_ref().unwrap().allocatable["cpu"].0) / 1000)
            .sum();
        let running = world
            .pod_phases("default", "web")
            .await
            .get("Running")
            .copied()
            .unwrap_or(0);
        if running as i64 != fitting.min(8) {
            // Shown only if the wait times out.
            eprintln!("waiting: {running} pods Running, capacity for {fitting}");
            return None;
        }
        Some((claims, fitting))
    })
    .await;
    let node_capacity: i64 = world
        .nodes()
        .await
        .iter()
        .map(|n| cpu_millis(&n.status.as_ref().unwrap().capacity.as_ref().unwrap()["cpu"].0))
        .sum();
    assert!(node_capacity <= 4000, "Nodes hold {node_capacity}m CPU");
    assert!(claimed_cpu_millis(&claims) <= 4000);
    // The pods that fit the launched capacity run; every other one heard why.
    let mut running = 0;
    for p in world.pods("default").await {
        let name = p.metadata.name.clone().unwrap();
        if p.status.and_then(|s| s.phase).as_deref() == Some("Running") {
            running += 1;
            continue;
        }
        let events = world.events(&name, "FailedScheduling").await;
        assert!(
            events.iter().any(|m| m.contains("exceed limits")),
            "{name}: {events:?}"
        );
    }
    assert_eq!(running, fitting.min(8), "running pods fill the capacity");
    assert!(running < 8);
    replica.stop().await;
    world.stop().await;
}

/// How many provisioning solves ran.
fn solves(replica: &Replica) -> u64 {
    replica.histogram_count(
        "karpenter_scheduler_scheduling_duration_seconds",
        &[("controller", "provisioner")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_requirement_fails_scheduling_and_never_creates_a_nodeclaim() {
    let world = World::start(WorldOptions::default()).await;
    let replica = Replica::start(&world, "solo", Leadership::Fixed);
    world.apply(nodeclass("default")).await;
    world.apply(nodepool("general", json!({}))).await;
    // Before the pool is Ready the pod's first (and, deduped, only) event would say "no
    // nodepools found" instead of naming the requirement.
    replica.nodepools_ready(&["general"]).await;
    world
        .apply(pod(
            "nowhere",
            "1",
            json!({"nodeSelector": {"node.kubernetes.io/instance-type": "z9.nonexistent"}}),
        ))
        .await;
    let message = eventually(60, "FailedScheduling", async || {
        world
            .events("nowhere", "FailedScheduling")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(
        message.contains("node.kubernetes.io/instance-type"),
        "{message}"
    );
    let before = solves(&replica);
    eventually(60, "three more provisioning passes", async || {
        (solves(&replica) >= before + 3).then_some(())
    })
    .await;
    assert!(world.nodeclaims().await.is_empty());
    assert_eq!(world.create_calls(), 0);
    assert_eq!(
        replica.counter("karpenter_nodeclaims_created_total", &[]),
        0.0
    );
    replica.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_capacity_deletes_the_claim_and_the_next_batch_takes_another_offering() {
    let world = World::start(WorldOptions::default()).await;
    // Spot is what the launch would pick (cheapest capacity type); it has none.
    world.ec2.set_offering_capacity(
        OfferingKey::new("m5.large", "us-west-2a", labels::CAPACITY_TYPE_SPOT),
        Some(0),
    );
    let replica = Replica::start(&world, "solo", Leadership::Fixed);
    world.apply(nodeclass("default")).await;
    world
        .apply(nodepool(
            "general",
            json!({"template": {"spec": {
                "requirements": [
                    {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-west-2a"]},
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"]}
                ],
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}
            }}}),
        ))
        .await;
    world
        .apply(deployment("default", "web", 1, "1", json!({})))
        .await;
    all_running(&world, "default", "web", 1).await;

    let ice = eventually(10, "InsufficientCapacityError event", async || {
        world
            .events_with_reason("InsufficientCapacityError")
            .await
            .into_iter()
            .next()
    })
    .await;
    let claims = world.nodeclaims().await;
    assert_eq!(claims.len(), 1, "the ICE'd claim is gone");
    assert_ne!(claims[0].metadata.name.as_deref(), Some(ice.0.as_str()));
    let live = world.live_instances();
    assert_eq!(live.len(), 1);
    assert_eq!(
        (
            live[0].instance_type.as_str(),
            live[0].capacity_type.as_str()
        ),
        ("m5.large", labels::CAPACITY_TYPE_ON_DEMAND)
    );
    assert_eq!(
        replica.counter("karpenter_nodeclaims_created_total", &[]),
        2.0
    );
    assert_eq!(world.create_calls(), 2);
    assert_eq!(world.cloud_mismatch().await, None);
    replica.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_overhead_is_reserved_on_every_new_node() {
    let world = World::start(WorldOptions::default()).await;
    let replica = Replica::start(&world, "solo", Leadership::Fixed);
    world.apply(nodeclass("default")).await;
    world.apply(nodepool("general", json!({}))).await;
    world
        .apply(json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"tolerations": [{"operator": "Exists"}],
                                           "containers": [{"name": "c", "image": "agent",
                                                           "resources": {"requests": {"cpu": "500m"}}}]}}}}))
        .await;
    // 1500m + the daemon's 500m does not fit the cheapest (2-vCPU, 1930m allocatable) types.
    world
        .apply(deployment("default", "web", 2, "1500m", json!({})))
        .await;
    all_running(&world, "default", "web", 2).await;
    let nodes = world.nodes().await;
    eventually(30, "a daemon pod Running on every node", async || {
        (world.pod_phases("default", "agent").await.get("Running") == Some(&nodes.len()))
            .then_some(())
    })
    .await;
    assert_eq!(world.pod_phases("default", "agent").await.len(), 1);
    let claims = world.nodeclaims().await;
    assert_eq!(claims.len(), nodes.len());
    for nc in &claims {
        let allocatable = cpu_millis(&nc.status.as_ref().unwrap().allocatable["cpu"].0);
        assert!(
            allocatable >= 2000,
            "{allocatable}m cannot hold a pod and the daemon"
        );
    }
    replica.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_taints_hold_initialization_until_they_are_gone() {
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
                "startupTaints": [{"key": "example.com/agent-not-ready", "effect": "NoSchedule"}]
            }}}),
        ))
        .await;
    world
        .apply(deployment("default", "web", 2, "1", json!({})))
        .await;
    all_running(&world, "default", "web", 2).await;
    let claims = eventually(30, "NodeClaims initialized", async || {
        let claims = world.nodeclaims().await;
        claims
            .iter()
            .all(|nc| condition_true(nc, "Initialized"))
            .then_some(claims)
    })
    .await;
    for nc in &claims {
        assert_eq!(nc.spec.startup_taints.len(), 1);
    }
    for node in world.nodes().await {
        let taints = node.spec.unwrap().taints.unwrap_or_default();
        assert!(
            !taints
                .iter()
                .any(|t| t.key == "example.com/agent-not-ready"),
            "{taints:?}"
        );
    }
    assert_eq!(world.cloud_mismatch().await, None);
    replica.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavier_pool_at_its_limit_leaves_the_rest_to_a_lighter_one() {
    let world = World::start(WorldOptions::default()).await;
    let replica = Replica::start(&world, "solo", Leadership::Fixed);
    world.apply(nodeclass("default")).await;
    world
        .apply(nodepool(
            "preferred",
            json!({"weight": 100, "limits": {"cpu": "2"}}),
        ))
        .await;
    world
        .apply(nodepool("fallback", json!({"weight": 10})))
        .await;
    replica.nodepools_ready(&["preferred", "fallback"]).await;
    world
        .apply(deployment("default", "web", 4, "1", json!({})))
        .await;
    all_running(&world, "default", "web", 4).await;
    let claims = world.nodeclaims().await;
    let preferred: Vec<_> = claims
        .iter()
        .filter(|nc| env::nodepool_of(nc).as_deref() == Some("preferred"))
        .cloned()
        .collect();
    assert!(!preferred.is_empty(), "the heavier pool is used first");
    assert!(
        claimed_cpu_millis(&preferred) <= 2000,
        "{}m",
        claimed_cpu_millis(&preferred)
    );
    assert!(
        claims
            .iter()
            .any(|nc| env::nodepool_of(nc).as_deref() == Some("fallback"))
    );
    assert_eq!(world.cloud_mismatch().await, None);
    replica.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_ready_nodeclass_holds_provisioning_until_it_is_ready() {
    let world = World::start(WorldOptions::default()).await;
    let replica = Replica::start(&world, "solo", Leadership::Fixed);
    world.apply(nodeclass("default")).await;
    let classes = Api::<karpenter_apis::ec2nodeclass::EC2NodeClass>::all(world.client.clone());
    let set_ready = async |status: &str| {
        classes
            .patch_status(
                "default",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"status": {"conditions": [{
                    "type": "Ready", "status": status, "reason": if status == "True" { "Ready" } else { "AMINotFound" },
                    "message": if status == "True" { "" } else { "no AMI matched" },
                    "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}})),
            )
            .await
            .unwrap();
    };
    set_ready("False").await;
    world.apply(nodepool("general", json!({}))).await;
    eventually(30, "the NodePool mirrors the NodeClass", async || {
        let np = Api::<NodePool>::all(world.client.clone())
            .get("general")
            .await
            .unwrap();
        let c = np.status?.conditions;
        let nc_ready = karpenter_apis::conditions::get(&c, "NodeClassReady")?;
        (nc_ready.reason == "AMINotFound" && !karpenter_apis::conditions::is_true(&c, "Ready"))
            .then_some(())
    })
    .await;
    world
        .apply(deployment("default", "web", 1, "1", json!({})))
        .await;
    let before = solves(&replica);
    tokio::time::sleep(3 * env::settings().batch_max_duration).await;
    assert!(
        world.nodeclaims().await.is_empty(),
        "nothing launches from a not-ready class"
    );
    // Once the class is Ready the pool follows and the pending pod is provisioned.
    set_ready("True").await;
    all_running(&world, "default", "web", 1).await;
    assert_eq!(world.nodeclaims().await.len(), 1);
    assert!(solves(&replica) > before);
    replica.stop().await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_launch_is_retried_on_the_same_nodeclaim() {
    let world = World::start(WorldOptions::default()).await;
    world.ec2.next_error(
        karpenter_cloudprovider::Method::Create,
        karpenter_cloudprovider::CloudProviderError::Create {
            condition_reason: "LaunchTemplateNotFound".to_string(),
            condition_message: "the launch template vanished".to_string(),
        },
    );
    let replica = Replica::start(&world, "solo", Leadership::Fixed);
    world.apply(nodeclass("default")).await;
    world.apply(nodepool("general", json!({}))).await;
    world
        .apply(deployment("default", "web", 1, "1", json!({})))
        .await;
    all_running(&world, "default", "web", 1).await;
    let claims = world.nodeclaims().await;
    assert_eq!(claims.len(), 1, "retried, not replaced");
    assert!(condition_true(&claims[0], "Launched"));
    assert_eq!(world.create_calls(), 2);
    assert_eq!(
        replica.counter("karpenter_nodeclaims_created_total", &[]),
        1.0
    );
    assert_eq!(world.cloud_mismatch().await, None);
    replica.stop().await;
    world.stop().await;
}
