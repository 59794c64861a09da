//! Pure decisions of the NodeClaim lifecycle: what to do given a NodeClaim, the Nodes observed
//! for it and the time. No I/O; the reconcilers apply the results.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, Taint};
use karpenter_apis::common::ConditionStatus;
use karpenter_apis::conditions::{self, nodeclaim as cond};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_cloudprovider::CloudProviderError;
use serde_json::{Value, json};

use super::{LifecycleConfig, from_time};

/// Upstream truncates launch-failure messages on the `Launched` condition to this many chars.
pub const MESSAGE_LIMIT: usize = 300;

/// Reasons of the `Registered`/`Initialized` conditions and liveness.
pub mod reason {
    /// `Launched=Unknown` when the provider gave no reason of its own.
    pub const LAUNCH_FAILED: &str = "LaunchFailed";
    /// No Node with the provider ID yet.
    pub const NODE_NOT_FOUND: &str = "NodeNotFound";
    /// More than one Node has the provider ID.
    pub const MULTIPLE_NODES_FOUND: &str = "MultipleNodesFound";
    /// The Node is not Ready.
    pub const NODE_NOT_READY: &str = "NodeNotReady";
    /// A startup taint is still on the Node.
    pub const STARTUP_TAINTS_EXIST: &str = "StartupTaintsExist";
    /// A known ephemeral taint is still on the Node.
    pub const KNOWN_EPHEMERAL_TAINTS_EXIST: &str = "KnownEphemeralTaintsExist";
    /// A requested extended resource has no allocatable on the Node.
    pub const RESOURCE_NOT_REGISTERED: &str = "ResourceNotRegistered";
}

/// Truncates a message to [`MESSAGE_LIMIT`] characters.
pub fn truncate_message(message: &str) -> String {
    message.chars().take(MESSAGE_LIMIT).collect()
}

/// The NodeClaim's labels after launch: what the provider resolved, overridden by what the
/// NodeClaim already had (user and template labels win).
pub fn merge_labels(
    own: &BTreeMap<String, String>,
    resolved: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = resolved.clone();
    out.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// What a failed launch leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchFailure {
    /// Delete the NodeClaim so the next provisioning round picks other offerings; publish an
    /// event with `event_reason` and count `nodeclaims_disrupted_total{reason=metric_reason}`.
    Delete {
        /// Event reason.
        event_reason: &'static str,
        /// `reason` label.
        metric_reason: &'static str,
        /// Event message.
        message: String,
    },
    /// Keep the NodeClaim with `Launched=Unknown` and retry with backoff.
    Retry {
        /// Condition reason.
        reason: String,
        /// Condition message (truncated).
        message: String,
    },
}

/// How the lifecycle reacts to a launch error.
pub fn classify_launch_error(name: &str, error: &CloudProviderError) -> LaunchFailure {
    match error {
        CloudProviderError::InsufficientCapacity { .. } => LaunchFailure::Delete {
            event_reason: "InsufficientCapacityError",
            metric_reason: "insufficient_capacity",
            message: truncate_message(&format!("NodeClaim {name} event: {error}")),
        },
        CloudProviderError::NodeClassNotReady { .. } => LaunchFailure::Delete {
            event_reason: "NodeClassNotReady",
            metric_reason: "nodeclass_not_ready",
            message: truncate_message(&format!("NodeClaim {name} event: {error}")),
        },
        CloudProviderError::Create {
            condition_reason,
            condition_message,
        } => LaunchFailure::Retry {
            reason: condition_reason.clone(),
            message: truncate_message(condition_message),
        },
        other => LaunchFailure::Retry {
            reason: reason::LAUNCH_FAILED.to_string(),
            message: truncate_message(&other.to_string()),
        },
    }
}

/// Liveness verdict for a NodeClaim that has not registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// Registered (or deleting): liveness no longer applies.
    NotApplicable,
    /// Still within its deadlines; re-check after this long at the latest.
    Alive(Duration),
    /// Past a deadline: delete with this `nodeclaims_disrupted_total` reason.
    Expired(&'static str),
}

/// Launch within `launch_timeout` and register within `registration_timeout` of creation.
pub fn liveness(nc: &NodeClaim, now: DateTime<Utc>, config: &LifecycleConfig) -> Liveness {
    let conds = conditions_of(nc);
    if nc.metadata.deletion_timestamp.is_some() || conditions::is_true(conds, cond::REGISTERED) {
        return Liveness::NotApplicable;
    }
    let Some(created) = nc.metadata.creation_timestamp.as_ref().map(from_time) else {
        return Liveness::NotApplicable;
    };
    let age = now
        .signed_duration_since(created)
        .to_std()
        .unwrap_or_default();
    let launched = conditions::is_true(conds, cond::LAUNCHED);
    if !launched && age >= config.launch_timeout {
        return Liveness::Expired("launch_timeout");
    }
    if age >= config.registration_timeout {
        return Liveness::Expired("registration_timeout");
    }
    let next = if launched {
        config.registration_timeout
    } else {
        config.launch_timeout
    };
    Liveness::Alive(next.saturating_sub(age))
}

/// The NodeClaim's conditions (empty without status).
pub fn conditions_of(nc: &NodeClaim) -> &[karpenter_apis::common::Condition] {
    nc.status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default()
}

/// `status.providerID`, if set.
pub fn provider_id(nc: &NodeClaim) -> Option<&str> {
    nc.status
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .filter(|p| !p.is_empty())
}

/// What registration finds.
#[derive(Debug, Clone, PartialEq)]
pub enum Registration {
    /// No Node has the provider ID yet.
    NodeNotFound,
    /// More than one Node has it (an invariant violation upstream refuses to resolve).
    MultipleNodesFound(Vec<String>),
    /// Exactly one Node: sync it.
    Sync {
        /// The Node's name.
        node_name: String,
        /// Merge patch to apply to the Node (with its resourceVersion), if anything changes.
        patch: Option<Value>,
        /// This sync is the first (the Node did not carry `karpenter.sh/registered` yet):
        /// count the Node as created.
        newly_registered: bool,
        /// The Node came up without `karpenter.sh/unregistered` (warn: the provider should
        /// register nodes with it so nothing schedules before Karpenter synced them).
        unregistered_taint_missing: bool,
    },
}

fn same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

/// Registration of `nc` given the Nodes carrying its provider ID: labels, annotations and
/// (unless the Node says `karpenter.sh/do-not-sync-taints: "true"`) taints and startup taints
/// copied onto the Node, `karpenter.sh/unregistered` removed, the termination finalizer and an
/// owner reference to the NodeClaim added, `karpenter.sh/registered=true`.
pub fn registration(nc: &NodeClaim, nodes: &[Arc<Node>]) -> Registration {
    let node = match nodes {
        [] => return Registration::NodeNotFound,
        [one] => one,
        many => {
            return Registration::MultipleNodesFound(
                many.iter()
                    .map(|n| n.metadata.name.clone().unwrap_or_default())
                    .collect(),
            );
        }
    };
    let md = &node.metadata;
    let node_name = md.name.clone().unwrap_or_default();
    let node_labels = md.labels.clone().unwrap_or_default();
    let already_synced = node_labels.get(labels::REGISTERED).map(String::as_str) == Some("true");
    let taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let unregistered_present = taints.iter().any(|t| t.key == labels::TAINT_UNREGISTERED);

    let mut new_labels = node_labels.clone();
    new_labels.extend(nc.metadata.labels.clone().unwrap_or_default());
    new_labels.insert(labels::REGISTERED.to_string(), "true".to_string());

    let node_annotations = md.annotations.clone().unwrap_or_default();
    let mut new_annotations = node_annotations.clone();
    new_annotations.extend(nc.metadata.annotations.clone().unwrap_or_default());

    let mut new_taints: Vec<Taint> = taints
        .iter()
        .filter(|t| t.key != labels::TAINT_UNREGISTERED)
        .cloned()
        .collect();
    let sync_taints = node_labels
        .get(labels::DO_NOT_SYNC_TAINTS)
        .map(String::as_str)
        != Some("true");
    // Startup taints only on first sync: afterwards something else removes them on purpose.
    if sync_taints && !already_synced {
        for t in nc.spec.taints.iter().chain(&nc.spec.startup_taints) {
            if !new_taints.iter().any(|x| same_taint(x, t)) {
                new_taints.push(t.clone());
            }
        }
    }

    let mut finalizers = md.finalizers.clone().unwrap_or_default();
    let finalizer_missing = !finalizers
        .iter()
        .any(|f| f == labels::TERMINATION_FINALIZER);
    if finalizer_missing {
        finalizers.push(labels::TERMINATION_FINALIZER.to_string());
    }
    let nc_uid = nc.metadata.uid.clone().unwrap_or_default();
    let mut owners = md.owner_references.clone().unwrap_or_default();
    let owner_missing = !nc_uid.is_empty() && !owners.iter().any(|o| o.uid == nc_uid);
    if owner_missing {
        owners.push(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "karpenter.sh/v1".to_string(),
                kind: "NodeClaim".to_string(),
                name: nc.metadata.name.clone().unwrap_or_default(),
                uid: nc_uid,
                block_owner_deletion: Some(true),
                controller: None,
            },
        );
    }

    let mut patch = serde_json::Map::new();
    let mut metadata = serde_json::Map::new();
    if new_labels != node_labels {
        metadata.insert("labels".into(), json!(new_labels));
    }
    if new_annotations != node_annotations {
        metadata.insert("annotations".into(), json!(new_annotations));
    }
    if finalizer_missing {
        metadata.insert("finalizers".into(), json!(finalizers));
    }
    if owner_missing {
        metadata.insert("ownerReferences".into(), json!(owners));
    }
    if new_taints != taints {
        patch.insert("spec".into(), json!({ "taints": new_taints }));
    }
    let patch = if metadata.is_empty() && patch.is_empty() {
        None
    } else {
        metadata.insert("resourceVersion".into(), json!(md.resource_version));
        patch.insert("metadata".into(), Value::Object(metadata));
        Some(Value::Object(patch))
    };
    Registration::Sync {
        node_name,
        patch,
        newly_registered: !already_synced,
        unregistered_taint_missing: !already_synced && !unregistered_present,
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn taint_string(t: &Taint) -> String {
    match &t.value {
        Some(v) if !v.is_empty() => format!("{}={}:{}", t.key, v, t.effect),
        _ => format!("{}:{}", t.key, t.effect),
    }
}

const CORE_RESOURCES: [&str; 4] = ["cpu", "memory", "pods", "ephemeral-storage"];

fn is_zero_quantity(q: &str) -> bool {
    let digits: String = q
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse::<f64>().map_or(true, |v| v == 0.0)
}

/// Whether the registered Node is initialized: Ready, no startup taint of the NodeClaim left,
/// no known ephemeral taint left, every requested extended resource allocatable. `Err` carries
/// the `Initialized=Unknown` reason and message.
pub fn initialization(nc: &NodeClaim, node: &Node) -> Result<(), (&'static str, String)> {
    if !node_ready(node) {
        return Err((
            reason::NODE_NOT_READY,
            "Node status is NotReady".to_string(),
        ));
    }
    let taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    if let Some(t) = nc.spec.startup_taints.iter().find(|st| {
        taints
            .iter()
            .any(|t| same_taint(t, st) && t.value == st.value)
    }) {
        return Err((
            reason::STARTUP_TAINTS_EXIST,
            format!("StartupTaint {:?} still exists", taint_string(t)),
        ));
    }
    if let Some(t) = taints
        .iter()
        .find(|t| labels::is_ephemeral_taint(&t.key, t.value.as_deref(), &t.effect))
    {
        return Err((
            reason::KNOWN_EPHEMERAL_TAINTS_EXIST,
            format!("KnownEphemeralTaint {:?} still exists", taint_string(t)),
        ));
    }
    let allocatable = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default();
    let missing: BTreeSet<&str> = nc
        .spec
        .resources
        .requests
        .keys()
        .filter(|r| !CORE_RESOURCES.contains(&r.as_str()))
        .filter(|r| allocatable.get(*r).is_none_or(|q| is_zero_quantity(&q.0)))
        .map(String::as_str)
        .collect();
    if let Some(first) = missing.first() {
        return Err((
            reason::RESOURCE_NOT_REGISTERED,
            format!("Resource {first:?} was requested but not registered"),
        ));
    }
    Ok(())
}

/// When all pods must be gone: `deletionTimestamp + terminationGracePeriod`, if both are set.
pub fn termination_deadline(nc: &NodeClaim) -> Option<DateTime<Utc>> {
    let deleted = nc.metadata.deletion_timestamp.as_ref().map(from_time)?;
    let tgp = nc.spec.termination_grace_period.as_ref()?.as_std();
    Some(deleted + chrono::Duration::from_std(tgp).unwrap_or(chrono::Duration::MAX))
}

/// `termination_mode` label: `graceful` without a TGP, `eventual` with a positive one,
/// `forceful` with a zero one.
pub fn termination_mode(nc: &NodeClaim) -> &'static str {
    match &nc.spec.termination_grace_period {
        None => "graceful",
        Some(d) if d.as_std().is_zero() => "forceful",
        Some(_) => "eventual",
    }
}

/// Whether a condition has this status.
pub fn condition_is(nc: &NodeClaim, type_: &str, status: ConditionStatus) -> bool {
    conditions::get(conditions_of(nc), type_).is_some_and(|c| c.status == status)
}

/// What `nodeclaim.garbagecollection` does in one pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcPlan {
    /// Registered NodeClaims whose instance is gone and whose Node is not Ready.
    pub delete_nodeclaims: Vec<String>,
    /// Provider IDs of instances no NodeClaim owns (only when leaked-instance GC is on).
    pub terminate_instances: Vec<String>,
}

/// One NodeClaim as garbage collection sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct GcNodeClaim {
    /// Name.
    pub name: String,
    /// `status.providerID`.
    pub provider_id: Option<String>,
    /// `Registered=True`.
    pub registered: bool,
    /// Already deleting.
    pub deleting: bool,
    /// Its Node is Ready.
    pub node_ready: bool,
}

/// Garbage collection: NodeClaims whose instance the provider no longer lists (and whose Node
/// is not Ready) are deleted; instances older than `min_age`, not shutting down, whose provider
/// ID no NodeClaim records and whose name is not that of a NodeClaim still waiting for its
/// provider ID, are terminated (this also catches a duplicate launched for a NodeClaim that
/// recorded another instance).
pub fn garbage_collect(
    nodeclaims: &[GcNodeClaim],
    instances: &[NodeClaim],
    now: DateTime<Utc>,
    leaked: Option<Duration>,
) -> GcPlan {
    let live: BTreeSet<&str> = instances.iter().filter_map(provider_id).collect();
    let mut plan = GcPlan::default();
    for nc in nodeclaims {
        if nc.registered
            && !nc.deleting
            && !nc.node_ready
            && nc.provider_id.as_deref().is_some_and(|p| !live.contains(p))
        {
            plan.delete_nodeclaims.push(nc.name.clone());
        }
    }
    if let Some(min_age) = leaked {
        // A NodeClaim still without provider ID may be about to record this instance; one
        // with a different provider ID has another instance, so this one is a duplicate.
        let awaiting: BTreeSet<&str> = nodeclaims
            .iter()
            .filter(|n| n.provider_id.is_none())
            .map(|n| n.name.as_str())
            .collect();
        let pids: BTreeSet<&str> = nodeclaims
            .iter()
            .filter_map(|n| n.provider_id.as_deref())
            .collect();
        for i in instances {
            let Some(pid) = provider_id(i) else { continue };
            let name = i.metadata.name.as_deref().unwrap_or_default();
            let old_enough = i
                .metadata
                .creation_timestamp
                .as_ref()
                .map(from_time)
                .is_some_and(|c| {
                    now.signed_duration_since(c)
                        .to_std()
                        .is_ok_and(|age| age >= min_age)
                });
            if old_enough
                && i.metadata.deletion_timestamp.is_none()
                && !awaiting.contains(name)
                && !pids.contains(pid)
            {
                plan.terminate_instances.push(pid.to_string());
            }
        }
    }
    plan.delete_nodeclaims.sort();
    plan.terminate_instances.sort();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use karpenter_apis::common::{Condition, NodeClassReference};
    use karpenter_apis::nodeclaim::{NodeClaimSpec, NodeClaimStatus};

    use crate::nodeclaim::to_time;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    /// NodeClaim builder.
    #[derive(Clone)]
    struct C(NodeClaim);

    fn claim() -> C {
        C(NodeClaim {
            metadata: kube::api::ObjectMeta {
                name: Some("nc".into()),
                uid: Some("uid-nc".into()),
                creation_timestamp: Some(to_time(t0())),
                labels: Some([("team".to_string(), "a".to_string())].into()),
                ..Default::default()
            },
            spec: NodeClaimSpec {
                taints: vec![],
                startup_taints: vec![],
                requirements: vec![],
                resources: Default::default(),
                node_class_ref: NodeClassReference {
                    group: "karpenter.k8s.aws".into(),
                    kind: "EC2NodeClass".into(),
                    name: "default".into(),
                },
                termination_grace_period: None,
                expire_after: None,
            },
            status: Some(NodeClaimStatus::default()),
        })
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: None,
        }
    }

    impl C {
        fn condition(mut self, type_: &str) -> C {
            self.0.status.as_mut().unwrap().conditions.push(Condition {
                type_: type_.into(),
                status: ConditionStatus::True,
                observed_generation: Some(0),
                last_transition_time: to_time(t0()),
                reason: type_.into(),
                message: String::new(),
            });
            self
        }
        fn startup_taint(mut self, key: &str) -> C {
            self.0.spec.startup_taints.push(taint(key, "NoSchedule"));
            self
        }
        fn taint(mut self, key: &str) -> C {
            self.0.spec.taints.push(taint(key, "NoSchedule"));
            self
        }
        fn request(mut self, name: &str, q: &str) -> C {
            self.0
                .spec
                .resources
                .requests
                .insert(name.into(), Quantity(q.into()));
            self
        }
    }

    /// Node builder.
    #[derive(Clone)]
    struct N(Node);

    fn node(name: &str) -> N {
        N(Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                provider_id: Some("aws:///z/i-1".into()),
                taints: Some(vec![taint(labels::TAINT_UNREGISTERED, "NoExecute")]),
                ..Default::default()
            }),
            status: Some(NodeStatus::default()),
        })
    }

    impl N {
        fn ready(mut self) -> N {
            self.0.status.as_mut().unwrap().conditions = Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]);
            self
        }
        fn taints(mut self, keys: &[(&str, &str)]) -> N {
            self.0.spec.as_mut().unwrap().taints =
                Some(keys.iter().map(|(k, e)| taint(k, e)).collect());
            self
        }
        fn label(mut self, k: &str, v: &str) -> N {
            self.0
                .metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(k.into(), v.into());
            self
        }
        fn allocatable(mut self, name: &str, q: &str) -> N {
            self.0
                .status
                .as_mut()
                .unwrap()
                .allocatable
                .get_or_insert_with(Default::default)
                .insert(name.into(), Quantity(q.into()));
            self
        }
    }

    fn check_init(c: C, n: N, expected: Result<(), &str>) {
        let got = initialization(&c.0, &n.0).map_err(|(reason, _)| reason);
        assert_eq!(got, expected);
    }

    #[test]
    fn initialization_waits_for_ready_taints_and_resources() {
        let ready = || node("n").ready().taints(&[]);
        check_init(claim(), node("n"), Err(reason::NODE_NOT_READY));
        check_init(claim(), ready(), Ok(()));
        check_init(
            claim().startup_taint("cilium"),
            ready().taints(&[("cilium", "NoSchedule")]),
            Err(reason::STARTUP_TAINTS_EXIST),
        );
        check_init(
            claim(),
            ready().taints(&[(labels::TAINT_NODE_NOT_READY, "NoSchedule")]),
            Err(reason::KNOWN_EPHEMERAL_TAINTS_EXIST),
        );
        check_init(
            claim().request("nvidia.com/gpu", "1").request("cpu", "2"),
            ready().allocatable("nvidia.com/gpu", "0"),
            Err(reason::RESOURCE_NOT_REGISTERED),
        );
        check_init(
            claim().request("nvidia.com/gpu", "1").request("cpu", "2"),
            ready().allocatable("nvidia.com/gpu", "4"),
            Ok(()),
        );
    }

    #[test]
    fn registration_syncs_once_and_reports_what_it_found() {
        let c = claim().taint("dedicated").startup_taint("cilium");
        assert_eq!(registration(&c.0, &[]), Registration::NodeNotFound);
        assert_eq!(
            registration(&c.0, &[Arc::new(node("a").0), Arc::new(node("b").0)]),
            Registration::MultipleNodesFound(vec!["a".into(), "b".into()])
        );

        let Registration::Sync {
            node_name,
            patch: Some(patch),
            newly_registered: true,
            unregistered_taint_missing: false,
        } = registration(&c.0, &[Arc::new(node("a").0)])
        else {
            panic!("expected a first sync")
        };
        assert_eq!(node_name, "a");
        assert_eq!(patch["metadata"]["labels"]["team"], "a");
        assert_eq!(patch["metadata"]["labels"][labels::REGISTERED], "true");
        assert_eq!(
            patch["metadata"]["finalizers"][0],
            labels::TERMINATION_FINALIZER
        );
        assert_eq!(patch["metadata"]["ownerReferences"][0]["uid"], "uid-nc");
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        let taint_keys: Vec<&str> = patch["spec"]["taints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["key"].as_str().unwrap())
            .collect();
        assert_eq!(taint_keys, ["dedicated", "cilium"], "unregistered removed");

        // do-not-sync-taints: only the unregistered taint goes; a missing one is warned about.
        let Registration::Sync {
            patch: Some(patch),
            unregistered_taint_missing: true,
            ..
        } = registration(
            &c.0,
            &[Arc::new(
                node("a")
                    .taints(&[("other", "NoSchedule")])
                    .label(labels::DO_NOT_SYNC_TAINTS, "true")
                    .0,
            )],
        )
        else {
            panic!("expected a sync warning about the missing taint")
        };
        assert!(patch.get("spec").is_none(), "{patch}");
    }

    #[test]
    fn liveness_deadlines_count_from_creation() {
        let config = LifecycleConfig::default();
        let check = |c: C, minutes: i64, expected: Liveness| {
            let now = t0() + chrono::Duration::minutes(minutes);
            assert_eq!(liveness(&c.0, now, &config), expected, "{minutes} min");
        };
        check(claim(), 1, Liveness::Alive(Duration::from_secs(4 * 60)));
        check(claim(), 5, Liveness::Expired("launch_timeout"));
        check(
            claim().condition(cond::LAUNCHED),
            5,
            Liveness::Alive(Duration::from_secs(10 * 60)),
        );
        check(
            claim().condition(cond::LAUNCHED),
            15,
            Liveness::Expired("registration_timeout"),
        );
        check(
            claim()
                .condition(cond::LAUNCHED)
                .condition(cond::REGISTERED),
            60,
            Liveness::NotApplicable,
        );
    }

    #[test]
    fn launch_errors_delete_or_retry() {
        let check = |e: CloudProviderError, expected: &str| {
            let got = match classify_launch_error("nc", &e) {
                LaunchFailure::Delete { metric_reason, .. } => metric_reason.to_string(),
                LaunchFailure::Retry { reason, .. } => reason,
            };
            assert_eq!(got, expected);
        };
        check(
            CloudProviderError::insufficient_capacity("none", vec![]),
            "insufficient_capacity",
        );
        check(
            CloudProviderError::NodeClassNotReady {
                message: "x".into(),
            },
            "nodeclass_not_ready",
        );
        check(
            CloudProviderError::Create {
                condition_reason: "InvalidAMIID".into(),
                condition_message: "m".repeat(400),
            },
            "InvalidAMIID",
        );
        check(
            CloudProviderError::other("throttled"),
            reason::LAUNCH_FAILED,
        );
        assert_eq!(truncate_message(&"x".repeat(400)).len(), MESSAGE_LIMIT);
        let own = BTreeMap::from([("zone".to_string(), "mine".to_string())]);
        let resolved = BTreeMap::from([
            ("zone".to_string(), "theirs".to_string()),
            ("arch".to_string(), "amd64".to_string()),
        ]);
        assert_eq!(
            merge_labels(&own, &resolved),
            BTreeMap::from([
                ("arch".to_string(), "amd64".to_string()),
                ("zone".to_string(), "mine".to_string()),
            ])
        );
    }

    #[test]
    fn garbage_collection_plan() {
        let nc = |name: &str, pid: Option<&str>, registered: bool, ready: bool| GcNodeClaim {
            name: name.into(),
            provider_id: pid.map(String::from),
            registered,
            deleting: false,
            node_ready: ready,
        };
        let instance = |name: &str, pid: &str, age_secs: i64| {
            let mut i = claim().0;
            i.metadata.name = Some(name.into());
            i.metadata.creation_timestamp =
                Some(to_time(t0() - chrono::Duration::seconds(age_secs)));
            i.status.as_mut().unwrap().provider_id = Some(pid.into());
            i
        };
        let claims = [
            nc("alive", Some("p1"), true, false),
            nc("vanished", Some("p2"), true, false),
            nc("vanished-but-ready", Some("p3"), true, true),
            nc("in-flight", None, false, false),
        ];
        let instances = [
            instance("alive", "p1", 600),
            instance("in-flight", "p4", 600),
            instance("leaked", "p5", 600),
            instance("young", "p6", 5),
            instance("alive", "p7", 600),
        ];
        let plan = garbage_collect(&claims, &instances, t0(), Some(Duration::from_secs(30)));
        assert_eq!(plan.delete_nodeclaims, ["vanished"]);
        assert_eq!(
            plan.terminate_instances,
            ["p5", "p7"],
            "p7 duplicates alive's p1"
        );
        assert!(
            garbage_collect(&claims, &instances, t0(), None)
                .terminate_instances
                .is_empty()
        );
    }
}
