#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets: fuzz/corpus/<target>/<name>.

Frames are laid out field by field from the wire formats (never with the codecs under test):
Bolt v1/v2 requests, responses, heartbeats and oneways (with and without CRC, with headers,
several sizes), Dubbo requests with the hessian2 leading strings in each string form,
responses and heartbeats, HTTP/1.1 requests and responses (content-length, chunked,
trailers, pipelined), TLS ClientHellos (SNI, ALPN, TLS 1.3 extensions, split across
records), plus truncated, malformed and boundary cases.

Each target directory is emptied and rewritten, so the committed corpus is exactly what this
script writes. Run from anywhere: python3 fuzz/make_corpus.py
"""

import os
import shutil
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def u8(v):
    return struct.pack(">B", v)


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def i32(v):
    return struct.pack(">i", v)


def u64(v):
    return struct.pack(">Q", v)


# --- Bolt ---------------------------------------------------------------------------------

SOFA_REQUEST = b"com.alipay.sofa.rpc.core.request.SofaRequest"
SOFA_RESPONSE = b"com.alipay.sofa.rpc.core.response.SofaResponse"


def header_block(headers):
    out = b""
    for k, v in headers:
        out += u32(len(k)) + k + u32(len(v)) + v
    return out


def bolt(
    cmd_type=1,
    cmd_code=1,
    v2=None,
    ver2=1,
    rid=1,
    codec=1,
    timeout=3000,
    status=0,
    cls=b"",
    headers=(),
    content=b"",
    block=None,
    lens=None,
):
    """A Bolt frame. v2: (ver1, switch) for a v2 frame; switch & 1 appends the CRC32.
    block: raw header block bytes (instead of `headers`); lens: (classLen, headerLen,
    contentLen) written instead of the real lengths."""
    if block is None:
        block = header_block(headers)
    class_len, header_len, content_len = lens or (len(cls), len(block), len(content))
    b = u8(2 if v2 else 1)
    if v2:
        b += u8(v2[0])
    b += u8(cmd_type) + u16(cmd_code) + u8(ver2) + u32(rid) + u8(codec)
    if v2:
        b += u8(v2[1])
    b += i32(timeout) if cmd_type != 0 else u16(status)
    b += u16(class_len) + u16(header_len) + u32(content_len)
    b += cls + block + content
    if v2 and v2[1] & 1:
        b += u32(zlib.crc32(b) & 0xFFFFFFFF)
    return b


def bolt_request(rid=1, service=b"com.example.EchoService:1.0", method=b"echo", size=16, **kw):
    headers = [
        (b"service", service),
        (b"sofa_head_method_name", method),
        (b"rpc_trace_context.sofaTraceId", b"0a1b2c3d4e5f"),
    ]
    content = bytes((i * 7 + 3) & 0xFF for i in range(size))
    return bolt(rid=rid, cls=SOFA_REQUEST, headers=headers, content=content, **kw)


def bolt_response(rid=1, status=0, size=16, **kw):
    content = bytes((i * 5 + 1) & 0xFF for i in range(size))
    return bolt(cmd_type=0, cmd_code=2, rid=rid, status=status, cls=SOFA_RESPONSE, content=content, **kw)


def bolt_heartbeat(rid=9, **kw):
    return bolt(cmd_type=1, cmd_code=0, rid=rid, timeout=-1, **kw)


def bolt_heartbeat_reply(rid=9, **kw):
    return bolt(cmd_type=0, cmd_code=0, rid=rid, **kw)


def bolt_seeds():
    req = bolt_request()
    v2crc = bolt_request(rid=0x01020304, v2=(1, 1))
    s = {
        "v1-request": req,
        "v1-request-empty": bolt(rid=2),
        "v1-request-target-service": bolt(
            rid=3,
            cls=SOFA_REQUEST,
            headers=[(b"sofa_head_target_service", b"com.example.Svc:1.0"), (b"sofa_head_method_name", b"m")],
            content=b"x",
        ),
        "v1-request-no-timeout": bolt_request(rid=4, timeout=0),
        "v1-request-negative-timeout": bolt_request(rid=5, timeout=-5),
        "v1-request-large": bolt_request(rid=6, size=2000),
        "v1-request-empty-header-fields": bolt(rid=7, headers=[(b"", b""), (b"k", b"")], content=b"c"),
        "v1-request-many-headers": bolt(
            rid=8, cls=SOFA_REQUEST, headers=[(b"h%d" % i, b"v" * i) for i in range(40)], content=b"body"
        ),
        "v1-request-max-id": bolt_request(rid=0xFFFFFFFF),
        "v1-oneway": bolt_request(rid=10, cmd_type=2),
        "v1-response": bolt_response(),
        "v1-response-error": bolt_response(rid=11, status=0x10, size=0),
        "v1-response-headers": bolt(cmd_type=0, cmd_code=2, rid=12, headers=[(b"k", b"v")], content=b"ok"),
        "v1-heartbeat": bolt_heartbeat(),
        "v1-heartbeat-reply": bolt_heartbeat_reply(),
        "v2-request": bolt_request(rid=13, v2=(1, 0)),
        "v2-request-crc": v2crc,
        "v2-response-crc": bolt_response(rid=14, v2=(1, 1)),
        "v2-response": bolt_response(rid=15, v2=(1, 0)),
        "v2-heartbeat-crc": bolt_heartbeat(rid=16, v2=(1, 1)),
        "v2-heartbeat-reply-crc": bolt_heartbeat_reply(rid=16, v2=(1, 1)),
        "v2-oneway-crc": bolt_request(rid=17, cmd_type=2, v2=(2, 1)),
        "pipelined-requests": bolt_request(rid=20) + bolt_request(rid=21, size=3) + bolt_request(rid=22, size=0),
        "pipelined-v1-v2-heartbeat": bolt_request(rid=23) + v2crc + bolt_heartbeat(rid=24),
        "pipelined-then-partial": bolt_request(rid=25) + bolt_request(rid=26)[:30],
        # Truncated: every decoder must wait for the rest.
        "truncated-proto-only": req[:1],
        "truncated-type": req[:2],
        "truncated-fixed-header": req[:21],
        "truncated-class": req[:30],
        "truncated-content": req[:-1],
        "truncated-v2-crc": v2crc[:-2],
        # Malformed and boundary cases: errors, never panics.
        "bad-proto": b"\x03" + req[1:],
        "bad-type": req[:1] + b"\x03" + req[2:],
        "bad-cmdcode": req[:2] + u16(7) + req[4:],
        "bad-pair-response-type-request-code": bolt(cmd_type=0, cmd_code=1, rid=30),
        "bad-crc": v2crc[:-1] + bytes([v2crc[-1] ^ 0xFF]),
        "huge-content-len": bolt(rid=31, lens=(0, 0, 0xFFFFFFFF)),
        "huge-class-len": bolt(rid=32, lens=(0xFFFF, 0, 0)) + b"\x00" * 8,
        "header-value-past-block": bolt(rid=33, block=u32(1) + b"k" + u32(9) + b"v"),
        "header-key-len-past-block": bolt(rid=34, block=u32(0xFFFFFFFF) + b"kk"),
        "header-block-trailing-bytes": bolt(rid=35, block=header_block([(b"k", b"v")]) + b"\x00\x00\x01"),
        "header-len-over-frame": bolt(rid=36, headers=[(b"k", b"v")], lens=(0, 200, 0)),
    }
    return s


# --- Dubbo --------------------------------------------------------------------------------

FLAG_REQ, FLAG_TWO_WAY, FLAG_EVENT, HESSIAN2 = 0x80, 0x40, 0x20, 2


def units(s):
    return sum(2 if ord(c) > 0xFFFF else 1 for c in s)


def cesu8(s):
    """Java's encoding: UTF-8, a character outside the BMP as two 3-byte surrogates."""
    out = b""
    for c in s:
        cp = ord(c)
        if cp <= 0xFFFF:
            out += c.encode("utf-8")
        else:
            cp -= 0x10000
            for u in (0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)):
                out += bytes([0xE0 | (u >> 12), 0x80 | ((u >> 6) & 0x3F), 0x80 | (u & 0x3F)])
    return out


def h2s(s, form=None, utf8=False):
    """A hessian2 string: form 'compact' (0x00-0x1f), 'medium' (0x30-0x33), 'S', 'R'
    (a non-final chunk, then a final one); None picks the shortest."""
    data = s.encode("utf-8") if utf8 else cesu8(s)
    n = units(s)
    if form is None:
        form = "compact" if n < 32 else "medium" if n < 1024 else "S"
    if form == "compact":
        return bytes([n]) + data
    if form == "medium":
        return bytes([0x30 + (n >> 8), n & 0xFF]) + data
    if form == "S":
        return b"S" + u16(n) + data
    if form == "R":
        half = len(s) // 2
        a, b = s[:half], s[half:]
        return b"R" + u16(units(a)) + cesu8(a) + b"S" + u16(units(b)) + cesu8(b)
    raise ValueError(form)


NULL = b"N"


def dubbo(flag, rid, body=b"", status=0, length=None):
    return b"\xda\xbb" + u8(flag) + u8(status) + u64(rid) + u32(len(body) if length is None else length) + body


def dubbo_body(dubbo_version, service, version, method, form=None, args=True):
    def s(v):
        return NULL if v is None else h2s(v, form)

    b = s(dubbo_version) + s(service) + s(version) + s(method)
    if args:
        b += h2s("Ljava/lang/String;") + h2s("world")
        b += b"H" + h2s("path") + h2s(service or "") + h2s("timeout") + h2s("3000") + b"Z"
    return b


def dubbo_request(rid=1, service="org.apache.dubbo.demo.DemoService", method="sayHello", form=None, flag=None, **kw):
    body = dubbo_body("2.0.2", service, "1.0.0", method, form=form, **kw)
    return dubbo(FLAG_REQ | FLAG_TWO_WAY | HESSIAN2 if flag is None else flag, rid, body)


def dubbo_seeds():
    req = dubbo_request()
    long_service = "org.apache.dubbo.demo.very.long.package.name.DemoService" * 3
    hb = dubbo(FLAG_REQ | FLAG_TWO_WAY | FLAG_EVENT | HESSIAN2, 7, NULL)
    s = {
        "request-compact": req,
        "request-medium": dubbo_request(rid=2, form="medium"),
        "request-S": dubbo_request(rid=3, form="S"),
        "request-R-chunks": dubbo_request(rid=4, form="R"),
        "request-long-service": dubbo_request(rid=5, service=long_service),
        "request-null-version": dubbo(FLAG_REQ | FLAG_TWO_WAY | HESSIAN2, 6, dubbo_body("2.0.2", "a.B", None, "m")),
        "request-only-leading-strings": dubbo(
            FLAG_REQ | FLAG_TWO_WAY | HESSIAN2, 8, dubbo_body("2.0.2", "a.B", "1", "m", args=False)
        ),
        "request-non-bmp-cesu8": dubbo_request(rid=9, method="say\U0001F600"),
        "request-non-bmp-utf8": dubbo(
            FLAG_REQ | FLAG_TWO_WAY | HESSIAN2,
            10,
            h2s("2.0.2") + h2s("a.B") + h2s("1") + h2s("m\U0001F600", utf8=True),
        ),
        "request-two-byte-utf8": dubbo_request(rid=11, service="org.example.Dienst\u00e9\u00fc"),
        "request-max-id": dubbo_request(rid=0xFFFFFFFFFFFFFFFF),
        "oneway": dubbo_request(rid=12, flag=FLAG_REQ | HESSIAN2),
        "oneway-event": dubbo(FLAG_REQ | FLAG_EVENT | HESSIAN2, 13, NULL),
        "request-other-serialization": dubbo(FLAG_REQ | FLAG_TWO_WAY | 6, 14, b'{"not":"hessian"}'),
        "response-ok": dubbo(HESSIAN2, 1, b"\x91" + h2s("Hello world"), status=20),
        "response-error": dubbo(HESSIAN2, 2, h2s("java.lang.IllegalStateException: boom"), status=70),
        "response-empty": dubbo(HESSIAN2, 3, status=20),
        "heartbeat": hb,
        "heartbeat-reply": dubbo(FLAG_EVENT | HESSIAN2, 7, NULL, status=20),
        "pipelined": req + hb + dubbo_request(rid=15, form="S"),
        "pipelined-then-partial": req + req[:20],
        "truncated-magic": req[:1],
        "truncated-header": req[:10],
        "truncated-body": req[:-3],
        "bad-magic": b"\xda\xbc" + req[2:],
        "bad-magic-first-byte": b"\xdb" + req[1:],
        "huge-body-len": dubbo(FLAG_REQ | FLAG_TWO_WAY | HESSIAN2, 16, length=0xFFFFFFFF),
        "request-empty-body": dubbo(FLAG_REQ | FLAG_TWO_WAY | HESSIAN2, 17),
        "request-not-a-string": dubbo(FLAG_REQ | FLAG_TWO_WAY | HESSIAN2, 18, h2s("2.0.2") + b"\x91" + b"\x00\x00"),
        "request-string-past-body": dubbo(FLAG_REQ | FLAG_TWO_WAY | HESSIAN2, 19, h2s("2.0.2") + b"\x1fabc"),
        "request-bad-utf8": dubbo(
            FLAG_REQ | FLAG_TWO_WAY | HESSIAN2, 20, h2s("2.0.2") + b"\x02\xc3\x28" + NULL + h2s("m")
        ),
        "request-4-byte-char-over-chunk": dubbo(
            FLAG_REQ | FLAG_TWO_WAY | HESSIAN2, 21, h2s("2.0.2") + b"\x01\xf0\x9f\x98\x80" + NULL + h2s("m")
        ),
        "request-R-without-final": dubbo(FLAG_REQ | FLAG_TWO_WAY | HESSIAN2, 22, h2s("2.0.2") + b"R\x00\x02ab"),
        "request-medium-max": dubbo(
            FLAG_REQ | FLAG_TWO_WAY | HESSIAN2, 23, h2s("2.0.2") + h2s("s" * 1023, "medium") + NULL + h2s("m")
        ),
    }
    return s


# --- HTTP/1 -------------------------------------------------------------------------------

GET = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n"
POST = b"POST /api/items HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"id\": 12345}"
CHUNKED = (
    b"POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
)
TRAILERS = (
    b"POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
    b"a\r\n0123456789\r\n0\r\nX-Checksum: abc123\r\nX-Other: 1\r\n\r\n"
)


def http_request_seeds():
    return {
        "get": GET,
        "get-minimal": b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "post-content-length": POST,
        "post-empty-content-length": b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        "chunked": CHUNKED,
        "chunked-trailers": TRAILERS,
        "chunked-uppercase-hex": b"PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1A\r\n"
        + b"z" * 26
        + b"\r\n0\r\n\r\n",
        "pipelined": GET + POST + b"GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "pipelined-chunked-then-get": CHUNKED + GET,
        "http10-keep-alive": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "http10-no-host": b"GET /old HTTP/1.0\r\n\r\n",
        "absolute-form": b"GET http://example.com:8080/p?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
        "absolute-form-no-host-http10": b"GET http://example.com/p HTTP/1.0\r\n\r\n",
        "options-star": b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "head": b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n",
        "delete": b"DELETE /items/1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "websocket-upgrade": b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "expect-continue": b"POST /big HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nabcd",
        "duplicate-headers": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\nCookie: a=b\r\nCookie: c=d\r\n\r\n",
        "many-headers": b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(60)) + b"\r\n",
        "too-many-headers": b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) + b"\r\n",
        "custom-method": b"PURGE /cache HTTP/1.1\r\nHost: a\r\n\r\n",
        "header-whitespace": b"GET / HTTP/1.1\r\nHost:   a  \r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n",
        "obs-text-value": b"GET / HTTP/1.1\r\nHost: a\r\nX-Latin: caf\xe9\r\n\r\n",
        "leading-crlf": b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "same-content-lengths": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
        "truncated-request-line": GET[:10],
        "truncated-head": GET[:-2],
        "truncated-body": POST[:-4],
        "truncated-chunk-size": CHUNKED[:-8],
        "truncated-trailers": TRAILERS[:-3],
        "bad-te-and-cl": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        "bad-differing-content-lengths": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "bad-content-length": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
        "bad-content-length-overflow": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "bad-te-gzip": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        "bad-no-host": b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
        "bad-two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "bad-connect": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "bad-chunk-size": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "bad-chunk-size-overflow": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffff\r\n",
        "bad-chunk-no-crlf": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        "bad-obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX-Fold: a\r\n b\r\n\r\n",
        "bad-version": b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "bad-space-in-name": b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n\r\n",
    }


def http_response_seeds():
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nHello world!"
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n"
    )
    trailers = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Expires\r\n\r\n3\r\nabc\r\n0\r\nExpires: never\r\n\r\n"
    return {
        "ok-content-length": ok,
        "ok-empty": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "chunked": chunked,
        "chunked-trailers": trailers,
        "close-delimited": b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>until the end</html>",
        "http10": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        "http10-keep-alive": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
        "connection-close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye",
        "no-content": b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n",
        "not-modified-with-length": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
        "continue-then-ok": b"HTTP/1.1 100 Continue\r\n\r\n" + ok,
        "early-hints-then-ok": b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" + ok,
        "switching-protocols": b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
        "pipelined": ok + chunked + b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        "te-gzip-close-delimited": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x00",
        "te-and-cl": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "unknown-status": b"HTTP/1.1 599 Whatever\r\nContent-Length: 1\r\n\r\nx",
        "no-reason": b"HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\nx",
        "error-with-body": b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 11\r\n\r\nunavailable",
        "many-headers": b"HTTP/1.1 200 OK\r\n" + b"".join(b"Set-Cookie: c%d=%d\r\n" % (i, i) for i in range(50)) + b"Content-Length: 0\r\n\r\n",
        "truncated-status-line": ok[:8],
        "truncated-head": ok[:-14],
        "truncated-body": ok[:-5],
        "truncated-chunked": chunked[:-9],
        "truncated-trailers": trailers[:-2],
        "bad-status": b"HTTP/1.1 99 Too Low\r\nContent-Length: 0\r\n\r\n",
        "bad-status-1000": b"HTTP/1.1 1000 Too High\r\n\r\n",
        "bad-differing-content-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n",
        "bad-not-http": b"SSH-2.0-OpenSSH_9.6\r\n",
        # Last byte 0xb3 % 8 == 3: replayed as responses to HEAD.
        "head-response-with-length": b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-Pad: \xb3\r\n\r\n",
    }


# --- TLS ClientHello ----------------------------------------------------------------------


def vec8(b):
    return u8(len(b)) + b


def vec16(b):
    return u16(len(b)) + b


def ext(kind, data):
    return u16(kind) + vec16(data)


def sni_ext(*names):
    # (name_type, name) entries; host_name is type 0.
    return ext(0, vec16(b"".join(u8(t) + vec16(n) for t, n in names)))


def alpn_ext(*names):
    return ext(16, vec16(b"".join(vec8(n) for n in names)))


# supported_groups, ec_point_formats, signature_algorithms, supported_versions,
# psk_key_exchange_modes, key_share (x25519), as a TLS 1.3 client sends them.
TLS13_EXTS = (
    ext(10, vec16(u16(29) + u16(23) + u16(24)))
    + ext(11, vec8(b"\x00"))
    + ext(13, vec16(u16(0x0403) + u16(0x0804) + u16(0x0401)))
    + ext(43, vec8(u16(0x0304) + u16(0x0303)))
    + ext(45, vec8(b"\x01"))
    + ext(51, vec16(u16(29) + vec16(bytes(range(32)))))
)


def client_hello_body(exts=None, version=0x0303, session_id=bytes(32), suites=(0x1301, 0x1302, 0xC02F)):
    body = u16(version) + bytes(range(0x40, 0x60)) + vec8(session_id)
    body += vec16(b"".join(u16(c) for c in suites)) + vec8(b"\x00")
    if exts is not None:
        body += vec16(exts)
    return body


def handshake(body, kind=1):
    return u8(kind) + struct.pack(">I", len(body))[1:] + body


def records(message, size=16384, content=22, version=0x0301):
    return b"".join(u8(content) + u16(version) + vec16(message[i : i + size]) for i in range(0, len(message), size))


def client_hello_seeds():
    full = handshake(client_hello_body(sni_ext((0, b"a.example.com")) + alpn_ext(b"h2", b"http/1.1") + TLS13_EXTS))
    hello = records(full)
    return {
        "sni-alpn-tls13": hello,
        "sni-only": records(handshake(client_hello_body(sni_ext((0, b"Www.Example.COM"))))),
        "alpn-only": records(handshake(client_hello_body(alpn_ext(b"h2")))),
        "no-extensions-tls10": records(handshake(client_hello_body(None, version=0x0301, session_id=b""))),
        "empty-extensions": records(handshake(client_hello_body(b""))),
        "grease-and-padding": records(handshake(client_hello_body(ext(0x0A0A, b"") + sni_ext((0, b"g.example")) + ext(21, bytes(200))))),
        "sni-several-names": records(handshake(client_hello_body(sni_ext((1, b"x"), (0, b"b.example.com"), (7, b"yy"))))),
        "records-of-1": records(full, 1),
        "records-of-7": records(full, 7),
        "records-of-64": records(full, 64),
        "then-application-data": hello + records(b"\x01\x02\x03", content=23, version=0x0303),
        "truncated-half": hello[: len(hello) // 2],
        "truncated-header": hello[:3],
        "bad-two-host-names": records(handshake(client_hello_body(sni_ext((0, b"a.example.com"), (0, b"b.example.com"))))),
        "bad-empty-alpn-name": records(handshake(client_hello_body(alpn_ext(b"h2", b"")))),
        "bad-duplicate-extension": records(handshake(client_hello_body(alpn_ext(b"h2") + alpn_ext(b"h2")))),
        "bad-extensions-overrun": records(handshake(client_hello_body(None) + u16(40) + ext(0, b""))),
        "bad-session-id-33": records(handshake(client_hello_body(None, session_id=bytes(33)))),
        "bad-record-in-between": records(full[:20]) + records(b"\x01", content=23) + records(full[20:]),
        "bad-server-hello": records(handshake(client_hello_body(None), kind=2)),
        "bad-zero-length-record": b"\x16\x03\x01\x00\x00",
        "sslv2-hello": b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10" + bytes(range(0x15 + 0x10)),
        "alert": b"\x15\x03\x03\x00\x02\x02\x28",
        "http-get": GET,
        "too-large": b"\x16\x03\x01\x40\x00\x01\x00\x40\x00",
        # The target also reads its input as a ClientHello's body: one that parses as such.
        "body-sni-alpn": client_hello_body(sni_ext((0, b"body.example")) + alpn_ext(b"http/1.1")),
    }


# --- Detection ----------------------------------------------------------------------------


def detect_seeds():
    return {
        "bolt-v1-request": bolt_request(),
        "bolt-v2-request-crc": bolt_request(rid=2, v2=(1, 1)),
        "bolt-v1-heartbeat": bolt_heartbeat(),
        "bolt-v1-response": bolt_response(),
        "bolt-prefix-1": b"\x01",
        "bolt-prefix-3": b"\x01\x01\x00",
        "bolt-v2-prefix-4": b"\x02\x01\x01\x00",
        "bolt-bad-code": b"\x01\x01\x01\x00",
        "bolt-bad-type": b"\x01\x05\x00\x01",
        "dubbo-request": dubbo_request(),
        "dubbo-heartbeat": dubbo(FLAG_REQ | FLAG_TWO_WAY | FLAG_EVENT | HESSIAN2, 1, NULL),
        "dubbo-prefix-1": b"\xda",
        "dubbo-bad-magic": b"\xda\xbc",
        "http-get": GET,
        "http-post": POST,
        "http-chunked-trailers": TRAILERS,
        "http-prefix-GE": b"GE",
        "http-prefix-POST": b"POST",
        "http-method-no-space": b"GETX / HTTP/1.1\r\n",
        "http-custom-method": b"PURGE / HTTP/1.1\r\nHost: a\r\n\r\n",
        "http-connect": b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        "http-leading-crlf": b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "tls-client-hello": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "zero-byte": b"\x00",
    }


def h2_frame(kind, flags, stream, payload=b""):
    return bytes([len(payload) >> 16 & 0xFF, len(payload) >> 8 & 0xFF, len(payload) & 0xFF, kind, flags]) + u32(stream) + payload


def h2_get(stream, path=b"/x", end=True):
    # :method GET, :scheme http (static), :path literal (name index 4), :authority literal.
    block = b"\x82\x86\x04" + bytes([len(path)]) + path + b"\x01\x01a"
    return h2_frame(1, 0x4 | (0x1 if end else 0), stream, block)


def h2_frames_seeds():
    """Frame sequences after the preface (the target adds it): the proxy's HTTP/2 server."""
    settings = h2_frame(4, 0, 0)
    return {
        "settings-only": settings,
        "get": settings + h2_get(1),
        "get-redirect": settings + h2_get(1, b"/redirect"),
        "two-streams": settings + h2_get(1) + h2_get(3, b"/y"),
        "post-with-data": settings + h2_get(1, b"/up", end=False) + h2_frame(0, 0x1, 1, b"hello"),
        "post-over-limit": settings + h2_get(1, b"/up", end=False) + h2_frame(0, 0, 1, b"x" * 2500)
        + h2_frame(0, 0x1, 1, b"y" * 1200),
        "trailers": settings + h2_get(1, b"/t", end=False) + h2_frame(0, 0, 1, b"abc")
        + h2_frame(1, 0x5, 1, b"\x40\x01x\x01y"),
        "reset-after-headers": settings + h2_get(1, end=False) + h2_frame(3, 0, 1, u32(8)),
        "rapid-reset": settings + b"".join(h2_get(i, end=False) + h2_frame(3, 0, i, u32(8)) for i in range(1, 80, 2)),
        "ping": settings + h2_frame(6, 0, 0, b"12345678"),
        "window-update-overflow": settings + h2_frame(8, 0, 0, u32(0x7FFFFFFF)) + h2_frame(8, 0, 0, u32(0x7FFFFFFF)),
        "continuation-flood": settings + h2_frame(1, 0, 1, b"\x82") + b"".join(h2_frame(9, 0, 1, b"\x40\x01a\x01b") for _ in range(100)),
        "hpack-garbage": settings + h2_frame(1, 0x5, 1, b"\xff\xff\xff\xff\x0f"),
        "frame-too-large": settings + bytes([0x01, 0x00, 0x00, 0, 0, 0, 0, 0, 1]),
        "even-stream": settings + h2_get(2),
        "goaway": settings + h2_frame(7, 0, 0, u32(0) + u32(0)),
    }


def main():
    targets = {
        "bolt_decode": bolt_seeds(),
        "dubbo_decode": dubbo_seeds(),
        "http1_request": http_request_seeds(),
        "http1_response": http_response_seeds(),
        "detect": detect_seeds(),
        "h2_frames": h2_frames_seeds(),
        "client_hello": client_hello_seeds(),
    }
    total = 0
    for target, seeds in targets.items():
        d = os.path.join(ROOT, target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name, data in seeds.items():
            assert len(data) < 4096, (target, name, len(data))
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
            total += len(data)
        print(f"{target}: {len(seeds)} seeds")
    print(f"{total} bytes in all")


if __name__ == "__main__":
    main()
