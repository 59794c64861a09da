//! Pure drain decisions: which pods on a terminating node to evict now (one tier at a time),
//! which to force-delete because the NodeClaim's terminationGracePeriod is running out, and
//! which the drain still waits for.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use karpenter_apis::labels;

use crate::nodeclaim::from_time;

/// Kubernetes' default pod termination grace period.
pub const DEFAULT_POD_GRACE_SECONDS: i64 = 30;

/// A pod by namespace, name and UID (the UID guards evictions and deletes against a
/// same-named replacement).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

impl PodKey {
    /// The key of `pod`.
    pub fn of(pod: &Pod) -> PodKey {
        PodKey {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }
}

/// A delete that bypasses PDBs and do-not-disrupt because the node's deadline is near.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForceDelete {
    /// The pod.
    pub pod: PodKey,
    /// Grace granted: the time left until the deadline, at least 1 s.
    pub grace_seconds: i64,
}

/// One drain step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainPlan {
    /// Pods to delete now.
    pub force_delete: Vec<ForceDelete>,
    /// Pods to evict now (the lowest non-empty tier).
    pub evict: Vec<PodKey>,
    /// Pods the drain waits for (`namespace/name`), sorted; empty ⇒ drained.
    pub waiting: Vec<String>,
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
}

fn tolerates_disrupted(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .is_some_and(|ts| {
            ts.iter().any(|t| {
                let key_ok = match t.key.as_deref() {
                    None | Some("") => t.operator.as_deref() == Some("Exists"),
                    Some(k) => k == labels::TAINT_DISRUPTED,
                };
                let op_ok = match t.operator.as_deref() {
                    Some("Exists") => true,
                    _ => t.value.as_deref().unwrap_or_default().is_empty(),
                };
                let effect_ok = matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some(labels::TAINT_DISRUPTED_EFFECT)
                );
                key_ok && op_ok && effect_ok
            })
        })
}

fn do_not_disrupt(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::DO_NOT_DISRUPT))
        .is_some_and(|v| v == "true")
}

/// Drain tier: 0 non-critical non-DaemonSet, 1 non-critical DaemonSet, 2 critical
/// non-DaemonSet, 3 critical DaemonSet.
pub fn tier(pod: &Pod) -> u8 {
    let critical = pod
        .spec
        .as_ref()
        .and_then(|s| s.priority_class_name.as_deref())
        .is_some_and(|p| labels::CRITICAL_PRIORITY_CLASSES.contains(&p));
    let daemon = pod
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|os| os.iter().any(|o| o.kind == "DaemonSet"));
    u8::from(critical) * 2 + u8::from(daemon)
}

/// Whether the drain cares about the pod at all: not terminal, not a mirror pod, not
/// tolerating the disrupted taint, not stuck terminating for longer than `stuck_after`.
pub fn drainable(pod: &Pod, now: DateTime<Utc>, stuck_after: chrono::Duration) -> bool {
    let stuck = pod
        .metadata
        .deletion_timestamp
        .as_ref()
        .is_some_and(|d| from_time(d) + stuck_after < now);
    !is_terminal(pod) && !is_mirror(pod) && !tolerates_disrupted(pod) && !stuck
}

/// The drain step for `pods` (those bound to the node) at `now`, with the NodeClaim's
/// termination deadline if it has a terminationGracePeriod.
pub fn plan(
    pods: &[Pod],
    now: DateTime<Utc>,
    deadline: Option<DateTime<Utc>>,
    stuck_after: chrono::Duration,
) -> DrainPlan {
    let mut out = DrainPlan::default();
    let mut tiered: Vec<(u8, &Pod)> = Vec::new();
    for pod in pods.iter().filter(|p| drainable(p, now, stuck_after)) {
        let key = PodKey::of(pod);
        out.waiting.push(format!("{}/{}", key.namespace, key.name));
        let deleting_at = pod.metadata.deletion_timestamp.as_ref().map(from_time);
        if let Some(deadline) = deadline {
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(DEFAULT_POD_GRACE_SECONDS);
            let force_at = deadline - chrono::Duration::seconds(grace);
            if now >= force_at && deleting_at.is_none_or(|d| d > deadline) {
                let left = deadline.signed_duration_since(now).num_seconds();
                out.force_delete.push(ForceDelete {
                    pod: key,
                    grace_seconds: left.max(1),
                });
                continue;
            }
        }
        tiered.push((tier(pod), pod));
    }
    if let Some(lowest) = tiered.iter().map(|(t, _)| *t).min() {
        out.evict = tiered
            .iter()
            .filter(|(t, p)| {
                *t == lowest && p.metadata.deletion_timestamp.is_none() && !do_not_disrupt(p)
            })
            .map(|(_, p)| PodKey::of(p))
            .collect();
    }
    out.evict.sort();
    out.force_delete.sort_by(|a, b| a.pod.cmp(&b.pod));
    out.waiting.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus, Toleration};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    /// A pod builder.
    #[derive(Clone)]
    struct P(Pod);

    fn pod(name: &str) -> P {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some(format!("uid-{name}"));
        p.spec = Some(PodSpec::default());
        P(p)
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    impl P {
        fn daemon(mut self) -> P {
            self.0.metadata.owner_references = Some(vec![OwnerReference {
                kind: "DaemonSet".into(),
                name: "ds".into(),
                ..Default::default()
            }]);
            self
        }
        fn critical(mut self) -> P {
            self.0.spec.as_mut().unwrap().priority_class_name = Some("system-node-critical".into());
            self
        }
        fn phase(mut self, phase: &str) -> P {
            self.0.status = Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            });
            self
        }
        fn deleting(mut self, secs_ago: i64) -> P {
            self.0.metadata.deletion_timestamp = Some(crate::nodeclaim::to_time(
                t0() - chrono::Duration::seconds(secs_ago),
            ));
            self
        }
        fn annotate(mut self, k: &str, v: &str) -> P {
            self.0
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(k.into(), v.into());
            self
        }
        fn tolerate_disrupted(mut self) -> P {
            self.0.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
                key: Some(labels::TAINT_DISRUPTED.into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }]);
            self
        }
        fn grace(mut self, secs: i64) -> P {
            self.0
                .spec
                .as_mut()
                .unwrap()
                .termination_grace_period_seconds = Some(secs);
            self
        }
    }

    struct Expect {
        evict: Vec<&'static str>,
        force: Vec<(&'static str, i64)>,
        waiting: usize,
    }

    fn check(pods: Vec<P>, deadline_in: Option<i64>, expect: Expect) {
        let pods: Vec<Pod> = pods.into_iter().map(|p| p.0).collect();
        let deadline = deadline_in.map(|s| t0() + chrono::Duration::seconds(s));
        let got = plan(&pods, t0(), deadline, chrono::Duration::minutes(1));
        let evict: Vec<&str> = got.evict.iter().map(|k| k.name.as_str()).collect();
        let force: Vec<(&str, i64)> = got
            .force_delete
            .iter()
            .map(|f| (f.pod.name.as_str(), f.grace_seconds))
            .collect();
        assert_eq!(evict, expect.evict, "evict");
        assert_eq!(force, expect.force, "force");
        assert_eq!(
            got.waiting.len(),
            expect.waiting,
            "waiting {:?}",
            got.waiting
        );
    }

    #[test]
    fn tiers_go_one_at_a_time() {
        check(
            vec![
                pod("a"),
                pod("ds").daemon(),
                pod("c").critical(),
                pod("cds").critical().daemon(),
            ],
            None,
            Expect {
                evict: vec!["a"],
                force: vec![],
                waiting: 4,
            },
        );
        check(
            vec![pod("ds").daemon(), pod("c").critical()],
            None,
            Expect {
                evict: vec!["ds"],
                force: vec![],
                waiting: 2,
            },
        );
        check(
            vec![pod("c").critical(), pod("cds").critical().daemon()],
            None,
            Expect {
                evict: vec!["c"],
                force: vec![],
                waiting: 2,
            },
        );
    }

    #[test]
    fn skips_what_need_not_or_cannot_go() {
        check(
            vec![
                pod("done").phase("Succeeded"),
                pod("failed").phase("Failed"),
                pod("mirror").annotate("kubernetes.io/config.mirror", "x"),
                pod("tolerant").tolerate_disrupted(),
                pod("stuck").deleting(61),
            ],
            None,
            Expect {
                evict: vec![],
                force: vec![],
                waiting: 0,
            },
        );
        // Terminating pods are waited for, not evicted again; do-not-disrupt pods wait too
        // and hold the tier.
        check(
            vec![
                pod("going").deleting(10),
                pod("pinned").annotate(labels::DO_NOT_DISRUPT, "true"),
                pod("ds").daemon(),
            ],
            None,
            Expect {
                evict: vec![],
                force: vec![],
                waiting: 3,
            },
        );
    }

    #[test]
    fn deadline_forces_deletes_before_it_passes() {
        // Deadline in 20s: a 30s-grace pod is overdue (granted the 20s left); a 5s-grace pod
        // is not yet, and is evicted normally.
        check(
            vec![pod("slow"), pod("quick").grace(5)],
            Some(20),
            Expect {
                evict: vec!["quick"],
                force: vec![("slow", 20)],
                waiting: 2,
            },
        );
        // Past the deadline: everything goes with 1s, do-not-disrupt included.
        check(
            vec![
                pod("pinned").annotate(labels::DO_NOT_DISRUPT, "true"),
                pod("c").critical().daemon(),
            ],
            Some(-5),
            Expect {
                evict: vec![],
                force: vec![("c", 1), ("pinned", 1)],
                waiting: 2,
            },
        );
        // A pod already terminating is re-deleted only if its grace ends after the deadline.
        check(
            vec![pod("late").deleting(-10), pod("early").deleting(-3)],
            Some(5),
            Expect {
                evict: vec![],
                force: vec![("late", 5)],
                waiting: 2,
            },
        );
    }
}
