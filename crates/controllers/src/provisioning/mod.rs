//! The provisioner: a singleton event loop that batches triggers (pending pods, deleting or
//! disrupted nodes, NodePool changes, a periodic nudge while work remains), waits for
//! leadership and a synced cluster state, then snapshots state, solves, plans and applies:
//! creates NodeClaims (bounded parallelism, limits re-checked right before each create),
//! nominates nodes and publishes `Nominated`, `FailedScheduling` and
//! `NoCompatibleInstanceTypes` events. Each pass also records in cluster state when it first
//! saw, decided and placed each pending pod (the `karpenter_pods_provisioning_*` and
//! `karpenter_pods_scheduling_decision_duration_seconds` metrics count from those) and sets
//! `karpenter_scheduler_pending_pods_by_effective_zone_count`. Events are queued, never
//! awaited (see [`crate::events`]), so no create waits behind an Event POST.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::NodePool;
use karpenter_cloudprovider::CloudProvider;
use karpenter_scheduling::convert::nodepool_view;
use karpenter_scheduling::{NodePoolView, PodError, PodView, SolveOptions, solve_until};
use karpenter_state::Snapshot;
use kube::api::{Api, PostParams};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use self::batch::{BatchWindow, Trigger, TriggerDetector};
use self::plan::{
    Failure, NodeTarget, Plan, PlannedCreate, PodRef, exceeded_limit, failed_scheduling_message,
    nominated_message, plan, usable_in,
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
/// Longest a scheduling simulation may run before it is told to stop and the pass keeps what it
/// placed so far (upstream: 1 minute, results kept).
pub const SOLVE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a solve told to stop may take to hand back its partial results (it finishes the
/// pod in hand) before the pass abandons it.
pub const SOLVE_STOP_GRACE: Duration = Duration::from_secs(10);
/// How often `karpenter_scheduler_unfinished_work_seconds` is refreshed during a solve.
const UNFINISHED_WORK_TICK: Duration = Duration::from_secs(1);

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
    /// The solve ran past [`SOLVE_TIMEOUT`]: what it placed was applied and the pods it did
    /// not reach stay pending for the next pass (or it did not stop, or an earlier one still
    /// runs, and nothing was applied).
    pub timed_out: bool,
    /// Pods the stopped solve did not reach (no event; they are retried).
    pub not_tried: usize,
}

/// Why a bounded solve returned no results.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// The solve ran past its deadline and did not stop within the grace after being told to;
    /// it keeps running on its blocking thread until done.
    #[error("scheduling simulation ran longer than {0:?} and did not stop when told to")]
    TimedOut(Duration),
    /// The solve panicked or was cancelled.
    #[error("scheduling simulation failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Awaits a solve running on a blocking thread, calling `progress` with the elapsed time
/// every [`UNFINISHED_WORK_TICK`]. At `timeout` it raises `stop` (which the solve polls, see
/// [`karpenter_scheduling::solve_until`]) and waits up to `grace` more for the partial results.
/// A solve that still has not returned is left in `slot` (it cannot be killed) so the next
/// pass does not start a second one while it still occupies a CPU.
pub async fn bounded_solve<T: Send + 'static>(
    slot: &mut Option<tokio::task::JoinHandle<T>>,
    mut work: tokio::task::JoinHandle<T>,
    timeout: Duration,
    grace: Duration,
    stop: &AtomicBool,
    mut progress: impl FnMut(Duration),
) -> Result<T, SolveError> {
    let started = Instant::now();
    let mut deadline = started + timeout;
    let mut tick = tokio::time::interval(UNFINISHED_WORK_TICK);
    loop {
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(deadline) => {
                if stop.swap(true, Ordering::Relaxed) {
                    *slot = Some(work);
                    return Err(SolveError::TimedOut(timeout));
                }
                deadline += grace;
            }
            r = &mut work => return Ok(r?),
            _ = tick.tick() => progress(started.elapsed()),
        }
    }
}

/// Raises a solve's stop signal when dropped, so a pass dropped mid-solve (shutdown) does not
/// leave the solve running to the end on its blocking thread.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Whether a solve abandoned by an earlier pass is still running (and clears it once done).
fn solve_still_running<T>(slot: &mut Option<tokio::task::JoinHandle<T>>) -> bool {
    match slot {
        Some(h) if !h.is_finished() => true,
        _ => {
            *slot = None;
            false
        }
    }
}

/// The provisioner loop.
#[derive(Debug)]
pub struct Provisioner;

impl Provisioner {
    /// Runs until `shutdown` turns true.
    pub async fn run(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::channel::<Trigger>(256);
        let detector = tokio::spawn(detect(ctx.clone(), tx, shutdown.clone()).instrument(
            tracing::info_span!("controller", controller = "provisioner.trigger.pod"),
        ));
        let mut abandoned = None;
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
            let pass = provision_pass(&ctx, SOLVE_TIMEOUT, &mut abandoned)
                .instrument(tracing::info_span!("controller", controller = CONTROLLER));
            tokio::pin!(pass);
            // A stop mid-pass must not wait for the solve (up to SOLVE_TIMEOUT): the pass gets
            // the same grace as in-flight reconciles to finish writes it has started, then is
            // dropped, which the restart tests show is as safe as a crash.
            let summary = tokio::select! {
                s = &mut pass => s,
                _ = shutdown.changed() => {
                    match tokio::time::timeout(crate::nodepool::runner::SHUTDOWN_GRACE, &mut pass).await {
                        Ok(s) => s,
                        Err(_) => {
                            warn!(controller = CONTROLLER, "stopping: abandoned an unfinished provisioning pass");
                            break;
                        }
                    }
                }
            };
            info!(
                controller = CONTROLLER,
                triggers = ?triggers.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                pods = summary.pods,
                nodepools = summary.nodepools,
                created = summary.created.len(),
                nominated = summary.nominated,
                unschedulable = summary.unschedulable,
                ignored = summary.ignored,
                timed_out = summary.timed_out,
                not_tried = summary.not_tried,
                "provisioning pass"
            );
            // The change may have been consumed while the pass finished within its grace.
            if *shutdown.borrow() {
                break;
            }
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
        if let Err(skip) = usable_in(snapshot, &np) {
            debug!(NodePool = %name, ?skip, "nodepool not used for provisioning");
            continue;
        }
        let types = match cloud.get_instance_types(&np).await {
            Ok(t) if !t.is_empty() => t,
            Ok(_) => {
                debug!(NodePool = %name, "no instance types; skipping nodepool");
                continue;
            }
            Err(error) => {
                warn!(NodePool = %name, category = error.category(), %error, "listing instance types failed; skipping nodepool");
                continue;
            }
        };
        let view = match nodepool_view(&np, types.to_vec()) {
            Ok(v) => v,
            Err(error) => {
                warn!(NodePool = %name, category = error.category(), %error, "nodepool not converted; skipping");
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
    provision_pass(ctx, SOLVE_TIMEOUT, &mut None).await
}

/// [`provision_once`] with a solve bounded by `solve_timeout`. A solve that runs past it is
/// told to stop; what it placed is applied like any result (as upstream keeps a timed-out
/// solve's results) and the pods it did not reach stay pending, without an event, for the
/// next pass. Only a solve that does not stop within [`SOLVE_STOP_GRACE`] is abandoned (left
/// in `abandoned`), and then nothing is applied.
pub async fn provision_pass(
    ctx: &Context,
    solve_timeout: Duration,
    abandoned: &mut Option<tokio::task::JoinHandle<karpenter_scheduling::SchedulingResults>>,
) -> PassSummary {
    let snapshot = ctx.state.snapshot();
    let pending = snapshot.pending_provisionable_pods();
    // The provisioning pod metrics are measured from the first pass that saw the pod.
    ctx.state.ack_pods(pending.iter().map(|p| &p.view));
    let mut seen: HashSet<String> = HashSet::new();
    let pods: Vec<PodView> = pending
        .iter()
        .cloned()
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
        write_effective_zone_counts(&scheduler.pending_pods_by_effective_zone, &BTreeMap::new());
        return summary;
    }
    let (views, pools) = nodepool_views(ctx, &snapshot).await;
    summary.nodepools = views.len();
    let zones = plan::zone_domains(&views);
    let mut by_zone: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pending {
        *by_zone
            .entry(plan::effective_zone(&p.view, &zones))
            .or_default() += 1;
    }
    write_effective_zone_counts(&scheduler.pending_pods_by_effective_zone, &by_zone);
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
    if solve_still_running(abandoned) {
        warn!(
            "an earlier scheduling simulation that timed out is still running; skipping this pass"
        );
        summary.timed_out = true;
        return summary;
    }
    let scheduling_id = uuid::Uuid::new_v4().to_string();
    let id_labels = [CONTROLLER, scheduling_id.as_str()];
    scheduler
        .queue_depth
        .with_label_values(&id_labels)
        .set(summary.pods as f64);
    let unfinished = scheduler.unfinished_work.with_label_values(&id_labels);
    unfinished.set(0.0);
    let started = std::time::Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
    let solver_stop = Arc::clone(&stop);
    // The solve is pure CPU work: keep it off the async workers.
    let work = tokio::task::spawn_blocking(move || {
        solve_until(&input, None, &options, &|| {
            solver_stop.load(Ordering::Relaxed)
        })
    });
    let outcome = bounded_solve(
        abandoned,
        work,
        solve_timeout,
        SOLVE_STOP_GRACE,
        &stop,
        |elapsed| unfinished.set(elapsed.as_secs_f64()),
    )
    .await;
    // Per-solve series go with the solve, as upstream deletes them.
    let _ = scheduler.queue_depth.remove_label_values(&id_labels);
    let _ = scheduler.unfinished_work.remove_label_values(&id_labels);
    let results = match outcome {
        Ok(r) => r,
        Err(error) => {
            tracing::error!(%error, pods = summary.pods, "scheduling simulation did not finish; no nodeclaims created this pass");
            summary.timed_out = matches!(error, SolveError::TimedOut(_));
            return summary;
        }
    };
    scheduler
        .scheduling_duration
        .with_label_values(&[CONTROLLER])
        .observe(started.elapsed().as_secs_f64());
    if results.stopped {
        summary.timed_out = true;
        summary.not_tried = results
            .unschedulable
            .values()
            .filter(|e| matches!(e, PodError::NotTried))
            .count();
        warn!(
            pods = summary.pods,
            placed = results.placed(),
            not_tried = summary.not_tried,
            timeout = ?solve_timeout,
            "scheduling simulation timed out; applying what it placed, the rest wait for the next pass"
        );
    }

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
    let decisions = decided
        .creates
        .iter()
        .flat_map(|c| c.pods.iter().map(|p| (p.uid.as_str(), true)))
        .chain(
            decided
                .nominations
                .iter()
                .map(|n| (n.pod.uid.as_str(), true)),
        )
        .chain(decided.failures.iter().map(|f| (f.pod.uid.as_str(), false)));
    for seconds in ctx.state.mark_pod_decisions(decisions) {
        ctx.metrics
            .pods
            .scheduling_decision_duration
            .with_label_values(&NO_LABELS)
            .observe(seconds);
    }
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

/// Sets `karpenter_scheduler_pending_pods_by_effective_zone_count{controller="provisioner"}`
/// to `counts`, deleting the provisioner's series of zones no longer counted (a reset would
/// let a scrape see the family empty, and would drop other controllers' series).
fn write_effective_zone_counts(gauge: &prometheus::GaugeVec, counts: &BTreeMap<String, usize>) {
    use prometheus::core::Collector;
    let stale: Vec<String> = gauge
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .filter_map(|metric| {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_string())
            };
            (label("controller").as_deref() == Some(CONTROLLER))
                .then(|| label("zone"))
                .flatten()
        })
        .filter(|zone| !counts.contains_key(zone))
        .collect();
    for zone in stale {
        let _ = gauge.remove_label_values(&[CONTROLLER, zone.as_str()]);
    }
    for (zone, count) in counts {
        gauge
            .with_label_values(&[CONTROLLER, zone.as_str()])
            .set(*count as f64);
    }
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
            warn!(NodePool = %planned.nodepool, %error, "creating nodeclaim failed; its pods are retried next batch");
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
    info!(NodeClaim = %name, NodePool = %planned.nodepool, pods = planned.pods.len(), "created nodeclaim");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// How the stand-in "solve" behaves.
    #[derive(Clone, Copy)]
    enum Solve {
        /// Done before the deadline: returns 7.
        FinishesFirst,
        /// Polls the stop signal like `solve_until` and returns 3 (its partial result).
        StopsWhenTold,
        /// Ignores the stop signal; returns 7 once the test releases it.
        IgnoresStop,
    }

    fn check(solve: Solve, timeout: Duration, expected: Result<i32, ()>) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let stop = Arc::new(AtomicBool::new(false));
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let seen = Arc::clone(&stop);
            let work = tokio::task::spawn_blocking(move || match solve {
                Solve::FinishesFirst => 7,
                Solve::StopsWhenTold => {
                    while !seen.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    3
                }
                Solve::IgnoresStop => wait.recv().map(|_| 7).unwrap_or(0),
            });
            if matches!(solve, Solve::FinishesFirst) {
                // Let the work finish before racing the deadline.
                while !work.is_finished() {
                    tokio::task::yield_now().await;
                }
            }
            let mut slot = None;
            let got = bounded_solve(
                &mut slot,
                work,
                timeout,
                Duration::from_millis(50),
                &stop,
                |_| {},
            )
            .await;
            match (&got, expected) {
                (Ok(v), Ok(want)) => assert_eq!(*v, want),
                (Err(SolveError::TimedOut(_)), Err(())) => {}
                other => panic!("unexpected {other:?}"),
            }
            // The stop signal is raised exactly when the deadline passed first.
            assert_eq!(
                stop.load(Ordering::Relaxed),
                !matches!(solve, Solve::FinishesFirst)
            );
            if expected.is_err() {
                assert!(
                    solve_still_running(&mut slot),
                    "the abandoned solve is kept"
                );
                release.send(()).unwrap();
                let h = slot.take().unwrap();
                assert_eq!(h.await.unwrap(), 7);
                assert!(!solve_still_running(
                    &mut None::<tokio::task::JoinHandle<()>>
                ));
            } else {
                assert!(slot.is_none());
            }
        });
    }

    #[test]
    fn a_finished_solve_returns_its_results() {
        check(Solve::FinishesFirst, Duration::from_secs(600), Ok(7));
    }

    #[test]
    fn a_solve_past_its_deadline_is_told_to_stop_and_its_partial_results_kept() {
        check(Solve::StopsWhenTold, Duration::from_millis(20), Ok(3));
    }

    #[test]
    fn a_solve_that_does_not_stop_is_abandoned_and_kept_until_it_ends() {
        check(Solve::IgnoresStop, Duration::from_millis(20), Err(()));
    }

    #[test]
    fn dropping_a_pass_stops_its_solve() {
        let stop = Arc::new(AtomicBool::new(false));
        drop(StopOnDrop(Arc::clone(&stop)));
        assert!(stop.load(Ordering::Relaxed));
    }
}
