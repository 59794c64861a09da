//! The status controllers through the real `operator::run` on the embedded cluster: a NodePool
//! and a NodeClaim that launches, registers and initializes publish upstream's
//! "Status condition transitioned" events, the terminated NodeClaim publishes `Finalized`, and
//! the scrape (text exposition) has the `operator_<kind>_*` families with upstream's types,
//! whose per-object series go with their objects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "e2e_env/mod.rs"]
mod env;

use std::collections::BTreeMap;

use env::{Leadership, Replica, World, WorldOptions, deployment, eventually, nodeclass, nodepool};
use karpenter_apis::common::Condition;
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::NodePool;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use serde_json::json;

/// The scrape: family types (`# TYPE`) and samples (name, labels, value).
struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    fn of(replica: &Replica) -> Scrape {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&replica.registry.gather())
            .unwrap();
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => (name.to_string(), parse_labels(rest.trim_end_matches('}'))),
            };
            samples.push((name, labels, value.parse().unwrap()));
        }
        Scrape { types, samples }
    }

    /// Samples of `name` whose labels include every pair of `want`.
    fn matching(&self, name: &str, want: &[(&str, &str)]) -> Vec<&BTreeMap<String, String>> {
        self.samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, labels, _)| labels)
            .collect()
    }

    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    fn assert_type(&self, family: &str, kind: &str) {
        assert_eq!(
            self.types.get(family).map(String::as_str),
            Some(kind),
            "type of {family}"
        );
    }
}

/// Label pairs of one sample (values are plain names here: no escapes needed).
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    s.split("\",")
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once("=\"")?;
            Some((k.to_string(), v.trim_end_matches('"').to_string()))
        })
        .collect()
}

/// The message upstream publishes for a condition reaching its current status from Unknown.
fn from_unknown(c: &Condition) -> String {
    let mut m = format!(
        "Status condition transitioned, Type: {}, Status: Unknown -> {}, Reason: {}",
        c.type_, c.status, c.reason
    );
    if !c.message.is_empty() {
        m.push_str(&format!(", Message: {}", c.message));
    }
    m
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("{type_} missing from {conditions:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodeclaim_lifecycle_publishes_status_events_and_metrics() {
    let world = World::start(WorldOptions::default()).await;
    let mut replica = Replica::start(&world, "first", Leadership::Fixed);
    world.apply(nodeclass("default")).await;

    // A NodePool that can launch nothing proves the status watches are running (its series
    // appear), and its deletion proves per-object series go with the object.
    world
        .apply(nodepool("probe", json!({"limits": {"cpu": "0"}})))
        .await;
    let probe = [("name", "probe")];
    eventually(30, "series of the probe NodePool", async || {
        let s = Scrape::of(&replica);
        (!s.matching("operator_nodepool_status_condition_count", &probe)
            .is_empty())
        .then_some(())
    })
    .await;
    Api::<NodePool>::all(world.client.clone())
        .delete("probe", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        30,
        "series of the deleted probe NodePool gone",
        async || {
            let s = Scrape::of(&replica);
            (s.matching("operator_nodepool_status_condition_count", &probe)
                .is_empty()
                && s.matching(
                    "operator_nodepool_status_condition_current_status_seconds",
                    &probe,
                )
                .is_empty()
                && s.matching("operator_status_condition_count", &probe)
                    .is_empty())
            .then_some(())
        },
    )
    .await;

    // The NodePool becomes Ready after the watch started: one event per dependent and root.
    world.apply(nodepool("general", json!({}))).await;
    let pools: Api<NodePool> = Api::all(world.client.clone());
    let pool = eventually(30, "NodePool general Ready", async || {
        let np = pools.get("general").await.ok()?;
        let conditions = np.status.as_ref()?.conditions.clone();
        (conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status.as_str() == "True"))
        .then_some(conditions)
    })
    .await;
    for type_ in ["ValidationSucceeded", "NodeClassReady", "Ready"] {
        let want = from_unknown(condition(&pool, type_));
        eventually(30, &format!("NodePool event {want}"), async || {
            world
                .events("general", type_)
                .await
                .contains(&want)
                .then_some(())
        })
        .await;
    }

    // A NodeClaim launches, registers and initializes.
    world
        .apply(deployment("default", "inflate", 1, "1", json!({})))
        .await;
    let claim = eventually(90, "a Ready NodeClaim", async || {
        world
            .nodeclaims()
            .await
            .into_iter()
            .find(|nc| env::condition_true(nc, "Ready"))
    })
    .await;
    let name = claim.name_any();
    let conditions = claim.status.clone().unwrap().conditions;
    for type_ in ["Launched", "Registered", "Initialized", "Ready"] {
        let want = from_unknown(condition(&conditions, type_));
        eventually(30, &format!("NodeClaim event {want}"), async || {
            world
                .events(&name, type_)
                .await
                .contains(&want)
                .then_some(())
        })
        .await;
    }
    let node_name = claim.status.as_ref().unwrap().node_name.clone();
    let node_name = node_name.expect("a registered NodeClaim names its Node");
    let node_finalizers = world
        .node(&node_name)
        .await
        .and_then(|n| n.metadata.finalizers)
        .unwrap_or_default();
    assert!(
        node_finalizers
            .iter()
            .any(|x| x == labels::TERMINATION_FINALIZER),
        "{node_finalizers:?}"
    );

    // Live objects have their gauges, with the copied object labels.
    let live = eventually(
        30,
        "status gauges of the NodeClaim and its Node",
        async || {
            let s = Scrape::of(&replica);
            let claim_ready = s.matching(
                "operator_nodeclaim_status_condition_count",
                &[
                    ("name", name.as_str()),
                    ("type", "Ready"),
                    ("status", "True"),
                    ("karpenter_sh_nodepool", "general"),
                    ("karpenter_k8s_aws_ec2nodeclass", "default"),
                ],
            );
            let node_ready = s.matching(
                "operator_node_status_condition_count",
                &[
                    ("name", node_name.as_str()),
                    ("type", "Ready"),
                    ("karpenter_sh_nodepool", "general"),
                ],
            );
            (claim_ready.len() == 1 && !node_ready.is_empty()).then_some(s)
        },
    )
    .await;
    for kind in ["nodeclaim", "nodepool", "node"] {
        live.assert_type(&format!("operator_{kind}_status_condition_count"), "gauge");
        live.assert_type(
            &format!("operator_{kind}_status_condition_current_status_seconds"),
            "gauge",
        );
        live.assert_type(
            &format!("operator_{kind}_status_condition_transitions_total"),
            "counter",
        );
    }
    live.assert_type("operator_status_condition_count", "gauge");
    assert_eq!(
        live.matching(
            "operator_status_condition_count",
            &[
                ("name", name.as_str()),
                ("group", "karpenter.sh"),
                ("kind", "NodeClaim"),
                ("type", "Ready"),
            ],
        )
        .len(),
        1
    );
    // Nodes have no deprecated duplicates.
    assert!(
        live.matching(
            "operator_status_condition_count",
            &[("name", node_name.as_str())]
        )
        .is_empty()
    );
    assert!(
        live.sum(
            "operator_nodeclaim_status_condition_transitions_total",
            &[
                ("type", "Ready"),
                ("status", "True"),
                ("karpenter_sh_nodepool", "general"),
            ],
        ) >= 1.0
    );
    // Time spent Unknown before Launched/Registered/Initialized/Ready.
    for type_ in ["Launched", "Registered", "Initialized", "Ready"] {
        assert!(
            live.sum(
                "operator_nodeclaim_status_condition_transition_seconds_count",
                &[("type", type_), ("status", "Unknown")],
            ) >= 1.0,
            "transition_seconds of {type_}"
        );
    }
    live.assert_type(
        "operator_nodeclaim_status_condition_transition_seconds",
        "histogram",
    );

    // A restarted controller first only records what it lists: the objects' gauges come back
    // but no transition is published again.
    replica.kill();
    let replica = Replica::start(&world, "second", Leadership::Fixed);
    eventually(
        30,
        "the restarted replica lists the NodeClaim",
        async || {
            let s = Scrape::of(&replica);
            (!s.matching(
                "operator_nodeclaim_status_condition_count",
                &[
                    ("name", name.as_str()),
                    ("type", "Ready"),
                    ("status", "True"),
                ],
            )
            .is_empty())
            .then_some(())
        },
    )
    .await;
    for type_ in ["Launched", "Registered", "Initialized", "Ready"] {
        assert_eq!(
            world.events(&name, type_).await.len(),
            1,
            "{type_} events of {name} after a restart"
        );
    }
    assert_eq!(world.events("general", "Ready").await.len(), 1);

    // Termination: the NodeClaim (and its Node) go; Finalized is published and their series go.
    world.scale("default", "inflate", 0).await;
    Api::<NodeClaim>::all(world.client.clone())
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    eventually(90, "the NodeClaim and its Node gone", async || {
        (world.nodeclaim(&name).await.is_none() && world.node(&node_name).await.is_none())
            .then_some(())
    })
    .await;
    eventually(30, "Finalized event of the NodeClaim", async || {
        world
            .events(&name, "Finalized")
            .await
            .contains(&"Finalized karpenter.sh/termination".to_string())
            .then_some(())
    })
    .await;
    eventually(30, "Finalized event of the Node", async || {
        world
            .events(&node_name, "Finalized")
            .await
            .contains(&"Finalized karpenter.sh/termination".to_string())
            .then_some(())
    })
    .await;
    let gone = eventually(
        30,
        "series of the gone NodeClaim and Node deleted",
        async || {
            let s = Scrape::of(&replica);
            let claim = [("name", name.as_str())];
            let node = [("name", node_name.as_str())];
            (s.matching("operator_nodeclaim_status_condition_count", &claim)
                .is_empty()
                && s.matching(
                    "operator_nodeclaim_status_condition_current_status_seconds",
                    &claim,
                )
                .is_empty()
                && s.matching(
                    "operator_nodeclaim_termination_current_time_seconds",
                    &claim,
                )
                .is_empty()
                && s.matching("operator_status_condition_count", &claim)
                    .is_empty()
                && s.matching("operator_node_status_condition_count", &node)
                    .is_empty()
                && s.sum(
                    "operator_nodeclaim_termination_duration_seconds_count",
                    &[("karpenter_sh_nodepool", "general")],
                ) >= 1.0)
                .then_some(s)
        },
    )
    .await;
    gone.assert_type(
        "operator_nodeclaim_termination_duration_seconds",
        "histogram",
    );
    gone.assert_type("operator_termination_duration_seconds", "histogram");
    assert!(
        gone.sum(
            "operator_termination_duration_seconds_count",
            &[("group", "karpenter.sh"), ("kind", "NodeClaim")],
        ) >= 1.0
    );
    // The Ready NodePool keeps its series.
    assert_eq!(
        gone.matching(
            "operator_nodepool_status_condition_count",
            &[("name", "general"), ("type", "Ready"), ("status", "True")],
        )
        .len(),
        1
    );
    // Still one event per transition: a replay by the restarted replica would have been
    // published before its Finalized events, which are visible by now.
    for type_ in ["Launched", "Registered", "Initialized", "Ready"] {
        assert_eq!(world.events(&name, type_).await.len(), 1, "{type_} events");
    }
}
