//! Fuzzing entry points (feature `fuzzing`, off by default): one function per decoder, each
//! feeding arbitrary bytes through the codec the way the proxy does and asserting what must
//! hold for any input. The cargo-fuzz targets in `fuzz/` are one-line calls of these, and
//! `tests/fuzz_corpus.rs` replays the committed corpus through the same functions.
//!
//! Each function decodes the input four times: whole with a large limit, cut in two at a
//! point taken from the input, whole with a small limit, and in small pieces with the small
//! limit (the limit and the cut come from the input's last two bytes, [`Knobs`], so the
//! fuzzer steers them and a corpus file replays the same way). The runs must agree: how the
//! bytes arrive never changes what is decoded. Decoders must never panic, truncated input
//! waits for more bytes, impossible lengths are errors, and every frame the codecs build
//! (re-encoded frames, id patches, heartbeats, error replies) decodes back to what it says.

mod h2;
mod tls;

pub use h2::h2_frames;
pub use tls::client_hello;

use std::mem::Discriminant;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};

use crate::protocol::Protocol;
use crate::protocol::http1::{self, BodyKind, Frame, RequestDecoder, ResponseDecoder, encode};
use crate::protocol::xprotocol::{Hijack, Kind, Text, XFrame, XProtocol};
use crate::protocol::{DecodeError, Decoder, Match, bolt, dubbo};

/// The large frame limit of the unconstrained runs (the proxy's is configurable; 1 MiB keeps
/// inputs that announce huge frames from reserving more than that per run).
const BIG_FRAME: usize = 1 << 20;
/// The large head limit of the unconstrained HTTP runs.
const BIG_HEAD: usize = 1 << 20;
/// Prefixes of the input that detection is asked about one by one.
const DETECT_PREFIXES: usize = 64;

/// Per-input settings, from the input's last two bytes.
#[derive(Debug, Clone, Copy)]
struct Knobs {
    /// Where the input is cut in two for the split run.
    split: usize,
    /// The size of the pieces of the piecewise run (1 to 64 bytes).
    step: usize,
    /// The small limit (frame bytes, head bytes): 16 to 1036.
    small: usize,
    /// Answer HTTP responses as responses to HEAD.
    head: bool,
}

fn knobs(data: &[u8]) -> Knobs {
    let n = data.len();
    let from_end = |i: usize| n.checked_sub(i).map_or(0, |i| usize::from(data[i]));
    let (prev, last) = (from_end(2), from_end(1));
    Knobs {
        split: (prev << 8 | last) % (n + 1),
        step: 1 + last % 64,
        small: 16 + prev * 4,
        head: last % 8 == 3,
    }
}

/// Read boundaries: the input whole.
fn whole(data: &[u8]) -> Vec<usize> {
    vec![data.len()]
}

/// Read boundaries: the input cut at `at`.
fn cut(data: &[u8], at: usize) -> Vec<usize> {
    vec![at, data.len()]
}

/// Read boundaries: pieces of `step` bytes.
fn pieces(data: &[u8], step: usize) -> Vec<usize> {
    (step..data.len())
        .step_by(step)
        .chain([data.len()])
        .collect()
}

// ---------------------------------------------------------------------------------------
// X-Protocols
// ---------------------------------------------------------------------------------------

/// What the checks need to know about an X-Protocol beyond the trait.
struct Spec {
    proto: &'static dyn XProtocol,
    /// The ids the protocol carries (Bolt: u32).
    id_mask: u64,
    /// The kind of the reply `hijack` builds for a frame of this kind, if it builds one.
    hijack_reply: fn(Kind) -> Option<Kind>,
    /// The status of a codec-error reply.
    codec_status: u16,
    /// The request id in a frame's first bytes, read by hand from the wire layout.
    wire_id: fn(&[u8]) -> Option<u64>,
    /// Protocol-specific checks of a decoded frame.
    extra: fn(&XFrame),
}

static BOLT: Spec = Spec {
    proto: &bolt::BOLT,
    id_mask: u32::MAX as u64,
    hijack_reply: |k| (k == Kind::Request).then_some(Kind::Response),
    codec_status: bolt::status::CODEC_EXCEPTION,
    wire_id: |b| {
        let at = match b.first()? {
            1 => 5,
            2 => 6,
            _ => return None,
        };
        Some(u64::from(u32::from_be_bytes(
            b.get(at..at + 4)?.try_into().ok()?,
        )))
    },
    extra: bolt_frame,
};

static DUBBO: Spec = Spec {
    proto: &dubbo::DUBBO,
    id_mask: u64::MAX,
    hijack_reply: |k| match k {
        Kind::Request => Some(Kind::Response),
        Kind::Heartbeat => Some(Kind::HeartbeatReply),
        _ => None,
    },
    codec_status: dubbo::status::BAD_REQUEST as u16,
    wire_id: |b| Some(u64::from_be_bytes(b.get(4..12)?.try_into().ok()?)),
    extra: dubbo_frame,
};

const HIJACKS: [Hijack; 7] = [
    Hijack::NoRoute,
    Hijack::NoHealthyHost,
    Hijack::Timeout,
    Hijack::Overflow,
    Hijack::UpstreamReset,
    Hijack::Codec,
    Hijack::Forbidden,
];

/// Bolt: `bolt::BOLT` over `data`.
pub fn bolt(data: &[u8]) {
    x_target(&BOLT, data);
}

/// Dubbo: `dubbo::DUBBO` over `data`.
pub fn dubbo(data: &[u8]) {
    x_target(&DUBBO, data);
}

/// How a decode run ended.
#[derive(Debug, PartialEq)]
enum XEnd {
    /// Waiting for more bytes, this many buffered.
    Waiting(usize),
    /// An error of this kind, the bad frame at this offset.
    Error(Discriminant<DecodeError>, usize),
}

struct XRun {
    frames: Vec<XFrame>,
    end: XEnd,
}

fn x_target(s: &Spec, data: &[u8]) {
    let k = knobs(data);
    let big = x_run(s, data, &whole(data), BIG_FRAME);
    for f in &big.frames {
        check_frame(s, f);
    }
    same_x_runs(
        &big,
        &x_run(s, data, &cut(data, k.split), BIG_FRAME),
        "cut in two",
    );
    let small = x_run(s, data, &whole(data), k.small);
    same_x_runs(
        &small,
        &x_run(s, data, &pieces(data, k.step), k.small),
        "in pieces, small limit",
    );
    // With a smaller limit the same frames come out, up to the first one over it.
    assert!(small.frames.len() <= big.frames.len());
    for (a, b) in small.frames.iter().zip(&big.frames) {
        same_frame(a, b, "small limit");
    }
    let too_large = std::mem::discriminant(&DecodeError::FrameTooLarge { len: 0, limit: 0 });
    if !matches!(small.end, XEnd::Error(d, _) if d == too_large) {
        assert_eq!(
            small.frames.len(),
            big.frames.len(),
            "limit hit without error"
        );
        assert_eq!(
            small.end, big.end,
            "a limit not reached changed the outcome"
        );
    }
    // The proxy asks for a codec-error reply on whatever failed to decode.
    if let Some(reply) = s.proto.codec_error_reply(data) {
        check_codec_reply(s, data, &reply);
    }
    let id = data
        .get(..8)
        .map_or(7, |b| u64::from_be_bytes(b.try_into().unwrap_or_default()));
    let hb = decode_one(s.proto, &s.proto.heartbeat(id));
    assert_eq!((hb.kind, hb.request_id), (Kind::Heartbeat, id & s.id_mask));
    check_frame(s, &hb);
}

/// Feeds `data` to the codec, read by read (`reads`: where each read ends), decoding after
/// each read until it needs more bytes or fails, as the proxy's RPC loop does.
fn x_run(s: &Spec, data: &[u8], reads: &[usize], max_frame: usize) -> XRun {
    let mut src = BytesMut::new();
    let (mut fed, mut consumed) = (0, 0);
    let mut frames = Vec::new();
    for &end in reads {
        src.extend_from_slice(&data[fed..end]);
        fed = end;
        loop {
            let result = s.proto.decode(&mut src, max_frame);
            if let Ok(Some(f)) = &result {
                let len = f.raw.len();
                assert!(
                    len > 0 && len <= max_frame,
                    "{len}-byte frame, limit {max_frame}"
                );
                assert_eq!(
                    f.raw,
                    data[consumed..consumed + len],
                    "raw is not the input"
                );
                consumed += len;
            }
            assert_eq!(
                src,
                data[consumed..fed],
                "the buffer is not the input less the frames decoded"
            );
            match result {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    if let DecodeError::FrameTooLarge { len, limit } = e {
                        assert!(len > limit as u64 && limit == max_frame, "{e}");
                    }
                    if let Some(reply) = s.proto.codec_error_reply(&src) {
                        check_codec_reply(s, &src, &reply);
                    }
                    let end = XEnd::Error(std::mem::discriminant(&e), consumed);
                    return XRun { frames, end };
                }
            }
        }
    }
    XRun {
        frames,
        end: XEnd::Waiting(src.len()),
    }
}

fn same_x_runs(a: &XRun, b: &XRun, how: &str) {
    assert_eq!(a.frames.len(), b.frames.len(), "{how}: frame count differs");
    for (x, y) in a.frames.iter().zip(&b.frames) {
        same_frame(x, y, how);
    }
    assert_eq!(a.end, b.end, "{how}: the run ended differently");
}

/// A frame's fields as bytes, for comparisons.
fn fields(f: &XFrame) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        (f.kind, f.request_id, f.status, f.timeout),
        header_list(f),
        f.service(),
        f.method(),
    )
}

fn header_list(f: &XFrame) -> Vec<(&[u8], &[u8])> {
    f.headers
        .iter()
        .map(|(k, v)| (f.text(k), f.text(v)))
        .collect()
}

fn same_frame(a: &XFrame, b: &XFrame, how: &str) {
    assert_eq!(a.raw, b.raw, "{how}: raw bytes differ");
    assert_eq!(fields(a), fields(b), "{how}: decoded fields differ");
}

fn encoded(p: &dyn XProtocol, f: &XFrame) -> BytesMut {
    let mut out = BytesMut::new();
    p.encode(f, &mut out);
    out
}

/// Decodes bytes a codec built, which must be exactly one whole frame.
fn decode_one(p: &dyn XProtocol, bytes: &[u8]) -> XFrame {
    let mut b = BytesMut::from(bytes);
    match p.decode(&mut b, usize::MAX) {
        Ok(Some(f)) if b.is_empty() => f,
        other => panic!(
            "{} bytes built by the codec are not one frame: {other:?}, {} left: {bytes:02x?}",
            bytes.len(),
            b.len()
        ),
    }
}

/// Everything the proxy does with a decoded frame.
fn check_frame(s: &Spec, f: &XFrame) {
    let p = s.proto;
    let texts = f.headers.iter().flat_map(|(k, v)| [k, v]);
    for t in texts.chain(&f.service).chain(&f.method) {
        if let Text::Span { start, end } = *t {
            assert!(
                start <= end && end as usize <= f.raw.len(),
                "span {start}..{end}"
            );
        }
    }
    assert_eq!(
        p.matches(&f.raw),
        Match::Yes,
        "a frame not detected as its protocol"
    );
    assert_eq!(crate::protocol::detect(&f.raw), Ok(Protocol::X(p)));
    assert_eq!(
        encoded(p, f),
        f.raw,
        "an unchanged frame encodes to other bytes"
    );
    let _ = p.status_class(f.status);

    // The id is rewritten on the way upstream and back, in place.
    let mut g = f.clone();
    let id = !f.request_id & s.id_mask;
    p.set_request_id(&mut g, id);
    assert_eq!((g.request_id, g.raw.len()), (id, f.raw.len()));
    let again = decode_one(p, &encoded(p, &g));
    assert_eq!(
        fields(&again),
        fields(&g),
        "the patched frame decodes otherwise"
    );
    p.set_request_id(&mut g, f.request_id);
    assert_eq!(
        g.raw, f.raw,
        "patching the id back did not restore the frame"
    );

    // Error replies, from the frame or from the head copy the proxy keeps.
    let message = String::from_utf8_lossy(&f.raw[..f.raw.len().min(1100)]);
    let head = f.head_copy();
    for why in HIJACKS {
        let reply = p.hijack(f, why, &message);
        assert_eq!(
            reply,
            p.hijack(&head, why, &message),
            "head copy answers otherwise"
        );
        match ((s.hijack_reply)(f.kind), reply) {
            (None, None) => {}
            (Some(kind), Some(r)) => {
                let r = decode_one(p, &r);
                assert_eq!((r.kind, r.request_id), (kind, f.request_id));
                assert_eq!(r.status, s.proto.hijack_status(why), "{why:?}");
                assert!(!p.status_class(r.status).is_success(), "{why:?}");
            }
            (want, got) => panic!("hijack of a {:?}: want {want:?}, got {got:?}", f.kind),
        }
    }
    if f.kind == Kind::Heartbeat {
        let r = decode_one(p, &p.heartbeat_reply(f));
        assert_eq!((r.kind, r.request_id), (Kind::HeartbeatReply, f.request_id));
        assert!(p.status_class(r.status).is_success());
    }
    (s.extra)(f);
}

/// A codec-error reply to the bytes `src` that failed to decode.
fn check_codec_reply(s: &Spec, src: &[u8], reply: &[u8]) {
    let r = decode_one(s.proto, reply);
    assert!(
        matches!(r.kind, Kind::Response | Kind::HeartbeatReply),
        "{r:?}"
    );
    assert_eq!(r.status, s.codec_status);
    assert!(!s.proto.status_class(r.status).is_success());
    assert_eq!(Some(r.request_id), (s.wire_id)(src), "reply to another id");
}

/// Bolt: the layout adds up, and a changed header block is rebuilt around class and content.
fn bolt_frame(f: &XFrame) {
    use bolt::frame::Layout;
    let layout = |raw: &[u8]| match Layout::parse(raw) {
        Ok(Some(l)) => l,
        other => panic!("a decoded frame's layout: {other:?}"),
    };
    let l = layout(&f.raw);
    assert_eq!(l.total(), f.raw.len() as u64);
    assert_eq!((l.kind, u64::from(l.request_id)), (f.kind, f.request_id));
    let header = |name: &str| f.header(name);
    assert_eq!(
        f.service(),
        header("service").or(header("sofa_head_target_service"))
    );
    assert_eq!(f.method(), header("sofa_head_method_name"));

    let mut g = f.clone();
    g.set_header("x-fuzz", Bytes::from_static(b"v\0\xff"));
    if let Some(name) = f
        .headers
        .first()
        .and_then(|(k, _)| str::from_utf8(f.text(k)).ok())
    {
        g.remove_header(name);
    }
    let block: usize = g
        .headers
        .iter()
        .map(|(k, v)| 8 + g.text(k).len() + g.text(v).len())
        .sum();
    let h = decode_one(&bolt::BOLT, &encoded(&bolt::BOLT, &g));
    if block > usize::from(u16::MAX) {
        assert_eq!(
            h.raw, f.raw,
            "an oversized header block must leave the frame as it was"
        );
        return;
    }
    // (`service` and `method` are read from the headers again: compare the headers.)
    assert_eq!(
        header_list(&h),
        header_list(&g),
        "a rebuilt frame has other headers"
    );
    let basics = |f: &XFrame| (f.kind, f.request_id, f.status, f.timeout);
    assert_eq!(basics(&h), basics(f));
    let m = layout(&h.raw);
    let parts = |raw: &[u8], l: &Layout| {
        let class = raw[l.class_start()..l.header_start()].to_vec();
        (class, raw[l.content_start()..l.content_end()].to_vec())
    };
    assert_eq!(
        parts(&h.raw, &m),
        parts(&f.raw, &l),
        "rebuilding changed class or content"
    );
}

/// Dubbo: header fields come from the body, `encode` writes raw bytes whatever the headers
/// say, and an error reply's message is a well-formed hessian2 string.
fn dubbo_frame(f: &XFrame) {
    use dubbo::frame::{HEADER_LEN, Header};
    let h = match Header::parse(&f.raw) {
        Ok(Some(h)) => h,
        other => panic!("a decoded frame's header: {other:?}"),
    };
    assert_eq!(h.total(), f.raw.len() as u64);
    assert_eq!((h.kind(), h.request_id), (f.kind, f.request_id));
    assert!(f.headers.len() <= 4);
    assert_eq!(f.service(), f.header("service"));
    assert_eq!(f.method(), f.header("method"));

    let mut g = f.clone();
    g.set_header("x-fuzz", Bytes::from_static(b"v"));
    assert_eq!(
        encoded(&dubbo::DUBBO, &g),
        f.raw,
        "Dubbo writes frames unchanged"
    );

    if f.kind != Kind::Request {
        return;
    }
    let mut message = String::from_utf8_lossy(&f.raw).into_owned();
    if f.raw.len() > 1024 {
        // Past 32768 UTF-16 units hessian2 writes the string in chunks.
        message = message.repeat(40);
    }
    let Some(reply) = dubbo::DUBBO.hijack(f, Hijack::NoRoute, &message) else {
        panic!("no reply to a two-way request");
    };
    let body = &reply[HEADER_LEN..];
    let text = match dubbo::hessian::read_string(body, 0, HEADER_LEN) {
        Ok((Some(t), end)) if end == body.len() => t,
        other => panic!("an error reply's body is not one string: {other:?}"),
    };
    let bytes = match &text {
        Text::Span { start, end } => &reply[*start as usize..*end as usize],
        Text::Owned(b) => &b[..],
        Text::Static(s) => s.as_bytes(),
    };
    if message.chars().all(|c| c.len_utf16() == 1) {
        assert!(bytes == message.as_bytes(), "the reply's message differs");
    }
}

// ---------------------------------------------------------------------------------------
// HTTP/1
// ---------------------------------------------------------------------------------------

/// A decoded head, comparable.
#[derive(Debug, Clone, PartialEq)]
struct Head {
    method: Option<Method>,
    uri: Option<Uri>,
    status: Option<StatusCode>,
    version: Version,
    headers: HeaderMap,
    body: BodyKind,
    keep_alive: bool,
    upgrade: bool,
}

/// One message: its head, body bytes, and trailers once it is complete.
#[derive(Debug, PartialEq)]
struct Msg {
    head: Head,
    body: Vec<u8>,
    trailers: Option<Bytes>,
}

#[derive(Debug, PartialEq)]
enum HEnd {
    /// Waiting for more bytes; these are buffered.
    Waiting(Vec<u8>),
    Error(Discriminant<DecodeError>),
}

#[derive(Debug, PartialEq)]
struct HRun {
    msgs: Vec<Msg>,
    end: HEnd,
}

/// One direction of HTTP/1 as the proxy drives it.
trait Side {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame<Head>>, DecodeError>;
    /// A message ended (the response decoder is told what the next one answers).
    fn next_message(&mut self) {}
    /// The peer closed the connection.
    fn eof(&mut self) -> Result<Option<Frame<Head>>, DecodeError> {
        Ok(None)
    }
}

fn map_head<H>(f: Frame<H>, head: impl FnOnce(H) -> Head) -> Frame<Head> {
    match f {
        Frame::Head(h) => Frame::Head(head(h)),
        Frame::Data(d) => Frame::Data(d),
        Frame::End { trailers } => Frame::End { trailers },
    }
}

struct Requests(RequestDecoder);

impl Side for Requests {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame<Head>>, DecodeError> {
        let f = self.0.decode(src)?;
        Ok(f.map(|f| {
            map_head(f, |h: http1::RequestHead| Head {
                method: Some(h.parts.method),
                uri: Some(h.parts.uri),
                status: None,
                version: h.parts.version,
                headers: h.parts.headers,
                body: h.body,
                keep_alive: h.keep_alive,
                upgrade: h.upgrade,
            })
        }))
    }
}

struct Responses(ResponseDecoder, Method);

impl Side for Responses {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame<Head>>, DecodeError> {
        let f = self.0.decode(src)?;
        Ok(f.map(|f| {
            map_head(f, |h: http1::ResponseHead| Head {
                method: None,
                uri: None,
                status: Some(h.parts.status),
                version: h.parts.version,
                headers: h.parts.headers,
                body: h.body,
                keep_alive: h.keep_alive,
                upgrade: false,
            })
        }))
    }

    fn next_message(&mut self) {
        self.0.expect(&self.1);
    }

    fn eof(&mut self) -> Result<Option<Frame<Head>>, DecodeError> {
        Ok(self
            .0
            .eof()?
            .map(|f| map_head(f, |_| unreachable!("eof yields no head"))))
    }
}

fn requests(limit: usize) -> Requests {
    Requests(RequestDecoder::new(limit))
}

fn responses(limit: usize, method: &Method) -> Responses {
    let mut r = Responses(ResponseDecoder::new(limit), method.clone());
    r.next_message();
    r
}

/// HTTP/1 requests (the downstream side) over `data`.
pub fn http1_request(data: &[u8]) {
    http1_target(data, &|limit| requests(limit));
}

/// HTTP/1 responses (the upstream side) over `data`: each response answers a GET, or a
/// HEAD when the input says so.
pub fn http1_response(data: &[u8]) {
    let method = if knobs(data).head {
        Method::HEAD
    } else {
        Method::GET
    };
    http1_target(data, &|limit| responses(limit, &method));
}

fn http1_target<S: Side>(data: &[u8], side: &dyn Fn(usize) -> S) {
    let k = knobs(data);
    let big = h1_run(&mut side(BIG_HEAD), data, &whole(data), BIG_HEAD);
    for m in big.msgs.iter().filter(|m| m.trailers.is_some()) {
        reencode(m, side);
    }
    let split = h1_run(&mut side(BIG_HEAD), data, &cut(data, k.split), BIG_HEAD);
    assert_eq!(big, split, "cut in two: decoded otherwise");
    // A small limit either is not reached (same result) or ends the run in an error. How
    // the bytes arrive may decide whether a limit is reached (trailers, chunk lines).
    for reads in [whole(data), pieces(data, k.step)] {
        let small = h1_run(&mut side(k.small), data, &reads, k.small);
        if !matches!(small.end, HEnd::Error(_)) {
            assert_eq!(small, big, "a limit not reached changed the outcome");
        }
    }
}

/// Feeds `data` read by read (`reads`: where each read ends) to a decoder with head limit
/// `limit`, decoding after each read until it needs more bytes or fails.
fn h1_run(side: &mut impl Side, data: &[u8], reads: &[usize], limit: usize) -> HRun {
    let mut src = BytesMut::new();
    let mut fed = 0;
    let mut msgs: Vec<Msg> = Vec::new();
    for &end in reads {
        src.extend_from_slice(&data[fed..end]);
        fed = end;
        // A frame that consumes nothing may only follow one that did (no busy loop).
        let mut idle = false;
        loop {
            let before = src.len();
            let frame = match side.decode(&mut src) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    let end = HEnd::Error(std::mem::discriminant(&e));
                    return HRun { msgs, end };
                }
            };
            let used = before - src.len();
            assert!(used > 0 || !idle, "two frames in a row consumed nothing");
            idle = used == 0;
            h1_frame(side, &mut msgs, frame, used, limit);
        }
    }
    match side.eof() {
        Ok(Some(f)) => h1_frame(side, &mut msgs, f, 0, limit),
        Ok(None) => {}
        Err(e) => {
            let end = HEnd::Error(std::mem::discriminant(&e));
            return HRun { msgs, end };
        }
    }
    HRun {
        msgs,
        end: HEnd::Waiting(src.to_vec()),
    }
}

fn h1_frame(side: &mut impl Side, msgs: &mut Vec<Msg>, f: Frame<Head>, used: usize, limit: usize) {
    let open = msgs.last_mut().filter(|m| m.trailers.is_none());
    match (f, open) {
        (Frame::Head(h), None) => {
            assert!(
                used <= limit,
                "a {used}-byte head passed the limit of {limit}"
            );
            check_head(&h);
            let interim = h.status.is_some_and(|s| s.is_informational());
            msgs.push(Msg {
                head: h,
                body: Vec::new(),
                // An interim response has no body and no end.
                trailers: interim.then(Bytes::new),
            });
        }
        (Frame::Data(d), Some(m)) => {
            assert!(
                !d.is_empty() && d.len() <= used,
                "{} data bytes from {used}",
                d.len()
            );
            assert!(
                m.head.body != BodyKind::Empty,
                "data in a body-less message"
            );
            m.body.extend_from_slice(&d);
            if let BodyKind::Length(n) = m.head.body {
                assert!(m.body.len() as u64 <= n, "more body than Content-Length");
            }
        }
        (Frame::End { trailers }, Some(m)) => {
            match m.head.body {
                BodyKind::Empty => assert!(m.body.is_empty()),
                BodyKind::Length(n) => assert_eq!(m.body.len() as u64, n),
                _ => {}
            }
            if m.head.body != BodyKind::Chunked {
                assert!(trailers.is_empty(), "trailers without chunked coding");
            }
            m.trailers = Some(trailers);
            side.next_message();
        }
        (f, open) => panic!("{f:?} with a message open: {}", open.is_some()),
    }
}

/// What a decoded head must satisfy (the anti-smuggling rules among them).
fn check_head(h: &Head) {
    let te = h.headers.contains_key(TRANSFER_ENCODING);
    let cl = h.headers.contains_key(CONTENT_LENGTH);
    if let Some(method) = &h.method {
        assert!(method != Method::CONNECT);
        assert!(
            !(te && cl),
            "a request with both Transfer-Encoding and Content-Length"
        );
        if h.version == Version::HTTP_11 {
            assert_eq!(h.headers.get_all(HOST).iter().count(), 1, "Host");
        }
        assert!(h.body != BodyKind::CloseDelimited);
    }
    match h.body {
        BodyKind::Chunked => assert!(te),
        BodyKind::Length(n) => assert!(cl && n > 0),
        BodyKind::Empty | BodyKind::CloseDelimited => {}
    }
    if let Some(s) = h.status {
        let no_body = s.is_informational() || s == StatusCode::NO_CONTENT;
        assert!(!no_body || h.body == BodyKind::Empty, "{s} with a body");
        assert!(!(h.keep_alive && h.body == BodyKind::CloseDelimited));
    }
}

/// The proxy's forwarding of a complete message: the head re-encoded from its map with
/// framing from its body kind, the body re-framed. It decodes back to the same message.
fn reencode<S: Side>(m: &Msg, side: &dyn Fn(usize) -> S) {
    let h = &m.head;
    let mut out = BytesMut::new();
    let mut headers = h.headers.clone();
    let mut target = None;
    let mut kind = h.body;
    if let (Some(method), Some(uri)) = (&h.method, &h.uri) {
        // As the proxy writes it upstream: origin form, HTTP/1.1, Host from the target.
        // (The path is "/" when the target has none: `path_and_query()` alone, which the
        // proxy's `encode_request_head` uses, gives "?q" for `http://host?q`.)
        let path = Some(uri.path()).filter(|p| !p.is_empty()).unwrap_or("/");
        let t = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        if !headers.contains_key(HOST)
            && let Some(a) = uri.authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            headers.insert(HOST, v);
        }
        if headers.get_all(HOST).iter().count() != 1 {
            // An HTTP/1.0 request without one Host cannot go upstream as HTTP/1.1.
            return;
        }
        encode::request_head(method, &t, &headers, h.body, &mut out);
        target = Some(t);
    } else if let Some(status) = h.status {
        // As the proxy writes it to an HTTP/1.1 client: a body-less head keeps its
        // Content-Length, a body until close becomes chunked.
        let keep_length = h.body == BodyKind::Empty;
        if h.body == BodyKind::CloseDelimited {
            kind = BodyKind::Chunked;
        }
        encode::response_head(
            Version::HTTP_11,
            status,
            &headers,
            kind,
            keep_length,
            &mut out,
        );
    }
    let chunked = kind == BodyKind::Chunked;
    encode::data(chunked, &m.body, &mut out);
    encode::end(chunked, m.trailers.as_deref().unwrap_or_default(), &mut out);

    let run = h1_run(&mut side(BIG_HEAD), &out, &whole(&out), BIG_HEAD);
    let again = match (&run.msgs[..], &run.end) {
        ([again], HEnd::Waiting(rest)) if rest.is_empty() => again,
        _ => panic!("a re-encoded message decodes otherwise: {run:?}\n{out:?}"),
    };
    let strip = |map: &HeaderMap| {
        let mut map = map.clone();
        map.remove(CONTENT_LENGTH);
        map.remove(TRANSFER_ENCODING);
        map
    };
    let g = &again.head;
    assert_eq!(strip(&g.headers), strip(&headers), "re-encoded headers");
    assert_eq!((&g.method, g.status, g.body), (&h.method, h.status, kind));
    if let Some(t) = target {
        let again = g.uri.as_ref().and_then(|u| u.path_and_query());
        assert_eq!(again.map(|p| p.as_str()), Some(&t[..]), "re-encoded target");
    }
    if (h.version, h.body) == (g.version, g.body) {
        assert_eq!((g.keep_alive, g.upgrade), (h.keep_alive, h.upgrade));
    }
    assert_eq!((&again.body, &again.trailers), (&m.body, &m.trailers));
}

// ---------------------------------------------------------------------------------------
// Detection
// ---------------------------------------------------------------------------------------

/// Detection of a connection's protocol (`"Auto"` listeners), then the detected codec.
pub fn detect(data: &[u8]) {
    type Matcher = fn(&[u8]) -> Match;
    let matchers: [(&str, Matcher); 3] = [
        ("bolt", |p| bolt::BOLT.matches(p)),
        ("dubbo", |p| dubbo::DUBBO.matches(p)),
        ("http1", http1::matcher::matches),
    ];
    // Once an answer is given, more bytes never change it.
    let mut decided = None;
    let mut settled: [Option<Match>; 3] = [None; 3];
    let lens = (0..=data.len().min(DETECT_PREFIXES)).chain([data.len()]);
    for len in lens {
        let prefix = &data[..len];
        let got = crate::protocol::detect(prefix);
        match decided {
            Some(d) => assert_eq!(got, d, "detection changed its mind at {len} bytes"),
            None if got != Err(true) => decided = Some(got),
            None => {}
        }
        let mut yes = 0;
        for ((name, m), settled) in matchers.iter().zip(&mut settled) {
            let now = m(prefix);
            if let Some(before) = *settled {
                assert_eq!(now, before, "{name} changed its mind at {len} bytes");
            } else if now != Match::Again {
                *settled = Some(now);
            }
            yes += usize::from(now == Match::Yes);
        }
        assert!(yes <= 1, "{yes} protocols claim the same bytes");
    }
    // A frame that decodes is detected as its protocol.
    for s in [&BOLT, &DUBBO] {
        let mut src = BytesMut::from(data);
        if let Ok(Some(_)) = s.proto.decode(&mut src, BIG_FRAME) {
            assert_eq!(decided, Some(Ok(Protocol::X(s.proto))));
        }
    }
    // The connection is then served by the detected codec.
    match decided {
        Some(Ok(Protocol::X(p))) if p.name() == "bolt" => x_served(&BOLT, data),
        Some(Ok(Protocol::X(p))) if p.name() == "dubbo" => x_served(&DUBBO, data),
        Some(Ok(Protocol::Http1)) => {
            let run = h1_run(&mut requests(BIG_HEAD), data, &whole(data), BIG_HEAD);
            for m in run.msgs.iter().filter(|m| m.trailers.is_some()) {
                reencode(m, &requests);
            }
        }
        Some(Ok(Protocol::Http2)) => assert!(
            data.starts_with(crate::protocol::http2::PREFACE),
            "HTTP/2 detected without its preface"
        ),
        Some(Ok(other)) => panic!("detected {other:?}"),
        Some(Err(_)) | None => {}
    }
}

fn x_served(s: &Spec, data: &[u8]) {
    for f in x_run(s, data, &whole(data), BIG_FRAME).frames {
        check_frame(s, &f);
    }
}
