//! SOFA Bolt for the tests, written from the protocol's spec (independent of the daemon's
//! codec): frames v1 and v2 (with the optional CRC32), a multiplexed client and a server.
//!
//! ```text
//! v1 request (22-byte header)          v1 response (20-byte header)
//!  0 proto=1                            0 proto=1
//!  1 type (1 request, 2 oneway)         1 type (0 response)
//!  2 cmdcode u16 (0 heartbeat, 1 rq)    2 cmdcode u16 (0 heartbeat, 2 response)
//!  4 ver2                               4 ver2
//!  5 request id u32                     5 request id u32
//!  9 codec (1 hessian2)                 9 codec
//! 10 timeout i32 (ms)                  10 status u16
//! 14 classLen u16                      12 classLen u16
//! 16 headerLen u16                     14 headerLen u16
//! 18 contentLen u32                    16 contentLen u32
//! 22 class, header, content            20 class, header, content
//!
//! v2: proto=2, then ver1 u8; after codec a switch u8 (request header 24 bytes, response
//! 22). With `switch & 1`, a CRC32 (IEEE) of every preceding byte of the frame follows the
//! content. Header block: repeated `u32 keyLen, key, u32 valLen, val`.
//! ```

use std::io;
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};

use crate::rpc::{Incoming, RpcConn, RpcServer, ServerWire, TEST_MAX_FRAME, Wire};

pub const PROTO_V1: u8 = 1;
pub const PROTO_V2: u8 = 2;

pub const TYPE_RESPONSE: u8 = 0;
pub const TYPE_REQUEST: u8 = 1;
pub const TYPE_ONEWAY: u8 = 2;

pub const CMD_HEARTBEAT: u16 = 0;
pub const CMD_REQUEST: u16 = 1;
pub const CMD_RESPONSE: u16 = 2;

pub const CODEC_HESSIAN2: u8 = 1;

/// Response statuses.
pub const SUCCESS: u16 = 0;
pub const ERROR: u16 = 1;
pub const SERVER_EXCEPTION: u16 = 2;
pub const UNKNOWN: u16 = 3;
pub const THREADPOOL_BUSY: u16 = 4;
pub const ERROR_COMM: u16 = 5;
pub const NO_PROCESSOR: u16 = 6;
pub const TIMEOUT: u16 = 7;
pub const CLIENT_SEND_ERROR: u16 = 8;
pub const CODEC_EXCEPTION: u16 = 9;
pub const CONNECTION_CLOSED: u16 = 0x10;
pub const SERVER_SERIAL_EXCEPTION: u16 = 0x11;
pub const SERVER_DESERIAL_EXCEPTION: u16 = 0x12;

pub const REQUEST_CLASS: &str = "com.alipay.sofa.rpc.core.request.SofaRequest";
pub const RESPONSE_CLASS: &str = "com.alipay.sofa.rpc.core.response.SofaResponse";

/// The header carrying the service (the routing key).
pub const SERVICE_HEADER: &str = "service";
/// The header carrying the method.
pub const METHOD_HEADER: &str = "sofa_head_method_name";

const V1_REQUEST_HEADER: usize = 22;
const V1_RESPONSE_HEADER: usize = 20;
const V2_REQUEST_HEADER: usize = 24;
const V2_RESPONSE_HEADER: usize = 22;

/// Which framing a client writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoltVersion {
    V1,
    /// v2 without a CRC (switch 0).
    V2,
    /// v2 with a CRC32 after the content (switch 1).
    V2Crc,
}

/// One Bolt frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoltFrame {
    /// 1 or 2.
    pub proto: u8,
    /// v2 only.
    pub ver1: u8,
    pub ty: u8,
    pub cmdcode: u16,
    pub ver2: u8,
    pub id: u32,
    pub codec: u8,
    /// v2 only; bit 0: a CRC32 follows the content.
    pub switch: u8,
    /// Requests only.
    pub timeout: i32,
    /// Responses only.
    pub status: u16,
    pub class: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub content: Vec<u8>,
    /// Decoded v2 frames with a CRC: whether it matched. `None` otherwise.
    pub crc_ok: Option<bool>,
}

/// A response as a client gets it.
pub type BoltResponse = BoltFrame;

impl BoltFrame {
    /// A request (`oneway`: type 2) of `version` for `service`/`method`.
    pub fn request(
        version: BoltVersion,
        id: u32,
        service: &str,
        method: &str,
        content: &[u8],
        timeout_ms: i32,
    ) -> BoltFrame {
        let mut f = BoltFrame::bare(version, TYPE_REQUEST, CMD_REQUEST, id);
        f.timeout = timeout_ms;
        f.class = REQUEST_CLASS.as_bytes().to_vec();
        f.headers = vec![
            (SERVICE_HEADER.into(), service.into()),
            (METHOD_HEADER.into(), method.into()),
        ];
        f.content = content.to_vec();
        f
    }

    /// A heartbeat request (timeout -1, no class, header or content).
    pub fn heartbeat(version: BoltVersion, id: u32) -> BoltFrame {
        let mut f = BoltFrame::bare(version, TYPE_REQUEST, CMD_HEARTBEAT, id);
        f.timeout = -1;
        f
    }

    fn bare(version: BoltVersion, ty: u8, cmdcode: u16, id: u32) -> BoltFrame {
        let (proto, switch) = match version {
            BoltVersion::V1 => (PROTO_V1, 0),
            BoltVersion::V2 => (PROTO_V2, 0),
            BoltVersion::V2Crc => (PROTO_V2, 1),
        };
        BoltFrame {
            proto,
            ver1: if proto == PROTO_V2 { 1 } else { 0 },
            ty,
            cmdcode,
            ver2: 1,
            id,
            codec: CODEC_HESSIAN2,
            switch,
            timeout: 0,
            status: 0,
            class: Vec::new(),
            headers: Vec::new(),
            content: Vec::new(),
            crc_ok: None,
        }
    }

    /// The response to `self` (a request): same version, switch, codec and id.
    pub fn response_to(&self, status: u16, content: &[u8]) -> BoltFrame {
        BoltFrame {
            ty: TYPE_RESPONSE,
            cmdcode: if self.cmdcode == CMD_HEARTBEAT {
                CMD_HEARTBEAT
            } else {
                CMD_RESPONSE
            },
            timeout: 0,
            status,
            class: if self.cmdcode == CMD_HEARTBEAT {
                Vec::new()
            } else {
                RESPONSE_CLASS.as_bytes().to_vec()
            },
            headers: Vec::new(),
            content: content.to_vec(),
            crc_ok: None,
            ..self.clone()
        }
    }

    pub fn version(&self) -> BoltVersion {
        match (self.proto, self.switch & 1) {
            (PROTO_V1, _) => BoltVersion::V1,
            (_, 0) => BoltVersion::V2,
            _ => BoltVersion::V2Crc,
        }
    }

    pub fn is_response(&self) -> bool {
        self.ty == TYPE_RESPONSE
    }

    pub fn with_header(mut self, k: &str, v: &str) -> BoltFrame {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.content).into_owned()
    }

    fn header_len(&self) -> usize {
        match (self.proto, self.is_response()) {
            (PROTO_V1, false) => V1_REQUEST_HEADER,
            (PROTO_V1, true) => V1_RESPONSE_HEADER,
            (_, false) => V2_REQUEST_HEADER,
            (_, true) => V2_RESPONSE_HEADER,
        }
    }

    /// The frame's bytes (with a freshly computed CRC when the switch asks for one).
    pub fn encode(&self) -> Vec<u8> {
        let header_block = encode_headers(&self.headers);
        let mut out = Vec::with_capacity(
            self.header_len() + self.class.len() + header_block.len() + self.content.len() + 4,
        );
        out.push(self.proto);
        if self.proto == PROTO_V2 {
            out.push(self.ver1);
        }
        out.push(self.ty);
        out.extend_from_slice(&self.cmdcode.to_be_bytes());
        out.push(self.ver2);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.push(self.codec);
        if self.proto == PROTO_V2 {
            out.push(self.switch);
        }
        if self.is_response() {
            out.extend_from_slice(&self.status.to_be_bytes());
        } else {
            out.extend_from_slice(&self.timeout.to_be_bytes());
        }
        out.extend_from_slice(&(self.class.len() as u16).to_be_bytes());
        out.extend_from_slice(&(header_block.len() as u16).to_be_bytes());
        out.extend_from_slice(&(self.content.len() as u32).to_be_bytes());
        debug_assert_eq!(out.len(), self.header_len());
        out.extend_from_slice(&self.class);
        out.extend_from_slice(&header_block);
        out.extend_from_slice(&self.content);
        if self.proto == PROTO_V2 && self.switch & 1 == 1 {
            let crc = crc32fast::hash(&out);
            out.extend_from_slice(&crc.to_be_bytes());
        }
        out
    }

    /// Decodes the frame at the front of `buf`; see [`Wire::decode`].
    pub fn decode(buf: &mut BytesMut) -> Result<Option<BoltFrame>, String> {
        let Some(&proto) = buf.first() else {
            return Ok(None);
        };
        if proto != PROTO_V1 && proto != PROTO_V2 {
            return Err(format!("unknown proto byte {proto:#04x}"));
        }
        let type_at = if proto == PROTO_V2 { 2 } else { 1 };
        let Some(&ty) = buf.get(type_at) else {
            return Ok(None);
        };
        let response = match ty {
            TYPE_RESPONSE => true,
            TYPE_REQUEST | TYPE_ONEWAY => false,
            other => return Err(format!("unknown type {other}")),
        };
        let fixed = match (proto, response) {
            (PROTO_V1, false) => V1_REQUEST_HEADER,
            (PROTO_V1, true) => V1_RESPONSE_HEADER,
            (_, false) => V2_REQUEST_HEADER,
            (_, true) => V2_RESPONSE_HEADER,
        };
        if buf.len() < fixed {
            return Ok(None);
        }
        let h = &buf[..fixed];
        let mut at = 0;
        let mut u8_ = |n: usize| {
            let s = &h[at..at + n];
            at += n;
            s
        };
        let mut f = BoltFrame::bare(BoltVersion::V1, ty, 0, 0);
        f.proto = u8_(1)[0];
        if proto == PROTO_V2 {
            f.ver1 = u8_(1)[0];
        }
        u8_(1);
        f.cmdcode = u16::from_be_bytes(u8_(2).try_into().unwrap());
        f.ver2 = u8_(1)[0];
        f.id = u32::from_be_bytes(u8_(4).try_into().unwrap());
        f.codec = u8_(1)[0];
        f.switch = if proto == PROTO_V2 { u8_(1)[0] } else { 0 };
        if response {
            f.status = u16::from_be_bytes(u8_(2).try_into().unwrap());
        } else {
            f.timeout = i32::from_be_bytes(u8_(4).try_into().unwrap());
        }
        let class_len = u16::from_be_bytes(u8_(2).try_into().unwrap()) as usize;
        let header_len = u16::from_be_bytes(u8_(2).try_into().unwrap()) as usize;
        let content_len = u32::from_be_bytes(u8_(4).try_into().unwrap()) as usize;
        let crc_len = if proto == PROTO_V2 && f.switch & 1 == 1 {
            4
        } else {
            0
        };
        let total = fixed + class_len + header_len + content_len + crc_len;
        if total > TEST_MAX_FRAME {
            return Err(format!("frame of {total} bytes"));
        }
        if buf.len() < total {
            return Ok(None);
        }
        let frame = buf.split_to(total);
        let mut body = &frame[fixed..];
        f.class = body[..class_len].to_vec();
        body.advance(class_len);
        f.headers = decode_headers(&body[..header_len])?;
        body.advance(header_len);
        f.content = body[..content_len].to_vec();
        if crc_len == 4 {
            let want = u32::from_be_bytes(frame[total - 4..].try_into().unwrap());
            f.crc_ok = Some(crc32fast::hash(&frame[..total - 4]) == want);
        }
        Ok(Some(f))
    }
}

fn encode_headers(headers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in headers {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn decode_headers(mut b: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let take = |b: &mut &[u8]| -> Result<String, String> {
        if b.len() < 4 {
            return Err("header block: truncated length".into());
        }
        let n = b.get_u32() as usize;
        if b.len() < n {
            return Err(format!("header block: {n}-byte field in {} bytes", b.len()));
        }
        let s = String::from_utf8_lossy(&b[..n]).into_owned();
        b.advance(n);
        Ok(s)
    };
    while !b.is_empty() {
        let k = take(&mut b)?;
        let v = take(&mut b)?;
        out.push((k, v));
    }
    Ok(out)
}

/// The Bolt [`Wire`].
pub struct Bolt;

impl Wire for Bolt {
    type Frame = BoltFrame;

    fn decode(buf: &mut BytesMut) -> Result<Option<BoltFrame>, String> {
        BoltFrame::decode(buf)
    }

    fn encode(frame: &BoltFrame) -> Vec<u8> {
        frame.encode()
    }

    fn id(frame: &BoltFrame) -> u64 {
        frame.id.into()
    }

    fn is_response(frame: &BoltFrame) -> bool {
        frame.is_response()
    }
}

impl ServerWire for Bolt {
    fn classify(f: &BoltFrame) -> Incoming {
        match (f.ty, f.cmdcode) {
            (TYPE_REQUEST, CMD_HEARTBEAT) => Incoming::Heartbeat,
            (TYPE_REQUEST, CMD_REQUEST) => Incoming::Request,
            (TYPE_ONEWAY, CMD_REQUEST) => Incoming::Oneway,
            _ => Incoming::Other,
        }
    }

    fn behaviour(f: &BoltFrame, key: &str) -> Option<String> {
        f.header(key).map(str::to_owned)
    }

    fn check(f: &BoltFrame) -> Option<u16> {
        (f.crc_ok == Some(false)).then_some(CODEC_EXCEPTION)
    }

    fn reply(req: &BoltFrame, name: &str) -> BoltFrame {
        let mut r = req.response_to(SUCCESS, &req.content);
        r.headers = vec![("server".into(), name.into())];
        if let Some(s) = req.header(SERVICE_HEADER) {
            r.headers.push(("x-service-seen".into(), s.into()));
        }
        r
    }

    fn error_reply(req: &BoltFrame, status: u16, name: &str) -> BoltFrame {
        let mut r = req.response_to(status, format!("error {status} from {name}").as_bytes());
        r.headers = vec![("server".into(), name.into())];
        r
    }

    fn heartbeat_reply(req: &BoltFrame) -> BoltFrame {
        req.response_to(SUCCESS, &[])
    }
}

/// A Bolt server: see [`crate::rpc`] for its behaviours. Responses carry `server: <name>`.
pub type BoltServer = RpcServer<Bolt>;

/// One Bolt client connection, multiplexed: calls from many tasks at once share it.
pub struct BoltClient {
    pub conn: RpcConn<Bolt>,
    pub version: BoltVersion,
}

impl BoltClient {
    /// A v1 client.
    pub async fn connect(addr: SocketAddr) -> BoltClient {
        BoltClient::connect_version(addr, BoltVersion::V1).await
    }

    pub async fn connect_version(addr: SocketAddr, version: BoltVersion) -> BoltClient {
        let conn = RpcConn::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect bolt client to {addr}: {e}"));
        BoltClient { conn, version }
    }

    /// A request frame of this client's version with the next id.
    pub fn frame(&self, service: &str, method: &str, body: &[u8], timeout_ms: i32) -> BoltFrame {
        let id = self.conn.next_id() as u32;
        BoltFrame::request(self.version, id, service, method, body, timeout_ms)
    }

    /// Sends a request and waits for its response.
    pub async fn request(
        &self,
        service: &str,
        method: &str,
        body: &[u8],
        timeout_ms: i32,
    ) -> io::Result<BoltResponse> {
        self.call(self.frame(service, method, body, timeout_ms))
            .await
    }

    /// Like [`BoltClient::request`] with extra headers (server behaviours).
    pub async fn request_with(
        &self,
        service: &str,
        method: &str,
        body: &[u8],
        timeout_ms: i32,
        headers: &[(&str, &str)],
    ) -> io::Result<BoltResponse> {
        let mut f = self.frame(service, method, body, timeout_ms);
        for (k, v) in headers {
            f = f.with_header(k, v);
        }
        self.call(f).await
    }

    /// Sends `req` as it is (any version) and waits for the response with its id.
    pub async fn call(&self, req: BoltFrame) -> io::Result<BoltResponse> {
        self.conn.call(&req).await
    }

    /// A oneway request (type 2): nothing comes back.
    pub async fn oneway(&self, service: &str, method: &str, body: &[u8]) -> io::Result<()> {
        let mut f = self.frame(service, method, body, 3000);
        f.ty = TYPE_ONEWAY;
        self.conn.send(&f).await
    }

    /// A heartbeat; the status of its answer.
    pub async fn heartbeat(&self) -> io::Result<u16> {
        let id = self.conn.next_id() as u32;
        let reply = self
            .conn
            .call(&BoltFrame::heartbeat(self.version, id))
            .await?;
        if reply.cmdcode != CMD_HEARTBEAT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("heartbeat {id} answered with cmdcode {}", reply.cmdcode),
            ));
        }
        Ok(reply.status)
    }

    /// Writes `bytes` as they are.
    pub async fn send_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        self.conn.send_bytes(bytes).await
    }
}
