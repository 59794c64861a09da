//! The `karpenter` binary: parses the command line and dispatches to a subcommand.
//!
//! Owns: option parsing and process wiring only. Each subcommand lives in `commands/` and keeps
//! its logic in the library crates; this binary must never hold decision logic itself.

mod commands;
mod options;
mod serve;
mod simulate;
mod telemetry;

use clap::{Parser, Subcommand};

/// Karpenter node autoscaler (drop-in for upstream Karpenter on AWS).
#[derive(Debug, Parser)]
#[command(name = "karpenter", version, about)]
struct Cli {
    /// What to run; `controller` when omitted, as upstream's image runs with flags only.
    #[command(subcommand)]
    command: Option<Command>,
    /// Options of the default `controller` subcommand, accepted without naming it.
    #[command(flatten)]
    controller: commands::controller::ControllerArgs,
}

/// Subcommands. Adding one is a new variant here plus a module in `commands/`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator (the default): metrics, health probes, leader election, controllers.
    Controller(Box<commands::controller::ControllerArgs>),
    /// Write the CustomResourceDefinitions (NodePool, NodeClaim, EC2NodeClass) as YAML.
    Crds(commands::crds::CrdsArgs),
    /// Run an embedded simulated cluster (API server, scheduler, kubelets, workload controllers).
    Cluster(commands::cluster::ClusterArgs),
    /// Show what NodePools would provision for a workload scenario, step by step, with costs.
    Simulate(commands::simulate::SimulateArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let command = cli
        .command
        .unwrap_or_else(|| Command::Controller(Box::new(cli.controller)));
    let outcome = match command {
        Command::Controller(args) => commands::controller::run(*args),
        Command::Crds(args) => commands::crds::run(&args),
        Command::Cluster(args) => commands::cluster::run(&args),
        Command::Simulate(args) => commands::simulate::run_command(&args),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // A user's mistake (a bad manifest, a missing file) is reported as the message and
            // its causes only: returning the error from main would add a stack trace whenever
            // RUST_BACKTRACE is set, burying the field name the message is about.
            eprintln!("Error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn controller_is_the_default_subcommand() {
        let cli = Cli::try_parse_from(["karpenter", "--metrics-port=9090"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.controller.options.metrics_port, "9090");
        let cli = Cli::try_parse_from(["karpenter", "controller", "--metrics-port=9091"]).unwrap();
        let Some(Command::Controller(args)) = cli.command else {
            panic!("expected controller")
        };
        assert_eq!(args.options.metrics_port, "9091");
    }

    #[test]
    fn crds_defaults_to_crds_dir() {
        let cli = Cli::try_parse_from(["karpenter", "crds"]).unwrap();
        let Some(Command::Crds(args)) = cli.command else {
            panic!("expected crds")
        };
        assert_eq!(args.out_dir, std::path::PathBuf::from("crds"));
        let cli = Cli::try_parse_from(["karpenter", "crds", "--out-dir", "/tmp/x"]).unwrap();
        let Some(Command::Crds(args)) = cli.command else {
            panic!("expected crds")
        };
        assert_eq!(args.out_dir, std::path::PathBuf::from("/tmp/x"));
    }
}
