//! Provisioning benchmark of the real operator process: the embedded cluster runs in this
//! process, the RELEASE `karpenter controller --cloud-provider simulated` runs as a child
//! against it, and 1,000 pending pods are created at once. Prints, per variant:
//!
//! - pending → NodeClaim latency per pod: from when this process first saw the pod until it
//!   first saw the NodeClaim whose Node the pod was bound to (p50/p99/max, every pod); and the
//!   same for the NodeClaim the pod's `Nominated` event names, over the pods that got one
//!   (`Nominated` is rate limited to 5/s with bursts of 10, as upstream, so that is a sample);
//! - time until every pod is Running (includes the simulated launch/boot delays);
//! - NodeClaims and Nodes created;
//! - the controller's RSS: after startup (idle), peak (`VmHWM`) and steady (10 s after the last
//!   pod runs).
//!
//! Build the binary first, then run:
//!
//! ```text
//! cargo build --release -p karpenter
//! cargo run --release -p karpenter --example provisioning_bench -- [--binary PATH] [--pods 1000] [--variant mixed|spread|both]
//! ```
//!
//! Figures are printed, never asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark harness: failures should panic

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use karpenter_apis::ec2nodeclass::EC2NodeClass;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::NodePool;
use karpenter_sim::cluster::ClusterConfig;
use karpenter_sim::{SimCluster, SimConfig};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

const NAMESPACE: &str = "bench";

/// Four workloads sharing the pods: (name, cpu, memory, share of the pods in quarters).
const SHAPES: &[(&str, &str, &str)] = &[
    ("small", "250m", "512Mi"),
    ("medium", "500m", "1Gi"),
    ("large", "1", "2Gi"),
    ("xlarge", "2", "4Gi"),
];

struct Args {
    binary: PathBuf,
    pods: usize,
    variants: Vec<&'static str>,
}

fn args() -> Args {
    let mut binary = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("karpenter"))
        .unwrap();
    let mut pods = 1000;
    let mut variants = vec!["mixed", "spread"];
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--binary" => binary = PathBuf::from(it.next().expect("--binary PATH")),
            "--pods" => pods = it.next().expect("--pods N").parse().expect("--pods N"),
            "--variant" => {
                variants = match it.next().expect("--variant NAME").as_str() {
                    "mixed" => vec!["mixed"],
                    "spread" => vec!["spread"],
                    "both" => vec!["mixed", "spread"],
                    other => panic!("unknown variant {other} (mixed, spread or both)"),
                }
            }
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        binary.exists(),
        "{} not found: build it with `cargo build --release -p karpenter` or pass --binary",
        binary.display()
    );
    Args {
        binary,
        pods,
        variants,
    }
}

/// What this process saw, with its own monotonic clock.
#[derive(Default)]
struct Seen {
    pod_created: HashMap<String, Instant>,
    pod_running: HashMap<String, Instant>,
    /// When the simulated scheduler first marked the pod `PodScheduled=False/Unschedulable`
    /// (what Karpenter reacts to).
    pod_unschedulable: HashMap<String, Instant>,
    nodeclaim_created: HashMap<String, Instant>,
    nominated_on: HashMap<String, String>,
    /// Pod → the Node it was bound to.
    bound_to: HashMap<String, String>,
    /// Node name → the NodeClaim that launched it.
    claim_of_node: HashMap<String, String>,
    nodes: usize,
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".to_string(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_watchers(
    client: &kube::Client,
    seen: &Arc<Mutex<Seen>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let s = seen.clone();
    tasks.push(tokio::spawn(async move {
        let mut stream = watcher(pods, watcher::Config::default()).boxed();
        while let Some(Ok(ev)) = stream.next().await {
            let (watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev else {
                continue;
            };
            let now = Instant::now();
            let name = p.metadata.name.clone().unwrap_or_default();
            let mut s = s.lock().unwrap();
            s.pod_created.entry(name.clone()).or_insert(now);
            let unschedulable = p.status.as_ref().is_some_and(|st| {
                st.conditions.iter().flatten().any(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                })
            });
            if unschedulable {
                s.pod_unschedulable.entry(name.clone()).or_insert(now);
            }
            if let Some(node) = p.spec.as_ref().and_then(|spec| spec.node_name.clone()) {
                s.bound_to.insert(name.clone(), node);
            }
            if p.status.and_then(|st| st.phase).as_deref() == Some("Running") {
                s.pod_running.entry(name).or_insert(now);
            }
        }
    }));
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let s = seen.clone();
    tasks.push(tokio::spawn(async move {
        let mut stream = watcher(claims, watcher::Config::default()).boxed();
        while let Some(Ok(ev)) = stream.next().await {
            let (watcher::Event::Apply(c) | watcher::Event::InitApply(c)) = ev else {
                continue;
            };
            let now = Instant::now();
            let name = c.metadata.name.clone().unwrap_or_default();
            let mut s = s.lock().unwrap();
            if let Some(node) = c.status.as_ref().and_then(|st| st.node_name.clone()) {
                s.claim_of_node.insert(node, name.clone());
            }
            s.nodeclaim_created.entry(name).or_insert(now);
        }
    }));
    let events: Api<Event> = Api::namespaced(client.clone(), NAMESPACE);
    let s = seen.clone();
    tasks.push(tokio::spawn(async move {
        let mut stream = watcher(events, watcher::Config::default()).boxed();
        while let Some(Ok(ev)) = stream.next().await {
            let (watcher::Event::Apply(e) | watcher::Event::InitApply(e)) = ev else {
                continue;
            };
            if e.reason.as_deref() != Some("Nominated") {
                continue;
            }
            let Some(pod) = e.involved_object.name.clone() else {
                continue;
            };
            let message = e.message.unwrap_or_default();
            if let Some(claim) = message.split("nodeclaim/").nth(1).map(|rest| {
                rest.split([',', ' '])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            }) {
                s.lock().unwrap().nominated_on.entry(pod).or_insert(claim);
            }
        }
    }));
    let nodes: Api<Node> = Api::all(client.clone());
    let s = seen.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            if let Ok(list) = nodes.list(&ListParams::default()).await {
                s.lock().unwrap().nodes = list.items.len();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }));
    tasks
}

async fn run_variant(args: &Args, variant: &str) {
    let sim = SimCluster::start(SimConfig {
        cluster: ClusterConfig::fast(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = sim.client();
    karpenter_sim::install_karpenter_crds(&client)
        .await
        .unwrap();
    let dir =
        std::env::temp_dir().join(format!("karpenter-bench-{}-{variant}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    sim.apiserver().write_kubeconfig(&kubeconfig).unwrap();
    let log = dir.join("controller.log");

    let controller_args = [
        "controller",
        "--cloud-provider=simulated",
        "--disable-leader-election",
        "--metrics-port=0",
        "--health-probe-port=0",
    ];
    let child = Command::new(&args.binary)
        .args(controller_args)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--log-output-paths={}", log.display()))
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let child = ChildGuard(child);
    let pid = child.0.id();
    let logged = |message: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(&format!("\"message\":\"{message}\"")))
    };
    while !logged("leading: starting controllers") {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Seed 000's NodePool (without its cpu limit of 1000, which 1,000 mixed pods would reach)
    // and EC2NodeClass.
    let pool: NodePool = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "default"},
        "spec": {"template": {"spec": {
            "requirements": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand", "spot"]},
                {"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c", "m", "r"]},
                {"key": "karpenter.k8s.aws/instance-generation", "operator": "Gt", "values": ["2"]}],
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
            "expireAfter": "720h"}},
            "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "1m"}}
    }))
    .unwrap();
    Api::<NodePool>::all(client.clone())
        .create(&PostParams::default(), &pool)
        .await
        .unwrap();
    let class: EC2NodeClass = serde_json::from_value(json!({
        "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": {"name": "default"},
        "spec": {"amiFamily": "AL2", "role": "KarpenterNodeRole-bench",
                 "subnetSelectorTerms": [{"tags": {"Name": "bench"}}],
                 "securityGroupSelectorTerms": [{"tags": {"Name": "bench"}}],
                 "amiSelectorTerms": [{"id": "ami-0d6c6ac554d62a745"}]}
    }))
    .unwrap();
    Api::<EC2NodeClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
    // Measure the provisioner, not NodePool readiness: wait for Ready first.
    loop {
        let np = Api::<NodePool>::all(client.clone())
            .get("default")
            .await
            .unwrap();
        let ready = np
            .status
            .is_some_and(|s| karpenter_apis::conditions::is_true(&s.conditions, "Ready"));
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(pid, "VmRSS:");

    let seen = Arc::new(Mutex::new(Seen::default()));
    let watchers = spawn_watchers(&client, &seen);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let per_shape = args.pods / SHAPES.len();
    let start = Instant::now();
    for (i, (name, cpu, memory)) in SHAPES.iter().enumerate() {
        let replicas = if i + 1 == SHAPES.len() {
            args.pods - per_shape * (SHAPES.len() - 1)
        } else {
            per_shape
        };
        let mut spec = json!({
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "app", "image": "public.ecr.aws/eks-distro/kubernetes/pause:3.7",
                            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]
        });
        if variant == "spread" {
            spec["topologySpreadConstraints"] = json!([{
                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": name}}
            }]);
        }
        let deployment: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}
        }))
        .unwrap();
        Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap();
    }

    let mut peak_sampled = 0u64;
    let deadline = start + Duration::from_secs(600);
    let all_running_at = loop {
        if let Some(k) = rss_kib(pid, "VmRSS:") {
            peak_sampled = peak_sampled.max(k);
        }
        {
            let s = seen.lock().unwrap();
            if s.pod_running.len() >= args.pods {
                break start.elapsed();
            }
        }
        assert!(
            Instant::now() < deadline,
            "not every pod ran within 10 minutes; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    let steady_rss = rss_kib(pid, "VmRSS:");
    let peak_rss = rss_kib(pid, "VmHWM:");

    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for claim in Api::<NodeClaim>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        let t = claim
            .metadata
            .labels
            .and_then(|l| l.get("node.kubernetes.io/instance-type").cloned())
            .unwrap_or_default();
        *by_type.entry(t).or_default() += 1;
    }

    {
        let s = seen.lock().unwrap();
        // The NodeClaim each pod runs on (pods bound to Nodes no NodeClaim launched are left out).
        let hosting: Vec<(&String, &Instant)> = s
            .bound_to
            .iter()
            .filter_map(|(pod, node)| {
                let claim = s.claim_of_node.get(node)?;
                Some((pod, s.nodeclaim_created.get(claim)?))
            })
            .collect();
        let mut by_host: Vec<Duration> = hosting
            .iter()
            .filter_map(|(pod, claimed)| {
                Some(claimed.saturating_duration_since(*s.pod_created.get(*pod)?))
            })
            .collect();
        by_host.sort();
        let every_pod_covered_at = hosting
            .iter()
            .map(|(_, claimed)| claimed.saturating_duration_since(start))
            .max();
        let mut latencies: Vec<Duration> = s
            .nominated_on
            .iter()
            .filter_map(|(pod, claim)| {
                let created = s.pod_created.get(pod)?;
                let claimed = s.nodeclaim_created.get(claim)?;
                Some(claimed.saturating_duration_since(*created))
            })
            .collect();
        latencies.sort();
        let mut from_unschedulable: Vec<Duration> = hosting
            .iter()
            .filter_map(|(pod, claimed)| {
                let marked = s.pod_unschedulable.get(*pod)?;
                Some(claimed.saturating_duration_since(*marked))
            })
            .collect();
        from_unschedulable.sort();
        let mut to_unschedulable: Vec<Duration> = s
            .pod_unschedulable
            .iter()
            .filter_map(|(pod, at)| Some(at.saturating_duration_since(*s.pod_created.get(pod)?)))
            .collect();
        to_unschedulable.sort();
        let first_seen = s.pod_created.values().min().copied();
        let last_seen = s.pod_created.values().max().copied();
        let mut running: Vec<Duration> = s
            .pod_running
            .iter()
            .filter_map(|(pod, at)| Some(at.saturating_duration_since(*s.pod_created.get(pod)?)))
            .collect();
        running.sort();
        let provisioning_passes = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"message\":\"provisioning pass\""))
            .count();
        println!(
            "== variant {variant}: {} pods ({})",
            args.pods,
            if variant == "spread" {
                "4 shapes, zone spread DoNotSchedule maxSkew 1"
            } else {
                "4 shapes: 250m/512Mi, 500m/1Gi, 1/2Gi, 2/4Gi"
            }
        );
        println!(
            "pending -> the NodeClaim the pod runs on ({} pods): p50 {:?}  p99 {:?}  max {:?}",
            by_host.len(),
            percentile(&by_host, 50.0),
            percentile(&by_host, 99.0),
            by_host.last().copied().unwrap_or_default()
        );
        println!(
            "pending -> NodeClaim named by the pod's Nominated event ({} pods with one): p50 {:?}  p99 {:?}  max {:?}",
            latencies.len(),
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            latencies.last().copied().unwrap_or_default()
        );
        println!(
            "  of which: pod seen -> marked Unschedulable by the simulated scheduler p50 {:?} p99 {:?}; Unschedulable -> NodeClaim p50 {:?} p99 {:?} max {:?}",
            percentile(&to_unschedulable, 50.0),
            percentile(&to_unschedulable, 99.0),
            percentile(&from_unschedulable, 50.0),
            percentile(&from_unschedulable, 99.0),
            from_unschedulable.last().copied().unwrap_or_default()
        );
        if let (Some(a), Some(b)) = (first_seen, last_seen) {
            println!(
                "  the Deployments' {} pods appeared over {:?} (first seen {:?} after creating them)",
                s.pod_created.len(),
                b.saturating_duration_since(a),
                a.saturating_duration_since(start)
            );
        }
        println!(
            "every pod's NodeClaim created after {:?} (from creating the Deployments)",
            every_pod_covered_at.unwrap_or_default()
        );
        println!(
            "pod created -> Running: p50 {:?}  p99 {:?}  max {:?}; all {} Running after {:?}",
            percentile(&running, 50.0),
            percentile(&running, 99.0),
            running.last().copied().unwrap_or_default(),
            s.pod_running.len(),
            all_running_at
        );
        println!(
            "NodeClaims {}  Nodes {}  provisioning passes {}  instance types {:?}",
            s.nodeclaim_created.len(),
            s.nodes,
            provisioning_passes,
            by_type
        );
        println!(
            "controller RSS: idle after startup {}  peak (VmHWM) {}  peak sampled {}  steady (10 s after all Running) {}",
            mib(idle_rss),
            mib(peak_rss),
            mib(Some(peak_sampled)),
            mib(steady_rss)
        );
    }
    for w in watchers {
        w.abort();
    }
    drop(child);
    sim.shutdown().await;
    println!("controller log: {}", log.display());
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    println!(
        "binary {}  (simulated launch 2s, boot 3s; batch idle 1s, max 10s: the defaults)",
        args.binary.display()
    );
    for variant in args.variants.clone() {
        run_variant(&args, variant).await;
    }
}
