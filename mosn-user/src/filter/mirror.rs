//! `mirror`: asks the proxy to send `amplification` copies of a percentage of the requests to
//! another cluster (responses discarded).

use std::sync::Arc;

use crate::protocol::Request;

use super::fault::roll;
use super::{
    FilterContext, FilterDeps, FilterStatus, MirrorRequest, StreamFilter, StreamFilterFactory,
};
use crate::config::StreamFilterConfig;
use crate::config::filter::MirrorConfig;

pub(super) const NAME: &str = "mirror";

pub(super) fn build(
    cfg: &StreamFilterConfig,
    _deps: &FilterDeps<'_>,
) -> Option<Arc<dyn StreamFilterFactory>> {
    match cfg {
        StreamFilterConfig::Mirror(c) => Some(Arc::new(MirrorFactory {
            cfg: Arc::new(c.clone()),
        })),
        _ => None,
    }
}

#[derive(Debug)]
struct MirrorFactory {
    cfg: Arc<MirrorConfig>,
}

impl StreamFilterFactory for MirrorFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Requests not drawn for mirroring get no filter.
    fn create(&self) -> Option<Box<dyn StreamFilter>> {
        roll(self.cfg.percent).then(|| {
            Box::new(Mirror {
                cfg: self.cfg.clone(),
            }) as Box<dyn StreamFilter>
        })
    }
}

struct Mirror {
    cfg: Arc<MirrorConfig>,
}

impl StreamFilter for Mirror {
    fn on_request_headers(
        &mut self,
        _req: &mut dyn Request,
        ctx: &mut FilterContext,
    ) -> FilterStatus {
        for _ in 0..self.cfg.amplification {
            ctx.mirrors.push(MirrorRequest {
                cluster: self.cfg.cluster.clone(),
            });
        }
        FilterStatus::Continue
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::*;
    use super::*;

    /// Mirrors asked for over `n` requests.
    fn mirrored(config: serde_json::Value, n: usize) -> Vec<MirrorRequest> {
        let f = factories(json!([{ "type": "mirror", "config": config }]));
        let mut all = Vec::new();
        for _ in 0..n {
            let mut ctx = ctx("10.0.0.1:1000");
            for mut filter in chain(&f) {
                let mut head = request("GET", "/", &[]);
                assert!(matches!(
                    filter.on_request_headers(&mut head, &mut ctx),
                    FilterStatus::Continue
                ));
            }
            all.append(&mut ctx.mirrors);
        }
        all
    }

    #[test]
    fn every_request_amplified_by_default_percent() {
        let m = mirrored(json!({ "cluster": "m", "amplification": 3 }), 10);
        assert_eq!(m.len(), 30);
        assert!(m.iter().all(|r| r.cluster == "m"));
        assert_eq!(mirrored(json!({ "cluster": "m" }), 10).len(), 10);
    }

    #[test]
    fn percent_of_requests() {
        // 100,000 draws at 20%: standard deviation 126; 800 is more than 6 of them, and an
        // off-by-one percent (1,000) still fails.
        let n = mirrored(json!({ "cluster": "m", "percent": 20 }), 100_000).len();
        assert!(n.abs_diff(20_000) <= 800, "{n} mirrored, want 20000 ± 800");
        assert!(mirrored(json!({ "cluster": "m", "percent": 0 }), 1_000).is_empty());
    }

    #[test]
    fn validation() {
        let p = "servers[0].listeners[0].stream_filters[0].config";
        assert_eq!(
            errors(json!([{ "type": "mirror", "config": {
                "cluster": "nope", "amplification": 0, "percent": 101, "broadcast": true,
            }}])),
            vec![
                format!("{p}.cluster: unknown cluster \"nope\" (defined clusters: c, m)"),
                format!(
                    "{p}.broadcast: not supported: each copy goes to one host chosen by the cluster's load balancer"
                ),
                format!("{p}.amplification: 0 is out of range (1..=100)"),
                format!("{p}.percent: 101 is out of range (0..=100)"),
            ]
        );
        assert_eq!(
            errors(json!([{ "type": "mirror", "config": { "percent": "x" } }])),
            vec![format!(
                "{p}.percent: invalid type: string \"x\", expected u32"
            )]
        );
        assert_eq!(
            errors(json!([{ "type": "mirror", "config": {} }])),
            vec![format!(
                "{p}.cluster: missing cluster (where the copies go)"
            )]
        );
    }
}
