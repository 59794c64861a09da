//! Enforces the crate dependency rules of ARCHITECTURE.md on the real workspace: reads
//! `cargo metadata` for the workspace edges and `cargo tree -e normal` per crate for what each
//! crate reaches transitively (per-package feature resolution, so a dev-dependency elsewhere
//! cannot hide or fake an edge).

#![allow(clippy::expect_used)] // test helpers outside #[test] fns: a failure should abort the test

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn cargo() -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn workspace_respects_architecture() {
    let metadata: serde_json::Value = serde_json::from_str(&run(cargo().args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
    ])))
    .expect("metadata json");
    let edges = karpenter_tests::workspace_edges(&metadata).expect("edges");
    assert!(
        edges.contains_key("karpenter-apis"),
        "metadata lists no karpenter-apis: {edges:?}"
    );

    let mut reach: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for krate in edges.keys() {
        let tree = run(cargo().args([
            "tree", "--locked", "-p", krate, "-e", "normal", "--prefix", "none", "--format", "{p}",
        ]));
        let names = tree
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter(|name| name != krate)
            .map(str::to_string)
            .collect();
        reach.insert(krate.clone(), names);
    }
    // Guard against a parse that silently finds nothing: apis must reach serde.
    assert!(
        reach["karpenter-apis"].contains("serde"),
        "cargo tree output not understood: {:?}",
        reach["karpenter-apis"]
    );

    let violations = karpenter_tests::check(&edges, &reach);
    assert!(
        violations.is_empty(),
        "architecture violations:\n{}",
        violations
            .iter()
            .map(|v| format!("  - {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
