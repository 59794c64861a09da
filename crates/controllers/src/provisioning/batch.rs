//! Triggers and the batching window (pure): what wakes the provisioner, and when a batch of
//! triggers is closed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use karpenter_apis::common::ConditionStatus;
use karpenter_apis::conditions;
use karpenter_apis::labels;
use karpenter_state::Snapshot;
use tokio::time::Instant;

/// Why the provisioner should look at the cluster again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trigger {
    /// A provisionable pending pod appeared.
    PendingPod,
    /// A node started deleting, was marked for deletion or got the disrupted taint: its pods
    /// need somewhere to go.
    NodeDeleting,
    /// A NodePool was added or its spec or readiness changed.
    NodePoolChanged,
    /// Time passed with work still pending (upstream's pod requeue), or leadership was gained.
    Periodic,
}

impl Trigger {
    /// A label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::PendingPod => "pending_pod",
            Trigger::NodeDeleting => "node_deleting",
            Trigger::NodePoolChanged => "nodepool_changed",
            Trigger::Periodic => "periodic",
        }
    }
}

/// An open batch: closes `idle` after the last trigger, and never later than `max` after the
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchWindow {
    started: Instant,
    last: Instant,
    idle: Duration,
    max: Duration,
}

impl BatchWindow {
    /// A window opened by a trigger at `now`.
    pub fn open(now: Instant, idle: Duration, max: Duration) -> BatchWindow {
        BatchWindow {
            started: now,
            last: now,
            idle,
            max,
        }
    }

    /// Another trigger arrived at `now`.
    pub fn extend(&mut self, now: Instant) {
        self.last = self.last.max(now);
    }

    /// When the batch closes.
    pub fn deadline(&self) -> Instant {
        (self.last + self.idle).min(self.started + self.max)
    }
}

/// Remembers what the last look at state saw, so only new things trigger a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TriggerDetector {
    /// Pending pods by UID, with their `PodScheduled` fingerprint.
    pending: BTreeMap<String, u64>,
    deleting: BTreeSet<String>,
    nodepools: BTreeMap<String, (i64, Option<ConditionStatus>)>,
}

/// What one look at state found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// New reasons to provision, deduplicated.
    pub triggers: BTreeSet<Trigger>,
    /// Whether there is work at all (pending pods or pods on deleting nodes), which keeps the
    /// periodic trigger going.
    pub has_work: bool,
}

impl TriggerDetector {
    /// Compares `snapshot` with the previous one.
    pub fn observe(&mut self, snapshot: &Snapshot) -> Observation {
        let mut out = Observation::default();
        let pending: BTreeMap<String, u64> = snapshot
            .pending_provisionable_pods()
            .iter()
            .map(|p| (p.view.uid.clone(), p.scheduling_fingerprint))
            .collect();
        // A new pending pod, or one kube-scheduler re-examined with a different outcome (as
        // upstream's pod trigger fires on pod updates): without the latter, pods the scheduler
        // could not fit next to what it bound on new nodes would wait for the periodic pass.
        if pending
            .iter()
            .any(|(uid, fingerprint)| self.pending.get(uid) != Some(fingerprint))
        {
            out.triggers.insert(Trigger::PendingPod);
        }
        let mut deleting = BTreeSet::new();
        let mut pods_to_move = false;
        for n in snapshot.nodes() {
            let disrupted = n
                .node
                .as_ref()
                .is_some_and(|node| node.taints.iter().any(|t| t.key == labels::TAINT_DISRUPTED));
            if !n.active() || disrupted {
                pods_to_move |= n.pod_keys().next().is_some();
                deleting.insert(n.key().to_string());
            }
        }
        if deleting.iter().any(|k| !self.deleting.contains(k)) {
            out.triggers.insert(Trigger::NodeDeleting);
        }
        let nodepools: BTreeMap<String, (i64, Option<ConditionStatus>)> = snapshot
            .nodepools()
            .iter()
            .map(|np| {
                let ready = np
                    .status
                    .as_ref()
                    .and_then(|s| conditions::get(&s.conditions, conditions::READY))
                    .map(|c| c.status);
                (
                    np.metadata.name.clone().unwrap_or_default(),
                    (np.metadata.generation.unwrap_or(0), ready),
                )
            })
            .collect();
        if nodepools
            .iter()
            .any(|(name, v)| self.nodepools.get(name) != Some(v))
        {
            out.triggers.insert(Trigger::NodePoolChanged);
        }
        out.has_work = !pending.is_empty() || pods_to_move;
        self.pending = pending;
        self.deleting = deleting;
        self.nodepools = nodepools;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Pod;
    use karpenter_apis::nodepool::NodePool;
    use karpenter_cloudprovider::ManualClock;
    use karpenter_state::{ClusterState, Kind, StateConfig};
    use serde_json::json;

    fn pending_pod(name: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
        }))
        .unwrap()
    }

    fn pending_pod_saying(name: &str, message: &str) -> Pod {
        let mut pod = pending_pod(name);
        if let Some(c) = pod
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .and_then(|cs| cs.first_mut())
        {
            c.message = Some(message.to_string());
        }
        pod
    }

    fn pool(generation: i64) -> NodePool {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": {"name": "general", "generation": generation},
            "spec": {"template": {"spec": {"requirements": [], "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}}}}
        }))
        .unwrap()
    }

    #[test]
    fn detector_fires_only_on_new_things() {
        let state = ClusterState::new(
            Arc::new(ManualClock::new(chrono::Utc::now())),
            StateConfig::default(),
        );
        let mut d = TriggerDetector::default();
        let mut step = |apply: &dyn Fn(&ClusterState), want: &[Trigger], work: bool| {
            apply(&state);
            let seen = d.observe(&state.snapshot());
            assert_eq!(seen.triggers, want.iter().copied().collect::<BTreeSet<_>>());
            assert_eq!(seen.has_work, work);
        };
        step(&|_| {}, &[], false);
        step(
            &|s| s.apply(&pending_pod("a")),
            &[Trigger::PendingPod],
            true,
        );
        step(&|_| {}, &[], true);
        // kube-scheduler re-examined it with another outcome: look again; the same outcome
        // written again is no news.
        step(
            &|s| s.apply(&pending_pod_saying("a", "0/3 nodes are available")),
            &[Trigger::PendingPod],
            true,
        );
        step(
            &|s| s.apply(&pending_pod_saying("a", "0/3 nodes are available")),
            &[],
            true,
        );
        step(
            &|s| s.apply(&pending_pod("b")),
            &[Trigger::PendingPod],
            true,
        );
        step(&|s| s.apply(&pool(1)), &[Trigger::NodePoolChanged], true);
        step(&|s| s.apply(&pool(1)), &[], true);
        step(&|s| s.apply(&pool(2)), &[Trigger::NodePoolChanged], true);
        step(
            &|s| {
                s.delete(Kind::Pod, "default/a");
                s.delete(Kind::Pod, "default/b");
            },
            &[],
            false,
        );
        // A pod that comes back is new again.
        step(
            &|s| s.apply(&pending_pod("a")),
            &[Trigger::PendingPod],
            true,
        );
    }

    #[test]
    fn window_closes_on_idle_or_max() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = BatchWindow::open(t0, ms(100), ms(1000));
        assert_eq!(w.deadline(), t0 + ms(100));
        w.extend(t0 + ms(50));
        assert_eq!(w.deadline(), t0 + ms(150));
        // A trigger stream that never pauses still closes at max.
        for i in 0..20 {
            w.extend(t0 + ms(60 * i));
        }
        assert_eq!(w.deadline(), t0 + ms(1000));
        // Late or out-of-order timestamps never move the window backwards.
        let mut w = BatchWindow::open(t0 + ms(10), ms(100), ms(1000));
        w.extend(t0);
        assert_eq!(w.deadline(), t0 + ms(110));
    }
}
