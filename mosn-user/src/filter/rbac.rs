//! `rbac` (Envoy's RBAC filter, which MOSN reuses): a policy matches a request when one of
//! its principals (who) and one of its permissions (what) match. ALLOW lets through only
//! requests some policy matches; DENY refuses those. Refusals are 403.

use std::net::IpAddr;
use std::sync::Arc;

use crate::protocol::Request;
use http::StatusCode;

use super::{
    FilterContext, FilterDeps, FilterStatus, LocalReply, StreamFilter, StreamFilterFactory,
};
use crate::config::StreamFilterConfig;
use crate::network::PeerIdentity;
use crate::config::filter::{Permission, Principal, RbacAction, RbacConfig, RbacPolicy};

pub(super) const NAME: &str = "rbac";

pub(super) fn build(
    cfg: &StreamFilterConfig,
    _deps: &FilterDeps<'_>,
) -> Option<Arc<dyn StreamFilterFactory>> {
    match cfg {
        StreamFilterConfig::Rbac(c) => Some(Arc::new(RbacFactory {
            cfg: Arc::new(c.clone()),
        })),
        _ => None,
    }
}

#[derive(Debug)]
struct RbacFactory {
    cfg: Arc<RbacConfig>,
}

impl StreamFilterFactory for RbacFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self) -> Option<Box<dyn StreamFilter>> {
        Some(Box::new(Rbac {
            cfg: self.cfg.clone(),
        }))
    }
}

struct Rbac {
    cfg: Arc<RbacConfig>,
}

impl StreamFilter for Rbac {
    fn on_request_headers(
        &mut self,
        req: &mut dyn Request,
        ctx: &mut FilterContext,
    ) -> FilterStatus {
        let source = ctx.source.ip().to_canonical();
        let matched = self
            .cfg
            .policies
            .iter()
            .find(|p| policy_matches(p, req, source, ctx.identity.as_deref()));
        let allowed = match self.cfg.action {
            RbacAction::Allow => matched.is_some(),
            RbacAction::Deny => matched.is_none(),
        };
        if allowed {
            return FilterStatus::Continue;
        }
        tracing::debug!(
            listener = %ctx.listener,
            source = %ctx.source,
            policy = matched.map_or("", |p| p.name.as_str()),
            "rbac: access denied"
        );
        FilterStatus::Respond(LocalReply::text(
            StatusCode::FORBIDDEN,
            "rbac_access_denied",
            "RBAC: access denied",
        ))
    }
}

fn policy_matches(
    p: &RbacPolicy,
    req: &dyn Request,
    source: IpAddr,
    identity: Option<&PeerIdentity>,
) -> bool {
    p.principals.iter().any(|who| match who {
        Principal::Any => true,
        Principal::SourceIp(cidr) => cidr.contains(source),
        Principal::Header(h) => h.matches(req),
        Principal::Authenticated(m) => {
            identity.is_some_and(|id| id.sans.iter().any(|san| m.matches(Some(san))))
        }
    }) && p.permissions.iter().any(|what| match what {
        Permission::Any => true,
        Permission::UrlPath(m) => m.matches(req.path()),
        Permission::Header(h) => h.matches(req),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::*;
    use super::*;

    /// The status of one request from `source` (None: let through).
    fn verdict(
        f: &[Arc<dyn StreamFilterFactory>],
        source: &str,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Option<StatusCode> {
        let mut ctx = ctx(source);
        let mut head = request("GET", uri, headers);
        match chain(f)[0].on_request_headers(&mut head, &mut ctx) {
            FilterStatus::Continue => None,
            FilterStatus::Respond(r) => {
                assert_eq!(&r.body[..], b"RBAC: access denied\n");
                Some(r.status)
            }
            FilterStatus::Pause(d) => panic!("unexpected pause {d:?}"),
        }
    }

    fn rbac(config: serde_json::Value) -> Vec<Arc<dyn StreamFilterFactory>> {
        factories(json!([{ "type": "rbac", "config": config }]))
    }

    const DENIED: Option<StatusCode> = Some(StatusCode::FORBIDDEN);

    #[test]
    fn allow_lets_through_only_matching_requests() {
        let f = rbac(json!({ "action": "ALLOW", "policies": {
            "internal-admin": {
                "principals": [{ "source_ip": { "address_prefix": "10.0.0.0", "prefix_len": 8 } }],
                "permissions": [{ "url_path": { "path": { "prefix": "/admin" } } }],
            },
            "users": {
                "principals": [{ "header": { "name": "x-user", "exact_match": "a" } }],
                "permissions": [{ "url_path": { "path": { "regex": "/api/v[0-9]+/.*" } } }],
            },
        }}));
        assert_eq!(verdict(&f, "10.1.2.3:1", "/admin/x?q=1", &[]), None);
        assert_eq!(verdict(&f, "[::ffff:10.1.2.3]:1", "/admin", &[]), None);
        assert_eq!(verdict(&f, "11.1.2.3:1", "/admin", &[]), DENIED);
        assert_eq!(verdict(&f, "10.1.2.3:1", "/other", &[]), DENIED);
        assert_eq!(
            verdict(&f, "11.0.0.1:1", "/api/v2/x", &[("x-user", "a")]),
            None
        );
        assert_eq!(
            verdict(&f, "11.0.0.1:1", "/api/v2/x", &[("x-user", "b")]),
            DENIED
        );
        // The regex matches the whole path.
        assert_eq!(
            verdict(&f, "11.0.0.1:1", "/x/api/v2/x", &[("x-user", "a")]),
            DENIED
        );
        // A principal of one policy and a permission of another do not make a match.
        assert_eq!(verdict(&f, "10.0.0.1:1", "/api/v2/x", &[]), DENIED);
    }

    #[test]
    fn deny_refuses_matching_requests() {
        let f = rbac(json!({ "action": "DENY", "policies": {
            "no-debug": {
                "principals": [{ "any": true }],
                "permissions": [
                    { "header": { "name": "x-debug", "present_match": true } },
                    { "url_path": { "path": { "exact": "/debug" } } },
                ],
            },
            "blocked-agent": {
                "principals": [{ "header": { "name": "user-agent", "prefix_match": "bad" } }],
                "permissions": [{ "any": true }],
            },
        }}));
        assert_eq!(verdict(&f, "10.0.0.1:1", "/", &[]), None);
        assert_eq!(verdict(&f, "10.0.0.1:1", "/", &[("x-debug", "")]), DENIED);
        assert_eq!(verdict(&f, "10.0.0.1:1", "/debug", &[]), DENIED);
        assert_eq!(verdict(&f, "10.0.0.1:1", "/debug/x", &[]), None);
        assert_eq!(
            verdict(&f, "10.0.0.1:1", "/", &[("user-agent", "badbot")]),
            DENIED
        );
        assert_eq!(
            verdict(&f, "10.0.0.1:1", "/", &[("user-agent", "curl")]),
            None
        );
    }

    #[test]
    fn header_matchers() {
        let allow_when = |m: serde_json::Value| {
            rbac(json!({ "policies": { "p": {
                "principals": [{ "header": m }],
                "permissions": [{ "any": true }],
            }}}))
        };
        let f = allow_when(json!({ "name": "x-a", "suffix_match": "z" }));
        assert_eq!(verdict(&f, "10.0.0.1:1", "/", &[("x-a", "abz")]), None);
        assert_eq!(verdict(&f, "10.0.0.1:1", "/", &[("x-a", "zab")]), DENIED);
        let f = allow_when(json!({ "name": "x-a", "present_match": true, "invert_match": true }));
        assert_eq!(verdict(&f, "10.0.0.1:1", "/", &[]), None);
        assert_eq!(verdict(&f, "10.0.0.1:1", "/", &[("x-a", "1")]), DENIED);
        // Several values are joined with ",".
        let f = allow_when(json!({ "name": "x-a", "regex_match": "1,2" }));
        assert_eq!(
            verdict(&f, "10.0.0.1:1", "/", &[("x-a", "1"), ("x-a", "2")]),
            None
        );
        assert_eq!(verdict(&f, "10.0.0.1:1", "/", &[("x-a", "1")]), DENIED);
    }

    #[test]
    fn no_policies() {
        assert_eq!(verdict(&rbac(json!({})), "10.0.0.1:1", "/", &[]), DENIED);
        assert_eq!(
            verdict(&rbac(json!({ "action": "DENY" })), "10.0.0.1:1", "/", &[]),
            None
        );
        let w = warnings(json!([{ "type": "rbac", "config": {} }]));
        assert_eq!(
            w,
            vec![
                "servers[0].listeners[0].stream_filters[0].config.policies: no policies; every request is denied"
            ]
        );
    }

    #[test]
    fn validation() {
        let p = "servers[0].listeners[0].stream_filters[0].config";
        assert_eq!(
            errors(
                json!([{ "type": "rbac", "config": { "action": "LOG", "policies": {
                    "a": {
                        "principals": [
                            { "authenticated": {} },
                            { "source_ip": { "address_prefix": "10.0.0.1" } },
                            { "source_ip": { "address_prefix": "10.0.0.1", "prefix_len": 33 } },
                            { "any": true, "header": { "name": "x", "exact_match": "y" } },
                            { "header": { "name": "x" } },
                            { "any": false },
                            { "not_id": { "any": true } },
                        ],
                        "permissions": [
                            { "url_path": { "path": { "regex": "(" } } },
                            { "url_path": { "path": { "prefix": "/", "exact": "/" } } },
                        ],
                    },
                    "b": { "principals": [] },
                }}}])
            ),
            vec![
                format!("{p}.action: invalid action \"LOG\" (\"ALLOW\" or \"DENY\")"),
                format!(
                    "{p}.policies.a.principals[0].authenticated.principal_name: missing principal_name (one of exact, prefix, suffix, regex)"
                ),
                format!(
                    "{p}.policies.a.principals[1].source_ip.prefix_len: missing prefix_len (0..=32)"
                ),
                format!(
                    "{p}.policies.a.principals[2].source_ip.prefix_len: 33 is out of range for 10.0.0.1 (0..=32)"
                ),
                format!(
                    "{p}.policies.a.principals[3]: a principal needs exactly one of any, source_ip, direct_remote_ip, header, authenticated (2 given)"
                ),
                format!(
                    "{p}.policies.a.principals[4].header: needs exactly one of exact_match, prefix_match, suffix_match, regex_match, present_match (0 given)"
                ),
                format!(
                    "{p}.policies.a.principals[5].any: must be true (remove the entry instead)"
                ),
                format!(
                    "{p}.policies.a.principals[6].not_id: unsupported principal matcher (supported: any, source_ip, direct_remote_ip, header, authenticated)"
                ),
                format!(
                    "{p}.policies.a.permissions[0].url_path.path.regex: invalid regex \"(\": unclosed group"
                ),
                format!(
                    "{p}.policies.a.permissions[1].url_path.path: needs exactly one of exact, prefix, suffix, regex (2 given)"
                ),
                format!(
                    "{p}.policies.b.principals: missing principals (at least one; {{\"any\": true}} for everyone)"
                ),
                format!(
                    "{p}.policies.b.permissions: missing permissions (at least one; {{\"any\": true}} for everything)"
                ),
            ]
        );
    }
}
