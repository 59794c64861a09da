//! The fractional covering problem behind cost-aware packing: place pods of a few request
//! shapes on fractional nodes of priced types, at least cost, with each pod's resources living
//! together on one type (unlike a per-resource bound, a pod's CPU and memory cannot be bought
//! from different machines).
//!
//! Primal (solved by column generation over single-node fills, see [`fractional_cover`]):
//! `min Σₜ pₜ·xₜ` s.t. `Σₜ y_gt ≥ n_g` per shape `g`, `Σ_g q_g·y_gt ≤ aₜ·xₜ` per type `t` and
//! resource, `x, y ≥ 0`, and `y_gt = 0` where one pod of `g` does not fit `t`.
//! Dual: per-pod values `u_g` and per-type resource prices `vₜ ≥ 0` with `aₜ·vₜ ≤ pₜ` and
//! `u_g ≤ q_g·vₜ` wherever `g` fits `t`; maximise `Σ n_g·u_g`. Any such `(u, v)` is a lower
//! bound on the cost of every integral packing: a node of type `t` holding pods `S` (which fit,
//! so `Σ_S q ≤ aₜ`) is worth `Σ_S u ≤ vₜ·Σ_S q ≤ vₜ·aₜ ≤ pₜ`, and summing over nodes gives
//! `Σ n_g·u_g ≤ cost`.
//!
//! Small types (at most [`MAX_EXACT_PODS`] pods fit) are priced by their best whole-pod fill
//! instead of the fractional one: a 2-vCPU node holds one 1-CPU pod, not 1.93. The bound stays
//! valid (the dual condition is exactly "no whole-pod fill of a node is worth more than its
//! price") and gets tighter. Pod values are scaled down until every type's best fill is worth
//! at most its price, so the value returned is a bound even if the rounds run out.

use crate::lp;
use crate::resources::Resources;

/// One priced instance type as the covering problem sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverType {
    /// Room for pods (allocatable minus DaemonSet overhead), including `pods`.
    pub room: Resources,
    /// USD per hour of its cheapest usable offering.
    pub price: f64,
}

/// An optimal fractional cover.
#[derive(Debug, Clone, PartialEq)]
pub struct Cover {
    /// `Σ n_g·u_g` (USD/h): a lower bound on any packing of the shapes onto the types (the
    /// fractional optimum when the column generation converged).
    pub value: f64,
    /// Column-generation rounds it took.
    pub rounds: usize,
    /// The resource names the problem was posed over (order of `resource_prices` rows).
    pub resources: Vec<String>,
    /// Per shape: the marginal cost of one more pod of it (`u_g`).
    pub pod_values: Vec<f64>,
    /// Per type (input order; 0 for types pruned as dominated): fractional node count `xₜ`.
    pub nodes: Vec<f64>,
    /// Per type: resource prices `vₜ` per base unit of each resource (millicore, byte, count);
    /// a type pruned as dominated carries the prices of a kept type dominating it.
    pub resource_prices: Vec<Vec<f64>>,
    /// Per type: whether its fills were priced in whole pods (small types, see
    /// [`MAX_EXACT_PODS`]); for those `resource_prices` are the fractional fill's and do not
    /// certify the pod values on their own.
    pub whole_pods: Vec<bool>,
    /// Per type, per shape: fractional pods placed (`y_gt`).
    pub placed: Vec<Vec<f64>>,
}

/// Types that can hold at most this many of the shapes' pods are priced with their best
/// whole-pod fill (exact enumeration) instead of the fractional one.
pub const MAX_EXACT_PODS: usize = 8;

/// Column-generation rounds before giving up on optimality (the bound stays valid).
const MAX_ROUNDS: usize = 200;

/// Scale per resource so the LP's numbers stay near 1 (cores, GiB, counts).
fn unit(name: &str) -> f64 {
    match name {
        crate::resources::CPU => 1000.0,
        crate::resources::MEMORY | crate::resources::EPHEMERAL_STORAGE => (1u64 << 30) as f64,
        _ => 1.0,
    }
}

/// Solves the covering problem for `shapes` (request, count) on `types`. Types another type
/// dominates (at least as much room of every resource at no higher price) are left out: they
/// never lower the optimum. `None` when a shape fits no type, the problem is empty, or the
/// simplex gives up within `max_pivots`.
pub fn fractional_cover(
    shapes: &[(Resources, usize)],
    types: &[CoverType],
    max_pivots: usize,
) -> Option<Cover> {
    cover_with(shapes, types, max_pivots, true)
}

/// [`fractional_cover`] with the whole-pod pricing of small types switched on or off (off: a
/// looser bound whose fractional placement sometimes rounds to a cheaper packing).
pub fn cover_with(
    shapes: &[(Resources, usize)],
    types: &[CoverType],
    max_pivots: usize,
    whole_pods_on_small_types: bool,
) -> Option<Cover> {
    let mut names: Vec<String> = Vec::new();
    for (q, _) in shapes {
        for (name, v) in q.iter() {
            if v > 0 && !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    if shapes.is_empty() || names.is_empty() {
        return None;
    }
    let scaled = |r: &Resources| -> Vec<f64> {
        names
            .iter()
            .map(|n| r.get(n).max(0) as f64 / unit(n))
            .collect()
    };
    let q: Vec<Vec<f64>> = shapes.iter().map(|(r, _)| scaled(r)).collect();
    let priced: Vec<(usize, Vec<f64>, f64)> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| t.price.is_finite() && t.price > 0.0)
        .filter(|(_, t)| shapes.iter().any(|(s, _)| t.room.fits(s)))
        .map(|(i, t)| (i, scaled(&t.room), t.price))
        .collect();
    // Dominance pruning; among equal types the first one stays.
    let kept: Vec<&(usize, Vec<f64>, f64)> = priced
        .iter()
        .enumerate()
        .filter(|(i, (_, a, p))| {
            !priced.iter().enumerate().any(|(j, (_, b, pb))| {
                j != *i
                    && pb <= p
                    && b.iter().zip(a).all(|(x, y)| x >= y)
                    && (pb < p || b.iter().zip(a).any(|(x, y)| x > y) || j < *i)
            })
        })
        .map(|(_, t)| t)
        .collect();
    let (g_count, r_count) = (shapes.len(), names.len());
    let fits: Vec<Vec<bool>> = kept
        .iter()
        .map(|(i, _, _)| {
            shapes
                .iter()
                .map(|(s, _)| types.get(*i).is_some_and(|t| t.room.fits(s)))
                .collect()
        })
        .collect();
    // Column generation over single-node "configurations" (a type and a fractional fill of
    // shapes). The master works in its dual form, max Σ n_g·u_g s.t. fill·u ≤ price for every
    // configuration so far (origin feasible, so the simplex needs no phase 1); pricing asks each
    // type for its most valuable fill at the current pod values u, a tiny LP with one row per
    // resource whose dual is that type's resource prices vₜ.
    let mut columns: Vec<(usize, Vec<f64>)> = Vec::new(); // (kept index, fill per shape)
    for (g, qg) in q.iter().enumerate() {
        // Start from each shape's cheapest single-shape node, so every u_g is bounded.
        let best = kept
            .iter()
            .enumerate()
            .filter(|(t, _)| fits.get(*t).and_then(|f| f.get(g)).copied() == Some(true))
            .map(|(t, (_, room, price))| {
                let count = room
                    .iter()
                    .zip(qg)
                    .filter(|(_, qv)| **qv > 0.0)
                    .map(|(a, qv)| a / qv)
                    .fold(f64::INFINITY, f64::min);
                // Whole pods: a starting column must be a fill a real node can hold.
                let count = (count + 1e-9).floor();
                (t, count, price / count)
            })
            .filter(|(_, count, _)| count.is_finite() && *count > 0.0)
            .min_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)))?;
        let mut fill = vec![0f64; g_count];
        *fill.get_mut(g)? = best.1;
        columns.push((best.0, fill));
    }
    let counts: Vec<f64> = shapes.iter().map(|(_, n)| *n as f64).collect();
    let mut master;
    let mut type_prices: Vec<Vec<f64>> = vec![vec![0f64; r_count]; kept.len()];
    let mut integral = vec![false; kept.len()];
    let mut scale;
    let mut rounds = 0usize;
    loop {
        rounds += 1;
        let a: Vec<f64> = columns
            .iter()
            .flat_map(|(_, f)| f.iter().copied())
            .collect();
        let b: Vec<f64> = columns
            .iter()
            .map(|(t, _)| kept.get(*t).map_or(0.0, |k| k.2))
            .collect();
        master = lp::maximize(&a, &b, &counts, max_pivots)?;
        let u = &master.primal;
        // Pricing: each type's best fractional fill at values u.
        let mut added = 0usize;
        scale = 1f64;
        for (t, (_, room, price)) in kept.iter().enumerate() {
            let fit = fits.get(t)?;
            let live: Vec<usize> = (0..g_count)
                .filter(|g| fit.get(*g).copied() == Some(true))
                .collect();
            // Rows: resources; columns: the fitting shapes.
            let mut pa = vec![0f64; r_count * live.len()];
            for r in 0..r_count {
                for (j, g) in live.iter().enumerate() {
                    *pa.get_mut(r * live.len() + j)? = *q.get(*g)?.get(r)?;
                }
            }
            let pc: Vec<f64> = live
                .iter()
                .map(|g| u.get(*g).copied().unwrap_or(0.0))
                .collect();
            let best = lp::maximize(&pa, room, &pc, max_pivots)?;
            *type_prices.get_mut(t)? = best.dual.clone();
            // Small nodes hold few pods, and there the fractional fill overstates what a node
            // can really hold (1.9 one-CPU pods on a 2-vCPU type): their best *whole-pod* fill
            // is found exactly instead, which keeps the bound valid and makes it tighter.
            let exact = if whole_pods_on_small_types {
                exact_fill(room, &q, &live, &pc, &counts)
            } else {
                None
            };
            let (value, fill_of) = match exact {
                Some((value, copies)) => {
                    *integral.get_mut(t)? = true;
                    (
                        value,
                        copies.iter().map(|k| *k as f64).collect::<Vec<f64>>(),
                    )
                }
                None => (best.value, best.primal.clone()),
            };
            if value > price * (1.0 + 1e-9) {
                scale = scale.min(price / value);
                let mut fill = vec![0f64; g_count];
                for (j, g) in live.iter().enumerate() {
                    *fill.get_mut(*g)? = *fill_of.get(j)?;
                }
                columns.push((t, fill));
                added += 1;
            }
        }
        if added == 0 || rounds >= MAX_ROUNDS {
            break;
        }
    }
    // Scaling the pod values by `scale` makes them feasible for every type (each type's best
    // fill is linear in u), so the result is a valid bound even if the rounds ran out.
    let pod_values: Vec<f64> = master
        .primal
        .get(..g_count)?
        .iter()
        .map(|u| u * scale)
        .collect();
    let value: f64 = pod_values.iter().zip(&counts).map(|(u, n)| u * n).sum();
    let mut nodes = vec![0f64; types.len()];
    let mut resource_prices = vec![vec![0f64; r_count]; types.len()];
    let mut placed = vec![vec![0f64; g_count]; types.len()];
    for ((t, fill), lambda) in columns.iter().zip(&master.dual) {
        let (i, _, _) = kept.get(*t)?;
        *nodes.get_mut(*i)? += lambda;
        for (g, z) in fill.iter().enumerate() {
            *placed.get_mut(*i)?.get_mut(g)? += lambda * z;
        }
    }
    let mut whole_pods = vec![false; types.len()];
    for (t, (i, _, _)) in kept.iter().enumerate() {
        *whole_pods.get_mut(*i)? = *integral.get(t)?;
        let prices = resource_prices.get_mut(*i)?;
        for (r, name) in names.iter().enumerate() {
            *prices.get_mut(r)? = scale * type_prices.get(t)?.get(r)? / unit(name);
        }
    }
    // A pruned type borrows the prices of a kept type that dominates it: they are feasible for
    // it (its room is no larger, its price no lower) and every shape that fits it fits there.
    for (i, a, p) in &priced {
        if kept.iter().any(|(k, _, _)| k == i) {
            continue;
        }
        let dominator = kept
            .iter()
            .find(|(_, b, pb)| pb <= p && b.iter().zip(a).all(|(x, y)| x >= y))
            .map(|(k, _, _)| *k);
        if let Some(k) = dominator {
            let prices = resource_prices.get(k)?.clone();
            *resource_prices.get_mut(*i)? = prices;
        }
    }
    Some(Cover {
        value,
        rounds,
        resources: names,
        pod_values,
        nodes,
        resource_prices,
        whole_pods,
        placed,
    })
}

/// The most valuable whole-pod fill of a node with `room` (scaled units) over the shapes in
/// `live` (values `value`, at most `counts` each), when at most [`MAX_EXACT_PODS`] of them
/// fit; `None` for larger nodes. Depth-first over shapes, most valuable first, pruned by
/// "every remaining slot at the best remaining value".
fn exact_fill(
    room: &[f64],
    q: &[Vec<f64>],
    live: &[usize],
    value: &[f64],
    counts: &[f64],
) -> Option<(f64, Vec<usize>)> {
    // Most pods that can fit: per resource, room over the smallest request of any live shape.
    let mut cap = usize::MAX;
    for (r, room_r) in room.iter().enumerate() {
        let smallest = live
            .iter()
            .filter_map(|g| q.get(*g)?.get(r).copied())
            .fold(f64::INFINITY, f64::min);
        if smallest > 0.0 && smallest.is_finite() {
            cap = cap.min((room_r / smallest + 1e-9).floor() as usize);
        }
    }
    if cap > MAX_EXACT_PODS {
        return None;
    }
    let mut order: Vec<usize> = (0..live.len()).collect();
    order.sort_by(|a, b| {
        let (va, vb) = (value.get(*a).copied(), value.get(*b).copied());
        vb.partial_cmp(&va)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(b))
    });
    struct Search<'a> {
        q: &'a [Vec<f64>],
        live: &'a [usize],
        value: &'a [f64],
        counts: &'a [f64],
        order: Vec<usize>,
        best: f64,
        best_fill: Vec<usize>,
        fill: Vec<usize>,
    }
    fn go(s: &mut Search<'_>, pos: usize, left: &mut [f64], slots: usize, acc: f64) {
        if acc > s.best + 1e-12 {
            s.best = acc;
            s.best_fill.clone_from(&s.fill);
        }
        let Some(&j) = s.order.get(pos) else { return };
        let vj = s.value.get(j).copied().unwrap_or(0.0);
        // Values only fall from here on: every remaining slot at vj is the most it can add.
        if slots == 0 || vj <= 0.0 || acc + slots as f64 * vj <= s.best + 1e-12 {
            return;
        }
        let Some(qg) = s.live.get(j).and_then(|g| s.q.get(*g)) else {
            return;
        };
        let limit = s
            .live
            .get(j)
            .and_then(|g| s.counts.get(*g))
            .map_or(0, |c| *c as usize);
        let mut most = slots.min(limit);
        for (r, need) in qg.iter().enumerate() {
            if *need > 0.0 {
                let have = left.get(r).copied().unwrap_or(0.0);
                most = most.min((have / need + 1e-9).floor().max(0.0) as usize);
            }
        }
        for k in (0..=most).rev() {
            for (l, need) in left.iter_mut().zip(qg) {
                *l -= need * k as f64;
            }
            if let Some(f) = s.fill.get_mut(j) {
                *f = k;
            }
            go(s, pos + 1, left, slots - k, acc + vj * k as f64);
            for (l, need) in left.iter_mut().zip(qg) {
                *l += need * k as f64;
            }
        }
        if let Some(f) = s.fill.get_mut(j) {
            *f = 0;
        }
    }
    let mut search = Search {
        q,
        live,
        value,
        counts,
        order,
        best: 0.0,
        best_fill: vec![0; live.len()],
        fill: vec![0; live.len()],
    };
    let mut left = room.to_vec();
    go(&mut search, 0, &mut left, cap, 0.0);
    Some((search.best, search.best_fill))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: i64 = 1 << 30;

    fn shape(cpu_m: i64, mem_gi: i64, n: usize) -> (Resources, usize) {
        (
            Resources::new()
                .with("cpu", cpu_m)
                .with("memory", mem_gi * GI)
                .with("pods", 1),
            n,
        )
    }

    fn ty(cpu_m: i64, mem_gi: i64, pods: i64, price: f64) -> CoverType {
        CoverType {
            room: Resources::new()
                .with("cpu", cpu_m)
                .with("memory", mem_gi * GI)
                .with("pods", pods),
            price,
        }
    }

    fn check(shapes: &[(Resources, usize)], types: &[CoverType], expected: Option<f64>) {
        let got = fractional_cover(shapes, types, 10_000);
        match (&got, expected) {
            (None, None) => {}
            (Some(c), Some(v)) => {
                assert!((c.value - v).abs() < 1e-6, "value {} != {v}", c.value);
                // The fractional nodes pay exactly the bound and hold every pod.
                let paid: f64 = c.nodes.iter().zip(types).map(|(x, t)| x * t.price).sum();
                assert!((paid - v).abs() < 1e-6, "nodes pay {paid} != {v}");
                for (g, (_, n)) in shapes.iter().enumerate() {
                    let held: f64 = c.placed.iter().map(|p| p[g]).sum();
                    assert!(held >= *n as f64 - 1e-6, "shape {g}: {held} < {n}");
                }
            }
            _ => panic!("got {got:?}, want {expected:?}"),
        }
    }

    #[test]
    fn cheapest_rate_per_pod() {
        // Small holds 2 pods for 1.5 (0.75 each), big 4 for 4.
        check(
            &[shape(1000, 1, 4)],
            &[ty(4000, 4, 10, 4.0), ty(2000, 2, 10, 1.5)],
            Some(3.0),
        );
    }

    #[test]
    fn complementary_shapes_share_a_node() {
        // Apart they need one CPU node and one memory node (2.0); together one general node.
        check(
            &[shape(2000, 1, 1), shape(500, 4, 1)],
            &[
                ty(2000, 1, 10, 1.0),
                ty(500, 4, 10, 1.0),
                ty(2500, 5, 10, 1.5),
            ],
            Some(1.5),
        );
    }

    #[test]
    fn a_pods_resources_cannot_be_split() {
        // A per-resource bound would buy the CPU at 0.1/core and the memory at 0.1/GiB (0.2);
        // the pod needs both on one machine.
        check(
            &[shape(1000, 1, 1)],
            &[
                ty(10_000, 0, 10, 1.0),
                ty(0, 10, 10, 1.0),
                ty(1000, 1, 10, 0.5),
            ],
            Some(0.5),
        );
    }

    #[test]
    fn pods_slots_bind() {
        // Only 2 pod slots per node: 4 tiny pods need 2 nodes.
        check(&[shape(100, 0, 4)], &[ty(4000, 4, 2, 1.0)], Some(2.0));
    }

    #[test]
    fn small_nodes_hold_whole_pods() {
        // 1.93 cores: fractionally 1.93 one-core pods per node (4 pods ≈ 2.07 nodes), really one.
        check(&[shape(1000, 0, 4)], &[ty(1930, 4, 4, 1.0)], Some(4.0));
    }

    #[test]
    fn shape_that_fits_nowhere() {
        check(&[shape(8000, 1, 1)], &[ty(4000, 4, 10, 1.0)], None);
        check(&[], &[ty(4000, 4, 10, 1.0)], None);
    }
}
