//! Resource quantities and pod requests, computed the way the kubelet and kube-scheduler do,
//! written independently of `karpenter-scheduling`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Resource amounts in thousandths of their unit (millicores, millibytes, milli-pods), by name.
pub type Resources = BTreeMap<String, i128>;

/// Parses a Kubernetes quantity (`100m`, `1.5`, `2Gi`, `1e3`, `500M`) into thousandths of its
/// unit, rounding up like the API server does for sub-milli values. `None` for malformed input.
pub fn parse_milli(quantity: &str) -> Option<i128> {
    let s = quantity.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let number_end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(s.len(), |(i, _)| i);
    let (number, suffix) = s.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    if digits.len() > 30 {
        return None;
    }
    let mantissa: i128 = digits.parse().ok()?;
    let frac_digits = i32::try_from(frac_part.len()).ok()?;
    let (pow10, pow2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        exp => {
            let e = exp.strip_prefix('e').or_else(|| exp.strip_prefix('E'))?;
            (e.parse::<i32>().ok().filter(|e| e.abs() <= 30)?, 0)
        }
    };
    let scaled = mantissa.checked_mul(1i128.checked_shl(pow2)?)?;
    let exponent = pow10 - frac_digits + 3;
    let value = if exponent >= 0 {
        scaled.checked_mul(10i128.checked_pow(exponent.unsigned_abs())?)?
    } else {
        let divisor = 10i128.checked_pow(exponent.unsigned_abs())?;
        (scaled + divisor - 1) / divisor
    };
    Some(if negative { -value } else { value })
}

/// A resource list (`requests`, `allocatable`) as thousandths; malformed quantities count as 0.
pub fn resources_of(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
    list.into_iter()
        .flatten()
        .map(|(name, q)| (name.clone(), parse_milli(&q.0).unwrap_or(0)))
        .collect()
}

/// Adds `b` into `a`.
pub fn add_into(a: &mut Resources, b: &Resources) {
    for (name, v) in b {
        *a.entry(name.clone()).or_insert(0) += v;
    }
}

fn max_into(a: &mut Resources, b: &Resources) {
    for (name, v) in b {
        let e = a.entry(name.clone()).or_insert(0);
        *e = (*e).max(*v);
    }
}

fn container_requests(c: &Container) -> Resources {
    let resources = c.resources.as_ref();
    let mut req = resources_of(resources.and_then(|r| r.requests.as_ref()));
    // A limit without a request defaults the request to the limit (API server defaulting).
    for (name, v) in resources_of(resources.and_then(|r| r.limits.as_ref())) {
        req.entry(name).or_insert(v);
    }
    req
}

/// The effective requests of a pod: the larger of (regular containers + sidecars) and each init
/// container's peak (its own request plus the sidecars started before it), plus pod overhead.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    let mut total = Resources::new();
    for c in &spec.containers {
        add_into(&mut total, &container_requests(c));
    }
    let mut sidecars = Resources::new();
    let mut init_peak = Resources::new();
    for c in spec.init_containers.iter().flatten() {
        let req = container_requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            add_into(&mut sidecars, &req);
            max_into(&mut init_peak, &sidecars);
        } else {
            let mut peak = req;
            add_into(&mut peak, &sidecars);
            max_into(&mut init_peak, &peak);
        }
    }
    add_into(&mut total, &sidecars);
    max_into(&mut total, &init_peak);
    add_into(&mut total, &resources_of(spec.overhead.as_ref()));
    total.retain(|_, v| *v != 0);
    total
}

/// Whether a pod has finished (its resources are free again).
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    #[test]
    fn quantities_parse_to_thousandths() {
        let cases = [
            ("100m", Some(100)),
            ("1", Some(1000)),
            ("1.5", Some(1500)),
            ("2Gi", Some(2 * 1024 * 1024 * 1024 * 1000)),
            ("1k", Some(1_000_000)),
            ("1e3", Some(1_000_000)),
            ("1E", Some(1_000_000_000_000_000_000_000)),
            ("1n", Some(1)),
            ("0.1m", Some(1)),
            ("110", Some(110_000)),
            ("-1", Some(-1000)),
            ("", None),
            ("abc", None),
            ("1Qi", None),
            ("1.2.3", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_milli(input), want, "{input}");
        }
    }

    fn container(cpu: &str, sidecar: bool) -> Container {
        Container {
            name: "c".into(),
            restart_policy: sidecar.then(|| "Always".to_string()),
            resources: Some(ResourceRequirements {
                requests: Some([("cpu".to_string(), Quantity(cpu.into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_requests_follow_the_init_container_rules() {
        let check = |containers: Vec<Container>,
                     init: Vec<Container>,
                     overhead: Option<&str>,
                     want: i128| {
            let spec = PodSpec {
                containers,
                init_containers: Some(init),
                overhead: overhead.map(|o| [("cpu".to_string(), Quantity(o.into()))].into()),
                ..Default::default()
            };
            assert_eq!(pod_requests(&spec).get("cpu").copied().unwrap_or(0), want);
        };
        check(
            vec![container("1", false), container("500m", false)],
            vec![],
            None,
            1500,
        );
        check(
            vec![container("1", false)],
            vec![container("3", false)],
            None,
            3000,
        );
        check(
            vec![container("1", false)],
            vec![container("3", false)],
            Some("250m"),
            3250,
        );
        // Sidecar: runs alongside the containers and before later init containers.
        check(
            vec![container("1", false)],
            vec![container("1", true), container("2", false)],
            None,
            3000,
        );
        check(
            vec![container("2", false)],
            vec![container("1", true)],
            None,
            3000,
        );
    }
}
