//! `node.termination`: the Node finalizer flow for managed Nodes — make sure the NodeClaim is
//! deleting, cordon with `karpenter.sh/disrupted:NoSchedule`, drain in tiers through the
//! [`eviction`] queue (force-deleting pods the NodeClaim's terminationGracePeriod no longer
//! leaves time for), wait for VolumeAttachments, terminate the instance, release the Node.
//!
//! The drain decision is the pure [`drain::plan`]; this module only reads and writes.

pub mod drain;
pub mod eviction;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use karpenter_apis::common::ConditionStatus;
use karpenter_apis::conditions::{self, nodeclaim as cond};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_cloudprovider::CloudProvider;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tracing::info;

use crate::context::Context;
use crate::events::{Event, EventType};
use crate::nodeclaim::{Error, from_time, plan as ncplan, to_time};
use eviction::{EvictionQueue, pod_event};

/// Controller name.
pub const CONTROLLER: &str = "node.termination";

/// Timings of the termination flow (upstream's constants; tests shorten them).
#[derive(Debug, Clone)]
pub struct TerminationConfig {
    /// `Drained` turns True only this long after draining began.
    pub min_drain_time: Duration,
    /// Re-check period while pods or volumes remain.
    pub drain_poll: Duration,
    /// Re-check period while the instance terminates.
    pub instance_termination_poll: Duration,
    /// Pods terminating for longer than this past their deletion timestamp are ignored.
    pub stuck_terminating: Duration,
}

impl Default for TerminationConfig {
    fn default() -> Self {
        TerminationConfig {
            min_drain_time: Duration::from_secs(5),
            drain_poll: Duration::from_secs(1),
            instance_termination_poll: Duration::from_secs(5),
            stuck_terminating: Duration::from_secs(60),
        }
    }
}

/// The termination controller with its eviction queue.
#[derive(Debug)]
pub struct Termination {
    config: TerminationConfig,
    queue: Arc<EvictionQueue>,
}

fn node_label<'a>(node: &'a Node, key: &str) -> &'a str {
    node.metadata
        .labels
        .as_ref()
        .and_then(|m| m.get(key))
        .map(String::as_str)
        .unwrap_or_default()
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// The Node's taints with `karpenter.sh/disrupted:NoSchedule` (replacing a same-key taint of
/// another effect), or `None` if it is already there.
pub fn with_disrupted_taint(node: &Node, now: DateTime<Utc>) -> Option<Vec<Taint>> {
    let taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    if taints
        .iter()
        .any(|t| t.key == labels::TAINT_DISRUPTED && t.effect == labels::TAINT_DISRUPTED_EFFECT)
    {
        return None;
    }
    let mut out: Vec<Taint> = taints
        .into_iter()
        .filter(|t| t.key != labels::TAINT_DISRUPTED)
        .collect();
    out.push(Taint {
        key: labels::TAINT_DISRUPTED.to_string(),
        effect: labels::TAINT_DISRUPTED_EFFECT.to_string(),
        value: None,
        time_added: Some(to_time(now)),
    });
    Some(out)
}

/// The `reason` of `karpenter_pods_drained_total`: the NodeClaim's voluntary disruption reason,
/// else forceful termination.
pub fn drain_reason(nc: Option<&NodeClaim>) -> String {
    nc.and_then(|nc| conditions::get(ncplan::conditions_of(nc), cond::DISRUPTION_REASON))
        .filter(|c| c.status == ConditionStatus::True && !c.reason.is_empty())
        .map_or_else(|| "Forceful Termination".to_string(), |c| c.reason.clone())
}

impl Termination {
    /// A termination controller whose eviction queue uses `eviction_client` (built with
    /// `default_retry = false`, see [`EvictionQueue`]).
    pub fn new(config: TerminationConfig, eviction_client: kube::Client) -> Termination {
        Termination {
            config,
            queue: Arc::new(EvictionQueue::new(eviction_client)),
        }
    }

    /// The eviction queue.
    pub fn queue(&self) -> &Arc<EvictionQueue> {
        &self.queue
    }

    /// Runs the controller and its eviction queue until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        let controller = Controller::new(nodes, watcher::Config::default());
        let me = self.clone();
        tokio::join!(
            self.queue.clone().run(ctx.clone(), shutdown.clone()),
            crate::nodepool::runner::run_controller(
                CONTROLLER,
                controller,
                move |node: Arc<Node>, ctx: Arc<Context>| {
                    let me = me.clone();
                    async move { me.reconcile(node, ctx).await }
                },
                ctx,
                shutdown,
            ),
        );
    }

    /// Reconciles one Node.
    pub async fn reconcile(&self, node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
        let has_finalizer = node
            .finalizers()
            .iter()
            .any(|f| f == labels::TERMINATION_FINALIZER);
        let Some(deleted_at) = node.metadata.deletion_timestamp.as_ref().map(from_time) else {
            return Ok(Action::await_change());
        };
        if !has_finalizer {
            return Ok(Action::await_change());
        }
        let name = node.name_any();
        let now = ctx.clock.now();
        let node_api: Api<Node> = Api::all(ctx.client.clone());
        let nc_api: Api<NodeClaim> = Api::all(ctx.client.clone());
        let cloud = ctx.cloud_provider(CONTROLLER);
        let pid = node
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.clone())
            .unwrap_or_default();

        // 1. The NodeClaim must be deleting too.
        let nc_name = ctx
            .state
            .snapshot()
            .node(&pid)
            .filter(|_| !pid.is_empty())
            .and_then(|sn| sn.nodeclaim.map(|nc| nc.name.clone()));
        let nodeclaim = match &nc_name {
            Some(n) => match nc_api.get_opt(n).await? {
                Some(nc) if ncplan::provider_id(&nc) == Some(pid.as_str()) => Some(nc),
                _ => None,
            },
            None => None,
        };
        if let Some(nc) = &nodeclaim
            && nc.metadata.deletion_timestamp.is_none()
        {
            match nc_api
                .delete(&nc.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }

        // 2. A NotReady Node whose instance is gone has nothing left to drain.
        let instance_gone = !node_ready(&node)
            && match cloud.get(&pid).await {
                Err(e) if e.is_not_found() => true,
                _ => pid.is_empty(),
            };
        if !instance_gone {
            // 3. Cordon.
            let taints = with_disrupted_taint(&node, now);
            let exclude =
                node_label(&node, labels::EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS) != "karpenter";
            if taints.is_some() || exclude {
                let mut patch = json!({"metadata": {
                    "resourceVersion": node.metadata.resource_version,
                    "labels": {labels::EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS: "karpenter"},
                }});
                if let Some(t) = taints {
                    patch["spec"] = json!({ "taints": t });
                }
                node_api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                return Ok(Action::requeue(Duration::from_millis(10)));
            }

            let deadline = nodeclaim.as_ref().and_then(|nc| {
                nc.annotations()
                    .get(labels::NODECLAIM_TERMINATION_TIMESTAMP)
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|d| d.with_timezone(&Utc))
                    .or_else(|| ncplan::termination_deadline(nc))
            });

            // 4. Drain.
            let pods: Vec<Pod> = Api::<Pod>::all(ctx.client.clone())
                .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
                .await?
                .items;
            let stuck = chrono::Duration::from_std(self.config.stuck_terminating)
                .unwrap_or(chrono::Duration::MAX);
            let step = drain::plan(&pods, now, deadline, stuck);
            let reason = drain_reason(nodeclaim.as_ref());
            for f in &step.force_delete {
                let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &f.pod.namespace);
                let params = DeleteParams {
                    grace_period_seconds: u32::try_from(f.grace_seconds).ok(),
                    preconditions: Some(Preconditions {
                        uid: Some(f.pod.uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(&f.pod.name, &params).await {
                    Ok(_) => {
                        let until = now + chrono::Duration::seconds(f.grace_seconds);
                        ctx.recorder
                            .publish(pod_event(
                                &f.pod,
                                "Disrupted",
                                format!(
                                    "Deleting the pod to accommodate the terminationTime {} of the node. The pod was granted {} seconds of grace-period of its {} terminationGracePeriodSeconds. This bypasses the PDB of the pod and the do-not-disrupt annotation.",
                                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                                    f.grace_seconds,
                                    f.grace_seconds
                                ),
                            ))
                            .await;
                        ctx.metrics
                            .pods
                            .drained
                            .with_label_values(&[reason.as_str()])
                            .inc();
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            for key in step.evict {
                self.queue.enqueue(key, &name, &reason);
            }
            if !step.waiting.is_empty() {
                if let Some(nc) = &nodeclaim {
                    set_condition(
                        &nc_api,
                        nc,
                        cond::DRAINED,
                        ConditionStatus::Unknown,
                        "Draining",
                        "",
                        now,
                    )
                    .await?;
                }
                ctx.recorder
                    .publish(Event {
                        involved: node.object_ref(&()),
                        type_: EventType::Warning,
                        reason: "FailedDraining",
                        message: format!(
                            "Failed to drain node, {} pods are waiting to be evicted",
                            step.waiting.len()
                        ),
                        dedupe_values: vec![name.clone()],
                        dedupe_window: None,
                    })
                    .await;
                return Ok(Action::requeue(self.config.drain_poll));
            }
            if let Some(nc) = &nodeclaim
                && !ncplan::condition_is(nc, cond::DRAINED, ConditionStatus::True)
            {
                // Give pods that appeared just before the taint a moment to be seen.
                let started = conditions::get(ncplan::conditions_of(nc), cond::DRAINED)
                    .map(|c| from_time(&c.last_transition_time));
                let min = chrono::Duration::from_std(self.config.min_drain_time)
                    .unwrap_or(chrono::Duration::MAX);
                match started {
                    None => {
                        set_condition(
                            &nc_api,
                            nc,
                            cond::DRAINED,
                            ConditionStatus::Unknown,
                            "Draining",
                            "",
                            now,
                        )
                        .await?;
                        return Ok(Action::requeue(self.config.min_drain_time));
                    }
                    Some(s) if now < s + min => {
                        return Ok(Action::requeue(
                            (s + min - now).to_std().unwrap_or(self.config.drain_poll),
                        ));
                    }
                    Some(_) => {
                        set_condition(
                            &nc_api,
                            nc,
                            cond::DRAINED,
                            ConditionStatus::True,
                            cond::DRAINED,
                            "",
                            now,
                        )
                        .await?;
                        ctx.metrics
                            .nodes
                            .drained
                            .with_label_values(&[node_label(&node, labels::NODEPOOL)])
                            .inc();
                        return Ok(Action::requeue(Duration::from_millis(10)));
                    }
                }
            }

            // 5. Volumes.
            let past_deadline = deadline.is_some_and(|d| now >= d);
            // Volumes of pods the drain leaves running never detach: do not wait for them.
            let snapshot = ctx.state.snapshot();
            let volumes = snapshot.volumes();
            let kept_volumes: std::collections::BTreeSet<String> = pods
                .iter()
                .filter(|p| !drain::drainable(p, now, stuck))
                .flat_map(|p| {
                    let ns = p.metadata.namespace.clone().unwrap_or_default();
                    p.spec
                        .iter()
                        .flat_map(|s| s.volumes.iter().flatten())
                        .filter_map(|v| v.persistent_volume_claim.as_ref())
                        .filter_map(|c| {
                            volumes
                                .pvcs
                                .get(&format!("{ns}/{}", c.claim_name))
                                .and_then(|pvc| pvc.volume_name.clone())
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            let blocking: Vec<String> = snapshot
                .volume_attachments_for_node(&name)
                .iter()
                .filter(|va| {
                    va.persistent_volume
                        .as_ref()
                        .is_none_or(|pv| !kept_volumes.contains(pv))
                })
                .map(|va| va.name.clone())
                .collect();
            if let Some(nc) = &nodeclaim {
                if blocking.is_empty() {
                    if !ncplan::condition_is(nc, cond::VOLUMES_DETACHED, ConditionStatus::True) {
                        set_condition(
                            &nc_api,
                            nc,
                            cond::VOLUMES_DETACHED,
                            ConditionStatus::True,
                            cond::VOLUMES_DETACHED,
                            "",
                            now,
                        )
                        .await?;
                        return Ok(Action::requeue(Duration::from_millis(10)));
                    }
                } else if past_deadline {
                    if !ncplan::condition_is(nc, cond::VOLUMES_DETACHED, ConditionStatus::False) {
                        set_condition(
                            &nc_api,
                            nc,
                            cond::VOLUMES_DETACHED,
                            ConditionStatus::False,
                            "TerminationGracePeriodElapsed",
                            "",
                            now,
                        )
                        .await?;
                        return Ok(Action::requeue(Duration::from_millis(10)));
                    }
                } else {
                    set_condition(
                        &nc_api,
                        nc,
                        cond::VOLUMES_DETACHED,
                        ConditionStatus::Unknown,
                        "AwaitingVolumeDetachment",
                        "",
                        now,
                    )
                    .await?;
                }
            }
            if !blocking.is_empty() && !past_deadline {
                ctx.recorder
                    .publish(Event {
                        involved: node.object_ref(&()),
                        type_: EventType::Normal,
                        reason: "AwaitingVolumeDetachment",
                        message: format!(
                            "Awaiting deletion of bound volumeattachments ({})",
                            blocking.join(", ")
                        ),
                        dedupe_values: vec![name.clone()],
                        dedupe_window: None,
                    })
                    .await;
                return Ok(Action::requeue(self.config.drain_poll));
            }

            // 6. Instance.
            // Without a NodeClaim the provider still needs the provider ID to terminate.
            let mut target = nodeclaim.clone().unwrap_or_else(|| NodeClaim {
                metadata: Default::default(),
                spec: empty_spec(),
                status: None,
            });
            target
                .status
                .get_or_insert_with(Default::default)
                .provider_id = Some(pid.clone());
            match cloud.delete(&target).await {
                Ok(()) => {
                    if let Some(nc) = &nodeclaim
                        && !ncplan::condition_is(
                            nc,
                            cond::INSTANCE_TERMINATING,
                            ConditionStatus::True,
                        )
                    {
                        set_condition(
                            &nc_api,
                            nc,
                            cond::INSTANCE_TERMINATING,
                            ConditionStatus::True,
                            cond::INSTANCE_TERMINATING,
                            "",
                            now,
                        )
                        .await?;
                    }
                    return Ok(Action::requeue(self.config.instance_termination_poll));
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }

        // 7. Release the Node.
        let finalizers: Vec<&String> = node
            .finalizers()
            .iter()
            .filter(|f| *f != labels::TERMINATION_FINALIZER)
            .collect();
        match node_api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {
                    "finalizers": finalizers,
                    "resourceVersion": node.metadata.resource_version,
                }})),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
        let pool = node_label(&node, labels::NODEPOOL);
        let m = &ctx.metrics.nodes;
        m.terminated
            .with_label_values(&[pool, node_label(&node, labels::ZONE)])
            .inc();
        let secs = |from: DateTime<Utc>| {
            now.signed_duration_since(from)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64()
        };
        if let Ok(h) = m.termination_duration.with_label_values(&[pool]) {
            h.observe(secs(deleted_at));
        }
        if let Some(created) = node.metadata.creation_timestamp.as_ref().map(from_time) {
            m.lifetime_duration
                .with_label_values(&[pool])
                .observe(secs(created));
        }
        info!(Node = %name, "node terminated");
        Ok(Action::await_change())
    }
}

fn empty_spec() -> karpenter_apis::nodeclaim::NodeClaimSpec {
    karpenter_apis::nodeclaim::NodeClaimSpec {
        taints: vec![],
        startup_taints: vec![],
        requirements: vec![],
        resources: Default::default(),
        node_class_ref: karpenter_apis::common::NodeClassReference {
            group: String::new(),
            kind: String::new(),
            name: String::new(),
        },
        termination_grace_period: None,
        expire_after: None,
    }
}

/// Sets one (non-root) condition on the NodeClaim's status if it changes.
async fn set_condition(
    api: &Api<NodeClaim>,
    nc: &NodeClaim,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let mut st = nc.status.clone().unwrap_or_default();
    if !conditions::set(
        &mut st.conditions,
        type_,
        status,
        reason,
        message,
        nc.metadata.generation.unwrap_or(0),
        &to_time(now),
    ) {
        return Ok(());
    }
    match api
        .patch_status(
            &nc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"resourceVersion": nc.metadata.resource_version},
                "status": {"conditions": st.conditions},
            })),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Runs `node.termination` and its eviction queue until `shutdown` turns true. Evictions use
/// `eviction_client`, which must not retry 429s itself (`kube::Config::default_retry = false`):
/// kube-rs's default retry would sit on a PodDisruptionBudget refusal for minutes.
pub async fn run(
    ctx: Arc<Context>,
    config: TerminationConfig,
    eviction_client: kube::Client,
    shutdown: watch::Receiver<bool>,
) {
    Arc::new(Termination::new(config, eviction_client))
        .run(ctx, shutdown)
        .await;
}
