//! Immutable snapshots of cluster state and what the provisioner and disruption build from them:
//! state nodes, the solver's [`SchedulingInput`], provisionable pods, pods to move off deleting
//! nodes, NodePool usage.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use karpenter_apis::ec2nodeclass::EC2NodeClass;
use karpenter_apis::labels;
use karpenter_apis::nodepool::NodePool;
use karpenter_scheduling::model::{
    LabelSelector, NodeView, PodView, Taint, Volumes, first_untolerated,
};
use karpenter_scheduling::resources::NODES;
use karpenter_scheduling::{NodePoolView, Requirements, Resources, SchedulingInput};

use crate::cow::Key;
use crate::state::{Inner, NodeUsage, PodSchedulingTimes};
use crate::views::{NodeClaimInfo, NodeInfo, PdbInfo, PodInfo, VolumeAttachmentInfo};

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A Node and/or its NodeClaim, joined by provider ID. A NodeClaim without a Node is in flight;
/// a Node without a NodeClaim is unmanaged (or not linked yet).
#[derive(Debug, Clone)]
pub struct StateNode {
    /// The Node, once registered.
    pub node: Option<Arc<NodeInfo>>,
    /// The NodeClaim, for managed nodes.
    pub nodeclaim: Option<Arc<NodeClaimInfo>>,
    /// Pods bound to the Node and what they request.
    pub usage: Option<Arc<NodeUsage>>,
    /// Marked for deletion by disruption (pods are being moved off).
    pub marked_for_deletion: bool,
    /// Inside its nomination window as of the snapshot.
    pub nominated: bool,
}

impl StateNode {
    /// The key marks and nominations use: provider ID, else Node name, else NodeClaim name.
    pub fn key(&self) -> &str {
        self.provider_id().unwrap_or_else(|| self.name())
    }

    /// The Node name, or the NodeClaim name while in flight.
    pub fn name(&self) -> &str {
        match (&self.node, &self.nodeclaim) {
            (Some(n), _) => &n.name,
            (None, Some(nc)) => &nc.name,
            (None, None) => "",
        }
    }

    /// Provider ID (NodeClaim's first, as it is known before the Node exists).
    pub fn provider_id(&self) -> Option<&str> {
        self.nodeclaim
            .as_ref()
            .and_then(|nc| nc.provider_id.as_deref())
            .or_else(|| self.node.as_ref().and_then(|n| n.provider_id.as_deref()))
    }

    /// Has a NodeClaim (Karpenter manages it).
    pub fn managed(&self) -> bool {
        self.nodeclaim.is_some()
    }

    fn node_label_true(&self, key: &str) -> bool {
        self.node
            .as_ref()
            .and_then(|n| n.labels.get(key))
            .is_some_and(|v| v == "true")
    }

    /// Unmanaged nodes always; managed ones once the Node carries `karpenter.sh/registered`.
    pub fn registered(&self) -> bool {
        !self.managed() || self.node_label_true(labels::REGISTERED)
    }

    /// Unmanaged nodes always; managed ones once the Node carries `karpenter.sh/initialized`.
    pub fn initialized(&self) -> bool {
        !self.managed() || self.node_label_true(labels::INITIALIZED)
    }

    /// A NodeClaim whose Node has not appeared.
    pub fn in_flight(&self) -> bool {
        self.node.is_none()
    }

    /// The Node or NodeClaim has a deletion timestamp.
    pub fn deleting(&self) -> bool {
        self.node
            .as_ref()
            .is_some_and(|n| n.deletion_timestamp.is_some())
            || self
                .nodeclaim
                .as_ref()
                .is_some_and(|nc| nc.deletion_timestamp.is_some())
    }

    /// Neither deleting nor marked for deletion: counts as capacity.
    pub fn active(&self) -> bool {
        !self.marked_for_deletion && !self.deleting()
    }

    /// Labels: the NodeClaim's until the Node registers, then the Node's.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        match (&self.node, &self.nodeclaim) {
            (_, Some(nc)) if !self.registered() => &nc.labels,
            (Some(n), _) => &n.labels,
            (None, Some(nc)) => &nc.labels,
            (None, None) => &NO_LABELS,
        }
    }

    /// `karpenter.sh/nodepool`.
    pub fn nodepool(&self) -> Option<&str> {
        self.labels().get(labels::NODEPOOL).map(String::as_str)
    }

    /// Taints for scheduling: the NodeClaim's until registered, the Node's after; startup and
    /// ephemeral taints are left out until a managed node is initialized.
    pub fn taints(&self) -> Vec<Taint> {
        let base: &[Taint] = match (&self.node, &self.nodeclaim) {
            (_, Some(nc)) if !self.registered() => &nc.taints,
            (Some(n), _) => &n.taints,
            (None, Some(nc)) => &nc.taints,
            (None, None) => &[],
        };
        match &self.nodeclaim {
            Some(nc) if !self.initialized() => base
                .iter()
                .filter(|t| {
                    !nc.startup_taints.contains(t)
                        && !labels::is_ephemeral_taint(
                            &t.key,
                            t.value.as_deref(),
                            t.effect.as_str(),
                        )
                })
                .cloned()
                .collect(),
            _ => base.to_vec(),
        }
    }

    fn resources(
        &self,
        pick: impl Fn(&NodeInfo) -> &Resources,
        claim: impl Fn(&NodeClaimInfo) -> &Resources,
    ) -> Resources {
        match (&self.node, &self.nodeclaim) {
            (Some(n), Some(nc)) if !self.initialized() => {
                // The kubelet may not have reported every resource yet (extended resources
                // appear late): zero values fall back to what the NodeClaim expects.
                let mut r = pick(n).clone();
                for (name, v) in claim(nc).iter() {
                    if r.get(name) == 0 {
                        r.set(name, v);
                    }
                }
                r
            }
            (Some(n), _) => pick(n).clone(),
            (None, Some(nc)) => claim(nc).clone(),
            (None, None) => Resources::new(),
        }
    }

    /// Capacity (counted against NodePool limits).
    pub fn capacity(&self) -> Resources {
        self.resources(|n| &n.capacity, |nc| &nc.capacity)
    }

    /// Allocatable.
    pub fn allocatable(&self) -> Resources {
        self.resources(|n| &n.allocatable, |nc| &nc.allocatable)
    }

    /// Summed requests of bound, non-terminal pods.
    pub fn requested(&self) -> Resources {
        self.usage
            .as_ref()
            .map(|u| u.requested.clone())
            .unwrap_or_default()
    }

    /// Keys (`namespace/name`) of pods bound here.
    pub fn pod_keys(&self) -> impl Iterator<Item = &Key> {
        self.usage.iter().flat_map(|u| u.pods.iter())
    }

    /// The Node or NodeClaim carries `karpenter.sh/do-not-disrupt: "true"`.
    pub fn do_not_disrupt(&self) -> bool {
        self.node.as_ref().is_some_and(|n| n.do_not_disrupt)
            || self.nodeclaim.as_ref().is_some_and(|nc| nc.do_not_disrupt)
    }
}

/// Options for [`Snapshot::scheduling_input_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputOptions {
    /// State nodes (by key or name) to leave out, e.g. disruption candidates being simulated
    /// away.
    pub exclude_nodes: BTreeSet<String>,
    /// Pass every bound pod instead of only those that can affect the pending pods' topology
    /// (selected by one of their spread/affinity terms, or carrying required anti-affinity).
    pub all_bound_pods: bool,
}

/// An immutable view of cluster state at one instant. Cheap to take and to clone.
#[derive(Debug, Clone)]
pub struct Snapshot {
    inner: Arc<Inner>,
    now: DateTime<Utc>,
}

impl Snapshot {
    pub(crate) fn new(inner: Arc<Inner>, now: DateTime<Utc>) -> Snapshot {
        Snapshot { inner, now }
    }

    /// When it was taken (by the state's clock).
    pub fn taken_at(&self) -> DateTime<Utc> {
        self.now
    }

    fn state_node(
        &self,
        nc: Option<&Arc<NodeClaimInfo>>,
        node: Option<&Arc<NodeInfo>>,
    ) -> StateNode {
        let mut sn = StateNode {
            node: node.cloned(),
            nodeclaim: nc.cloned(),
            usage: node.and_then(|n| self.inner.usage.get(&n.name).cloned()),
            marked_for_deletion: false,
            nominated: false,
        };
        let key = sn.key().to_string();
        sn.marked_for_deletion = self.inner.marked_for_deletion.contains(&key);
        sn.nominated = self
            .inner
            .nominations
            .get(&key)
            .is_some_and(|t| *t > self.now);
        sn
    }

    /// Every state node, ordered by key.
    pub fn nodes(&self) -> Vec<StateNode> {
        let i = &self.inner;
        let mut out = Vec::with_capacity(i.nodeclaims.len() + i.nodes.len());
        let mut claimed: HashSet<&str> = HashSet::new();
        for nc in i.nodeclaims.values() {
            let node = nc
                .provider_id
                .as_deref()
                .and_then(|p| i.node_by_provider.get(p))
                .and_then(|name| i.nodes.get(name));
            if let Some(n) = node {
                claimed.insert(&n.name);
            }
            out.push(self.state_node(Some(nc), node));
        }
        for n in i.nodes.values() {
            if !claimed.contains(n.name.as_str()) {
                out.push(self.state_node(None, Some(n)));
            }
        }
        out.sort_by(|a, b| a.key().cmp(b.key()).then_with(|| a.name().cmp(b.name())));
        out
    }

    /// The state node with this key (provider ID) or Node/NodeClaim name.
    pub fn node(&self, key: &str) -> Option<StateNode> {
        let i = &self.inner;
        if let Some(nc) = i
            .nodeclaim_by_provider
            .get(key)
            .and_then(|n| i.nodeclaims.get(n))
            .or_else(|| i.nodeclaims.get(key))
        {
            let node = nc
                .provider_id
                .as_deref()
                .and_then(|p| i.node_by_provider.get(p))
                .and_then(|name| i.nodes.get(name));
            return Some(self.state_node(Some(nc), node));
        }
        let node = i
            .node_by_provider
            .get(key)
            .and_then(|n| i.nodes.get(n))
            .or_else(|| i.nodes.get(key))?;
        let nc = node
            .provider_id
            .as_deref()
            .and_then(|p| i.nodeclaim_by_provider.get(p))
            .and_then(|n| i.nodeclaims.get(n));
        Some(self.state_node(nc, Some(node)))
    }

    /// A pod by namespace and name.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        self.inner.pods.get(&format!("{namespace}/{name}")).cloned()
    }

    /// The provisioning times of the pod with this UID, if the provisioner acknowledged it.
    pub fn pod_scheduling(&self, uid: &str) -> Option<PodSchedulingTimes> {
        self.inner.pod_scheduling.get(uid).copied()
    }

    /// Every pod (deterministic order, not sorted).
    pub fn pods(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.inner.pods.values()
    }

    /// Number of pods.
    pub fn pod_count(&self) -> usize {
        self.inner.pods.len()
    }

    /// Pods bound to the Node of this name, ordered by key.
    pub fn pods_on_node(&self, node_name: &str) -> Vec<Arc<PodInfo>> {
        self.inner
            .usage
            .get(node_name)
            .map(|u| {
                u.pods
                    .iter()
                    .filter_map(|k| self.inner.pods.get(k).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pods the provisioner should find capacity for (upstream's filter, see
    /// [`PodInfo::is_provisionable`]), ordered by key. Read from an index, not a scan.
    pub fn pending_provisionable_pods(&self) -> Vec<Arc<PodInfo>> {
        let mut keys: Vec<&Key> = self.inner.provisionable.keys().collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|k| self.inner.pods.get(k).cloned())
            .collect()
    }

    /// Whether a pod on a deleting node needs a new home: active (or a terminating StatefulSet
    /// pod, which must be replaced before it can come back), not a DaemonSet or mirror pod, no
    /// active do-not-disrupt, and no PDB that can never allow its eviction.
    pub fn is_reschedulable(&self, pod: &PodInfo) -> bool {
        let active = !pod.is_terminal() && !pod.is_terminating();
        (active || (pod.is_owned_by_statefulset() && pod.is_terminating() && !pod.is_terminal()))
            && !pod.is_owned_by_daemonset()
            && !pod.mirror
            && !(pod.do_not_disrupt && active)
            && !self
                .inner
                .pdbs
                .values()
                .any(|pdb| pdb.fully_blocking() && pdb.selects(&pod.view))
    }

    /// Reschedulable pods on state nodes that are deleting or marked for deletion, ordered by
    /// key.
    pub fn pods_on_deleting_nodes(&self) -> Vec<Arc<PodInfo>> {
        let mut out: Vec<Arc<PodInfo>> = self
            .nodes()
            .iter()
            .filter(|n| !n.active())
            .flat_map(|n| {
                n.pod_keys()
                    .filter_map(|k| self.inner.pods.get(k).cloned())
                    .collect::<Vec<_>>()
            })
            .filter(|p| self.is_reschedulable(p))
            .collect();
        out.sort_by_key(|p| p.key());
        out
    }

    /// Summed capacity of the NodePool's state nodes (in-flight NodeClaims included), with the
    /// node count under `nodes` — what NodePool limits compare against.
    pub fn nodepool_usage(&self, nodepool: &str) -> Resources {
        let mut total = Resources::new();
        let mut count = 0;
        for n in self.nodes() {
            if n.nodepool() == Some(nodepool) {
                total.add(&n.capacity());
                count += 1;
            }
        }
        total.set(NODES, count);
        total
    }

    /// NodeClaims labelled with this NodePool, ordered by name.
    pub fn nodeclaims_for_nodepool(&self, nodepool: &str) -> Vec<Arc<NodeClaimInfo>> {
        let mut out: Vec<Arc<NodeClaimInfo>> = self
            .inner
            .nodeclaims
            .values()
            .filter(|nc| nc.nodepool() == Some(nodepool))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Every NodeClaim, ordered by name.
    pub fn nodeclaims(&self) -> Vec<Arc<NodeClaimInfo>> {
        let mut out: Vec<_> = self.inner.nodeclaims.values().cloned().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Every NodePool, ordered by name.
    pub fn nodepools(&self) -> Vec<Arc<NodePool>> {
        let mut out: Vec<_> = self.inner.nodepools.iter().collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out.into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// A NodePool by name.
    pub fn nodepool(&self, name: &str) -> Option<Arc<NodePool>> {
        self.inner.nodepools.get(name).cloned()
    }

    /// An EC2NodeClass by name.
    pub fn nodeclass(&self, name: &str) -> Option<Arc<EC2NodeClass>> {
        self.inner.nodeclasses.get(name).cloned()
    }

    /// Every EC2NodeClass, ordered by name.
    pub fn nodeclasses(&self) -> Vec<Arc<EC2NodeClass>> {
        let mut out: Vec<_> = self.inner.nodeclasses.iter().collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out.into_iter().map(|(_, v)| v.clone()).collect()
    }

    fn daemonset_representatives(&self) -> Vec<(Key, PodView)> {
        let mut out: Vec<(Key, PodView)> = self
            .inner
            .daemonsets
            .iter()
            .map(|(key, ds)| {
                let existing = self
                    .inner
                    .daemonset_pods
                    .get(key)
                    .and_then(|pods| pods.iter().find_map(|k| self.inner.pods.get(k)));
                let view = match existing {
                    Some(pod) => {
                        // A running pod has the real requests (after admission and
                        // mutation), but the DaemonSet controller pins it to its node with a
                        // matchFields term: put the template's node affinity back.
                        let mut v = pod.view.clone();
                        v.required_node_affinity = ds.template.required_node_affinity.clone();
                        v.uses_match_fields = ds.template.uses_match_fields;
                        v.node_name = None;
                        v
                    }
                    None => ds.template.clone(),
                };
                (key.clone(), view)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// One representative pod per DaemonSet (an existing pod of it if any, else its
    /// template), ordered by DaemonSet.
    pub fn daemonset_pods(&self) -> Vec<PodView> {
        self.daemonset_representatives()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    /// Namespace labels by namespace.
    pub fn namespaces(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.inner
            .namespaces
            .iter()
            .map(|(k, v)| (k.to_string(), (**v).clone()))
            .collect()
    }

    /// PVCs, PVs and StorageClasses.
    pub fn volumes(&self) -> Volumes {
        Volumes {
            pvcs: self
                .inner
                .pvcs
                .iter()
                .map(|(k, v)| (k.to_string(), (**v).clone()))
                .collect(),
            pvs: self
                .inner
                .pvs
                .iter()
                .map(|(k, v)| (k.to_string(), (**v).clone()))
                .collect(),
            storage_classes: self
                .inner
                .storage_classes
                .iter()
                .map(|(k, v)| (k.to_string(), (**v).clone()))
                .collect(),
        }
    }

    /// Every PodDisruptionBudget, ordered by `namespace/name`.
    pub fn pdbs(&self) -> Vec<Arc<PdbInfo>> {
        let mut out: Vec<_> = self.inner.pdbs.iter().collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out.into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// The PodDisruptionBudgets selecting `pod`.
    pub fn pdbs_for_pod(&self, pod: &PodView) -> Vec<Arc<PdbInfo>> {
        self.pdbs().into_iter().filter(|p| p.selects(pod)).collect()
    }

    /// VolumeAttachments on the Node of this name, ordered by name.
    pub fn volume_attachments_for_node(&self, node_name: &str) -> Vec<Arc<VolumeAttachmentInfo>> {
        let mut out: Vec<_> = self
            .inner
            .volume_attachments
            .values()
            .filter(|v| v.node_name == node_name)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The solver's view of a state node: labels, taints and resources per the uninitialized
    /// rules of [`StateNode`]; `used` = bound pods + pods preempting onto it (unless among
    /// `pending`) + DaemonSets that would run there but have no pod yet.
    pub fn node_view(
        &self,
        sn: &StateNode,
        daemonsets: &[(Key, PodView)],
        pending_uids: &HashSet<&str>,
    ) -> NodeView {
        let labels_map = sn.labels().clone();
        let taints = sn.taints();
        let mut used = Resources::new();
        let mut host_ports = Vec::new();
        let mut volumes_attached: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let volumes = &self.inner;
        if let Some(u) = &sn.usage {
            used.add(&u.requested);
            for k in &u.nominated_pods {
                if let Some(p) = self.inner.pods.get(k)
                    && !pending_uids.contains(p.view.uid.as_str())
                {
                    used.add(&p.view.requests);
                }
            }
            for k in &u.pods_with_ports_or_volumes {
                let Some(p) = self.inner.pods.get(k) else {
                    continue;
                };
                host_ports.extend(p.view.host_ports.iter().cloned());
                for claim in &p.view.pvcs {
                    let pvc_key = format!("{}/{}", p.view.namespace, claim);
                    let Some(pv_name) = volumes
                        .pvcs
                        .get(&pvc_key)
                        .and_then(|c| c.volume_name.clone())
                    else {
                        continue;
                    };
                    if let Some(driver) = volumes
                        .pvs
                        .get(&pv_name)
                        .and_then(|pv| pv.csi_driver.clone())
                    {
                        volumes_attached.entry(driver).or_default().insert(pv_name);
                    }
                }
            }
        }
        // DaemonSets may select the lifecycle labels a managed node gets once it is up; judge
        // an uninitialized node as it will be (upstream's simulation labels do the same).
        {
            let ds_labels = if sn.managed() && !sn.initialized() {
                let mut l = labels_map.clone();
                l.insert(labels::REGISTERED.to_string(), "true".to_string());
                l.insert(labels::INITIALIZED.to_string(), "true".to_string());
                std::borrow::Cow::Owned(l)
            } else {
                std::borrow::Cow::Borrowed(&labels_map)
            };
            for (ds_key, ds) in daemonsets {
                let running = sn
                    .usage
                    .as_ref()
                    .is_some_and(|u| u.daemonsets.contains_key(ds_key));
                if !running && daemonset_would_run(ds, &ds_labels, &taints) {
                    used.add(&ds.requests);
                }
            }
        }
        let startup_taints = sn
            .nodeclaim
            .as_ref()
            .map(|nc| nc.startup_taints.clone())
            .unwrap_or_default();
        let volume_limits = sn
            .node
            .as_ref()
            .and_then(|n| self.inner.csinodes.get(&n.name))
            .map(|l| (**l).clone())
            .unwrap_or_default();
        NodeView {
            name: sn.name().to_string(),
            labels: labels_map,
            taints,
            startup_taints,
            capacity: sn.capacity(),
            allocatable: sn.allocatable(),
            used,
            host_ports,
            volume_limits,
            volumes_attached,
            initialized: sn.initialized(),
            in_flight: sn.in_flight(),
        }
    }

    /// The solver input for `pending` pods and `nodepools` (with their instance types): every
    /// active state node (in-flight NodeClaims included) as a [`NodeView`], DaemonSet
    /// representatives, the bound pods that can affect the pending pods' topology, namespace
    /// labels and volumes. `topology_domains` is left for the caller (it knows the region's
    /// zones).
    pub fn scheduling_input(
        &self,
        pending: Vec<PodView>,
        nodepools: Vec<NodePoolView>,
    ) -> SchedulingInput {
        self.scheduling_input_with(pending, nodepools, &InputOptions::default())
    }

    /// [`Snapshot::scheduling_input`] with options.
    pub fn scheduling_input_with(
        &self,
        pending: Vec<PodView>,
        nodepools: Vec<NodePoolView>,
        options: &InputOptions,
    ) -> SchedulingInput {
        let daemonsets = self.daemonset_representatives();
        let pending_uids: HashSet<&str> = pending.iter().map(|p| p.uid.as_str()).collect();
        let nodes: Vec<StateNode> = self
            .nodes()
            .into_iter()
            .filter(|n| {
                n.active()
                    && !options.exclude_nodes.contains(n.key())
                    && !options.exclude_nodes.contains(n.name())
            })
            .collect();
        let node_views: Vec<NodeView> = nodes
            .iter()
            .map(|n| self.node_view(n, &daemonsets, &pending_uids))
            .collect();
        let selectors = SelectorIndex::new(topology_selectors(&pending));
        let mut bound_pods = Vec::new();
        for n in &nodes {
            for k in n.pod_keys() {
                let Some(p) = self.inner.pods.get(k) else {
                    continue;
                };
                if !p.counts_on_node()
                    || p.is_terminating()
                    || pending_uids.contains(p.view.uid.as_str())
                {
                    continue;
                }
                if options.all_bound_pods
                    || !p.view.pod_anti_affinity.is_empty()
                    || selectors.any_match(&p.view.labels)
                {
                    bound_pods.push(p.view.clone());
                }
            }
        }
        SchedulingInput {
            pods: pending,
            nodes: node_views,
            bound_pods,
            nodepools,
            daemonsets: daemonsets.into_iter().map(|(_, v)| v).collect(),
            topology_domains: BTreeMap::new(),
            namespaces: self.namespaces(),
            volumes: self.volumes(),
        }
    }
}

/// Label selectors of every spread constraint and (anti-)affinity term of `pods`.
fn topology_selectors(pods: &[PodView]) -> Vec<&LabelSelector> {
    let mut out = Vec::new();
    for p in pods {
        out.extend(
            p.topology_spread
                .iter()
                .filter_map(|t| t.label_selector.as_ref()),
        );
        out.extend(
            p.pod_affinity
                .iter()
                .filter_map(|t| t.label_selector.as_ref()),
        );
        out.extend(
            p.pod_anti_affinity
                .iter()
                .filter_map(|t| t.label_selector.as_ref()),
        );
        out.extend(
            p.preferred_pod_affinity
                .iter()
                .filter_map(|t| t.term.label_selector.as_ref()),
        );
        out.extend(
            p.preferred_pod_anti_affinity
                .iter()
                .filter_map(|t| t.term.label_selector.as_ref()),
        );
    }
    out.sort();
    out.dedup();
    out
}

/// Selectors indexed by their first `matchLabels` pair, so testing a pod costs one lookup per
/// pod label instead of one match per selector.
struct SelectorIndex<'a> {
    by_label: HashMap<(&'a str, &'a str), Vec<&'a LabelSelector>>,
    others: Vec<&'a LabelSelector>,
}

impl<'a> SelectorIndex<'a> {
    fn new(selectors: Vec<&'a LabelSelector>) -> Self {
        let mut index = SelectorIndex {
            by_label: HashMap::new(),
            others: Vec::new(),
        };
        for s in selectors {
            match s.match_labels.iter().next() {
                Some((k, v)) => index
                    .by_label
                    .entry((k.as_str(), v.as_str()))
                    .or_default()
                    .push(s),
                None => index.others.push(s),
            }
        }
        index
    }

    fn any_match(&self, labels_map: &BTreeMap<String, String>) -> bool {
        labels_map.iter().any(|(k, v)| {
            self.by_label
                .get(&(k.as_str(), v.as_str()))
                .is_some_and(|ss| ss.iter().any(|s| s.matches(labels_map)))
        }) || self.others.iter().any(|s| s.matches(labels_map))
    }
}

/// Whether a DaemonSet's pod would land on a node with these labels and taints.
fn daemonset_would_run(
    ds: &PodView,
    node_labels: &BTreeMap<String, String>,
    taints: &[Taint],
) -> bool {
    first_untolerated(taints.iter(), &ds.tolerations, true).is_none()
        && ds
            .node_selector
            .iter()
            .all(|(k, v)| node_labels.get(k) == Some(v))
        && (ds.required_node_affinity.is_empty()
            || ds.required_node_affinity.iter().any(|term| {
                Requirements::from_specs(term).is_ok_and(|r| r.matches_labels(node_labels).is_ok())
            }))
}
