//! Property tests over random clusters: the independent checker accepts every solution, the
//! solver is deterministic, and every new NodeClaim carries pods that fit every type it lists.

use karpenter_apis::labels::{HOSTNAME, ZONE};
use proptest::prelude::*;

use crate::checker::check_solution;
use crate::model::{TaintEffect, WhenUnsatisfiable};
use crate::requirements::Operator;
use crate::solver::{
    MinValuesPolicy, PreferencePolicy, PreparedNodePools, SolveOptions, solve, solve_prepared,
    solve_until,
};
use crate::testing::*;

/// Draws numbers from proptest-generated entropy (0 once exhausted, so shrinking the vector
/// shrinks the cluster).
struct Draw<'a>(std::slice::Iter<'a, u32>);

impl Draw<'_> {
    fn below(&mut self, n: u32) -> u32 {
        self.0.next().map_or(0, |v| v % n.max(1))
    }
    fn pick<'b, T>(&mut self, xs: &'b [T]) -> &'b T {
        &xs[self.below(xs.len() as u32) as usize]
    }
    fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent
    }
}

const ZONES: [&str; 3] = ["a", "b", "c"];

fn random_scenario(entropy: &[u32]) -> Scenario {
    let mut d = Draw(entropy.iter());
    let mut s = scenario();
    let n_types = 1 + d.below(6);
    let mut types = Vec::new();
    for i in 0..n_types {
        let cores = *d.pick(&[1i64, 2, 4, 8, 16]);
        let mem_per_core = *d.pick(&[1i64, 2, 4]);
        let mut it = instance_type(&format!("t{i}-{cores}"))
            .cpu(cores)
            .mem(&format!("{}Gi", cores * mem_per_core))
            .pods(*d.pick(&[4i64, 20, 110]));
        if d.chance(30) {
            it = it.kube_reserved("100m", "200Mi");
        }
        if d.chance(15) {
            it = it.res("nvidia.com/gpu", "1");
        }
        let mut any = false;
        for z in ZONES {
            for ct in ["on-demand", "spot"] {
                if d.chance(55) {
                    let price = 0.05 * cores as f64 * if ct == "spot" { 0.5 } else { 1.0 }
                        + f64::from(d.below(10)) / 1000.0;
                    it = it.offering(z, ct, price);
                    any = true;
                }
            }
        }
        if !any {
            it = it.offering("a", "on-demand", 0.1 * cores as f64);
        }
        if d.chance(10) {
            // An override only some offerings carry.
            it = it.offering_with_capacity(
                "b",
                "on-demand",
                0.3,
                crate::resources::Resources::new()
                    .with("cpu", cores * 2000)
                    .with("memory", cores << 31)
                    .with("pods", 110),
            );
        }
        types.push(it.build());
    }
    let n_pools = 1 + d.below(3);
    for i in 0..n_pools {
        let mut np = nodepool(&format!("np{i}"))
            .weight(d.below(3) as i32)
            .types(types.clone());
        if d.chance(30) {
            np = np.taint("dedicated", Some("x"), TaintEffect::NoSchedule);
        }
        if d.chance(25) {
            np = np.require(ZONE, Operator::In, &[*d.pick(&ZONES), *d.pick(&ZONES)]);
        }
        if d.chance(25) {
            np = np.limit("cpu", &format!("{}", 4 + d.below(30)));
        }
        if d.chance(15) {
            np = np.limit("nodes", &format!("{}", 1 + d.below(4)));
        }
        if d.chance(20) {
            np = np.label("team", "blue");
        }
        s = s.nodepool(np);
    }
    for i in 0..d.below(4) {
        let name = format!("node{i}");
        let cpu = 1 + d.below(8);
        let mut n = node(&name)
            .zone(ZONES[d.below(3) as usize])
            .cpu(&cpu.to_string())
            .mem(&format!("{}Gi", 2 * cpu));
        n = n.used_cpu(&format!("{}m", d.below(cpu * 1000)));
        if d.chance(20) {
            n = n.taint("dedicated", Some("x"), TaintEffect::NoSchedule);
        }
        if d.chance(20) {
            n = n.uninitialized().taint(
                karpenter_apis::labels::TAINT_NODE_NOT_READY,
                None,
                TaintEffect::NoSchedule,
            );
        }
        s = s.node(n);
        if d.chance(40) {
            let app = *d.pick(&["web", "db", "cache"]);
            s = s.bound(
                pod()
                    .name(&format!("bound{i}"))
                    .label("app", app)
                    .on_node(&name),
            );
        }
    }
    for i in 0..d.below(3) {
        let mut ds = pod()
            .name(&format!("ds{i}"))
            .cpu(&format!("{}m", 50 + d.below(400)));
        if d.chance(50) {
            ds = ds.tolerate_everything();
        }
        s = s.daemonset(ds);
    }
    let n_pods = 1 + d.below(30);
    for i in 0..n_pods {
        let mut p = pod()
            .name(&format!("p{i:02}"))
            .cpu(&format!(
                "{}m",
                *d.pick(&[100u32, 250, 500, 1000, 2000, 3500])
            ))
            .mem(&format!("{}Mi", *d.pick(&[64u32, 256, 1024, 3000])))
            .created(i64::from(d.below(5)));
        match d.below(6) {
            1 => {
                p = p.label("app", "web").spread(
                    ZONE,
                    1,
                    WhenUnsatisfiable::DoNotSchedule,
                    &[("app", "web")],
                )
            }
            2 => {
                p = p
                    .label("app", "db")
                    .anti_affinity(HOSTNAME, &[("app", "db")])
            }
            3 => p = p.label("app", "cache").affinity(ZONE, &[("app", "cache")]),
            4 => {
                p = p.label("app", "batch").spread(
                    HOSTNAME,
                    2,
                    WhenUnsatisfiable::DoNotSchedule,
                    &[("app", "batch")],
                )
            }
            5 => {
                p = p.label("app", "soft").spread(
                    ZONE,
                    1,
                    WhenUnsatisfiable::ScheduleAnyway,
                    &[("app", "soft")],
                )
            }
            _ => {}
        }
        if d.chance(20) {
            p = p.zone(ZONES[d.below(3) as usize]);
        }
        if d.chance(30) {
            p = p.tolerate("dedicated", Some("x"), Some(TaintEffect::NoSchedule));
        }
        if d.chance(10) {
            p = p.res("nvidia.com/gpu", "1");
        }
        if d.chance(10) {
            p = p.capacity_type("spot");
        }
        if d.chance(10) {
            p = p.host_port(8080);
        }
        if d.chance(10) {
            p = p.prefer(10, ZONE, Operator::In, &[*d.pick(&ZONES)]);
        }
        if d.chance(8) {
            p = p.node_selector("team", "blue");
        }
        s = s.pod(p);
    }
    s.options = SolveOptions {
        preference_policy: if d.chance(20) {
            PreferencePolicy::Ignore
        } else {
            PreferencePolicy::Respect
        },
        min_values_policy: if d.chance(50) {
            MinValuesPolicy::Strict
        } else {
            MinValuesPolicy::BestEffort
        },
        max_instance_types: *d.pick(&[600usize, 2]),
        reserved_capacity_strict: false,
    };
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn checker_accepts_every_solution(entropy in prop::collection::vec(any::<u32>(), 40..260)) {
        let s = random_scenario(&entropy);
        let r = solve(&s.input, &s.options);
        let violations = check_solution(&s.input, &s.options, &r);
        prop_assert!(violations.is_empty(), "{violations:#?}");
        prop_assert_eq!(&r, &solve(&s.input, &s.options));
        // NodePools prepared once give the same answer, whether the preparation matches or is
        // for other DaemonSets (then it must be ignored).
        let prepared = PreparedNodePools::new(&s.input.nodepools, &s.input.daemonsets);
        prop_assert_eq!(&r, &solve_prepared(&s.input, &prepared, &s.options));
        let stale = PreparedNodePools::new(&s.input.nodepools, &[]);
        prop_assert_eq!(&r, &solve_prepared(&s.input, &stale, &s.options));
        for c in &r.new_nodeclaims {
            prop_assert!(!c.pods.is_empty());
            prop_assert!(!c.instance_types.is_empty());
        }
        prop_assert_eq!(r.placed() + r.unschedulable.len(), s.input.pods.len());
    }

    #[test]
    fn a_solve_stopped_anywhere_keeps_a_valid_partial_solution(
        entropy in prop::collection::vec(any::<u32>(), 40..260),
        asks in 0usize..40,
    ) {
        let s = random_scenario(&entropy);
        let r = solve_until(&s.input, None, &s.options, &stop_after(asks));
        let violations = check_solution(&s.input, &s.options, &r);
        prop_assert!(violations.is_empty(), "{violations:#?}");
        // Every pod is accounted for: placed, refused, or (only when stopped) not tried.
        prop_assert_eq!(r.placed() + r.unschedulable.len(), s.input.pods.len());
        let not_tried = r
            .unschedulable
            .values()
            .filter(|e| **e == crate::results::PodError::NotTried)
            .count();
        prop_assert!(r.stopped || not_tried == 0);
        // Each "go on" admits one attempt and only attempts place pods.
        if r.stopped {
            prop_assert!(r.placed() <= asks, "{} placed after {asks} asks", r.placed());
        } else {
            prop_assert_eq!(&r, &solve(&s.input, &s.options));
        }
        for c in &r.new_nodeclaims {
            prop_assert!(!c.pods.is_empty());
        }
    }
}
