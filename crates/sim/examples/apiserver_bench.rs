//! Scale benchmark for the embedded API server: 5,000 nodes and 50,000 pods with several
//! concurrent watchers. Prints create throughput, watch fan-out, list latency (unpaginated and
//! paginated) and the server's memory.
//!
//! The server runs in a child process (this same binary with `--serve`), so the memory figures
//! (VmRSS/VmHWM from the child's `/proc/<pid>/status`) are the API server's alone, not the
//! benchmark client's decoded objects.
//!
//! `cargo run --release -p karpenter-sim --example apiserver_bench -- [NODES [PODS [WATCHERS [CLIENTS]]]]`
//! (defaults 5000 50000 4 64; `--in-process` runs the server inside the benchmark process).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use karpenter_sim::apiserver::{ApiServer, ApiServerConfig, PodTermination, StoreConfig};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;

const USAGE: &str = "usage: apiserver_bench [--in-process] [NODES [PODS [WATCHERS [CLIENTS]]]]
  NODES     nodes to create (default 5000)
  PODS      pods to create (default 50000)
  WATCHERS  concurrent pod watchers that must see every ADDED event (default 4)
  CLIENTS   concurrent create requests (default 64)
  --in-process  run the API server in this process (memory figures then include the client)";

/// CPU seconds (user + system) a process has used so far; 0 when unreadable.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Linux reports these in USER_HZ, which is 100 on every supported architecture.
    (ticks(11) + ticks(12)) / 100.0
}

/// `(VmRSS, VmHWM)` in MiB of a process.
fn memory_mib(pid: &str) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn node(i: usize) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": format!("ip-10-0-{}-{}.us-west-2.compute.internal", i / 250, i % 250),
            "labels": {"karpenter.sh/nodepool": "default", "node.kubernetes.io/instance-type": "m5.2xlarge",
                       "topology.kubernetes.io/zone": format!("us-west-2{}", ["a", "b", "c"][i % 3]),
                       "karpenter.sh/capacity-type": "on-demand", "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}},
        "spec": {"providerID": format!("aws:///us-west-2a/i-{i:017x}"), "taints": [{"key": "karpenter.sh/unregistered", "effect": "NoExecute"}]},
        "status": {"capacity": {"cpu": "8", "memory": "32Gi", "pods": "58"}, "allocatable": {"cpu": "7910m", "memory": "30Gi", "pods": "58"},
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                   "nodeInfo": {"kubeletVersion": "v1.34.1", "osImage": "Amazon Linux 2023", "kernelVersion": "6.1", "containerRuntimeVersion": "containerd://1.7", "architecture": "amd64", "operatingSystem": "linux", "bootID": "", "machineID": "", "systemUUID": "", "kubeProxyVersion": ""}}
    }))
    .unwrap()
}

fn pod(i: usize, nodes: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("inflate-{i:06}"), "labels": {"app": format!("app-{}", i % 100), "pod-template-hash": "5d8f7c9b4"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("app-{}-5d8f7c9b4", i % 100), "uid": format!("00000000-0000-4000-8000-{:012}", i % 100), "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"nodeName": format!("ip-10-0-{}-{}.us-west-2.compute.internal", (i % nodes) / 250, (i % nodes) % 250),
            "containers": [{"name": "app", "image": "public.ecr.aws/eks-distro/kubernetes/pause:3.7",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "ports": [{"containerPort": 8080, "protocol": "TCP"}], "env": [{"name": "MODE", "value": "bench"}]}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": format!("app-{}", i % 100)}}}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "podIP": format!("10.1.{}.{}", i / 250 % 250, i % 250)}
    }))
    .unwrap()
}

async fn create_all<K, F>(api: Api<K>, count: usize, clients: usize, make: F) -> Duration
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: Fn(usize) -> K + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let start = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let make = make.clone();
            async move {
                api.create(&PostParams::default(), &make(i))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(clients.max(1))
        .for_each(|r| async move {
            if let Err(e) = r {
                eprintln!("create failed: {e}");
            }
        })
        .await;
    start.elapsed()
}

fn server_config() -> ApiServerConfig {
    ApiServerConfig {
        store: StoreConfig {
            pod_termination: PodTermination::KubeletConfirms,
            watch_history: 10_000,
            watcher_buffer: 65_536,
            ..StoreConfig::default()
        },
        pdb_controller: false,
        ..ApiServerConfig::default()
    }
}

/// Child mode: serve, print the URL, exit when stdin closes (the parent went away).
async fn serve() -> anyhow::Result<()> {
    let server = ApiServer::start(server_config()).await?;
    println!("{}", server.url());
    std::io::stdout().flush()?;
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    })
    .await?;
    server.shutdown().await;
    Ok(())
}

struct Figures {
    rows: Vec<(String, String)>,
}

impl Figures {
    fn add(&mut self, name: &str, value: String) {
        println!("{name}: {value}");
        self.rows.push((name.to_string(), value));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    if raw.iter().any(|a| a == "--serve") {
        return serve().await;
    }
    let in_process = raw.iter().any(|a| a == "--in-process");
    let args: Vec<usize> = raw.iter().filter_map(|a| a.parse().ok()).collect();
    let nodes = args.first().copied().unwrap_or(5_000);
    let pods = args.get(1).copied().unwrap_or(50_000);
    let watchers = args.get(2).copied().unwrap_or(4);
    let clients = args.get(3).copied().unwrap_or(64);

    // The server: a child process (memory figures are then the server's alone) or in-process.
    let mut child = None;
    let mut in_proc = None;
    let (url, server_pid) = if in_process {
        let server = ApiServer::start(server_config()).await?;
        let url = server.url();
        in_proc = Some(server);
        (url, "self".to_string())
    } else {
        let mut c = std::process::Command::new(std::env::current_exe()?)
            .arg("--serve")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(c.stdout.take().expect("child stdout")).read_line(&mut line)?;
        let pid = c.id().to_string();
        child = Some(c);
        (line.trim().to_string(), pid)
    };
    let mut config = kube::Config::new(url.parse()?);
    config.default_retry = false;
    config.read_timeout = Some(Duration::from_secs(600));
    let client = kube::Client::try_from(config)?;
    println!(
        "embedded apiserver bench: {nodes} nodes, {pods} pods, {watchers} pod watchers, {clients} concurrent creates, server {}",
        if in_process {
            "in-process"
        } else {
            "in a child process"
        }
    );
    let mut out = Figures { rows: Vec::new() };
    let mem = |label: &str, out: &mut Figures| {
        let (rss, hwm) = memory_mib(&server_pid);
        out.add(
            &format!("server memory {label}"),
            format!("VmRSS {rss:.1} MiB, VmHWM {hwm:.1} MiB"),
        );
    };
    mem("at start", &mut out);
    let cpu_owner = if in_process { "process" } else { "server" };

    let pod_api: Api<Pod> = Api::default_namespaced(client.clone());
    let received = Arc::new(AtomicUsize::new(0));
    let mut watcher_tasks = Vec::new();
    for _ in 0..watchers {
        let api = pod_api.clone();
        let received = received.clone();
        watcher_tasks.push(tokio::spawn(async move {
            let mut stream = api
                .watch(&WatchParams::default().timeout(3600), "0")
                .await
                .unwrap()
                .boxed();
            while let Some(ev) = stream.next().await {
                if let Ok(WatchEvent::Added(_)) = ev {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let node_api: Api<Node> = Api::all(client.clone());
    let cpu_start = cpu_seconds(&server_pid);
    let t = create_all(node_api.clone(), nodes, clients, node).await;
    out.add(
        "create nodes",
        format!(
            "{nodes} in {:.2}s ({:.0}/s)",
            t.as_secs_f64(),
            nodes as f64 / t.as_secs_f64()
        ),
    );
    let fanout_start = Instant::now();
    let cpu_pods = cpu_seconds(&server_pid);
    let t = create_all(pod_api.clone(), pods, clients, move |i| pod(i, nodes)).await;
    out.add(
        "create pods",
        format!(
            "{pods} in {:.2}s ({:.0}/s, {clients} concurrent clients, {watchers} watchers open)",
            t.as_secs_f64(),
            pods as f64 / t.as_secs_f64()
        ),
    );
    let want = pods * watchers;
    while received.load(Ordering::Relaxed) < want
        && fanout_start.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = received.load(Ordering::Relaxed);
    let fanout = fanout_start.elapsed();
    out.add(
        "watch fan-out",
        format!(
            "{got}/{want} ADDED events delivered to {watchers} watchers {:.2}s after the first create, {:.2}s after the last ({:.0} events/s)",
            fanout.as_secs_f64(),
            (fanout.as_secs_f64() - t.as_secs_f64()).max(0.0),
            got as f64 / fanout.as_secs_f64()
        ),
    );
    let cpu_now = cpu_seconds(&server_pid);
    out.add(
        &format!("{cpu_owner} CPU for the creates"),
        format!(
            "nodes {:.2}s, pods {:.2}s ({:.0} us per pod create incl. {watchers} watch deliveries)",
            cpu_pods - cpu_start,
            cpu_now - cpu_pods,
            (cpu_now - cpu_pods) * 1e6 / pods.max(1) as f64
        ),
    );
    mem("after load", &mut out);

    // Fan-out alone: fresh watchers from resourceVersion 0 each get every pod as an ADDED
    // event at once. Lines are counted, not decoded, so this is the server's delivery rate (plus
    // the transfer), not the client's JSON decoding.
    let cpu_before = cpu_seconds(&server_pid);
    let start = Instant::now();
    let mut raw_watchers = Vec::new();
    for _ in 0..watchers {
        let client = client.clone();
        raw_watchers.push(tokio::spawn(async move {
            let req = http::Request::get(
                "/api/v1/namespaces/default/pods?watch=true&resourceVersion=0&timeoutSeconds=600",
            )
            .body(Vec::new())
            .unwrap();
            let mut body = Box::pin(client.request_stream(req).await.unwrap());
            let mut line = Vec::with_capacity(4096);
            let (mut events, mut bytes) = (0usize, 0usize);
            while events < pods {
                line.clear();
                match futures::AsyncBufReadExt::read_until(&mut body, b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        events += 1;
                        bytes += n;
                    }
                }
            }
            (events, bytes)
        }));
    }
    let (mut delivered, mut bytes) = (0, 0);
    for w in raw_watchers {
        let (e, b) = w.await.unwrap_or((0, 0));
        delivered += e;
        bytes += b;
    }
    let elapsed = start.elapsed().as_secs_f64();
    out.add(
        "watch fan-out, initial events",
        format!(
            "{delivered}/{} ADDED lines to {watchers} new watchers in {elapsed:.2}s ({:.0} events/s, {:.0} MiB/s; {cpu_owner} CPU {:.2}s)",
            pods * watchers,
            delivered as f64 / elapsed,
            bytes as f64 / 1048576.0 / elapsed,
            cpu_seconds(&server_pid) - cpu_before
        ),
    );

    // The same list without decoding into typed objects: what the server and the transfer cost,
    // apart from the client's JSON decoding.
    let cpu_before = cpu_seconds(&server_pid);
    let start = Instant::now();
    let req = http::Request::get("/api/v1/namespaces/default/pods").body(Vec::new())?;
    let raw = client.request_text(req).await?;
    out.add(
        "list pods, unpaginated, body only",
        format!(
            "{:.1} MiB ({} bytes per pod) in {:.0} ms ({cpu_owner} CPU {:.0} ms)",
            raw.len() as f64 / 1048576.0,
            raw.len() / pods.max(1),
            start.elapsed().as_secs_f64() * 1000.0,
            (cpu_seconds(&server_pid) - cpu_before) * 1000.0
        ),
    );
    // And the client's share alone: decoding that body into typed pods, as `Api::list` does.
    let start = Instant::now();
    let decoded: kube::core::ObjectList<Pod> = serde_json::from_str(&raw)?;
    out.add(
        "decode that body into typed Pods (client)",
        format!(
            "{} items in {:.0} ms",
            decoded.items.len(),
            start.elapsed().as_secs_f64() * 1000.0
        ),
    );
    drop(decoded);
    drop(raw);
    for (label, lp) in [
        ("unpaginated", ListParams::default()),
        ("paginated, limit=500", ListParams::default().limit(500)),
    ] {
        let start = Instant::now();
        let mut total = 0;
        let mut pages = 0;
        let mut lp = lp;
        loop {
            let page = pod_api.list(&lp).await?;
            total += page.items.len();
            pages += 1;
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => break,
            }
        }
        out.add(
            &format!("list pods, {label}"),
            format!(
                "{total} items in {pages} pages in {:.0} ms",
                start.elapsed().as_secs_f64() * 1000.0
            ),
        );
    }
    let start = Instant::now();
    let on_node = pod_api
        .list(&ListParams::default().fields("spec.nodeName=ip-10-0-0-1.us-west-2.compute.internal"))
        .await?;
    out.add(
        "list pods by spec.nodeName",
        format!(
            "{} items in {:.0} ms",
            on_node.items.len(),
            start.elapsed().as_secs_f64() * 1000.0
        ),
    );
    let start = Instant::now();
    let by_label = pod_api
        .list(&ListParams::default().labels("app=app-7"))
        .await?;
    out.add(
        "list pods by label app=app-7",
        format!(
            "{} items in {:.0} ms",
            by_label.items.len(),
            start.elapsed().as_secs_f64() * 1000.0
        ),
    );
    let start = Instant::now();
    let n = node_api.list(&ListParams::default()).await?.items.len();
    out.add(
        "list nodes",
        format!(
            "{n} items in {:.0} ms",
            start.elapsed().as_secs_f64() * 1000.0
        ),
    );

    let start = Instant::now();
    let (reader, writer) = reflector::store::<Pod>();
    let stream =
        reflector(writer, watcher(pod_api.clone(), watcher::Config::default())).applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while stream.next().await.is_some() {}
    });
    reader.wait_until_ready().await?;
    out.add(
        "kube-runtime reflector initial sync",
        format!(
            "{} pods in {:.2}s",
            reader.state().len(),
            start.elapsed().as_secs_f64()
        ),
    );
    task.abort();
    mem("at end", &mut out);
    let (rss, hwm) = memory_mib("self");
    out.add(
        "benchmark client memory",
        format!("VmRSS {rss:.1} MiB, VmHWM {hwm:.1} MiB"),
    );
    for t in watcher_tasks {
        t.abort();
    }
    if let Some(server) = in_proc {
        server.shutdown().await;
    }
    if let Some(mut c) = child {
        drop(c.stdin.take());
        let _ = c.wait();
    }
    println!("\nsummary ({nodes} nodes, {pods} pods, {watchers} watchers):");
    for (name, value) in &out.rows {
        println!("  {name:<40} {value}");
    }
    Ok(())
}
