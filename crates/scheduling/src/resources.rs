//! Resource lists as integers, and Kubernetes pod-request semantics.
//!
//! `cpu` is stored in millicores; every other resource in its base unit (bytes, counts). The four
//! core resources live in fixed fields so the hot fit check is four integer compares; extended
//! resources (`nvidia.com/gpu`, `aws.amazon.com/neuron`, `vpc.amazonaws.com/efa`…) sit in a
//! short sorted vector.

use std::collections::BTreeMap;
use std::fmt;

use crate::quantity::{QuantityError, format_resource, parse_resource};

/// `cpu`, stored in millicores.
pub const CPU: &str = "cpu";
/// `memory`, in bytes.
pub const MEMORY: &str = "memory";
/// `pods`, a count.
pub const PODS: &str = "pods";
/// `ephemeral-storage`, in bytes.
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
/// `nodes`, only meaningful in NodePool limits.
pub const NODES: &str = "nodes";

/// A resource list with integer amounts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resources {
    /// Millicores.
    pub cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Pod slots.
    pub pods: i64,
    /// Bytes.
    pub ephemeral_storage: i64,
    /// Every other resource, sorted by name, no zero entries.
    pub extended: Vec<(String, i64)>,
}

impl Resources {
    /// An empty list.
    pub fn new() -> Resources {
        Resources::default()
    }

    /// Parses a `name → quantity` map, naming the offending resource on error.
    pub fn parse<'a>(
        items: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Resources, QuantityError> {
        let mut r = Resources::new();
        for (name, text) in items {
            let v = parse_resource(name, text).map_err(|mut e| {
                e.input = format!("{name}={}", e.input);
                e
            })?;
            r.set(name, v);
        }
        Ok(r)
    }

    /// Amount of `name` (0 when absent).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.cpu,
            MEMORY => self.memory,
            PODS => self.pods,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            _ => self
                .extended
                .binary_search_by(|(n, _)| n.as_str().cmp(name))
                .ok()
                .and_then(|i| self.extended.get(i))
                .map_or(0, |(_, v)| *v),
        }
    }

    /// Sets `name` to `amount`.
    pub fn set(&mut self, name: &str, amount: i64) {
        match name {
            CPU => self.cpu = amount,
            MEMORY => self.memory = amount,
            PODS => self.pods = amount,
            EPHEMERAL_STORAGE => self.ephemeral_storage = amount,
            _ => match self
                .extended
                .binary_search_by(|(n, _)| n.as_str().cmp(name))
            {
                Ok(i) => {
                    if amount == 0 {
                        self.extended.remove(i);
                    } else if let Some(slot) = self.extended.get_mut(i) {
                        slot.1 = amount;
                    }
                }
                Err(i) => {
                    if amount != 0 {
                        self.extended.insert(i, (name.to_string(), amount));
                    }
                }
            },
        }
    }

    /// Builder form of [`Resources::set`].
    pub fn with(mut self, name: &str, amount: i64) -> Resources {
        self.set(name, amount);
        self
    }

    /// Every non-zero entry, core resources first, then extended ones by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> + '_ {
        [
            (CPU, self.cpu),
            (MEMORY, self.memory),
            (PODS, self.pods),
            (EPHEMERAL_STORAGE, self.ephemeral_storage),
        ]
        .into_iter()
        .chain(self.extended.iter().map(|(n, v)| (n.as_str(), *v)))
        .filter(|(_, v)| *v != 0)
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// `self += other`.
    pub fn add(&mut self, other: &Resources) {
        self.cpu = self.cpu.saturating_add(other.cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.pods = self.pods.saturating_add(other.pods);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        if !other.extended.is_empty() {
            for (n, v) in &other.extended {
                let cur = self.get(n);
                self.set(n, cur.saturating_add(*v));
            }
        }
    }

    /// `self + other`.
    pub fn plus(&self, other: &Resources) -> Resources {
        let mut r = self.clone();
        r.add(other);
        r
    }

    /// `self -= other` (may go negative).
    pub fn sub(&mut self, other: &Resources) {
        self.cpu = self.cpu.saturating_sub(other.cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.pods = self.pods.saturating_sub(other.pods);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        for (n, v) in &other.extended {
            let cur = self.get(n);
            self.set(n, cur.saturating_sub(*v));
        }
    }

    /// `self − other`.
    pub fn minus(&self, other: &Resources) -> Resources {
        let mut r = self.clone();
        r.sub(other);
        r
    }

    /// Per-resource maximum.
    pub fn max_with(&mut self, other: &Resources) {
        self.cpu = self.cpu.max(other.cpu);
        self.memory = self.memory.max(other.memory);
        self.pods = self.pods.max(other.pods);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (n, v) in &other.extended {
            let cur = self.get(n);
            self.set(n, cur.max(*v));
        }
    }

    /// Per-resource minimum over the names in either list.
    pub fn min_with(&mut self, other: &Resources) {
        self.cpu = self.cpu.min(other.cpu);
        self.memory = self.memory.min(other.memory);
        self.pods = self.pods.min(other.pods);
        self.ephemeral_storage = self.ephemeral_storage.min(other.ephemeral_storage);
        let names: Vec<String> = self
            .extended
            .iter()
            .map(|(n, _)| n.clone())
            .chain(other.extended.iter().map(|(n, _)| n.clone()))
            .collect();
        for n in names {
            let v = self.get(&n).min(other.get(&n));
            self.set(&n, v);
        }
    }

    /// Negative entries raised to zero.
    pub fn clamp_non_negative(&mut self) {
        self.cpu = self.cpu.max(0);
        self.memory = self.memory.max(0);
        self.pods = self.pods.max(0);
        self.ephemeral_storage = self.ephemeral_storage.max(0);
        self.extended.retain(|(_, v)| *v > 0);
    }

    /// Whether every requested amount fits into `self` (a request for a resource `self` lacks
    /// only fits when it is zero).
    #[inline]
    pub fn fits(&self, request: &Resources) -> bool {
        request.cpu <= self.cpu
            && request.memory <= self.memory
            && request.pods <= self.pods
            && request.ephemeral_storage <= self.ephemeral_storage
            && (request.extended.is_empty()
                || request.extended.iter().all(|(n, v)| *v <= self.get(n)))
    }

    /// The resources of `request` that do not fit into `self`: (name, requested, available).
    pub fn shortfall(&self, request: &Resources) -> Vec<(String, i64, i64)> {
        request
            .iter()
            .filter(|(n, v)| *v > self.get(n))
            .map(|(n, v)| (n.to_string(), v, self.get(n)))
            .collect()
    }

    /// Converts to `name → Kubernetes quantity string` (for output and messages).
    pub fn to_quantities(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(n, v)| (n.to_string(), format_resource(n, v)))
            .collect()
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "\"{n}\":\"{}\"", format_resource(n, v))?;
        }
        f.write_str("}")
    }
}

/// One container's requests as seen by pod-request arithmetic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerRequests {
    /// What the container requests (limits substituted where requests are absent).
    pub requests: Resources,
    /// Init container with `restartPolicy: Always` (a sidecar that keeps running).
    pub restartable: bool,
}

/// Kubernetes pod requests: max(largest init step, Σ containers + Σ sidecars) + overhead, plus
/// one pod slot.
///
/// Init containers run one at a time, each alongside every sidecar started before it; sidecars
/// (restartable init containers) keep running, so they also add to the steady-state sum.
pub fn pod_requests(
    containers: &[Resources],
    init_containers: &[ContainerRequests],
    overhead: Option<&Resources>,
) -> Resources {
    let mut running = Resources::new();
    for c in containers {
        running.add(c);
    }
    let mut sidecars = Resources::new();
    let mut init_peak = Resources::new();
    for ic in init_containers {
        if ic.restartable {
            sidecars.add(&ic.requests);
            running.add(&ic.requests);
            init_peak.max_with(&sidecars);
        } else {
            init_peak.max_with(&ic.requests.plus(&sidecars));
        }
    }
    running.max_with(&init_peak);
    if let Some(o) = overhead {
        running.add(o);
    }
    running.pods = running.pods.max(0) + 1;
    running
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(items: &[(&str, &str)]) -> Resources {
        Resources::parse(items.iter().copied()).unwrap()
    }

    #[test]
    fn pod_request_semantics() {
        struct Case {
            name: &'static str,
            containers: Vec<Resources>,
            init: Vec<ContainerRequests>,
            overhead: Option<Resources>,
            want: Resources,
        }
        let cases = vec![
            Case {
                name: "sum of containers plus one pod slot",
                containers: vec![r(&[("cpu", "1")]), r(&[("cpu", "500m"), ("memory", "1Gi")])],
                init: vec![],
                overhead: None,
                want: r(&[("cpu", "1500m"), ("memory", "1Gi"), ("pods", "1")]),
            },
            Case {
                name: "big init container dominates",
                containers: vec![r(&[("cpu", "1")])],
                init: vec![ContainerRequests {
                    requests: r(&[("cpu", "3")]),
                    restartable: false,
                }],
                overhead: None,
                want: r(&[("cpu", "3"), ("pods", "1")]),
            },
            Case {
                name: "sidecar adds to the running sum and to later init steps",
                containers: vec![r(&[("cpu", "1")])],
                init: vec![
                    ContainerRequests {
                        requests: r(&[("cpu", "500m")]),
                        restartable: true,
                    },
                    ContainerRequests {
                        requests: r(&[("cpu", "2")]),
                        restartable: false,
                    },
                ],
                overhead: None,
                want: r(&[("cpu", "2500m"), ("pods", "1")]),
            },
            Case {
                name: "init before sidecar does not see it",
                containers: vec![r(&[("cpu", "1")])],
                init: vec![
                    ContainerRequests {
                        requests: r(&[("cpu", "2")]),
                        restartable: false,
                    },
                    ContainerRequests {
                        requests: r(&[("cpu", "500m")]),
                        restartable: true,
                    },
                ],
                overhead: None,
                want: r(&[("cpu", "2"), ("pods", "1")]),
            },
            Case {
                name: "overhead and extended resources",
                containers: vec![r(&[("nvidia.com/gpu", "1"), ("cpu", "1")])],
                init: vec![],
                overhead: Some(r(&[("cpu", "250m"), ("memory", "120Mi")])),
                want: r(&[
                    ("cpu", "1250m"),
                    ("memory", "120Mi"),
                    ("nvidia.com/gpu", "1"),
                    ("pods", "1"),
                ]),
            },
        ];
        for c in cases {
            let got = pod_requests(&c.containers, &c.init, c.overhead.as_ref());
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn arithmetic_and_fit() {
        let a = r(&[
            ("cpu", "2"),
            ("memory", "4Gi"),
            ("aws.amazon.com/neuron", "1"),
        ]);
        let b = r(&[("cpu", "1"), ("aws.amazon.com/neuron", "1")]);
        assert!(a.fits(&b));
        assert!(!b.fits(&a));
        let d = a.minus(&b);
        assert_eq!(d.get("aws.amazon.com/neuron"), 0);
        assert!(d.extended.is_empty());
        assert_eq!(d.cpu, 1000);
        assert_eq!(b.shortfall(&a).len(), 2);
        assert_eq!(
            a.to_string(),
            r#"{"cpu":"2","memory":"4Gi","aws.amazon.com/neuron":"1"}"#
        );
    }
}
