//! An in-process Kubernetes API server that kube-rs clients, kube-runtime watchers and kubectl
//! talk to over plain HTTP.
//!
//! Layers: [`store`] holds objects and apiserver storage semantics (revisions, finalizers,
//! graceful deletion, garbage collection, watch history) without HTTP, each object kept as its
//! serialized JSON plus a small index ([`stored`]); [`registry`] lists what is
//! served; `http` routes requests, admits objects ([`builtin`], [`custom`]), applies patches and
//! subresources, streams watches and renders tables; [`faults`] injects failures for tests.

pub mod builtin;
pub mod custom;
pub mod discovery;
pub mod error;
pub mod faults;
pub mod filter;
mod http;
pub mod object;
mod protobuf;
pub mod registry;
pub mod store;
pub mod stored;
pub mod subresource;
pub mod table;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use karpenter_apis::validation::CrdValidator;
use tokio::sync::watch as tokio_watch;
use tracing::Instrument;

pub use error::ApiError;
pub use faults::{FaultRule, Faults, Trigger, Verb};
pub use object::{Clock, SharedClock, SystemClock};
pub use store::{PodTermination, Store, StoreConfig};

/// Errors starting or stopping the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listener could not be bound.
    #[error("binding 127.0.0.1:{port}: {source}")]
    Bind {
        /// The requested port.
        port: u16,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The kubeconfig could not be written.
    #[error("writing kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Where.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl ServerError {
    /// A stable, low-cardinality name for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            ServerError::Bind { .. } => "bind",
            ServerError::Kubeconfig { .. } => "kubeconfig",
        }
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Store tuning (history window, seeds, pod termination).
    pub store: StoreConfig,
    /// Time source for timestamps, ages and grace periods.
    pub clock: SharedClock,
    /// How often idle watches get a bookmark (when they asked for bookmarks).
    pub bookmark_interval: Duration,
    /// How often time-driven cleanup runs (grace expiry, namespace and foreground deletion,
    /// PodDisruptionBudget status).
    pub sweep_interval: Duration,
    /// Watch duration when the client gives no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
    /// Reported by `/version`.
    pub git_version: String,
    /// Seed for fault injection rates.
    pub fault_seed: u64,
    /// Whether the server keeps PodDisruptionBudget status up to date itself (what
    /// kube-controller-manager's disruption controller does), which eviction relies on.
    pub pdb_controller: bool,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            port: 0,
            store: StoreConfig::default(),
            clock: Arc::new(SystemClock),
            bookmark_interval: Duration::from_secs(60),
            sweep_interval: Duration::from_millis(500),
            default_watch_timeout: Duration::from_secs(1800),
            git_version: "v1.34.1".to_string(),
            fault_seed: 1,
            pdb_controller: true,
        }
    }
}

/// Shared state of a running server.
pub(crate) struct Server {
    pub(crate) registry: registry::Registry,
    pub(crate) store: Arc<Store>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) config: ApiServerConfig,
    pub(crate) validators: RwLock<HashMap<String, Arc<CrdValidator>>>,
    pub(crate) shutdown: tokio_watch::Receiver<bool>,
}

impl Server {
    pub(crate) fn validator(&self, storage: &str) -> Option<Arc<CrdValidator>> {
        self.validators
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(storage)
            .cloned()
    }
}

/// Starts [`ApiServer`]s.
#[derive(Debug)]
pub struct ApiServer;

impl ApiServer {
    /// Binds 127.0.0.1, creates the default namespaces and serves until shut down.
    pub async fn start(config: ApiServerConfig) -> Result<ApiServerHandle, ServerError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|source| ServerError::Bind {
                port: config.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            port: config.port,
            source,
        })?;
        let store = Arc::new(Store::new(config.store.clone(), config.clock.clone()));
        let registry = registry::Registry::with_builtins();
        for res in registry.all() {
            store.register_table(res.table_meta());
        }
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"}
            });
            if let Err(e) = store.create("namespaces", "", obj, &store::WriteOptions::default()) {
                tracing::error!(error = %e, ns, "creating a default namespace failed");
            }
        }
        let faults = Arc::new(Faults::new(config.fault_seed, store.clone()));
        let (shutdown_tx, shutdown_rx) = tokio_watch::channel(false);
        let server = Arc::new(Server {
            registry,
            store: store.clone(),
            faults: faults.clone(),
            config: config.clone(),
            validators: RwLock::new(HashMap::new()),
            shutdown: shutdown_rx.clone(),
        });
        let app = http::router(server.clone());
        let mut serve_shutdown = shutdown_rx.clone();
        let serve = tokio::spawn(
            async move {
                let result = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = serve_shutdown.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = result {
                    tracing::error!(error = %e, "API server stopped with an error");
                }
            }
            .instrument(tracing::info_span!("apiserver", %addr)),
        );
        let sweeper_server = server.clone();
        let mut sweep_shutdown = shutdown_rx;
        let sweeper = tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(sweeper_server.config.sweep_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            sweeper_server.store.sweep();
                            if sweeper_server.config.pdb_controller {
                                subresource::refresh_pdb_statuses(&sweeper_server);
                            }
                        }
                        _ = sweep_shutdown.wait_for(|s| *s) => break,
                    }
                }
            }
            .instrument(tracing::info_span!("apiserver-sweeper")),
        );
        Ok(ApiServerHandle {
            addr,
            server,
            shutdown: shutdown_tx,
            tasks: vec![serve, sweeper],
        })
    }
}

/// A running server.
pub struct ApiServerHandle {
    addr: SocketAddr,
    server: Arc<Server>,
    shutdown: tokio_watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for ApiServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServerHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ApiServerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig with one cluster/user/context named `karpenter-sim`, no credentials.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: karpenter-sim\n  cluster:\n    server: {url}\nusers:\n- name: karpenter-sim\n  user: {{}}\ncontexts:\n- name: karpenter-sim\n  context:\n    cluster: karpenter-sim\n    user: karpenter-sim\n    namespace: default\ncurrent-context: karpenter-sim\npreferences: {{}}\n",
            url = self.url()
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), ServerError> {
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| ServerError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// Fault injection controls.
    pub fn faults(&self) -> Arc<Faults> {
        self.server.faults.clone()
    }

    /// Direct access to the store (for simulated components living in this process).
    pub fn store(&self) -> Arc<Store> {
        self.server.store.clone()
    }

    /// Runs the time-driven cleanup now (after advancing a virtual clock).
    pub fn sweep(&self) {
        self.server.store.sweep();
        if self.server.config.pdb_controller {
            subresource::refresh_pdb_statuses(&self.server);
        }
    }

    /// Stops serving, closes watches and waits for the server tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
