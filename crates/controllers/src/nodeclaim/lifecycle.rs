//! `nodeclaim.lifecycle`: finalizer, launch, registration, initialization, liveness and
//! finalization of one NodeClaim per reconcile.
//!
//! Restart safety of launch (no instance is launched twice, none leaks):
//! - the termination finalizer is on the NodeClaim before `create` is ever called, so a
//!   NodeClaim with an instance cannot disappear without finalization looking for it;
//! - within one process, a successful `create` whose result has not yet reached
//!   `status.providerID` is kept in a ledger keyed by NodeClaim UID, and the next reconcile
//!   writes it instead of launching again;
//! - across processes (killed between `create` and the status write), the first launch after
//!   start takes ONE `CloudProvider::list()` and keeps the live instances by NodeClaim name
//!   (the provider names its list entries after the NodeClaim the instance was launched for:
//!   the simulated EC2 does, the AWS provider's `karpenter.sh/nodeclaim` tag does). A NodeClaim
//!   without provider ID whose name is in that index adopts the instance instead of creating
//!   one. An instance created by a previous leader necessarily predates our list, and anything
//!   created after it was created by us (and is in the ledger), so one list suffices;
//! - finalization of a NodeClaim without provider ID consults the ledger and the index too, so
//!   an adopted-but-unrecorded instance is terminated;
//! - `nodeclaim.garbagecollection` terminates instances with no NodeClaim of their name (as a
//!   last line of defence, e.g. a NodeClaim deleted by hand while its finalizer was stripped).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use karpenter_apis::common::ConditionStatus;
use karpenter_apis::conditions::{self, NODECLAIM, nodeclaim as cond};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::{NodeClaim, NodeClaimStatus};
use karpenter_cloudprovider::{CloudProvider, CloudProviderError};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::{OnceCell, watch};
use tracing::{info, warn};

use super::plan::{self, LaunchFailure, Liveness, Registration};
use super::{Error, LifecycleConfig, NodeIndex, from_time, to_time};
use crate::context::Context;
use crate::events::{Event, EventType};

/// Controller name (the `controller` metric label).
pub const CONTROLLER: &str = "nodeclaim.lifecycle";

/// How long finalization waits between checks that the Node is gone.
const NODE_DELETION_POLL: Duration = Duration::from_secs(1);

/// The lifecycle controller's own state besides the shared [`Context`].
#[derive(Debug)]
pub struct Lifecycle {
    config: LifecycleConfig,
    index: Arc<NodeIndex>,
    /// Created instances whose provider ID is not yet in the NodeClaim's status, by UID.
    ledger: Mutex<HashMap<String, NodeClaim>>,
    /// Live instances at the first launch after start, by NodeClaim name.
    orphans: OnceCell<Mutex<HashMap<String, NodeClaim>>>,
    /// UIDs of NodeClaims this controller deleted whose deletion the cache has not shown yet:
    /// a stale copy must not be launched (or counted) again.
    deleted: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn has_finalizer<K: ResourceExt>(obj: &K) -> bool {
    obj.finalizers()
        .iter()
        .any(|f| f == labels::TERMINATION_FINALIZER)
}

/// Labels of `karpenter_nodeclaims_disrupted_total`.
fn disrupted_labels<'a>(nc: &'a NodeClaim, reason: &'a str) -> [&'a str; 5] {
    let l = |k: &str| {
        nc.metadata
            .labels
            .as_ref()
            .and_then(|m| m.get(k))
            .map(String::as_str)
            .unwrap_or_default()
    };
    [
        reason,
        l(labels::NODEPOOL),
        l(labels::CAPACITY_TYPE),
        "",
        plan::termination_mode(nc),
    ]
}

fn label<'a>(nc: &'a NodeClaim, key: &str) -> &'a str {
    nc.metadata
        .labels
        .as_ref()
        .and_then(|m| m.get(key))
        .map(String::as_str)
        .unwrap_or_default()
}

impl Lifecycle {
    /// A lifecycle controller reading Nodes from `index`.
    pub fn new(config: LifecycleConfig, index: Arc<NodeIndex>) -> Lifecycle {
        Lifecycle {
            config,
            index,
            ledger: Mutex::default(),
            orphans: OnceCell::new(),
            deleted: Mutex::default(),
        }
    }

    /// Runs the controller until `shutdown` turns true. Node changes re-trigger the NodeClaim
    /// with the Node's provider ID (looked up in cluster state).
    pub async fn run(self: Arc<Self>, ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
        let nodeclaims: Api<NodeClaim> = Api::all(ctx.client.clone());
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        let state = ctx.state.clone();
        let controller = Controller::new(nodeclaims, watcher::Config::default()).watches(
            nodes,
            watcher::Config::default(),
            move |node: Node| {
                let pid = node
                    .spec
                    .as_ref()
                    .and_then(|s| s.provider_id.clone())
                    .unwrap_or_default();
                state
                    .snapshot()
                    .node(&pid)
                    .filter(|_| !pid.is_empty())
                    .and_then(|sn| sn.nodeclaim.map(|nc| ObjectRef::new(&nc.name)))
            },
        );
        let me = self.clone();
        crate::nodepool::runner::run_controller(
            CONTROLLER,
            controller,
            move |nc: Arc<NodeClaim>, ctx: Arc<Context>| {
                let me = me.clone();
                async move { me.reconcile(nc, ctx).await }
            },
            ctx,
            shutdown,
        )
        .await;
    }

    /// Instances live at the first call, by NodeClaim name (one `list()` per process).
    async fn orphans(
        &self,
        ctx: &Context,
    ) -> Result<&Mutex<HashMap<String, NodeClaim>>, CloudProviderError> {
        self.orphans
            .get_or_try_init(|| async {
                let listed = ctx.cloud_provider(CONTROLLER).list().await?;
                let by_name: HashMap<String, NodeClaim> = listed
                    .into_iter()
                    .filter(|i| i.metadata.deletion_timestamp.is_none())
                    .filter_map(|i| Some((i.metadata.name.clone().filter(|n| !n.is_empty())?, i)))
                    .collect();
                Ok(Mutex::new(by_name))
            })
            .await
    }

    /// The instance already launched for `nc`, if this or a previous process launched one
    /// whose provider ID never reached the status.
    async fn known_instance(
        &self,
        nc: &NodeClaim,
        ctx: &Context,
    ) -> Result<Option<NodeClaim>, CloudProviderError> {
        let uid = nc.metadata.uid.clone().unwrap_or_default();
        if let Some(created) = lock(&self.ledger).get(&uid) {
            return Ok(Some(created.clone()));
        }
        let orphans = self.orphans(ctx).await?;
        let found = lock(orphans).remove(&nc.name_any());
        if let Some(found) = &found {
            info!(NodeClaim = %nc.name_any(), provider_id = ?plan::provider_id(found), "adopting an instance launched before a restart");
            lock(&self.ledger).insert(uid, found.clone());
        }
        Ok(found)
    }

    /// Reconciles one NodeClaim.
    pub async fn reconcile(&self, nc: Arc<NodeClaim>, ctx: Arc<Context>) -> Result<Action, Error> {
        let uid = nc.metadata.uid.clone().unwrap_or_default();
        if nc.metadata.deletion_timestamp.is_some() {
            lock(&self.deleted).remove(&uid);
            return self.finalize(nc, ctx).await;
        }
        if lock(&self.deleted).contains(&uid) {
            return Ok(Action::await_change());
        }
        // The cache has caught up with the launch: the ledger entry is no longer needed.
        if plan::provider_id(&nc).is_some() {
            lock(&self.ledger).remove(&uid);
        }
        let api: Api<NodeClaim> = Api::all(ctx.client.clone());
        let name = nc.name_any();
        let mut nc: NodeClaim = (*nc).clone();

        if !has_finalizer(&nc) {
            let mut finalizers = nc.finalizers().to_vec();
            finalizers.push(labels::TERMINATION_FINALIZER.to_string());
            nc = api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {
                        "finalizers": finalizers,
                        "resourceVersion": nc.metadata.resource_version,
                    }})),
                )
                .await?;
        }

        let now = ctx.clock.now();
        let t = to_time(now);
        let generation = nc.metadata.generation.unwrap_or(0);
        let original = nc.status.clone();
        let mut status: NodeClaimStatus = original.clone().unwrap_or_default();
        NODECLAIM.initialize(&mut status.conditions, generation, &t);

        // Launch.
        if plan::provider_id(&nc).is_none() {
            let launched = match self.known_instance(&nc, &ctx).await {
                Ok(Some(found)) => Ok(found),
                Ok(None) => {
                    let created = ctx.cloud_provider(CONTROLLER).create(&nc).await;
                    if let Ok(c) = &created {
                        lock(&self.ledger)
                            .insert(nc.metadata.uid.clone().unwrap_or_default(), c.clone());
                    }
                    created
                }
                Err(e) => Err(e),
            };
            match launched {
                Ok(created) => {
                    let own = nc.metadata.labels.clone().unwrap_or_default();
                    let merged = plan::merge_labels(
                        &own,
                        &created.metadata.labels.clone().unwrap_or_default(),
                    );
                    if merged != own {
                        nc = api
                            .patch(
                                &name,
                                &PatchParams::default(),
                                &Patch::Merge(json!({"metadata": {"labels": merged}})),
                            )
                            .await?;
                    }
                    let c = created.status.unwrap_or_default();
                    status.provider_id = c.provider_id;
                    status.image_id = c.image_id;
                    status.capacity = c.capacity;
                    status.allocatable = c.allocatable;
                    NODECLAIM.set_true(&mut status.conditions, cond::LAUNCHED, generation, &t);
                }
                Err(error) => match plan::classify_launch_error(&name, &error) {
                    LaunchFailure::Delete {
                        event_reason,
                        metric_reason,
                        message,
                    } => {
                        ctx.recorder
                            .publish(Event::about(&nc, EventType::Warning, event_reason, message))
                            .await;
                        info!(NodeClaim = %name, reason = metric_reason, %error, "deleting nodeclaim after failed launch");
                        // Counted once the DELETE is accepted, like an expiry (see `expire`).
                        if self.delete(&api, &nc).await? {
                            ctx.metrics
                                .nodeclaims
                                .disrupted
                                .with_label_values(&disrupted_labels(&nc, metric_reason))
                                .inc();
                        }
                        return Ok(Action::await_change());
                    }
                    LaunchFailure::Retry { reason, message } => {
                        NODECLAIM.set_unknown_with_reason(
                            &mut status.conditions,
                            cond::LAUNCHED,
                            &reason,
                            &message,
                            generation,
                            &t,
                        );
                        let mut judged = nc.clone();
                        judged.status = Some(status.clone());
                        if let Liveness::Expired(reason) =
                            plan::liveness(&judged, now, &self.config)
                        {
                            return self.expire(&ctx, &api, &nc, reason).await;
                        }
                        self.write_status(&api, &nc, &original, status).await?;
                        return Err(Error::Cloud(error));
                    }
                },
            }
        }

        // Registration.
        let registered_before = conditions::is_true(&status.conditions, cond::REGISTERED);
        if !registered_before && let Some(pid) = status.provider_id.clone() {
            let nodes = self.index.by_provider_id(&pid);
            match plan::registration(&nc, &nodes) {
                Registration::NodeNotFound => {
                    NODECLAIM.set_unknown_with_reason(
                        &mut status.conditions,
                        cond::REGISTERED,
                        plan::reason::NODE_NOT_FOUND,
                        "Node not registered with cluster",
                        generation,
                        &t,
                    );
                }
                Registration::MultipleNodesFound(names) => {
                    NODECLAIM.set_false(
                        &mut status.conditions,
                        cond::REGISTERED,
                        plan::reason::MULTIPLE_NODES_FOUND,
                        &format!(
                            "Invariant violated, matched multiple nodes: {}",
                            names.join(", ")
                        ),
                        generation,
                        &t,
                    );
                }
                Registration::Sync {
                    node_name,
                    patch,
                    newly_registered,
                    unregistered_taint_missing,
                } => {
                    if let Some(patch) = patch {
                        Api::<Node>::all(ctx.client.clone())
                            .patch(&node_name, &PatchParams::default(), &Patch::Merge(patch))
                            .await?;
                    }
                    if unregistered_taint_missing {
                        ctx.recorder
                            .publish(Event::about(
                                &nc,
                                EventType::Warning,
                                "UnregisteredTaintMissing",
                                format!(
                                    "Missing {}:{} taint which prevents registration related race conditions on Karpenter-managed nodes",
                                    labels::TAINT_UNREGISTERED,
                                    labels::TAINT_UNREGISTERED_EFFECT
                                ),
                            ))
                            .await;
                    }
                    status.node_name = Some(node_name);
                    NODECLAIM.set_true(&mut status.conditions, cond::REGISTERED, generation, &t);
                    if newly_registered {
                        ctx.metrics
                            .nodes
                            .created
                            .with_label_values(&[
                                label(&nc, labels::NODEPOOL),
                                label(&nc, labels::ZONE),
                            ])
                            .inc();
                    }
                }
            }
        }

        // Initialization.
        let registered = conditions::is_true(&status.conditions, cond::REGISTERED);
        if registered && !conditions::is_true(&status.conditions, cond::INITIALIZED) {
            let node = status.node_name.as_deref().and_then(|n| self.index.get(n));
            match node {
                None => {
                    NODECLAIM.set_unknown_with_reason(
                        &mut status.conditions,
                        cond::INITIALIZED,
                        plan::reason::NODE_NOT_FOUND,
                        "Node not registered with cluster",
                        generation,
                        &t,
                    );
                }
                Some(node) => match plan::initialization(&nc, &node) {
                    Ok(()) => {
                        let initialized = node
                            .labels()
                            .get(labels::INITIALIZED)
                            .is_some_and(|v| v == "true");
                        if !initialized {
                            Api::<Node>::all(ctx.client.clone())
                                .patch(
                                    &node.name_any(),
                                    &PatchParams::default(),
                                    &Patch::Merge(json!({"metadata": {"labels": {
                                        labels::INITIALIZED: "true"
                                    }}})),
                                )
                                .await?;
                        }
                        NODECLAIM.set_true(
                            &mut status.conditions,
                            cond::INITIALIZED,
                            generation,
                            &t,
                        );
                    }
                    Err((reason, message)) => {
                        NODECLAIM.set_unknown_with_reason(
                            &mut status.conditions,
                            cond::INITIALIZED,
                            reason,
                            &message,
                            generation,
                            &t,
                        );
                    }
                },
            }
        }

        // Liveness (judged on what we are about to write).
        let mut judged = nc.clone();
        judged.status = Some(status.clone());
        let action = match plan::liveness(&judged, now, &self.config) {
            Liveness::Expired(reason) => return self.expire(&ctx, &api, &nc, reason).await,
            Liveness::Alive(left) => Action::requeue(left.min(self.config.poll)),
            Liveness::NotApplicable
                if !conditions::is_true(&status.conditions, cond::INITIALIZED) =>
            {
                Action::requeue(self.config.poll)
            }
            Liveness::NotApplicable => Action::await_change(),
        };

        self.write_status(&api, &nc, &original, status).await?;
        Ok(action)
    }

    /// Deletes a NodeClaim that missed its launch or registration deadline.
    async fn expire(
        &self,
        ctx: &Context,
        api: &Api<NodeClaim>,
        nc: &NodeClaim,
        reason: &'static str,
    ) -> Result<Action, Error> {
        // Counted once the DELETE is accepted (as upstream): a failed DELETE is retried by the
        // next reconcile and must not count the same NodeClaim twice, and a claim someone else
        // already deleted was not disrupted by us.
        if self.delete(api, nc).await? {
            info!(NodeClaim = %nc.name_any(), reason, "deleted nodeclaim that did not come up in time");
            ctx.metrics
                .nodeclaims
                .disrupted
                .with_label_values(&disrupted_labels(nc, reason))
                .inc();
        }
        Ok(Action::await_change())
    }

    /// Deletes the NodeClaim and remembers that it did until the cache shows it. True when
    /// this call deleted it, false when it was already gone.
    async fn delete(&self, api: &Api<NodeClaim>, nc: &NodeClaim) -> Result<bool, Error> {
        let deleted = delete_nodeclaim(api, &nc.name_any()).await?;
        lock(&self.deleted).insert(nc.metadata.uid.clone().unwrap_or_default());
        Ok(deleted)
    }

    /// Writes `status` if it differs from `original` (optimistic concurrency on the
    /// resourceVersion). The ledger entry stays until the cache shows the provider ID: a
    /// reconcile of a stale copy must find the instance there, not launch another.
    async fn write_status(
        &self,
        api: &Api<NodeClaim>,
        nc: &NodeClaim,
        original: &Option<NodeClaimStatus>,
        status: NodeClaimStatus,
    ) -> Result<(), Error> {
        if original.as_ref() == Some(&status) {
            return Ok(());
        }
        api.patch_status(
            &nc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"resourceVersion": nc.metadata.resource_version},
                "status": status,
            })),
        )
        .await?;
        Ok(())
    }

    /// Finalization: termination-timestamp annotation, Nodes deleted and gone, instance
    /// terminated until the provider says NotFound, finalizer removed.
    async fn finalize(&self, nc: Arc<NodeClaim>, ctx: Arc<Context>) -> Result<Action, Error> {
        if !has_finalizer(&*nc) {
            return Ok(Action::await_change());
        }
        let api: Api<NodeClaim> = Api::all(ctx.client.clone());
        let name = nc.name_any();
        let mut nc: NodeClaim = (*nc).clone();
        let now = ctx.clock.now();
        let t = to_time(now);

        if let Some(deadline) = plan::termination_deadline(&nc)
            && !nc
                .annotations()
                .contains_key(labels::NODECLAIM_TERMINATION_TIMESTAMP)
        {
            let stamp = deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            nc = api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {
                        labels::NODECLAIM_TERMINATION_TIMESTAMP: stamp
                    }}})),
                )
                .await?;
            ctx.recorder
                .publish(Event::about(
                    &nc,
                    EventType::Warning,
                    "TerminationGracePeriodExpiring",
                    format!("All pods will be deleted by {stamp}"),
                ))
                .await;
        }

        // The instance: from status, else one launched but never recorded.
        let mut target = nc.clone();
        if plan::provider_id(&nc).is_none() {
            let known = if conditions::is_true(plan::conditions_of(&nc), cond::LAUNCHED) {
                None
            } else {
                self.known_instance(&nc, &ctx).await?
            };
            match known.and_then(|k| k.status) {
                Some(s) => {
                    target
                        .status
                        .get_or_insert_with(Default::default)
                        .provider_id = s.provider_id
                }
                None => return self.remove_finalizer(&api, &nc, &ctx, now).await,
            }
        }
        let pid = plan::provider_id(&target).unwrap_or_default().to_string();

        let nodes = self.index.by_provider_id(&pid);
        if !nodes.is_empty() {
            let node_api: Api<Node> = Api::all(ctx.client.clone());
            for n in nodes
                .iter()
                .filter(|n| n.metadata.deletion_timestamp.is_none())
            {
                match node_api
                    .delete(&n.name_any(), &DeleteParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(Action::requeue(NODE_DELETION_POLL));
        }

        match ctx.cloud_provider(CONTROLLER).delete(&target).await {
            Ok(()) => {
                if !plan::condition_is(&nc, cond::INSTANCE_TERMINATING, ConditionStatus::True) {
                    let mut status = nc.status.clone().unwrap_or_default();
                    conditions::set(
                        &mut status.conditions,
                        cond::INSTANCE_TERMINATING,
                        ConditionStatus::True,
                        cond::INSTANCE_TERMINATING,
                        "",
                        nc.metadata.generation.unwrap_or(0),
                        &t,
                    );
                    let original = nc.status.clone();
                    self.write_status(&api, &nc, &original, status).await?;
                }
                Ok(Action::requeue(self.config.instance_termination_poll))
            }
            Err(e) if e.is_not_found() => {
                if let Some(c) =
                    conditions::get(plan::conditions_of(&nc), cond::INSTANCE_TERMINATING)
                {
                    let secs = now
                        .signed_duration_since(from_time(&c.last_transition_time))
                        .to_std()
                        .unwrap_or_default()
                        .as_secs_f64();
                    ctx.metrics
                        .nodeclaims
                        .instance_termination_duration
                        .with_label_values(&[label(&nc, labels::NODEPOOL)])
                        .observe(secs);
                }
                self.remove_finalizer(&api, &nc, &ctx, now).await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_finalizer(
        &self,
        api: &Api<NodeClaim>,
        nc: &NodeClaim,
        ctx: &Context,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Action, Error> {
        let finalizers: Vec<&String> = nc
            .finalizers()
            .iter()
            .filter(|f| *f != labels::TERMINATION_FINALIZER)
            .collect();
        match api
            .patch(
                &nc.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {
                    "finalizers": finalizers,
                    "resourceVersion": nc.metadata.resource_version,
                }})),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
        lock(&self.ledger).remove(&nc.metadata.uid.clone().unwrap_or_default());
        let pool = label(nc, labels::NODEPOOL);
        ctx.metrics
            .nodeclaims
            .terminated
            .with_label_values(&[
                pool,
                label(nc, labels::CAPACITY_TYPE),
                label(nc, labels::ZONE),
            ])
            .inc();
        if let Some(deleted) = nc.metadata.deletion_timestamp.as_ref().map(from_time) {
            ctx.metrics
                .nodeclaims
                .termination_duration
                .with_label_values(&[pool])
                .observe(
                    now.signed_duration_since(deleted)
                        .to_std()
                        .unwrap_or_default()
                        .as_secs_f64(),
                );
        }
        info!(NodeClaim = %nc.name_any(), "finalized nodeclaim");
        Ok(Action::await_change())
    }
}

async fn delete_nodeclaim(api: &Api<NodeClaim>, name: &str) -> Result<bool, Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => {
            warn!(NodeClaim = %name, error = %e, "deleting nodeclaim failed");
            Err(e.into())
        }
    }
}
