//! `karpenter simulate`: runs a scenario through the real solver and the embedded EC2 catalog
//! and prints the NodeClaims, placements, unschedulable pods and cost of every step.

use std::path::PathBuf;

use crate::simulate::{ScenarioSource, load, run};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned tables, one per step.
    Text,
    /// The same data as JSON (stable field names).
    Json,
}

/// Options of `karpenter simulate`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = SCENARIO_HELP)]
pub struct SimulateArgs {
    /// Scenario file (see below); without it the embedded default scenario runs.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Manifest file(s) whose NodePools replace the scenario's NodePools (EC2NodeClasses in
    /// them replace same-named ones). Repeatable.
    #[arg(long = "nodepool", value_name = "FILE")]
    pub nodepools: Vec<PathBuf>,
    /// Manifest file(s) whose Deployments replace the scenario's Deployments (DaemonSets in
    /// them replace same-named ones). Repeatable.
    #[arg(long = "workload", value_name = "FILE")]
    pub workloads: Vec<PathBuf>,
}

const SCENARIO_HELP: &str = "\
What it does:
  For each step, applies the replica changes, then makes one provisioning decision with the real
  scheduling solver against the embedded us-west-2 EC2 catalog (1,345 instance types; on-demand
  list prices, spot estimates). Nodes created by earlier steps are existing nodes for later ones,
  so scale-ups reuse free room first. Scale-downs delete pods but do not consolidate nodes (not
  simulated yet). NodePools and EC2NodeClasses are defaulted and validated against the CRDs, as
  the API server would.

Default scenario (no --scenario):
  seed 000 (eksdemo): NodePool `default` (c/m/r, generation > 2, amd64, linux, spot and
  on-demand), EC2NodeClass `default` (AL2), the `inflate` Deployment (1 CPU per pod, zone spread
  ScheduleAnyway), the aws-node and kube-proxy DaemonSets; steps 10 -> 20 -> 5 replicas.

Scenario file (YAML; several documents allowed):
  name: my test                       # optional
  description: ...                    # optional
  zones: [us-west-2a, us-west-2b]     # optional: zones with subnets (default: all)
  nodepools:   [<NodePool manifest or path>, ...]
  nodeclasses: [<EC2NodeClass manifest or path>, ...]
  workloads:   [<Deployment manifest or path>, ...]
  daemonsets:  [<DaemonSet manifest or path>, ...]
  steps:
    - name: scale up                  # optional
      scale: {deployment: inflate, replicas: 20}        # namespace: optional
    - scale: [{deployment: a, replicas: 3}, {deployment: b, replicas: 0}]
  Entries may be inline manifests or paths (relative to the scenario file) to manifest files.
  Objects are sorted by their `kind`, whatever list they are in. A document with `kind` is a
  manifest, so a plain `kubectl apply` stream (NodePools, EC2NodeClasses, Deployments,
  DaemonSets) is a scenario too; other kinds are ignored with a note. Without steps, one step
  applies every Deployment at its spec.replicas.

Overrides:
  --nodepool FILE   NodePools in FILE replace all the scenario's NodePools;
                    EC2NodeClasses replace same-named ones or are added.
  --workload FILE   Deployments in FILE replace all the scenario's Deployments;
                    DaemonSets replace same-named ones or are added. If the steps name a
                    Deployment that is gone, one step at the declared replicas runs instead.

Examples:
  karpenter simulate
  karpenter simulate --nodepool my-nodepool.yaml -o json
  karpenter simulate --scenario scenario.yaml";

/// Loads the scenario, runs it and prints the report.
pub fn run_command(args: &SimulateArgs) -> anyhow::Result<()> {
    let scenario = load(&ScenarioSource {
        scenario: args.scenario.clone(),
        nodepool_files: args.nodepools.clone(),
        workload_files: args.workloads.clone(),
    })?;
    let report = run(&scenario)?;
    match args.output {
        OutputFormat::Text => print!("{}", report.to_text()),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}
