//! The node-requirements algebra: `In, NotIn, Exists, DoesNotExist, Gt, Lt, Gte, Lte` with
//! `minValues`, intersection and compatibility.
//!
//! A [`Requirement`] is a set of allowed label values: either an explicit set (`In`, or
//! `DoesNotExist` when empty) or the complement of one (`NotIn`, or `Exists` when empty), further
//! narrowed by inclusive integer bounds. `Gt N` is stored as `≥ N+1` and `Lt N` as `≤ N−1`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use karpenter_apis::labels;

/// Requirement operators, as written in Kubernetes and Karpenter objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// Value is one of the listed values.
    In,
    /// Value is none of the listed values (or the label is absent).
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// Integer value strictly greater than the single listed value.
    Gt,
    /// Integer value strictly less than the single listed value.
    Lt,
    /// Integer value ≥ the single listed value.
    Gte,
    /// Integer value ≤ the single listed value.
    Lte,
}

impl Operator {
    /// Parses the operator spelling used in manifests.
    pub fn parse(s: &str) -> Option<Operator> {
        Some(match s {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::Gt,
            "Lt" => Operator::Lt,
            "Gte" => Operator::Gte,
            "Lte" => Operator::Lte,
            _ => return None,
        })
    }

    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
            Operator::Gt => "Gt",
            Operator::Lt => "Lt",
            Operator::Gte => "Gte",
            Operator::Lte => "Lte",
        }
    }
}

/// A requirement as written in an object: key, operator, values, optional minValues.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequirementSpec {
    /// Label key.
    pub key: String,
    /// Operator.
    pub operator: Operator,
    /// Values (one integer for the comparison operators).
    pub values: Vec<String>,
    /// Minimum number of distinct values the instance types of a NodeClaim must offer.
    pub min_values: Option<u32>,
}

impl RequirementSpec {
    /// A spec without minValues.
    pub fn new(key: &str, operator: Operator, values: &[&str]) -> RequirementSpec {
        RequirementSpec {
            key: key.to_string(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
            min_values: None,
        }
    }
}

/// Why a requirement spec was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    /// Unknown operator spelling.
    #[error("requirement {key:?}: unsupported operator {operator:?}")]
    UnsupportedOperator {
        /// Key of the requirement.
        key: String,
        /// The operator text.
        operator: String,
    },
    /// A comparison operator needs exactly one integer value.
    #[error(
        "requirement {key:?}: operator {operator} needs exactly one integer value, got {values:?}"
    )]
    BadComparisonValue {
        /// Key of the requirement.
        key: String,
        /// Operator.
        operator: &'static str,
        /// The values given.
        values: Vec<String>,
    },
    /// `In` with no values.
    #[error("requirement {key:?}: operator In needs at least one value")]
    EmptyIn {
        /// Key of the requirement.
        key: String,
    },
}

impl RequirementError {
    /// Stable short label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            RequirementError::UnsupportedOperator { .. } => "unsupported_operator",
            RequirementError::BadComparisonValue { .. } => "bad_comparison_value",
            RequirementError::EmptyIn { .. } => "empty_in",
        }
    }
}

/// The set of allowed values for one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirement {
    /// `true`: every value except `values`; `false`: exactly `values`.
    complement: bool,
    values: BTreeSet<String>,
    /// Inclusive integer lower bound.
    gte: Option<i64>,
    /// Inclusive integer upper bound.
    lte: Option<i64>,
    /// minValues carried from a NodePool.
    pub min_values: Option<u32>,
}

impl Requirement {
    /// Builds from an operator and values.
    pub fn new(
        key: &str,
        operator: Operator,
        values: &[String],
    ) -> Result<Requirement, RequirementError> {
        let set = || values.iter().cloned().collect::<BTreeSet<_>>();
        let int = |op: &'static str| -> Result<i64, RequirementError> {
            match values {
                [v] => v
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| RequirementError::BadComparisonValue {
                        key: key.to_string(),
                        operator: op,
                        values: values.to_vec(),
                    }),
                _ => Err(RequirementError::BadComparisonValue {
                    key: key.to_string(),
                    operator: op,
                    values: values.to_vec(),
                }),
            }
        };
        let mut r = Requirement::exists();
        match operator {
            Operator::In => {
                if values.is_empty() {
                    return Err(RequirementError::EmptyIn {
                        key: key.to_string(),
                    });
                }
                r.complement = false;
                r.values = set();
            }
            Operator::NotIn => r.values = set(),
            Operator::Exists => {}
            Operator::DoesNotExist => r.complement = false,
            Operator::Gt => r.gte = Some(int("Gt")?.saturating_add(1)),
            Operator::Lt => r.lte = Some(int("Lt")?.saturating_sub(1)),
            Operator::Gte => r.gte = Some(int("Gte")?),
            Operator::Lte => r.lte = Some(int("Lte")?),
        }
        Ok(r)
    }

    /// Any value, label must be present.
    pub fn exists() -> Requirement {
        Requirement {
            complement: true,
            values: BTreeSet::new(),
            gte: None,
            lte: None,
            min_values: None,
        }
    }

    /// Label must be absent.
    pub fn does_not_exist() -> Requirement {
        Requirement {
            complement: false,
            values: BTreeSet::new(),
            gte: None,
            lte: None,
            min_values: None,
        }
    }

    /// Exactly these values.
    pub fn in_values<I, S>(values: I) -> Requirement
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Requirement {
            complement: false,
            values: values.into_iter().map(Into::into).collect(),
            gte: None,
            lte: None,
            min_values: None,
        }
    }

    /// Anything but these values.
    pub fn not_in<I, S>(values: I) -> Requirement
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Requirement {
            complement: true,
            values: values.into_iter().map(Into::into).collect(),
            gte: None,
            lte: None,
            min_values: None,
        }
    }

    fn within_bounds(&self, value: &str) -> bool {
        if self.gte.is_none() && self.lte.is_none() {
            return true;
        }
        match value.parse::<i64>() {
            Ok(v) => self.gte.is_none_or(|lo| v >= lo) && self.lte.is_none_or(|hi| v <= hi),
            Err(_) => false,
        }
    }

    /// Whether `value` is allowed.
    pub fn has(&self, value: &str) -> bool {
        (self.complement != self.values.contains(value)) && self.within_bounds(value)
    }

    /// Whether an absent label satisfies this requirement (NotIn and DoesNotExist).
    pub fn allows_absent(&self) -> bool {
        if self.complement {
            !self.values.is_empty() && self.gte.is_none() && self.lte.is_none()
        } else {
            self.values.is_empty()
        }
    }

    /// Whether a label with `value` (or no label) satisfies this requirement.
    pub fn matches_label(&self, value: Option<&str>) -> bool {
        match value {
            Some(v) => self.has(v),
            None => self.allows_absent(),
        }
    }

    /// The canonical operator of this set.
    pub fn operator(&self) -> Operator {
        match (self.complement, self.values.is_empty()) {
            (false, true) => Operator::DoesNotExist,
            (false, false) => Operator::In,
            (true, true) => {
                if self.gte.is_some() {
                    Operator::Gte
                } else if self.lte.is_some() {
                    Operator::Lte
                } else {
                    Operator::Exists
                }
            }
            (true, false) => Operator::NotIn,
        }
    }

    /// Whether this is an explicit finite set (`In`/`DoesNotExist`).
    pub fn is_finite(&self) -> bool {
        !self.complement
    }

    /// The explicit values (meaningful when [`Requirement::is_finite`]); for complements, the
    /// excluded values.
    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    /// Bounds `(≥, ≤)`.
    pub fn bounds(&self) -> (Option<i64>, Option<i64>) {
        (self.gte, self.lte)
    }

    /// The single allowed value, if exactly one.
    pub fn single_value(&self) -> Option<&str> {
        if !self.complement && self.values.len() == 1 {
            self.values.iter().next().map(String::as_str)
        } else {
            None
        }
    }

    /// Number of allowed values (`usize::MAX`-ish for complements).
    pub fn len(&self) -> usize {
        if self.complement {
            usize::MAX - self.values.len()
        } else {
            self.values.len()
        }
    }

    /// Whether no value is allowed.
    pub fn is_empty(&self) -> bool {
        !self.complement && self.values.is_empty()
    }

    /// The intersection (min_values: the larger of the two).
    pub fn intersection(&self, other: &Requirement) -> Requirement {
        let gte = match (self.gte, other.gte) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let lte = match (self.lte, other.lte) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let min_values = match (self.min_values, other.min_values) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let mut r = match (self.complement, other.complement) {
            (true, true) => Requirement {
                complement: true,
                values: self.values.union(&other.values).cloned().collect(),
                gte,
                lte,
                min_values,
            },
            (false, false) => Requirement {
                complement: false,
                values: self.values.intersection(&other.values).cloned().collect(),
                gte,
                lte,
                min_values,
            },
            (false, true) => Requirement {
                complement: false,
                values: self.values.difference(&other.values).cloned().collect(),
                gte,
                lte,
                min_values,
            },
            (true, false) => Requirement {
                complement: false,
                values: other.values.difference(&self.values).cloned().collect(),
                gte,
                lte,
                min_values,
            },
        };
        if !r.complement && (r.gte.is_some() || r.lte.is_some()) {
            let (lo, hi) = (r.gte, r.lte);
            let probe = Requirement {
                complement: true,
                values: BTreeSet::new(),
                gte: lo,
                lte: hi,
                min_values: None,
            };
            r.values.retain(|v| probe.within_bounds(v));
            r.gte = None;
            r.lte = None;
        }
        if r.complement
            && let (Some(lo), Some(hi)) = (r.gte, r.lte)
            && lo > hi
        {
            // Empty numeric range: nothing is allowed.
            r = Requirement {
                min_values,
                ..Requirement::does_not_exist()
            };
        }
        r
    }

    /// Whether some value is allowed by both.
    pub fn intersects(&self, other: &Requirement) -> bool {
        match (self.complement, other.complement) {
            (false, false) => {
                let (small, big) = if self.values.len() <= other.values.len() {
                    (self, other)
                } else {
                    (other, self)
                };
                small
                    .values
                    .iter()
                    .any(|v| big.has(v) && small.within_bounds(v))
            }
            (false, true) => self
                .values
                .iter()
                .any(|v| other.has(v) && self.within_bounds(v)),
            (true, false) => other
                .values
                .iter()
                .any(|v| self.has(v) && other.within_bounds(v)),
            (true, true) => {
                let lo = match (self.gte, other.gte) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                let hi = match (self.lte, other.lte) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                match (lo, hi) {
                    (Some(lo), Some(hi)) => {
                        if lo > hi {
                            return false;
                        }
                        let width = (i128::from(hi) - i128::from(lo) + 1) as u128;
                        let excluded = self
                            .values
                            .iter()
                            .chain(other.values.iter())
                            .filter_map(|v| v.parse::<i64>().ok())
                            .filter(|v| *v >= lo && *v <= hi)
                            .collect::<BTreeSet<_>>()
                            .len() as u128;
                        width > excluded
                    }
                    _ => true,
                }
            }
        }
    }

    /// Upstream's per-key compatibility: values must overlap, except that two requirements which
    /// both allow absence (NotIn / DoesNotExist) are compatible even when they share no value.
    pub fn compatible_with(&self, other: &Requirement) -> bool {
        self.intersects(other) || (self.allows_absent() && other.allows_absent())
    }

    /// The requirement written back as specs (Gte/Lte like upstream; both bounds ⇒ two entries).
    pub fn to_specs(&self, key: &str) -> Vec<RequirementSpec> {
        let mut out = Vec::new();
        let mk = |operator, values: Vec<String>| RequirementSpec {
            key: key.to_string(),
            operator,
            values,
            min_values: self.min_values,
        };
        if !self.complement {
            if self.values.is_empty() {
                out.push(mk(Operator::DoesNotExist, vec![]));
            } else {
                out.push(mk(Operator::In, self.values.iter().cloned().collect()));
            }
            return out;
        }
        if !self.values.is_empty() {
            out.push(mk(Operator::NotIn, self.values.iter().cloned().collect()));
        }
        if let Some(lo) = self.gte {
            out.push(mk(Operator::Gte, vec![lo.to_string()]));
        }
        if let Some(hi) = self.lte {
            out.push(mk(Operator::Lte, vec![hi.to_string()]));
        }
        if out.is_empty() {
            out.push(mk(Operator::Exists, vec![]));
        }
        out
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vals = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            f.write_str("[")?;
            for (i, v) in self.values.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                f.write_str(v)?;
            }
            f.write_str("]")
        };
        match self.operator() {
            Operator::In => {
                f.write_str("In ")?;
                vals(f)
            }
            Operator::NotIn => {
                f.write_str("NotIn ")?;
                vals(f)?;
                if let Some(lo) = self.gte {
                    write!(f, " Gte {lo}")?;
                }
                if let Some(hi) = self.lte {
                    write!(f, " Lte {hi}")?;
                }
                Ok(())
            }
            Operator::DoesNotExist => f.write_str("DoesNotExist"),
            Operator::Exists => f.write_str("Exists"),
            _ => {
                let mut first = true;
                if let Some(lo) = self.gte {
                    write!(f, "Gte {lo}")?;
                    first = false;
                }
                if let Some(hi) = self.lte {
                    if !first {
                        f.write_str(" ")?;
                    }
                    write!(f, "Lte {hi}")?;
                }
                Ok(())
            }
        }
    }
}

/// A conflict between two requirement sets on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// The key.
    pub key: String,
    /// What the pod (or incoming side) allows.
    pub wanted: String,
    /// What the node side allows (`undefined` when the key is not defined there).
    pub available: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "incompatible requirements, key {}, {} {} not in {}",
            self.key, self.key, self.wanted, self.available
        )
    }
}

/// Requirements keyed by (normalised) label key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirements {
    map: BTreeMap<String, Requirement>,
}

impl Requirements {
    /// No requirements.
    pub fn new() -> Requirements {
        Requirements::default()
    }

    /// From specs; keys are normalised; repeated keys intersect.
    pub fn from_specs(specs: &[RequirementSpec]) -> Result<Requirements, RequirementError> {
        let mut r = Requirements::new();
        for s in specs {
            let key = labels::normalize_label_key(&s.key);
            let mut req = Requirement::new(key, s.operator, &s.values)?;
            req.min_values = s.min_values;
            r.add(key, req);
        }
        Ok(r)
    }

    /// From a label map (each label becomes `In [value]`).
    pub fn from_labels<'a>(
        labels_map: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Requirements {
        let mut r = Requirements::new();
        for (k, v) in labels_map {
            r.add(
                labels::normalize_label_key(k),
                Requirement::in_values([v.clone()]),
            );
        }
        r
    }

    /// Intersects `req` into the entry for `key`. Returns whether anything changed.
    pub fn add(&mut self, key: &str, req: Requirement) -> bool {
        match self.map.get_mut(key) {
            Some(existing) => {
                let merged = existing.intersection(&req);
                if merged == *existing {
                    false
                } else {
                    *existing = merged;
                    true
                }
            }
            None => {
                self.map.insert(key.to_string(), req);
                true
            }
        }
    }

    /// Intersects every entry of `other` into `self`. Returns whether anything changed.
    pub fn add_all(&mut self, other: &Requirements) -> bool {
        let mut changed = false;
        for (k, v) in &other.map {
            changed |= self.add(k, v.clone());
        }
        changed
    }

    /// Builder form of [`Requirements::add`].
    pub fn with(mut self, key: &str, req: Requirement) -> Requirements {
        self.add(key, req);
        self
    }

    /// The requirement for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Requirement> {
        self.map.get(key)
    }

    /// Whether `key` is constrained.
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Removes a key.
    pub fn remove(&mut self, key: &str) -> Option<Requirement> {
        self.map.remove(key)
    }

    /// Iterates `(key, requirement)` in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Requirement)> {
        self.map.iter()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is constrained.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether the value allowed for every shared key overlaps (no "undefined" rule: both sides
    /// simply may not contradict). Used for instance types against NodeClaim requirements.
    pub fn intersects(&self, other: &Requirements) -> Result<(), Incompatibility> {
        let (small, big) = if self.map.len() <= other.map.len() {
            (self, other)
        } else {
            (other, self)
        };
        for (k, a) in &small.map {
            if let Some(b) = big.map.get(k)
                && !a.compatible_with(b)
            {
                let (wanted, available) = if std::ptr::eq(small, self) {
                    (a, b)
                } else {
                    (b, a)
                };
                return Err(Incompatibility {
                    key: k.clone(),
                    wanted: wanted.to_string(),
                    available: available.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Whether a pod's requirements (`incoming`) are compatible with these node-side
    /// requirements: shared keys must overlap; a key the node side does not define is fine when
    /// it is well-known or the pod only excludes values (NotIn / DoesNotExist); a custom key the
    /// pod requires otherwise must be defined by the node side.
    pub fn compatible(&self, incoming: &Requirements) -> Result<(), Incompatibility> {
        for (k, want) in &incoming.map {
            match self.map.get(k) {
                Some(have) => {
                    if !want.compatible_with(have) {
                        return Err(Incompatibility {
                            key: k.clone(),
                            wanted: want.to_string(),
                            available: have.to_string(),
                        });
                    }
                }
                None => {
                    if !(labels::is_well_known(k) || want.allows_absent()) {
                        return Err(Incompatibility {
                            key: k.clone(),
                            wanted: want.to_string(),
                            available: "undefined".to_string(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether a concrete label map satisfies every requirement.
    pub fn matches_labels(
        &self,
        node_labels: &BTreeMap<String, String>,
    ) -> Result<(), Incompatibility> {
        for (k, want) in &self.map {
            let v = node_labels.get(k).map(String::as_str);
            if !want.matches_label(v) {
                return Err(Incompatibility {
                    key: k.clone(),
                    wanted: want.to_string(),
                    available: v.map_or_else(|| "undefined".to_string(), |v| format!("[{v}]")),
                });
            }
        }
        Ok(())
    }

    /// The requirements written back as specs, key order.
    pub fn to_specs(&self) -> Vec<RequirementSpec> {
        self.map.iter().flat_map(|(k, r)| r.to_specs(k)).collect()
    }

    /// Labels implied by single-valued `In` requirements.
    pub fn single_valued_labels(&self) -> BTreeMap<String, String> {
        self.map
            .iter()
            .filter_map(|(k, r)| r.single_value().map(|v| (k.clone(), v.to_string())))
            .collect()
    }
}

impl fmt::Display for Requirements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, r)) in self.map.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k} {r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(op: Operator, vals: &[&str]) -> Requirement {
        Requirement::new(
            "k",
            op,
            &vals.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn membership() {
        let cases: &[(Operator, &[&str], &str, bool)] = &[
            (Operator::In, &["a", "b"], "a", true),
            (Operator::In, &["a", "b"], "c", false),
            (Operator::NotIn, &["a"], "a", false),
            (Operator::NotIn, &["a"], "b", true),
            (Operator::Exists, &[], "x", true),
            (Operator::DoesNotExist, &[], "x", false),
            (Operator::Gt, &["4"], "4", false),
            (Operator::Gt, &["4"], "5", true),
            (Operator::Gt, &["4"], "x", false),
            (Operator::Lt, &["4"], "3", true),
            (Operator::Lt, &["4"], "4", false),
            (Operator::Gte, &["4"], "4", true),
            (Operator::Lte, &["4"], "4", true),
            (Operator::Lte, &["4"], "5", false),
        ];
        for (op, vals, v, want) in cases {
            assert_eq!(req(*op, vals).has(v), *want, "{op:?} {vals:?} {v}");
        }
    }

    #[test]
    fn intersection_and_compatibility() {
        let cases: &[(Requirement, Requirement, bool)] = &[
            (
                req(Operator::In, &["a", "b"]),
                req(Operator::In, &["b", "c"]),
                true,
            ),
            (req(Operator::In, &["a"]), req(Operator::In, &["c"]), false),
            (
                req(Operator::In, &["a"]),
                req(Operator::NotIn, &["a"]),
                false,
            ),
            (
                req(Operator::NotIn, &["a"]),
                req(Operator::NotIn, &["b"]),
                true,
            ),
            (
                req(Operator::DoesNotExist, &[]),
                req(Operator::NotIn, &["b"]),
                true,
            ),
            (
                req(Operator::DoesNotExist, &[]),
                req(Operator::Exists, &[]),
                false,
            ),
            (req(Operator::Gt, &["4"]), req(Operator::Lt, &["6"]), true),
            (req(Operator::Gt, &["4"]), req(Operator::Lt, &["5"]), false),
            (
                req(Operator::Gt, &["4"]),
                req(Operator::In, &["5", "x"]),
                true,
            ),
            (req(Operator::Gt, &["4"]), req(Operator::In, &["3"]), false),
            (req(Operator::Gte, &["4"]), req(Operator::Lte, &["4"]), true),
        ];
        for (a, b, want) in cases {
            assert_eq!(a.compatible_with(b), *want, "{a} ∩ {b}");
            assert_eq!(b.compatible_with(a), *want, "{b} ∩ {a}");
        }
        let i = req(Operator::Gt, &["4"]).intersection(&req(Operator::In, &["5", "3", "x"]));
        assert_eq!(i.single_value(), Some("5"));
    }

    #[test]
    fn undefined_keys() {
        let node = Requirements::new().with("custom", Requirement::in_values(["a"]));
        let zone_pod = Requirements::new().with(labels::ZONE, Requirement::in_values(["z"]));
        assert!(
            node.compatible(&zone_pod).is_ok(),
            "well-known key may be undefined"
        );
        let custom_pod = Requirements::new().with("other", Requirement::in_values(["z"]));
        assert!(
            node.compatible(&custom_pod).is_err(),
            "custom key must be defined"
        );
        let not_in_pod = Requirements::new().with("other", Requirement::not_in(["z"]));
        assert!(
            node.compatible(&not_in_pod).is_ok(),
            "NotIn on undefined custom key is fine"
        );
    }

    #[test]
    fn written_back_like_upstream() {
        let r = Requirements::from_specs(&[
            RequirementSpec::new("n", Operator::Gt, &["2"]),
            RequirementSpec::new("n", Operator::Lt, &["10"]),
            RequirementSpec::new("beta.kubernetes.io/arch", Operator::In, &["amd64"]),
        ])
        .unwrap();
        let specs = r.to_specs();
        assert_eq!(specs[0].key, labels::ARCH);
        assert_eq!(specs[1].operator, Operator::Gte);
        assert_eq!(specs[1].values, vec!["3"]);
        assert_eq!(specs[2].operator, Operator::Lte);
        assert_eq!(specs[2].values, vec!["9"]);
    }
}
