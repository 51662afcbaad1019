//! `fault` (MOSN's fault injection): delays and/or aborts a percentage of the requests whose
//! headers match. The delay and the abort are drawn independently; a request drawn for both
//! is delayed, then aborted.

use std::sync::Arc;

use crate::protocol::Request;

use super::{
    FilterContext, FilterDeps, FilterStatus, LocalReply, StreamFilter, StreamFilterFactory,
};
use crate::config::StreamFilterConfig;
use crate::config::filter::FaultConfig;

pub(super) const NAME: &str = "fault";

/// Body of an abort (MOSN's wording).
const ABORT_BODY: &str = "fault filter abort";

pub(super) fn build(
    cfg: &StreamFilterConfig,
    _deps: &FilterDeps<'_>,
) -> Option<Arc<dyn StreamFilterFactory>> {
    match cfg {
        StreamFilterConfig::Fault(c) => Some(Arc::new(FaultFactory {
            cfg: Arc::new(c.clone()),
        })),
        _ => None,
    }
}

#[derive(Debug)]
struct FaultFactory {
    cfg: Arc<FaultConfig>,
}

impl StreamFilterFactory for FaultFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Draws the request's fate here: most requests get no filter at all.
    fn create(&self) -> Option<Box<dyn StreamFilter>> {
        let delay = roll(self.cfg.delay_percent);
        let abort = roll(self.cfg.abort_percent);
        (delay || abort).then(|| {
            Box::new(Fault {
                cfg: self.cfg.clone(),
                delay,
                abort,
            }) as Box<dyn StreamFilter>
        })
    }
}

/// `true` for `percent`% of the calls.
pub(super) fn roll(percent: u32) -> bool {
    match percent {
        0 => false,
        100.. => true,
        p => rand::random_range(0..100) < p,
    }
}

struct Fault {
    cfg: Arc<FaultConfig>,
    delay: bool,
    abort: bool,
}

impl Fault {
    fn abort_reply(&self) -> FilterStatus {
        FilterStatus::Respond(LocalReply::text(
            self.cfg.abort_status,
            "fault_abort",
            ABORT_BODY,
        ))
    }
}

impl StreamFilter for Fault {
    fn on_request_headers(
        &mut self,
        req: &mut dyn Request,
        _ctx: &mut FilterContext,
    ) -> FilterStatus {
        if !self.cfg.headers.iter().all(|h| h.matches(req)) {
            self.abort = false;
            return FilterStatus::Continue;
        }
        if self.delay {
            FilterStatus::Pause(self.cfg.delay)
        } else if self.abort {
            self.abort_reply()
        } else {
            FilterStatus::Continue
        }
    }

    fn on_resume(&mut self, _ctx: &mut FilterContext) -> FilterStatus {
        if std::mem::take(&mut self.abort) {
            self.abort_reply()
        } else {
            FilterStatus::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;
    use serde_json::json;

    use super::super::tests::*;
    use super::*;

    fn fault(config: serde_json::Value) -> Vec<Arc<dyn StreamFilterFactory>> {
        factories(json!([{ "type": "fault", "config": config }]))
    }

    /// Runs `n` requests with `headers`; counts (paused, aborted, aborted after the pause).
    fn run(config: serde_json::Value, n: usize, headers: &[(&str, &str)]) -> (usize, usize, usize) {
        let f = fault(config);
        let (mut paused, mut aborted, mut late) = (0, 0, 0);
        for _ in 0..n {
            let mut ctx = ctx("10.0.0.1:1000");
            for mut filter in chain(&f) {
                let mut head = request("GET", "/", headers);
                match filter.on_request_headers(&mut head, &mut ctx) {
                    FilterStatus::Pause(d) => {
                        assert_eq!(d, Duration::from_millis(100));
                        paused += 1;
                        if let FilterStatus::Respond(r) = filter.on_resume(&mut ctx) {
                            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
                            late += 1;
                        }
                    }
                    FilterStatus::Respond(r) => {
                        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
                        assert_eq!(&r.body[..], b"fault filter abort\n");
                        aborted += 1;
                    }
                    FilterStatus::Continue => {}
                }
            }
        }
        (paused, aborted, late)
    }

    const N: usize = 100_000;
    /// 100,000 draws at 50% (the widest case) have a standard deviation of 158, so 800 is
    /// more than 5 of them; an off-by-one percent (1,000) still fails.
    const TOLERANCE: usize = 800;

    fn near(got: usize, want: usize) {
        assert!(
            got.abs_diff(want) <= TOLERANCE,
            "got {got}, want {want} ± {TOLERANCE}"
        );
    }

    #[test]
    fn delays_and_aborts_their_percentages() {
        let cfg = json!({
            "delay_percent": 30, "delay_duration": "100ms",
            "abort_percent": 50, "abort_status": 503,
        });
        let (paused, aborted, late) = run(cfg, N, &[]);
        near(paused, N * 30 / 100);
        // Independent draws: half of the delayed ones abort after the delay.
        near(aborted + late, N / 2);
        near(late, N * 15 / 100);
    }

    #[test]
    fn only_requests_whose_headers_all_match() {
        let cfg = json!({
            "abort_percent": 100, "abort_status": 503,
            "headers": [
                { "name": "x-fault", "value": "1" },
                { "name": "X-User", "value": "te.*", "regex": true },
            ],
        });
        assert_eq!(run(cfg.clone(), 10, &[]), (0, 0, 0));
        assert_eq!(run(cfg.clone(), 10, &[("x-fault", "1")]), (0, 0, 0));
        assert_eq!(
            run(cfg.clone(), 10, &[("x-fault", "1"), ("x-user", "test")]),
            (0, 10, 0)
        );
        // The regex matches the whole value.
        assert_eq!(
            run(cfg, 10, &[("x-fault", "1"), ("x-user", "atest")]),
            (0, 0, 0)
        );
    }

    #[test]
    fn zero_percent_makes_no_filter() {
        let loaded = parse_filters(json!([{ "type": "fault", "config": {} }])).unwrap();
        let f = build_all(&loaded);
        assert_eq!(f.len(), 1);
        assert!(f[0].create().is_none());
        assert!(
            loaded.warnings.iter().any(|w| w.contains("does nothing")),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn validation() {
        let p = "servers[0].listeners[0].stream_filters[0].config";
        assert_eq!(
            errors(json!([{ "type": "fault", "config": {
                "delay_percent": 101, "abort_percent": 10, "upstream_cluster": "c",
                "headers": [{ "name": "bad header", "value": "(" , "regex": true }],
            }}])),
            vec![
                format!(
                    "{p}.upstream_cluster: not supported: stream filters run before routing, so the upstream cluster is not known yet; remove it to inject faults into every matching request of this listener"
                ),
                format!("{p}.delay_percent: 101 is out of range (0..=100)"),
                format!("{p}.abort_status: missing abort_status (needed when abort_percent > 0)"),
                format!("{p}.headers[0].name: invalid header name \"bad header\""),
                format!("{p}.headers[0].value: invalid regex \"(\": unclosed group"),
            ]
        );
        assert_eq!(
            errors(json!([{ "type": "fault", "config": {
                "delay_percent": 10, "abort_percent": 10, "abort_status": 700,
            }}])),
            vec![
                format!(
                    "{p}.delay_duration: missing delay_duration (needed when delay_percent > 0)"
                ),
                format!("{p}.abort_status: invalid HTTP status 700 (200..=599)"),
            ]
        );
        assert_eq!(
            errors(json!([{ "type": "fault", "config": {
                "delay_percent": 10, "delay_duration": "0s", "abort_percent": -1,
            }}])),
            vec![format!(
                "{p}.abort_percent: invalid value: integer `-1`, expected u32"
            )]
        );
    }
}
