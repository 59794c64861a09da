//! End-to-end fixture: ONE simulated cluster (embedded API server, simulated scheduler,
//! kubelet and workload controllers) and ONE simulated EC2 — the "world" — plus any number of
//! restartable controller replicas, each running the real `operator::run` exactly as the
//! binary does.
//!
//! A replica lives on its own tokio runtime with its own client, cluster state, informers,
//! metrics registry and event recorder. [`Replica::kill`] shuts that runtime down in the
//! background: every task of the replica (informers, controllers, in-flight reconciles and
//! API calls) stops at its next poll with no cleanup, as SIGKILL would. The cloud and the
//! cluster live on the test's runtime, so instances keep booting, registering and
//! terminating while no controller runs. Cloud calls of a replica are executed on the
//! world's runtime (see [`CloudOnWorld`]) so that an instance's own background tasks belong
//! to the cloud, not to the process that asked for it.

// Each test binary uses a different part of the fixture.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use karpenter_apis::ec2nodeclass::EC2NodeClass;
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::NodePool;
use karpenter_cloudprovider::{
    CloudProvider, CloudProviderError, DriftReason, InstanceType, NodeClassKind, RepairPolicy,
    SharedClock, SystemClock,
};
use karpenter_controllers::context::{Context, ControllerSettings};
use karpenter_controllers::events::EventRecorder;
use karpenter_controllers::leader::{ElectionConfig, LeaderElection, LeaderElector};
use karpenter_controllers::metrics::Metrics;
use karpenter_controllers::nodeclaim::LifecycleConfig;
use karpenter_controllers::operator::{self, OperatorConfig, Stopped};
use karpenter_controllers::termination::TerminationConfig;
use karpenter_sim::cluster::ClusterConfig;
use karpenter_sim::ec2::{SimEc2Config, SimInstance, SimulatedEc2};
use karpenter_sim::{SimCluster, SimConfig};
use karpenter_state::{ClusterState, Informers, StateConfig};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

/// The Lease replicas compete for.
pub const LEASE_NAME: &str = "karpenter-leader-election";
/// Its namespace.
pub const LEASE_NAMESPACE: &str = "kube-system";

/// The embedded catalog, loaded once per test binary (slow in debug builds).
pub fn template_ec2() -> &'static SimulatedEc2 {
    static EC2: OnceLock<SimulatedEc2> = OnceLock::new();
    EC2.get_or_init(|| SimulatedEc2::new(SimEc2Config::default(), Arc::new(SystemClock)).unwrap())
}

/// How the world's cloud behaves.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    /// From launch until the instance runs.
    pub launch_delay: Duration,
    /// From running until its Node registers.
    pub boot_delay: Duration,
    /// From shutting-down until terminated.
    pub termination_delay: Duration,
    /// Whether running instances register Nodes (false: a broken AMI/bootstrap).
    pub register_nodes: bool,
}

impl Default for WorldOptions {
    fn default() -> Self {
        WorldOptions {
            launch_delay: Duration::from_millis(100),
            boot_delay: Duration::from_millis(100),
            termination_delay: Duration::from_millis(100),
            register_nodes: true,
        }
    }
}

/// The cluster and the cloud, shared by every replica and surviving their crashes.
pub struct World {
    /// The embedded cluster.
    pub cluster: SimCluster,
    /// A client of the test (not of any replica).
    pub client: kube::Client,
    /// The one simulated EC2.
    pub ec2: Arc<SimulatedEc2>,
    /// Gate on replicas' create calls (see [`World::hold_creates`]).
    create_gate: watch::Sender<bool>,
    /// Gate on the answers of replicas' create calls (see [`World::hold_create_answers`]).
    answer_gate: watch::Sender<bool>,
    /// Replicas' create calls waiting at [`World::hold_creates`]'s gate now.
    creates_waiting: Arc<AtomicUsize>,
    /// The test's runtime, where the cluster and the cloud run.
    runtime: tokio::runtime::Handle,
}

impl World {
    /// Starts the cluster (fast simulated components), installs the CRDs and builds the cloud.
    pub async fn start(options: WorldOptions) -> World {
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
        let mut ec2 = SimulatedEc2::from_catalog(
            SimEc2Config {
                launch_delay: options.launch_delay,
                termination_delay: options.termination_delay,
                ..SimEc2Config::default()
            },
            Arc::new(SystemClock),
            template_ec2().catalog().clone(),
        )
        .unwrap();
        if options.register_nodes {
            ec2 = ec2.with_node_registrar(client.clone(), options.boot_delay);
        }
        let (create_gate, _) = watch::channel(false);
        let (answer_gate, _) = watch::channel(false);
        World {
            cluster,
            client,
            ec2: Arc::new(ec2),
            create_gate,
            answer_gate,
            creates_waiting: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Stops the cluster.
    pub async fn stop(self) {
        self.cluster.shutdown().await;
    }

    /// While `true`, replicas' `create` calls wait before reaching the cloud (a slow EC2 API
    /// call that a crash cancels before it was sent).
    pub fn hold_creates(&self, hold: bool) {
        self.create_gate.send_replace(hold);
    }

    /// How many replicas' `create` calls wait at the [`World::hold_creates`] gate now (calls
    /// of a killed replica stop waiting when its runtime goes).
    pub fn creates_waiting(&self) -> usize {
        self.creates_waiting.load(Ordering::SeqCst)
    }

    /// While `true`, replicas' `create` calls launch the instance but their answer waits on the
    /// replica's side (a crash after EC2 acted, before the process recorded the result).
    pub fn hold_create_answers(&self, hold: bool) {
        self.answer_gate.send_replace(hold);
    }

    /// Creates every object of a (multi-document) YAML manifest, as `kubectl create -f`.
    pub async fn apply_yaml(&self, yaml: &str) {
        for doc in yaml.split("\n---") {
            let v: serde_json::Value = serde_yaml_ng::from_str(doc).unwrap();
            if !v.is_null() {
                self.apply(v).await;
            }
        }
    }

    /// Creates one object given as JSON (kinds the tests use).
    pub async fn apply(&self, v: serde_json::Value) {
        let kind = v["kind"].as_str().unwrap().to_string();
        let ns = v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let pp = PostParams::default();
        let c = self.client.clone();
        match kind.as_str() {
            "NodePool" => drop(
                Api::<NodePool>::all(c)
                    .create(&pp, &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap(),
            ),
            "EC2NodeClass" => drop(
                Api::<EC2NodeClass>::all(c)
                    .create(&pp, &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap(),
            ),
            "NodeClaim" => drop(
                Api::<NodeClaim>::all(c)
                    .create(&pp, &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap(),
            ),
            "Namespace" => drop(
                Api::<Namespace>::all(c)
                    .create(&pp, &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap(),
            ),
            "Deployment" => drop(
                Api::<Deployment>::namespaced(c, &ns)
                    .create(&pp, &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap(),
            ),
            "Pod" => drop(
                Api::<Pod>::namespaced(c, &ns)
                    .create(&pp, &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap(),
            ),
            "DaemonSet" => drop(
                Api::<k8s_openapi::api::apps::v1::DaemonSet>::namespaced(c, &ns)
                    .create(&pp, &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap(),
            ),
            "PersistentVolume" => drop(
                Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(c)
                    .create(&pp, &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap(),
            ),
            "PersistentVolumeClaim" => drop(
                Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(c, &ns)
                    .create(&pp, &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap(),
            ),
            "PodDisruptionBudget" => drop(
                Api::<PodDisruptionBudget>::namespaced(c, &ns)
                    .create(&pp, &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap(),
            ),
            other => panic!("the e2e fixture does not create {other}"),
        }
    }

    /// `kubectl scale deployment <name> --replicas <n>`.
    pub async fn scale(&self, ns: &str, name: &str, replicas: i32) {
        Api::<Deployment>::namespaced(self.client.clone(), ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
            .unwrap();
    }

    /// Every NodeClaim.
    pub async fn nodeclaims(&self) -> Vec<NodeClaim> {
        Api::<NodeClaim>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    /// One NodeClaim.
    pub async fn nodeclaim(&self, name: &str) -> Option<NodeClaim> {
        Api::<NodeClaim>::all(self.client.clone())
            .get_opt(name)
            .await
            .unwrap()
    }

    /// Every Node.
    pub async fn nodes(&self) -> Vec<Node> {
        Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    /// One Node.
    pub async fn node(&self, name: &str) -> Option<Node> {
        Api::<Node>::all(self.client.clone())
            .get_opt(name)
            .await
            .unwrap()
    }

    /// Pods of a namespace.
    pub async fn pods(&self, ns: &str) -> Vec<Pod> {
        Api::<Pod>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    /// Pods of a namespace whose `app` label is `app`, by phase (`"Unbound"` for pods without
    /// a node and no phase).
    pub async fn pod_phases(&self, ns: &str, app: &str) -> BTreeMap<String, usize> {
        let mut phases = BTreeMap::new();
        for p in self.pods(ns).await {
            if p.metadata.deletion_timestamp.is_some()
                || p.metadata.labels.as_ref().and_then(|l| l.get("app")) != Some(&app.to_string())
            {
                continue;
            }
            let phase = p
                .status
                .and_then(|s| s.phase)
                .unwrap_or_else(|| "Pending".to_string());
            *phases.entry(phase).or_default() += 1;
        }
        phases
    }

    /// Messages of Karpenter's events with `reason` about the object named `name`, in every
    /// namespace (the simulated kube-scheduler publishes FailedScheduling too; those are
    /// left out).
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
                    && e.reporting_component.as_deref() == Some("karpenter")
            })
            .filter_map(|e| e.message)
            .collect()
    }

    /// Every Karpenter event with `reason`, as (object name, message).
    pub async fn events_with_reason(&self, reason: &str) -> Vec<(String, String)> {
        Api::<CoreEvent>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.reporting_component.as_deref() == Some("karpenter")
            })
            .map(|e| {
                (
                    e.involved_object.name.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Instances not terminated (pending, running or shutting down).
    pub fn live_instances(&self) -> Vec<SimInstance> {
        self.ec2
            .instances()
            .into_iter()
            .filter(|i| i.state.is_live())
            .collect()
    }

    /// How many create calls reached the cloud.
    pub fn create_calls(&self) -> usize {
        self.ec2
            .calls()
            .iter()
            .filter(|c| matches!(c, karpenter_sim::ec2::RecordedCall::Create(_)))
            .count()
    }

    /// `None` once the cloud and the API agree: every live instance belongs to exactly one
    /// NodeClaim (by provider ID) and every NodeClaim with a provider ID has a live instance;
    /// otherwise a description of the mismatch.
    pub async fn cloud_mismatch(&self) -> Option<String> {
        let claims = self.nodeclaims().await;
        let mut by_provider: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut unlaunched = Vec::new();
        for nc in &claims {
            let name = nc.metadata.name.clone().unwrap_or_default();
            match nc.status.as_ref().and_then(|s| s.provider_id.clone()) {
                Some(p) if !p.is_empty() => by_provider.entry(p).or_default().push(name),
                _ => unlaunched.push(name),
            }
        }
        let live: BTreeSet<String> = self
            .live_instances()
            .into_iter()
            .map(|i| i.provider_id)
            .collect();
        let mut problems = Vec::new();
        if !unlaunched.is_empty() {
            problems.push(format!("NodeClaims without instance: {unlaunched:?}"));
        }
        for (p, names) in &by_provider {
            if names.len() > 1 {
                problems.push(format!("{p} claimed by {names:?}"));
            }
            if !live.contains(p) {
                problems.push(format!("{names:?} point at {p}, which is not live"));
            }
        }
        for p in &live {
            if !by_provider.contains_key(p) {
                problems.push(format!("instance {p} has no NodeClaim (leaked)"));
            }
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }
}

/// How a replica learns whether it leads.
#[derive(Debug, Clone)]
pub enum Leadership {
    /// Always the leader (a single replica).
    Fixed,
    /// A real election on the Lease with these timings.
    Lease {
        /// This replica's identity (the Lease holder when it leads).
        identity: String,
        /// How long a lease is valid without renewal.
        lease_duration: Duration,
        /// How long the leader keeps trying to renew before giving up.
        renew_deadline: Duration,
        /// Retry period of acquire/renew.
        retry_period: Duration,
    },
}

impl Leadership {
    /// A short-lease election as `identity`.
    pub fn lease(identity: &str, lease_duration: Duration) -> Leadership {
        Leadership::Lease {
            identity: identity.to_string(),
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: Duration::from_millis(100),
        }
    }
}

/// Short controller timings for tests (the same as the lifecycle/termination fixtures).
pub fn operator_config() -> OperatorConfig {
    OperatorConfig {
        lifecycle: LifecycleConfig {
            poll: Duration::from_millis(100),
            instance_termination_poll: Duration::from_millis(100),
            gc_interval: Duration::from_millis(500),
            leaked_instance_min_age: Duration::ZERO,
            ..LifecycleConfig::default()
        },
        termination: TerminationConfig {
            min_drain_time: Duration::from_millis(100),
            drain_poll: Duration::from_millis(100),
            instance_termination_poll: Duration::from_millis(100),
            ..TerminationConfig::default()
        },
        ..OperatorConfig::default()
    }
}

/// Short batching windows for tests.
pub fn settings() -> ControllerSettings {
    ControllerSettings {
        batch_idle_duration: Duration::from_millis(300),
        batch_max_duration: Duration::from_secs(2),
        ..ControllerSettings::default()
    }
}

/// The simulated EC2 as a replica's cloud provider: each call runs as a task on the world's
/// runtime (where the instance's launch/boot/termination tasks must live). `create` waits at
/// the world's gates on the replica's own runtime: before the call (a crash while held
/// cancels a call that never reached the cloud) and after it (a crash while held loses the
/// answer of a launch that happened).
pub struct CloudOnWorld {
    ec2: Arc<SimulatedEc2>,
    world: tokio::runtime::Handle,
    gate: watch::Receiver<bool>,
    answer_gate: watch::Receiver<bool>,
    creates_waiting: Arc<AtomicUsize>,
}

/// Counts one waiting call for as long as it lives (a cancelled call stops counting).
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(count: &Arc<AtomicUsize>) -> Waiting {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl CloudOnWorld {
    async fn call<T, F>(&self, f: F) -> karpenter_cloudprovider::Result<T>
    where
        T: Send + 'static,
        F: Future<Output = karpenter_cloudprovider::Result<T>> + Send + 'static,
    {
        self.world
            .spawn(f)
            .await
            .unwrap_or_else(|e| Err(CloudProviderError::other(format!("cloud call task: {e}"))))
    }
}

#[async_trait]
impl CloudProvider for CloudOnWorld {
    async fn create(&self, node_claim: &NodeClaim) -> karpenter_cloudprovider::Result<NodeClaim> {
        let mut gate = self.gate.clone();
        let waiting = Waiting::new(&self.creates_waiting);
        let _ = gate.wait_for(|held| !*held).await;
        drop(waiting);
        let (ec2, nc) = (self.ec2.clone(), node_claim.clone());
        let answer = self.call(async move { ec2.create(&nc).await }).await;
        let mut gate = self.answer_gate.clone();
        let _ = gate.wait_for(|held| !*held).await;
        answer
    }

    async fn delete(&self, node_claim: &NodeClaim) -> karpenter_cloudprovider::Result<()> {
        let (ec2, nc) = (self.ec2.clone(), node_claim.clone());
        self.call(async move { ec2.delete(&nc).await }).await
    }

    async fn get(&self, provider_id: &str) -> karpenter_cloudprovider::Result<NodeClaim> {
        let (ec2, id) = (self.ec2.clone(), provider_id.to_string());
        self.call(async move { ec2.get(&id).await }).await
    }

    async fn list(&self) -> karpenter_cloudprovider::Result<Vec<NodeClaim>> {
        let ec2 = self.ec2.clone();
        self.call(async move { ec2.list().await }).await
    }

    async fn get_instance_types(
        &self,
        node_pool: &NodePool,
    ) -> karpenter_cloudprovider::Result<Arc<[InstanceType]>> {
        let (ec2, np) = (self.ec2.clone(), node_pool.clone());
        self.call(async move { ec2.get_instance_types(&np).await })
            .await
    }

    async fn is_drifted(
        &self,
        node_claim: &NodeClaim,
    ) -> karpenter_cloudprovider::Result<Option<DriftReason>> {
        let (ec2, nc) = (self.ec2.clone(), node_claim.clone());
        self.call(async move { ec2.is_drifted(&nc).await }).await
    }

    fn repair_policies(&self) -> Vec<RepairPolicy> {
        self.ec2.repair_policies()
    }

    fn name(&self) -> &'static str {
        self.ec2.name()
    }

    fn supported_node_classes(&self) -> Vec<NodeClassKind> {
        self.ec2.supported_node_classes()
    }
}

/// One controller process: runtime, client, state, informers, metrics, events, leadership,
/// and `operator::run`.
pub struct Replica {
    /// Its name (the Lease identity with an election).
    pub name: String,
    /// Its context (state, recorder, metrics handles); inert once killed.
    pub ctx: Arc<Context>,
    /// Its own metrics registry (readable after a kill).
    pub registry: prometheus::Registry,
    /// Whether it leads.
    pub leading: watch::Receiver<bool>,
    runtime: Option<tokio::runtime::Runtime>,
    operator: Option<tokio::task::JoinHandle<Stopped>>,
    shutdown: watch::Sender<bool>,
    _fixed_leader: Option<watch::Sender<bool>>,
    election: Option<LeaderElection>,
    informers: Option<Informers>,
}

impl Replica {
    /// Starts a fresh replica against `world`: nothing carries over from earlier replicas but
    /// what is in the API server and the cloud.
    pub fn start(world: &World, name: &str, leadership: Leadership) -> Replica {
        Replica::start_with(world, name, leadership, operator_config())
    }

    /// [`Replica::start`] with other controller timings.
    pub fn start_with(
        world: &World,
        name: &str,
        leadership: Leadership,
        config: OperatorConfig,
    ) -> Replica {
        let url = world.cluster.apiserver().url();
        Replica::start_against(world, name, leadership, config, &url)
    }

    /// [`Replica::start_with`] whose clients talk to the API server at `url` instead of the
    /// world's (the cloud stays the world's).
    pub fn start_against(
        world: &World,
        name: &str,
        leadership: Leadership,
        config: OperatorConfig,
        url: &str,
    ) -> Replica {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("replica-{name}"))
            .enable_all()
            .build()
            .unwrap();
        // Clients, informers and the election spawn their tasks on the replica's runtime.
        let guard = runtime.enter();
        let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        let mut eviction_config = kube::Config::new(url.parse().unwrap());
        eviction_config.default_retry = false;
        let eviction_client = kube::Client::try_from(eviction_config).unwrap();

        let clock: SharedClock = Arc::new(SystemClock);
        let state = Arc::new(ClusterState::new(clock.clone(), StateConfig::default()));
        let informers = Informers::start(client.clone(), state.clone());
        let registry = prometheus::Registry::new();
        let metrics = Arc::new(Metrics::new(&registry).unwrap());

        let (fixed_leader, election, leading) = match leadership {
            Leadership::Fixed => {
                let (tx, rx) = watch::channel(true);
                (Some(tx), None, rx)
            }
            Leadership::Lease {
                identity,
                lease_duration,
                renew_deadline,
                retry_period,
            } => {
                let config = ElectionConfig {
                    lease_duration,
                    renew_deadline,
                    retry_period,
                    ..ElectionConfig::new(LEASE_NAME, LEASE_NAMESPACE, &identity)
                };
                let elector =
                    LeaderElector::new(client.clone(), config, clock.clone(), None).unwrap();
                let election = elector.spawn();
                let rx = election.is_leader();
                (None, Some(election), rx)
            }
        };
        let cloud = Arc::new(CloudOnWorld {
            ec2: world.ec2.clone(),
            world: world.runtime.clone(),
            gate: world.create_gate.subscribe(),
            answer_gate: world.answer_gate.subscribe(),
            creates_waiting: world.creates_waiting.clone(),
        });
        let ctx = Arc::new(Context::new(
            client.clone(),
            state,
            cloud,
            metrics,
            clock.clone(),
            EventRecorder::new(client, clock),
            settings(),
            leading.clone(),
        ));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let operator = runtime.spawn(operator::run(
            ctx.clone(),
            config,
            eviction_client,
            shutdown_rx,
        ));
        drop(guard);
        Replica {
            name: name.to_string(),
            ctx,
            registry,
            leading,
            runtime: Some(runtime),
            operator: Some(operator),
            shutdown,
            _fixed_leader: fixed_leader,
            election,
            informers: Some(informers),
        }
    }

    /// SIGKILL: every task of the replica stops where it is; nothing is released or cleaned
    /// up (the Lease stays held until it expires).
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        self.informers.take();
        self.operator.take();
        // Dropping the election after its runtime is gone cannot release the Lease.
        self.election.take();
    }

    /// Graceful stop: shutdown signal, wait for the operator, release the Lease. Fails the
    /// test if the operator does not return `Shutdown` (a controller that ignores shutdown).
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(h) = self.operator.take() {
            let stopped = tokio::time::timeout(Duration::from_secs(20), h).await;
            assert!(
                matches!(stopped, Ok(Ok(Stopped::Shutdown))),
                "replica {}: operator::run did not shut down: {stopped:?}",
                self.name
            );
        }
        if let (Some(election), Some(rt)) = (self.election.take(), self.runtime.as_ref()) {
            let _ = rt.spawn(election.shutdown()).await;
        }
        self.kill();
    }

    /// Waits (up to `secs`) for `operator::run` to return on its own, and says why it did.
    pub async fn operator_stopped(&mut self, secs: u64) -> Option<Stopped> {
        let handle = self.operator.as_mut()?;
        let stopped = tokio::time::timeout(Duration::from_secs(secs), handle)
            .await
            .ok()?
            .ok();
        self.operator.take();
        stopped
    }

    /// Waits until this replica's cluster state, which its provisioner decides from, holds
    /// every named NodePool as usable (Ready, with a Ready NodeClass), so the next batch of
    /// pods is solved against all of them. A pool not usable yet is rightly skipped; and
    /// seeing it Ready through the API server is not enough, as cluster state follows the
    /// API through its own watch and can lag behind.
    pub async fn nodepools_ready(&self, names: &[&str]) {
        let state = self.ctx.state.clone();
        for name in names {
            eventually(30, &format!("NodePool {name} usable"), async || {
                let snapshot = state.snapshot();
                let pool = snapshot
                    .nodepools()
                    .into_iter()
                    .find(|np| np.metadata.name.as_deref() == Some(*name))?;
                karpenter_controllers::provisioning::plan::usable_in(&snapshot, &pool).ok()
            })
            .await;
        }
    }

    /// Whether it leads now.
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Sum of a metric family's counter values whose labels include `labels`.
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

    /// Sum of a histogram family's sample counts whose labels include `labels`.
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
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
            .map(|m| m.get_histogram().get_sample_count())
            .sum()
    }

    /// Reasons of the events this replica published.
    pub fn published_reasons(&self) -> Vec<&'static str> {
        self.ctx
            .recorder
            .published()
            .iter()
            .map(|e| e.reason)
            .collect()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An API server that accepts connections, reads each request's head and never answers
/// (hung, or far too slow): a replica against it never completes a list. Lives on the
/// caller's runtime.
pub struct StalledApiServer {
    /// Where it listens.
    pub url: String,
    /// Paths (without query) of the requests received, in arrival order.
    requests: Arc<std::sync::Mutex<Vec<String>>>,
}

impl StalledApiServer {
    /// Starts listening on a free local port.
    pub async fn start() -> StalledApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    // One request per connection: this server never answers the first.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.contains(&b'\n') && connection.readable().await.is_ok() {
                        match connection.try_read(&mut buf) {
                            Ok(0) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(_) => return,
                        }
                    }
                    let line = String::from_utf8_lossy(&head);
                    let path = line.split(' ').nth(1).unwrap_or_default();
                    seen.lock()
                        .unwrap()
                        .push(path.split('?').next().unwrap_or_default().to_string());
                    std::future::pending::<()>().await;
                    drop(connection);
                });
            }
        });
        StalledApiServer { url, requests }
    }

    /// How many requests for `path` (without query) it received.
    pub fn requests_for(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `secs` seconds with
/// `what` (a guard against hangs, not a timing assertion).
pub async fn eventually<T>(secs: u64, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

/// A label of an object.
pub fn label_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<String> {
    meta.labels.as_ref().and_then(|l| l.get(key).cloned())
}

/// A NodePool over the simulated cloud: amd64 on-demand, with `extra` merged into its spec.
pub fn nodepool(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut np = json!({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name},
    "spec": {"template": {"spec": {
        "requirements": [
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}
        ],
        "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}
    }}}});
    merge(&mut np["spec"], extra);
    np
}

/// An EC2NodeClass `name` (the simulated cloud treats every class as Ready).
pub fn nodeclass(name: &str) -> serde_json::Value {
    json!({"apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": {"name": name},
           "spec": {"role": "KarpenterNodeRole", "amiSelectorTerms": [{"alias": "al2023@latest"}],
                    "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": "c"}}],
                    "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": "c"}}]}})
}

/// A Deployment `name` in `ns` of `replicas` pods requesting `cpu`, with `extra` merged into
/// the pod spec.
pub fn deployment(
    ns: &str,
    name: &str,
    replicas: i32,
    cpu: &str,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"terminationGracePeriodSeconds": 0,
                                       "containers": [{"name": "c", "image": "pause",
                                                       "resources": {"requests": {"cpu": cpu}}}]}}}});
    merge(&mut d["spec"]["template"]["spec"], extra);
    d
}

/// A bare pod in `default`.
pub fn pod(name: &str, cpu: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"containers": [{"name": "c", "image": "pause",
                                  "resources": {"requests": {"cpu": cpu}}}]}});
    merge(&mut p["spec"], extra);
    p
}

/// Shallow-merges the object `extra` into `target`.
pub fn merge(target: &mut serde_json::Value, extra: serde_json::Value) {
    if let serde_json::Value::Object(fields) = extra {
        for (k, v) in fields {
            target[k] = v;
        }
    }
}

/// Summed capacity CPU (millicores) of the launched NodeClaims.
pub fn claimed_cpu_millis(claims: &[NodeClaim]) -> i64 {
    claims
        .iter()
        .filter_map(|nc| {
            nc.status
                .as_ref()?
                .capacity
                .get("cpu")
                .map(|q| cpu_millis(&q.0))
        })
        .sum()
}

/// Millicores of a CPU quantity ("2", "1500m").
pub fn cpu_millis(q: &str) -> i64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => (q.parse::<f64>().unwrap() * 1000.0) as i64,
    }
}

/// The NodeClaim's nodepool label.
pub fn nodepool_of(nc: &NodeClaim) -> Option<String> {
    label_of(&nc.metadata, labels::NODEPOOL)
}
