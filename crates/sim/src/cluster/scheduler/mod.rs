//! The simulated kube-scheduler: binds pending pods to nodes they fit on, and marks the rest
//! `PodScheduled=False/Unschedulable` (what Karpenter provisions for).
//!
//! Written independently of `karpenter-scheduling` so the simulation checks the autoscaler instead
//! of agreeing with it by construction. See [`fit`] for the rules covered.

pub mod fit;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::apiserver::object::{SharedClock, format_time};
use crate::cluster::resources::is_terminal;
use crate::cluster::runtime::{
    Caches, Component, LoopTiming, Outcome, ShutdownRx, drive, log_write_error,
};
pub use fit::Scoring;
use fit::{ClusterState, Decision, schedule};

/// How the simulated scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods whose `spec.schedulerName` is this (or unset) are ours.
    pub scheduler_name: String,
    /// Which feasible node wins.
    pub scoring: Scoring,
    /// Unschedulable pods are retried at least this often even when nothing changes.
    pub resync: Duration,
    /// Wait after a change for more changes before a pass.
    pub debounce: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: "default-scheduler".into(),
            scoring: Scoring::MostAllocated,
            resync: Duration::from_secs(10),
            debounce: Duration::from_millis(10),
        }
    }
}

/// How long a binding we made may go unseen in the cache before we stop counting it.
const ASSUME_TTL: Duration = Duration::from_secs(30);

struct Scheduler {
    client: Client,
    config: SchedulerConfig,
    clock: SharedClock,
    pods: Store<Pod>,
    nodes: Store<Node>,
    namespaces: Store<Namespace>,
    /// Pods bound by us whose binding the cache has not shown yet: uid -> (node, when).
    assumed: BTreeMap<String, (String, Instant)>,
    event_seq: u64,
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn is_pending(pod: &Pod, scheduler_name: &str) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty)
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n == scheduler_name)
        && pod.metadata.deletion_timestamp.is_none()
        && !is_terminal(pod)
}

fn scheduled_condition(pod: &Pod) -> Option<(String, String, String)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

impl Scheduler {
    async fn bind(&self, pod: &Pod, node: &str) -> Result<(), kube::Error> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        api.create_subresource::<Value, Value>("binding", name, &PostParams::default(), &binding)
            .await
            .map(|_| ())
    }

    /// Sets `PodScheduled=False` with `reason` (unless already so) and records a
    /// `FailedScheduling` event for unschedulable pods.
    async fn mark_unscheduled(
        &mut self,
        pod: &Pod,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        if scheduled_condition(pod)
            .is_some_and(|(s, r, m)| s == "False" && r == reason && m == message)
        {
            return Ok(());
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let now = format_time(self.clock.now());
        let mut conditions: Vec<Value> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.type_ != "PodScheduled")
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        conditions.push(json!({
            "type": "PodScheduled", "status": "False", "reason": reason, "message": message,
            "lastProbeTime": null, "lastTransitionTime": now,
        }));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let patch = json!({"status": {"phase": "Pending", "conditions": conditions}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        if reason == "Unschedulable" {
            self.event_seq += 1;
            let event = json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": format!("{name}.{:x}{:04x}", self.clock.now().timestamp_micros(), self.event_seq % 0xffff), "namespace": ns},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns, "uid": pod.metadata.uid},
                "reason": "FailedScheduling", "message": message, "type": "Warning",
                "source": {"component": self.config.scheduler_name},
                "reportingComponent": self.config.scheduler_name,
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            });
            let events: Api<k8s_openapi::api::core::v1::Event> =
                Api::namespaced(self.client.clone(), ns);
            if let Err(e) = events
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(event).map_err(kube::Error::SerdeError)?,
                )
                .await
            {
                log_write_error("create FailedScheduling event", name, &e);
            }
        }
        Ok(())
    }
}

impl Component for Scheduler {
    async fn pass(&mut self) -> Outcome {
        let mut outcome = Outcome::default();
        let pods = self.pods.state();
        let nodes = self.nodes.state();
        let namespaces = self.namespaces.state();
        let now = Instant::now();
        let by_uid: BTreeMap<&str, &Arc<Pod>> = pods
            .iter()
            .filter_map(|p| Some((p.metadata.uid.as_deref()?, p)))
            .collect();
        // Forget assumptions the cache has caught up with (or that went stale).
        self.assumed.retain(|uid, (_, at)| {
            by_uid
                .get(uid.as_str())
                .is_some_and(|p| is_pending(p, &self.config.scheduler_name))
                && now.duration_since(*at) < ASSUME_TTL
        });
        let mut cluster = ClusterState::new(&nodes, &pods, &namespaces);
        for (uid, (node, _)) in &self.assumed {
            if let Some(p) = by_uid.get(uid.as_str()) {
                cluster.assume(node, (*p).clone());
            }
        }
        let mut pending: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| is_pending(p, &self.config.scheduler_name))
            .filter(|p| {
                p.metadata
                    .uid
                    .as_deref()
                    .is_none_or(|u| !self.assumed.contains_key(u))
            })
            .collect();
        // Highest priority first, then oldest, then by name (as kube-scheduler's queue).
        pending.sort_by(|a, b| {
            let prio = |p: &Pod| p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
            prio(b)
                .cmp(&prio(a))
                .then_with(|| {
                    a.metadata
                        .creation_timestamp
                        .cmp(&b.metadata.creation_timestamp)
                })
                .then_with(|| pod_key(a).cmp(&pod_key(b)))
        });
        for pod in pending {
            let key = pod_key(pod);
            let gated = pod
                .spec
                .as_ref()
                .and_then(|s| s.scheduling_gates.as_ref())
                .is_some_and(|g| !g.is_empty());
            if gated {
                if let Err(e) = self
                    .mark_unscheduled(
                        pod,
                        "SchedulingGated",
                        "Scheduling is blocked due to non-empty scheduling gates",
                    )
                    .await
                {
                    log_write_error("mark scheduling gated", &key, &e);
                    outcome.failed = true;
                }
                continue;
            }
            match schedule(pod, &cluster, self.config.scoring) {
                Decision::Bind(node) => match self.bind(pod, &node).await {
                    Ok(()) => {
                        tracing::debug!(pod = %key, node = %node, "bound");
                        if let Some(uid) = pod.metadata.uid.clone() {
                            self.assumed.insert(uid, (node.clone(), now));
                        }
                        cluster.assume(&node, pod.clone());
                    }
                    Err(e) => {
                        log_write_error("bind", &key, &e);
                        outcome.failed = true;
                    }
                },
                Decision::Unschedulable(message) => {
                    tracing::debug!(pod = %key, %message, nodes = cluster.node_count(), "unschedulable");
                    if let Err(e) = self.mark_unscheduled(pod, "Unschedulable", &message).await {
                        log_write_error("mark unschedulable", &key, &e);
                        outcome.failed = true;
                    }
                }
            }
        }
        outcome
    }
}

/// Runs the scheduler until shutdown.
pub async fn run(
    client: Client,
    config: SchedulerConfig,
    clock: SharedClock,
    shutdown: ShutdownRx,
) {
    let mut caches = Caches::new(shutdown.clone());
    let pods = caches.watch(Api::<Pod>::all(client.clone()));
    let nodes = caches.watch(Api::<Node>::all(client.clone()));
    let namespaces = caches.watch(Api::<Namespace>::all(client.clone()));
    let ready = caches.ready(&[&pods]).await
        && caches.ready(&[&nodes]).await
        && caches.ready(&[&namespaces]).await;
    if ready {
        let timing = LoopTiming {
            resync: config.resync,
            debounce: config.debounce,
        };
        let scheduler = Scheduler {
            client,
            config,
            clock,
            pods,
            nodes,
            namespaces,
            assumed: BTreeMap::new(),
            event_seq: 0,
        };
        drive(scheduler, caches.changed.clone(), timing, shutdown).await;
    }
    caches.join().await;
}
