//! DaemonSet controller: one pod per Node the template can run on, pinned to that Node with
//! required node affinity on `metadata.name` (the scheduler then binds it), and status counts.
//!
//! Simplified: no rolling update of changed templates (`updatedNumberScheduled` counts every
//! current pod), `minReadySeconds` ignored.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::{
    Ctx, Expectations, create_pod, delete_pod, is_active, key_of, note_error, owned_pods,
    owner_ref, pod_ready,
};
use crate::cluster::runtime::Outcome;
use crate::cluster::scheduler::fit::{node_selector_matches, tolerates};

/// Syncs every DaemonSet.
#[derive(Debug, Default)]
pub(crate) struct DaemonSetController {
    expectations: Expectations,
}

/// Tolerations the real controller adds to every daemon pod.
fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    };
    let mut list = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        list.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    list
}

/// The template as a pod (before pinning), with the default tolerations merged in.
fn template_pod(ds: &DaemonSet) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in default_tolerations(spec.host_network.unwrap_or(false)) {
        if !tolerations.contains(&t) {
            tolerations.push(t);
        }
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.metadata.name.as_deref().unwrap_or("ds"))),
            namespace: ds.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            owner_references: Some(vec![owner_ref("apps/v1", "DaemonSet", &ds.metadata)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Pins `pod` to `node`: every required term's `metadata.name` field requirement becomes
/// `In [node]` (one term is added if there are none).
fn pin(mut pod: Pod, node: &str) -> Pod {
    let field = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.into()]),
    };
    let spec = pod.spec.get_or_insert_with(Default::default);
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        let mut fields: Vec<NodeSelectorRequirement> = term
            .match_fields
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f.key != "metadata.name")
            .collect();
        fields.push(field.clone());
        term.match_fields = Some(fields);
    }
    pod
}

/// The Node a daemon pod is for: its binding, or the `metadata.name` it is pinned to.
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

fn node_taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

/// (should run a new pod here, may keep an existing one here).
fn placement(template: &Pod, node: &Node) -> (bool, bool) {
    let name = node.metadata.name.as_deref().unwrap_or("");
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if !node_selector_matches(template, name, &labels) {
        return (false, false);
    }
    let tolerations = template
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        node_taints(node)
            .iter()
            .any(|t| t.effect == effect && !tolerates(&tolerations, t))
    };
    let no_execute = untolerated("NoExecute");
    (!no_execute && !untolerated("NoSchedule"), !no_execute)
}

impl DaemonSetController {
    pub(crate) async fn pass(&mut self, ctx: &Ctx, outcome: &mut Outcome) {
        let pods = ctx.pods.state();
        let mut nodes = ctx.nodes.state();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut sets = ctx.daemonsets.state();
        sets.sort_by_key(|d| key_of(&d.metadata));
        let uids: BTreeSet<String> = sets.iter().filter_map(|d| d.metadata.uid.clone()).collect();
        self.expectations.forget_except(&uids);
        for ds in sets {
            let Some(uid) = ds.metadata.uid.clone() else {
                continue;
            };
            let key = key_of(&ds.metadata);
            let ns = ds
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let template = template_pod(&ds);
            let owned = owned_pods(&pods, &uid);
            let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
            for pod in owned.iter().copied().filter(|p| is_active(p)) {
                by_node
                    .entry(target_node(pod).unwrap_or_default())
                    .or_default()
                    .push(pod);
            }
            let mut desired = 0usize;
            let mut scheduled = 0usize;
            let mut ready = 0usize;
            let mut misscheduled = 0usize;
            let mut to_create: Vec<String> = Vec::new();
            let mut to_delete: Vec<&Pod> = Vec::new();
            let live: BTreeSet<String> = nodes
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            for node in &nodes {
                let name = node.metadata.name.clone().unwrap_or_default();
                let (should_run, may_keep) = placement(&template, node);
                let here = by_node.get(&name).cloned().unwrap_or_default();
                if should_run {
                    desired += 1;
                }
                if here.is_empty() {
                    if should_run && node.metadata.deletion_timestamp.is_none() {
                        to_create.push(name);
                    }
                    continue;
                }
                if should_run || may_keep {
                    scheduled += usize::from(should_run);
                    ready += usize::from(should_run && here.iter().any(|p| pod_ready(p)));
                    // Keep the oldest; extras go.
                    let mut sorted = here.clone();
                    sorted.sort_by(|a, b| {
                        a.metadata
                            .creation_timestamp
                            .cmp(&b.metadata.creation_timestamp)
                    });
                    to_delete.extend(sorted.into_iter().skip(1));
                    misscheduled += usize::from(!should_run);
                } else {
                    misscheduled += 1;
                    to_delete.extend(here);
                }
            }
            // Pods pinned to nodes that are gone.
            for (node, here) in &by_node {
                if !live.contains(node) {
                    to_delete.extend(here.iter().copied());
                }
            }
            if ds.metadata.deletion_timestamp.is_none() && self.expectations.satisfied(&uid, &owned)
            {
                for node in to_create.iter().take(ctx.burst) {
                    match create_pod(&ctx.client, &ns, &pin(template.clone(), node)).await {
                        Ok(name) => self.expectations.created(&uid, name),
                        Err(e) => {
                            note_error(outcome, "create daemon pod", &key, &e);
                            break;
                        }
                    }
                }
                for pod in to_delete {
                    match delete_pod(&ctx.client, pod).await {
                        Ok(()) => {
                            if let Some(p) = pod.metadata.uid.clone() {
                                self.expectations.deleted(&uid, p);
                            }
                        }
                        Err(e) => note_error(outcome, "delete daemon pod", &key, &e),
                    }
                }
            }
            let status = json!({
                "desiredNumberScheduled": desired,
                "currentNumberScheduled": scheduled,
                "numberMisscheduled": misscheduled,
                "numberReady": ready,
                "numberAvailable": ready,
                "numberUnavailable": desired.saturating_sub(ready),
                "updatedNumberScheduled": scheduled,
                "observedGeneration": ds.metadata.generation.unwrap_or(0),
            });
            let current = ds
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok())
                .unwrap_or_default();
            let changed = status.as_object().into_iter().flatten().any(|(k, v)| {
                current.get(k).and_then(|c| c.as_i64()).unwrap_or(0) != v.as_i64().unwrap_or(0)
            });
            if changed {
                let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
                let name = ds.metadata.name.as_deref().unwrap_or("");
                if let Err(e) = api
                    .patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await
                {
                    note_error(outcome, "update DaemonSet status", &key, &e);
                }
            }
        }
    }
}
