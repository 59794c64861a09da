//! The provisioner and the NodePool controllers against the embedded API server with the
//! simulated scheduler/kubelet and simulated EC2. The NodeClaim lifecycle controllers are not
//! run here, so created NodeClaims stay un-launched: these tests assert on the NodeClaims the
//! provisioner writes and the events it publishes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test fixtures: a failure should panic loudly

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event as CoreEvent, Node, Pod};
use karpenter_apis::conditions;
use karpenter_apis::ec2nodeclass::EC2NodeClass;
use karpenter_apis::hash::{NODEPOOL_HASH_VERSION_VALUE, nodepool_hash};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::NodePool;
use karpenter_cloudprovider::{CloudProvider, SystemClock};
use karpenter_controllers::context::{Context, ControllerSettings};
use karpenter_controllers::events::EventRecorder;
use karpenter_controllers::metrics::Metrics;
use karpenter_controllers::provisioning::Provisioner;
use karpenter_sim::cluster::ClusterConfig;
use karpenter_sim::ec2::{SimEc2Config, SimulatedEc2};
use karpenter_sim::{SimCluster, SimConfig};
use karpenter_state::{ClusterState, Informers, StateConfig};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

/// The embedded catalog, loaded once per test binary (slow in debug builds).
fn template_ec2() -> &'static SimulatedEc2 {
    static EC2: OnceLock<SimulatedEc2> = OnceLock::new();
    EC2.get_or_init(|| SimulatedEc2::new(SimEc2Config::default(), Arc::new(SystemClock)).unwrap())
}

struct Env {
    cluster: SimCluster,
    client: kube::Client,
    ec2: Arc<SimulatedEc2>,
    ctx: Arc<Context>,
    registry: prometheus::Registry,
    shutdown: watch::Sender<bool>,
    _leader: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _informers: Informers,
}

async fn start() -> Env {
    start_with(Duration::from_millis(100), Duration::from_millis(1000)).await
}

/// Without the lifecycle controllers a created NodeClaim never launches, so state stays
/// unsynced and no later batch runs: tests with several pods widen the window so they all
/// land in the first batch.
async fn start_with(batch_idle: Duration, batch_max: Duration) -> Env {
    let cluster = SimCluster::start(SimConfig {
        cluster: ClusterConfig::fast(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = cluster.client();
    karpenter_sim::install_karpenter_crds(&client)
        .await
        .unwrap();
    let clock: karpenter_cloudprovider::SharedClock = Arc::new(SystemClock);
    let state = Arc::new(ClusterState::new(clock.clone(), StateConfig::default()));
    let informers = Informers::start(client.clone(), state.clone());
    let ec2 = Arc::new(
        SimulatedEc2::from_catalog(
            SimEc2Config {
                launch_delay: Duration::from_millis(50),
                termination_delay: Duration::from_millis(50),
                ..SimEc2Config::default()
            },
            clock.clone(),
            template_ec2().catalog().clone(),
        )
        .unwrap()
        .with_node_registrar(client.clone(), Duration::from_millis(50)),
    );
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(Metrics::new(&registry).unwrap());
    let settings = ControllerSettings {
        batch_idle_duration: batch_idle,
        batch_max_duration: batch_max,
        ..ControllerSettings::default()
    };
    let (leader_tx, leader) = watch::channel(true);
    let ctx = Arc::new(Context::new(
        client.clone(),
        state,
        ec2.clone(),
        metrics,
        clock.clone(),
        EventRecorder::new(client.clone(), clock),
        settings,
        leader,
    ));
    let (shutdown, rx) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(Provisioner::run(ctx.clone(), rx.clone())),
        tokio::spawn(karpenter_controllers::nodepool::run(ctx.clone(), rx)),
    ];
    Env {
        cluster,
        client,
        ec2,
        ctx,
        registry,
        shutdown,
        _leader: leader_tx,
        tasks,
        _informers: informers,
    }
}

impl Env {
    async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        self.cluster.shutdown().await;
    }

    async fn apply(&self, api: &str, v: serde_json::Value) {
        match api {
            "nodepool" => {
                let np: NodePool = serde_json::from_value(v).unwrap();
                Api::<NodePool>::all(self.client.clone())
                    .create(&PostParams::default(), &np)
                    .await
                    .unwrap();
            }
            "nodeclass" => {
                let nc: EC2NodeClass = serde_json::from_value(v).unwrap();
                Api::<EC2NodeClass>::all(self.client.clone())
                    .create(&PostParams::default(), &nc)
                    .await
                    .unwrap();
            }
            "pod" => {
                let p: Pod = serde_json::from_value(v).unwrap();
                Api::<Pod>::namespaced(self.client.clone(), "default")
                    .create(&PostParams::default(), &p)
                    .await
                    .unwrap();
            }
            "node" => {
                let n: Node = serde_json::from_value(v.clone()).unwrap();
                let nodes = Api::<Node>::all(self.client.clone());
                nodes.create(&PostParams::default(), &n).await.unwrap();
                // Status is not taken on create; write it like a kubelet would.
                nodes
                    .patch_status(
                        n.metadata.name.as_deref().unwrap(),
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(json!({"status": v["status"]})),
                    )
                    .await
                    .unwrap();
            }
            "nodeclaim" => {
                let n: NodeClaim = serde_json::from_value(v).unwrap();
                Api::<NodeClaim>::all(self.client.clone())
                    .create(&PostParams::default(), &n)
                    .await
                    .unwrap();
            }
            other => panic!("unknown kind {other}"),
        }
    }

    async fn nodeclaims(&self) -> Vec<NodeClaim> {
        Api::<NodeClaim>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    async fn nodepool(&self, name: &str) -> NodePool {
        Api::<NodePool>::all(self.client.clone())
            .get(name)
            .await
            .unwrap()
    }

    /// Events with `reason` about the object named `name`.
    async fn events(&self, name: &str, reason: &str) -> Vec<String> {
        Api::<CoreEvent>::namespaced(self.client.clone(), "default")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                // The simulated kube-scheduler publishes FailedScheduling too.
                e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason)
                    && e.reporting_component.as_deref() == Some("karpenter")
            })
            .map(|e| e.message.unwrap_or_default())
            .collect()
    }

    /// Waits until cluster state, which the provisioner decides from, holds every named
    /// NodePool as usable (Ready, with a Ready NodeClass), so the next batch is solved against
    /// all of them. Seeing a pool Ready through the API server is not enough: cluster state
    /// follows the API through its own watch and can lag behind.
    async fn nodepools_ready(&self, names: &[&str]) {
        for name in names {
            eventually(&format!("NodePool {name} usable"), async || {
                let snapshot = self.ctx.state.snapshot();
                let pool = snapshot
                    .nodepools()
                    .into_iter()
                    .find(|np| np.metadata.name.as_deref() == Some(*name))?;
                karpenter_controllers::provisioning::plan::usable_in(&snapshot, &pool).ok()
            })
            .await;
        }
    }

    /// How many provisioning solves ran.
    fn solves(&self) -> u64 {
        let prefix =
            "karpenter_scheduler_scheduling_duration_seconds_count{controller=\"provisioner\"} ";
        self.metrics_text()
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn metrics_text(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap()
    }
}

/// Polls `check` until it returns `Some` or 60 s pass (a guard against hangs, not a timing
/// assertion).
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn nodeclass(name: &str) -> serde_json::Value {
    json!({"apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": {"name": name},
           "spec": {"role": "KarpenterNodeRole", "amiSelectorTerms": [{"alias": "al2023@latest"}],
                    "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": "c"}}],
                    "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": "c"}}]}})
}

fn nodepool(name: &str, spec: serde_json::Value) -> serde_json::Value {
    let mut template_spec = json!({
        "requirements": [
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}
        ],
        "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}
    });
    if let Some(extra) = spec.get("template") {
        for (k, v) in extra.as_object().unwrap() {
            template_spec[k] = v.clone();
        }
    }
    let mut np = json!({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name},
                        "spec": {"template": {"spec": template_spec}}});
    for (k, v) in spec.as_object().unwrap() {
        if k != "template" {
            np["spec"][k] = v.clone();
        }
    }
    np
}

fn pod(name: &str, cpu: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}]}});
    for (k, v) in extra.as_object().unwrap() {
        p["spec"][k] = v.clone();
    }
    p
}

fn label(nc: &NodeClaim, key: &str) -> Option<String> {
    nc.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key).cloned())
}

fn requirement<'a>(nc: &'a NodeClaim, key: &str) -> Option<&'a Vec<String>> {
    nc.spec
        .requirements
        .iter()
        .find(|r| r.key == key)
        .map(|r| &r.values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_pod_gets_exactly_one_nodeclaim_shaped_like_upstreams() {
    let env = start().await;
    env.apply("nodeclass", nodeclass("default")).await;
    env.apply(
        "nodepool",
        nodepool(
            "general",
            json!({"template": {"taints": [{"key": "example.com/team", "value": "a", "effect": "NoSchedule"}]}}),
        ),
    )
    .await;
    env.apply(
        "pod",
        pod(
            "web",
            "1",
            json!({"tolerations": [{"key": "example.com/team", "operator": "Exists"}]}),
        ),
    )
    .await;
    let nc = eventually("a nodeclaim", async || {
        env.nodeclaims().await.into_iter().next()
    })
    .await;
    let name = nc.metadata.name.clone().unwrap();
    assert!(name.starts_with("general-"), "{name}");
    assert_eq!(nc.metadata.generate_name.as_deref(), Some("general-"));
    let np = env.nodepool("general").await;
    let owner = &nc.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str(),
            owner.block_owner_deletion
        ),
        (
            "NodePool",
            "general",
            np.metadata.uid.as_deref().unwrap(),
            Some(true)
        )
    );
    assert_eq!(label(&nc, labels::NODEPOOL).as_deref(), Some("general"));
    assert_eq!(
        label(&nc, labels::AWS_EC2NODECLASS).as_deref(),
        Some("default")
    );
    let annotations = nc.metadata.annotations.clone().unwrap();
    assert_eq!(annotations[labels::NODEPOOL_HASH], nodepool_hash(&np));
    assert_eq!(
        annotations[labels::NODEPOOL_HASH_VERSION],
        NODEPOOL_HASH_VERSION_VALUE
    );
    assert_eq!(annotations[labels::NODECLAIM_MIN_VALUES_RELAXED], "false");
    assert_eq!(
        nc.metadata.finalizers.clone().unwrap(),
        vec![labels::TERMINATION_FINALIZER.to_string()]
    );
    let types = requirement(&nc, labels::INSTANCE_TYPE).unwrap();
    assert!(!types.is_empty() && types.len() <= 600, "{}", types.len());
    assert_eq!(
        requirement(&nc, labels::CAPACITY_TYPE).unwrap(),
        &vec!["on-demand".to_string()]
    );
    assert_eq!(
        requirement(&nc, labels::ARCH).unwrap(),
        &vec!["amd64".to_string()]
    );
    assert!(requirement(&nc, labels::HOSTNAME).is_none());
    assert_eq!(nc.spec.taints.len(), 1);
    assert_eq!(nc.spec.resources.requests["cpu"].0, "1");
    assert_eq!(nc.spec.node_class_ref.name, "default");
    // The pod hears where it will go.
    let nominated = eventually("Nominated event", async || {
        env.events("web", "Nominated").await.into_iter().next()
    })
    .await;
    assert_eq!(
        nominated,
        format!("Pod should schedule on: nodeclaim/{name}")
    );
    // Launch it as the lifecycle controller would (provider ID and capacity in status): state
    // syncs, periodic batches solve again, and the still-pending pod goes onto the in-flight
    // claim instead of a second one.
    Api::<NodeClaim>::all(env.client.clone())
        .patch_status(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {
                "providerID": "aws:///us-west-2a/i-0123456789abcdef0",
                "capacity": {"cpu": "2", "memory": "8Gi", "pods": "29"},
                "allocatable": {"cpu": "1930m", "memory": "7Gi", "pods": "29"}}})),
        )
        .await
        .unwrap();
    let solves = env.solves();
    eventually("two more solves while the claim is in flight", async || {
        (env.solves() >= solves + 2).then_some(())
    })
    .await;
    assert_eq!(env.nodeclaims().await.len(), 1);
    assert!(
        env.ctx
            .state
            .is_nominated("aws:///us-west-2a/i-0123456789abcdef0"),
        "the in-flight claim was nominated for the pending pod"
    );
    let text = env.metrics_text();
    assert!(
        text.contains(
            "karpenter_nodeclaims_created_total{min_values_relaxed=\"false\",nodepool=\"general\",reason=\"provisioned\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains(
        "karpenter_scheduler_scheduling_duration_seconds_count{controller=\"provisioner\"}"
    ));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_and_taints_choose_the_nodepool() {
    let env = start_with(Duration::from_secs(2), Duration::from_secs(10)).await;
    env.apply("nodeclass", nodeclass("default")).await;
    env.apply("nodepool", nodepool("light", json!({"weight": 10})))
        .await;
    env.apply("nodepool", nodepool("heavy", json!({"weight": 50})))
        .await;
    env.apply(
        "nodepool",
        nodepool(
            "gpu",
            json!({"weight": 100, "template": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]}}),
        ),
    )
    .await;
    // Wait for all three pools to be usable before any pod, so one batch sees them all.
    env.nodepools_ready(&["light", "heavy", "gpu"]).await;
    // Pods of one batch are solved largest first (upstream's queue order), and each tries
    // this batch's NodeClaims before a fresh one: `tolerant` asks for more, so it picks its
    // pool before `plain`'s NodeClaim exists. (With equal requests the order fell to creation
    // second and UID, and whenever `plain` came first `tolerant` rightly joined its in-flight
    // `heavy` NodeClaim, which the cost re-pack then split into two `heavy` ones.)
    env.apply("pod", pod("plain", "1", json!({}))).await;
    env.apply(
        "pod",
        pod(
            "tolerant",
            "1500m",
            json!({"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}),
        ),
    )
    .await;
    let claims = eventually("two nodeclaims", async || {
        let ncs = env.nodeclaims().await;
        (ncs.len() >= 2).then_some(ncs)
    })
    .await;
    let mut pools: Vec<String> = claims
        .iter()
        .map(|nc| label(nc, labels::NODEPOOL).unwrap())
        .collect();
    pools.sort();
    // The untolerated taint keeps `plain` off `gpu`; weight picks `heavy` over `light`.
    assert_eq!(pools, vec!["gpu".to_string(), "heavy".to_string()]);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_requirement_fails_scheduling_with_the_reason_and_creates_nothing() {
    let env = start().await;
    env.apply("nodeclass", nodeclass("default")).await;
    env.apply("nodepool", nodepool("general", json!({}))).await;
    // A pool whose own requirements leave no instance type is skipped with an event.
    let mut weird = nodepool("weird", json!({}));
    weird["spec"]["template"]["spec"]["requirements"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["z9.nonexistent"]}));
    env.apply("nodepool", weird).await;
    env.nodepools_ready(&["general", "weird"]).await;
    env.apply(
        "pod",
        pod(
            "arm",
            "1",
            json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}),
        ),
    )
    .await;
    let message = eventually("FailedScheduling", async || {
        env.events("arm", "FailedScheduling")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(
        message.starts_with("Failed to schedule pod, incompatible with nodepool \"general\""),
        "{message}"
    );
    assert!(message.contains("kubernetes.io/arch"), "{message}");
    assert!(!message.contains("weird"), "{message}");
    let skipped = eventually("NoCompatibleInstanceTypes", async || {
        env.events("weird", "NoCompatibleInstanceTypes")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(
        skipped,
        "NodePool requirements filtered out all compatible available instance types"
    );
    assert!(env.nodeclaims().await.is_empty());
    let text = env.metrics_text();
    assert!(
        text.contains("karpenter_scheduler_unschedulable_pods_count{controller=\"provisioner\"} 1"),
        "{text}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_limits_cap_what_is_launched_and_name_the_limit() {
    let env = start_with(Duration::from_secs(2), Duration::from_secs(10)).await;
    env.apply("nodeclass", nodeclass("default")).await;
    env.apply(
        "nodepool",
        nodepool("small", json!({"limits": {"cpu": "4"}})),
    )
    .await;
    // FailedScheduling is deduped per pod for 5 minutes: a batch solved before the pool is
    // Ready would leave "no nodepools found" as every pod's only event.
    env.nodepools_ready(&["small"]).await;
    for i in 0..3 {
        env.apply("pod", pod(&format!("p{i}"), "1500m", json!({})))
            .await;
    }
    let message = eventually("a FailedScheduling naming the limit", async || {
        for i in 0..3 {
            if let Some(m) = env
                .events(&format!("p{i}"), "FailedScheduling")
                .await
                .into_iter()
                .next()
            {
                return Some(m);
            }
        }
        None
    })
    .await;
    assert!(message.contains("exceed limits for nodepool"), "{message}");
    assert!(message.contains("cpu"), "{message}");
    // Failures are published before the creates run: wait for the claim that fits.
    eventually("a NodeClaim within the limit", async || {
        (!env.nodeclaims().await.is_empty()).then_some(())
    })
    .await;
    // Whatever was created can never exceed 4 CPUs in total, whichever type EC2 picks.
    let types = env
        .ec2
        .get_instance_types(&env.nodepool("small").await)
        .await
        .unwrap();
    let vcpus: BTreeMap<String, i64> = types
        .iter()
        .map(|t| (t.name.clone(), t.capacity.cpu))
        .collect();
    let worst: i64 = env
        .nodeclaims()
        .await
        .iter()
        .map(|nc| {
            requirement(nc, labels::INSTANCE_TYPE)
                .unwrap()
                .iter()
                .map(|t| vcpus[t])
                .max()
                .unwrap()
        })
        .sum();
    assert!(worst <= 4000, "could launch {worst}m CPU");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodepool_status_conditions_counts_and_hash() {
    let env = start().await;
    env.apply("nodeclass", nodeclass("default")).await;
    env.apply("nodepool", nodepool("general", json!({}))).await;
    let mut orphan = nodepool("orphan", json!({}));
    orphan["spec"]["template"]["spec"]["nodeClassRef"]["name"] = json!("missing");
    env.apply("nodepool", orphan).await;

    let np = eventually("general ready with counts and hash", async || {
        let np = env.nodepool("general").await;
        let status = np.status.clone()?;
        (conditions::is_true(&status.conditions, conditions::READY)
            && !status.resources.is_empty()
            && np
                .metadata
                .annotations
                .as_ref()?
                .contains_key(labels::NODEPOOL_HASH))
        .then_some(np)
    })
    .await;
    let status = np.status.clone().unwrap();
    for t in ["ValidationSucceeded", "NodeClassReady"] {
        assert!(conditions::is_true(&status.conditions, t), "{t}");
    }
    let resources: BTreeMap<&str, &str> = status
        .resources
        .iter()
        .map(|(k, v)| (k.as_str(), v.0.as_str()))
        .collect();
    assert_eq!(
        resources,
        BTreeMap::from([
            ("cpu", "0"),
            ("ephemeral-storage", "0"),
            ("memory", "0"),
            ("nodes", "0"),
            ("pods", "0")
        ])
    );
    let annotations = np.metadata.annotations.clone().unwrap();
    assert_eq!(annotations[labels::NODEPOOL_HASH], nodepool_hash(&np));
    assert_eq!(
        annotations[labels::NODEPOOL_HASH_VERSION],
        NODEPOOL_HASH_VERSION_VALUE
    );

    let orphan = eventually("orphan not ready", async || {
        let np = env.nodepool("orphan").await;
        let c = np.status?.conditions;
        let nc = conditions::get(&c, "NodeClassReady")?.clone();
        (nc.status == karpenter_apis::common::ConditionStatus::False).then_some(c)
    })
    .await;
    assert_eq!(
        conditions::get(&orphan, "NodeClassReady").unwrap().reason,
        "NodeClassNotFound"
    );
    assert_eq!(
        conditions::get(&orphan, "Ready").unwrap().status,
        karpenter_apis::common::ConditionStatus::False
    );

    // A node of the pool counts.
    env.apply(
        "node",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"karpenter.sh/nodepool": "general"}},
               "status": {"capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"}, "allocatable": {"cpu": "3900m", "memory": "15Gi", "pods": "110"}}}),
    )
    .await;
    eventually("counted", async || {
        let s = env.nodepool("general").await.status?;
        (s.nodes == Some(1) && s.resources.get("cpu")?.0 == "4").then_some(())
    })
    .await;
    let _ = &env.ctx;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_version_change_restamps_the_pools_nodeclaims() {
    let env = start().await;
    env.apply("nodeclass", nodeclass("default")).await;
    // As upstream left it: its own hash at version v3, on the pool and its NodeClaim.
    let mut np = nodepool("general", json!({}));
    np["metadata"]["annotations"] =
        json!({"karpenter.sh/nodepool-hash": "123", "karpenter.sh/nodepool-hash-version": "v3"});
    // No pending pods and a claim without a provider ID: the provisioner stays idle.
    env.apply(
        "nodeclaim",
        json!({"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
               "metadata": {"name": "general-abc", "labels": {"karpenter.sh/nodepool": "general"},
                            "annotations": {"karpenter.sh/nodepool-hash": "123", "karpenter.sh/nodepool-hash-version": "v3"}},
               "spec": {"requirements": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}],
                        "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}}}),
    )
    .await;
    env.apply("nodepool", np).await;
    let restamped = eventually("nodeclaim re-stamped", async || {
        let nc = Api::<NodeClaim>::all(env.client.clone())
            .get("general-abc")
            .await
            .ok()?;
        let a = nc.metadata.annotations?;
        (a.get(labels::NODEPOOL_HASH_VERSION)? == NODEPOOL_HASH_VERSION_VALUE).then_some(a)
    })
    .await;
    let pool = eventually("pool re-stamped", async || {
        let p = env.nodepool("general").await;
        let v = p
            .metadata
            .annotations
            .as_ref()?
            .get(labels::NODEPOOL_HASH_VERSION)?
            .clone();
        (v == NODEPOOL_HASH_VERSION_VALUE).then_some(p)
    })
    .await;
    assert_eq!(restamped[labels::NODEPOOL_HASH], nodepool_hash(&pool));
    assert_eq!(
        pool.metadata.annotations.as_ref().unwrap()[labels::NODEPOOL_HASH],
        nodepool_hash(&pool)
    );
    env.stop().await;
}

/// `nodepool.readiness` is woken by its own NodeClass watch, while cluster state follows the
/// NodeClass through another watch that can lag behind. Here cluster state still holds the
/// NotReady class when the reconcile runs: the pool must follow the class as the API server
/// has it. (Deciding from the lagging copy wrote nothing, and nothing woke the pool again:
/// it stayed NotReady and its pending pods were never provisioned.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_nodeclass_even_when_cluster_state_lags() {
    let server = karpenter_sim::apiserver::ApiServer::start(Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    karpenter_sim::install_karpenter_crds(&client)
        .await
        .unwrap();
    let classes = Api::<EC2NodeClass>::all(client.clone());
    let pools = Api::<NodePool>::all(client.clone());
    let set_class_ready = async |status: &str| {
        classes
            .patch_status(
                "default",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"status": {"conditions": [{
                    "type": "Ready", "status": status,
                    "reason": if status == "True" { "Ready" } else { "AMINotFound" },
                    "message": if status == "True" { "" } else { "no AMI matched" },
                    "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}})),
            )
            .await
            .unwrap()
    };
    classes
        .create(
            &PostParams::default(),
            &serde_json::from_value(nodeclass("default")).unwrap(),
        )
        .await
        .unwrap();
    let not_ready = set_class_ready("False").await;
    let pool = pools
        .create(
            &PostParams::default(),
            &serde_json::from_value(nodepool("general", json!({}))).unwrap(),
        )
        .await
        .unwrap();

    // Cluster state as a lagging watch leaves it: everything listed, the class NotReady.
    let clock: karpenter_cloudprovider::SharedClock = Arc::new(SystemClock);
    let state = Arc::new(ClusterState::new(clock.clone(), StateConfig::default()));
    state.apply(&not_ready);
    state.apply(&pool);
    for kind in karpenter_state::Kind::ALL {
        state.mark_listed(kind);
    }
    let cloud = SimulatedEc2::from_catalog(
        SimEc2Config::default(),
        clock.clone(),
        template_ec2().catalog().clone(),
    )
    .unwrap();
    let (_leader, leading) = watch::channel(true);
    let ctx = Arc::new(Context::new(
        client.clone(),
        state,
        Arc::new(cloud),
        Arc::new(Metrics::new(&prometheus::Registry::new()).unwrap()),
        clock.clone(),
        EventRecorder::in_memory(clock),
        ControllerSettings::default(),
        leading,
    ));
    let reconcile = async || {
        let pool = Arc::new(pools.get("general").await.unwrap());
        karpenter_controllers::nodepool::readiness::reconcile(pool, ctx.clone())
            .await
            .unwrap();
        pools
            .get("general")
            .await
            .unwrap()
            .status
            .unwrap()
            .conditions
    };

    let conds = reconcile().await;
    assert_eq!(
        conditions::get(&conds, "NodeClassReady").unwrap().reason,
        "AMINotFound"
    );
    assert!(!conditions::is_true(&conds, conditions::READY));
    // The class becomes Ready; cluster state has not seen it yet.
    set_class_ready("True").await;
    let conds = reconcile().await;
    assert!(conditions::is_true(&conds, "NodeClassReady"), "{conds:?}");
    assert!(conditions::is_true(&conds, conditions::READY), "{conds:?}");
    server.shutdown().await;
}
