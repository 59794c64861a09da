//! `whole_bound`: a tighter certified lower bound than `shape_bound`, for `--catalog`.
//!
//! `shape_bound` lets nodes that can hold more than a few pods be filled *fractionally* (2.7
//! memory pods and 1.3 batch pods on an 8-vCPU node), which a real node cannot do; with pods
//! of 1–8 vCPU on 8–48-vCPU nodes that is where most of its slack is. Here every node holds
//! whole pods:
//!
//! - Pod values u_g come from a configuration LP whose columns are whole-pod fills of one node
//!   (column generation: a greedy fill first, then an exact branch-and-bound fill).
//! - Certificate, independent of how u was found: for every type t an upper bound Uₜ on the
//!   value Σ u of any whole-pod fill of one node (at most n_g pods of shape g, resources
//!   within allocatable), by branch and bound whose pruning bounds are fractional knapsacks
//!   over single resources and over a surrogate (a non-negative mix of the resources), so Uₜ
//!   stays an upper bound even when the search budget runs out (unexplored subtrees count at
//!   their bound). Then Σ n_g·u_g·min(1, minₜ pₜ/Uₜ) ≤ the cost of every packing: each node of
//!   type t is worth at most Uₜ·(scaled) ≤ pₜ, summed over the nodes of the packing.
//! - Types another type dominates (no more room in any resource, no lower price) need no
//!   check: their fills fit the dominating type, which is checked and costs no more.
//!
//! Relaxed (only lowers it): topology spread and zones, and the integrality of node counts.

#![allow(clippy::needless_range_loop)]

use karpenter_scheduling::cover::CoverType;
use karpenter_scheduling::lp;
use karpenter_scheduling::resources::Resources;

/// Resources a node's fill is checked against.
const DIMS: [&str; 4] = ["cpu", "memory", "pods", "nvidia.com/gpu"];

/// Branch-and-bound nodes per type while generating columns / while certifying.
const PRICE_BUDGET: usize = 5_000;
/// Best-first nodes (LP bounds) per type when the depth-first pricing finds no column.
const PRICE_BEST_FIRST: usize = 3_000;
const CERTIFY_BUDGET: usize = 200_000;
/// Nodes for the last resort, whose every node also solves the fractional LP for its bound.
const LP_CERTIFY_BUDGET: usize = 20_000;

struct Fill {
    /// The best whole-pod fill found and its value.
    best: f64,
    counts: Vec<usize>,
    /// An upper bound on every whole-pod fill's value.
    upper: f64,
}

/// Exact-or-bounded best whole-pod fill of `room` at values `u` (at most `n` of each shape).
fn best_fill(
    q: &[[f64; 4]],
    u: &[f64],
    n: &[usize],
    room: &[f64; 4],
    budget: usize,
    lp_bounds: bool,
) -> Fill {
    // Surrogate weights: the resource prices of the fractional fill (LP dual), so the
    // surrogate bound at the root equals the LP bound.
    let live: Vec<usize> = (0..q.len())
        .filter(|g| u[*g] > 1e-12 && n[*g] > 0 && fits(&q[*g], room))
        .collect();
    let mut a = vec![0f64; 4 * live.len()];
    for r in 0..4 {
        for (j, g) in live.iter().enumerate() {
            a[r * live.len() + j] = q[*g][r] / scale(r);
        }
    }
    let b: Vec<f64> = (0..4).map(|r| room[r] / scale(r)).collect();
    let c: Vec<f64> = live.iter().map(|g| u[*g]).collect();
    let surrogate: [f64; 4] = match lp::maximize(&a, &b, &c, 50_000) {
        Some(s) => [
            s.dual[0] / scale(0),
            s.dual[1] / scale(1),
            s.dual[2] / scale(2),
            s.dual[3] / scale(3),
        ],
        None => [0.0; 4],
    };
    let weight = |g: usize, k: usize| -> f64 {
        if k < 4 {
            q[g][k]
        } else {
            (0..4).map(|r| surrogate[r] * q[g][r]).sum()
        }
    };
    // Per constraint (4 resources + surrogate): live shapes by value per unit, densest first.
    let orders: Vec<Vec<usize>> = (0..5)
        .map(|k| {
            let mut o = live.clone();
            o.sort_by(|x, y| {
                let dx = u[*x] / weight(*x, k).max(1e-300);
                let dy = u[*y] / weight(*y, k).max(1e-300);
                dy.total_cmp(&dx).then(x.cmp(y))
            });
            o
        })
        .collect();
    let weights: Vec<[f64; 5]> = (0..q.len())
        .map(|g| [0, 1, 2, 3, 4].map(|k| if live.contains(&g) { weight(g, k) } else { 0.0 }))
        .collect();
    // Branch order: the surrogate's density order.
    let branch = orders[4].clone();
    struct Search<'a> {
        q: &'a [[f64; 4]],
        u: &'a [f64],
        n: &'a [usize],
        surrogate: [f64; 4],
        orders: &'a [Vec<usize>],
        weights: &'a [[f64; 5]],
        branch: &'a [usize],
        decided: Vec<bool>,
        fill: Vec<usize>,
        best: f64,
        best_fill: Vec<usize>,
        open: f64,
        nodes: usize,
        budget: usize,
        lp_bounds: bool,
    }
    impl Search<'_> {
        /// min over the five single-constraint fractional knapsacks of the undecided shapes.
        fn bound(&self, rem: &[f64; 4]) -> f64 {
            let mut best = f64::INFINITY;
            for k in 0..5 {
                let mut cap = if k < 4 {
                    rem[k]
                } else {
                    (0..4).map(|r| self.surrogate[r] * rem[r]).sum()
                };
                let mut v = 0f64;
                for &g in &self.orders[k] {
                    if self.decided[g] {
                        continue;
                    }
                    let w = self.weights[g][k];
                    let most = self.n[g] as f64;
                    if w <= 0.0 {
                        v += most * self.u[g];
                        continue;
                    }
                    if cap <= 0.0 {
                        break;
                    }
                    let take = (cap / w).min(most);
                    v += take * self.u[g];
                    cap -= take * w;
                }
                best = best.min(v);
            }
            best
        }
        fn go(&mut self, pos: usize, rem: [f64; 4], acc: f64) {
            if acc > self.best {
                self.best = acc;
                self.best_fill.clone_from(&self.fill);
            }
            let Some(&g) = self.branch.get(pos) else {
                return;
            };
            let mut bound = acc + self.bound(&rem);
            if bound <= self.best * (1.0 + 1e-12) + 1e-15 {
                return;
            }
            if self.lp_bounds {
                bound = bound.min(acc + lp_upper_of(self.q, self.u, self.n, &rem, &self.decided));
                if bound <= self.best * (1.0 + 1e-12) + 1e-15 {
                    return;
                }
            }
            self.nodes += 1;
            if self.nodes > self.budget {
                self.open = self.open.max(bound);
                return;
            }
            let qg = self.q[g];
            let mut most = self.n[g];
            for r in 0..4 {
                if qg[r] > 0.0 {
                    most = most.min(((rem[r] + 1e-9) / qg[r]).floor().max(0.0) as usize);
                }
            }
            self.decided[g] = true;
            for k in (0..=most).rev() {
                let mut next = rem;
                for r in 0..4 {
                    next[r] -= qg[r] * k as f64;
                }
                self.fill[g] = k;
                self.go(pos + 1, next, acc + self.u[g] * k as f64);
            }
            self.fill[g] = 0;
            self.decided[g] = false;
        }
    }
    let mut s = Search {
        q,
        u,
        n,
        surrogate,
        orders: &orders,
        weights: &weights,
        branch: &branch,
        decided: vec![false; q.len()],
        fill: vec![0; q.len()],
        best: 0.0,
        best_fill: vec![0; q.len()],
        open: 0.0,
        nodes: 0,
        budget,
        lp_bounds,
    };
    s.go(0, *room, 0.0);
    Fill {
        best: s.best,
        upper: s.best.max(s.open),
        counts: s.best_fill,
    }
}

/// The fractional fill's value (LP with per-shape caps): an upper bound on every whole fill.
fn lp_upper(q: &[[f64; 4]], u: &[f64], n: &[usize], room: &[f64; 4]) -> f64 {
    lp_upper_of(q, u, n, room, &vec![false; q.len()])
}

/// [`lp_upper`] over the shapes not `skip`ped.
fn lp_upper_of(q: &[[f64; 4]], u: &[f64], n: &[usize], room: &[f64; 4], skip: &[bool]) -> f64 {
    let live: Vec<usize> = (0..q.len())
        .filter(|g| !skip[*g] && u[*g] > 1e-12 && n[*g] > 0 && fits(&q[*g], room))
        .collect();
    if live.is_empty() {
        return 0.0;
    }
    let m = 4 + live.len();
    let mut a = vec![0f64; m * live.len()];
    for r in 0..4 {
        for (j, g) in live.iter().enumerate() {
            a[r * live.len() + j] = q[*g][r] / scale(r);
        }
    }
    for j in 0..live.len() {
        a[(4 + j) * live.len() + j] = 1.0;
    }
    let mut b: Vec<f64> = (0..4).map(|r| room[r] / scale(r)).collect();
    b.extend(live.iter().map(|g| n[*g] as f64));
    let c: Vec<f64> = live.iter().map(|g| u[*g]).collect();
    match lp::maximize(&a, &b, &c, 100_000) {
        // The simplex's own figure is checked against its dual below, so a wrong LP can only
        // make the bound weaker, never invalid.
        Some(s) => {
            // Any dual w ≥ 0 with Aᵀw ≥ c gives b·w ≥ every feasible value.
            let mut w = s.dual.clone();
            let mut stretch = 1f64;
            for (j, g) in live.iter().enumerate() {
                let lhs: f64 = (0..m).map(|i| a[i * live.len() + j] * w[i]).sum();
                if lhs < u[*g] {
                    stretch = stretch.max(if lhs > 0.0 {
                        u[*g] / lhs
                    } else {
                        f64::INFINITY
                    });
                }
            }
            for x in &mut w {
                *x *= stretch;
            }
            b.iter().zip(&w).map(|(x, y)| x * y).sum()
        }
        None => f64::INFINITY,
    }
}

/// A greedy whole fill (value per largest share of the room, then per summed share).
fn greedy(q: &[[f64; 4]], u: &[f64], n: &[usize], room: &[f64; 4]) -> (f64, Vec<usize>) {
    let mut best = (0f64, vec![0usize; q.len()]);
    for sum in [false, true] {
        let mut order: Vec<(f64, usize)> = (0..q.len())
            .filter(|g| n[*g] > 0 && u[*g] > 0.0 && fits(&q[*g], room))
            .map(|g| {
                let shares = (0..4).filter(|r| q[g][*r] > 0.0).map(|r| q[g][r] / room[r]);
                let share = if sum {
                    shares.sum::<f64>()
                } else {
                    shares.fold(0f64, f64::max)
                };
                (u[g] / share.max(1e-300), g)
            })
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut rem = *room;
        let mut fill = vec![0usize; q.len()];
        let mut value = 0.0;
        for (_, g) in order {
            let mut k = n[g];
            for r in 0..4 {
                if q[g][r] > 0.0 {
                    k = k.min(((rem[r] + 1e-9) / q[g][r]).floor().max(0.0) as usize);
                }
            }
            for r in 0..4 {
                rem[r] -= q[g][r] * k as f64;
            }
            fill[g] = k;
            value += u[g] * k as f64;
        }
        if value > best.0 {
            best = (value, fill);
        }
    }
    best
}

/// An upper bound on every whole fill's value by best-first branch and bound: nodes are
/// expanded highest bound first, so when the budget runs out the largest bound still open is
/// the tightest bound that budget can prove (with a plain depth-first search it would be the
/// root's). Bounds: the five single-constraint fractional knapsacks and the capped LP.
fn upper_best_first(
    q: &[[f64; 4]],
    u: &[f64],
    n: &[usize],
    room: &[f64; 4],
    budget: usize,
) -> (f64, f64, Vec<usize>) {
    use std::collections::BinaryHeap;
    let branch: Vec<usize> = {
        let mut b: Vec<usize> = (0..q.len())
            .filter(|g| u[*g] > 1e-12 && n[*g] > 0 && fits(&q[*g], room))
            .collect();
        // Largest pods first: fewer copies fit, so the tree is narrow near the root.
        b.sort_by(|x, y| {
            let sx: f64 = (0..4).map(|r| q[*x][r] / room[r].max(1.0)).sum();
            let sy: f64 = (0..4).map(|r| q[*y][r] / room[r].max(1.0)).sum();
            sy.total_cmp(&sx).then(x.cmp(y))
        });
        b
    };
    let skip_from = |pos: usize| -> Vec<bool> {
        let mut skip = vec![true; q.len()];
        for g in branch.iter().skip(pos) {
            skip[*g] = false;
        }
        skip
    };
    #[derive(PartialEq)]
    struct Node {
        bound: f64,
        acc: f64,
        pos: usize,
        rem: [f64; 4],
        fill: Vec<usize>,
    }
    impl Eq for Node {}
    impl PartialOrd for Node {
        fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Node {
        fn cmp(&self, o: &Self) -> std::cmp::Ordering {
            self.bound.total_cmp(&o.bound).then(o.pos.cmp(&self.pos))
        }
    }
    let skips: Vec<Vec<bool>> = (0..=branch.len()).map(skip_from).collect();
    let bound_at = |pos: usize, rem: &[f64; 4]| -> f64 { lp_upper_of(q, u, n, rem, &skips[pos]) };
    let mut heap = BinaryHeap::new();
    let mut best = 0f64;
    let mut best_fill = vec![0usize; q.len()];
    heap.push(Node {
        bound: bound_at(0, room),
        acc: 0.0,
        pos: 0,
        rem: *room,
        fill: vec![0usize; q.len()],
    });
    let mut expanded = 0usize;
    while let Some(node) = heap.pop() {
        if node.bound <= best {
            return (best, best, best_fill);
        }
        expanded += 1;
        if expanded > budget {
            return (node.bound.max(best), best, best_fill);
        }
        let Some(&g) = branch.get(node.pos) else {
            continue;
        };
        let mut most = n[g];
        for r in 0..4 {
            if q[g][r] > 0.0 {
                most = most.min(((node.rem[r] + 1e-9) / q[g][r]).floor().max(0.0) as usize);
            }
        }
        for k in 0..=most {
            let mut rem = node.rem;
            for r in 0..4 {
                rem[r] -= q[g][r] * k as f64;
            }
            let acc = node.acc + u[g] * k as f64;
            let mut fill = node.fill.clone();
            fill[g] = k;
            if acc > best {
                best = acc;
                best_fill.clone_from(&fill);
            }
            let pos = node.pos + 1;
            let bound = if pos >= branch.len() {
                acc
            } else {
                acc + bound_at(pos, &rem)
            };
            if bound > best {
                heap.push(Node {
                    bound,
                    acc,
                    pos,
                    rem,
                    fill,
                });
            }
        }
    }
    (best, best, best_fill)
}

fn scale(r: usize) -> f64 {
    match r {
        0 => 1000.0,
        1 => (1u64 << 30) as f64,
        _ => 1.0,
    }
}

fn fits(q: &[f64; 4], room: &[f64; 4]) -> bool {
    (0..4).all(|r| q[r] <= room[r])
}

fn dims(r: &Resources) -> [f64; 4] {
    DIMS.map(|d| r.get(d).max(0) as f64)
}

/// (configuration-LP value, certified bound, columns, rounds).
pub fn whole_bound(
    shapes: &[(Resources, usize)],
    types: &[CoverType],
) -> Option<(f64, f64, usize, usize)> {
    let q: Vec<[f64; 4]> = shapes.iter().map(|(r, _)| dims(r)).collect();
    let n: Vec<usize> = shapes.iter().map(|(_, c)| *c).collect();
    // Priced types that hold at least one shape, minus dominated ones.
    let priced: Vec<([f64; 4], f64)> = types
        .iter()
        .filter(|t| t.price.is_finite() && t.price > 0.0)
        .map(|t| (dims(&t.room), t.price))
        .filter(|(room, _)| q.iter().any(|qg| fits(qg, room)))
        .collect();
    let kept: Vec<([f64; 4], f64)> = priced
        .iter()
        .enumerate()
        .filter(|(i, (a, p))| {
            !priced.iter().enumerate().any(|(j, (b, pb))| {
                j != *i
                    && pb <= p
                    && (0..4).all(|r| b[r] >= a[r])
                    && (pb < p || (0..4).any(|r| b[r] > a[r]) || j < *i)
            })
        })
        .map(|(_, t)| *t)
        .collect();
    // Columns: (price, fill).
    let mut columns: Vec<(f64, Vec<usize>)> = Vec::new();
    for (g, qg) in q.iter().enumerate() {
        let best = kept
            .iter()
            .filter(|(room, _)| fits(qg, room))
            .map(|(room, price)| {
                let mut k = n[g];
                for r in 0..4 {
                    if qg[r] > 0.0 {
                        k = k.min((room[r] / qg[r]).floor() as usize);
                    }
                }
                (price / k.max(1) as f64, k, *price)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))?;
        let mut fill = vec![0usize; q.len()];
        fill[g] = best.1;
        columns.push((best.2, fill));
    }
    let counts: Vec<f64> = n.iter().map(|c| *c as f64).collect();
    let mut rounds = 0;
    let mut u;
    let mut value;
    let mut scale;
    let mut attempt = 0;
    loop {
        attempt += 1;
        loop {
            rounds += 1;
            let a: Vec<f64> = columns
                .iter()
                .flat_map(|(_, f)| f.iter().map(|k| *k as f64))
                .collect();
            let b: Vec<f64> = columns.iter().map(|(p, _)| *p).collect();
            let master = lp::maximize(&a, &b, &counts, 2_000_000)?;
            u = master.primal.clone();
            value = master.value;
            if rounds >= 200 {
                break;
            }
            let mut added = 0;
            for (room, price) in &kept {
                let (v, fill) = greedy(&q, &u, &n, room);
                if v > price * (1.0 + 1e-7)
                    && !columns.iter().any(|(p, c)| *p == *price && *c == fill)
                {
                    columns.push((*price, fill));
                    added += 1;
                }
            }
            if added == 0 {
                // The greedy finds nothing: exact (budgeted) fills where the fractional one is
                // worth more than the price.
                for (room, price) in &kept {
                    if lp_upper(&q, &u, &n, room) <= price * (1.0 + 1e-7) {
                        continue;
                    }
                    let mut f = best_fill(&q, &u, &n, room, PRICE_BUDGET, false);
                    if f.best <= price * (1.0 + 1e-7) {
                        let (_, best, counts) =
                            upper_best_first(&q, &u, &n, room, PRICE_BEST_FIRST);
                        if best > f.best {
                            f.best = best;
                            f.counts = counts;
                        }
                    }
                    if f.best > price * (1.0 + 1e-7)
                        && !columns.iter().any(|(p, c)| *p == *price && *c == f.counts)
                    {
                        columns.push((*price, f.counts));
                        added += 1;
                    }
                }
            }
            if added == 0 {
                break;
            }
        }
        // Certificate, whatever the column generation did. Better fills the certifying search
        // finds go back into the LP (a few times) before the figure is settled.
        scale = 1f64;
        let mut more = 0;
        for (room, price) in &kept {
            let mut upper = lp_upper(&q, &u, &n, room);
            if upper > *price {
                let f = best_fill(&q, &u, &n, room, CERTIFY_BUDGET, false);
                upper = upper.min(f.upper);
                if f.best > price * (1.0 + 1e-7)
                    && !columns.iter().any(|(p, c)| *p == *price && *c == f.counts)
                {
                    columns.push((*price, f.counts));
                    more += 1;
                }
            }
            if upper > *price {
                let (up, best, counts) = upper_best_first(&q, &u, &n, room, LP_CERTIFY_BUDGET);
                upper = upper.min(up);
                if best > price * (1.0 + 1e-7)
                    && !columns.iter().any(|(p, c)| *p == *price && *c == counts)
                {
                    columns.push((*price, counts));
                    more += 1;
                }
            }
            if upper > *price {
                scale = scale.min(price / upper);
            }
        }
        if more == 0 || attempt >= 4 {
            break;
        }
    }
    let certified: f64 = u
        .iter()
        .zip(&n)
        .map(|(v, c)| v.max(0.0) * *c as f64)
        .sum::<f64>()
        * scale;
    Some((value, certified, columns.len(), rounds))
}
