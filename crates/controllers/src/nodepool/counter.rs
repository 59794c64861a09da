//! `nodepool.counter`: `status.resources` (summed capacity of the pool's nodes, in-flight
//! NodeClaims included, with zeros for the core resources and `nodes`) and `status.nodes`,
//! computed from cluster state once it has synced. Requeues every 5 s, as upstream, because
//! node changes do not enqueue the pool.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use karpenter_apis::common::ResourceList;
use karpenter_apis::nodepool::NodePool;
use karpenter_scheduling::Resources;
use karpenter_scheduling::quantity::format_resource;
use karpenter_scheduling::resources::{CPU, EPHEMERAL_STORAGE, MEMORY, NODES, PODS};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;

use super::Error;
use crate::context::Context;

/// Controller name (the `controller` metric label).
pub const CONTROLLER: &str = "nodepool.counter";

/// How often a pool is recounted.
pub const RECOUNT_PERIOD: Duration = Duration::from_secs(5);

/// `status.resources` for this usage: the core resources and `nodes` always present.
pub fn resource_status(usage: &Resources) -> ResourceList {
    let mut out = ResourceList::new();
    for name in [CPU, MEMORY, PODS, EPHEMERAL_STORAGE, NODES] {
        out.insert(
            name.to_string(),
            Quantity(format_resource(name, usage.get(name))),
        );
    }
    for (name, amount) in usage.iter() {
        out.insert(name.to_string(), Quantity(format_resource(name, amount)));
    }
    out
}

/// Reconciles one NodePool's counts.
pub async fn reconcile(nodepool: Arc<NodePool>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.state.is_synced() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let name = nodepool.name_any();
    let usage = ctx.state.snapshot().nodepool_usage(&name);
    let resources = resource_status(&usage);
    let nodes = usage.get(NODES);
    let status = nodepool.status.clone().unwrap_or_default();
    if status.resources != resources || status.nodes != Some(nodes) {
        let api: Api<NodePool> = Api::all(ctx.client.clone());
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "resources": resources, "nodes": nodes } })),
        )
        .await?;
    }
    Ok(Action::requeue(RECOUNT_PERIOD))
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

    #[test]
    fn resource_status_always_has_core_keys() {
        let empty = resource_status(&Resources::new());
        let keys: Vec<(&str, &str)> = empty
            .iter()
            .map(|(k, v)| (k.as_str(), v.0.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("cpu", "0"),
                ("ephemeral-storage", "0"),
                ("memory", "0"),
                ("nodes", "0"),
                ("pods", "0")
            ]
        );
        let some = resource_status(
            &Resources::new()
                .with(CPU, 4000)
                .with(NODES, 2)
                .with("nvidia.com/gpu", 1),
        );
        assert_eq!(some["cpu"].0, "4");
        assert_eq!(some["nodes"].0, "2");
        assert_eq!(some["nvidia.com/gpu"].0, "1");
    }
}
