//! The real kubectl v1.34 against the embedded server: the commands users run from the install
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! guides must work unchanged.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
    dir: PathBuf,
}

impl Kubectl {
    fn new(env: &Env, tag: &str) -> Kubectl {
        let bin = repo_root().join(".bin/kubectl");
        assert!(
            bin.exists(),
            "kubectl not found at {}: run hack/install-test-tools.sh to install the test tools",
            bin.display()
        );
        let dir = std::env::temp_dir().join(format!(
            "karpenter-sim-kubectl-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        env.server.write_kubeconfig(&kubeconfig).unwrap();
        Kubectl {
            bin,
            kubeconfig,
            cache: dir.join("cache"),
            dir,
        }
    }

    /// Runs kubectl (blocking, on a helper thread so the server keeps serving) and returns
    /// (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        cmd.env("HOME", &self.dir);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(
            ok,
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

/// The NodePool + EC2NodeClass dry-run manifest from the first install guide.
fn seed_manifest(seeds: &Path, marker: &str) -> String {
    let path = std::fs::read_dir(seeds)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("000_"))
        })
        .expect("seed 000 exists");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find(marker).expect("marker in seed") + marker.len();
    let rest = &text[start..];
    let end = rest.find("```").expect("end of manifest");
    rest[..end].to_string()
}

fn seeds_dir() -> PathBuf {
    repo_root().join("../shared/seeds")
}

#[tokio::test]
async fn kubectl_drives_karpenter_resources_and_workloads() {
    let env = start().await;
    let k = Kubectl::new(&env, "main");
    let version = k.ok(&["version", "-o", "json"]).await;
    assert!(version.contains("v1.34"), "{version}");
    for crd in [
        "karpenter.sh_nodepools.yaml",
        "karpenter.sh_nodeclaims.yaml",
        "karpenter.k8s.aws_ec2nodeclasses.yaml",
    ] {
        let path = repo_root().join("crds").join(crd);
        k.ok(&["apply", "-f", &path.display().to_string()]).await;
    }
    let waited = k
        .ok(&[
            "wait",
            "--for=condition=Established",
            "crd/nodepools.karpenter.sh",
            "--timeout=20s",
        ])
        .await;
    assert!(waited.contains("condition met"), "{waited}");
    let crds = k.ok(&["get", "crds"]).await;
    assert!(
        crds.contains("nodepools.karpenter.sh") && crds.contains("CREATED AT"),
        "{crds}"
    );

    let manifest = seed_manifest(&seeds_dir(), "Kubernetes Resource Manager Dry Run:\n");
    let file = k.write("nodepool.yaml", &manifest);
    let applied = k.ok(&["apply", "-f", &file]).await;
    assert!(
        applied.contains("nodepool.karpenter.sh/default created"),
        "{applied}"
    );
    assert!(
        applied.contains("ec2nodeclass.karpenter.k8s.aws/default created"),
        "{applied}"
    );
    let again = k.ok(&["apply", "-f", &file]).await;
    assert!(
        again.contains("nodepool.karpenter.sh/default unchanged"),
        "{again}"
    );

    let dry = k.ok(&["apply", "--dry-run=server", "-f", &file]).await;
    assert!(dry.contains("(server dry run)"), "{dry}");
    let ssa = k
        .ok(&["apply", "--server-side", "--force-conflicts", "-f", &file])
        .await;
    assert!(ssa.contains("serverside-applied"), "{ssa}");
    let nodepools = k.ok(&["get", "nodepools"]).await;
    let header = nodepools.lines().next().unwrap_or("");
    for col in ["NAME", "NODECLASS", "NODES", "READY", "AGE"] {
        assert!(header.contains(col), "missing {col} in {nodepools}");
    }
    assert!(
        !header.contains("WEIGHT"),
        "priority-1 columns only with -o wide: {nodepools}"
    );
    assert!(
        nodepools
            .lines()
            .nth(1)
            .unwrap_or("")
            .starts_with("default"),
        "{nodepools}"
    );
    let wide = k.ok(&["get", "nodepools", "-o", "wide"]).await;
    assert!(
        wide.lines().next().unwrap_or("").contains("WEIGHT"),
        "{wide}"
    );
    let (ok, _, stderr) = k.run(&["get", "nodeclaims"]).await;
    assert!(ok && stderr.contains("No resources found"), "{stderr}");
    let nc = k.ok(&["get", "ec2nc"]).await;
    assert!(
        nc.lines().nth(1).unwrap_or("").starts_with("default"),
        "{nc}"
    );
    let yaml = k.ok(&["get", "nodepool", "default", "-o", "yaml"]).await;
    assert!(
        yaml.contains("kind: NodePool")
            && yaml.contains("consolidationPolicy: WhenEmptyOrUnderutilized"),
        "{yaml}"
    );
    let described = k.ok(&["describe", "nodepool", "default"]).await;
    assert!(
        described.contains("Name:")
            && described.contains("default")
            && described.contains("NodePool"),
        "{described}"
    );
    let explained = k.run(&["explain", "nodepools.spec.disruption"]).await;
    assert!(explained.0, "explain: {}", explained.2);

    // A workload from the same guide.
    k.ok(&["create", "namespace", "inflate"]).await;
    let deploy = seed_manifest(&seeds_dir(), "Manifest Installer Dry Run:\n");
    let file = k.write("inflate.yaml", &deploy);
    let out = k.ok(&["apply", "-f", &file]).await;
    assert!(out.contains("deployment.apps/inflate created"), "{out}");
    let out = k
        .ok(&[
            "-n",
            "inflate",
            "scale",
            "deployment",
            "inflate",
            "--replicas=3",
        ])
        .await;
    assert!(out.contains("scaled"), "{out}");
    let replicas = k
        .ok(&[
            "-n",
            "inflate",
            "get",
            "deployment",
            "inflate",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas.trim(), "3");
    let table = k.ok(&["-n", "inflate", "get", "deployments"]).await;
    assert!(
        table.contains("UP-TO-DATE") && table.contains("inflate"),
        "{table}"
    );
    let out = k.ok(&["apply", "-f", &file]).await;
    assert!(
        out.contains("configured") || out.contains("unchanged"),
        "{out}"
    );
    let events = k.run(&["get", "events", "-A"]).await;
    assert!(events.0, "get events: {}", events.2);
    let out = k
        .ok(&["-n", "inflate", "delete", "deployment", "inflate"])
        .await;
    assert!(out.contains("deleted"), "{out}");
    let (ok, _, stderr) = k
        .run(&["-n", "inflate", "get", "deployment", "inflate"])
        .await;
    assert!(!ok && stderr.contains("NotFound"), "{stderr}");
    // Pods, events and deletion (kubectl --wait watches the pod by name until it is gone).
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: nginx\n";
    let file = k.write("pod.yaml", pod);
    k.ok(&["apply", "-f", &file]).await;
    let uid = k
        .ok(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"])
        .await;
    let event = "apiVersion: v1\nkind: Event\nmetadata:\n  name: web.1\ninvolvedObject:\n  kind: Pod\n  name: web\n  namespace: default\n  uid: UID\nreason: FailedScheduling\nmessage: no nodes available\ntype: Warning\nlastTimestamp: \"2026-01-01T00:00:00Z\"\n";
    let file = k.write("event.yaml", &event.replace("UID", uid.trim()));
    k.ok(&["apply", "-f", &file]).await;
    let events = k.ok(&["get", "events"]).await;
    assert!(
        events.contains("FailedScheduling")
            && events.contains("pod/web")
            && events.contains("no nodes available"),
        "{events}"
    );
    let pods = k.ok(&["get", "pods", "-o", "wide"]).await;
    let header = pods.lines().next().unwrap_or("");
    for col in ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"] {
        assert!(header.contains(col), "missing {col}: {pods}");
    }
    assert!(pods.contains("0/1") && pods.contains("Pending"), "{pods}");
    let described = k.ok(&["describe", "pod", "web"]).await;
    assert!(
        described.contains("FailedScheduling"),
        "describe shows the pod's events: {described}"
    );
    let out = k.ok(&["delete", "pod", "web"]).await;
    assert!(out.contains("pod \"web\" deleted"), "{out}");
    let nodes = k.run(&["get", "nodes"]).await;
    assert!(
        nodes.0 && nodes.2.contains("No resources found"),
        "{}",
        nodes.2
    );
    env.server.shutdown().await;
}
