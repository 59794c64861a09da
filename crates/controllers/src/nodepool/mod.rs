//! The NodePool controllers: `nodepool.counter` (`status.resources`, `status.nodes`),
//! `nodepool.readiness` (`NodeClassReady`, `ValidationSucceeded` and the derived `Ready`) and
//! `nodepool.hash` (the template-hash annotations, and re-stamping NodeClaims when the hash
//! version changes so a takeover from upstream does not drift every node).
//!
//! Each is a per-object reconciler with the one signature
//! `reconcile(Arc<NodePool>, Arc<Context>) -> Result<Action, Error>`, driven by kube-runtime's
//! `Controller` through [`runner::run_controller`] (metrics, warn log, capped exponential
//! backoff). Status is written through the status subresource, and only when it changed.

pub mod counter;
pub mod hash;
pub mod readiness;
pub mod runner;
pub mod validation;

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::watch;

use crate::context::Context;

/// Why a NodePool reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A patch could not be serialized.
    #[error("serializing a patch: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// A stable, low-cardinality name for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Serialize(_) => "serialize",
        }
    }
}

/// The context clock's "now" as an API timestamp.
pub(crate) fn now(ctx: &Context) -> Time {
    let now = ctx.clock.now();
    Time(
        k8s_openapi::jiff::Timestamp::new(now.timestamp(), now.timestamp_subsec_nanos() as i32)
            .unwrap_or_default(),
    )
}

/// Runs the three NodePool controllers until `shutdown` turns true.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    tokio::join!(
        counter::run(ctx.clone(), shutdown.clone()),
        readiness::run(ctx.clone(), shutdown.clone()),
        hash::run(ctx, shutdown),
    );
}
