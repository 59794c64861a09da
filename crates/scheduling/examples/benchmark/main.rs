//! Scheduling benchmark (run in release):
//!
//! ```text
//! cargo run --release -p karpenter-scheduling --example benchmark -- --pods 20000 [--json]
//! cargo run --release -p karpenter-scheduling --example benchmark -- --sweep
//! cargo run --release -p karpenter-scheduling --example benchmark -- --preferences
//! cargo run --release -p karpenter-scheduling --example benchmark -- --catalog --pods 2000
//! cargo run --release -p karpenter-scheduling --example benchmark -- --pods 1 [--unprepared]
//! ```
//!
//! Solves reuse NodePools prepared once (`PreparedNodePools`), as the provisioner does;
//! `--unprepared` times the old path that prepares inside every solve.
//!
//! The default workload mirrors upstream's `scheduling_benchmark_test.go`: 400 synthetic
//! instance types, one NodePool, and the seeded five-way "diverse" pod mix. `--catalog` solves a
//! realistic pod mix against the embedded us-west-2 catalog and compares the cost with a
//! fractional lower bound.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::time::Instant;

use karpenter_apis::labels;
use karpenter_scheduling::model::{
    InclusionPolicy, LabelSelector, NodeClassRef, NodePoolView, Offering, Overhead,
    PodAffinityTerm, PodView, PreferredNodeTerm, TopologySpreadConstraint, WeightedPodAffinityTerm,
    WhenUnsatisfiable,
};
use karpenter_scheduling::requirements::{Operator, Requirement, RequirementSpec, Requirements};
use karpenter_scheduling::resources::Resources;
use karpenter_scheduling::{
    InstanceType, PreferencePolicy, PreparedNodePools, SchedulingInput, SchedulingResults,
    SolveOptions, solve, solve_prepared,
};

/// splitmix64: seedable, dependency-free.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
}

const GI: i64 = 1 << 30;
const MI: i64 = 1 << 20;

fn synthetic_types() -> Vec<InstanceType> {
    (0..400)
        .map(|i| {
            let cpu = i as i64 + 1;
            let mem_gi = 2 * cpu;
            let price = 0.1 * cpu as f64 + 0.1 * mem_gi as f64;
            let name = format!("fake-it-{i}");
            let mut offerings = Vec::new();
            for (zone, ct) in [
                ("test-zone-1", "spot"),
                ("test-zone-2", "spot"),
                ("test-zone-1", "on-demand"),
                ("test-zone-2", "on-demand"),
                ("test-zone-3", "on-demand"),
            ] {
                offerings.push(Offering::new(zone, ct, price));
            }
            InstanceType {
                requirements: Requirements::new()
                    .with(
                        labels::INSTANCE_TYPE,
                        Requirement::in_values([name.clone()]),
                    )
                    .with(labels::ARCH, Requirement::in_values(["amd64"]))
                    .with(
                        labels::OS,
                        Requirement::in_values(["linux", "windows", "darwin"]),
                    ),
                name,
                capacity: Resources::new()
                    .with("cpu", cpu * 1000)
                    .with("memory", mem_gi * GI)
                    .with("pods", 10 * cpu),
                overhead: Overhead {
                    kube_reserved: Resources::new().with("cpu", 100).with("memory", 10 * MI),
                    ..Overhead::default()
                },
                offerings,
            }
        })
        .collect()
}

fn nodepool(types: Vec<InstanceType>) -> NodePoolView {
    let mut limits = BTreeMap::new();
    limits.insert("cpu".to_string(), 10_000_000_000);
    limits.insert("memory".to_string(), 10_000_000 * GI);
    NodePoolView {
        name: "default".into(),
        node_class_ref: NodeClassRef {
            group: labels::AWS_GROUP.into(),
            kind: "EC2NodeClass".into(),
            name: "default".into(),
        },
        limits,
        instance_types: types,
        ..NodePoolView::default()
    }
}

fn base_pod(rng: &mut Rng, i: usize, kind: &str) -> PodView {
    let cpu = *rng.pick(&[100i64, 250, 500, 1000, 1500]);
    let mem = *rng.pick(&[100i64, 256, 512, 1024, 2048, 4096]) * MI;
    PodView {
        uid: format!("{kind}-{i:06}"),
        namespace: "default".into(),
        name: format!("{kind}-{i}"),
        requests: Resources::new()
            .with("cpu", cpu)
            .with("memory", mem)
            .with("pods", 1),
        ..PodView::default()
    }
}

fn selector(k: &str, v: &str) -> Option<LabelSelector> {
    Some(LabelSelector::labels(&[(k, v)]))
}

fn spread(key: &str, sel: Option<LabelSelector>) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.into(),
        when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
        label_selector: sel,
        min_domains: None,
        node_affinity_policy: InclusionPolicy::Honor,
        node_taints_policy: InclusionPolicy::Ignore,
        match_label_keys: vec![],
    }
}

fn diverse_pods(n: usize) -> Vec<PodView> {
    let mut rng = Rng(42);
    let letters = ["a", "b", "c", "d", "e", "f", "g"];
    let fifth = n / 5;
    let mut out = Vec::with_capacity(n);
    for i in 0..fifth {
        out.push(base_pod(&mut rng, i, "generic"));
    }
    for i in 0..fifth {
        let mut p = base_pod(&mut rng, i, "zonal-spread");
        let v = *rng.pick(&letters);
        p.labels.insert("my-label".into(), v.into());
        p.topology_spread
            .push(spread(labels::ZONE, selector("my-label", v)));
        out.push(p);
    }
    for i in 0..fifth {
        let mut p = base_pod(&mut rng, i, "hostname-spread");
        let v = *rng.pick(&letters);
        p.labels.insert("my-label".into(), v.into());
        p.topology_spread
            .push(spread(labels::HOSTNAME, selector("my-label", v)));
        out.push(p);
    }
    for i in 0..fifth {
        let mut p = base_pod(&mut rng, i, "zonal-affinity");
        let v = *rng.pick(&letters);
        p.labels.insert("my-affininity".into(), v.into());
        p.pod_affinity.push(PodAffinityTerm {
            label_selector: selector("my-affininity", v),
            topology_key: labels::ZONE.into(),
            ..PodAffinityTerm::default()
        });
        out.push(p);
    }
    for i in 0..fifth {
        let mut p = base_pod(&mut rng, i, "anti-affinity");
        p.labels.insert("app".into(), "nginx".into());
        p.pod_anti_affinity.push(PodAffinityTerm {
            label_selector: selector("app", "nginx"),
            topology_key: labels::HOSTNAME.into(),
            ..PodAffinityTerm::default()
        });
        out.push(p);
    }
    for i in out.len()..n {
        out.push(base_pod(&mut rng, i, "generic-rest"));
    }
    out
}

fn preference_pods(n: usize) -> Vec<PodView> {
    let mut rng = Rng(42);
    (0..n)
        .map(|i| {
            let mut p = base_pod(&mut rng, i, "pref");
            p.labels.insert("app".into(), "nginx".into());
            p.preferred_node_affinity.push(PreferredNodeTerm {
                weight: 1,
                term: vec![RequirementSpec::new(
                    labels::ZONE,
                    Operator::In,
                    &["test-zone-1"],
                )],
            });
            for (weight, key) in [(10, labels::ZONE), (1, labels::HOSTNAME)] {
                p.preferred_pod_anti_affinity.push(WeightedPodAffinityTerm {
                    weight,
                    term: PodAffinityTerm {
                        label_selector: selector("app", "nginx"),
                        topology_key: key.into(),
                        ..PodAffinityTerm::default()
                    },
                });
            }
            p
        })
        .collect()
}

/// CPU time of this thread (ns), from `/proc/thread-self/schedstat`: the machine is shared, so
/// wall time alone mostly measures other people's compiles.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |ns| ns / 1e9)
}

struct Run {
    name: String,
    pods: usize,
    seconds: f64,
    cpu_seconds: f64,
    results: SchedulingResults,
}

impl Run {
    fn nodes(&self) -> usize {
        self.results.new_nodeclaims.len()
            + self
                .results
                .existing_placements
                .values()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
    }
    fn print(&self, json: bool) {
        let pods_per_sec = self.pods as f64 / self.seconds;
        let pods_per_cpu_sec = self.pods as f64 / self.cpu_seconds;
        let unsched = self.results.unschedulable.len();
        if json {
            println!(
                "{{\"case\":\"{}\",\"pods\":{},\"wall_seconds\":{:.6},\"cpu_seconds\":{:.6},\"pods_per_second\":{:.0},\"pods_per_cpu_second\":{:.0},\"new_nodeclaims\":{},\"nodes\":{},\"unschedulable\":{}}}",
                self.name,
                self.pods,
                self.seconds,
                self.cpu_seconds,
                pods_per_sec,
                pods_per_cpu_sec,
                self.results.new_nodeclaims.len(),
                self.nodes(),
                unsched
            );
        } else {
            println!(
                "{:<26} pods={:<6} wall={:>10.3}ms cpu={:>10.3}ms pods/s(wall)={:>8.0} pods/s(cpu)={:>8.0} new_nodeclaims={:<5} nodes={:<5} unschedulable={}",
                self.name,
                self.pods,
                self.seconds * 1e3,
                self.cpu_seconds * 1e3,
                pods_per_sec,
                pods_per_cpu_sec,
                self.results.new_nodeclaims.len(),
                self.nodes(),
                unsched
            );
        }
    }
}

static REPS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
/// `--unprepared`: prepare the NodePools inside every solve (the old path) instead of once.
static UNPREPARED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn run(name: &str, input: &SchedulingInput, options: &SolveOptions) -> Run {
    // Best of several repetitions for small inputs so timer noise does not dominate.
    let default_reps = if input.pods.len() <= 100 {
        200
    } else if input.pods.len() <= 2000 {
        3
    } else {
        1
    };
    let reps = REPS.get().copied().unwrap_or(default_reps);
    let mut best = f64::MAX;
    let mut best_cpu = f64::MAX;
    let mut results = SchedulingResults::default();
    // The provisioner prepares when NodePools or instance types change, then solves many batches.
    let unprepared = UNPREPARED.get().copied().unwrap_or(false);
    let prepared = PreparedNodePools::new(&input.nodepools, &input.daemonsets);
    for _ in 0..reps {
        let cpu0 = thread_cpu_seconds();
        let start = Instant::now();
        results = if unprepared {
            solve(input, options)
        } else {
            solve_prepared(input, &prepared, options)
        };
        best = best.min(start.elapsed().as_secs_f64());
        best_cpu = best_cpu.min(thread_cpu_seconds() - cpu0);
    }
    Run {
        name: name.into(),
        pods: input.pods.len(),
        seconds: best,
        cpu_seconds: best_cpu,
        results,
    }
}

fn diverse(n: usize) -> Run {
    let input = SchedulingInput {
        pods: diverse_pods(n),
        nodepools: vec![nodepool(synthetic_types())],
        ..SchedulingInput::default()
    };
    run(&format!("diverse-{n}"), &input, &SolveOptions::default())
}

fn preferences(policy: PreferencePolicy) -> Run {
    let input = SchedulingInput {
        pods: preference_pods(4000),
        nodepools: vec![nodepool(synthetic_types())],
        ..SchedulingInput::default()
    };
    let name = match policy {
        PreferencePolicy::Respect => "respect-preferences-4000",
        PreferencePolicy::Ignore => "ignore-preferences-4000",
    };
    run(
        name,
        &input,
        &SolveOptions {
            preference_policy: policy,
            ..SolveOptions::default()
        },
    )
}

mod real_catalog;
mod whole_bound;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let pods = args
        .iter()
        .position(|a| a == "--pods")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse::<usize>().expect("--pods takes a number"));
    if let Some(r) = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<usize>().ok())
    {
        let _ = REPS.set(r);
    }
    let _ = UNPREPARED.set(args.iter().any(|a| a == "--unprepared"));
    if args.iter().any(|a| a == "--catalog") {
        real_catalog::run(
            pods.unwrap_or(2000),
            json,
            args.iter().any(|a| a == "--verbose"),
        );
        return;
    }
    let mut runs = Vec::new();
    if args.iter().any(|a| a == "--sweep") {
        for n in [1, 50, 100, 500, 1000, 2000, 5000, 10000, 20000] {
            runs.push(diverse(n));
            runs.last().unwrap().print(json);
        }
    }
    if args.iter().any(|a| a == "--preferences") {
        for p in [PreferencePolicy::Respect, PreferencePolicy::Ignore] {
            runs.push(preferences(p));
            runs.last().unwrap().print(json);
        }
    }
    if runs.is_empty() {
        diverse(pods.unwrap_or(1000)).print(json);
    }
}
