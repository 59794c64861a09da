//! Status-condition events and metrics for NodeClaims, NodePools and Nodes: what upstream's
//! generic operatorpkg status controllers (`operatorpkg.<kind>.status`) emit.
//!
//! For every object of the three kinds it remembers the conditions and finalizers it last saw
//! (keyed by UID, forgotten when the object goes) and, on each change it observes:
//! - a Normal event with reason = the condition type and message
//!   `Status condition transitioned, Type: T, Status: A -> B, Reason: R[, Message: M]`;
//! - a Normal `Finalized` event (`Finalized <finalizer>`) for each finalizer that disappeared,
//!   whether the object is still there or is gone;
//! - the `operator_<kind>_status_condition_*` / `operator_<kind>_termination_*` families (and
//!   the deprecated unprefixed duplicates for NodeClaim and NodePool).
//!
//! Startup: like upstream, the first sight of an object after this controller starts (the
//! watch's initial list, or a NodeClaim created while we run) only records it. No event is
//! published for a condition that was not observed before, so a restart or a leadership
//! handover does not replay every object's history as events. `transitions_total` does count
//! first sights of non-Unknown conditions, as upstream's does ("a condition transitions if it
//! didn't exist before"), so its rate jumps at a restart exactly as upstream's does.
//!
//! Conditions of the kind's declared set (NodeClaim: Ready, Launched, Registered, Initialized;
//! NodePool: Ready, ValidationSucceeded, NodeClassReady) that are absent count as Unknown —
//! operatorpkg initializes them in memory before comparing — so a NodeClaim created without
//! status reports `Launched: Unknown -> True` once launched. Other absent conditions
//! (Consolidatable, Drifted, every Node condition) are silent when they first appear.
//!
//! Observations are lossy by design, as upstream's: only the states the watch delivers are
//! compared, so a condition that flips and flips back between two watch events is not seen.
//!
//! Decisions are pure ([`transitions`], [`finalized`], [`with_declared`]); [`StatusTracker`]
//! applies them to the metric handles and returns the events; [`run`] feeds it from watches.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use k8s_openapi::serde::de::DeserializeOwned;
use karpenter_apis::common::Condition;
use karpenter_apis::conditions;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::NodePool;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::watch;
use tracing::{Instrument, debug, info_span, warn};

use crate::context::Context;
use crate::events::{Event, EventType};
use crate::metrics::{
    NODE_STATUS_LABELS, NODECLAIM_STATUS_LABELS, StatusConditionMetrics, StatusMetrics,
};
use crate::nodeclaim::from_time;

/// How often the "seconds so far" gauges are refreshed between changes (upstream requeues
/// every object every 10 s).
pub const REFRESH_PERIOD: Duration = Duration::from_secs(10);

/// Reason of the event published when a finalizer is removed.
pub const FINALIZED: &str = "Finalized";

/// Event reason used for condition types beyond [`MAX_INTERNED_REASONS`] unknown ones (event
/// reasons are `&'static str`; see [`StatusTracker`]).
pub const OTHER_CONDITION_REASON: &str = "StatusConditionTransitioned";

/// Most distinct condition types outside the well-known ones that get their own event reason.
pub const MAX_INTERNED_REASONS: usize = 64;

/// Condition types whose names are known at compile time (no interning needed).
const KNOWN_CONDITION_TYPES: &[&str] = &[
    conditions::READY,
    conditions::nodeclaim::LAUNCHED,
    conditions::nodeclaim::REGISTERED,
    conditions::nodeclaim::INITIALIZED,
    conditions::nodeclaim::CONSOLIDATABLE,
    conditions::nodeclaim::DRIFTED,
    conditions::nodeclaim::DISRUPTION_REASON,
    conditions::nodeclaim::DRAINED,
    conditions::nodeclaim::VOLUMES_DETACHED,
    conditions::nodeclaim::INSTANCE_TERMINATING,
    conditions::nodeclaim::CONSISTENT_STATE_FOUND,
    conditions::nodepool::VALIDATION_SUCCEEDED,
    conditions::nodepool::NODE_CLASS_READY,
    conditions::nodepool::NODE_REGISTRATION_HEALTHY,
    "MemoryPressure",
    "DiskPressure",
    "PIDPressure",
    "NetworkUnavailable",
];

const UNKNOWN: &str = "Unknown";

/// The kinds with a status controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `karpenter.sh/v1` NodeClaim.
    NodeClaim,
    /// `karpenter.sh/v1` NodePool.
    NodePool,
    /// `v1` Node.
    Node,
}

impl Kind {
    /// Upstream's controller name (logs and spans).
    pub fn controller(self) -> &'static str {
        match self {
            Kind::NodeClaim => "operatorpkg.nodeclaim.status",
            Kind::NodePool => "operatorpkg.nodepool.status",
            Kind::Node => "operatorpkg.node.status",
        }
    }

    /// Condition types that count as Unknown while absent (the root and its dependents).
    pub fn declared_conditions(self) -> Vec<&'static str> {
        let set = match self {
            Kind::NodeClaim => conditions::NODECLAIM,
            Kind::NodePool => conditions::NODEPOOL,
            Kind::Node => return Vec::new(),
        };
        std::iter::once(set.root)
            .chain(set.dependents.iter().copied())
            .collect()
    }

    /// Object labels copied onto this kind's metrics, in label order.
    pub fn label_keys(self) -> &'static [&'static str] {
        match self {
            Kind::NodeClaim => NODECLAIM_STATUS_LABELS,
            Kind::NodePool => &[],
            Kind::Node => NODE_STATUS_LABELS,
        }
    }

    /// `(group, kind)` of the deprecated unprefixed families, for the kinds that emit them.
    pub fn deprecated_group_kind(self) -> Option<(&'static str, &'static str)> {
        match self {
            Kind::NodeClaim => Some(("karpenter.sh", "NodeClaim")),
            Kind::NodePool => Some(("karpenter.sh", "NodePool")),
            Kind::Node => None,
        }
    }

    fn metrics(self, all: &StatusMetrics) -> StatusConditionMetrics {
        match self {
            Kind::NodeClaim => all.nodeclaim.clone(),
            Kind::NodePool => all.nodepool.clone(),
            Kind::Node => all.node.clone(),
        }
    }
}

/// One status condition, whatever type of object carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedCondition {
    /// Condition type.
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// When the status last changed, if recorded.
    pub last_transition: Option<DateTime<Utc>>,
}

impl ObservedCondition {
    fn of(c: &Condition) -> ObservedCondition {
        ObservedCondition {
            type_: c.type_.clone(),
            status: c.status.as_str().to_string(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition: Some(from_time(&c.last_transition_time)),
        }
    }
}

/// What the status controllers read from one object.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectStatus {
    /// `metadata.uid` (the name when absent).
    pub uid: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (empty for cluster-scoped kinds).
    pub namespace: String,
    /// Reference that events are published about.
    pub reference: ObjectReference,
    /// Status conditions as written on the object.
    pub conditions: Vec<ObservedCondition>,
    /// `metadata.finalizers`.
    pub finalizers: Vec<String>,
    /// `metadata.deletionTimestamp`.
    pub deletion: Option<DateTime<Utc>>,
    /// Values of the kind's [`Kind::label_keys`] on the object (empty when missing), in order.
    pub labels: Vec<String>,
}

impl ObjectStatus {
    fn from_meta<K: Resource<DynamicType = ()>>(
        object: &K,
        kind: Kind,
        conditions: Vec<ObservedCondition>,
    ) -> ObjectStatus {
        let meta = object.meta();
        let name = meta.name.clone().unwrap_or_default();
        let object_labels = meta.labels.as_ref();
        ObjectStatus {
            uid: meta.uid.clone().unwrap_or_else(|| name.clone()),
            namespace: meta.namespace.clone().unwrap_or_default(),
            reference: object.object_ref(&()),
            name,
            conditions,
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            deletion: meta.deletion_timestamp.as_ref().map(from_time),
            labels: kind
                .label_keys()
                .iter()
                .map(|k| {
                    object_labels
                        .and_then(|l| l.get(*k))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect(),
        }
    }

    /// The view of a NodeClaim.
    pub fn of_nodeclaim(nc: &NodeClaim) -> ObjectStatus {
        let conditions = nc
            .status
            .as_ref()
            .map(|s| s.conditions.iter().map(ObservedCondition::of).collect())
            .unwrap_or_default();
        ObjectStatus::from_meta(nc, Kind::NodeClaim, conditions)
    }

    /// The view of a NodePool.
    pub fn of_nodepool(np: &NodePool) -> ObjectStatus {
        let conditions = np
            .status
            .as_ref()
            .map(|s| s.conditions.iter().map(ObservedCondition::of).collect())
            .unwrap_or_default();
        ObjectStatus::from_meta(np, Kind::NodePool, conditions)
    }

    /// The view of a Node (its kubelet conditions).
    pub fn of_node(node: &Node) -> ObjectStatus {
        let conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| {
                cs.iter()
                    .map(|c| ObservedCondition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone().unwrap_or_default(),
                        message: c.message.clone().unwrap_or_default(),
                        last_transition: c.last_transition_time.as_ref().map(from_time),
                    })
                    .collect()
            })
            .unwrap_or_default();
        ObjectStatus::from_meta(node, Kind::Node, conditions)
    }
}

/// One observed change of a condition's status.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Condition type.
    pub type_: String,
    /// Status before; `None` when the condition had not been observed (no event then).
    pub from: Option<String>,
    /// Status now.
    pub to: String,
    /// Reason now.
    pub reason: String,
    /// Message now.
    pub message: String,
    /// Seconds spent in `from` (between the two last-transition times), when both are known.
    pub seconds_in_previous: Option<f64>,
    /// When the condition reached `to`, if recorded.
    pub at: Option<DateTime<Utc>>,
}

impl Transition {
    /// The event message upstream publishes, or `None` for a first sighting (no event).
    pub fn event_message(&self) -> Option<String> {
        let from = self.from.as_deref()?;
        let mut message = format!(
            "Status condition transitioned, Type: {}, Status: {} -> {}, Reason: {}",
            self.type_, from, self.to, self.reason
        );
        if !self.message.is_empty() {
            message.push_str(", Message: ");
            message.push_str(&self.message);
        }
        Some(message)
    }
}

/// `conditions` with each declared type that is missing added as Unknown. The added
/// condition keeps the last-transition time it had in `previous` (when it was also missing
/// there) so "seconds in Unknown" runs from when it was first seen missing, else `now`.
pub fn with_declared(
    mut conditions: Vec<ObservedCondition>,
    declared: &[&str],
    previous: &[ObservedCondition],
    now: DateTime<Utc>,
) -> Vec<ObservedCondition> {
    for type_ in declared {
        if conditions.iter().any(|c| c.type_ == *type_) {
            continue;
        }
        let since = previous
            .iter()
            .find(|c| c.type_ == *type_ && c.status == UNKNOWN)
            .and_then(|c| c.last_transition)
            .unwrap_or(now);
        conditions.push(ObservedCondition {
            type_: (*type_).to_string(),
            status: UNKNOWN.to_string(),
            reason: conditions::REASON_AWAITING_RECONCILIATION.to_string(),
            message: conditions::MESSAGE_AWAITING_RECONCILIATION.to_string(),
            last_transition: Some(since),
        });
    }
    conditions
}

/// The transitions between two observations of an object's conditions, in the order of `new`.
/// A condition transitions when its status differs from the one observed before, where a
/// condition not observed before counts as Unknown (so a new Unknown condition is no change).
pub fn transitions(old: &[ObservedCondition], new: &[ObservedCondition]) -> Vec<Transition> {
    new.iter()
        .filter_map(|c| {
            let before = old.iter().find(|o| o.type_ == c.type_);
            let before_status = before.map_or(UNKNOWN, |o| o.status.as_str());
            if before_status == c.status {
                return None;
            }
            let seconds_in_previous = before
                .and_then(|o| o.last_transition)
                .zip(c.last_transition)
                .map(|(from, to)| ((to - from).num_milliseconds() as f64 / 1000.0).max(0.0));
            Some(Transition {
                type_: c.type_.clone(),
                from: before.map(|o| o.status.clone()),
                to: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                seconds_in_previous,
                at: c.last_transition,
            })
        })
        .collect()
}

/// Finalizers present in `old` and gone from `new`, in `old`'s order.
pub fn finalized(old: &[String], new: &[String]) -> Vec<String> {
    old.iter().filter(|f| !new.contains(f)).cloned().collect()
}

/// The message of the `Finalized` event.
pub fn finalized_message(finalizer: &str) -> String {
    format!("Finalized {finalizer}")
}

/// What is remembered of one object.
#[derive(Debug, Clone)]
struct Record {
    /// The last observation, its conditions completed by [`with_declared`].
    status: ObjectStatus,
}

/// Remembers the last observation of every object of one kind and turns each new observation
/// into metric updates and events. Memory is bounded by the live objects: [`forget`] drops an
/// object and every series it had.
///
/// Event reasons are condition types but [`Event::reason`] is `&'static str`: types outside
/// the well-known ones are leaked once each, up to [`MAX_INTERNED_REASONS`]; beyond that they
/// share [`OTHER_CONDITION_REASON`] (the message still names the type).
///
/// [`forget`]: StatusTracker::forget
#[derive(Debug)]
pub struct StatusTracker {
    kind: Kind,
    metrics: StatusConditionMetrics,
    deprecated: Option<(StatusConditionMetrics, &'static str, &'static str)>,
    records: HashMap<String, Record>,
    interned: BTreeSet<&'static str>,
}

impl StatusTracker {
    /// A tracker of `kind` writing to `metrics`.
    pub fn new(kind: Kind, metrics: &StatusMetrics) -> StatusTracker {
        StatusTracker {
            kind,
            metrics: kind.metrics(metrics),
            deprecated: kind
                .deprecated_group_kind()
                .map(|(group, k)| (metrics.deprecated.clone(), group, k)),
            records: HashMap::new(),
            interned: BTreeSet::new(),
        }
    }

    /// How many objects are remembered.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no object is remembered.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records `object` as seen at `now`; returns the events to publish.
    pub fn observe(&mut self, mut object: ObjectStatus, now: DateTime<Utc>) -> Vec<Event> {
        let previous = self.records.remove(&object.uid);
        let old_conditions = previous
            .as_ref()
            .map(|r| r.status.conditions.as_slice())
            .unwrap_or_default();
        object.conditions = with_declared(
            std::mem::take(&mut object.conditions),
            &self.kind.declared_conditions(),
            old_conditions,
            now,
        );
        let mut events = Vec::new();

        if let Some(previous) = &previous {
            for finalizer in finalized(&previous.status.finalizers, &object.finalizers) {
                events.push(self.finalized_event(&object, &finalizer));
            }
        }
        for t in transitions(old_conditions, &object.conditions) {
            self.count_transition(&object, &t);
            if let Some(message) = t.event_message() {
                let reason = self.reason(&t.type_);
                events.push(Event {
                    involved: object.reference.clone(),
                    type_: EventType::Normal,
                    reason,
                    dedupe_values: vec![
                        object.uid.clone(),
                        t.at.map(|at| at.to_rfc3339()).unwrap_or_default(),
                        message.clone(),
                    ],
                    message,
                    dedupe_window: None,
                });
            }
        }

        // Gauges: write the current series, then delete the ones that no longer exist (a
        // changed status, reason or copied label makes a new series).
        let keep = self.gauge_series(&object);
        if let Some(previous) = &previous {
            for stale in self.gauge_series(&previous.status).difference(&keep) {
                self.remove_gauge(stale);
            }
        }
        self.write_gauges(&object, now);
        self.records
            .insert(object.uid.clone(), Record { status: object });
        events
    }

    /// Drops the object with `uid` (it is gone): deletes its series, observes its termination
    /// duration and returns `Finalized` events for the finalizers it still had.
    pub fn forget(&mut self, uid: &str, now: DateTime<Utc>) -> Vec<Event> {
        let Some(record) = self.records.remove(uid) else {
            return Vec::new();
        };
        let object = record.status;
        for series in self.gauge_series(&object) {
            self.remove_gauge(&series);
        }
        if let Some(deleted_at) = object.deletion {
            let seconds = seconds_between(deleted_at, now);
            let extra: Vec<&str> = object.labels.iter().map(String::as_str).collect();
            self.metrics
                .termination_duration
                .with_label_values(&extra)
                .observe(seconds);
            if let Some((deprecated, group, kind)) = &self.deprecated {
                deprecated
                    .termination_duration
                    .with_label_values(&[*group, *kind])
                    .observe(seconds);
            }
        }
        object
            .finalizers
            .iter()
            .map(|f| self.finalized_event(&object, f))
            .collect()
    }

    /// Forgets every object whose UID is not in `present` (after a re-list); returns the
    /// events [`StatusTracker::forget`] produced.
    pub fn retain(&mut self, present: &HashSet<String>, now: DateTime<Utc>) -> Vec<Event> {
        let mut gone: Vec<String> = self
            .records
            .keys()
            .filter(|uid| !present.contains(*uid))
            .cloned()
            .collect();
        gone.sort();
        gone.iter().flat_map(|uid| self.forget(uid, now)).collect()
    }

    /// Re-writes the "seconds so far" gauges of every object at `now`.
    pub fn refresh(&self, now: DateTime<Utc>) {
        for record in self.records.values() {
            self.write_gauges(&record.status, now);
        }
    }

    /// Deletes every per-object series and forgets every object (this replica stops
    /// reporting; counters and histograms keep their totals).
    pub fn clear(&mut self) {
        let records = std::mem::take(&mut self.records);
        for record in records.values() {
            for series in self.gauge_series(&record.status) {
                self.remove_gauge(&series);
            }
        }
    }

    fn finalized_event(&self, object: &ObjectStatus, finalizer: &str) -> Event {
        let message = finalized_message(finalizer);
        Event {
            involved: object.reference.clone(),
            type_: EventType::Normal,
            reason: FINALIZED,
            dedupe_values: vec![object.uid.clone(), message.clone()],
            message,
            dedupe_window: None,
        }
    }

    fn reason(&mut self, type_: &str) -> &'static str {
        if let Some(known) = KNOWN_CONDITION_TYPES.iter().find(|k| **k == type_) {
            return known;
        }
        if let Some(interned) = self.interned.get(type_) {
            return interned;
        }
        if self.interned.len() >= MAX_INTERNED_REASONS {
            return OTHER_CONDITION_REASON;
        }
        let leaked: &'static str = Box::leak(type_.to_string().into_boxed_str());
        self.interned.insert(leaked);
        leaked
    }

    fn count_transition(&self, object: &ObjectStatus, t: &Transition) {
        let mut labels: Vec<&str> = vec![&t.type_, &t.to, &t.reason];
        labels.extend(object.labels.iter().map(String::as_str));
        self.metrics.transitions.with_label_values(&labels).inc();
        if let Some((deprecated, group, kind)) = &self.deprecated {
            deprecated
                .transitions
                .with_label_values(&[&t.type_, &t.to, &t.reason, *group, *kind])
                .inc();
        }
        let (Some(from), Some(seconds)) = (&t.from, t.seconds_in_previous) else {
            return;
        };
        let mut labels: Vec<&str> = vec![&t.type_, from];
        labels.extend(object.labels.iter().map(String::as_str));
        self.metrics
            .transition_seconds
            .with_label_values(&labels)
            .observe(seconds);
        if let Some((deprecated, group, kind)) = &self.deprecated {
            deprecated
                .transition_seconds
                .with_label_values(&[&t.type_, from, *group, *kind])
                .observe(seconds);
        }
    }

    /// Every per-object gauge series of `object`.
    fn gauge_series(&self, object: &ObjectStatus) -> BTreeSet<GaugeSeries> {
        let mut series: BTreeSet<GaugeSeries> = object
            .conditions
            .iter()
            .map(|c| GaugeSeries::Condition {
                namespace: object.namespace.clone(),
                name: object.name.clone(),
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                labels: object.labels.clone(),
            })
            .collect();
        if object.deletion.is_some() {
            series.insert(GaugeSeries::Terminating {
                namespace: object.namespace.clone(),
                name: object.name.clone(),
                labels: object.labels.clone(),
            });
        }
        series
    }

    fn write_gauges(&self, object: &ObjectStatus, now: DateTime<Utc>) {
        for c in &object.conditions {
            let since = c.last_transition.map_or(0.0, |at| seconds_between(at, now));
            let base = [
                object.namespace.as_str(),
                object.name.as_str(),
                c.type_.as_str(),
                c.status.as_str(),
                c.reason.as_str(),
            ];
            let labels = with_extra(&base, &object.labels);
            self.metrics.count.with_label_values(&labels).set(1.0);
            self.metrics
                .current_status_seconds
                .with_label_values(&labels)
                .set(since);
            if let Some((deprecated, group, kind)) = &self.deprecated {
                let labels = [&base[..], &[*group, *kind]].concat();
                deprecated.count.with_label_values(&labels).set(1.0);
                deprecated
                    .current_status_seconds
                    .with_label_values(&labels)
                    .set(since);
            }
        }
        if let Some(deleted_at) = object.deletion {
            let seconds = seconds_between(deleted_at, now);
            let base = [object.namespace.as_str(), object.name.as_str()];
            self.metrics
                .termination_current_time
                .with_label_values(&with_extra(&base, &object.labels))
                .set(seconds);
            if let Some((deprecated, group, kind)) = &self.deprecated {
                deprecated
                    .termination_current_time
                    .with_label_values(&[base[0], base[1], *group, *kind])
                    .set(seconds);
            }
        }
    }

    fn remove_gauge(&self, series: &GaugeSeries) {
        // A series that was never written cannot be removed; that is not an error here.
        match series {
            GaugeSeries::Condition {
                namespace,
                name,
                type_,
                status,
                reason,
                labels,
            } => {
                let base = [
                    namespace.as_str(),
                    name.as_str(),
                    type_.as_str(),
                    status.as_str(),
                    reason.as_str(),
                ];
                let full = with_extra(&base, labels);
                let _ = self.metrics.count.remove_label_values(&full);
                let _ = self
                    .metrics
                    .current_status_seconds
                    .remove_label_values(&full);
                if let Some((deprecated, group, kind)) = &self.deprecated {
                    let labels = [&base[..], &[*group, *kind]].concat();
                    let _ = deprecated.count.remove_label_values(&labels);
                    let _ = deprecated
                        .current_status_seconds
                        .remove_label_values(&labels);
                }
            }
            GaugeSeries::Terminating {
                namespace,
                name,
                labels,
            } => {
                let base = [namespace.as_str(), name.as_str()];
                let _ = self
                    .metrics
                    .termination_current_time
                    .remove_label_values(&with_extra(&base, labels));
                if let Some((deprecated, group, kind)) = &self.deprecated {
                    let _ = deprecated
                        .termination_current_time
                        .remove_label_values(&[base[0], base[1], *group, *kind]);
                }
            }
        }
    }
}

/// One per-object gauge series, by its label values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum GaugeSeries {
    /// `status_condition_count` / `current_status_seconds`.
    Condition {
        namespace: String,
        name: String,
        type_: String,
        status: String,
        reason: String,
        labels: Vec<String>,
    },
    /// `termination_current_time_seconds`.
    Terminating {
        namespace: String,
        name: String,
        labels: Vec<String>,
    },
}

fn with_extra<'a>(base: &[&'a str], extra: &'a [String]) -> Vec<&'a str> {
    base.iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .collect()
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_milliseconds() as f64 / 1000.0).max(0.0)
}

/// Runs the NodeClaim, NodePool and Node status controllers until `shutdown` turns true.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    tokio::join!(
        watch_kind(
            ctx.clone(),
            Kind::NodeClaim,
            ObjectStatus::of_nodeclaim,
            shutdown.clone()
        ),
        watch_kind(
            ctx.clone(),
            Kind::NodePool,
            ObjectStatus::of_nodepool,
            shutdown.clone()
        ),
        watch_kind(ctx, Kind::Node, ObjectStatus::of_node, shutdown),
    );
}

/// One kind's loop: a watch feeding a [`StatusTracker`], a refresh tick, and shutdown.
async fn watch_kind<K>(
    ctx: Arc<Context>,
    kind: Kind,
    view: fn(&K) -> ObjectStatus,
    mut shutdown: watch::Receiver<bool>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let span = info_span!("status", controller = kind.controller());
    async move {
        let mut tracker = StatusTracker::new(kind, &ctx.metrics.status);
        let api: Api<K> = Api::all(ctx.client.clone());
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut refresh = tokio::time::interval(REFRESH_PERIOD);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // UIDs seen by the re-list in progress, if one is.
        let mut listing: Option<HashSet<String>> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let events = tokio::select! {
                r = shutdown.changed() => {
                    if r.is_err() { break; }
                    continue;
                }
                _ = refresh.tick() => {
                    tracker.refresh(ctx.clock.now());
                    continue;
                }
                next = stream.next() => match next {
                    None => break,
                    Some(Err(error)) => {
                        warn!(%error, "status watch failed; retrying");
                        continue;
                    }
                    Some(Ok(watcher::Event::Init)) => {
                        listing = Some(HashSet::new());
                        continue;
                    }
                    Some(Ok(watcher::Event::InitApply(object))) => {
                        let status = view(&object);
                        if let Some(seen) = listing.as_mut() {
                            seen.insert(status.uid.clone());
                        }
                        tracker.observe(status, ctx.clock.now())
                    }
                    Some(Ok(watcher::Event::InitDone)) => match listing.take() {
                        Some(seen) => tracker.retain(&seen, ctx.clock.now()),
                        None => continue,
                    },
                    Some(Ok(watcher::Event::Apply(object))) => {
                        tracker.observe(view(&object), ctx.clock.now())
                    }
                    Some(Ok(watcher::Event::Delete(object))) => {
                        let status = view(&object);
                        tracker.forget(&status.uid, ctx.clock.now())
                    }
                },
            };
            for event in events {
                debug!(reason = event.reason, message = %event.message, "status event");
                ctx.recorder.publish(event).await;
            }
        }
        tracker.clear();
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests;
