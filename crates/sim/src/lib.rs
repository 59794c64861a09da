//! A simulated Kubernetes cluster for tests and the simulator.
//!
//! Owns: the embedded Kubernetes API server ([`apiserver`]) that kube-rs clients, kube-runtime
//! watchers and kubectl talk to over HTTP, and [`SimCluster`], which runs it and (as they are
//! added) the simulated scheduler, kubelet, workload controllers and EC2.
//!
//! Must never depend on: `karpenter-scheduling` (the simulated scheduler checks the autoscaler's
//! decisions and must not agree with them by construction), aws-sdk-*, or the controllers.

pub mod apiserver;
pub mod cluster;
pub mod ec2;

use apiserver::{ApiServer, ApiServerConfig, ApiServerHandle, ServerError};

/// How a simulated cluster runs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The embedded API server.
    pub apiserver: ApiServerConfig,
    /// The simulated scheduler, node agent and workload controllers.
    pub cluster: cluster::ClusterConfig,
}

impl Default for SimConfig {
    /// Pod termination is left to the node agent (`KubeletConfirms`) and PodDisruptionBudget
    /// status to the workload controllers, as in a real cluster.
    fn default() -> Self {
        let mut apiserver = ApiServerConfig::default();
        apiserver.store.pod_termination = apiserver::PodTermination::KubeletConfirms;
        apiserver.pdb_controller = false;
        SimConfig {
            apiserver,
            cluster: cluster::ClusterConfig::default(),
        }
    }
}

/// Errors starting a simulated cluster.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The API server did not start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// No client could be built for the server.
    #[error("building a client for the embedded API server: {0}")]
    Client(#[from] kube::Error),
    /// Karpenter's CRDs could not be built.
    #[error(transparent)]
    Crd(#[from] karpenter_apis::crd::CrdError),
    /// Creating an object through the API failed.
    #[error("creating {what}: {source}")]
    Create {
        /// What was being created.
        what: String,
        /// The API's answer.
        source: kube::Error,
    },
    /// The server's URL did not parse as a URI.
    #[error("API server URL {url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why it did not parse.
        reason: String,
    },
}

impl SimError {
    /// A stable, low-cardinality name for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            SimError::Server(e) => e.category(),
            SimError::Client(_) => "client",
            SimError::Crd(e) => e.category(),
            SimError::Create { .. } => "create",
            SimError::Url { .. } => "url",
        }
    }
}

/// A running simulated cluster: the API server plus the simulated components.
pub struct SimCluster {
    apiserver: ApiServerHandle,
    client: kube::Client,
    components: cluster::Components,
}

impl std::fmt::Debug for SimCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCluster")
            .field("apiserver", &self.apiserver)
            .finish_non_exhaustive()
    }
}

impl SimCluster {
    /// Starts the API server, then the components with a kube-rs client talking to it over HTTP.
    pub async fn start(config: SimConfig) -> Result<Self, SimError> {
        let apiserver = ApiServer::start(config.apiserver).await?;
        let client = match client_for(&apiserver) {
            Ok(c) => c,
            Err(e) => {
                apiserver.shutdown().await;
                return Err(e);
            }
        };
        let components = cluster::Components::start(client.clone(), config.cluster);
        Ok(SimCluster {
            apiserver,
            client,
            components,
        })
    }

    /// A kube-rs client for the API server.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The API server.
    pub fn apiserver(&self) -> &ApiServerHandle {
        &self.apiserver
    }

    /// Stops every component and the server.
    pub async fn shutdown(self) {
        self.components.shutdown().await;
        self.apiserver.shutdown().await;
    }
}

/// A kube-rs client for an embedded API server.
pub fn client_for(apiserver: &ApiServerHandle) -> Result<kube::Client, SimError> {
    let url = apiserver.url();
    let uri = url.parse().map_err(|e| SimError::Url {
        url: url.clone(),
        reason: format!("{e}"),
    })?;
    Ok(kube::Client::try_from(kube::Config::new(uri))?)
}

/// Creates Karpenter's three CRDs (NodePool, NodeClaim, EC2NodeClass) through `client`, as
/// `kubectl apply -f crds/` would on a fresh cluster.
pub async fn install_karpenter_crds(client: &kube::Client) -> Result<(), SimError> {
    let api: kube::Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = kube::Api::all(client.clone());
    for crd in karpenter_apis::crd::all_crds()? {
        let what = crd.metadata.name.clone().unwrap_or_default();
        api.create(&kube::api::PostParams::default(), &crd)
            .await
            .map_err(|source| SimError::Create { what, source })?;
    }
    Ok(())
}
