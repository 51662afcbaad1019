//! Outlier detection (`outlier_detection`): passive ejection of hosts that keep failing
//! (consecutive 5xx or gateway errors), for a time that grows with each ejection.
//!
//! Envoy's consecutive detectors, without its split of local-origin errors:
//! - every 5xx counts towards `consecutive_5xx`; 502/503/504 and connect failures, timeouts
//!   and resets (which Envoy maps to 503/504) count towards both `consecutive_5xx` and
//!   `consecutive_gateway_failure`. A 500/501 resets the gateway counter; any other status
//!   resets both. Reaching a threshold resets both counters, ejected or not.
//! - An ejection is enforced with probability `enforcing_consecutive_*` percent, and only
//!   while fewer than `max_ejection_percent` of the hosts are ejected (one host may always
//!   be ejected).
//! - The n-th ejection of a host in a row lasts `n * base_ejection_time`, at most
//!   `max_ejection_time`. Each review (`interval`) a host spends healthy a full interval
//!   after its last ejection lowers n by one.
//! - Ejections end at a review ([`OutlierDetector::on_interval`], every `interval`, driven by
//!   `health::spawn`): an ejection lasts its time rounded up to the next review, as in Envoy.
//!
//! Consecutive counters are atomics on the data path; the ejection state takes a lock only
//! when a threshold is reached and at each review.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::host::{HealthFlag, Host};
use crate::config::OutlierConfig;
use crate::metrics::ClusterMetrics;

/// The outcome of one request (or connect) to a host, as outlier detection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A response with this status code.
    Status(u16),
    /// The connection could not be made (refused, timed out).
    ConnectFailure,
    /// No response within the timeout.
    Timeout,
    /// The connection broke before a full response.
    Reset,
}

impl RequestOutcome {
    /// (a 5xx, a gateway failure).
    fn classify(self) -> (bool, bool) {
        match self {
            RequestOutcome::Status(s) => ((500..=599).contains(&s), matches!(s, 502..=504)),
            RequestOutcome::ConnectFailure | RequestOutcome::Timeout | RequestOutcome::Reset => {
                (true, true)
            }
        }
    }
}

/// Which detector fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detector {
    Consecutive5xx,
    ConsecutiveGatewayFailure,
}

#[derive(Debug, Default)]
struct Counters {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
}

#[derive(Debug, Default, Clone, Copy)]
struct Ejection {
    /// Since when, and for how long, while ejected.
    ejected: Option<(Instant, Duration)>,
    /// The ejection-time multiplier (Envoy's `ejectTimeBackoff`).
    backoff: u32,
    last_unejected: Option<Instant>,
    /// Ejections of this host ever.
    times: u64,
}

#[derive(Debug, Default)]
struct State {
    hosts: Vec<Ejection>,
    ejected: usize,
}

/// Outlier detection of one cluster.
#[derive(Debug)]
pub struct OutlierDetector {
    cfg: OutlierConfig,
    hosts: Vec<Arc<Host>>,
    /// Host identity (`Arc` pointer) -> position in `hosts`.
    index: HashMap<usize, usize>,
    counters: Vec<Counters>,
    state: Mutex<State>,
    metrics: OnceLock<ClusterMetrics>,
}

fn key(host: &Arc<Host>) -> usize {
    Arc::as_ptr(host) as usize
}

impl OutlierDetector {
    pub fn new(cfg: &OutlierConfig, hosts: &[Arc<Host>]) -> OutlierDetector {
        OutlierDetector {
            cfg: cfg.clone(),
            hosts: hosts.to_vec(),
            index: hosts.iter().enumerate().map(|(i, h)| (key(h), i)).collect(),
            counters: hosts.iter().map(|_| Counters::default()).collect(),
            state: Mutex::new(State {
                hosts: vec![Ejection::default(); hosts.len()],
                ejected: 0,
            }),
            metrics: OnceLock::new(),
        }
    }

    /// Counts ejections in `metrics` and keeps its `membership_healthy` up to date.
    pub fn with_metrics(self, metrics: ClusterMetrics) -> OutlierDetector {
        self.attach_metrics(metrics);
        self
    }

    /// Like [`Self::with_metrics`] on a shared value; the first metrics attached stay.
    pub fn attach_metrics(&self, metrics: ClusterMetrics) {
        let _ = self.metrics.set(metrics);
    }

    /// How often [`Self::on_interval`] should run.
    pub fn interval(&self) -> Duration {
        self.cfg.interval
    }

    /// Hosts ejected now.
    pub fn ejected(&self) -> usize {
        self.lock().ejected
    }

    /// Records one outcome for `host`; may eject it. Hosts this detector was not built with
    /// (ORIGINAL_DST destinations) and hosts already ejected are ignored.
    pub fn report(&self, host: &Arc<Host>, outcome: RequestOutcome) {
        let Some(&i) = self.index.get(&key(host)) else {
            return;
        };
        if host.has_flag(HealthFlag::Ejected) {
            return;
        }
        let c = &self.counters[i];
        let (is_5xx, is_gateway) = outcome.classify();
        if !is_5xx {
            c.consecutive_5xx.store(0, Ordering::Relaxed);
            c.consecutive_gateway.store(0, Ordering::Relaxed);
            return;
        }
        let n5xx = c.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        let ngw = if is_gateway {
            c.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            c.consecutive_gateway.store(0, Ordering::Relaxed);
            0
        };
        let fired = if ngw >= self.cfg.consecutive_gateway_failure {
            Detector::ConsecutiveGatewayFailure
        } else if n5xx >= self.cfg.consecutive_5xx {
            Detector::Consecutive5xx
        } else {
            return;
        };
        self.on_threshold(i, fired, Instant::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn on_threshold(&self, i: usize, fired: Detector, now: Instant) {
        let host = &self.hosts[i];
        let mut st = self.lock();
        // Reset under the lock: of racing reports, only the first one here acts.
        let c = &self.counters[i];
        let was = c.consecutive_5xx.swap(0, Ordering::Relaxed)
            + c.consecutive_gateway.swap(0, Ordering::Relaxed);
        if was == 0 || st.hosts[i].ejected.is_some() {
            return;
        }
        let enforcing = match fired {
            Detector::Consecutive5xx => self.cfg.enforcing_consecutive_5xx,
            Detector::ConsecutiveGatewayFailure => self.cfg.enforcing_consecutive_gateway_failure,
        };
        if enforcing < 100 && rand::random_range(0..100) >= enforcing {
            tracing::debug!(host = %host.address, ?fired, enforcing, "outlier detected, ejection not enforced this time");
            return;
        }
        let total = self.hosts.len();
        let allowed = st.ejected == 0
            || (st.ejected + 1) * 100 <= self.cfg.max_ejection_percent as usize * total;
        if !allowed {
            tracing::info!(
                host = %host.address,
                ?fired,
                ejected = st.ejected,
                max_ejection_percent = self.cfg.max_ejection_percent,
                "outlier detected but not ejected: max_ejection_percent reached"
            );
            return;
        }
        let base = self.cfg.base_ejection_time;
        let max = self.cfg.max_ejection_time.max(base);
        let e = &mut st.hosts[i];
        if base.saturating_mul(e.backoff) < max {
            e.backoff += 1;
        }
        let time = base.saturating_mul(e.backoff).min(max);
        e.ejected = Some((now, time));
        e.times += 1;
        let times = e.times;
        st.ejected += 1;
        host.set_flag(HealthFlag::Ejected, true);
        tracing::info!(host = %host.address, ?fired, ejection_time = ?time, times, "outlier ejected host");
        if let Some(m) = self.metrics.get() {
            m.outlier_ejections_total.inc();
        }
        self.update_gauges(&st);
    }

    /// The periodic review (every [`Self::interval`]): ends ejections whose time is up and
    /// lowers the ejection multiplier of hosts that stayed healthy a full interval.
    pub fn on_interval(&self, now: Instant) {
        let mut st = self.lock();
        let mut changed = false;
        for (i, host) in self.hosts.iter().enumerate() {
            let e = &mut st.hosts[i];
            match e.ejected {
                Some((since, time)) if now.saturating_duration_since(since) >= time => {
                    e.ejected = None;
                    e.last_unejected = Some(now);
                    host.set_flag(HealthFlag::Ejected, false);
                    self.counters[i].consecutive_5xx.store(0, Ordering::Relaxed);
                    self.counters[i]
                        .consecutive_gateway
                        .store(0, Ordering::Relaxed);
                    st.ejected -= 1;
                    changed = true;
                    tracing::info!(host = %host.address, after = ?time, "outlier ejection ended");
                }
                Some(_) => {}
                None => {
                    if e.backoff > 0
                        && e.last_unejected
                            .is_some_and(|t| now.saturating_duration_since(t) >= self.cfg.interval)
                    {
                        e.backoff -= 1;
                    }
                }
            }
        }
        if changed {
            self.update_gauges(&st);
        }
    }

    fn update_gauges(&self, st: &State) {
        if let Some(m) = self.metrics.get() {
            m.outlier_ejections_active.set(st.ejected as i64);
            let healthy = self.hosts.iter().filter(|h| h.healthy()).count();
            m.membership_healthy.set(healthy as i64);
        }
    }

    /// How long `host`'s current ejection lasts (`None`: not ejected or unknown host).
    pub fn ejection_time(&self, host: &Arc<Host>) -> Option<Duration> {
        let i = *self.index.get(&key(host))?;
        self.lock().hosts[i].ejected.map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn hosts(n: u16) -> Vec<Arc<Host>> {
        (1..=n)
            .map(|p| Arc::new(Host::from_addr(([127, 0, 0, 1], p).into())))
            .collect()
    }

    fn cfg() -> OutlierConfig {
        OutlierConfig {
            consecutive_5xx: 3,
            consecutive_gateway_failure: 5,
            ..OutlierConfig::default()
        }
    }

    fn fail(o: &OutlierDetector, h: &Arc<Host>, n: usize, outcome: RequestOutcome) {
        for _ in 0..n {
            o.report(h, outcome);
        }
    }

    const E500: RequestOutcome = RequestOutcome::Status(500);

    #[tokio::test(start_paused = true)]
    async fn consecutive_5xx_ejects_and_a_success_resets_the_count() {
        let hs = hosts(2);
        let metrics = Metrics::new().cluster("c");
        let o = OutlierDetector::new(&cfg(), &hs).with_metrics(metrics.clone());
        fail(&o, &hs[0], 2, E500);
        o.report(&hs[0], RequestOutcome::Status(404));
        fail(&o, &hs[0], 2, E500);
        assert!(hs[0].healthy(), "the 404 reset the count");
        o.report(&hs[0], E500);
        assert!(hs[0].has_flag(HealthFlag::Ejected));
        assert!(hs[1].healthy());
        assert_eq!(o.ejected(), 1);
        assert_eq!(
            (
                metrics.outlier_ejections_total.get(),
                metrics.outlier_ejections_active.get(),
                metrics.membership_healthy.get()
            ),
            (1, 1, 1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gateway_failures_and_connect_errors_count_as_gateway_failures() {
        let hs = hosts(1);
        let o = OutlierDetector::new(
            &OutlierConfig {
                consecutive_5xx: 100,
                consecutive_gateway_failure: 4,
                ..OutlierConfig::default()
            },
            &hs,
        );
        o.report(&hs[0], RequestOutcome::Status(502));
        o.report(&hs[0], RequestOutcome::ConnectFailure);
        o.report(&hs[0], RequestOutcome::Timeout);
        o.report(&hs[0], E500); // a 500 resets the gateway count, not the 5xx count
        o.report(&hs[0], RequestOutcome::Reset);
        o.report(&hs[0], RequestOutcome::Status(503));
        o.report(&hs[0], RequestOutcome::Status(504));
        assert!(hs[0].healthy());
        o.report(&hs[0], RequestOutcome::Status(502));
        assert!(!hs[0].healthy());
    }

    #[tokio::test(start_paused = true)]
    async fn enforcing_zero_never_ejects() {
        let hs = hosts(1);
        let o = OutlierDetector::new(
            &OutlierConfig {
                enforcing_consecutive_5xx: 0,
                enforcing_consecutive_gateway_failure: 0,
                ..cfg()
            },
            &hs,
        );
        fail(&o, &hs[0], 20, RequestOutcome::Status(503));
        assert!(hs[0].healthy());
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejection_percent_is_respected_but_one_host_may_always_go() {
        // 10% of 4 hosts is 0.4: still one host may be ejected, not two.
        let hs = hosts(4);
        let o = OutlierDetector::new(&cfg(), &hs);
        fail(&o, &hs[0], 3, E500);
        fail(&o, &hs[1], 3, E500);
        assert_eq!(o.ejected(), 1);
        assert!(!hs[0].healthy() && hs[1].healthy());

        // 50% of 4: two.
        let hs = hosts(4);
        let o = OutlierDetector::new(
            &OutlierConfig {
                max_ejection_percent: 50,
                ..cfg()
            },
            &hs,
        );
        for h in &hs {
            fail(&o, h, 3, E500);
        }
        assert_eq!(o.ejected(), 2);
        assert_eq!(hs.iter().filter(|h| h.healthy()).count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_ends_at_the_first_review_after_its_time_and_grows_each_time() {
        let hs = hosts(1);
        let metrics = Metrics::new().cluster("c");
        let o = OutlierDetector::new(
            &OutlierConfig {
                interval: Duration::from_secs(10),
                base_ejection_time: Duration::from_secs(30),
                max_ejection_time: Duration::from_secs(70),
                ..cfg()
            },
            &hs,
        )
        .with_metrics(metrics.clone());
        let h = &hs[0];
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        fail(&o, h, 3, E500);
        assert_eq!(o.ejection_time(h), Some(Duration::from_secs(30)));
        o.on_interval(at(20));
        assert!(!h.healthy(), "20s < 30s");
        o.on_interval(at(30));
        assert!(h.healthy(), "30s: over");
        assert_eq!(metrics.outlier_ejections_active.get(), 0);
        assert_eq!(o.ejection_time(h), None);

        // The second ejection lasts twice as long, the third is capped at 70s.
        tokio::time::advance(Duration::from_secs(31)).await;
        fail(&o, h, 3, E500);
        assert_eq!(o.ejection_time(h), Some(Duration::from_secs(60)));
        o.on_interval(at(31 + 50));
        assert!(!h.healthy());
        o.on_interval(at(31 + 60));
        assert!(h.healthy());
        tokio::time::advance(Duration::from_secs(60)).await;
        fail(&o, h, 3, E500);
        assert_eq!(o.ejection_time(h), Some(Duration::from_secs(70)));
        assert_eq!(metrics.outlier_ejections_total.get(), 3);

        // Healthy reviews lower the multiplier: uneject at 91+70=161, then reviews at
        // 171 and 181 (each a full interval after un-ejection) bring it from 3 to 1.
        o.on_interval(at(161));
        assert!(h.healthy());
        o.on_interval(at(165)); // less than an interval after un-ejection: no decay
        o.on_interval(at(171));
        o.on_interval(at(181));
        tokio::time::advance(Duration::from_secs(90)).await;
        fail(&o, h, 3, E500);
        assert_eq!(o.ejection_time(h), Some(Duration::from_secs(60)));
    }

    #[test]
    fn unknown_hosts_are_ignored() {
        let hs = hosts(1);
        let o = OutlierDetector::new(&cfg(), &hs);
        let other = hosts(1).remove(0);
        fail(&o, &other, 10, E500);
        assert!(other.healthy());
        assert_eq!(o.ejected(), 0);
    }
}
