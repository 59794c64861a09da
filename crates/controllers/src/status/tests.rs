//! The pure decisions through one `check` per function, and the tracker against a real
//! registry (what a scrape sees).

use std::collections::HashSet;

use chrono::TimeZone;
use prometheus::Registry;

use super::*;
use crate::metrics::Metrics;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

/// Builder of one observed condition.
fn cond(type_: &str, status: &str) -> ObservedCondition {
    ObservedCondition {
        type_: type_.into(),
        status: status.into(),
        reason: type_.into(),
        message: String::new(),
        last_transition: Some(t0()),
    }
}

trait CondExt {
    fn reason(self, r: &str) -> Self;
    fn message(self, m: &str) -> Self;
    fn since(self, secs: i64) -> Self;
}

impl CondExt for ObservedCondition {
    fn reason(mut self, r: &str) -> Self {
        self.reason = r.into();
        self
    }
    fn message(mut self, m: &str) -> Self {
        self.message = m.into();
        self
    }
    fn since(mut self, secs: i64) -> Self {
        self.last_transition = Some(at(secs));
        self
    }
}

/// Expected transition: (type, from, to, event message, seconds in previous).
type Want = (
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<String>,
    Option<f64>,
);

fn check(old: &[ObservedCondition], new: &[ObservedCondition], want: &[Want]) {
    let got: Vec<Want> = transitions(old, new)
        .into_iter()
        .map(|t| {
            let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
            (
                leak(t.type_.clone()),
                t.from.clone().map(leak),
                leak(t.to.clone()),
                t.event_message(),
                t.seconds_in_previous,
            )
        })
        .collect();
    assert_eq!(got, want, "old {old:?}\nnew {new:?}");
}

#[test]
fn transitions_follow_operatorpkg() {
    // First sight of a True condition: a transition (counted) but no event.
    check(
        &[],
        &[cond("Launched", "True")],
        &[("Launched", None, "True", None, None)],
    );
    // A condition first seen Unknown is no transition at all.
    check(&[], &[cond("Registered", "Unknown")], &[]);
    // Unknown -> True, reason as written, no message suffix when the message is empty.
    check(
        &[cond("Launched", "Unknown").reason("AwaitingReconciliation")],
        &[cond("Launched", "True").since(7)],
        &[(
            "Launched",
            Some("Unknown"),
            "True",
            Some(
                "Status condition transitioned, Type: Launched, Status: Unknown -> True, Reason: Launched"
                    .into(),
            ),
            Some(7.0),
        )],
    );
    // A message is appended.
    check(
        &[cond("Ready", "True")],
        &[cond("Ready", "False")
            .reason("UnhealthyDependents")
            .message("Initialized=False")
            .since(3)],
        &[(
            "Ready",
            Some("True"),
            "False",
            Some(
                "Status condition transitioned, Type: Ready, Status: True -> False, Reason: UnhealthyDependents, Message: Initialized=False"
                    .into(),
            ),
            Some(3.0),
        )],
    );
    // Same status, new reason or message: no transition.
    check(
        &[cond("Initialized", "Unknown").reason("NodeNotFound")],
        &[cond("Initialized", "Unknown")
            .reason("NodeNotReady")
            .message("m")],
        &[],
    );
    // A condition that disappears is no transition (upstream reports only present ones).
    check(&[cond("Drifted", "True")], &[], &[]);
    // Several at once keep the order of the new conditions.
    check(
        &[cond("A", "False"), cond("B", "True")],
        &[cond("B", "False"), cond("A", "True")],
        &[
            (
                "B",
                Some("True"),
                "False",
                Some(
                    "Status condition transitioned, Type: B, Status: True -> False, Reason: B"
                        .into(),
                ),
                Some(0.0),
            ),
            (
                "A",
                Some("False"),
                "True",
                Some(
                    "Status condition transitioned, Type: A, Status: False -> True, Reason: A"
                        .into(),
                ),
                Some(0.0),
            ),
        ],
    );
    // A last-transition time going backwards observes zero, not a negative duration.
    check(
        &[cond("A", "False").since(10)],
        &[cond("A", "True").since(5)],
        &[(
            "A",
            Some("False"),
            "True",
            Some("Status condition transitioned, Type: A, Status: False -> True, Reason: A".into()),
            Some(0.0),
        )],
    );
}

#[test]
fn declared_conditions_count_as_unknown_while_absent() {
    let declared = Kind::NodeClaim.declared_conditions();
    assert_eq!(declared, ["Ready", "Launched", "Registered", "Initialized"]);
    let filled = with_declared(vec![cond("Launched", "True")], &declared, &[], at(5));
    let summary: Vec<(String, String, Option<DateTime<Utc>>)> = filled
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.last_transition))
        .collect();
    assert_eq!(
        summary,
        [
            ("Launched".into(), "True".into(), Some(t0())),
            ("Ready".into(), "Unknown".into(), Some(at(5))),
            ("Registered".into(), "Unknown".into(), Some(at(5))),
            ("Initialized".into(), "Unknown".into(), Some(at(5))),
        ]
    );
    assert!(
        filled[1..]
            .iter()
            .all(|c| c.reason == "AwaitingReconciliation")
    );
    // Still missing later: keeps when it was first seen missing.
    let again = with_declared(vec![], &declared, &filled, at(50));
    assert_eq!(
        again
            .iter()
            .find(|c| c.type_ == "Registered")
            .and_then(|c| c.last_transition),
        Some(at(5))
    );
    assert!(Kind::Node.declared_conditions().is_empty());
}

#[test]
fn finalized_lists_removed_finalizers_in_order() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    for (old, new, want) in [
        (s(&["a", "b", "c"]), s(&["b"]), s(&["a", "c"])),
        (s(&["a"]), s(&["a", "b"]), s(&[])),
        (s(&[]), s(&[]), s(&[])),
    ] {
        assert_eq!(finalized(&old, &new), want, "{old:?} -> {new:?}");
    }
    assert_eq!(
        finalized_message("karpenter.sh/termination"),
        "Finalized karpenter.sh/termination"
    );
}

// ----- the tracker against a registry ---------------------------------------------------------

struct Fixture {
    registry: Registry,
    tracker: StatusTracker,
}

fn fixture(kind: Kind) -> Fixture {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry).unwrap();
    Fixture {
        tracker: StatusTracker::new(kind, &metrics.status),
        registry,
    }
}

impl Fixture {
    /// Samples of `family` as sorted `label=value,…` strings with their values.
    fn samples(&self, family: &str) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        for family in self.registry.gather().iter().filter(|f| f.name() == family) {
            for m in family.get_metric() {
                let mut labels: Vec<String> = m
                    .get_label()
                    .iter()
                    .map(|l| format!("{}={}", l.name(), l.value()))
                    .collect();
                labels.sort();
                let value = match family.get_field_type() {
                    prometheus::proto::MetricType::GAUGE => m.get_gauge().get_value(),
                    prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
                    _ => m.get_histogram().get_sample_count() as f64,
                };
                out.push((labels.join(","), value));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn series_count(&self, family: &str) -> usize {
        self.samples(family).len()
    }
}

/// Builder of an observed NodeClaim.
fn nodeclaim(name: &str) -> ObjectStatus {
    ObjectStatus {
        uid: format!("uid-{name}"),
        name: name.into(),
        namespace: String::new(),
        reference: ObjectReference {
            kind: Some("NodeClaim".into()),
            name: Some(name.into()),
            ..ObjectReference::default()
        },
        conditions: vec![],
        finalizers: vec!["karpenter.sh/termination".into()],
        deletion: None,
        labels: vec!["default".into(), "general".into()],
    }
}

trait ObjExt {
    fn with(self, c: ObservedCondition) -> Self;
    fn deleting(self, secs: i64) -> Self;
    fn finalizers(self, f: &[&str]) -> Self;
}

impl ObjExt for ObjectStatus {
    fn with(mut self, c: ObservedCondition) -> Self {
        self.conditions.retain(|o| o.type_ != c.type_);
        self.conditions.push(c);
        self
    }
    fn deleting(mut self, secs: i64) -> Self {
        self.deletion = Some(at(secs));
        self
    }
    fn finalizers(mut self, f: &[&str]) -> Self {
        self.finalizers = f.iter().map(|s| s.to_string()).collect();
        self
    }
}

fn messages(events: &[Event]) -> Vec<(&'static str, String)> {
    events
        .iter()
        .map(|e| (e.reason, e.message.clone()))
        .collect()
}

#[test]
fn a_nodeclaim_lifecycle_publishes_transitions_and_keeps_only_live_series() {
    let mut f = fixture(Kind::NodeClaim);
    // Created without status: recorded, nothing published; declared conditions are Unknown.
    let events = f.tracker.observe(nodeclaim("a"), at(0));
    assert!(events.is_empty());
    assert_eq!(
        f.series_count("operator_nodeclaim_status_condition_count"),
        4
    );
    assert_eq!(
        f.samples("operator_nodeclaim_status_condition_count")
            .first()
            .map(|s| s.0.clone()),
        Some(
            "karpenter_k8s_aws_ec2nodeclass=default,karpenter_sh_nodepool=general,name=a,namespace=,reason=AwaitingReconciliation,status=Unknown,type=Initialized"
                .into()
        )
    );

    // Launched.
    let launched = nodeclaim("a").with(cond("Launched", "True").since(2)).with(
        cond("Ready", "Unknown")
            .reason("ReconcilingDependents")
            .message("Registered=Unknown, Initialized=Unknown")
            .since(2),
    );
    let events = f.tracker.observe(launched.clone(), at(2));
    assert_eq!(
        messages(&events),
        [(
            "Launched",
            "Status condition transitioned, Type: Launched, Status: Unknown -> True, Reason: Launched"
                .to_string()
        )]
    );
    assert_eq!(events[0].type_, EventType::Normal);
    assert_eq!(events[0].involved.name.as_deref(), Some("a"));
    // The Unknown/AwaitingReconciliation series of Launched and Ready are gone.
    let counts = f.samples("operator_nodeclaim_status_condition_count");
    assert_eq!(counts.len(), 4);
    assert!(
        counts
            .iter()
            .any(|(l, _)| l.contains("reason=Launched,status=True,type=Launched"))
    );
    assert!(
        !counts
            .iter()
            .any(|(l, _)| l.contains("AwaitingReconciliation,status=Unknown,type=Launched"))
    );
    assert_eq!(
        f.samples("operator_nodeclaim_status_condition_transitions_total"),
        [(
            "karpenter_k8s_aws_ec2nodeclass=default,karpenter_sh_nodepool=general,reason=Launched,status=True,type=Launched"
                .into(),
            1.0
        )]
    );
    // Time in Unknown: from first sight (0) to the transition (2).
    assert_eq!(
        f.samples("operator_nodeclaim_status_condition_transition_seconds"),
        [(
            "karpenter_k8s_aws_ec2nodeclass=default,karpenter_sh_nodepool=general,status=Unknown,type=Launched"
                .into(),
            1.0
        )]
    );
    // The deprecated duplicates carry group and kind.
    assert_eq!(
        f.samples("operator_status_condition_transitions_total"),
        [(
            "group=karpenter.sh,kind=NodeClaim,reason=Launched,status=True,type=Launched".into(),
            1.0
        )]
    );
    assert_eq!(f.series_count("operator_status_condition_count"), 4);

    // The same observation again publishes nothing and counts nothing.
    assert!(f.tracker.observe(launched, at(3)).is_empty());
    assert_eq!(
        f.series_count("operator_nodeclaim_status_condition_transitions_total"),
        1
    );

    // Gauges refresh with the clock.
    f.tracker.refresh(at(12));
    let launched_seconds = f
        .samples("operator_nodeclaim_status_condition_current_status_seconds")
        .into_iter()
        .find(|(l, _)| l.contains("type=Launched"))
        .map(|(_, v)| v);
    assert_eq!(launched_seconds, Some(10.0));

    // Deleting: the termination gauge appears; the finalizer goes while the object stays.
    let deleting = nodeclaim("a")
        .with(cond("Launched", "True").since(2))
        .deleting(20);
    assert!(f.tracker.observe(deleting.clone(), at(21)).is_empty());
    assert_eq!(
        f.samples("operator_nodeclaim_termination_current_time_seconds"),
        [(
            "karpenter_k8s_aws_ec2nodeclass=default,karpenter_sh_nodepool=general,name=a,namespace="
                .into(),
            1.0
        )]
    );
    let events = f.tracker.observe(deleting.finalizers(&[]), at(25));
    assert_eq!(
        messages(&events),
        [(
            "Finalized",
            "Finalized karpenter.sh/termination".to_string()
        )]
    );

    // Gone: every per-object series goes, the termination duration is observed once, and no
    // second Finalized is published (the finalizer was already reported).
    let events = f.tracker.forget("uid-a", at(26));
    assert!(events.is_empty());
    assert!(f.tracker.is_empty());
    for family in [
        "operator_nodeclaim_status_condition_count",
        "operator_nodeclaim_status_condition_current_status_seconds",
        "operator_nodeclaim_termination_current_time_seconds",
        "operator_status_condition_count",
        "operator_status_condition_current_status_seconds",
        "operator_termination_current_time_seconds",
    ] {
        assert_eq!(f.series_count(family), 0, "{family}");
    }
    assert_eq!(
        f.samples("operator_nodeclaim_termination_duration_seconds"),
        [(
            "karpenter_k8s_aws_ec2nodeclass=default,karpenter_sh_nodepool=general".into(),
            1.0
        )]
    );
    assert_eq!(
        f.samples("operator_termination_duration_seconds"),
        [("group=karpenter.sh,kind=NodeClaim".into(), 1.0)]
    );
}

#[test]
fn an_object_gone_with_its_finalizers_is_reported_finalized() {
    let mut f = fixture(Kind::NodeClaim);
    f.tracker.observe(nodeclaim("a").deleting(1), at(1));
    let events = f.tracker.forget("uid-a", at(4));
    assert_eq!(
        messages(&events),
        [(
            "Finalized",
            "Finalized karpenter.sh/termination".to_string()
        )]
    );
    // Unknown UIDs are ignored.
    assert!(f.tracker.forget("uid-none", at(5)).is_empty());
}

#[test]
fn a_relist_forgets_objects_that_are_gone() {
    let mut f = fixture(Kind::NodeClaim);
    f.tracker.observe(nodeclaim("a"), at(0));
    f.tracker.observe(nodeclaim("b"), at(0));
    let present: HashSet<String> = ["uid-b".to_string()].into();
    let events = f.tracker.retain(&present, at(1));
    assert_eq!(
        messages(&events),
        [(
            "Finalized",
            "Finalized karpenter.sh/termination".to_string()
        )]
    );
    assert_eq!(f.tracker.len(), 1);
    assert_eq!(
        f.series_count("operator_nodeclaim_status_condition_count"),
        4
    );
    f.tracker.clear();
    assert!(f.tracker.is_empty());
    assert_eq!(
        f.series_count("operator_nodeclaim_status_condition_count"),
        0
    );
}

#[test]
fn a_changed_copied_label_moves_the_series() {
    let mut f = fixture(Kind::NodeClaim);
    f.tracker
        .observe(nodeclaim("a").with(cond("Launched", "True")), at(0));
    let mut moved = nodeclaim("a").with(cond("Launched", "True"));
    moved.labels = vec!["default".into(), "other".into()];
    f.tracker.observe(moved, at(1));
    let counts = f.samples("operator_nodeclaim_status_condition_count");
    assert_eq!(counts.len(), 4);
    assert!(
        counts
            .iter()
            .all(|(l, _)| l.contains("karpenter_sh_nodepool=other"))
    );
    // The deprecated series have no copied labels, so they stay as they were.
    assert_eq!(f.series_count("operator_status_condition_count"), 4);
}

#[test]
fn nodes_have_no_declared_conditions_nor_deprecated_series() {
    let mut f = fixture(Kind::Node);
    let node = ObjectStatus {
        labels: vec!["default".into(), "general".into(), "true".into()],
        ..nodeclaim("n")
    };
    assert!(f.tracker.observe(node.clone(), at(0)).is_empty());
    assert_eq!(f.series_count("operator_node_status_condition_count"), 0);
    let events = f.tracker.observe(
        node.clone()
            .with(cond("Ready", "False").reason("KubeletNotReady")),
        at(1),
    );
    // First sight of Ready: counted, not published.
    assert!(events.is_empty());
    let events = f.tracker.observe(
        node.with(
            cond("Ready", "True")
                .reason("KubeletReady")
                .message("kubelet is posting ready status")
                .since(3),
        ),
        at(3),
    );
    assert_eq!(
        messages(&events),
        [(
            "Ready",
            "Status condition transitioned, Type: Ready, Status: False -> True, Reason: KubeletReady, Message: kubelet is posting ready status"
                .to_string()
        )]
    );
    assert_eq!(
        f.samples("operator_node_status_condition_count"),
        [(
            "karpenter_k8s_aws_ec2nodeclass=default,karpenter_sh_initialized=true,karpenter_sh_nodepool=general,name=n,namespace=,reason=KubeletReady,status=True,type=Ready"
                .into(),
            1.0
        )]
    );
    assert_eq!(f.series_count("operator_status_condition_count"), 0);
    assert_eq!(
        f.series_count("operator_status_condition_transitions_total"),
        0
    );
}

#[test]
fn unknown_condition_types_get_a_bounded_set_of_reasons() {
    let mut f = fixture(Kind::NodePool);
    let mut reasons = Vec::new();
    for i in 0..(MAX_INTERNED_REASONS + 2) {
        let type_ = format!("Custom{i}");
        let np = ObjectStatus {
            labels: vec![],
            ..nodeclaim("p")
        };
        f.tracker
            .observe(np.clone().with(cond(&type_, "False")), at(0));
        let events = f.tracker.observe(np.with(cond(&type_, "True")), at(1));
        reasons.extend(events.iter().map(|e| e.reason));
    }
    assert_eq!(reasons.len(), MAX_INTERNED_REASONS + 2);
    assert_eq!(reasons[0], "Custom0");
    assert_eq!(
        reasons[MAX_INTERNED_REASONS - 1],
        format!("Custom{}", MAX_INTERNED_REASONS - 1)
    );
    assert_eq!(reasons[MAX_INTERNED_REASONS], OTHER_CONDITION_REASON);
    // Well-known types never use the interner.
    assert_eq!(f.tracker.reason("Ready"), "Ready");
}
