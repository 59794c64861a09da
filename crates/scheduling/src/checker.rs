//! An independent checker of solver output, written for obviousness rather than speed.
//!
//! Given the input and a solution it re-derives, from scratch, every hard constraint of every
//! placed pod: on existing nodes against labels and free resources; on new NodeClaims against
//! EVERY instance type the claim lists and EVERY offering its requirements allow. It shares only
//! the model types and the requirement/label-selector primitives with the solver.

use std::collections::{BTreeMap, BTreeSet};

use karpenter_apis::labels;

use crate::model::{
    HostPort, InstanceType, NodePoolView, NodeView, Offering, PodAffinityTerm, PodView,
    TaintEffect, WhenUnsatisfiable, first_untolerated, volume_alternatives,
};
use crate::requirements::Requirements;
use crate::resources::{NODES, Resources};
use crate::results::{NewNodeClaim, SchedulingResults};
use crate::solver::{MinValuesPolicy, SchedulingInput, SolveOptions};
use crate::topology::NamespaceSet;

/// Where a pod ended up, as the checker sees it.
enum Place<'a> {
    Node(&'a NodeView),
    Claim(&'a NewNodeClaim, &'a NodePoolView),
}

/// Every violation found (empty = the solution is valid).
pub fn check_solution(
    input: &SchedulingInput,
    options: &SolveOptions,
    results: &SchedulingResults,
) -> Vec<String> {
    let mut v = Vec::new();
    let pods_by_uid: BTreeMap<&str, &PodView> =
        input.pods.iter().map(|p| (p.uid.as_str(), p)).collect();
    // Each pod accounted for exactly once.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for uid in results.existing_placements.keys() {
        *seen.entry(uid.as_str()).or_default() += 1;
    }
    for c in &results.new_nodeclaims {
        for uid in &c.pods {
            *seen.entry(uid.as_str()).or_default() += 1;
        }
    }
    for uid in results.unschedulable.keys() {
        *seen.entry(uid.as_str()).or_default() += 1;
    }
    for p in &input.pods {
        match seen.get(p.uid.as_str()) {
            Some(1) => {}
            n => v.push(format!("pod {} accounted for {:?} times", p.uid, n)),
        }
    }
    for uid in seen.keys() {
        if !pods_by_uid.contains_key(uid) {
            v.push(format!("unknown pod {uid} in results"));
        }
    }

    let mut places: Vec<(&PodView, Place<'_>)> = Vec::new();
    // Existing nodes: free resources, taints, labels, ports, volume limits.
    let mut per_node: BTreeMap<&str, Vec<&PodView>> = BTreeMap::new();
    for (uid, node) in &results.existing_placements {
        let Some(p) = pods_by_uid.get(uid.as_str()) else {
            continue;
        };
        per_node.entry(node.as_str()).or_default().push(p);
    }
    for (name, pods) in &per_node {
        let Some(node) = input.nodes.iter().find(|n| n.name == *name) else {
            v.push(format!("placement on unknown node {name}"));
            continue;
        };
        let mut sum = node.used.clone();
        for p in pods {
            sum.add(&requests(p));
        }
        if !node.allocatable.fits(&sum) {
            v.push(format!(
                "node {name} over-committed: {sum} > {}",
                node.allocatable
            ));
        }
        let mut ports: Vec<HostPort> = node.host_ports.clone();
        ports.extend(
            input
                .bound_pods
                .iter()
                .filter(|b| b.node_name.as_deref() == Some(name))
                .flat_map(|b| b.host_ports.iter().cloned()),
        );
        let mut volumes = node.volumes_attached.clone();
        for p in pods {
            let hard_taints = node.taints.iter().filter(|t| {
                t.effect != TaintEffect::PreferNoSchedule
                    && (node.initialized
                        || !(labels::is_ephemeral_taint(
                            &t.key,
                            t.value.as_deref(),
                            t.effect.as_str(),
                        ) || node.startup_taints.contains(t)))
            });
            if let Some(t) = first_untolerated(hard_taints, &p.tolerations, true) {
                v.push(format!(
                    "pod {} does not tolerate {t} on node {name}",
                    p.uid
                ));
            }
            if !pod_labels_ok(p, &node.labels) {
                v.push(format!(
                    "pod {} node selector/affinity not met by node {name}",
                    p.uid
                ));
            }
            for hp in &p.host_ports {
                if ports.iter().any(|x| x.conflicts(hp)) {
                    v.push(format!(
                        "pod {} host port {} clashes on node {name}",
                        p.uid, hp.port
                    ));
                }
            }
            ports.extend(p.host_ports.iter().cloned());
            if let Ok(vols) = input.volumes.resolve(p) {
                let alts = volume_alternatives(&vols);
                if !vols.iter().all(|x| x.topology.is_empty())
                    && !alts.iter().any(|a| a.matches_labels(&node.labels).is_ok())
                {
                    v.push(format!(
                        "pod {} volume topology not met by node {name}",
                        p.uid
                    ));
                }
                for x in vols {
                    if let Some(d) = x.driver {
                        volumes.entry(d).or_default().insert(x.id);
                    }
                }
            }
            places.push((p, Place::Node(node)));
        }
        for (driver, ids) in &volumes {
            if let Some(limit) = node.volume_limits.get(driver)
                && ids.len() as i64 > *limit
            {
                v.push(format!("node {name} exceeds {driver} volume limit {limit}"));
            }
        }
    }

    // New NodeClaims.
    let mut usage: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
    for c in &results.new_nodeclaims {
        let Some(np) = input.nodepools.iter().find(|n| n.name == c.nodepool) else {
            v.push(format!(
                "claim {} names unknown nodepool {}",
                c.hostname, c.nodepool
            ));
            continue;
        };
        if c.pods.is_empty() {
            v.push(format!("claim {} has no pods", c.hostname));
        }
        if c.instance_types.is_empty() || c.instance_types.len() > options.max_instance_types {
            v.push(format!(
                "claim {} lists {} instance types",
                c.hostname,
                c.instance_types.len()
            ));
        }
        if let Err(e) = c.requirements.intersects(&np.requirements) {
            v.push(format!(
                "claim {} leaves its nodepool's requirements: {e}",
                c.hostname
            ));
        }
        for (k, val) in &np.labels {
            if c.requirements.get(k).is_some_and(|r| !r.has(val)) {
                v.push(format!(
                    "claim {} contradicts template label {k}",
                    c.hostname
                ));
            }
        }
        let pods: Vec<&PodView> = c
            .pods
            .iter()
            .filter_map(|u| pods_by_uid.get(u.as_str()).copied())
            .collect();
        let mut pod_sum = Resources::new();
        for p in &pods {
            pod_sum.add(&requests(p));
        }
        let mut max_cap = Resources::new();
        for name in &c.instance_types {
            let Some(it) = np.instance_types.iter().find(|t| *t.name == **name) else {
                v.push(format!("claim {} lists unknown type {name}", c.hostname));
                continue;
            };
            if let Err(e) = it.requirements.intersects(&c.requirements) {
                v.push(format!(
                    "claim {} lists incompatible type {name}: {e}",
                    c.hostname
                ));
            }
            let offerings = allowed_offerings(it, c);
            if offerings.is_empty() {
                v.push(format!(
                    "claim {} type {name} has no allowed offering",
                    c.hostname
                ));
            }
            let ds = daemonset_overhead(input, np, it);
            let need = pod_sum.plus(&ds);
            for o in offerings {
                let alloc = it.allocatable_for(o);
                if !alloc.fits(&need) {
                    v.push(format!(
                        "claim {} type {name} offering {}/{}: {need} does not fit {alloc}",
                        c.hostname, o.zone, o.capacity_type
                    ));
                }
                max_cap.max_with(it.capacity_for(o));
            }
            let mut ports: Vec<HostPort> = daemonset_ports(input, np, it);
            for p in &pods {
                for hp in &p.host_ports {
                    if ports.iter().any(|x| x.conflicts(hp)) {
                        v.push(format!(
                            "pod {} host port {} clashes on claim {}",
                            p.uid, hp.port, c.hostname
                        ));
                    }
                }
                ports.extend(p.host_ports.iter().cloned());
            }
        }
        let u = usage.entry(np.name.as_str()).or_default();
        for (k, _) in np.limits.iter() {
            *u.entry(k.clone()).or_default() += if k == NODES { 1 } else { max_cap.get(k) };
        }
        if options.min_values_policy == MinValuesPolicy::Strict {
            for (key, req) in c.requirements.iter() {
                if let Some(min) = req.min_values {
                    let distinct: BTreeSet<String> = c
                        .instance_types
                        .iter()
                        .filter_map(|n| np.instance_types.iter().find(|t| *t.name == **n))
                        .flat_map(|t| type_values(t, c, key))
                        .collect();
                    if distinct.len() < min as usize {
                        v.push(format!(
                            "claim {} has {} values for {key}, minValues {min}",
                            c.hostname,
                            distinct.len()
                        ));
                    }
                }
            }
        }
        for p in &pods {
            if let Some(t) = first_untolerated(
                np.taints
                    .iter()
                    .filter(|t| t.effect != TaintEffect::PreferNoSchedule),
                &p.tolerations,
                true,
            ) {
                v.push(format!(
                    "pod {} does not tolerate {t} of nodepool {}",
                    p.uid, np.name
                ));
            }
            if !pod_claim_ok(p, c, np) {
                v.push(format!(
                    "pod {} node selector/affinity not guaranteed by claim {}",
                    p.uid, c.hostname
                ));
            }
            if let Ok(vols) = input.volumes.resolve(p)
                && !vols.iter().all(|x| x.topology.is_empty())
            {
                let alts = volume_alternatives(&vols);
                if !alts.iter().any(|a| reqs_guaranteed(a, c, np)) {
                    v.push(format!(
                        "pod {} volume topology not guaranteed by claim {}",
                        p.uid, c.hostname
                    ));
                }
            }
            places.push((p, Place::Claim(c, np)));
        }
    }
    for np in &input.nodepools {
        if np.limits.is_empty() {
            continue;
        }
        for (k, limit) in &np.limits {
            let existing: i64 = input
                .nodes
                .iter()
                .filter(|n| n.nodepool() == Some(np.name.as_str()))
                .map(|n| if k == NODES { 1 } else { n.capacity.get(k) })
                .sum();
            let new = usage
                .get(np.name.as_str())
                .and_then(|u| u.get(k))
                .copied()
                .unwrap_or(0);
            if new > 0 && existing + new > *limit {
                v.push(format!(
                    "nodepool {} limit {k}={limit} exceeded: {existing} + {new}",
                    np.name
                ));
            }
        }
    }

    check_topology(input, options, results, &places, &mut v);
    v
}

fn requests(p: &PodView) -> Resources {
    let mut r = p.requests.clone();
    if r.pods == 0 {
        r.pods = 1;
    }
    r
}

fn allowed_offerings<'a>(it: &'a InstanceType, c: &NewNodeClaim) -> Vec<&'a Offering> {
    it.offerings
        .iter()
        .filter(|o| {
            o.available
                && c.requirements
                    .get(labels::ZONE)
                    .is_none_or(|r| r.has(&o.zone))
                && c.requirements
                    .get(labels::CAPACITY_TYPE)
                    .is_none_or(|r| r.has(&o.capacity_type))
                && o.labels
                    .iter()
                    .all(|(k, val)| c.requirements.get(k).is_none_or(|r| r.has(val)))
        })
        .collect()
}

fn ds_lands(ds: &PodView, np: &NodePoolView, it: &InstanceType) -> bool {
    if first_untolerated(np.taints.iter(), &ds.tolerations, true).is_some() {
        return false;
    }
    let mut node = np.requirements.clone();
    node.add_all(&Requirements::from_labels(np.labels.iter()));
    node.add_all(&it.requirements_with_offerings());
    let sel = Requirements::from_labels(ds.node_selector.iter());
    if node.compatible(&sel).is_err() {
        return false;
    }
    ds.required_node_affinity.is_empty()
        || ds
            .required_node_affinity
            .iter()
            .any(|t| Requirements::from_specs(t).is_ok_and(|r| node.compatible(&r).is_ok()))
}

fn daemonset_overhead(input: &SchedulingInput, np: &NodePoolView, it: &InstanceType) -> Resources {
    let mut r = Resources::new();
    for d in &input.daemonsets {
        if ds_lands(d, np, it) {
            r.add(&d.requests);
        }
    }
    r
}

fn daemonset_ports(input: &SchedulingInput, np: &NodePoolView, it: &InstanceType) -> Vec<HostPort> {
    input
        .daemonsets
        .iter()
        .filter(|d| ds_lands(d, np, it))
        .flat_map(|d| d.host_ports.iter().cloned())
        .collect()
}

/// The pod's hard node requirements: node selector ∩ (one of the OR terms).
fn pod_requirement_options(p: &PodView) -> Vec<Requirements> {
    let sel = Requirements::from_labels(p.node_selector.iter());
    if p.required_node_affinity.is_empty() {
        return vec![sel];
    }
    p.required_node_affinity
        .iter()
        .filter_map(|t| Requirements::from_specs(t).ok())
        .map(|t| {
            let mut r = sel.clone();
            r.add_all(&t);
            r
        })
        .collect()
}

fn pod_labels_ok(p: &PodView, node_labels: &BTreeMap<String, String>) -> bool {
    pod_requirement_options(p)
        .iter()
        .any(|r| r.matches_labels(node_labels).is_ok())
}

/// Possible values of `key` on a node launched from this claim (`None` = unknown / absent).
fn type_values(it: &InstanceType, c: &NewNodeClaim, key: &str) -> Vec<String> {
    if key == labels::INSTANCE_TYPE {
        return vec![it.name.clone()];
    }
    let offerings = allowed_offerings(it, c);
    let from_offerings: Vec<String> = offerings
        .iter()
        .filter_map(|o| o.label(key).map(str::to_string))
        .collect();
    if !from_offerings.is_empty() {
        return from_offerings;
    }
    match it.requirements.get(key) {
        Some(r) if r.is_finite() => r
            .values()
            .iter()
            .filter(|v| c.requirements.get(key).is_none_or(|cr| cr.has(v)))
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether every node the claim could become satisfies `reqs`.
fn reqs_guaranteed(reqs: &Requirements, c: &NewNodeClaim, np: &NodePoolView) -> bool {
    for (key, want) in reqs.iter() {
        if let Some(v) = c.labels.get(key) {
            if !want.has(v) {
                return false;
            }
            continue;
        }
        let claim_req = c.requirements.get(key);
        if let Some(cr) = claim_req
            && cr.is_finite()
        {
            if !cr.values().iter().all(|v| want.has(v)) {
                return false;
            }
            if cr.is_empty() && !want.allows_absent() {
                return false;
            }
            continue;
        }
        // Decided by the instance types / offerings.
        for name in &c.instance_types {
            let Some(it) = np.instance_types.iter().find(|t| *t.name == **name) else {
                return false;
            };
            let vals = type_values(it, c, key);
            if vals.is_empty() {
                let defined = it.requirements.has(key) || claim_req.is_some();
                if !(want.allows_absent() || (!defined && labels::is_well_known(key))) {
                    return false;
                }
            } else if !vals.iter().all(|v| want.has(v)) {
                return false;
            }
        }
    }
    true
}

fn pod_claim_ok(p: &PodView, c: &NewNodeClaim, np: &NodePoolView) -> bool {
    pod_requirement_options(p)
        .iter()
        .any(|r| reqs_guaranteed(r, c, np))
}

/// The set of domains a placement may end up in for `key`.
fn domains(place: &Place<'_>, key: &str) -> Option<BTreeSet<String>> {
    match place {
        Place::Node(n) => n.domain(key).map(|d| [d.to_string()].into_iter().collect()),
        Place::Claim(c, np) => {
            if key == labels::HOSTNAME {
                return Some([c.hostname.clone()].into_iter().collect());
            }
            if let Some(r) = c.requirements.get(key)
                && r.is_finite()
            {
                return Some(r.values().clone());
            }
            let mut all = BTreeSet::new();
            for name in &c.instance_types {
                let it = np.instance_types.iter().find(|t| *t.name == **name)?;
                let vals = type_values(it, c, key);
                if vals.is_empty() {
                    return None;
                }
                all.extend(vals);
            }
            Some(all)
        }
    }
}

fn single(place: &Place<'_>, key: &str) -> Option<String> {
    let d = domains(place, key)?;
    if d.len() == 1 {
        d.into_iter().next()
    } else {
        None
    }
}

fn term_selects(
    owner: &PodView,
    term: &PodAffinityTerm,
    other: &PodView,
    input: &SchedulingInput,
) -> bool {
    let ns = NamespaceSet::resolve(
        &owner.namespace,
        &term.namespaces,
        term.namespace_selector.as_ref(),
        &input.namespaces,
    );
    ns.contains(&other.namespace)
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| s.matches(&other.labels))
}

fn check_topology(
    input: &SchedulingInput,
    options: &SolveOptions,
    results: &SchedulingResults,
    places: &[(&PodView, Place<'_>)],
    v: &mut Vec<String>,
) {
    let _ = options;
    // Everything that occupies a domain: bound pods on known nodes and placed pods.
    let mut occupants: Vec<(&PodView, Place<'_>)> = Vec::new();
    for b in &input.bound_pods {
        if let Some(n) = input
            .nodes
            .iter()
            .find(|n| Some(n.name.as_str()) == b.node_name.as_deref())
        {
            occupants.push((b, Place::Node(n)));
        }
    }
    let placed_count = occupants.len();
    for (p, pl) in places {
        let pl2 = match pl {
            Place::Node(n) => Place::Node(n),
            Place::Claim(c, np) => Place::Claim(c, np),
        };
        occupants.push((p, pl2));
    }
    let placed = occupants.get(placed_count..).unwrap_or(&[]);
    for (i, (p, pl)) in placed.iter().enumerate() {
        let me = placed_count + i;
        // Required anti-affinity, both directions.
        for term in &p.pod_anti_affinity {
            let Some(mine) = domains(pl, &term.topology_key) else {
                continue;
            };
            for (j, (q, qpl)) in occupants.iter().enumerate() {
                if j == me || !term_selects(p, term, q, input) {
                    continue;
                }
                if let Some(theirs) = domains(qpl, &term.topology_key)
                    && !mine.is_disjoint(&theirs)
                {
                    v.push(format!(
                        "pod {} anti-affinity on {} violated by {}",
                        p.uid, term.topology_key, q.uid
                    ));
                }
            }
        }
        for (j, (q, qpl)) in occupants.iter().enumerate() {
            if j == me || j >= placed_count {
                continue;
            }
            for term in &q.pod_anti_affinity {
                if !term_selects(q, term, p, input) {
                    continue;
                }
                if let (Some(mine), Some(theirs)) = (
                    domains(pl, &term.topology_key),
                    domains(qpl, &term.topology_key),
                ) && !mine.is_disjoint(&theirs)
                {
                    v.push(format!(
                        "pod {} placed against running pod {}'s anti-affinity",
                        p.uid, q.uid
                    ));
                }
            }
        }
        // Required affinity: another selected pod shares the domain, unless it is the only one.
        for term in &p.pod_affinity {
            let Some(mine) = single(pl, &term.topology_key) else {
                v.push(format!(
                    "pod {} affinity domain on {} undecided",
                    p.uid, term.topology_key
                ));
                continue;
            };
            let selected: Vec<usize> = occupants
                .iter()
                .enumerate()
                .filter(|(_, (q, _))| term_selects(p, term, q, input))
                .map(|(j, _)| j)
                .collect();
            let others_here = selected.iter().any(|&j| {
                j != me
                    && occupants
                        .get(j)
                        .and_then(|(_, qpl)| single(qpl, &term.topology_key))
                        .as_deref()
                        == Some(mine.as_str())
            });
            let alone = selected.iter().all(|&j| j == me);
            let self_selected = selected.contains(&me);
            if !(others_here || (alone && self_selected)) {
                v.push(format!(
                    "pod {} affinity on {} not met in {mine}",
                    p.uid, term.topology_key
                ));
            }
        }
        // Hard spread: the final skew of its own domain against eligible domains.
        for tsc in &p.topology_spread {
            if tsc.when_unsatisfiable != WhenUnsatisfiable::DoNotSchedule {
                continue;
            }
            let key = labels::normalize_label_key(&tsc.topology_key);
            let Some(mine) = single(pl, key) else {
                v.push(format!("pod {} spread domain on {key} undecided", p.uid));
                continue;
            };
            let mut sel = tsc.label_selector.clone();
            if let Some(s) = sel.as_mut() {
                for k in &tsc.match_label_keys {
                    if let Some(val) = p.labels.get(k) {
                        s.match_labels.insert(k.clone(), val.clone());
                    }
                }
            }
            let selects = |q: &PodView| {
                q.namespace == p.namespace && sel.as_ref().is_some_and(|s| s.matches(&q.labels))
            };
            let mut counts: BTreeMap<String, i64> = BTreeMap::new();
            for (q, qpl) in &occupants {
                if selects(q)
                    && let Some(d) = single(qpl, key)
                {
                    *counts.entry(d).or_default() += 1;
                }
            }
            let here = counts.get(&mine).copied().unwrap_or(0);
            let min = if key == labels::HOSTNAME {
                0
            } else {
                let universe = domain_universe(input, key, p);
                let min_domains = i64::from(tsc.min_domains.unwrap_or(1));
                if (universe.len() as i64) < min_domains {
                    0
                } else {
                    universe
                        .iter()
                        .map(|d| counts.get(d).copied().unwrap_or(0))
                        .min()
                        .unwrap_or(0)
                }
            };
            // Pods selected by the group but without this constraint (or with other node
            // requirements, hence other eligible domains under nodeAffinityPolicy Honor) can push
            // counts beyond what the constraint controls; only judge groups whose members all
            // carry the same constraint and node requirements.
            let uniform = occupants.iter().all(|(q, _)| {
                !selects(q)
                    || (q.topology_spread.contains(tsc)
                        && q.node_selector == p.node_selector
                        && q.required_node_affinity == p.required_node_affinity)
            });
            if uniform && here - min > i64::from(tsc.max_skew) {
                v.push(format!(
                    "pod {} spread on {key}: {mine} has {here}, min {min}, maxSkew {}",
                    p.uid, tsc.max_skew
                ));
            }
        }
    }
    let _ = results;
}

fn domain_universe(input: &SchedulingInput, key: &str, p: &PodView) -> BTreeSet<String> {
    let mut u: BTreeSet<String> = BTreeSet::new();
    for n in &input.nodes {
        if let Some(d) = n.domain(key) {
            u.insert(d.to_string());
        }
    }
    if let Some(extra) = input.topology_domains.get(key) {
        u.extend(extra.iter().cloned());
    }
    for np in &input.nodepools {
        let mut tmpl = np.requirements.clone();
        tmpl.add_all(&Requirements::from_labels(np.labels.iter()));
        for it in &np.instance_types {
            if it.requirements.intersects(&tmpl).is_err() {
                continue;
            }
            for o in &it.offerings {
                if o.available
                    && o.compatible(&tmpl)
                    && let Some(val) = o.label(key)
                {
                    u.insert(val.to_string());
                }
            }
            match it.requirements.get(key) {
                Some(r) if r.is_finite() => {
                    u.extend(
                        r.values()
                            .iter()
                            .filter(|x| tmpl.get(key).is_none_or(|t| t.has(x)))
                            .cloned(),
                    );
                }
                Some(_) => {}
                None => {
                    let offering_key = key == labels::ZONE
                        || key == labels::CAPACITY_TYPE
                        || it.offerings.iter().any(|o| o.labels.contains_key(key));
                    if let Some(t) = tmpl.get(key).filter(|t| t.is_finite() && !offering_key) {
                        u.extend(t.values().iter().cloned());
                    }
                }
            }
        }
    }
    // nodeAffinityPolicy Honor: only domains the pod's own selector allows.
    let sel = pod_requirement_options(p);
    u.retain(|d| sel.iter().any(|r| r.get(key).is_none_or(|x| x.has(d))));
    u
}
