//! What a simulation found, as data (serialised as the JSON output, field names stable) and as
//! the text a platform engineer reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Hours in the month figure (AWS's convention).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// The whole simulation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was simulated.
    pub scenario: ScenarioSummary,
    /// The instance-type catalog used.
    pub catalog: CatalogSummary,
    /// Wall time of preparing the NodePools' instance types for the solver once, milliseconds.
    pub prepare_ms: f64,
    /// One entry per step, in order.
    pub steps: Vec<StepReport>,
    /// What this version does not simulate.
    pub limitations: Vec<String>,
    /// Loader notes (ignored objects, replaced steps).
    pub notes: Vec<String>,
}

/// The scenario's inputs, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioSummary {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// File(s) or `embedded default`.
    pub source: String,
    /// NodePools.
    pub nodepools: Vec<NodePoolSummary>,
    /// `namespace/name` of each Deployment.
    pub deployments: Vec<String>,
    /// DaemonSets and what each costs every node it runs on.
    pub daemonsets: Vec<DaemonSetSummary>,
}

/// One NodePool.
#[derive(Debug, Clone, Serialize)]
pub struct NodePoolSummary {
    /// Name.
    pub name: String,
    /// Its EC2NodeClass.
    pub nodeclass: String,
    /// The EC2NodeClass's AMI family in effect.
    pub ami_family: String,
    /// Weight (0 when unset).
    pub weight: i32,
    /// Catalog types compatible with its requirements and with an available offering.
    pub compatible_instance_types: usize,
    /// `spec.limits` as written.
    pub limits: BTreeMap<String, String>,
    /// `spec.disruption.consolidationPolicy`.
    pub consolidation_policy: String,
    /// `spec.disruption.consolidateAfter`.
    pub consolidate_after: String,
}

/// One DaemonSet.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonSetSummary {
    /// `namespace/name`.
    pub name: String,
    /// Requests of one of its pods.
    pub requests: ResourceSummary,
}

/// The catalog.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogSummary {
    /// AWS region.
    pub region: String,
    /// Instance types in the catalog.
    pub instance_types: usize,
    /// Zones offerings were taken from.
    pub zones: Vec<String>,
    /// How prices are sourced.
    pub pricing: String,
}

/// cpu, memory and pods in canonical units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ResourceSummary {
    /// Millicores.
    pub cpu_millicores: i64,
    /// Bytes.
    pub memory_bytes: i64,
    /// Pod count.
    pub pods: i64,
}

/// One step.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// 1-based.
    pub index: usize,
    /// Name.
    pub name: String,
    /// Replica changes, e.g. `inflate/inflate: 10 -> 20`.
    pub actions: Vec<String>,
    /// Wall time of the solve alone, milliseconds.
    pub solve_ms: f64,
    /// Pod counts.
    pub pods: PodCounts,
    /// NodeClaims the solver created in this step, with the launch each would get.
    pub new_nodeclaims: Vec<NodeClaimReport>,
    /// Existing node → pods placed on it in this step.
    pub placed_on_existing: BTreeMap<String, usize>,
    /// Pods left pending, grouped by reason.
    pub unschedulable: Vec<UnschedulableGroup>,
    /// Nodes with no workload pods after this step (consolidation candidates, not simulated).
    pub empty_nodes: Vec<String>,
    /// What the empty nodes cost, USD per hour.
    pub empty_nodes_price_per_hour: f64,
    /// The cluster after this step.
    pub cluster: ClusterTotals,
}

/// Pod counts of a step.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PodCounts {
    /// Workload pods desired after the replica changes.
    pub desired: usize,
    /// Pods deleted by scale-downs.
    pub removed: usize,
    /// Pods handed to the solver (new pods + pods still pending from earlier steps).
    pub pending: usize,
    /// Placed on nodes that existed before the step.
    pub placed_on_existing: usize,
    /// Placed on NodeClaims created in the step.
    pub placed_on_new: usize,
    /// Left pending.
    pub unschedulable: usize,
}

/// A NodeClaim and the instance it would launch.
#[derive(Debug, Clone, Serialize)]
pub struct NodeClaimReport {
    /// Simulated NodeClaim name (`<nodepool>-<n>`).
    pub name: String,
    /// NodePool.
    pub nodepool: String,
    /// Instance type of the chosen offering.
    pub instance_type: String,
    /// Zone of the chosen offering.
    pub zone: String,
    /// Capacity type of the chosen offering.
    pub capacity_type: String,
    /// USD per hour of the chosen offering.
    pub price_per_hour: f64,
    /// `aws-on-demand-list` or `estimate`.
    pub price_source: String,
    /// Cheapest price among all offerings the NodeClaim allows, as the solver reported it.
    pub solver_cheapest_price: f64,
    /// How many instance types the NodeClaim allows.
    pub instance_type_options: usize,
    /// The first few of them, cheapest first.
    pub instance_type_options_first: Vec<String>,
    /// Pods placed on it.
    pub pods: Vec<String>,
    /// Σ pod requests + DaemonSet overhead on the chosen type.
    pub requests: ResourceSummary,
    /// The DaemonSet part of `requests`.
    pub daemonset_overhead: ResourceSummary,
    /// Allocatable of the chosen type.
    pub allocatable: ResourceSummary,
    /// Labels the launched node would carry.
    pub labels: BTreeMap<String, String>,
}

/// Pods that stay pending for one reason.
#[derive(Debug, Clone, Serialize)]
pub struct UnschedulableGroup {
    /// The solver's reason, as Karpenter would log it.
    pub reason: String,
    /// Machine-readable kind: `ignored`, `unschedulable`, `min_values_after_truncation`,
    /// `no_nodepools` or `no_available_offering`.
    pub kind: String,
    /// For `unschedulable`: each NodePool tried and the kind of its refusal (e.g.
    /// `limits_exceeded`, `incompatible_requirements`, `no_instance_type_fits`).
    pub nodepools: Vec<NodePoolRefusal>,
    /// How many pods.
    pub count: usize,
    /// Their names.
    pub pods: Vec<String>,
}

/// One NodePool's refusal of a group of pods.
#[derive(Debug, Clone, Serialize)]
pub struct NodePoolRefusal {
    /// The NodePool.
    pub nodepool: String,
    /// Kind of refusal.
    pub kind: String,
    /// The refusal as text.
    pub message: String,
}

/// The cluster after a step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterTotals {
    /// Karpenter nodes.
    pub nodes: usize,
    /// Workload pods running.
    pub pods_running: usize,
    /// Workload pods pending.
    pub pods_pending: usize,
    /// Σ requests (pods + DaemonSets) over the nodes.
    pub requested: ResourceSummary,
    /// Σ allocatable over the nodes.
    pub allocatable: ResourceSummary,
    /// USD per hour.
    pub price_per_hour: f64,
    /// USD per month (× 730 h).
    pub price_per_month: f64,
    /// Part of the price is an estimate (spot, or an unlisted on-demand price).
    pub includes_estimates: bool,
    /// Per capacity type: nodes and USD per hour.
    pub by_capacity_type: BTreeMap<String, CapacityTypeTotals>,
}

/// Nodes and price of one capacity type.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CapacityTypeTotals {
    /// Nodes.
    pub nodes: usize,
    /// USD per hour.
    pub price_per_hour: f64,
}

// ---- text ----------------------------------------------------------------------------------

fn cores(millis: i64) -> String {
    if millis > 0 && millis < 1000 && millis % 10 != 0 {
        return format!("{millis}m");
    }
    let s = format!("{:.2}", millis as f64 / 1000.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn gib(bytes: i64) -> String {
    if bytes == 0 {
        return "0".to_string();
    }
    format!("{:.1}Gi", bytes as f64 / f64::from(1u32 << 30))
}

fn money(usd: f64) -> String {
    if usd < 1.0 {
        format!("${usd:.4}")
    } else {
        format!("${usd:.2}")
    }
}

/// `1345` as `1,345`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Left-aligned columns, except the ones listed as numeric (right-aligned).
fn table(out: &mut String, indent: &str, header: &[&str], rows: &[Vec<String>], numeric: &[usize]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = indent.to_string();
        for (i, cell) in row.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i == last {
                line.push_str(cell);
            } else if numeric.contains(&i) {
                let _ = write!(line, "{cell:>w$}  ");
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

impl Report {
    /// The text output.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let s = &self.scenario;
        let _ = writeln!(out, "karpenter simulate: {}", s.name);
        if let Some(d) = &s.description {
            let _ = writeln!(out, "  {d}");
        }
        let _ = writeln!(out, "  source:     {}", s.source);
        let c = &self.catalog;
        let _ = writeln!(
            out,
            "  catalog:    {}, {} instance types, zones {}; {}",
            c.region,
            thousands(c.instance_types),
            c.zones.join(" "),
            c.pricing
        );
        for np in &s.nodepools {
            let limits = if np.limits.is_empty() {
                "no limits".to_string()
            } else {
                let l: Vec<String> = np.limits.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("limits {}", l.join(" "))
            };
            let _ = writeln!(
                out,
                "  nodepool:   {} (EC2NodeClass {}, {}; {} of {} instance types compatible; {}; weight {})",
                np.name,
                np.nodeclass,
                np.ami_family,
                thousands(np.compatible_instance_types),
                thousands(c.instance_types),
                limits,
                np.weight
            );
        }
        let _ = writeln!(out, "  workloads:  {}", s.deployments.join(", "));
        if !s.daemonsets.is_empty() {
            let ds: Vec<String> = s
                .daemonsets
                .iter()
                .map(|d| format!("{} ({} CPU)", d.name, cores(d.requests.cpu_millicores)))
                .collect();
            let _ = writeln!(out, "  daemonsets: {}", ds.join(", "));
        }
        let _ = writeln!(
            out,
            "  solver:     instance types prepared once in {:.1} ms; each step's solve time below",
            self.prepare_ms
        );
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        let total = self.steps.len();
        for step in &self.steps {
            out.push('\n');
            step.render(&mut out, total);
        }
        out.push_str("\nLimits of this simulation:\n");
        for l in &self.limitations {
            let _ = writeln!(out, "  - {l}");
        }
        out
    }
}

impl StepReport {
    fn render(&self, out: &mut String, total: usize) {
        let _ = writeln!(
            out,
            "Step {}/{}: {}  [{}]",
            self.index,
            total,
            self.name,
            self.actions.join("; ")
        );
        let p = &self.pods;
        let mut summary = if p.pending == 0 {
            "  no pending pods".to_string()
        } else {
            format!(
                "  {} pending: {} on {}, {} on existing nodes, {} unschedulable",
                plural(p.pending, "pod", "pods"),
                p.placed_on_new,
                plural(self.new_nodeclaims.len(), "new NodeClaim", "new NodeClaims"),
                p.placed_on_existing,
                p.unschedulable
            )
        };
        if p.removed > 0 {
            let _ = write!(summary, "; {} removed", plural(p.removed, "pod", "pods"));
        }
        let _ = writeln!(out, "{summary}   (solved in {:.1} ms)", self.solve_ms);
        if !self.new_nodeclaims.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<String>> = self
                .new_nodeclaims
                .iter()
                .map(|n| {
                    let mut options = n.instance_type_options_first.join(", ");
                    if n.instance_type_options > n.instance_type_options_first.len() {
                        options.push_str(", ...");
                    }
                    vec![
                        n.name.clone(),
                        n.nodepool.clone(),
                        n.instance_type.clone(),
                        n.zone.clone(),
                        n.capacity_type.clone(),
                        format!("{:.4}", n.price_per_hour),
                        if n.price_source == "estimate" {
                            "estimate".to_string()
                        } else {
                            "list".to_string()
                        },
                        n.pods.len().to_string(),
                        format!(
                            "{}/{}",
                            cores(n.requests.cpu_millicores),
                            cores(n.allocatable.cpu_millicores)
                        ),
                        format!(
                            "{}/{}",
                            gib(n.requests.memory_bytes),
                            gib(n.allocatable.memory_bytes)
                        ),
                        format!("{:>3}: {options}", n.instance_type_options),
                    ]
                })
                .collect();
            table(
                out,
                "  ",
                &[
                    "NODECLAIM",
                    "NODEPOOL",
                    "INSTANCE TYPE",
                    "ZONE",
                    "CAPACITY",
                    "$/HOUR",
                    "PRICE",
                    "PODS",
                    "CPU REQ/ALLOC",
                    "MEM REQ/ALLOC",
                    "TYPE OPTIONS (cheapest first)",
                ],
                &rows,
                &[5, 7, 8, 9],
            );
        }
        if !self.placed_on_existing.is_empty() {
            let placed: Vec<String> = self
                .placed_on_existing
                .iter()
                .map(|(n, c)| format!("{n} +{c}"))
                .collect();
            let _ = writeln!(out, "  reused existing nodes: {}", placed.join(", "));
        }
        for g in &self.unschedulable {
            let mut names = g
                .pods
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if g.pods.len() > 3 {
                names.push_str(", ...");
            }
            let _ = writeln!(
                out,
                "  UNSCHEDULABLE {} ({names}): {}",
                plural(g.count, "pod", "pods"),
                g.reason
            );
        }
        if !self.empty_nodes.is_empty() {
            let _ = writeln!(
                out,
                "  empty nodes kept, {}/h (consolidation is not simulated yet): {}",
                money(self.empty_nodes_price_per_hour),
                self.empty_nodes.join(", ")
            );
        }
        let t = &self.cluster;
        let by_ct: Vec<String> = t
            .by_capacity_type
            .iter()
            .map(|(ct, v)| format!("{} {ct} {}/h", v.nodes, money(v.price_per_hour)))
            .collect();
        let _ = writeln!(
            out,
            "  cluster: {} ({}), {} running, {} pending; CPU {}/{} requested; {}/h = {}/month at 730 h{}",
            plural(t.nodes, "node", "nodes"),
            if by_ct.is_empty() {
                "none".to_string()
            } else {
                by_ct.join(", ")
            },
            t.pods_running,
            t.pods_pending,
            cores(t.requested.cpu_millicores),
            cores(t.allocatable.cpu_millicores),
            money(t.price_per_hour),
            money(t.price_per_month),
            if t.includes_estimates {
                " (includes spot estimates)"
            } else {
                ""
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(cores(3130), "3.13");
        assert_eq!(cores(4000), "4");
        assert_eq!(cores(3500), "3.5");
        assert_eq!(cores(25), "25m");
        assert_eq!(cores(100), "0.1");
        assert_eq!(gib(0), "0");
        assert_eq!(gib(7 << 30), "7.0Gi");
        assert_eq!(money(0.0612), "$0.0612");
        assert_eq!(money(131.4), "$131.40");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1345), "1,345");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn table_aligns_columns() {
        let mut out = String::new();
        table(
            &mut out,
            "",
            &["A", "N", "LAST"],
            &[
                vec!["long".into(), "1".into(), "x".into()],
                vec!["s".into(), "100".into(), "y".into()],
            ],
            &[1],
        );
        assert_eq!(out, "A       N  LAST\nlong    1  x\ns     100  y\n");
    }
}
