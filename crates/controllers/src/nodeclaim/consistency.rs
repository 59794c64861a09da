//! `nodeclaim.consistency`: every 10 minutes per initialized NodeClaim, checks that its Node
//! offers at least 90% of the capacity the NodeClaim was launched expecting, for each resource
//! the NodeClaim requested; otherwise a `FailedConsistencyCheck` event and
//! `ConsistentStateFound=False` (reason `ConsistencyCheckFailed`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use karpenter_apis::common::ConditionStatus;
use karpenter_apis::conditions::{self, nodeclaim as cond};
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_cloudprovider::parse_resource_list;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;

use super::plan;
use super::{Error, NodeIndex, to_time};
use crate::context::Context;
use crate::events::{Event, EventType};

/// Controller name.
pub const CONTROLLER: &str = "nodeclaim.consistency";
/// How often each NodeClaim is checked.
pub const PERIOD: Duration = Duration::from_secs(10 * 60);
/// The share of expected capacity a Node must offer.
pub const MIN_RATIO: f64 = 0.9;

/// Inconsistencies between the NodeClaim's expected capacity and the Node's, one message per
/// requested resource that falls short (sorted by resource name).
pub fn check(nc: &NodeClaim, node: &Node) -> Vec<String> {
    let expected = nc
        .status
        .as_ref()
        .and_then(|s| parse_resource_list(&s.capacity).ok())
        .unwrap_or_default();
    let found = node
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| parse_resource_list(c).ok())
        .unwrap_or_default();
    let mut names: Vec<&String> = nc.spec.resources.requests.keys().collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let want = expected.get(name);
            if want <= 0 {
                return None;
            }
            let have = found.get(name);
            let ratio = have as f64 / want as f64;
            (ratio < MIN_RATIO).then(|| {
                let show = |v: i64| {
                    if name == "cpu" {
                        format!("{}", v as f64 / 1000.0)
                    } else {
                        v.to_string()
                    }
                };
                format!(
                    "expected {} of resource {name}, but found {} ({:.1}% of expected)",
                    show(want),
                    show(have),
                    ratio * 100.0
                )
            })
        })
        .collect()
}

/// Reconciles one NodeClaim.
pub async fn reconcile(
    nc: Arc<NodeClaim>,
    ctx: Arc<Context>,
    index: Arc<NodeIndex>,
) -> Result<Action, Error> {
    let conds = plan::conditions_of(&nc);
    if nc.metadata.deletion_timestamp.is_some() || !conditions::is_true(conds, cond::INITIALIZED) {
        return Ok(Action::await_change());
    }
    let Some(node) = nc
        .status
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .and_then(|n| index.get(n))
    else {
        return Ok(Action::requeue(PERIOD));
    };
    let problems = check(&nc, &node);
    let (status, reason, message) = if problems.is_empty() {
        (
            ConditionStatus::True,
            cond::CONSISTENT_STATE_FOUND,
            String::new(),
        )
    } else {
        for p in &problems {
            ctx.recorder
                .publish(
                    Event::about(
                        &*nc,
                        EventType::Warning,
                        "FailedConsistencyCheck",
                        p.clone(),
                    )
                    .dedupe_on(p.clone()),
                )
                .await;
        }
        (
            ConditionStatus::False,
            "ConsistencyCheckFailed",
            problems.join("; "),
        )
    };
    let mut st = nc.status.clone().unwrap_or_default();
    if conditions::set(
        &mut st.conditions,
        cond::CONSISTENT_STATE_FOUND,
        status,
        reason,
        &message,
        nc.metadata.generation.unwrap_or(0),
        &to_time(ctx.clock.now()),
    ) {
        Api::<NodeClaim>::all(ctx.client.clone())
            .patch_status(
                &nc.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"resourceVersion": nc.metadata.resource_version},
                    "status": {"conditions": st.conditions},
                })),
            )
            .await?;
    }
    Ok(Action::requeue(PERIOD))
}

/// Runs the controller until `shutdown` turns true.
pub async fn run(ctx: Arc<Context>, index: Arc<NodeIndex>, shutdown: watch::Receiver<bool>) {
    let controller = Controller::new(
        Api::<NodeClaim>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    crate::nodepool::runner::run_controller(
        CONTROLLER,
        controller,
        move |nc: Arc<NodeClaim>, ctx: Arc<Context>| {
            let index = index.clone();
            async move { reconcile(nc, ctx, index).await }
        },
        ctx,
        shutdown,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeStatus;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn check_case(
        requests: &[&str],
        expected: &[(&str, &str)],
        found: &[(&str, &str)],
        want: &[&str],
    ) {
        let mut nc: NodeClaim = serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": {"name": "nc"},
            "spec": {"requirements": [], "nodeClassRef": {"group": "g", "kind": "k", "name": "n"}},
        }))
        .unwrap();
        for r in requests {
            nc.spec
                .resources
                .requests
                .insert(r.to_string(), Quantity("1".into()));
        }
        nc.status.get_or_insert_with(Default::default).capacity = expected
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect();
        let node = Node {
            status: Some(NodeStatus {
                capacity: Some(
                    found
                        .iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(check(&nc, &node), want);
    }

    #[test]
    fn node_must_offer_ninety_percent_of_requested_resources() {
        check_case(&["cpu"], &[("cpu", "4")], &[("cpu", "4")], &[]);
        check_case(&["cpu"], &[("cpu", "4")], &[("cpu", "3700m")], &[]);
        check_case(
            &["cpu"],
            &[("cpu", "4")],
            &[("cpu", "2")],
            &["expected 4 of resource cpu, but found 2 (50.0% of expected)"],
        );
        // Resources not requested are not checked.
        check_case(
            &["cpu"],
            &[("cpu", "4"), ("memory", "16Gi")],
            &[("cpu", "4")],
            &[],
        );
        check_case(
            &["memory"],
            &[("memory", "1000")],
            &[],
            &["expected 1000 of resource memory, but found 0 (0.0% of expected)"],
        );
    }
}
