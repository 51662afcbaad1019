//! Stream filters on RPC requests. Filters see the frame itself, through the one request
//! type every codec's requests implement ([`Request`]): its header fields (Bolt's `service`
//! and `sofa_head_method_name`; Dubbo's `service`, `version`, `method`) are its headers, its
//! method is the RPC method, it has no path; a filter that changes a header makes the frame
//! re-encoded on its way upstream. The whole frame is the body. Only run when the listener
//! has filters.
//!
//! What a filter answers becomes the protocol's own error response ([`hijack_of`]). Mirrors
//! a filter asks for are sent as copies of the frame (`super::mirror::send_frame`).

use http::StatusCode;

use crate::filter::{FilterContext, FilterStatus, LocalReply, StreamFilter};
use crate::protocol::xprotocol::{Hijack, XFrame};

/// Runs the request hooks of `filters` on `frame`: `Err` with the filter's answer when one
/// answers (after any pause it asked for).
pub(super) async fn on_request(
    filters: &mut [Box<dyn StreamFilter>],
    frame: &mut XFrame,
    ctx: &mut FilterContext,
) -> Result<(), LocalReply> {
    super::routing::request_filters(filters, frame, ctx).await?;
    // The whole frame is the body, in one piece.
    for f in filters.iter_mut() {
        if let FilterStatus::Respond(r) = f.on_request_data(&frame.raw, true, ctx) {
            return Err(r);
        }
    }
    Ok(())
}

/// Tells `filters` the request is done, with `status` (the HTTP status its outcome maps to).
pub(super) fn on_done(filters: &mut [Box<dyn StreamFilter>], status: u16, ctx: &FilterContext) {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for f in filters.iter_mut() {
        f.on_done(status, ctx);
    }
}

/// The RPC error a filter's HTTP answer stands for: 429 and 503 (rate limits, aborts of
/// that kind) are overflow, 504 a timeout, 404 no route, anything else forbidden.
pub(super) fn hijack_of(reply: &LocalReply) -> Hijack {
    match reply.status.as_u16() {
        429 | 503 => Hijack::Overflow,
        504 => Hijack::Timeout,
        404 => Hijack::NoRoute,
        _ => Hijack::Forbidden,
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::protocol::xprotocol::{Kind, Text};

    /// What a filter sees of a frame: its fields as headers (a key HTTP could not carry
    /// included), its method, no path; a change marks the frame for re-encoding.
    #[test]
    fn filters_see_the_frame_as_a_request() {
        use http::{HeaderName, HeaderValue};

        use crate::protocol::Request;

        let raw = BytesMut::from(&b"serviceecho.Svc:1.0"[..]);
        let mut frame = XFrame {
            kind: Kind::Request,
            request_id: 1,
            status: 0,
            timeout: None,
            raw,
            headers: vec![
                (Text::span(0, 7), Text::span(7, 19)),
                (Text::Static("bad name"), Text::Static("x")),
                (Text::Static("method"), Text::Static("sayHello")),
            ],
            service: Some(Text::span(7, 19)),
            method: Some(Text::Static("sayHello")),
            headers_changed: false,
        };
        let req: &mut dyn Request = &mut frame;
        let service = HeaderName::from_static("service");
        assert_eq!(req.header(&service), Some("echo.Svc:1.0"));
        assert_eq!(req.joined_header(&service).as_deref(), Some("echo.Svc:1.0"));
        assert_eq!(req.method(), Some("sayHello"));
        assert_eq!(req.path(), None);
        let tag = HeaderName::from_static("x-tag");
        req.set_header(&tag, &HeaderValue::from_static("blue"));
        assert_eq!(req.header(&tag), Some("blue"));
        assert!(frame.headers_changed, "a changed frame is re-encoded");
    }

    #[test]
    fn filter_answers_map_to_rpc_errors() {
        let r = |s: StatusCode| hijack_of(&LocalReply::text(s, "x", "x"));
        assert_eq!(r(StatusCode::TOO_MANY_REQUESTS), Hijack::Overflow);
        assert_eq!(r(StatusCode::SERVICE_UNAVAILABLE), Hijack::Overflow);
        assert_eq!(r(StatusCode::GATEWAY_TIMEOUT), Hijack::Timeout);
        assert_eq!(r(StatusCode::NOT_FOUND), Hijack::NoRoute);
        assert_eq!(r(StatusCode::FORBIDDEN), Hijack::Forbidden);
        assert_eq!(r(StatusCode::PAYLOAD_TOO_LARGE), Hijack::Forbidden);
    }
}
