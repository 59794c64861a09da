//! What every reconciler and singleton loop receives: one [`Context`], built once in the
//! binary and shared as `Arc<Context>` (the controller-rs shape: `reconcile(obj, ctx)`).

use std::sync::Arc;
use std::time::Duration;

use karpenter_cloudprovider::{CloudProvider, MetricsCloudProvider, SharedClock};
use karpenter_scheduling::solver::{MinValuesPolicy, PreferencePolicy};
use karpenter_state::ClusterState;
use kube::Client;
use tokio::sync::watch;

use crate::events::EventRecorder;
use crate::metrics::Metrics;

/// Controller settings parsed once from the operator's options (the binary maps its `Settings`
/// into this; nothing here reads the environment).
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// `BATCH_IDLE_DURATION`.
    pub batch_idle_duration: Duration,
    /// `BATCH_MAX_DURATION`.
    pub batch_max_duration: Duration,
    /// `PREFERENCE_POLICY`.
    pub preference_policy: PreferencePolicy,
    /// `MIN_VALUES_POLICY`.
    pub min_values_policy: MinValuesPolicy,
    /// `FEATURE_GATES` SpotToSpotConsolidation.
    pub spot_to_spot_consolidation: bool,
    /// `FEATURE_GATES` NodeRepair.
    pub node_repair: bool,
    /// `FEATURE_GATES` ReservedCapacity.
    pub reserved_capacity: bool,
    /// `CLUSTER_NAME` (may be empty for the simulated provider).
    pub cluster_name: String,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            batch_idle_duration: Duration::from_secs(1),
            batch_max_duration: Duration::from_secs(10),
            preference_policy: PreferencePolicy::Respect,
            min_values_policy: MinValuesPolicy::Strict,
            spot_to_spot_consolidation: false,
            node_repair: false,
            reserved_capacity: true,
            cluster_name: String::new(),
        }
    }
}

/// Shared dependencies of all controllers.
pub struct Context {
    /// Kubernetes client (rate limited).
    pub client: Client,
    /// The watch-fed cluster state; hot paths read snapshots, never LIST the API server.
    pub state: Arc<ClusterState>,
    /// The cloud provider, undecorated; use [`Context::cloud_provider`] to call it.
    cloud_provider: Arc<dyn CloudProvider>,
    /// The one metrics registry's handles.
    pub metrics: Arc<Metrics>,
    /// Injected time.
    pub clock: SharedClock,
    /// Event publisher (deduped).
    pub recorder: EventRecorder,
    /// Parsed settings.
    pub settings: ControllerSettings,
    /// Leadership; singleton loops act only while this is `true`.
    pub is_leader: watch::Receiver<bool>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("provider", &self.cloud_provider.name())
            .field("settings", &self.settings)
            .finish()
    }
}

impl Context {
    /// Builds the context.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        state: Arc<ClusterState>,
        cloud_provider: Arc<dyn CloudProvider>,
        metrics: Arc<Metrics>,
        clock: SharedClock,
        recorder: EventRecorder,
        settings: ControllerSettings,
        is_leader: watch::Receiver<bool>,
    ) -> Context {
        Context {
            client,
            state,
            cloud_provider,
            metrics,
            clock,
            recorder,
            settings,
            is_leader,
        }
    }

    /// The cloud provider as seen by `controller`: every call is timed and its errors counted
    /// under `karpenter_cloudprovider_*{controller=…}`, as upstream's decorator does.
    pub fn cloud_provider(
        &self,
        controller: &'static str,
    ) -> MetricsCloudProvider<Arc<dyn CloudProvider>> {
        MetricsCloudProvider::new(
            self.cloud_provider.clone(),
            &self.metrics.cloudprovider,
            controller,
        )
    }

    /// Whether this replica currently leads.
    pub fn leading(&self) -> bool {
        *self.is_leader.borrow()
    }
}
