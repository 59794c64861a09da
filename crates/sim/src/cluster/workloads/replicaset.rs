//! ReplicaSet controller: keeps `spec.replicas` active pods from the template and reports status.
//!
//! Simplified: no adoption or release of pods by selector (pods are matched by controller owner
//! reference), `minReadySeconds` is ignored (ready pods count as available at once).

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::{
    Ctx, Expectations, create_pod, delete_pod, is_active, key_of, note_error, owned_pods,
    owner_ref, pod_ready,
};
use crate::cluster::runtime::Outcome;

/// Syncs every ReplicaSet.
#[derive(Debug, Default)]
pub(crate) struct ReplicaSetController {
    expectations: Expectations,
}

/// Rank for scale-down: lower goes first (as the ReplicaSet controller's `ActivePods` order).
fn deletion_rank(pod: &Pod) -> impl Ord {
    let assigned = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let cost: i64 = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(karpenter_apis::labels::POD_DELETION_COST))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // Newer pods go first: invert the creation time.
    let created = std::cmp::Reverse(pod.metadata.creation_timestamp.clone());
    (
        assigned,
        phase,
        pod_ready(pod),
        cost,
        created,
        pod.metadata.name.clone(),
    )
}

/// A pod for `template` owned by the ReplicaSet.
pub(crate) fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.metadata.name.as_deref().unwrap_or("rs"))),
            namespace: rs.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![owner_ref("apps/v1", "ReplicaSet", &rs.metadata)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

impl ReplicaSetController {
    pub(crate) async fn pass(&mut self, ctx: &Ctx, outcome: &mut Outcome) {
        let pods = ctx.pods.state();
        let mut sets = ctx.replicasets.state();
        sets.sort_by_key(|rs| key_of(&rs.metadata));
        let uids: BTreeSet<String> = sets.iter().filter_map(|r| r.metadata.uid.clone()).collect();
        self.expectations.forget_except(&uids);
        for rs in sets {
            let Some(uid) = rs.metadata.uid.clone() else {
                continue;
            };
            let key = key_of(&rs.metadata);
            let ns = rs
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let owned = owned_pods(&pods, &uid);
            if rs.metadata.deletion_timestamp.is_none() && self.expectations.satisfied(&uid, &owned)
            {
                let active: Vec<&Pod> = owned.iter().copied().filter(|p| is_active(p)).collect();
                let want = usize::try_from(
                    rs.spec
                        .as_ref()
                        .and_then(|s| s.replicas)
                        .unwrap_or(1)
                        .max(0),
                )
                .unwrap_or(0);
                if active.len() < want {
                    let pod = pod_from_template(&rs);
                    for _ in 0..(want - active.len()).min(ctx.burst) {
                        match create_pod(&ctx.client, &ns, &pod).await {
                            Ok(name) => self.expectations.created(&uid, name),
                            Err(e) => {
                                note_error(outcome, "create pod", &key, &e);
                                break;
                            }
                        }
                    }
                } else if active.len() > want {
                    let mut victims = active.clone();
                    victims.sort_by_key(|p| deletion_rank(p));
                    for pod in victims.into_iter().take(active.len() - want) {
                        match delete_pod(&ctx.client, pod).await {
                            Ok(()) => {
                                if let Some(uid_p) = pod.metadata.uid.clone() {
                                    self.expectations.deleted(&uid, uid_p);
                                }
                            }
                            Err(e) => note_error(outcome, "delete pod", &key, &e),
                        }
                    }
                }
            }
            let active: Vec<&Pod> = owned.iter().copied().filter(|p| is_active(p)).collect();
            let ready = active.iter().filter(|p| pod_ready(p)).count();
            let status = json!({
                "replicas": active.len(),
                "fullyLabeledReplicas": active.len(),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "terminatingReplicas": owned.iter().filter(|p| p.metadata.deletion_timestamp.is_some()).count(),
                "observedGeneration": rs.metadata.generation.unwrap_or(0),
            });
            let current = rs
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok())
                .unwrap_or_default();
            let changed = [
                "replicas",
                "fullyLabeledReplicas",
                "readyReplicas",
                "availableReplicas",
                "terminatingReplicas",
                "observedGeneration",
            ]
            .iter()
            .any(|f| {
                current.get(f).and_then(|v| v.as_i64()).unwrap_or(0)
                    != status.get(f).and_then(|v| v.as_i64()).unwrap_or(0)
            });
            if changed {
                let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
                let name = rs.metadata.name.as_deref().unwrap_or("");
                if let Err(e) = api
                    .patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await
                {
                    note_error(outcome, "update ReplicaSet status", &key, &e);
                }
            }
        }
    }
}
