//! The cluster-state gauges, named as upstream's (`karpenter_cluster_state_*`), registered on a
//! registry handed in (never the default one).

use prometheus::{Gauge, IntGauge, Opts, Registry};

/// Cluster-state gauges.
#[derive(Debug, Clone)]
pub struct StateMetrics {
    /// `karpenter_cluster_state_node_count`: state nodes (NodeClaims plus unclaimed Nodes).
    pub node_count: IntGauge,
    /// `karpenter_cluster_state_synced`: 1 when the synced gate is open.
    pub synced: IntGauge,
    /// `karpenter_cluster_state_unsynced_time_seconds`: how long state has been unsynced.
    pub unsynced_time_seconds: Gauge,
}

impl StateMetrics {
    /// Creates the gauges and registers them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<StateMetrics> {
        let opts = |name: &str, help: &str| {
            Opts::new(name, help)
                .namespace("karpenter")
                .subsystem("cluster_state")
        };
        let m = StateMetrics {
            node_count: IntGauge::with_opts(opts(
                "node_count",
                "Nodes and NodeClaims tracked in cluster state",
            ))?,
            synced: IntGauge::with_opts(opts(
                "synced",
                "1 when cluster state holds every NodeClaim and Node of the API server and no NodeClaim is still launching, else 0",
            ))?,
            unsynced_time_seconds: Gauge::with_opts(opts(
                "unsynced_time_seconds",
                "Seconds cluster state has been unsynced (0 while synced)",
            ))?,
        };
        registry.register(Box::new(m.node_count.clone()))?;
        registry.register(Box::new(m.synced.clone()))?;
        registry.register(Box::new(m.unsynced_time_seconds.clone()))?;
        Ok(m)
    }
}
