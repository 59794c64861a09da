//! The NodeClaim controllers: `nodeclaim.lifecycle` (finalizer, launch, registration,
//! initialization, liveness, finalization), `nodeclaim.garbagecollection` (NodeClaims whose
//! instance vanished, and instances no NodeClaim owns) and `nodeclaim.consistency` (the Node
//! offers what the NodeClaim expected).
//!
//! Decisions are pure functions in [`plan`] over (NodeClaim, observed Node, now); the
//! reconcilers read caches, call them, and apply what they return.

pub mod consistency;
pub mod garbagecollection;
pub mod lifecycle;
pub mod node_index;
pub mod plan;
pub mod podevents;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use karpenter_cloudprovider::CloudProviderError;
use tokio::sync::watch;

use crate::context::Context;
use crate::nodepool::runner::Categorized;

pub use node_index::NodeIndex;

/// Why a NodeClaim or Node reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The cloud provider failed.
    #[error("cloud provider: {0}")]
    Cloud(#[from] CloudProviderError),
    /// A patch could not be serialized.
    #[error("serializing a patch: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// A stable, low-cardinality name for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Cloud(e) if e.category().is_empty() => "cloudprovider",
            Error::Cloud(e) => e.category(),
            Error::Serialize(_) => "serialize",
        }
    }
}

impl Categorized for Error {
    fn category(&self) -> &'static str {
        Error::category(self)
    }
}

/// Timings of the NodeClaim controllers (upstream's constants; tests shorten them).
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// A NodeClaim not launched this long after creation is deleted (`launch_timeout`).
    pub launch_timeout: Duration,
    /// A NodeClaim not registered this long after creation is deleted (`registration_timeout`).
    pub registration_timeout: Duration,
    /// Re-check period while waiting for registration/initialization (Node events also trigger).
    pub poll: Duration,
    /// Requeue while an instance is terminating.
    pub instance_termination_poll: Duration,
    /// Period of `nodeclaim.garbagecollection`.
    pub gc_interval: Duration,
    /// Terminate instances that no NodeClaim owns (upstream does this in the AWS provider).
    pub gc_leaked_instances: bool,
    /// A leaked instance younger than this is left alone (its NodeClaim may be in flight).
    pub leaked_instance_min_age: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            launch_timeout: Duration::from_secs(5 * 60),
            registration_timeout: Duration::from_secs(15 * 60),
            poll: Duration::from_secs(5),
            instance_termination_poll: Duration::from_secs(5),
            gc_interval: Duration::from_secs(2 * 60),
            gc_leaked_instances: true,
            leaked_instance_min_age: Duration::from_secs(30),
        }
    }
}

/// An API timestamp from a chrono time.
pub fn to_time(t: DateTime<Utc>) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
            .unwrap_or_default(),
    )
}

/// A chrono time from an API timestamp.
pub fn from_time(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

/// Runs `nodeclaim.lifecycle`, `.garbagecollection`, `.consistency` and `.podevents` until `shutdown` turns true.
pub async fn run(ctx: Arc<Context>, config: LifecycleConfig, shutdown: watch::Receiver<bool>) {
    let index = NodeIndex::start(ctx.client.clone());
    let lifecycle = Arc::new(lifecycle::Lifecycle::new(config.clone(), index.clone()));
    tokio::join!(
        lifecycle.run(ctx.clone(), shutdown.clone()),
        consistency::run(ctx.clone(), index.clone(), shutdown.clone()),
        podevents::run(ctx.clone(), shutdown.clone()),
        garbagecollection::run(ctx, config, index.clone(), shutdown),
    );
    index.stop();
}
