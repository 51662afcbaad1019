#!/usr/bin/python3
"""A gRPC test peer on python3-grpcio: generic handlers, raw-bytes messages (no protobuf, no
serializer), so the tests need no generated code.

Service /mosn.test.Peer/ (any service name is served the same way, so a test can route by it):
  Unary         echoes the request message.
  ClientStream  reads every message, answers the hex SHA-256 of all their bytes; trailing
                metadata x-total-bytes.
  ServerStream  request b"<size>:<chunk>:<seed>": sends <size> pseudo-random bytes in
                <chunk>-byte messages; trailing metadata x-sha256 (hex).
  Bidi          echoes each message as it arrives.
  Error         request b"<CODE_NAME>:<message>": aborts with that status and message
                (no response message: a trailers-only response).
  Slow          request b"<ms>": sleeps, then echoes the request.
  Hold          never answers; prints "HOLDING <method>" once waiting and "CANCELLED <method>"
                when the call is cancelled.

Every call prints "CALL <full method>" on arrival. Events go to stdout, one per line, flushed.

Run:
  grpc_peer.py server --port P          (0 = any; prints "READY <port>")
  grpc_peer.py client --target H:P --call unary|client-stream|server-stream|bidi|error|slow|hold
               [--service S] [--size N] [--chunk N] [--count N] [--code NAME] [--message M]
               [--delay-ms N] [--timeout S] [--cancel-after S] [--repeat N]
      prints one JSON object per call (one line each).
"""

import argparse
import hashlib
import json
import random
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "mosn.test.Peer"
# No proxy from the environment: test traffic stays on 127.0.0.1.
CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.enable_retries", 0),
]
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.so_reuseport", 0),
]


def emit(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def pseudo_random(size, seed):
    return random.Random(seed).randbytes(size)


# ---------------------------------------------------------------------------------------------
# Server


def unary(request, context):
    return request


def client_stream(request_iterator, context):
    h = hashlib.sha256()
    total = 0
    for msg in request_iterator:
        h.update(msg)
        total += len(msg)
    context.set_trailing_metadata((("x-total-bytes", str(total)),))
    return h.hexdigest().encode()


def server_stream(request, context):
    size, chunk, seed = (int(x) for x in request.decode().split(":"))
    data = pseudo_random(size, seed)
    context.set_trailing_metadata((("x-sha256", hashlib.sha256(data).hexdigest()),))
    for i in range(0, size, chunk):
        yield data[i : i + chunk]


def bidi(request_iterator, context):
    for msg in request_iterator:
        yield msg


def error(request, context):
    name, _, message = request.decode().partition(":")
    context.abort(grpc.StatusCode[name], message)


def slow(request, context):
    time.sleep(int(request.decode()) / 1000.0)
    return request


def make_hold(method):
    def hold(request, context):
        done = threading.Event()

        # Called when the RPC ends; it cannot end otherwise while we wait here. False: it
        # already ended (cancelled before this handler ran).
        if not context.add_callback(done.set):
            done.set()
        emit("HOLDING " + method)
        # Wait for the cancellation (bounded: a test never holds for longer).
        done.wait(60)
        if done.is_set():
            emit("CANCELLED " + method)
        return b""

    return hold


class Handler(grpc.GenericRpcHandler):
    def service(self, details):
        method = details.method
        name = method.rsplit("/", 1)[-1]
        emit("CALL " + method)
        if name == "Unary":
            return grpc.unary_unary_rpc_method_handler(unary)
        if name == "ClientStream":
            return grpc.stream_unary_rpc_method_handler(client_stream)
        if name == "ServerStream":
            return grpc.unary_stream_rpc_method_handler(server_stream)
        if name == "Bidi":
            return grpc.stream_stream_rpc_method_handler(bidi)
        if name == "Error":
            return grpc.unary_unary_rpc_method_handler(error)
        if name == "Slow":
            return grpc.unary_unary_rpc_method_handler(slow)
        if name == "Hold":
            return grpc.unary_unary_rpc_method_handler(make_hold(method))
        return None


def serve(port):
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32), options=SERVER_OPTIONS
    )
    server.add_generic_rpc_handlers((Handler(),))
    bound = server.add_insecure_port("127.0.0.1:%d" % port)
    if bound == 0:
        emit("FAILED to bind 127.0.0.1:%d" % port)
        sys.exit(1)
    server.start()
    emit("READY %d" % bound)
    # Until stdin closes (the test process went away) or the process is killed.
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    server.stop(0)


# ---------------------------------------------------------------------------------------------
# Client


def rpc_error(e, out):
    out["code"] = e.code().name
    out["details"] = e.details() or ""
    out["trailing"] = dict(e.trailing_metadata() or ())
    return out


def call_once(channel, args, seq):
    path = lambda m: "/%s/%s" % (args.service, m)
    timeout = args.timeout
    out = {"call": args.call, "code": "OK", "details": ""}
    try:
        if args.call == "unary":
            data = pseudo_random(args.size, seq)
            stub = channel.unary_unary(path("Unary"))
            resp, call = stub.with_call(data, timeout=timeout)
            out.update(
                sent=len(data),
                received=len(resp),
                sha256=hashlib.sha256(data).hexdigest(),
                received_sha256=hashlib.sha256(resp).hexdigest(),
                trailing=dict(call.trailing_metadata() or ()),
            )
        elif args.call == "client-stream":
            data = pseudo_random(args.size, seq)
            chunks = [data[i : i + args.chunk] for i in range(0, len(data), args.chunk)]
            stub = channel.stream_unary(path("ClientStream"))
            resp, call = stub.with_call(iter(chunks), timeout=timeout)
            out.update(
                sent=len(data),
                messages=len(chunks),
                sha256=hashlib.sha256(data).hexdigest(),
                server_sha256=resp.decode(),
                trailing=dict(call.trailing_metadata() or ()),
            )
        elif args.call == "server-stream":
            stub = channel.unary_stream(path("ServerStream"))
            req = ("%d:%d:%d" % (args.size, args.chunk, seq)).encode()
            call = stub(req, timeout=timeout)
            h = hashlib.sha256()
            n = 0
            received = 0
            for msg in call:
                h.update(msg)
                n += 1
                received += len(msg)
            out.update(
                received=received,
                messages=n,
                received_sha256=h.hexdigest(),
                sha256=hashlib.sha256(pseudo_random(args.size, seq)).hexdigest(),
                trailing=dict(call.trailing_metadata() or ()),
            )
        elif args.call == "bidi":
            msgs = [pseudo_random(args.chunk, seq * 100000 + i) for i in range(args.count)]
            stub = channel.stream_stream(path("Bidi"))
            call = stub(iter(msgs), timeout=timeout)
            got = list(call)
            out.update(
                sent=sum(len(m) for m in msgs),
                messages=len(got),
                received=sum(len(m) for m in got),
                sha256=hashlib.sha256(b"".join(msgs)).hexdigest(),
                received_sha256=hashlib.sha256(b"".join(got)).hexdigest(),
                in_order=got == msgs,
            )
        elif args.call == "error":
            stub = channel.unary_unary(path("Error"))
            stub.with_call(("%s:%s" % (args.code, args.message)).encode(), timeout=timeout)
        elif args.call == "slow":
            stub = channel.unary_unary(path("Slow"))
            resp, _ = stub.with_call(str(args.delay_ms).encode(), timeout=timeout)
            out.update(received=len(resp))
        elif args.call == "hold":
            stub = channel.unary_unary(path("Hold"))
            fut = stub.future(b"hold", timeout=timeout)
            if args.cancel_after is not None:
                time.sleep(args.cancel_after)
                fut.cancel()
            try:
                fut.result()
            except grpc.FutureCancelledError:
                out["code"] = "CANCELLED"
                out["details"] = "cancelled by the client"
        else:
            raise SystemExit("unknown call " + args.call)
    except grpc.RpcError as e:
        rpc_error(e, out)
    return out


def client(args):
    channel = grpc.insecure_channel(args.target, options=CHANNEL_OPTIONS)
    try:
        for seq in range(args.repeat):
            start = time.monotonic()
            out = call_once(channel, args, seq + args.seed)
            out["seconds"] = round(time.monotonic() - start, 3)
            emit(json.dumps(out, sort_keys=True))
    finally:
        channel.close()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, default=0)
    c = sub.add_parser("client")
    c.add_argument("--target", required=True)
    c.add_argument("--call", required=True)
    c.add_argument("--service", default=SERVICE)
    c.add_argument("--size", type=int, default=1024)
    c.add_argument("--chunk", type=int, default=16384)
    c.add_argument("--count", type=int, default=10)
    c.add_argument("--code", default="NOT_FOUND")
    c.add_argument("--message", default="nope")
    c.add_argument("--delay-ms", type=int, default=0)
    c.add_argument("--timeout", type=float, default=None)
    c.add_argument("--cancel-after", type=float, default=None)
    c.add_argument("--repeat", type=int, default=1)
    c.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if args.mode == "server":
        serve(args.port)
    else:
        client(args)


if __name__ == "__main__":
    main()
