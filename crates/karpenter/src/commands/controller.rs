//! `karpenter controller` (the default): the operator process.
//!
//! Parses settings, installs JSON logging, builds the one metrics registry, serves `/metrics`,
//! `/healthz` and `/readyz`, builds the Kubernetes client, campaigns for the leader Lease and
//! then runs until SIGINT/SIGTERM. The reconcilers are not wired in yet: the process says so in
//! its startup log rather than pretend. Losing leadership ends the process with an error, as
//! upstream does, so the pod restarts clean instead of running two leaders' worth of decisions.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use karpenter_cloudprovider::SystemClock;
use karpenter_controllers::leader::{
    ElectionConfig, LeaderElection, LeaderElector, SERVICE_ACCOUNT_NAMESPACE_FILE,
    default_identity, resolve_namespace,
};
use karpenter_controllers::metrics::{BuildInfo, Metrics};
use karpenter_controllers::ratelimit::RateLimitLayer;
use prometheus::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::options::{KubeClientConfig, Options, Settings};
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

/// The controllers this build runs. Empty until the reconcilers land; logged at startup.
pub const CONTROLLERS: &[&str] = &[];

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
        let addrs = Endpoints::all_interfaces(&settings);
        let controller = Controller::start(settings, clients, addrs, shutdown).await?;
        info!(
            metrics = %controller.metrics_addr,
            health = %controller.health_addr,
            "serving metrics and health probes"
        );
        controller.wait().await
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
}

impl Clients {
    /// Both clients for one API server configuration.
    pub fn new(kube_config: kube::Config, qps: u32, burst: u32) -> anyhow::Result<Self> {
        let main = kube::client::ClientBuilder::try_from(kube_config.clone())
            .context("building the Kubernetes client")?
            .with_layer(&RateLimitLayer::new(qps, burst))
            .build();
        let leader_election =
            kube::Client::try_from(kube_config).context("building the leader-election client")?;
        Ok(Clients {
            main,
            leader_election,
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
        let metrics = Metrics::new(&registry).context("registering metrics")?;
        let build = build_info();
        metrics.set_build_info(&build);
        info!(version = %build.version, commit = %build.commit, "starting karpenter");
        for gate in &settings.unknown_feature_gates {
            warn!(feature_gate = %gate, "ignoring unknown feature gate");
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

        if CONTROLLERS.is_empty() {
            info!(
                controllers = "none",
                "no controllers are implemented in this build yet: serving metrics and health and holding leadership only"
            );
        } else {
            info!(controllers = ?CONTROLLERS, "starting controllers once leading");
        }

        Ok(Controller {
            metrics_addr: servers.metrics_addr,
            health_addr: servers.health_addr,
            is_leader,
            shutdown,
            servers,
            election,
            _leader_tx: leader_tx,
            crd_check,
        })
    }

    /// Runs until shutdown is requested (then releases the Lease and stops the servers) or
    /// leadership is lost (an error, so the process exits non-zero).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut is_leader = self.is_leader.clone();
        let mut was_leader = *is_leader.borrow();
        let outcome = loop {
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
            }
        };
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
        controller.wait().await.unwrap();
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
        controller.wait().await.unwrap();
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
        let mut lease = leases.get("karpenter-leader-election").await.unwrap();
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = Some("someone-else".into());
        }
        leases
            .replace("karpenter-leader-election", &PostParams::default(), &lease)
            .await
            .unwrap();
        let err = controller.wait().await.unwrap_err();
        assert_eq!(err.to_string(), "leader election lost");
        server.shutdown().await;
    }
}
