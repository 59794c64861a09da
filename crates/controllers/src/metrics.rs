//! The one metrics registry: typed handles for every upstream metric we emit.
//!
//! Names, types, label names and bucket sets are upstream's (see the reference's metrics section)
//! so upstream's Grafana dashboards and alerts work unchanged. [`Metrics::new`] registers every
//! family on the registry built in `main`; nothing here touches a default or global registry.
//!
//! Durations are recorded with drop guards (`HistogramVec::start_timer`, [`SummaryTimer`],
//! [`ReconcileTimer`]) so an early return or `?` still records the time spent.

pub mod summary;

use std::time::Instant;

use karpenter_apis::labels;
use karpenter_cloudprovider::CloudProviderMetrics;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    core::Collector,
};

pub use summary::{SummaryHandle, SummaryMetric, SummaryTimer, SummaryVec};

/// Upstream's `DurationBuckets`: controller-runtime's reconcile buckets extended to 10 minutes.
pub const DURATION_BUCKETS: [f64; 45] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0, 120.0, 150.0, 300.0, 450.0, 600.0,
];

/// controller-runtime's `controller_runtime_reconcile_time_seconds` buckets (up to 60 s).
pub const RECONCILE_TIME_BUCKETS: [f64; 40] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0,
];

/// `karpenter_nodeclaims_instance_termination_duration_seconds`: 1, 2, 4, …, 1024 seconds.
pub const INSTANCE_TERMINATION_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// `karpenter_nodeclaims_termination_duration_seconds`: 1, 2, 4, …, 2048 seconds.
pub const NODECLAIM_TERMINATION_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];

const MINUTE: f64 = 60.0;
const HOUR: f64 = 60.0 * MINUTE;
const DAY: f64 = 24.0 * HOUR;

/// `karpenter_nodes_lifetime_duration_seconds`: 15 minutes to 30 days.
pub const NODE_LIFETIME_BUCKETS: [f64; 21] = [
    15.0 * MINUTE,
    30.0 * MINUTE,
    45.0 * MINUTE,
    HOUR,
    2.0 * HOUR,
    4.0 * HOUR,
    6.0 * HOUR,
    8.0 * HOUR,
    10.0 * HOUR,
    12.0 * HOUR,
    16.0 * HOUR,
    20.0 * HOUR,
    DAY,
    2.0 * DAY,
    3.0 * DAY,
    5.0 * DAY,
    10.0 * DAY,
    15.0 * DAY,
    20.0 * DAY,
    25.0 * DAY,
    30.0 * DAY,
];

/// `karpenter_consolidation_score` buckets.
pub const CONSOLIDATION_SCORE_BUCKETS: [f64; 8] = [0.1, 0.25, 0.33, 0.5, 1.0, 2.0, 5.0, 10.0];

/// client-go/controller-runtime workqueue latency buckets: 10 ns × 10^n, 12 buckets.
pub const WORKQUEUE_BUCKETS: [f64; 12] = [
    1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0,
];

/// Buckets of the per-kind `operator_<kind>_status_condition_transition_seconds` and
/// `operator_<kind>_termination_duration_seconds`: 0.5 s × 2^n, 15 buckets (up to 8192 s).
pub const STATUS_CONDITION_BUCKETS: [f64; 15] = [
    0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];

/// Prometheus client_golang's `DefBuckets`, which the deprecated unprefixed
/// `operator_status_condition_transition_seconds`/`operator_termination_duration_seconds` keep.
pub const PROMETHEUS_DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Object labels copied onto NodeClaim status metrics (upstream: the provider's NodeClass
/// label, then the NodePool label). Karpenter-rs serves the AWS NodeClass only, so the
/// NodeClass label is fixed rather than asked of the provider at registration time.
pub const NODECLAIM_STATUS_LABELS: &[&str] = &[labels::AWS_EC2NODECLASS, labels::NODEPOOL];

/// Object labels copied onto Node status metrics: those of NodeClaims plus `initialized`.
pub const NODE_STATUS_LABELS: &[&str] = &[
    labels::AWS_EC2NODECLASS,
    labels::NODEPOOL,
    labels::INITIALIZED,
];

/// An object label key as a metric label name, as operatorpkg spells it (`/`, `.`, `-` → `_`).
pub fn status_label_name(key: &str) -> String {
    key.replace(['/', '.', '-'], "_")
}

/// Labels shared by the disruption counters (`reason`, `nodepool`, `capacity_type`,
/// `consolidation_policy`, `termination_mode`).
const DISRUPTION_LABELS: &[&str] = &[
    "reason",
    "nodepool",
    "capacity_type",
    "consolidation_policy",
    "termination_mode",
];

/// The well-known node label keys that become labels of the per-node gauges, with their metric
/// label names (the part after `/`, lowercased, `-` → `_`), sorted by label name.
pub fn node_label_names() -> Vec<(&'static str, String)> {
    let mut names: Vec<(&'static str, String)> = labels::CORE_WELL_KNOWN_LABELS
        .iter()
        .chain(labels::AWS_WELL_KNOWN_LABELS)
        .map(|key| {
            let suffix = key.rsplit_once('/').map_or(*key, |(_, s)| s);
            (*key, suffix.to_lowercase().replace('-', "_"))
        })
        .collect();
    names.sort_by(|a, b| a.1.cmp(&b.1));
    names.dedup_by(|a, b| a.1 == b.1);
    names
}

/// Label names of `karpenter_nodes_current_lifetime_seconds`: the well-known node labels, then
/// `node_name`, `phase`, `managed`.
pub fn node_lifetime_label_names() -> Vec<String> {
    let mut names: Vec<String> = node_label_names().into_iter().map(|(_, n)| n).collect();
    names.extend(["node_name", "phase", "managed"].map(String::from));
    names
}

/// Label names of the per-node resource gauges: those of the lifetime gauge plus `resource_type`.
pub fn node_resource_label_names() -> Vec<String> {
    let mut names = node_lifetime_label_names();
    names.push("resource_type".to_string());
    names
}

/// NodeClaim lifecycle metrics.
#[derive(Debug, Clone)]
pub struct NodeClaimMetrics {
    /// `karpenter_nodeclaims_created_total{reason,nodepool,min_values_relaxed}`.
    pub created: IntCounterVec,
    /// `karpenter_nodeclaims_terminated_total{nodepool,capacity_type,zone}`.
    pub terminated: IntCounterVec,
    /// `karpenter_nodeclaims_disrupted_total{reason,nodepool,capacity_type,consolidation_policy,termination_mode}`.
    pub disrupted: IntCounterVec,
    /// `karpenter_nodeclaims_instance_termination_duration_seconds{nodepool}`.
    pub instance_termination_duration: HistogramVec,
    /// `karpenter_nodeclaims_termination_duration_seconds{nodepool}`.
    pub termination_duration: HistogramVec,
    /// `karpenter_nodeclaims_unhealthy_disrupted_total{condition,nodepool,capacity_type,image_id}`.
    pub unhealthy_disrupted: IntCounterVec,
}

/// Node lifecycle and per-node state metrics.
#[derive(Debug, Clone)]
pub struct NodeMetrics {
    /// `karpenter_nodes_created_total{nodepool,zone}`.
    pub created: IntCounterVec,
    /// `karpenter_nodes_terminated_total{nodepool,zone}`.
    pub terminated: IntCounterVec,
    /// `karpenter_nodes_termination_duration_seconds{nodepool}` (summary).
    pub termination_duration: SummaryVec,
    /// `karpenter_nodes_lifetime_duration_seconds{nodepool}`.
    pub lifetime_duration: HistogramVec,
    /// `karpenter_nodes_drained_total{nodepool}`.
    pub drained: IntCounterVec,
    /// `karpenter_nodes_allocatable{<node labels>,resource_type}`.
    pub allocatable: GaugeVec,
    /// `karpenter_nodes_total_pod_requests`.
    pub total_pod_requests: GaugeVec,
    /// `karpenter_nodes_total_pod_limits`.
    pub total_pod_limits: GaugeVec,
    /// `karpenter_nodes_total_daemon_requests`.
    pub total_daemon_requests: GaugeVec,
    /// `karpenter_nodes_total_daemon_limits`.
    pub total_daemon_limits: GaugeVec,
    /// `karpenter_nodes_system_overhead` (capacity − allocatable).
    pub system_overhead: GaugeVec,
    /// `karpenter_nodes_current_lifetime_seconds{<node labels>}`.
    pub current_lifetime: GaugeVec,
}

/// Pod metrics.
#[derive(Debug, Clone)]
pub struct PodMetrics {
    /// `karpenter_pods_disruption_initiated_total` (same labels as nodeclaims_disrupted).
    pub disruption_initiated: IntCounterVec,
    /// `karpenter_pods_eviction_requests_total{code}`.
    pub eviction_requests: IntCounterVec,
    /// `karpenter_pods_drained_total{reason}`.
    pub drained: IntCounterVec,
    /// `karpenter_pods_state{name,namespace,owner,node,scheduled,nodepool,zone,arch,capacity_type,instance_type,phase,ready,managed}`.
    pub state: GaugeVec,
    /// `karpenter_pods_startup_duration_seconds` (summary, no labels).
    pub startup_duration: SummaryMetric,
    /// `karpenter_pods_unstarted_time_seconds{name,namespace}`.
    pub unstarted_time: GaugeVec,
    /// `karpenter_pods_bound_duration_seconds`.
    pub bound_duration: HistogramVec,
    /// `karpenter_pods_unbound_time_seconds{name,namespace}`.
    pub unbound_time: GaugeVec,
    /// `karpenter_pods_provisioning_bound_duration_seconds`.
    pub provisioning_bound_duration: HistogramVec,
    /// `karpenter_pods_provisioning_startup_duration_seconds`.
    pub provisioning_startup_duration: HistogramVec,
    /// `karpenter_pods_provisioning_unbound_time_seconds{name,namespace}`.
    pub provisioning_unbound_time: GaugeVec,
    /// `karpenter_pods_provisioning_unstarted_time_seconds{name,namespace}`.
    pub provisioning_unstarted_time: GaugeVec,
    /// `karpenter_pods_provisioning_scheduling_undecided_time_seconds{name,namespace}`.
    pub provisioning_scheduling_undecided_time: GaugeVec,
    /// `karpenter_pods_scheduling_decision_duration_seconds`.
    pub scheduling_decision_duration: HistogramVec,
}

/// NodePool and cluster-wide gauges.
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    /// `karpenter_cluster_utilization_percent{resource_type}`.
    pub utilization_percent: GaugeVec,
    /// `karpenter_nodepools_limit{resource_type,nodepool}`.
    pub nodepool_limit: GaugeVec,
    /// `karpenter_nodepools_usage{resource_type,nodepool}`.
    pub nodepool_usage: GaugeVec,
    /// `karpenter_nodepools_cost_total{nodepool}`.
    pub nodepool_cost: GaugeVec,
    /// `karpenter_nodepools_cost_tracker_errors_total{nodepool}`.
    pub nodepool_cost_tracker_errors: IntCounterVec,
    /// `karpenter_cluster_state_node_count`.
    pub state_node_count: GaugeVec,
    /// `karpenter_cluster_state_synced` (0 or 1).
    pub state_synced: GaugeVec,
    /// `karpenter_cluster_state_unsynced_time_seconds`.
    pub state_unsynced_time: GaugeVec,
}

/// Scheduler metrics.
#[derive(Debug, Clone)]
pub struct SchedulerMetrics {
    /// `karpenter_scheduler_scheduling_duration_seconds{controller}`.
    pub scheduling_duration: HistogramVec,
    /// `karpenter_scheduler_queue_depth{controller,scheduling_id}`.
    pub queue_depth: GaugeVec,
    /// `karpenter_scheduler_unfinished_work_seconds{controller,scheduling_id}`.
    pub unfinished_work: GaugeVec,
    /// `karpenter_scheduler_unschedulable_pods_count{controller}`.
    pub unschedulable_pods: GaugeVec,
    /// `karpenter_scheduler_ignored_pods_count`.
    pub ignored_pods: GaugeVec,
    /// `karpenter_scheduler_pending_pods_by_effective_zone_count{controller,zone}`.
    pub pending_pods_by_effective_zone: GaugeVec,
}

/// Voluntary-disruption metrics.
#[derive(Debug, Clone)]
pub struct DisruptionMetrics {
    /// `karpenter_voluntary_disruption_decision_evaluation_duration_seconds{reason,consolidation_type}`.
    pub evaluation_duration: HistogramVec,
    /// `karpenter_voluntary_disruption_decisions_total{decision,reason,consolidation_type}`.
    pub decisions: IntCounterVec,
    /// `karpenter_voluntary_disruption_decisions_by_nodepool_total{nodepool,decision,reason,consolidation_type}`.
    pub decisions_by_nodepool: IntCounterVec,
    /// `karpenter_voluntary_disruption_eligible_nodes{reason}`.
    pub eligible_nodes: GaugeVec,
    /// `karpenter_voluntary_disruption_consolidation_timeouts_total{consolidation_type}`.
    pub consolidation_timeouts: IntCounterVec,
    /// `karpenter_voluntary_disruption_failed_validations_total{consolidation_type}`.
    pub failed_validations: IntCounterVec,
    /// `karpenter_voluntary_disruption_queue_failures_total{decision,reason,consolidation_type}`.
    pub queue_failures: IntCounterVec,
    /// `karpenter_nodepools_allowed_disruptions{nodepool,reason}` (CamelCase reasons).
    pub allowed_disruptions: GaugeVec,
    /// `karpenter_nodepools_nodes_consuming_budgets{nodepool,reason}`.
    pub nodes_consuming_budgets: GaugeVec,
    /// `karpenter_consolidation_score{decision,nodepool,policy}`.
    pub consolidation_score: HistogramVec,
    /// `karpenter_consolidation_moves_total{decision,nodepool,policy}`.
    pub consolidation_moves: IntCounterVec,
}

/// controller-runtime's per-controller metrics, which upstream dashboards query.
#[derive(Debug, Clone)]
pub struct ControllerRuntimeMetrics {
    /// `controller_runtime_reconcile_total{controller,result}`.
    pub reconcile_total: IntCounterVec,
    /// `controller_runtime_reconcile_errors_total{controller}`.
    pub reconcile_errors: IntCounterVec,
    /// `controller_runtime_terminal_reconcile_errors_total{controller}`.
    pub terminal_reconcile_errors: IntCounterVec,
    /// `controller_runtime_reconcile_panics_total{controller}`.
    pub reconcile_panics: IntCounterVec,
    /// `controller_runtime_reconcile_time_seconds{controller}`.
    pub reconcile_time: HistogramVec,
    /// `controller_runtime_max_concurrent_reconciles{controller}`.
    pub max_concurrent_reconciles: IntGaugeVec,
    /// `controller_runtime_active_workers{controller}`.
    pub active_workers: IntGaugeVec,
}

/// Result label values of `controller_runtime_reconcile_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileResult {
    /// Finished without error or requeue.
    Success,
    /// Failed (also counted in `controller_runtime_reconcile_errors_total`).
    Error,
    /// Asked to be requeued with backoff.
    Requeue,
    /// Asked to be requeued after a fixed delay.
    RequeueAfter,
}

impl ReconcileResult {
    /// The `result` label value.
    pub fn as_label(self) -> &'static str {
        match self {
            ReconcileResult::Success => "success",
            ReconcileResult::Error => "error",
            ReconcileResult::Requeue => "requeue",
            ReconcileResult::RequeueAfter => "requeue_after",
        }
    }
}

impl ControllerRuntimeMetrics {
    /// Starts timing one reconcile of `controller`; see [`ReconcileTimer`].
    pub fn start_reconcile(&self, controller: &str) -> ReconcileTimer {
        ReconcileTimer {
            metrics: self.clone(),
            controller: controller.to_string(),
            start: Instant::now(),
            result: None,
        }
    }
}

/// Times one reconcile: on drop it observes `controller_runtime_reconcile_time_seconds` and
/// counts `controller_runtime_reconcile_total` with the result set by [`ReconcileTimer::finish`]
/// (a reconcile dropped without a result — cancelled mid-way — is timed but not counted).
#[derive(Debug)]
#[must_use = "the reconcile is recorded when the timer is dropped"]
pub struct ReconcileTimer {
    metrics: ControllerRuntimeMetrics,
    controller: String,
    start: Instant,
    result: Option<ReconcileResult>,
}

impl ReconcileTimer {
    /// Records how the reconcile ended.
    pub fn finish(mut self, result: ReconcileResult) {
        self.result = Some(result);
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        let controller = [self.controller.as_str()];
        self.metrics
            .reconcile_time
            .with_label_values(&controller)
            .observe(self.start.elapsed().as_secs_f64());
        if let Some(result) = self.result {
            self.metrics
                .reconcile_total
                .with_label_values(&[self.controller.as_str(), result.as_label()])
                .inc();
            if result == ReconcileResult::Error {
                self.metrics
                    .reconcile_errors
                    .with_label_values(&controller)
                    .inc();
            }
        }
    }
}

/// Workqueue metrics (label `name` = controller name).
#[derive(Debug, Clone)]
pub struct WorkqueueMetrics {
    /// `workqueue_depth{name}`.
    pub depth: IntGaugeVec,
    /// `workqueue_adds_total{name}`.
    pub adds: IntCounterVec,
    /// `workqueue_queue_duration_seconds{name}`.
    pub queue_duration: HistogramVec,
    /// `workqueue_work_duration_seconds{name}`.
    pub work_duration: HistogramVec,
    /// `workqueue_unfinished_work_seconds{name}`.
    pub unfinished_work: GaugeVec,
    /// `workqueue_longest_running_processor_seconds{name}`.
    pub longest_running_processor: GaugeVec,
    /// `workqueue_retries_total{name}`.
    pub retries: IntCounterVec,
}

/// operatorpkg's status-condition and termination families for one object kind (or, for the
/// deprecated unprefixed set, shared by kinds and told apart by `group`/`kind` labels).
/// `extra` below means the kind's copied object labels ([`NODECLAIM_STATUS_LABELS`],
/// [`NODE_STATUS_LABELS`]; none for NodePool) or `group`,`kind` for the deprecated set.
#[derive(Debug, Clone)]
pub struct StatusConditionMetrics {
    /// `…_status_condition_count{namespace,name,type,status,reason,+extra}`.
    pub count: GaugeVec,
    /// `…_status_condition_current_status_seconds{namespace,name,type,status,reason,+extra}`.
    pub current_status_seconds: GaugeVec,
    /// `…_status_condition_transitions_total{type,status,reason,+extra}`.
    pub transitions: IntCounterVec,
    /// `…_status_condition_transition_seconds{type,status,+extra}`: time spent in `status`.
    pub transition_seconds: HistogramVec,
    /// `…_termination_current_time_seconds{namespace,name,+extra}`.
    pub termination_current_time: GaugeVec,
    /// `…_termination_duration_seconds{+extra}`.
    pub termination_duration: HistogramVec,
}

/// The status-condition families of every kind Karpenter watches.
#[derive(Debug, Clone)]
pub struct StatusMetrics {
    /// `operator_nodeclaim_*`.
    pub nodeclaim: StatusConditionMetrics,
    /// `operator_nodepool_*`.
    pub nodepool: StatusConditionMetrics,
    /// `operator_node_*`.
    pub node: StatusConditionMetrics,
    /// Deprecated `operator_status_condition_*` / `operator_termination_*` (NodeClaim and
    /// NodePool only, as upstream's `EmitDeprecatedMetrics`).
    pub deprecated: StatusConditionMetrics,
}

/// What `karpenter_build_info` reports. Label names keep upstream's Go spelling
/// (`goversion`, `goarch`) so existing queries match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// Release version.
    pub version: String,
    /// Toolchain version (the Rust compiler here).
    pub goversion: String,
    /// CPU architecture in Go's spelling (`amd64`, `arm64`).
    pub goarch: String,
    /// Source commit.
    pub commit: String,
}

impl BuildInfo {
    /// Architecture of this build, spelled as Go's `GOARCH`.
    pub fn this_arch() -> &'static str {
        match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        }
    }
}

/// Every metric family Karpenter emits, registered on one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// NodeClaim lifecycle.
    pub nodeclaims: NodeClaimMetrics,
    /// Node lifecycle and per-node state.
    pub nodes: NodeMetrics,
    /// Pods.
    pub pods: PodMetrics,
    /// NodePool and cluster-state gauges.
    pub cluster: ClusterMetrics,
    /// The scheduler.
    pub scheduler: SchedulerMetrics,
    /// Voluntary disruption.
    pub disruption: DisruptionMetrics,
    /// controller-runtime per-controller metrics.
    pub controller_runtime: ControllerRuntimeMetrics,
    /// Workqueues.
    pub workqueue: WorkqueueMetrics,
    /// Cloud-provider call durations and errors (shared by every decorator).
    pub cloudprovider: CloudProviderMetrics,
    /// `leader_election_master_status{name}`: 1 while this process leads.
    pub leader_election_master_status: IntGaugeVec,
    /// `karpenter_build_info{version,goversion,goarch,commit}` = 1.
    pub build_info: IntGaugeVec,
    /// operatorpkg's status-condition and termination families.
    pub status: StatusMetrics,
}

/// Registers collectors on one registry, failing on the first error (a duplicate name is a bug).
struct Registrar<'a> {
    registry: &'a Registry,
}

impl Registrar<'_> {
    fn register<C: Collector + Clone + 'static>(&self, c: C) -> prometheus::Result<C> {
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        self.register(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
        self.register(GaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn int_gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntGaugeVec> {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> prometheus::Result<HistogramVec> {
        self.register(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )?)
    }
}

/// Borrowed label names.
fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

impl Registrar<'_> {
    /// One kind's status families. `prefix` is `operator_<kind>_` or `operator_` (deprecated).
    fn status(
        &self,
        prefix: &str,
        extra: &[&str],
        buckets: &[f64],
    ) -> prometheus::Result<StatusConditionMetrics> {
        let with = |base: &[&str]| -> Vec<String> {
            base.iter()
                .map(|s| s.to_string())
                .chain(extra.iter().map(|k| status_label_name(k)))
                .collect()
        };
        let per_condition = with(&["namespace", "name", "type", "status", "reason"]);
        let transitions = with(&["type", "status", "reason"]);
        let transition_seconds = with(&["type", "status"]);
        let terminating = with(&["namespace", "name"]);
        let terminated = with(&[]);
        Ok(StatusConditionMetrics {
            count: self.gauge(
                &format!("{prefix}status_condition_count"),
                "1 for each status condition of each object, by type, status and reason.",
                &names(&per_condition),
            )?,
            current_status_seconds: self.gauge(
                &format!("{prefix}status_condition_current_status_seconds"),
                "Seconds each status condition of each object has had its current status.",
                &names(&per_condition),
            )?,
            transitions: self.counter(
                &format!("{prefix}status_condition_transitions_total"),
                "Observed status-condition transitions, by type and the status and reason reached.",
                &names(&transitions),
            )?,
            transition_seconds: self.histogram(
                &format!("{prefix}status_condition_transition_seconds"),
                "Seconds a status condition had a status before it changed, by type and that status.",
                &names(&transition_seconds),
                buckets,
            )?,
            termination_current_time: self.gauge(
                &format!("{prefix}termination_current_time_seconds"),
                "Seconds each object has been terminating so far.",
                &names(&terminating),
            )?,
            termination_duration: self.histogram(
                &format!("{prefix}termination_duration_seconds"),
                "Seconds from an object's deletion request until it was gone.",
                &names(&terminated),
                buckets,
            )?,
        })
    }
}

impl Metrics {
    /// Creates every family and registers it on `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = Registrar { registry };
        let node_resource_labels = node_resource_label_names();
        let node_resource_labels: Vec<&str> =
            node_resource_labels.iter().map(String::as_str).collect();
        let node_lifetime_labels = node_lifetime_label_names();
        let node_lifetime_labels: Vec<&str> =
            node_lifetime_labels.iter().map(String::as_str).collect();
        let node_gauge = |name: &str, help: &str| r.gauge(name, help, &node_resource_labels);
        let name_ns = &["name", "namespace"];

        let nodeclaims = NodeClaimMetrics {
            created: r.counter(
                "karpenter_nodeclaims_created_total",
                "NodeClaims created, by why they were created and their NodePool.",
                &["reason", "nodepool", "min_values_relaxed"],
            )?,
            terminated: r.counter(
                "karpenter_nodeclaims_terminated_total",
                "NodeClaims whose termination finished, by NodePool, capacity type and zone.",
                &["nodepool", "capacity_type", "zone"],
            )?,
            disrupted: r.counter(
                "karpenter_nodeclaims_disrupted_total",
                "NodeClaims disrupted, by disruption reason and NodePool.",
                DISRUPTION_LABELS,
            )?,
            instance_termination_duration: r.histogram(
                "karpenter_nodeclaims_instance_termination_duration_seconds",
                "Seconds the cloud provider took to terminate an instance.",
                &["nodepool"],
                &INSTANCE_TERMINATION_BUCKETS,
            )?,
            termination_duration: r.histogram(
                "karpenter_nodeclaims_termination_duration_seconds",
                "Seconds from a NodeClaim's deletion request until its finalizer was removed.",
                &["nodepool"],
                &NODECLAIM_TERMINATION_BUCKETS,
            )?,
            unhealthy_disrupted: r.counter(
                "karpenter_nodeclaims_unhealthy_disrupted_total",
                "Unhealthy NodeClaims repaired by replacement, by node condition, NodePool and image.",
                &["condition", "nodepool", "capacity_type", "image_id"],
            )?,
        };

        let nodes = NodeMetrics {
            created: r.counter(
                "karpenter_nodes_created_total",
                "Nodes registered, by NodePool and zone.",
                &["nodepool", "zone"],
            )?,
            terminated: r.counter(
                "karpenter_nodes_terminated_total",
                "Nodes whose termination finished, by NodePool and zone.",
                &["nodepool", "zone"],
            )?,
            termination_duration: r.register(SummaryVec::new(
                "karpenter_nodes_termination_duration_seconds",
                "Seconds from a node's deletion request until its finalizer was removed.",
                &["nodepool"],
            )?)?,
            lifetime_duration: r.histogram(
                "karpenter_nodes_lifetime_duration_seconds",
                "Seconds a node lived, from creation to termination.",
                &["nodepool"],
                &NODE_LIFETIME_BUCKETS,
            )?,
            drained: r.counter(
                "karpenter_nodes_drained_total",
                "Nodes drained.",
                &["nodepool"],
            )?,
            allocatable: node_gauge(
                "karpenter_nodes_allocatable",
                "Allocatable resources of each node.",
            )?,
            total_pod_requests: node_gauge(
                "karpenter_nodes_total_pod_requests",
                "Resource requests of all pods bound to each node, DaemonSet pods included.",
            )?,
            total_pod_limits: node_gauge(
                "karpenter_nodes_total_pod_limits",
                "Resource limits of all pods bound to each node, DaemonSet pods included.",
            )?,
            total_daemon_requests: node_gauge(
                "karpenter_nodes_total_daemon_requests",
                "Resource requests of the DaemonSet pods bound to each node.",
            )?,
            total_daemon_limits: node_gauge(
                "karpenter_nodes_total_daemon_limits",
                "Resource limits of the DaemonSet pods bound to each node.",
            )?,
            system_overhead: node_gauge(
                "karpenter_nodes_system_overhead",
                "Resources each node reserves for the system: capacity minus allocatable.",
            )?,
            current_lifetime: r.gauge(
                "karpenter_nodes_current_lifetime_seconds",
                "Seconds since each node was created.",
                &node_lifetime_labels,
            )?,
        };

        let pods = PodMetrics {
            disruption_initiated: r.counter(
                "karpenter_pods_disruption_initiated_total",
                "Reschedulable pods on nodes whose disruption began, by reason and NodePool.",
                DISRUPTION_LABELS,
            )?,
            eviction_requests: r.counter(
                "karpenter_pods_eviction_requests_total",
                "Eviction requests sent, by HTTP status code of the answer.",
                &["code"],
            )?,
            drained: r.counter(
                "karpenter_pods_drained_total",
                "Pods drained from terminating nodes, by reason.",
                &["reason"],
            )?,
            state: r.gauge(
                "karpenter_pods_state",
                "One series per pod describing where it runs and its phase; the value is always 1.",
                &[
                    "name",
                    "namespace",
                    "owner",
                    "node",
                    "scheduled",
                    "nodepool",
                    "zone",
                    "arch",
                    "capacity_type",
                    "instance_type",
                    "phase",
                    "ready",
                    "managed",
                ],
            )?,
            startup_duration: r.register(SummaryMetric::new(
                "karpenter_pods_startup_duration_seconds",
                "Seconds from pod creation until the pod was ready.",
            )?)?,
            unstarted_time: r.gauge(
                "karpenter_pods_unstarted_time_seconds",
                "Seconds each not-yet-running pod has existed.",
                name_ns,
            )?,
            bound_duration: r.histogram(
                "karpenter_pods_bound_duration_seconds",
                "Seconds from pod creation until the pod was bound to a node.",
                &[],
                &DURATION_BUCKETS,
            )?,
            unbound_time: r.gauge(
                "karpenter_pods_unbound_time_seconds",
                "Seconds each unbound pod has existed.",
                name_ns,
            )?,
            provisioning_bound_duration: r.histogram(
                "karpenter_pods_provisioning_bound_duration_seconds",
                "Seconds from when Karpenter first found a pod schedulable until it was bound.",
                &[],
                &DURATION_BUCKETS,
            )?,
            provisioning_startup_duration: r.histogram(
                "karpenter_pods_provisioning_startup_duration_seconds",
                "Seconds from when Karpenter first found a pod schedulable until it was running.",
                &[],
                &DURATION_BUCKETS,
            )?,
            provisioning_unbound_time: r.gauge(
                "karpenter_pods_provisioning_unbound_time_seconds",
                "Seconds each pod has waited to bind since Karpenter first found it schedulable.",
                name_ns,
            )?,
            provisioning_unstarted_time: r.gauge(
                "karpenter_pods_provisioning_unstarted_time_seconds",
                "Seconds each pod has waited to run since Karpenter first found it schedulable.",
                name_ns,
            )?,
            provisioning_scheduling_undecided_time: r.gauge(
                "karpenter_pods_provisioning_scheduling_undecided_time_seconds",
                "Seconds each pod has been known to Karpenter without a scheduling decision.",
                name_ns,
            )?,
            scheduling_decision_duration: r.histogram(
                "karpenter_pods_scheduling_decision_duration_seconds",
                "Seconds from Karpenter seeing a pod until its first scheduling decision.",
                &[],
                &DURATION_BUCKETS,
            )?,
        };

        let cluster = ClusterMetrics {
            utilization_percent: r.gauge(
                "karpenter_cluster_utilization_percent",
                "Pod requests as a percentage of allocatable resources across nodes.",
                &["resource_type"],
            )?,
            nodepool_limit: r.gauge(
                "karpenter_nodepools_limit",
                "Resource limits set on each NodePool.",
                &["resource_type", "nodepool"],
            )?,
            nodepool_usage: r.gauge(
                "karpenter_nodepools_usage",
                "Resources provisioned for each NodePool.",
                &["resource_type", "nodepool"],
            )?,
            nodepool_cost: r.gauge(
                "karpenter_nodepools_cost_total",
                "Cost of the capacity each NodePool launched, in the provider's price units.",
                &["nodepool"],
            )?,
            nodepool_cost_tracker_errors: r.counter(
                "karpenter_nodepools_cost_tracker_errors_total",
                "Failures to track a NodePool's cost.",
                &["nodepool"],
            )?,
            state_node_count: r.gauge(
                "karpenter_cluster_state_node_count",
                "Nodes in Karpenter's cluster state.",
                &[],
            )?,
            state_synced: r.gauge(
                "karpenter_cluster_state_synced",
                "1 when Karpenter's cluster state matches the API server's nodes and NodeClaims, else 0.",
                &[],
            )?,
            state_unsynced_time: r.gauge(
                "karpenter_cluster_state_unsynced_time_seconds",
                "Seconds cluster state has been out of sync.",
                &[],
            )?,
        };

        let scheduler = SchedulerMetrics {
            scheduling_duration: r.histogram(
                "karpenter_scheduler_scheduling_duration_seconds",
                "Seconds one scheduling simulation took, by calling controller.",
                &["controller"],
                &DURATION_BUCKETS,
            )?,
            queue_depth: r.gauge(
                "karpenter_scheduler_queue_depth",
                "Pods still waiting in a running scheduling simulation.",
                &["controller", "scheduling_id"],
            )?,
            unfinished_work: r.gauge(
                "karpenter_scheduler_unfinished_work_seconds",
                "Seconds a running scheduling simulation has taken so far.",
                &["controller", "scheduling_id"],
            )?,
            unschedulable_pods: r.gauge(
                "karpenter_scheduler_unschedulable_pods_count",
                "Pods the last simulation could not place.",
                &["controller"],
            )?,
            ignored_pods: r.gauge(
                "karpenter_scheduler_ignored_pods_count",
                "Pods the scheduler skipped.",
                &[],
            )?,
            pending_pods_by_effective_zone: r.gauge(
                "karpenter_scheduler_pending_pods_by_effective_zone_count",
                "Pending pods by the zone their constraints leave them.",
                &["controller", "zone"],
            )?,
        };

        let disruption = DisruptionMetrics {
            evaluation_duration: r.histogram(
                "karpenter_voluntary_disruption_decision_evaluation_duration_seconds",
                "Seconds spent evaluating disruption, by reason and consolidation type.",
                &["reason", "consolidation_type"],
                &DURATION_BUCKETS,
            )?,
            decisions: r.counter(
                "karpenter_voluntary_disruption_decisions_total",
                "Disruption decisions made, by decision, reason and consolidation type.",
                &["decision", "reason", "consolidation_type"],
            )?,
            decisions_by_nodepool: r.counter(
                "karpenter_voluntary_disruption_decisions_by_nodepool_total",
                "Disruption decisions made, by NodePool, decision, reason and consolidation type.",
                &["nodepool", "decision", "reason", "consolidation_type"],
            )?,
            eligible_nodes: r.gauge(
                "karpenter_voluntary_disruption_eligible_nodes",
                "Nodes eligible for disruption, by reason.",
                &["reason"],
            )?,
            consolidation_timeouts: r.counter(
                "karpenter_voluntary_disruption_consolidation_timeouts_total",
                "Consolidation evaluations cut short by their timeout, by consolidation type.",
                &["consolidation_type"],
            )?,
            failed_validations: r.counter(
                "karpenter_voluntary_disruption_failed_validations_total",
                "Disruption candidates rejected when re-validated, by consolidation type.",
                &["consolidation_type"],
            )?,
            queue_failures: r.counter(
                "karpenter_voluntary_disruption_queue_failures_total",
                "Queued disruption commands that failed.",
                &["decision", "reason", "consolidation_type"],
            )?,
            allowed_disruptions: r.gauge(
                "karpenter_nodepools_allowed_disruptions",
                "Nodes of each NodePool that may be disrupted at once now, by reason.",
                &["nodepool", "reason"],
            )?,
            nodes_consuming_budgets: r.gauge(
                "karpenter_nodepools_nodes_consuming_budgets",
                "Nodes of each NodePool counted against its disruption budgets, by reason.",
                &["nodepool", "reason"],
            )?,
            consolidation_score: r.histogram(
                "karpenter_consolidation_score",
                "Scores of evaluated consolidation moves.",
                &["decision", "nodepool", "policy"],
                &CONSOLIDATION_SCORE_BUCKETS,
            )?,
            consolidation_moves: r.counter(
                "karpenter_consolidation_moves_total",
                "Evaluated consolidation moves, by decision.",
                &["decision", "nodepool", "policy"],
            )?,
        };
        // Upstream pre-initialises these so rate() works before the first timeout.
        for kind in ["multi", "single"] {
            disruption
                .consolidation_timeouts
                .with_label_values(&[kind])
                .inc_by(0);
        }

        let controller = &["controller"];
        let controller_runtime = ControllerRuntimeMetrics {
            reconcile_total: r.counter(
                "controller_runtime_reconcile_total",
                "Reconciles, by controller and result.",
                &["controller", "result"],
            )?,
            reconcile_errors: r.counter(
                "controller_runtime_reconcile_errors_total",
                "Reconciles that returned an error, by controller.",
                controller,
            )?,
            terminal_reconcile_errors: r.counter(
                "controller_runtime_terminal_reconcile_errors_total",
                "Reconciles that failed without retry, by controller.",
                controller,
            )?,
            reconcile_panics: r.counter(
                "controller_runtime_reconcile_panics_total",
                "Reconciles that panicked, by controller.",
                controller,
            )?,
            reconcile_time: r.histogram(
                "controller_runtime_reconcile_time_seconds",
                "Seconds one reconcile took, by controller.",
                controller,
                &RECONCILE_TIME_BUCKETS,
            )?,
            max_concurrent_reconciles: r.int_gauge(
                "controller_runtime_max_concurrent_reconciles",
                "Worker limit of each controller.",
                controller,
            )?,
            active_workers: r.int_gauge(
                "controller_runtime_active_workers",
                "Workers busy now, by controller.",
                controller,
            )?,
        };

        let name = &["name"];
        let workqueue = WorkqueueMetrics {
            depth: r.int_gauge("workqueue_depth", "Items waiting in each work queue.", name)?,
            adds: r.counter(
                "workqueue_adds_total",
                "Items added to each work queue.",
                name,
            )?,
            queue_duration: r.histogram(
                "workqueue_queue_duration_seconds",
                "Seconds an item waited in the queue before a worker took it.",
                name,
                &WORKQUEUE_BUCKETS,
            )?,
            work_duration: r.histogram(
                "workqueue_work_duration_seconds",
                "Seconds a worker spent on one item.",
                name,
                &WORKQUEUE_BUCKETS,
            )?,
            unfinished_work: r.gauge(
                "workqueue_unfinished_work_seconds",
                "Seconds of in-progress work not yet counted in work duration; growth means stuck workers.",
                name,
            )?,
            longest_running_processor: r.gauge(
                "workqueue_longest_running_processor_seconds",
                "Seconds the longest-running worker of each queue has been busy.",
                name,
            )?,
            retries: r.counter(
                "workqueue_retries_total",
                "Items re-queued for retry.",
                name,
            )?,
        };

        let cloudprovider = CloudProviderMetrics::register(registry)?;
        let leader_election_master_status = r.int_gauge(
            "leader_election_master_status",
            "1 while this process holds the named leader lease, else 0.",
            name,
        )?;
        let build_info = r.int_gauge(
            "karpenter_build_info",
            "Always 1; the labels describe this build.",
            &["version", "goversion", "goarch", "commit"],
        )?;

        let status = StatusMetrics {
            nodeclaim: r.status(
                "operator_nodeclaim_",
                NODECLAIM_STATUS_LABELS,
                &STATUS_CONDITION_BUCKETS,
            )?,
            nodepool: r.status("operator_nodepool_", &[], &STATUS_CONDITION_BUCKETS)?,
            node: r.status(
                "operator_node_",
                NODE_STATUS_LABELS,
                &STATUS_CONDITION_BUCKETS,
            )?,
            deprecated: r.status("operator_", &["group", "kind"], &PROMETHEUS_DEFAULT_BUCKETS)?,
        };

        Ok(Metrics {
            nodeclaims,
            nodes,
            pods,
            cluster,
            scheduler,
            disruption,
            controller_runtime,
            workqueue,
            cloudprovider,
            leader_election_master_status,
            build_info,
            status,
        })
    }

    /// Handles of the `karpenter_cluster_state_*` gauges for cluster state, which keeps their
    /// values current (`ClusterState::with_metrics`); the families stay defined only here.
    pub fn state_metrics(&self) -> karpenter_state::StateMetrics {
        let unlabelled = |g: &GaugeVec| g.with_label_values(&[] as &[&str]);
        karpenter_state::StateMetrics::new(
            unlabelled(&self.cluster.state_node_count),
            unlabelled(&self.cluster.state_synced),
            unlabelled(&self.cluster.state_unsynced_time),
        )
    }

    /// Sets `karpenter_build_info` for this build.
    pub fn set_build_info(&self, info: &BuildInfo) {
        self.build_info
            .with_label_values(&[
                info.version.as_str(),
                info.goversion.as_str(),
                info.goarch.as_str(),
                info.commit.as_str(),
            ])
            .set(1);
    }
}

#[cfg(test)]
mod tests;
