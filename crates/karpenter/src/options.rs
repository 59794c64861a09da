//! Operator settings: upstream's flags and environment variables (same names, same defaults),
//! parsed once into a validated [`Settings`] made of small config structs.
//!
//! clap only collects raw strings (flag wins over env, as upstream); every value is then
//! validated here so an error always names both the environment variable and the flag, e.g.
//! `invalid value "x" for BATCH_MAX_DURATION (--batch-max-duration): invalid duration "x"`.
//! Boolean flags follow Go's `flag` package: `--flag` means true, `--flag=false` sets it, and
//! values accept Go's `strconv.ParseBool` spellings (`1`, `t`, `TRUE`, `false`, …).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use karpenter_apis::duration::parse_go_duration;

/// Upstream's default `FEATURE_GATES` (the chart also passes `CapacityBuffer=false`).
pub const DEFAULT_FEATURE_GATES: &str = "NodeRepair=false,ReservedCapacity=true,SpotToSpotConsolidation=false,NodeOverlay=false,StaticCapacity=false,CapacityBuffer=false";

/// Raw operator options as given on the command line or in the environment.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Which cloud to manage: `aws` or `simulated` (the embedded simulator's EC2).
    #[arg(long, env = "CLOUD_PROVIDER", default_value = "aws")]
    pub cloud_provider: String,
    /// Path to a kubeconfig; without it the in-cluster service account is used.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// The Karpenter service name (kept for compatibility; unused since webhooks were removed).
    #[arg(long, env = "KARPENTER_SERVICE", default_value = "")]
    pub karpenter_service: String,
    /// Port of the `/metrics` endpoint.
    #[arg(long, env = "METRICS_PORT", default_value = "8080")]
    pub metrics_port: String,
    /// Port of the `/healthz` and `/readyz` probes.
    #[arg(long, env = "HEALTH_PROBE_PORT", default_value = "8081")]
    pub health_probe_port: String,
    /// Sustained requests per second to the Kubernetes API.
    #[arg(long, env = "KUBE_CLIENT_QPS", default_value = "200")]
    pub kube_client_qps: String,
    /// Burst of requests allowed above the QPS rate.
    #[arg(long, env = "KUBE_CLIENT_BURST", default_value = "300")]
    pub kube_client_burst: String,
    /// Serve profiling endpoints next to `/metrics`.
    #[arg(long, env = "ENABLE_PROFILING", default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_profiling: String,
    /// Do not start informers before winning the election.
    #[arg(long, env = "DISABLE_CONTROLLER_WARMUP", default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub disable_controller_warmup: String,
    /// Run as leader without a Lease (single replica only).
    #[arg(long, env = "DISABLE_LEADER_ELECTION", default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub disable_leader_election: String,
    /// Turn off the pod/node/nodepool state metrics and status metrics.
    #[arg(long, env = "DISABLE_CLUSTER_STATE_OBSERVABILITY", default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub disable_cluster_state_observability: String,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "LEADER_ELECTION_NAME",
        default_value = "karpenter-leader-election"
    )]
    pub leader_election_name: String,
    /// Namespace of the Lease; empty means the pod's own namespace.
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE", default_value = "")]
    pub leader_election_namespace: String,
    /// Container memory limit in bytes; -1 means unknown.
    #[arg(
        long,
        env = "MEMORY_LIMIT",
        default_value = "-1",
        allow_hyphen_values = true
    )]
    pub memory_limit: String,
    /// Container CPU requests in millicores (sets solver parallelism); ≤0 means 1000.
    #[arg(
        long,
        env = "CPU_REQUESTS",
        default_value = "1000",
        allow_hyphen_values = true
    )]
    pub cpu_requests: String,
    /// Log level: `debug`, `info` or `error` (`warn` is also accepted).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Comma-separated log destinations: `stdout`, `stderr` or file paths.
    #[arg(long, env = "LOG_OUTPUT_PATHS", default_value = "stdout")]
    pub log_output_paths: String,
    /// Comma-separated destinations for error-level logs.
    #[arg(long, env = "LOG_ERROR_OUTPUT_PATHS", default_value = "stderr")]
    pub log_error_output_paths: String,
    /// Longest a provisioning batch may keep collecting pods.
    #[arg(long, env = "BATCH_MAX_DURATION", default_value = "10s")]
    pub batch_max_duration: String,
    /// A batch closes after this long without new pods.
    #[arg(long, env = "BATCH_IDLE_DURATION", default_value = "1s")]
    pub batch_idle_duration: String,
    /// `Respect` or `Ignore` preferred scheduling terms.
    #[arg(long, env = "PREFERENCE_POLICY", default_value = "Respect")]
    pub preference_policy: String,
    /// `Strict` or `BestEffort` NodePool minValues.
    #[arg(long, env = "MIN_VALUES_POLICY", default_value = "Strict")]
    pub min_values_policy: String,
    /// Skip pods that request dynamic resources (DRA is not supported).
    #[arg(long, env = "IGNORE_DRA_REQUESTS", default_value = "true", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub ignore_dra_requests: String,
    /// Feature gates as `Name=bool,…`.
    #[arg(long, env = "FEATURE_GATES", default_value = DEFAULT_FEATURE_GATES)]
    pub feature_gates: String,
    /// Scheduler configuration (default topology spread constraints); empty for none.
    #[arg(long, env = "SCHEDULER_CONFIG", default_value = "")]
    pub scheduler_config: String,

    /// EKS cluster name (required with `--cloud-provider aws`).
    #[arg(long, env = "CLUSTER_NAME", default_value = "")]
    pub cluster_name: String,
    /// API server endpoint written into node user data; discovered when empty.
    #[arg(long, env = "CLUSTER_ENDPOINT", default_value = "")]
    pub cluster_endpoint: String,
    /// Base64 CA bundle for nodes; taken from the client's config when empty.
    #[arg(long, env = "CLUSTER_CA_BUNDLE", default_value = "")]
    pub cluster_ca_bundle: String,
    /// No internet egress: skip the public pricing API and instance-profile GC.
    #[arg(long, env = "ISOLATED_VPC", default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub isolated_vpc: String,
    /// Read the Kubernetes version from the EKS control plane.
    #[arg(long, env = "EKS_CONTROL_PLANE", default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub eks_control_plane: String,
    /// Fraction of instance memory reserved for the hypervisor.
    #[arg(long, env = "VM_MEMORY_OVERHEAD_PERCENT", default_value = "0.075")]
    pub vm_memory_overhead_percent: String,
    /// SQS queue name for interruption events; empty disables interruption handling.
    #[arg(long, env = "INTERRUPTION_QUEUE", default_value = "")]
    pub interruption_queue: String,
    /// ENIs left for other uses when computing pod capacity.
    #[arg(long, env = "RESERVED_ENIS", default_value = "0")]
    pub reserved_enis: String,
    /// Skip the EC2NodeClass dry-run validation calls.
    #[arg(long, env = "DISABLE_DRY_RUN", default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub disable_dry_run: String,
    /// Honour ARC zonal shifts when choosing zones.
    #[arg(long, env = "ENABLE_ZONAL_SHIFT", default_value = "false", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_zonal_shift: String,
    /// How often AMIs are re-resolved (at least 1m).
    #[arg(long, env = "AMI_REFRESH_INTERVAL", default_value = "1m")]
    pub ami_refresh_interval: String,
    /// How often subnets are re-resolved (at least 1m).
    #[arg(long, env = "SUBNET_REFRESH_INTERVAL", default_value = "1m")]
    pub subnet_refresh_interval: String,

    /// With `--cloud-provider simulated`: time from launch until a simulated instance runs.
    #[arg(long, env = "SIMULATED_LAUNCH_DELAY", default_value = "2s")]
    pub simulated_launch_delay: String,
    /// With `--cloud-provider simulated`: time from a running instance until its Node registers.
    #[arg(long, env = "SIMULATED_BOOT_DELAY", default_value = "3s")]
    pub simulated_boot_delay: String,
    /// With `--cloud-provider simulated`: time a terminating instance takes to be gone.
    #[arg(long, env = "SIMULATED_TERMINATION_DELAY", default_value = "5s")]
    pub simulated_termination_delay: String,
}

/// A setting that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// The value does not parse or is out of range.
    #[error("invalid value {value:?} for {env} (--{flag}): {reason}")]
    Invalid {
        /// Environment variable name.
        env: &'static str,
        /// Flag name without dashes.
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A required setting is missing.
    #[error("{env} (--{flag}) is required {when}")]
    Missing {
        /// Environment variable name.
        env: &'static str,
        /// Flag name without dashes.
        flag: &'static str,
        /// The condition under which it is required.
        when: &'static str,
    },
}

/// Which cloud the controller manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudProviderKind {
    /// Amazon EC2.
    Aws,
    /// The simulator's EC2 on the real instance catalog.
    Simulated,
}

/// The HTTP servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `/metrics` port.
    pub metrics_port: u16,
    /// `/healthz` and `/readyz` port.
    pub health_probe_port: u16,
    /// Whether profiling endpoints are wanted.
    pub enable_profiling: bool,
}

/// The Kubernetes client.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeClientConfig {
    /// Kubeconfig path; `None` means in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// Sustained requests per second.
    pub qps: u32,
    /// Burst above `qps`.
    pub burst: u32,
}

/// Leader election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// Whether to elect at all (`false` with `--disable-leader-election`).
    pub enabled: bool,
    /// Lease name.
    pub name: String,
    /// Lease namespace if given; otherwise the pod's namespace is used.
    pub namespace: Option<String>,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Everything including debug.
    Debug,
    /// Info and above.
    Info,
    /// Warnings and errors.
    Warn,
    /// Errors only.
    Error,
}

/// Where a log stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSink {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Minimum level.
    pub level: LogLevel,
    /// Destinations of all logs.
    pub output: Vec<LogSink>,
    /// Destinations of error logs.
    pub error_output: Vec<LogSink>,
}

/// Provisioning batch window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Longest a batch stays open.
    pub max_duration: Duration,
    /// Idle time that closes a batch.
    pub idle_duration: Duration,
}

/// How preferred scheduling terms are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreferencePolicy {
    /// Try preferences first, relax them if needed.
    Respect,
    /// Ignore preferences entirely.
    Ignore,
}

/// How NodePool `minValues` are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinValuesPolicy {
    /// Fail a launch that cannot meet minValues.
    Strict,
    /// Relax minValues when they cannot be met.
    BestEffort,
}

/// Scheduling behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulingPolicy {
    /// Preferred terms.
    pub preference_policy: PreferencePolicy,
    /// minValues.
    pub min_values_policy: MinValuesPolicy,
    /// Skip pods with resource claims.
    pub ignore_dra_requests: bool,
    /// Scheduler configuration as given (not yet interpreted).
    pub scheduler_config: Option<String>,
}

/// Feature gates (upstream's names and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureGates {
    /// `NodeRepair` (default false).
    pub node_repair: bool,
    /// `ReservedCapacity` (default true).
    pub reserved_capacity: bool,
    /// `SpotToSpotConsolidation` (default false).
    pub spot_to_spot_consolidation: bool,
    /// `NodeOverlay` (default false).
    pub node_overlay: bool,
    /// `StaticCapacity` (default false).
    pub static_capacity: bool,
    /// `CapacityBuffer` (default false).
    pub capacity_buffer: bool,
}

impl Default for FeatureGates {
    fn default() -> Self {
        FeatureGates {
            node_repair: false,
            reserved_capacity: true,
            spot_to_spot_consolidation: false,
            node_overlay: false,
            static_capacity: false,
            capacity_buffer: false,
        }
    }
}

/// Process resources and which optional controllers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Memory limit in bytes, if known.
    pub memory_limit_bytes: Option<u64>,
    /// CPU requests in millicores (≤0 given ⇒ 1000).
    pub cpu_requests_millis: u64,
    /// Do not start informers before winning the election.
    pub disable_controller_warmup: bool,
    /// Turn off the cluster-state metric controllers.
    pub disable_cluster_state_observability: bool,
}

impl RuntimeConfig {
    /// Solver parallelism: whole CPUs requested, rounded up, at least one.
    pub fn parallelism(&self) -> usize {
        usize::try_from(self.cpu_requests_millis.div_ceil(1000).max(1)).unwrap_or(1)
    }
}

/// AWS provider settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsConfig {
    /// EKS cluster name.
    pub cluster_name: String,
    /// API server endpoint, if given.
    pub cluster_endpoint: Option<String>,
    /// CA bundle, if given.
    pub cluster_ca_bundle: Option<String>,
    /// Isolated VPC.
    pub isolated_vpc: bool,
    /// EKS control plane.
    pub eks_control_plane: bool,
    /// VM memory overhead fraction.
    pub vm_memory_overhead_percent: f64,
    /// Interruption queue name, if enabled.
    pub interruption_queue: Option<String>,
    /// Reserved ENIs.
    pub reserved_enis: u32,
    /// Dry-run validation disabled.
    pub disable_dry_run: bool,
    /// Zonal shift enabled.
    pub enable_zonal_shift: bool,
    /// AMI refresh interval.
    pub ami_refresh_interval: Duration,
    /// Subnet refresh interval.
    pub subnet_refresh_interval: Duration,
}

/// The simulated cloud (`--cloud-provider simulated`): the embedded simulator's EC2, which
/// registers Nodes through the Kubernetes API itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatedConfig {
    /// Launch until running.
    pub launch_delay: Duration,
    /// Running until the Node registers.
    pub boot_delay: Duration,
    /// Termination start until gone.
    pub termination_delay: Duration,
}

/// Everything the controller needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The cloud.
    pub cloud_provider: CloudProviderKind,
    /// Kept for compatibility (`KARPENTER_SERVICE`).
    pub karpenter_service: String,
    /// HTTP servers.
    pub server: ServerConfig,
    /// Kubernetes client.
    pub kube_client: KubeClientConfig,
    /// Leader election.
    pub leader_election: LeaderElectionConfig,
    /// Logging.
    pub log: LogConfig,
    /// Batching.
    pub batch: BatchConfig,
    /// Scheduling.
    pub scheduling: SchedulingPolicy,
    /// Feature gates.
    pub feature_gates: FeatureGates,
    /// Feature gates given that this version does not know (logged, not fatal, so a newer
    /// chart's gate does not stop the controller).
    pub unknown_feature_gates: Vec<String>,
    /// Process resources.
    pub runtime: RuntimeConfig,
    /// AWS settings; present when the cloud is AWS.
    pub aws: Option<AwsConfig>,
    /// Simulated-cloud settings; present when the cloud is the simulator's.
    pub simulated: Option<SimulatedConfig>,
}

fn invalid(
    env: &'static str,
    flag: &'static str,
    value: &str,
    reason: impl ToString,
) -> OptionsError {
    OptionsError::Invalid {
        env,
        flag,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(env: &'static str, flag: &'static str, value: &str) -> Result<bool, OptionsError> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(invalid(
            env,
            flag,
            value,
            "expected a boolean (true or false)",
        )),
    }
}

fn parse_port(env: &'static str, flag: &'static str, value: &str) -> Result<u16, OptionsError> {
    value.trim().parse::<u16>().map_err(|e| {
        invalid(
            env,
            flag,
            value,
            format!("expected a port number 0-65535 ({e})"),
        )
    })
}

fn parse_positive(env: &'static str, flag: &'static str, value: &str) -> Result<u32, OptionsError> {
    match value.trim().parse::<u32>() {
        Ok(0) => Err(invalid(env, flag, value, "must be greater than 0")),
        Ok(n) => Ok(n),
        Err(e) => Err(invalid(
            env,
            flag,
            value,
            format!("expected a positive integer ({e})"),
        )),
    }
}

fn parse_duration(
    env: &'static str,
    flag: &'static str,
    value: &str,
    min: Duration,
) -> Result<Duration, OptionsError> {
    let d = parse_go_duration(value.trim()).map_err(|e| invalid(env, flag, value, e))?;
    if d < min {
        return Err(invalid(
            env,
            flag,
            value,
            format!("must be at least {min:?}"),
        ));
    }
    Ok(d)
}

fn parse_sinks(
    env: &'static str,
    flag: &'static str,
    value: &str,
) -> Result<Vec<LogSink>, OptionsError> {
    let sinks: Vec<LogSink> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s {
            "stdout" => LogSink::Stdout,
            "stderr" => LogSink::Stderr,
            path => LogSink::File(PathBuf::from(path)),
        })
        .collect();
    if sinks.is_empty() {
        return Err(invalid(
            env,
            flag,
            value,
            "at least one of stdout, stderr or a file path is required",
        ));
    }
    Ok(sinks)
}

/// Parses Kubernetes' `map[string]bool` flag syntax (`A=true,B=false`) onto upstream's gates.
/// Returns the gates and the names it did not recognise.
pub fn parse_feature_gates(value: &str) -> Result<(FeatureGates, Vec<String>), OptionsError> {
    const ENV: &str = "FEATURE_GATES";
    const FLAG: &str = "feature-gates";
    let mut gates = FeatureGates::default();
    let mut unknown = Vec::new();
    let mut seen = BTreeMap::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, raw)) = pair.split_once('=') else {
            return Err(invalid(
                ENV,
                FLAG,
                value,
                format!("{pair:?} is not of the form Name=true|false"),
            ));
        };
        let (name, raw) = (name.trim(), raw.trim());
        let enabled = parse_bool(ENV, FLAG, raw).map_err(|_| {
            invalid(
                ENV,
                FLAG,
                value,
                format!("feature gate {name}: {raw:?} is not a boolean"),
            )
        })?;
        seen.insert(name.to_string(), enabled);
    }
    for (name, enabled) in seen {
        match name.as_str() {
            "NodeRepair" => gates.node_repair = enabled,
            "ReservedCapacity" => gates.reserved_capacity = enabled,
            "SpotToSpotConsolidation" => gates.spot_to_spot_consolidation = enabled,
            "NodeOverlay" => gates.node_overlay = enabled,
            "StaticCapacity" => gates.static_capacity = enabled,
            "CapacityBuffer" => gates.capacity_buffer = enabled,
            _ => unknown.push(name),
        }
    }
    Ok((gates, unknown))
}

fn non_empty(s: String) -> Option<String> {
    if s.trim().is_empty() { None } else { Some(s) }
}

impl Settings {
    /// Validates raw options. Every field of [`Options`] is consumed here by name.
    pub fn from_options(options: Options) -> Result<Self, OptionsError> {
        // Exhaustive on purpose: a new option does not compile until it is handled here.
        let Options {
            cloud_provider,
            kubeconfig,
            karpenter_service,
            metrics_port,
            health_probe_port,
            kube_client_qps,
            kube_client_burst,
            enable_profiling,
            disable_controller_warmup,
            disable_leader_election,
            disable_cluster_state_observability,
            leader_election_name,
            leader_election_namespace,
            memory_limit,
            cpu_requests,
            log_level,
            log_output_paths,
            log_error_output_paths,
            batch_max_duration,
            batch_idle_duration,
            preference_policy,
            min_values_policy,
            ignore_dra_requests,
            feature_gates,
            scheduler_config,
            cluster_name,
            cluster_endpoint,
            cluster_ca_bundle,
            isolated_vpc,
            eks_control_plane,
            vm_memory_overhead_percent,
            interruption_queue,
            reserved_enis,
            disable_dry_run,
            enable_zonal_shift,
            ami_refresh_interval,
            subnet_refresh_interval,
            simulated_launch_delay,
            simulated_boot_delay,
            simulated_termination_delay,
        } = options;

        let cloud_provider = match cloud_provider.trim() {
            "aws" => CloudProviderKind::Aws,
            "simulated" => CloudProviderKind::Simulated,
            _ => {
                return Err(invalid(
                    "CLOUD_PROVIDER",
                    "cloud-provider",
                    &cloud_provider,
                    "expected aws or simulated",
                ));
            }
        };

        let server = ServerConfig {
            metrics_port: parse_port("METRICS_PORT", "metrics-port", &metrics_port)?,
            health_probe_port: parse_port(
                "HEALTH_PROBE_PORT",
                "health-probe-port",
                &health_probe_port,
            )?,
            enable_profiling: parse_bool(
                "ENABLE_PROFILING",
                "enable-profiling",
                &enable_profiling,
            )?,
        };

        let kube_client = KubeClientConfig {
            kubeconfig: kubeconfig.filter(|p| !p.as_os_str().is_empty()),
            qps: parse_positive("KUBE_CLIENT_QPS", "kube-client-qps", &kube_client_qps)?,
            burst: parse_positive("KUBE_CLIENT_BURST", "kube-client-burst", &kube_client_burst)?,
        };

        if leader_election_name.trim().is_empty() {
            return Err(invalid(
                "LEADER_ELECTION_NAME",
                "leader-election-name",
                &leader_election_name,
                "must not be empty",
            ));
        }
        let leader_election = LeaderElectionConfig {
            enabled: !parse_bool(
                "DISABLE_LEADER_ELECTION",
                "disable-leader-election",
                &disable_leader_election,
            )?,
            name: leader_election_name,
            namespace: non_empty(leader_election_namespace),
        };

        let level = match log_level.trim().to_ascii_lowercase().as_str() {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => {
                return Err(invalid(
                    "LOG_LEVEL",
                    "log-level",
                    &log_level,
                    "expected debug, info or error",
                ));
            }
        };
        let log = LogConfig {
            level,
            output: parse_sinks("LOG_OUTPUT_PATHS", "log-output-paths", &log_output_paths)?,
            error_output: parse_sinks(
                "LOG_ERROR_OUTPUT_PATHS",
                "log-error-output-paths",
                &log_error_output_paths,
            )?,
        };

        let batch = BatchConfig {
            max_duration: parse_duration(
                "BATCH_MAX_DURATION",
                "batch-max-duration",
                &batch_max_duration,
                Duration::ZERO,
            )?,
            idle_duration: parse_duration(
                "BATCH_IDLE_DURATION",
                "batch-idle-duration",
                &batch_idle_duration,
                Duration::ZERO,
            )?,
        };

        let scheduling = SchedulingPolicy {
            preference_policy: match preference_policy.trim() {
                "Respect" => PreferencePolicy::Respect,
                "Ignore" => PreferencePolicy::Ignore,
                _ => {
                    return Err(invalid(
                        "PREFERENCE_POLICY",
                        "preference-policy",
                        &preference_policy,
                        "expected Respect or Ignore",
                    ));
                }
            },
            min_values_policy: match min_values_policy.trim() {
                "Strict" => MinValuesPolicy::Strict,
                "BestEffort" => MinValuesPolicy::BestEffort,
                _ => {
                    return Err(invalid(
                        "MIN_VALUES_POLICY",
                        "min-values-policy",
                        &min_values_policy,
                        "expected Strict or BestEffort",
                    ));
                }
            },
            ignore_dra_requests: parse_bool(
                "IGNORE_DRA_REQUESTS",
                "ignore-dra-requests",
                &ignore_dra_requests,
            )?,
            scheduler_config: non_empty(scheduler_config),
        };

        let (feature_gates, unknown_feature_gates) = parse_feature_gates(&feature_gates)?;

        let memory_limit_bytes = match memory_limit.trim().parse::<i64>() {
            Ok(n) if n < 0 => None,
            Ok(n) => u64::try_from(n).ok(),
            Err(e) => {
                return Err(invalid(
                    "MEMORY_LIMIT",
                    "memory-limit",
                    &memory_limit,
                    format!("expected bytes as an integer ({e})"),
                ));
            }
        };
        let cpu_requests_millis = match cpu_requests.trim().parse::<i64>() {
            Ok(n) if n <= 0 => 1000,
            Ok(n) => u64::try_from(n).unwrap_or(1000),
            Err(e) => {
                return Err(invalid(
                    "CPU_REQUESTS",
                    "cpu-requests",
                    &cpu_requests,
                    format!("expected millicores as an integer ({e})"),
                ));
            }
        };
        let runtime = RuntimeConfig {
            memory_limit_bytes,
            cpu_requests_millis,
            disable_controller_warmup: parse_bool(
                "DISABLE_CONTROLLER_WARMUP",
                "disable-controller-warmup",
                &disable_controller_warmup,
            )?,
            disable_cluster_state_observability: parse_bool(
                "DISABLE_CLUSTER_STATE_OBSERVABILITY",
                "disable-cluster-state-observability",
                &disable_cluster_state_observability,
            )?,
        };

        // AWS values are validated whichever cloud is chosen, so a bad chart value never hides.
        let cluster_endpoint = non_empty(cluster_endpoint);
        if let Some(endpoint) = &cluster_endpoint {
            let absolute = ["https://", "http://"]
                .iter()
                .find_map(|scheme| endpoint.strip_prefix(scheme))
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
            if !absolute {
                return Err(invalid(
                    "CLUSTER_ENDPOINT",
                    "cluster-endpoint",
                    endpoint,
                    "must be an absolute URL",
                ));
            }
        }
        let vm_memory_overhead_percent = match vm_memory_overhead_percent.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => v,
            Ok(_) => {
                return Err(invalid(
                    "VM_MEMORY_OVERHEAD_PERCENT",
                    "vm-memory-overhead-percent",
                    &vm_memory_overhead_percent,
                    "must be a number ≥ 0",
                ));
            }
            Err(e) => {
                return Err(invalid(
                    "VM_MEMORY_OVERHEAD_PERCENT",
                    "vm-memory-overhead-percent",
                    &vm_memory_overhead_percent,
                    e,
                ));
            }
        };
        let reserved_enis = reserved_enis.trim().parse::<u32>().map_err(|e| {
            invalid(
                "RESERVED_ENIS",
                "reserved-enis",
                &reserved_enis,
                format!("must be an integer ≥ 0 ({e})"),
            )
        })?;
        let minute = Duration::from_secs(60);
        let aws_values = AwsConfig {
            cluster_name: cluster_name.trim().to_string(),
            cluster_endpoint,
            cluster_ca_bundle: non_empty(cluster_ca_bundle),
            isolated_vpc: parse_bool("ISOLATED_VPC", "isolated-vpc", &isolated_vpc)?,
            eks_control_plane: parse_bool(
                "EKS_CONTROL_PLANE",
                "eks-control-plane",
                &eks_control_plane,
            )?,
            vm_memory_overhead_percent,
            interruption_queue: non_empty(interruption_queue),
            reserved_enis,
            disable_dry_run: parse_bool("DISABLE_DRY_RUN", "disable-dry-run", &disable_dry_run)?,
            enable_zonal_shift: parse_bool(
                "ENABLE_ZONAL_SHIFT",
                "enable-zonal-shift",
                &enable_zonal_shift,
            )?,
            ami_refresh_interval: parse_duration(
                "AMI_REFRESH_INTERVAL",
                "ami-refresh-interval",
                &ami_refresh_interval,
                minute,
            )?,
            subnet_refresh_interval: parse_duration(
                "SUBNET_REFRESH_INTERVAL",
                "subnet-refresh-interval",
                &subnet_refresh_interval,
                minute,
            )?,
        };
        let aws = match cloud_provider {
            CloudProviderKind::Aws => {
                if aws_values.cluster_name.is_empty() {
                    return Err(OptionsError::Missing {
                        env: "CLUSTER_NAME",
                        flag: "cluster-name",
                        when: "with --cloud-provider aws",
                    });
                }
                Some(aws_values)
            }
            CloudProviderKind::Simulated => None,
        };
        let simulated_values = SimulatedConfig {
            launch_delay: parse_duration(
                "SIMULATED_LAUNCH_DELAY",
                "simulated-launch-delay",
                &simulated_launch_delay,
                Duration::ZERO,
            )?,
            boot_delay: parse_duration(
                "SIMULATED_BOOT_DELAY",
                "simulated-boot-delay",
                &simulated_boot_delay,
                Duration::ZERO,
            )?,
            termination_delay: parse_duration(
                "SIMULATED_TERMINATION_DELAY",
                "simulated-termination-delay",
                &simulated_termination_delay,
                Duration::ZERO,
            )?,
        };
        let simulated =
            (cloud_provider == CloudProviderKind::Simulated).then_some(simulated_values);

        Ok(Settings {
            cloud_provider,
            karpenter_service,
            server,
            kube_client,
            leader_election,
            log,
            batch,
            scheduling,
            feature_gates,
            unknown_feature_gates,
            runtime,
            aws,
            simulated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        options: Options,
    }

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut argv = vec!["karpenter"];
        argv.extend_from_slice(args);
        let cli = TestCli::try_parse_from(argv).map_err(|e| e.to_string())?;
        Settings::from_options(cli.options).map_err(|e| e.to_string())
    }

    /// Parses `args` (with `--cloud-provider simulated` unless the case sets a provider) and
    /// checks the settings with `expect`.
    fn check(args: &[&str], expect: impl Fn(&Settings)) {
        let mut all: Vec<&str> = Vec::new();
        if !args.iter().any(|a| a.starts_with("--cloud-provider")) {
            all.push("--cloud-provider=simulated");
        }
        all.extend_from_slice(args);
        match parse(&all) {
            Ok(settings) => expect(&settings),
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    fn check_err(args: &[&str], want: &str) {
        let mut all = vec!["--cloud-provider=simulated"];
        if args.iter().any(|a| a.starts_with("--cloud-provider")) {
            all.clear();
        }
        all.extend_from_slice(args);
        match parse(&all) {
            Ok(s) => panic!("{args:?} parsed: {s:?}"),
            Err(e) => assert!(e.contains(want), "{args:?}: got {e:?}, want {want:?}"),
        }
    }

    #[test]
    fn defaults_match_upstream() {
        check(&[], |s| {
            assert_eq!(
                s.server,
                ServerConfig {
                    metrics_port: 8080,
                    health_probe_port: 8081,
                    enable_profiling: false
                }
            );
            assert_eq!(
                (
                    s.kube_client.qps,
                    s.kube_client.burst,
                    s.kube_client.kubeconfig.is_none()
                ),
                (200, 300, true)
            );
            assert_eq!(
                s.leader_election,
                LeaderElectionConfig {
                    enabled: true,
                    name: "karpenter-leader-election".into(),
                    namespace: None
                }
            );
            assert_eq!(
                s.log,
                LogConfig {
                    level: LogLevel::Info,
                    output: vec![LogSink::Stdout],
                    error_output: vec![LogSink::Stderr]
                }
            );
            assert_eq!(
                s.batch,
                BatchConfig {
                    max_duration: Duration::from_secs(10),
                    idle_duration: Duration::from_secs(1)
                }
            );
            assert_eq!(
                s.scheduling,
                SchedulingPolicy {
                    preference_policy: PreferencePolicy::Respect,
                    min_values_policy: MinValuesPolicy::Strict,
                    ignore_dra_requests: true,
                    scheduler_config: None,
                }
            );
            assert_eq!(s.feature_gates, FeatureGates::default());
            assert!(s.unknown_feature_gates.is_empty());
            assert_eq!(
                s.runtime,
                RuntimeConfig {
                    memory_limit_bytes: None,
                    cpu_requests_millis: 1000,
                    disable_controller_warmup: true,
                    disable_cluster_state_observability: false,
                }
            );
            assert_eq!(s.runtime.parallelism(), 1);
            assert_eq!(s.aws, None);
            assert_eq!(s.karpenter_service, "");
        });
    }

    #[test]
    fn flags_set_every_value() {
        check(
            &[
                "--metrics-port",
                "9090",
                "--health-probe-port=9091",
                "--enable-profiling",
            ],
            |s| {
                assert_eq!(
                    s.server,
                    ServerConfig {
                        metrics_port: 9090,
                        health_probe_port: 9091,
                        enable_profiling: true
                    }
                );
            },
        );
        check(
            &[
                "--disable-leader-election",
                "--leader-election-name",
                "x",
                "--leader-election-namespace",
                "ns",
            ],
            |s| {
                assert_eq!(
                    s.leader_election,
                    LeaderElectionConfig {
                        enabled: false,
                        name: "x".into(),
                        namespace: Some("ns".into())
                    }
                );
            },
        );
        check(&["--disable-leader-election=false"], |s| {
            assert!(s.leader_election.enabled)
        });
        check(
            &[
                "--disable-controller-warmup=F",
                "--disable-cluster-state-observability=1",
            ],
            |s| {
                assert!(!s.runtime.disable_controller_warmup);
                assert!(s.runtime.disable_cluster_state_observability);
            },
        );
        check(
            &["--memory-limit", "1073741824", "--cpu-requests", "2500"],
            |s| {
                assert_eq!(s.runtime.memory_limit_bytes, Some(1 << 30));
                assert_eq!(s.runtime.parallelism(), 3);
            },
        );
        check(&["--cpu-requests", "-5"], |s| {
            assert_eq!(s.runtime.cpu_requests_millis, 1000)
        });
        check(
            &[
                "--log-level",
                "debug",
                "--log-output-paths",
                "stdout,/tmp/k.log",
                "--log-error-output-paths",
                "stderr",
            ],
            |s| {
                assert_eq!(s.log.level, LogLevel::Debug);
                assert_eq!(
                    s.log.output,
                    vec![LogSink::Stdout, LogSink::File("/tmp/k.log".into())]
                );
            },
        );
        check(
            &[
                "--batch-max-duration",
                "1m30s",
                "--batch-idle-duration",
                "500ms",
            ],
            |s| {
                assert_eq!(s.batch.max_duration, Duration::from_secs(90));
                assert_eq!(s.batch.idle_duration, Duration::from_millis(500));
            },
        );
        check(
            &[
                "--preference-policy",
                "Ignore",
                "--min-values-policy",
                "BestEffort",
                "--ignore-dra-requests=false",
            ],
            |s| {
                assert_eq!(s.scheduling.preference_policy, PreferencePolicy::Ignore);
                assert_eq!(s.scheduling.min_values_policy, MinValuesPolicy::BestEffort);
                assert!(!s.scheduling.ignore_dra_requests);
            },
        );
        check(
            &[
                "--kube-client-qps",
                "50",
                "--kube-client-burst",
                "60",
                "--kubeconfig",
                "/k",
            ],
            |s| {
                assert_eq!(
                    s.kube_client,
                    KubeClientConfig {
                        kubeconfig: Some("/k".into()),
                        qps: 50,
                        burst: 60
                    }
                );
            },
        );
    }

    #[test]
    fn simulated_cloud_settings() {
        check(&[], |s| {
            assert_eq!(
                s.simulated,
                Some(SimulatedConfig {
                    launch_delay: Duration::from_secs(2),
                    boot_delay: Duration::from_secs(3),
                    termination_delay: Duration::from_secs(5),
                })
            );
        });
        check(
            &[
                "--simulated-launch-delay=100ms",
                "--simulated-boot-delay=0s",
                "--simulated-termination-delay=1m",
            ],
            |s| {
                let sim = s.simulated.unwrap();
                assert_eq!(sim.launch_delay, Duration::from_millis(100));
                assert_eq!(sim.boot_delay, Duration::ZERO);
                assert_eq!(sim.termination_delay, Duration::from_secs(60));
            },
        );
        check(&["--cloud-provider=aws", "--cluster-name=c"], |s| {
            assert_eq!(s.simulated, None)
        });
        check_err(
            &["--simulated-boot-delay", "soon"],
            "invalid value \"soon\" for SIMULATED_BOOT_DELAY (--simulated-boot-delay)",
        );
    }

    #[test]
    fn aws_settings() {
        check(&["--cloud-provider", "aws", "--cluster-name", "c"], |s| {
            let aws = s.aws.as_ref().unwrap();
            assert_eq!(aws.cluster_name, "c");
            assert_eq!(aws.vm_memory_overhead_percent, 0.075);
            assert_eq!(
                (
                    aws.reserved_enis,
                    aws.isolated_vpc,
                    aws.interruption_queue.is_none()
                ),
                (0, false, true)
            );
            assert_eq!(aws.ami_refresh_interval, Duration::from_secs(60));
        });
        check(
            &[
                "--cloud-provider=aws",
                "--cluster-name=c",
                "--cluster-endpoint=https://x.eks.amazonaws.com",
                "--cluster-ca-bundle=Zm9v",
                "--isolated-vpc",
                "--eks-control-plane",
                "--vm-memory-overhead-percent=0.1",
                "--interruption-queue=q",
                "--reserved-enis=2",
                "--disable-dry-run",
                "--enable-zonal-shift",
                "--ami-refresh-interval=5m",
                "--subnet-refresh-interval=1h",
            ],
            |s| {
                let aws = s.aws.clone().unwrap();
                assert_eq!(
                    aws,
                    AwsConfig {
                        cluster_name: "c".into(),
                        cluster_endpoint: Some("https://x.eks.amazonaws.com".into()),
                        cluster_ca_bundle: Some("Zm9v".into()),
                        isolated_vpc: true,
                        eks_control_plane: true,
                        vm_memory_overhead_percent: 0.1,
                        interruption_queue: Some("q".into()),
                        reserved_enis: 2,
                        disable_dry_run: true,
                        enable_zonal_shift: true,
                        ami_refresh_interval: Duration::from_secs(300),
                        subnet_refresh_interval: Duration::from_secs(3600),
                    }
                );
            },
        );
    }

    #[test]
    fn feature_gates_use_kubernetes_map_syntax() {
        let check_gates = |value: &str, want: FeatureGates, unknown: &[&str]| {
            let (gates, got_unknown) = parse_feature_gates(value).unwrap();
            assert_eq!(gates, want, "{value}");
            assert_eq!(got_unknown, unknown, "{value}");
        };
        check_gates(DEFAULT_FEATURE_GATES, FeatureGates::default(), &[]);
        check_gates("", FeatureGates::default(), &[]);
        check_gates(
            " NodeRepair=true , SpotToSpotConsolidation=True,ReservedCapacity=false",
            FeatureGates {
                node_repair: true,
                spot_to_spot_consolidation: true,
                reserved_capacity: false,
                ..FeatureGates::default()
            },
            &[],
        );
        check_gates(
            "NodeOverlay=1,StaticCapacity=t,CapacityBuffer=TRUE,Future=true",
            FeatureGates {
                node_overlay: true,
                static_capacity: true,
                capacity_buffer: true,
                ..FeatureGates::default()
            },
            &["Future"],
        );
        check_err(
            &["--feature-gates", "NodeRepair"],
            "invalid value \"NodeRepair\" for FEATURE_GATES (--feature-gates): \"NodeRepair\" is not of the form Name=true|false",
        );
        check_err(
            &["--feature-gates", "NodeRepair=yes"],
            "feature gate NodeRepair: \"yes\" is not a boolean",
        );
    }

    #[test]
    fn bad_values_name_the_env_and_flag() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--batch-max-duration", "x"],
                "invalid value \"x\" for BATCH_MAX_DURATION (--batch-max-duration): invalid duration \"x\"",
            ),
            (
                &["--batch-idle-duration=-1s"],
                "for BATCH_IDLE_DURATION (--batch-idle-duration): negative duration",
            ),
            (
                &["--metrics-port", "99999"],
                "invalid value \"99999\" for METRICS_PORT (--metrics-port): expected a port number",
            ),
            (
                &["--health-probe-port", "http"],
                "for HEALTH_PROBE_PORT (--health-probe-port)",
            ),
            (
                &["--kube-client-qps", "0"],
                "for KUBE_CLIENT_QPS (--kube-client-qps): must be greater than 0",
            ),
            (
                &["--kube-client-burst=-3"],
                "for KUBE_CLIENT_BURST (--kube-client-burst)",
            ),
            (
                &["--enable-profiling=yes"],
                "invalid value \"yes\" for ENABLE_PROFILING (--enable-profiling): expected a boolean",
            ),
            (
                &["--log-level", "trace"],
                "for LOG_LEVEL (--log-level): expected debug, info or error",
            ),
            (
                &["--log-output-paths", " , "],
                "for LOG_OUTPUT_PATHS (--log-output-paths)",
            ),
            (
                &["--preference-policy", "respect"],
                "for PREFERENCE_POLICY (--preference-policy): expected Respect or Ignore",
            ),
            (
                &["--min-values-policy", "Loose"],
                "for MIN_VALUES_POLICY (--min-values-policy)",
            ),
            (
                &["--memory-limit", "1Gi"],
                "for MEMORY_LIMIT (--memory-limit)",
            ),
            (
                &["--cpu-requests", "1.5"],
                "for CPU_REQUESTS (--cpu-requests)",
            ),
            (
                &["--leader-election-name", ""],
                "for LEADER_ELECTION_NAME (--leader-election-name): must not be empty",
            ),
            (
                &["--cloud-provider", "gcp"],
                "invalid value \"gcp\" for CLOUD_PROVIDER (--cloud-provider): expected aws or simulated",
            ),
            (
                &["--cloud-provider", "aws"],
                "CLUSTER_NAME (--cluster-name) is required with --cloud-provider aws",
            ),
            (
                &["--cluster-endpoint", "eks.local"],
                "for CLUSTER_ENDPOINT (--cluster-endpoint): must be an absolute URL",
            ),
            (
                &["--vm-memory-overhead-percent=-0.1"],
                "for VM_MEMORY_OVERHEAD_PERCENT (--vm-memory-overhead-percent): must be a number ≥ 0",
            ),
            (
                &["--reserved-enis=-1"],
                "for RESERVED_ENIS (--reserved-enis)",
            ),
            (
                &["--ami-refresh-interval", "30s"],
                "for AMI_REFRESH_INTERVAL (--ami-refresh-interval): must be at least 60s",
            ),
            (
                &["--subnet-refresh-interval", "soon"],
                "for SUBNET_REFRESH_INTERVAL (--subnet-refresh-interval)",
            ),
        ];
        for (args, want) in cases {
            check_err(args, want);
        }
    }

    /// Environment variables cannot be set in-process (edition 2024 makes that `unsafe`, which
    /// the workspace forbids), so this test re-runs itself as a child process with a chosen
    /// environment. The child prints the settings it parsed from the environment; the parent
    /// compares them with the same values given as flags in-process.
    #[test]
    fn environment_sets_the_same_values_as_flags() {
        const CHILD: &str = "KARPENTER_OPTIONS_TEST_CHILD";
        if std::env::var_os(CHILD).is_some() {
            let args: Vec<String> = std::env::var("KARPENTER_OPTIONS_TEST_ARGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect();
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            match parse(&refs) {
                Ok(s) => println!("SETTINGS<<{s:?}>>"),
                Err(e) => println!("SETTINGS<<error: {e}>>"),
            }
            return;
        }
        let run_child = |env: &[(&str, &str)], args: &str| -> String {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "options::tests::environment_sets_the_same_values_as_flags",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env_clear()
                .env(CHILD, "1")
                .env("KARPENTER_OPTIONS_TEST_ARGS", args)
                .envs(env.iter().copied())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            let start = stdout
                .find("SETTINGS<<")
                .unwrap_or_else(|| panic!("child output: {stdout}"));
            let rest = &stdout[start + "SETTINGS<<".len()..];
            rest[..rest.find(">>").unwrap()].to_string()
        };
        let env: &[(&str, &str)] = &[
            ("CLOUD_PROVIDER", "aws"),
            ("KUBECONFIG", "/etc/kube/config"),
            ("KARPENTER_SERVICE", "karpenter"),
            ("METRICS_PORT", "9000"),
            ("HEALTH_PROBE_PORT", "9001"),
            ("KUBE_CLIENT_QPS", "20"),
            ("KUBE_CLIENT_BURST", "30"),
            ("ENABLE_PROFILING", "true"),
            ("DISABLE_CONTROLLER_WARMUP", "false"),
            ("DISABLE_LEADER_ELECTION", "true"),
            ("DISABLE_CLUSTER_STATE_OBSERVABILITY", "true"),
            ("LEADER_ELECTION_NAME", "lease"),
            ("LEADER_ELECTION_NAMESPACE", "karpenter"),
            ("MEMORY_LIMIT", "1073741824"),
            ("CPU_REQUESTS", "2000"),
            ("LOG_LEVEL", "error"),
            ("LOG_OUTPUT_PATHS", "stderr"),
            ("LOG_ERROR_OUTPUT_PATHS", "stdout"),
            ("BATCH_MAX_DURATION", "20s"),
            ("BATCH_IDLE_DURATION", "2s"),
            ("PREFERENCE_POLICY", "Ignore"),
            ("MIN_VALUES_POLICY", "BestEffort"),
            ("IGNORE_DRA_REQUESTS", "false"),
            (
                "FEATURE_GATES",
                "NodeRepair=true,SpotToSpotConsolidation=true",
            ),
            ("SCHEDULER_CONFIG", "/etc/karpenter/scheduler.yaml"),
            ("CLUSTER_NAME", "prod"),
            ("CLUSTER_ENDPOINT", "https://api.example"),
            ("CLUSTER_CA_BUNDLE", "Y2E="),
            ("ISOLATED_VPC", "true"),
            ("EKS_CONTROL_PLANE", "true"),
            ("VM_MEMORY_OVERHEAD_PERCENT", "0.05"),
            ("INTERRUPTION_QUEUE", "prod-queue"),
            ("RESERVED_ENIS", "1"),
            ("DISABLE_DRY_RUN", "true"),
            ("ENABLE_ZONAL_SHIFT", "true"),
            ("AMI_REFRESH_INTERVAL", "2m"),
            ("SUBNET_REFRESH_INTERVAL", "3m"),
            ("SIMULATED_LAUNCH_DELAY", "1s"),
            ("SIMULATED_BOOT_DELAY", "2s"),
            ("SIMULATED_TERMINATION_DELAY", "3s"),
        ];
        // The same values as flags, derived mechanically: FOO_BAR=v → --foo-bar=v.
        let flags: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("--{}={v}", k.to_ascii_lowercase().replace('_', "-")))
            .collect();
        let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
        let from_flags = format!("{:?}", parse(&flag_refs).unwrap());
        assert_eq!(run_child(env, ""), from_flags);
        // A flag wins over the environment.
        let from_flag = run_child(
            &[("CLOUD_PROVIDER", "simulated"), ("METRICS_PORT", "1")],
            "--metrics-port=2",
        );
        assert!(from_flag.contains("metrics_port: 2,"), "{from_flag}");
        // Bad environment values are reported by their variable name.
        assert_eq!(
            run_child(
                &[("CLOUD_PROVIDER", "simulated"), ("BATCH_MAX_DURATION", "x")],
                ""
            ),
            "error: invalid value \"x\" for BATCH_MAX_DURATION (--batch-max-duration): invalid duration \"x\""
        );
        assert_eq!(
            run_child(&[], ""),
            "error: CLUSTER_NAME (--cluster-name) is required with --cloud-provider aws"
        );
    }
}
