//! Gathers every family, renders the text exposition, parses it back and compares each family's
//! name, type, label names and buckets with upstream's, restated here independently.

use std::collections::{BTreeMap, BTreeSet};

use prometheus::{Encoder, TextEncoder};

use super::*;

/// One family as read back from the text exposition.
#[derive(Debug, Default, Clone, PartialEq)]
struct Family {
    kind: String,
    /// Label names of the samples, excluding `le` and `quantile`.
    labels: BTreeSet<String>,
    /// `le` values of `_bucket` samples (histograms).
    buckets: Vec<f64>,
    /// `quantile` values (summaries).
    quantiles: Vec<f64>,
    /// Sample name → value, for samples without labels beyond the family's.
    samples: BTreeMap<String, f64>,
}

/// A small parser for the Prometheus text format 0.0.4 (enough for what the encoder writes).
fn parse_exposition(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line has a type");
            families.entry(name.to_string()).or_default().kind = kind.to_string();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("value {v:?}: {e}")),
        };
        let (sample_name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        let family_name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                sample_name
                    .strip_suffix(suffix)
                    .filter(|base| families.contains_key(*base))
            })
            .unwrap_or(sample_name);
        let family = families
            .get_mut(family_name)
            .unwrap_or_else(|| panic!("sample {sample_name} before its TYPE line"));
        let mut label_names = Vec::new();
        for pair in split_label_pairs(labels) {
            let (k, v) = pair.split_once('=').expect("label pair");
            let v = v.trim_matches('"');
            match k {
                "le" => family.buckets.push(if v == "+Inf" {
                    f64::INFINITY
                } else {
                    v.parse().expect("le")
                }),
                "quantile" => family.quantiles.push(v.parse().expect("quantile")),
                _ => label_names.push(k.to_string()),
            }
        }
        family.labels.extend(label_names);
        family.samples.insert(series.to_string(), value);
    }
    families
}

/// Splits `a="x",b="y,z"` on commas outside quotes.
fn split_label_pairs(labels: &str) -> Vec<String> {
    let mut pairs = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    for c in labels.chars() {
        match c {
            '\\' if in_quotes && !escaped => escaped = true,
            '"' if !escaped => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                pairs.push(std::mem::take(&mut current));
                continue;
            }
            _ => escaped = false,
        }
        current.push(c);
    }
    if !current.is_empty() {
        pairs.push(current);
    }
    pairs
}

/// Puts one series into every family so each appears in the exposition. Destructured without
/// `..`: a new family fails to compile here until the test covers it.
fn touch_every_family(m: &Metrics) {
    let Metrics {
        nodeclaims,
        nodes,
        pods,
        cluster,
        scheduler,
        disruption,
        controller_runtime,
        workqueue,
        cloudprovider: _, // registered by karpenter-cloudprovider; touched through its decorator
        leader_election_master_status,
        build_info,
        status,
    } = m;
    fn c(v: &IntCounterVec) {
        let n = v.desc()[0].variable_labels.len();
        v.with_label_values(&vec!["x"; n]).inc();
    }
    fn g(v: &GaugeVec) {
        let n = v.desc()[0].variable_labels.len();
        v.with_label_values(&vec!["x"; n]).set(1.0);
    }
    fn ig(v: &IntGaugeVec) {
        let n = v.desc()[0].variable_labels.len();
        v.with_label_values(&vec!["x"; n]).set(1);
    }
    fn h(v: &HistogramVec) {
        let n = v.desc()[0].variable_labels.len();
        v.with_label_values(&vec!["x"; n]).observe(0.5);
    }
    let NodeClaimMetrics {
        created,
        terminated,
        disrupted,
        instance_termination_duration,
        termination_duration,
        unhealthy_disrupted,
    } = nodeclaims;
    [created, terminated, disrupted, unhealthy_disrupted]
        .into_iter()
        .for_each(c);
    [instance_termination_duration, termination_duration]
        .into_iter()
        .for_each(h);
    let NodeMetrics {
        created,
        terminated,
        termination_duration,
        lifetime_duration,
        drained,
        allocatable,
        total_pod_requests,
        total_pod_limits,
        total_daemon_requests,
        total_daemon_limits,
        system_overhead,
        current_lifetime,
    } = nodes;
    [created, terminated, drained].into_iter().for_each(c);
    termination_duration
        .with_label_values(&["x"])
        .unwrap()
        .observe(1.0);
    h(lifetime_duration);
    [
        allocatable,
        total_pod_requests,
        total_pod_limits,
        total_daemon_requests,
        total_daemon_limits,
        system_overhead,
        current_lifetime,
    ]
    .into_iter()
    .for_each(g);
    let PodMetrics {
        disruption_initiated,
        eviction_requests,
        drained,
        state,
        startup_duration,
        unstarted_time,
        bound_duration,
        unbound_time,
        provisioning_bound_duration,
        provisioning_startup_duration,
        provisioning_unbound_time,
        provisioning_unstarted_time,
        provisioning_scheduling_undecided_time,
        scheduling_decision_duration,
    } = pods;
    [disruption_initiated, eviction_requests, drained]
        .into_iter()
        .for_each(c);
    startup_duration.observe(1.0);
    [
        state,
        unstarted_time,
        unbound_time,
        provisioning_unbound_time,
        provisioning_unstarted_time,
        provisioning_scheduling_undecided_time,
    ]
    .into_iter()
    .for_each(g);
    [
        bound_duration,
        provisioning_bound_duration,
        provisioning_startup_duration,
        scheduling_decision_duration,
    ]
    .into_iter()
    .for_each(h);
    let ClusterMetrics {
        utilization_percent,
        nodepool_limit,
        nodepool_usage,
        nodepool_cost,
        nodepool_cost_tracker_errors,
        state_node_count,
        state_synced,
        state_unsynced_time,
    } = cluster;
    [
        utilization_percent,
        nodepool_limit,
        nodepool_usage,
        nodepool_cost,
        state_node_count,
        state_synced,
        state_unsynced_time,
    ]
    .into_iter()
    .for_each(g);
    c(nodepool_cost_tracker_errors);
    let SchedulerMetrics {
        scheduling_duration,
        queue_depth,
        unfinished_work,
        unschedulable_pods,
        ignored_pods,
        pending_pods_by_effective_zone,
    } = scheduler;
    h(scheduling_duration);
    [
        queue_depth,
        unfinished_work,
        unschedulable_pods,
        ignored_pods,
        pending_pods_by_effective_zone,
    ]
    .into_iter()
    .for_each(g);
    let DisruptionMetrics {
        evaluation_duration,
        decisions,
        decisions_by_nodepool,
        eligible_nodes,
        consolidation_timeouts,
        failed_validations,
        queue_failures,
        allowed_disruptions,
        nodes_consuming_budgets,
        consolidation_score,
        consolidation_moves,
    } = disruption;
    [evaluation_duration, consolidation_score]
        .into_iter()
        .for_each(h);
    [
        decisions,
        decisions_by_nodepool,
        consolidation_timeouts,
        failed_validations,
        queue_failures,
        consolidation_moves,
    ]
    .into_iter()
    .for_each(c);
    [eligible_nodes, allowed_disruptions, nodes_consuming_budgets]
        .into_iter()
        .for_each(g);
    let ControllerRuntimeMetrics {
        reconcile_total,
        reconcile_errors,
        terminal_reconcile_errors,
        reconcile_panics,
        reconcile_time,
        max_concurrent_reconciles,
        active_workers,
    } = controller_runtime;
    [
        reconcile_total,
        reconcile_errors,
        terminal_reconcile_errors,
        reconcile_panics,
    ]
    .into_iter()
    .for_each(c);
    h(reconcile_time);
    [max_concurrent_reconciles, active_workers]
        .into_iter()
        .for_each(ig);
    let WorkqueueMetrics {
        depth,
        adds,
        queue_duration,
        work_duration,
        unfinished_work,
        longest_running_processor,
        retries,
    } = workqueue;
    ig(depth);
    [adds, retries].into_iter().for_each(c);
    [queue_duration, work_duration].into_iter().for_each(h);
    [unfinished_work, longest_running_processor]
        .into_iter()
        .for_each(g);
    ig(leader_election_master_status);
    ig(build_info);
    let StatusMetrics {
        nodeclaim,
        nodepool,
        node,
        deprecated,
    } = status;
    for kind in [nodeclaim, nodepool, node, deprecated] {
        let StatusConditionMetrics {
            count,
            current_status_seconds,
            transitions,
            transition_seconds,
            termination_current_time,
            termination_duration,
        } = kind;
        [count, current_status_seconds, termination_current_time]
            .into_iter()
            .for_each(g);
        c(transitions);
        [transition_seconds, termination_duration]
            .into_iter()
            .for_each(h);
    }
}

fn gather_text(registry: &Registry) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .unwrap();
    String::from_utf8(buf).unwrap()
}

/// Upstream's families: (name, type, label names, buckets for histograms).
fn expected() -> Vec<(&'static str, &'static str, Vec<String>, Vec<f64>)> {
    let l = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let disruption = l(&[
        "reason",
        "nodepool",
        "capacity_type",
        "consolidation_policy",
        "termination_mode",
    ]);
    let duration: Vec<f64> = vec![
        0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8,
        0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0,
        15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 120.0, 150.0, 300.0, 450.0, 600.0,
    ];
    let powers_of_two = |n: u32| (0..n).map(|i| f64::from(2u32.pow(i))).collect::<Vec<_>>();
    let hours = |h: &[f64]| h.iter().map(|x| x * 3600.0).collect::<Vec<_>>();
    // The well-known labels restated: core keys, then the AWS provider's.
    let mut node = l(&[
        "nodepool",
        "zone",
        "region",
        "instance_type",
        "arch",
        "os",
        "capacity_type",
        "windows_build",
        "zone_id",
        "ec2nodeclass",
        "instance_category",
        "instance_generation",
        "instance_family",
        "instance_size",
        "instance_capability_flex",
        "instance_cpu",
        "instance_cpu_manufacturer",
        "instance_cpu_sustained_clock_speed_mhz",
        "instance_memory",
        "instance_ebs_bandwidth",
        "instance_network_bandwidth",
        "instance_local_nvme",
        "instance_hypervisor",
        "instance_encryption_in_transit_supported",
        "instance_gpu_name",
        "instance_gpu_manufacturer",
        "instance_gpu_count",
        "instance_gpu_memory",
        "instance_accelerator_name",
        "instance_accelerator_manufacturer",
        "instance_accelerator_count",
        "instance_tenancy",
        "capacity_reservation_id",
        "capacity_reservation_type",
        "capacity_reservation_interruptible",
        "placement_group_id",
        "placement_group_partition",
        "node_name",
        "phase",
        "managed",
    ]);
    let node_lifetime = node.clone();
    node.push("resource_type".into());
    let none = Vec::new;
    let name_ns = || l(&["name", "namespace"]);
    let workqueue = vec![
        1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0,
    ];
    let mut table = vec![
        (
            "karpenter_nodeclaims_created_total",
            "counter",
            l(&["reason", "nodepool", "min_values_relaxed"]),
            none(),
        ),
        (
            "karpenter_nodeclaims_terminated_total",
            "counter",
            l(&["nodepool", "capacity_type", "zone"]),
            none(),
        ),
        (
            "karpenter_nodeclaims_disrupted_total",
            "counter",
            disruption.clone(),
            none(),
        ),
        (
            "karpenter_pods_disruption_initiated_total",
            "counter",
            disruption,
            none(),
        ),
        (
            "karpenter_nodeclaims_instance_termination_duration_seconds",
            "histogram",
            l(&["nodepool"]),
            powers_of_two(11),
        ),
        (
            "karpenter_nodeclaims_termination_duration_seconds",
            "histogram",
            l(&["nodepool"]),
            powers_of_two(12),
        ),
        (
            "karpenter_nodeclaims_unhealthy_disrupted_total",
            "counter",
            l(&["condition", "nodepool", "capacity_type", "image_id"]),
            none(),
        ),
        (
            "karpenter_nodes_created_total",
            "counter",
            l(&["nodepool", "zone"]),
            none(),
        ),
        (
            "karpenter_nodes_terminated_total",
            "counter",
            l(&["nodepool", "zone"]),
            none(),
        ),
        (
            "karpenter_nodes_termination_duration_seconds",
            "summary",
            l(&["nodepool"]),
            none(),
        ),
        (
            "karpenter_nodes_lifetime_duration_seconds",
            "histogram",
            l(&["nodepool"]),
            hours(&[
                0.25, 0.5, 0.75, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 48.0, 72.0,
                120.0, 240.0, 360.0, 480.0, 600.0, 720.0,
            ]),
        ),
        (
            "karpenter_nodes_drained_total",
            "counter",
            l(&["nodepool"]),
            none(),
        ),
        (
            "karpenter_pods_eviction_requests_total",
            "counter",
            l(&["code"]),
            none(),
        ),
        (
            "karpenter_pods_drained_total",
            "counter",
            l(&["reason"]),
            none(),
        ),
        ("karpenter_nodes_allocatable", "gauge", node.clone(), none()),
        (
            "karpenter_nodes_total_pod_requests",
            "gauge",
            node.clone(),
            none(),
        ),
        (
            "karpenter_nodes_total_pod_limits",
            "gauge",
            node.clone(),
            none(),
        ),
        (
            "karpenter_nodes_total_daemon_requests",
            "gauge",
            node.clone(),
            none(),
        ),
        (
            "karpenter_nodes_total_daemon_limits",
            "gauge",
            node.clone(),
            none(),
        ),
        ("karpenter_nodes_system_overhead", "gauge", node, none()),
        (
            "karpenter_nodes_current_lifetime_seconds",
            "gauge",
            node_lifetime,
            none(),
        ),
        (
            "karpenter_cluster_utilization_percent",
            "gauge",
            l(&["resource_type"]),
            none(),
        ),
        (
            "karpenter_nodepools_limit",
            "gauge",
            l(&["resource_type", "nodepool"]),
            none(),
        ),
        (
            "karpenter_nodepools_usage",
            "gauge",
            l(&["resource_type", "nodepool"]),
            none(),
        ),
        (
            "karpenter_nodepools_cost_total",
            "gauge",
            l(&["nodepool"]),
            none(),
        ),
        (
            "karpenter_nodepools_cost_tracker_errors_total",
            "counter",
            l(&["nodepool"]),
            none(),
        ),
        (
            "karpenter_pods_state",
            "gauge",
            l(&[
                "name",
                "namespace",
                "owner",
                "node",
                "scheduled",
                "nodepool",
                "zone",
                "arch",
                "capacity_type",
                "instance_type",
                "phase",
                "ready",
                "managed",
            ]),
            none(),
        ),
        (
            "karpenter_pods_startup_duration_seconds",
            "summary",
            l(&[]),
            none(),
        ),
        (
            "karpenter_pods_unstarted_time_seconds",
            "gauge",
            name_ns(),
            none(),
        ),
        (
            "karpenter_pods_bound_duration_seconds",
            "histogram",
            l(&[]),
            duration.clone(),
        ),
        (
            "karpenter_pods_unbound_time_seconds",
            "gauge",
            name_ns(),
            none(),
        ),
        (
            "karpenter_pods_provisioning_bound_duration_seconds",
            "histogram",
            l(&[]),
            duration.clone(),
        ),
        (
            "karpenter_pods_provisioning_startup_duration_seconds",
            "histogram",
            l(&[]),
            duration.clone(),
        ),
        (
            "karpenter_pods_provisioning_unbound_time_seconds",
            "gauge",
            name_ns(),
            none(),
        ),
        (
            "karpenter_pods_provisioning_unstarted_time_seconds",
            "gauge",
            name_ns(),
            none(),
        ),
        (
            "karpenter_pods_provisioning_scheduling_undecided_time_seconds",
            "gauge",
            name_ns(),
            none(),
        ),
        (
            "karpenter_pods_scheduling_decision_duration_seconds",
            "histogram",
            l(&[]),
            duration.clone(),
        ),
        (
            "karpenter_cluster_state_node_count",
            "gauge",
            l(&[]),
            none(),
        ),
        ("karpenter_cluster_state_synced", "gauge", l(&[]), none()),
        (
            "karpenter_cluster_state_unsynced_time_seconds",
            "gauge",
            l(&[]),
            none(),
        ),
        (
            "karpenter_scheduler_scheduling_duration_seconds",
            "histogram",
            l(&["controller"]),
            duration.clone(),
        ),
        (
            "karpenter_scheduler_queue_depth",
            "gauge",
            l(&["controller", "scheduling_id"]),
            none(),
        ),
        (
            "karpenter_scheduler_unfinished_work_seconds",
            "gauge",
            l(&["controller", "scheduling_id"]),
            none(),
        ),
        (
            "karpenter_scheduler_unschedulable_pods_count",
            "gauge",
            l(&["controller"]),
            none(),
        ),
        (
            "karpenter_scheduler_ignored_pods_count",
            "gauge",
            l(&[]),
            none(),
        ),
        (
            "karpenter_scheduler_pending_pods_by_effective_zone_count",
            "gauge",
            l(&["controller", "zone"]),
            none(),
        ),
        (
            "karpenter_voluntary_disruption_decision_evaluation_duration_seconds",
            "histogram",
            l(&["reason", "consolidation_type"]),
            duration.clone(),
        ),
        (
            "karpenter_voluntary_disruption_decisions_total",
            "counter",
            l(&["decision", "reason", "consolidation_type"]),
            none(),
        ),
        (
            "karpenter_voluntary_disruption_decisions_by_nodepool_total",
            "counter",
            l(&["nodepool", "decision", "reason", "consolidation_type"]),
            none(),
        ),
        (
            "karpenter_voluntary_disruption_eligible_nodes",
            "gauge",
            l(&["reason"]),
            none(),
        ),
        (
            "karpenter_voluntary_disruption_consolidation_timeouts_total",
            "counter",
            l(&["consolidation_type"]),
            none(),
        ),
        (
            "karpenter_voluntary_disruption_failed_validations_total",
            "counter",
            l(&["consolidation_type"]),
            none(),
        ),
        (
            "karpenter_voluntary_disruption_queue_failures_total",
            "counter",
            l(&["decision", "reason", "consolidation_type"]),
            none(),
        ),
        (
            "karpenter_nodepools_allowed_disruptions",
            "gauge",
            l(&["nodepool", "reason"]),
            none(),
        ),
        (
            "karpenter_nodepools_nodes_consuming_budgets",
            "gauge",
            l(&["nodepool", "reason"]),
            none(),
        ),
        (
            "karpenter_consolidation_score",
            "histogram",
            l(&["decision", "nodepool", "policy"]),
            vec![0.1, 0.25, 0.33, 0.5, 1.0, 2.0, 5.0, 10.0],
        ),
        (
            "karpenter_consolidation_moves_total",
            "counter",
            l(&["decision", "nodepool", "policy"]),
            none(),
        ),
        (
            "controller_runtime_reconcile_total",
            "counter",
            l(&["controller", "result"]),
            none(),
        ),
        (
            "controller_runtime_reconcile_errors_total",
            "counter",
            l(&["controller"]),
            none(),
        ),
        (
            "controller_runtime_terminal_reconcile_errors_total",
            "counter",
            l(&["controller"]),
            none(),
        ),
        (
            "controller_runtime_reconcile_panics_total",
            "counter",
            l(&["controller"]),
            none(),
        ),
        (
            "controller_runtime_reconcile_time_seconds",
            "histogram",
            l(&["controller"]),
            duration[..40].to_vec(),
        ),
        (
            "controller_runtime_max_concurrent_reconciles",
            "gauge",
            l(&["controller"]),
            none(),
        ),
        (
            "controller_runtime_active_workers",
            "gauge",
            l(&["controller"]),
            none(),
        ),
        ("workqueue_depth", "gauge", l(&["name"]), none()),
        ("workqueue_adds_total", "counter", l(&["name"]), none()),
        (
            "workqueue_queue_duration_seconds",
            "histogram",
            l(&["name"]),
            workqueue.clone(),
        ),
        (
            "workqueue_work_duration_seconds",
            "histogram",
            l(&["name"]),
            workqueue,
        ),
        (
            "workqueue_unfinished_work_seconds",
            "gauge",
            l(&["name"]),
            none(),
        ),
        (
            "workqueue_longest_running_processor_seconds",
            "gauge",
            l(&["name"]),
            none(),
        ),
        ("workqueue_retries_total", "counter", l(&["name"]), none()),
        (
            "leader_election_master_status",
            "gauge",
            l(&["name"]),
            none(),
        ),
        (
            "karpenter_build_info",
            "gauge",
            l(&["version", "goversion", "goarch", "commit"]),
            none(),
        ),
    ];
    // operatorpkg's status families: per kind with the kind's copied object labels, and the
    // deprecated unprefixed set with `group`,`kind` and client_golang's default buckets.
    let status_buckets: Vec<f64> = (0..15).map(|n| 0.5 * 2f64.powi(n)).collect();
    let default_buckets = vec![
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let nodeclass = "karpenter_k8s_aws_ec2nodeclass";
    for (prefix, extra, buckets) in [
        (
            "operator_nodeclaim_",
            vec![nodeclass, "karpenter_sh_nodepool"],
            &status_buckets,
        ),
        ("operator_nodepool_", vec![], &status_buckets),
        (
            "operator_node_",
            vec![
                nodeclass,
                "karpenter_sh_nodepool",
                "karpenter_sh_initialized",
            ],
            &status_buckets,
        ),
        ("operator_", vec!["group", "kind"], &default_buckets),
    ] {
        let with = |base: &[&str]| {
            let mut v = l(base);
            v.extend(l(&extra));
            v
        };
        let name = |suffix: &str| -> &'static str {
            Box::leak(format!("{prefix}{suffix}").into_boxed_str())
        };
        table.extend([
            (
                name("status_condition_count"),
                "gauge",
                with(&["namespace", "name", "type", "status", "reason"]),
                none(),
            ),
            (
                name("status_condition_current_status_seconds"),
                "gauge",
                with(&["namespace", "name", "type", "status", "reason"]),
                none(),
            ),
            (
                name("status_condition_transitions_total"),
                "counter",
                with(&["type", "status", "reason"]),
                none(),
            ),
            (
                name("status_condition_transition_seconds"),
                "histogram",
                with(&["type", "status"]),
                buckets.clone(),
            ),
            (
                name("termination_current_time_seconds"),
                "gauge",
                with(&["namespace", "name"]),
                none(),
            ),
            (
                name("termination_duration_seconds"),
                "histogram",
                with(&[]),
                buckets.clone(),
            ),
        ]);
    }
    table
}

#[test]
fn every_family_has_upstream_name_type_labels_and_buckets() {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry).unwrap();
    touch_every_family(&metrics);
    let families = parse_exposition(&gather_text(&registry));
    let expected = expected();
    for (name, kind, labels, buckets) in &expected {
        let family = families
            .get(*name)
            .unwrap_or_else(|| panic!("{name} missing from the exposition"));
        assert_eq!(family.kind, *kind, "{name} type");
        let want: BTreeSet<String> = labels.iter().cloned().collect();
        assert_eq!(family.labels, want, "{name} labels");
        if *kind == "histogram" {
            let mut want_buckets = buckets.clone();
            want_buckets.push(f64::INFINITY);
            assert_eq!(family.buckets, want_buckets, "{name} buckets");
        }
        if *kind == "summary" {
            assert_eq!(
                family.quantiles,
                vec![0.0, 0.5, 0.9, 0.99, 1.0],
                "{name} quantiles"
            );
            assert!(
                family
                    .samples
                    .keys()
                    .any(|k| k.starts_with(&format!("{name}_sum"))),
                "{name}_sum"
            );
            assert!(
                family
                    .samples
                    .keys()
                    .any(|k| k.starts_with(&format!("{name}_count"))),
                "{name}_count"
            );
        }
    }
    // Nothing we register is missing from the table (the cloud-provider families are tested in
    // their crate and appear only once a decorator records a call).
    let known: BTreeSet<&str> = expected.iter().map(|(n, ..)| *n).collect();
    let extra: Vec<&String> = families
        .keys()
        .filter(|n| !known.contains(n.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "families not in the upstream table: {extra:?}"
    );
}

#[test]
fn registering_twice_on_one_registry_fails() {
    let registry = Registry::new();
    Metrics::new(&registry).unwrap();
    assert!(Metrics::new(&registry).is_err());
}

#[test]
fn consolidation_timeouts_start_at_zero_for_multi_and_single() {
    let registry = Registry::new();
    Metrics::new(&registry).unwrap();
    let families = parse_exposition(&gather_text(&registry));
    let timeouts = &families["karpenter_voluntary_disruption_consolidation_timeouts_total"];
    let keys: Vec<&String> = timeouts.samples.keys().collect();
    assert_eq!(
        keys,
        [
            "karpenter_voluntary_disruption_consolidation_timeouts_total{consolidation_type=\"multi\"}",
            "karpenter_voluntary_disruption_consolidation_timeouts_total{consolidation_type=\"single\"}",
        ]
    );
    assert!(timeouts.samples.values().all(|v| *v == 0.0));
}

#[test]
fn summary_exposition_reports_known_quantiles() {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry).unwrap();
    for v in 1..=100 {
        metrics.pods.startup_duration.observe(f64::from(v));
    }
    let families = parse_exposition(&gather_text(&registry));
    let startup = &families["karpenter_pods_startup_duration_seconds"];
    let sample = |key: &str| startup.samples[key];
    assert_eq!(
        sample("karpenter_pods_startup_duration_seconds{quantile=\"0\"}"),
        1.0
    );
    assert_eq!(
        sample("karpenter_pods_startup_duration_seconds{quantile=\"1\"}"),
        100.0
    );
    let median = sample("karpenter_pods_startup_duration_seconds{quantile=\"0.5\"}");
    assert!((median - 50.0).abs() <= 2.0, "median {median}");
    let p90 = sample("karpenter_pods_startup_duration_seconds{quantile=\"0.9\"}");
    assert!((p90 - 90.0).abs() <= 2.0, "p90 {p90}");
    assert_eq!(
        sample("karpenter_pods_startup_duration_seconds_sum"),
        5050.0
    );
    assert_eq!(
        sample("karpenter_pods_startup_duration_seconds_count"),
        100.0
    );
}

#[test]
fn reconcile_timer_counts_result_and_errors() {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry).unwrap();
    let cr = &metrics.controller_runtime;
    cr.start_reconcile("provisioner")
        .finish(ReconcileResult::Success);
    cr.start_reconcile("provisioner")
        .finish(ReconcileResult::Error);
    cr.start_reconcile("provisioner")
        .finish(ReconcileResult::RequeueAfter);
    drop(cr.start_reconcile("provisioner"));
    let count = |result: &str| {
        cr.reconcile_total
            .with_label_values(&["provisioner", result])
            .get()
    };
    assert_eq!(
        (
            count("success"),
            count("error"),
            count("requeue_after"),
            count("requeue")
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(
        cr.reconcile_errors
            .with_label_values(&["provisioner"])
            .get(),
        1
    );
    assert_eq!(
        cr.reconcile_time
            .with_label_values(&["provisioner"])
            .get_sample_count(),
        4,
        "every reconcile is timed, including the cancelled one"
    );
}

#[test]
fn build_info_uses_go_arch_names() {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry).unwrap();
    metrics.set_build_info(&BuildInfo {
        version: "1.0.0".into(),
        goversion: "rustc".into(),
        goarch: BuildInfo::this_arch().into(),
        commit: "abc".into(),
    });
    let text = gather_text(&registry);
    assert!(text.contains(&format!(
        "karpenter_build_info{{commit=\"abc\",goarch=\"{}\",goversion=\"rustc\",version=\"1.0.0\"}} 1",
        BuildInfo::this_arch()
    )));
    assert!(!BuildInfo::this_arch().contains("x86_64"));
}

#[test]
fn node_label_names_are_unique_and_prometheus_safe() {
    let names = node_label_names();
    let unique: BTreeSet<&String> = names.iter().map(|(_, n)| n).collect();
    assert_eq!(unique.len(), names.len());
    for (_, n) in &names {
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{n}"
        );
    }
}
