//! `nodepool.readiness`: `NodeClassReady` mirrored from the referenced NodeClass,
//! `ValidationSucceeded` from runtime validation, and the root `Ready` derived from both.
//! Re-runs when the NodePool changes or any EC2NodeClass it references does.

use std::sync::Arc;

use karpenter_apis::common::{ConditionStatus, NodeClassReference};
use karpenter_apis::conditions::{self, nodepool as cond};
use karpenter_apis::ec2nodeclass::EC2NodeClass;
use karpenter_apis::labels;
use karpenter_apis::nodepool::NodePool;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;

use super::validation::{REASON_VALIDATION_FAILED, validate};
use super::{Error, now};
use crate::context::Context;

/// Controller name (the `controller` metric label).
pub const CONTROLLER: &str = "nodepool.readiness";

/// What the referenced NodeClass says about launching from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeClassReadiness {
    /// Ready (or, until the AWS NodeClass controller exists, simply present without a
    /// `Ready` condition: nothing else would ever write one).
    Ready,
    /// Not in the cluster, or of a kind this provider does not serve.
    NotFound,
    /// Has a deletion timestamp.
    Terminating,
    /// `Ready=False` with the NodeClass's own reason and message.
    NotReady {
        /// Reason.
        reason: String,
        /// Message.
        message: String,
    },
    /// `Ready=Unknown`.
    Unknown {
        /// Reason.
        reason: String,
        /// Message.
        message: String,
    },
}

impl NodeClassReadiness {
    /// The `NodeClassReady` reason this readiness maps to.
    pub fn reason(&self) -> &str {
        match self {
            NodeClassReadiness::Ready => cond::NODE_CLASS_READY,
            NodeClassReadiness::NotFound => "NodeClassNotFound",
            NodeClassReadiness::Terminating => "NodeClassTerminating",
            NodeClassReadiness::NotReady { reason, .. }
            | NodeClassReadiness::Unknown { reason, .. } => reason,
        }
    }
}

/// Whether `class_ref` names an EC2NodeClass (the only kind this provider serves).
pub fn is_ec2_nodeclass(class_ref: &NodeClassReference) -> bool {
    class_ref.group == labels::AWS_GROUP && class_ref.kind == "EC2NodeClass"
}

/// Readiness of the NodeClass `class_ref` points at; `nodeclass` is what state holds under
/// that name (`None` if nothing).
pub fn nodeclass_readiness(
    class_ref: &NodeClassReference,
    nodeclass: Option<&EC2NodeClass>,
) -> NodeClassReadiness {
    let Some(nc) = nodeclass.filter(|_| is_ec2_nodeclass(class_ref)) else {
        return NodeClassReadiness::NotFound;
    };
    if nc.metadata.deletion_timestamp.is_some() {
        return NodeClassReadiness::Terminating;
    }
    let conds = nc
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let non_empty = |s: &str, fallback: &str| {
        if s.is_empty() {
            fallback.to_string()
        } else {
            s.to_string()
        }
    };
    match conditions::get(conds, conditions::READY) {
        None => NodeClassReadiness::Ready,
        Some(c) => match c.status {
            ConditionStatus::True => NodeClassReadiness::Ready,
            ConditionStatus::False => NodeClassReadiness::NotReady {
                reason: non_empty(&c.reason, "NodeClassNotReady"),
                message: non_empty(&c.message, "NodeClass is not ready"),
            },
            ConditionStatus::Unknown => NodeClassReadiness::Unknown {
                reason: non_empty(&c.reason, "NodeClassReadinessUnknown"),
                message: non_empty(&c.message, "Node Class Readiness Unknown"),
            },
        },
    }
}

/// The NodePool's conditions after this controller's view: dependents set, root derived.
pub fn desired_conditions(
    nodepool: &NodePool,
    readiness: &NodeClassReadiness,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Vec<karpenter_apis::common::Condition> {
    let set = conditions::NODEPOOL;
    let generation = nodepool.metadata.generation.unwrap_or(0);
    let mut conds = nodepool
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    set.initialize(&mut conds, generation, now);
    match readiness {
        NodeClassReadiness::Ready => {
            set.set_true(&mut conds, cond::NODE_CLASS_READY, generation, now);
        }
        NodeClassReadiness::NotFound => {
            set.set_false(
                &mut conds,
                cond::NODE_CLASS_READY,
                "NodeClassNotFound",
                "NodeClass not found on cluster",
                generation,
                now,
            );
        }
        NodeClassReadiness::Terminating => {
            set.set_false(
                &mut conds,
                cond::NODE_CLASS_READY,
                "NodeClassTerminating",
                "NodeClass is terminating",
                generation,
                now,
            );
        }
        NodeClassReadiness::NotReady { reason, message } => {
            set.set_false(
                &mut conds,
                cond::NODE_CLASS_READY,
                reason,
                message,
                generation,
                now,
            );
        }
        NodeClassReadiness::Unknown { reason, message } => {
            set.set_unknown_with_reason(
                &mut conds,
                cond::NODE_CLASS_READY,
                reason,
                message,
                generation,
                now,
            );
        }
    }
    match validate(nodepool) {
        Ok(()) => {
            set.set_true(&mut conds, cond::VALIDATION_SUCCEEDED, generation, now);
        }
        Err(message) => {
            set.set_false(
                &mut conds,
                cond::VALIDATION_SUCCEEDED,
                REASON_VALIDATION_FAILED,
                &message,
                generation,
                now,
            );
        }
    }
    conds
}

/// Reconciles one NodePool's readiness conditions.
///
/// The NodeClass is read from the API server, not from cluster state. This controller is
/// woken by its own NodeClass watch, and cluster state is fed by a separate watch that may
/// not have applied the same change yet: deciding from that older copy wrote nothing (the
/// conditions already matched it), and since a reconcile that writes nothing is not woken
/// again, a NodePool stayed NotReady after its NodeClass became Ready. A GET per reconcile is
/// cheap (reconciles follow NodePool and NodeClass changes only) and always at least as new
/// as the event that woke it.
pub async fn reconcile(nodepool: Arc<NodePool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let class_ref = &nodepool.spec.template.spec.node_class_ref;
    let nodeclass = if is_ec2_nodeclass(class_ref) {
        Api::<EC2NodeClass>::all(ctx.client.clone())
            .get_opt(&class_ref.name)
            .await?
    } else {
        None
    };
    let readiness = nodeclass_readiness(class_ref, nodeclass.as_ref());
    let desired = desired_conditions(&nodepool, &readiness, &now(&ctx));
    let current = nodepool
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    if desired != current {
        let api: Api<NodePool> = Api::all(ctx.client.clone());
        api.patch_status(
            &nodepool.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "conditions": desired } })),
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
    // NodeClass changes map to pools through this controller's own NodePool cache, which
    // holds every pool whose reconcile has been queued: a pool missing from it has its first
    // reconcile still ahead, which will read the changed class. (Cluster state's pools come
    // from another watch and can lag, so a change could map to nothing there.)
    let pools = controller.store();
    let controller = controller.watches(
        Api::<EC2NodeClass>::all(ctx.client.clone()),
        watcher::Config::default(),
        move |nc: EC2NodeClass| {
            let name = nc.name_any();
            pools
                .state()
                .into_iter()
                .filter(|np| {
                    let r = &np.spec.template.spec.node_class_ref;
                    is_ec2_nodeclass(r) && r.name == name
                })
                .map(|np| ObjectRef::new(&np.name_any()))
                .collect::<Vec<_>>()
        },
    );
    super::runner::run_controller(CONTROLLER, controller, reconcile, ctx, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use karpenter_apis::common::Condition;

    fn class(ready: Option<(ConditionStatus, &str)>, deleting: bool) -> EC2NodeClass {
        let mut nc: EC2NodeClass =
            serde_json::from_value(json!({"apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": {"name": "default"}, "spec": {}}))
                .unwrap();
        if deleting {
            nc.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::from_second(1).unwrap(),
                ));
        }
        if let Some((status, reason)) = ready {
            nc.status
                .get_or_insert_with(Default::default)
                .conditions
                .push(Condition {
                    type_: "Ready".into(),
                    status,
                    observed_generation: None,
                    last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::from_second(1).unwrap(),
                    ),
                    reason: reason.into(),
                    message: "m".into(),
                });
        }
        nc
    }

    fn check(class_ref: NodeClassReference, nc: Option<EC2NodeClass>, expected: &str) {
        let got = nodeclass_readiness(&class_ref, nc.as_ref());
        assert_eq!(got.reason(), expected, "{got:?}");
    }

    #[test]
    fn nodeclass_readiness_cases() {
        let ec2 = NodeClassReference::ec2_node_class("default");
        check(ec2.clone(), None, "NodeClassNotFound");
        check(ec2.clone(), Some(class(None, false)), "NodeClassReady");
        check(ec2.clone(), Some(class(None, true)), "NodeClassTerminating");
        check(
            ec2.clone(),
            Some(class(Some((ConditionStatus::True, "Ready")), false)),
            "NodeClassReady",
        );
        check(
            ec2.clone(),
            Some(class(Some((ConditionStatus::False, "AMINotFound")), false)),
            "AMINotFound",
        );
        check(
            ec2.clone(),
            Some(class(Some((ConditionStatus::False, "")), false)),
            "NodeClassNotReady",
        );
        check(
            ec2,
            Some(class(Some((ConditionStatus::Unknown, "Resolving")), false)),
            "Resolving",
        );
        let other = NodeClassReference {
            group: "karpenter.kwok.sh".into(),
            kind: "KWOKNodeClass".into(),
            name: "default".into(),
        };
        check(other, Some(class(None, false)), "NodeClassNotFound");
    }
}
