//! Prints how fast server-side apply, strategic merge patch and selector matching run on a
//! realistic Deployment. Run with `cargo run --release -p karpenter-apimachinery --example
//! apply_throughput`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark harness may panic

use std::collections::BTreeMap;
use std::time::Instant;

use karpenter_apimachinery::apply::server_side_apply;
use karpenter_apimachinery::patch::{BuiltinSchema, strategic_merge_patch};
use karpenter_apimachinery::selector::LabelSelector;
use serde_json::json;

fn deployment(replicas: u32, image: &str) -> serde_json::Value {
    let containers: Vec<_> = (0..4)
        .map(|i| {
            json!({
                "name": format!("c{i}"),
                "image": image,
                "env": (0..10).map(|e| json!({"name": format!("E{e}"), "value": "v"})).collect::<Vec<_>>(),
                "ports": [{"containerPort": 8080 + i}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}
            })
        })
        .collect();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}
        }
    })
}

fn main() {
    let schema = BuiltinSchema::for_kind("apps", "v1", "Deployment").unwrap();
    let iterations: u32 = std::env::var("ITER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);

    let mut live = server_side_apply(
        None,
        &deployment(1, "a"),
        "kubectl",
        false,
        &schema,
        "t0",
        None,
    )
    .unwrap();
    let start = Instant::now();
    for i in 0..iterations {
        let config = deployment(i % 5 + 1, if i % 2 == 0 { "a" } else { "b" });
        live =
            server_side_apply(Some(&live), &config, "kubectl", false, &schema, "t1", None).unwrap();
    }
    let per = start.elapsed() / iterations;
    let owned: usize = karpenter_apimachinery::apply::managed_field_sets(&live)
        .unwrap()
        .iter()
        .map(|s| s.fields.len())
        .sum();
    println!(
        "object: {} bytes of JSON, {owned} owned fields",
        live.to_string().len()
    );
    println!("server_side_apply (Deployment, 4 containers x 10 env): {per:?} per apply");

    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c2", "image": "z"}]}}}});
    let start = Instant::now();
    for _ in 0..iterations {
        let _ = strategic_merge_patch(&live, &patch, &schema).unwrap();
    }
    println!(
        "strategic_merge_patch (same object): {:?} per patch",
        start.elapsed() / iterations
    );

    let selector = LabelSelector::parse("app=web,tier in (fe,be),!canary").unwrap();
    let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "fe"), ("zone", "a")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let matches: u32 = iterations * 500;
    let start = Instant::now();
    let mut hits = 0u32;
    for _ in 0..matches {
        hits += u32::from(selector.matches(std::hint::black_box(&labels)));
    }
    println!(
        "label selector match (3 requirements): {:?} per match ({hits} hits)",
        start.elapsed() / matches
    );
}
