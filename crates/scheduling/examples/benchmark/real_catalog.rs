//! `--catalog`: a realistic pod mix against the embedded us-west-2 catalog, with the cost of the
//! solution compared to fractional lower bounds. `--verbose` adds where the money goes (per
//! launched type: NodeClaims, $/h, utilisation) and the fractional optimum's fleet.
//!
//! The pod mix (seeded): 65 % web pods (250m–2 CPU, 256Mi–4Gi), 15 % memory-heavy (0.5–1 CPU,
//! 8–32Gi), 15 % zonal services (500m, 1Gi, zone spread maxSkew 1 DoNotSchedule, four apps),
//! 5 % batch (4–8 CPU, 4–8Gi); the GPU variant turns 5 % into 1-GPU pods (4 CPU, 16Gi). One
//! NodePool allows linux on amd64 and arm64, every family, on-demand (or on-demand + spot). A
//! NodeClaim costs its `cheapest_price`: the cheapest listed offering, which is what EC2
//! launches since every listed type fits all of its pods.
//!
//! The bounds, weakest first (all valid; the solution can only be compared, never beat them):
//! - `bound`: (Σ pod CPU) × (cheapest $ per allocatable vCPU-hour of any allowed offering), the
//!   same for memory and GPUs; the largest. Pretends a pod's CPU and memory can be bought from
//!   different machines (CPU from a burstable `t4g.nano`, memory from an `x2gd`).
//! - `lp_bound`: the same covering as one LP over total CPU and memory (any mix of types).
//! - `usable_lp_bound`: that LP over types that can host at least one pod.
//! - `shape_bound`: the honest one. Pods are grouped by request shape and each pod's CPU,
//!   memory, pod slot and GPUs must sit on one node: the fractional covering LP of
//!   `karpenter_scheduling::cover` over shapes × allowed types (allocatable after kube/system
//!   reserved and eviction threshold, max pods as a resource, cheapest available offering).
//!   Types that hold at most 8 pods are priced by their best whole-pod fill (a 2-vCPU node
//!   holds one 1-CPU pod, not 1.9). It relaxes topology, the integrality of node counts and of
//!   fills on larger types. The figure printed is certified here (see `shape_bound`),
//!   independently of the LP code, so it is a valid lower bound even if that code were wrong.
//! - `whole_bound` (see `whole_bound.rs`): the same covering with *every* node holding whole
//!   pods (a configuration LP priced by exact branch and bound), certified per type by
//!   branch-and-bound upper bounds; `lp` next to it is the configuration LP's own value (an
//!   estimate, not certified). When a type's bound cannot be closed within the search budget
//!   the certified figure is scaled down and can come out below `shape_bound`; both are
//!   valid, so the larger one is the bound to quote.

use std::collections::BTreeMap;
use std::time::Instant;

use karpenter_apis::labels;
use karpenter_catalog::{Catalog, CatalogInstanceType};
use karpenter_scheduling::cover::{CoverType, MAX_EXACT_PODS, fractional_cover};
use karpenter_scheduling::model::{
    InclusionPolicy, LabelSelector, NodeClassRef, NodePoolView, Offering, Overhead, PodView,
    TopologySpreadConstraint, WhenUnsatisfiable,
};
use karpenter_scheduling::requirements::{Requirement, Requirements};
use karpenter_scheduling::resources::Resources;
use karpenter_scheduling::{InstanceType, SchedulingInput, SolveOptions, solve};

use super::Rng;

const GI: i64 = 1 << 30;
const MI: i64 = 1 << 20;
const GPU: &str = "nvidia.com/gpu";

fn resources(map: &BTreeMap<String, i64>) -> Resources {
    let mut r = Resources::new();
    for (k, v) in map {
        r.set(k, *v);
    }
    r
}

fn convert(t: &CatalogInstanceType) -> InstanceType {
    let mut requirements = Requirements::new();
    for (k, v) in &t.labels {
        requirements.add(k, Requirement::in_values([v.clone()]));
    }
    requirements.add(
        labels::INSTANCE_TYPE,
        Requirement::in_values([t.name.clone()]),
    );
    InstanceType {
        name: t.name.clone(),
        requirements,
        capacity: resources(&t.capacity),
        overhead: Overhead {
            kube_reserved: resources(&t.overhead.kube_reserved),
            system_reserved: resources(&t.overhead.system_reserved),
            eviction_threshold: resources(&t.overhead.eviction_threshold),
        },
        offerings: t
            .offerings
            .iter()
            .map(|o| {
                let mut off = Offering::new(&o.zone, &o.capacity_type, o.price);
                off.available = o.available;
                off.labels
                    .insert(labels::AWS_ZONE_ID.to_string(), o.zone_id.clone());
                off
            })
            .collect(),
    }
}

fn nodepool(types: Vec<InstanceType>, capacity_types: &[&str]) -> NodePoolView {
    NodePoolView {
        name: "default".into(),
        requirements: Requirements::new()
            .with(labels::OS, Requirement::in_values(["linux"]))
            .with(labels::ARCH, Requirement::in_values(["amd64", "arm64"]))
            .with(
                labels::CAPACITY_TYPE,
                Requirement::in_values(capacity_types.iter().copied()),
            ),
        node_class_ref: NodeClassRef {
            group: labels::AWS_GROUP.into(),
            kind: "EC2NodeClass".into(),
            name: "default".into(),
        },
        instance_types: types,
        ..NodePoolView::default()
    }
}

fn pod(i: usize, kind: &str, cpu_m: i64, mem: i64) -> PodView {
    PodView {
        uid: format!("{kind}-{i:06}"),
        namespace: "default".into(),
        name: format!("{kind}-{i}"),
        creation_timestamp: i as i64,
        requests: Resources::new()
            .with("cpu", cpu_m)
            .with("memory", mem)
            .with("pods", 1),
        ..PodView::default()
    }
}

fn pod_mix(n: usize, gpu: bool) -> Vec<PodView> {
    let mut rng = Rng(7);
    (0..n)
        .map(|i| {
            let roll = rng.next() % 100;
            if gpu && roll < 5 {
                let mut p = pod(i, "gpu", 4000, 16 * GI);
                p.requests.set(GPU, 1);
                p
            } else if roll < 65 {
                let cpu = *rng.pick(&[250, 500, 1000, 2000]);
                let mem = *rng.pick(&[256 * MI, 512 * MI, GI, 2 * GI, 4 * GI]);
                pod(i, "web", cpu, mem)
            } else if roll < 80 {
                let cpu = *rng.pick(&[500, 1000]);
                let mem = *rng.pick(&[8 * GI, 16 * GI, 32 * GI]);
                pod(i, "memory-heavy", cpu, mem)
            } else if roll < 95 {
                let app = *rng.pick(&["api", "auth", "search", "cart"]);
                let mut p = pod(i, "zonal", 500, GI);
                p.labels.insert("app".into(), app.into());
                p.topology_spread.push(TopologySpreadConstraint {
                    max_skew: 1,
                    topology_key: labels::ZONE.into(),
                    when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
                    label_selector: Some(LabelSelector::labels(&[("app", app)])),
                    min_domains: None,
                    node_affinity_policy: InclusionPolicy::Honor,
                    node_taints_policy: InclusionPolicy::Ignore,
                    match_label_keys: vec![],
                });
                p
            } else {
                let cpu = *rng.pick(&[4000, 8000]);
                let mem = *rng.pick(&[4 * GI, 8 * GI]);
                pod(i, "batch", cpu, mem)
            }
        })
        .collect()
}

struct Bound {
    usd_per_cpu: f64,
    usd_per_gib: f64,
    usd_per_gpu: f64,
    cpu_type: String,
    mem_type: String,
}

/// The exact fractional (LP) bound for covering total CPU `c` and memory `m` with any mix of
/// allowed instance types: min Σ xₜ·priceₜ s.t. Σ xₜ·cpuₜ ≥ c, Σ xₜ·memₜ ≥ m, xₜ ≥ 0. With two
/// constraints an optimal vertex uses at most two types, so every single type and every pair is
/// tried. Tighter than the max of the per-resource bounds, and still a valid lower bound.
///
/// With `pods`, types that cannot host a single one of them on their own are left out (they
/// can take part in no packing, so the bound stays valid): a burstable `t4g.nano` has the
/// cheapest $/vCPU but less allocatable memory than the smallest pod asks for.
fn lp_bound(np: &NodePoolView, c: f64, m: f64, pods: Option<&[PodView]>) -> f64 {
    let mut pts: Vec<(f64, f64, f64)> = Vec::new(); // (cpu cores, mem GiB, $/h)
    for t in &np.instance_types {
        if t.requirements.intersects(&np.requirements).is_err() {
            continue;
        }
        let alloc = t.allocatable();
        if pods.is_some_and(|ps| !ps.iter().any(|p| alloc.fits(&p.requests))) {
            continue;
        }
        let price = t
            .offerings
            .iter()
            .filter(|o| o.available && o.compatible(&np.requirements))
            .map(|o| o.price)
            .fold(f64::INFINITY, f64::min);
        if price.is_finite() && alloc.cpu > 0 && alloc.memory > 0 {
            pts.push((
                alloc.cpu as f64 / 1000.0,
                alloc.memory as f64 / GI as f64,
                price,
            ));
        }
    }
    let mut best = f64::INFINITY;
    for &(ca, ma, pa) in &pts {
        best = best.min(pa * (c / ca).max(m / ma));
    }
    for (i, &(ca, ma, pa)) in pts.iter().enumerate() {
        for &(cb, mb, pb) in pts.iter().skip(i + 1) {
            let det = ca * mb - cb * ma;
            if det.abs() < 1e-12 {
                continue;
            }
            let xa = (c * mb - cb * m) / det;
            let xb = (ca * m - c * ma) / det;
            if xa >= 0.0 && xb >= 0.0 {
                best = best.min(xa * pa + xb * pb);
            }
        }
    }
    best
}

/// The pod-shape covering bound ([`karpenter_scheduling::cover`]): pods are grouped by request
/// shape, every allowed type is priced at its cheapest available offering with its allocatable
/// room (CPU, memory, pods, GPUs: kube/system reserved and eviction threshold already taken
/// off), and each pod's resources must sit on one node. The LP gives every shape a value u_g.
/// Why Σ n_g·u_g is a lower bound on every packing, checked here independently of the LP code:
/// if no node of any type t can be worth more than its price pₜ (Σ of u over the whole pods it
/// holds), then summing over the nodes of any packing gives Σ n_g·u_g ≤ its cost. That check
/// is made per type: small types (at most `MAX_EXACT_PODS` pods fit) by enumerating their
/// whole-pod fills; larger ones through the LP's resource prices vₜ, stretched until every
/// shape is worth at most q_g·vₜ, so a node holding pods S (which fit) is worth
/// Σ_S u ≤ vₜ·Σ_S q ≤ vₜ·aₜ. Where a node could be worth more than its price, all values are
/// scaled down, so the certified figure is valid whatever the LP returned (it can only come
/// out lower). Relaxed, which only lowers it: topology spread and zones, and integrality of
/// node counts and of fills on the larger types. Returns (LP optimum, certified bound).
fn shape_bound(np: &NodePoolView, pods: &[PodView], verbose: bool) -> Option<(f64, f64)> {
    let mut shapes: BTreeMap<Resources, usize> = BTreeMap::new();
    for p in pods {
        *shapes.entry(p.requests.clone()).or_default() += 1;
    }
    let shapes: Vec<(Resources, usize)> = shapes.into_iter().collect();
    let allowed: Vec<&InstanceType> = np
        .instance_types
        .iter()
        .filter(|t| t.requirements.intersects(&np.requirements).is_ok())
        .collect();
    let types: Vec<CoverType> = allowed.iter().map(|t| cover_type(t, np)).collect();
    let cover = fractional_cover(&shapes, &types, 200_000)?;
    if verbose {
        // The fractional optimum: nodes per type and the pods (by shape) it puts there.
        for (((t, ct), x), placed) in allowed
            .iter()
            .zip(&types)
            .zip(&cover.nodes)
            .zip(&cover.placed)
        {
            if *x > 1e-9 {
                let fill: Vec<String> = shapes
                    .iter()
                    .zip(placed)
                    .filter(|(_, y)| **y > 1e-9)
                    .map(|((q, _), y)| format!("{y:.1}x({}m,{}Mi)", q.cpu, q.memory / MI))
                    .collect();
                println!(
                    "  lp: {:<16} nodes={x:>7.2} $/h={:>7.3} {}",
                    t.name,
                    x * ct.price,
                    fill.join(" ")
                );
            }
        }
    }
    let value = |prices: &[f64], r: &Resources| -> f64 {
        cover
            .resources
            .iter()
            .zip(prices)
            .map(|(n, v)| v.max(0.0) * r.get(n).max(0) as f64)
            .sum()
    };
    // Dual feasibility, checked per type: the most any node of the type can be worth at the
    // LP's pod values must not exceed its price. Small types (few pods fit) are enumerated in
    // whole pods; larger ones use the LP's resource prices as a linear certificate, scaled up
    // until every pod shape is worth no more than its resources. Any excess scales all pod
    // values down, so the result is valid whatever the LP returned.
    let u = &cover.pod_values;
    let mut scale = 1f64;
    for (t, prices) in types.iter().zip(&cover.resource_prices) {
        if !t.price.is_finite() {
            continue;
        }
        let fits: Vec<usize> = (0..shapes.len())
            .filter(|g| shapes.get(*g).is_some_and(|(q, _)| t.room.fits(q)))
            .collect();
        if fits.is_empty() {
            continue;
        }
        let most = match best_whole_fill(&shapes, &fits, u, &t.room) {
            Some(v) => v,
            None => {
                let stretch = fits
                    .iter()
                    .map(|g| {
                        let worth = u.get(*g).copied().unwrap_or(0.0);
                        let priced = value(prices, &shapes[*g].0);
                        if worth <= 0.0 {
                            0.0
                        } else if priced <= 0.0 {
                            f64::INFINITY
                        } else {
                            worth / priced
                        }
                    })
                    .fold(1f64, f64::max);
                stretch * value(prices, &t.room)
            }
        };
        if most > t.price {
            scale = scale.min(t.price / most);
        }
    }
    let certified: f64 = shapes
        .iter()
        .zip(u)
        .map(|((_, n), w)| *n as f64 * w.max(0.0))
        .sum::<f64>()
        * scale;
    Some((cover.value, certified))
}

/// Pods grouped by request shape, and every allowed type with its allocatable room and
/// cheapest available offering (as `shape_bound` poses them).
fn shapes_and_types(
    np: &NodePoolView,
    pods: &[PodView],
) -> (Vec<(Resources, usize)>, Vec<CoverType>) {
    let mut shapes: BTreeMap<Resources, usize> = BTreeMap::new();
    for p in pods {
        *shapes.entry(p.requests.clone()).or_default() += 1;
    }
    let types = np
        .instance_types
        .iter()
        .filter(|t| t.requirements.intersects(&np.requirements).is_ok())
        .map(|t| cover_type(t, np))
        .collect();
    (shapes.into_iter().collect(), types)
}

/// The most a node with `room` can be worth in whole pods of the shapes `fits` (at most
/// `shapes[g].1` of each, worth `u[g]` each), by plain enumeration; `None` when more than
/// `MAX_EXACT_PODS` pods could fit (the linear certificate is used then).
fn best_whole_fill(
    shapes: &[(Resources, usize)],
    fits: &[usize],
    u: &[f64],
    room: &Resources,
) -> Option<f64> {
    let most_pods = ["cpu", "memory", "pods", GPU]
        .iter()
        .filter_map(|r| {
            let smallest = fits.iter().map(|g| shapes[*g].0.get(r)).min()?;
            (smallest > 0).then(|| (room.get(r) / smallest) as usize)
        })
        .min()
        .unwrap_or(usize::MAX);
    if most_pods > MAX_EXACT_PODS {
        return None;
    }
    fn walk(
        shapes: &[(Resources, usize)],
        fits: &[usize],
        u: &[f64],
        left: &Resources,
        i: usize,
    ) -> f64 {
        let Some(&g) = fits.get(i) else {
            return 0.0;
        };
        let (q, n) = &shapes[g];
        let mut best = walk(shapes, fits, u, left, i + 1);
        let mut rest = left.clone();
        for k in 1..=*n {
            if !rest.fits(q) {
                break;
            }
            rest = rest.minus(q);
            best = best.max(k as f64 * u[g].max(0.0) + walk(shapes, fits, u, &rest, i + 1));
        }
        best
    }
    Some(walk(shapes, fits, u, room, 0))
}

fn cheapest_rates(np: &NodePoolView) -> Bound {
    let mut b = Bound {
        usd_per_cpu: f64::INFINITY,
        usd_per_gib: f64::INFINITY,
        usd_per_gpu: f64::INFINITY,
        cpu_type: String::new(),
        mem_type: String::new(),
    };
    for t in &np.instance_types {
        if t.requirements.intersects(&np.requirements).is_err() {
            continue;
        }
        let alloc = t.allocatable();
        for o in t
            .offerings
            .iter()
            .filter(|o| o.available && o.compatible(&np.requirements))
        {
            if alloc.cpu > 0 && o.price / (alloc.cpu as f64 / 1000.0) < b.usd_per_cpu {
                b.usd_per_cpu = o.price / (alloc.cpu as f64 / 1000.0);
                b.cpu_type = format!("{}/{}", t.name, o.capacity_type);
            }
            if alloc.memory > 0 && o.price / (alloc.memory as f64 / GI as f64) < b.usd_per_gib {
                b.usd_per_gib = o.price / (alloc.memory as f64 / GI as f64);
                b.mem_type = format!("{}/{}", t.name, o.capacity_type);
            }
            if alloc.get(GPU) > 0 {
                b.usd_per_gpu = b.usd_per_gpu.min(o.price / alloc.get(GPU) as f64);
            }
        }
    }
    b
}

pub fn run(n: usize, json: bool, verbose: bool) {
    let catalog = match Catalog::embedded() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot load the embedded catalog: {e}");
            std::process::exit(1);
        }
    };
    let types: Vec<InstanceType> = catalog.instance_types.iter().map(convert).collect();
    for (capacity_types, gpu) in [
        (&["on-demand"][..], false),
        (&["on-demand", "spot"][..], false),
        (&["on-demand"][..], true),
    ] {
        let np = nodepool(types.clone(), capacity_types);
        let rates = cheapest_rates(&np);
        let input = SchedulingInput {
            pods: pod_mix(n, gpu),
            nodepools: vec![np],
            ..SchedulingInput::default()
        };
        let cpu0 = super::thread_cpu_seconds();
        let start = Instant::now();
        let results = solve(&input, &SolveOptions::default());
        let seconds = start.elapsed().as_secs_f64();
        let cpu_seconds = super::thread_cpu_seconds() - cpu0;
        // Outside the timed section: the independent checker, and a second solve that must
        // give the same NodeClaims.
        let violations = karpenter_scheduling::checker::check_solution(
            &input,
            &SolveOptions::default(),
            &results,
        );
        for v in violations.iter().take(5) {
            eprintln!("checker: {v}");
        }
        let again = solve(&input, &SolveOptions::default());
        let deterministic = again.new_nodeclaims.len() == results.new_nodeclaims.len()
            && again
                .new_nodeclaims
                .iter()
                .zip(&results.new_nodeclaims)
                .all(|(a, b)| a.pods == b.pods && a.instance_types == b.instance_types);
        let cost: f64 = results
            .new_nodeclaims
            .iter()
            .map(|c| c.cheapest_price)
            .sum();
        let (mut cpu, mut mem, mut gpus) = (0i64, 0i64, 0i64);
        for p in &input.pods {
            cpu += p.requests.cpu;
            mem += p.requests.memory;
            gpus += p.requests.get(GPU);
        }
        let cpu_bound = cpu as f64 / 1000.0 * rates.usd_per_cpu;
        let mem_bound = mem as f64 / GI as f64 * rates.usd_per_gib;
        let gpu_bound = if gpus > 0 {
            gpus as f64 * rates.usd_per_gpu
        } else {
            0.0
        };
        let bound = cpu_bound.max(mem_bound).max(gpu_bound);
        let lp = lp_bound(
            &input.nodepools[0],
            cpu as f64 / 1000.0,
            mem as f64 / GI as f64,
            None,
        )
        .max(gpu_bound);
        let usable_lp = lp_bound(
            &input.nodepools[0],
            cpu as f64 / 1000.0,
            mem as f64 / GI as f64,
            Some(&input.pods),
        )
        .max(gpu_bound);
        let shape_start = Instant::now();
        let (shape_lp, shape) =
            shape_bound(&input.nodepools[0], &input.pods, verbose).unwrap_or((f64::NAN, f64::NAN));
        let shape_seconds = shape_start.elapsed().as_secs_f64();
        let whole_start = Instant::now();
        let (whole_lp, whole, whole_columns, whole_rounds) = {
            let (shapes, types) = shapes_and_types(&input.nodepools[0], &input.pods);
            super::whole_bound::whole_bound(&shapes, &types).unwrap_or((f64::NAN, f64::NAN, 0, 0))
        };
        let whole_seconds = whole_start.elapsed().as_secs_f64();
        // Utilisation of the cheapest listed type of each NodeClaim (what would be launched).
        let (mut used_cpu, mut cap_cpu, mut used_mem, mut cap_mem) = (0i64, 0i64, 0i64, 0i64);
        for c in &results.new_nodeclaims {
            if let Some(t) = c.instance_types.first().and_then(|n| {
                input.nodepools[0]
                    .instance_types
                    .iter()
                    .find(|t| *t.name == **n)
            }) {
                let a = t.allocatable();
                used_cpu += c.requests.cpu;
                cap_cpu += a.cpu;
                used_mem += c.requests.memory;
                cap_mem += a.memory;
            }
        }
        let util = format!(
            "cpu {:.0}% mem {:.0}%",
            100.0 * used_cpu as f64 / cap_cpu.max(1) as f64,
            100.0 * used_mem as f64 / cap_mem.max(1) as f64
        );
        let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &results.new_nodeclaims {
            if let Some(t) = c.instance_types.first() {
                *by_type.entry(t).or_default() += 1;
            }
        }
        let mut top: Vec<(&str, usize)> = by_type.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        top.truncate(5);
        if verbose {
            diagnose(&input, &results);
        }
        let case = format!(
            "catalog-{}{}",
            capacity_types.join("+"),
            if gpu { "-gpu" } else { "" }
        );
        if json {
            println!(
                "{{\"case\":\"{case}\",\"types\":{},\"pods\":{},\"wall_seconds\":{seconds:.6},\"cpu_seconds\":{cpu_seconds:.6},\"new_nodeclaims\":{},\"unschedulable\":{},\"usd_per_hour\":{cost:.4},\"lower_bound_usd_per_hour\":{bound:.4},\"ratio\":{:.4},\"lp_bound_usd_per_hour\":{lp:.4},\"lp_ratio\":{:.4},\"usable_lp_bound_usd_per_hour\":{usable_lp:.4},\"usable_lp_ratio\":{:.4},\"shape_bound_usd_per_hour\":{shape:.4},\"shape_ratio\":{:.4},\"whole_bound_usd_per_hour\":{whole:.4},\"whole_ratio\":{:.4},\"whole_seconds\":{whole_seconds:.2},\"checker_violations\":{},\"deterministic\":{deterministic}}}",
                catalog.instance_types.len(),
                input.pods.len(),
                results.new_nodeclaims.len(),
                results.unschedulable.len(),
                cost / bound,
                cost / lp,
                cost / usable_lp,
                cost / shape,
                cost / whole,
                violations.len()
            );
        } else {
            println!(
                "{case:<28} types={} pods={} wall={:.1}ms cpu={:.1}ms nodeclaims={} unschedulable={} $/h={cost:.4} bound={bound:.4} (cpu {cpu_bound:.4} via {}, mem {mem_bound:.4} via {}, gpu {gpu_bound:.4}) ratio={:.4} lp_bound={lp:.4} lp_ratio={:.4} usable_lp_bound={usable_lp:.4} usable_lp_ratio={:.4} shape_bound={shape:.4} (lp {shape_lp:.4}, {:.1}s) shape_ratio={:.4} whole_bound={whole:.4} (lp {whole_lp:.4}, {whole_columns} columns, {whole_rounds} rounds, {whole_seconds:.1}s) whole_ratio={:.4} checker_violations={} deterministic={deterministic} utilisation=({util}) top={top:?}",
                catalog.instance_types.len(),
                input.pods.len(),
                seconds * 1e3,
                cpu_seconds * 1e3,
                results.new_nodeclaims.len(),
                results.unschedulable.len(),
                rates.cpu_type,
                rates.mem_type,
                cost / bound,
                cost / lp,
                cost / usable_lp,
                shape_seconds,
                cost / shape,
                cost / whole,
                violations.len()
            );
        }
    }
}

/// `--verbose`: where the money goes, per launched type (the cheapest listed one).
fn diagnose(input: &SchedulingInput, results: &karpenter_scheduling::SchedulingResults) {
    let np = &input.nodepools[0];
    let by_name: BTreeMap<&str, &InstanceType> = np
        .instance_types
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    #[derive(Default)]
    struct PerType {
        claims: usize,
        usd: f64,
        used: Resources,
        alloc: Resources,
        pods: usize,
        listed: usize,
    }
    let mut per: BTreeMap<String, PerType> = BTreeMap::new();
    for c in &results.new_nodeclaims {
        let Some(t) = c.instance_types.first().and_then(|n| by_name.get(&**n)) else {
            continue;
        };
        let e = per.entry(t.name.clone()).or_default();
        e.claims += 1;
        e.usd += c.cheapest_price;
        e.used.add(&c.requests);
        e.alloc.add(&t.allocatable());
        e.pods += c.pods.len();
        e.listed += c.instance_types.len();
    }
    // Claim groups by launched type, zone pin and pod kinds (uid prefixes).
    let mut groups: BTreeMap<(String, String, String), (usize, f64)> = BTreeMap::new();
    for c in &results.new_nodeclaims {
        let Some(t) = c.instance_types.first() else {
            continue;
        };
        let zone = c
            .requirements
            .get(labels::ZONE)
            .and_then(|r| r.single_value())
            .unwrap_or("*")
            .to_string();
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &c.pods {
            *kinds.entry(p.split('-').next().unwrap_or("")).or_default() += 1;
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}:{n}")).collect();
        let e = groups
            .entry((t.to_string(), zone, kinds.join(",")))
            .or_default();
        e.0 += 1;
        e.1 += c.cheapest_price;
    }
    let mut grows: Vec<_> = groups.into_iter().collect();
    grows.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
    for ((t, z, k), (n, usd)) in grows.iter().take(40) {
        println!("  group {t:<16} zone={z:<11} claims={n:<4} $/h={usd:>7.3} pods={k}");
    }
    let mut rows: Vec<_> = per.into_iter().collect();
    rows.sort_by(|a, b| b.1.usd.total_cmp(&a.1.usd));
    for (name, e) in rows {
        println!(
            "  {name:<18} claims={:<4} $/h={:>8.3} cpu={:>3.0}% mem={:>3.0}% pods/claim={:.1} listed/claim={:.0}",
            e.claims,
            e.usd,
            100.0 * e.used.cpu as f64 / e.alloc.cpu.max(1) as f64,
            100.0 * e.used.memory as f64 / e.alloc.memory.max(1) as f64,
            e.pods as f64 / e.claims as f64,
            e.listed as f64 / e.claims as f64
        );
    }
}

/// A type as the covering LPs see it: its allocatable room at its cheapest available offering
/// the NodePool allows.
fn cover_type(t: &InstanceType, np: &NodePoolView) -> CoverType {
    CoverType {
        room: t.allocatable(),
        price: t
            .offerings
            .iter()
            .filter(|o| o.available && o.compatible(&np.requirements))
            .map(|o| o.price)
            .fold(f64::INFINITY, f64::min),
    }
}
