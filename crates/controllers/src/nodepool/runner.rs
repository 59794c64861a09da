//! Drives a per-object reconciler with kube-runtime's `Controller`: times and counts every
//! reconcile under `controller_runtime_*{controller}`, logs failures with their category and
//! retries them with capped exponential backoff per object (reset on success).

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{Instrument, warn};

use crate::context::Context;
use crate::metrics::ReconcileResult;

/// First retry delay after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay (failures beyond this keep retrying at this pace).
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// Per-object failure counts for capped exponential backoff.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The delay before retrying `key` after one more failure.
    pub fn next(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        let delay = BACKOFF_BASE
            .saturating_mul(2u32.saturating_pow((*n).min(20)))
            .min(BACKOFF_CAP);
        *n = n.saturating_add(1);
        delay
    }

    /// Forgets `key`'s failures.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// Errors a reconciler may return: they name their category for logs and metrics.
pub trait Categorized: std::error::Error + Send + Sync + 'static {
    /// A stable, low-cardinality name.
    fn category(&self) -> &'static str;
}

impl Categorized for super::Error {
    fn category(&self) -> &'static str {
        super::Error::category(self)
    }
}

/// The span of one reconcile: named `controller` (the `logger` key of upstream's logs), with
/// the controller's name and the object under its kind's name (`NodeClaim`, `NodePool`,
/// `Node`), the keys upstream's JSON logs carry.
pub fn reconcile_span(controller: &'static str, kind: &str, name: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "controller",
        controller,
        NodeClaim = tracing::field::Empty,
        NodePool = tracing::field::Empty,
        Node = tracing::field::Empty,
        object = tracing::field::Empty,
    );
    match kind {
        "NodeClaim" | "NodePool" | "Node" => span.record(kind, name),
        _ => span.record("object", name),
    };
    span
}

/// How long a stop waits for reconciles already in flight (an API write or a cloud call
/// finishing) before dropping them. A dropped reconcile is cut off exactly as a crash would
/// cut it, which the controllers recover from on their next start.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
}

/// Runs `controller` with `reconcile` until `shutdown` turns true.
///
/// On shutdown the controller stops taking work and in-flight reconciles get
/// [`SHUTDOWN_GRACE`] to finish. kube-runtime's own graceful shutdown is not enough alone:
/// it holds every reconcile until the controller's cache has listed once, and the shutdown
/// also stops the watch that would fill that cache, so a controller stopped before its first
/// list completed (a replica stopped right after it started, or a slow API server) waited
/// forever for a sync that could no longer happen.
pub async fn run_controller<K, F, Fut, E>(
    name: &'static str,
    controller: Controller<K>,
    reconcile: F,
    ctx: Arc<Context>,
    shutdown: watch::Receiver<bool>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Debug + Unpin,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: Categorized,
{
    let backoff = Arc::new(Backoff::default());
    let on_error = backoff.clone();
    let cache = controller.store();
    let running = controller
        .graceful_shutdown_on(stopped(shutdown.clone()))
        .run(
            move |obj: Arc<K>, ctx: Arc<Context>| {
                let reconcile = reconcile.clone();
                let backoff = backoff.clone();
                let key = obj.name_any();
                let span = reconcile_span(name, &K::kind(&K::DynamicType::default()), &key);
                async move {
                    let timer = ctx.metrics.controller_runtime.start_reconcile(name);
                    let result = reconcile(obj, ctx.clone()).await;
                    match &result {
                        Ok(_) => {
                            backoff.reset(&key);
                            timer.finish(ReconcileResult::Success);
                        }
                        Err(_) => timer.finish(ReconcileResult::Error),
                    }
                    result
                }
                .instrument(span)
            },
            move |obj: Arc<K>, error: &E, _ctx: Arc<Context>| {
                let key = obj.name_any();
                let delay = on_error.next(&key);
                let _entered =
                    reconcile_span(name, &K::kind(&K::DynamicType::default()), &key).entered();
                warn!(category = error.category(), %error, retry_in = ?delay, "reconcile failed");
                Action::requeue(delay)
            },
            ctx,
        )
        .for_each(|_| std::future::ready(()));
    let mut running = std::pin::pin!(running);
    tokio::select! {
        () = &mut running => return,
        () = stopped(shutdown) => {}
    }
    // Reconciles start only once the cache has listed, so an unsynced cache means none ever
    // ran: nothing to wait for.
    if !cache_synced(&cache) {
        return;
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, running).await.is_err() {
        warn!(
            controller = name,
            grace = ?SHUTDOWN_GRACE,
            "reconciles still running at shutdown; cancelled"
        );
    }
}

/// Whether the controller's cache has completed its first list. Polling the readiness once
/// here may take over the runner's wake-up for it; harmless, as an unsynced controller is
/// dropped right after and a synced one no longer needs that wake-up.
fn cache_synced<K>(cache: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    matches!(cache.wait_until_ready().now_or_never(), Some(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// Records the name and recorded fields of every span (what the JSON formatter sees).
    #[derive(Default)]
    struct Spans(Mutex<Vec<(String, BTreeMap<String, String>)>>);

    struct Fields<'a>(&'a mut BTreeMap<String, String>);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(
                field.name().to_string(),
                format!("{value:?}").replace('"', ""),
            );
        }
    }

    impl Subscriber for &'static Spans {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, attrs: &Attributes<'_>) -> Id {
            let mut spans = self.0.lock().unwrap();
            let mut fields = BTreeMap::new();
            attrs.record(&mut Fields(&mut fields));
            spans.push((attrs.metadata().name().to_string(), fields));
            Id::from_u64(spans.len() as u64)
        }
        fn record(&self, id: &Id, values: &Record<'_>) {
            let mut spans = self.0.lock().unwrap();
            if let Some((_, fields)) = spans.get_mut(id.into_u64() as usize - 1) {
                values.record(&mut Fields(fields));
            }
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    fn check(kind: &str, expect: &[(&str, &str)]) {
        let spans: &'static Spans = Box::leak(Box::default());
        tracing::subscriber::with_default(spans, || {
            let _span = reconcile_span("nodeclaim.lifecycle", kind, "default-abc");
        });
        let recorded = spans.0.lock().unwrap();
        let (name, fields) = recorded.first().unwrap();
        assert_eq!(name, "controller");
        let want: BTreeMap<String, String> = expect
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(fields, &want);
    }

    #[test]
    fn reconcile_spans_carry_upstreams_log_keys() {
        check(
            "NodeClaim",
            &[
                ("controller", "nodeclaim.lifecycle"),
                ("NodeClaim", "default-abc"),
            ],
        );
        check(
            "Node",
            &[
                ("controller", "nodeclaim.lifecycle"),
                ("Node", "default-abc"),
            ],
        );
        check(
            "NodePool",
            &[
                ("controller", "nodeclaim.lifecycle"),
                ("NodePool", "default-abc"),
            ],
        );
        check(
            "Pod",
            &[
                ("controller", "nodeclaim.lifecycle"),
                ("object", "default-abc"),
            ],
        );
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let b = Backoff::default();
        let delays: Vec<Duration> = (0..4).map(|_| b.next("a")).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800].map(Duration::from_millis).to_vec()
        );
        for _ in 0..40 {
            b.next("a");
        }
        assert_eq!(b.next("a"), BACKOFF_CAP);
        assert_eq!(b.next("other"), BACKOFF_BASE);
        b.reset("a");
        assert_eq!(b.next("a"), BACKOFF_BASE);
    }
}
