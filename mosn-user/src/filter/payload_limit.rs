//! `payload_limit` (MOSN's `payloadlimit`): refuses a request whose body is larger than
//! `max_entity_size`, as soon as `Content-Length` or the body seen so far says so.

use std::sync::Arc;

use crate::protocol::Request;
use http::StatusCode;

use super::{
    FilterContext, FilterDeps, FilterStatus, LocalReply, StreamFilter, StreamFilterFactory,
};
use crate::config::StreamFilterConfig;

pub(super) const NAME: &str = "payload_limit";

pub(super) fn build(
    cfg: &StreamFilterConfig,
    _deps: &FilterDeps<'_>,
) -> Option<Arc<dyn StreamFilterFactory>> {
    match cfg {
        StreamFilterConfig::PayloadLimit(c) => Some(Arc::new(PayloadLimitFactory {
            max: c.max_entity_size,
            status: c.status,
        })),
        _ => None,
    }
}

#[derive(Debug)]
struct PayloadLimitFactory {
    max: u64,
    status: StatusCode,
}

impl StreamFilterFactory for PayloadLimitFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self) -> Option<Box<dyn StreamFilter>> {
        Some(Box::new(PayloadLimit {
            max: self.max,
            status: self.status,
            seen: 0,
        }))
    }
}

struct PayloadLimit {
    max: u64,
    status: StatusCode,
    /// Body bytes seen so far.
    seen: u64,
}

impl PayloadLimit {
    fn refuse(&self) -> FilterStatus {
        FilterStatus::Respond(LocalReply::text(
            self.status,
            "payload_limit_exceeded",
            "payload limit exceeded",
        ))
    }
}

impl StreamFilter for PayloadLimit {
    fn on_request_headers(
        &mut self,
        req: &mut dyn Request,
        _ctx: &mut FilterContext,
    ) -> FilterStatus {
        let declared = req
            .header(&http::header::CONTENT_LENGTH)
            .and_then(|v| v.trim().parse::<u64>().ok());
        match declared {
            Some(len) if len > self.max => self.refuse(),
            _ => FilterStatus::Continue,
        }
    }

    fn on_request_data(
        &mut self,
        data: &[u8],
        _end: bool,
        _ctx: &mut FilterContext,
    ) -> FilterStatus {
        self.seen = self.seen.saturating_add(data.len() as u64);
        if self.seen > self.max {
            self.refuse()
        } else {
            FilterStatus::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::*;
    use super::*;

    fn one(config: serde_json::Value) -> Box<dyn StreamFilter> {
        let f = factories(json!([{ "type": "payload_limit", "config": config }]));
        chain(&f).pop().expect("a filter")
    }

    fn status(s: FilterStatus) -> Option<StatusCode> {
        match s {
            FilterStatus::Respond(r) => Some(r.status),
            FilterStatus::Continue => None,
            FilterStatus::Pause(d) => panic!("unexpected pause {d:?}"),
        }
    }

    #[test]
    fn refuses_a_declared_length_over_the_limit() {
        let mut ctx = ctx("10.0.0.1:1000");
        let mut f = one(json!({ "max_entity_size": 10 }));
        let mut head = request("POST", "/", &[("content-length", "11")]);
        assert_eq!(
            status(f.on_request_headers(&mut head, &mut ctx)),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
        let mut f = one(json!({ "max_entity_size": 10, "http_status": 400 }));
        let mut head = request("POST", "/", &[("content-length", "10")]);
        assert_eq!(status(f.on_request_headers(&mut head, &mut ctx)), None);
        let mut head = request("POST", "/", &[("content-length", "12")]);
        assert_eq!(
            status(f.on_request_headers(&mut head, &mut ctx)),
            Some(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn refuses_once_the_body_seen_exceeds_the_limit() {
        let mut ctx = ctx("10.0.0.1:1000");
        let mut f = one(json!({ "max_entity_size": 10 }));
        let mut head = request("POST", "/", &[("transfer-encoding", "chunked")]);
        assert_eq!(status(f.on_request_headers(&mut head, &mut ctx)), None);
        assert_eq!(status(f.on_request_data(b"12345", false, &mut ctx)), None);
        assert_eq!(status(f.on_request_data(b"67890", false, &mut ctx)), None);
        assert_eq!(
            status(f.on_request_data(b"1", true, &mut ctx)),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
    }

    #[test]
    fn validation() {
        let p = "servers[0].listeners[0].stream_filters[0].config";
        assert_eq!(
            errors(
                json!([{ "type": "payload_limit", "config": { "max_entity_size": 0, "http_status": 99 } }])
            ),
            vec![
                format!(
                    "{p}.max_entity_size: must be at least 1 (remove the filter to allow bodies of any size)"
                ),
                format!("{p}.http_status: invalid HTTP status 99 (200..=599)"),
            ]
        );
        assert_eq!(
            errors(json!([{ "type": "payload_limit", "config": { "http_status": 413 } }])),
            vec![format!(
                "{p}.max_entity_size: missing max_entity_size (bytes of request body allowed)"
            )]
        );
    }
}
