//! The real `karpenter controller --cloud-provider simulated` binary against the embedded
//! cluster running in this test process: seed 000 end to end, restarts by SIGKILL, two replicas
//! with leader election, and the `/metrics` exposition.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test fixtures: a failure should panic loudly

mod support;

use std::collections::BTreeSet;

use support::{Cluster, Controller, Exposition, eventually, zones};

/// Metric families this build implements, with upstream's types (reference §8). A family that
/// is exposed must have this type; those listed in [`MUST_HAVE_SAMPLES`] must also have samples
/// once seed 000 is provisioned.
const FAMILY_TYPES: &[(&str, &str)] = &[
    ("karpenter_nodeclaims_created_total", "counter"),
    ("karpenter_nodeclaims_terminated_total", "counter"),
    ("karpenter_nodeclaims_disrupted_total", "counter"),
    (
        "karpenter_nodeclaims_instance_termination_duration_seconds",
        "histogram",
    ),
    (
        "karpenter_nodeclaims_termination_duration_seconds",
        "histogram",
    ),
    ("karpenter_nodes_created_total", "counter"),
    ("karpenter_nodes_terminated_total", "counter"),
    ("karpenter_nodes_termination_duration_seconds", "summary"),
    ("karpenter_nodes_lifetime_duration_seconds", "histogram"),
    ("karpenter_nodes_drained_total", "counter"),
    ("karpenter_nodes_allocatable", "gauge"),
    ("karpenter_nodes_total_pod_requests", "gauge"),
    ("karpenter_pods_state", "gauge"),
    ("karpenter_pods_startup_duration_seconds", "summary"),
    ("karpenter_pods_eviction_requests_total", "counter"),
    ("karpenter_pods_drained_total", "counter"),
    ("karpenter_pods_bound_duration_seconds", "histogram"),
    (
        "karpenter_pods_provisioning_bound_duration_seconds",
        "histogram",
    ),
    (
        "karpenter_pods_provisioning_startup_duration_seconds",
        "histogram",
    ),
    ("karpenter_pods_provisioning_unbound_time_seconds", "gauge"),
    (
        "karpenter_pods_provisioning_unstarted_time_seconds",
        "gauge",
    ),
    (
        "karpenter_pods_provisioning_scheduling_undecided_time_seconds",
        "gauge",
    ),
    (
        "karpenter_pods_scheduling_decision_duration_seconds",
        "histogram",
    ),
    (
        "karpenter_scheduler_pending_pods_by_effective_zone_count",
        "gauge",
    ),
    (
        "karpenter_scheduler_scheduling_duration_seconds",
        "histogram",
    ),
    ("karpenter_scheduler_queue_depth", "gauge"),
    ("karpenter_scheduler_unschedulable_pods_count", "gauge"),
    ("karpenter_cluster_state_node_count", "gauge"),
    ("karpenter_cluster_state_synced", "gauge"),
    ("karpenter_cluster_state_unsynced_time_seconds", "gauge"),
    ("karpenter_cloudprovider_duration_seconds", "histogram"),
    ("karpenter_cloudprovider_errors_total", "counter"),
    ("karpenter_nodepools_usage", "gauge"),
    ("karpenter_nodepools_limit", "gauge"),
    (
        "karpenter_voluntary_disruption_consolidation_timeouts_total",
        "counter",
    ),
    ("controller_runtime_reconcile_total", "counter"),
    ("controller_runtime_reconcile_errors_total", "counter"),
    ("controller_runtime_reconcile_time_seconds", "histogram"),
    ("leader_election_master_status", "gauge"),
    ("karpenter_build_info", "gauge"),
];

/// Families that must carry samples after the first provisioning round.
const MUST_HAVE_SAMPLES: &[&str] = &[
    "karpenter_nodeclaims_created_total",
    "karpenter_nodes_created_total",
    "karpenter_scheduler_scheduling_duration_seconds",
    "karpenter_cloudprovider_duration_seconds",
    "karpenter_cluster_state_synced",
    "karpenter_cluster_state_node_count",
    "karpenter_pods_state",
    "karpenter_pods_scheduling_decision_duration_seconds",
    // Not `karpenter_scheduler_pending_pods_by_effective_zone_count`: it describes the last
    // pass's pending pods, so it is rightly empty once a pass found none (metrics_e2e checks
    // it while launches are held and pods are pending).
    "karpenter_nodes_allocatable",
    "karpenter_build_info",
];

fn check_exposition(e: &Exposition, nodeclaims: usize) {
    for (family, kind) in FAMILY_TYPES {
        if let Some(got) = e.type_of(family) {
            assert_eq!(got, *kind, "TYPE of {family}");
        }
    }
    for family in MUST_HAVE_SAMPLES {
        assert!(
            !e.family(family).is_empty(),
            "{family} has no samples; exposed: {:?}",
            e.types.keys().collect::<Vec<_>>()
        );
    }
    let created = e.family("karpenter_nodeclaims_created_total");
    assert!(
        created.iter().all(|s| s.labels["reason"] == "provisioned"
            && s.labels["nodepool"] == "default"
            && s.labels.contains_key("min_values_relaxed")),
        "{created:?}"
    );
    assert_eq!(
        e.total("karpenter_nodeclaims_created_total"),
        nodeclaims as f64
    );
    assert_eq!(e.total("karpenter_nodes_created_total"), nodeclaims as f64);
    let scheduling = e.family("karpenter_scheduler_scheduling_duration_seconds");
    assert!(
        scheduling
            .iter()
            .any(|s| s.labels.get("controller").map(String::as_str) == Some("provisioner")),
        "{scheduling:?}"
    );
    assert!(e.total("karpenter_scheduler_scheduling_duration_seconds") >= 1.0);
    let cloud = e.family("karpenter_cloudprovider_duration_seconds");
    for method in ["Create", "GetInstanceTypes"] {
        assert!(
            cloud.iter().any(|s| s.labels["method"] == method
                && s.labels["provider"] == "aws"
                && s.name.ends_with("_count")
                && s.value >= 1.0),
            "no {method} calls timed: {cloud:?}"
        );
    }
    // Histograms carry upstream's bucket layout (+Inf last, cumulative).
    let buckets: Vec<f64> = scheduling
        .iter()
        .filter(|s| s.name.ends_with("_bucket"))
        .map(|s| s.value)
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
}

/// Seed 000 through the real binary: 10 × 1 CPU with zone spread → Running in three zones and
/// `/metrics` shows it; then SIGKILL, restart, scale to 20 → every pod Running, the first
/// round's NodeClaims and Nodes survive (the restarted simulated cloud adopted their instances),
/// no duplicate NodeClaims and no instance without a claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_provisions_survives_sigkill_and_scales() {
    let cluster = Cluster::start("seed000").await;
    let mut first = Controller::spawn(&cluster, "first", &["--disable-leader-election"]);
    cluster.apply_seed_000().await;
    cluster.create_inflate(10).await;
    cluster.wait_inflate_running(10, &mut [&mut first]).await;
    let round_one = cluster.wait_settled().await;
    let nodes = cluster.nodes().await;
    // The seed's cluster has subnets in three zones; the simulated EC2 (no subnet selection)
    // offers all four of us-west-2, so the spread reaches at least three.
    assert!(
        zones(&nodes).len() >= 3,
        "ScheduleAnyway spread over the zones: {:?}",
        zones(&nodes)
    );
    let claims_one: BTreeSet<String> = cluster
        .nodeclaims()
        .await
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(claims_one.len(), round_one.len());
    assert!(claims_one.len() <= 10, "{claims_one:?}");

    // The exposition, parsed, after provisioning (the state and observability gauges refresh
    // every 5 s).
    let mut exposition = first.scrape().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while (exposition
        .family("karpenter_cluster_state_synced")
        .is_empty()
        || exposition.family("karpenter_pods_state").len() < 10)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        exposition = first.scrape().await;
    }
    check_exposition(&exposition, claims_one.len());

    // A crash: no shutdown, no cleanup.
    first.kill();
    let mut second = Controller::spawn(&cluster, "second", &["--disable-leader-election"]);
    eventually(
        "the restarted controller adopts the instances",
        60,
        async || {
            !second
                .logged("simulated EC2 adopted the instances registered as Nodes")
                .is_empty()
        },
    )
    .await;
    let adopted = second.logged("simulated EC2 adopted the instances registered as Nodes");
    assert_eq!(adopted[0]["adopted"], claims_one.len(), "{adopted:?}");
    cluster.scale_inflate(20).await;
    cluster.wait_inflate_running(20, &mut [&mut second]).await;
    let round_two = cluster.wait_settled().await;
    let claims_two: BTreeSet<String> = cluster
        .nodeclaims()
        .await
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert!(
        claims_one.is_subset(&claims_two),
        "first-round NodeClaims were lost: {claims_one:?} vs {claims_two:?}"
    );
    assert!(round_one.is_subset(&round_two));
    assert!(claims_two.len() > claims_one.len());
    assert!(claims_two.len() <= 20, "{claims_two:?}");
    assert!(
        second
            .logged("garbage collected nodeclaim whose instance is gone")
            .is_empty(),
        "no NodeClaim was collected as orphaned"
    );
    assert!(second.logged("terminated leaked instance").is_empty());

    // SIGTERM stops it cleanly (exit 0).
    let status = second.terminate().await;
    assert!(status.success(), "{status}\n{}", second.log_tail(30));
    assert!(!second.logged("stopped").is_empty());
    assert_eq!(
        second.logged("controllers stopped").len(),
        1,
        "logged once, by the operator"
    );
    cluster.stop().await;
}

/// Two replicas with leader election: only the leader creates NodeClaims; SIGKILL of the leader
/// hands over within the lease duration (15 s) and the successor provisions new pending pods
/// without losing the old leader's nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_only_the_leader_acts_and_a_successor_takes_over() {
    let cluster = Cluster::start("leader").await;
    let mut a = Controller::spawn(&cluster, "a", &[]);
    let mut b = Controller::spawn(&cluster, "b", &[]);
    eventually("someone leads", 60, async || {
        cluster.lease_holder().await.is_some()
    })
    .await;
    // Which one leads: the one whose leadership gauge is 1.
    let leading = |e: &Exposition| e.total("leader_election_master_status") == 1.0;
    let mut a_leads = false;
    eventually("a replica reports leading", 30, async || {
        a_leads = leading(&a.scrape().await);
        a_leads || leading(&b.scrape().await)
    })
    .await;
    let (mut leader, mut follower) = if a_leads { (a, b) } else { (b, a) };
    let first_holder = cluster.lease_holder().await.unwrap();

    cluster.apply_seed_000().await;
    cluster.create_inflate(4).await;
    cluster
        .wait_inflate_running(4, &mut [&mut leader, &mut follower])
        .await;
    let before = cluster.wait_settled().await;
    assert!(!leader.logged("created nodeclaim").is_empty());
    assert!(
        follower.logged("created nodeclaim").is_empty(),
        "the follower acted: {:?}",
        follower.logged("created nodeclaim")
    );
    assert!(follower.logged("leading: starting controllers").is_empty());
    assert_eq!(
        follower
            .scrape()
            .await
            .total("karpenter_nodeclaims_created_total"),
        0.0
    );

    leader.kill();
    cluster.scale_inflate(8).await;
    eventually("the follower takes the lease", 40, async || {
        cluster
            .lease_holder()
            .await
            .is_some_and(|h| h != first_holder)
    })
    .await;
    cluster.wait_inflate_running(8, &mut [&mut follower]).await;
    let after = cluster.wait_settled().await;
    assert!(
        before.is_subset(&after),
        "the old leader's nodes survive the handover"
    );
    assert!(after.len() > before.len());
    assert!(!follower.logged("created nodeclaim").is_empty());
    let e = follower.scrape().await;
    assert!(leading(&e));
    assert!(e.total("karpenter_nodeclaims_created_total") >= 1.0);
    cluster.stop().await;
}
