//! Scenarios: what `karpenter simulate` reads, how it is loaded, merged with command-line
//! overrides, and admitted (NodePools and EC2NodeClasses go through the same structural
//! defaulting, OpenAPI and CEL validation the API server applies, from the committed CRDs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use karpenter_apis::ec2nodeclass::EC2NodeClass;
use karpenter_apis::nodepool::NodePool;
use karpenter_apis::validation::CrdValidator;
use serde::Deserialize;
use serde_json::Value;

/// The embedded default scenario (seed 000: eksdemo's NodePool, EC2NodeClass and `inflate`).
pub const DEFAULT_SCENARIO_YAML: &str = include_str!("../../scenarios/default.yaml");

const NODEPOOL_CRD_YAML: &str = include_str!("../../../../crds/karpenter.sh_nodepools.yaml");
const EC2NODECLASS_CRD_YAML: &str =
    include_str!("../../../../crds/karpenter.k8s.aws_ec2nodeclasses.yaml");

/// The API version both Karpenter kinds are admitted at.
const KARPENTER_VERSION: &str = "v1";

/// A loaded, admitted scenario: typed objects plus the steps to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Human name.
    pub name: String,
    /// Optional one-paragraph description.
    pub description: Option<String>,
    /// Where it came from (`embedded default` or a path), plus override files.
    pub source: String,
    /// Zones subnets exist in; `None` = every zone of the catalog's region.
    pub zones: Option<BTreeSet<String>>,
    /// NodePools, defaulted by the CRD schema.
    pub nodepools: Vec<NodePool>,
    /// EC2NodeClasses, defaulted by the CRD schema.
    pub nodeclasses: Vec<EC2NodeClass>,
    /// Deployments whose replicas the steps scale.
    pub deployments: Vec<Deployment>,
    /// DaemonSets every matching node runs.
    pub daemonsets: Vec<DaemonSet>,
    /// Steps, each one provisioning decision.
    pub steps: Vec<Step>,
    /// Things the loader did that the reader should know (ignored kinds, replaced steps).
    pub notes: Vec<String>,
}

/// One step: a set of replica changes, then one provisioning decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Human name.
    pub name: String,
    /// Replica changes applied before solving.
    pub scales: Vec<Scale>,
}

/// Sets a Deployment's replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    /// Namespace of the Deployment.
    pub namespace: String,
    /// Deployment name.
    pub deployment: String,
    /// Desired replicas.
    pub replicas: u32,
}

// ---- the YAML shape ----------------------------------------------------------------------

/// A scenario document: a YAML mapping without `kind`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioDoc {
    name: Option<String>,
    description: Option<String>,
    zones: Option<Vec<String>>,
    #[serde(default)]
    nodepools: Vec<Entry>,
    #[serde(default)]
    nodeclasses: Vec<Entry>,
    #[serde(default)]
    workloads: Vec<Entry>,
    #[serde(default)]
    daemonsets: Vec<Entry>,
    steps: Option<Vec<StepDoc>>,
}

/// A manifest written inline, or a path to a manifest file (relative to the scenario file).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Entry {
    Path(String),
    Inline(Value),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepDoc {
    name: Option<String>,
    scale: OneOrMany<ScaleDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleDoc {
    deployment: String,
    namespace: Option<String>,
    replicas: u32,
}

/// A manifest and where it was read from (for error messages).
#[derive(Debug, Clone)]
struct Manifest {
    origin: String,
    value: Value,
}

impl Manifest {
    fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    fn namespace(&self) -> &str {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
    }
}

/// Everything read from files, before admission.
#[derive(Debug, Default)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    zones: Option<Vec<String>>,
    manifests: Vec<Manifest>,
    steps: Option<Vec<StepDoc>>,
    notes: Vec<String>,
}

fn yaml_documents(text: &str, origin: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc)
            .with_context(|| format!("{origin}: YAML document {} does not parse", i + 1))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// Reads a manifest file: every document must be a Kubernetes object (have `kind`).
fn manifest_file(path: &Path) -> anyhow::Result<Vec<Manifest>> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {origin}"))?;
    yaml_documents(&text, &origin)?
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            if value.get("kind").and_then(Value::as_str).is_none() {
                bail!(
                    "{origin}: document {} has no `kind`: expected a Kubernetes manifest",
                    i + 1
                );
            }
            Ok(Manifest {
                origin: origin.clone(),
                value,
            })
        })
        .collect()
}

/// Parses a scenario text: scenario documents (no `kind`) and manifests (with `kind`), in any
/// mix. `base_dir` resolves relative paths; `None` forbids paths (embedded scenarios).
fn parse_scenario(
    text: &str,
    origin: &str,
    base_dir: Option<&Path>,
) -> anyhow::Result<RawScenario> {
    let mut raw = RawScenario::default();
    for (i, value) in yaml_documents(text, origin)?.into_iter().enumerate() {
        if value.get("kind").is_some() {
            raw.manifests.push(Manifest {
                origin: origin.to_string(),
                value,
            });
            continue;
        }
        let doc: ScenarioDoc = serde_json::from_value(value).with_context(|| {
            format!(
                "{origin}: document {} is neither a manifest (no `kind`) nor a valid scenario \
                 (keys: name, description, zones, nodepools, nodeclasses, workloads, daemonsets, steps)",
                i + 1
            )
        })?;
        raw.name = doc.name.or(raw.name);
        raw.description = doc.description.or(raw.description);
        raw.zones = doc.zones.or(raw.zones);
        if let Some(steps) = doc.steps {
            raw.steps.get_or_insert_with(Vec::new).extend(steps);
        }
        for (list, entries) in [
            ("nodepools", doc.nodepools),
            ("nodeclasses", doc.nodeclasses),
            ("workloads", doc.workloads),
            ("daemonsets", doc.daemonsets),
        ] {
            for (j, entry) in entries.into_iter().enumerate() {
                match entry {
                    Entry::Inline(value) => raw.manifests.push(Manifest {
                        origin: format!("{origin}: {list}[{j}]"),
                        value,
                    }),
                    Entry::Path(path) => {
                        let Some(dir) = base_dir else {
                            bail!("{origin}: {list}[{j}]: file paths are not allowed here");
                        };
                        let path = dir.join(path);
                        raw.manifests.extend(manifest_file(&path)?);
                    }
                }
            }
        }
    }
    Ok(raw)
}

// ---- loading and merging -------------------------------------------------------------------

/// Where the scenario comes from and which files override parts of it.
#[derive(Debug, Clone, Default)]
pub struct ScenarioSource {
    /// A scenario file; `None` = the embedded default.
    pub scenario: Option<PathBuf>,
    /// Files whose NodePools replace the scenario's (EC2NodeClasses replace by name).
    pub nodepool_files: Vec<PathBuf>,
    /// Files whose Deployments replace the scenario's (DaemonSets replace by name).
    pub workload_files: Vec<PathBuf>,
}

/// Loads, merges and admits a scenario. Nothing is half-applied: any invalid object fails the
/// whole load with an error naming the object and field.
pub fn load(source: &ScenarioSource) -> anyhow::Result<Scenario> {
    let (mut raw, mut origin) = match &source.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading scenario {}", path.display()))?;
            let dir = path.parent().unwrap_or(Path::new("."));
            (
                parse_scenario(&text, &path.display().to_string(), Some(dir))?,
                path.display().to_string(),
            )
        }
        None => (
            parse_scenario(DEFAULT_SCENARIO_YAML, "embedded default scenario", None)?,
            "embedded default scenario (seed 000)".to_string(),
        ),
    };
    let mut overrides = Vec::new();
    for path in source.nodepool_files.iter().chain(&source.workload_files) {
        overrides.extend(manifest_file(path)?);
        origin.push_str(&format!(" + {}", path.display()));
    }
    apply_overrides(&mut raw, overrides);
    admit(raw, origin)
}

/// NodePools and Deployments in the overrides replace the whole set of their kind;
/// EC2NodeClasses and DaemonSets replace same-named objects and are added otherwise.
fn apply_overrides(raw: &mut RawScenario, overrides: Vec<Manifest>) {
    for kind in ["NodePool", "Deployment"] {
        if overrides.iter().any(|m| m.kind() == kind) {
            raw.manifests.retain(|m| m.kind() != kind);
        }
    }
    for o in overrides {
        if matches!(o.kind(), "EC2NodeClass" | "DaemonSet") {
            raw.manifests.retain(|m| {
                !(m.kind() == o.kind() && m.name() == o.name() && m.namespace() == o.namespace())
            });
        }
        raw.manifests.push(o);
    }
}

fn validator(crd_yaml: &str, what: &str) -> anyhow::Result<CrdValidator> {
    let crd: CustomResourceDefinition = serde_yaml_ng::from_str(crd_yaml)
        .with_context(|| format!("embedded {what} CRD does not parse"))?;
    CrdValidator::new(&crd).with_context(|| format!("embedded {what} CRD does not compile"))
}

/// Runs `m` through the API server's admission for its CRD and returns the typed object.
fn admit_custom<T: serde::de::DeserializeOwned>(
    validator: &CrdValidator,
    m: &Manifest,
) -> anyhow::Result<T> {
    let admitted = validator
        .admit(KARPENTER_VERSION, &m.value, None)
        .map_err(|errors| {
            anyhow::anyhow!(
                "{}: {}",
                m.origin,
                validator.invalid_message(m.name(), &errors)
            )
        })?;
    serde_json::from_value(admitted.object).with_context(|| {
        format!(
            "{}: {} {:?} passed validation but does not decode",
            m.origin,
            m.kind(),
            m.name()
        )
    })
}

fn decode_builtin<T: serde::de::DeserializeOwned>(m: &Manifest) -> anyhow::Result<T> {
    serde_json::from_value(m.value.clone())
        .with_context(|| format!("{}: {} {:?} is not valid", m.origin, m.kind(), m.name()))
}

fn admit(raw: RawScenario, source: String) -> anyhow::Result<Scenario> {
    let nodepool_validator = validator(NODEPOOL_CRD_YAML, "NodePool")?;
    let nodeclass_validator = validator(EC2NODECLASS_CRD_YAML, "EC2NodeClass")?;
    let mut notes = raw.notes;
    let mut nodepools: Vec<NodePool> = Vec::new();
    let mut nodeclasses: Vec<EC2NodeClass> = Vec::new();
    let mut deployments: Vec<Deployment> = Vec::new();
    let mut daemonsets: Vec<DaemonSet> = Vec::new();
    let mut seen = BTreeSet::new();
    for m in &raw.manifests {
        if !seen.insert((
            m.kind().to_string(),
            m.namespace().to_string(),
            m.name().to_string(),
        )) && matches!(
            m.kind(),
            "NodePool" | "EC2NodeClass" | "Deployment" | "DaemonSet"
        ) {
            bail!(
                "{}: {} {:?} is defined twice in the scenario",
                m.origin,
                m.kind(),
                m.name()
            );
        }
        match m.kind() {
            "NodePool" => nodepools.push(admit_custom(&nodepool_validator, m)?),
            "EC2NodeClass" => nodeclasses.push(admit_custom(&nodeclass_validator, m)?),
            "Deployment" => {
                let d: Deployment = decode_builtin(m)?;
                check_pod_owner(m, d.spec.as_ref().and_then(|s| s.template.spec.as_ref()))?;
                deployments.push(d);
            }
            "DaemonSet" => {
                let d: DaemonSet = decode_builtin(m)?;
                check_pod_owner(m, d.spec.as_ref().and_then(|s| s.template.spec.as_ref()))?;
                daemonsets.push(d);
            }
            other => notes.push(format!(
                "{}: ignored {other} {:?} (simulate reads NodePool, EC2NodeClass, Deployment, DaemonSet)",
                m.origin,
                m.name()
            )),
        }
    }
    if nodepools.is_empty() {
        bail!("{source}: the scenario has no NodePool: nothing could be provisioned");
    }
    let class_names: BTreeSet<&str> = nodeclasses
        .iter()
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    for np in &nodepools {
        let r = &np.spec.template.spec.node_class_ref;
        if !class_names.contains(r.name.as_str()) {
            bail!(
                "NodePool {:?}: spec.template.spec.nodeClassRef names EC2NodeClass {:?}, which the scenario does not define",
                np.metadata.name.as_deref().unwrap_or(""),
                r.name
            );
        }
    }
    let steps = resolve_steps(raw.steps, &deployments, &mut notes)?;
    let zones = raw.zones.map(|z| z.into_iter().collect::<BTreeSet<_>>());
    Ok(Scenario {
        name: raw.name.unwrap_or_else(|| "unnamed scenario".to_string()),
        description: raw.description,
        source,
        zones,
        nodepools,
        nodeclasses,
        deployments,
        daemonsets,
        steps,
        notes,
    })
}

fn check_pod_owner(
    m: &Manifest,
    spec: Option<&k8s_openapi::api::core::v1::PodSpec>,
) -> anyhow::Result<()> {
    if m.name().is_empty() {
        bail!("{}: {}: metadata.name: Required value", m.origin, m.kind());
    }
    if spec.is_none_or(|s| s.containers.is_empty()) {
        bail!(
            "{}: {} {:?}: spec.template.spec.containers: Required value",
            m.origin,
            m.kind(),
            m.name()
        );
    }
    Ok(())
}

fn deployment_key(d: &Deployment) -> (String, String) {
    (
        d.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        d.metadata.name.clone().unwrap_or_default(),
    )
}

/// Turns the step documents into steps, checking every Deployment they name exists. Without
/// steps (or when overrides removed a Deployment the steps name), one step applies every
/// Deployment at its declared replicas.
fn resolve_steps(
    docs: Option<Vec<StepDoc>>,
    deployments: &[Deployment],
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Step>> {
    let by_name: BTreeMap<String, Vec<String>> =
        deployments.iter().fold(BTreeMap::new(), |mut acc, d| {
            let (ns, name) = deployment_key(d);
            acc.entry(name).or_default().push(ns);
            acc
        });
    let declared = || Step {
        name: "apply workloads at their declared replicas".to_string(),
        scales: deployments
            .iter()
            .map(|d| {
                let (namespace, deployment) = deployment_key(d);
                let replicas = d
                    .spec
                    .as_ref()
                    .and_then(|s| s.replicas)
                    .unwrap_or(1)
                    .max(0)
                    .unsigned_abs();
                Scale {
                    namespace,
                    deployment,
                    replicas,
                }
            })
            .collect(),
    };
    let Some(docs) = docs.filter(|d| !d.is_empty()) else {
        return Ok(vec![declared()]);
    };
    let mut steps = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let scales = match doc.scale {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        let mut out = Vec::new();
        for (j, s) in scales.into_iter().enumerate() {
            let namespaces = by_name.get(&s.deployment).cloned().unwrap_or_default();
            let namespace = match (&s.namespace, namespaces.as_slice()) {
                (Some(ns), _) if namespaces.contains(ns) => ns.clone(),
                (None, [only]) => only.clone(),
                (None, [_, _, ..]) => bail!(
                    "steps[{i}].scale[{j}].namespace: Required value: Deployment {:?} exists in several namespaces ({})",
                    s.deployment,
                    namespaces.join(", ")
                ),
                _ => {
                    if deployments.is_empty() {
                        bail!(
                            "steps[{i}].scale[{j}].deployment: Deployment {:?} not found: the scenario has no Deployments",
                            s.deployment
                        );
                    }
                    // Overrides replaced the workloads the steps were written for.
                    notes.push(format!(
                        "steps name Deployment {:?}, which the workloads given do not define: running one step at the declared replicas instead",
                        s.deployment
                    ));
                    return Ok(vec![declared()]);
                }
            };
            out.push(Scale {
                namespace,
                deployment: s.deployment,
                replicas: s.replicas,
            });
        }
        let name = doc.name.unwrap_or_else(|| {
            out.iter()
                .map(|s| format!("scale {} to {}", s.deployment, s.replicas))
                .collect::<Vec<_>>()
                .join(", ")
        });
        steps.push(Step { name, scales: out });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scenario_loads_and_is_defaulted() {
        let s = load(&ScenarioSource::default()).unwrap();
        assert_eq!(s.nodepools.len(), 1);
        assert_eq!(s.nodeclasses.len(), 1);
        assert_eq!(s.deployments.len(), 1);
        assert_eq!(s.daemonsets.len(), 2);
        let replicas: Vec<u32> = s.steps.iter().map(|st| st.scales[0].replicas).collect();
        assert_eq!(replicas, vec![10, 20, 5]);
        // Budgets are a CRD default the seed does not write.
        assert!(s.nodepools[0].spec.disruption.budgets.is_some());
    }
}
