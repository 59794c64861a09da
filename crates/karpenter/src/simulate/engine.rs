//! Runs a scenario step by step through the real solver and records what it decided.
//!
//! Each step applies replica changes, then makes one provisioning decision: pending pods
//! (new ones and any still pending from earlier steps) go to `karpenter_scheduling::solve`
//! together with every node earlier steps created, as existing `NodeView`s with their bound
//! pods, so scale-ups reuse free room first. Each new NodeClaim "launches" its offering at
//! once: upstream's capacity-type order (reserved, spot, on-demand), then the cheapest price.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use anyhow::{Context, anyhow};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use karpenter_apis::labels;
use karpenter_apis::nodepool::NodePool;
use karpenter_catalog::PriceSource;
use karpenter_scheduling::model::first_untolerated;
use karpenter_scheduling::{
    InstanceType, NodePoolView, NodeView, Offering, PodError, PodView, PreparedNodePools,
    Rejection, Requirements, Resources, SchedulingInput, SolveOptions, Taint, convert,
    solve_prepared,
};

use super::instance_types::ClassCatalog;
use super::report::{
    CapacityTypeTotals, CatalogSummary, ClusterTotals, DaemonSetSummary, HOURS_PER_MONTH,
    NodeClaimReport, NodePoolRefusal, NodePoolSummary, PodCounts, Report, ResourceSummary,
    ScenarioSummary, StepReport, UnschedulableGroup,
};
use super::scenario::Scenario;

/// How many instance-type names a NodeClaim row lists.
const OPTIONS_SHOWN: usize = 4;

fn summary(r: &Resources) -> ResourceSummary {
    ResourceSummary {
        cpu_millicores: r.cpu,
        memory_bytes: r.memory,
        pods: r.pods,
    }
}

/// The solver's view of a NodePool: the scheduling crate's one conversion, with the NodePool
/// named in any error.
pub fn nodepool_view(
    np: &NodePool,
    instance_types: Vec<InstanceType>,
) -> anyhow::Result<NodePoolView> {
    let name = np.metadata.name.clone().unwrap_or_default();
    convert::nodepool_view(np, instance_types).with_context(|| format!("NodePool {name:?}"))
}

/// A pod of `owner` built from its template, as the solver sees it.
fn template_pod_view(
    namespace: &str,
    owner: &str,
    owner_kind: &str,
    template: &PodTemplateSpec,
) -> anyhow::Result<PodView> {
    let md = template.metadata.clone().unwrap_or_default();
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(owner.to_string()),
            namespace: Some(namespace.to_string()),
            labels: md.labels,
            annotations: md.annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".to_string(),
                kind: owner_kind.to_string(),
                name: owner.to_string(),
                uid: format!("{namespace}/{owner}"),
                controller: Some(true),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    };
    convert::pod_view(&pod)
        .with_context(|| format!("{owner_kind} {namespace}/{owner}: pod template"))
}

/// Whether a DaemonSet pod would run on a node with these labels and taints.
fn daemonset_runs_on(
    ds: &PodView,
    node_labels: &BTreeMap<String, String>,
    taints: &[Taint],
) -> bool {
    ds.node_selector
        .iter()
        .all(|(k, v)| node_labels.get(k) == Some(v))
        && (ds.required_node_affinity.is_empty()
            || ds.required_node_affinity.iter().any(|term| {
                Requirements::from_specs(term).is_ok_and(|r| r.matches_labels(node_labels).is_ok())
            }))
        && first_untolerated(taints, &ds.tolerations, true).is_none()
}

/// A node a previous step launched.
#[derive(Debug, Clone)]
struct SimNode {
    name: String,
    capacity_type: String,
    price: f64,
    price_source: PriceSource,
    labels: BTreeMap<String, String>,
    taints: Vec<Taint>,
    capacity: Resources,
    allocatable: Resources,
    daemonset_overhead: Resources,
}

#[derive(Debug, Clone)]
struct SimPod {
    view: PodView,
    node: Option<String>,
}

#[derive(Debug, Clone)]
struct DeploymentState {
    namespace: String,
    name: String,
    template: PodView,
    pods: Vec<SimPod>,
    next_index: usize,
}

impl DeploymentState {
    fn scale(&mut self, replicas: usize) -> usize {
        while self.pods.len() < replicas {
            let mut view = self.template.clone();
            view.name = format!("{}-{}", self.name, self.next_index);
            view.uid = format!("{}/{}", self.namespace, view.name);
            view.creation_timestamp = i64::try_from(self.next_index).unwrap_or(i64::MAX);
            self.next_index += 1;
            self.pods.push(SimPod { view, node: None });
        }
        let mut removed = 0;
        // A ReplicaSet deletes pending pods before running ones, and newer before older.
        while self.pods.len() > replicas {
            let victim = self
                .pods
                .iter()
                .rposition(|p| p.node.is_none())
                .unwrap_or(self.pods.len() - 1);
            self.pods.remove(victim);
            removed += 1;
        }
        removed
    }
}

/// The offering a NodeClaim allowing `instance_types` under `requirements` launches.
fn launch<'a, S: AsRef<str>>(
    instance_types: &[S],
    requirements: &Requirements,
    types: &HashMap<&str, &'a InstanceType>,
) -> Option<(&'a InstanceType, &'a Offering)> {
    let rank = |ct: &str| match ct {
        labels::CAPACITY_TYPE_RESERVED => 0,
        labels::CAPACITY_TYPE_SPOT => 1,
        _ => 2,
    };
    let candidates: Vec<(&InstanceType, &Offering)> = instance_types
        .iter()
        .filter_map(|name| types.get(name.as_ref()).copied())
        .flat_map(|it| {
            it.offerings
                .iter()
                .filter(|o| o.available && o.compatible(requirements))
                .map(move |o| (it, o))
        })
        .collect();
    let best = candidates
        .iter()
        .map(|(_, o)| rank(&o.capacity_type))
        .min()?;
    candidates
        .into_iter()
        .filter(|(_, o)| rank(&o.capacity_type) == best)
        .min_by(|a, b| {
            a.1.price
                .total_cmp(&b.1.price)
                .then_with(|| a.0.name.cmp(&b.0.name))
                .then_with(|| a.1.zone.cmp(&b.1.zone))
        })
}

/// The stable kind of a NodePool's refusal.
fn rejection_kind(r: &Rejection) -> &'static str {
    match r {
        Rejection::NoCompatibleInstanceTypes => "no_compatible_instance_types",
        Rejection::TaintNotTolerated(_) => "taint_not_tolerated",
        Rejection::IncompatibleRequirements(_) => "incompatible_requirements",
        Rejection::VolumeTopology(_) => "volume_topology",
        Rejection::NodeLimitExhausted => "node_limit_exhausted",
        Rejection::LimitsExceeded { .. } => "limits_exceeded",
        Rejection::NoInstanceTypeFits { .. } => "no_instance_type_fits",
        Rejection::Topology(_) => "topology",
        Rejection::HostPortConflict { .. } => "host_port_conflict",
        Rejection::InsufficientResources { .. } => "insufficient_resources",
        Rejection::VolumeLimit { .. } => "volume_limit",
        Rejection::MinValues { .. } => "min_values",
    }
}

/// An empty group for pods the solver refused with `err`.
fn unschedulable_group(reason: String, err: &PodError) -> UnschedulableGroup {
    let (kind, nodepools) = match err {
        PodError::Ignored(_) => ("ignored", Vec::new()),
        PodError::NoNodePools => ("no_nodepools", Vec::new()),
        PodError::NotTried => ("not_tried", Vec::new()),
        PodError::MinValuesAfterTruncation { .. } => ("min_values_after_truncation", Vec::new()),
        PodError::Unschedulable { nodepools, .. } => (
            "unschedulable",
            nodepools
                .iter()
                .map(|r| NodePoolRefusal {
                    nodepool: r.nodepool.clone(),
                    kind: rejection_kind(&r.reason).to_string(),
                    message: r.reason.to_string(),
                })
                .collect(),
        ),
    };
    UnschedulableGroup {
        reason,
        kind: kind.to_string(),
        nodepools,
        count: 0,
        pods: Vec::new(),
    }
}

/// Runs every step of `scenario` and reports.
pub fn run(scenario: &Scenario) -> anyhow::Result<Report> {
    let mut class_catalogs: BTreeMap<String, ClassCatalog> = BTreeMap::new();
    for class in &scenario.nodeclasses {
        let name = class.metadata.name.clone().unwrap_or_default();
        let catalog = ClassCatalog::for_class(class, scenario.zones.as_ref())
            .with_context(|| format!("EC2NodeClass {name:?}: deriving instance types"))?;
        class_catalogs.insert(name, catalog);
    }
    let mut pools = Vec::new();
    let mut pool_summaries = Vec::new();
    for np in &scenario.nodepools {
        let class_name = &np.spec.template.spec.node_class_ref.name;
        let catalog = class_catalogs
            .get(class_name)
            .ok_or_else(|| anyhow!("EC2NodeClass {class_name:?} not found"))?;
        let view = nodepool_view(np, catalog.instance_types.clone())?;
        let compatible = view
            .instance_types
            .iter()
            .filter(|it| {
                it.requirements.intersects(&view.requirements).is_ok()
                    && it
                        .offerings
                        .iter()
                        .any(|o| o.available && o.compatible(&view.requirements))
            })
            .count();
        let class = scenario
            .nodeclasses
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(class_name.as_str()));
        let d = &np.spec.disruption;
        pool_summaries.push(NodePoolSummary {
            name: view.name.clone(),
            nodeclass: class_name.clone(),
            ami_family: class
                .map(|c| c.resolved_ami_family().as_str().to_string())
                .unwrap_or_default(),
            weight: view.weight,
            compatible_instance_types: compatible,
            limits: np
                .spec
                .limits
                .iter()
                .map(|(k, q)| (k.clone(), q.0.clone()))
                .collect(),
            consolidation_policy: d.consolidation_policy_or_default().as_str().to_string(),
            consolidate_after: d.consolidate_after_or_default().to_string(),
        });
        pools.push((view, class_name.clone()));
    }

    let mut daemonsets = Vec::new();
    let mut ds_summaries = Vec::new();
    for ds in &scenario.daemonsets {
        let ns = ds
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let name = ds.metadata.name.clone().unwrap_or_default();
        let template = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let view = template_pod_view(&ns, &name, "DaemonSet", &template)?;
        ds_summaries.push(DaemonSetSummary {
            name: format!("{ns}/{name}"),
            requests: summary(&view.requests),
        });
        daemonsets.push(view);
    }

    let mut deployments: Vec<DeploymentState> = Vec::new();
    for d in &scenario.deployments {
        let namespace = d
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let name = d.metadata.name.clone().unwrap_or_default();
        let template = d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let template = template_pod_view(&namespace, &name, "ReplicaSet", &template)?;
        deployments.push(DeploymentState {
            namespace,
            name,
            template,
            pods: Vec::new(),
            next_index: 1,
        });
    }

    let zones: Vec<String> = class_catalogs
        .values()
        .next()
        .map(|c| {
            c.catalog
                .zones
                .iter()
                .map(|z| z.name.clone())
                .filter(|z| scenario.zones.as_ref().is_none_or(|s| s.contains(z)))
                .collect()
        })
        .unwrap_or_default();
    let catalog_summary = class_catalogs
        .values()
        .next()
        .map(|c| CatalogSummary {
            region: c.catalog.region.clone(),
            instance_types: c.catalog.instance_types.len(),
            zones: zones.clone(),
            pricing: "on-demand = AWS list price, spot = estimate".to_string(),
        })
        .ok_or_else(|| anyhow!("the scenario has no EC2NodeClass"))?;

    let mut input = SchedulingInput {
        nodepools: pools.iter().map(|(v, _)| v.clone()).collect(),
        daemonsets: daemonsets.clone(),
        ..SchedulingInput::default()
    };
    let options = SolveOptions::default();
    // NodePools, instance types and DaemonSets are the same in every step: prepare them once.
    let started = Instant::now();
    let prepared = PreparedNodePools::new(&input.nodepools, &input.daemonsets);
    let prepare_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut nodes: Vec<SimNode> = Vec::new();
    let mut next_claim: BTreeMap<String, usize> = BTreeMap::new();
    let mut steps = Vec::new();

    for (index, step) in scenario.steps.iter().enumerate() {
        let mut actions = Vec::new();
        let mut removed = 0;
        for s in &step.scales {
            let d = deployments
                .iter_mut()
                .find(|d| d.namespace == s.namespace && d.name == s.deployment)
                .ok_or_else(|| anyhow!("Deployment {}/{} not found", s.namespace, s.deployment))?;
            let before = d.pods.len();
            removed += d.scale(usize::try_from(s.replicas).unwrap_or(usize::MAX));
            actions.push(format!(
                "{}/{}: {before} -> {}",
                s.namespace, s.deployment, s.replicas
            ));
        }

        // Snapshot: pending pods, nodes with their bound pods.
        let mut used: BTreeMap<&str, Resources> = nodes
            .iter()
            .map(|n| (n.name.as_str(), n.daemonset_overhead.clone()))
            .collect();
        let mut pending = Vec::new();
        let mut bound = Vec::new();
        for d in &deployments {
            for p in &d.pods {
                match &p.node {
                    None => pending.push(p.view.clone()),
                    Some(node) => {
                        if let Some(u) = used.get_mut(node.as_str()) {
                            u.add(&p.view.requests);
                        }
                        let mut v = p.view.clone();
                        v.node_name = Some(node.clone());
                        bound.push(v);
                    }
                }
            }
        }
        input.pods = pending;
        input.bound_pods = bound;
        input.nodes = nodes
            .iter()
            .map(|n| NodeView {
                name: n.name.clone(),
                labels: n.labels.clone(),
                taints: n.taints.clone(),
                capacity: n.capacity.clone(),
                allocatable: n.allocatable.clone(),
                used: used.get(n.name.as_str()).cloned().unwrap_or_default(),
                initialized: true,
                ..NodeView::default()
            })
            .collect();

        let started = Instant::now();
        let results = solve_prepared(&input, &prepared, &options);
        let solve_ms = started.elapsed().as_secs_f64() * 1000.0;

        // Apply the decision.
        let mut where_is: HashMap<String, (usize, usize)> = HashMap::new();
        for (di, d) in deployments.iter().enumerate() {
            for (pi, p) in d.pods.iter().enumerate() {
                where_is.insert(p.view.uid.clone(), (di, pi));
            }
        }
        let mut bind = |uid: &str, node: &str| -> Option<PodView> {
            let (di, pi) = *where_is.get(uid)?;
            let pod = deployments.get_mut(di)?.pods.get_mut(pi)?;
            pod.node = Some(node.to_string());
            Some(pod.view.clone())
        };
        let mut placed_on_existing: BTreeMap<String, usize> = BTreeMap::new();
        for (uid, node) in &results.existing_placements {
            if bind(uid, node).is_some() {
                *placed_on_existing.entry(node.clone()).or_default() += 1;
            }
        }
        let mut new_nodeclaims = Vec::new();
        let mut launch_failures: Vec<String> = Vec::new();
        let mut placed_on_new = 0;
        for claim in &results.new_nodeclaims {
            let Some((pool, class_name)) = pools.iter().find(|(v, _)| v.name == claim.nodepool)
            else {
                continue;
            };
            let types: HashMap<&str, &InstanceType> = pool
                .instance_types
                .iter()
                .map(|t| (t.name.as_str(), t))
                .collect();
            let Some((it, offering)) = launch(&claim.instance_types, &claim.requirements, &types)
            else {
                // Simulated UIDs are `namespace/name`.
                launch_failures.extend(claim.pods.iter().map(|uid| {
                    uid.split_once('/')
                        .map_or(uid.clone(), |(_, name)| name.to_string())
                }));
                continue;
            };
            let seq = next_claim.entry(claim.nodepool.clone()).or_insert(0);
            *seq += 1;
            let name = format!("{}-{}", claim.nodepool, seq);
            let mut node_labels = claim.labels.clone();
            node_labels.extend(it.requirements.single_valued_labels());
            node_labels.extend(offering.labels.clone());
            for (k, v) in [
                (labels::ZONE, offering.zone.as_str()),
                (labels::CAPACITY_TYPE, offering.capacity_type.as_str()),
                (labels::HOSTNAME, name.as_str()),
                (labels::NODEPOOL, claim.nodepool.as_str()),
                (labels::REGISTERED, "true"),
                (labels::INITIALIZED, "true"),
            ] {
                node_labels.insert(k.to_string(), v.to_string());
            }
            let mut ds_overhead = Resources::new();
            for ds in &daemonsets {
                if daemonset_runs_on(ds, &node_labels, &claim.taints) {
                    ds_overhead.add(&ds.requests);
                }
            }
            let mut requests = ds_overhead.clone();
            let mut pod_names = Vec::new();
            for uid in &claim.pods {
                if let Some(view) = bind(uid, &name) {
                    requests.add(&view.requests);
                    pod_names.push(view.name);
                    placed_on_new += 1;
                }
            }
            let allocatable = it.allocatable_for(offering);
            let class = class_catalogs.get(class_name);
            let price_source = class
                .and_then(|c| c.price_source(&it.name, &offering.zone, &offering.capacity_type))
                .unwrap_or(PriceSource::Estimate);
            new_nodeclaims.push(NodeClaimReport {
                name: name.clone(),
                nodepool: claim.nodepool.clone(),
                instance_type: it.name.clone(),
                zone: offering.zone.clone(),
                capacity_type: offering.capacity_type.clone(),
                price_per_hour: offering.price,
                price_source: price_source.as_str().to_string(),
                solver_cheapest_price: claim.cheapest_price,
                instance_type_options: claim.instance_types.len(),
                instance_type_options_first: claim
                    .instance_types
                    .iter()
                    .take(OPTIONS_SHOWN)
                    .map(|t| t.to_string())
                    .collect(),
                pods: pod_names,
                requests: summary(&requests),
                daemonset_overhead: summary(&ds_overhead),
                allocatable: summary(&allocatable),
                labels: node_labels.clone(),
            });
            nodes.push(SimNode {
                name,
                capacity_type: offering.capacity_type.clone(),
                price: offering.price,
                price_source,
                labels: node_labels,
                taints: claim.taints.clone(),
                capacity: it.capacity_for(offering).clone(),
                allocatable,
                daemonset_overhead: ds_overhead,
            });
        }

        // Grouped by reason; pods in creation order within a group.
        let mut groups: BTreeMap<String, UnschedulableGroup> = BTreeMap::new();
        for p in deployments.iter().flat_map(|d| &d.pods) {
            if let Some(err) = results.unschedulable.get(&p.view.uid) {
                let reason = err.to_string();
                let group = groups
                    .entry(reason.clone())
                    .or_insert_with(|| unschedulable_group(reason, err));
                group.count += 1;
                group.pods.push(p.view.name.clone());
            }
        }
        if !launch_failures.is_empty() {
            let reason = "no available offering for the NodeClaim's instance types".to_string();
            groups.insert(
                reason.clone(),
                UnschedulableGroup {
                    reason,
                    kind: "no_available_offering".to_string(),
                    nodepools: Vec::new(),
                    count: launch_failures.len(),
                    pods: launch_failures,
                },
            );
        }
        let unschedulable: Vec<UnschedulableGroup> = groups.into_values().collect();
        let unschedulable_count = unschedulable.iter().map(|g| g.count).sum();

        // The cluster after the step.
        let mut totals = ClusterTotals::default();
        let mut requested = Resources::new();
        let mut allocatable = Resources::new();
        let mut pods_on: BTreeMap<&str, usize> = BTreeMap::new();
        let mut node_requests: BTreeMap<&str, Resources> = nodes
            .iter()
            .map(|n| (n.name.as_str(), n.daemonset_overhead.clone()))
            .collect();
        for d in &deployments {
            for p in &d.pods {
                match &p.node {
                    Some(n) => {
                        totals.pods_running += 1;
                        *pods_on.entry(n.as_str()).or_default() += 1;
                        if let Some(r) = node_requests.get_mut(n.as_str()) {
                            r.add(&p.view.requests);
                        }
                    }
                    None => totals.pods_pending += 1,
                }
            }
        }
        for n in &nodes {
            totals.nodes += 1;
            totals.price_per_hour += n.price;
            totals.includes_estimates |= n.price_source == PriceSource::Estimate;
            let ct = totals
                .by_capacity_type
                .entry(n.capacity_type.clone())
                .or_insert_with(CapacityTypeTotals::default);
            ct.nodes += 1;
            ct.price_per_hour += n.price;
            allocatable.add(&n.allocatable);
            if let Some(r) = node_requests.get(n.name.as_str()) {
                requested.add(r);
            }
        }
        totals.price_per_month = totals.price_per_hour * HOURS_PER_MONTH;
        totals.requested = summary(&requested);
        totals.allocatable = summary(&allocatable);
        let empty: Vec<&SimNode> = nodes
            .iter()
            .filter(|n| !pods_on.contains_key(n.name.as_str()))
            .collect();
        // A float `sum()` of nothing is -0.0, which would print as such in the JSON.
        let empty_nodes_price_per_hour = empty.iter().fold(0.0, |acc, n| acc + n.price);
        let empty_nodes = empty.iter().map(|n| n.name.clone()).collect();

        steps.push(StepReport {
            index: index + 1,
            name: step.name.clone(),
            actions,
            solve_ms,
            pods: PodCounts {
                desired: deployments.iter().map(|d| d.pods.len()).sum(),
                removed,
                pending: input.pods.len(),
                placed_on_existing: placed_on_existing.values().sum(),
                placed_on_new,
                unschedulable: unschedulable_count,
            },
            new_nodeclaims,
            placed_on_existing,
            unschedulable,
            empty_nodes,
            empty_nodes_price_per_hour,
            cluster: totals,
        });
    }

    Ok(Report {
        scenario: ScenarioSummary {
            name: scenario.name.clone(),
            description: scenario.description.clone(),
            source: scenario.source.clone(),
            nodepools: pool_summaries.clone(),
            deployments: deployments
                .iter()
                .map(|d| format!("{}/{}", d.namespace, d.name))
                .collect(),
            daemonsets: ds_summaries,
        },
        catalog: catalog_summary,
        prepare_ms,
        steps,
        limitations: limitations(&pool_summaries),
        notes: scenario.notes.clone(),
    })
}

fn limitations(pools: &[NodePoolSummary]) -> Vec<String> {
    let policies: Vec<String> = pools
        .iter()
        .map(|p| {
            format!(
                "{} has consolidationPolicy {} after {}",
                p.name, p.consolidation_policy, p.consolidate_after
            )
        })
        .collect();
    vec![
        format!(
            "No consolidation or other disruption is simulated: after a scale-down every node stays, so the cost does not fall ({}; a real cluster would remove or replace empty and underutilized nodes).",
            policies.join("; ")
        ),
        "Every catalog offering is assumed available: no insufficient-capacity errors, quotas or subnet IP limits; subnets are assumed in every zone listed above.".to_string(),
        "Spot prices are estimates from the embedded catalog, not live prices; on-demand prices are AWS list prices. Spot launches here take the cheapest spot offering; EC2's price-capacity-optimized strategy may pick a pricier pool.".to_string(),
        "Pods bind as soon as a NodeClaim is created: no launch or registration delay, no simulated time.".to_string(),
        "From the EC2NodeClass, the AMI family (amiFamily or alias), kubelet maxPods, podsPerCore, kubeReserved, systemReserved and evictionHard (memory.available, nodefs.available), the root volume size and instanceStorePolicy shape capacity; evictionSoft, subnets, security groups and AMI selection are not simulated.".to_string(),
        format!(
            "Solve times are wall-clock of the solver alone on this machine ({} build).",
            if cfg!(debug_assertions) { "debug" } else { "release" }
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(bound: &[bool]) -> DeploymentState {
        let mut d = DeploymentState {
            namespace: "ns".into(),
            name: "web".into(),
            template: PodView::default(),
            pods: Vec::new(),
            next_index: 1,
        };
        d.scale(bound.len());
        for (p, b) in d.pods.iter_mut().zip(bound) {
            p.node = b.then(|| "n1".to_string());
        }
        d
    }

    fn names(d: &DeploymentState) -> Vec<&str> {
        d.pods.iter().map(|p| p.view.name.as_str()).collect()
    }

    /// Scales a deployment whose pods are bound (`true`) or pending, and checks who is left.
    fn check(bound: &[bool], replicas: usize, removed: usize, left: &[&str]) {
        let mut d = deployment(bound);
        assert_eq!(d.scale(replicas), removed, "{bound:?} -> {replicas}");
        assert_eq!(names(&d), left, "{bound:?} -> {replicas}");
    }

    #[test]
    fn scale_down_removes_pending_then_newest() {
        check(&[true, true, true], 1, 2, &["web-1"]);
        check(&[true, false, true], 2, 1, &["web-1", "web-3"]);
        check(&[false, true, false], 1, 2, &["web-2"]);
        check(&[true], 3, 0, &["web-1", "web-2", "web-3"]);
        check(&[true, true], 0, 2, &[]);
    }

    #[test]
    fn scale_up_names_continue_after_removed_pods() {
        let mut d = deployment(&[true, true, true]);
        d.scale(1);
        d.scale(2);
        assert_eq!(names(&d), ["web-1", "web-4"]);
        assert_eq!(d.pods[1].view.uid, "ns/web-4");
    }

    fn it(name: &str, offerings: &[(&str, &str, f64, bool)]) -> InstanceType {
        InstanceType {
            name: name.into(),
            requirements: Requirements::new(),
            capacity: Resources::new(),
            overhead: Default::default(),
            offerings: offerings
                .iter()
                .map(|(z, ct, p, available)| {
                    let mut o = Offering::new(z, ct, *p);
                    o.available = *available;
                    o
                })
                .collect(),
        }
    }

    #[test]
    fn launch_prefers_spot_then_cheapest_available() {
        let a = it(
            "a",
            &[("z1", "on-demand", 0.01, true), ("z1", "spot", 0.05, true)],
        );
        let b = it(
            "b",
            &[("z2", "spot", 0.03, true), ("z3", "spot", 0.001, false)],
        );
        let c = it("c", &[("z1", "spot", 0.0001, true)]);
        let types: HashMap<&str, &InstanceType> =
            [("a", &a), ("b", &b), ("c", &c)].into_iter().collect();
        let (t, o) = launch(&["a", "b"], &Requirements::new(), &types).unwrap();
        assert_eq!(
            (t.name.as_str(), o.zone.as_str(), o.capacity_type.as_str()),
            ("b", "z2", "spot")
        );
        let (t, o) = launch(&["a"], &Requirements::new(), &types).unwrap();
        assert_eq!((t.name.as_str(), o.capacity_type.as_str()), ("a", "spot"));
        assert!(launch(&["missing"], &Requirements::new(), &types).is_none());
        let on_demand = Requirements::new().with(
            labels::CAPACITY_TYPE,
            karpenter_scheduling::Requirement::in_values(["on-demand"]),
        );
        let (t, o) = launch(&["a", "b", "c"], &on_demand, &types).unwrap();
        assert_eq!(
            (t.name.as_str(), o.capacity_type.as_str()),
            ("a", "on-demand")
        );
    }
}
