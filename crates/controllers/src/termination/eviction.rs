//! `eviction-queue`: evicts pods of draining nodes through the policy/v1 Eviction API, one
//! entry per pod (namespace/name/UID), retried with per-pod exponential backoff
//! (100 ms – 10 s) while a PodDisruptionBudget refuses.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, PostParams};
use kube::core::Status;
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{Instrument, debug, warn};

use super::drain::PodKey;
use crate::context::Context;
use crate::events::{Event, EventType};

/// Controller name.
pub const CONTROLLER: &str = "eviction-queue";
/// First retry delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Evictions in flight at once.
const PARALLELISM: usize = 16;

#[derive(Debug, Clone)]
struct Item {
    node: String,
    reason: String,
    failures: u32,
    due: Instant,
}

/// What one eviction attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Evicted (or gone/replaced): drop the entry.
    Done,
    /// Refused or failed: retry after backoff.
    Retry,
}

/// The queue. Evictions go through their own client, which must be built without kube-rs's
/// default retry of 429s (`kube::Config::default_retry = false`): a PodDisruptionBudget refusal
/// is a 429, and the queue — not the client — decides when to ask again.
#[derive(Default)]
pub struct EvictionQueue {
    items: Mutex<BTreeMap<PodKey, Item>>,
    notify: Notify,
    client: Option<kube::Client>,
}

impl std::fmt::Debug for EvictionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvictionQueue")
            .field("queued", &self.len())
            .finish_non_exhaustive()
    }
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(BACKOFF_MAX)
}

impl EvictionQueue {
    /// A queue evicting through `client` (see the type's docs on retries).
    pub fn new(client: kube::Client) -> EvictionQueue {
        EvictionQueue {
            client: Some(client),
            ..EvictionQueue::default()
        }
    }

    /// Adds `pod` (draining off `node`; `reason` labels `karpenter_pods_drained_total`) unless
    /// it is queued already.
    pub fn enqueue(&self, pod: PodKey, node: &str, reason: &str) {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        if items.contains_key(&pod) {
            return;
        }
        items.insert(
            pod,
            Item {
                node: node.to_string(),
                reason: reason.to_string(),
                failures: 0,
                due: Instant::now(),
            },
        );
        drop(items);
        self.notify.notify_one();
    }

    /// Whether `pod` is queued.
    pub fn contains(&self, pod: &PodKey) -> bool {
        self.items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(pod)
    }

    /// Number of queued pods.
    pub fn len(&self) -> usize {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take_due(&self, now: Instant) -> (Vec<(PodKey, Item)>, Option<Instant>) {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let due: Vec<(PodKey, Item)> = items
            .iter()
            .filter(|(_, i)| i.due <= now)
            .map(|(k, i)| (k.clone(), i.clone()))
            .collect();
        let next = items.values().filter(|i| i.due > now).map(|i| i.due).min();
        (due, next)
    }

    fn settle(&self, key: &PodKey, outcome: Outcome) {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Outcome::Done => {
                items.remove(key);
            }
            Outcome::Retry => {
                if let Some(i) = items.get_mut(key) {
                    i.due = Instant::now() + backoff(i.failures);
                    i.failures = i.failures.saturating_add(1);
                }
            }
        }
    }

    /// Processes the queue until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let (due, next) = self.take_due(Instant::now());
            if !due.is_empty() {
                futures::stream::iter(due)
                    .for_each_concurrent(PARALLELISM, |(key, item)| {
                        let ctx = ctx.clone();
                        let me = self.clone();
                        let span = tracing::info_span!(
                            "controller",
                            controller = CONTROLLER,
                            Pod = %format!("{}/{}", key.namespace, key.name)
                        );
                        async move {
                            let client = me.client.clone().unwrap_or_else(|| ctx.client.clone());
                            let outcome = evict(&ctx, client, &key, &item).await;
                            me.settle(&key, outcome);
                        }
                        .instrument(span)
                    })
                    .await;
                continue;
            }
            let sleep = next.map_or(Duration::from_secs(60), |n| {
                n.saturating_duration_since(Instant::now())
            });
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                r = shutdown.changed() => if r.is_err() { return },
            }
        }
    }
}

/// A Warning about a node, deduped by node and message (so a PDB refusal is not swallowed
/// by the drain's own "pods are waiting" event of the same reason).
fn node_event(node: &str, reason: &'static str, message: String) -> Event {
    let dedupe = message.clone();
    Event {
        involved: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
        type_: EventType::Warning,
        reason,
        message,
        dedupe_values: vec![node.to_string(), dedupe],
        dedupe_window: None,
    }
}

/// A Normal event about a pod (deduped by pod name, as upstream).
pub fn pod_event(pod: &PodKey, reason: &'static str, message: String) -> Event {
    Event {
        involved: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()),
            ..Default::default()
        },
        type_: EventType::Normal,
        reason,
        message,
        dedupe_values: vec![format!("{}/{}", pod.namespace, pod.name)],
        dedupe_window: None,
    }
}

async fn evict(ctx: &Context, client: kube::Client, key: &PodKey, item: &Item) -> Outcome {
    let api: Api<Pod> = Api::namespaced(client, &key.namespace);
    let body = json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": key.name, "namespace": key.namespace},
        "deleteOptions": {"preconditions": {"uid": key.uid}},
    });
    let result: Result<Status, kube::Error> = api
        .create_subresource("eviction", &key.name, &PostParams::default(), &body)
        .await;
    let requests = &ctx.metrics.pods.eviction_requests;
    match result {
        Ok(_) => {
            requests.with_label_values(&["200"]).inc();
            ctx.metrics
                .pods
                .drained
                .with_label_values(&[item.reason.as_str()])
                .inc();
            ctx.recorder
                .publish(pod_event(
                    key,
                    "Evicted",
                    format!("Evicted pod: {}", item.reason),
                ))
                .await;
            debug!(pod = %key.name, namespace = %key.namespace, "evicted");
            Outcome::Done
        }
        Err(kube::Error::Api(s)) => {
            requests.with_label_values(&[&s.code.to_string()]).inc();
            match s.code {
                404 | 409 => Outcome::Done,
                429 => {
                    ctx.recorder
                        .publish(node_event(
                            &item.node,
                            "FailedDraining",
                            format!(
                                "Failed to drain node, evicting pod {}/{} violates a PDB",
                                key.namespace, key.name
                            ),
                        ))
                        .await;
                    Outcome::Retry
                }
                500 if s.message.contains("more than one PodDisruptionBudget") => {
                    ctx.recorder
                        .publish(node_event(
                            &item.node,
                            "FailedDraining",
                            format!(
                                "Failed to drain node, eviction of pod {}/{} does not support multiple PDBs",
                                key.namespace, key.name
                            ),
                        ))
                        .await;
                    Outcome::Retry
                }
                _ => {
                    warn!(pod = %key.name, namespace = %key.namespace, code = s.code, message = %s.message, "eviction failed");
                    Outcome::Retry
                }
            }
        }
        Err(e) => {
            warn!(pod = %key.name, namespace = %key.namespace, error = %e, "eviction failed");
            Outcome::Retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100ms_to_10s() {
        let got: Vec<u128> = (0..9).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
    }

    #[test]
    fn enqueue_dedupes_per_pod() {
        let q = EvictionQueue::default();
        let k = PodKey {
            namespace: "default".into(),
            name: "a".into(),
            uid: "u".into(),
        };
        q.enqueue(k.clone(), "n", "r");
        q.enqueue(k.clone(), "n", "r");
        assert_eq!(q.len(), 1);
        q.settle(&k, Outcome::Retry);
        assert!(q.contains(&k));
        q.settle(&k, Outcome::Done);
        assert!(q.is_empty());
    }
}
