//! Table cases: one `check(name, scenario, expect)` per case.

use karpenter_apis::labels::{self, ARCH, CAPACITY_TYPE, HOSTNAME, INSTANCE_TYPE, ZONE};

use crate::model::{InstanceType, TaintEffect::*, WhenUnsatisfiable::*};
use crate::requirements::Operator::*;
use crate::resources::CPU;
use crate::results::{PodError, Relaxation};
use crate::solver::{MinValuesPolicy, PreferencePolicy, SolveOptions};
use crate::testing::*;

const CPU_LABEL: &str = labels::AWS_INSTANCE_CPU;

fn default_pool() -> NodePoolBuilder {
    nodepool("default")
}

fn base() -> Scenario {
    scenario().nodepool(default_pool())
}

fn labelled_catalog() -> Vec<InstanceType> {
    [1, 2, 4, 8, 16]
        .iter()
        .map(|&n| {
            instance_type(&format!("c-{n}"))
                .cpu(n)
                .mem(&format!("{}Gi", 2 * n))
                .label(CPU_LABEL, &n.to_string())
                .label(
                    labels::AWS_INSTANCE_FAMILY,
                    if n < 8 { "small" } else { "big" },
                )
                .everywhere(0.05 * n as f64)
                .build()
        })
        .collect()
}

fn gpu_type() -> InstanceType {
    instance_type("g-4")
        .cpu(4)
        .mem("16Gi")
        .res("nvidia.com/gpu", "1")
        .everywhere(1.0)
        .build()
}

#[test]
fn resources() {
    check(
        "1 cpu fits the 1-core type",
        base().pod(pod().name("p").cpu("1")),
        expect().claims(1).placed(1).cheapest_type_of("p", "c-1"),
    );
    check(
        "1.5 cpu needs 2 cores",
        base().pod(pod().name("p").cpu("1.5")),
        expect().cheapest_type_of("p", "c-2"),
    );
    check(
        "3 cpu needs 4 cores",
        base().pod(pod().name("p").cpu("3")),
        expect().cheapest_type_of("p", "c-4"),
    );
    check(
        "millicores",
        base().pod(pod().name("p").cpu("2001m")),
        expect().cheapest_type_of("p", "c-4"),
    );
    check(
        "too big names closest miss",
        base().pod(pod().name("p").cpu("17")),
        expect()
            .claims(0)
            .unschedulable(&["p"])
            .reason_contains("p", "closest c-16")
            .reason_contains("p", "cpu needs 17"),
    );
    check(
        "memory drives size",
        base().pod(pod().name("p").cpu("100m").mem("3Gi")),
        expect().cheapest_type_of("p", "c-2"),
    );
    check(
        "memory Mi",
        base().pod(pod().name("p").mem("2049Mi")),
        expect().cheapest_type_of("p", "c-2"),
    );
    check(
        "too much memory",
        base().pod(pod().name("p").mem("33Gi")),
        expect()
            .unschedulable(&["p"])
            .reason_contains("p", "memory"),
    );
    check(
        "ten 1-cpu pods share one claim",
        base().pods(pods(10, "p", pod().cpu("1"))),
        expect().claims(1).placed(10),
    );
    check(
        "twenty 1-cpu pods need two claims",
        base().pods(pods(20, "p", pod().cpu("1"))),
        expect().claims(2).placed(20),
    );
    check(
        "gpu pod lands on the gpu type",
        scenario()
            .nodepool(default_pool().types(
                vec![gpu_type(), instance_type("c-8").cpu(8).mem("16Gi").everywhere(0.1).build()],
            ))
            .pod(pod().name("p").cpu("1").res("nvidia.com/gpu", "1")),
        expect().instance_types_of("p", &["g-4"]),
    );
    check(
        "gpu pod without gpu types",
        base().pod(pod().name("p").res("nvidia.com/gpu", "1")),
        expect()
            .unschedulable(&["p"])
            .reason_contains("p", "nvidia.com/gpu"),
    );
    check(
        "neuron extended resource",
        scenario()
            .nodepool(default_pool().types(vec![
                    instance_type("inf")
                        .cpu(4)
                        .mem("8Gi")
                        .res("aws.amazon.com/neuron", "2")
                        .everywhere(0.5)
                        .build(),
                ]))
            .pods(pods(3, "p", pod().res("aws.amazon.com/neuron", "1"))),
        expect().claims(2).placed(3),
    );
    check(
        "efa extended resource",
        scenario()
            .nodepool(default_pool().types(vec![
                    instance_type("efa")
                        .cpu(4)
                        .mem("8Gi")
                        .res("vpc.amazonaws.com/efa", "1")
                        .everywhere(0.5)
                        .build(),
                ]))
            .pod(pod().name("p").res("vpc.amazonaws.com/efa", "1")),
        expect().claims(1),
    );
    check(
        "pod slots limit packing",
        scenario()
            .nodepool(default_pool().types(
                vec![instance_type("tiny").cpu(8).mem("8Gi").pods(2).everywhere(0.1).build()],
            ))
            .pods(pods(3, "p", pod().cpu("100m"))),
        expect().claims(2).placed(3),
    );
    check(
        "kube-reserved shrinks allocatable",
        scenario()
            .nodepool(default_pool().types(vec![
                    instance_type("two")
                        .cpu(2)
                        .mem("4Gi")
                        .kube_reserved("100m", "100Mi")
                        .everywhere(0.1)
                        .build(),
                    instance_type("four")
                        .cpu(4)
                        .mem("8Gi")
                        .kube_reserved("100m", "100Mi")
                        .everywhere(0.2)
                        .build(),
                ]))
            .pod(pod().name("p").cpu("2")),
        expect().instance_types_of("p", &["four"]),
    );
    check(
        "1.9 cpu fits under kube-reserved",
        scenario()
            .nodepool(default_pool().types(vec![
                    instance_type("two")
                        .cpu(2)
                        .mem("4Gi")
                        .kube_reserved("100m", "100Mi")
                        .everywhere(0.1)
                        .build(),
                ]))
            .pod(pod().name("p").cpu("1.9")),
        expect().claims(1),
    );
    check(
        "eviction threshold counts",
        scenario()
            .nodepool(default_pool().types(vec![
                    instance_type("m")
                        .cpu(2)
                        .mem("1Gi")
                        .eviction("100Mi")
                        .everywhere(0.1)
                        .build(),
                ]))
            .pod(pod().name("p").mem("1000Mi")),
        expect().unschedulable(&["p"]),
    );
    check(
        "ephemeral storage request",
        scenario()
            .nodepool(default_pool().types(vec![
                    instance_type("small-disk")
                        .cpu(2)
                        .mem("4Gi")
                        .res("ephemeral-storage", "20Gi")
                        .everywhere(0.1)
                        .build(),
                    instance_type("big-disk")
                        .cpu(2)
                        .mem("4Gi")
                        .res("ephemeral-storage", "100Gi")
                        .everywhere(0.2)
                        .build(),
                ]))
            .pod(pod().name("p").res("ephemeral-storage", "50Gi")),
        expect().instance_types_of("p", &["big-disk"]),
    );
    check(
        "offering capacity override is honoured per offering",
        scenario()
            .nodepool(default_pool().types(vec![
                    instance_type("ov")
                        .cpu(2)
                        .mem("4Gi")
                        .offering_with_capacity(
                            "a",
                            "on-demand",
                            0.1,
                            crate::resources::Resources::new()
                                .with(CPU, 8000)
                                .with("memory", 4 << 30)
                                .with("pods", 110),
                        )
                        .offering("b", "on-demand", 0.1)
                        .build(),
                ]))
            .pod(pod().name("p").cpu("4").zone("a")),
        expect().zone("p", "a"),
    );
    check(
        "offering override that only some offerings have is not relied on",
        scenario()
            .nodepool(default_pool().types(vec![
                    instance_type("ov")
                        .cpu(2)
                        .mem("4Gi")
                        .offering_with_capacity(
                            "a",
                            "on-demand",
                            0.1,
                            crate::resources::Resources::new()
                                .with(CPU, 8000)
                                .with("memory", 4 << 30)
                                .with("pods", 110),
                        )
                        .offering("b", "on-demand", 0.1)
                        .build(),
                ]))
            .pod(pod().name("p").cpu("4")),
        expect().unschedulable(&["p"]),
    );
    check(
        "zero-request pod",
        base().pod(pod().name("p")),
        expect().claims(1).placed(1),
    );
    check(
        "spot is cheaper and both capacity types stay allowed",
        base().pod(pod().name("p").cpu("1")),
        expect().capacity_types_of("p", &["on-demand", "spot"]),
    );
    check(
        "on-demand selector",
        base().pod(pod().name("p").capacity_type("on-demand")),
        expect().capacity_types_of("p", &["on-demand"]),
    );
    check(
        "spot selector",
        base().pod(pod().name("p").capacity_type("spot")),
        expect().capacity_types_of("p", &["spot"]),
    );
    check(
        "only unavailable offerings",
        scenario()
            .nodepool(default_pool().types(
                vec![instance_type("x").cpu(4).mem("8Gi").unavailable("a", "spot", 0.1).build()],
            ))
            .pod(pod().name("p")),
        expect().unschedulable(&["p"]).reason_contains(
            "p",
            "nodepool requirements filtered out all available instance types",
        ),
    );
    check(
        "spot-only type and on-demand pod",
        scenario()
            .nodepool(default_pool().types(
                vec![instance_type("x").cpu(4).mem("8Gi").offering("a", "spot", 0.1).build()],
            ))
            .pod(pod().name("p").capacity_type("on-demand")),
        expect()
            .unschedulable(&["p"])
            .reason_contains("p", "no available offering"),
    );
    check(
        "requests include daemonset overhead",
        base()
            .daemonset(pod().name("ds").cpu("500m"))
            .pod(pod().name("p").cpu("1")),
        expect()
            .cheapest_type_of("p", "c-2")
            .that("claim requests include ds", |o| {
                o.results.new_nodeclaims[0].requests.cpu == 1500
            }),
    );
}

#[test]
fn requirements() {
    check(
        "zone selector",
        base().pod(pod().name("p").zone("b")),
        expect().zone("p", "b"),
    );
    check(
        "unknown zone",
        base().pod(pod().name("p").zone("d")),
        expect().unschedulable(&["p"]),
    );
    check(
        "arm64 with only amd64 types",
        base().pod(pod().name("p").node_selector(ARCH, "arm64")),
        expect()
            .unschedulable(&["p"])
            .reason_contains("p", "kubernetes.io/arch"),
    );
    check(
        "arm64 type chosen",
        scenario()
            .nodepool(default_pool().types(vec![
            instance_type("x86").cpu(2).mem("4Gi").everywhere(0.1).build(),
            instance_type("graviton").cpu(2).mem("4Gi").arch("arm64").everywhere(0.2).build()]))
            .pod(pod().name("p").node_selector(ARCH, "arm64")),
        expect().instance_types_of("p", &["graviton"]),
    );
    check(
        "instance-type In",
        base().pod(pod().name("p").require(INSTANCE_TYPE, In, &["c-4"])),
        expect().instance_types_of("p", &["c-4"]),
    );
    check(
        "instance-type NotIn",
        base().pod(
            pod()
                .name("p")
                .cpu("1")
                .require(INSTANCE_TYPE, NotIn, &["c-1", "c-2"]),
        ),
        expect().cheapest_type_of("p", "c-4"),
    );
    let lc = || scenario().nodepool(default_pool().types(labelled_catalog()));
    check(
        "Gt",
        lc().pod(pod().name("p").require(CPU_LABEL, Gt, &["4"])),
        expect().instance_types_of("p", &["c-8", "c-16"]),
    );
    check(
        "Lt",
        lc().pod(pod().name("p").require(CPU_LABEL, Lt, &["4"])),
        expect().instance_types_of("p", &["c-1", "c-2"]),
    );
    check(
        "Gte",
        lc().pod(pod().name("p").require(CPU_LABEL, Gte, &["4"])),
        expect().instance_types_of("p", &["c-4", "c-8", "c-16"]),
    );
    check(
        "Lte",
        lc().pod(pod().name("p").require(CPU_LABEL, Lte, &["2"])),
        expect().instance_types_of("p", &["c-1", "c-2"]),
    );
    check(
        "Gt and Lt",
        lc().pod(
            pod()
                .name("p")
                .require(CPU_LABEL, Gt, &["1"])
                .require(CPU_LABEL, Lt, &["8"]),
        ),
        expect().instance_types_of("p", &["c-2", "c-4"]),
    );
    check(
        "Gt N written back as Gte N+1",
        lc().pod(
            pod()
                .name("p")
                .require(CPU_LABEL, Gt, &["4"])
                .require(CPU_LABEL, Lt, &["100"]),
        ),
        expect().that("claim carries Gte 5 and Lte 99", |o| {
            let specs = o.results.new_nodeclaims[0].requirement_specs();
            specs
                .iter()
                .any(|s| s.key == CPU_LABEL && s.operator == Gte && s.values == vec!["5"])
                && specs
                    .iter()
                    .any(|s| s.key == CPU_LABEL && s.operator == Lte && s.values == vec!["99"])
        }),
    );
    check(
        "family In",
        lc().pod(
            pod()
                .name("p")
                .require(labels::AWS_INSTANCE_FAMILY, In, &["big"]),
        ),
        expect().instance_types_of("p", &["c-8", "c-16"]),
    );
    check(
        "family NotIn",
        lc().pod(
            pod()
                .name("p")
                .require(labels::AWS_INSTANCE_FAMILY, NotIn, &["big"]),
        ),
        expect().instance_types_of("p", &["c-1", "c-2", "c-4"]),
    );
    check(
        "custom key undefined by nodepool",
        base().pod(pod().name("p").node_selector("team", "a")),
        expect()
            .unschedulable(&["p"])
            .reason_contains("p", "undefined"),
    );
    check(
        "custom key from nodepool label",
        scenario()
            .nodepool(default_pool().label("team", "a"))
            .pod(pod().name("p").node_selector("team", "a")),
        expect().claims(1).that("label on claim", |o| {
            o.results.new_nodeclaims[0]
                .labels
                .get("team")
                .map(String::as_str)
                == Some("a")
        }),
    );
    check(
        "custom key value mismatch",
        scenario()
            .nodepool(default_pool().label("team", "a"))
            .pod(pod().name("p").node_selector("team", "b")),
        expect().unschedulable(&["p"]),
    );
    check(
        "custom key from nodepool requirement",
        scenario()
            .nodepool(default_pool().require("team", In, &["a", "b"]))
            .pod(pod().name("p").node_selector("team", "b")),
        expect().that("single-valued custom key becomes a label", |o| {
            o.results.new_nodeclaims[0]
                .labels
                .get("team")
                .map(String::as_str)
                == Some("b")
        }),
    );
    check(
        "custom Exists",
        scenario()
            .nodepool(default_pool().require("team", Exists, &[]))
            .pod(pod().name("p").require("team", Exists, &[])),
        expect()
            .claims(1)
            .that("a concrete label value is generated", |o| {
                o.results.new_nodeclaims[0].labels.contains_key("team")
            }),
    );
    check(
        "NotIn on undefined custom key",
        base().pod(pod().name("p").require("team", NotIn, &["x"])),
        expect().claims(1),
    );
    check(
        "DoesNotExist on undefined custom key",
        base().pod(pod().name("p").require("team", DoesNotExist, &[])),
        expect().claims(1),
    );
    check(
        "DoesNotExist against defined key",
        scenario()
            .nodepool(default_pool().label("team", "a"))
            .pod(pod().name("p").require("team", DoesNotExist, &[])),
        expect().unschedulable(&["p"]),
    );
    check(
        "nodepool zone restriction",
        scenario()
            .nodepool(default_pool().require(ZONE, In, &["a"]))
            .pod(pod().name("p").zone("b")),
        expect()
            .unschedulable(&["p"])
            .reason_contains("p", "topology.kubernetes.io/zone"),
    );
    check(
        "nodepool capacity type restriction",
        scenario()
            .nodepool(default_pool().require(CAPACITY_TYPE, In, &["spot"]))
            .pod(pod().name("p")),
        expect().capacity_types_of("p", &["spot"]),
    );
    check(
        "OR terms: second term used",
        base().pod(
            pod()
                .name("p")
                .require(ZONE, In, &["d"])
                .or_term(&[(ZONE, In, &["b"])]),
        ),
        expect().zone("p", "b").that("relaxation recorded", |o| {
            o.results
                .relaxed
                .get("p")
                .is_some_and(|r| r.contains(&Relaxation::RequiredNodeAffinityTerm))
        }),
    );
    check(
        "OR terms: first term satisfiable",
        base().pod(
            pod()
                .name("p")
                .require(ZONE, In, &["c"])
                .or_term(&[(ZONE, In, &["b"])]),
        ),
        expect().zone("p", "c"),
    );
    check(
        "preferred node affinity honoured",
        base().pod(pod().name("p").prefer(10, ZONE, In, &["c"])),
        expect().zone("p", "c"),
    );
    check(
        "heaviest preference wins",
        base().pod(
            pod()
                .name("p")
                .prefer(1, ZONE, In, &["a"])
                .prefer(50, ZONE, In, &["b"]),
        ),
        expect().zone("p", "b"),
    );
    check(
        "impossible preference relaxed",
        base().pod(pod().name("p").prefer(10, ZONE, In, &["d"])),
        expect().claims(1).that("relaxed", |o| {
            o.results
                .relaxed
                .get("p")
                .is_some_and(|r| r.contains(&Relaxation::PreferredNodeAffinity))
        }),
    );
    check(
        "preferences ignored by policy",
        base()
            .pod(pod().name("p").prefer(10, ZONE, In, &["d"]))
            .options(SolveOptions {
                preference_policy: PreferencePolicy::Ignore,
                ..Default::default()
            }),
        expect()
            .claims(1)
            .that("nothing relaxed", |o| o.results.relaxed.is_empty()),
    );
    check(
        "hostname selector is restricted",
        base().pod(pod().name("p").node_selector(HOSTNAME, "n1")),
        expect().unschedulable(&["p"]).that("ignored", |o| {
            matches!(o.results.unschedulable.get("p"), Some(PodError::Ignored(_)))
        }),
    );
    check(
        "karpenter.sh domain restricted",
        base().pod(pod().name("p").node_selector("karpenter.sh/foo", "x")),
        expect().reason_contains("p", "restricted"),
    );
    check(
        "nodepool DoesNotExist ignored",
        base().pod(pod().name("p").require(labels::NODEPOOL, DoesNotExist, &[])),
        expect().reason_contains("p", "karpenter.sh/nodepool DoesNotExist"),
    );
    check(
        "matchFields ignored",
        base().pod(pod().name("p").match_fields()),
        expect().reason_contains("p", "matchFields"),
    );
    check(
        "invalid Gt value ignored",
        base().pod(pod().name("p").require(CPU_LABEL, Gt, &["many"])),
        expect().reason_contains("p", "invalid requirement"),
    );
    check(
        "select nodepool by name",
        scenario()
            .nodepool(nodepool("a").weight(50))
            .nodepool(nodepool("b"))
            .pod(pod().name("p").node_selector(labels::NODEPOOL, "b")),
        expect().nodepool_of("p", "b"),
    );
    check(
        "legacy zone label normalised",
        base().pod(
            pod()
                .name("p")
                .node_selector("failure-domain.beta.kubernetes.io/zone", "c"),
        ),
        expect().zone("p", "c"),
    );
    check(
        "legacy arch label normalised",
        base().pod(
            pod()
                .name("p")
                .node_selector("beta.kubernetes.io/arch", "arm64"),
        ),
        expect().unschedulable(&["p"]),
    );
    check(
        "legacy instance-type label normalised",
        base().pod(
            pod()
                .name("p")
                .node_selector("beta.kubernetes.io/instance-type", "c-8"),
        ),
        expect().instance_types_of("p", &["c-8"]),
    );
    check(
        "claim labels carry nodepool and nodeclass",
        base().pod(pod().name("p")),
        expect().that("labels", |o| {
            let l = &o.results.new_nodeclaims[0].labels;
            l.get(labels::NODEPOOL).map(String::as_str) == Some("default")
                && l.get(labels::AWS_EC2NODECLASS).map(String::as_str) == Some("default")
        }),
    );
    check(
        "template annotations copied",
        scenario()
            .nodepool(default_pool().annotation("owner", "me"))
            .pod(pod().name("p")),
        expect().that("annotations", |o| {
            o.results.new_nodeclaims[0]
                .annotations
                .get("owner")
                .map(String::as_str)
                == Some("me")
        }),
    );
}

#[test]
fn taints() {
    let tainted =
        || scenario().nodepool(default_pool().taint("dedicated", Some("gpu"), NoSchedule));
    check(
        "untolerated NoSchedule",
        tainted().pod(pod().name("p")),
        expect()
            .unschedulable(&["p"])
            .reason_contains("p", "did not tolerate taint dedicated=gpu:NoSchedule"),
    );
    check(
        "Equal toleration",
        tainted().pod(
            pod()
                .name("p")
                .tolerate("dedicated", Some("gpu"), Some(NoSchedule)),
        ),
        expect().claims(1),
    );
    check(
        "Exists toleration",
        tainted().pod(pod().name("p").tolerate("dedicated", None, None)),
        expect().claims(1),
    );
    check(
        "wildcard toleration",
        tainted().pod(pod().name("p").tolerate_everything()),
        expect().claims(1),
    );
    check(
        "wrong value",
        tainted().pod(pod().name("p").tolerate("dedicated", Some("cpu"), None)),
        expect().unschedulable(&["p"]),
    );
    check(
        "wrong effect",
        tainted().pod(
            pod()
                .name("p")
                .tolerate("dedicated", Some("gpu"), Some(NoExecute)),
        ),
        expect().unschedulable(&["p"]),
    );
    check(
        "NoExecute tolerated",
        scenario()
            .nodepool(default_pool().taint("x", None, NoExecute))
            .pod(pod().name("p").tolerate("x", None, Some(NoExecute))),
        expect().claims(1),
    );
    check(
        "NoExecute untolerated",
        scenario()
            .nodepool(default_pool().taint("x", None, NoExecute))
            .pod(pod().name("p")),
        expect().unschedulable(&["p"]),
    );
    check(
        "PreferNoSchedule relaxed",
        scenario()
            .nodepool(default_pool().taint("soft", None, PreferNoSchedule))
            .pod(pod().name("p")),
        expect()
            .claims(1)
            .that("toleration added by relaxation", |o| {
                o.results
                    .relaxed
                    .get("p")
                    .is_some_and(|r| r.contains(&Relaxation::ToleratePreferNoSchedule))
            }),
    );
    check(
        "PreferNoSchedule pool avoided when another fits",
        scenario()
            .nodepool(
                nodepool("soft")
                    .weight(100)
                    .taint("soft", None, PreferNoSchedule),
            )
            .nodepool(nodepool("plain"))
            .pod(pod().name("p")),
        expect().nodepool_of("p", "plain"),
    );
    check(
        "tainted high-weight pool skipped",
        scenario()
            .nodepool(nodepool("gpu").weight(100).taint("gpu", None, NoSchedule))
            .nodepool(nodepool("general"))
            .pod(pod().name("p")),
        expect().nodepool_of("p", "general"),
    );
    check(
        "startup taints need no toleration",
        scenario()
            .nodepool(default_pool().startup_taint("init", None, NoSchedule))
            .pod(pod().name("p")),
        expect().claims(1).that("startup taint copied", |o| {
            o.results.new_nodeclaims[0].startup_taints.len() == 1
        }),
    );
    check(
        "existing tainted node skipped",
        base()
            .node(node("n1").cpu("4").mem("8Gi").taint("x", None, NoSchedule))
            .pod(pod().name("p")),
        expect().claims(1),
    );
    check(
        "existing tainted node tolerated",
        base()
            .node(node("n1").cpu("4").mem("8Gi").taint("x", None, NoSchedule))
            .pod(pod().name("p").tolerate("x", None, None)),
        expect().claims(0).on_node("p", "n1"),
    );
    check(
        "not-ready taint ignored on uninitialized node",
        base()
            .node(
                node("n1")
                    .cpu("4")
                    .mem("8Gi")
                    .nodepool("default")
                    .taint(labels::TAINT_NODE_NOT_READY, None, NoSchedule)
                    .uninitialized(),
            )
            .pod(pod().name("p")),
        expect().on_node("p", "n1"),
    );
    check(
        "not-ready taint respected on initialized node",
        base()
            .node(node("n1").cpu("4").mem("8Gi").taint(
                labels::TAINT_NODE_NOT_READY,
                None,
                NoSchedule,
            ))
            .pod(pod().name("p")),
        expect().claims(1),
    );
    check(
        "startup taint ignored until initialized",
        base()
            .node(
                node("n1")
                    .cpu("4")
                    .mem("8Gi")
                    .startup_taint("cilium", None, NoSchedule)
                    .uninitialized(),
            )
            .pod(pod().name("p")),
        expect().on_node("p", "n1"),
    );
    // Seed 002: a tainted, labelled NodePool that dedicated workloads tolerate and select.
    let seed2 = || {
        scenario().nodepool(nodepool("default").label("team", "riker").taint(
            "karpenter",
            Some("true"),
            NoSchedule,
        ))
    };
    check(
        "seed 002: tolerate and select",
        seed2().pods(pods(
            3,
            "game",
            pod()
                .cpu("250m")
                .mem("512Mi")
                .node_selector("team", "riker")
                .tolerate("karpenter", Some("true"), Some(NoSchedule)),
        )),
        expect().claims(1).placed(3).that("taint on claim", |o| {
            o.results.new_nodeclaims[0].taints.len() == 1
        }),
    );
    check(
        "seed 002: select without toleration",
        seed2().pod(pod().name("p").node_selector("team", "riker")),
        expect()
            .unschedulable(&["p"])
            .reason_contains("p", "did not tolerate"),
    );
    check(
        "seed 002: tolerate without selecting",
        seed2().pod(pod().name("p").tolerate("karpenter", None, None)),
        expect().claims(1),
    );
}

#[test]
fn existing_nodes() {
    check(
        "fits existing node",
        base()
            .node(node("n1").cpu("4").mem("8Gi"))
            .pod(pod().name("p").cpu("1")),
        expect().claims(0).on_node("p", "n1"),
    );
    check(
        "existing node full",
        base()
            .node(node("n1").cpu("4").mem("8Gi").used_cpu("3500m"))
            .pod(pod().name("p").cpu("1")),
        expect().claims(1),
    );
    check(
        "spill over",
        base()
            .node(node("n1").cpu("4").mem("8Gi"))
            .pods(pods(6, "p", pod().cpu("1"))),
        expect()
            .claims(1)
            .placed(6)
            .that("4 on n1", |o| o.results.existing_placements.len() == 4),
    );
    check(
        "initialized nodes first",
        base()
            .node(node("a-new").cpu("4").mem("8Gi").uninitialized())
            .node(node("b-old").cpu("4").mem("8Gi"))
            .pod(pod().name("p")),
        expect().on_node("p", "b-old"),
    );
    check(
        "name order among equals",
        base()
            .node(node("n2").cpu("4").mem("8Gi"))
            .node(node("n1").cpu("4").mem("8Gi"))
            .pod(pod().name("p")),
        expect().on_node("p", "n1"),
    );
    check(
        "in-flight nodeclaim used",
        base()
            .node(node("nc-1").cpu("4").mem("8Gi").in_flight())
            .pod(pod().name("p")),
        expect().on_node("p", "nc-1"),
    );
    check(
        "zone mismatch on existing",
        base()
            .node(node("n1").cpu("4").mem("8Gi").zone("a"))
            .pod(pod().name("p").zone("b")),
        expect().claims(1).zone("p", "b"),
    );
    check(
        "zone match on existing",
        base()
            .node(node("n1").cpu("4").mem("8Gi").zone("b"))
            .pod(pod().name("p").zone("b")),
        expect().on_node("p", "n1"),
    );
    check(
        "custom label on existing node",
        scenario()
            .node(node("n1").cpu("4").mem("8Gi").label("team", "x"))
            .pod(pod().name("p").node_selector("team", "x")),
        expect().on_node("p", "n1"),
    );
    check(
        "host port in use on existing",
        base()
            .node(node("n1").cpu("4").mem("8Gi").port_in_use(80))
            .pod(pod().name("p").host_port(80)),
        expect().claims(1),
    );
    check(
        "bound pod host port",
        base()
            .node(node("n1").cpu("4").mem("8Gi"))
            .bound(pod().name("b").host_port(443).on_node("n1"))
            .pod(pod().name("p").host_port(443)),
        expect().claims(1),
    );
    check(
        "no nodepool and no room",
        scenario()
            .node(node("n1").cpu("1").mem("1Gi"))
            .pod(pod().name("p").cpu("2")),
        expect().unschedulable(&["p"]),
    );
    check(
        "extended resource on existing",
        scenario()
            .node(node("n1").cpu("4").mem("8Gi"))
            .pod(pod().name("p").res("nvidia.com/gpu", "1")),
        expect()
            .unschedulable(&["p"])
            .reason_contains("p", "existing nodes"),
    );
}

#[test]
fn nodepool_order_and_limits() {
    check(
        "higher weight first",
        scenario()
            .nodepool(nodepool("low").weight(1))
            .nodepool(nodepool("high").weight(90))
            .pod(pod().name("p")),
        expect().nodepool_of("p", "high"),
    );
    check(
        "tie broken by name descending",
        scenario()
            .nodepool(nodepool("alpha"))
            .nodepool(nodepool("beta"))
            .pod(pod().name("p")),
        expect().nodepool_of("p", "beta"),
    );
    check(
        "incompatible heavy pool falls through",
        scenario()
            .nodepool(nodepool("heavy").weight(100).require(ZONE, In, &["a"]))
            .nodepool(nodepool("light"))
            .pod(pod().name("p").zone("c")),
        expect().nodepool_of("p", "light"),
    );
    check(
        "all pools listed in the reason",
        scenario()
            .nodepool(nodepool("one").require(ZONE, In, &["a"]))
            .nodepool(nodepool("two").require(ZONE, In, &["b"]))
            .pod(pod().name("p").zone("c")),
        expect()
            .reason_contains("p", "incompatible with nodepool \"two\"")
            .reason_contains("p", "incompatible with nodepool \"one\""),
    );
    check(
        "pool without types",
        scenario()
            .nodepool(nodepool("empty").require(INSTANCE_TYPE, In, &["nope"]))
            .pod(pod().name("p")),
        expect().reason_contains(
            "p",
            "nodepool requirements filtered out all available instance types",
        ),
    );
    check(
        "in-flight claims fill before new ones",
        base().pods(pods(4, "p", pod().cpu("2"))),
        expect().claims(1),
    );
    check(
        "cpu limit filters large types",
        scenario()
            .nodepool(default_pool().limit("cpu", "4"))
            .pod(pod().name("p").cpu("1")),
        expect().instance_types_of("p", &["c-1", "c-2", "c-4"]),
    );
    check(
        "cpu limit blocks second claim",
        scenario()
            .nodepool(default_pool().limit("cpu", "4"))
            .pods(pods(2, "p", pod().cpu("3"))),
        expect()
            .claims(1)
            .unschedulable(&["p-1"])
            .reason_contains("p-1", "exceed limits"),
    );
    check(
        "memory limit",
        scenario()
            .nodepool(default_pool().limit("memory", "4Gi"))
            .pod(pod().name("p").mem("5Gi")),
        expect()
            .unschedulable(&["p"])
            .reason_contains("p", "memory"),
    );
    check(
        "nodes limit",
        scenario()
            .nodepool(default_pool().limit("nodes", "1"))
            .pods(pods(
                2,
                "p",
                pod()
                    .label("app", "x")
                    .anti_affinity(HOSTNAME, &[("app", "x")]),
            )),
        expect()
            .claims(1)
            .reason_contains("p-1", "node limits have been exhausted"),
    );
    check(
        "nodes limit zero",
        scenario()
            .nodepool(default_pool().limit("nodes", "0"))
            .pod(pod().name("p")),
        expect().reason_contains("p", "node limits"),
    );
    check(
        "existing capacity counts against limits",
        scenario()
            .nodepool(default_pool().limit("cpu", "8"))
            .node(
                node("n1")
                    .cpu("6")
                    .mem("12Gi")
                    .nodepool("default")
                    .used_cpu("6"),
            )
            .pod(pod().name("p").cpu("1")),
        expect().instance_types_of("p", &["c-1", "c-2"]),
    );
    check(
        "limits spill to the next pool",
        scenario()
            .nodepool(nodepool("capped").weight(50).limit("cpu", "2"))
            .nodepool(nodepool("open"))
            .pods(pods(3, "p", pod().cpu("1.5"))),
        expect().placed(3).that("two pools used", |o| {
            o.results
                .new_nodeclaims
                .iter()
                .map(|c| c.nodepool.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                == 2
        }),
    );
    check(
        "shrinking reservation frees limit for later claims",
        scenario()
            .nodepool(default_pool().limit("cpu", "20"))
            .pods(pods(
                2,
                "p",
                pod()
                    .cpu("3")
                    .label("app", "x")
                    .anti_affinity(HOSTNAME, &[("app", "x")]),
            )),
        expect().claims(2).placed(2),
    );
    check(
        "gpu limit",
        scenario()
            .nodepool(
                default_pool()
                    .types(vec![gpu_type()])
                    .limit("nvidia.com/gpu", "1"),
            )
            .pods(pods(2, "p", pod().res("nvidia.com/gpu", "1"))),
        expect().claims(1).unschedulable(&["p-1"]),
    );
}

#[test]
fn min_values() {
    let mv = |n: u32| scenario().nodepool(default_pool().min_values(INSTANCE_TYPE, Exists, &[], n));
    check(
        "minValues 3 keeps 3 types",
        mv(3).pod(pod().name("p").cpu("1")),
        expect().claims(1).that(">= 3 types", |o| {
            o.results.new_nodeclaims[0].instance_types.len() >= 3
        }),
    );
    check(
        "minValues 6 with 5 types fails strict",
        mv(6).pod(pod().name("p")),
        expect()
            .unschedulable(&["p"])
            .reason_contains("p", "minValues"),
    );
    check(
        "minValues best effort",
        mv(6).pod(pod().name("p")).options(SolveOptions {
            min_values_policy: MinValuesPolicy::BestEffort,
            ..Default::default()
        }),
        expect().claims(1).that("annotated", |o| {
            o.results.new_nodeclaims[0]
                .annotations
                .get(labels::NODECLAIM_MIN_VALUES_RELAXED)
                .map(String::as_str)
                == Some("true")
        }),
    );
    check(
        "big pod leaves too few types",
        mv(2).pod(pod().name("p").cpu("9")),
        expect().unschedulable(&["p"]),
    );
    check(
        "minValues on family",
        scenario()
            .nodepool(default_pool().types(labelled_catalog()).min_values(
                labels::AWS_INSTANCE_FAMILY,
                Exists,
                &[],
                2,
            ))
            .pod(pod().name("p").cpu("5")),
        expect().unschedulable(&["p"]),
    );
    check(
        "minValues on family satisfied",
        scenario()
            .nodepool(default_pool().types(labelled_catalog()).min_values(
                labels::AWS_INSTANCE_FAMILY,
                Exists,
                &[],
                2,
            ))
            .pod(pod().name("p").cpu("1")),
        expect().claims(1).that("minValues kept on claim", |o| {
            o.results.new_nodeclaims[0]
                .requirements
                .get(labels::AWS_INSTANCE_FAMILY)
                .and_then(|r| r.min_values)
                == Some(2)
        }),
    );
    check(
        "not annotated when met",
        mv(2).pod(pod().name("p")),
        expect().that("false", |o| {
            o.results.new_nodeclaims[0]
                .annotations
                .get(labels::NODECLAIM_MIN_VALUES_RELAXED)
                .map(String::as_str)
                == Some("false")
        }),
    );
    check(
        "truncation breaks minValues",
        mv(3).pod(pod().name("p")).options(SolveOptions {
            max_instance_types: 2,
            ..Default::default()
        }),
        expect().claims(0).that("truncation error", |o| {
            matches!(
                o.results.unschedulable.get("p"),
                Some(PodError::MinValuesAfterTruncation { .. })
            )
        }),
    );
    check(
        "max instance types truncates cheapest first",
        base().pod(pod().name("p")).options(SolveOptions {
            max_instance_types: 2,
            ..Default::default()
        }),
        expect().instance_types_of("p", &["c-1", "c-2"]),
    );
    let many: Vec<InstanceType> = (0..700)
        .map(|i| {
            instance_type(&format!("t-{i:03}"))
                .cpu(4)
                .mem("8Gi")
                .offering("a", "on-demand", 1.0 + i as f64 / 1000.0)
                .build()
        })
        .collect();
    check(
        "600 cheapest of 700",
        scenario()
            .nodepool(default_pool().types(many))
            .pod(pod().name("p")),
        expect().that("600 types, cheapest first", |o| {
            let c = &o.results.new_nodeclaims[0];
            c.instance_types.len() == 600
                && &*c.instance_types[0] == "t-000"
                && &*c.instance_types[599] == "t-599"
        }),
    );
}

#[test]
fn topology_spread() {
    // Seed 000: 10 inflate pods, 1 CPU each, zone spread ScheduleAnyway.
    check(
        "seed 000: ScheduleAnyway zone spread",
        base().pods(pods(
            10,
            "inflate",
            pod().cpu("1").label("app", "inflate").spread(
                ZONE,
                1,
                ScheduleAnyway,
                &[("app", "inflate")],
            ),
        )),
        expect().placed(10).distinct_zones(3).claims(3),
    );
    check(
        "DoNotSchedule zone spread",
        base().pods(pods(
            6,
            "p",
            pod()
                .label("app", "s")
                .spread(ZONE, 1, DoNotSchedule, &[("app", "s")]),
        )),
        expect()
            .placed(6)
            .distinct_zones(3)
            .that("2 per zone", |o| {
                let mut m = std::collections::BTreeMap::new();
                for p in &o.input.pods {
                    *m.entry(o.label_of(&p.name, ZONE)).or_insert(0) += 1;
                }
                m.values().all(|v| *v == 2)
            }),
    );
    check(
        "maxSkew 2",
        base().pods(pods(
            3,
            "p",
            pod()
                .label("app", "s")
                .spread(ZONE, 2, DoNotSchedule, &[("app", "s")]),
        )),
        expect().placed(3),
    );
    check(
        "hostname spread",
        base().pods(pods(
            3,
            "p",
            pod()
                .label("app", "h")
                .spread(HOSTNAME, 1, DoNotSchedule, &[("app", "h")]),
        )),
        expect().claims(3),
    );
    check(
        "selector not matching",
        base().pods(pods(
            3,
            "p",
            pod()
                .label("app", "h")
                .spread(HOSTNAME, 1, DoNotSchedule, &[("app", "other")]),
        )),
        expect().claims(1),
    );
    check(
        "spread honours pod zone restriction",
        base().pods(pods(
            4,
            "p",
            pod()
                .label("app", "s")
                .require(ZONE, In, &["a", "b"])
                .spread(ZONE, 1, DoNotSchedule, &[("app", "s")]),
        )),
        expect().placed(4).distinct_zones(2),
    );
    check(
        "minDomains forces min 0",
        base().pods(pods(
            4,
            "p",
            pod()
                .label("app", "s")
                .spread_with(crate::model::TopologySpreadConstraint {
                    max_skew: 1,
                    topology_key: ZONE.into(),
                    when_unsatisfiable: DoNotSchedule,
                    label_selector: Some(crate::model::LabelSelector::labels(&[("app", "s")])),
                    min_domains: Some(5),
                    node_affinity_policy: crate::model::InclusionPolicy::Honor,
                    node_taints_policy: crate::model::InclusionPolicy::Ignore,
                    match_label_keys: vec![],
                }),
        )),
        expect()
            .placed(3)
            .unschedulable(&["p-3"])
            .reason_contains("p-3", "topology spread"),
    );
    check(
        "existing pods counted",
        base()
            .node(node("n1").zone("a").cpu("1").mem("1Gi").used_cpu("1"))
            .bound(pod().name("b1").label("app", "s").on_node("n1"))
            .bound(pod().name("b2").label("app", "s").on_node("n1"))
            .pods(pods(
                2,
                "p",
                pod()
                    .label("app", "s")
                    .spread(ZONE, 1, DoNotSchedule, &[("app", "s")]),
            )),
        expect().placed(2).that("new pods avoid zone a", |o| {
            o.label_of("p-0", ZONE).as_deref() != Some("a")
                && o.label_of("p-1", ZONE).as_deref() != Some("a")
        }),
    );
    check(
        "matchLabelKeys split groups",
        base()
            .pods(pods(
                2,
                "v1",
                pod().label("app", "s").label("rev", "1").spread_with(
                    crate::model::TopologySpreadConstraint {
                        max_skew: 1,
                        topology_key: HOSTNAME.into(),
                        when_unsatisfiable: DoNotSchedule,
                        label_selector: Some(crate::model::LabelSelector::labels(&[("app", "s")])),
                        min_domains: None,
                        node_affinity_policy: crate::model::InclusionPolicy::Honor,
                        node_taints_policy: crate::model::InclusionPolicy::Ignore,
                        match_label_keys: vec!["rev".into()],
                    },
                ),
            ))
            .pods(pods(
                2,
                "v2",
                pod().label("app", "s").label("rev", "2").spread_with(
                    crate::model::TopologySpreadConstraint {
                        max_skew: 1,
                        topology_key: HOSTNAME.into(),
                        when_unsatisfiable: DoNotSchedule,
                        label_selector: Some(crate::model::LabelSelector::labels(&[("app", "s")])),
                        min_domains: None,
                        node_affinity_policy: crate::model::InclusionPolicy::Honor,
                        node_taints_policy: crate::model::InclusionPolicy::Ignore,
                        match_label_keys: vec!["rev".into()],
                    },
                ),
            )),
        expect().claims(2).placed(4),
    );
    check(
        "capacity-type spread",
        base().pods(pods(
            2,
            "p",
            pod()
                .label("app", "s")
                .spread(CAPACITY_TYPE, 1, DoNotSchedule, &[("app", "s")]),
        )),
        expect().placed(2).that("one spot one on-demand", |o| {
            o.label_of("p-0", CAPACITY_TYPE) != o.label_of("p-1", CAPACITY_TYPE)
        }),
    );
    check(
        "custom key spread",
        scenario()
            .nodepool(default_pool().require("rack", In, &["r1", "r2"]))
            .pods(pods(
                4,
                "p",
                pod()
                    .label("app", "s")
                    .spread("rack", 1, DoNotSchedule, &[("app", "s")]),
            )),
        expect().placed(4).that("2 per rack", |o| {
            o.input
                .pods
                .iter()
                .filter(|p| o.label_of(&p.name, "rack").as_deref() == Some("r1"))
                .count()
                == 2
        }),
    );
    check(
        "ScheduleAnyway with one zone allowed",
        base().pods(pods(
            3,
            "p",
            pod()
                .zone("a")
                .label("app", "s")
                .spread(ZONE, 1, ScheduleAnyway, &[("app", "s")]),
        )),
        expect().placed(3).distinct_zones(1),
    );
    check(
        "DoNotSchedule with an unlaunchable zone",
        scenario()
            .nodepool(default_pool().types(
                vec![instance_type("x").cpu(4).mem("8Gi").offering("a", "on-demand", 0.1).build()],
            ))
            .domains(ZONE, &["a", "b"])
            .pods(pods(
                2,
                "p",
                pod()
                    .label("app", "s")
                    .spread(ZONE, 1, DoNotSchedule, &[("app", "s")]),
            )),
        expect()
            .placed(1)
            .reason_contains("p-1", "no available offering"),
    );
    check(
        "zone spread picks a viable zone",
        scenario()
            .nodepool(default_pool().types(vec![
            instance_type("small").cpu(1).mem("2Gi").everywhere(0.05).build(),
            instance_type("big").cpu(8).mem("16Gi").offering("b", "on-demand", 0.4).build()]))
            .pod(pod().name("p").cpu("4").label("app", "s").spread(
                ZONE,
                1,
                DoNotSchedule,
                &[("app", "s")],
            )),
        expect().zone("p", "b"),
    );
    check(
        "spread pods and generic pods",
        base()
            .pods(pods(
                3,
                "s",
                pod()
                    .cpu("1")
                    .label("app", "s")
                    .spread(ZONE, 1, DoNotSchedule, &[("app", "s")]),
            ))
            .pods(pods(3, "g", pod().cpu("1"))),
        expect().placed(6).claims(3),
    );
}

#[test]
fn affinity() {
    let with_bound = || {
        base()
            .node(node("n1").zone("b").cpu("1").mem("1Gi").used_cpu("1"))
            .bound(pod().name("db").label("app", "db").on_node("n1"))
    };
    check(
        "zone affinity to running pod",
        with_bound().pod(pod().name("p").affinity(ZONE, &[("app", "db")])),
        expect().zone("p", "b"),
    );
    check(
        "hostname affinity to running pod",
        base()
            .node(node("n1").cpu("4").mem("8Gi"))
            .bound(pod().name("db").label("app", "db").on_node("n1"))
            .pod(pod().name("p").affinity(HOSTNAME, &[("app", "db")])),
        expect().on_node("p", "n1"),
    );
    check(
        "hostname affinity to a full node",
        base()
            .node(node("n1").cpu("1").mem("1Gi").used_cpu("1"))
            .bound(pod().name("db").label("app", "db").on_node("n1"))
            .pod(
                pod()
                    .name("p")
                    .cpu("1")
                    .affinity(HOSTNAME, &[("app", "db")]),
            ),
        expect()
            .unschedulable(&["p"])
            .reason_contains("p", "pod affinity"),
    );
    check(
        "self affinity groups pods in one zone",
        base().pods(pods(
            3,
            "p",
            pod()
                .cpu("6")
                .label("app", "x")
                .affinity(ZONE, &[("app", "x")]),
        )),
        expect().placed(3).distinct_zones(1),
    );
    check(
        "affinity to nothing",
        base().pod(pod().name("p").affinity(ZONE, &[("app", "ghost")])),
        expect().unschedulable(&["p"]),
    );
    check(
        "affinity satisfied by a batch pod",
        base()
            .pod(pod().name("web").cpu("1").affinity(ZONE, &[("app", "db")]))
            .pod(pod().name("db").cpu("2").label("app", "db").zone("c")),
        expect().placed(2).zone("web", "c"),
    );
    check(
        "hostname self affinity",
        base().pods(pods(
            3,
            "p",
            pod().label("app", "x").affinity(HOSTNAME, &[("app", "x")]),
        )),
        expect().claims(1),
    );
    check(
        "affinity namespace list",
        base()
            .node(node("n1").zone("c").cpu("1").mem("1Gi").used_cpu("1"))
            .bound(pod().name("db").ns("data").label("app", "db").on_node("n1"))
            .pod(
                pod()
                    .name("p")
                    .affinity_term(crate::model::PodAffinityTerm {
                        label_selector: Some(crate::model::LabelSelector::labels(&[("app", "db")])),
                        namespaces: vec!["data".into()],
                        namespace_selector: None,
                        topology_key: ZONE.into(),
                    }),
            ),
        expect().zone("p", "c"),
    );
    check(
        "affinity other namespace not seen",
        base()
            .node(node("n1").zone("c").cpu("1").mem("1Gi").used_cpu("1"))
            .bound(pod().name("db").ns("data").label("app", "db").on_node("n1"))
            .pod(pod().name("p").affinity(ZONE, &[("app", "db")])),
        expect().unschedulable(&["p"]),
    );
    check(
        "affinity namespaceSelector",
        base()
            .namespace("data", &[("tier", "storage")])
            .node(node("n1").zone("a").cpu("1").mem("1Gi").used_cpu("1"))
            .bound(pod().name("db").ns("data").label("app", "db").on_node("n1"))
            .pod(
                pod()
                    .name("p")
                    .affinity_term(crate::model::PodAffinityTerm {
                        label_selector: Some(crate::model::LabelSelector::labels(&[("app", "db")])),
                        namespaces: vec![],
                        namespace_selector: Some(crate::model::LabelSelector::labels(&[(
                            "tier", "storage",
                        )])),
                        topology_key: ZONE.into(),
                    }),
            ),
        expect().zone("p", "a"),
    );
    check(
        "empty namespaceSelector means all",
        base()
            .node(node("n1").zone("a").cpu("1").mem("1Gi").used_cpu("1"))
            .bound(
                pod()
                    .name("db")
                    .ns("elsewhere")
                    .label("app", "db")
                    .on_node("n1"),
            )
            .pod(
                pod()
                    .name("p")
                    .affinity_term(crate::model::PodAffinityTerm {
                        label_selector: Some(crate::model::LabelSelector::labels(&[("app", "db")])),
                        namespaces: vec![],
                        namespace_selector: Some(crate::model::LabelSelector::default()),
                        topology_key: ZONE.into(),
                    }),
            ),
        expect().zone("p", "a"),
    );
    check(
        "preferred affinity honoured",
        with_bound().pod(
            pod()
                .name("p")
                .preferred_affinity(10, ZONE, &[("app", "db")]),
        ),
        expect().zone("p", "b"),
    );
    check(
        "preferred affinity relaxed",
        base().pod(
            pod()
                .name("p")
                .preferred_affinity(10, ZONE, &[("app", "ghost")]),
        ),
        expect().claims(1).that("relaxed", |o| {
            o.results
                .relaxed
                .get("p")
                .is_some_and(|r| r.contains(&Relaxation::PreferredPodAffinity))
        }),
    );
}

#[test]
fn anti_affinity() {
    check(
        "hostname anti-affinity",
        base().pods(pods(
            3,
            "p",
            pod()
                .label("app", "x")
                .anti_affinity(HOSTNAME, &[("app", "x")]),
        )),
        expect()
            .claims(3)
            .different_nodes("p-0", "p-1")
            .different_nodes("p-1", "p-2"),
    );
    check(
        "zone anti-affinity caps at zones",
        base().pods(pods(
            4,
            "p",
            pod().label("app", "x").anti_affinity(ZONE, &[("app", "x")]),
        )),
        expect()
            .placed(3)
            .unschedulable(&["p-3"])
            .reason_contains("p-3", "anti-affinity"),
    );
    check(
        "anti-affinity against running pod",
        base()
            .node(node("n1").cpu("4").mem("8Gi"))
            .bound(pod().name("b").label("app", "x").on_node("n1"))
            .pod(pod().name("p").anti_affinity(HOSTNAME, &[("app", "x")])),
        expect().claims(1),
    );
    check(
        "inverse anti-affinity of running pod",
        base()
            .node(node("n1").zone("a").cpu("4").mem("8Gi"))
            .bound(
                pod()
                    .name("b")
                    .on_node("n1")
                    .anti_affinity(ZONE, &[("app", "web")]),
            )
            .pod(pod().name("p").label("app", "web")),
        expect().claims(1).that("not zone a", |o| {
            o.label_of("p", ZONE).as_deref() != Some("a")
        }),
    );
    check(
        "inverse anti-affinity in batch",
        base()
            .pod(
                pod()
                    .name("a")
                    .cpu("2")
                    .anti_affinity(HOSTNAME, &[("app", "web")]),
            )
            .pod(pod().name("w").cpu("1").label("app", "web")),
        expect().placed(2).different_nodes("a", "w"),
    );
    check(
        "anti-affinity other namespace ignored",
        base()
            .node(node("n1").cpu("4").mem("8Gi"))
            .bound(pod().name("b").ns("other").label("app", "x").on_node("n1"))
            .pod(pod().name("p").anti_affinity(HOSTNAME, &[("app", "x")])),
        expect().on_node("p", "n1"),
    );
    check(
        "preferred anti-affinity spreads",
        base().pods(pods(
            2,
            "p",
            pod()
                .label("app", "x")
                .preferred_anti_affinity(10, HOSTNAME, &[("app", "x")]),
        )),
        expect().claims(2),
    );
    check(
        "preferred anti-affinity relaxed when impossible",
        base().pods(pods(
            4,
            "p",
            pod()
                .label("app", "x")
                .preferred_anti_affinity(10, ZONE, &[("app", "x")]),
        )),
        expect().placed(4).that("someone relaxed", |o| {
            o.results
                .relaxed
                .values()
                .any(|r| r.contains(&Relaxation::PreferredPodAntiAffinity))
        }),
    );
    check(
        "preferred anti-affinity ignored by policy",
        base()
            .pods(pods(
                2,
                "p",
                pod()
                    .label("app", "x")
                    .preferred_anti_affinity(10, HOSTNAME, &[("app", "x")]),
            ))
            .options(SolveOptions {
                preference_policy: PreferencePolicy::Ignore,
                ..Default::default()
            }),
        expect().claims(1),
    );
    check(
        "anti-affinity plus filler",
        base()
            .pods(pods(
                3,
                "a",
                pod()
                    .cpu("1")
                    .label("app", "x")
                    .anti_affinity(HOSTNAME, &[("app", "x")]),
            ))
            .pods(pods(6, "g", pod().cpu("1"))),
        expect().claims(3).placed(9),
    );
    check(
        "anti-affinity with null selector selects nothing",
        base().pods(pods(
            2,
            "p",
            pod()
                .label("app", "x")
                .anti_affinity_term(crate::model::PodAffinityTerm {
                    label_selector: None,
                    namespaces: vec![],
                    namespace_selector: None,
                    topology_key: HOSTNAME.into(),
                }),
        )),
        expect().claims(1),
    );
    check(
        "anti-affinity on existing node domain",
        base()
            .node(node("n1").zone("a").cpu("4").mem("8Gi"))
            .bound(pod().name("b").label("app", "x").on_node("n1"))
            .pod(
                pod()
                    .name("p")
                    .zone("a")
                    .anti_affinity(ZONE, &[("app", "x")]),
            ),
        expect().unschedulable(&["p"]),
    );
}

#[test]
fn host_ports_volumes_daemonsets() {
    check(
        "same host port needs two nodes",
        base().pods(pods(2, "p", pod().host_port(8080))),
        expect().claims(2),
    );
    check(
        "different host ports share",
        base()
            .pod(pod().name("a").host_port(80))
            .pod(pod().name("b").host_port(81)),
        expect().claims(1),
    );
    check(
        "different protocol shares",
        base().pod(pod().name("a").host_port(53)).pod({
            let mut b = pod().name("b");
            b.0.host_ports.push(crate::model::HostPort {
                port: 53,
                protocol: "UDP".into(),
                host_ip: String::new(),
            });
            b
        }),
        expect().claims(1),
    );
    check(
        "specific host IPs do not clash",
        base()
            .pod({
                let mut b = pod().name("a");
                b.0.host_ports.push(crate::model::HostPort {
                    port: 80,
                    protocol: "TCP".into(),
                    host_ip: "10.0.0.1".into(),
                });
                b
            })
            .pod({
                let mut b = pod().name("b");
                b.0.host_ports.push(crate::model::HostPort {
                    port: 80,
                    protocol: "TCP".into(),
                    host_ip: "10.0.0.2".into(),
                });
                b
            }),
        expect().claims(1),
    );
    check(
        "daemonset host port clash",
        base()
            .daemonset(pod().name("ds").host_port(9100))
            .pod(pod().name("p").host_port(9100)),
        expect().unschedulable(&["p"]),
    );
    // Volumes.
    check(
        "bound PV zone",
        base()
            .pvc("default", "data", None, Some("pv1"))
            .pv("pv1", Some("b"), Some("ebs.csi.aws.com"))
            .pod(pod().name("p").pvc("data")),
        expect().zone("p", "b"),
    );
    check(
        "WaitForFirstConsumer allowed topologies",
        base()
            .pvc("default", "data", Some("gp3"), None)
            .storage_class("gp3", "ebs.csi.aws.com", true, &["c"])
            .pod(pod().name("p").pvc("data")),
        expect().zone("p", "c"),
    );
    check(
        "Immediate binding adds no topology",
        base()
            .pvc("default", "data", Some("gp3"), None)
            .storage_class("gp3", "ebs.csi.aws.com", false, &["c"])
            .pod(pod().name("p").pvc("data").zone("a")),
        expect().zone("p", "a"),
    );
    check(
        "missing PVC ignores the pod",
        base().pod(pod().name("p").pvc("nope")),
        expect().reason_contains("p", "persistentvolumeclaim"),
    );
    check(
        "missing storage class",
        base()
            .pvc("default", "data", Some("gone"), None)
            .pod(pod().name("p").pvc("data")),
        expect().reason_contains("p", "storageclass"),
    );
    check(
        "PV zone conflicts with selector",
        base()
            .pvc("default", "data", None, Some("pv1"))
            .pv("pv1", Some("b"), None)
            .pod(pod().name("p").pvc("data").zone("a")),
        expect().unschedulable(&["p"]),
    );
    check(
        "existing node in the wrong zone for the PV",
        base()
            .node(node("n1").zone("a").cpu("4").mem("8Gi"))
            .pvc("default", "data", None, Some("pv1"))
            .pv("pv1", Some("b"), None)
            .pod(pod().name("p").pvc("data")),
        expect().claims(1).zone("p", "b"),
    );
    check(
        "volume attach limit",
        base()
            .node(
                node("n1")
                    .cpu("4")
                    .mem("8Gi")
                    .volume_limit("ebs.csi.aws.com", 1)
                    .attached("ebs.csi.aws.com", "vol-0"),
            )
            .pvc("default", "data", None, Some("pv1"))
            .pv("pv1", None, Some("ebs.csi.aws.com"))
            .pod(pod().name("p").pvc("data")),
        expect().claims(1),
    );
    check(
        "volume attach limit with room",
        base()
            .node(
                node("n1")
                    .cpu("4")
                    .mem("8Gi")
                    .volume_limit("ebs.csi.aws.com", 2)
                    .attached("ebs.csi.aws.com", "vol-0"),
            )
            .pvc("default", "data", None, Some("pv1"))
            .pv("pv1", None, Some("ebs.csi.aws.com"))
            .pod(pod().name("p").pvc("data")),
        expect().on_node("p", "n1"),
    );
    check(
        "same volume twice counts once",
        base()
            .node(
                node("n1")
                    .cpu("4")
                    .mem("8Gi")
                    .volume_limit("ebs.csi.aws.com", 1)
                    .attached("ebs.csi.aws.com", "pv1"),
            )
            .pvc("default", "data", None, Some("pv1"))
            .pv("pv1", None, Some("ebs.csi.aws.com"))
            .pod(pod().name("p").pvc("data")),
        expect().on_node("p", "n1"),
    );
    // DaemonSets.
    check(
        "daemonset overhead picks a bigger type",
        base()
            .daemonset(pod().name("ds").cpu("1"))
            .pod(pod().name("p").cpu("1")),
        expect().cheapest_type_of("p", "c-2"),
    );
    check(
        "daemonset not tolerating the pool taint",
        scenario()
            .nodepool(default_pool().taint("t", None, NoSchedule))
            .daemonset(pod().name("ds").cpu("1"))
            .pod(pod().name("p").cpu("1").tolerate("t", None, None)),
        expect().cheapest_type_of("p", "c-1"),
    );
    check(
        "daemonset tolerating the pool taint",
        scenario()
            .nodepool(default_pool().taint("t", None, NoSchedule))
            .daemonset(pod().name("ds").cpu("1").tolerate_everything())
            .pod(pod().name("p").cpu("1").tolerate("t", None, None)),
        expect().cheapest_type_of("p", "c-2"),
    );
    check(
        "daemonset arch selector",
        base()
            .daemonset(pod().name("ds").cpu("1").node_selector(ARCH, "arm64"))
            .pod(pod().name("p").cpu("1")),
        expect().cheapest_type_of("p", "c-1"),
    );
    check(
        "daemonset custom selector absent from pool",
        base()
            .daemonset(pod().name("ds").cpu("1").node_selector("gpu", "true"))
            .pod(pod().name("p").cpu("1")),
        expect().cheapest_type_of("p", "c-1"),
    );
    check(
        "daemonset selecting the pool label",
        scenario()
            .nodepool(default_pool().label("gpu", "true"))
            .daemonset(pod().name("ds").cpu("1").node_selector("gpu", "true"))
            .pod(pod().name("p").cpu("1")),
        expect().cheapest_type_of("p", "c-2"),
    );
    check(
        "daemonset only on some types",
        base()
            .daemonset(
                pod()
                    .name("ds")
                    .cpu("1")
                    .require(INSTANCE_TYPE, In, &["c-1"]),
            )
            .pod(pod().name("p").cpu("1")),
        expect()
            .cheapest_type_of("p", "c-2")
            .that("minimum overhead is zero", |o| {
                o.results.new_nodeclaims[0].daemonset_overhead.cpu == 0
            }),
    );
}

#[test]
fn reserved_and_misc() {
    let reserved = || {
        scenario().nodepool(default_pool().types(vec![
                instance_type("r")
                    .cpu(4)
                    .mem("8Gi")
                    .everywhere(0.2)
                    .reserved("a", 0.00001, "cr-1", 1)
                    .build(),
            ]))
    };
    check(
        "reserved offering used first",
        reserved().pod(pod().name("p")),
        expect()
            .capacity_types_of("p", &["reserved"])
            .zone("p", "a"),
    );
    check(
        "reservation capacity runs out",
        reserved().pods(pods(
            2,
            "p",
            pod()
                .label("app", "x")
                .anti_affinity(HOSTNAME, &[("app", "x")]),
        )),
        expect().claims(2).that("one reserved, one not", |o| {
            o.results
                .new_nodeclaims
                .iter()
                .filter(|c| c.capacity_types == vec!["reserved".to_string()])
                .count()
                == 1
        }),
    );
    check(
        "strict reserved capacity refuses fallback",
        reserved()
            .pods(pods(
                2,
                "p",
                pod()
                    .label("app", "x")
                    .anti_affinity(HOSTNAME, &[("app", "x")]),
            ))
            .options(SolveOptions {
                reserved_capacity_strict: true,
                ..Default::default()
            }),
        expect()
            .claims(1)
            .that("second pod reports exhausted reservation", |o| {
                o.results.unschedulable.values().any(|e| {
                    e.to_string()
                        .contains("karpenter.sh/capacity-type In [reserved]")
                })
            }),
    );
    check(
        "reservation id label pinned",
        reserved().pod(pod().name("p")),
        expect().that("reservation id requirement", |o| {
            o.results.new_nodeclaims[0]
                .requirements
                .get(labels::AWS_CAPACITY_RESERVATION_ID)
                .and_then(|r| r.single_value())
                == Some("cr-1")
        }),
    );
    check(
        "big pods are packed first",
        base()
            .pod(pod().name("small").cpu("1").created(1))
            .pod(pod().name("big").cpu("15").created(2)),
        expect().claims(1).same_node("small", "big"),
    );
    check(
        "display mentions every nodepool",
        scenario()
            .nodepool(nodepool("a").taint("x", None, NoSchedule))
            .nodepool(nodepool("b").require(ZONE, In, &["a"]))
            .pod(pod().name("p").zone("b")),
        expect().that("message", |o| {
            let r = o.reason_of("p").unwrap_or_default();
            r.starts_with("incompatible with nodepool \"b\"")
                && r.contains(
                    "incompatible with nodepool \"a\", did not tolerate taint x:NoSchedule",
                )
        }),
    );
    check(
        "structured reason",
        base().pod(pod().name("p").cpu("64")),
        expect().that("enum data", |o| match o.results.unschedulable.get("p") {
            Some(PodError::Unschedulable { nodepools, .. }) => matches!(
                nodepools[0].reason,
                crate::results::Rejection::NoInstanceTypeFits {
                    closest: Some(_),
                    ..
                }
            ),
            _ => false,
        }),
    );
    check("empty input", scenario(), expect().claims(0).placed(0));
    check(
        "many pods many claims",
        base().pods(pods(50, "p", pod().cpu("3"))),
        expect().placed(50).claims(10),
    );
    check(
        "pods ordered by memory after cpu",
        base()
            .pod(pod().name("m1").cpu("1").mem("30Gi"))
            .pod(pod().name("m2").cpu("1").mem("1Gi")),
        expect().claims(1).cheapest_type_of("m1", "c-16"),
    );
}

/// Compute-optimised (2 GiB/core, cheapest per core), general-purpose (4 GiB/core, dearer than
/// a compute + memory mix) and memory-optimised (16 GiB/core, cheapest per GiB) families.
fn family_catalog() -> Vec<InstanceType> {
    vec![
        instance_type("c-16")
            .cpu(16)
            .mem("32Gi")
            .everywhere(0.64)
            .build(),
        instance_type("m-16")
            .cpu(16)
            .mem("64Gi")
            .everywhere(1.00)
            .build(),
        instance_type("x-16")
            .cpu(16)
            .mem("256Gi")
            .everywhere(1.28)
            .build(),
    ]
}

#[test]
fn cost_aware_packing() {
    let families = || scenario().nodepool(default_pool().types(family_catalog()));
    check(
        "cpu-heavy mix lands on the compute-optimised type; every fitting type stays listed",
        families().pods(pods(8, "p", pod().cpu("2").mem("2Gi"))),
        expect()
            .claims(1)
            .placed(8)
            .cheapest_type_of("p-0", "c-16")
            .instance_types_of("p-0", &["c-16", "m-16", "x-16"]),
    );
    check(
        "memory-heavy mix lands on the memory-optimised type",
        families().pods(pods(6, "m", pod().cpu("1").mem("40Gi"))),
        expect().claims(1).placed(6).cheapest_type_of("m-0", "x-16"),
    );
    check(
        "a memory pod joining a compute claim is priced at the cheapest type that fits both",
        families()
            .pods(pods(7, "p", pod().cpu("2").mem("2Gi")))
            .pod(pod().name("big").cpu("1").mem("40Gi")),
        expect()
            .claims(1)
            .placed(8)
            .cheapest_type_of("big", "m-16")
            .instance_types_of("big", &["m-16", "x-16"]),
    );
    check(
        "more memory pods than one claim holds open a second memory-optimised claim",
        families()
            .pods(pods(16, "p", pod().cpu("2").mem("2Gi")))
            .pods(pods(10, "m", pod().cpu("1").mem("40Gi"))),
        expect()
            .placed(26)
            .that("total $/h at most two compute plus two memory nodes", |o| {
                o.results
                    .new_nodeclaims
                    .iter()
                    .map(|c| c.cheapest_price)
                    .sum::<f64>()
                    <= 2.0 * 0.64 + 2.0 * 1.28 + 1e-9
            }),
    );
}

/// Small and large compute types plus a memory type, the small one dearer per core (so prices
/// are not linear in CPU and memory and the re-pack runs): first-fit puts both CPU pods
/// together on the 8-core type and the memory pods apart (0.40 + 0.80); a CPU pod beside the
/// memory pods and the other alone on the small type is cheaper (0.80 + 0.22). Spot is 0.6×.
fn repack_catalog() -> Vec<InstanceType> {
    vec![
        instance_type("c-4")
            .cpu(4)
            .mem("4Gi")
            .everywhere(0.22)
            .build(),
        instance_type("c-8")
            .cpu(8)
            .mem("8Gi")
            .everywhere(0.40)
            .build(),
        instance_type("r-8")
            .cpu(8)
            .mem("64Gi")
            .everywhere(0.80)
            .build(),
    ]
}

/// `n` pods of 1 CPU / 1Gi (app `z`) spread over zones with maxSkew 1, DoNotSchedule: each
/// is pinned to its zone, so the re-pack may not move them.
fn zone_spread_pods(n: usize) -> Vec<crate::model::PodView> {
    pods(
        n,
        "z",
        pod()
            .cpu("1")
            .mem("1Gi")
            .label("app", "z")
            .spread(ZONE, 1, DoNotSchedule, &[("app", "z")]),
    )
}

fn total_price(o: &Outcome) -> f64 {
    o.results
        .new_nodeclaims
        .iter()
        .map(|c| c.cheapest_price)
        .sum()
}

#[test]
fn cost_repack() {
    let pool = || scenario().nodepool(default_pool().types(repack_catalog()));
    check(
        "free pods are re-packed: a CPU pod rides with the memory pods, the other on the small type",
        pool()
            .pods(pods(2, "cpu", pod().cpu("4").mem("1Gi")))
            .pods(pods(2, "mem", pod().cpu("1").mem("30Gi"))),
        expect()
            .placed(4)
            .claims(2)
            .same_node("mem-0", "mem-1")
            .different_nodes("cpu-0", "cpu-1")
            .that("$/h is the optimum (0.80 + 0.22) × 0.6 spot", |o| {
                (total_price(o) - 1.02 * 0.6).abs() < 1e-9
            }),
    );
    check(
        "a re-packed NodeClaim lists only the types that fit its pods",
        pool()
            .pods(pods(2, "cpu", pod().cpu("4").mem("1Gi")))
            .pods(pods(2, "mem", pod().cpu("1").mem("30Gi"))),
        expect()
            .instance_types_of("mem-0", &["r-8"])
            .cheapest_type_of("mem-0", "r-8"),
    );
    check(
        "pods with a zone spread keep their zones; only the free pods move",
        pool()
            .pods(pods(2, "cpu", pod().cpu("4").mem("1Gi")))
            .pods(pods(2, "mem", pod().cpu("1").mem("30Gi")))
            .pods(zone_spread_pods(3)),
        expect().placed(7).distinct_zones(3),
    );
    check(
        "zone-pinned pods ride in the slack of the free pods' NodeClaims, one per zone",
        pool()
            .pods(pods(6, "mem", pod().cpu("1").mem("30Gi")))
            .pods(zone_spread_pods(3)),
        expect().placed(9).claims(3).distinct_zones(3).that(
            "$/h is three memory nodes and nothing else (3 × 0.80 × 0.6 spot)",
            |o| (total_price(o) - 3.0 * 0.80 * 0.6).abs() < 1e-9,
        ),
    );
    check(
        "a pod with a host port is not moved off its NodeClaim",
        pool()
            .pods(pods(2, "cpu", pod().cpu("4").mem("1Gi").host_port(8080)))
            .pods(pods(2, "mem", pod().cpu("1").mem("30Gi"))),
        expect().placed(4).different_nodes("cpu-0", "cpu-1"),
    );
    check(
        "a NodePool with limits is not re-packed (pessimistic limit accounting stays exact)",
        scenario()
            .nodepool(default_pool().types(repack_catalog()).limit("cpu", "1000"))
            .pods(pods(2, "cpu", pod().cpu("4").mem("1Gi")))
            .pods(pods(2, "mem", pod().cpu("1").mem("30Gi"))),
        expect().placed(4),
    );
}

#[test]
fn a_stopped_solve_keeps_what_it_placed() {
    let stopped = |o: &Outcome| o.results.stopped;
    let not_tried = |o: &Outcome, name: &str| {
        o.input
            .pods
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| o.results.unschedulable.get(&p.uid))
            == Some(&PodError::NotTried)
    };
    check(
        "stopped after two pods: those two are placed, the rest were not tried",
        base().pods(pods(5, "p", pod().cpu("1"))).stop_after(2),
        expect()
            .placed(2)
            .scheduled(&["p-0", "p-1"])
            .unschedulable(&["p-2", "p-3", "p-4"])
            .that("the results say the solve was stopped", stopped)
            .that("p-2..p-4 are NotTried", move |o| {
                ["p-2", "p-3", "p-4"].iter().all(|p| not_tried(o, p))
            })
            .reason_contains("p-4", "stopped before reaching this pod"),
    );
    check(
        "stopped before the first pod: nothing is launched",
        base().pods(pods(3, "p", pod().cpu("1"))).stop_after(0),
        expect()
            .claims(0)
            .placed(0)
            .that("stopped", stopped)
            .that("every pod NotTried", move |o| {
                ["p-0", "p-1", "p-2"].iter().all(|p| not_tried(o, p))
            }),
    );
    check(
        "a stop that never comes changes nothing",
        base().pods(pods(3, "p", pod().cpu("1"))).stop_after(100),
        expect()
            .placed(3)
            .that("not stopped", move |o| !o.results.stopped),
    );
    check(
        "the biggest pods go first, so a stop keeps them",
        base()
            .pod(pod().name("small").cpu("1"))
            .pod(pod().name("big").cpu("8"))
            .stop_after(1),
        expect()
            .placed(1)
            .scheduled(&["big"])
            .that("small not tried", move |o| not_tried(o, "small")),
    );
    check(
        "a pod that already failed keeps its real reason when the solve stops",
        base()
            .pod(pod().name("huge").cpu("64"))
            .pods(pods(2, "p", pod().cpu("1")))
            .stop_after(2),
        expect()
            .reason_contains("huge", "cpu needs 64")
            .that("p-1 not tried", move |o| not_tried(o, "p-1")),
    );
}
