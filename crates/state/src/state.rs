//! The live cluster state: one [`ClusterState`] fed by watch events, with incremental indexes
//! (pods per node, requested resources per node, provisionable pods, DaemonSet pods), node
//! marks and nominations, and the synced gate.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{CSINode, StorageClass, VolumeAttachment};
use karpenter_apis::ec2nodeclass::EC2NodeClass;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::NodePool;
use karpenter_cloudprovider::SharedClock;
use karpenter_scheduling::Resources;
use karpenter_scheduling::convert::ConvertError;
use karpenter_scheduling::model::{PodView, PvView, PvcView, StorageClassView};
use kube::core::PartialObjectMeta;
use tokio::sync::watch;

use crate::cow::{CowMap, Key, LARGE, SMALL};
use crate::metrics::StateMetrics;
use crate::snapshot::Snapshot;
use crate::views::{
    DaemonSetInfo, NodeClaimInfo, NodeInfo, PdbInfo, PodInfo, VolumeAttachmentInfo, csinode_limits,
    namespaced_key, pv_view, pvc_view, storage_class_view, strip_metadata,
};

/// Every kind state watches. The synced gate waits for each to list once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1` Pod.
    Pod,
    /// `v1` Node.
    Node,
    /// `karpenter.sh/v1` NodeClaim.
    NodeClaim,
    /// `karpenter.sh/v1` NodePool.
    NodePool,
    /// `karpenter.k8s.aws/v1` EC2NodeClass.
    EC2NodeClass,
    /// `apps/v1` DaemonSet.
    DaemonSet,
    /// `policy/v1` PodDisruptionBudget.
    PodDisruptionBudget,
    /// `v1` PersistentVolumeClaim.
    PersistentVolumeClaim,
    /// `v1` PersistentVolume.
    PersistentVolume,
    /// `storage.k8s.io/v1` StorageClass.
    StorageClass,
    /// `storage.k8s.io/v1` CSINode.
    CSINode,
    /// `storage.k8s.io/v1` VolumeAttachment.
    VolumeAttachment,
    /// `v1` Namespace (labels only).
    Namespace,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 13] = [
        Kind::Pod,
        Kind::Node,
        Kind::NodeClaim,
        Kind::NodePool,
        Kind::EC2NodeClass,
        Kind::DaemonSet,
        Kind::PodDisruptionBudget,
        Kind::PersistentVolumeClaim,
        Kind::PersistentVolume,
        Kind::StorageClass,
        Kind::CSINode,
        Kind::VolumeAttachment,
        Kind::Namespace,
    ];

    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Node => "Node",
            Kind::NodeClaim => "NodeClaim",
            Kind::NodePool => "NodePool",
            Kind::EC2NodeClass => "EC2NodeClass",
            Kind::DaemonSet => "DaemonSet",
            Kind::PodDisruptionBudget => "PodDisruptionBudget",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
            Kind::PersistentVolume => "PersistentVolume",
            Kind::StorageClass => "StorageClass",
            Kind::CSINode => "CSINode",
            Kind::VolumeAttachment => "VolumeAttachment",
            Kind::Namespace => "Namespace",
        }
    }
}

/// Tunables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// How long a node stays nominated after a provisioning decision placed pods on it.
    pub nomination_window: Duration,
}

impl StateConfig {
    /// Upstream's window: max(2 × `BATCH_MAX_DURATION`, 10 s).
    pub fn from_batch_max_duration(batch_max: Duration) -> StateConfig {
        StateConfig {
            nomination_window: (batch_max * 2).max(Duration::from_secs(10)),
        }
    }
}

impl Default for StateConfig {
    /// The window for the default `BATCH_MAX_DURATION` of 10 s: 20 s.
    fn default() -> Self {
        StateConfig::from_batch_max_duration(Duration::from_secs(10))
    }
}

/// Pods bound to (or nominated onto) one node, and what they request. Kept up to date on every
/// pod event so building node views never sums pods.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeUsage {
    /// Every pod bound to the node (terminal ones too).
    pub pods: BTreeSet<Key>,
    /// Summed requests of bound, non-terminal pods (DaemonSet pods included).
    pub requested: Resources,
    /// The DaemonSet share of `requested`.
    pub daemonset_requested: Resources,
    /// Summed limits of bound, non-terminal pods (DaemonSet pods included).
    pub limits: Resources,
    /// The DaemonSet share of `limits`.
    pub daemonset_limits: Resources,
    /// DaemonSets (`namespace/name`) with a non-terminal pod here, and how many.
    pub daemonsets: BTreeMap<Key, u32>,
    /// Unbound, non-terminal pods whose `status.nominatedNodeName` is this node.
    pub nominated_pods: BTreeSet<Key>,
    /// Summed requests of `nominated_pods`.
    pub nominated_requested: Resources,
    /// Bound, non-terminal pods with host ports or volumes (read when building node views).
    pub pods_with_ports_or_volumes: BTreeSet<Key>,
}

fn pod_uses_ports_or_volumes(pod: &PodInfo) -> bool {
    !pod.view.host_ports.is_empty() || !pod.view.pvcs.is_empty()
}

impl NodeUsage {
    fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.nominated_pods.is_empty()
    }
}

/// The maps behind a state and its snapshots. Cloning copies one pointer per shard.
#[derive(Debug, Clone)]
pub(crate) struct Inner {
    pub(crate) pods: CowMap<Arc<PodInfo>>,
    pub(crate) provisionable: CowMap<()>,
    pub(crate) nodes: CowMap<Arc<NodeInfo>>,
    pub(crate) nodeclaims: CowMap<Arc<NodeClaimInfo>>,
    pub(crate) node_by_provider: CowMap<Key>,
    pub(crate) nodeclaim_by_provider: CowMap<Key>,
    pub(crate) usage: CowMap<Arc<NodeUsage>>,
    pub(crate) daemonset_pods: CowMap<Arc<BTreeSet<Key>>>,
    pub(crate) nodepools: CowMap<Arc<NodePool>>,
    pub(crate) nodeclasses: CowMap<Arc<EC2NodeClass>>,
    pub(crate) daemonsets: CowMap<Arc<DaemonSetInfo>>,
    pub(crate) pdbs: CowMap<Arc<PdbInfo>>,
    pub(crate) pvcs: CowMap<Arc<PvcView>>,
    pub(crate) pvs: CowMap<Arc<PvView>>,
    pub(crate) storage_classes: CowMap<Arc<StorageClassView>>,
    pub(crate) csinodes: CowMap<Arc<BTreeMap<String, i64>>>,
    pub(crate) volume_attachments: CowMap<Arc<VolumeAttachmentInfo>>,
    pub(crate) namespaces: CowMap<Arc<BTreeMap<String, String>>>,
    pub(crate) marked_for_deletion: Arc<BTreeSet<String>>,
    pub(crate) nominations: Arc<BTreeMap<String, DateTime<Utc>>>,
    /// Provisioning times of pods the provisioner has considered, by pod UID.
    pub(crate) pod_scheduling: CowMap<PodSchedulingTimes>,
    listed: BTreeSet<Kind>,
    api_confirmed: bool,
    has_synced: bool,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            pods: CowMap::new(LARGE),
            provisionable: CowMap::new(LARGE),
            nodes: CowMap::new(LARGE),
            nodeclaims: CowMap::new(LARGE),
            node_by_provider: CowMap::new(LARGE),
            nodeclaim_by_provider: CowMap::new(LARGE),
            usage: CowMap::new(LARGE),
            daemonset_pods: CowMap::new(SMALL),
            nodepools: CowMap::new(SMALL),
            nodeclasses: CowMap::new(SMALL),
            daemonsets: CowMap::new(SMALL),
            pdbs: CowMap::new(SMALL),
            pvcs: CowMap::new(LARGE),
            pvs: CowMap::new(LARGE),
            storage_classes: CowMap::new(SMALL),
            csinodes: CowMap::new(LARGE),
            volume_attachments: CowMap::new(LARGE),
            namespaces: CowMap::new(SMALL),
            marked_for_deletion: Arc::default(),
            nominations: Arc::default(),
            pod_scheduling: CowMap::new(LARGE),
            listed: BTreeSet::new(),
            api_confirmed: false,
            has_synced: false,
        }
    }
}

impl Inner {
    /// The usage entry of `node`, created when missing (`None` never happens in practice;
    /// callers skip rather than panic).
    fn usage_mut(&mut self, node: &str) -> Option<&mut NodeUsage> {
        if !self.usage.contains_key(node) {
            self.usage
                .insert(Key::from(node), Arc::new(NodeUsage::default()));
        }
        self.usage.get_mut(node).map(Arc::make_mut)
    }

    fn drop_usage_if_empty(&mut self, node: &str) {
        if self.usage.get(node).is_some_and(|u| u.is_empty()) {
            self.usage.remove(node);
        }
    }

    fn bind(&mut self, key: &Key, pod: &PodInfo) {
        if let Some(node) = pod.node_name() {
            let ds = pod.daemonset_key();
            let counts = pod.counts_on_node();
            let special = counts && pod_uses_ports_or_volumes(pod);
            let Some(u) = self.usage_mut(node) else {
                return;
            };
            u.pods.insert(key.clone());
            if special {
                u.pods_with_ports_or_volumes.insert(key.clone());
            }
            if counts {
                u.requested.add(&pod.view.requests);
                u.limits.add(&pod.limits);
                if let Some(ds) = ds {
                    u.daemonset_requested.add(&pod.view.requests);
                    u.daemonset_limits.add(&pod.limits);
                    *u.daemonsets.entry(ds).or_insert(0) += 1;
                }
            }
        } else if let Some(node) = pod.nominated_node_name.as_deref()
            && !pod.is_terminal()
            && let Some(u) = self.usage_mut(node)
        {
            u.nominated_pods.insert(key.clone());
            u.nominated_requested.add(&pod.view.requests);
        }
    }

    fn unbind(&mut self, key: &str, pod: &PodInfo) {
        if let Some(node) = pod.node_name() {
            if self.usage.contains_key(node) {
                let ds = pod.daemonset_key();
                let counts = pod.counts_on_node();
                let Some(u) = self.usage_mut(node) else {
                    return;
                };
                u.pods.remove(key);
                u.pods_with_ports_or_volumes.remove(key);
                if counts {
                    u.requested.sub(&pod.view.requests);
                    u.limits.sub(&pod.limits);
                    if let Some(ds) = ds
                        && let Some(n) = u.daemonsets.get_mut(&ds)
                    {
                        u.daemonset_requested.sub(&pod.view.requests);
                        u.daemonset_limits.sub(&pod.limits);
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            u.daemonsets.remove(&ds);
                        }
                    }
                }
                self.drop_usage_if_empty(node);
            }
        } else if let Some(node) = pod.nominated_node_name.as_deref()
            && !pod.is_terminal()
            && self.usage.contains_key(node)
        {
            if let Some(u) = self.usage_mut(node)
                && u.nominated_pods.remove(key)
            {
                u.nominated_requested.sub(&pod.view.requests);
            }
            self.drop_usage_if_empty(node);
        }
    }

    fn index_daemonset_pod(&mut self, key: &Key, pod: &PodInfo, add: bool) {
        let Some(ds) = pod.daemonset_key() else {
            return;
        };
        if add && !pod.is_terminal() {
            match self.daemonset_pods.get_mut(&ds) {
                Some(set) => {
                    Arc::make_mut(set).insert(key.clone());
                }
                None => {
                    self.daemonset_pods
                        .insert(ds, Arc::new(BTreeSet::from([key.clone()])));
                }
            }
        } else if let Some(set) = self.daemonset_pods.get_mut(&ds) {
            let set = Arc::make_mut(set);
            set.remove(&**key);
            if set.is_empty() {
                self.daemonset_pods.remove(&ds);
            }
        }
    }

    pub(crate) fn put_pod(&mut self, pod: PodInfo) {
        let fresh = pod.key();
        // Reuse the stored key's allocation; indexes share it.
        let key = self.pods.key(&fresh).cloned().unwrap_or(fresh);
        let pod = Arc::new(pod);
        if let Some(old) = self.pods.insert(key.clone(), pod.clone()) {
            self.unbind(&key, &old);
            self.index_daemonset_pod(&key, &old, false);
            if old.view.uid != pod.view.uid {
                // A pod recreated under the same name starts over.
                self.pod_scheduling.remove(&old.view.uid);
            }
        }
        self.bind(&key, &pod);
        self.index_daemonset_pod(&key, &pod, true);
        if pod.is_provisionable() {
            self.provisionable.insert(key, ());
        } else {
            self.provisionable.remove(&key);
        }
    }

    fn remove_pod(&mut self, key: &str) {
        if let Some(old) = self.pods.remove(key) {
            let key = Key::from(key);
            self.unbind(&key, &old);
            self.index_daemonset_pod(&key, &old, false);
            self.provisionable.remove(&key);
            self.pod_scheduling.remove(&old.view.uid);
        }
    }

    pub(crate) fn put_node(&mut self, node: NodeInfo) {
        let key = Key::from(node.name.as_str());
        let new_provider = node.provider_id.clone();
        if let Some(old) = self.nodes.insert(key.clone(), Arc::new(node)) {
            self.unlink_node_provider(&old);
        }
        if let Some(p) = new_provider {
            self.node_by_provider.insert(Key::from(p), key);
        }
    }

    fn unlink_node_provider(&mut self, old: &NodeInfo) {
        if let Some(p) = &old.provider_id
            && self
                .node_by_provider
                .get(p)
                .is_some_and(|n| **n == *old.name)
        {
            self.node_by_provider.remove(p);
        }
    }

    fn remove_node(&mut self, name: &str) {
        if let Some(old) = self.nodes.remove(name) {
            self.unlink_node_provider(&old);
        }
    }

    pub(crate) fn put_nodeclaim(&mut self, nc: NodeClaimInfo) {
        let key = Key::from(nc.name.as_str());
        let new_provider = nc.provider_id.clone();
        if let Some(old) = self.nodeclaims.insert(key.clone(), Arc::new(nc)) {
            self.unlink_nodeclaim_provider(&old);
        }
        if let Some(p) = new_provider {
            self.nodeclaim_by_provider.insert(Key::from(p), key);
        }
    }

    fn unlink_nodeclaim_provider(&mut self, old: &NodeClaimInfo) {
        if let Some(p) = &old.provider_id
            && self
                .nodeclaim_by_provider
                .get(p)
                .is_some_and(|n| **n == *old.name)
        {
            self.nodeclaim_by_provider.remove(p);
        }
    }

    fn remove_nodeclaim(&mut self, name: &str) {
        if let Some(old) = self.nodeclaims.remove(name) {
            self.unlink_nodeclaim_provider(&old);
        }
    }

    fn keys_of(&self, kind: Kind) -> Vec<Key> {
        fn keys<V: Clone>(m: &CowMap<V>) -> Vec<Key> {
            m.keys().cloned().collect()
        }
        match kind {
            Kind::Pod => keys(&self.pods),
            Kind::Node => keys(&self.nodes),
            Kind::NodeClaim => keys(&self.nodeclaims),
            Kind::NodePool => keys(&self.nodepools),
            Kind::EC2NodeClass => keys(&self.nodeclasses),
            Kind::DaemonSet => keys(&self.daemonsets),
            Kind::PodDisruptionBudget => keys(&self.pdbs),
            Kind::PersistentVolumeClaim => keys(&self.pvcs),
            Kind::PersistentVolume => keys(&self.pvs),
            Kind::StorageClass => keys(&self.storage_classes),
            Kind::CSINode => keys(&self.csinodes),
            Kind::VolumeAttachment => keys(&self.volume_attachments),
            Kind::Namespace => keys(&self.namespaces),
        }
    }

    pub(crate) fn remove(&mut self, kind: Kind, key: &str) {
        match kind {
            Kind::Pod => self.remove_pod(key),
            Kind::Node => self.remove_node(key),
            Kind::NodeClaim => self.remove_nodeclaim(key),
            Kind::NodePool => {
                self.nodepools.remove(key);
            }
            Kind::EC2NodeClass => {
                self.nodeclasses.remove(key);
            }
            Kind::DaemonSet => {
                self.daemonsets.remove(key);
            }
            Kind::PodDisruptionBudget => {
                self.pdbs.remove(key);
            }
            Kind::PersistentVolumeClaim => {
                self.pvcs.remove(key);
            }
            Kind::PersistentVolume => {
                self.pvs.remove(key);
            }
            Kind::StorageClass => {
                self.storage_classes.remove(key);
            }
            Kind::CSINode => {
                self.csinodes.remove(key);
            }
            Kind::VolumeAttachment => {
                self.volume_attachments.remove(key);
            }
            Kind::Namespace => {
                self.namespaces.remove(key);
            }
        }
    }

    /// Every NodeClaim and Node the API listed is in state.
    fn contains_all(&self, nodeclaims: &[String], nodes: &[String]) -> bool {
        nodeclaims.iter().all(|n| self.nodeclaims.contains_key(n))
            && nodes.iter().all(|n| self.nodes.contains_key(n))
    }

    fn all_listed(&self) -> bool {
        Kind::ALL.iter().all(|k| self.listed.contains(k))
    }

    /// Number of state nodes: every NodeClaim, plus Nodes no NodeClaim claims.
    pub(crate) fn state_node_count(&self) -> usize {
        let unclaimed = self
            .nodes
            .values()
            .filter(|n| {
                n.provider_id
                    .as_deref()
                    .is_none_or(|p| !self.nodeclaim_by_provider.contains_key(p))
            })
            .count();
        self.nodeclaims.len() + unclaimed
    }
}

/// One object kind state can hold: how to key it and apply it.
pub trait Tracked {
    /// Its kind.
    const KIND: Kind;
    /// The state key (`namespace/name` or `name`).
    fn state_key(&self) -> Key;
    /// Converts and stores it (conversion happens before the lock is taken).
    fn apply_to(&self, state: &ClusterState);
}

fn ns_key(md: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    namespaced_key(
        md.namespace.as_deref().unwrap_or("default"),
        md.name.as_deref().unwrap_or(""),
    )
}

fn name_key(md: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    Key::from(md.name.as_deref().unwrap_or(""))
}

impl Tracked for Pod {
    const KIND: Kind = Kind::Pod;
    fn state_key(&self) -> Key {
        ns_key(&self.metadata)
    }
    fn apply_to(&self, state: &ClusterState) {
        match PodInfo::from_pod(self) {
            Ok(info) => state.write(|i| i.put_pod(info)),
            Err(e) => state.reject(Self::KIND, &self.state_key(), &e),
        }
    }
}

impl Tracked for Node {
    const KIND: Kind = Kind::Node;
    fn state_key(&self) -> Key {
        name_key(&self.metadata)
    }
    fn apply_to(&self, state: &ClusterState) {
        match NodeInfo::from_node(self) {
            Ok(info) => state.write(|i| i.put_node(info)),
            Err(e) => state.reject(Self::KIND, &self.state_key(), &e),
        }
    }
}

impl Tracked for NodeClaim {
    const KIND: Kind = Kind::NodeClaim;
    fn state_key(&self) -> Key {
        name_key(&self.metadata)
    }
    fn apply_to(&self, state: &ClusterState) {
        match NodeClaimInfo::from_nodeclaim(self) {
            Ok(info) => state.write(|i| i.put_nodeclaim(info)),
            Err(e) => state.reject(Self::KIND, &self.state_key(), &e),
        }
    }
}

impl Tracked for NodePool {
    const KIND: Kind = Kind::NodePool;
    fn state_key(&self) -> Key {
        name_key(&self.metadata)
    }
    fn apply_to(&self, state: &ClusterState) {
        let mut np = self.clone();
        strip_metadata(&mut np.metadata);
        let key = self.state_key();
        state.write(|i| {
            i.nodepools.insert(key, Arc::new(np));
        });
    }
}

impl Tracked for EC2NodeClass {
    const KIND: Kind = Kind::EC2NodeClass;
    fn state_key(&self) -> Key {
        name_key(&self.metadata)
    }
    fn apply_to(&self, state: &ClusterState) {
        let mut nc = self.clone();
        strip_metadata(&mut nc.metadata);
        let key = self.state_key();
        state.write(|i| {
            i.nodeclasses.insert(key, Arc::new(nc));
        });
    }
}

impl Tracked for DaemonSet {
    const KIND: Kind = Kind::DaemonSet;
    fn state_key(&self) -> Key {
        ns_key(&self.metadata)
    }
    fn apply_to(&self, state: &ClusterState) {
        match DaemonSetInfo::from_daemonset(self) {
            Ok(info) => {
                let key = self.state_key();
                state.write(|i| {
                    i.daemonsets.insert(key, Arc::new(info));
                });
            }
            Err(e) => state.reject(Self::KIND, &self.state_key(), &e),
        }
    }
}

impl Tracked for PodDisruptionBudget {
    const KIND: Kind = Kind::PodDisruptionBudget;
    fn state_key(&self) -> Key {
        ns_key(&self.metadata)
    }
    fn apply_to(&self, state: &ClusterState) {
        let info = PdbInfo::from_pdb(self);
        let key = self.state_key();
        state.write(|i| {
            i.pdbs.insert(key, Arc::new(info));
        });
    }
}

impl Tracked for PersistentVolumeClaim {
    const KIND: Kind = Kind::PersistentVolumeClaim;
    fn state_key(&self) -> Key {
        ns_key(&self.metadata)
    }
    fn apply_to(&self, state: &ClusterState) {
        let view = pvc_view(self);
        let key = self.state_key();
        state.write(|i| {
            i.pvcs.insert(key, Arc::new(view));
        });
    }
}

impl Tracked for PersistentVolume {
    const KIND: Kind = Kind::PersistentVolume;
    fn state_key(&self) -> Key {
        name_key(&self.metadata)
    }
    fn apply_to(&self, state: &ClusterState) {
        match pv_view(self) {
            Ok(view) => {
                let key = self.state_key();
                state.write(|i| {
                    i.pvs.insert(key, Arc::new(view));
                });
            }
            Err(e) => state.reject(Self::KIND, &self.state_key(), &e),
        }
    }
}

impl Tracked for StorageClass {
    const KIND: Kind = Kind::StorageClass;
    fn state_key(&self) -> Key {
        name_key(&self.metadata)
    }
    fn apply_to(&self, state: &ClusterState) {
        let view = storage_class_view(self);
        let key = self.state_key();
        state.write(|i| {
            i.storage_classes.insert(key, Arc::new(view));
        });
    }
}

impl Tracked for CSINode {
    const KIND: Kind = Kind::CSINode;
    fn state_key(&self) -> Key {
        name_key(&self.metadata)
    }
    fn apply_to(&self, state: &ClusterState) {
        let limits = csinode_limits(self);
        let key = self.state_key();
        state.write(|i| {
            i.csinodes.insert(key, Arc::new(limits));
        });
    }
}

impl Tracked for VolumeAttachment {
    const KIND: Kind = Kind::VolumeAttachment;
    fn state_key(&self) -> Key {
        name_key(&self.metadata)
    }
    fn apply_to(&self, state: &ClusterState) {
        let info = VolumeAttachmentInfo::from_volume_attachment(self);
        let key = self.state_key();
        state.write(|i| {
            i.volume_attachments.insert(key, Arc::new(info));
        });
    }
}

impl Tracked for Namespace {
    const KIND: Kind = Kind::Namespace;
    fn state_key(&self) -> Key {
        name_key(&self.metadata)
    }
    fn apply_to(&self, state: &ClusterState) {
        let labels = self.metadata.labels.clone().unwrap_or_default();
        let key = self.state_key();
        state.write(|i| {
            i.namespaces.insert(key, Arc::new(labels));
        });
    }
}

/// Namespaces are watched as metadata only: their labels are all state needs.
impl Tracked for PartialObjectMeta<Namespace> {
    const KIND: Kind = Kind::Namespace;
    fn state_key(&self) -> Key {
        name_key(&self.metadata)
    }
    fn apply_to(&self, state: &ClusterState) {
        let labels = self.metadata.labels.clone().unwrap_or_default();
        let key = self.state_key();
        state.write(|i| {
            i.namespaces.insert(key, Arc::new(labels));
        });
    }
}

/// When the provisioner first considered a pending pod (acknowledged it), first reached a
/// decision for it, and first found it a place; the provisioning pod metrics are measured
/// from these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodSchedulingTimes {
    /// First provisioning pass that considered the pod.
    pub acked: DateTime<Utc>,
    /// First pass whose solve decided the pod (placed or failed).
    pub decided: Option<DateTime<Utc>>,
    /// First pass that placed the pod on a new or existing node.
    pub schedulable: Option<DateTime<Utc>>,
}

/// The cluster as the controllers see it. Share it as `Arc<ClusterState>`; every method takes
/// `&self` and holds the internal lock only for map updates or a shallow clone.
#[derive(Debug)]
pub struct ClusterState {
    inner: RwLock<Inner>,
    clock: SharedClock,
    config: StateConfig,
    metrics: Option<StateMetrics>,
    version: watch::Sender<u64>,
    unsynced_since: Mutex<Option<DateTime<Utc>>>,
    rejected: AtomicU64,
}

impl ClusterState {
    /// An empty, unsynced state.
    pub fn new(clock: SharedClock, config: StateConfig) -> ClusterState {
        ClusterState {
            inner: RwLock::new(Inner::default()),
            clock,
            config,
            metrics: None,
            version: watch::Sender::new(0),
            unsynced_since: Mutex::new(None),
            rejected: AtomicU64::new(0),
        }
    }

    /// Keeps the cluster-state gauges behind these handles current.
    pub fn with_metrics(mut self, metrics: StateMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The injected clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The configuration.
    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave maps half-updated in a way later reads
        // trip over (each update is a few map operations); keep serving.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_guard(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write(&self, f: impl FnOnce(&mut Inner)) {
        {
            let mut inner = self.write_guard();
            f(&mut inner);
        }
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Updates bookkeeping no watcher acts on (the pods' provisioning times): no version bump,
    /// so the provisioner and the observability loop are not woken for it.
    fn write_quietly(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.write_guard());
    }

    fn reject(&self, kind: Kind, key: &str, error: &ConvertError) {
        // A stale view is worse than none: drop what we had for this object.
        tracing::warn!(kind = kind.as_str(), object = key, category = error.category(), error = %error, "object not converted; dropped from cluster state");
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.write(|i| i.remove(kind, key));
    }

    /// Objects dropped because they could not be converted (invalid quantities and the like).
    pub fn rejected_count(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Applies an added or modified object.
    pub fn apply<K: Tracked>(&self, obj: &K) {
        obj.apply_to(self);
    }

    /// Removes the object of `kind` with this key (`namespace/name` or `name`).
    pub fn delete(&self, kind: Kind, key: &str) {
        self.write(|i| i.remove(kind, key));
    }

    /// Removes every object of `kind` whose key is not in `seen` (after a relist).
    pub fn retain(&self, kind: Kind, seen: &HashSet<Key>) {
        self.write(|i| {
            for key in i.keys_of(kind) {
                if !seen.contains(&key) {
                    i.remove(kind, &key);
                }
            }
        });
    }

    /// Records that the watch for `kind` completed a full list.
    pub fn mark_listed(&self, kind: Kind) {
        self.write(|i| {
            i.listed.insert(kind);
        });
    }

    /// Whether every kind has completed a full list.
    pub fn all_listed(&self) -> bool {
        self.read().all_listed()
    }

    /// Compares the NodeClaim and Node names the API server listed with state. Once every kind
    /// has listed and every listed name is present, state counts as having synced (latched).
    /// Returns whether it has.
    pub fn confirm_api_names(&self, nodeclaims: &[String], nodes: &[String]) -> bool {
        let mut latched = false;
        self.write(|i| {
            if !i.has_synced && i.all_listed() && i.contains_all(nodeclaims, nodes) {
                i.api_confirmed = true;
                i.has_synced = true;
            }
            latched = i.has_synced;
        });
        latched
    }

    /// The synced gate: state has synced once (every watch listed and the API's NodeClaims and
    /// Nodes are all present) and every tracked NodeClaim has a provider ID (none is still
    /// launching). Also refreshes the cluster-state gauges.
    pub fn is_synced(&self) -> bool {
        let (synced, count) = {
            let i = self.read();
            let synced = i.has_synced && i.nodeclaims.values().all(|nc| nc.provider_id.is_some());
            (synced, i.state_node_count())
        };
        let now = self.clock.now();
        let unsynced_for = {
            let mut since = self
                .unsynced_since
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if synced {
                *since = None;
                Duration::ZERO
            } else {
                let start = *since.get_or_insert(now);
                (now - start).to_std().unwrap_or_default()
            }
        };
        if let Some(m) = &self.metrics {
            m.node_count.set(count as f64);
            m.synced.set(if synced { 1.0 } else { 0.0 });
            m.unsynced_time_seconds.set(unsynced_for.as_secs_f64());
        }
        synced
    }

    /// Waits until [`ClusterState::is_synced`] holds.
    pub async fn wait_synced(&self) {
        let mut changes = self.version.subscribe();
        loop {
            if self.is_synced() {
                return;
            }
            // Also re-check periodically so the unsynced gauge keeps moving.
            let _ = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
        }
    }

    /// A receiver that sees a new value after every applied change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Refreshes the gauges (node count, synced, unsynced time).
    pub fn refresh_metrics(&self) {
        self.is_synced();
    }

    /// An immutable view of everything, as of now. Cheap: one pointer copy per map shard.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.read().clone();
        Snapshot::new(Arc::new(inner), self.clock.now())
    }

    /// Nominates a state node (by provider ID or name) for the nomination window: it just
    /// received pods from a provisioning decision, so disruption leaves it alone.
    pub fn nominate(&self, node_key: &str) {
        let now = self.clock.now();
        let until = now
            + chrono::Duration::from_std(self.config.nomination_window)
                .unwrap_or(chrono::Duration::MAX);
        self.write(|i| {
            let n = Arc::make_mut(&mut i.nominations);
            n.retain(|_, t| *t > now);
            n.insert(node_key.to_string(), until);
        });
    }

    /// Whether a state node is nominated now.
    pub fn is_nominated(&self, node_key: &str) -> bool {
        let now = self.clock.now();
        self.read()
            .nominations
            .get(node_key)
            .is_some_and(|t| *t > now)
    }

    /// Marks state nodes (by provider ID or name) for deletion: their pods are rescheduled and
    /// they are no longer capacity.
    pub fn mark_for_deletion<'a>(&self, node_keys: impl IntoIterator<Item = &'a str>) {
        self.write(|i| {
            let m = Arc::make_mut(&mut i.marked_for_deletion);
            m.extend(node_keys.into_iter().map(str::to_string));
        });
    }

    /// Clears deletion marks (a disruption command was abandoned).
    pub fn unmark_for_deletion<'a>(&self, node_keys: impl IntoIterator<Item = &'a str>) {
        self.write(|i| {
            let m = Arc::make_mut(&mut i.marked_for_deletion);
            for k in node_keys {
                m.remove(k);
            }
        });
    }

    /// Whether a state node is marked for deletion.
    pub fn is_marked_for_deletion(&self, node_key: &str) -> bool {
        self.read().marked_for_deletion.contains(node_key)
    }

    /// Records that the provisioner now considers these pending pods (first time only; pods
    /// state no longer holds are skipped so nothing outlives its pod).
    pub fn ack_pods<'a>(&self, pods: impl IntoIterator<Item = &'a PodView>) {
        let now = self.clock.now();
        self.write_quietly(|i| {
            for pod in pods {
                let held = i
                    .pods
                    .get(&format!("{}/{}", pod.namespace, pod.name))
                    .is_some_and(|p| p.view.uid == pod.uid);
                if held && !i.pod_scheduling.contains_key(&pod.uid) {
                    i.pod_scheduling.insert(
                        Key::from(pod.uid.as_str()),
                        PodSchedulingTimes {
                            acked: now,
                            decided: None,
                            schedulable: None,
                        },
                    );
                }
            }
        });
    }

    /// Records a provisioning decision per pod UID (`true`: the pod was placed). Returns, for
    /// each acknowledged pod decided for the first time, the seconds from acknowledgement to
    /// this decision.
    pub fn mark_pod_decisions<'a>(
        &self,
        decisions: impl IntoIterator<Item = (&'a str, bool)>,
    ) -> Vec<f64> {
        let now = self.clock.now();
        let mut first_decisions = Vec::new();
        self.write_quietly(|i| {
            for (uid, placed) in decisions {
                let Some(times) = i.pod_scheduling.get_mut(uid) else {
                    continue;
                };
                if times.decided.is_none() {
                    times.decided = Some(now);
                    first_decisions.push(
                        now.signed_duration_since(times.acked)
                            .to_std()
                            .unwrap_or_default()
                            .as_secs_f64(),
                    );
                }
                if placed && times.schedulable.is_none() {
                    times.schedulable = Some(now);
                }
            }
        });
        first_decisions
    }

    /// Forgets the provisioning times of these pods (they started; nothing more is measured).
    pub fn clear_pod_scheduling<'a>(&self, uids: impl IntoIterator<Item = &'a str>) {
        let mut uids = uids.into_iter().peekable();
        if uids.peek().is_none() {
            return;
        }
        self.write_quietly(|i| {
            for uid in uids {
                i.pod_scheduling.remove(uid);
            }
        });
    }

    /// Number of state nodes (NodeClaims plus unclaimed Nodes).
    pub fn node_count(&self) -> usize {
        self.read().state_node_count()
    }

    /// Number of pods held.
    pub fn pod_count(&self) -> usize {
        self.read().pods.len()
    }
}
