//! Prometheus summaries, which the `prometheus` crate does not provide.
//!
//! Upstream exposes two summaries that its Performance dashboard reads by `quantile` label
//! (`karpenter_pods_startup_duration_seconds`, `karpenter_nodes_termination_duration_seconds`), so
//! they must stay summaries: a histogram would break `{quantile="0.99"}` queries.
//!
//! Semantics follow the Go client's defaults that upstream relies on: quantiles are computed over
//! a sliding window of [`MAX_AGE`] (10 minutes) kept as [`AGE_BUCKETS`] (5) overlapping streams
//! where every observation enters every stream and the oldest stream is reset and moved to the
//! back every `MAX_AGE / AGE_BUCKETS`; queries read the oldest stream (the one that covers the
//! longest span). `_sum` and `_count` are cumulative since start, as in Go.
//!
//! Each stream is a t-digest (crate `tdigest`, maintained; 1.0.1 released 2026-09). A t-digest's
//! rank error is smallest at the tails and well under upstream's 0.01 objective error in the
//! middle at compression 200; quantiles 0 and 1 are answered exactly from the stream's tracked
//! minimum and maximum, matching the Go objectives `{0: 0, 1: 0}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType, Quantile, Summary};
use tdigest::TDigest;

/// The quantiles every summary reports (upstream's objectives).
pub const QUANTILES: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 1.0];
/// How far back quantiles look (Go client `DefMaxAge`).
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// How many overlapping streams make up the window (Go client `DefAgeBuckets`).
pub const AGE_BUCKETS: usize = 5;
/// t-digest compression: centroids kept per stream.
const COMPRESSION: usize = 200;

/// One labelled series: the window of streams plus cumulative sum and count.
#[derive(Debug)]
struct Window {
    streams: Vec<TDigest>,
    /// Index of the oldest stream (the one queried).
    head: usize,
    /// When the head stream is next reset.
    head_expires: Instant,
    sum: f64,
    count: u64,
}

impl Window {
    fn new(now: Instant) -> Self {
        Window {
            streams: (0..AGE_BUCKETS)
                .map(|_| TDigest::new_with_size(COMPRESSION))
                .collect(),
            head: 0,
            head_expires: now + MAX_AGE / AGE_BUCKETS as u32,
            sum: 0.0,
            count: 0,
        }
    }

    fn rotate(&mut self, now: Instant) {
        let step = MAX_AGE / AGE_BUCKETS as u32;
        // Bounded: after a long idle gap every stream is reset once and the deadline jumps ahead.
        let mut resets = 0;
        while now >= self.head_expires {
            if resets < AGE_BUCKETS {
                if let Some(stream) = self.streams.get_mut(self.head) {
                    *stream = TDigest::new_with_size(COMPRESSION);
                }
                self.head = (self.head + 1) % AGE_BUCKETS;
                resets += 1;
                self.head_expires += step;
            } else {
                let behind = now.saturating_duration_since(self.head_expires);
                let skip = (behind.as_nanos() / step.as_nanos().max(1)) as u32 + 1;
                self.head_expires += step * skip;
            }
        }
    }

    fn observe(&mut self, value: f64, now: Instant) {
        if !value.is_finite() {
            // A NaN or infinite duration is a caller bug; dropping it keeps the digest sound.
            return;
        }
        self.rotate(now);
        for stream in &mut self.streams {
            stream.push(value);
        }
        self.sum += value;
        self.count += 1;
    }

    /// The reported quantiles at `now`; NaN when the window holds no observations (as Go).
    fn quantiles(&mut self, now: Instant) -> Vec<(f64, f64)> {
        self.rotate(now);
        let head = self.head;
        let Some(stream) = self.streams.get_mut(head) else {
            return QUANTILES.iter().map(|q| (*q, f64::NAN)).collect();
        };
        stream.flush();
        QUANTILES
            .iter()
            .map(|&q| {
                let value = if q <= 0.0 {
                    stream.min()
                } else if q >= 1.0 {
                    stream.max()
                } else {
                    stream.estimate_quantile(q)
                };
                (q, value.unwrap_or(f64::NAN))
            })
            .collect()
    }
}

/// A summary family with variable labels, registrable on a [`prometheus::Registry`].
#[derive(Debug, Clone)]
pub struct SummaryVec {
    inner: Arc<SummaryVecInner>,
}

#[derive(Debug)]
struct SummaryVecInner {
    desc: Desc,
    name: String,
    help: String,
    label_names: Vec<String>,
    series: Mutex<BTreeMap<Vec<String>, Arc<Mutex<Window>>>>,
}

impl SummaryVec {
    /// A summary named `name` with the given label names.
    pub fn new(name: &str, help: &str, label_names: &[&str]) -> prometheus::Result<Self> {
        let label_names: Vec<String> = label_names.iter().map(|l| (*l).to_string()).collect();
        let desc = Desc::new(
            name.to_string(),
            help.to_string(),
            label_names.clone(),
            HashMap::new(),
        )?;
        Ok(SummaryVec {
            inner: Arc::new(SummaryVecInner {
                desc,
                name: name.to_string(),
                help: help.to_string(),
                label_names,
                series: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// The series for `values` (one per label name, in order), created on first use.
    pub fn with_label_values(&self, values: &[&str]) -> prometheus::Result<SummaryHandle> {
        if values.len() != self.inner.label_names.len() {
            return Err(prometheus::Error::InconsistentCardinality {
                expect: self.inner.label_names.len(),
                got: values.len(),
            });
        }
        let key: Vec<String> = values.iter().map(|v| (*v).to_string()).collect();
        let window = lock(&self.inner.series)
            .entry(key)
            .or_insert_with(|| Arc::new(Mutex::new(Window::new(Instant::now()))))
            .clone();
        Ok(SummaryHandle { window })
    }

    /// Forgets the series for `values` (e.g. when its NodePool is deleted).
    pub fn remove_label_values(&self, values: &[&str]) -> bool {
        let key: Vec<String> = values.iter().map(|v| (*v).to_string()).collect();
        lock(&self.inner.series).remove(&key).is_some()
    }

    fn collect_at(&self, now: Instant) -> MetricFamily {
        let series: Vec<(Vec<String>, Arc<Mutex<Window>>)> = lock(&self.inner.series)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let metrics = series
            .into_iter()
            .map(|(values, window)| {
                let mut window = lock(&window);
                let mut summary = Summary::default();
                summary.set_sample_count(window.count);
                summary.set_sample_sum(window.sum);
                summary.set_quantile(
                    window
                        .quantiles(now)
                        .into_iter()
                        .map(|(q, v)| {
                            let mut quantile = Quantile::default();
                            quantile.set_quantile(q);
                            quantile.set_value(v);
                            quantile
                        })
                        .collect(),
                );
                let mut metric = Metric::default();
                metric.set_label(
                    self.inner
                        .label_names
                        .iter()
                        .zip(values)
                        .map(|(name, value)| {
                            let mut pair = LabelPair::default();
                            pair.set_name(name.clone());
                            pair.set_value(value);
                            pair
                        })
                        .collect(),
                );
                metric.set_summary(summary);
                metric
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(self.inner.name.clone());
        family.set_help(self.inner.help.clone());
        family.set_field_type(MetricType::SUMMARY);
        family.set_metric(metrics);
        family
    }
}

impl Collector for SummaryVec {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.inner.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        vec![self.collect_at(Instant::now())]
    }
}

/// A summary without labels.
#[derive(Debug, Clone)]
pub struct SummaryMetric {
    vec: SummaryVec,
    handle: SummaryHandle,
}

impl SummaryMetric {
    /// A label-less summary named `name`.
    pub fn new(name: &str, help: &str) -> prometheus::Result<Self> {
        let vec = SummaryVec::new(name, help, &[])?;
        let handle = vec.with_label_values(&[])?;
        Ok(SummaryMetric { vec, handle })
    }

    /// Records one value.
    pub fn observe(&self, value: f64) {
        self.handle.observe(value);
    }

    /// Starts a timer that observes the elapsed seconds when dropped.
    pub fn start_timer(&self) -> SummaryTimer {
        self.handle.start_timer()
    }
}

impl Collector for SummaryMetric {
    fn desc(&self) -> Vec<&Desc> {
        self.vec.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.vec.collect()
    }
}

/// One series of a summary.
#[derive(Debug, Clone)]
pub struct SummaryHandle {
    window: Arc<Mutex<Window>>,
}

impl SummaryHandle {
    /// Records one value.
    pub fn observe(&self, value: f64) {
        lock(&self.window).observe(value, Instant::now());
    }

    /// Starts a timer that observes the elapsed seconds when dropped.
    pub fn start_timer(&self) -> SummaryTimer {
        SummaryTimer {
            handle: self.clone(),
            start: Instant::now(),
        }
    }
}

/// Observes the seconds since it was started when dropped, so early returns are measured too.
#[derive(Debug)]
#[must_use = "the duration is recorded when the timer is dropped"]
pub struct SummaryTimer {
    handle: SummaryHandle,
    start: Instant,
}

impl Drop for SummaryTimer {
    fn drop(&mut self) {
        self.handle.observe(self.start.elapsed().as_secs_f64());
    }
}

/// Locks a mutex; a poisoned one still holds consistent statistics (every update is a whole
/// push), so the data is used rather than lost.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quantile_map(window: &mut Window, now: Instant) -> BTreeMap<String, f64> {
        window
            .quantiles(now)
            .into_iter()
            .map(|(q, v)| (q.to_string(), v))
            .collect()
    }

    /// Asserts each reported quantile is within `rank_error` (as a fraction of n) of the exact
    /// rank over the values 1..=n.
    fn check_uniform(n: usize, rank_error: f64) {
        let start = Instant::now();
        let mut window = Window::new(start);
        // Insert in a scrambled but deterministic order so sortedness does not help the digest.
        let mut order: Vec<usize> = (1..=n).collect();
        let len = order.len();
        for i in 0..len {
            order.swap(i, (i * 7919 + 13) % len);
        }
        for v in &order {
            window.observe(*v as f64, start);
        }
        let got = quantile_map(&mut window, start);
        assert_eq!(got["0"], 1.0, "quantile 0 is the exact minimum");
        assert_eq!(got["1"], n as f64, "quantile 1 is the exact maximum");
        for q in [0.5, 0.9, 0.99] {
            let exact = q * n as f64;
            let value = got[&q.to_string()];
            assert!(
                (value - exact).abs() <= rank_error * n as f64 + 1.0,
                "n={n} q={q}: got {value}, exact {exact}"
            );
        }
        assert_eq!(window.count, n as u64);
        assert_eq!(window.sum, (n * (n + 1) / 2) as f64);
    }

    #[test]
    fn quantiles_within_upstream_objective_error() {
        for n in [1usize, 2, 10, 100, 1_000, 20_000] {
            check_uniform(n, 0.01);
        }
    }

    #[test]
    fn empty_window_reports_nan_quantiles() {
        let start = Instant::now();
        let mut window = Window::new(start);
        assert!(
            quantile_map(&mut window, start)
                .values()
                .all(|v| v.is_nan())
        );
        window.observe(f64::NAN, start);
        assert_eq!(window.count, 0, "non-finite values are dropped");
    }

    #[test]
    fn old_observations_age_out_but_sum_and_count_stay() {
        let start = Instant::now();
        let mut window = Window::new(start);
        window.observe(100.0, start);
        // Within the window the old value is still seen.
        let later = start + MAX_AGE - Duration::from_secs(1);
        window.observe(1.0, later);
        assert_eq!(quantile_map(&mut window, later)["1"], 100.0);
        // Once a full window has passed since it was observed, only the newer value remains.
        let after = start + MAX_AGE + Duration::from_secs(1);
        let got = quantile_map(&mut window, after);
        assert_eq!((got["0"], got["1"]), (1.0, 1.0));
        assert_eq!((window.count, window.sum), (2, 101.0));
        // A long idle gap resets every stream without spinning.
        let much_later = start + Duration::from_secs(86_400 * 365);
        assert!(
            quantile_map(&mut window, much_later)
                .values()
                .all(|v| v.is_nan())
        );
        window.observe(5.0, much_later);
        assert_eq!(quantile_map(&mut window, much_later)["0.5"], 5.0);
    }

    #[test]
    fn label_cardinality_is_checked() {
        let vec = SummaryVec::new("x_seconds", "x", &["nodepool"]).unwrap();
        assert!(vec.with_label_values(&[]).is_err());
        let a = vec.with_label_values(&["a"]).unwrap();
        a.observe(2.0);
        {
            let _timer = a.start_timer();
        }
        let family = vec.collect_at(Instant::now());
        assert_eq!(family.get_metric().len(), 1);
        let metric = &family.get_metric()[0];
        assert_eq!(metric.get_label()[0].name(), "nodepool");
        assert_eq!(
            metric.get_summary().sample_count(),
            2,
            "the drop guard observed"
        );
        assert!(vec.remove_label_values(&["a"]));
        assert!(vec.collect_at(Instant::now()).get_metric().is_empty());
    }
}
