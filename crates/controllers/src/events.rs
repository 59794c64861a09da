//! Kubernetes Events with upstream's reasons and dedupe (reference core §9).
//!
//! Upstream dedupes by lower(reason) + dedupe values within a window (2 min unless the event
//! says otherwise); we do the same so a pending pod re-evaluated every batch does not flood the
//! API server. Events are `core/v1` (what `kubectl get events` and `describe` read), source
//! component `karpenter`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use karpenter_cloudprovider::SharedClock;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, warn};

/// Upstream's default dedupe window.
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(120);

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

/// Publishes events through the API server, deduping within each event's window.
#[derive(Clone)]
pub struct EventRecorder {
    client: Option<Client>,
    clock: SharedClock,
    seen: Arc<Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>>,
    published: Arc<Mutex<Vec<Event>>>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("publishes", &self.client.is_some())
            .finish()
    }
}

impl EventRecorder {
    /// A recorder that writes `core/v1` Events with `client`.
    pub fn new(client: Client, clock: SharedClock) -> EventRecorder {
        EventRecorder {
            client: Some(client),
            clock,
            seen: Arc::default(),
            published: Arc::default(),
        }
    }

    /// A recorder that only remembers what it would publish (for pure-logic tests).
    pub fn in_memory(clock: SharedClock) -> EventRecorder {
        EventRecorder {
            client: None,
            clock,
            seen: Arc::default(),
            published: Arc::default(),
        }
    }

    /// Events that passed dedupe, oldest first.
    pub fn published(&self) -> Vec<Event> {
        self.published.lock().map(|p| p.clone()).unwrap_or_default()
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

    /// Publishes `event` unless an equal one was published within its window. Failures are
    /// logged, never returned: an event must not fail a reconcile.
    pub async fn publish(&self, event: Event) {
        if !self.admit(&event) {
            return;
        }
        if let Ok(mut p) = self.published.lock() {
            if p.len() >= 10_000 {
                p.drain(..5_000);
            }
            p.push(event.clone());
        }
        let Some(client) = &self.client else {
            return;
        };
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
        let body = CoreEvent {
            metadata: ObjectMeta {
                generate_name: Some(format!("{object_name}.")),
                namespace: Some(namespace.clone()),
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
        };
        let api: Api<CoreEvent> = Api::namespaced(client.clone(), &namespace);
        match api.create(&PostParams::default(), &body).await {
            Ok(created) => {
                debug!(event = %created.name_any(), reason = event.reason, "published event")
            }
            Err(e) => {
                warn!(reason = event.reason, object = %object_name, error = %e, "failed to publish event")
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
}
