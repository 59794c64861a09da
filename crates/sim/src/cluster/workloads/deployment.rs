//! Deployment controller: one ReplicaSet per pod-template hash (`<deployment>-<hash>`), scaled to
//! `spec.replicas`, and Deployment status from its ReplicaSets.
//!
//! Simplified: a template change scales the new ReplicaSet to `replicas` and the old ones to 0 at
//! once (no `maxSurge`/`maxUnavailable` pacing, no revision history limit, no pause, no
//! progress deadline).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use super::{Ctx, controller_of, key_of, note_error, owner_ref};
use crate::apiserver::object::format_time;
use crate::cluster::runtime::Outcome;

/// The label carrying the template hash on ReplicaSets and pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Syncs every Deployment.
#[derive(Debug, Default)]
pub(crate) struct DeploymentController;

/// FNV-1a over the template, encoded with the DNS-safe alphabet the real controller uses.
pub fn template_hash(template: &PodTemplateSpec, collision_count: i32) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |b: u8| {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    };
    for b in bytes {
        feed(b);
    }
    if collision_count > 0 {
        for b in collision_count.to_le_bytes() {
            feed(b);
        }
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| {
            char::from(
                ALPHABET
                    .get(usize::from(b) % ALPHABET.len())
                    .copied()
                    .unwrap_or(b'x'),
            )
        })
        .collect()
}

/// `maxUnavailable` of a rolling update as a count (percentages round down; default 25%).
fn max_unavailable(deploy: &Deployment, replicas: i32) -> i32 {
    let value = deploy
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .filter(|s| s.type_.as_deref() != Some("Recreate"))
        .map(|s| {
            s.rolling_update
                .as_ref()
                .and_then(|r| r.max_unavailable.clone())
                .unwrap_or(IntOrString::String("25%".into()))
        });
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => n,
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(0, |p| {
                i32::try_from(p * i64::from(replicas) / 100).unwrap_or(0)
            }),
    }
}

fn new_replicaset(deploy: &Deployment, hash: &str, replicas: i32) -> ReplicaSet {
    let spec = deploy.spec.clone().unwrap_or_default();
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}-{hash}",
                deploy.metadata.name.as_deref().unwrap_or("deployment")
            )),
            namespace: deploy.metadata.namespace.clone(),
            labels: meta.labels.clone(),
            annotations: Some(BTreeMap::from([(
                "deployment.kubernetes.io/desired-replicas".to_string(),
                replicas.to_string(),
            )])),
            owner_references: Some(vec![owner_ref("apps/v1", "Deployment", &deploy.metadata)]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &str,
    previous: Option<&serde_json::Value>,
) -> serde_json::Value {
    let status = if status { "True" } else { "False" };
    let transition = previous
        .filter(|p| p.get("status").and_then(|s| s.as_str()) == Some(status))
        .and_then(|p| p.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    json!({"type": type_, "status": status, "reason": reason, "message": message, "lastUpdateTime": now, "lastTransitionTime": transition})
}

impl DeploymentController {
    pub(crate) async fn pass(&mut self, ctx: &Ctx, outcome: &mut Outcome) {
        let sets = ctx.replicasets.state();
        let mut deployments = ctx.deployments.state();
        deployments.sort_by_key(|d| key_of(&d.metadata));
        for deploy in deployments {
            if deploy.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(uid) = deploy.metadata.uid.as_deref() else {
                continue;
            };
            let key = key_of(&deploy.metadata);
            let ns = deploy
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let spec = deploy.spec.clone().unwrap_or_default();
            let replicas = spec.replicas.unwrap_or(1).max(0);
            let collisions = deploy
                .status
                .as_ref()
                .and_then(|s| s.collision_count)
                .unwrap_or(0);
            let hash = template_hash(&spec.template, collisions);
            let new_name = format!("{}-{hash}", deploy.metadata.name.as_deref().unwrap_or(""));
            let owned: Vec<&ReplicaSet> = sets
                .iter()
                .filter(|rs| controller_of(&rs.metadata).is_some_and(|r| r.uid == uid))
                .map(|rs| rs.as_ref())
                .collect();
            let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
            let new_rs = owned
                .iter()
                .find(|rs| rs.metadata.name.as_deref() == Some(new_name.as_str()));
            match new_rs {
                None => {
                    if let Err(e) = rs_api
                        .create(
                            &PostParams::default(),
                            &new_replicaset(&deploy, &hash, replicas),
                        )
                        .await
                    {
                        note_error(outcome, "create ReplicaSet", &key, &e);
                    }
                }
                Some(rs) if rs.spec.as_ref().and_then(|s| s.replicas) != Some(replicas) => {
                    let patch = json!({"spec": {"replicas": replicas}, "metadata": {"annotations": {"deployment.kubernetes.io/desired-replicas": replicas.to_string()}}});
                    if let Err(e) = rs_api
                        .patch(&new_name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        note_error(outcome, "scale ReplicaSet", &key, &e);
                    }
                }
                Some(_) => {}
            }
            for old in owned
                .iter()
                .filter(|rs| rs.metadata.name.as_deref() != Some(new_name.as_str()))
            {
                if old.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) != 0 {
                    let name = old.metadata.name.as_deref().unwrap_or("");
                    if let Err(e) = rs_api
                        .patch(
                            name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"spec": {"replicas": 0}})),
                        )
                        .await
                    {
                        note_error(outcome, "scale down old ReplicaSet", &key, &e);
                    }
                }
            }
            // Status from the ReplicaSets' reported status.
            let count = |rs: &ReplicaSet, f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>| {
                rs.status.as_ref().and_then(f).unwrap_or(0)
            };
            let total: i32 = owned.iter().map(|rs| count(rs, |s| Some(s.replicas))).sum();
            let ready: i32 = owned.iter().map(|rs| count(rs, |s| s.ready_replicas)).sum();
            let available: i32 = owned
                .iter()
                .map(|rs| count(rs, |s| s.available_replicas))
                .sum();
            let updated = new_rs.map_or(0, |rs| count(rs, |s| Some(s.replicas)));
            let now = format_time(ctx.clock.now());
            let previous = deploy
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok())
                .unwrap_or_default();
            let prev_cond = |t: &str| {
                previous
                    .get("conditions")
                    .and_then(|c| c.as_array())
                    .and_then(|cs| {
                        cs.iter()
                            .find(|c| c.get("type").and_then(|v| v.as_str()) == Some(t))
                    })
                    .cloned()
            };
            let available_ok = available >= replicas - max_unavailable(&deploy, replicas);
            let complete = updated == replicas && available == replicas && total == replicas;
            let conditions = vec![
                condition(
                    "Available",
                    available_ok,
                    if available_ok {
                        "MinimumReplicasAvailable"
                    } else {
                        "MinimumReplicasUnavailable"
                    },
                    if available_ok {
                        "Deployment has minimum availability."
                    } else {
                        "Deployment does not have minimum availability."
                    },
                    &now,
                    prev_cond("Available").as_ref(),
                ),
                condition(
                    "Progressing",
                    true,
                    if complete {
                        "NewReplicaSetAvailable"
                    } else {
                        "ReplicaSetUpdated"
                    },
                    &if complete {
                        format!("ReplicaSet \"{new_name}\" has successfully progressed.")
                    } else {
                        format!("ReplicaSet \"{new_name}\" is progressing.")
                    },
                    &now,
                    prev_cond("Progressing").as_ref(),
                ),
            ];
            let numbers = json!({
                "replicas": total,
                "updatedReplicas": updated,
                "readyReplicas": ready,
                "availableReplicas": available,
                "unavailableReplicas": (replicas - available).max(0),
                "observedGeneration": deploy.metadata.generation.unwrap_or(0),
            });
            let numbers_changed = numbers.as_object().into_iter().flatten().any(|(k, v)| {
                previous.get(k).and_then(|p| p.as_i64()).unwrap_or(0) != v.as_i64().unwrap_or(0)
            });
            let reasons_changed =
                ["Available", "Progressing"]
                    .iter()
                    .zip(&conditions)
                    .any(|(t, c)| {
                        let p = prev_cond(t);
                        p.as_ref().and_then(|p| p.get("reason")) != c.get("reason")
                            || p.as_ref().and_then(|p| p.get("status")) != c.get("status")
                    });
            if numbers_changed || reasons_changed {
                let mut status = numbers;
                status["conditions"] = json!(conditions);
                let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
                let name = deploy.metadata.name.as_deref().unwrap_or("");
                if let Err(e) = api
                    .patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await
                {
                    note_error(outcome, "update Deployment status", &key, &e);
                }
            }
        }
    }
}
