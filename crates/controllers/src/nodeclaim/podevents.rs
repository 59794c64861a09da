//! `nodeclaim.podevents`: stamps `status.lastPodEventTime` on the NodeClaim of a pod's node
//! when the pod is bound there, becomes terminal or starts terminating (at most every 10 s per
//! NodeClaim). Consolidation measures `consolidateAfter` from it.
//!
//! kube-runtime hands reconcilers the new object only, so the pod's last seen (bound,
//! terminal, terminating) mark is kept in memory to tell a transition from any other update.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use karpenter_apis::nodeclaim::NodeClaim;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;

use super::{Error, to_time};
use crate::context::Context;

/// Controller name.
pub const CONTROLLER: &str = "nodeclaim.podevents";
/// Shortest interval between two writes for one NodeClaim.
pub const DEDUPE: Duration = Duration::from_secs(10);
/// Bound on remembered pods (cleared wholesale beyond it; a clear costs at most one write per
/// NodeClaim).
const MAX_REMEMBERED: usize = 200_000;

/// A pod's lifecycle mark: bound, terminal, terminating.
type Mark = (bool, bool, bool);

/// In-memory state of the controller.
#[derive(Debug, Default)]
pub struct PodEvents {
    marks: Mutex<HashMap<String, Mark>>,
    written: Mutex<HashMap<String, DateTime<Utc>>>,
}

/// The pod's mark, or `None` if it is not bound.
pub fn mark(pod: &Pod) -> Option<Mark> {
    pod.spec.as_ref()?.node_name.as_ref()?;
    let terminal = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    Some((true, terminal, pod.metadata.deletion_timestamp.is_some()))
}

impl PodEvents {
    /// Reconciles one pod.
    pub async fn reconcile(&self, pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action, Error> {
        let Some(m) = mark(&pod) else {
            return Ok(Action::await_change());
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        {
            let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
            if marks.len() > MAX_REMEMBERED {
                marks.clear();
            }
            if marks.insert(uid, m) == Some(m) {
                return Ok(Action::await_change());
            }
        }
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let Some(nc) = ctx
            .state
            .snapshot()
            .node(&node_name)
            .and_then(|sn| sn.nodeclaim.map(|nc| nc.name.clone()))
        else {
            return Ok(Action::await_change());
        };
        let now = ctx.clock.now();
        {
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            let dedupe = chrono::Duration::from_std(DEDUPE).unwrap_or_default();
            if written.get(&nc).is_some_and(|at| now < *at + dedupe) {
                return Ok(Action::await_change());
            }
            if written.len() > MAX_REMEMBERED {
                written.clear();
            }
            written.insert(nc.clone(), now);
        }
        match Api::<NodeClaim>::all(ctx.client.clone())
            .patch_status(
                &nc,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"lastPodEventTime": to_time(now)}})),
            )
            .await
        {
            Ok(_) => Ok(Action::await_change()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
            Err(e) => {
                self.written
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&nc);
                Err(e.into())
            }
        }
    }
}

/// Runs the controller until `shutdown` turns true.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let me = Arc::new(PodEvents::default());
    let controller = Controller::new(
        Api::<Pod>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    crate::nodepool::runner::run_controller(
        CONTROLLER,
        controller,
        move |pod: Arc<Pod>, ctx: Arc<Context>| {
            let me = me.clone();
            async move { me.reconcile(pod, ctx).await }
        },
        ctx,
        shutdown,
    )
    .await;
}
