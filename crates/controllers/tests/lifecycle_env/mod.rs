//! Shared fixture of the lifecycle and termination tests: the embedded API server with the
//! simulated scheduler/kubelet/workload controllers, simulated EC2 registering Nodes, cluster
//! state, and the NodeClaim lifecycle + node termination controllers with short timings.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event as CoreEvent, Node};
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_cloudprovider::{SharedClock, SystemClock};
use karpenter_controllers::context::{Context, ControllerSettings};
use karpenter_controllers::events::EventRecorder;
use karpenter_controllers::metrics::Metrics;
use karpenter_controllers::nodeclaim::LifecycleConfig;
use karpenter_controllers::termination::TerminationConfig;
use karpenter_sim::cluster::ClusterConfig;
use karpenter_sim::ec2::{SimEc2Config, SimulatedEc2};
use karpenter_sim::{SimCluster, SimConfig};
use karpenter_state::{ClusterState, Informers, StateConfig};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

/// The embedded catalog, loaded once per test binary (slow in debug builds).
pub fn template_ec2() -> &'static SimulatedEc2 {
    static EC2: OnceLock<SimulatedEc2> = OnceLock::new();
    EC2.get_or_init(|| SimulatedEc2::new(SimEc2Config::default(), Arc::new(SystemClock)).unwrap())
}

/// Options of one environment.
pub struct Options {
    /// Clock of the controllers and the simulated EC2.
    pub clock: SharedClock,
    /// Whether instances register Nodes.
    pub register_nodes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(SystemClock),
            register_nodes: true,
        }
    }
}

/// One test's cluster.
pub struct Env {
    pub cluster: SimCluster,
    pub client: kube::Client,
    pub ec2: Arc<SimulatedEc2>,
    pub ctx: Arc<Context>,
    pub registry: prometheus::Registry,
    shutdown: Option<watch::Sender<bool>>,
    _leader: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _informers: Informers,
}

/// Short timings for tests.
pub fn lifecycle_config() -> LifecycleConfig {
    LifecycleConfig {
        poll: Duration::from_millis(100),
        instance_termination_poll: Duration::from_millis(100),
        gc_interval: Duration::from_millis(200),
        leaked_instance_min_age: Duration::ZERO,
        ..LifecycleConfig::default()
    }
}

/// Short timings for tests.
pub fn termination_config() -> TerminationConfig {
    TerminationConfig {
        min_drain_time: Duration::from_millis(100),
        drain_poll: Duration::from_millis(100),
        instance_termination_poll: Duration::from_millis(100),
        ..TerminationConfig::default()
    }
}

pub async fn start(options: Options) -> Env {
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
    let clock = options.clock;
    let state = Arc::new(ClusterState::new(clock.clone(), StateConfig::default()));
    let informers = Informers::start(client.clone(), state.clone());
    let mut ec2 = SimulatedEc2::from_catalog(
        SimEc2Config {
            launch_delay: Duration::from_millis(50),
            termination_delay: Duration::from_millis(50),
            ..SimEc2Config::default()
        },
        clock.clone(),
        template_ec2().catalog().clone(),
    )
    .unwrap();
    if options.register_nodes {
        ec2 = ec2.with_node_registrar(client.clone(), Duration::from_millis(50));
    }
    let ec2 = Arc::new(ec2);
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(Metrics::new(&registry).unwrap());
    let (leader_tx, leader) = watch::channel(true);
    let ctx = Arc::new(Context::new(
        client.clone(),
        state,
        ec2.clone(),
        metrics,
        clock.clone(),
        EventRecorder::new(client.clone(), clock),
        ControllerSettings::default(),
        leader,
    ));
    Env {
        cluster,
        client,
        ec2,
        ctx,
        registry,
        shutdown: None,
        _leader: leader_tx,
        tasks: Vec::new(),
        _informers: informers,
    }
}

impl Env {
    /// Starts the lifecycle, garbage collection and termination controllers.
    pub fn run_controllers(&mut self) {
        let (tx, rx) = watch::channel(false);
        self.tasks
            .push(tokio::spawn(karpenter_controllers::nodeclaim::run(
                self.ctx.clone(),
                lifecycle_config(),
                rx.clone(),
            )));
        let mut config = kube::Config::new(self.cluster.apiserver().url().parse().unwrap());
        config.default_retry = false;
        let eviction_client = kube::Client::try_from(config).unwrap();
        self.tasks
            .push(tokio::spawn(karpenter_controllers::termination::run(
                self.ctx.clone(),
                termination_config(),
                eviction_client,
                rx,
            )));
        self.shutdown = Some(tx);
    }

    /// Stops the controllers (as a process exit would) and waits for them.
    pub async fn stop_controllers(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }

    pub async fn stop(mut self) {
        self.stop_controllers().await;
        self.cluster.shutdown().await;
    }

    pub async fn create_nodeclaim(&self, v: serde_json::Value) -> NodeClaim {
        let nc: NodeClaim = serde_json::from_value(v).unwrap();
        Api::<NodeClaim>::all(self.client.clone())
            .create(&PostParams::default(), &nc)
            .await
            .unwrap()
    }

    pub async fn nodeclaim(&self, name: &str) -> Option<NodeClaim> {
        Api::<NodeClaim>::all(self.client.clone())
            .get_opt(name)
            .await
            .unwrap()
    }

    pub async fn node(&self, name: &str) -> Option<Node> {
        Api::<Node>::all(self.client.clone())
            .get_opt(name)
            .await
            .unwrap()
    }

    pub async fn nodes(&self) -> Vec<Node> {
        Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    /// Messages of events with `reason` about objects named `name`, in every namespace.
    pub async fn events(&self, name: &str, reason: &str) -> Vec<String> {
        Api::<CoreEvent>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason)
            })
            .filter_map(|e| e.message)
            .collect()
    }

    /// A counter's value for the given label values (0 if the series does not exist).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|m| m.get_counter().get_value())
            .sum()
    }

    /// Instances not terminated (pending, running or shutting down).
    pub fn live_instances(&self) -> Vec<karpenter_sim::ec2::SimInstance> {
        self.ec2
            .instances()
            .into_iter()
            .filter(|i| i.state.is_live())
            .collect()
    }

    /// How many create calls the simulated EC2 received.
    pub fn create_calls(&self) -> usize {
        self.ec2
            .calls()
            .iter()
            .filter(|c| matches!(c, karpenter_sim::ec2::RecordedCall::Create(_)))
            .count()
    }
}

impl Env {
    /// Waits up to `secs` seconds for the NodeClaim `name` to be gone from the API (`what`
    /// says why it should go, for the failure message).
    pub async fn until_nodeclaim_gone(&self, secs: u64, what: &str, name: &str) {
        eventually(secs, what, || async {
            self.nodeclaim(name).await.is_none().then_some(())
        })
        .await;
    }
}

/// Polls `check` every 50 ms until it returns `Some`, failing after `secs` seconds with `what`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A hand-made NodeClaim (as the provisioner would write it) for one m5.large on-demand in
/// us-west-2a, with a user label and optional terminationGracePeriod.
pub fn nodeclaim(name: &str, tgp: Option<&str>) -> serde_json::Value {
    let mut v = json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "labels": {"karpenter.sh/nodepool": "default", "team": "payments"},
        },
        "spec": {
            "requirements": [
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-west-2a"]},
            ],
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
            "resources": {"requests": {"cpu": "1"}},
        },
    });
    if let Some(t) = tgp {
        v["spec"]["terminationGracePeriod"] = json!(t);
    }
    v
}

/// Whether a condition of the NodeClaim is True.
pub fn condition_true(nc: &NodeClaim, type_: &str) -> bool {
    karpenter_apis::conditions::is_true(
        nc.status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default(),
        type_,
    )
}
