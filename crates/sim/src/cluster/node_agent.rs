//! The simulated kubelet for every Node (plus the pod garbage collector's orphan cleanup).
//!
//! - A Node turns `Ready=True` [`NodeAgentConfig::ready_delay`] after the agent first sees it;
//!   the `node.kubernetes.io/not-ready` taint goes with it.
//! - Startup taints go [`NodeAgentConfig::startup_taint_delay`] after that. The agent learns them
//!   from the Node annotation [`STARTUP_TAINTS_ANNOTATION`] (the contract with the simulated EC2,
//!   which knows the NodeClaim's `startupTaints`) and from [`NodeAgentConfig::startup_taints`].
//! - A pod bound to a Node becomes `Running` and `Ready` [`NodeAgentConfig::pod_start_delay`]
//!   after the agent first sees it bound.
//! - A terminating pod on a Node is deleted with `gracePeriodSeconds=0` after the smaller of its
//!   grace period and [`NodeAgentConfig::graceful_deletion_cap`] (the API server must leave that to
//!   the kubelet: `PodTermination::KubeletConfirms`).
//! - A pod bound to a Node that no longer exists is deleted at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::apiserver::object::{SharedClock, format_time};
use crate::cluster::resources::is_terminal;
use crate::cluster::runtime::{
    Caches, Component, LoopTiming, Outcome, ShutdownRx, drive, log_write_error,
};

/// Node annotation listing the taints the agent removes as startup taints once the Node is Ready:
/// comma-separated `key[=value]:Effect` (kubectl's taint syntax), or a JSON array of Taints.
pub const STARTUP_TAINTS_ANNOTATION: &str = "sim.karpenter.sh/startup-taints";

const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// How the simulated kubelet behaves.
#[derive(Debug, Clone)]
pub struct NodeAgentConfig {
    /// From first sight of a Node to `Ready=True`.
    pub ready_delay: Duration,
    /// From Ready to removing the startup taints.
    pub startup_taint_delay: Duration,
    /// From a pod's binding to `Running`.
    pub pod_start_delay: Duration,
    /// Longest a terminating pod lingers, whatever its grace period.
    pub graceful_deletion_cap: Duration,
    /// Taint keys treated as startup taints on every Node (in addition to the annotation).
    pub startup_taints: Vec<String>,
    /// Full pass at least this often.
    pub resync: Duration,
    /// Wait after a change for more changes before a pass.
    pub debounce: Duration,
}

impl Default for NodeAgentConfig {
    fn default() -> Self {
        NodeAgentConfig {
            ready_delay: Duration::from_secs(5),
            startup_taint_delay: Duration::from_secs(2),
            pod_start_delay: Duration::from_secs(1),
            graceful_deletion_cap: Duration::from_secs(5),
            startup_taints: Vec::new(),
            resync: Duration::from_secs(30),
            debounce: Duration::from_millis(10),
        }
    }
}

/// A startup taint pattern: key, optional value, effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaintPattern {
    /// Taint key.
    pub key: String,
    /// Value to match, if given.
    pub value: Option<String>,
    /// Effect to match; `None` matches all.
    pub effect: Option<String>,
}

impl TaintPattern {
    fn matches(&self, t: &Taint) -> bool {
        self.key == t.key
            && self
                .value
                .as_ref()
                .is_none_or(|v| Some(v) == t.value.as_ref())
            && self.effect.as_ref().is_none_or(|e| *e == t.effect)
    }
}

/// Parses [`STARTUP_TAINTS_ANNOTATION`]; malformed entries are skipped.
pub fn parse_startup_taints(annotation: &str) -> Vec<TaintPattern> {
    let trimmed = annotation.trim();
    if trimmed.starts_with('[') {
        return serde_json::from_str::<Vec<Taint>>(trimmed)
            .map(|ts| {
                ts.into_iter()
                    .map(|t| TaintPattern {
                        key: t.key,
                        value: t.value,
                        effect: Some(t.effect).filter(|e| !e.is_empty()),
                    })
                    .collect()
            })
            .unwrap_or_default();
    }
    trimmed
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|entry| {
            let (kv, effect) = match entry.rsplit_once(':') {
                Some((kv, e)) if matches!(e, "NoSchedule" | "NoExecute" | "PreferNoSchedule") => {
                    (kv, Some(e.to_string()))
                }
                _ => (entry, None),
            };
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (kv, None),
            };
            (!key.is_empty()).then(|| TaintPattern {
                key: key.to_string(),
                value,
                effect,
            })
        })
        .collect()
}

struct NodeAgent {
    client: Client,
    config: NodeAgentConfig,
    clock: SharedClock,
    pods: Store<Pod>,
    nodes: Store<Node>,
    /// Node uid -> when first seen.
    node_seen: BTreeMap<String, Instant>,
    /// Node uid -> when first seen Ready.
    node_ready_seen: BTreeMap<String, Instant>,
    /// Pod uid -> when first seen bound.
    pod_bound_seen: BTreeMap<String, Instant>,
    /// Pod uid -> when first seen terminating.
    pod_terminating_seen: BTreeMap<String, Instant>,
    /// Node name -> (index for its pod subnet, next host number).
    pod_ips: BTreeMap<String, (u32, u32)>,
    next_node_index: u32,
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

impl NodeAgent {
    fn startup_patterns(&self, node: &Node) -> Vec<TaintPattern> {
        let mut patterns: Vec<TaintPattern> = self
            .config
            .startup_taints
            .iter()
            .map(|k| TaintPattern {
                key: k.clone(),
                value: None,
                effect: None,
            })
            .collect();
        if let Some(a) = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(STARTUP_TAINTS_ANNOTATION))
        {
            patterns.extend(parse_startup_taints(a));
        }
        patterns
    }

    async fn mark_ready(&self, node: &Node) -> Result<(), kube::Error> {
        let now = format_time(self.clock.now());
        let ours = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"];
        let mut conditions: Vec<Value> = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| !ours.contains(&c.type_.as_str()))
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        for (type_, status, reason, message) in [
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            (
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            (
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            (
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
        ] {
            conditions.push(json!({
                "type": type_, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }));
        }
        let api: Api<Node> = Api::all(self.client.clone());
        api.patch_status(
            name_of(&node.metadata),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": conditions}})),
        )
        .await
        .map(|_| ())
    }

    /// Removes taints matching `remove` with an optimistic-concurrency replace.
    async fn remove_taints(
        &self,
        node: &Node,
        remove: impl Fn(&Taint) -> bool,
    ) -> Result<(), kube::Error> {
        let mut updated = node.clone();
        let kept: Vec<Taint> = taints(node).into_iter().filter(|t| !remove(t)).collect();
        if let Some(spec) = updated.spec.as_mut() {
            spec.taints = (!kept.is_empty()).then_some(kept);
        }
        let api: Api<Node> = Api::all(self.client.clone());
        api.replace(name_of(&node.metadata), &PostParams::default(), &updated)
            .await
            .map(|_| ())
    }

    async fn converge_node(&mut self, node: &Node, now: Instant, outcome: &mut Outcome) {
        let name = name_of(&node.metadata).to_string();
        let uid = node.metadata.uid.clone().unwrap_or_else(|| name.clone());
        let seen = *self.node_seen.entry(uid.clone()).or_insert(now);
        if !is_ready(node) {
            let due = seen + self.config.ready_delay;
            if now < due {
                outcome.wake(due);
                return;
            }
            match self.mark_ready(node).await {
                Ok(()) => tracing::info!(node = %name, "node ready"),
                Err(e) => {
                    log_write_error("mark node ready", &name, &e);
                    outcome.failed = true;
                }
            }
            return;
        }
        let ready_since = *self.node_ready_seen.entry(uid).or_insert(now);
        let current = taints(node);
        if current.iter().any(|t| t.key == NOT_READY_TAINT) {
            if let Err(e) = self.remove_taints(node, |t| t.key == NOT_READY_TAINT).await {
                log_write_error("remove not-ready taint", &name, &e);
                outcome.failed = true;
            }
            return;
        }
        let patterns = self.startup_patterns(node);
        if current
            .iter()
            .any(|t| patterns.iter().any(|p| p.matches(t)))
        {
            let due = ready_since + self.config.startup_taint_delay;
            if now < due {
                outcome.wake(due);
                return;
            }
            match self
                .remove_taints(node, |t| patterns.iter().any(|p| p.matches(t)))
                .await
            {
                Ok(()) => tracing::info!(node = %name, "startup taints removed"),
                Err(e) => {
                    log_write_error("remove startup taints", &name, &e);
                    outcome.failed = true;
                }
            }
        }
    }

    fn pod_ip(&mut self, node: &str) -> String {
        let next_index = &mut self.next_node_index;
        let entry = self.pod_ips.entry(node.to_string()).or_insert_with(|| {
            *next_index += 1;
            (*next_index, 1)
        });
        entry.1 = entry.1 % 253 + 1;
        let (index, host) = *entry;
        format!(
            "10.{}.{}.{}",
            64 + (index / 256) % 64,
            index % 256,
            host + 1
        )
    }

    async fn start_pod(&mut self, pod: &Pod, node: Option<&Node>) -> Result<(), kube::Error> {
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let now = format_time(self.clock.now());
        let host_ip = node
            .and_then(|n| n.status.as_ref())
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone())
            .unwrap_or_default();
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let pod_ip = if host_network && !host_ip.is_empty() {
            host_ip.clone()
        } else {
            self.pod_ip(&node_name)
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let running = |c: &k8s_openapi::api::core::v1::Container| {
            json!({
                "name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "",
                "containerID": format!("containerd://{}-{}", pod.metadata.uid.as_deref().unwrap_or(""), c.name),
                "ready": true, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            })
        };
        let init_statuses: Vec<Value> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                if c.restart_policy.as_deref() == Some("Always") {
                    running(c)
                } else {
                    json!({
                        "name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "",
                        "ready": true, "restartCount": 0,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}},
                    })
                }
            })
            .collect();
        let container_statuses: Vec<Value> = spec.containers.iter().map(running).collect();
        let scheduled = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
            .and_then(|c| serde_json::to_value(c).ok())
            .unwrap_or_else(
                || json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now}),
            );
        let mut conditions = vec![scheduled];
        for type_ in [
            "PodReadyToStartContainers",
            "Initialized",
            "ContainersReady",
            "Ready",
        ] {
            conditions.push(json!({"type": type_, "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
        }
        let mut status = json!({
            "phase": "Running",
            "conditions": conditions,
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": now,
            "containerStatuses": container_statuses,
            "qosClass": qos_class(&spec),
        });
        if !host_ip.is_empty() {
            status["hostIP"] = json!(host_ip);
            status["hostIPs"] = json!([{"ip": host_ip}]);
        }
        if !init_statuses.is_empty() {
            status["initContainerStatuses"] = json!(init_statuses);
        }
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        api.patch_status(
            name_of(&pod.metadata),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map(|_| ())
    }

    async fn force_delete(&self, pod: &Pod) -> Result<(), kube::Error> {
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        api.delete(name_of(&pod.metadata), &params)
            .await
            .map(|_| ())
    }

    async fn node_gone(&self, name: &str, verified: &mut BTreeMap<String, bool>) -> bool {
        if let Some(gone) = verified.get(name) {
            return *gone;
        }
        // The cache may lag behind a Node that was just created: confirm before deleting pods.
        let api: Api<Node> = Api::all(self.client.clone());
        let gone = matches!(api.get_opt(name).await, Ok(None));
        verified.insert(name.to_string(), gone);
        gone
    }

    async fn converge_pod(
        &mut self,
        pod: &Pod,
        nodes: &BTreeMap<String, Arc<Node>>,
        verified: &mut BTreeMap<String, bool>,
        now: Instant,
        outcome: &mut Outcome,
    ) {
        let Some(node_name) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
        else {
            return;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            name_of(&pod.metadata)
        );
        let node = nodes.get(&node_name);
        if node.is_none() && self.node_gone(&node_name, verified).await {
            match self.force_delete(pod).await {
                Ok(()) => {
                    tracing::info!(pod = %key, node = %node_name, "deleted pod of a deleted node")
                }
                Err(e) => {
                    log_write_error("delete orphaned pod", &key, &e);
                    outcome.failed = true;
                }
            }
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            let seen = *self.pod_terminating_seen.entry(uid).or_insert(now);
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .unwrap_or(30)
                .max(0);
            let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0))
                .min(self.config.graceful_deletion_cap);
            let due = seen + grace;
            if now < due {
                outcome.wake(due);
                return;
            }
            match self.force_delete(pod).await {
                Ok(()) => tracing::debug!(pod = %key, "terminated"),
                Err(e) => {
                    log_write_error("finish pod termination", &key, &e);
                    outcome.failed = true;
                }
            }
            return;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        if phase != "Pending" || is_terminal(pod) {
            return;
        }
        let seen = *self.pod_bound_seen.entry(uid).or_insert(now);
        let due = seen + self.config.pod_start_delay;
        if now < due {
            outcome.wake(due);
            return;
        }
        match self.start_pod(pod, node.map(|n| n.as_ref())).await {
            Ok(()) => tracing::debug!(pod = %key, node = %node_name, "running"),
            Err(e) => {
                log_write_error("start pod", &key, &e);
                outcome.failed = true;
            }
        }
    }
}

fn qos_class(spec: &k8s_openapi::api::core::v1::PodSpec) -> &'static str {
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let mut any_set = false;
    let mut guaranteed = true;
    for c in all {
        let r = c.resources.as_ref();
        let requests = r.and_then(|r| r.requests.clone()).unwrap_or_default();
        let limits = r.and_then(|r| r.limits.clone()).unwrap_or_default();
        any_set |= !requests.is_empty() || !limits.is_empty();
        for res in ["cpu", "memory"] {
            let limit = limits.get(res);
            if limit.is_none() || requests.get(res).is_some_and(|q| Some(q) != limit) {
                guaranteed = false;
            }
        }
    }
    if !any_set {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

impl Component for NodeAgent {
    async fn pass(&mut self) -> Outcome {
        let mut outcome = Outcome::default();
        let now = Instant::now();
        let mut nodes = self.nodes.state();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let pods = self.pods.state();
        let node_uids: BTreeSet<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.uid.clone())
            .collect();
        self.node_seen.retain(|uid, _| node_uids.contains(uid));
        self.node_ready_seen
            .retain(|uid, _| node_uids.contains(uid));
        let node_names: BTreeSet<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        self.pod_ips.retain(|name, _| node_names.contains(name));
        let pod_uids: BTreeSet<String> =
            pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        self.pod_bound_seen.retain(|uid, _| pod_uids.contains(uid));
        self.pod_terminating_seen
            .retain(|uid, _| pod_uids.contains(uid));
        for node in &nodes {
            if node.metadata.deletion_timestamp.is_none() {
                self.converge_node(node, now, &mut outcome).await;
            }
        }
        let by_name: BTreeMap<String, Arc<Node>> = nodes
            .iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, n.clone())))
            .collect();
        let mut verified = BTreeMap::new();
        for pod in &pods {
            self.converge_pod(pod, &by_name, &mut verified, now, &mut outcome)
                .await;
        }
        outcome
    }
}

/// Runs the node agent until shutdown.
pub async fn run(
    client: Client,
    config: NodeAgentConfig,
    clock: SharedClock,
    shutdown: ShutdownRx,
) {
    let mut caches = Caches::new(shutdown.clone());
    let pods = caches.watch(Api::<Pod>::all(client.clone()));
    let nodes = caches.watch(Api::<Node>::all(client.clone()));
    if caches.ready(&[&pods]).await && caches.ready(&[&nodes]).await {
        let timing = LoopTiming {
            resync: config.resync,
            debounce: config.debounce,
        };
        let agent = NodeAgent {
            client,
            config,
            clock,
            pods,
            nodes,
            node_seen: BTreeMap::new(),
            node_ready_seen: BTreeMap::new(),
            pod_bound_seen: BTreeMap::new(),
            pod_terminating_seen: BTreeMap::new(),
            pod_ips: BTreeMap::new(),
            next_node_index: 0,
        };
        drive(agent, caches.changed.clone(), timing, shutdown).await;
    }
    caches.join().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_taint_annotation_parses_both_syntaxes() {
        let p = |key: &str, value: Option<&str>, effect: Option<&str>| TaintPattern {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
        };
        let cases: Vec<(&str, Vec<TaintPattern>)> = vec![
            ("", vec![]),
            (
                "a.io/x:NoSchedule",
                vec![p("a.io/x", None, Some("NoSchedule"))],
            ),
            (
                "a=b:NoExecute, c",
                vec![p("a", Some("b"), Some("NoExecute")), p("c", None, None)],
            ),
            (
                r#"[{"key":"k","value":"v","effect":"NoSchedule"}]"#,
                vec![p("k", Some("v"), Some("NoSchedule"))],
            ),
            ("[not json", vec![]),
        ];
        for (input, want) in cases {
            assert_eq!(parse_startup_taints(input), want, "{input}");
        }
    }
}
