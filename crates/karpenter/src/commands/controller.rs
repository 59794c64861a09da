//! `karpenter controller` (the default): the operator process.
//!
//! Parses settings, installs JSON logging and builds the cloud provider: `--cloud-provider
//! simulated` is the simulator's EC2 on the embedded catalog, which registers Nodes through the
//! Kubernetes API itself (as upstream's kwok provider does), so it drives the embedded cluster
//! from another process or a real cluster without an AWS account; `aws` is refused at startup
//! until the AWS provider is part of the build. Then it builds the one metrics registry, serves
//! `/metrics`, `/healthz` and `/readyz`, campaigns for the leader Lease and, once leading,
//! starts the cluster-state informers (before leading when `DISABLE_CONTROLLER_WARMUP=false`)
//! and runs every controller ([`operator::CONTROLLERS`]) until SIGINT/SIGTERM.
//!
//! A simulated cloud keeps its instance table in this process, so on taking the lead it first
//! adopts the instances its earlier incarnation (or the previous leader) registered as Nodes;
//! otherwise every existing Node would look orphaned and be garbage-collected.
//!
//! Shutdown stops the controllers, then releases the Lease so a successor takes over at once.
//! Losing leadership ends the process with an error, as upstream does, so the pod restarts
//! clean instead of acting on a view another leader is already changing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use karpenter_cloudprovider::{CloudProvider, SharedClock, SystemClock};
use karpenter_controllers::context::{Context, ControllerSettings};
use karpenter_controllers::events::EventRecorder;
use karpenter_controllers::leader::{
    ElectionConfig, LeaderElection, LeaderElector, SERVICE_ACCOUNT_NAMESPACE_FILE,
    default_identity, resolve_namespace,
};
use karpenter_controllers::metrics::{BuildInfo, Metrics};
use karpenter_controllers::operator::{self, OperatorConfig, Stopped};
use karpenter_controllers::ratelimit::RateLimitLayer;
use karpenter_scheduling::solver;
use karpenter_sim::ec2::{SimEc2Config, SimulatedEc2};
use karpenter_state::{ClusterState, Informers, StateConfig};
use prometheus::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::options::{
    BatchConfig, CloudProviderKind, FeatureGates, KubeClientConfig, MinValuesPolicy, Options,
    PreferencePolicy, SchedulingPolicy, Settings, SimulatedConfig,
};
use crate::serve::{Readiness, Servers};

/// Options of `karpenter controller`: upstream's operator flags and environment variables.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Operator settings.
    #[command(flatten)]
    pub options: Options,
}

/// The readiness check that the Karpenter CRDs are served by the API server.
pub const CRDS_CHECK: &str = "crds";

/// How long stopping controllers may take before the process moves on to releasing the Lease.
const CONTROLLER_STOP_GRACE: Duration = Duration::from_secs(30);

/// Pause between attempts to prepare the cloud provider for leading.
const PREPARE_RETRY: Duration = Duration::from_secs(2);

/// Entry point from `main`: validates settings, sets up logging and runs until a signal.
pub fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let settings = Settings::from_options(args.options)?;
    crate::telemetry::init(&settings.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.runtime.parallelism().max(2))
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        let clients = kube_clients(&settings.kube_client).await?;
        let cloud = Cloud::build(&settings, &clients.main).await?;
        let workload = Workload::new(&settings, clients.clone(), cloud);
        let addrs = Endpoints::all_interfaces(&settings);
        let controller = Controller::start(settings, clients, addrs, shutdown).await?;
        info!(
            metrics = %controller.metrics_addr,
            health = %controller.health_addr,
            "serving metrics and health probes"
        );
        controller.wait(Some(workload)).await
    })
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the process");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => info!("received SIGINT, shutting down"),
            _ = term.recv() => info!("received SIGTERM, shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
        info!("received interrupt, shutting down");
    }
    token.cancel();
}

/// The Kubernetes clients.
#[derive(Clone)]
pub struct Clients {
    /// Rate limited by `KUBE_CLIENT_QPS`/`KUBE_CLIENT_BURST`; for everything but the Lease.
    pub main: kube::Client,
    /// Unthrottled, as upstream: a burst of controller traffic must never delay lease renewal.
    pub leader_election: kube::Client,
    /// For the Eviction API: shares the main client's rate limit but never retries by itself,
    /// so a 429 (a PodDisruptionBudget refusing) reaches the eviction queue's own backoff.
    pub eviction: kube::Client,
}

impl Clients {
    /// The clients for one API server configuration.
    pub fn new(kube_config: kube::Config, qps: u32, burst: u32) -> anyhow::Result<Self> {
        let limit = RateLimitLayer::new(qps, burst);
        let main = kube::client::ClientBuilder::try_from(kube_config.clone())
            .context("building the Kubernetes client")?
            .with_layer(&limit)
            .build();
        let mut eviction_config = kube_config.clone();
        eviction_config.default_retry = false;
        let eviction = kube::client::ClientBuilder::try_from(eviction_config)
            .context("building the eviction client")?
            .with_layer(&limit)
            .build();
        let leader_election =
            kube::Client::try_from(kube_config).context("building the leader-election client")?;
        Ok(Clients {
            main,
            leader_election,
            eviction,
        })
    }
}

/// Builds the clients from the given kubeconfig, else in-cluster, else the default kubeconfig
/// location (for running outside a cluster without `--kubeconfig`).
async fn kube_clients(config: &KubeClientConfig) -> anyhow::Result<Clients> {
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("loading kubeconfig {}", path.display()))?
        }
        None => match kube::Config::incluster() {
            Ok(c) => c,
            Err(in_cluster) => kube::Config::infer().await.map_err(|e| {
                anyhow::anyhow!(
                    "no Kubernetes configuration: not in a cluster ({in_cluster}) and no kubeconfig ({e})"
                )
            })?,
        },
    };
    Clients::new(kube_config, config.qps, config.burst)
}

/// The cloud the controllers manage.
pub enum Cloud {
    /// The simulator's EC2, registering Nodes through the Kubernetes API.
    Simulated(Arc<SimulatedEc2>),
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cloud::Simulated(ec2) => f
                .debug_tuple("Simulated")
                .field(&ec2.config().region)
                .finish(),
        }
    }
}

impl Cloud {
    /// The provider `--cloud-provider` names. `client` is what the simulated cloud registers
    /// Nodes through.
    pub async fn build(settings: &Settings, client: &kube::Client) -> anyhow::Result<Cloud> {
        match (settings.cloud_provider, settings.simulated) {
            (CloudProviderKind::Aws, _) => Err(anyhow::anyhow!(
                "--cloud-provider aws (CLOUD_PROVIDER=aws): the AWS cloud provider is not part of this build yet; use --cloud-provider simulated to run against the simulated EC2"
            )),
            (CloudProviderKind::Simulated, None) => Err(anyhow::anyhow!(
                "--cloud-provider simulated without simulated-cloud settings"
            )),
            (CloudProviderKind::Simulated, Some(sim)) => {
                let SimulatedConfig {
                    launch_delay,
                    boot_delay,
                    termination_delay,
                } = sim;
                let config = SimEc2Config {
                    launch_delay,
                    termination_delay,
                    ..SimEc2Config::default()
                };
                let clock: SharedClock = Arc::new(SystemClock);
                // Parsing the embedded catalog is CPU work; keep it off the async workers.
                let ec2 = tokio::task::spawn_blocking(move || SimulatedEc2::new(config, clock))
                    .await
                    .context("loading the simulated EC2")?
                    .context("loading the simulated EC2's embedded catalog")?
                    .with_node_registrar(client.clone(), boot_delay);
                info!(
                    region = %ec2.config().region,
                    launch_delay = ?launch_delay,
                    boot_delay = ?boot_delay,
                    termination_delay = ?termination_delay,
                    "cloud provider: simulated EC2 (Nodes registered through the API)"
                );
                Ok(Cloud::Simulated(Arc::new(ec2)))
            }
        }
    }

    /// The provider as the controllers see it.
    pub fn provider(&self) -> Arc<dyn CloudProvider> {
        match self {
            Cloud::Simulated(ec2) => ec2.clone(),
        }
    }

    /// Makes the provider ready to act for a new leader. The simulated EC2 adopts the
    /// instances recorded on the Nodes it registered (in an earlier process or another
    /// replica), so they are not mistaken for vanished instances.
    pub async fn prepare_to_lead(&self) -> anyhow::Result<()> {
        match self {
            Cloud::Simulated(ec2) => {
                let adoption = ec2
                    .adopt_registered_nodes()
                    .await
                    .context("adopting the simulated instances registered as Nodes")?;
                for (node, reason) in &adoption.skipped {
                    warn!(%node, %reason, "not adopting a simulated instance");
                }
                info!(
                    adopted = adoption.adopted.len(),
                    already_known = adoption.already_known,
                    skipped = adoption.skipped.len(),
                    "simulated EC2 adopted the instances registered as Nodes"
                );
                Ok(())
            }
        }
    }
}

/// Maps the operator settings onto what the controllers read. Every field is named, so a new
/// setting does not compile until someone decides whether controllers need it.
pub fn controller_settings(settings: &Settings) -> ControllerSettings {
    let Settings {
        cloud_provider: _,
        karpenter_service: _,
        server: _,
        kube_client: _,
        leader_election: _,
        log: _,
        batch,
        scheduling,
        feature_gates,
        unknown_feature_gates: _,
        runtime: _,
        aws,
        simulated: _,
    } = settings;
    let BatchConfig {
        max_duration,
        idle_duration,
    } = *batch;
    let SchedulingPolicy {
        preference_policy,
        min_values_policy,
        // Not read by the controllers yet; `unsupported_settings` reports them.
        ignore_dra_requests: _,
        scheduler_config: _,
    } = scheduling;
    let FeatureGates {
        node_repair,
        reserved_capacity,
        spot_to_spot_consolidation,
        node_overlay: _,
        static_capacity: _,
        capacity_buffer: _,
    } = *feature_gates;
    ControllerSettings {
        batch_idle_duration: idle_duration,
        batch_max_duration: max_duration,
        preference_policy: match preference_policy {
            PreferencePolicy::Respect => solver::PreferencePolicy::Respect,
            PreferencePolicy::Ignore => solver::PreferencePolicy::Ignore,
        },
        min_values_policy: match min_values_policy {
            MinValuesPolicy::Strict => solver::MinValuesPolicy::Strict,
            MinValuesPolicy::BestEffort => solver::MinValuesPolicy::BestEffort,
        },
        spot_to_spot_consolidation,
        node_repair,
        reserved_capacity,
        cluster_name: aws
            .as_ref()
            .map(|a| a.cluster_name.clone())
            .unwrap_or_default(),
    }
}

/// Settings that were given but that this build does not act on, as log-ready sentences (so
/// nobody believes a setting works when it does not).
pub fn unsupported_settings(settings: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    let FeatureGates {
        node_overlay,
        static_capacity,
        capacity_buffer,
        ..
    } = settings.feature_gates;
    for (gate, on) in [
        ("NodeOverlay", node_overlay),
        ("StaticCapacity", static_capacity),
        ("CapacityBuffer", capacity_buffer),
    ] {
        if on {
            out.push(format!(
                "feature gate {gate}=true: not implemented in this build"
            ));
        }
    }
    if settings.scheduling.scheduler_config.is_some() {
        out.push("SCHEDULER_CONFIG is set but not interpreted by this build".to_string());
    }
    if !settings.scheduling.ignore_dra_requests {
        out.push(
            "IGNORE_DRA_REQUESTS=false: dynamic resource allocation is not supported".to_string(),
        );
    }
    out
}

/// What the controllers need beyond what [`Controller::start`] sets up.
#[derive(Debug)]
pub struct Workload {
    /// The cloud.
    pub cloud: Cloud,
    /// Kubernetes clients.
    pub clients: Clients,
    /// Controller settings.
    pub settings: ControllerSettings,
    /// Cluster-state settings.
    pub state: StateConfig,
    /// Start the informers before leading (`DISABLE_CONTROLLER_WARMUP=false`).
    pub warm_up: bool,
    /// Controller timings.
    pub operator: OperatorConfig,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").finish_non_exhaustive()
    }
}

impl Workload {
    /// The workload `settings` describe, with upstream's controller timings.
    pub fn new(settings: &Settings, clients: Clients, cloud: Cloud) -> Workload {
        Workload {
            cloud,
            clients,
            settings: controller_settings(settings),
            state: StateConfig::from_batch_max_duration(settings.batch.max_duration),
            warm_up: !settings.runtime.disable_controller_warmup,
            operator: OperatorConfig {
                disable_cluster_state_observability: settings
                    .runtime
                    .disable_cluster_state_observability,
                ..OperatorConfig::default()
            },
        }
    }
}

/// Waits until `is_leader` is true. `None` when `stop` turned true or the election ended first.
async fn leadership(
    is_leader: &mut watch::Receiver<bool>,
    stop: &mut watch::Receiver<bool>,
) -> Option<()> {
    loop {
        if *stop.borrow() {
            return None;
        }
        if *is_leader.borrow_and_update() {
            return Some(());
        }
        tokio::select! {
            r = is_leader.changed() => r.ok()?,
            r = stop.changed() => r.ok()?,
        }
    }
}

/// Cluster state, informers and controllers for one leadership term.
async fn operate(
    workload: Workload,
    metrics: Arc<Metrics>,
    mut is_leader: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Stopped> {
    let Workload {
        cloud,
        clients,
        settings,
        state: state_config,
        warm_up,
        operator: operator_config,
    } = workload;
    let clock: SharedClock = Arc::new(SystemClock);
    // Cluster state keeps the `karpenter_cluster_state_*` gauges of the one registry current
    // (its informers refresh them every 5 s).
    let state = Arc::new(
        ClusterState::new(clock.clone(), state_config).with_metrics(metrics.state_metrics()),
    );
    let mut informers = warm_up.then(|| Informers::start(clients.main.clone(), state.clone()));
    if leadership(&mut is_leader, &mut stop).await.is_none() {
        return Ok(if *stop.borrow() {
            Stopped::Shutdown
        } else {
            Stopped::ElectionEnded
        });
    }
    if informers.is_none() {
        informers = Some(Informers::start(clients.main.clone(), state.clone()));
    }
    // Until the cloud knows its instances, garbage collection would delete their NodeClaims,
    // so no controller starts before this succeeds.
    loop {
        match cloud.prepare_to_lead().await {
            Ok(()) => break,
            Err(e) => warn!(
                error = format!("{e:#}"),
                "preparing the cloud provider failed; retrying"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(PREPARE_RETRY) => {}
            _ = stop.changed() => return Ok(Stopped::Shutdown),
        }
    }
    let ctx = Arc::new(Context::new(
        clients.main.clone(),
        state,
        cloud.provider(),
        metrics,
        clock.clone(),
        EventRecorder::new(clients.main.clone(), clock),
        settings,
        is_leader,
    ));
    let stopped = operator::run(ctx, operator_config, clients.eviction.clone(), stop).await;
    drop(informers);
    Ok(stopped)
}

/// Where the two servers listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// `/metrics`.
    pub metrics: SocketAddr,
    /// `/healthz`, `/readyz`.
    pub health: SocketAddr,
}

impl Endpoints {
    /// The configured ports on every interface (what a pod needs).
    pub fn all_interfaces(settings: &Settings) -> Self {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        Endpoints {
            metrics: SocketAddr::new(any, settings.server.metrics_port),
            health: SocketAddr::new(any, settings.server.health_probe_port),
        }
    }
}

/// This build's `karpenter_build_info` labels. The commit and toolchain can be stamped at build
/// time through `KARPENTER_COMMIT` and `KARPENTER_RUSTC_VERSION`.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        goversion: option_env!("KARPENTER_RUSTC_VERSION")
            .unwrap_or("rust")
            .to_string(),
        goarch: BuildInfo::this_arch().to_string(),
        commit: option_env!("KARPENTER_COMMIT")
            .unwrap_or("unknown")
            .to_string(),
    }
}

/// The running operator.
#[derive(Debug)]
pub struct Controller {
    /// Where `/metrics` listens.
    pub metrics_addr: SocketAddr,
    /// Where the probes listen.
    pub health_addr: SocketAddr,
    /// Leadership, for controllers to gate on.
    pub is_leader: watch::Receiver<bool>,
    /// The one registry's metric handles.
    pub metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    servers: Servers,
    election: Option<LeaderElection>,
    /// Keeps the always-leader channel open when election is disabled.
    _leader_tx: Option<watch::Sender<bool>>,
    crd_check: JoinHandle<()>,
}

impl Controller {
    /// Starts serving, checking CRDs and campaigning; returns once everything is running.
    pub async fn start(
        settings: Settings,
        clients: Clients,
        endpoints: Endpoints,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let registry = Registry::new();
        let metrics = Arc::new(Metrics::new(&registry).context("registering metrics")?);
        let build = build_info();
        metrics.set_build_info(&build);
        info!(version = %build.version, commit = %build.commit, "starting karpenter");
        for gate in &settings.unknown_feature_gates {
            warn!(feature_gate = %gate, "ignoring unknown feature gate");
        }
        for message in unsupported_settings(&settings) {
            warn!("{message}");
        }
        if settings.server.enable_profiling {
            warn!("ENABLE_PROFILING is set but this build serves no profiling endpoints");
        }

        let readiness = Readiness::default();
        readiness.set(CRDS_CHECK, false);
        let servers = Servers::start(
            endpoints.metrics,
            endpoints.health,
            registry,
            readiness.clone(),
            shutdown.clone(),
        )
        .await?;

        let crd_check = tokio::spawn(
            watch_crds(clients.main.clone(), readiness.clone(), shutdown.clone())
                .instrument(info_span!("readiness")),
        );

        let le = &settings.leader_election;
        let (is_leader, election, leader_tx) = if le.enabled {
            // The chart sets SYSTEM_NAMESPACE from the pod's namespace (upstream reads it too);
            // POD_NAMESPACE is the common downward-API name elsewhere.
            let pod_namespace = std::env::var("SYSTEM_NAMESPACE")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .or_else(|| std::env::var("POD_NAMESPACE").ok());
            let sa_namespace = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE_FILE).ok();
            let namespace = resolve_namespace(
                le.namespace.as_deref(),
                pod_namespace.as_deref(),
                sa_namespace.as_deref(),
            );
            let identity = default_identity();
            info!(lease = %le.name, %namespace, %identity, "campaigning for leadership");
            let status = metrics
                .leader_election_master_status
                .with_label_values(&[le.name.as_str()]);
            let elector = LeaderElector::new(
                clients.leader_election.clone(),
                ElectionConfig::new(&le.name, &namespace, &identity),
                Arc::new(SystemClock),
                Some(status),
            )?;
            let election = elector.spawn();
            (election.is_leader(), Some(election), None)
        } else {
            info!("leader election disabled: acting as leader");
            let (tx, rx) = watch::channel(true);
            (rx, None, Some(tx))
        };

        Ok(Controller {
            metrics_addr: servers.metrics_addr,
            health_addr: servers.health_addr,
            is_leader,
            metrics,
            shutdown,
            servers,
            election,
            _leader_tx: leader_tx,
            crd_check,
        })
    }

    /// Runs `workload`'s controllers whenever this replica leads (none when `None`: serving
    /// and the election only) until shutdown is requested (then stops the controllers, releases
    /// the Lease and stops the servers) or leadership is lost (an error, so the process exits
    /// non-zero).
    pub async fn wait(mut self, workload: Option<Workload>) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut operator_task = workload.map(|w| {
            info!(controllers = ?operator::CONTROLLERS, "starting controllers once leading");
            tokio::spawn(
                operate(w, self.metrics.clone(), self.is_leader.clone(), stop_rx)
                    .instrument(info_span!("operator")),
            )
        });
        if operator_task.is_none() {
            info!(
                "no controllers requested: serving metrics and health and holding leadership only"
            );
        }
        let mut is_leader = self.is_leader.clone();
        let mut was_leader = *is_leader.borrow();
        let outcome = loop {
            let operator_done = async {
                match operator_task.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => break Ok(()),
                changed = is_leader.changed() => {
                    if changed.is_err() {
                        break Err(anyhow::anyhow!("leader election stopped unexpectedly"));
                    }
                    let leading = *is_leader.borrow_and_update();
                    if leading && !was_leader {
                        info!("became leader");
                    } else if !leading && was_leader {
                        error!("leader election lost");
                        break Err(anyhow::anyhow!("leader election lost"));
                    }
                    was_leader = leading;
                }
                done = operator_done => {
                    operator_task = None;
                    break match done {
                        Ok(Ok(Stopped::LostLeadership)) => {
                            error!("leader election lost");
                            Err(anyhow::anyhow!("leader election lost"))
                        }
                        Ok(Ok(stopped)) => Err(anyhow::anyhow!("controllers stopped unexpectedly ({stopped:?})")),
                        Ok(Err(e)) => Err(e.context("running the controllers")),
                        Err(e) => Err(anyhow::anyhow!("the controllers' task failed: {e}")),
                    };
                }
            }
        };
        // Controllers stop before the Lease is released, so no two leaders ever act at once.
        let _ = stop_tx.send(true);
        if let Some(task) = operator_task {
            match tokio::time::timeout(CONTROLLER_STOP_GRACE, task).await {
                // The operator logs "controllers stopped" itself.
                Ok(Ok(Ok(stopped))) => debug!(reason = ?stopped, "operator task finished"),
                Ok(Ok(Err(e))) => {
                    warn!(error = format!("{e:#}"), "controllers ended with an error")
                }
                Ok(Err(e)) => warn!(error = %e, "the controllers' task failed"),
                Err(_) => warn!(grace = ?CONTROLLER_STOP_GRACE, "controllers did not stop in time"),
            }
        }
        if let Some(election) = self.election.take() {
            election.shutdown().await;
        }
        self.shutdown.cancel();
        self.crd_check.abort();
        self.servers.wait().await?;
        info!("stopped");
        outcome
    }
}

/// Marks the `crds` readiness check once the API server serves NodePools and NodeClaims,
/// re-checking every few seconds (as upstream's probe re-resolves them on each request).
async fn watch_crds(client: kube::Client, readiness: Readiness, shutdown: CancellationToken) {
    let mut last = None;
    loop {
        let ready = match client.list_api_group_resources("karpenter.sh/v1").await {
            Ok(list) => ["nodepools", "nodeclaims"]
                .iter()
                .all(|want| list.resources.iter().any(|r| r.name == *want)),
            Err(_) => false,
        };
        if last != Some(ready) {
            if ready {
                info!("karpenter.sh/v1 NodePool and NodeClaim CRDs are served");
            } else {
                warn!("karpenter.sh/v1 NodePool and NodeClaim CRDs are not served yet");
            }
            last = Some(ready);
        }
        readiness.set(CRDS_CHECK, ready);
        let pause = if ready {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(500)
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::http_get;
    use clap::Parser;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use karpenter_sim::apiserver::{ApiServer, ApiServerConfig};
    use kube::Api;
    use kube::api::PostParams;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    fn settings(extra: &[&str]) -> Settings {
        let mut argv = vec![
            "karpenter",
            "--cloud-provider=simulated",
            "--leader-election-namespace=kube-system",
        ];
        argv.extend_from_slice(extra);
        Settings::from_options(TestCli::try_parse_from(argv).unwrap().args.options).unwrap()
    }

    fn clients(server: &karpenter_sim::apiserver::ApiServerHandle) -> Clients {
        Clients::new(kube::Config::new(server.url().parse().unwrap()), 200, 300).unwrap()
    }

    fn local() -> Endpoints {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        Endpoints {
            metrics: addr,
            health: addr,
        }
    }

    async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !check().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[test]
    fn every_controller_setting_comes_from_the_operator_settings() {
        let defaults = controller_settings(&settings(&[]));
        let upstream = ControllerSettings::default();
        assert_eq!(
            format!("{defaults:?}"),
            format!("{upstream:?}"),
            "the operator's defaults are the controllers' defaults"
        );
        let s = controller_settings(&settings(&[
            "--batch-idle-duration=250ms",
            "--batch-max-duration=3s",
            "--preference-policy=Ignore",
            "--min-values-policy=BestEffort",
            "--feature-gates=NodeRepair=true,ReservedCapacity=false,SpotToSpotConsolidation=true",
        ]));
        assert_eq!(s.batch_idle_duration, Duration::from_millis(250));
        assert_eq!(s.batch_max_duration, Duration::from_secs(3));
        assert_eq!(s.preference_policy, solver::PreferencePolicy::Ignore);
        assert_eq!(s.min_values_policy, solver::MinValuesPolicy::BestEffort);
        assert!(s.node_repair && s.spot_to_spot_consolidation && !s.reserved_capacity);
        let aws = Settings::from_options(
            TestCli::try_parse_from(["karpenter", "--cloud-provider=aws", "--cluster-name=prod"])
                .unwrap()
                .args
                .options,
        )
        .unwrap();
        assert_eq!(controller_settings(&aws).cluster_name, "prod");
    }

    #[test]
    fn settings_this_build_ignores_are_reported() {
        assert!(unsupported_settings(&settings(&[])).is_empty());
        let said = unsupported_settings(&settings(&[
            "--feature-gates=NodeOverlay=true",
            "--scheduler-config=/etc/s.yaml",
            "--ignore-dra-requests=false",
        ]));
        assert_eq!(said.len(), 3, "{said:?}");
        assert!(said[0].contains("NodeOverlay"), "{said:?}");
    }

    #[tokio::test]
    async fn the_aws_cloud_is_refused_with_a_clear_error() {
        let server = ApiServer::start(ApiServerConfig::default()).await.unwrap();
        let aws = Settings::from_options(
            TestCli::try_parse_from(["karpenter", "--cloud-provider=aws", "--cluster-name=prod"])
                .unwrap()
                .args
                .options,
        )
        .unwrap();
        let err = Cloud::build(&aws, &clients(&server).main)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("the AWS cloud provider is not part of this build yet"),
            "{err}"
        );
        server.shutdown().await;
    }

    #[tokio::test]
    async fn serves_metrics_and_probes_leads_and_shuts_down_cleanly() {
        let server = ApiServer::start(ApiServerConfig::default()).await.unwrap();
        let client =
            kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
        let shutdown = CancellationToken::new();
        let controller =
            Controller::start(settings(&[]), clients(&server), local(), shutdown.clone())
                .await
                .unwrap();
        let (metrics_addr, health_addr) = (controller.metrics_addr, controller.health_addr);
        let is_leader = controller.is_leader.clone();

        assert_eq!(http_get(health_addr, "/healthz").await.0, 200);
        // CRDs are not installed yet: not ready.
        let (status, _, body) = http_get(health_addr, "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (503, "[-]crds not ready\nreadyz check failed\n")
        );
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in [
            karpenter_apis::crd::nodepool_crd().unwrap(),
            karpenter_apis::crd::nodeclaim_crd().unwrap(),
        ] {
            crds.create(&PostParams::default(), &crd).await.unwrap();
        }
        eventually("ready once CRDs are served", async || {
            http_get(health_addr, "/readyz").await.0 == 200
        })
        .await;

        let leader = is_leader.clone();
        eventually("leads", async || *leader.borrow()).await;
        let (status, head, body) = http_get(metrics_addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(head.contains("version=0.0.4"), "{head}");
        assert!(
            body.contains("leader_election_master_status{name=\"karpenter-leader-election\"} 1"),
            "{body}"
        );
        assert!(body.contains(&format!(
            "karpenter_build_info{{commit=\"unknown\",goarch=\"{}\",goversion=\"rust\",version=\"{}\"}} 1",
            BuildInfo::this_arch(),
            env!("CARGO_PKG_VERSION")
        )));
        assert!(body.contains(
            "# TYPE karpenter_voluntary_disruption_consolidation_timeouts_total counter"
        ));

        shutdown.cancel();
        controller.wait(None).await.unwrap();
        // The Lease was released on the way out and both ports are closed.
        let lease =
            Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client, "kube-system")
                .get("karpenter-leader-election")
                .await
                .unwrap();
        assert_eq!(lease.spec.unwrap().holder_identity, None);
        assert!(tokio::net::TcpStream::connect(metrics_addr).await.is_err());
        assert!(tokio::net::TcpStream::connect(health_addr).await.is_err());
        server.shutdown().await;
    }

    #[tokio::test]
    async fn without_leader_election_it_leads_at_once_and_losing_nothing_is_fine() {
        let server = ApiServer::start(ApiServerConfig::default()).await.unwrap();
        let client =
            kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
        let shutdown = CancellationToken::new();
        let controller = Controller::start(
            settings(&["--disable-leader-election"]),
            clients(&server),
            local(),
            shutdown.clone(),
        )
        .await
        .unwrap();
        assert!(*controller.is_leader.borrow());
        let body = http_get(controller.metrics_addr, "/metrics").await.2;
        assert!(
            !body.contains("leader_election_master_status"),
            "no lease, no gauge series"
        );
        shutdown.cancel();
        controller.wait(None).await.unwrap();
        let leases =
            Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client, "kube-system");
        assert!(
            leases
                .get_opt("karpenter-leader-election")
                .await
                .unwrap()
                .is_none()
        );
        server.shutdown().await;
    }

    #[tokio::test]
    async fn losing_leadership_ends_the_process_with_an_error() {
        let server = ApiServer::start(ApiServerConfig::default()).await.unwrap();
        let client =
            kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
        let shutdown = CancellationToken::new();
        let controller =
            Controller::start(settings(&[]), clients(&server), local(), shutdown.clone())
                .await
                .unwrap();
        let leader = controller.is_leader.clone();
        eventually("leads", async || *leader.borrow()).await;
        let leases =
            Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client, "kube-system");
        // The leader renews every retry period, so a renewal can land between this read and
        // write: retry on a write conflict, as `kubectl edit` would.
        let mut taken = false;
        for _ in 0..50 {
            let mut lease = leases.get("karpenter-leader-election").await.unwrap();
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = Some("someone-else".into());
            }
            match leases
                .replace("karpenter-leader-election", &PostParams::default(), &lease)
                .await
            {
                Ok(_) => {
                    taken = true;
                    break;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => panic!("replacing the Lease: {e}"),
            }
        }
        assert!(taken, "the Lease kept changing under 50 writes");
        let err = controller.wait(None).await.unwrap_err();
        assert_eq!(err.to_string(), "leader election lost");
        server.shutdown().await;
    }
}
