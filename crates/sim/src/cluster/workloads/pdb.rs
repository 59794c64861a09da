//! PodDisruptionBudget status controller (the disruption controller's status half): expected
//! pods, desired and current healthy, disruptions allowed, as upstream computes them.
//!
//! - `maxUnavailable` (int or percent) and percentage `minAvailable` count expected pods from the
//!   pods' controllers' replicas (ReplicaSet — or its Deployment —, StatefulSet); pods without a
//!   controller are left out of that count, as upstream does. Percentages round up.
//! - integer `minAvailable` expects as many pods as the selector matches.
//! - healthy = Ready, not being deleted, not in `disruptedPods` (entries the eviction path wrote,
//!   kept for two minutes while the pod is still there).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use karpenter_apimachinery::selector::LabelSelector;
use kube::Api;
use kube::api::PostParams;

use super::{Ctx, controller_of, key_of, note_error, pod_ready};
use crate::cluster::runtime::Outcome;

/// Syncs every PodDisruptionBudget's status.
#[derive(Debug, Default)]
pub(crate) struct PdbController;

/// `value` of `total`: an int as is, a percentage rounded up.
pub fn scaled_value(value: &IntOrString, total: i32) -> Option<i32> {
    match value {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            i32::try_from((pct * i64::from(total) + 99).div_euclid(100)).ok()
        }
    }
}

/// The numbers of a PDB status: (expected pods, desired healthy, current healthy, allowed).
pub fn pdb_numbers(
    pdb: &PodDisruptionBudget,
    selected: &[&Pod],
    controller_scale: impl Fn(&Pod) -> Option<(String, i32)>,
    disrupted: &BTreeSet<String>,
) -> (i32, i32, i32, i32) {
    let spec = pdb.spec.clone().unwrap_or_default();
    let expected_scale = || {
        let mut seen: BTreeMap<String, i32> = BTreeMap::new();
        for pod in selected {
            if let Some((owner, scale)) = controller_scale(pod) {
                seen.insert(owner, scale);
            }
        }
        seen.values().sum::<i32>()
    };
    let (expected, desired) = if let Some(mu) = spec.max_unavailable.as_ref() {
        let expected = expected_scale();
        let mu = scaled_value(mu, expected).unwrap_or(0);
        (expected, (expected - mu).max(0))
    } else if let Some(ma) = spec.min_available.as_ref() {
        match ma {
            IntOrString::Int(n) => (i32::try_from(selected.len()).unwrap_or(i32::MAX), *n),
            IntOrString::String(_) => {
                let expected = expected_scale();
                (expected, scaled_value(ma, expected).unwrap_or(0))
            }
        }
    } else {
        (0, 0)
    };
    let healthy = selected
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
        .filter(|p| !disrupted.contains(p.metadata.name.as_deref().unwrap_or("")))
        .count();
    let healthy = i32::try_from(healthy).unwrap_or(i32::MAX);
    let allowed = if expected <= 0 {
        0
    } else {
        (healthy - desired).max(0)
    };
    (expected, desired, healthy, allowed)
}

impl PdbController {
    pub(crate) async fn pass(&mut self, ctx: &Ctx, outcome: &mut Outcome) {
        let pods = ctx.pods.state();
        let replicasets = ctx.replicasets.state();
        let deployments = ctx.deployments.state();
        let statefulsets = ctx.statefulsets.state();
        let now = ctx.clock.now();
        let find_replicas = |kind: &str, ns: &str, uid: &str| -> Option<(String, i32)> {
            match kind {
                "ReplicaSet" => {
                    let rs = replicasets
                        .iter()
                        .find(|r| r.metadata.uid.as_deref() == Some(uid))?;
                    if let Some(owner) =
                        controller_of(&rs.metadata).filter(|o| o.kind == "Deployment")
                        && let Some(d) = deployments
                            .iter()
                            .find(|d| d.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                    {
                        return Some((
                            owner.uid.clone(),
                            d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        ));
                    }
                    Some((
                        uid.to_string(),
                        rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    ))
                }
                "StatefulSet" => statefulsets
                    .iter()
                    .find(|s| {
                        s.metadata.uid.as_deref() == Some(uid)
                            && s.metadata.namespace.as_deref() == Some(ns)
                    })
                    .map(|s| {
                        (
                            uid.to_string(),
                            s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        )
                    }),
                _ => None,
            }
        };
        let controller_scale = |pod: &Pod| {
            let owner = controller_of(&pod.metadata)?;
            find_replicas(
                &owner.kind,
                pod.metadata.namespace.as_deref().unwrap_or(""),
                &owner.uid,
            )
        };
        let mut pdbs = ctx.pdbs.state();
        pdbs.sort_by_key(|p| key_of(&p.metadata));
        for pdb in pdbs {
            let key = key_of(&pdb.metadata);
            let ns = pdb
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let selector = pdb
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| LabelSelector::from_k8s(s).ok())
                .unwrap_or_else(LabelSelector::nothing);
            let selected: Vec<&Pod> = pods
                .iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
                .filter(|p| selector.matches(&p.metadata.labels.clone().unwrap_or_default()))
                .map(|p| p.as_ref())
                .collect();
            let previous = pdb.status.clone().unwrap_or_default();
            let window = chrono::Duration::minutes(2);
            let disrupted: BTreeMap<String, k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> =
                previous
                    .disrupted_pods
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(name, at)| {
                        let recent = chrono::DateTime::from_timestamp(at.0.as_second(), 0)
                            .is_some_and(|t| now - t < window);
                        recent
                            && selected.iter().any(|p| {
                                p.metadata.name.as_deref() == Some(name)
                                    && p.metadata.deletion_timestamp.is_none()
                            })
                    })
                    .collect();
            let disrupted_names: BTreeSet<String> = disrupted.keys().cloned().collect();
            let (expected, desired, healthy, allowed) =
                pdb_numbers(&pdb, &selected, controller_scale, &disrupted_names);
            let generation = pdb.metadata.generation.unwrap_or(0);
            let (status, reason) = if allowed > 0 {
                ("True", "SufficientPods")
            } else {
                ("False", "InsufficientPods")
            };
            let old_condition = previous
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "DisruptionAllowed");
            let unchanged = previous.expected_pods == expected
                && previous.desired_healthy == desired
                && previous.current_healthy == healthy
                && previous.disruptions_allowed == allowed
                && previous.observed_generation == Some(generation)
                && previous.disrupted_pods.clone().unwrap_or_default() == disrupted
                && old_condition.is_some_and(|c| c.status == status && c.reason == reason);
            if unchanged {
                continue;
            }
            let transition = old_condition
                .filter(|c| c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| {
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::from_second(now.timestamp())
                            .unwrap_or_default(),
                    )
                });
            let mut updated = (*pdb).clone();
            updated.status = Some(PodDisruptionBudgetStatus {
                conditions: Some(vec![Condition {
                    type_: "DisruptionAllowed".into(),
                    status: status.into(),
                    reason: reason.into(),
                    message: String::new(),
                    observed_generation: Some(generation),
                    last_transition_time: transition,
                }]),
                current_healthy: healthy,
                desired_healthy: desired,
                disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
                disruptions_allowed: allowed,
                expected_pods: expected,
                observed_generation: Some(generation),
            });
            // A replace guarded by resourceVersion, so a concurrent eviction's disruptedPods entry
            // is never lost: on conflict the next pass recomputes from fresh state.
            let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
            let name = pdb.metadata.name.as_deref().unwrap_or("");
            if let Err(e) = api
                .replace_status(name, &PostParams::default(), &updated)
                .await
            {
                note_error(outcome, "update PodDisruptionBudget status", &key, &e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up() {
        let cases = [
            (IntOrString::Int(2), 5, Some(2)),
            (IntOrString::String("50%".into()), 5, Some(3)),
            (IntOrString::String("10%".into()), 5, Some(1)),
            (IntOrString::String("0%".into()), 5, Some(0)),
            (IntOrString::String("100%".into()), 3, Some(3)),
            (IntOrString::String("x".into()), 3, None),
        ];
        for (v, total, want) in cases {
            assert_eq!(scaled_value(&v, total), want, "{v:?} of {total}");
        }
    }
}
