//! The whole set of controllers as one unit: what `karpenter controller` runs once it leads.
//!
//! Controllers act only while this replica leads. Rather than have every reconciler consult
//! leadership on each pass (and race a handover mid-pass), the operator starts them all when
//! leadership is gained and stops them all when it is lost or shutdown is requested. The
//! cluster-state informers are not started here: they belong to the caller and warm up before
//! leadership, as upstream's cache does, so a new leader decides on a synced view at once.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use crate::context::Context;
use crate::nodeclaim::LifecycleConfig;
use crate::provisioning::Provisioner;
use crate::termination::TerminationConfig;

/// The controllers this build runs, by upstream's controller names (logged at startup).
pub const CONTROLLERS: &[&str] = &[
    "provisioner",
    "nodepool.counter",
    "nodepool.readiness",
    "nodepool.hash",
    "nodeclaim.lifecycle",
    "nodeclaim.garbagecollection",
    "nodeclaim.consistency",
    "nodeclaim.podevents",
    "metrics.node",
    "metrics.pod",
    "metrics.nodepool",
    crate::termination::CONTROLLER,
    "operatorpkg.nodeclaim.status",
    "operatorpkg.nodepool.status",
    "operatorpkg.node.status",
];

/// Timings of every controller (upstream's defaults; tests shorten them).
#[derive(Debug, Clone, Default)]
pub struct OperatorConfig {
    /// NodeClaim launch/registration/GC timings.
    pub lifecycle: LifecycleConfig,
    /// Drain and instance-termination timings.
    pub termination: TerminationConfig,
    /// `DISABLE_CLUSTER_STATE_OBSERVABILITY`: skip the `metrics.node`/`.pod`/`.nodepool` loop.
    pub disable_cluster_state_observability: bool,
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// `shutdown` turned true (or its sender went away).
    Shutdown,
    /// This replica led and then lost the lease; the caller should exit so a restart starts
    /// from a clean slate instead of acting on a stale view.
    LostLeadership,
    /// The leadership channel closed before this replica ever led.
    ElectionEnded,
}

/// Waits for leadership, then runs every controller until shutdown or loss of leadership.
/// `eviction_client` must not retry 429s itself (see [`crate::termination::run`]).
pub async fn run(
    ctx: Arc<Context>,
    config: OperatorConfig,
    eviction_client: kube::Client,
    mut shutdown: watch::Receiver<bool>,
) -> Stopped {
    let mut leader = ctx.is_leader.clone();
    // Wait to lead.
    loop {
        if *shutdown.borrow() {
            return Stopped::Shutdown;
        }
        if *leader.borrow_and_update() {
            break;
        }
        tokio::select! {
            r = leader.changed() => if r.is_err() { return Stopped::ElectionEnded },
            r = shutdown.changed() => if r.is_err() { return Stopped::Shutdown },
        }
    }
    info!(controllers = ?CONTROLLERS, "leading: starting controllers");

    // The controllers get their own stop signal so losing the lease stops them exactly like
    // a shutdown does.
    let (stop_tx, stop) = watch::channel(false);
    let controllers = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            let observe = !config.disable_cluster_state_observability;
            let (observe_ctx, observe_stop) = (ctx.clone(), stop.clone());
            tokio::join!(
                Provisioner::run(ctx.clone(), stop.clone()),
                crate::nodepool::run(ctx.clone(), stop.clone()),
                async move {
                    if observe {
                        crate::observability::run(observe_ctx, observe_stop).await;
                    }
                },
                crate::nodeclaim::run(ctx.clone(), config.lifecycle, stop.clone()),
                crate::status::run(ctx.clone(), stop.clone()),
                crate::termination::run(ctx, config.termination, eviction_client, stop),
            );
        }
        .instrument(info_span!("controllers"))
    });

    let outcome = loop {
        tokio::select! {
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() { break Stopped::Shutdown; }
            }
            r = leader.changed() => {
                if r.is_err() || !*leader.borrow_and_update() {
                    warn!("leadership lost: stopping controllers");
                    break Stopped::LostLeadership;
                }
            }
        }
    };
    let _ = stop_tx.send(true);
    if let Err(e) = controllers.await {
        warn!(error = %e, "a controller task ended abnormally");
    }
    info!(reason = ?outcome, "controllers stopped");
    outcome
}
