//! The `karpenter` binary: parses the command line and dispatches to a subcommand.
//!
//! Owns: option parsing and process wiring only. Each subcommand lives in `commands/` and keeps
//! its logic in the library crates; this binary must never hold decision logic itself.

mod commands;
mod simulate;

use clap::{Parser, Subcommand};

/// Karpenter node autoscaler (drop-in for upstream Karpenter on AWS).
#[derive(Debug, Parser)]
#[command(name = "karpenter", version, about)]
struct Cli {
    /// What to run.
    #[command(subcommand)]
    command: Command,
}

/// Subcommands. Adding one is a new variant here plus a module in `commands/`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Write the CustomResourceDefinitions (NodePool, NodeClaim, EC2NodeClass) as YAML.
    Crds(commands::crds::CrdsArgs),
    /// Show what NodePools would provision for a workload scenario, step by step, with costs.
    Simulate(commands::simulate::SimulateArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds(args) => commands::crds::run(&args),
        Command::Simulate(args) => commands::simulate::run_command(&args),
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
    fn crds_defaults_to_crds_dir() {
        let cli = Cli::try_parse_from(["karpenter", "crds"]).unwrap();
        let Command::Crds(args) = cli.command else {
            panic!("expected crds")
        };
        assert_eq!(args.out_dir, std::path::PathBuf::from("crds"));
        let cli = Cli::try_parse_from(["karpenter", "crds", "--out-dir", "/tmp/x"]).unwrap();
        let Command::Crds(args) = cli.command else {
            panic!("expected crds")
        };
        assert_eq!(args.out_dir, std::path::PathBuf::from("/tmp/x"));
    }
}
