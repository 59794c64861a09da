//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics, so a
//! karpenter-rs replica and an upstream replica could even share one lock.
//!
//! - A candidate reads the Lease every retry period. It may take it when nobody holds it
//!   (empty `holderIdentity`, e.g. after a graceful release) or when the record has not changed
//!   for `leaseDurationSeconds` as measured on this process's monotonic clock since it last saw
//!   the record change. Measuring locally, as client-go does, makes expiry immune to clock skew
//!   between replicas; the injected [`SharedClock`] only supplies the timestamps written into the
//!   Lease (`acquireTime`, `renewTime`).
//! - Every write is a replace carrying the observed `resourceVersion`, so two candidates racing
//!   for an expired Lease cannot both win: the loser gets a conflict and stays a follower.
//! - The leader renews every retry period; if no renewal succeeds within the renew deadline it
//!   stops leading (upstream then exits; see the binary).
//! - Taking over from another holder increments `leaseTransitions`.
//! - On graceful shutdown the leader releases: it clears `holderIdentity` and shortens the lease
//!   to one second so a successor takes over on its next retry instead of waiting out the lease.
//!
//! Controllers gate on the [`watch::Receiver<bool>`] from [`LeaderElection::is_leader`]; the
//! `leader_election_master_status{name}` gauge mirrors it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use karpenter_cloudprovider::SharedClock;
use kube::Api;
use kube::api::PostParams;
use prometheus::IntGauge;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info, info_span, warn};

/// Upstream's Lease name.
pub const DEFAULT_LEASE_NAME: &str = "karpenter-leader-election";
/// Namespace used when neither the option nor the pod's namespace is known.
pub const FALLBACK_NAMESPACE: &str = "kube-system";
/// Where Kubernetes mounts the pod's namespace for its service account.
pub const SERVICE_ACCOUNT_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Errors from one election round trip.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The API server refused or failed a request.
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// What the client reported.
        #[source]
        source: Box<kube::Error>,
    },
    /// Another candidate wrote the Lease between our read and our write.
    #[error("lease {namespace}/{name} changed concurrently")]
    Conflict {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
    },
    /// The configuration cannot work (e.g. renew deadline not below the lease duration).
    #[error("invalid leader election configuration: {0}")]
    Config(String),
}

impl LeaderError {
    /// Stable short name for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            LeaderError::Api { .. } => "api",
            LeaderError::Conflict { .. } => "conflict",
            LeaderError::Config(_) => "config",
        }
    }
}

/// Timings and identity of a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionConfig {
    /// Lease name.
    pub lease_name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This candidate's `holderIdentity`; unique per process.
    pub identity: String,
    /// How long a holder's claim lasts without renewal (`leaseDurationSeconds`).
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a failing renewal before it gives up leading.
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// client-go / controller-runtime defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(lease_name: &str, namespace: &str, identity: &str) -> Self {
        ElectionConfig {
            lease_name: lease_name.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    fn validate(&self) -> Result<(), LeaderError> {
        // The same ordering client-go insists on, so a leader gives up before others take over.
        if self.lease_duration <= self.renew_deadline {
            return Err(LeaderError::Config(format!(
                "lease duration {:?} must be greater than renew deadline {:?}",
                self.lease_duration, self.renew_deadline
            )));
        }
        if self.renew_deadline.as_secs_f64() <= 1.2 * self.retry_period.as_secs_f64() {
            return Err(LeaderError::Config(format!(
                "renew deadline {:?} must be greater than 1.2 × retry period {:?}",
                self.renew_deadline, self.retry_period
            )));
        }
        if self.identity.is_empty() || self.lease_name.is_empty() || self.namespace.is_empty() {
            return Err(LeaderError::Config(
                "identity, lease name and namespace must be non-empty".to_string(),
            ));
        }
        if self.lease_duration.as_secs() < 1 {
            return Err(LeaderError::Config(
                "lease duration must be at least one second (leaseDurationSeconds is whole seconds)"
                    .to_string(),
            ));
        }
        Ok(())
    }
}

/// A unique `holderIdentity`: the host name plus a random suffix, as controller-runtime does, so
/// two processes on one host (or a restarted pod) never share an identity.
pub fn default_identity() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "karpenter".to_string());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// The Lease namespace: the option if set, else the pod's namespace (from the environment, e.g.
/// the chart's `SYSTEM_NAMESPACE`, then the
/// service-account namespace file), else `kube-system`. Inputs are passed in so callers decide
/// where they come from (tests pass literals).
pub fn resolve_namespace(
    option: Option<&str>,
    pod_namespace_env: Option<&str>,
    service_account_file: Option<&str>,
) -> String {
    [option, pod_namespace_env, service_account_file]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or(FALLBACK_NAMESPACE)
        .to_string()
}

/// What the candidate last saw of the Lease, and when (monotonic) it changed.
#[derive(Debug, Clone)]
struct Observed {
    /// The parts of the record whose change proves the holder is alive.
    record: (Option<String>, Option<MicroTime>, Option<i32>, Option<i32>),
    at: Instant,
}

fn record_of(spec: &LeaseSpec) -> (Option<String>, Option<MicroTime>, Option<i32>, Option<i32>) {
    (
        spec.holder_identity.clone(),
        spec.renew_time.clone(),
        spec.lease_duration_seconds,
        spec.lease_transitions,
    )
}

/// One candidate. [`LeaderElector::spawn`] runs it in the background.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: ElectionConfig,
    clock: SharedClock,
    status: Option<IntGauge>,
    observed: Option<Observed>,
}

impl LeaderElector {
    /// A candidate for `config.lease_name` in `config.namespace`. `status` is this lease's
    /// `leader_election_master_status` series, if metrics are wanted.
    pub fn new(
        client: kube::Client,
        config: ElectionConfig,
        clock: SharedClock,
        status: Option<IntGauge>,
    ) -> Result<Self, LeaderError> {
        config.validate()?;
        Ok(LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            clock,
            status,
            observed: None,
        })
    }

    fn now_micro(&self) -> MicroTime {
        let micros = self.clock.now().timestamp_micros();
        MicroTime(Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    fn api_error(&self, source: kube::Error) -> LeaderError {
        if let kube::Error::Api(status) = &source
            && status.code == 409
        {
            return LeaderError::Conflict {
                namespace: self.config.namespace.clone(),
                name: self.config.lease_name.clone(),
            };
        }
        LeaderError::Api {
            namespace: self.config.namespace.clone(),
            name: self.config.lease_name.clone(),
            source: Box::new(source),
        }
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One attempt to become or stay leader. `Ok(true)` means we hold the Lease now.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderError> {
        let now = self.now_micro();
        let existing = self
            .api
            .get_opt(&self.config.lease_name)
            .await
            .map_err(|e| self.api_error(e))?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lease_name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(self.lease_seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            let created = self
                .api
                .create(&PostParams::default(), &lease)
                .await
                .map_err(|e| self.api_error(e))?;
            info!(
                lease = %self.config.lease_name,
                namespace = %self.config.namespace,
                identity = %self.config.identity,
                "created and acquired leader lease"
            );
            self.observe(&created);
            return Ok(true);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = record_of(&spec);
        let changed = self.observed.as_ref().is_none_or(|o| o.record != record);
        if changed {
            self.observed = Some(Observed {
                record,
                at: Instant::now(),
            });
        }
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_by_me = holder == self.config.identity;
        if !holder.is_empty() && !held_by_me {
            // The holder's own duration governs its claim, as the record says.
            let claim = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.config.lease_duration, Duration::from_secs);
            let seen = self.observed.as_ref().map_or_else(Instant::now, |o| o.at);
            if seen + claim > Instant::now() {
                return Ok(false);
            }
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.lease_seconds()),
            acquire_time: if held_by_me {
                spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if held_by_me {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..spec
        };
        lease.spec = Some(new_spec);
        // `lease` still carries the resourceVersion we read: a concurrent writer makes this fail.
        let updated = self
            .api
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await
            .map_err(|e| self.api_error(e))?;
        if !held_by_me {
            info!(
                lease = %self.config.lease_name,
                namespace = %self.config.namespace,
                identity = %self.config.identity,
                previous_holder = %holder,
                "acquired leader lease"
            );
        }
        self.observe(&updated);
        Ok(true)
    }

    fn observe(&mut self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        self.observed = Some(Observed {
            record: record_of(&spec),
            at: Instant::now(),
        });
    }

    /// Gives the Lease up if we hold it: clears the holder so a successor need not wait.
    async fn release(&mut self) -> Result<(), LeaderError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.lease_name)
            .await
            .map_err(|e| self.api_error(e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        let now = self.now_micro();
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..spec
        });
        self.api
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await
            .map_err(|e| self.api_error(e))?;
        info!(lease = %self.config.lease_name, identity = %self.config.identity, "released leader lease");
        Ok(())
    }

    fn set_leader(&self, tx: &watch::Sender<bool>, leading: bool) {
        tx.send_replace(leading);
        if let Some(gauge) = &self.status {
            gauge.set(i64::from(leading));
        }
    }

    /// Retry pause with client-go's jitter (up to +120 %), so candidates do not move in step.
    fn jittered_retry(&self) -> Duration {
        let jitter = f64::from(uuid::Uuid::new_v4().as_u128() as u16) / f64::from(u16::MAX);
        self.config.retry_period.mul_f64(1.0 + 1.2 * jitter)
    }

    async fn run(mut self, tx: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        self.set_leader(&tx, false);
        loop {
            // Candidate: try until we lead or are told to stop.
            loop {
                if *shutdown.borrow() {
                    return;
                }
                match self.try_acquire_or_renew().await {
                    Ok(true) => break,
                    Ok(false) => {
                        debug!(lease = %self.config.lease_name, "lease held by another candidate")
                    }
                    Err(e @ LeaderError::Conflict { .. }) => {
                        debug!(error = %e, category = e.category(), "lost a race for the lease")
                    }
                    Err(e) => {
                        warn!(error = %e, category = e.category(), "could not acquire lease")
                    }
                }
                let pause = self.jittered_retry();
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => {}
                }
            }
            self.set_leader(&tx, true);
            let mut last_renew = Instant::now();
            // Leader: renew every retry period until the deadline passes without success.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.retry_period) => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    self.set_leader(&tx, false);
                    if let Err(e) = self.release().await {
                        warn!(error = %e, category = e.category(), "could not release leader lease");
                    }
                    return;
                }
                let attempt = tokio::time::timeout(
                    self.config
                        .renew_deadline
                        .saturating_sub(last_renew.elapsed()),
                    self.try_acquire_or_renew(),
                )
                .await;
                match attempt {
                    Ok(Ok(true)) => last_renew = Instant::now(),
                    Ok(Ok(false)) => {
                        error!(lease = %self.config.lease_name, "leader lease taken by another candidate");
                        break;
                    }
                    Ok(Err(e)) => {
                        warn!(error = %e, category = e.category(), "failed to renew leader lease")
                    }
                    Err(_) => {}
                }
                if last_renew.elapsed() >= self.config.renew_deadline {
                    error!(
                        lease = %self.config.lease_name,
                        deadline = ?self.config.renew_deadline,
                        "failed to renew leader lease within the renew deadline"
                    );
                    break;
                }
            }
            self.set_leader(&tx, false);
        }
    }

    /// Runs the election in the background.
    pub fn spawn(self) -> LeaderElection {
        let (tx, rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let span = info_span!("leader-election", lease = %self.config.lease_name);
        let status = self.status.clone();
        let task = tokio::spawn(self.run(tx, stop_rx).instrument(span));
        LeaderElection {
            is_leader: rx,
            stop: stop_tx,
            task: Some(task),
            status,
        }
    }
}

/// A running election. Dropping it stops campaigning without releasing the Lease (as a crash
/// would); [`LeaderElection::shutdown`] releases it.
#[derive(Debug)]
pub struct LeaderElection {
    is_leader: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    status: Option<IntGauge>,
}

impl LeaderElection {
    /// Whether this process leads now, and a way to wait for changes.
    pub fn is_leader(&self) -> watch::Receiver<bool> {
        self.is_leader.clone()
    }

    /// Stops campaigning and, if leading, releases the Lease so a successor takes over at once.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            error!(error = %e, "leader election task failed");
        }
    }
}

impl Drop for LeaderElection {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            if let Some(gauge) = &self.status {
                gauge.set(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_resolution_prefers_option_then_pod_then_kube_system() {
        let check = |option, env, file, want: &str| {
            assert_eq!(resolve_namespace(option, env, file), want);
        };
        check(
            Some("karpenter"),
            Some("pod-ns"),
            Some("sa-ns"),
            "karpenter",
        );
        check(Some(""), Some("pod-ns"), Some("sa-ns"), "pod-ns");
        check(None, None, Some("sa-ns\n"), "sa-ns");
        check(None, Some(" "), None, "kube-system");
        check(None, None, None, "kube-system");
    }

    #[test]
    fn identities_are_unique_per_process_and_start_with_the_host() {
        let a = default_identity();
        let b = default_identity();
        assert_ne!(a, b);
        let (host_a, _) = a.rsplit_once('_').unwrap();
        assert_eq!(host_a, b.rsplit_once('_').unwrap().0);
    }

    #[test]
    fn config_rejects_timings_client_go_rejects() {
        let base = ElectionConfig::new("l", "ns", "me");
        assert!(base.validate().is_ok());
        let check_bad = |f: &dyn Fn(&mut ElectionConfig), needle: &str| {
            let mut c = base.clone();
            f(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        };
        check_bad(
            &|c| c.renew_deadline = Duration::from_secs(15),
            "greater than renew deadline",
        );
        check_bad(
            &|c| c.retry_period = Duration::from_secs(9),
            "1.2 × retry period",
        );
        check_bad(&|c| c.identity.clear(), "non-empty");
        check_bad(
            &|c| {
                c.lease_duration = Duration::from_millis(900);
                c.renew_deadline = Duration::from_millis(600);
                c.retry_period = Duration::from_millis(100);
            },
            "at least one second",
        );
    }
}
