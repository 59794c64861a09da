use std::collections::BTreeMap;
use std::sync::Arc;

use karpenter_apis::ec2nodeclass::EC2NodeClass;
use karpenter_scheduling::model::NodeClassRef;
use karpenter_scheduling::results::{NodePoolRejection, Rejection};
use serde_json::json;

use karpenter_scheduling::RequirementSpec;

use super::*;

fn nodepool(extra: serde_json::Value) -> NodePool {
    let mut base = json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {"name": "general", "uid": "np-uid", "generation": 1},
        "spec": {"template": {
            "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
            "spec": {
                "requirements": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}],
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "taints": [{"key": "dedicated", "value": "a", "effect": "NoSchedule"}],
                "startupTaints": [{"key": "agent", "effect": "NoExecute"}],
                "expireAfter": "24h",
                "terminationGracePeriod": "1h"
            }}},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}
    });
    merge(&mut base, extra);
    serde_json::from_value(base).unwrap()
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn new_claim() -> NewNodeClaim {
    let mut reqs = Requirements::new();
    reqs.add(labels::ARCH, Requirement::in_values(["amd64"]));
    reqs.add(
        labels::HOSTNAME,
        Requirement::in_values(["hostname-placeholder-1"]),
    );
    reqs.add("example.com/rack", Requirement::in_values(["r1"]));
    reqs.add(
        labels::CAPACITY_TYPE,
        Requirement::in_values(["on-demand", "spot"]),
    );
    NewNodeClaim {
        hostname: "hostname-placeholder-1".into(),
        nodepool: "general".into(),
        requirements: reqs,
        instance_types: vec![Arc::from("m5.large"), Arc::from("m5.xlarge")],
        instance_type_min_values: Some(2),
        capacity_types: vec!["on-demand".into(), "spot".into()],
        cheapest_price: 0.1,
        requests: Resources::new().with("cpu", 1500).with("pods", 3),
        daemonset_overhead: Resources::new().with("cpu", 500).with("pods", 2),
        pods: vec!["p1".into()],
        labels: BTreeMap::from([("example.com/rack".to_string(), "r1".to_string())]),
        annotations: BTreeMap::from([(
            labels::NODECLAIM_MIN_VALUES_RELAXED.to_string(),
            "false".to_string(),
        )]),
        taints: vec![],
        startup_taints: vec![],
        node_class_ref: NodeClassRef {
            group: "karpenter.k8s.aws".into(),
            kind: "EC2NodeClass".into(),
            name: "default".into(),
        },
        min_values_relaxed: false,
    }
}

#[test]
fn nodeclaim_carries_what_upstream_puts_on_it() {
    let np = nodepool(json!({}));
    let nc = nodeclaim_for(&new_claim(), &np);
    let md = &nc.metadata;
    assert_eq!(md.generate_name.as_deref(), Some("general-"));
    assert_eq!(md.name, None);
    let owner = &md.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.api_version.as_str(),
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str(),
            owner.block_owner_deletion,
            owner.controller
        ),
        (
            "karpenter.sh/v1",
            "NodePool",
            "general",
            "np-uid",
            Some(true),
            None
        )
    );
    let l = md.labels.as_ref().unwrap();
    let expected: BTreeMap<String, String> = [
        ("team", "a"),
        (labels::NODEPOOL, "general"),
        (labels::AWS_EC2NODECLASS, "default"),
        ("example.com/rack", "r1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(l, &expected);
    let a = md.annotations.as_ref().unwrap();
    assert_eq!(a["note"], "x");
    assert_eq!(a[labels::NODEPOOL_HASH], nodepool_hash(&np));
    assert_eq!(
        a[labels::NODEPOOL_HASH_VERSION],
        NODEPOOL_HASH_VERSION_VALUE
    );
    assert_eq!(a[labels::NODECLAIM_MIN_VALUES_RELAXED], "false");
    assert_eq!(
        md.finalizers.as_deref(),
        Some(&[labels::TERMINATION_FINALIZER.to_string()][..])
    );
    let reqs: BTreeMap<&str, (&str, Vec<&str>, Option<u32>)> = nc
        .spec
        .requirements
        .iter()
        .map(|r| {
            (
                r.key.as_str(),
                (
                    r.operator.as_str(),
                    r.values.iter().map(String::as_str).collect(),
                    r.min_values,
                ),
            )
        })
        .collect();
    assert_eq!(
        reqs,
        BTreeMap::from([
            (labels::ARCH, ("In", vec!["amd64"], None)),
            (
                labels::CAPACITY_TYPE,
                ("In", vec!["on-demand", "spot"], None)
            ),
            ("example.com/rack", ("In", vec!["r1"], None)),
            (
                labels::INSTANCE_TYPE,
                ("In", vec!["m5.large", "m5.xlarge"], Some(2))
            ),
        ])
    );
    assert_eq!(nc.spec.resources.requests["cpu"].0, "1500m");
    assert_eq!(nc.spec.resources.requests["pods"].0, "3");
    assert_eq!(nc.spec.taints, np.spec.template.spec.taints);
    assert_eq!(nc.spec.startup_taints, np.spec.template.spec.startup_taints);
    assert_eq!(
        nc.spec
            .expire_after
            .as_ref()
            .map(|d| d.to_string())
            .as_deref(),
        Some("24h")
    );
    assert!(nc.spec.termination_grace_period.is_some());
    assert_eq!(nc.spec.node_class_ref.name, "default");
    // It serializes as an object the API server accepts (no status, kind set).
    let wire = serde_json::to_value(&nc).unwrap();
    assert_eq!(wire["kind"], "NodeClaim");
    assert!(wire.get("status").is_none_or(|s| s.is_null()));
}

#[test]
fn limits_compare_current_usage() {
    let limits = |pairs: &[(&str, i64)]| -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };
    let cases: Vec<(BTreeMap<String, i64>, Resources, Option<&str>)> = vec![
        (limits(&[]), Resources::new().with("cpu", 100_000), None),
        (
            limits(&[("cpu", 4000)]),
            Resources::new().with("cpu", 4000),
            None,
        ),
        (
            limits(&[("cpu", 4000)]),
            Resources::new().with("cpu", 6000),
            Some("cpu resource usage of 6 exceeds limit of 4"),
        ),
        (
            limits(&[("cpu", 4000), ("nodes", 1)]),
            Resources::new().with("cpu", 2000).with("nodes", 2),
            Some("nodes resource usage of 2 exceeds limit of 1"),
        ),
    ];
    for (l, usage, want) in cases {
        assert_eq!(
            exceeded_limit(&l, &usage).as_deref(),
            want,
            "{l:?} {usage:?}"
        );
    }
}

fn class(ready: Option<&str>) -> EC2NodeClass {
    let mut v = json!({"apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": {"name": "default"}, "spec": {}});
    if let Some(status) = ready {
        v["status"] = json!({"conditions": [{"type": "Ready", "status": status, "reason": "R", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn usable_nodepools() {
    let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "UnhealthyDependents", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    let cases: Vec<(NodePool, Option<EC2NodeClass>, Result<(), NodePoolSkip>)> = vec![
        (nodepool(json!({})), Some(class(None)), Ok(())),
        (nodepool(json!({})), Some(class(Some("True"))), Ok(())),
        (
            nodepool(json!({})),
            Some(class(Some("False"))),
            Err(NodePoolSkip::NodeClassNotReady("R".into())),
        ),
        (
            nodepool(json!({})),
            None,
            Err(NodePoolSkip::NodeClassNotReady("NodeClassNotFound".into())),
        ),
        (
            nodepool(not_ready),
            Some(class(None)),
            Err(NodePoolSkip::NotReady),
        ),
        (
            nodepool(json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}})),
            Some(class(None)),
            Err(NodePoolSkip::Deleting),
        ),
        (
            nodepool(json!({"spec": {"replicas": 2}})),
            Some(class(None)),
            Err(NodePoolSkip::Static),
        ),
    ];
    for (np, nc, want) in cases {
        assert_eq!(usable_nodepool(&np, nc.as_ref()), want, "{:?}", np.metadata);
    }
}

#[test]
fn nominated_messages() {
    let cases = [
        (Some("nc-1"), None, "Pod should schedule on: nodeclaim/nc-1"),
        (None, Some("n-1"), "Pod should schedule on: node/n-1"),
        (
            Some("nc-1"),
            Some("n-1"),
            "Pod should schedule on: nodeclaim/nc-1, node/n-1",
        ),
    ];
    for (nc, node, want) in cases {
        assert_eq!(nominated_message(nc, node), want);
    }
}

#[test]
fn plan_from_results() {
    let pod = |uid: &str| PodRef {
        uid: uid.into(),
        namespace: "default".into(),
        name: format!("pod-{uid}"),
    };
    let pods: BTreeMap<String, PodRef> = ["p1", "p2", "p3", "p4", "p5", "p6", "p7"]
        .iter()
        .map(|u| (u.to_string(), pod(u)))
        .collect();
    let np = nodepool(json!({}));
    let pools = BTreeMap::from([(
        "general".to_string(),
        (np, BTreeMap::from([("cpu".to_string(), 4000)])),
    )]);
    let mut orphan = new_claim();
    orphan.nodepool = "gone".into();
    orphan.pods = vec!["p6".into()];
    let results = SchedulingResults {
        new_nodeclaims: vec![new_claim(), orphan],
        existing_placements: BTreeMap::from([("p2".to_string(), "node-a".to_string())]),
        unschedulable: BTreeMap::from([
            (
                "p3".to_string(),
                PodError::Ignored(IgnoreReason::NodePoolDoesNotExist),
            ),
            (
                "p4".to_string(),
                PodError::Ignored(IgnoreReason::MatchFields),
            ),
            (
                "p5".to_string(),
                PodError::Unschedulable {
                    existing_nodes: 0,
                    nodepools: vec![NodePoolRejection {
                        nodepool: "general".into(),
                        reason: Rejection::LimitsExceeded {
                            resources: vec!["cpu".into()],
                        },
                    }],
                },
            ),
            // A stopped solve did not reach p7: no failure, no event, it stays pending.
            ("p7".to_string(), PodError::NotTried),
        ]),
        relaxed: BTreeMap::new(),
        stopped: true,
    };
    let p = plan(&results, &pods, &pools, |name| NodeTarget {
        key: format!("aws:///{name}"),
        nodeclaim: None,
        node: Some(name.to_string()),
    });
    assert_eq!(p.creates.len(), 1);
    assert_eq!(p.creates[0].pods, vec![pod("p1")]);
    assert_eq!(p.creates[0].limits["cpu"], 4000);
    assert_eq!(
        p.nominations,
        vec![Nomination {
            pod: pod("p2"),
            target: NodeTarget {
                key: "aws:///node-a".into(),
                nodeclaim: None,
                node: Some("node-a".into())
            }
        }]
    );
    let failures: BTreeMap<&str, (Option<&str>, bool)> = p
        .failures
        .iter()
        .map(|f| (f.pod.uid.as_str(), (f.message.as_deref(), f.ignored)))
        .collect();
    assert_eq!(
        failures["p3"],
        (None, true),
        "nodepool DoesNotExist is silent"
    );
    assert_eq!(
        failures["p4"],
        (
            Some("Failed to schedule pod, ignoring pod, node selector terms use matchFields"),
            true
        )
    );
    let (msg, ignored) = failures["p5"];
    assert!(!ignored);
    assert!(
        msg.unwrap()
            .starts_with("Failed to schedule pod, incompatible with nodepool \"general\", all available instance types exceed limits for nodepool (cpu)"),
        "{msg:?}"
    );
    assert!(
        failures["p6"]
            .0
            .unwrap()
            .contains("nodepool \"gone\" not found")
    );
    assert!(
        !failures.contains_key("p7"),
        "a pod not tried is no failure"
    );
    assert_eq!((p.unschedulable_count(), p.ignored_count()), (2, 2));
}

// ---- effective zone ------------------------------------------------------------------------

struct ZoneCase {
    selector: Option<&'static str>,
    terms: Vec<Vec<RequirementSpec>>,
}

fn zone_pod() -> ZoneCase {
    ZoneCase {
        selector: None,
        terms: Vec::new(),
    }
}

impl ZoneCase {
    fn selector(mut self, zone: &'static str) -> Self {
        self.selector = Some(zone);
        self
    }
    fn term(mut self, specs: &[(&str, Operator, &[&str])]) -> Self {
        self.terms.push(
            specs
                .iter()
                .map(|(k, op, v)| RequirementSpec::new(k, *op, v))
                .collect(),
        );
        self
    }
}

fn check_zone(case: ZoneCase, expected: &str) {
    let mut pod = karpenter_scheduling::PodView::default();
    if let Some(z) = case.selector {
        pod.node_selector
            .insert(labels::ZONE.to_string(), z.to_string());
    }
    pod.required_node_affinity = case.terms;
    let zones: BTreeSet<String> = ["us-west-2a", "us-west-2b", "us-west-2c"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(effective_zone(&pod, &zones), expected);
}

#[test]
fn effective_zone_is_the_single_zone_a_pod_allows() {
    use Operator::*;
    const ZONE: &str = labels::ZONE;
    check_zone(zone_pod(), FLEXIBLE_ZONE);
    check_zone(
        zone_pod().term(&[("kubernetes.io/arch", In, &["amd64"])]),
        FLEXIBLE_ZONE,
    );
    check_zone(zone_pod().term(&[(ZONE, Exists, &[])]), FLEXIBLE_ZONE);
    check_zone(zone_pod().selector("us-west-2b"), "us-west-2b");
    // A zone no NodePool offers is still the pod's effective zone.
    check_zone(zone_pod().selector("eu-central-1a"), "eu-central-1a");
    check_zone(
        zone_pod().term(&[(ZONE, In, &["us-west-2a"])]),
        "us-west-2a",
    );
    check_zone(
        zone_pod().term(&[(ZONE, In, &["us-west-2a", "us-west-2b"])]),
        FLEXIBLE_ZONE,
    );
    check_zone(
        zone_pod().term(&[(ZONE, NotIn, &["us-west-2a", "us-west-2b"])]),
        "us-west-2c",
    );
    // Terms are ORed; expressions within a term ANDed; the selector ANDs with both.
    check_zone(
        zone_pod()
            .term(&[(ZONE, In, &["us-west-2a"])])
            .term(&[(ZONE, In, &["us-west-2b"])]),
        FLEXIBLE_ZONE,
    );
    check_zone(
        zone_pod().term(&[(ZONE, In, &["us-west-2a"])]).term(&[(
            "kubernetes.io/arch",
            In,
            &["amd64"],
        )]),
        FLEXIBLE_ZONE,
    );
    check_zone(
        zone_pod().term(&[
            (ZONE, In, &["us-west-2a", "us-west-2b"]),
            (ZONE, NotIn, &["us-west-2b"]),
        ]),
        "us-west-2a",
    );
    check_zone(
        zone_pod()
            .selector("us-west-2b")
            .term(&[(ZONE, In, &["us-west-2a", "us-west-2b"])]),
        "us-west-2b",
    );
    check_zone(
        zone_pod()
            .selector("us-west-2c")
            .term(&[(ZONE, In, &["us-west-2a"])]),
        NO_ZONE,
    );
    check_zone(zone_pod().term(&[(ZONE, DoesNotExist, &[])]), NO_ZONE);
}
