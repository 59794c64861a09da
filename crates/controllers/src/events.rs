//! Kubernetes Events with upstream's reasons and dedupe (reference core §9).
//!
//! Upstream dedupes by lower(reason) + dedupe values within a window (2 min unless the event
//! says otherwise); we do the same so a pending pod re-evaluated every batch does not flood the
//! API server. Events are `core/v1` (what `kubectl get events` and `describe` read), source
//! component `karpenter`.
//!
//! Publishing never waits on the API server: [`EventRecorder::publish`] decides (dedupe, rate
//! limit) at once and hands the write to a background task through a bounded queue, dropping
//! (and counting) events when the queue is full, as client-go's broadcaster does. An event is
//! advisory; a reconcile or a provisioning pass must not queue behind its POST.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use karpenter_cloudprovider::SharedClock;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Upstream's default dedupe window.
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(120);

/// Events waiting for the background writer before new ones are dropped (client-go's
/// broadcaster queue length).
pub const EVENT_QUEUE_CAPACITY: usize = 1000;

/// `Nominated` events per second across all pods (upstream's global token bucket).
pub const NOMINATED_PER_SECOND: f64 = 5.0;

/// `Nominated` events allowed in a burst.
pub const NOMINATED_BURST: f64 = 10.0;

/// Source component of every event, as upstream.
pub const COMPONENT: &str = "karpenter";

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

impl EventType {
    /// The API value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One event to publish.
#[derive(Debug, Clone)]
pub struct Event {
    /// The object the event is about.
    pub involved: ObjectReference,
    /// Normal or Warning.
    pub type_: EventType,
    /// Upstream reason (`Nominated`, `FailedScheduling`, …).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Values that identify "the same event" besides the reason (usually the object's UID).
    pub dedupe_values: Vec<String>,
    /// Dedupe window; `None` means [`DEFAULT_DEDUPE_WINDOW`].
    pub dedupe_window: Option<Duration>,
}

impl Event {
    /// An event about `object`, deduped by its UID.
    pub fn about<K: Resource<DynamicType = ()>>(
        object: &K,
        type_: EventType,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Event {
        let involved = object.object_ref(&());
        let uid = object.meta().uid.clone().unwrap_or_default();
        Event {
            involved,
            type_,
            reason,
            message: message.into(),
            dedupe_values: vec![uid],
            dedupe_window: None,
        }
    }

    /// Replaces the dedupe window.
    pub fn dedupe_for(mut self, window: Duration) -> Event {
        self.dedupe_window = Some(window);
        self
    }

    /// Adds a dedupe value (e.g. the message, when different messages must not collapse).
    pub fn dedupe_on(mut self, value: impl Into<String>) -> Event {
        self.dedupe_values.push(value.into());
        self
    }

    fn dedupe_key(&self) -> String {
        let mut key = self.reason.to_lowercase();
        for v in &self.dedupe_values {
            key.push('/');
            key.push_str(v);
        }
        key
    }
}

/// A token bucket on the injected clock: starts full with `burst` tokens, refills at `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Option<chrono::DateTime<chrono::Utc>>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_second: f64, burst: f64) -> TokenBucket {
        TokenBucket {
            tokens: burst,
            burst,
            per_second,
            last: None,
        }
    }

    /// Takes a token at `now` if one is left (never waits).
    pub fn try_accept(&mut self, now: chrono::DateTime<chrono::Utc>) -> bool {
        if let Some(last) = self.last {
            // A clock that steps back refills nothing rather than draining the bucket.
            let elapsed = now
                .signed_duration_since(last)
                .to_std()
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        }
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            true
        } else {
            false
        }
    }
}

/// The global rate limit an event reason carries, if any (upstream limits only `Nominated`).
fn rate_limit_for(reason: &str) -> Option<(f64, f64)> {
    (reason == "Nominated").then_some((NOMINATED_PER_SECOND, NOMINATED_BURST))
}

/// The write side of the background publisher, started on first use.
#[derive(Debug, Default)]
struct Writer {
    queue: OnceLock<mpsc::Sender<CoreEvent>>,
    dropped: AtomicU64,
}

/// Publishes events through the API server, deduping within each event's window.
#[derive(Clone)]
pub struct EventRecorder {
    client: Option<Client>,
    clock: SharedClock,
    seen: Arc<Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>>,
    limiters: Arc<Mutex<HashMap<&'static str, TokenBucket>>>,
    published: Arc<Mutex<Vec<Event>>>,
    writer: Arc<Writer>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("publishes", &self.client.is_some())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl EventRecorder {
    /// A recorder that writes `core/v1` Events with `client`.
    pub fn new(client: Client, clock: SharedClock) -> EventRecorder {
        EventRecorder {
            client: Some(client),
            ..EventRecorder::in_memory(clock)
        }
    }

    /// A recorder that only remembers what it would publish (for pure-logic tests).
    pub fn in_memory(clock: SharedClock) -> EventRecorder {
        EventRecorder {
            client: None,
            clock,
            seen: Arc::default(),
            limiters: Arc::default(),
            published: Arc::default(),
            writer: Arc::default(),
        }
    }

    /// Events that passed dedupe and rate limits, oldest first.
    pub fn published(&self) -> Vec<Event> {
        self.published.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Events dropped because the background writer's queue was full or gone.
    pub fn dropped(&self) -> u64 {
        self.writer.dropped.load(Ordering::Relaxed)
    }

    /// Whether the reason's global rate limit (if any) lets `event` through now.
    fn rate_allows(&self, event: &Event) -> bool {
        let Some((per_second, burst)) = rate_limit_for(event.reason) else {
            return true;
        };
        let Ok(mut limiters) = self.limiters.lock() else {
            return true;
        };
        limiters
            .entry(event.reason)
            .or_insert_with(|| TokenBucket::new(per_second, burst))
            .try_accept(self.clock.now())
    }

    /// Whether `event` is new within its window; records it if so.
    fn admit(&self, event: &Event) -> bool {
        let now = self.clock.now();
        let window = event.dedupe_window.unwrap_or(DEFAULT_DEDUPE_WINDOW);
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        // Bounded memory: forget entries older than the longest plausible window.
        if seen.len() > 50_000 {
            let horizon = now - chrono::Duration::minutes(30);
            seen.retain(|_, at| *at > horizon);
        }
        let key = event.dedupe_key();
        let fresh = seen.get(&key).is_none_or(|at| {
            now.signed_duration_since(*at)
                .to_std()
                .is_ok_and(|age| age >= window)
        });
        if fresh {
            seen.insert(key, now);
        }
        fresh
    }

    /// Publishes `event` unless an equal one was published within its window or its reason's
    /// rate limit is spent. Returns once the event is queued: the write happens in the
    /// background, and its failures are logged, never returned (an event must not fail a
    /// reconcile).
    pub async fn publish(&self, event: Event) {
        // Upstream order: dedupe first (so a rate-limited event still counts as seen), then
        // the reason's rate limit.
        if !self.admit(&event) || !self.rate_allows(&event) {
            return;
        }
        if let Ok(mut p) = self.published.lock() {
            if p.len() >= 10_000 {
                p.drain(..5_000);
            }
            p.push(event.clone());
        }
        let queue = match (self.writer.queue.get(), &self.client) {
            (Some(queue), _) => queue,
            (None, Some(client)) => self.writer.queue.get_or_init(|| {
                let (tx, rx) = mpsc::channel(EVENT_QUEUE_CAPACITY);
                tokio::spawn(write_events(client.clone(), rx));
                tx
            }),
            (None, None) => return,
        };
        if queue.try_send(self.body(&event)).is_err() {
            let dropped = self.writer.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // One line per hundred drops is enough to notice a flood without adding to it.
            if dropped % 100 == 1 {
                warn!(
                    reason = event.reason,
                    dropped, "event queue full; dropping events"
                );
            }
        }
    }

    /// The `core/v1` Event written for `event`.
    fn body(&self, event: &Event) -> CoreEvent {
        let namespace = event
            .involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let now = self.clock.now();
        let stamp =
            k8s_openapi::jiff::Timestamp::new(now.timestamp(), now.timestamp_subsec_nanos() as i32)
                .unwrap_or_default();
        let object_name = event.involved.name.clone().unwrap_or_default();
        CoreEvent {
            metadata: ObjectMeta {
                generate_name: Some(format!("{object_name}.")),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            involved_object: event.involved.clone(),
            reason: Some(event.reason.to_string()),
            message: Some(event.message.clone()),
            type_: Some(event.type_.as_str().to_string()),
            source: Some(EventSource {
                component: Some(COMPONENT.to_string()),
                host: None,
            }),
            reporting_component: Some(COMPONENT.to_string()),
            first_timestamp: Some(Time(stamp)),
            last_timestamp: Some(Time(stamp)),
            event_time: Some(MicroTime(stamp)),
            count: Some(1),
            action: Some(event.reason.to_string()),
            ..CoreEvent::default()
        }
    }
}

/// The background writer: POSTs queued events one at a time until every sender is gone.
async fn write_events(client: Client, mut queue: mpsc::Receiver<CoreEvent>) {
    while let Some(body) = queue.recv().await {
        let namespace = body
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let reason = body.reason.clone().unwrap_or_default();
        let object = body.involved_object.name.clone().unwrap_or_default();
        let api: Api<CoreEvent> = Api::namespaced(client.clone(), &namespace);
        match api.create(&PostParams::default(), &body).await {
            Ok(created) => {
                debug!(event = %created.name_any(), %reason, "published event")
            }
            Err(e) => {
                warn!(%reason, %object, error = %e, "failed to publish event")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use karpenter_cloudprovider::ManualClock;

    fn pod(uid: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some(uid.into());
        p
    }

    #[tokio::test]
    async fn dedupes_within_window_per_reason_and_values() {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let recorder = EventRecorder::in_memory(clock.clone());
        let ev = |uid: &str, reason: &'static str| {
            Event::about(&pod(uid), EventType::Warning, reason, "m")
        };
        recorder.publish(ev("a", "FailedScheduling")).await;
        recorder.publish(ev("a", "FailedScheduling")).await; // duplicate
        recorder.publish(ev("b", "FailedScheduling")).await; // other object
        recorder.publish(ev("a", "Nominated")).await; // other reason
        assert_eq!(recorder.published().len(), 3);
        clock.advance(Duration::from_secs(121));
        recorder.publish(ev("a", "FailedScheduling")).await; // window passed
        assert_eq!(recorder.published().len(), 4);
        recorder
            .publish(ev("a", "Nominated").dedupe_for(Duration::from_secs(1)))
            .await; // still within 1s of the first? no: 121s later
        assert_eq!(recorder.published().len(), 5);
    }

    fn nominated(uid: &str) -> Event {
        Event::about(&pod(uid), EventType::Normal, "Nominated", "m")
    }

    #[test]
    fn token_bucket_starts_full_and_refills_at_its_rate() {
        let t0 = chrono::Utc::now();
        let at = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
        let mut bucket = TokenBucket::new(5.0, 10.0);
        let burst = (0..12).filter(|_| bucket.try_accept(at(0))).count();
        assert_eq!(burst, 10, "the burst");
        assert!(!bucket.try_accept(at(100)), "half a token after 100 ms");
        assert!(bucket.try_accept(at(200)), "one token after 200 ms");
        assert!(!bucket.try_accept(at(200)));
        assert!(
            !bucket.try_accept(at(100)),
            "a clock stepping back adds nothing"
        );
        let later = (0..20).filter(|_| bucket.try_accept(at(60_000))).count();
        assert_eq!(later, 10, "refill is capped at the burst");
    }

    #[tokio::test]
    async fn nominated_is_rate_limited_globally_after_dedupe() {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let recorder = EventRecorder::in_memory(clock.clone());
        for i in 0..15 {
            recorder.publish(nominated(&format!("p{i}"))).await;
        }
        let count = |r: &EventRecorder, reason: &str| {
            r.published().iter().filter(|e| e.reason == reason).count()
        };
        assert_eq!(count(&recorder, "Nominated"), 10, "burst of 10");
        // Other reasons are not limited.
        for i in 0..15 {
            recorder
                .publish(Event::about(
                    &pod(&format!("p{i}")),
                    EventType::Warning,
                    "FailedScheduling",
                    "m",
                ))
                .await;
        }
        assert_eq!(count(&recorder, "FailedScheduling"), 15);
        clock.advance(Duration::from_secs(1));
        // A rate-limited pod was still recorded as seen: it stays deduped for the window.
        recorder.publish(nominated("p12")).await;
        assert_eq!(count(&recorder, "Nominated"), 10);
        for i in 15..30 {
            recorder.publish(nominated(&format!("p{i}"))).await;
        }
        assert_eq!(count(&recorder, "Nominated"), 15, "5 more after a second");
    }

    #[tokio::test]
    async fn publish_queues_without_waiting_and_drops_when_the_queue_is_full() {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let recorder = EventRecorder::in_memory(clock);
        // A writer that never drains: only the queue's capacity decides.
        let (tx, mut rx) = mpsc::channel(2);
        recorder.writer.queue.set(tx).unwrap();
        for uid in ["a", "b", "c", "a"] {
            recorder
                .publish(Event::about(
                    &pod(uid),
                    EventType::Warning,
                    "FailedScheduling",
                    "m",
                ))
                .await;
        }
        assert_eq!(
            recorder.dropped(),
            1,
            "c is dropped, the second a is deduped"
        );
        let queued = rx.recv().await.unwrap();
        assert_eq!(queued.reason.as_deref(), Some("FailedScheduling"));
        assert_eq!(queued.reporting_component.as_deref(), Some(COMPONENT));
        assert_eq!(queued.metadata.generate_name.as_deref(), Some("p."));
        assert_eq!(queued.involved_object.uid.as_deref(), Some("a"));
    }
}
