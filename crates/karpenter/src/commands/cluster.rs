//! `karpenter cluster`: runs the embedded simulated cluster (API server, scheduler, node agent,
//! workload controllers) until Ctrl-C or SIGTERM, for kubectl and a controller to talk to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use karpenter_sim::cluster::ClusterConfig;
use karpenter_sim::{SimCluster, SimConfig};

/// Options of `karpenter cluster`.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// Where to write a kubeconfig pointing at the embedded API server.
    #[arg(
        long,
        env = "KARPENTER_SIM_KUBECONFIG_OUT",
        default_value = "kubeconfig.sim.yaml"
    )]
    pub kubeconfig_out: PathBuf,
    /// Port on 127.0.0.1 for the API server (0 picks a free one).
    #[arg(long, env = "KARPENTER_SIM_PORT", default_value_t = 0)]
    pub port: u16,
    /// From a Node's creation to `Ready=True` (e.g. `5s`, `500ms`).
    #[arg(long, env = "KARPENTER_SIM_NODE_READY_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub node_ready_delay: Duration,
    /// From a Node turning Ready to its startup taints being removed.
    #[arg(long, env = "KARPENTER_SIM_STARTUP_TAINT_DELAY", default_value = "2s", value_parser = parse_duration)]
    pub startup_taint_delay: Duration,
    /// From a pod's binding to `Running`.
    #[arg(long, env = "KARPENTER_SIM_POD_START_DELAY", default_value = "1s", value_parser = parse_duration)]
    pub pod_start_delay: Duration,
    /// Longest a terminating pod lingers on its Node, whatever its grace period.
    #[arg(long, env = "KARPENTER_SIM_GRACEFUL_DELETION_CAP", default_value = "5s", value_parser = parse_duration)]
    pub graceful_deletion_cap: Duration,
    /// How often the scheduler retries unschedulable pods when nothing changes.
    #[arg(long, env = "KARPENTER_SIM_SCHEDULER_RESYNC", default_value = "10s", value_parser = parse_duration)]
    pub scheduler_resync: Duration,
}

/// Parses `500ms`, `5s`, `2m` or a bare number of seconds.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let (number, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, "s"), |i| s.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{input:?} is not a duration like 500ms, 5s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{input:?}: unknown unit {unit:?} (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{input:?}: {e}"))
}

fn config(args: &ClusterArgs) -> SimConfig {
    let mut config = SimConfig::default();
    config.apiserver.port = args.port;
    let mut cluster = ClusterConfig::default();
    if let Some(agent) = cluster.node_agent.as_mut() {
        agent.ready_delay = args.node_ready_delay;
        agent.startup_taint_delay = args.startup_taint_delay;
        agent.pod_start_delay = args.pod_start_delay;
        agent.graceful_deletion_cap = args.graceful_deletion_cap;
    }
    if let Some(scheduler) = cluster.scheduler.as_mut() {
        scheduler.resync = args.scheduler_resync;
    }
    config.cluster = cluster;
    config
}

/// Starts the cluster and writes the kubeconfig.
pub async fn start(args: &ClusterArgs) -> anyhow::Result<SimCluster> {
    let sim = SimCluster::start(config(args))
        .await
        .context("starting the embedded cluster")?;
    if let Err(e) = write_kubeconfig(&sim, &args.kubeconfig_out) {
        sim.shutdown().await;
        return Err(e);
    }
    Ok(sim)
}

fn write_kubeconfig(sim: &SimCluster, path: &Path) -> anyhow::Result<()> {
    sim.apiserver()
        .write_kubeconfig(path)
        .with_context(|| format!("writing kubeconfig {}", path.display()))
}

async fn terminated() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = sigterm.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the cluster until Ctrl-C or SIGTERM.
pub fn run(args: &ClusterArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let sim = start(args).await?;
        let path = args
            .kubeconfig_out
            .canonicalize()
            .unwrap_or_else(|_| args.kubeconfig_out.clone());
        println!(
            "Embedded cluster API server listening on {}",
            sim.apiserver().url()
        );
        println!("Scheduler, node agent and workload controllers are running.");
        println!("Point kubectl at it:");
        println!("  export KUBECONFIG={}", path.display());
        println!("  kubectl get nodes,pods -A");
        println!("Press Ctrl-C to stop.");
        terminated().await;
        println!("Stopping.");
        sim.shutdown().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let cases = [
            ("500ms", Ok(Duration::from_millis(500))),
            ("5s", Ok(Duration::from_secs(5))),
            ("2m", Ok(Duration::from_secs(120))),
            ("3", Ok(Duration::from_secs(3))),
            ("1.5s", Ok(Duration::from_millis(1500))),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), want, "{input}");
        }
        for bad in ["", "5h", "fast", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[derive(Debug, clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ClusterArgs,
    }

    #[test]
    fn flags_parse_with_defaults() {
        use clap::Parser;
        let w = Wrapper::try_parse_from([
            "cluster",
            "--kubeconfig-out",
            "/tmp/k",
            "--port",
            "6443",
            "--node-ready-delay",
            "250ms",
        ])
        .unwrap();
        assert_eq!(w.args.kubeconfig_out, PathBuf::from("/tmp/k"));
        assert_eq!(w.args.port, 6443);
        assert_eq!(w.args.node_ready_delay, Duration::from_millis(250));
        assert_eq!(w.args.graceful_deletion_cap, Duration::from_secs(5));
        assert!(Wrapper::try_parse_from(["cluster", "--pod-start-delay", "soon"]).is_err());
    }

    #[tokio::test]
    async fn cluster_serves_and_writes_a_kubeconfig() {
        let dir =
            std::env::temp_dir().join(format!("karpenter-cluster-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let args = ClusterArgs {
            kubeconfig_out: dir.join("kubeconfig"),
            port: 0,
            node_ready_delay: Duration::from_millis(100),
            startup_taint_delay: Duration::from_millis(100),
            pod_start_delay: Duration::from_millis(50),
            graceful_deletion_cap: Duration::from_millis(100),
            scheduler_resync: Duration::from_secs(1),
        };
        let sim = start(&args).await.unwrap();
        let kubeconfig = std::fs::read_to_string(&args.kubeconfig_out).unwrap();
        assert!(kubeconfig.contains(&sim.apiserver().url()), "{kubeconfig}");
        let version = sim.client().apiserver_version().await.unwrap();
        assert!(version.git_version.starts_with('v'), "{version:?}");
        sim.shutdown().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
