#!/usr/bin/env python3
"""A small, strict Amazon Glacier (REST API 2012-06-01) test server.

Standard library only. It implements the vault and multipart-upload operations
the way the AWS SDK for Rust (aws-sdk-glacier) and botocore call them:

  PUT    /{account}/vaults/{vault}                                  CreateVault
  GET    /{account}/vaults/{vault}                                  DescribeVault
  POST   /{account}/vaults/{vault}/multipart-uploads                InitiateMultipartUpload
  PUT    /{account}/vaults/{vault}/multipart-uploads/{uploadId}     UploadMultipartPart
  GET    /{account}/vaults/{vault}/multipart-uploads/{uploadId}     ListParts (limit, marker)
  POST   /{account}/vaults/{vault}/multipart-uploads/{uploadId}     CompleteMultipartUpload
  DELETE /{account}/vaults/{vault}/multipart-uploads/{uploadId}     AbortMultipartUpload

Usage:
  python3 tests/glacier/server.py --port PORT --store DIR \
      [--corrupt-part-once N] [--fail-after-parts K] [--account-id ID] [--region R]

--port 0 picks a free port. Once listening, the server prints exactly one line
"LISTENING 127.0.0.1:PORT" to stdout (flushed), so a test can wait for it.
Every request is logged as one line on stderr.

Storage (everything lives under DIR, so a restarted server with the same DIR
sees the same vaults and in-progress uploads, which is what resuming needs):
  DIR/{vault}/{archiveId}                 the completed archive's bytes
  DIR/{vault}/{archiveId}.description     its x-amz-archive-description
  DIR/@state/vaults/{vault}.json          vault metadata
  DIR/@state/uploads/{uploadId}/          upload.json + one file per part
  DIR/@state/completed/{uploadId}.json    for idempotent repeat of Complete
('@' cannot occur in a vault name, so '@state' never collides with a vault.)

Deliberate choices (documented, not AWS behaviour in every detail):
  * Authentication: an Authorization header starting with "AWS4-HMAC-SHA256 "
    is required but its signature is NOT checked. The station's signing is the
    SDK's job and is not what this server tests. The region in the credential
    scope, if present, is used for VaultARN.
  * The account id in the path may be "-" (meaning the caller's account,
    --account-id, default 123456789012) or exactly 12 digits; Location headers
    and ARNs use the resolved account id, as AWS does.
  * DescribeVault's NumberOfArchives/SizeInBytes are updated immediately on
    CompleteMultipartUpload (AWS updates them with the daily inventory).
  * ListParts implements limit (1..1000, default 1000) and marker (an opaque
    token this server hands out as the next Marker; it is the next part's
    start offset in decimal).
  * Vault names "." and ".." are refused (they would escape DIR).
  * A part shorter than the part size is accepted at upload time (as AWS
    does); CompleteMultipartUpload then fails unless it is the final part.
"""

import argparse
import hashlib
import json
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

MIB = 1024 * 1024
API_VERSION = "2012-06-01"
VAULT_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,255}$")
ACCOUNT_RE = re.compile(r"^(-|[0-9]{12})$")
CONTENT_RANGE_RE = re.compile(r"^bytes ([0-9]+)-([0-9]+)/\*$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
REGION_RE = re.compile(r"Credential=[^/]*/[0-9]{8}/([^/]+)/")
MAX_PARTS = 10000
COPY_CHUNK = MIB  # read/write granularity; equals the tree-hash chunk size


# --------------------------------------------------------------------------
# SHA-256 tree hash, from "Computing Checksums" in the Glacier developer guide:
# hash every 1 MiB chunk (the last may be shorter), then repeatedly hash the
# concatenation of adjacent pairs; an odd hash at the end of a level is carried
# up unchanged; the single remaining hash is the tree hash.
# --------------------------------------------------------------------------
def tree_hash_from_chunk_hashes(hashes):
    """Combine raw 32-byte chunk digests into the raw root digest."""
    if not hashes:
        # An empty payload is hashed as one empty chunk.
        return hashlib.sha256(b"").digest()
    level = list(hashes)
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            nxt.append(hashlib.sha256(level[i] + level[i + 1]).digest())
        if len(level) % 2 == 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]


class StreamHasher:
    """Computes SHA-256 and the tree hash of a byte stream fed in any pieces."""

    def __init__(self):
        self.linear = hashlib.sha256()
        self.chunk_hashes = []
        self._cur = hashlib.sha256()
        self._cur_len = 0
        self.length = 0

    def update(self, data):
        self.linear.update(data)
        self.length += len(data)
        view = memoryview(data)
        while len(view):
            take = min(MIB - self._cur_len, len(view))
            self._cur.update(view[:take])
            self._cur_len += take
            view = view[take:]
            if self._cur_len == MIB:
                self.chunk_hashes.append(self._cur.digest())
                self._cur = hashlib.sha256()
                self._cur_len = 0

    def sha256_hex(self):
        return self.linear.hexdigest()

    def tree_hash_hex(self):
        hashes = list(self.chunk_hashes)
        if self._cur_len or not hashes:
            hashes.append(self._cur.digest())
        return tree_hash_from_chunk_hashes(hashes).hex()


def tree_hash_hex(data):
    h = StreamHasher()
    h.update(data)
    return h.tree_hash_hex()


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------
class GlacierError(Exception):
    def __init__(self, status, code, message, typ=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.typ = typ or ("Server" if status >= 500 else "Client")


def invalid(msg):
    return GlacierError(400, "InvalidParameterValueException", msg)


def missing(msg):
    return GlacierError(400, "MissingParameterValueException", msg)


def not_found(msg):
    return GlacierError(404, "ResourceNotFoundException", msg)


def iso_now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def write_json_atomic(path, obj):
    tmp = path + ".tmp-" + uuid.uuid4().hex
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------
class Upload:
    def __init__(self, upload_id, meta, updir):
        self.id = upload_id
        self.meta = meta  # vault, account, part_size, description, creation_date
        self.dir = updir
        self.parts = {}  # first -> {"last": int, "tree_hash": str}
        self.lock = threading.Lock()

    def part_path(self, first):
        return os.path.join(self.dir, "%020d.part" % first)

    def part_meta_path(self, first):
        return os.path.join(self.dir, "%020d.json" % first)


class State:
    def __init__(self, store, account_id, corrupt_part, fail_after):
        self.store = os.path.abspath(store)
        self.account_id = account_id
        self.state_dir = os.path.join(self.store, "@state")
        self.vault_dir = os.path.join(self.state_dir, "vaults")
        self.upload_dir = os.path.join(self.state_dir, "uploads")
        self.completed_dir = os.path.join(self.state_dir, "completed")
        self.tmp_dir = os.path.join(self.state_dir, "tmp")
        for d in (self.vault_dir, self.upload_dir, self.completed_dir, self.tmp_dir):
            os.makedirs(d, exist_ok=True)
        self.lock = threading.Lock()
        self.vaults = {}
        self.uploads = {}
        self.corrupt_part = corrupt_part
        self.corrupted_done = False
        self.fail_after = fail_after
        self.parts_ok = 0
        self._load()

    def _load(self):
        for name in os.listdir(self.tmp_dir):
            os.unlink(os.path.join(self.tmp_dir, name))
        for name in os.listdir(self.vault_dir):
            if name.endswith(".json"):
                with open(os.path.join(self.vault_dir, name)) as f:
                    v = json.load(f)
                self.vaults[v["VaultName"]] = v
        for uid in os.listdir(self.upload_dir):
            updir = os.path.join(self.upload_dir, uid)
            try:
                with open(os.path.join(updir, "upload.json")) as f:
                    meta = json.load(f)
            except FileNotFoundError:
                continue
            up = Upload(uid, meta, updir)
            for name in os.listdir(updir):
                if name.endswith(".json") and name != "upload.json":
                    first = int(name[:-5])
                    if os.path.exists(up.part_path(first)):
                        with open(os.path.join(updir, name)) as f:
                            up.parts[first] = json.load(f)
            self.uploads[uid] = up

    def tmp_file(self):
        fd, path = tempfile.mkstemp(dir=self.tmp_dir)
        return os.fdopen(fd, "wb"), path

    def save_vault(self, v):
        write_json_atomic(os.path.join(self.vault_dir, v["VaultName"] + ".json"), v)


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GlacierTestServer/1"
    state = None  # set in main()
    region_default = "us-east-1"

    # Silence http.server's own per-request logging; we log one line ourselves.
    def log_message(self, fmt, *args):
        pass

    def log_error(self, fmt, *args):
        sys.stderr.write("glacier-test-server: error: %s\n" % (fmt % args))

    # ---- body handling --------------------------------------------------
    def _body_reader(self):
        """Yield the request body in pieces (Content-Length or chunked)."""
        te = self.headers.get("Transfer-Encoding", "")
        if te.lower() == "chunked":
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    piece = self.rfile.read(min(remaining, COPY_CHUNK))
                    if not piece:
                        raise ConnectionError("client closed mid-body")
                    remaining -= len(piece)
                    yield piece
                self.rfile.readline(65537)
            return
        if te:
            raise invalid("unsupported Transfer-Encoding: %s" % te)
        cl = self.headers.get("Content-Length")
        remaining = int(cl) if cl else 0
        while remaining:
            piece = self.rfile.read(min(remaining, COPY_CHUNK))
            if not piece:
                raise ConnectionError("client closed mid-body")
            remaining -= len(piece)
            yield piece

    def _drain(self):
        if self._body_consumed:
            return
        self._body_consumed = True
        try:
            for _ in self._body_reader():
                pass
        except Exception:
            self.close_connection = True

    def _read_small_body(self):
        self._body_consumed = True
        return b"".join(self._body_reader())

    # ---- responses ------------------------------------------------------
    def _send(self, status, headers=None, body=b""):
        self._drain()
        self.send_response(status)
        self.send_header("x-amzn-RequestId", self._request_id)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self._status = status

    def _send_json(self, status, obj, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        self._send(status, h, json.dumps(obj).encode())

    def _send_error(self, err):
        self._detail = "%s: %s" % (err.code, err.message)
        body = {"code": err.code, "message": err.message, "type": err.typ}
        # botocore and the Rust SDK both take the code from x-amzn-ErrorType
        # first; the Rust SDK falls back to the body's "code", then "__type".
        self._send_json(err.status, body, {"x-amzn-ErrorType": err.code})

    # ---- dispatch -------------------------------------------------------
    def do_GET(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def do_HEAD(self):
        self._handle()

    def _handle(self):
        self._request_id = uuid.uuid4().hex
        self._body_consumed = False
        self._status = 0
        self._detail = ""
        start = time.time()
        try:
            self._route()
        except GlacierError as e:
            self._send_error(e)
        except (ConnectionError, BrokenPipeError) as e:
            self.close_connection = True
            self._detail = "connection: %s" % e
        except Exception as e:  # a bug in this server: make it loud
            self._send_error(GlacierError(500, "InternalFailure", "test server bug: %r" % e))
        sys.stderr.write(
            "glacier-test-server: %s %s %s -> %s %s(%.3fs)\n"
            % (
                self.client_address[0],
                self.command,
                self.path,
                self._status or "-",
                (self._detail + " ") if self._detail else "",
                time.time() - start,
            )
        )

    def _route(self):
        st = self.state
        with st.lock:
            down = st.fail_after is not None and st.parts_ok >= st.fail_after
        if down:
            raise GlacierError(
                503,
                "ServiceUnavailableException",
                "simulated outage: %d part uploads succeeded (--fail-after-parts); restart the server" % st.parts_ok,
            )
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            # Signature is not verified: signing is the SDK's job, not what this server tests.
            raise GlacierError(403, "MissingAuthenticationTokenException", "missing SigV4 Authorization header")
        m = REGION_RE.search(auth)
        self._region = m.group(1) if m else self.region_default
        version = self.headers.get("x-amz-glacier-version")
        if version is None:
            raise missing("Required header x-amz-glacier-version is missing")
        if version != API_VERSION:
            raise invalid("x-amz-glacier-version must be %s, got %r" % (API_VERSION, version))

        url = urlsplit(self.path)
        segs = [unquote(s) for s in url.path.split("/")]
        if len(segs) < 4 or segs[0] != "" or segs[2] != "vaults":
            raise GlacierError(404, "UnknownOperationException", "not implemented by the test server: %s %s" % (self.command, url.path))
        account, vault = segs[1], segs[3]
        if not ACCOUNT_RE.match(account):
            raise invalid("accountId must be '-' or a 12-digit account id, got %r" % account)
        if not VAULT_NAME_RE.match(vault) or vault in (".", ".."):
            raise invalid("invalid vault name %r" % vault)
        self._account = st.account_id if account == "-" else account
        rest = segs[4:]
        query = parse_qs(url.query, keep_blank_values=True)
        cmd = self.command
        if not rest:
            if cmd == "PUT":
                return self.create_vault(vault)
            if cmd == "GET":
                return self.describe_vault(vault)
        elif rest[0] == "multipart-uploads":
            if len(rest) == 1 and cmd == "POST":
                return self.initiate(vault)
            if len(rest) == 2 and rest[1]:
                uid = rest[1]
                if cmd == "PUT":
                    return self.upload_part(vault, uid)
                if cmd == "GET":
                    return self.list_parts(vault, uid, query)
                if cmd == "POST":
                    return self.complete(vault, uid)
                if cmd == "DELETE":
                    return self.abort(vault, uid)
        raise GlacierError(404, "UnknownOperationException", "not implemented by the test server: %s %s" % (cmd, url.path))

    # ---- helpers --------------------------------------------------------
    def _arn(self, vault):
        return "arn:aws:glacier:%s:%s:vaults/%s" % (self._region, self._account, vault)

    def _require_vault(self, vault):
        v = self.state.vaults.get(vault)
        if v is None:
            raise not_found("Vault not found for ARN: %s" % self._arn(vault))
        return v

    def _require_upload(self, vault, uid):
        with self.state.lock:
            self._require_vault(vault)
            up = self.state.uploads.get(uid)
        if up is None or up.meta["vault"] != vault:
            raise not_found("Multipart upload not found for upload ID: %s" % uid)
        return up

    # ---- operations -----------------------------------------------------
    def create_vault(self, vault):
        self._read_small_body()
        st = self.state
        with st.lock:
            if vault not in st.vaults:  # CreateVault is idempotent
                v = {
                    "VaultName": vault,
                    "CreationDate": iso_now(),
                    "NumberOfArchives": 0,
                    "SizeInBytes": 0,
                }
                st.save_vault(v)
                st.vaults[vault] = v
                os.makedirs(os.path.join(st.store, vault), exist_ok=True)
        self._send(201, {"Location": "/%s/vaults/%s" % (self._account, vault)})

    def describe_vault(self, vault):
        st = self.state
        with st.lock:
            v = dict(self._require_vault(vault))
        self._send_json(
            200,
            {
                "CreationDate": v["CreationDate"],
                "LastInventoryDate": None,
                "NumberOfArchives": v["NumberOfArchives"],
                "SizeInBytes": v["SizeInBytes"],
                "VaultARN": self._arn(vault),
                "VaultName": vault,
            },
        )

    def initiate(self, vault):
        self._read_small_body()
        st = self.state
        ps = self.headers.get("x-amz-part-size")
        if ps is None:
            raise missing("Required header x-amz-part-size is missing")
        if not re.fullmatch(r"[0-9]+", ps):
            raise invalid("Invalid part size: %r" % ps)
        part_size = int(ps)
        valid = [MIB << n for n in range(13)]  # 1 MiB .. 4 GiB
        if part_size not in valid:
            raise invalid(
                "Invalid part size: %d. Part size must be a power of two megabytes (1048576 * 2^n) between 1 MiB and 4 GiB" % part_size
            )
        desc = self.headers.get("x-amz-archive-description")
        if desc is not None:
            if len(desc) > 1024:
                raise invalid("Invalid archive description: longer than 1024 characters (%d)" % len(desc))
            bad = [c for c in desc if not (0x20 <= ord(c) <= 0x7E)]
            if bad:
                raise invalid("Invalid archive description: character %r is outside ASCII 0x20-0x7E" % bad[0])
        with st.lock:
            self._require_vault(vault)
            uid = secrets.token_urlsafe(69)[:92]
            updir = os.path.join(st.upload_dir, uid)
            os.makedirs(updir)
            meta = {
                "vault": vault,
                "account": self._account,
                "part_size": part_size,
                "description": desc,
                "creation_date": iso_now(),
            }
            write_json_atomic(os.path.join(updir, "upload.json"), meta)
            st.uploads[uid] = Upload(uid, meta, updir)
        self._detail = "upload %s part-size %d" % (uid[:12], part_size)
        self._send(
            201,
            {
                "Location": "/%s/vaults/%s/multipart-uploads/%s" % (self._account, vault, uid),
                "x-amz-multipart-upload-id": uid,
            },
        )

    def upload_part(self, vault, uid):
        st = self.state
        up = self._require_upload(vault, uid)
        part_size = up.meta["part_size"]
        cr = self.headers.get("Content-Range")
        if cr is None:
            raise missing("Required header Content-Range is missing")
        m = CONTENT_RANGE_RE.match(cr)
        if not m:
            raise invalid("Invalid Content-Range %r: expected 'bytes FIRST-LAST/*'" % cr)
        first, last = int(m.group(1)), int(m.group(2))
        if last < first:
            raise invalid("Invalid Content-Range %r: last byte before first" % cr)
        length = last - first + 1
        if first % part_size:
            raise invalid("Content-Range %r does not start at a multiple of the part size %d" % (cr, part_size))
        if length > part_size:
            raise invalid("Content-Range %r is %d bytes, larger than the part size %d" % (cr, length, part_size))
        if first // part_size >= MAX_PARTS:
            raise invalid("Content-Range %r is beyond part %d" % (cr, MAX_PARTS))
        te = self.headers.get("Transfer-Encoding")
        cl = self.headers.get("Content-Length")
        if not te:
            if cl is None:
                raise missing("Content-Length is missing")
            if int(cl) != length:
                raise invalid("Content-Length %s does not match Content-Range %r (%d bytes)" % (cl, cr, length))
        want_tree = self.headers.get("x-amz-sha256-tree-hash")
        want_sha = self.headers.get("x-amz-content-sha256")
        if want_tree is None:
            raise missing("Required header x-amz-sha256-tree-hash is missing")
        if want_sha is None:
            raise missing("Required header x-amz-content-sha256 is missing")

        index = first // part_size
        corrupt = False
        with st.lock:
            if st.corrupt_part is not None and index == st.corrupt_part and not st.corrupted_done:
                st.corrupted_done = True
                corrupt = True

        hasher = StreamHasher()
        f, tmp = st.tmp_file()
        committed = False
        try:
            with f:
                self._body_consumed = True
                for piece in self._body_reader():
                    if corrupt and hasher.length == 0:
                        piece = bytes([piece[0] ^ 0xFF]) + piece[1:]
                    hasher.update(piece)
                    f.write(piece)
            if hasher.length != length:
                raise invalid("body is %d bytes but Content-Range %r says %d" % (hasher.length, cr, length))
            got_tree = hasher.tree_hash_hex()
            if want_tree.lower() != got_tree:
                raise invalid(
                    "Checksum mismatch: x-amz-sha256-tree-hash is %s but the tree hash of the received part %s is %s%s"
                    % (want_tree, cr, got_tree, " (byte corrupted by --corrupt-part-once)" if corrupt else "")
                )
            got_sha = hasher.sha256_hex()
            if want_sha.lower() != got_sha:
                raise invalid(
                    "Checksum mismatch: x-amz-content-sha256 is %s but the SHA-256 of the received part %s is %s"
                    % (want_sha, cr, got_sha)
                )
            with up.lock:
                with st.lock:
                    if st.uploads.get(uid) is not up:
                        raise not_found("Multipart upload not found for upload ID: %s" % uid)
                    # Decide at commit time, so exactly K parts succeed even when
                    # several uploads were in flight when the K-th one finished.
                    if st.fail_after is not None and st.parts_ok >= st.fail_after:
                        raise GlacierError(503, "ServiceUnavailableException",
                                           "simulated outage (--fail-after-parts %d)" % st.fail_after)
                    st.parts_ok += 1
                    n_ok = st.parts_ok
                os.replace(tmp, up.part_path(first))
                committed = True
                rec = {"last": last, "tree_hash": got_tree}
                write_json_atomic(up.part_meta_path(first), rec)
                up.parts[first] = rec
        finally:
            if not committed:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
        self._detail = "part %d %s (%d ok)" % (index, cr, n_ok)
        self._send(204, {"x-amz-sha256-tree-hash": got_tree})

    def list_parts(self, vault, uid, query):
        up = self._require_upload(vault, uid)
        self._read_small_body()
        limit = 1000
        if "limit" in query:
            lv = query["limit"][0]
            if not re.fullmatch(r"[0-9]+", lv) or not 1 <= int(lv) <= 1000:
                raise invalid("limit must be an integer from 1 to 1000, got %r" % lv)
            limit = int(lv)
        start = 0
        if "marker" in query:
            mv = query["marker"][0]
            if not re.fullmatch(r"[0-9]+", mv):
                raise invalid("Invalid marker %r" % mv)
            start = int(mv)
        with up.lock:
            firsts = sorted(f for f in up.parts if f >= start)
            page = [(f, dict(up.parts[f])) for f in firsts[:limit]]
            more = firsts[limit] if len(firsts) > limit else None
        self._send_json(
            200,
            {
                "ArchiveDescription": up.meta["description"],
                "CreationDate": up.meta["creation_date"],
                "Marker": None if more is None else str(more),
                "MultipartUploadId": uid,
                "PartSizeInBytes": up.meta["part_size"],
                "Parts": [{"RangeInBytes": "%d-%d" % (f, r["last"]), "SHA256TreeHash": r["tree_hash"]} for f, r in page],
                "VaultARN": self._arn(vault),
            },
        )

    def complete(self, vault, uid):
        st = self.state
        self._read_small_body()
        size_h = self.headers.get("x-amz-archive-size")
        want = self.headers.get("x-amz-sha256-tree-hash")
        if size_h is None:
            raise missing("Required header x-amz-archive-size is missing")
        if want is None:
            raise missing("Required header x-amz-sha256-tree-hash is missing")
        if not re.fullmatch(r"[0-9]+", size_h) or int(size_h) < 1:
            raise invalid("Invalid x-amz-archive-size %r" % size_h)
        size = int(size_h)
        want = want.lower()

        done_path = os.path.join(st.completed_dir, uid + ".json")
        with st.lock:
            self._require_vault(vault)
            up = st.uploads.get(uid)
            done = None
            if up is None and os.path.exists(done_path):
                with open(done_path) as f:
                    done = json.load(f)
        if done is not None and done["vault"] == vault:
            # AWS: repeating Complete shortly after success returns the same archive.
            if done["size"] != size or done["tree_hash"] != want:
                raise invalid("upload %s was already completed with a different size or checksum" % uid)
            return self._send_completed(vault, done)
        if up is None or up.meta["vault"] != vault:
            raise not_found("Multipart upload not found for upload ID: %s" % uid)

        part_size = up.meta["part_size"]
        with up.lock:
            with st.lock:
                if st.uploads.get(uid) is not up:
                    raise not_found("Multipart upload not found for upload ID: %s" % uid)
            firsts = sorted(up.parts)
            if not firsts:
                raise invalid("no parts have been uploaded for upload %s" % uid)
            expect = 0
            for i, first in enumerate(firsts):
                last = up.parts[first]["last"]
                if first != expect:
                    raise invalid("parts are not contiguous: expected a part starting at byte %d, found %d-%d" % (expect, first, last))
                plen = last - first + 1
                final = i == len(firsts) - 1
                if not final and plen != part_size:
                    raise invalid("part %d-%d is %d bytes but is not the last part (part size %d)" % (first, last, plen, part_size))
                expect = last + 1
            if expect != size:
                raise invalid("x-amz-archive-size is %d but the uploaded parts cover bytes 0-%d (%d bytes)" % (size, expect - 1, expect))
            # Recompute the archive's tree hash from the stored bytes while assembling it.
            hasher = StreamHasher()
            f, tmp = st.tmp_file()
            try:
                with f:
                    for first in firsts:
                        with open(up.part_path(first), "rb") as pf:
                            while True:
                                piece = pf.read(COPY_CHUNK)
                                if not piece:
                                    break
                                hasher.update(piece)
                                f.write(piece)
                got = hasher.tree_hash_hex()
                if hasher.length != size:
                    raise invalid("stored parts hold %d bytes, expected %d" % (hasher.length, size))
                if got != want:
                    raise invalid("Checksum mismatch: x-amz-sha256-tree-hash is %s but the tree hash of the assembled archive is %s" % (want, got))
                archive_id = secrets.token_urlsafe(104)[:138]
                vdir = os.path.join(st.store, vault)
                os.makedirs(vdir, exist_ok=True)
                with open(os.path.join(vdir, archive_id + ".description"), "w") as df:
                    df.write(up.meta["description"] or "")
                os.replace(tmp, os.path.join(vdir, archive_id))
                tmp = None
            finally:
                if tmp:
                    os.unlink(tmp)
            done = {"vault": vault, "archive_id": archive_id, "size": size, "tree_hash": got}
            with st.lock:
                write_json_atomic(done_path, done)
                v = st.vaults[vault]
                v["NumberOfArchives"] += 1
                v["SizeInBytes"] += size
                st.save_vault(v)
                del st.uploads[uid]
            _rmtree(up.dir)
        self._detail = "archive %s… %d bytes" % (archive_id[:12], size)
        self._send_completed(vault, done)

    def _send_completed(self, vault, done):
        self._send(
            201,
            {
                "Location": "/%s/vaults/%s/archives/%s" % (self._account, vault, done["archive_id"]),
                "x-amz-archive-id": done["archive_id"],
                "x-amz-sha256-tree-hash": done["tree_hash"],
            },
        )

    def abort(self, vault, uid):
        st = self.state
        self._read_small_body()
        up = self._require_upload(vault, uid)
        with up.lock:
            with st.lock:
                if st.uploads.get(uid) is not up:
                    raise not_found("Multipart upload not found for upload ID: %s" % uid)
                del st.uploads[uid]
            _rmtree(up.dir)
        self._send(204)


def _rmtree(path):
    for name in os.listdir(path):
        os.unlink(os.path.join(path, name))
    os.rmdir(path)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0 = any free port)")
    ap.add_argument("--store", required=True, help="directory for archives and server state")
    ap.add_argument("--corrupt-part-once", type=int, metavar="N", default=None,
                    help="flip a byte of the first upload of part index N (from 0), once")
    ap.add_argument("--fail-after-parts", type=int, metavar="K", default=None,
                    help="after K successful part uploads answer everything with 503")
    ap.add_argument("--account-id", default="123456789012", help="account id that '-' stands for")
    ap.add_argument("--region", default="us-east-1", help="region for ARNs when the request names none")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"[0-9]{12}", args.account_id):
        ap.error("--account-id must be 12 digits")
    for name in ("corrupt_part_once", "fail_after_parts"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            ap.error("--%s must be >= 0" % name.replace("_", "-"))

    os.makedirs(args.store, exist_ok=True)
    Handler.state = State(args.store, args.account_id, args.corrupt_part_once, args.fail_after_parts)
    Handler.region_default = args.region
    httpd = Server(("127.0.0.1", args.port), Handler)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    port = httpd.server_address[1]
    sys.stderr.write(
        "glacier-test-server: listening on 127.0.0.1:%d store=%s corrupt-part-once=%s fail-after-parts=%s\n"
        % (port, Handler.state.store, args.corrupt_part_once, args.fail_after_parts)
    )
    print("LISTENING 127.0.0.1:%d" % port, flush=True)
    try:
        httpd.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
