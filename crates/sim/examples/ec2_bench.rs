//! Prints how fast the simulated EC2 answers: catalog load, launches with a provisioning-sized
//! NodeClaim (600 allowed instance types), instance types with and without unavailable
//! offerings, and listing. Run with
//! `cargo run --release -p karpenter-sim --example ec2_bench [launches]`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark harness may panic

use std::sync::Arc;
use std::time::{Duration, Instant};

use karpenter_apis::common::{
    NodeClassReference, NodeSelectorOperator, NodeSelectorRequirementWithMinValues,
};
use karpenter_apis::labels;
use karpenter_apis::nodeclaim::{NodeClaim, NodeClaimSpec};
use karpenter_apis::nodepool::NodePool;
use karpenter_catalog::Catalog;
use karpenter_cloudprovider::{CloudProvider, OfferingKey, SystemClock};
use karpenter_sim::ec2::{SimEc2Config, SimulatedEc2};

fn per_call(total: Duration, calls: usize) -> String {
    format!(
        "{:.1} µs/call",
        total.as_secs_f64() * 1e6 / calls.max(1) as f64
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let launches: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);

    let start = Instant::now();
    let catalog = Catalog::embedded().unwrap();
    println!(
        "catalog load ({} types): {:.1} ms",
        catalog.instance_types.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    // The 600 cheapest linux/amd64 types, as the provisioner would write them.
    let mut allowed: Vec<(f64, String)> = catalog
        .instance_types
        .iter()
        .filter(|t| t.labels.get(labels::ARCH).map(String::as_str) == Some("amd64"))
        .filter_map(|t| {
            t.cheapest_available_offering()
                .map(|o| (o.price, t.name.clone()))
        })
        .collect();
    allowed.sort_by(|a, b| a.0.total_cmp(&b.0));
    allowed.truncate(600);
    let allowed: Vec<String> = allowed.into_iter().map(|(_, n)| n).collect();

    let start = Instant::now();
    let ec2 = SimulatedEc2::from_catalog(
        SimEc2Config {
            // Keep instances pending: the benchmark measures the API, not the lifecycle.
            launch_delay: Duration::from_secs(3600),
            ..Default::default()
        },
        Arc::new(SystemClock),
        catalog,
    )
    .unwrap();
    println!(
        "SimulatedEc2::from_catalog: {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );

    let mut claim = NodeClaim::new(
        "bench",
        NodeClaimSpec {
            taints: vec![],
            startup_taints: vec![],
            requirements: vec![
                NodeSelectorRequirementWithMinValues::new(
                    labels::INSTANCE_TYPE,
                    NodeSelectorOperator::In,
                    allowed.iter().cloned(),
                ),
                NodeSelectorRequirementWithMinValues::new(
                    labels::CAPACITY_TYPE,
                    NodeSelectorOperator::In,
                    ["spot", "on-demand"],
                ),
            ],
            resources: Default::default(),
            node_class_ref: NodeClassReference::ec2_node_class("default"),
            termination_grace_period: None,
            expire_after: None,
        },
    );
    for (k, v) in [("cpu", "3500m"), ("memory", "6Gi"), ("pods", "20")] {
        claim.spec.resources.requests.insert(
            k.to_string(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity(v.to_string()),
        );
    }

    let start = Instant::now();
    for _ in 0..launches {
        ec2.create(&claim).await.unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "create x{launches} (600 allowed types): {:.1} ms total, {}",
        elapsed.as_secs_f64() * 1e3,
        per_call(elapsed, launches)
    );

    let node_pool: NodePool = serde_json::from_value(serde_json::json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "default"},
        "spec": {"template": {"spec": {"requirements": [],
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}}}}
    }))
    .unwrap();
    let rounds = 200;
    let start = Instant::now();
    for _ in 0..rounds {
        ec2.get_instance_types(&node_pool).await.unwrap();
    }
    println!(
        "get_instance_types, nothing unavailable: {}",
        per_call(start.elapsed(), rounds)
    );
    ec2.mark_unavailable(OfferingKey::new("m5.large", "us-west-2a", "spot"));
    let start = Instant::now();
    ec2.get_instance_types(&node_pool).await.unwrap();
    println!(
        "get_instance_types, first call after an offering became unavailable: {:.2} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let start = Instant::now();
    for _ in 0..rounds {
        ec2.get_instance_types(&node_pool).await.unwrap();
    }
    println!(
        "get_instance_types, unavailable set unchanged (cached): {}",
        per_call(start.elapsed(), rounds)
    );

    let start = Instant::now();
    let listed = ec2.list().await.unwrap().len();
    println!(
        "list ({listed} instances): {:.2} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let ids: Vec<String> = ec2
        .instances()
        .iter()
        .map(|i| i.provider_id.clone())
        .collect();
    let start = Instant::now();
    for id in &ids {
        ec2.get(id).await.unwrap();
    }
    println!(
        "get x{}: {}",
        ids.len(),
        per_call(start.elapsed(), ids.len())
    );
}
