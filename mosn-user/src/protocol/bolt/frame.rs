//! Bolt frames (SOFARPC's remoting protocol): the v1 and v2 layouts, command types and codes,
//! response statuses, and [`Layout`], the fixed header read from a frame's first bytes.
//!
//! ```text
//! v1 request (22-byte fixed header), all integers big-endian:
//! 0     1     2           4     5                       9    10                      14
//! +-----+-----+-----------+-----+-----------------------+-----+-----------------------+
//! |proto| type| cmdcode   |ver2 |   request id          |codec|   timeout (i32, ms)   |
//! +-----+-----+-----------+-----+-----------------------+-----+-----------------------+
//! 14          16          18                      22
//! +-----------+-----------+-----------------------+------------+--------------+---------+
//! | classLen  | headerLen | contentLen            | class name | header block | content |
//! +-----------+-----------+-----------------------+------------+--------------+---------+
//!
//! v1 response (20-byte fixed header): the same first 10 bytes, then
//! 10          12          14          16                      20
//! +-----------+-----------+-----------+-----------------------+------------+--------+---------+
//! | status    | classLen  | headerLen | contentLen            | class name | header | content |
//! +-----------+-----------+-----------+-----------------------+------------+--------+---------+
//!
//! v2: proto 0x02, then ver1, then the v1 fields with a switch byte after codec
//! (request 24 bytes, response 22); with `switch & 0x01` a CRC32 of every earlier byte
//! of the frame follows the content:
//! +-----+-----+-----+-----------+-----+-----------+-----+------+- ... -+---------+-------+
//! |proto|ver1 | type| cmdcode   |ver2 | request id|codec|switch|  ...  | content | crc32 |
//! +-----+-----+-----+-----------+-----+-----------+-----+------+- ... -+---------+-------+
//!
//! header block = *( keyLen u32, key, valLen u32, value ), exactly headerLen bytes
//! ```

use crate::protocol::DecodeError;
use crate::protocol::xprotocol::Kind;

/// The first byte of a v1 frame.
pub const PROTO_V1: u8 = 0x01;
/// The first byte of a v2 frame.
pub const PROTO_V2: u8 = 0x02;

/// Command types (the `type` byte).
pub mod cmd_type {
    pub const RESPONSE: u8 = 0;
    pub const REQUEST: u8 = 1;
    pub const ONEWAY: u8 = 2;
}

/// Command codes (the `cmdcode` field).
pub mod cmd_code {
    pub const HEARTBEAT: u16 = 0;
    pub const REQUEST: u16 = 1;
    pub const RESPONSE: u16 = 2;
}

/// Response statuses (the `respStatus` field), as SOFA Bolt numbers them.
pub mod status {
    pub const SUCCESS: u16 = 0x00;
    pub const ERROR: u16 = 0x01;
    pub const SERVER_EXCEPTION: u16 = 0x02;
    pub const UNKNOWN: u16 = 0x03;
    pub const SERVER_THREADPOOL_BUSY: u16 = 0x04;
    pub const ERROR_COMM: u16 = 0x05;
    pub const NO_PROCESSOR: u16 = 0x06;
    pub const TIMEOUT: u16 = 0x07;
    pub const CLIENT_SEND_ERROR: u16 = 0x08;
    pub const CODEC_EXCEPTION: u16 = 0x09;
    pub const CONNECTION_CLOSED: u16 = 0x10;
    pub const SERVER_SERIAL_EXCEPTION: u16 = 0x11;
    pub const SERVER_DESERIAL_EXCEPTION: u16 = 0x12;
}

/// The hessian2 serializer, the codec frames built here carry.
pub const CODEC_HESSIAN2: u8 = 1;
/// The v1 layout version (`ver2`) of frames built here.
pub const VER2_DEFAULT: u8 = 1;
/// The v2 switch bit that appends a CRC32 to the frame.
pub const SWITCH_CRC: u8 = 0x01;
/// Length of the v2 CRC trailer.
pub const CRC_LEN: usize = 4;

/// Header keys the router reads.
pub const HEADER_SERVICE: &str = "service";
pub const HEADER_TARGET_SERVICE: &str = "sofa_head_target_service";
pub const HEADER_METHOD: &str = "sofa_head_method_name";

/// The protocol version of a frame, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn from_proto(b: u8) -> Option<Version> {
        match b {
            PROTO_V1 => Some(Version::V1),
            PROTO_V2 => Some(Version::V2),
            _ => None,
        }
    }

    pub fn proto(self) -> u8 {
        match self {
            Version::V1 => PROTO_V1,
            Version::V2 => PROTO_V2,
        }
    }

    /// How far v2's extra `ver1` byte shifts the common fields.
    fn shift(self) -> usize {
        match self {
            Version::V1 => 0,
            Version::V2 => 1,
        }
    }

    /// Offset of the `type` byte.
    pub fn type_at(self) -> usize {
        1 + self.shift()
    }

    /// Offset of the `cmdcode` field.
    pub fn cmd_code_at(self) -> usize {
        2 + self.shift()
    }

    /// Offset of the `ver2` byte.
    pub fn ver2_at(self) -> usize {
        4 + self.shift()
    }

    /// Offset of the request id.
    pub fn id_at(self) -> usize {
        5 + self.shift()
    }

    /// Offset of the codec byte (v2's switch byte follows it).
    pub fn codec_at(self) -> usize {
        9 + self.shift()
    }

    /// Bytes up to the codec (and v2's switch) inclusive: what a reply is addressed from.
    pub fn prefix_len(self) -> usize {
        match self {
            Version::V1 => 10,
            Version::V2 => 12,
        }
    }

    /// Length of the fixed header of a request (`request`) or a response.
    pub fn fixed_len(self, request: bool) -> usize {
        // Requests: timeout i32, classLen, headerLen, contentLen; responses: status
        // instead of the timeout.
        self.prefix_len() + if request { 12 } else { 10 }
    }
}

/// The frame kind a `type`/`cmdcode` pair stands for; `None` for pairs Bolt does not use.
pub fn kind_of(cmd_type: u8, cmd_code: u16) -> Option<Kind> {
    match (cmd_type, cmd_code) {
        (cmd_type::REQUEST, cmd_code::HEARTBEAT) => Some(Kind::Heartbeat),
        (cmd_type::RESPONSE, cmd_code::HEARTBEAT) => Some(Kind::HeartbeatReply),
        (cmd_type::REQUEST, cmd_code::REQUEST) => Some(Kind::Request),
        (cmd_type::ONEWAY, cmd_code::REQUEST) => Some(Kind::Oneway),
        (cmd_type::RESPONSE, cmd_code::RESPONSE) => Some(Kind::Response),
        _ => None,
    }
}

pub(super) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

pub(super) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// A frame's fixed header, read from its first bytes: kind, fields and where its
/// variable parts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub version: Version,
    pub kind: Kind,
    pub request_id: u32,
    /// A request's timeout field (0 for responses).
    pub timeout_ms: i32,
    /// A response's status (0 for requests).
    pub status: u16,
    /// Length of the fixed header.
    pub fixed: usize,
    pub class_len: usize,
    pub header_len: usize,
    pub content_len: usize,
    /// A CRC32 trailer follows the content (v2 with the CRC switch).
    pub crc: bool,
}

impl Layout {
    /// Reads the fixed header at the start of `b`: `Ok(None)` while `b` is too short, an
    /// error as soon as the bytes read cannot start a Bolt frame.
    pub fn parse(b: &[u8]) -> Result<Option<Layout>, DecodeError> {
        let Some(&proto) = b.first() else {
            return Ok(None);
        };
        let version = Version::from_proto(proto).ok_or_else(|| {
            DecodeError::malformed("bolt frame", format!("unknown protocol byte {proto:#04x}"))
        })?;
        let Some(&cmd_type) = b.get(version.type_at()) else {
            return Ok(None);
        };
        if cmd_type > cmd_type::ONEWAY {
            return Err(DecodeError::malformed(
                "bolt frame",
                format!("unknown command type {cmd_type}"),
            ));
        }
        let request = cmd_type != cmd_type::RESPONSE;
        let fixed = version.fixed_len(request);
        if b.len() < fixed {
            return Ok(None);
        }
        let field16 = |at| u16_at(b, at).unwrap_or_default();
        let field32 = |at| u32_at(b, at).unwrap_or_default();
        let cmd_code = field16(version.cmd_code_at());
        let kind = kind_of(cmd_type, cmd_code).ok_or_else(|| {
            DecodeError::malformed(
                "bolt frame",
                format!("unknown command code {cmd_code} for type {cmd_type}"),
            )
        })?;
        let after = version.prefix_len();
        let (timeout_ms, status, lens_at) = if request {
            (field32(after) as i32, 0, after + 4)
        } else {
            (0, field16(after), after + 2)
        };
        let crc = version == Version::V2
            && b.get(version.codec_at() + 1).copied().unwrap_or(0) & SWITCH_CRC != 0;
        Ok(Some(Layout {
            version,
            kind,
            request_id: field32(version.id_at()),
            timeout_ms,
            status,
            fixed,
            class_len: usize::from(field16(lens_at)),
            header_len: usize::from(field16(lens_at + 2)),
            content_len: field32(lens_at + 4) as usize,
            crc,
        }))
    }

    /// Offset of the `headerLen` field.
    pub fn header_len_at(&self) -> usize {
        self.fixed - 6
    }

    pub fn class_start(&self) -> usize {
        self.fixed
    }

    pub fn header_start(&self) -> usize {
        self.fixed + self.class_len
    }

    pub fn content_start(&self) -> usize {
        self.header_start() + self.header_len
    }

    pub fn content_end(&self) -> usize {
        self.content_start() + self.content_len
    }

    /// The whole frame's length, CRC included (u64: it cannot overflow).
    pub fn total(&self) -> u64 {
        let crc = if self.crc { CRC_LEN } else { 0 };
        (self.fixed + self.class_len + self.header_len + crc) as u64 + self.content_len as u64
    }
}
