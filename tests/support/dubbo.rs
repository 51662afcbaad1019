//! Dubbo 2.x for the tests, written from the protocol's spec (independent of the daemon's
//! codec): the 16-byte header, the hessian2 bodies the tests need, a multiplexed client and
//! a server.
//!
//! ```text
//!  0 magic 0xda 0xbb
//!  2 flag: 0x80 request, 0x40 two-way, 0x20 event, low 5 bits serialization (2 hessian2)
//!  3 status (responses: 20 OK, 30 client timeout, 31 server timeout, 40 bad request, ...)
//!  4 request id u64
//! 12 body length u32
//! 16 body
//! ```
//!
//! Request body (hessian2): dubbo version, service interface, service version, method,
//! parameter types (JVM descriptors), the arguments, the attachments map. Response body
//! (status 20): a response type (int: 1 value, 2 null, 4 value with attachments, ...) and
//! the value; other statuses: an error message string. Heartbeats: event requests and
//! responses with the body `N` (null).

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;

use crate::rpc::{Incoming, RpcConn, RpcServer, ServerWire, TEST_MAX_FRAME, Wire};

pub const MAGIC: [u8; 2] = [0xda, 0xbb];
pub const HEADER_LEN: usize = 16;

pub const FLAG_REQUEST: u8 = 0x80;
pub const FLAG_TWO_WAY: u8 = 0x40;
pub const FLAG_EVENT: u8 = 0x20;
pub const SERIALIZATION_MASK: u8 = 0x1f;
pub const HESSIAN2: u8 = 2;

/// Response statuses.
pub const OK: u8 = 20;
pub const CLIENT_TIMEOUT: u8 = 30;
pub const SERVER_TIMEOUT: u8 = 31;
pub const BAD_REQUEST: u8 = 40;
pub const BAD_RESPONSE: u8 = 50;
pub const SERVICE_NOT_FOUND: u8 = 60;
pub const SERVICE_ERROR: u8 = 70;
pub const SERVER_ERROR: u8 = 80;
pub const CLIENT_ERROR: u8 = 90;
pub const THREADPOOL_EXHAUSTED: u8 = 100;

/// Response types (the int that starts a status-20 body).
pub const RESPONSE_WITH_EXCEPTION: i32 = 0;
pub const RESPONSE_VALUE: i32 = 1;
pub const RESPONSE_NULL_VALUE: i32 = 2;
pub const RESPONSE_VALUE_WITH_ATTACHMENTS: i32 = 4;

pub const DUBBO_VERSION: &str = "2.0.2";
pub const STRING_PARAM: &str = "Ljava/lang/String;";

/// One Dubbo frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DubboFrame {
    pub flag: u8,
    pub status: u8,
    pub id: u64,
    pub body: Vec<u8>,
}

impl DubboFrame {
    pub fn is_request(&self) -> bool {
        self.flag & FLAG_REQUEST != 0
    }

    pub fn is_event(&self) -> bool {
        self.flag & FLAG_EVENT != 0
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        out.extend_from_slice(&MAGIC);
        out.push(self.flag);
        out.push(self.status);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&(self.body.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(buf: &mut BytesMut) -> Result<Option<DubboFrame>, String> {
        for (i, &m) in MAGIC.iter().enumerate() {
            match buf.get(i) {
                None => return Ok(None),
                Some(&b) if b != m => return Err(format!("bad magic byte {b:#04x} at {i}")),
                Some(_) => {}
            }
        }
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes(buf[12..16].try_into().unwrap()) as usize;
        if HEADER_LEN + len > TEST_MAX_FRAME {
            return Err(format!("frame of {} bytes", HEADER_LEN + len));
        }
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let f = buf.split_to(HEADER_LEN + len);
        Ok(Some(DubboFrame {
            flag: f[2],
            status: f[3],
            id: u64::from_be_bytes(f[4..12].try_into().unwrap()),
            body: f[HEADER_LEN..].to_vec(),
        }))
    }

    /// The response to `self` (a request) with `status` and `body`.
    pub fn response_to(&self, status: u8, body: Vec<u8>) -> DubboFrame {
        DubboFrame {
            flag: (self.flag & (FLAG_EVENT | SERIALIZATION_MASK)),
            status,
            id: self.id,
            body,
        }
    }

    /// A status-20 response body's value (response types 1 and 4) as a string.
    pub fn value(&self) -> Option<String> {
        if self.status != OK {
            return None;
        }
        let mut r = Reader::new(&self.body);
        match r.int().ok()? {
            RESPONSE_VALUE | RESPONSE_VALUE_WITH_ATTACHMENTS => r.string().ok(),
            _ => None,
        }
    }

    /// An error response's message (statuses other than 20).
    pub fn error_message(&self) -> Option<String> {
        if self.status == OK {
            return None;
        }
        Reader::new(&self.body).string().ok()
    }
}

/// A request's decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub dubbo_version: String,
    pub service: String,
    pub version: String,
    pub method: String,
    pub param_types: String,
    pub args: Vec<String>,
    pub attachments: Vec<(String, String)>,
}

impl Invocation {
    /// One string argument, attachments `path`, `interface` and `version`.
    pub fn new(service: &str, method: &str, arg: &str) -> Invocation {
        Invocation {
            dubbo_version: DUBBO_VERSION.into(),
            service: service.into(),
            version: "1.0".into(),
            method: method.into(),
            param_types: STRING_PARAM.into(),
            args: vec![arg.into()],
            attachments: vec![
                ("path".into(), service.into()),
                ("interface".into(), service.into()),
                ("version".into(), "1.0".into()),
            ],
        }
    }

    pub fn attach(mut self, k: &str, v: &str) -> Invocation {
        self.attachments.push((k.into(), v.into()));
        self
    }

    pub fn attachment(&self, k: &str) -> Option<&str> {
        self.attachments
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for s in [
            &self.dubbo_version,
            &self.service,
            &self.version,
            &self.method,
            &self.param_types,
        ] {
            put_string(&mut out, s);
        }
        for a in &self.args {
            put_string(&mut out, a);
        }
        out.push(b'H');
        for (k, v) in &self.attachments {
            put_string(&mut out, k);
            put_string(&mut out, v);
        }
        out.push(b'Z');
        out
    }

    /// Decodes a request body whose arguments are all strings.
    pub fn decode(body: &[u8]) -> Result<Invocation, String> {
        let mut r = Reader::new(body);
        let dubbo_version = r.string()?;
        let service = r.string()?;
        let version = r.string()?;
        let method = r.string()?;
        let param_types = r.string()?;
        let n = count_params(&param_types)?;
        let args = (0..n).map(|_| r.string()).collect::<Result<Vec<_>, _>>()?;
        let attachments = r.string_map()?;
        Ok(Invocation {
            dubbo_version,
            service,
            version,
            method,
            param_types,
            args,
            attachments,
        })
    }
}

/// How many parameters a JVM descriptor list like `Ljava/lang/String;[II` names.
pub fn count_params(desc: &str) -> Result<usize, String> {
    let b = desc.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < b.len() {
        while b.get(i) == Some(&b'[') {
            i += 1;
        }
        match b.get(i) {
            Some(b'L') => {
                let end = desc[i..]
                    .find(';')
                    .ok_or_else(|| format!("unterminated class in {desc:?}"))?;
                i += end + 1;
            }
            Some(b'Z' | b'B' | b'C' | b'D' | b'F' | b'I' | b'J' | b'S' | b'V') => i += 1,
            other => return Err(format!("bad descriptor {desc:?} at {i}: {other:?}")),
        }
        n += 1;
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Hessian2, the parts the tests need

/// Appends `s` as a hessian2 string: `0x00..=0x1f` (up to 31 chars), `0x30..=0x33` + 1 byte
/// (up to 1,023), else `R` chunks of 65,535 chars then a final `S` chunk. Lengths count
/// UTF-16 units; only characters of the Basic Multilingual Plane are supported (their UTF-8
/// is what hessian writes).
pub fn put_string(out: &mut Vec<u8>, s: &str) {
    assert!(
        s.chars().all(|c| (c as u32) < 0x10000),
        "test strings stay in the Basic Multilingual Plane"
    );
    let chars: Vec<char> = s.chars().collect();
    let mut rest = &chars[..];
    while rest.len() > 0xffff {
        out.push(b'R');
        out.extend_from_slice(&0xffffu16.to_be_bytes());
        out.extend(rest[..0xffff].iter().collect::<String>().bytes());
        rest = &rest[0xffff..];
    }
    let n = rest.len();
    if n <= 0x1f {
        out.push(n as u8);
    } else if n <= 0x3ff {
        out.push(0x30 + (n >> 8) as u8);
        out.push(n as u8);
    } else {
        out.push(b'S');
        out.extend_from_slice(&(n as u16).to_be_bytes());
    }
    out.extend(rest.iter().collect::<String>().bytes());
}

/// Appends a hessian2 int.
pub fn put_int(out: &mut Vec<u8>, v: i32) {
    match v {
        -16..=47 => out.push((0x90 + v) as u8),
        -2048..=2047 => out.extend_from_slice(&[(0xc8 + (v >> 8)) as u8, v as u8]),
        -262144..=262143 => {
            out.extend_from_slice(&[(0xd4 + (v >> 16)) as u8, (v >> 8) as u8, v as u8])
        }
        _ => {
            out.push(b'I');
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// A hessian2 reader over a body.
pub struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b, at: 0 }
    }

    fn byte(&mut self) -> Result<u8, String> {
        let v = *self
            .b
            .get(self.at)
            .ok_or_else(|| format!("hessian: truncated at {}", self.at))?;
        self.at += 1;
        Ok(v)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or_else(|| format!("hessian: {n} bytes past the end at {}", self.at))?;
        self.at += n;
        Ok(s)
    }

    pub fn int(&mut self) -> Result<i32, String> {
        let t = self.byte()?;
        Ok(match t {
            0x80..=0xbf => t as i32 - 0x90,
            0xc0..=0xcf => ((t as i32 - 0xc8) << 8) | self.byte()? as i32,
            0xd0..=0xd7 => {
                let b = self.bytes(2)?;
                ((t as i32 - 0xd4) << 16) | (b[0] as i32) << 8 | b[1] as i32
            }
            b'I' => i32::from_be_bytes(self.bytes(4)?.try_into().unwrap()),
            other => return Err(format!("hessian: {other:#04x} is not an int")),
        })
    }

    /// `n` characters (UTF-16 units, BMP only) of UTF-8.
    fn chars(&mut self, n: usize, out: &mut String) -> Result<(), String> {
        let start = self.at;
        for _ in 0..n {
            let lead = self.byte()?;
            let extra = match lead {
                0x00..=0x7f => 0,
                0xc0..=0xdf => 1,
                0xe0..=0xef => 2,
                other => return Err(format!("hessian: bad UTF-8 lead byte {other:#04x}")),
            };
            self.bytes(extra)?;
        }
        let s = std::str::from_utf8(&self.b[start..self.at])
            .map_err(|e| format!("hessian: string not UTF-8: {e}"))?;
        out.push_str(s);
        Ok(())
    }

    pub fn string(&mut self) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let t = self.byte()?;
            let (n, last) = match t {
                0x00..=0x1f => (t as usize, true),
                0x30..=0x33 => (((t as usize - 0x30) << 8) | self.byte()? as usize, true),
                b'S' | b'R' => {
                    let b = self.bytes(2)?;
                    (u16::from_be_bytes([b[0], b[1]]) as usize, t == b'S')
                }
                other => return Err(format!("hessian: {other:#04x} is not a string")),
            };
            self.chars(n, &mut out)?;
            if last {
                return Ok(out);
            }
        }
    }

    /// A map of strings: `H` (untyped) or `M` + type string, pairs, `Z`.
    pub fn string_map(&mut self) -> Result<Vec<(String, String)>, String> {
        match self.byte()? {
            b'H' => {}
            b'M' => {
                self.string()?;
            }
            other => return Err(format!("hessian: {other:#04x} is not a map")),
        }
        let mut out = Vec::new();
        loop {
            if self.b.get(self.at) == Some(&b'Z') {
                self.at += 1;
                return Ok(out);
            }
            let k = self.string()?;
            let v = self.string()?;
            out.push((k, v));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client and server

/// The Dubbo [`Wire`].
pub struct Dubbo;

impl Wire for Dubbo {
    type Frame = DubboFrame;

    fn decode(buf: &mut BytesMut) -> Result<Option<DubboFrame>, String> {
        DubboFrame::decode(buf)
    }

    fn encode(frame: &DubboFrame) -> Vec<u8> {
        frame.encode()
    }

    fn id(frame: &DubboFrame) -> u64 {
        frame.id
    }

    fn is_response(frame: &DubboFrame) -> bool {
        !frame.is_request()
    }
}

impl ServerWire for Dubbo {
    fn classify(f: &DubboFrame) -> Incoming {
        if !f.is_request() {
            Incoming::Other
        } else if f.is_event() {
            Incoming::Heartbeat
        } else if f.flag & FLAG_TWO_WAY != 0 {
            Incoming::Request
        } else {
            Incoming::Oneway
        }
    }

    fn behaviour(f: &DubboFrame, key: &str) -> Option<String> {
        let inv = Invocation::decode(&f.body).ok()?;
        inv.attachment(key).map(str::to_owned)
    }

    fn check(f: &DubboFrame) -> Option<u16> {
        Invocation::decode(&f.body)
            .is_err()
            .then_some(BAD_REQUEST.into())
    }

    fn reply(req: &DubboFrame, name: &str) -> DubboFrame {
        let arg = Invocation::decode(&req.body)
            .ok()
            .and_then(|i| i.args.into_iter().next())
            .unwrap_or_default();
        let mut body = Vec::new();
        put_int(&mut body, RESPONSE_VALUE);
        put_string(&mut body, &format!("{name}|{arg}"));
        req.response_to(OK, body)
    }

    fn error_reply(req: &DubboFrame, status: u16, name: &str) -> DubboFrame {
        let mut body = Vec::new();
        put_string(&mut body, &format!("error {status} from {name}"));
        req.response_to(status as u8, body)
    }

    fn heartbeat_reply(req: &DubboFrame) -> DubboFrame {
        req.response_to(OK, vec![b'N'])
    }
}

/// A Dubbo server: see [`crate::rpc`] for its behaviours (read from attachments). The echo
/// value is `<name>|<first argument>`.
pub type DubboServer = RpcServer<Dubbo>;

/// A response as a client gets it.
#[derive(Debug, Clone)]
pub struct DubboResponse {
    pub status: u8,
    pub id: u64,
    /// The string value of a status-20 response.
    pub value: Option<String>,
    /// The message of an error response.
    pub error: Option<String>,
    pub frame: DubboFrame,
}

impl From<DubboFrame> for DubboResponse {
    fn from(f: DubboFrame) -> DubboResponse {
        DubboResponse {
            status: f.status,
            id: f.id,
            value: f.value(),
            error: f.error_message(),
            frame: f,
        }
    }
}

/// One Dubbo client connection, multiplexed: calls from many tasks at once share it.
pub struct DubboClient {
    pub conn: RpcConn<Dubbo>,
}

impl DubboClient {
    pub async fn connect(addr: SocketAddr) -> DubboClient {
        let conn = RpcConn::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect dubbo client to {addr}: {e}"));
        DubboClient { conn }
    }

    /// A two-way request frame with the next id.
    pub fn frame(&self, inv: &Invocation) -> DubboFrame {
        DubboFrame {
            flag: FLAG_REQUEST | FLAG_TWO_WAY | HESSIAN2,
            status: 0,
            id: self.conn.next_id(),
            body: inv.encode(),
        }
    }

    /// Calls `service.method(arg)`.
    pub async fn request(
        &self,
        service: &str,
        method: &str,
        arg: &str,
    ) -> io::Result<DubboResponse> {
        self.call(&Invocation::new(service, method, arg)).await
    }

    pub async fn call(&self, inv: &Invocation) -> io::Result<DubboResponse> {
        Ok(self.conn.call(&self.frame(inv)).await?.into())
    }

    /// A oneway request (no two-way bit): nothing comes back.
    pub async fn oneway(&self, inv: &Invocation) -> io::Result<()> {
        let mut f = self.frame(inv);
        f.flag &= !FLAG_TWO_WAY;
        self.conn.send(&f).await
    }

    /// A heartbeat (event request, body `N`); the status of its answer.
    pub async fn heartbeat(&self) -> io::Result<u8> {
        let f = DubboFrame {
            flag: FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | HESSIAN2,
            status: 0,
            id: self.conn.next_id(),
            body: vec![b'N'],
        };
        let reply = self.conn.call(&f).await?;
        if !reply.is_event() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("heartbeat {} answered with flag {:#04x}", f.id, reply.flag),
            ));
        }
        Ok(reply.status)
    }

    pub async fn send_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        self.conn.send_bytes(bytes).await
    }
}
