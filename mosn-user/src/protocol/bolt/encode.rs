//! Encoding of Bolt frames: forwarding (raw bytes, or rebuilt around a new header block),
//! request id patching, and the frames the proxy writes itself: heartbeats, heartbeat
//! replies, hijack responses and codec-exception replies.

use bytes::{BufMut, BytesMut};
use tracing::warn;

use super::frame::{
    CODEC_HESSIAN2, CRC_LEN, Layout, SWITCH_CRC, VER2_DEFAULT, Version, cmd_code, cmd_type, status,
};
use crate::protocol::xprotocol::{Hijack, Kind, XFrame};

/// Appends `frame` to `dst`: its raw bytes, or, when its headers changed, the frame rebuilt
/// with a header block made from `headers` (fixed header, class and content from `raw`,
/// headerLen and the CRC recomputed).
pub fn encode(frame: &XFrame, dst: &mut BytesMut) {
    if !frame.headers_changed {
        dst.extend_from_slice(&frame.raw);
        return;
    }
    let raw = &frame.raw[..];
    let parts = Layout::parse(raw).ok().flatten().and_then(|l| {
        let fixed = raw.get(..l.fixed)?;
        let class = raw.get(l.class_start()..l.header_start())?;
        let content = raw.get(l.content_start()..l.content_end())?;
        Some((l, fixed, class, content))
    });
    let Some((layout, fixed, class, content)) = parts else {
        warn!(
            len = raw.len(),
            "bolt: cannot re-encode a frame whose raw bytes do not parse; forwarding them unchanged"
        );
        dst.extend_from_slice(raw);
        return;
    };
    let block_len: usize = frame
        .headers
        .iter()
        .map(|(k, v)| 8 + frame.text(k).len() + frame.text(v).len())
        .sum();
    let Ok(block_len16) = u16::try_from(block_len) else {
        warn!(
            block_len,
            "bolt: changed header block over the 65535 bytes headerLen can say; forwarding the frame with its original headers"
        );
        dst.extend_from_slice(raw);
        return;
    };
    let start = dst.len();
    let crc = if layout.crc { CRC_LEN } else { 0 };
    dst.reserve(fixed.len() + class.len() + block_len + content.len() + crc);
    dst.extend_from_slice(fixed);
    let at = start + layout.header_len_at();
    dst[at..at + 2].copy_from_slice(&block_len16.to_be_bytes());
    dst.extend_from_slice(class);
    for (k, v) in &frame.headers {
        for s in [frame.text(k), frame.text(v)] {
            // Each string is shorter than the u16-sized block.
            dst.put_u32(s.len() as u32);
            dst.extend_from_slice(s);
        }
    }
    dst.extend_from_slice(content);
    if layout.crc {
        let sum = crc32fast::hash(&dst[start..]);
        dst.put_u32(sum);
    }
}

/// Sets the request id in `frame.raw` (and `frame.request_id`), refreshing a v2 frame's
/// CRC, which covers the id.
pub fn set_request_id(frame: &mut XFrame, id: u64) {
    let id = id as u32;
    frame.request_id = u64::from(id);
    let raw = &mut frame.raw[..];
    let Some(version) = raw.first().copied().and_then(Version::from_proto) else {
        return;
    };
    let at = version.id_at();
    let Some(field) = raw.get_mut(at..at + 4) else {
        return;
    };
    field.copy_from_slice(&id.to_be_bytes());
    let crc = matches!(Layout::parse(raw), Ok(Some(l)) if l.crc);
    if crc && let Some(body) = raw.len().checked_sub(CRC_LEN) {
        let sum = crc32fast::hash(&raw[..body]);
        raw[body..].copy_from_slice(&sum.to_be_bytes());
    }
}

/// A v1 heartbeat request with `id`.
pub fn heartbeat(id: u64) -> BytesMut {
    let mut b = BytesMut::with_capacity(Version::V1.fixed_len(true));
    b.put_u8(Version::V1.proto());
    b.put_u8(cmd_type::REQUEST);
    b.put_u16(cmd_code::HEARTBEAT);
    b.put_u8(VER2_DEFAULT);
    b.put_u32(id as u32);
    b.put_u8(CODEC_HESSIAN2);
    b.put_i32(-1); // timeout
    b.put_u16(0); // classLen
    b.put_u16(0); // headerLen
    b.put_u32(0); // contentLen
    b
}

/// What a reply copies from the request it answers.
#[derive(Debug, Clone, Copy)]
struct ReplyTo {
    version: Version,
    ver1: u8,
    ver2: u8,
    id: u32,
    codec: u8,
    switch: u8,
}

impl ReplyTo {
    /// Read from a request's first bytes; `None` unless they hold a Bolt prefix up to the
    /// codec (v2: the switch).
    fn read(b: &[u8]) -> Option<ReplyTo> {
        let version = Version::from_proto(*b.first()?)?;
        if b.len() < version.prefix_len() {
            return None;
        }
        let byte = |at: usize| b.get(at).copied().unwrap_or_default();
        let (ver1, switch) = match version {
            Version::V1 => (0, 0),
            Version::V2 => (byte(1), byte(version.codec_at() + 1)),
        };
        Some(ReplyTo {
            version,
            ver1,
            ver2: byte(version.ver2_at()),
            id: super::frame::u32_at(b, version.id_at())?,
            codec: byte(version.codec_at()),
            switch,
        })
    }

    /// For a frame the proxy holds: from its raw bytes, else a v1 hessian2 default.
    fn of(req: &XFrame) -> ReplyTo {
        let mut to = ReplyTo::read(&req.raw).unwrap_or(ReplyTo {
            version: Version::V1,
            ver1: 0,
            ver2: VER2_DEFAULT,
            id: 0,
            codec: CODEC_HESSIAN2,
            switch: 0,
        });
        to.id = req.request_id as u32;
        to
    }

    /// A response with `code` and `status` and no class, header or content (with the
    /// CRC trailer when the request's switch asks for one).
    fn response(&self, code: u16, status: u16) -> BytesMut {
        let crc = self.version == Version::V2 && self.switch & SWITCH_CRC != 0;
        let len = self.version.fixed_len(false) + if crc { CRC_LEN } else { 0 };
        let mut b = BytesMut::with_capacity(len);
        b.put_u8(self.version.proto());
        if self.version == Version::V2 {
            b.put_u8(self.ver1);
        }
        b.put_u8(cmd_type::RESPONSE);
        b.put_u16(code);
        b.put_u8(self.ver2);
        b.put_u32(self.id);
        b.put_u8(self.codec);
        if self.version == Version::V2 {
            b.put_u8(self.switch);
        }
        b.put_u16(status);
        b.put_u16(0); // classLen
        b.put_u16(0); // headerLen
        b.put_u32(0); // contentLen
        if crc {
            let sum = crc32fast::hash(&b);
            b.put_u32(sum);
        }
        b
    }
}

/// The heartbeat response to `req`: status success, same id, version, codec and switch.
pub fn heartbeat_reply(req: &XFrame) -> BytesMut {
    ReplyTo::of(req).response(cmd_code::HEARTBEAT, status::SUCCESS)
}

/// The status a hijack response carries for `why`.
pub fn hijack_status(why: Hijack) -> u16 {
    match why {
        Hijack::NoRoute | Hijack::Forbidden => status::NO_PROCESSOR,
        Hijack::NoHealthyHost | Hijack::UpstreamReset => status::CONNECTION_CLOSED,
        Hijack::Timeout => status::TIMEOUT,
        Hijack::Overflow => status::SERVER_THREADPOOL_BUSY,
        Hijack::Codec => status::CODEC_EXCEPTION,
    }
}

/// A response to request `req` with the status for `why` and nothing else (as MOSN sends);
/// `None` for anything but a request expecting a response.
pub fn hijack(req: &XFrame, why: Hijack) -> Option<BytesMut> {
    (req.kind == Kind::Request)
        .then(|| ReplyTo::of(req).response(cmd_code::RESPONSE, hijack_status(why)))
}

/// A codec-exception response to the request whose first bytes are `src`, if they carry
/// enough of a Bolt request header to address one.
pub fn codec_error_reply(src: &[u8]) -> Option<BytesMut> {
    let to = ReplyTo::read(src)?;
    if src.get(to.version.type_at()) != Some(&cmd_type::REQUEST) {
        return None;
    }
    Some(to.response(cmd_code::RESPONSE, status::CODEC_EXCEPTION))
}
