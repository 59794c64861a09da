//! Fixture of the process-level tests: the embedded cluster in this process, the real
//! `karpenter` binary as a child process pointed at it through a kubeconfig, and small readers
//! for what the child exposes (JSON logs, the Prometheus text exposition).

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use karpenter_apis::ec2nodeclass::EC2NodeClass;
use karpenter_apis::nodeclaim::NodeClaim;
use karpenter_apis::nodepool::NodePool;
use karpenter_sim::cluster::ClusterConfig;
use karpenter_sim::{SimCluster, SimConfig};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Seed 000's NodePool and EC2NodeClass, as its install guide applies them.
pub const SEED_000: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    spec:
      requirements:
        - key: kubernetes.io/arch
          operator: In
          values: ["amd64"]
        - key: kubernetes.io/os
          operator: In
          values: ["linux"]
        - key: karpenter.sh/capacity-type
          operator: In
          values: ["on-demand", "spot"]
        - key: karpenter.k8s.aws/instance-category
          operator: In
          values: ["c", "m", "r"]
        - key: karpenter.k8s.aws/instance-generation
          operator: Gt
          values: ["2"]
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: default
      expireAfter: 720h
  limits:
    cpu: 1000
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 1m
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: default
spec:
  amiFamily: AL2
  role: KarpenterNodeRole-blue
  subnetSelectorTerms:
    - tags:
        Name: eksctl-blue-cluster/SubnetPrivate*
  securityGroupSelectorTerms:
    - tags:
        aws:eks:cluster-name: blue
  tags:
    eksdemo.io/version: v0.16.0
  amiSelectorTerms:
    - id: ami-0d6c6ac554d62a745
    - id: ami-0eb2ae1eda347f8cf
"#;

/// The embedded cluster with Karpenter's CRDs and a kubeconfig for the child processes.
pub struct Cluster {
    pub sim: SimCluster,
    pub client: kube::Client,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

/// A fresh directory under the system temp dir for one test's files.
fn scratch_dir(test: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "karpenter-process-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Cluster {
    /// Starts the cluster (fast simulated kubelet), installs the CRDs and writes a kubeconfig.
    pub async fn start(test: &str) -> Cluster {
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
        let dir = scratch_dir(test);
        let kubeconfig = dir.join("kubeconfig");
        sim.apiserver().write_kubeconfig(&kubeconfig).unwrap();
        Cluster {
            sim,
            client,
            dir,
            kubeconfig,
        }
    }

    /// Applies seed 000's NodePool and EC2NodeClass.
    pub async fn apply_seed_000(&self) {
        for doc in serde_yaml_ng::Deserializer::from_str(SEED_000) {
            let value: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
            match value["kind"].as_str().unwrap() {
                "NodePool" => {
                    let np: NodePool = serde_json::from_value(value).unwrap();
                    Api::<NodePool>::all(self.client.clone())
                        .create(&PostParams::default(), &np)
                        .await
                        .unwrap();
                }
                "EC2NodeClass" => {
                    let nc: EC2NodeClass = serde_json::from_value(value).unwrap();
                    Api::<EC2NodeClass>::all(self.client.clone())
                        .create(&PostParams::default(), &nc)
                        .await
                        .unwrap();
                }
                other => panic!("unexpected kind {other}"),
            }
        }
    }

    /// Seed 000's `inflate` Deployment: `replicas` × 1 CPU, zone spread `ScheduleAnyway`.
    pub async fn create_inflate(&self, replicas: i32) {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "inflate"}})).unwrap();
        let _ = Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await;
        let deployment: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "inflate", "namespace": "inflate"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "inflate"}},
                "template": {
                    "metadata": {"labels": {"app": "inflate"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 0,
                        "containers": [{
                            "name": "inflate",
                            "image": "public.ecr.aws/eks-distro/kubernetes/pause:3.7",
                            "resources": {"requests": {"cpu": "1"}}
                        }],
                        "topologySpreadConstraints": [{
                            "maxSkew": 1,
                            "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": {"app": "inflate"}}
                        }]
                    }
                }
            }
        }))
        .unwrap();
        Api::<Deployment>::namespaced(self.client.clone(), "inflate")
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap();
    }

    /// Sets the `inflate` Deployment's replicas.
    pub async fn scale_inflate(&self, replicas: i32) {
        Api::<Deployment>::namespaced(self.client.clone(), "inflate")
            .patch(
                "inflate",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
            .unwrap();
    }

    /// Pods of `inflate` by phase.
    pub async fn inflate_phases(&self) -> BTreeMap<String, usize> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), "inflate")
            .list(&ListParams::default())
            .await
            .unwrap();
        let mut phases = BTreeMap::new();
        for p in pods.items {
            if p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let phase = p
                .status
                .and_then(|s| s.phase)
                .unwrap_or_else(|| "Pending".to_string());
            *phases.entry(phase).or_insert(0) += 1;
        }
        phases
    }

    /// Waits until exactly `n` `inflate` pods exist and all are Running.
    pub async fn wait_inflate_running(&self, n: usize, children: &mut [&mut Controller]) {
        let want = BTreeMap::from([("Running".to_string(), n)]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            let last = self.inflate_phases().await;
            if last == want {
                return;
            }
            for c in children.iter_mut() {
                c.assert_alive();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {n} Running inflate pods; phases: {last:?}\n{}",
                children
                    .iter()
                    .map(|c| c.log_tail(40))
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn nodes(&self) -> Vec<Node> {
        Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    pub async fn nodeclaims(&self) -> Vec<NodeClaim> {
        Api::<NodeClaim>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    pub async fn lease_holder(&self) -> Option<String> {
        Api::<Lease>::namespaced(self.client.clone(), "kube-system")
            .get_opt("karpenter-leader-election")
            .await
            .unwrap()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    }

    /// Provider IDs of the Nodes and of the NodeClaims (which must be the same set once the
    /// cluster settles: every claim has its Node and no instance is without a claim).
    pub async fn provider_ids(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let nodes = self
            .nodes()
            .await
            .into_iter()
            .filter_map(|n| n.spec.and_then(|s| s.provider_id))
            .collect();
        let claims = self
            .nodeclaims()
            .await
            .into_iter()
            .filter_map(|c| c.status.and_then(|s| s.provider_id))
            .collect();
        (nodes, claims)
    }

    /// Waits until every NodeClaim has launched and has its Node, and every Node its claim.
    pub async fn wait_settled(&self) -> BTreeSet<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let claims = self.nodeclaims().await.len();
            let (nodes, claimed) = self.provider_ids().await;
            if nodes == claimed && claimed.len() == claims {
                return nodes;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nodes and nodeclaims never matched: {claims} claims, nodes {nodes:?}, claimed {claimed:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn stop(self) {
        self.sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `karpenter controller` child process; killed (SIGKILL) when dropped, so a failing
/// test never leaves one behind.
pub struct Controller {
    pub child: Child,
    pub log: PathBuf,
    pub name: String,
}

/// Short timings so the process-level tests run in seconds.
pub const FAST_ARGS: &[&str] = &[
    "--batch-idle-duration=300ms",
    "--batch-max-duration=3s",
    "--simulated-launch-delay=200ms",
    "--simulated-boot-delay=200ms",
    "--simulated-termination-delay=200ms",
    "--metrics-port=0",
    "--health-probe-port=0",
    "--leader-election-namespace=kube-system",
    "--log-level=info",
];

impl Controller {
    /// Spawns `karpenter controller --cloud-provider simulated` against `cluster` with
    /// [`FAST_ARGS`] plus `extra`, logging to a file named after `name`.
    pub fn spawn(cluster: &Cluster, name: &str, extra: &[&str]) -> Controller {
        let log = cluster.dir.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&log);
        let child = Command::new(env!("CARGO_BIN_EXE_karpenter"))
            .arg("controller")
            .arg("--cloud-provider=simulated")
            .arg(format!("--kubeconfig={}", cluster.kubeconfig.display()))
            .arg(format!("--log-output-paths={}", log.display()))
            .args(FAST_ARGS)
            .args(extra)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Controller {
            child,
            log,
            name: name.to_string(),
        }
    }

    /// The log lines so far, parsed.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Log lines whose message is `message`.
    pub fn logged(&self, message: &str) -> Vec<serde_json::Value> {
        self.log_lines()
            .into_iter()
            .filter(|l| l["message"] == message)
            .collect()
    }

    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "[{}] {}",
            self.name,
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "controller {} exited with {status}\n{}",
                self.name,
                self.log_tail(60)
            );
        }
    }

    /// The `/metrics` address, once the process logged it.
    pub async fn metrics_addr(&mut self) -> std::net::SocketAddr {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = self.logged("serving metrics and health probes").first() {
                let addr: std::net::SocketAddr = line["metrics"].as_str().unwrap().parse().unwrap();
                return std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()));
            }
            self.assert_alive();
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never served metrics\n{}",
                self.name,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The parsed `/metrics` exposition.
    pub async fn scrape(&mut self) -> Exposition {
        let addr = self.metrics_addr().await;
        let body = http_get(addr, "/metrics").await;
        Exposition::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
    }

    /// SIGKILL, as a crash or an OOM kill would end it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} ignored SIGTERM",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain HTTP/1.0 GET; returns the body (panics on a non-200 status).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    body.to_string()
}

/// One sample line: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed Prometheus text exposition (format 0.0.4): declared types and samples by family.
#[derive(Debug, Default)]
pub struct Exposition {
    pub types: BTreeMap<String, String>,
    pub samples: BTreeMap<String, Vec<Sample>>,
}

impl Exposition {
    /// Parses the text format; every sample must belong to a family with a `# TYPE`, under the
    /// suffix rules of its type (`_bucket`/`_sum`/`_count` for histograms, `_sum`/`_count` and
    /// `quantile` for summaries).
    pub fn parse(text: &str) -> Result<Exposition, String> {
        let mut out = Exposition::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .ok_or_else(|| format!("line {n}: bad TYPE line {line:?}"))?;
                if !matches!(
                    kind,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(format!("line {n}: unknown type {kind:?}"));
                }
                if out
                    .types
                    .insert(name.to_string(), kind.to_string())
                    .is_some()
                {
                    return Err(format!("line {n}: family {name} declared twice"));
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let sample = parse_sample(line).map_err(|e| format!("line {n}: {e}: {line:?}"))?;
            let family = out
                .family_of(&sample)
                .ok_or_else(|| format!("line {n}: sample {} has no TYPE", sample.name))?;
            out.samples.entry(family).or_default().push(sample);
        }
        Ok(out)
    }

    fn family_of(&self, sample: &Sample) -> Option<String> {
        if self.types.contains_key(&sample.name) {
            return Some(sample.name.clone());
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.name.strip_suffix(suffix)
                && let Some(kind) = self.types.get(base)
            {
                let ok = match kind.as_str() {
                    "histogram" => true,
                    "summary" => suffix != "_bucket",
                    _ => false,
                };
                return ok.then(|| base.to_string());
            }
        }
        None
    }

    /// The declared type of a family, if exposed.
    pub fn type_of(&self, family: &str) -> Option<&str> {
        self.types.get(family).map(String::as_str)
    }

    /// Samples of a family (all of its series and suffixes).
    pub fn family(&self, family: &str) -> &[Sample] {
        self.samples
            .get(family)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Sum of the plain samples (counters, gauges) or `_count` samples (histograms, summaries)
    /// of a family.
    pub fn total(&self, family: &str) -> f64 {
        let kind = self.type_of(family).unwrap_or("untyped");
        let count_name = format!("{family}_count");
        self.family(family)
            .iter()
            .filter(|s| match kind {
                "histogram" | "summary" => s.name == count_name,
                _ => s.name == family,
            })
            .map(|s| s.value)
            .sum()
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let (name_and_labels, value) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}').ok_or("unclosed labels")?;
            (&line[..=close], line[close + 1..].trim())
        }
        None => line.split_once(' ').ok_or("no value")?,
    };
    let (name, labels) = match name_and_labels.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))?),
        None => (name_and_labels, BTreeMap::new()),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("bad metric name {name:?}"));
    }
    // A timestamp may follow the value.
    let value = value.split_whitespace().next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_labels(mut rest: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches(',').trim_start();
        if rest.is_empty() {
            return Ok(labels);
        }
        let (key, after) = rest.split_once("=\"").ok_or("label without =\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("dangling escape".to_string()),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".to_string()),
            }
        };
        labels.insert(key.trim().to_string(), value);
        rest = &after[end + 1..];
    }
}

/// Polls `check` until it holds; the deadline only guards against hangs.
pub async fn eventually(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The distinct zones of `nodes`.
pub fn zones(nodes: &[Node]) -> BTreeSet<String> {
    nodes
        .iter()
        .filter_map(|n| {
            n.metadata
                .labels
                .as_ref()?
                .get(karpenter_apis::labels::ZONE)
                .cloned()
        })
        .collect()
}

/// Whether `path` exists (for messages).
pub fn exists(path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_parser_reads_every_type_and_rejects_orphans() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"z\"} 3\n\
                    # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1.5\nh_count 2\n\
                    # TYPE s summary\ns{quantile=\"0.5\"} NaN\ns_sum 0\ns_count 0\n";
        let e = Exposition::parse(text).unwrap();
        assert_eq!(e.type_of("a_total"), Some("counter"));
        assert_eq!(e.family("a_total")[0].labels["y"], "q\"z");
        assert_eq!(e.total("a_total"), 3.0);
        assert_eq!(e.total("h"), 2.0);
        assert_eq!(e.family("s").len(), 3);
        assert!(Exposition::parse("b 1\n").unwrap_err().contains("no TYPE"));
        assert!(
            Exposition::parse("# TYPE s summary\ns_bucket{le=\"1\"} 1\n")
                .unwrap_err()
                .contains("no TYPE")
        );
    }
}
