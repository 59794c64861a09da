//! `karpenter simulate` end to end: the built binary runs scenarios through the real solver and
//! the embedded EC2 catalog; the JSON report is checked against the scenario's own rules
//! (NodePool requirements, zone spread, limits) and against itself (totals = Σ launches).

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of a test binary may panic

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The seed-000 NodePool with `limits` and requirements swapped in.
fn nodepool(limits: &str, first_operator: &str) -> String {
    format!(
        r#"apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    spec:
      requirements:
        - key: kubernetes.io/arch
          operator: {first_operator}
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
  limits:
{limits}
"#
    )
}

const STREAM: &str = r#"apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: on-demand-only
spec:
  template:
    spec:
      requirements:
        - key: karpenter.sh/capacity-type
          operator: In
          values: ["on-demand"]
        - key: karpenter.k8s.aws/instance-family
          operator: In
          values: ["m5"]
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: al2023
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: al2023
spec:
  role: KarpenterNodeRole-test
  amiSelectorTerms:
    - alias: al2023@latest
  subnetSelectorTerms:
    - tags: {karpenter.sh/discovery: test}
  securityGroupSelectorTerms:
    - tags: {karpenter.sh/discovery: test}
---
apiVersion: v1
kind: Namespace
metadata:
  name: web
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: web
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: nginx
          resources: {requests: {cpu: 500m, memory: 1Gi}}
"#;

/// One invocation: files written to a scratch dir (`$DIR` in args is replaced by its path).
struct Case {
    name: &'static str,
    files: Vec<(&'static str, String)>,
    args: Vec<&'static str>,
}

fn case(name: &'static str) -> Case {
    Case {
        name,
        files: vec![],
        args: vec![],
    }
}

impl Case {
    fn file(mut self, name: &'static str, text: String) -> Self {
        self.files.push((name, text));
        self
    }
    fn args(mut self, args: &[&'static str]) -> Self {
        self.args.extend(args);
        self
    }
}

/// What the invocation must produce.
enum Expect {
    /// Exit 0; the JSON report passes the check.
    Report(fn(&Value)),
    /// Exit 0 with `-o text`; stdout contains every fragment.
    Text(&'static [&'static str]),
    /// Non-zero exit; stderr contains every fragment.
    Fails(&'static [&'static str]),
}

fn check(c: Case, expect: Expect) {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "karpenter-simulate-{}-{}",
        std::process::id(),
        c.name
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in &c.files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let mut args: Vec<String> = vec!["simulate".into()];
    args.extend(
        c.args
            .iter()
            .map(|a| a.replace("$DIR", dir.to_str().unwrap())),
    );
    if !matches!(expect, Expect::Text(_)) {
        args.extend(["-o".into(), "json".into()]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_karpenter"))
        .args(&args)
        // Errors must read the same whether or not the user has backtraces switched on.
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match expect {
        Expect::Report(f) => {
            assert!(out.status.success(), "{}: failed: {stderr}", c.name);
            let report: Value = serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("{}: output is not JSON: {e}\n{stdout}", c.name));
            f(&report);
        }
        Expect::Text(fragments) => {
            assert!(out.status.success(), "{}: failed: {stderr}", c.name);
            for f in fragments {
                assert!(
                    stdout.contains(f),
                    "{}: {f:?} missing from\n{stdout}",
                    c.name
                );
            }
        }
        Expect::Fails(fragments) => {
            assert!(
                !out.status.success(),
                "{}: should fail, printed\n{stdout}",
                c.name
            );
            assert!(
                stderr.starts_with("Error: ") && !stderr.contains("backtrace"),
                "{}: the error is not a plain message:\n{stderr}",
                c.name
            );
            for f in fragments {
                assert!(
                    stderr.contains(f),
                    "{}: {f:?} missing from\n{stderr}",
                    c.name
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- report accessors ------------------------------------------------------------------------

fn steps(r: &Value) -> &Vec<Value> {
    r["steps"].as_array().unwrap()
}

fn claims(step: &Value) -> &Vec<Value> {
    step["new_nodeclaims"].as_array().unwrap()
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

fn label<'a>(claim: &'a Value, key: &str) -> &'a str {
    claim["labels"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no label {key}", claim["name"]))
}

/// Σ launch prices of every NodeClaim created up to and including step `upto`.
fn launched_price(r: &Value, upto: usize) -> f64 {
    steps(r)
        .iter()
        .take(upto + 1)
        .flat_map(claims)
        .map(|c| c["price_per_hour"].as_f64().unwrap())
        .sum()
}

/// Every NodeClaim of every step launches an instance the seed-000 NodePool allows.
fn respects_default_nodepool(r: &Value) {
    for c in steps(r).iter().flat_map(claims) {
        assert_eq!(c["nodepool"], "default");
        assert!(["c", "m", "r"].contains(&label(c, "karpenter.k8s.aws/instance-category")));
        let generation: u32 = label(c, "karpenter.k8s.aws/instance-generation")
            .parse()
            .unwrap();
        assert!(generation > 2, "{}", c["instance_type"]);
        assert_eq!(label(c, "kubernetes.io/arch"), "amd64");
        assert_eq!(label(c, "kubernetes.io/os"), "linux");
        assert_eq!(
            label(c, "node.kubernetes.io/instance-type"),
            c["instance_type"]
        );
        assert_eq!(label(c, "topology.kubernetes.io/zone"), c["zone"]);
        assert!(["spot", "on-demand"].contains(&c["capacity_type"].as_str().unwrap()));
        let req = n(&c["requests"]["cpu_millicores"]);
        let alloc = n(&c["allocatable"]["cpu_millicores"]);
        assert!(
            req <= alloc,
            "{}: requests {req}m > allocatable {alloc}m",
            c["name"]
        );
        assert_eq!(
            n(&c["daemonset_overhead"]["cpu_millicores"]),
            125,
            "aws-node + kube-proxy"
        );
        assert!(n(&c["instance_type_options"]) >= 1);
        let price = c["price_per_hour"].as_f64().unwrap();
        assert!(price > 0.0);
        let source = c["price_source"].as_str().unwrap();
        if c["capacity_type"] == "spot" {
            assert_eq!(source, "estimate");
        }
    }
}

fn default_scenario(r: &Value) {
    respects_default_nodepool(r);
    let s = steps(r);
    assert_eq!(s.len(), 3);
    // Step 1: 10 pods, all placed on new NodeClaims spread over the three subnet zones.
    let first = &s[0];
    assert_eq!(n(&first["pods"]["pending"]), 10);
    assert_eq!(n(&first["pods"]["placed_on_new"]), 10);
    assert_eq!(n(&first["pods"]["unschedulable"]), 0);
    assert_eq!(first["empty_nodes_price_per_hour"].to_string(), "0.0");
    let zones: BTreeSet<&str> = claims(first)
        .iter()
        .map(|c| c["zone"].as_str().unwrap())
        .collect();
    assert_eq!(
        zones,
        BTreeSet::from(["us-west-2b", "us-west-2c", "us-west-2d"])
    );
    let pods_on_claims: usize = claims(first)
        .iter()
        .map(|c| c["pods"].as_array().unwrap().len())
        .sum();
    assert_eq!(pods_on_claims, 10);
    // Totals are the sum of what was launched, at every step.
    for (i, step) in s.iter().enumerate() {
        let total = step["cluster"]["price_per_hour"].as_f64().unwrap();
        assert!(total > 0.0);
        assert!(
            (total - launched_price(r, i)).abs() < 1e-9,
            "step {i}: {total}"
        );
        let month = step["cluster"]["price_per_month"].as_f64().unwrap();
        assert!((month - total * 730.0).abs() < 1e-6);
    }
    // Step 2: 10 more pods; room left on step-1 nodes is reused first, the rest is new capacity.
    let second = &s[1];
    assert_eq!(n(&second["pods"]["pending"]), 10);
    assert_eq!(
        n(&second["pods"]["placed_on_existing"]) + n(&second["pods"]["placed_on_new"]),
        10
    );
    assert!(!claims(second).is_empty(), "20 CPUs need more nodes");
    assert!(
        n(&second["cluster"]["allocatable"]["cpu_millicores"])
            > n(&first["cluster"]["allocatable"]["cpu_millicores"])
    );
    assert_eq!(n(&second["cluster"]["pods_running"]), 20);
    // Step 3: scale-down removes pods, creates nothing, and (no consolidation) keeps the cost.
    let third = &s[2];
    assert_eq!(n(&third["pods"]["removed"]), 15);
    assert!(claims(third).is_empty());
    assert_eq!(n(&third["cluster"]["pods_running"]), 5);
    let empty = third["empty_nodes"].as_array().unwrap();
    assert!(
        !empty.is_empty(),
        "15 of 20 pods gone leaves some node empty"
    );
    let empty_price: f64 = steps(r)
        .iter()
        .flat_map(claims)
        .filter(|c| empty.contains(&c["name"]))
        .map(|c| c["price_per_hour"].as_f64().unwrap())
        .sum();
    let reported = third["empty_nodes_price_per_hour"].as_f64().unwrap();
    assert!((reported - empty_price).abs() < 1e-9);
    assert_eq!(
        third["cluster"]["price_per_hour"],
        second["cluster"]["price_per_hour"]
    );
    assert!(r["limitations"].as_array().unwrap().len() >= 3);
}

fn limited_to_four_cpus(r: &Value) {
    let first = &steps(r)[0];
    assert!(n(&first["pods"]["unschedulable"]) > 0);
    let cpus: u64 = claims(first)
        .iter()
        .map(|c| {
            label(c, "karpenter.k8s.aws/instance-cpu")
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert!(cpus <= 4, "launched {cpus} CPUs under a 4-CPU limit");
    let groups = first["unschedulable"].as_array().unwrap();
    assert!(
        groups
            .iter()
            .all(|g| g["reason"].as_str().unwrap().contains("exceed limits")),
        "{groups:?}"
    );
    for g in groups {
        assert_eq!(g["kind"], "unschedulable");
        assert_eq!(g["nodepools"][0]["nodepool"], "default");
        assert_eq!(g["nodepools"][0]["kind"], "limits_exceeded");
    }
    let count: u64 = groups.iter().map(|g| n(&g["count"])).sum();
    assert_eq!(count, n(&first["pods"]["unschedulable"]));
}

fn manifest_stream(r: &Value) {
    let s = steps(r);
    assert_eq!(s.len(), 1, "no steps: one step at the declared replicas");
    assert_eq!(n(&s[0]["pods"]["placed_on_new"]), 6);
    for c in claims(&s[0]) {
        assert_eq!(c["nodepool"], "on-demand-only");
        assert_eq!(c["capacity_type"], "on-demand");
        assert_eq!(c["price_source"], "aws-on-demand-list");
        assert!(c["instance_type"].as_str().unwrap().starts_with("m5."));
    }
    assert_eq!(s[0]["cluster"]["includes_estimates"], false);
    assert!(
        r["notes"][0]
            .as_str()
            .unwrap()
            .contains("ignored Namespace")
    );
}

#[test]
fn default_scenario_scales_10_20_5() {
    check(case("default"), Expect::Report(default_scenario));
}

#[test]
fn default_scenario_text_is_readable() {
    check(
        case("text").args(&["-o", "text"]),
        Expect::Text(&[
            "Step 1/3: scale inflate to 10",
            "NODECLAIM",
            "TYPE OPTIONS",
            "solved in",
            "/month at 730 h",
            "No consolidation or other disruption is simulated",
            "Spot prices are estimates",
        ]),
    );
}

#[test]
fn nodepool_limit_leaves_pods_unschedulable() {
    check(
        case("limits")
            .file("np.yaml", nodepool("    cpu: 4", "In"))
            .args(&["--nodepool", "$DIR/np.yaml"]),
        Expect::Report(limited_to_four_cpus),
    );
}

#[test]
fn invalid_nodepool_is_rejected_naming_the_field() {
    check(
        case("invalid")
            .file("np.yaml", nodepool("    cpu: 1000", "Inn"))
            .args(&["--nodepool", "$DIR/np.yaml"]),
        Expect::Fails(&[
            "NodePool.karpenter.sh \"default\" is invalid",
            "spec.template.spec.requirements[0].operator",
        ]),
    );
}

#[test]
fn manifest_stream_is_a_scenario() {
    check(
        case("stream")
            .file("stream.yaml", STREAM.to_string())
            .args(&["--scenario", "$DIR/stream.yaml"]),
        Expect::Report(manifest_stream),
    );
}

#[test]
fn scenario_errors_name_what_is_wrong() {
    check(
        case("unknown-deployment")
            .file(
                "s.yaml",
                format!("{STREAM}---\nsteps:\n  - scale: {{deployment: nope, replicas: 1}}\n"),
            )
            .args(&["--scenario", "$DIR/s.yaml"]),
        Expect::Report(|r| {
            // The steps name a Deployment the workloads lack: fall back, and say so.
            assert_eq!(steps(r).len(), 1);
            let notes = r["notes"].to_string();
            assert!(notes.contains("\\\"nope\\\""), "{notes}");
        }),
    );
    check(
        case("typo")
            .file("s.yaml", "nodepool: []\n".to_string())
            .args(&["--scenario", "$DIR/s.yaml"]),
        Expect::Fails(&["nor a valid scenario"]),
    );
    check(
        case("no-class")
            .file("s.yaml", STREAM.split("---").next().unwrap().to_string())
            .args(&["--scenario", "$DIR/s.yaml"]),
        Expect::Fails(&["nodeClassRef", "\"al2023\""]),
    );
}
