//! Fault injection for tests: scripted or random errors, latency, dropped watches, compaction.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::error::ApiError;
use super::object::Rng;
use super::store::Store;

/// An API verb as apiserver authorization names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// GET one object (also subresources).
    Get,
    /// LIST.
    List,
    /// WATCH.
    Watch,
    /// POST (also binding/eviction).
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE one object.
    Delete,
    /// DELETE a collection.
    DeleteCollection,
}

/// When a rule fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// The next `n` matching requests fail.
    Next(u32),
    /// Each matching request fails with this probability (seeded).
    Rate(f64),
    /// Every matching request fails until the rule is removed.
    Always,
}

/// One injected-error rule.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// Verb to match (`None` = any).
    pub verb: Option<Verb>,
    /// Resource plural to match, optionally `plural/subresource` (`None` = any).
    pub resource: Option<String>,
    /// HTTP code to answer (500, 409, 429, ...).
    pub code: u16,
    /// When to fire.
    pub trigger: Trigger,
}

impl FaultRule {
    /// A rule failing the next `n` matching requests with `code`.
    pub fn next(verb: Option<Verb>, resource: Option<&str>, code: u16, n: u32) -> Self {
        FaultRule {
            verb,
            resource: resource.map(str::to_string),
            code,
            trigger: Trigger::Next(n),
        }
    }

    /// A rule failing matching requests with probability `rate`.
    pub fn rate(verb: Option<Verb>, resource: Option<&str>, code: u16, rate: f64) -> Self {
        FaultRule {
            verb,
            resource: resource.map(str::to_string),
            code,
            trigger: Trigger::Rate(rate),
        }
    }
}

fn injected_error(code: u16, resource: &str) -> ApiError {
    let mut err = match code {
        409 => ApiError::custom(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {resource}: injected conflict"),
        ),
        429 => ApiError::custom(
            429,
            "TooManyRequests",
            "injected: too many requests, please try again later",
        ),
        404 => ApiError::custom(404, "NotFound", format!("injected: {resource} not found")),
        503 => ApiError::custom(503, "ServiceUnavailable", "injected: service unavailable"),
        504 => ApiError::custom(504, "Timeout", "injected: timeout"),
        code => ApiError::custom(
            code,
            "InternalError",
            "Internal error occurred: injected fault",
        ),
    };
    if code == 429 {
        err.details.retry_after_seconds = Some(1);
    }
    err
}

#[derive(Debug)]
struct FaultState {
    rng: Rng,
    rules: Vec<FaultRule>,
    latency: Duration,
    injected: u64,
}

/// The fault controls of a running server (see [`crate::apiserver::ApiServerHandle::faults`]).
#[derive(Debug)]
pub struct Faults {
    state: Mutex<FaultState>,
    drop_watches: watch::Sender<u64>,
    store: Arc<Store>,
}

impl Faults {
    pub(crate) fn new(seed: u64, store: Arc<Store>) -> Self {
        let (drop_watches, _) = watch::channel(0);
        Faults {
            state: Mutex::new(FaultState {
                rng: Rng::new(seed),
                rules: Vec::new(),
                latency: Duration::ZERO,
                injected: 0,
            }),
            drop_watches,
            store,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an error rule; rules are checked in insertion order, first match wins.
    pub fn add_rule(&self, rule: FaultRule) {
        self.lock().rules.push(rule);
    }

    /// Removes every error rule and the latency.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.rules.clear();
        s.latency = Duration::ZERO;
    }

    /// Adds this latency to every request.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Closes every open watch stream at once (clients see the connection end).
    pub fn drop_watches(&self) {
        self.drop_watches.send_modify(|n| *n += 1);
    }

    /// Forgets the watch history, so resuming any watch from an older revision gets 410 Gone.
    pub fn compact_history(&self) {
        self.store.compact();
    }

    /// How many errors were injected so far.
    pub fn injected_count(&self) -> u64 {
        self.lock().injected
    }

    pub(crate) fn latency(&self) -> Duration {
        self.lock().latency
    }

    pub(crate) fn drop_signal(&self) -> watch::Receiver<u64> {
        self.drop_watches.subscribe()
    }

    /// The error to answer with, if a rule fires for this request.
    pub(crate) fn check(
        &self,
        verb: Verb,
        resource: &str,
        subresource: Option<&str>,
    ) -> Option<ApiError> {
        let mut s = self.lock();
        let full = match subresource {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        };
        let mut fired: Option<(usize, u16)> = None;
        let FaultState { rng, rules, .. } = &mut *s;
        for (i, rule) in rules.iter_mut().enumerate() {
            if rule.verb.is_some_and(|v| v != verb) {
                continue;
            }
            if let Some(r) = &rule.resource
                && *r != full
                && *r != resource
            {
                continue;
            }
            let fire = match &mut rule.trigger {
                Trigger::Always => true,
                Trigger::Next(n) => {
                    if *n == 0 {
                        false
                    } else {
                        *n -= 1;
                        true
                    }
                }
                Trigger::Rate(p) => rng.next_f64() < *p,
            };
            if fire {
                fired = Some((i, rule.code));
                break;
            }
        }
        rules.retain(|r| r.trigger != Trigger::Next(0));
        let (_, code) = fired?;
        s.injected += 1;
        Some(injected_error(code, &full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::object::SystemClock;
    use crate::apiserver::store::StoreConfig;

    #[test]
    fn scripted_and_rate_rules() {
        let f = Faults::new(
            3,
            Arc::new(Store::new(StoreConfig::default(), Arc::new(SystemClock))),
        );
        f.add_rule(FaultRule::next(Some(Verb::Create), Some("pods"), 500, 2));
        assert_eq!(
            f.check(Verb::Create, "pods", None).map(|e| e.code),
            Some(500)
        );
        assert!(f.check(Verb::Get, "pods", None).is_none());
        assert!(f.check(Verb::Create, "pods", Some("eviction")).is_some());
        assert!(f.check(Verb::Create, "pods", None).is_none());
        f.add_rule(FaultRule::rate(None, Some("nodes"), 429, 0.5));
        let fired = (0..1000)
            .filter(|_| f.check(Verb::List, "nodes", None).is_some())
            .count();
        assert!((400..600).contains(&fired), "{fired}");
        assert_eq!(f.injected_count(), 2 + fired as u64);
    }
}
