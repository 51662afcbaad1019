//! Dubbo (Apache Dubbo 2.x's exchange protocol) as an X-Protocol: a 16-byte header with a
//! u64 request id; routing fields (interface, method, versions) from the hessian2 strings
//! that lead a request body.

pub mod decode;
pub mod encode;
pub mod frame;
pub mod hessian;
pub mod matcher;

#[cfg(test)]
mod tests;

use bytes::BytesMut;

use super::xprotocol::{Hijack, PoolMode, StatusClass, XFrame, XProtocol};
use super::{DecodeError, Match};
pub use frame::status;

/// The Dubbo protocol.
pub struct Dubbo;

/// The one instance the registry holds.
pub static DUBBO: Dubbo = Dubbo;

/// Dubbo's status for each reason the proxy answers a request itself.
pub fn hijack_status(why: Hijack) -> u8 {
    match why {
        Hijack::NoRoute => status::SERVICE_NOT_FOUND,
        Hijack::NoHealthyHost => status::SERVER_ERROR,
        Hijack::Timeout => status::SERVER_TIMEOUT,
        Hijack::Overflow => status::SERVER_THREADPOOL_EXHAUSTED,
        Hijack::UpstreamReset => status::SERVER_ERROR,
        Hijack::Codec => status::BAD_REQUEST,
        Hijack::Forbidden => status::BAD_REQUEST,
    }
}

/// Dubbo over the X-Protocol interface.
///
/// - `encode` always writes the raw bytes. The header fields are read from the body's
///   leading strings and the attachments are not decoded, so changed headers (a route's
///   header mutations) are not written back into the frame: they affect routing only.
/// - `hijack` answers with these statuses (the body is the message as a hessian2 string;
///   nothing for a oneway request):
///
///   | reason        | status                         |
///   |---------------|--------------------------------|
///   | NoRoute       | 60 service not found           |
///   | NoHealthyHost | 80 server error                |
///   | Timeout       | 31 server timeout              |
///   | Overflow      | 100 server threadpool exhausted|
///   | UpstreamReset | 80 server error                |
///   | Codec         | 40 bad request                 |
///   | Forbidden     | 40 bad request                 |
///
/// - `status_class`: 20 → 200; 30, 31 (timeouts) → 504; 40 → 400; 60 → 404; 80 → 502;
///   100 → 503; any other status (bad response, service error, client error, unknown) → 500.
/// - `timeout` is always `None`: Dubbo's timeout travels in the attachments.
impl XProtocol for Dubbo {
    fn name(&self) -> &'static str {
        "dubbo"
    }

    fn matches(&self, prefix: &[u8]) -> Match {
        matcher::matches(prefix)
    }

    fn decode(&self, src: &mut BytesMut, max_frame: usize) -> Result<Option<XFrame>, DecodeError> {
        decode::decode(src, max_frame)
    }

    fn encode(&self, frame: &XFrame, dst: &mut BytesMut) {
        encode::encode(frame, dst);
    }

    fn set_request_id(&self, frame: &mut XFrame, id: u64) {
        encode::set_request_id(frame, id);
    }

    fn pool_mode(&self) -> PoolMode {
        PoolMode::Multiplex
    }

    fn heartbeat(&self, id: u64) -> BytesMut {
        encode::heartbeat(id)
    }

    fn heartbeat_reply(&self, req: &XFrame) -> BytesMut {
        encode::heartbeat_reply(req)
    }

    fn hijack(&self, req: &XFrame, why: Hijack, message: &str) -> Option<BytesMut> {
        encode::error_response(req, hijack_status(why), message)
    }

    fn hijack_status(&self, why: Hijack) -> u16 {
        u16::from(hijack_status(why))
    }

    fn codec_error_reply(&self, src: &[u8]) -> Option<BytesMut> {
        encode::codec_error_reply(src)
    }

    fn status_class(&self, status: u16) -> StatusClass {
        let Ok(status) = u8::try_from(status) else {
            return StatusClass(500);
        };
        StatusClass(match status {
            status::OK => 200,
            status::CLIENT_TIMEOUT | status::SERVER_TIMEOUT => 504,
            status::BAD_REQUEST => 400,
            status::SERVICE_NOT_FOUND => 404,
            status::SERVER_ERROR => 502,
            status::SERVER_THREADPOOL_EXHAUSTED => 503,
            _ => 500,
        })
    }
}
