//! SOFARPC Bolt v1/v2 as an X-Protocol (MOSN `xprotocol/bolt`): multiplexed, u32 request
//! ids, heartbeats, routing on the `service` and `sofa_head_method_name` headers, v2's
//! optional CRC32 trailer. v1 and v2 frames may alternate on one connection.

pub mod decode;
pub mod encode;
pub mod frame;
pub mod matcher;

#[cfg(test)]
mod tests;

use bytes::BytesMut;

pub use frame::status;

use crate::protocol::xprotocol::{Hijack, PoolMode, StatusClass, XFrame, XProtocol};
use crate::protocol::{DecodeError, Match};

/// The Bolt codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bolt;

/// The Bolt singleton the registry hands out.
pub static BOLT: Bolt = Bolt;

impl XProtocol for Bolt {
    fn name(&self) -> &'static str {
        "bolt"
    }

    fn matches(&self, prefix: &[u8]) -> Match {
        matcher::matches(prefix)
    }

    fn decode(&self, src: &mut BytesMut, max_frame: usize) -> Result<Option<XFrame>, DecodeError> {
        decode::decode(src, max_frame)
    }

    fn encode(&self, frame: &XFrame, dst: &mut BytesMut) {
        encode::encode(frame, dst)
    }

    fn set_request_id(&self, frame: &mut XFrame, id: u64) {
        encode::set_request_id(frame, id)
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

    /// Bolt responses built here carry only the status (as MOSN's); `message` is not sent.
    fn hijack(&self, req: &XFrame, why: Hijack, _message: &str) -> Option<BytesMut> {
        encode::hijack(req, why)
    }

    fn hijack_status(&self, why: Hijack) -> u16 {
        encode::hijack_status(why)
    }

    fn codec_error_reply(&self, src: &[u8]) -> Option<BytesMut> {
        encode::codec_error_reply(src)
    }

    fn status_class(&self, status: u16) -> StatusClass {
        StatusClass(match status {
            status::SUCCESS => 200,
            status::SERVER_THREADPOOL_BUSY => 503,
            status::TIMEOUT => 504,
            status::NO_PROCESSOR => 404,
            status::CONNECTION_CLOSED => 502,
            _ => 500,
        })
    }
}
