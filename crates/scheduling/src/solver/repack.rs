//! Cost re-pack (not in upstream), run after the greedy pass: pods that carry no placement
//! constraints are taken out of their NodeClaims and packed again against the optimum of the
//! fractional covering problem ([`crate::cover`]).
//!
//! Why: first-fit grows a NodeClaim towards the largest listed type, while the launch price is
//! that of the cheapest listed type that fits, and the first pods decide the family for all the
//! others. The covering LP instead prices every pod shape at what it costs on the type that
//! suits it best together with the shapes it shares nodes with; a greedy fill that maximises
//! "value of the pods on the node ÷ node price" at those values turns it into whole nodes.
//! A third candidate rounds a configuration LP whose columns are whole-pod fills of one node
//! (so no fraction of a pod is lost to rounding inside a node, only whole nodes are rounded),
//! and a fourth solves that LP for every class of pinned domains together, so zone-pinned pods
//! can fill the slack of free pods' nodes in their zone. The cheapest candidate wins, after
//! NodeClaims pinned to a zone are emptied into other NodeClaims' slack where no launch price
//! moves (a free NodeClaim then gets pinned to that zone).
//!
//! The configuration LP is only as good as its pricing (the best whole fill of a node at the
//! current pod values): greedy fills alone left it near 1.05× its optimum on the real catalog
//! with spot prices, so every round also runs a budgeted branch and bound whose bound is the
//! smallest of the per-resource and summed-share fractional knapsacks.
//!
//! Only "free" pods move: no topology spread, pod (anti-)affinity of their own or of any other
//! pod selecting them, host ports, volumes, preferences or relaxations, and node requirements
//! the NodePool template already implies. So no topology count, port or attach limit changes.
//! Only NodePools without limits, reserved offerings or minValues take part (the same ones that
//! use cost-efficient steering), and the result is kept only when it is strictly cheaper.

use super::*;
use crate::cover::{CoverType, cover_with};
use crate::lp;

/// Pivot budget for each LP solved during a re-pack.
const REPACK_MAX_PIVOTS: usize = 20_000;

/// Topology keys a movable pod must keep, with their values (empty: the pod may go anywhere).
type Class = BTreeMap<String, String>;

/// A NodeClaim the re-pack opens: requirements, pods, their requests, the types that fit, its
/// price.
type NewClaim = (Requirements, Vec<usize>, Resources, Bits, f64);

/// One whole node of the re-pack: its pods and their summed requests.
struct PackedNode {
    pods: Vec<usize>,
    requests: Resources,
}

impl Solver<'_> {
    /// Re-packs the free pods of every eligible NodePool (see the module docs).
    pub(super) fn repack(&mut self) {
        for pi in 0..self.pools.len() {
            self.repack_pool(pi);
        }
    }

    /// Whether pod `p` (on claim `c`) can move to another NodeClaim of the pool with `template`
    /// without any constraint noticing, and if so the domains it must keep: for every
    /// topology group it owns or is counted in (none keyed by hostname, none with a node
    /// filter), the claim's single value for the group's key. A pod keeping those values keeps
    /// every zone (or other key) count, so spreads, affinities and anti-affinities stay as the
    /// greedy pass left them.
    fn movable_class(&self, p: usize, c: &Claim, template: &Requirements) -> Option<Class> {
        let st = self.pods.get(p)?;
        let simple = st.preferred_terms.is_empty()
            && st.required_terms.len() <= 1
            && st.relaxations.is_empty()
            && st.pod.host_ports.is_empty()
            && st.volumes.is_empty()
            && st.volume_alts.iter().all(Requirements::is_empty);
        if !simple {
            return None;
        }
        let mut class = Class::new();
        for g in st.active_groups().chain(st.counted_in.iter().copied()) {
            let group = self.groups.get(g)?;
            if group.key.key == labels::HOSTNAME || group.key.node_filter.is_some() {
                return None;
            }
            let value = c.requirements.get(&group.key.key)?.single_value()?;
            class.insert(group.key.key.clone(), value.to_string());
        }
        let mut reqs = template.clone();
        for (k, v) in &class {
            reqs.add(k, Requirement::in_values([v.clone()]));
        }
        (st.requirements.is_empty() || !reqs.add_all(&st.requirements)).then_some(class)
    }

    /// A node holding one pod, taken in queue order, per shape index in `shapes`; `None` when
    /// a shape's queue has run out (the packing asked for more pods than there are).
    fn fill_node(
        &self,
        queues: &mut [std::collections::VecDeque<usize>],
        shapes: impl IntoIterator<Item = usize>,
    ) -> Option<PackedNode> {
        let mut node = PackedNode {
            pods: Vec::new(),
            requests: Resources::new(),
        };
        for g in shapes {
            let p = queues.get_mut(g)?.pop_front()?;
            node.requests.add(&self.pods.get(p)?.requests);
            node.pods.push(p);
        }
        Some(node)
    }

    /// The price a claim launches at: the cheapest type that fits its pods among its widest
    /// candidate set (as `finish` lists them).
    fn launch_price(&self, c: &Claim) -> f64 {
        let Some(pool) = self.pools.get(c.pool) else {
            return f64::INFINITY;
        };
        let set = c
            .wide
            .as_ref()
            .and_then(|w| {
                self.filter_types(c.pool, w, Some(&c.requirements), &c.requests, &c.host_ports)
                    .ok()
                    .filter(|(_, relaxed)| !relaxed)
                    .map(|(b, _)| b)
            })
            .unwrap_or_else(|| c.types.clone());
        pool.cheapest(&c.requirements, &set)
    }

    fn repack_pool(&mut self, pi: usize) {
        let Some(pool) = self.pools.get(pi) else {
            return;
        };
        if pool.efficient.is_none() {
            return;
        }
        let template = pool.template.clone();
        let all = pool.all.clone();
        // Claims holding movable pods, and those pods with the domains they must keep.
        let mut touched: Vec<usize> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut class_of: BTreeMap<usize, Class> = BTreeMap::new();
        for (ci, c) in self.claims.iter().enumerate() {
            if c.pool != pi || c.pods.is_empty() {
                continue;
            }
            let mut any = false;
            for &p in &c.pods {
                if let Some(class) = self.movable_class(p, c, &template) {
                    free.push(p);
                    class_of.insert(p, class);
                    any = true;
                }
            }
            if any {
                touched.push(ci);
            }
        }
        if free.len() < 2 {
            return;
        }
        let is_free: BTreeSet<usize> = free.iter().copied().collect();
        let old_cost: f64 = touched
            .iter()
            .filter_map(|ci| self.claims.get(*ci))
            .map(|c| self.launch_price(c))
            .sum();
        // Biggest first (the solver's queue order), so fills below place large pods first.
        let request = |p: &usize| self.pods.get(*p).map(|s| s.requests.clone());
        free.sort_by(|a, b| {
            let (ra, rb) = (
                request(a).unwrap_or_default(),
                request(b).unwrap_or_default(),
            );
            rb.cpu
                .cmp(&ra.cpu)
                .then(rb.memory.cmp(&ra.memory))
                .then(a.cmp(b))
        });
        // What stays on the touched claims: their constrained pods, plus free pods in their
        // rounding slack (room left on the type they launch as, so the price does not move).
        let mut kept: Vec<(usize, Vec<usize>, Resources, Bits)> = Vec::new();
        let mut placed: BTreeSet<usize> = BTreeSet::new();
        for &ci in &touched {
            let Some(c) = self.claims.get(ci) else {
                continue;
            };
            let stay: Vec<usize> = c
                .pods
                .iter()
                .copied()
                .filter(|p| !is_free.contains(p))
                .collect();
            if stay.is_empty() {
                continue;
            }
            let mut requests = Resources::new();
            for p in &stay {
                if let Some(r) = request(p) {
                    requests.add(&r);
                }
            }
            let Ok((types, false)) =
                self.filter_types(pi, &all, Some(&c.requirements), &requests, &c.host_ports)
            else {
                return;
            };
            kept.push((ci, stay, requests, types));
        }
        for (ci, stay, requests, types) in kept.iter_mut() {
            let Some(c) = self.claims.get(*ci) else {
                continue;
            };
            let summary = pool.offer_summary(&c.requirements);
            let Some(&cheapest) = summary.by_price.iter().find(|t| types.get(**t)) else {
                continue;
            };
            if !pool.uniform.get(cheapest).copied().unwrap_or(false) {
                continue;
            }
            let Some(room) = pool.room.get(cheapest) else {
                continue;
            };
            for p in &free {
                if placed.contains(p) {
                    continue;
                }
                let keeps_domains = class_of.get(p).is_some_and(|class| {
                    class.iter().all(|(k, v)| {
                        c.requirements.get(k).and_then(|r| r.single_value()) == Some(v.as_str())
                    })
                });
                if !keeps_domains {
                    continue;
                }
                let Some(r) = request(p) else { continue };
                let total = requests.plus(&r);
                if room.fits(&total) {
                    *requests = total;
                    stay.push(*p);
                    placed.insert(*p);
                }
            }
            if let Ok((t, false)) =
                self.filter_types(pi, &all, Some(&c.requirements), requests, &c.host_ports)
            {
                *types = t;
            }
        }
        let rest: Vec<usize> = free
            .iter()
            .copied()
            .filter(|p| !placed.contains(p))
            .collect();
        // Each class packs on its own, on NodeClaims pinned to the class's domains.
        let mut by_class: BTreeMap<Class, Vec<usize>> = BTreeMap::new();
        for p in rest {
            by_class
                .entry(class_of.get(&p).cloned().unwrap_or_default())
                .or_default()
                .push(p);
        }
        let pinned: Vec<(Class, Requirements, Vec<usize>)> = by_class
            .into_iter()
            .map(|(class, pods)| {
                let mut reqs = template.clone();
                for (k, v) in &class {
                    reqs.add(k, Requirement::in_values([v.clone()]));
                }
                (class, reqs, pods)
            })
            .collect();
        let mut classes: Vec<(Requirements, Vec<Vec<PackedNode>>)> = Vec::new();
        // Types the per-class packings use: the joint packing chooses among those only.
        let mut hint: BTreeSet<usize> = BTreeSet::new();
        for (_, reqs, pods) in &pinned {
            let Some((packings, used)) = self.pack_free(pi, pods, reqs) else {
                return;
            };
            hint.extend(used);
            classes.push((reqs.clone(), packings));
        }
        let mut kept_cost = 0f64;
        for (ci, _, _, types) in &kept {
            let Some(c) = self.claims.get(*ci) else {
                return;
            };
            kept_cost += pool.cheapest(&c.requirements, types);
        }
        // Per class, the cheapest of the candidate packings, each node priced at the cheapest
        // type that fits it (what EC2 launches from the list the NodeClaim carries).
        let mut new_cost = kept_cost;
        let mut new_claims: Vec<NewClaim> = Vec::new();
        for (reqs, packings) in classes {
            let mut best: Option<(f64, Vec<NewClaim>)> = None;
            for nodes in packings {
                let mut claims = Vec::with_capacity(nodes.len());
                let mut cost = 0f64;
                let mut ok = true;
                for n in nodes {
                    let Ok((types, false)) =
                        self.filter_types(pi, &all, Some(&reqs), &n.requests, &[])
                    else {
                        ok = false;
                        break;
                    };
                    let price = pool.cheapest(&reqs, &types);
                    cost += price;
                    claims.push((reqs.clone(), n.pods, n.requests, types, price));
                }
                if ok && best.as_ref().is_none_or(|(c, _)| cost < *c) {
                    best = Some((cost, claims));
                }
            }
            let Some((cost, claims)) = best else {
                return;
            };
            new_cost += cost;
            new_claims.extend(claims);
        }
        if pinned.len() > 1 {
            new_cost = kept_cost + self.absorb_pinned(pi, &template, &mut new_claims);
        }
        // Classes packed together, when there is more than one and that is cheaper.
        if pinned.len() > 1
            && let Some(nodes) = self.pack_joint(pi, &pinned, &hint)
        {
            let mut claims = Vec::with_capacity(nodes.len());
            let mut cost = kept_cost;
            for (c, n) in nodes {
                let Some((_, reqs, _)) = pinned.get(c) else {
                    cost = f64::INFINITY;
                    break;
                };
                let Ok((types, false)) = self.filter_types(pi, &all, Some(reqs), &n.requests, &[])
                else {
                    cost = f64::INFINITY;
                    break;
                };
                let price = pool.cheapest(reqs, &types);
                cost += price;
                claims.push((reqs.clone(), n.pods, n.requests, types, price));
            }
            if cost.is_finite() {
                cost = kept_cost + self.absorb_pinned(pi, &template, &mut claims);
            }
            if cost < new_cost {
                new_cost = cost;
                new_claims = claims;
            }
        }
        // Strictly cheaper only (NaN never counts): ties keep upstream's first-fit packing.
        if new_cost.partial_cmp(&(old_cost * (1.0 - 1e-9))) != Some(std::cmp::Ordering::Less) {
            return;
        }
        // Apply: the touched claims keep what stays (or empty out), new claims take the rest.
        let stays: BTreeMap<usize, (Vec<usize>, Resources, Bits)> = kept
            .into_iter()
            .map(|(ci, stay, requests, types)| (ci, (stay, requests, types)))
            .collect();
        for ci in touched {
            let Some(c) = self.claims.get(ci) else {
                continue;
            };
            let reqs = c.requirements.clone();
            let (pods, requests, types) = stays
                .get(&ci)
                .cloned()
                .unwrap_or_else(|| (Vec::new(), Resources::new(), Bits::zeros(pool.types.len())));
            let price = pool.cheapest(&reqs, &types);
            let max_room = self.max_room_of(pi, &types);
            if let Some(c) = self.claims.get_mut(ci) {
                c.pods = pods;
                c.requests = requests;
                c.types = types;
                c.price = price;
                c.wide = None;
                c.max_room = max_room;
            }
        }
        for (requirements, pods, requests, types, price) in new_claims {
            let max_room = self.max_room_of(pi, &types);
            let hostname = format!("hostname-placeholder-{:04}", self.claims.len());
            self.claims.push(Claim {
                pool: pi,
                hostname,
                requirements,
                types,
                requests,
                pods,
                host_ports: Vec::new(),
                reservation: Resources::new(),
                min_values_relaxed: false,
                price,
                wide: None,
                max_room,
            });
        }
    }

    /// Empties NodeClaims pinned to a class's domains into the slack of other new NodeClaims
    /// where no price moves: a claim of the same class, or a free claim (only the template's
    /// requirements) that then gets pinned to the class, when its launch type costs the same
    /// there. Each claim emptied saves its whole price. Packing classes apart leaves every
    /// zone-pinned pod on nodes of its own, while the free pods' nodes (priced at their
    /// cheapest zone, often the one the pinned pods need) have room for them. Claims are
    /// updated in place; returns their total price.
    fn absorb_pinned(&self, pi: usize, template: &Requirements, claims: &mut Vec<NewClaim>) -> f64 {
        let total = |claims: &[NewClaim]| claims.iter().map(|c| c.4).sum::<f64>();
        let Some(pool) = self.pools.get(pi) else {
            return total(claims);
        };
        // Per claim: the type it launches as (cheapest listed that fits), and that type's room.
        let launch: Vec<Option<(usize, Resources)>> = claims
            .iter()
            .map(|(reqs, _, _, types, _)| {
                let summary = pool.offer_summary(reqs);
                let t = *summary.by_price.iter().find(|t| types.get(**t))?;
                pool.uniform
                    .get(t)
                    .copied()
                    .unwrap_or(false)
                    .then(|| pool.room.get(t).cloned())
                    .flatten()
                    .map(|r| (t, r))
            })
            .collect();
        let mut reqs: Vec<Requirements> = claims.iter().map(|c| c.0.clone()).collect();
        let mut used: Vec<Resources> = claims.iter().map(|c| c.2.clone()).collect();
        let mut pods: Vec<Vec<usize>> = claims.iter().map(|c| c.1.clone()).collect();
        let mut dropped = vec![false; claims.len()];
        let mut changed = vec![false; claims.len()];
        // Fewest pods first: the likeliest to empty.
        let mut order: Vec<usize> = (0..claims.len())
            .filter(|i| reqs.get(*i).is_some_and(|r| r != template))
            .collect();
        order.sort_by_key(|i| (pods.get(*i).map_or(0, Vec::len), *i));
        for i in order {
            let (Some(class), Some(moving)) = (reqs.get(i).cloned(), pods.get(i).cloned()) else {
                continue;
            };
            let offers = pool.offer_summary(&class);
            let mut extra: BTreeMap<usize, Resources> = BTreeMap::new();
            let mut moves: Vec<(usize, usize)> = Vec::new();
            for p in moving {
                let Some(q) = self.pods.get(p).map(|st| &st.requests) else {
                    break;
                };
                let target = (0..claims.len()).find(|&j| {
                    if j == i || dropped.get(j).copied().unwrap_or(true) {
                        return false;
                    }
                    let (Some(Some((t, room))), Some(r), Some(u), Some(c)) =
                        (launch.get(j), reqs.get(j), used.get(j), claims.get(j))
                    else {
                        return false;
                    };
                    let same_price = *r == class
                        || (r == template
                            && offers
                                .per_type
                                .get(*t)
                                .is_some_and(|o| o.0 <= c.4 * (1.0 + 1e-9)));
                    same_price
                        && room.fits(&u.plus(extra.get(&j).unwrap_or(&Resources::new())).plus(q))
                });
                let Some(j) = target else { break };
                extra.entry(j).or_default().add(q);
                moves.push((p, j));
            }
            if moves.len() != pods.get(i).map_or(0, Vec::len) || moves.is_empty() {
                continue;
            }
            for (p, j) in moves {
                let Some(q) = self.pods.get(p).map(|st| &st.requests) else {
                    continue;
                };
                if let (Some(u), Some(ps), Some(r), Some(ch)) = (
                    used.get_mut(j),
                    pods.get_mut(j),
                    reqs.get_mut(j),
                    changed.get_mut(j),
                ) {
                    u.add(q);
                    ps.push(p);
                    r.clone_from(&class);
                    *ch = true;
                }
            }
            if let Some(d) = dropped.get_mut(i) {
                *d = true;
            }
        }
        if !dropped.iter().any(|d| *d) {
            return total(claims);
        }
        // The claims that took pods list again every type that fits them under their
        // (possibly newly pinned) requirements.
        let mut out: Vec<NewClaim> = Vec::with_capacity(claims.len());
        for (j, claim) in claims.iter().enumerate() {
            if dropped.get(j).copied().unwrap_or(true) {
                continue;
            }
            if !changed.get(j).copied().unwrap_or(false) {
                out.push(claim.clone());
                continue;
            }
            let (Some(r), Some(u), Some(ps)) = (reqs.get(j), used.get(j), pods.get(j)) else {
                return total(claims);
            };
            let Ok((types, false)) = self.filter_types(pi, &pool.all, Some(r), u, &[]) else {
                return total(claims);
            };
            let price = pool.cheapest(r, &types);
            out.push((r.clone(), ps.clone(), u.clone(), types, price));
        }
        *claims = out;
        total(claims)
    }

    fn max_room_of(&self, pi: usize, types: &Bits) -> Option<Resources> {
        let pool = self.pools.get(pi)?;
        let mut max_room = Resources::new();
        for t in types.ones() {
            if let Some(r) = pool.room.get(t) {
                max_room.max_with(r);
            }
        }
        pool.uniform.iter().all(|u| *u).then_some(max_room)
    }

    /// Packs the movable pods of every class together (configuration-LP rounding): a node is
    /// pinned to one class's domains and holds pods of that class and of every class it
    /// implies (free pods ride anywhere), so zone-pinned pods fill the slack of other nodes
    /// in their zone instead of packing apart. Nodes come back as (class index into
    /// `classes`, node). `None` when some pod is left over or an LP fails.
    fn pack_joint(
        &self,
        pi: usize,
        classes: &[(Class, Requirements, Vec<usize>)],
        hint: &BTreeSet<usize>,
    ) -> Option<Vec<(usize, PackedNode)>> {
        let mut by_shape: BTreeMap<(usize, Resources), VecDeque<usize>> = BTreeMap::new();
        for (c, (_, _, pods)) in classes.iter().enumerate() {
            for p in pods {
                let st = self.pods.get(*p)?;
                by_shape
                    .entry((c, st.requests.clone()))
                    .or_default()
                    .push_back(*p);
            }
        }
        let mut needed: Vec<&str> = Vec::new();
        for (_, q) in by_shape.keys() {
            for (n, _) in q.iter() {
                if !needed.contains(&n) {
                    needed.push(n);
                }
            }
        }
        let q: Vec<Vec<i64>> = by_shape
            .keys()
            .map(|(_, r)| needed.iter().map(|n| r.get(n)).collect())
            .collect();
        let counts: Vec<usize> = by_shape.values().map(VecDeque::len).collect();
        let mut kinds: Vec<NodeKind> = Vec::new();
        for (c, (class, reqs, _)) in classes.iter().enumerate() {
            // A node of this class may hold pods whose class it implies.
            let allowed: Vec<bool> = by_shape
                .keys()
                .map(|(g, _)| {
                    classes.get(*g).is_some_and(|(pod_class, _, _)| {
                        pod_class.iter().all(|(k, v)| class.get(k) == Some(v))
                    })
                })
                .collect();
            let (types, _, frontier) = self.priced_types(pi, reqs, &needed)?;
            let frontier: Vec<usize> = frontier.into_iter().filter(|t| hint.contains(t)).collect();
            kinds.extend(kinds_of(&q, &types, &frontier, &needed, c, &allowed));
        }
        let ConfigPacking {
            nodes: configs,
            left,
            ..
        } = config_pack(&q, &counts, &kinds);
        if left.iter().any(|n| *n > 0) {
            return None;
        }
        let mut queues: Vec<VecDeque<usize>> = by_shape.into_values().collect();
        let mut nodes = Vec::with_capacity(configs.len());
        for (k, gs) in configs {
            let class = kinds.get(k)?.class;
            nodes.push((class, self.fill_node(&mut queues, gs)?));
        }
        Some(nodes)
    }

    /// The pool's types as the re-pack prices them under `reqs` (room and price; unusable
    /// types get no room and an infinite price), all priced types by price, and the frontier:
    /// the types no other type beats on both room (in `needed`) and price.
    fn priced_types(
        &self,
        pi: usize,
        reqs: &Requirements,
        needed: &[&str],
    ) -> Option<(Vec<CoverType>, Vec<usize>, Vec<usize>)> {
        let pool = self.pools.get(pi)?;
        let compat = pool.compat(reqs);
        let offers = pool.offer_summary(reqs);
        let types: Vec<CoverType> = (0..pool.types.len())
            .map(|t| {
                let usable = compat.get(t) && pool.uniform.get(t).copied().unwrap_or(false);
                CoverType {
                    room: if usable {
                        pool.room.get(t).cloned().unwrap_or_default()
                    } else {
                        Resources::new()
                    },
                    price: if usable {
                        offers.per_type.get(t).map_or(f64::INFINITY, |o| o.0)
                    } else {
                        f64::INFINITY
                    },
                }
            })
            .collect();
        // Only types no other type beats on both room (in the resources the pods ask for) and
        // price can matter: the same fill fits the better one for less. Computed once, on
        // plain vectors (this is the quadratic part of the re-pack's setup).
        let dims: Vec<Vec<i64>> = types
            .iter()
            .map(|t| needed.iter().map(|n| t.room.get(n)).collect())
            .collect();
        let mut by_cost: Vec<usize> = (0..types.len())
            .filter(|t| {
                types
                    .get(*t)
                    .is_some_and(|ct| ct.price.is_finite() && ct.price > 0.0)
            })
            .collect();
        by_cost.sort_by(|a, b| {
            let pa = types.get(*a).map_or(f64::INFINITY, |t| t.price);
            let pb = types.get(*b).map_or(f64::INFINITY, |t| t.price);
            pa.total_cmp(&pb).then(a.cmp(b))
        });
        let mut frontier: Vec<usize> = Vec::new();
        for &t in &by_cost {
            let Some(a) = dims.get(t) else { continue };
            // Cheaper-or-equal types come first: only those kept so far can dominate.
            let beaten = frontier.iter().any(|o| {
                dims.get(*o)
                    .is_some_and(|b| b.iter().zip(a).all(|(x, y)| x >= y))
            });
            if !beaten {
                frontier.push(t);
            }
        }
        frontier.sort_unstable();
        Some((types, by_cost, frontier))
    }

    /// Packs `pods` (all movable within `reqs`, in queue order) into whole nodes of the pool's
    /// types that `reqs` allows (priced by the offerings it allows), several ways from the
    /// covering LP over their request shapes: (1) round the LP's own placement (whole pods of
    /// each shape it puts on a type go first-fit-decreasing into nodes of that type), (2)
    /// repeatedly open the node whose greedy fill has the highest value per dollar at the
    /// LP's per-shape values, (3) round the configuration LP ([`config_pack`]). Leftovers of
    /// (1) and (3) are packed as in (2). Also returns the types the packings use (the joint
    /// packing of all classes chooses among those). `None` when the LP fails.
    fn pack_free(
        &self,
        pi: usize,
        pods: &[usize],
        reqs: &Requirements,
    ) -> Option<(Vec<Vec<PackedNode>>, BTreeSet<usize>)> {
        let mut by_shape: BTreeMap<Resources, Vec<usize>> = BTreeMap::new();
        for p in pods {
            let st = self.pods.get(*p)?;
            by_shape.entry(st.requests.clone()).or_default().push(*p);
        }
        if by_shape.is_empty() {
            return Some((Vec::new(), BTreeSet::new()));
        }
        let shapes: Vec<(Resources, usize)> = by_shape
            .iter()
            .map(|(r, ps)| (r.clone(), ps.len()))
            .collect();
        let mut needed: Vec<&str> = Vec::new();
        for (q, _) in &shapes {
            for (n, _) in q.iter() {
                if !needed.contains(&n) {
                    needed.push(n);
                }
            }
        }
        let (types, by_cost, frontier) = self.priced_types(pi, reqs, &needed)?;
        let on_frontier: BTreeSet<usize> = frontier.iter().copied().collect();
        // The LP sees only frontier types; the rest stay for pricing whole nodes.
        let lp_types: Vec<CoverType> = types
            .iter()
            .enumerate()
            .map(|(t, ct)| {
                if on_frontier.contains(&t) {
                    ct.clone()
                } else {
                    CoverType {
                        room: Resources::new(),
                        price: f64::INFINITY,
                    }
                }
            })
            .collect();
        // Both covers' packings compete: whole-pod pricing of small types models them better,
        // the purely fractional one sometimes rounds to a cheaper fleet.
        let mut out = Vec::new();
        let mut used_types: BTreeSet<usize> = BTreeSet::new();
        for whole_pods in [true, false] {
            let Some(cover) = cover_with(&shapes, &lp_types, REPACK_MAX_PIVOTS, whole_pods) else {
                continue;
            };
            // A pod's worth: its LP value, plus a sliver of its cheapest stand-alone fractional
            // cost so that pods the LP values at zero (they ride in slack) still order by size.
            let standalone: Vec<f64> = shapes
                .iter()
                .map(|(q, _)| {
                    types
                        .iter()
                        .filter(|t| t.price.is_finite() && t.room.fits(q))
                        .map(|t| t.price * share(q, &t.room))
                        .fold(f64::INFINITY, f64::min)
                })
                .collect();
            let worth: Vec<f64> = cover
                .pod_values
                .iter()
                .zip(&standalone)
                .map(|(u, s)| u.max(0.0) + 1e-3 * if s.is_finite() { *s } else { 0.0 })
                .collect();
            let queues: Vec<Vec<usize>> = by_shape.values().cloned().collect();
            let counts: Vec<usize> = shapes.iter().map(|(_, n)| *n).collect();
            let greedy = greedy_pack(&shapes, &types, &frontier, &worth, counts.clone())?;
            // LP rounding: whole pods of the LP's placement per type, biggest types first.
            let mut left = counts;
            let mut rounded: Vec<(usize, Vec<usize>)> = Vec::new();
            let mut order: Vec<usize> = (0..types.len())
                .filter(|t| cover.nodes.get(*t).is_some_and(|x| *x > 1e-9))
                .collect();
            order.sort_by(|a, b| {
                let (xa, xb) = (cover.nodes.get(*a), cover.nodes.get(*b));
                xb.partial_cmp(&xa)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(a.cmp(b))
            });
            for t in order {
                let (Some(ct), Some(placed)) = (types.get(t), cover.placed.get(t)) else {
                    continue;
                };
                let mut items: Vec<usize> = Vec::new();
                for (g, y) in placed.iter().enumerate() {
                    let Some(n) = left.get_mut(g) else { continue };
                    let take = ((y + 1e-6).floor() as usize).min(*n);
                    *n -= take;
                    items.extend(std::iter::repeat_n(g, take));
                }
                // Decreasing by the largest share of the node each pod takes.
                items.sort_by(|a, b| {
                    let sa = shapes.get(*a).map_or(0.0, |(q, _)| share(q, &ct.room));
                    let sb = shapes.get(*b).map_or(0.0, |(q, _)| share(q, &ct.room));
                    sb.total_cmp(&sa).then(a.cmp(b))
                });
                let mut open: Vec<(Resources, Vec<usize>)> = Vec::new();
                for g in items {
                    let Some((q, _)) = shapes.get(g) else {
                        continue;
                    };
                    match open
                        .iter_mut()
                        .find(|(used, _)| ct.room.fits(&used.plus(q)))
                    {
                        Some((used, gs)) => {
                            used.add(q);
                            gs.push(g);
                        }
                        None => open.push((q.clone(), vec![g])),
                    }
                }
                rounded.extend(open.into_iter().map(|(_, gs)| (t, gs)));
            }
            // The LP's fractional leftovers first go into the room the rounded nodes have left on
            // their LP type (biggest pods first), only then onto nodes of their own.
            let mut used: Vec<Resources> = rounded
                .iter()
                .map(|(_, gs)| {
                    let mut u = Resources::new();
                    for g in gs {
                        if let Some((q, _)) = shapes.get(*g) {
                            u.add(q);
                        }
                    }
                    u
                })
                .collect();
            let mut tail: Vec<usize> = (0..shapes.len()).collect();
            tail.sort_by(|a, b| {
                let (qa, qb) = (shapes.get(*a).map(|x| &x.0), shapes.get(*b).map(|x| &x.0));
                let key = |q: Option<&Resources>| q.map_or((0, 0), |q| (q.cpu, q.memory));
                key(qb).cmp(&key(qa)).then(a.cmp(b))
            });
            for g in tail {
                let (Some((q, _)), Some(n)) = (shapes.get(g), left.get_mut(g)) else {
                    continue;
                };
                while *n > 0 {
                    let slot = rounded.iter().zip(&used).position(|((t, _), u)| {
                        types.get(*t).is_some_and(|ct| ct.room.fits(&u.plus(q)))
                    });
                    let Some(i) = slot else { break };
                    if let (Some((_, gs)), Some(u)) = (rounded.get_mut(i), used.get_mut(i)) {
                        gs.push(g);
                        u.add(q);
                    }
                    *n -= 1;
                }
            }
            rounded.extend(greedy_pack(&shapes, &types, &frontier, &worth, left)?);
            let mut packings = vec![greedy, rounded];
            let mut greedy_tail: Option<Vec<(usize, Vec<usize>)>> = None;
            if whole_pods {
                // Configuration-LP rounding does not depend on the cover's pricing: once.
                let q: Vec<Vec<i64>> = shapes
                    .iter()
                    .map(|(r, _)| needed.iter().map(|n| r.get(n)).collect())
                    .collect();
                let allowed = vec![true; shapes.len()];
                let kinds = kinds_of(&q, &types, &frontier, &needed, 0, &allowed);
                let counts: Vec<usize> = shapes.iter().map(|(_, n)| *n).collect();
                let packed = config_pack(&q, &counts, &kinds);
                // The configurations as nodes of their types, the pods still left packed
                // greedily after them.
                let with_greedy_rest = |configs: &[Config], rest: Vec<usize>| {
                    let mut nodes: Vec<(usize, Vec<usize>)> = configs
                        .iter()
                        .filter_map(|(k, gs)| Some((kinds.get(*k)?.ty, gs.clone())))
                        .collect();
                    nodes.extend(greedy_pack(&shapes, &types, &frontier, &worth, rest)?);
                    Some(nodes)
                };
                // Rounded up, and (what is left after the whole copies) packed greedily.
                packings.push(with_greedy_rest(&packed.nodes, packed.left)?);
                greedy_tail = Some(with_greedy_rest(
                    packed.nodes.get(..packed.whole).unwrap_or_default(),
                    packed.left_after_whole,
                )?);
            }
            used_types.extend(packings.iter().flatten().map(|(t, _)| *t));
            // Its types stay out of the joint packing's hint (which is tuned without them).
            packings.extend(greedy_tail.take());
            for packing in packings {
                // Nodes are priced at the cheapest priced type that fits (`by_cost` order).
                let packing = drain_weak_nodes(packing, &shapes, &types, &by_cost, &worth);
                let mut queues: Vec<std::collections::VecDeque<usize>> =
                    queues.iter().map(|q| q.iter().copied().collect()).collect();
                let mut nodes = Vec::with_capacity(packing.len());
                for (_, gs) in packing {
                    nodes.push(self.fill_node(&mut queues, gs)?);
                }
                out.push(nodes);
            }
        }
        if out.is_empty() {
            return None;
        }
        Some((out, used_types))
    }
}

/// Column-generation rounds per configuration LP.
const CONFIG_ROUNDS: usize = 60;

/// New configurations added per round (the most valuable per dollar), which keeps the master
/// LP small.
const CONFIG_COLUMNS_PER_ROUND: usize = 10;

/// Rounds of "solve the configuration LP on what is left, take whole copies" before the last
/// fractional configurations are rounded up.
const CONFIG_PASSES: usize = 3;

/// One whole-pod node configuration: a type and how many pods of each shape it holds.
type Config = (usize, Vec<usize>);

/// A kind of node the configuration LP may open: a type under one class's requirements.
struct NodeKind {
    /// Pool type index.
    ty: usize,
    /// Class index (which domains the node is pinned to).
    class: usize,
    /// Room per needed resource.
    room: Vec<i64>,
    /// Price under the class's requirements.
    price: f64,
    /// Per shape: whether its pods may go on this kind (class allows it and one pod fits).
    holds: Vec<bool>,
}

/// Node kinds for one class's types: the frontier types, priced.
fn kinds_of(
    q: &[Vec<i64>],
    types: &[CoverType],
    frontier: &[usize],
    needed: &[&str],
    class: usize,
    allowed: &[bool],
) -> Vec<NodeKind> {
    frontier
        .iter()
        .filter_map(|t| {
            let ct = types.get(*t)?;
            let room: Vec<i64> = needed.iter().map(|n| ct.room.get(n)).collect();
            let holds = q
                .iter()
                .zip(allowed)
                .map(|(qg, ok)| *ok && copies(qg, &room, 1) == 1)
                .collect();
            Some(NodeKind {
                ty: *t,
                class,
                room,
                price: ct.price,
                holds,
            })
        })
        .filter(|k| k.price.is_finite() && k.price > 0.0)
        .collect()
}

/// Whole nodes from rounding a configuration LP: the covering LP whose columns are *whole-pod*
/// fills of one node (found greedily at the LP's pod values, so unlike [`crate::cover`] it is
/// no bound, only a plan). Each pass solves it for the pods left, takes ⌊λ⌋ copies of every
/// configuration with weight λ, and repeats on the residual; when no configuration reaches one
/// whole copy, the heaviest ones are taken once each, capped to what is left. Returns the
/// nodes as (kind, shape of each pod) and the counts still unplaced.
fn config_pack(q: &[Vec<i64>], counts: &[usize], kinds: &[NodeKind]) -> ConfigPacking {
    let mut carried: Vec<Config> = Vec::new();
    let mut left: Vec<usize> = counts.to_vec();
    let mut whole: Option<(usize, Vec<usize>)> = None;
    let mut nodes: Vec<Config> = Vec::new();
    fn take(fill: &[usize], left: &mut [usize], nodes: &mut Vec<Config>, t: usize, k: usize) {
        let gs: Vec<usize> = fill
            .iter()
            .enumerate()
            .flat_map(|(g, n)| std::iter::repeat_n(g, *n))
            .collect();
        for (l, n) in left.iter_mut().zip(fill) {
            *l -= (n * k).min(*l);
        }
        nodes.extend(std::iter::repeat_n((t, gs), k));
    }
    // Small batches need (and get) less search: their few pods round on few nodes.
    let budget = (counts.iter().sum::<usize>() * SEARCH_NODES_PER_POD)
        .clamp(SEARCH_NODES, SEARCH_NODES_PER_ROUND);
    for pass in 0..=CONFIG_PASSES {
        if left.iter().all(|n| *n == 0) {
            break;
        }
        let Some((configs, weights)) = config_lp(q, kinds, &left, &carried, budget) else {
            break;
        };
        let mut order: Vec<usize> = (0..configs.len()).collect();
        order.sort_by(|a, b| {
            let (wa, wb) = (weights.get(*a), weights.get(*b));
            wb.partial_cmp(&wa)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(b))
        });
        let mut took = false;
        for &c in &order {
            let (Some((t, fill)), Some(w)) = (configs.get(c), weights.get(c)) else {
                continue;
            };
            let whole = (w + 1e-6).floor().max(0.0) as usize;
            let k = fill
                .iter()
                .zip(&left)
                .filter(|(f, _)| **f > 0)
                .map(|(f, l)| l / f)
                .min()
                .unwrap_or(0)
                .min(whole);
            if k > 0 {
                take(fill, &mut left, &mut nodes, *t, k);
                took = true;
            }
        }
        if took && pass < CONFIG_PASSES {
            carried = configs
                .iter()
                .zip(&weights)
                .filter(|(_, w)| **w > 1e-9)
                .map(|(c, _)| c.clone())
                .collect();
            continue;
        }
        // Nothing reaches a whole copy (or the passes ran out): the heaviest configurations
        // once each, capped to the pods still left.
        whole = Some((nodes.len(), left.clone()));
        for &c in &order {
            let (Some((t, fill)), Some(w)) = (configs.get(c), weights.get(c)) else {
                continue;
            };
            if *w <= 1e-9 {
                break;
            }
            let capped: Vec<usize> = fill.iter().zip(&left).map(|(f, l)| *f.min(l)).collect();
            if capped.iter().any(|n| *n > 0) {
                take(&capped, &mut left, &mut nodes, *t, 1);
            }
        }
        break;
    }
    let (whole, left_after_whole) = whole.unwrap_or_else(|| (nodes.len(), left.clone()));
    ConfigPacking {
        nodes,
        whole,
        left_after_whole,
        left,
    }
}

/// What [`config_pack`] returns.
struct ConfigPacking {
    /// The nodes as (kind, shape of each pod): whole copies first, then the rounded-up ones.
    nodes: Vec<Config>,
    /// How many of `nodes` are whole copies (before any rounding up).
    whole: usize,
    /// Counts left after the whole copies only.
    left_after_whole: Vec<usize>,
    /// Counts left after the rounding up too.
    left: Vec<usize>,
}

/// Column generation for [`config_pack`]: the master in its dual form (max Σ left_g·u_g s.t.
/// every configuration is worth at most its price), new whole-pod configurations from
/// [`int_fill`] at the current values. Returns the configurations (kind, fill) and their
/// weights λ.
fn config_lp(
    q: &[Vec<i64>],
    kinds: &[NodeKind],
    left: &[usize],
    carried: &[Config],
    search_budget: usize,
) -> Option<(Vec<Config>, Vec<f64>)> {
    let live: Vec<usize> = (0..q.len())
        .filter(|g| left.get(*g).is_some_and(|n| *n > 0))
        .collect();
    let mut configs: Vec<Config> = Vec::new();
    let mut prices: Vec<f64> = Vec::new();
    // Start with each shape's cheapest single-shape node, so every value is bounded.
    for &g in &live {
        let qg = q.get(g)?;
        let n = *left.get(g)?;
        let best = kinds
            .iter()
            .enumerate()
            .filter(|(_, k)| k.holds.get(g).copied().unwrap_or(false))
            .filter_map(|(i, k)| {
                let c = copies(qg, &k.room, n);
                (c > 0).then(|| (k.price / c as f64, i, c, k.price))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))?;
        let mut fill = vec![0usize; q.len()];
        *fill.get_mut(g)? = best.2;
        configs.push((best.1, fill));
        prices.push(best.3);
    }
    // Warm start: the previous pass's configurations that still fit what is left (its
    // fractional ones are exactly what the residual problem needs most).
    for (i, fill) in carried {
        let fits = fill.iter().zip(left).all(|(f, l)| f <= l)
            && fill
                .iter()
                .enumerate()
                .any(|(g, f)| *f > 0 && live.contains(&g));
        if fits && !configs.iter().any(|c| c.0 == *i && c.1 == *fill) {
            let Some(k) = kinds.get(*i) else { continue };
            configs.push((*i, fill.clone()));
            prices.push(k.price);
        }
    }
    let counts: Vec<f64> = live
        .iter()
        .map(|g| left.get(*g).map_or(0.0, |n| *n as f64))
        .collect();
    let mut master;
    let mut rounds = 0usize;
    loop {
        rounds += 1;
        let a: Vec<f64> = configs
            .iter()
            .flat_map(|(_, f)| live.iter().map(|g| f.get(*g).map_or(0.0, |n| *n as f64)))
            .collect();
        master = lp::maximize(&a, &prices, &counts, REPACK_MAX_PIVOTS)?;
        let mut u = vec![0f64; q.len()];
        for (g, v) in live.iter().zip(&master.primal) {
            if let Some(x) = u.get_mut(*g) {
                *x = v.max(0.0);
            }
        }
        // (value per dollar, kind, fill, price)
        let mut found: Vec<(f64, usize, Vec<usize>, f64)> = Vec::new();
        for (i, k) in kinds.iter().enumerate() {
            let Some(fill) = int_fill(q, left, &u, k) else {
                continue;
            };
            let value: f64 = fill.iter().zip(&u).map(|(n, v)| *n as f64 * v).sum();
            if value > k.price * (1.0 + 1e-6) && !configs.iter().any(|c| c.0 == i && c.1 == fill) {
                found.push((value / k.price, i, fill, k.price));
            }
        }
        if rounds < CONFIG_ROUNDS {
            // Greedy fills alone improve the master by small steps (it stalled near 1.05× the
            // optimum on the real catalog): every round also searches for the best whole fill,
            // the kinds whose knapsack bound beats their price by most first, within one shared
            // budget per round (so a round costs the same whatever the catalog's size).
            // Each kind's fill problem is built once: its bound ranks it, its search prices it.
            let mut promising: Vec<(f64, usize, FillProblem<'_>)> = kinds
                .iter()
                .enumerate()
                .filter_map(|(i, k)| {
                    let problem = FillProblem::new(q, left, &u, k);
                    let ratio = problem.bound(0, &k.room) / k.price;
                    (ratio > 1.0 + 1e-6).then_some((ratio, i, problem))
                })
                .collect();
            promising.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut budget = search_budget;
            for (_, i, problem) in promising {
                let Some(k) = kinds.get(i) else { continue };
                if budget == 0 || found.len() >= 2 * CONFIG_COLUMNS_PER_ROUND {
                    break;
                }
                let floor = k.price * (1.0 + 1e-6);
                let (hit, used) = problem.search(floor, SEARCH_NODES.min(budget));
                budget = budget.saturating_sub(used);
                let Some((value, fill)) = hit else { continue };
                if !configs.iter().any(|c| c.0 == i && c.1 == fill) {
                    found.push((value / k.price, i, fill, k.price));
                }
            }
        }
        if found.is_empty() || rounds >= CONFIG_ROUNDS {
            break;
        }
        found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, i, fill, price) in found.into_iter().take(CONFIG_COLUMNS_PER_ROUND) {
            configs.push((i, fill));
            prices.push(price);
        }
    }
    Some((configs, master.dual))
}

/// Search nodes per kind when the greedy pricing finds no configuration.
const SEARCH_NODES: usize = 2_000;

/// Search nodes per round per pod of the batch (between `SEARCH_NODES` and
/// `SEARCH_NODES_PER_ROUND`).
const SEARCH_NODES_PER_POD: usize = 12;

/// Search nodes per column-generation round, shared by all kinds.
const SEARCH_NODES_PER_ROUND: usize = 20_000;

/// One node's whole-pod fill problem at pod values `u`: the shapes `kind` holds that are worth
/// something, with the knapsack constraints that bound every fill that fits (one per resource
/// of the room, and a surrogate: the summed shares of the room, at most one per resource).
struct FillProblem<'a> {
    q: &'a [Vec<i64>],
    room: &'a [i64],
    /// (shape, value, copies allowed), densest first under the surrogate (branch order).
    items: Vec<(usize, f64, usize)>,
    /// Per constraint, per item (branch position): its weight.
    weights: Vec<Vec<f64>>,
    /// Per constraint: item positions by value per weight, densest first.
    orders: Vec<Vec<usize>>,
}

impl<'a> FillProblem<'a> {
    fn new(q: &'a [Vec<i64>], left: &[usize], u: &[f64], kind: &'a NodeKind) -> FillProblem<'a> {
        let room = &kind.room;
        let share = |qg: &[i64]| -> f64 {
            qg.iter()
                .zip(room)
                .filter(|(v, _)| **v > 0)
                .map(|(v, r)| *v as f64 / (*r).max(1) as f64)
                .sum()
        };
        let mut items: Vec<(usize, f64, usize, f64)> = (0..q.len())
            .filter_map(|g| {
                let value = u.get(g).copied().unwrap_or(0.0);
                let n = left.get(g).copied().unwrap_or(0);
                let ok = kind.holds.get(g).copied().unwrap_or(false);
                let w = share(q.get(g)?);
                let n = copies(q.get(g)?, room, n);
                (ok && n > 0 && value > 0.0 && w > 0.0).then_some((g, value, n, w))
            })
            .collect();
        items.sort_by(|a, b| (b.1 / b.3).total_cmp(&(a.1 / a.3)).then(a.0.cmp(&b.0)));
        // Constraint r < room.len(): resource r; the last one: the summed shares.
        let mut weights: Vec<Vec<f64>> = (0..room.len())
            .map(|r| {
                items
                    .iter()
                    .map(|(g, ..)| {
                        q.get(*g)
                            .and_then(|qg| qg.get(r))
                            .map_or(0.0, |v| *v as f64)
                    })
                    .collect()
            })
            .collect();
        weights.push(items.iter().map(|it| it.3).collect());
        let orders = weights
            .iter()
            .map(|w| {
                let mut o: Vec<usize> = (0..items.len()).collect();
                let density = |i: usize| {
                    let v = items.get(i).map_or(0.0, |it| it.1);
                    let wi = w.get(i).copied().unwrap_or(0.0);
                    if wi > 0.0 { v / wi } else { f64::INFINITY }
                };
                o.sort_by(|a, b| density(*b).total_cmp(&density(*a)).then(a.cmp(b)));
                o
            })
            .collect();
        FillProblem {
            q,
            room,
            items: items.into_iter().map(|(g, v, n, _)| (g, v, n)).collect(),
            weights,
            orders,
        }
    }

    /// An upper bound on the value of whole fills of the items from branch position `pos` on
    /// within `rem`: the smallest of the fractional knapsacks over each constraint.
    fn bound(&self, pos: usize, rem: &[i64]) -> f64 {
        let mut best = f64::INFINITY;
        for (k, (w, order)) in self.weights.iter().zip(&self.orders).enumerate() {
            let mut cap = match rem.get(k) {
                Some(r) => (*r).max(0) as f64,
                None => rem
                    .iter()
                    .zip(self.room)
                    .map(|(r, a)| (*r).max(0) as f64 / (*a).max(1) as f64)
                    .sum(),
            };
            let mut value = 0f64;
            for &i in order {
                if i < pos {
                    continue;
                }
                let (Some((_, v, n)), Some(wi)) = (self.items.get(i), w.get(i)) else {
                    continue;
                };
                if *wi <= 0.0 {
                    value += v * *n as f64;
                    continue;
                }
                if cap <= 0.0 {
                    break;
                }
                let take = (cap / wi).min(*n as f64);
                value += take * v;
                cap -= take * wi;
            }
            best = best.min(value);
        }
        best
    }

    /// The most valuable whole fill worth more than `floor` that a depth-first search finds
    /// within `budget` nodes (`None` if none), and the nodes it used.
    fn search(&self, floor: f64, budget: usize) -> (Option<(f64, Vec<usize>)>, usize) {
        struct Search {
            fill: Vec<usize>,
            best: f64,
            best_fill: Vec<usize>,
            nodes: usize,
            budget: usize,
        }
        fn go(p: &FillProblem<'_>, s: &mut Search, pos: usize, rem: &mut [i64], acc: f64) {
            if acc > s.best {
                s.best = acc;
                s.best_fill.clone_from(&s.fill);
            }
            let Some(&(g, value, n)) = p.items.get(pos) else {
                return;
            };
            s.nodes += 1;
            if s.nodes > s.budget || acc + p.bound(pos, rem) <= s.best * (1.0 + 1e-9) {
                return;
            }
            let Some(qg) = p.q.get(g) else { return };
            let most = copies(qg, rem, n);
            for k in (0..=most).rev() {
                for (r, v) in rem.iter_mut().zip(qg) {
                    *r -= v * k as i64;
                }
                if let Some(f) = s.fill.get_mut(g) {
                    *f = k;
                }
                go(p, s, pos + 1, rem, acc + value * k as f64);
                for (r, v) in rem.iter_mut().zip(qg) {
                    *r += v * k as i64;
                }
                if s.nodes > s.budget {
                    break;
                }
            }
            if let Some(f) = s.fill.get_mut(g) {
                *f = 0;
            }
        }
        let mut s = Search {
            fill: vec![0; self.q.len()],
            best: floor,
            best_fill: vec![0; self.q.len()],
            nodes: 0,
            budget,
        };
        let mut rem = self.room.to_vec();
        go(self, &mut s, 0, &mut rem, 0.0);
        let used = s.nodes.min(budget);
        ((s.best > floor).then_some((s.best, s.best_fill)), used)
    }
}

/// How many pods of request `q` fit in `room`, at most `cap`.
fn copies(q: &[i64], room: &[i64], cap: usize) -> usize {
    q.iter()
        .zip(room)
        .filter(|(v, _)| **v > 0)
        .map(|(v, r)| (r.max(&0) / v) as usize)
        .min()
        .unwrap_or(cap)
        .min(cap)
}

/// A good whole-pod fill of one node of `kind` at pod values `u` (at most `left` of each
/// shape): the better of two greedy orders, value per largest share and value per summed
/// share of the room, each topped up with whatever else still fits.
fn int_fill(q: &[Vec<i64>], left: &[usize], u: &[f64], kind: &NodeKind) -> Option<Vec<usize>> {
    let room = &kind.room;
    let share = |qg: &[i64], sum: bool| -> f64 {
        let parts = qg
            .iter()
            .zip(room)
            .filter(|(v, _)| **v > 0)
            .map(|(v, r)| *v as f64 / (*r).max(1) as f64);
        if sum {
            parts.sum()
        } else {
            parts.fold(0f64, f64::max)
        }
    };
    let fitting: Vec<usize> = (0..q.len())
        .filter(|g| {
            left.get(*g).is_some_and(|n| *n > 0) && kind.holds.get(*g).copied().unwrap_or(false)
        })
        .collect();
    if fitting.is_empty() {
        return None;
    }
    let mut best: Option<(f64, Vec<usize>)> = None;
    for sum in [false, true] {
        let mut order: Vec<(f64, usize)> = fitting
            .iter()
            .filter_map(|g| {
                let qg = q.get(*g)?;
                Some((
                    u.get(*g).copied().unwrap_or(0.0) / share(qg, sum).max(1e-12),
                    *g,
                ))
            })
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut free = room.clone();
        let mut fill = vec![0usize; q.len()];
        for (_, g) in order {
            let (Some(qg), Some(n)) = (q.get(g), left.get(g)) else {
                continue;
            };
            let k = copies(qg, &free, *n);
            for (f, v) in free.iter_mut().zip(qg) {
                *f -= v * k as i64;
            }
            if let Some(x) = fill.get_mut(g) {
                *x = k;
            }
        }
        let value: f64 = fill.iter().zip(u).map(|(n, v)| *n as f64 * v).sum();
        if best.as_ref().is_none_or(|(b, _)| value > *b + 1e-12) {
            best = Some((value, fill));
        }
    }
    best.map(|(_, f)| f)
}

/// Whole nodes as (type, shape of each pod): repeatedly the node whose greedy fill has the
/// highest worth per dollar, repeated while the counts allow. `None` if a pod fits nowhere.
fn greedy_pack(
    shapes: &[(Resources, usize)],
    types: &[CoverType],
    candidates: &[usize],
    worth: &[f64],
    mut left: Vec<usize>,
) -> Option<Vec<(usize, Vec<usize>)>> {
    let mut nodes = Vec::new();
    while left.iter().any(|n| *n > 0) {
        // (efficiency, price, type, fill)
        let mut best: Option<(f64, f64, usize, Vec<usize>)> = None;
        for &t in candidates {
            let Some(ct) = types.get(t) else { continue };
            let Some(fill) = greedy_fill(shapes, &left, worth, &ct.room) else {
                continue;
            };
            let value: f64 = fill.iter().zip(worth).map(|(k, w)| *k as f64 * w).sum();
            let eff = value / ct.price;
            let better = match &best {
                None => true,
                Some((be, bp, _, _)) => {
                    eff > be * (1.0 + 1e-9) || (eff >= be * (1.0 - 1e-9) && ct.price < *bp)
                }
            };
            if better {
                best = Some((eff, ct.price, t, fill));
            }
        }
        let (_, _, t, fill) = best?;
        // The same fill fits as many more times as the counts allow.
        let reps = fill
            .iter()
            .zip(&left)
            .filter(|(k, _)| **k > 0)
            .map(|(k, n)| n / k)
            .min()
            .unwrap_or(0)
            .max(1);
        let gs: Vec<usize> = fill
            .iter()
            .enumerate()
            .flat_map(|(g, k)| std::iter::repeat_n(g, *k))
            .collect();
        for (n, k) in left.iter_mut().zip(&fill) {
            *n -= (k * reps).min(*n);
        }
        nodes.extend(std::iter::repeat_n((t, gs), reps));
    }
    Some(nodes)
}

/// Empties the least cost-effective nodes into the slack of the others: each node is priced
/// at the cheapest type that fits its pods, and a node whose pods all fit into the room other
/// nodes have left on *their* launch types is dropped (every move leaves prices unchanged, so
/// each drop saves a whole node). Weakest first by worth per dollar.
fn drain_weak_nodes(
    nodes: Vec<(usize, Vec<usize>)>,
    shapes: &[(Resources, usize)],
    types: &[CoverType],
    by_price: &[usize],
    worth: &[f64],
) -> Vec<(usize, Vec<usize>)> {
    struct Node {
        ty: usize,
        shapes: Vec<usize>,
        used: Resources,
        room: Resources,
        price: f64,
        worth: f64,
    }
    let mut live: Vec<Node> = nodes
        .into_iter()
        .map(|(ty, gs)| {
            let mut used = Resources::new();
            let mut w = 0f64;
            for g in &gs {
                if let Some((q, _)) = shapes.get(*g) {
                    used.add(q);
                }
                w += worth.get(*g).copied().unwrap_or(0.0);
            }
            let launch = by_price
                .iter()
                .find(|t| types.get(**t).is_some_and(|ct| ct.room.fits(&used)))
                .copied()
                .unwrap_or(ty);
            let (room, price) = types
                .get(launch)
                .map_or((Resources::new(), f64::INFINITY), |ct| {
                    (ct.room.clone(), ct.price)
                });
            Node {
                ty: launch,
                shapes: gs,
                used,
                room,
                price,
                worth: w,
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..live.len()).collect();
    order.sort_by(|a, b| {
        let ea = live.get(*a).map_or(0.0, |n| n.worth / n.price);
        let eb = live.get(*b).map_or(0.0, |n| n.worth / n.price);
        ea.total_cmp(&eb).then(a.cmp(b))
    });
    let mut dropped = vec![false; live.len()];
    for &i in &order {
        let Some(node) = live.get(i) else { continue };
        let mut moves: Vec<(usize, usize)> = Vec::new(); // (shape, to node)
        let mut extra: BTreeMap<usize, Resources> = BTreeMap::new();
        let mut all_fit = true;
        for &g in &node.shapes {
            let Some((q, _)) = shapes.get(g) else {
                all_fit = false;
                break;
            };
            let target = live.iter().enumerate().position(|(j, other)| {
                j != i
                    && !dropped.get(j).copied().unwrap_or(true)
                    && other.room.fits(
                        &other
                            .used
                            .plus(extra.get(&j).unwrap_or(&Resources::new()))
                            .plus(q),
                    )
            });
            match target {
                Some(j) => {
                    extra.entry(j).or_default().add(q);
                    moves.push((g, j));
                }
                None => {
                    all_fit = false;
                    break;
                }
            }
        }
        if !all_fit || moves.is_empty() {
            continue;
        }
        for (g, j) in moves {
            if let (Some(other), Some((q, _))) = (live.get_mut(j), shapes.get(g)) {
                other.used.add(q);
                other.shapes.push(g);
                other.worth += worth.get(g).copied().unwrap_or(0.0);
            }
        }
        if let Some(d) = dropped.get_mut(i) {
            *d = true;
        }
    }
    live.into_iter()
        .zip(dropped)
        .filter(|(_, d)| !d)
        .map(|(n, _)| (n.ty, n.shapes))
        .collect()
}

/// The largest fraction of `room` that `q` takes in any resource.
fn share(q: &Resources, room: &Resources) -> f64 {
    q.iter()
        .filter(|(_, v)| *v > 0)
        .map(|(n, v)| v as f64 / room.get(n).max(1) as f64)
        .fold(0f64, f64::max)
}

/// A greedy integral fill of one node with `room`: shapes by worth per share of the room (the
/// knapsack density order), each taken as many times as still fits. `None` when nothing fits.
fn greedy_fill(
    shapes: &[(Resources, usize)],
    left: &[usize],
    worth: &[f64],
    room: &Resources,
) -> Option<Vec<usize>> {
    let mut order: Vec<(f64, usize)> = shapes
        .iter()
        .enumerate()
        .filter(|(g, (q, _))| left.get(*g).is_some_and(|n| *n > 0) && room.fits(q))
        .map(|(g, (q, _))| (worth.get(g).copied().unwrap_or(0.0) / share(q, room), g))
        .collect();
    if order.is_empty() {
        return None;
    }
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut fill = vec![0usize; shapes.len()];
    let mut used = Resources::new();
    for (_, g) in order {
        let (Some((q, _)), Some(n)) = (shapes.get(g), left.get(g)) else {
            continue;
        };
        let copies = q
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(name, v)| ((room.get(name) - used.get(name)).max(0) / v) as usize)
            .min()
            .unwrap_or(*n)
            .min(*n);
        for _ in 0..copies {
            used.add(q);
        }
        if let Some(f) = fill.get_mut(g) {
            *f = copies;
        }
    }
    Some(fill)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shape: (cpu, memory, count, class); a kind: (class, cpu, memory, price). A kind holds
    /// the shapes of its class and of class 0 (free pods) that fit it.
    fn check(
        name: &str,
        shapes: &[(i64, i64, usize, usize)],
        kinds: &[(usize, i64, i64, f64)],
        nodes: usize,
        cost: f64,
    ) {
        let q: Vec<Vec<i64>> = shapes.iter().map(|(c, m, _, _)| vec![*c, *m]).collect();
        let counts: Vec<usize> = shapes.iter().map(|s| s.2).collect();
        let kinds: Vec<NodeKind> = kinds
            .iter()
            .enumerate()
            .map(|(i, (class, c, m, price))| NodeKind {
                ty: i,
                class: *class,
                room: vec![*c, *m],
                price: *price,
                holds: shapes
                    .iter()
                    .map(|(qc, qm, _, sc)| (*sc == 0 || sc == class) && qc <= c && qm <= m)
                    .collect(),
            })
            .collect();
        let ConfigPacking {
            nodes: configs,
            left,
            ..
        } = config_pack(&q, &counts, &kinds);
        assert!(left.iter().all(|n| *n == 0), "{name}: left over {left:?}");
        let mut placed = vec![0usize; shapes.len()];
        let mut total = 0.0;
        for (k, gs) in &configs {
            let kind = &kinds[*k];
            let mut used = [0i64; 2];
            for g in gs {
                placed[*g] += 1;
                assert!(kind.holds[*g], "{name}: shape {g} on kind {k}");
                used[0] += q[*g][0];
                used[1] += q[*g][1];
            }
            assert!(
                used[0] <= kind.room[0] && used[1] <= kind.room[1],
                "{name}: kind {k} overfull"
            );
            total += kind.price;
        }
        assert_eq!(placed, counts, "{name}: every pod placed once");
        assert_eq!(configs.len(), nodes, "{name}: nodes {configs:?}");
        assert!(
            (total - cost).abs() < 1e-9,
            "{name}: cost {total} != {cost}"
        );
    }

    /// A shape: (cpu, memory, count, value); the node's room (cpu, memory). The search must
    /// find the best whole fill (checked against plain enumeration too), never report one
    /// that does not fit, and the knapsack bound must hold above it.
    fn check_fill(name: &str, shapes: &[(i64, i64, usize, f64)], room: (i64, i64), best: f64) {
        let q: Vec<Vec<i64>> = shapes.iter().map(|(c, m, _, _)| vec![*c, *m]).collect();
        let left: Vec<usize> = shapes.iter().map(|s| s.2).collect();
        let u: Vec<f64> = shapes.iter().map(|s| s.3).collect();
        let kind = NodeKind {
            ty: 0,
            class: 0,
            room: vec![room.0, room.1],
            price: 1.0,
            holds: vec![true; shapes.len()],
        };
        fn enumerate(q: &[Vec<i64>], left: &[usize], u: &[f64], g: usize, rem: [i64; 2]) -> f64 {
            let Some(qg) = q.get(g) else { return 0.0 };
            let mut best = enumerate(q, left, u, g + 1, rem);
            for k in 1..=left[g] as i64 {
                let r = [rem[0] - k * qg[0], rem[1] - k * qg[1]];
                if r[0] < 0 || r[1] < 0 {
                    break;
                }
                best = best.max(k as f64 * u[g] + enumerate(q, left, u, g + 1, r));
            }
            best
        }
        let exact = enumerate(&q, &left, &u, 0, [room.0, room.1]);
        assert!(
            (exact - best).abs() < 1e-9,
            "{name}: enumeration says {exact}"
        );
        let problem = FillProblem::new(&q, &left, &u, &kind);
        assert!(problem.bound(0, &kind.room) >= best - 1e-9, "{name}: bound");
        let (hit, _) = problem.search(0.0, 100_000);
        let (value, fill) = hit.unwrap_or_default();
        assert!(
            (value - best).abs() < 1e-9,
            "{name}: found {value} ({fill:?})"
        );
        let used = fill.iter().enumerate().fold([0i64; 2], |acc, (g, k)| {
            [acc[0] + q[g][0] * *k as i64, acc[1] + q[g][1] * *k as i64]
        });
        assert!(
            used[0] <= room.0 && used[1] <= room.1,
            "{name}: overfull {fill:?}"
        );
        assert!(
            fill.iter().zip(&left).all(|(k, n)| k <= n),
            "{name}: counts"
        );
        let (above, _) = problem.search(best + 1e-6, 100_000);
        assert!(above.is_none(), "{name}: nothing beats the best");
    }

    #[test]
    fn whole_fill_search() {
        check_fill(
            "the densest shape first fills 8 of 10; one of each of the others fills all 10",
            &[(4, 4, 5, 4.2), (5, 5, 5, 5.0), (6, 6, 5, 6.1)],
            (10, 10),
            10.3,
        );
        check_fill(
            "complementary shapes: CPU-heavy and memory-heavy pods share the node",
            &[(3, 1, 4, 3.0), (1, 3, 4, 3.0), (2, 2, 4, 2.5)],
            (8, 8),
            12.0,
        );
        check_fill(
            "the pods left cap the copies",
            &[(1, 1, 2, 1.0), (3, 3, 1, 2.0)],
            (10, 10),
            4.0,
        );
        check_fill(
            "a shape worth nothing is never needed",
            &[(2, 2, 3, 0.0), (5, 5, 1, 1.0)],
            (10, 10),
            1.0,
        );
    }

    #[test]
    fn config_rounding() {
        check(
            "complementary shapes share whole nodes instead of two single-purpose fleets",
            &[(3, 1, 4, 0), (1, 3, 4, 0)],
            &[(0, 4, 4, 1.0), (0, 3, 1, 0.9), (0, 1, 3, 0.9)],
            4,
            4.0,
        );
        check(
            "the fractional half node left after rounding down goes on the small type",
            &[(2, 2, 3, 0)],
            &[(0, 4, 4, 1.0), (0, 2, 2, 0.6)],
            2,
            1.6,
        );
        check(
            "a zone-pinned pod rides in the slack of a free pod's node pinned to its zone",
            &[(3, 3, 1, 0), (1, 1, 1, 1)],
            &[
                (0, 4, 4, 1.0),
                (1, 4, 4, 1.0),
                (0, 1, 1, 0.4),
                (1, 1, 1, 0.4),
            ],
            1,
            1.0,
        );
        check(
            "a pinned pod never lands on a node of another class, however cheap",
            &[(1, 1, 2, 1)],
            &[(0, 4, 4, 0.1), (1, 2, 2, 1.0)],
            1,
            1.0,
        );
    }
}
