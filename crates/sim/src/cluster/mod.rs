//! The simulated cluster components that make the embedded API server a living cluster: a
//! scheduler, a kubelet stand-in for every Node, and the workload controllers.
//!
//! Every component is a tokio task that talks to an API server over HTTP through a kube-rs
//! [`kube::Client`] with kube-runtime watch caches, so they would run against any API server.
//! Each pass is level-triggered (it reads its caches and converges), runs on change, on its own
//! timers and on a periodic resync, logs and retries API errors with backoff, and never panics.
//!
//! Simplified against the real components (on purpose, for a fast and deterministic simulator):
//! no preemption, no volume or DRA filters, no preferred (soft) affinity/spread scoring, no
//! rolling-update pacing, no `minReadySeconds`, no adoption of orphaned pods by selector, no probes (pods are Ready once
//! Running), and Nodes never become NotReady again once the agent marks them Ready.

pub mod node_agent;
pub mod resources;
mod runtime;
pub mod scheduler;
pub mod workloads;

use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::apiserver::object::{SharedClock, SystemClock};
pub use node_agent::{NodeAgentConfig, STARTUP_TAINTS_ANNOTATION};
pub use runtime::ShutdownRx;
pub use scheduler::{SchedulerConfig, Scoring};
pub use workloads::WorkloadConfig;

/// Which components run and how.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The scheduler; `None` leaves pods unscheduled (another scheduler may run).
    pub scheduler: Option<SchedulerConfig>,
    /// The node agent; `None` leaves Nodes and pods as they are.
    pub node_agent: Option<NodeAgentConfig>,
    /// The workload controllers; `None` leaves Deployments and DaemonSets without pods.
    pub workloads: Option<WorkloadConfig>,
    /// Time source for timestamps the components write.
    pub clock: SharedClock,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            scheduler: Some(SchedulerConfig::default()),
            node_agent: Some(NodeAgentConfig::default()),
            workloads: Some(WorkloadConfig::default()),
            clock: std::sync::Arc::new(SystemClock),
        }
    }
}

impl ClusterConfig {
    /// Short delays for tests: nodes Ready after 100ms, startup taints gone 100ms later, pods
    /// Running 50ms after binding, terminations finished within 200ms, resync every second.
    pub fn fast() -> Self {
        use std::time::Duration;
        ClusterConfig {
            scheduler: Some(SchedulerConfig {
                resync: Duration::from_secs(1),
                debounce: Duration::from_millis(5),
                ..SchedulerConfig::default()
            }),
            node_agent: Some(NodeAgentConfig {
                ready_delay: Duration::from_millis(100),
                startup_taint_delay: Duration::from_millis(100),
                pod_start_delay: Duration::from_millis(50),
                graceful_deletion_cap: Duration::from_millis(200),
                resync: Duration::from_secs(1),
                debounce: Duration::from_millis(5),
                ..NodeAgentConfig::default()
            }),
            workloads: Some(WorkloadConfig {
                resync: Duration::from_secs(1),
                debounce: Duration::from_millis(5),
                ..WorkloadConfig::default()
            }),
            clock: std::sync::Arc::new(SystemClock),
        }
    }
}

/// The running components.
#[derive(Debug)]
pub struct Components {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Components {
    /// Spawns the configured components against `client`'s API server.
    pub fn start(client: Client, config: ClusterConfig) -> Self {
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(c) = config.scheduler {
            tasks.push(tokio::spawn(
                scheduler::run(client.clone(), c, config.clock.clone(), rx.clone())
                    .instrument(tracing::info_span!("scheduler")),
            ));
        }
        if let Some(c) = config.node_agent {
            tasks.push(tokio::spawn(
                node_agent::run(client.clone(), c, config.clock.clone(), rx.clone())
                    .instrument(tracing::info_span!("node-agent")),
            ));
        }
        if let Some(c) = config.workloads {
            tasks.push(tokio::spawn(
                workloads::run(client, c, config.clock.clone(), rx)
                    .instrument(tracing::info_span!("workload-controllers")),
            ));
        }
        Components { shutdown, tasks }
    }

    /// Signals every component to stop and waits for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
