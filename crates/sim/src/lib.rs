//! A simulated Kubernetes cluster for tests and the simulator.
//!
//! Owns: the embedded Kubernetes API server ([`apiserver`]) that kube-rs clients, kube-runtime
//! watchers and kubectl talk to over HTTP, and [`SimCluster`], which runs it and (as they are
//! added) the simulated scheduler, kubelet, workload controllers and EC2.
//!
//! Must never depend on: `karpenter-scheduling` (the simulated scheduler checks the autoscaler's
//! decisions and must not agree with them by construction), aws-sdk-*, or the controllers.

pub mod apiserver;

use apiserver::{ApiServer, ApiServerConfig, ApiServerHandle, ServerError};

/// How a simulated cluster runs.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// The embedded API server.
    pub apiserver: ApiServerConfig,
}

/// A running simulated cluster: the API server plus the simulated components.
#[derive(Debug)]
pub struct SimCluster {
    apiserver: ApiServerHandle,
}

impl SimCluster {
    /// Starts the API server (components are spawned here as they are added).
    pub async fn start(config: SimConfig) -> Result<Self, ServerError> {
        let apiserver = ApiServer::start(config.apiserver).await?;
        Ok(SimCluster { apiserver })
    }

    /// The API server.
    pub fn apiserver(&self) -> &ApiServerHandle {
        &self.apiserver
    }

    /// Stops every component and the server.
    pub async fn shutdown(self) {
        self.apiserver.shutdown().await;
    }
}
