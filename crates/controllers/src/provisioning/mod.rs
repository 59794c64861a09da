//! The provisioner: a singleton event loop that batches triggers (pending pods, deleting or
//! disrupted nodes, NodePool changes, a periodic nudge while work remains), waits for
//! leadership and a synced cluster state, then snapshots state, solves, plans and applies:
//! creates NodeClaims (bounded parallelism, limits re-checked right before each create),
//! nominates nodes and publishes `Nominated`, `FailedScheduling` and
//! `NoCompatibleInstanceTypes` events.
//!
//! Never launching twice for the same pods rests on two things. Every created NodeClaim is
//! applied to cluster state as soon as the API server returns it, so the next snapshot already
//! holds it; and a batch is only solved once state is synced, which includes every tracked
//! NodeClaim having a provider ID — so by then the in-flight NodeClaim carries its launched
//! capacity and the still-pending pods land on it (a `Nominated` event) instead of on a new
//! claim. Waiting on the watch alone would leave a window in which a fast second batch does
//! not see the first batch's claim at all.

pub mod batch;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::NodePool;
use karpenter_cloudprovider::CloudProvider;
use karpenter_scheduling::convert::nodepool_view;
use karpenter_scheduling::{NodePoolView, PodView, SolveOptions, solve};
use karpenter_state::Snapshot;
use kube::api::{Api, PostParams};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use self::batch::{BatchWindow, Trigger, TriggerDetector};
use self::plan::{
    Failure, NodeTarget, Plan, PlannedCreate, PodRef, exceeded_limit, failed_scheduling_message,
    nominated_message, plan, usable_nodepool,
};
use crate::context::Context;
use crate::events::{Event, EventType};

/// Controller name (the `controller` label of the scheduler and cloud-provider metrics).
pub const CONTROLLER: &str = "provisioner";
/// NodeClaims created at once.
pub const MAX_CONCURRENT_CREATES: usize = 10;
/// Instance types written into a NodeClaim (upstream since v1.7).
pub const MAX_INSTANCE_TYPES: usize = 600;
/// `FailedScheduling` dedupe window per pod.
pub const FAILED_SCHEDULING_DEDUPE: Duration = Duration::from_secs(300);
/// `NoCompatibleInstanceTypes` dedupe window per NodePool.
pub const NO_COMPATIBLE_DEDUPE: Duration = Duration::from_secs(60);

/// Label values of the unlabelled gauges.
const NO_LABELS: [&str; 0] = [];

/// What one provisioning pass did (for logs and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Pods considered.
    pub pods: usize,
    /// NodePools used.
    pub nodepools: usize,
    /// Names of the NodeClaims created.
    pub created: Vec<String>,
    /// Pods nominated onto existing or in-flight nodes.
    pub nominated: usize,
    /// Pods left unschedulable (ignored pods excluded).
    pub unschedulable: usize,
    /// Pods ignored.
    pub ignored: usize,
}

/// The provisioner loop.
#[derive(Debug)]
pub struct Provisioner;

impl Provisioner {
    /// Runs until `shutdown` turns true.
    pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::channel::<Trigger>(256);
        let detector = tokio::spawn(
            detect(ctx.clone(), tx, shutdown.clone())
                .instrument(tracing::info_span!("provisioner.trigger")),
        );
        let idle = ctx.settings.batch_idle_duration;
        let max = ctx.settings.batch_max_duration;
        'outer: loop {
            let first = tokio::select! {
                t = rx.recv() => match t { Some(t) => t, None => break },
                _ = shutdown.changed() => break,
            };
            if *shutdown.borrow() {
                break;
            }
            let mut triggers = BTreeSet::from([first]);
            let mut window = BatchWindow::open(Instant::now(), idle, max);
            loop {
                tokio::select! {
                    t = rx.recv() => match t {
                        Some(t) => { triggers.insert(t); window.extend(Instant::now()); }
                        None => break 'outer,
                    },
                    _ = tokio::time::sleep_until(window.deadline()) => break,
                    _ = shutdown.changed() => break 'outer,
                }
            }
            if !ctx.leading() {
                continue;
            }
            // The synced gate: every NodeClaim state tracks has launched (see the module doc).
            tokio::select! {
                _ = ctx.state.wait_synced() => {}
                _ = shutdown.changed() => break,
            }
            let summary = provision_once(&ctx)
                .instrument(tracing::info_span!("provisioner"))
                .await;
            info!(
                triggers = ?triggers.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                pods = summary.pods,
                nodepools = summary.nodepools,
                created = summary.created.len(),
                nominated = summary.nominated,
                unschedulable = summary.unschedulable,
                ignored = summary.ignored,
                "provisioning pass"
            );
        }
        detector.abort();
    }
}

/// Turns state changes into triggers: new pending pods, newly deleting nodes, NodePool
/// changes; a periodic trigger every `BATCH_MAX_DURATION` while work remains; one on gaining
/// leadership.
async fn detect(ctx: Arc<Context>, tx: mpsc::Sender<Trigger>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = ctx.state.subscribe();
    let mut leader = ctx.is_leader.clone();
    let mut detector = TriggerDetector::default();
    let period = ctx.settings.batch_max_duration;
    let mut next_periodic = Instant::now() + period;
    let mut has_work = false;
    let mut leadership_open = true;
    loop {
        let mut fire = BTreeSet::new();
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() { return; }
                let seen = detector.observe(&ctx.state.snapshot());
                has_work = seen.has_work;
                fire = seen.triggers;
            }
            r = leader.changed(), if leadership_open => {
                // A closed channel freezes leadership where it was; keep provisioning.
                if r.is_err() { leadership_open = false; }
                else if *leader.borrow() { fire.insert(Trigger::Periodic); }
            }
            _ = tokio::time::sleep_until(next_periodic) => {
                next_periodic = Instant::now() + period;
                if has_work { fire.insert(Trigger::Periodic); }
            }
            _ = shutdown.changed() => return,
        }
        for t in fire {
            // A full channel means a batch is already pending: dropping is harmless.
            let _ = tx.try_send(t);
        }
    }
}

fn pod_reference(pod: &PodRef) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Pod".to_string()),
        name: Some(pod.name.clone()),
        namespace: Some(pod.namespace.clone()),
        uid: Some(pod.uid.clone()),
        ..ObjectReference::default()
    }
}

fn pod_event(pod: &PodRef, type_: EventType, reason: &'static str, message: String) -> Event {
    Event {
        involved: pod_reference(pod),
        type_,
        reason,
        message,
        dedupe_values: vec![pod.uid.clone()],
        dedupe_window: None,
    }
}

/// NodePools that may provision, converted with their instance types, plus the pools
/// themselves and their limits (for the plan). Unusable pools are skipped with a debug log;
/// pools whose requirements leave no instance type get `NoCompatibleInstanceTypes`.
async fn nodepool_views(
    ctx: &Context,
    snapshot: &Snapshot,
) -> (
    Vec<NodePoolView>,
    BTreeMap<String, (NodePool, BTreeMap<String, i64>)>,
) {
    let cloud = ctx.cloud_provider(CONTROLLER);
    let mut views = Vec::new();
    let mut pools = BTreeMap::new();
    for np in snapshot.nodepools() {
        let name = np.metadata.name.clone().unwrap_or_default();
        let class = snapshot.nodeclass(&np.spec.template.spec.node_class_ref.name);
        if let Err(skip) = usable_nodepool(&np, class.as_deref()) {
            debug!(nodepool = %name, ?skip, "nodepool not used for provisioning");
            continue;
        }
        let types = match cloud.get_instance_types(&np).await {
            Ok(t) if !t.is_empty() => t,
            Ok(_) => {
                debug!(nodepool = %name, "no instance types; skipping nodepool");
                continue;
            }
            Err(error) => {
                warn!(nodepool = %name, category = error.category(), %error, "listing instance types failed; skipping nodepool");
                continue;
            }
        };
        let view = match nodepool_view(&np, types.to_vec()) {
            Ok(v) => v,
            Err(error) => {
                warn!(nodepool = %name, category = error.category(), %error, "nodepool not converted; skipping");
                continue;
            }
        };
        if plan::compatible_instance_types(&view) == 0 {
            ctx.recorder
                .publish(
                    Event::about(
                        &*np,
                        EventType::Warning,
                        "NoCompatibleInstanceTypes",
                        "NodePool requirements filtered out all compatible available instance types",
                    )
                    .dedupe_for(NO_COMPATIBLE_DEDUPE),
                )
                .await;
            continue;
        }
        pools.insert(name, ((*np).clone(), view.limits.clone()));
        views.push(view);
    }
    (views, pools)
}

/// One provisioning pass over the current state: snapshot, solve, plan, apply.
pub async fn provision_once(ctx: &Context) -> PassSummary {
    let snapshot = ctx.state.snapshot();
    let mut seen: HashSet<String> = HashSet::new();
    let pods: Vec<PodView> = snapshot
        .pending_provisionable_pods()
        .into_iter()
        .chain(snapshot.pods_on_deleting_nodes())
        .filter(|p| seen.insert(p.view.uid.clone()))
        .map(|p| p.view.clone())
        .collect();
    let mut summary = PassSummary {
        pods: pods.len(),
        ..PassSummary::default()
    };
    let scheduler = &ctx.metrics.scheduler;
    if pods.is_empty() {
        scheduler
            .unschedulable_pods
            .with_label_values(&[CONTROLLER])
            .set(0.0);
        scheduler
            .ignored_pods
            .with_label_values(&NO_LABELS)
            .set(0.0);
        return summary;
    }
    let (views, pools) = nodepool_views(ctx, &snapshot).await;
    summary.nodepools = views.len();
    let refs: BTreeMap<String, PodRef> = pods
        .iter()
        .map(|p| {
            (
                p.uid.clone(),
                PodRef {
                    uid: p.uid.clone(),
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                },
            )
        })
        .collect();
    let zones = plan::zone_domains(&views);
    let mut input = snapshot.scheduling_input(pods, views);
    input
        .topology_domains
        .entry(labels::ZONE.to_string())
        .or_default()
        .extend(zones);
    let options = SolveOptions {
        preference_policy: ctx.settings.preference_policy,
        min_values_policy: ctx.settings.min_values_policy,
        max_instance_types: MAX_INSTANCE_TYPES,
        reserved_capacity_strict: false,
    };
    let scheduling_id = uuid::Uuid::new_v4().to_string();
    let depth = scheduler
        .queue_depth
        .with_label_values(&[CONTROLLER, scheduling_id.as_str()]);
    depth.set(summary.pods as f64);
    let started = std::time::Instant::now();
    // The solve is pure CPU work: keep it off the async workers.
    let results = match tokio::task::spawn_blocking(move || solve(&input, &options)).await {
        Ok(r) => r,
        Err(error) => {
            warn!(%error, "scheduling simulation did not finish");
            let _ = scheduler
                .queue_depth
                .remove_label_values(&[CONTROLLER, scheduling_id.as_str()]);
            return summary;
        }
    };
    scheduler
        .scheduling_duration
        .with_label_values(&[CONTROLLER])
        .observe(started.elapsed().as_secs_f64());
    let _ = scheduler
        .queue_depth
        .remove_label_values(&[CONTROLLER, scheduling_id.as_str()]);

    let decided = plan(&results, &refs, &pools, |name| match snapshot.node(name) {
        Some(sn) => NodeTarget {
            key: sn.key().to_string(),
            nodeclaim: sn.nodeclaim.as_ref().map(|nc| nc.name.clone()),
            node: sn.node.as_ref().map(|n| n.name.clone()),
        },
        None => NodeTarget {
            key: name.to_string(),
            nodeclaim: None,
            node: Some(name.to_string()),
        },
    });
    apply(ctx, decided, &mut summary).await;
    scheduler
        .unschedulable_pods
        .with_label_values(&[CONTROLLER])
        .set(summary.unschedulable as f64);
    scheduler
        .ignored_pods
        .with_label_values(&NO_LABELS)
        .set(summary.ignored as f64);
    summary
}

async fn publish_failure(ctx: &Context, failure: &Failure) {
    if let Some(message) = &failure.message {
        ctx.recorder
            .publish(
                pod_event(
                    &failure.pod,
                    EventType::Warning,
                    "FailedScheduling",
                    message.clone(),
                )
                .dedupe_for(FAILED_SCHEDULING_DEDUPE),
            )
            .await;
    }
}

/// Applies a plan: nominations and their events, failures' events, then the creates.
async fn apply(ctx: &Context, decided: Plan, summary: &mut PassSummary) {
    summary.unschedulable = decided.unschedulable_count();
    summary.ignored = decided.ignored_count();
    summary.nominated = decided.nominations.len();
    let mut nominated_keys = BTreeSet::new();
    for n in &decided.nominations {
        if nominated_keys.insert(n.target.key.clone()) {
            ctx.state.nominate(&n.target.key);
        }
        ctx.recorder
            .publish(pod_event(
                &n.pod,
                EventType::Normal,
                "Nominated",
                nominated_message(n.target.nodeclaim.as_deref(), n.target.node.as_deref()),
            ))
            .await;
    }
    for f in &decided.failures {
        publish_failure(ctx, f).await;
    }
    let outcomes: Vec<CreateOutcome> = futures::stream::iter(decided.creates)
        .map(|c| create_one(ctx, c))
        .buffer_unordered(MAX_CONCURRENT_CREATES)
        .collect()
        .await;
    let mut outcomes = outcomes;
    outcomes.sort_by(|a, b| a.name().cmp(b.name()));
    for outcome in outcomes {
        match outcome {
            CreateOutcome::Created(name) => summary.created.push(name),
            CreateOutcome::LimitExceeded(pods) => summary.unschedulable += pods,
            CreateOutcome::Failed => {}
        }
    }
}

enum CreateOutcome {
    Created(String),
    LimitExceeded(usize),
    Failed,
}

impl CreateOutcome {
    fn name(&self) -> &str {
        match self {
            CreateOutcome::Created(n) => n,
            _ => "",
        }
    }
}

/// Creates one planned NodeClaim unless its pool's limits are already exceeded, applies it to
/// state at once, and nominates it for its pods.
async fn create_one(ctx: &Context, planned: PlannedCreate) -> CreateOutcome {
    let usage = ctx.state.snapshot().nodepool_usage(&planned.nodepool);
    if let Some(exceeded) = exceeded_limit(&planned.limits, &usage) {
        let reason = format!("nodepool {:?} limit exceeded: {exceeded}", planned.nodepool);
        for pod in &planned.pods {
            publish_failure(
                ctx,
                &Failure {
                    pod: pod.clone(),
                    message: Some(failed_scheduling_message(&reason)),
                    ignored: false,
                },
            )
            .await;
        }
        return CreateOutcome::LimitExceeded(planned.pods.len());
    }
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let created = match api.create(&PostParams::default(), &planned.nodeclaim).await {
        Ok(c) => c,
        Err(error) => {
            warn!(nodepool = %planned.nodepool, %error, "creating nodeclaim failed; its pods are retried next batch");
            return CreateOutcome::Failed;
        }
    };
    // See the module doc: the next batch must see this claim even before the watch does.
    ctx.state.apply(&created);
    let name = created.metadata.name.clone().unwrap_or_default();
    ctx.metrics
        .nodeclaims
        .created
        .with_label_values(&[
            "provisioned",
            planned.nodepool.as_str(),
            if planned.min_values_relaxed {
                "true"
            } else {
                "false"
            },
        ])
        .inc();
    ctx.state.nominate(&name);
    info!(nodeclaim = %name, nodepool = %planned.nodepool, pods = planned.pods.len(), "created nodeclaim");
    for pod in &planned.pods {
        ctx.recorder
            .publish(pod_event(
                pod,
                EventType::Normal,
                "Nominated",
                nominated_message(Some(&name), None),
            ))
            .await;
    }
    CreateOutcome::Created(name)
}
