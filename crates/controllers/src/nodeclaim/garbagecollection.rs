//! `nodeclaim.garbagecollection`: a singleton loop (every [`LifecycleConfig::gc_interval`])
//! that deletes Registered NodeClaims whose instance the provider no longer lists and whose
//! Node is not Ready (`garbage_collected`), and — provider-agnostically, behind
//! [`LifecycleConfig::gc_leaked_instances`] — terminates listed instances that no NodeClaim
//! owns (upstream does the latter inside the AWS provider; the trait's `list()` serves both).

use std::sync::Arc;

use karpenter_apis::conditions::{self, nodeclaim as cond};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_cloudprovider::CloudProvider;
use kube::api::{Api, DeleteParams};
use tokio::sync::watch;
use tracing::{Instrument, info, warn};

use super::plan::{self, GcNodeClaim};
use super::{Error, LifecycleConfig, NodeIndex};
use crate::context::Context;

/// Controller name.
pub const CONTROLLER: &str = "nodeclaim.garbagecollection";

/// What wakes the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The period elapsed.
    Tick,
    /// Shutdown was requested.
    Shutdown,
}

/// Runs the loop until `shutdown` turns true; acts only while leading.
pub async fn run(
    ctx: Arc<Context>,
    config: LifecycleConfig,
    index: Arc<NodeIndex>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(config.gc_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let trigger = tokio::select! {
            _ = ticker.tick() => Trigger::Tick,
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { Trigger::Shutdown } else { continue },
        };
        match trigger {
            Trigger::Shutdown => return,
            Trigger::Tick => {
                if !ctx.leading() || !ctx.state.all_listed() || !index.listed() {
                    continue;
                }
                let timer = ctx.metrics.controller_runtime.start_reconcile(CONTROLLER);
                match collect(&ctx, &config, &index)
                    .instrument(tracing::info_span!("controller", controller = CONTROLLER))
                    .await
                {
                    Ok(()) => timer.finish(crate::metrics::ReconcileResult::Success),
                    Err(error) => {
                        timer.finish(crate::metrics::ReconcileResult::Error);
                        warn!(controller = CONTROLLER, category = error.category(), %error, "garbage collection failed");
                    }
                }
            }
        }
    }
}

/// One pass.
pub async fn collect(
    ctx: &Context,
    config: &LifecycleConfig,
    index: &NodeIndex,
) -> Result<(), Error> {
    let cloud = ctx.cloud_provider(CONTROLLER);
    let instances = cloud.list().await?;
    let snapshot = ctx.state.snapshot();
    let claims: Vec<GcNodeClaim> = snapshot
        .nodeclaims()
        .iter()
        .map(|nc| GcNodeClaim {
            name: nc.name.clone(),
            provider_id: nc.provider_id.clone(),
            registered: nc.conditions.iter().any(|c| {
                c.type_ == cond::REGISTERED
                    && c.status == karpenter_apis::common::ConditionStatus::True
            }),
            deleting: nc.deletion_timestamp.is_some(),
            node_ready: nc.provider_id.as_deref().is_some_and(|p| {
                index.by_provider_id(p).iter().any(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
            }),
        })
        .collect();
    let gc = plan::garbage_collect(
        &claims,
        &instances,
        ctx.clock.now(),
        config
            .gc_leaked_instances
            .then_some(config.leaked_instance_min_age),
    );
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    for name in &gc.delete_nodeclaims {
        let Ok(nc) = api.get(name).await else {
            continue;
        };
        // Re-check on the fresh object: state may lag behind.
        if nc.metadata.deletion_timestamp.is_some()
            || !conditions::is_true(plan::conditions_of(&nc), cond::REGISTERED)
        {
            continue;
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                info!(NodeClaim = %name, "garbage collected nodeclaim whose instance is gone");
                let l = |k: &str| {
                    nc.metadata
                        .labels
                        .as_ref()
                        .and_then(|m| m.get(k))
                        .cloned()
                        .unwrap_or_default()
                };
                ctx.metrics
                    .nodeclaims
                    .disrupted
                    .with_label_values(&[
                        "garbage_collected",
                        &l(labels::NODEPOOL),
                        &l(labels::CAPACITY_TYPE),
                        "",
                        plan::termination_mode(&nc),
                    ])
                    .inc();
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for pid in &gc.terminate_instances {
        let Some(instance) = instances
            .iter()
            .find(|i| plan::provider_id(i) == Some(pid.as_str()))
        else {
            continue;
        };
        match cloud.delete(instance).await {
            Ok(()) => info!(provider_id = %pid, "terminated leaked instance"),
            Err(e) if e.is_not_found() => {}
            Err(e) => warn!(provider_id = %pid, error = %e, "terminating leaked instance failed"),
        }
    }
    Ok(())
}
