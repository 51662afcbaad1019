//! `ip_access` (MOSN's `ipaccess`): allows or denies a request by its client address, the
//! peer's or the first entry of a configured header (`x-forwarded-for`). The first rule with
//! a matching prefix decides; otherwise `default_action`. Refusals are 403.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::protocol::Request;
use http::StatusCode;

use super::{
    FilterContext, FilterDeps, FilterStatus, LocalReply, StreamFilter, StreamFilterFactory,
};
use crate::config::StreamFilterConfig;
use crate::config::filter::{IpAccessConfig, IpAction};

pub(super) const NAME: &str = "ip_access";

pub(super) fn build(
    cfg: &StreamFilterConfig,
    _deps: &FilterDeps<'_>,
) -> Option<Arc<dyn StreamFilterFactory>> {
    match cfg {
        StreamFilterConfig::IpAccess(c) => Some(Arc::new(IpAccessFactory {
            cfg: Arc::new(c.clone()),
        })),
        _ => None,
    }
}

#[derive(Debug)]
struct IpAccessFactory {
    cfg: Arc<IpAccessConfig>,
}

impl StreamFilterFactory for IpAccessFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self) -> Option<Box<dyn StreamFilter>> {
        Some(Box::new(IpAccess {
            cfg: self.cfg.clone(),
        }))
    }
}

struct IpAccess {
    cfg: Arc<IpAccessConfig>,
}

impl IpAccess {
    /// The client address to judge: `None` when the configured header is present but its
    /// first entry is not an address (refused: garbage must not dodge a deny rule).
    fn client(&self, req: &dyn Request, ctx: &FilterContext) -> Option<IpAddr> {
        let Some(name) = &self.cfg.header else {
            return Some(ctx.source.ip());
        };
        if !req.has_header(name) {
            return Some(ctx.source.ip());
        }
        let first = req.header(name)?.split(',').next()?.trim();
        let bare = first.strip_prefix('[').and_then(|f| f.strip_suffix(']'));
        bare.unwrap_or(first)
            .parse::<IpAddr>()
            .or_else(|_| first.parse::<SocketAddr>().map(|s| s.ip()))
            .ok()
    }

    fn action(&self, ip: IpAddr) -> IpAction {
        let ip = ip.to_canonical();
        self.cfg
            .rules
            .iter()
            .find(|r| r.addrs.iter().any(|c| c.contains(ip)))
            .map_or(self.cfg.default_action, |r| r.action)
    }
}

impl StreamFilter for IpAccess {
    fn on_request_headers(
        &mut self,
        req: &mut dyn Request,
        ctx: &mut FilterContext,
    ) -> FilterStatus {
        let client = self.client(req, ctx);
        if client.map(|ip| self.action(ip)) == Some(IpAction::Allow) {
            return FilterStatus::Continue;
        }
        tracing::debug!(listener = %ctx.listener, source = %ctx.source, ?client, "ip access denied");
        FilterStatus::Respond(LocalReply::text(
            StatusCode::FORBIDDEN,
            "ip_access_denied",
            "ip access denied",
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::*;
    use super::*;

    /// `true` when a request from `source` with `headers` passes.
    fn passes(f: &[Arc<dyn StreamFilterFactory>], source: &str, headers: &[(&str, &str)]) -> bool {
        let mut ctx = ctx(source);
        let mut head = request("GET", "/", headers);
        match chain(f)[0].on_request_headers(&mut head, &mut ctx) {
            FilterStatus::Continue => true,
            FilterStatus::Respond(r) => {
                assert_eq!(r.status, StatusCode::FORBIDDEN);
                assert_eq!(&r.body[..], b"ip access denied\n");
                false
            }
            FilterStatus::Pause(d) => panic!("unexpected pause {d:?}"),
        }
    }

    #[test]
    fn first_matching_rule_wins_else_default() {
        for kind in ["ip_access", "ipaccess"] {
            let f = factories(json!([{ "type": kind, "config": {
                "ips": [
                    { "action": "deny", "addrs": ["10.1.0.0/16", "192.168.0.7"] },
                    { "action": "allow", "addrs": ["10.0.0.0/8", "fd00::/8"] },
                ],
                "default_action": "deny",
            }}]));
            assert!(passes(&f, "10.2.0.1:5", &[]));
            assert!(!passes(&f, "10.1.0.1:5", &[]));
            assert!(!passes(&f, "192.168.0.7:5", &[]));
            assert!(!passes(&f, "192.168.0.8:5", &[]));
            assert!(passes(&f, "[fd00::1]:5", &[]));
            assert!(passes(&f, "[::ffff:10.2.0.1]:5", &[]));
        }
    }

    #[test]
    fn client_address_from_a_header() {
        let f = factories(json!([{ "type": "ip_access", "config": {
            "header": "X-Forwarded-For",
            "ips": [{ "action": "deny", "addrs": ["1.2.3.4"] }],
            "default_action": "allow",
        }}]));
        assert!(passes(
            &f,
            "1.2.3.4:5",
            &[("x-forwarded-for", "5.6.7.8, 1.2.3.4")]
        ));
        assert!(!passes(
            &f,
            "5.6.7.8:5",
            &[("x-forwarded-for", " 1.2.3.4 , 5.6.7.8")]
        ));
        assert!(!passes(
            &f,
            "5.6.7.8:5",
            &[("x-forwarded-for", "1.2.3.4:80")]
        ));
        assert!(!passes(
            &f,
            "5.6.7.8:5",
            &[("x-forwarded-for", "[::ffff:1.2.3.4]")]
        ));
        assert!(!passes(
            &f,
            "5.6.7.8:5",
            &[("x-forwarded-for", "[::ffff:1.2.3.4]:80")]
        ));
        // Absent: the peer. Not an address: refused.
        assert!(!passes(&f, "1.2.3.4:5", &[]));
        assert!(passes(&f, "5.6.7.8:5", &[]));
        assert!(!passes(&f, "5.6.7.8:5", &[("x-forwarded-for", "unknown")]));
    }

    #[test]
    fn validation() {
        let p = "servers[0].listeners[0].stream_filters[0].config";
        assert_eq!(
            errors(json!([{ "type": "ip_access", "config": {
                "header": "bad header",
                "ips": [
                    { "action": "block", "addrs": ["10.0.0.0/33", "example.com"] },
                    { "action": "allow" },
                ],
            }}])),
            vec![
                format!("{p}.header: invalid header name \"bad header\""),
                format!("{p}.ips[0].action: invalid action \"block\" (\"allow\" or \"deny\")"),
                format!(
                    "{p}.ips[0].addrs[0]: invalid prefix \"10.0.0.0/33\": prefix length \"33\" is out of range for 10.0.0.0 (0..=32)"
                ),
                format!(
                    "{p}.ips[0].addrs[1]: invalid prefix \"example.com\": DNS names are not supported yet, use an IP"
                ),
                format!("{p}.ips[1].addrs: missing addrs (at least one prefix)"),
                format!("{p}.default_action: missing action (\"allow\" or \"deny\")"),
            ]
        );
        let w = warnings(json!([{ "type": "ip_access", "config": {
            "ips": [{ "action": "allow", "addrs": ["10.1.2.3/8"] }],
            "default_action": "deny",
        }}]));
        assert_eq!(
            w,
            vec![format!(
                "{p}.ips[0].addrs[0]: \"10.1.2.3/8\" has host bits set; it means 10.0.0.0/8"
            )]
        );
    }
}
