//! Cluster-state observability: upstream's `metrics.node`, `metrics.pod` and
//! `metrics.nodepool` controllers as one loop over cluster-state snapshots. It keeps the
//! per-node gauges (`karpenter_nodes_allocatable`, `_total_pod_requests`, `_total_pod_limits`,
//! `_total_daemon_requests`, `_total_daemon_limits`, `_system_overhead`,
//! `_current_lifetime_seconds`), `karpenter_cluster_utilization_percent`, the NodePool gauges
//! (`karpenter_nodepools_limit`, `_usage`), the per-pod gauges (`karpenter_pods_state`,
//! `_unstarted_time_seconds`, `_unbound_time_seconds`), the per-pod provisioning gauges
//! (`karpenter_pods_provisioning_unbound_time_seconds`, `_provisioning_unstarted_time_seconds`,
//! `_provisioning_scheduling_undecided_time_seconds`) and observes
//! `karpenter_pods_startup_duration_seconds`, `karpenter_pods_bound_duration_seconds` and their
//! `_provisioning_` variants. The provisioning figures count from when the provisioner first
//! considered the pod (undecided) or first found it a place (unbound, unstarted, bound,
//! startup), times cluster state keeps per pod until the pod starts or goes away.
//!
//! What each pass emits is computed by the pure [`series`] from a snapshot and `now`; the loop
//! only writes the result and deletes series whose node, pod or NodePool went away (rather
//! than resetting a family, which would let a scrape see it empty).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use karpenter_apis::labels;
use karpenter_cloudprovider::parse_resource_list;
use karpenter_scheduling::Resources;
use karpenter_state::views::PodPhase;
use karpenter_state::{NodeUsage, Snapshot};
use prometheus::GaugeVec;
use tokio::sync::watch;
use tracing::{Instrument, debug};

use crate::context::Context;
use crate::metrics::{Metrics, node_label_names};

/// Controller name (logs).
pub const CONTROLLER: &str = "metrics.node";
/// Re-emit period when nothing changes (upstream's `metrics.node` period).
pub const PERIOD: Duration = Duration::from_secs(5);
/// Least time between two passes: a busy cluster changes state many times a second.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// One gauge sample: label values in the family's label order, and the value.
pub type Sample = (Vec<String>, f64);

/// Everything one pass emits, by family.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// `karpenter_nodes_allocatable`.
    pub allocatable: Vec<Sample>,
    /// `karpenter_nodes_total_pod_requests`.
    pub pod_requests: Vec<Sample>,
    /// `karpenter_nodes_total_pod_limits`.
    pub pod_limits: Vec<Sample>,
    /// `karpenter_nodes_total_daemon_requests`.
    pub daemon_requests: Vec<Sample>,
    /// `karpenter_nodes_total_daemon_limits`.
    pub daemon_limits: Vec<Sample>,
    /// `karpenter_nodes_system_overhead`.
    pub system_overhead: Vec<Sample>,
    /// `karpenter_nodes_current_lifetime_seconds`.
    pub current_lifetime: Vec<Sample>,
    /// `karpenter_cluster_utilization_percent`.
    pub utilization: Vec<Sample>,
    /// `karpenter_nodepools_limit`.
    pub nodepool_limit: Vec<Sample>,
    /// `karpenter_nodepools_usage`.
    pub nodepool_usage: Vec<Sample>,
    /// `karpenter_pods_state`.
    pub pod_state: Vec<Sample>,
    /// `karpenter_pods_unstarted_time_seconds`.
    pub pod_unstarted: Vec<Sample>,
    /// `karpenter_pods_unbound_time_seconds`.
    pub pod_unbound: Vec<Sample>,
    /// `karpenter_pods_provisioning_unstarted_time_seconds`.
    pub provisioning_unstarted: Vec<Sample>,
    /// `karpenter_pods_provisioning_unbound_time_seconds`.
    pub provisioning_unbound: Vec<Sample>,
    /// `karpenter_pods_provisioning_scheduling_undecided_time_seconds`.
    pub scheduling_undecided: Vec<Sample>,
}

/// The `resource_type` label of a resource name (lowercased, `-` → `_`).
pub fn resource_type(name: &str) -> String {
    name.to_lowercase().replace('-', "_")
}

/// A resource amount in the unit upstream reports: cores for CPU, base units otherwise.
pub fn metric_value(name: &str, amount: i64) -> f64 {
    if name == karpenter_scheduling::resources::CPU {
        amount as f64 / 1000.0
    } else {
        amount as f64
    }
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    to.signed_duration_since(from).num_milliseconds().max(0) as f64 / 1000.0
}

fn bool_label(b: bool) -> String {
    b.to_string()
}

/// `/apis/<apiVersion>/namespaces/<ns>/<kind>s/<name>` of an owner, as upstream labels it.
fn owner_label(namespace: &str, owner: Option<&karpenter_state::views::OwnerRef>) -> String {
    owner.map_or_else(String::new, |o| {
        format!(
            "/apis/{}/namespaces/{namespace}/{}s/{}",
            o.api_version,
            o.kind.to_lowercase(),
            o.name
        )
    })
}

fn phase_label(phase: PodPhase) -> &'static str {
    match phase {
        PodPhase::Pending => "Pending",
        PodPhase::Running => "Running",
        PodPhase::Succeeded => "Succeeded",
        PodPhase::Failed => "Failed",
        PodPhase::Unknown => "Unknown",
    }
}

/// What to emit for `snapshot` at `now`. Pure.
pub fn series(snapshot: &Snapshot, now: DateTime<Utc>) -> Series {
    let mut out = Series::default();
    let label_names = node_label_names();
    let mut node_labels_by_name: BTreeMap<String, (BTreeMap<String, String>, bool)> =
        BTreeMap::new();
    let mut requested_total = Resources::new();
    let mut allocatable_total = Resources::new();
    let no_usage = NodeUsage::default();
    for sn in snapshot.nodes() {
        // Upstream reports registered nodes only: an in-flight NodeClaim has no node yet.
        let Some(node) = sn.node.as_ref() else {
            continue;
        };
        let managed = sn.managed();
        node_labels_by_name.insert(node.name.clone(), (node.labels.clone(), managed));
        let mut base: Vec<String> = label_names
            .iter()
            .map(|(key, _)| node.labels.get(*key).cloned().unwrap_or_default())
            .collect();
        base.push(node.name.clone());
        base.push(String::new()); // phase: kubelets no longer set Node.status.phase
        base.push(bool_label(managed));
        if let Some(created) = node.creation_timestamp {
            out.current_lifetime
                .push((base.clone(), seconds_between(created, now)));
        }
        let allocatable = sn.allocatable();
        // Every resource the node offers gets a series (zero when nothing uses it), so sums
        // over nodes do not skip nodes without DaemonSets or limits.
        let with_resource = |list: &Resources, into: &mut Vec<Sample>| {
            let names: BTreeSet<&str> = allocatable
                .iter()
                .chain(list.iter())
                .map(|(name, _)| name)
                .collect();
            for name in names {
                let mut l = base.clone();
                l.push(resource_type(name));
                into.push((l, metric_value(name, list.get(name))));
            }
        };
        let capacity = sn.capacity();
        let usage = sn.usage.as_deref().unwrap_or(&no_usage);
        with_resource(&allocatable, &mut out.allocatable);
        with_resource(&usage.requested, &mut out.pod_requests);
        with_resource(&usage.limits, &mut out.pod_limits);
        with_resource(&usage.daemonset_requested, &mut out.daemon_requests);
        with_resource(&usage.daemonset_limits, &mut out.daemon_limits);
        let mut overhead = capacity.clone();
        overhead.sub(&allocatable);
        with_resource(&overhead, &mut out.system_overhead);
        requested_total.add(&usage.requested);
        allocatable_total.add(&allocatable);
    }
    for (name, allocatable) in allocatable_total.iter() {
        if allocatable > 0 {
            out.utilization.push((
                vec![resource_type(name)],
                100.0 * requested_total.get(name) as f64 / allocatable as f64,
            ));
        }
    }

    for np in snapshot.nodepools() {
        let pool = np.metadata.name.clone().unwrap_or_default();
        match parse_resource_list(&np.spec.limits) {
            Ok(limits) => {
                for (name, amount) in limits.iter() {
                    out.nodepool_limit.push((
                        vec![resource_type(name), pool.clone()],
                        metric_value(name, amount),
                    ));
                }
            }
            Err(error) => debug!(NodePool = %pool, %error, "limits not reported"),
        }
        for (name, amount) in snapshot.nodepool_usage(&pool).iter() {
            out.nodepool_usage.push((
                vec![resource_type(name), pool.clone()],
                metric_value(name, amount),
            ));
        }
    }

    for pod in snapshot.pods() {
        let v = &pod.view;
        let node = v.node_name.clone().unwrap_or_default();
        let (node_labels, managed) = node_labels_by_name
            .get(&node)
            .map_or((None, false), |(l, m)| (Some(l), *m));
        let node_label = |key: &str| {
            node_labels
                .and_then(|l| l.get(key))
                .cloned()
                .unwrap_or_default()
        };
        out.pod_state.push((
            vec![
                v.name.clone(),
                v.namespace.clone(),
                owner_label(&v.namespace, pod.owner.as_ref()),
                node.clone(),
                bool_label(!node.is_empty()),
                node_label(labels::NODEPOOL),
                node_label(labels::ZONE),
                node_label(labels::ARCH),
                node_label(labels::CAPACITY_TYPE),
                node_label(labels::INSTANCE_TYPE),
                phase_label(pod.phase).to_string(),
                bool_label(pod.ready),
                bool_label(managed),
            ],
            1.0,
        ));
        if pod.is_terminal() || pod.is_terminating() {
            continue;
        }
        let created = DateTime::from_timestamp(v.creation_timestamp, 0).unwrap_or(now);
        let name_ns = vec![v.name.clone(), v.namespace.clone()];
        let times = snapshot.pod_scheduling(&v.uid);
        if let Some(t) = &times
            && t.decided.is_none()
        {
            out.scheduling_undecided
                .push((name_ns.clone(), seconds_between(t.acked, now)));
        }
        let schedulable = times.and_then(|t| t.schedulable);
        if node.is_empty() {
            out.pod_unbound
                .push((name_ns.clone(), seconds_between(created, now)));
            if let Some(at) = schedulable {
                out.provisioning_unbound
                    .push((name_ns.clone(), seconds_between(at, now)));
            }
        }
        if !pod.ready {
            out.pod_unstarted
                .push((name_ns.clone(), seconds_between(created, now)));
            if let Some(at) = schedulable {
                out.provisioning_unstarted
                    .push((name_ns, seconds_between(at, now)));
            }
        }
    }
    out
}

/// Pods waiting to become Ready or bound, so each is observed once when it does: a pod first
/// seen already Ready (at startup, after a handover) is not observed, as upstream.
#[derive(Debug, Default)]
pub struct PodTransitions {
    waiting_ready: HashSet<String>,
    waiting_bound: HashSet<String>,
}

/// Durations to observe after one pass.
#[derive(Debug, Default, PartialEq)]
pub struct Observations {
    /// Creation → Ready, seconds (`karpenter_pods_startup_duration_seconds`).
    pub startup: Vec<f64>,
    /// Creation → bound, seconds (`karpenter_pods_bound_duration_seconds`).
    pub bound: Vec<f64>,
    /// First found a place → Ready (`karpenter_pods_provisioning_startup_duration_seconds`).
    pub provisioning_startup: Vec<f64>,
    /// First found a place → bound (`karpenter_pods_provisioning_bound_duration_seconds`).
    pub provisioning_bound: Vec<f64>,
    /// UIDs of Ready pods whose provisioning times cluster state can forget.
    pub started: Vec<String>,
}

impl PodTransitions {
    /// Updates the waiting sets from `snapshot` and returns what completed since the last call.
    pub fn observe(&mut self, snapshot: &Snapshot) -> Observations {
        let mut out = Observations::default();
        let mut seen = HashSet::new();
        for pod in snapshot.pods() {
            let v = &pod.view;
            seen.insert(v.uid.clone());
            if pod.is_terminal() || pod.is_terminating() {
                self.waiting_ready.remove(&v.uid);
                self.waiting_bound.remove(&v.uid);
                continue;
            }
            let created = DateTime::from_timestamp(v.creation_timestamp, 0);
            let times = snapshot.pod_scheduling(&v.uid);
            let schedulable = times.and_then(|t| t.schedulable);
            if pod.ready {
                if self.waiting_ready.remove(&v.uid)
                    && let Some(r) = pod.ready_at
                {
                    if let Some(c) = created {
                        out.startup.push(seconds_between(c, r));
                    }
                    if let Some(at) = schedulable {
                        out.provisioning_startup.push(seconds_between(at, r));
                    }
                }
                if times.is_some() {
                    out.started.push(v.uid.clone());
                }
            } else {
                self.waiting_ready.insert(v.uid.clone());
            }
            if v.node_name.is_some() {
                if self.waiting_bound.remove(&v.uid)
                    && let Some(s) = pod.scheduled_at
                {
                    if let Some(c) = created {
                        out.bound.push(seconds_between(c, s));
                    }
                    if let Some(at) = schedulable {
                        out.provisioning_bound.push(seconds_between(at, s));
                    }
                }
            } else {
                self.waiting_bound.insert(v.uid.clone());
            }
        }
        self.waiting_ready.retain(|u| seen.contains(u));
        self.waiting_bound.retain(|u| seen.contains(u));
        out
    }
}

/// Label sets written last pass, per family, so vanished ones are deleted.
#[derive(Debug, Default)]
struct Written {
    by_family: BTreeMap<&'static str, BTreeSet<Vec<String>>>,
}

impl Written {
    fn write(&mut self, family: &'static str, gauge: &GaugeVec, samples: &[Sample]) {
        let mut now = BTreeSet::new();
        for (labels, value) in samples {
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            match gauge.get_metric_with_label_values(&refs) {
                Ok(g) => g.set(*value),
                Err(error) => debug!(family, %error, "sample not written"),
            }
            now.insert(labels.clone());
        }
        let before = self
            .by_family
            .insert(family, now.clone())
            .unwrap_or_default();
        for gone in before.difference(&now) {
            let refs: Vec<&str> = gone.iter().map(String::as_str).collect();
            let _ = gauge.remove_label_values(&refs);
        }
    }

    fn apply(&mut self, m: &Metrics, s: &Series) {
        let n = &m.nodes;
        self.write("allocatable", &n.allocatable, &s.allocatable);
        self.write("pod_requests", &n.total_pod_requests, &s.pod_requests);
        self.write("pod_limits", &n.total_pod_limits, &s.pod_limits);
        self.write(
            "daemon_requests",
            &n.total_daemon_requests,
            &s.daemon_requests,
        );
        self.write("daemon_limits", &n.total_daemon_limits, &s.daemon_limits);
        self.write("system_overhead", &n.system_overhead, &s.system_overhead);
        self.write("current_lifetime", &n.current_lifetime, &s.current_lifetime);
        let c = &m.cluster;
        self.write("utilization", &c.utilization_percent, &s.utilization);
        self.write("nodepool_limit", &c.nodepool_limit, &s.nodepool_limit);
        self.write("nodepool_usage", &c.nodepool_usage, &s.nodepool_usage);
        let p = &m.pods;
        self.write("pod_state", &p.state, &s.pod_state);
        self.write("pod_unstarted", &p.unstarted_time, &s.pod_unstarted);
        self.write("pod_unbound", &p.unbound_time, &s.pod_unbound);
        self.write(
            "provisioning_unstarted",
            &p.provisioning_unstarted_time,
            &s.provisioning_unstarted,
        );
        self.write(
            "provisioning_unbound",
            &p.provisioning_unbound_time,
            &s.provisioning_unbound,
        );
        self.write(
            "scheduling_undecided",
            &p.provisioning_scheduling_undecided_time,
            &s.scheduling_undecided,
        );
    }
}

/// One pass: emit the gauges for the current snapshot and observe completed transitions.
fn pass(ctx: &Context, written: &mut Written, transitions: &mut PodTransitions) {
    let snapshot = ctx.state.snapshot();
    written.apply(&ctx.metrics, &series(&snapshot, ctx.clock.now()));
    let done = transitions.observe(&snapshot);
    for s in done.startup {
        ctx.metrics.pods.startup_duration.observe(s);
    }
    let pods = &ctx.metrics.pods;
    let no_labels: &[&str] = &[];
    for b in done.bound {
        pods.bound_duration.with_label_values(no_labels).observe(b);
    }
    for b in done.provisioning_bound {
        pods.provisioning_bound_duration
            .with_label_values(no_labels)
            .observe(b);
    }
    for s in done.provisioning_startup {
        pods.provisioning_startup_duration
            .with_label_values(no_labels)
            .observe(s);
    }
    ctx.state
        .clear_pod_scheduling(done.started.iter().map(String::as_str));
}

/// Runs until `shutdown` turns true: a pass on every state change (at most one per
/// [`MIN_INTERVAL`]) and every [`PERIOD`].
pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    async move {
        let mut changes = ctx.state.subscribe();
        let mut written = Written::default();
        let mut transitions = PodTransitions::default();
        loop {
            pass(&ctx, &mut written, &mut transitions);
            tokio::select! {
                _ = tokio::time::sleep(MIN_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(PERIOD.saturating_sub(MIN_INTERVAL)) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
    .instrument(tracing::info_span!("controller", controller = CONTROLLER))
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use karpenter_cloudprovider::{Clock, ManualClock};
    use karpenter_state::{ClusterState, StateConfig};
    use serde_json::json;

    /// A pod in one of the states the provisioning metrics distinguish.
    fn pod(stage: &str) -> Pod {
        let status = match stage {
            "pending" => json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}),
            "bound" => json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:20Z"}]}),
            _ => json!({"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:20Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:30Z"}]}),
        };
        let mut p = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "uid-web",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "img"}]},
            "status": status,
        });
        if stage != "pending" {
            p["spec"]["nodeName"] = json!("node-a");
        }
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn provisioning_series_count_from_ack_and_from_the_first_placement() {
        // Epoch 2026-01-01T00:00:00Z: the pod is created at 0 s.
        let clock = Arc::new(ManualClock::at_epoch_2026());
        let state = ClusterState::new(clock.clone(), StateConfig::default());
        state.apply(&pod("pending"));
        let web = vec!["web".to_string(), "default".to_string()];
        let mut transitions = PodTransitions::default();

        // Not yet considered by the provisioner: only the plain gauges.
        clock.advance(Duration::from_secs(2));
        let s = series(&state.snapshot(), clock.now());
        assert!(s.scheduling_undecided.is_empty() && s.provisioning_unbound.is_empty());
        transitions.observe(&state.snapshot());

        // Acknowledged at 2 s, undecided at 5 s.
        let snap = state.snapshot();
        state.ack_pods(snap.pending_provisionable_pods().iter().map(|p| &p.view));
        clock.advance(Duration::from_secs(3));
        let s = series(&state.snapshot(), clock.now());
        assert_eq!(s.scheduling_undecided, vec![(web.clone(), 3.0)]);
        assert!(s.provisioning_unbound.is_empty(), "no place found yet");

        // Placed at 5 s: decided after 3 s; unbound/unstarted count from 5 s.
        assert_eq!(state.mark_pod_decisions([("uid-web", true)]), vec![3.0]);
        clock.advance(Duration::from_secs(4));
        let s = series(&state.snapshot(), clock.now());
        assert!(s.scheduling_undecided.is_empty());
        assert_eq!(s.provisioning_unbound, vec![(web.clone(), 4.0)]);
        assert_eq!(s.provisioning_unstarted, vec![(web.clone(), 4.0)]);
        assert_eq!(s.pod_unbound, vec![(web.clone(), 9.0)]);

        // Bound at 20 s (observed once), Ready at 30 s; then state forgets the pod's times.
        state.apply(&pod("bound"));
        let done = transitions.observe(&state.snapshot());
        assert_eq!(done.provisioning_bound, vec![15.0]);
        assert_eq!(done.bound, vec![20.0]);
        assert!(done.started.is_empty());
        let s = series(&state.snapshot(), clock.now());
        assert!(s.provisioning_unbound.is_empty());
        assert_eq!(s.provisioning_unstarted, vec![(web.clone(), 4.0)]);

        state.apply(&pod("ready"));
        let done = transitions.observe(&state.snapshot());
        assert_eq!(done.provisioning_startup, vec![25.0]);
        assert_eq!(done.startup, vec![30.0]);
        assert!(done.provisioning_bound.is_empty(), "bound is observed once");
        assert_eq!(done.started, vec!["uid-web".to_string()]);
        state.clear_pod_scheduling(done.started.iter().map(String::as_str));
        let s = series(&state.snapshot(), clock.now());
        assert!(s.provisioning_unstarted.is_empty() && s.pod_unstarted.is_empty());
        assert_eq!(state.snapshot().pod_scheduling("uid-web"), None);
    }
}
