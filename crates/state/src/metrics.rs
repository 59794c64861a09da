//! The cluster-state gauges (`karpenter_cluster_state_*`). Their families are defined once, in
//! the operator's metrics registry (the controllers crate); this crate only keeps the values
//! current through the handles it is given, so it never registers a metric itself.

use prometheus::Gauge;

/// Handles of the cluster-state gauges.
#[derive(Debug, Clone)]
pub struct StateMetrics {
    /// `karpenter_cluster_state_node_count`: state nodes (NodeClaims plus unclaimed Nodes).
    pub node_count: Gauge,
    /// `karpenter_cluster_state_synced`: 1 when the synced gate is open, else 0.
    pub synced: Gauge,
    /// `karpenter_cluster_state_unsynced_time_seconds`: how long state has been unsynced.
    pub unsynced_time_seconds: Gauge,
}

impl StateMetrics {
    /// Wraps gauges already registered by the caller.
    pub fn new(node_count: Gauge, synced: Gauge, unsynced_time_seconds: Gauge) -> StateMetrics {
        StateMetrics {
            node_count,
            synced,
            unsynced_time_seconds,
        }
    }
}
