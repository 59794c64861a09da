//! The committed CRDs (`crds/*.yaml`) admitting real manifests: every `karpenter.sh/v1` and
//! `karpenter.k8s.aws/v1` document in the install guides under `shared/seeds` is accepted and
//! defaulted exactly as upstream defaults it, and a table of invalid manifests is rejected with
//! the field path and message the apiserver would give.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of a test binary may panic

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use karpenter_apis::validation::CrdValidator;
use serde_json::{Value, json};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_crd(file: &str) -> CrdValidator {
    let path = manifest_dir().join("../../crds").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let crd: CustomResourceDefinition =
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    CrdValidator::new(&crd).unwrap_or_else(|e| panic!("{file}: every rule must compile: {e}"))
}

struct Validators {
    nodepool: CrdValidator,
    nodeclaim: CrdValidator,
    ec2nodeclass: CrdValidator,
}

impl Validators {
    fn load() -> Self {
        Self {
            nodepool: load_crd("karpenter.sh_nodepools.yaml"),
            nodeclaim: load_crd("karpenter.sh_nodeclaims.yaml"),
            ec2nodeclass: load_crd("karpenter.k8s.aws_ec2nodeclasses.yaml"),
        }
    }

    fn for_object(&self, object: &Value) -> &CrdValidator {
        match object.get("kind").and_then(Value::as_str) {
            Some("NodePool") => &self.nodepool,
            Some("NodeClaim") => &self.nodeclaim,
            Some("EC2NodeClass") => &self.ec2nodeclass,
            other => panic!("no CRD for kind {other:?}"),
        }
    }
}

// ---- seeds ------------------------------------------------------------------------------------

/// Values for the `${VAR}` placeholders the install guides pipe through `envsubst`.
const SUBSTITUTIONS: &[(&str, &str)] = &[
    ("CLUSTER_NAME", "blue"),
    ("ARM_AMI_ID", "ami-0123456789abcdef0"),
    ("AMD_AMI_ID", "ami-0fedcba9876543210"),
    ("GPU_AMI_ID", "ami-0aaaabbbbccccdddd"),
    ("K8S_VERSION", "1.34"),
    ("KARPENTER_NAMESPACE", "kube-system"),
    ("KARPENTER_VERSION", "1.14.1"),
    ("ALIAS_VERSION", "v20250101"),
    ("AWS_PARTITION", "aws"),
    ("AWS_ACCOUNT_ID", "123456789012"),
    ("AWS_DEFAULT_REGION", "us-west-2"),
];

fn substitute(text: &str) -> String {
    let mut out = text.to_owned();
    for (name, value) in SUBSTITUTIONS {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    assert!(!out.contains("${"), "unsubstituted placeholder in:\n{out}");
    out
}

/// The YAML documents in `text` (markdown, shell heredocs, dry-run output) whose apiVersion
/// is `karpenter.sh/v1` or `karpenter.k8s.aws/v1`: each starts at such an `apiVersion:` line
/// and runs to the next `---`, code fence or end of text.
fn extract_v1_documents(text: &str) -> Vec<String> {
    let mut documents = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        let trimmed = line.trim_end();
        let starts = trimmed == "apiVersion: karpenter.sh/v1"
            || trimmed == "apiVersion: karpenter.k8s.aws/v1";
        let ends = trimmed.starts_with("---")
            || trimmed.trim_start().starts_with("```")
            || trimmed == "EOF";
        if let Some(lines) = current.as_mut() {
            if ends || starts {
                documents.push(lines.join("\n"));
                current = None;
            } else {
                lines.push(line);
            }
        }
        if starts {
            current = Some(vec![line]);
        }
    }
    if let Some(lines) = current {
        documents.push(lines.join("\n"));
    }
    documents
}

fn seed_documents() -> Vec<(String, Value)> {
    let dir = manifest_dir().join("../../../shared/seeds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut documents = Vec::new();
    for file in &files {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (i, doc) in extract_v1_documents(&text).into_iter().enumerate() {
            let value: Value = serde_yaml_ng::from_str(&substitute(&doc))
                .unwrap_or_else(|e| panic!("{} document {i}: {e}\n{doc}", file.display()));
            documents.push((format!("{} #{i}", file_name(file)), value));
        }
    }
    documents
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn seed_manifests_are_accepted_and_defaulted_like_upstream() {
    let validators = Validators::load();
    let documents = seed_documents();
    let kinds: Vec<&str> = documents
        .iter()
        .filter_map(|(_, d)| d.get("kind").and_then(Value::as_str))
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "NodePool").count(),
        2,
        "NodePools found: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "EC2NodeClass").count(),
        2,
        "EC2NodeClasses found: {kinds:?}"
    );
    for (name, document) in &documents {
        let validator = validators.for_object(document);
        let admitted = validator
            .admit("v1", document, None)
            .unwrap_or_else(|e| panic!("{name}: {}", validator.invalid_message("default", &e)));
        assert!(
            admitted.unknown_fields.is_empty(),
            "{name}: pruned {:?}",
            admitted.unknown_fields
        );
        let object = &admitted.object;
        match document["kind"].as_str() {
            Some("NodePool") => {
                assert_eq!(
                    object.pointer("/spec/disruption/budgets"),
                    Some(&json!([{"nodes": "10%"}])),
                    "{name}"
                );
                assert_eq!(
                    object.pointer("/spec/disruption/consolidateAfter"),
                    Some(&json!("1m")),
                    "{name}"
                );
                assert_eq!(
                    object.pointer("/spec/disruption/consolidationPolicy"),
                    Some(&json!("WhenEmptyOrUnderutilized")),
                    "{name}"
                );
                assert_eq!(
                    object.pointer("/spec/template/spec/expireAfter"),
                    Some(&json!("720h")),
                    "{name}"
                );
                assert_eq!(
                    object.pointer("/spec/template/spec/nodeClassRef/group"),
                    Some(&json!("karpenter.k8s.aws"))
                );
                // Nothing else was added: the requirements come through untouched.
                assert_eq!(
                    object.pointer("/spec/template/spec/requirements"),
                    document.pointer("/spec/template/spec/requirements")
                );
            }
            Some("EC2NodeClass") => {
                assert_eq!(
                    object.pointer("/spec/metadataOptions"),
                    Some(&json!({
                        "httpEndpoint": "enabled",
                        "httpProtocolIPv6": "disabled",
                        "httpPutResponseHopLimit": 1,
                        "httpTokens": "required"
                    })),
                    "{name}"
                );
                assert_eq!(
                    object.pointer("/spec/amiFamily"),
                    Some(&json!("AL2")),
                    "{name}"
                );
                assert_eq!(
                    object.pointer("/spec/blockDeviceMappings"),
                    None,
                    "{name}: no CRD default for BDMs"
                );
            }
            other => panic!("{name}: unexpected kind {other:?}"),
        }
    }
}

#[test]
fn defaults_for_a_minimal_nodepool_and_nodeclaim() {
    let validators = Validators::load();
    let mut pool = nodepool_object();
    if let Some(spec) = pool.pointer_mut("/spec").and_then(Value::as_object_mut) {
        spec.remove("disruption");
    }
    if let Some(spec) = pool
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
    {
        spec.remove("expireAfter");
    }
    let admitted = validators
        .nodepool
        .admit("v1", &pool, None)
        .expect("minimal NodePool is valid");
    assert_eq!(
        admitted.object.pointer("/spec/disruption"),
        Some(
            &json!({"budgets": [{"nodes": "10%"}], "consolidateAfter": "0s", "consolidationPolicy": "WhenEmptyOrUnderutilized"})
        )
    );
    assert_eq!(
        admitted.object.pointer("/spec/template/spec/expireAfter"),
        Some(&json!("720h"))
    );
    let claim = validators
        .nodeclaim
        .admit("v1", &nodeclaim_object(), None)
        .expect("NodeClaim is valid");
    assert_eq!(
        claim.object.pointer("/spec/expireAfter"),
        Some(&json!("720h"))
    );
}

// ---- invalid manifests ----------------------------------------------------------------------

fn nodepool_object() -> Value {
    json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": "default"},
        "spec": {
            "template": {
                "metadata": {"labels": {"team": "blue"}},
                "spec": {
                    "requirements": [
                        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"]}
                    ],
                    "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                    "expireAfter": "720h"
                }
            },
            "limits": {"cpu": 1000},
            "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "1m"}
        }
    })
}

fn nodeclaim_object() -> Value {
    json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {"name": "default-abcde", "labels": {"karpenter.sh/nodepool": "default"}},
        "spec": {
            "requirements": [
                {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["default"]},
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large", "m5.xlarge"], "minValues": 2}
            ],
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}
        }
    })
}

fn ec2nodeclass_object() -> Value {
    json!({
        "apiVersion": "karpenter.k8s.aws/v1",
        "kind": "EC2NodeClass",
        "metadata": {"name": "default"},
        "spec": {
            "amiFamily": "AL2023",
            "role": "KarpenterNodeRole-blue",
            "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": "blue"}}],
            "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": "blue"}}],
            "amiSelectorTerms": [{"id": "ami-0123456789abcdef0"}]
        }
    })
}

struct Case {
    name: &'static str,
    object: Value,
    old: Option<Value>,
    errors: Vec<(String, String)>,
    pruned: Vec<String>,
}

fn nodepool(name: &'static str) -> Case {
    Case {
        name,
        object: nodepool_object(),
        old: None,
        errors: Vec::new(),
        pruned: Vec::new(),
    }
}

fn nodeclaim(name: &'static str) -> Case {
    Case {
        object: nodeclaim_object(),
        ..nodepool(name)
    }
}

fn ec2nodeclass(name: &'static str) -> Case {
    Case {
        object: ec2nodeclass_object(),
        ..nodepool(name)
    }
}

const REQ0: &str = "/spec/template/spec/requirements/0";

impl Case {
    /// Sets the value at JSON pointer `pointer`, creating objects along the way.
    fn set(mut self, pointer: &str, value: Value) -> Self {
        let mut target = &mut self.object;
        for token in pointer.split('/').skip(1) {
            let token = token.replace("~1", "/").replace("~0", "~");
            target = match target {
                Value::Array(items) => {
                    let index: usize = token.parse().expect("array index");
                    if index == items.len() {
                        items.push(Value::Null);
                    }
                    &mut items[index]
                }
                other => {
                    if !other.is_object() {
                        *other = json!({});
                    }
                    other
                        .as_object_mut()
                        .expect("object")
                        .entry(token)
                        .or_insert(Value::Null)
                }
            };
        }
        *target = value;
        self
    }

    /// Removes the field at JSON pointer `pointer`.
    fn remove(mut self, pointer: &str) -> Self {
        let (parent, field) = pointer.rsplit_once('/').expect("pointer has a parent");
        if let Some(object) = self
            .object
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
        {
            object.remove(field);
        }
        self
    }

    /// Makes the admission an update: the object as built so far is the stored one.
    fn stored(mut self) -> Self {
        self.old = Some(self.object.clone());
        self
    }

    /// Expects an error at `path` whose text contains `fragment`.
    fn rejects(mut self, path: &str, fragment: &str) -> Self {
        self.errors.push((path.to_owned(), fragment.to_owned()));
        self
    }

    /// Expects the object to be accepted with `path` pruned as unknown.
    fn prunes(mut self, path: &str) -> Self {
        self.pruned.push(path.to_owned());
        self
    }
}

/// Admits the case: with expected errors it must be rejected with each of them; otherwise it
/// must be accepted, pruning exactly the expected unknown fields.
fn check(validators: &Validators, case: Case) {
    let name = case.name;
    let validator = validators.for_object(&case.object);
    let result = validator.admit("v1", &case.object, case.old.as_ref());
    if case.errors.is_empty() {
        let admitted = result.unwrap_or_else(|e| panic!("{name}: expected acceptance, got {e}"));
        assert_eq!(
            admitted.unknown_fields, case.pruned,
            "{name}: pruned fields"
        );
        return;
    }
    let errors = match result {
        Ok(admitted) => panic!("{name}: expected rejection, accepted {}", admitted.object),
        Err(errors) => errors,
    };
    for (path, fragment) in &case.errors {
        assert!(
            errors.contains(path, fragment),
            "{name}: no error at {path} containing {fragment:?}; got: {errors}"
        );
    }
}

#[test]
fn invalid_nodepools_are_rejected_with_the_apiserver_errors() {
    let v = Validators::load();
    let req = "spec.template.spec.requirements";
    let cases = vec![
        nodepool("unknown operator").set(&format!("{REQ0}/operator"), json!("Inn")).rejects(
            "spec.template.spec.requirements[0].operator",
            r#"spec.template.spec.requirements[0].operator: Unsupported value: "Inn": supported values: "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Gte", "Lte""#,
        ),
        nodepool("Gt with a non-integer")
            .set(REQ0, json!({"key": "karpenter.k8s.aws/instance-generation", "operator": "Gt", "values": ["two"]}))
            .rejects(req, r#"spec.template.spec.requirements: Invalid value: "array": type conversion error from 'string' to 'int' evaluating rule: requirements operator 'Gt', 'Lt', 'Gte', or 'Lte' must have a single positive integer value"#),
        nodepool("Gt with two values")
            .set(REQ0, json!({"key": "karpenter.k8s.aws/instance-generation", "operator": "Gt", "values": ["2", "3"]}))
            .rejects(req, r#"spec.template.spec.requirements: Invalid value: "array": requirements operator 'Gt', 'Lt', 'Gte', or 'Lte' must have a single positive integer value"#),
        nodepool("Lt with a negative value")
            .set(REQ0, json!({"key": "karpenter.k8s.aws/instance-cpu", "operator": "Lt", "values": ["-1"]}))
            .rejects(req, "must have a single positive integer value"),
        nodepool("In with no values")
            .set(&format!("{REQ0}/values"), json!([]))
            .rejects(req, "requirements with operator 'In' must have a value defined"),
        nodepool("In without values at all")
            .remove(&format!("{REQ0}/values"))
            .rejects(req, "requirements with operator 'In' must have a value defined"),
        nodepool("minValues above the number of values")
            .set(&format!("{REQ0}/minValues"), json!(2))
            .rejects(req, "requirements with 'minValues' must have at least that many values specified in the 'values' field"),
        nodepool("minValues 0")
            .set(&format!("{REQ0}/minValues"), json!(0))
            .rejects("spec.template.spec.requirements[0].minValues", "should be greater than or equal to 1"),
        nodepool("minValues 51")
            .set(&format!("{REQ0}/minValues"), json!(51))
            .rejects("spec.template.spec.requirements[0].minValues", "should be less than or equal to 50"),
        nodepool("restricted karpenter.sh requirement key")
            .set(&format!("{REQ0}/key"), json!("karpenter.sh/foo"))
            .rejects("spec.template.spec.requirements[0].key", r#"label domain "karpenter.sh" is restricted"#),
        nodepool("hostname requirement key")
            .set(&format!("{REQ0}/key"), json!("kubernetes.io/hostname"))
            .rejects("spec.template.spec.requirements[0].key", r#"label "kubernetes.io/hostname" is restricted"#),
        nodepool("nodepool requirement key")
            .set(&format!("{REQ0}/key"), json!("karpenter.sh/nodepool"))
            .rejects("spec.template.spec.requirements[0].key", r#"label "karpenter.sh/nodepool" is restricted"#),
        nodepool("restricted karpenter.k8s.aws requirement key")
            .set(&format!("{REQ0}/key"), json!("karpenter.k8s.aws/made-up"))
            .rejects("spec.template.spec.requirements[0].key", r#"label domain "karpenter.k8s.aws" is restricted"#),
        nodepool("bad requirement key syntax")
            .set(&format!("{REQ0}/key"), json!("bad key!"))
            .rejects("spec.template.spec.requirements[0].key", "should match"),
        nodepool("restricted template label domain")
            .set("/spec/template/metadata/labels/karpenter.sh~1foo", json!("x"))
            .rejects("spec.template.metadata.labels", r#"label domain "karpenter.sh" is restricted"#),
        nodepool("hostname template label")
            .set("/spec/template/metadata/labels/kubernetes.io~1hostname", json!("x"))
            .rejects("spec.template.metadata.labels", r#"label "kubernetes.io/hostname" is restricted"#),
        nodepool("nodepool template label")
            .set("/spec/template/metadata/labels/karpenter.sh~1nodepool", json!("x"))
            .rejects("spec.template.metadata.labels", r#"label "karpenter.sh/nodepool" is restricted"#),
        nodepool("label value too long")
            .set("/spec/template/metadata/labels/team", json!("x".repeat(64)))
            .rejects("spec.template.metadata.labels.team", "Too long: may not be more than 63 bytes"),
        nodepool("label value bad pattern")
            .set("/spec/template/metadata/labels/team", json!("-blue"))
            .rejects("spec.template.metadata.labels.team", "should match"),
        nodepool("budget of 110%")
            .set("/spec/disruption/budgets", json!([{"nodes": "110%"}]))
            .rejects("spec.disruption.budgets[0].nodes", r#"spec.disruption.budgets[0].nodes: Invalid value: "110%": spec.disruption.budgets[0].nodes in body should match"#),
        nodepool("budget schedule without duration")
            .set("/spec/disruption/budgets", json!([{"nodes": "10%", "schedule": "@daily"}]))
            .rejects("spec.disruption.budgets", r#"spec.disruption.budgets: Invalid value: "array": 'schedule' must be set with 'duration'"#),
        nodepool("budget with an unknown reason")
            .set("/spec/disruption/budgets", json!([{"nodes": "10%", "reasons": ["Bored"]}]))
            .rejects("spec.disruption.budgets[0].reasons[0]", r#"Unsupported value: "Bored": supported values: "Underutilized", "Empty", "Drifted""#),
        nodepool("budget duration in seconds")
            .set("/spec/disruption/budgets", json!([{"nodes": "10%", "schedule": "@daily", "duration": "30s"}]))
            .rejects("spec.disruption.budgets[0].duration", "should match"),
        nodepool("expireAfter in days")
            .set("/spec/template/spec/expireAfter", json!("10d"))
            .rejects("spec.template.spec.expireAfter", r#"Invalid value: "10d": spec.template.spec.expireAfter in body should match"#),
        nodepool("consolidateAfter with a bad unit")
            .set("/spec/disruption/consolidateAfter", json!("1x"))
            .rejects("spec.disruption.consolidateAfter", "should match"),
        nodepool("unknown consolidation policy")
            .set("/spec/disruption/consolidationPolicy", json!("Sometimes"))
            .rejects("spec.disruption.consolidationPolicy", "Unsupported value: \"Sometimes\""),
        nodepool("weight 0")
            .set("/spec/weight", json!(0))
            .rejects("spec.weight", "spec.weight: Invalid value: 0: spec.weight in body should be greater than or equal to 1"),
        nodepool("weight 101")
            .set("/spec/weight", json!(101))
            .rejects("spec.weight", "spec.weight in body should be less than or equal to 100"),
        nodepool("taint with a bad effect")
            .set("/spec/template/spec/taints", json!([{"key": "dedicated", "value": "gpu", "effect": "NoWay"}]))
            .rejects(
                "spec.template.spec.taints[0].effect",
                r#"Unsupported value: "NoWay": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute""#,
            ),
        nodepool("nodeClassRef without a name")
            .remove("/spec/template/spec/nodeClassRef/name")
            .rejects("spec.template.spec.nodeClassRef.name", "spec.template.spec.nodeClassRef.name: Required value"),
        nodepool("nodeClassRef with an empty group")
            .set("/spec/template/spec/nodeClassRef/group", json!(""))
            .rejects("spec.template.spec.nodeClassRef.group", "group may not be empty"),
        nodepool("missing requirements")
            .remove("/spec/template/spec/requirements")
            .rejects("spec.template.spec.requirements", "Required value"),
        nodepool("limits must be quantities")
            .set("/spec/limits/cpu", json!("lots"))
            .rejects("spec.limits.cpu", "should match"),
        nodepool("weight on a static NodePool")
            .set("/spec/replicas", json!(2))
            .set("/spec/weight", json!(10))
            .remove("/spec/limits")
            .rejects("spec", "'weight' is not supported on static NodePools"),
        nodepool("NodePool name must be a DNS subdomain")
            .set("/metadata/name", json!("Default"))
            .rejects("metadata.name", "a lowercase RFC 1123 subdomain"),
        nodepool("unknown field in spec is pruned").set("/spec/foo", json!("bar")).prunes("spec.foo"),
        nodepool("unknown field in a requirement is pruned").set(&format!("{REQ0}/valuez"), json!(["x"])).prunes("spec.template.spec.requirements[0].valuez"),
        // Transition rules.
        nodepool("nodeClassRef group change")
            .stored()
            .set("/spec/template/spec/nodeClassRef/group", json!("karpenter.kwok.sh"))
            .rejects("spec.template.spec.nodeClassRef", r#"spec.template.spec.nodeClassRef: Invalid value: "object": nodeClassRef.group is immutable"#),
        nodepool("nodeClassRef kind change")
            .stored()
            .set("/spec/template/spec/nodeClassRef/kind", json!("KWOKNodeClass"))
            .rejects("spec.template.spec.nodeClassRef", "nodeClassRef.kind is immutable"),
        nodepool("nodeClassRef name change is allowed").stored().set("/spec/template/spec/nodeClassRef/name", json!("other")),
        nodepool("static to dynamic transition")
            .set("/spec/replicas", json!(2))
            .remove("/spec/limits")
            .stored()
            .remove("/spec/replicas")
            .rejects("spec", "Cannot transition NodePool between static (replicas set) and dynamic (replicas unset) provisioning modes"),
    ];
    assert!(cases.len() >= 30);
    for case in cases {
        check(&v, case);
    }
}

#[test]
fn invalid_nodeclaims_are_rejected() {
    let v = Validators::load();
    let cases = vec![
        nodeclaim("valid NodeClaim may require karpenter.sh/nodepool"),
        nodeclaim("spec change rejected")
            .stored()
            .set(
                "/spec/taints",
                json!([{"key": "a", "effect": "NoSchedule"}]),
            )
            .rejects(
                "spec",
                r#"spec: Invalid value: "object": spec is immutable"#,
            ),
        nodeclaim("metadata change accepted")
            .stored()
            .set("/metadata/labels/extra", json!("x")),
        nodeclaim("status change accepted")
            .stored()
            .set("/status/providerID", json!("aws:///us-west-2a/i-0123")),
        nodeclaim("hostname requirement still forbidden")
            .set("/spec/requirements/0/key", json!("kubernetes.io/hostname"))
            .rejects(
                "spec.requirements[0].key",
                r#"label "kubernetes.io/hostname" is restricted"#,
            ),
        nodeclaim("minValues above values")
            .set("/spec/requirements/1/minValues", json!(3))
            .rejects(
                "spec.requirements",
                "requirements with 'minValues' must have at least that many values",
            ),
    ];
    for case in cases {
        check(&v, case);
    }
}

#[test]
fn invalid_ec2nodeclasses_are_rejected_with_the_apiserver_errors() {
    let v = Validators::load();
    let many_terms: Vec<Value> = (0..31)
        .map(|i| json!({"id": format!("subnet-{i:08}")}))
        .collect();
    let cases = vec![
        ec2nodeclass("valid EC2NodeClass"),
        ec2nodeclass("alias alone, no amiFamily").set("/spec/amiSelectorTerms", json!([{"alias": "al2023@latest"}])).remove("/spec/amiFamily"),
        ec2nodeclass("both role and instanceProfile")
            .set("/spec/instanceProfile", json!("KarpenterNodeInstanceProfile"))
            .rejects("spec", r#"spec: Invalid value: "object": must specify exactly one of ['role', 'instanceProfile']"#),
        ec2nodeclass("neither role nor instanceProfile")
            .remove("/spec/role")
            .rejects("spec", "must specify exactly one of ['role', 'instanceProfile']"),
        ec2nodeclass("empty role")
            .set("/spec/role", json!(""))
            .rejects("spec.role", "role cannot be empty"),
        ec2nodeclass("alias with another term")
            .set("/spec/amiSelectorTerms", json!([{"alias": "al2023@latest"}, {"tags": {"team": "blue"}}]))
            .rejects("spec.amiSelectorTerms", "'alias' is mutually exclusive, cannot be set with a combination of other amiSelectorTerms"),
        ec2nodeclass("alias combined with id in one term")
            .set("/spec/amiSelectorTerms", json!([{"alias": "al2023@latest", "id": "ami-0123"}]))
            .rejects("spec.amiSelectorTerms", "'alias' is mutually exclusive, cannot be set with a combination of other fields in amiSelectorTerms"),
        ec2nodeclass("alias with an unknown family")
            .set("/spec/amiSelectorTerms", json!([{"alias": "ubuntu@latest"}]))
            .remove("/spec/amiFamily")
            .rejects("spec.amiSelectorTerms[0].alias", "family is not supported, must be one of the following: 'al2', 'al2023', 'bottlerocket', 'windows2019', 'windows2022', 'windows2025'"),
        ec2nodeclass("alias without a version")
            .set("/spec/amiSelectorTerms", json!([{"alias": "al2023"}]))
            .rejects("spec.amiSelectorTerms[0].alias", "'alias' is improperly formatted, must match the format 'family@version'"),
        ec2nodeclass("windows alias pinned to a version")
            .set("/spec/amiSelectorTerms", json!([{"alias": "windows2022@v20240101"}]))
            .remove("/spec/amiFamily")
            .rejects("spec.amiSelectorTerms[0].alias", "windows families may only specify version 'latest'"),
        ec2nodeclass("amiFamily disagreeing with the alias")
            .set("/spec/amiSelectorTerms", json!([{"alias": "bottlerocket@latest"}]))
            .rejects("spec", "if set, amiFamily must be 'Bottlerocket' or 'Custom' when using a Bottlerocket alias"),
        ec2nodeclass("amiFamily missing without an alias")
            .remove("/spec/amiFamily")
            .rejects("spec", "must specify amiFamily if amiSelectorTerms does not contain an alias"),
        ec2nodeclass("unknown amiFamily")
            .set("/spec/amiFamily", json!("Ubuntu"))
            .rejects("spec.amiFamily", "Unsupported value: \"Ubuntu\""),
        ec2nodeclass("empty subnetSelectorTerms")
            .set("/spec/subnetSelectorTerms", json!([]))
            .rejects("spec.subnetSelectorTerms", "subnetSelectorTerms cannot be empty"),
        ec2nodeclass("subnet term with neither tags nor id")
            .set("/spec/subnetSelectorTerms", json!([{}]))
            .rejects("spec.subnetSelectorTerms", "expected at least one, got none, ['tags', 'id']"),
        ec2nodeclass("subnet id with a bad pattern")
            .set("/spec/subnetSelectorTerms", json!([{"id": "sn-123"}]))
            .rejects("spec.subnetSelectorTerms[0].id", r#"Invalid value: "sn-123": spec.subnetSelectorTerms[0].id in body should match"#),
        ec2nodeclass("security group term with neither tags, id nor name")
            .set("/spec/securityGroupSelectorTerms", json!([{}]))
            .rejects("spec.securityGroupSelectorTerms", "expected at least one, got none, ['tags', 'id', 'name']"),
        ec2nodeclass("more than 30 subnet terms")
            .set("/spec/subnetSelectorTerms", Value::Array(many_terms))
            .rejects("spec.subnetSelectorTerms", "spec.subnetSelectorTerms: Too many: 31: must have at most 30 items"),
        ec2nodeclass("empty tag value in a selector")
            .set("/spec/subnetSelectorTerms", json!([{"tags": {"karpenter.sh/discovery": ""}}]))
            .rejects("spec.subnetSelectorTerms[0].tags", "empty tag keys or values aren't supported"),
        ec2nodeclass("restricted kubernetes.io/cluster tag")
            .set("/spec/tags", json!({"kubernetes.io/cluster/foo": "owned"}))
            .rejects("spec.tags", "tag contains a restricted tag matching kubernetes.io/cluster/"),
        ec2nodeclass("restricted karpenter.sh/nodepool tag")
            .set("/spec/tags", json!({"karpenter.sh/nodepool": "default"}))
            .rejects("spec.tags", "tag contains a restricted tag matching karpenter.sh/nodepool"),
        ec2nodeclass("restricted eks cluster name tag")
            .set("/spec/tags", json!({"eks:eks-cluster-name": "blue"}))
            .rejects("spec.tags", "tag contains a restricted tag matching eks:eks-cluster-name"),
        ec2nodeclass("httpTokens maybe")
            .set("/spec/metadataOptions", json!({"httpTokens": "maybe"}))
            .rejects("spec.metadataOptions.httpTokens", r#"Unsupported value: "maybe": supported values: "required", "optional""#),
        ec2nodeclass("hop limit 0")
            .set("/spec/metadataOptions", json!({"httpPutResponseHopLimit": 0}))
            .rejects("spec.metadataOptions.httpPutResponseHopLimit", "should be greater than or equal to 1"),
        ec2nodeclass("hop limit 65")
            .set("/spec/metadataOptions", json!({"httpPutResponseHopLimit": 65}))
            .rejects("spec.metadataOptions.httpPutResponseHopLimit", "should be less than or equal to 64"),
        ec2nodeclass("two root volumes")
            .set(
                "/spec/blockDeviceMappings",
                json!([
                    {"deviceName": "/dev/xvda", "rootVolume": true, "ebs": {"volumeSize": "20Gi"}},
                    {"deviceName": "/dev/xvdb", "rootVolume": true, "ebs": {"volumeSize": "100Gi"}}
                ]),
            )
            .rejects("spec.blockDeviceMappings", "must have only one blockDeviceMappings with rootVolume"),
        ec2nodeclass("EBS volume without size or snapshot")
            .set("/spec/blockDeviceMappings", json!([{"deviceName": "/dev/xvda", "ebs": {"volumeType": "gp3"}}]))
            .rejects("spec.blockDeviceMappings[0].ebs", "snapshotID or volumeSize must be defined"),
        ec2nodeclass("unknown volume type")
            .set("/spec/blockDeviceMappings", json!([{"deviceName": "/dev/xvda", "ebs": {"volumeSize": "20Gi", "volumeType": "gp9"}}]))
            .rejects("spec.blockDeviceMappings[0].ebs.volumeType", "Unsupported value: \"gp9\""),
        ec2nodeclass("kubelet GC thresholds inverted")
            .set("/spec/kubelet", json!({"imageGCHighThresholdPercent": 50, "imageGCLowThresholdPercent": 60}))
            .rejects("spec.kubelet", "imageGCHighThresholdPercent must be greater than imageGCLowThresholdPercent"),
        ec2nodeclass("unknown field in spec is pruned").set("/spec/amiFamilly", json!("AL2")).prunes("spec.amiFamilly"),
    ];
    assert!(cases.len() >= 25);
    for case in cases {
        check(&v, case);
    }
}

#[test]
fn rejection_message_reads_like_kubectl() {
    let v = Validators::load();
    let object = nodepool_object();
    let mut bad = object.clone();
    if let Some(op) = bad.pointer_mut("/spec/template/spec/requirements/0/operator") {
        *op = json!("Inn");
    }
    let errors = v
        .nodepool
        .admit("v1", &bad, None)
        .expect_err("invalid operator");
    assert_eq!(
        v.nodepool.invalid_message("default", &errors),
        concat!(
            r#"NodePool.karpenter.sh "default" is invalid: [spec.template.spec.requirements[0].operator: Unsupported value: "Inn": supported values: "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Gte", "Lte", "#,
            r#"<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]"#
        )
    );
}
