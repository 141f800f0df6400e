#!/usr/bin/env python3
"""A strict EBS direct API proxy in front of a moto server (test code).

Standard library only (Python 3.11). moto serves the EBS direct API but checks
neither the block checksums, nor ChangedBlocksCount, nor the aggregate checksum;
this proxy does, and forwards every request it does not refuse to moto
unchanged (method, path, headers, body).

Checked before forwarding:

  POST /snapshots                              StartSnapshot
      remembered (from moto's answer): the snapshot ID and its VolumeSize.
  PUT  /snapshots/{id}/blocks/{index}          PutSnapshotBlock
      * the body is exactly 524288 bytes and x-amz-Data-Length says so;
      * x-amz-Checksum-Algorithm is SHA256;
      * x-amz-Checksum is the base64 SHA-256 of the body;
      * the index is below VolumeSize GiB / 512 KiB (when the proxy saw the
        snapshot start).
      Once moto accepts the block, its raw SHA-256 is recorded under its index
      (a block written again replaces the earlier one: distinct blocks count).
  POST /snapshots/completion/{id}              CompleteSnapshot
      * x-amz-ChangedBlocksCount equals the number of distinct blocks written
        to that snapshot through the proxy;
      * x-amz-Checksum, when sent (the API makes it optional; --require-aggregate
        makes it mandatory), is the LINEAR aggregate: the base64 SHA-256 of the
        blocks' raw SHA-256 digests concatenated in block-index order, with
        x-amz-Checksum-Algorithm SHA256 and x-amz-Checksum-Aggregation-Method
        LINEAR.

A failed check is answered 400 with the EBS (restJson1) error format, and the
request is not forwarded:

  x-amzn-ErrorType: ValidationException
  {"message": "...", "Reason": "INVALID_BLOCK" | "INVALID_PARAMETER_VALUE"}

Every other request (GetSnapshotBlock, ListSnapshotBlocks, S3, ...) is
forwarded as is. One correction of moto's answers: moto reports BlockSize 512
(StartSnapshot, ListSnapshotBlocks, ListChangedBlocks) where EBS reports the
block size in bytes, 524288; clients that size their blocks from it (coldsnap
does) would send 512-byte blocks, so the proxy answers 524288. Hop-by-hop headers (Connection, Transfer-Encoding, Expect, ...)
are not forwarded; a chunked request body is de-chunked and sent with a
Content-Length.

Usage:
  python3 tests/ebs/proxy.py --port P --upstream http://127.0.0.1:MOTO \
      [--corrupt-block-once N] [--require-aggregate]

--port 0 picks a free port. Once listening, the proxy prints exactly one line
"LISTENING 127.0.0.1:PORT" to stdout (flushed). Refusals and completions are
logged on stderr, one line each (every request with --verbose).

--corrupt-block-once N flips one byte of block N's body the first time a
PutSnapshotBlock for index N arrives (whatever the snapshot), so its checksum
check fails once and the client's retry must recover.
"""

import argparse
import base64
import hashlib
import http.client
import json
import re
import signal
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BLOCK_BYTES = 512 * 1024
GIB = 1024 * 1024 * 1024

PUT_BLOCK = re.compile(r"^/snapshots/([^/]+)/blocks/([^/]+)$")
COMPLETE = re.compile(r"^/snapshots/completion/([^/]+)$")

# Not forwarded either way (RFC 9110 section 7.6.1), plus what the proxy recomputes.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
}


class Refused(Exception):
    """A check failed: answered 400 ValidationException."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.message = message


class State:
    """What the proxy knows about the snapshots written through it."""

    def __init__(self, corrupt_block_once, require_aggregate):
        self.lock = threading.Lock()
        # snapshot ID -> {block index: raw SHA-256 digest}
        self.blocks = {}
        # snapshot ID -> volume size in GiB (from StartSnapshot)
        self.volume_gib = {}
        self.corrupt_pending = corrupt_block_once
        self.require_aggregate = require_aggregate
        self.verbose = False

    def take_corruption(self, index):
        with self.lock:
            if self.corrupt_pending is not None and self.corrupt_pending == index:
                self.corrupt_pending = None
                return True
        return False


def b64_sha256(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def header(headers, name):
    """A header's value, or None (header names are case-insensitive)."""
    value = headers.get(name)
    return value.strip() if value is not None else None


def parse_count(text, name):
    if text is None:
        raise Refused("INVALID_PARAMETER_VALUE", "%s is required" % name)
    try:
        value = int(text, 10)
    except ValueError:
        raise Refused("INVALID_PARAMETER_VALUE", "%s is not an integer: %r" % (name, text))
    if value < 0:
        raise Refused("INVALID_PARAMETER_VALUE", "%s is negative: %d" % (name, value))
    return value


def check_put_block(state, snapshot, index_text, headers, body):
    """Checks a PutSnapshotBlock; returns (index, raw digest) to record once moto accepts it."""
    try:
        index = int(index_text, 10)
    except ValueError:
        raise Refused("INVALID_BLOCK", "block index %r is not an integer" % index_text)
    if index < 0:
        raise Refused("INVALID_BLOCK", "block index %d is negative" % index)
    length = parse_count(header(headers, "x-amz-Data-Length"), "x-amz-Data-Length")
    if length != BLOCK_BYTES:
        raise Refused(
            "INVALID_PARAMETER_VALUE",
            "x-amz-Data-Length is %d; a block is %d bytes" % (length, BLOCK_BYTES),
        )
    if len(body) != length:
        raise Refused(
            "INVALID_BLOCK",
            "the body is %d bytes; x-amz-Data-Length says %d" % (len(body), length),
        )
    algorithm = header(headers, "x-amz-Checksum-Algorithm")
    if algorithm != "SHA256":
        raise Refused(
            "INVALID_PARAMETER_VALUE",
            "x-amz-Checksum-Algorithm is %r; only SHA256 is supported" % algorithm,
        )
    checksum = header(headers, "x-amz-Checksum")
    if not checksum:
        raise Refused("INVALID_PARAMETER_VALUE", "x-amz-Checksum is required")
    digest = hashlib.sha256(body).digest()
    actual = base64.b64encode(digest).decode("ascii")
    if checksum != actual:
        raise Refused(
            "INVALID_BLOCK",
            "block %d: x-amz-Checksum %s does not match the data's SHA-256 %s"
            % (index, checksum, actual),
        )
    with state.lock:
        gib = state.volume_gib.get(snapshot)
    if gib is not None and index >= gib * (GIB // BLOCK_BYTES):
        raise Refused(
            "INVALID_BLOCK",
            "block %d is beyond the %d GiB volume" % (index, gib),
        )
    return index, digest


def check_complete(state, snapshot, headers):
    """Checks a CompleteSnapshot against the blocks recorded for the snapshot."""
    count = parse_count(header(headers, "x-amz-ChangedBlocksCount"), "x-amz-ChangedBlocksCount")
    with state.lock:
        blocks = dict(state.blocks.get(snapshot, {}))
    if count != len(blocks):
        raise Refused(
            "INVALID_PARAMETER_VALUE",
            "x-amz-ChangedBlocksCount is %d; %d distinct blocks were written to %s"
            % (count, len(blocks), snapshot),
        )
    checksum = header(headers, "x-amz-Checksum")
    if checksum is None:
        if state.require_aggregate:
            raise Refused("INVALID_PARAMETER_VALUE", "x-amz-Checksum (the aggregate) is required")
        return "blocks=%d aggregate=absent" % count
    algorithm = header(headers, "x-amz-Checksum-Algorithm")
    if algorithm != "SHA256":
        raise Refused(
            "INVALID_PARAMETER_VALUE",
            "x-amz-Checksum-Algorithm is %r; only SHA256 is supported" % algorithm,
        )
    method = header(headers, "x-amz-Checksum-Aggregation-Method")
    if method != "LINEAR":
        raise Refused(
            "INVALID_PARAMETER_VALUE",
            "x-amz-Checksum-Aggregation-Method is %r; only LINEAR is supported" % method,
        )
    aggregate = hashlib.sha256()
    for index in sorted(blocks):
        aggregate.update(blocks[index])
    expected = base64.b64encode(aggregate.digest()).decode("ascii")
    if checksum != expected:
        raise Refused(
            "INVALID_PARAMETER_VALUE",
            "the aggregate x-amz-Checksum %s does not match the LINEAR aggregate %s of the %d blocks written"
            % (checksum, expected, len(blocks)),
        )
    return "blocks=%d aggregate=ok" % count


def fix_block_size(data):
    """moto's JSON answer with BlockSize 512 corrected to EBS's 524288 (bytes)."""
    try:
        answer = json.loads(data)
    except ValueError:
        return data
    if isinstance(answer, dict) and answer.get("BlockSize") == 512:
        answer["BlockSize"] = BLOCK_BYTES
        return json.dumps(answer).encode()
    return data


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ebs-strict-proxy"
    sys_version = ""

    # One upstream connection per client connection (this handler lives as long as it).
    upstream_conn = None

    def log_message(self, fmt, *args):  # noqa: N802 (http.server's name)
        if self.server.state.verbose:
            sys.stderr.write("%s\n" % (fmt % args))

    def note(self, text):
        sys.stderr.write("ebs-proxy: %s\n" % text)
        sys.stderr.flush()

    # Every method goes through the same path.
    def do_GET(self):  # noqa: N802
        self.handle_any()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers, up to the empty line.
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def refuse(self, e):
        body = json.dumps({"message": e.message, "Reason": e.reason}).encode()
        self.note("refused %s %s: %s: %s" % (self.command, self.path, e.reason, e.message))
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-ErrorType", "ValidationException")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def forward(self, body):
        """Sends the request to moto; returns (status, headers, body)."""
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        if body or self.command in ("PUT", "POST", "PATCH"):
            headers.append(("Content-Length", str(len(body))))
        for attempt in (1, 2):
            conn = self.upstream_conn
            if conn is None:
                up = self.server.upstream
                conn = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=300)
                self.upstream_conn = conn
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders(body if body else None)
                response = conn.getresponse()
                data = response.read()
                if response.will_close:
                    conn.close()
                    self.upstream_conn = None
                return response.status, response.getheaders(), data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection moto had closed: once more on a new one.
                conn.close()
                self.upstream_conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def handle_any(self):
        body = self.read_body()
        path = urllib.parse.urlsplit(self.path).path
        state = self.server.state
        record = None  # (snapshot, index, digest) for a block moto accepted
        completing = None
        try:
            m = PUT_BLOCK.match(path) if self.command == "PUT" else None
            if m:
                snapshot = urllib.parse.unquote(m.group(1))
                try:
                    index = int(m.group(2))
                except ValueError:
                    index = None
                if index is not None and body and state.take_corruption(index):
                    flipped = bytearray(body)
                    flipped[len(flipped) // 2] ^= 0xFF
                    body = bytes(flipped)
                    self.note("corrupting block %d of %s once" % (index, snapshot))
                index, digest = check_put_block(state, snapshot, m.group(2), self.headers, body)
                record = (snapshot, index, digest)
            m = COMPLETE.match(path) if self.command == "POST" else None
            if m:
                snapshot = urllib.parse.unquote(m.group(1))
                completing = (snapshot, check_complete(state, snapshot, self.headers))
        except Refused as e:
            self.refuse(e)
            return

        try:
            status, headers, data = self.forward(body)
        except OSError as e:
            self.note("upstream failed for %s %s: %s" % (self.command, self.path, e))
            message = json.dumps({"message": "upstream: %s" % e}).encode()
            self.send_response(502)
            self.send_header("Content-Type", "application/json")
            self.send_header("x-amzn-ErrorType", "InternalServerException")
            self.send_header("Content-Length", str(len(message)))
            self.end_headers()
            self.wfile.write(message)
            return

        if 200 <= status < 300:
            if record is not None:
                snapshot, index, digest = record
                with state.lock:
                    state.blocks.setdefault(snapshot, {})[index] = digest
            elif completing is not None:
                self.note("completed %s: %s" % completing)
            elif self.command == "POST" and path == "/snapshots":
                try:
                    answer = json.loads(data)
                    with state.lock:
                        state.blocks.setdefault(answer["SnapshotId"], {})
                        state.volume_gib[answer["SnapshotId"]] = int(answer["VolumeSize"])
                except (ValueError, KeyError, TypeError):
                    pass

        if path.startswith("/snapshots") and b'"BlockSize"' in data:
            data = fix_block_size(data)

        self.send_response(status)
        for k, v in headers:
            if k.lower() not in HOP_BY_HOP and k.lower() not in ("server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0 = any free port)")
    ap.add_argument("--upstream", required=True, help="the moto server, http://127.0.0.1:PORT")
    ap.add_argument("--corrupt-block-once", type=int, metavar="N", default=None,
                    help="flip a byte of block N's body the first time it arrives")
    ap.add_argument("--require-aggregate", action="store_true",
                    help="refuse a CompleteSnapshot without the aggregate x-amz-Checksum")
    ap.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = ap.parse_args()

    upstream = urllib.parse.urlsplit(args.upstream)
    if upstream.scheme != "http" or not upstream.hostname:
        ap.error("--upstream must be http://HOST:PORT")

    server = Server(("127.0.0.1", args.port), Handler)
    server.upstream = upstream
    server.state = State(args.corrupt_block_once, args.require_aggregate)
    server.state.verbose = args.verbose
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("LISTENING 127.0.0.1:%d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
