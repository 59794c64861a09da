//! `nodepool.hash`: keeps `karpenter.sh/nodepool-hash` and `-hash-version` on every NodePool.
//! When a pool carries another hash version (written by upstream, or an older release), its
//! NodeClaims are re-stamped with the current version — and the current hash unless they are
//! already Drifted — before the pool itself, so drift-by-hash never compares hashes computed by
//! different algorithms and a takeover does not replace every node.

use std::collections::BTreeMap;
use std::sync::Arc;

use karpenter_apis::conditions::{self, nodeclaim as nc_cond};
use karpenter_apis::hash::{NODEPOOL_HASH_VERSION_VALUE, nodepool_hash};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::NodePool;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;

use super::Error;
use crate::context::Context;

/// Controller name (the `controller` metric label).
pub const CONTROLLER: &str = "nodepool.hash";

/// Annotations to merge onto an object whose hash annotations are `current`, or `None` when
/// they already say `hash` at the current version. `keep_hash` leaves the hash alone (a
/// Drifted NodeClaim stays drifted).
pub fn hash_patch(
    current: &BTreeMap<String, String>,
    hash: &str,
    keep_hash: bool,
) -> Option<BTreeMap<String, String>> {
    let mut patch = BTreeMap::new();
    if current
        .get(labels::NODEPOOL_HASH_VERSION)
        .map(String::as_str)
        != Some(NODEPOOL_HASH_VERSION_VALUE)
    {
        patch.insert(
            labels::NODEPOOL_HASH_VERSION.to_string(),
            NODEPOOL_HASH_VERSION_VALUE.to_string(),
        );
    }
    if !keep_hash && current.get(labels::NODEPOOL_HASH).map(String::as_str) != Some(hash) {
        patch.insert(labels::NODEPOOL_HASH.to_string(), hash.to_string());
    }
    (!patch.is_empty()).then_some(patch)
}

/// Reconciles one NodePool's hash annotations.
pub async fn reconcile(nodepool: Arc<NodePool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = nodepool.name_any();
    let hash = nodepool_hash(&nodepool);
    let annotations = nodepool.annotations();
    let version_changed = annotations
        .get(labels::NODEPOOL_HASH_VERSION)
        .map(String::as_str)
        != Some(NODEPOOL_HASH_VERSION_VALUE);
    if version_changed {
        let claims: Api<NodeClaim> = Api::all(ctx.client.clone());
        let owned = claims
            .list(&ListParams::default().labels(&format!("{}={name}", labels::NODEPOOL)))
            .await?;
        for claim in owned.items {
            // Only claims still on another version: a claim stamped by us already compares
            // like-for-like.
            if claim
                .annotations()
                .get(labels::NODEPOOL_HASH_VERSION)
                .map(String::as_str)
                == Some(NODEPOOL_HASH_VERSION_VALUE)
            {
                continue;
            }
            let drifted = claim
                .status
                .as_ref()
                .is_some_and(|s| conditions::is_true(&s.conditions, nc_cond::DRIFTED));
            if let Some(patch) = hash_patch(claim.annotations(), &hash, drifted) {
                claims
                    .patch(
                        &claim.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "metadata": { "annotations": patch } })),
                    )
                    .await?;
            }
        }
    }
    if let Some(patch) = hash_patch(annotations, &hash, false) {
        let api: Api<NodePool> = Api::all(ctx.client.clone());
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": patch } })),
        )
        .await?;
    }
    Ok(Action::await_change())
}

/// Runs the controller until `shutdown` turns true.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let controller = Controller::new(
        Api::<NodePool>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    super::runner::run_controller(CONTROLLER, controller, reconcile, ctx, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn check(current: &[(&str, &str)], keep_hash: bool, expected: Option<&[(&str, &str)]>) {
        assert_eq!(
            hash_patch(&annotations(current), "42", keep_hash),
            expected.map(annotations),
            "current {current:?} keep_hash {keep_hash}"
        );
    }

    #[test]
    fn hash_patch_cases() {
        let v = NODEPOOL_HASH_VERSION_VALUE;
        let (h, hv) = (labels::NODEPOOL_HASH, labels::NODEPOOL_HASH_VERSION);
        check(&[(h, "42"), (hv, v)], false, None);
        check(&[], false, Some(&[(h, "42"), (hv, v)]));
        check(&[(h, "7"), (hv, v)], false, Some(&[(h, "42")]));
        // Upstream's v3 hash: re-stamped with ours.
        check(&[(h, "7"), (hv, "v3")], false, Some(&[(h, "42"), (hv, v)]));
        // A drifted claim keeps its hash, only the version moves.
        check(&[(h, "7"), (hv, "v3")], true, Some(&[(hv, v)]));
    }
}
