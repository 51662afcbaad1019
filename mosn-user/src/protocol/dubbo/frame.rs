//! Dubbo frames (Apache Dubbo 2.x's exchange protocol): the fixed header, its flag bits and
//! response statuses, and [`Header`], the fixed header read from a frame's first bytes.
//!
//! ```text
//! 16-byte header, all integers big-endian, then the body:
//! 0     1     2     3     4                                              12            16
//! +-----+-----+-----+-----+-----------------------------------------------+-------------+
//! |   magic   |flag |stat.|               request id (u64)                | body length |
//! | 0xda 0xbb |     |     |                                               |    (u32)    |
//! +-----+-----+-----+-----+-----------------------------------------------+-------------+
//!
//! flag: 0x80 request | 0x40 two-way | 0x20 event | low 5 bits: serialization id (2 = hessian2)
//! status: a response's status (20 = OK); 0 in requests
//!
//! hessian2 request body:  dubbo version, service path, service version, method name
//!                         (strings), parameter types descriptor, arguments..., attachments
//! hessian2 response body: status 20: response type + value; other statuses: error message
//! heartbeat:              event request / event response, body hessian2 null (`N`)
//! ```

use crate::protocol::DecodeError;
use crate::protocol::xprotocol::Kind;

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = [0xda, 0xbb];
/// Length of the fixed header.
pub const HEADER_LEN: usize = 16;

/// Offset of the flag byte.
pub const FLAG_AT: usize = 2;
/// Offset of the status byte.
pub const STATUS_AT: usize = 3;
/// Offset of the request id.
pub const ID_AT: usize = 4;
/// Offset of the body length.
pub const BODY_LEN_AT: usize = 12;

/// The frame is a request.
pub const FLAG_REQUEST: u8 = 0x80;
/// The request expects a response (a request without it is oneway).
pub const FLAG_TWO_WAY: u8 = 0x40;
/// The frame is an event (a heartbeat, or a read-only notice), not an invocation.
pub const FLAG_EVENT: u8 = 0x20;
/// The bits of the flag byte that hold the serialization id.
pub const SERIALIZATION_MASK: u8 = 0x1f;

/// The hessian2 serialization id, the only one whose body is read (and the one of the
/// frames built here unless a request says otherwise).
pub const SERIALIZATION_HESSIAN2: u8 = 2;

/// Response statuses (the status byte), as Dubbo numbers them.
pub mod status {
    pub const OK: u8 = 20;
    pub const CLIENT_TIMEOUT: u8 = 30;
    pub const SERVER_TIMEOUT: u8 = 31;
    pub const BAD_REQUEST: u8 = 40;
    pub const BAD_RESPONSE: u8 = 50;
    pub const SERVICE_NOT_FOUND: u8 = 60;
    pub const SERVICE_ERROR: u8 = 70;
    pub const SERVER_ERROR: u8 = 80;
    pub const CLIENT_ERROR: u8 = 90;
    pub const SERVER_THREADPOOL_EXHAUSTED: u8 = 100;
}

/// Header names a decoded request carries, in body order (values from its leading strings).
pub const HEADER_DUBBO: &str = "dubbo";
pub const HEADER_SERVICE: &str = "service";
pub const HEADER_VERSION: &str = "version";
pub const HEADER_METHOD: &str = "method";

/// The frame kind a flag byte stands for. An event request expecting a reply is a
/// heartbeat; a oneway event (Dubbo's read-only notice) is forwarded as a oneway request.
pub fn kind_of(flag: u8) -> Kind {
    let event = flag & FLAG_EVENT != 0;
    if flag & FLAG_REQUEST == 0 {
        return if event {
            Kind::HeartbeatReply
        } else {
            Kind::Response
        };
    }
    match (flag & FLAG_TWO_WAY != 0, event) {
        (true, true) => Kind::Heartbeat,
        (true, false) => Kind::Request,
        (false, _) => Kind::Oneway,
    }
}

/// Whether `prefix` can still start a frame: it is a prefix of the magic or starts with it.
pub fn magic_ok(prefix: &[u8]) -> bool {
    let n = prefix.len().min(MAGIC.len());
    prefix[..n] == MAGIC[..n]
}

/// A frame's fixed header, read from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub flag: u8,
    /// The status byte (meaningful in responses).
    pub status: u8,
    pub request_id: u64,
    pub body_len: u32,
}

impl Header {
    /// Reads the fixed header at the start of `b`: `Ok(None)` while `b` is too short, an
    /// error as soon as the bytes there cannot start a Dubbo frame (bad magic).
    pub fn parse(b: &[u8]) -> Result<Option<Header>, DecodeError> {
        if !magic_ok(b) {
            let n = b.len().min(MAGIC.len());
            return Err(DecodeError::malformed(
                "dubbo frame",
                format!("magic {:02x?} is not da bb", &b[..n]),
            ));
        }
        let Some(h) = b.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut id = [0; 8];
        id.copy_from_slice(&h[ID_AT..ID_AT + 8]);
        let mut len = [0; 4];
        len.copy_from_slice(&h[BODY_LEN_AT..BODY_LEN_AT + 4]);
        Ok(Some(Header {
            flag: h[FLAG_AT],
            status: h[STATUS_AT],
            request_id: u64::from_be_bytes(id),
            body_len: u32::from_be_bytes(len),
        }))
    }

    pub fn kind(&self) -> Kind {
        kind_of(self.flag)
    }

    pub fn is_request(&self) -> bool {
        self.flag & FLAG_REQUEST != 0
    }

    pub fn is_two_way(&self) -> bool {
        self.flag & FLAG_TWO_WAY != 0
    }

    pub fn is_event(&self) -> bool {
        self.flag & FLAG_EVENT != 0
    }

    pub fn serialization(&self) -> u8 {
        self.flag & SERIALIZATION_MASK
    }

    /// The whole frame's length (u64: it cannot overflow).
    pub fn total(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.body_len)
    }
}
