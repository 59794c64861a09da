//! The machinery every component shares: reflector caches that signal changes, a level-triggered
//! pass loop with resync, timers and error backoff, and shutdown.

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

/// Receives the shutdown signal (`true` once components must stop).
pub type ShutdownRx = watch::Receiver<bool>;

/// Resolves once shutdown was requested (or its sender is gone).
pub(crate) async fn stopped(rx: &mut ShutdownRx) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Reflector caches of one component and the notification they raise on every change.
pub(crate) struct Caches {
    pub(crate) changed: Arc<Notify>,
    shutdown: ShutdownRx,
    tasks: Vec<JoinHandle<()>>,
}

impl Caches {
    pub(crate) fn new(shutdown: ShutdownRx) -> Self {
        Caches {
            changed: Arc::new(Notify::new()),
            shutdown,
            tasks: Vec::new(),
        }
    }

    /// Starts a watch-backed cache of `api`'s objects; every event wakes the component.
    pub(crate) fn watch<K>(&mut self, api: Api<K>) -> Store<K>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
    {
        let (reader, writer) = reflector::store();
        let changed = self.changed.clone();
        let mut shutdown = self.shutdown.clone();
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default()).default_backoff(),
        );
        let task = tokio::spawn(
            async move {
                let mut stream = std::pin::pin!(stream);
                loop {
                    tokio::select! {
                        event = stream.next() => match event {
                            Some(Ok(_)) => changed.notify_one(),
                            Some(Err(e)) => tracing::warn!(error = %e, "watch failed; retrying with backoff"),
                            None => break,
                        },
                        _ = stopped(&mut shutdown) => break,
                    }
                }
            }
            .instrument(tracing::debug_span!("reflector", kind = %kind)),
        );
        self.tasks.push(task);
        reader
    }

    /// Waits until every cache listed its objects; `false` if shutdown came first.
    pub(crate) async fn ready<K>(&mut self, stores: &[&Store<K>]) -> bool
    where
        K: Resource + Clone + 'static,
        K::DynamicType: Eq + Hash + Clone,
    {
        for store in stores {
            tokio::select! {
                r = store.wait_until_ready() => if r.is_err() { return false },
                _ = stopped(&mut self.shutdown) => return false,
            }
        }
        true
    }

    /// Waits for the watch tasks after shutdown.
    pub(crate) async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// What one pass over the caches asks of the loop.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Outcome {
    /// A timer the component needs (node ready delay, pod start delay...).
    pub(crate) wake_at: Option<Instant>,
    /// Some write failed: retry with backoff even if nothing changes.
    pub(crate) failed: bool,
}

impl Outcome {
    /// Keeps the earliest timer.
    pub(crate) fn wake(&mut self, at: Instant) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

/// A level-triggered component: each pass reads its caches and converges the cluster.
pub(crate) trait Component: Send {
    /// One pass over everything the component owns.
    fn pass(&mut self) -> impl Future<Output = Outcome> + Send;
}

/// Loop timing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoopTiming {
    pub(crate) resync: Duration,
    pub(crate) debounce: Duration,
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs passes on change, on timers, on resync and after failures, until shutdown.
pub(crate) async fn drive<C: Component>(
    mut component: C,
    changed: Arc<Notify>,
    timing: LoopTiming,
    mut shutdown: ShutdownRx,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let outcome = component.pass().await;
        let mut wait = timing.resync;
        if outcome.failed {
            wait = wait.min(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            backoff = MIN_BACKOFF;
        }
        if let Some(at) = outcome.wake_at {
            wait = wait.min(at.saturating_duration_since(Instant::now()));
        }
        tokio::select! {
            _ = changed.notified() => {
                // Let a burst of watch events land before the next pass.
                tokio::time::sleep(timing.debounce).await;
            }
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut shutdown) => break,
        }
    }
}

/// Whether an API error is an expected race (stale cache, object gone) rather than a fault.
pub(crate) fn is_race(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

/// Logs a failed write: races at debug, anything else at warn.
pub(crate) fn log_write_error(action: &str, object: &str, e: &kube::Error) {
    if is_race(e) {
        tracing::debug!(action, object, error = %e, "write raced with another change; will retry");
    } else {
        tracing::warn!(action, object, error = %e, "write failed; will retry");
    }
}
