//! Cross-crate test support for karpenter-rs.
//!
//! Owns: the architecture rules (which workspace crate may depend on which, and which external
//! crates the pure crates must never reach), checked by `tests/architecture.rs` against
//! `cargo metadata` and `cargo tree`. Later: end-to-end suites on the embedded cluster.
//!
//! Must never be depended on by a product crate.

use std::collections::{BTreeMap, BTreeSet};

/// Workspace crates that decide without doing I/O. They must not reach a runtime, a client, a
/// metrics registry or a cloud SDK, even transitively.
pub const PURE_CRATES: &[&str] = &[
    "karpenter-apis",
    "karpenter-apimachinery",
    "karpenter-scheduling",
    "karpenter-catalog",
    "karpenter-disruption",
];

/// External crates a pure crate must not depend on, even transitively. A trailing `*` matches a
/// prefix.
pub const FORBIDDEN_IN_PURE: &[&str] = &[
    "tokio",
    "kube-client",
    "kube-runtime",
    "hyper",
    "reqwest",
    "axum",
    "prometheus",
    "tracing",
    "aws-sdk-*",
    "aws-config",
    "aws-smithy-*",
];

/// The only workspace crate allowed to depend (directly or transitively) on the AWS SDK, plus
/// the crates that may reach it through that one.
pub const AWS_SDK_OWNER: &str = "karpenter-aws";

/// Crates allowed to depend on [`AWS_SDK_OWNER`] and therefore reach the SDK through it.
pub const AWS_SDK_REACHERS: &[&str] = &["karpenter-aws", "karpenter", "karpenter-tests"];

/// Which workspace crates each workspace crate may depend on (normal dependencies). Arrows
/// point down only; a crate missing from this table is a failure, so a new crate forces a
/// decision (and an ARCHITECTURE.md update).
pub const ALLOWED_WORKSPACE_EDGES: &[(&str, &[&str])] = &[
    ("karpenter-apis", &[]),
    ("karpenter-apimachinery", &[]),
    ("karpenter-catalog", &["karpenter-apis"]),
    ("karpenter-scheduling", &["karpenter-apis"]),
    (
        "karpenter-disruption",
        &["karpenter-apis", "karpenter-scheduling"],
    ),
    (
        "karpenter-cloudprovider",
        &["karpenter-apis", "karpenter-scheduling"],
    ),
    (
        "karpenter-state",
        &[
            "karpenter-apis",
            "karpenter-apimachinery",
            "karpenter-cloudprovider",
            "karpenter-scheduling",
        ],
    ),
    (
        "karpenter-aws",
        &[
            "karpenter-apis",
            "karpenter-catalog",
            "karpenter-cloudprovider",
            "karpenter-scheduling",
        ],
    ),
    (
        "karpenter-sim",
        &[
            "karpenter-apis",
            "karpenter-apimachinery",
            "karpenter-catalog",
            "karpenter-cloudprovider",
            "karpenter-scheduling",
        ],
    ),
    (
        "karpenter-controllers",
        &[
            "karpenter-apis",
            "karpenter-apimachinery",
            "karpenter-cloudprovider",
            "karpenter-disruption",
            "karpenter-scheduling",
            "karpenter-state",
        ],
    ),
    (
        "karpenter",
        &[
            "karpenter-apis",
            "karpenter-apimachinery",
            "karpenter-aws",
            "karpenter-catalog",
            "karpenter-cloudprovider",
            "karpenter-controllers",
            "karpenter-disruption",
            "karpenter-scheduling",
            "karpenter-sim",
            "karpenter-state",
        ],
    ),
    ("karpenter-tests", &[]),
];

/// One broken architecture rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Violation {
    /// A workspace crate is not listed in [`ALLOWED_WORKSPACE_EDGES`].
    UnknownWorkspaceCrate {
        /// The crate.
        krate: String,
    },
    /// A workspace crate depends on a workspace crate it may not.
    ForbiddenWorkspaceEdge {
        /// The depending crate.
        from: String,
        /// The dependency.
        to: String,
    },
    /// A pure crate reaches a forbidden external crate.
    ForbiddenInPure {
        /// The pure crate.
        krate: String,
        /// The forbidden crate it reaches.
        reaches: String,
    },
    /// A crate other than the AWS provider reaches the AWS SDK.
    AwsSdkOutsideProvider {
        /// The crate.
        krate: String,
        /// The SDK crate it reaches.
        reaches: String,
    },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownWorkspaceCrate { krate } => write!(
                f,
                "{krate}: not in the architecture table (test/src/lib.rs ALLOWED_WORKSPACE_EDGES); decide its edges and document them in ARCHITECTURE.md"
            ),
            Self::ForbiddenWorkspaceEdge { from, to } => {
                write!(f, "{from} -> {to}: forbidden workspace dependency")
            }
            Self::ForbiddenInPure { krate, reaches } => {
                write!(f, "{krate} is pure but reaches {reaches}")
            }
            Self::AwsSdkOutsideProvider { krate, reaches } => write!(
                f,
                "{krate} reaches {reaches}; only {AWS_SDK_OWNER} may depend on the AWS SDK"
            ),
        }
    }
}

/// Errors reading cargo's output.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The JSON did not have the expected shape.
    #[error("cargo metadata: missing or malformed field {0}")]
    Malformed(&'static str),
}

/// Direct normal (non-dev, non-build) dependencies of each workspace member, by package name,
/// read from `cargo metadata --format-version 1 --no-deps` output.
pub fn workspace_edges(
    metadata: &serde_json::Value,
) -> Result<BTreeMap<String, BTreeSet<String>>, MetadataError> {
    let packages = metadata
        .get("packages")
        .and_then(|p| p.as_array())
        .ok_or(MetadataError::Malformed("packages"))?;
    let members: BTreeSet<&str> = packages
        .iter()
        .filter_map(|p| p.get("name").and_then(|n| n.as_str()))
        .collect();
    let mut edges = BTreeMap::new();
    for package in packages {
        let name = package
            .get("name")
            .and_then(|n| n.as_str())
            .ok_or(MetadataError::Malformed("packages[].name"))?;
        let deps = package
            .get("dependencies")
            .and_then(|d| d.as_array())
            .ok_or(MetadataError::Malformed("packages[].dependencies"))?;
        let mut direct = BTreeSet::new();
        for dep in deps {
            let dep_name = dep
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or(MetadataError::Malformed("dependencies[].name"))?;
            let is_normal = dep.get("kind").is_none_or(|k| k.is_null());
            if is_normal && members.contains(dep_name) {
                direct.insert(dep_name.to_string());
            }
        }
        edges.insert(name.to_string(), direct);
    }
    Ok(edges)
}

fn matches_pattern(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Checks the workspace edges against [`ALLOWED_WORKSPACE_EDGES`] and each crate's transitive
/// external dependencies (`reach[crate]`, e.g. from `cargo tree -e normal`) against the purity
/// and AWS-SDK rules.
pub fn check(
    edges: &BTreeMap<String, BTreeSet<String>>,
    reach: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Violation> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED_WORKSPACE_EDGES.iter().copied().collect();
    let mut violations = Vec::new();
    for (krate, deps) in edges {
        let Some(ok) = allowed.get(krate.as_str()) else {
            violations.push(Violation::UnknownWorkspaceCrate {
                krate: krate.clone(),
            });
            continue;
        };
        for dep in deps {
            if !ok.contains(&dep.as_str()) {
                violations.push(Violation::ForbiddenWorkspaceEdge {
                    from: krate.clone(),
                    to: dep.clone(),
                });
            }
        }
    }
    for (krate, reached) in reach {
        for dep in reached {
            if PURE_CRATES.contains(&krate.as_str())
                && FORBIDDEN_IN_PURE.iter().any(|p| matches_pattern(p, dep))
            {
                violations.push(Violation::ForbiddenInPure {
                    krate: krate.clone(),
                    reaches: dep.clone(),
                });
            }
            let is_sdk = ["aws-sdk-*", "aws-config"]
                .iter()
                .any(|p| matches_pattern(p, dep));
            if is_sdk && !AWS_SDK_REACHERS.contains(&krate.as_str()) {
                violations.push(Violation::AwsSdkOutsideProvider {
                    krate: krate.clone(),
                    reaches: dep.clone(),
                });
            }
        }
    }
    violations.sort();
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn check_case(edges: &[(&str, &[&str])], reach: &[(&str, &[&str])], expected: &[Violation]) {
        let edges = edges.iter().map(|(k, v)| (k.to_string(), set(v))).collect();
        let reach = reach.iter().map(|(k, v)| (k.to_string(), set(v))).collect();
        assert_eq!(check(&edges, &reach), expected);
    }

    #[test]
    fn rules() {
        // Clean graph.
        check_case(
            &[
                ("karpenter-apis", &[]),
                ("karpenter-scheduling", &["karpenter-apis"]),
            ],
            &[("karpenter-scheduling", &["serde", "k8s-openapi"])],
            &[],
        );
        // Upward edge.
        check_case(
            &[("karpenter-scheduling", &["karpenter-sim"])],
            &[],
            &[Violation::ForbiddenWorkspaceEdge {
                from: "karpenter-scheduling".into(),
                to: "karpenter-sim".into(),
            }],
        );
        // Unknown crate.
        check_case(
            &[("karpenter-new", &[])],
            &[],
            &[Violation::UnknownWorkspaceCrate {
                krate: "karpenter-new".into(),
            }],
        );
        // Pure crate reaching tokio and a prefix-matched SDK crate.
        check_case(
            &[],
            &[("karpenter-apis", &["tokio", "aws-smithy-types"])],
            &[
                Violation::ForbiddenInPure {
                    krate: "karpenter-apis".into(),
                    reaches: "aws-smithy-types".into(),
                },
                Violation::ForbiddenInPure {
                    krate: "karpenter-apis".into(),
                    reaches: "tokio".into(),
                },
            ],
        );
        // SDK outside the provider; the provider itself and the binary are fine.
        check_case(
            &[],
            &[
                ("karpenter-sim", &["aws-sdk-ec2"]),
                ("karpenter-aws", &["aws-sdk-ec2"]),
                ("karpenter", &["aws-config"]),
            ],
            &[Violation::AwsSdkOutsideProvider {
                krate: "karpenter-sim".into(),
                reaches: "aws-sdk-ec2".into(),
            }],
        );
    }

    #[test]
    fn reads_metadata_edges() {
        let metadata = serde_json::json!({
            "packages": [
                {"name": "karpenter-apis", "dependencies": [
                    {"name": "serde", "kind": null},
                    {"name": "karpenter-tests", "kind": "dev"}
                ]},
                {"name": "karpenter-scheduling", "dependencies": [
                    {"name": "karpenter-apis", "kind": null}
                ]},
                {"name": "karpenter-tests", "dependencies": []}
            ]
        });
        let edges = workspace_edges(&metadata).unwrap();
        assert_eq!(edges["karpenter-apis"], set(&[]));
        assert_eq!(edges["karpenter-scheduling"], set(&["karpenter-apis"]));
        assert!(workspace_edges(&serde_json::json!({})).is_err());
    }
}
