//! Workload controllers (kube-controller-manager stand-ins): Deployment → ReplicaSet → Pods,
//! DaemonSet → one pod per eligible Node, and PodDisruptionBudget status.
//!
//! One component with shared caches runs the controllers in sequence on every pass. Creates and
//! deletes are tracked as expectations (like the real controllers) so a pass never acts twice on
//! a cache that has not caught up with its own writes.

pub mod daemonset;
pub mod deployment;
pub mod pdb;
pub mod replicaset;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use tokio::time::Instant;

use crate::apiserver::object::SharedClock;
use crate::cluster::runtime::{
    Caches, Component, LoopTiming, Outcome, ShutdownRx, drive, log_write_error,
};

/// How the workload controllers run.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Full pass at least this often.
    pub resync: Duration,
    /// Wait after a change for more changes before a pass.
    pub debounce: Duration,
    /// Most pods one controller creates for one owner in one pass.
    pub burst: usize,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            resync: Duration::from_secs(30),
            debounce: Duration::from_millis(10),
            burst: 500,
        }
    }
}

/// Caches and client shared by the controllers.
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) clock: SharedClock,
    pub(crate) burst: usize,
    pub(crate) pods: Store<Pod>,
    pub(crate) nodes: Store<Node>,
    pub(crate) replicasets: Store<ReplicaSet>,
    pub(crate) deployments: Store<Deployment>,
    pub(crate) daemonsets: Store<DaemonSet>,
    pub(crate) statefulsets: Store<StatefulSet>,
    pub(crate) pdbs: Store<PodDisruptionBudget>,
}

/// How long unmet expectations hold an owner back before the controller re-lists.
const EXPECTATION_TTL: Duration = Duration::from_secs(30);

/// Pods an owner created or deleted that the cache has not reflected yet.
#[derive(Debug, Default)]
pub(crate) struct Expectations {
    /// owner uid -> (pod names created, pod uids deleted, when).
    pending: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>, Instant)>,
}

impl Expectations {
    /// Whether the owner's cache view includes all of its writes (so it may act again).
    pub(crate) fn satisfied(&mut self, owner: &str, owned: &[&Pod]) -> bool {
        let Some((created, deleted, at)) = self.pending.get_mut(owner) else {
            return true;
        };
        let names: BTreeSet<&str> = owned
            .iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect();
        created.retain(|n| !names.contains(n.as_str()));
        deleted.retain(|uid| {
            owned.iter().any(|p| {
                p.metadata.uid.as_deref() == Some(uid.as_str())
                    && p.metadata.deletion_timestamp.is_none()
            })
        });
        let done = (created.is_empty() && deleted.is_empty()) || at.elapsed() > EXPECTATION_TTL;
        if done {
            self.pending.remove(owner);
        }
        done
    }

    pub(crate) fn created(&mut self, owner: &str, name: String) {
        self.entry(owner).0.insert(name);
    }

    pub(crate) fn deleted(&mut self, owner: &str, uid: String) {
        self.entry(owner).1.insert(uid);
    }

    fn entry(&mut self, owner: &str) -> &mut (BTreeSet<String>, BTreeSet<String>, Instant) {
        self.pending
            .entry(owner.to_string())
            .or_insert_with(|| (BTreeSet::new(), BTreeSet::new(), Instant::now()))
    }

    pub(crate) fn forget_except(&mut self, owners: &BTreeSet<String>) {
        self.pending.retain(|k, _| owners.contains(k));
    }
}

/// The controller owner reference of an object, if any.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Pods whose controller is `uid`.
pub(crate) fn owned_pods<'a>(pods: &'a [std::sync::Arc<Pod>], uid: &str) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
        .map(|p| p.as_ref())
        .collect()
}

/// A controller owner reference to `meta` of `kind`.
pub(crate) fn owner_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether a pod's `Ready` condition is true.
pub(crate) fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Not finished and not being deleted.
pub(crate) fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !crate::cluster::resources::is_terminal(pod)
}

pub(crate) fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

/// Creates a pod; returns its generated name.
pub(crate) async fn create_pod(
    client: &Client,
    ns: &str,
    pod: &Pod,
) -> Result<String, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let created = api.create(&PostParams::default(), pod).await?;
    Ok(created.metadata.name.unwrap_or_default())
}

/// Deletes a pod (with its default grace period), guarded by uid.
pub(crate) async fn delete_pod(client: &Client, pod: &Pod) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api
        .delete(pod.metadata.name.as_deref().unwrap_or(""), &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Records a failed write in the pass outcome.
pub(crate) fn note_error(outcome: &mut Outcome, action: &str, object: &str, e: &kube::Error) {
    log_write_error(action, object, e);
    outcome.failed = true;
}

struct Workloads {
    ctx: Ctx,
    replicasets: replicaset::ReplicaSetController,
    deployments: deployment::DeploymentController,
    daemonsets: daemonset::DaemonSetController,
    pdbs: pdb::PdbController,
}

impl Component for Workloads {
    async fn pass(&mut self) -> Outcome {
        let mut outcome = Outcome::default();
        self.deployments.pass(&self.ctx, &mut outcome).await;
        self.replicasets.pass(&self.ctx, &mut outcome).await;
        self.daemonsets.pass(&self.ctx, &mut outcome).await;
        self.pdbs.pass(&self.ctx, &mut outcome).await;
        outcome
    }
}

/// Runs the workload controllers until shutdown.
pub async fn run(client: Client, config: WorkloadConfig, clock: SharedClock, shutdown: ShutdownRx) {
    let mut caches = Caches::new(shutdown.clone());
    let ctx = Ctx {
        pods: caches.watch(Api::all(client.clone())),
        nodes: caches.watch(Api::all(client.clone())),
        replicasets: caches.watch(Api::all(client.clone())),
        deployments: caches.watch(Api::all(client.clone())),
        daemonsets: caches.watch(Api::all(client.clone())),
        statefulsets: caches.watch(Api::all(client.clone())),
        pdbs: caches.watch(Api::all(client.clone())),
        client,
        clock,
        burst: config.burst,
    };
    let ready = caches.ready(&[&ctx.pods]).await
        && caches.ready(&[&ctx.nodes]).await
        && caches.ready(&[&ctx.replicasets]).await
        && caches.ready(&[&ctx.deployments]).await
        && caches.ready(&[&ctx.daemonsets]).await
        && caches.ready(&[&ctx.statefulsets]).await
        && caches.ready(&[&ctx.pdbs]).await;
    if ready {
        let timing = LoopTiming {
            resync: config.resync,
            debounce: config.debounce,
        };
        let workloads = Workloads {
            ctx,
            replicasets: replicaset::ReplicaSetController::default(),
            deployments: deployment::DeploymentController,
            daemonsets: daemonset::DaemonSetController::default(),
            pdbs: pdb::PdbController,
        };
        drive(workloads, caches.changed.clone(), timing, shutdown).await;
    }
    caches.join().await;
}
