#!/usr/bin/env python3
"""Self-test for tests/glacier/server.py.

Starts the server (on a free port, with a temporary store) and drives it with
http.client only, using its own tree-hash implementation (independent of the
server's). Prints one line per check and exits 0 only if every check passed.

If boto3 is importable (e.g. run with /work/main/.venv/bin/python) it also
drives the server with boto3's glacier client, whose tree hashes are computed
by botocore: a second, independent check of the tree-hash definition and of
the error format as an AWS SDK parses it. Without boto3 those checks print SKIP.

  python3 tests/glacier/selftest.py            # standard library only
  .venv/bin/python tests/glacier/selftest.py   # plus the boto3 checks
"""

import hashlib
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "server.py")
MIB = 1024 * 1024

results = []  # (ok, name)


def check(name, ok, detail=""):
    results.append((bool(ok), name))
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, (" -- " + str(detail)[:300]) if (detail and not ok) else ""), flush=True)
    return ok


# ---- the self-test's own tree hash (written separately from the server's) ----
def my_tree_hash(data):
    level = [hashlib.sha256(data[i:i + MIB]).digest() for i in range(0, len(data), MIB)] or [hashlib.sha256(b"").digest()]
    while len(level) > 1:
        paired = []
        i = 0
        while i < len(level):
            if i + 1 < len(level):
                paired.append(hashlib.sha256(level[i] + level[i + 1]).digest())
            else:
                paired.append(level[i])
            i += 2
        level = paired
    return level[0].hex()


# ---- server process ---------------------------------------------------------
class ServerProc:
    def __init__(self, store, logpath, *extra):
        self.log = open(logpath, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, "--port", "0", "--store", store, *extra],
            stdout=subprocess.PIPE, stderr=self.log,
        )
        line = self.proc.stdout.readline().decode()
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError("server did not start: %r (see %s)" % (line, logpath))
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


class Client:
    """One keep-alive connection, so error responses must leave it usable."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def req(self, method, path, headers=None, body=None):
        h = {
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/eu-west-1/glacier/aws4_request, "
                             "SignedHeaders=host;x-amz-date, Signature=00",
            "x-amz-date": "20240101T000000Z",
            "x-amz-glacier-version": "2012-06-01",
        }
        h.update(headers or {})
        if body is not None and "Content-Length" not in h:
            h["Content-Length"] = str(len(body))
        self.conn.request(method, path, body=body, headers=h)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def part(self, vault, uid, first, data, tree=None, sha=None, rng=None):
        return self.req("PUT", "/-/vaults/%s/multipart-uploads/%s" % (vault, uid), {
            "Content-Range": rng or "bytes %d-%d/*" % (first, first + len(data) - 1),
            "x-amz-sha256-tree-hash": tree or my_tree_hash(data),
            "x-amz-content-sha256": sha or hashlib.sha256(data).hexdigest(),
        }, data)

    def initiate(self, vault, part_size, desc=None):
        h = {"x-amz-part-size": str(part_size)}
        if desc is not None:
            h["x-amz-archive-description"] = desc
        return self.req("POST", "/-/vaults/%s/multipart-uploads" % vault, h)

    def complete(self, vault, uid, size, tree):
        return self.req("POST", "/-/vaults/%s/multipart-uploads/%s" % (vault, uid),
                        {"x-amz-archive-size": str(size), "x-amz-sha256-tree-hash": tree})

    def close(self):
        self.conn.close()


def err_code(status, headers, body):
    try:
        b = json.loads(body)
    except ValueError:
        b = {}
    return status, headers.get("x-amzn-errortype"), b.get("code"), b.get("type")


def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(MIB), b""):
            h.update(piece)
    return h.hexdigest()


# ---- the checks -------------------------------------------------------------
def main_flow(work):
    store = os.path.join(work, "store1")
    srv = ServerProc(store, os.path.join(work, "server1.log"))
    c = Client(srv.port)
    rnd = random.Random(1234)
    try:
        # tree hash sanity: known values from the definition
        check("own tree hash of 1 MiB equals plain SHA-256", my_tree_hash(b"a" * MIB) == hashlib.sha256(b"a" * MIB).hexdigest())

        s, h, b = c.req("PUT", "/-/vaults/testvault")
        check("create vault -> 201 + Location", s == 201 and h.get("location") == "/123456789012/vaults/testvault", (s, h, b))
        s, h, b = c.req("PUT", "/-/vaults/testvault")
        check("create vault again (idempotent) -> 201", s == 201, (s, b))
        s, h, b = c.req("GET", "/-/vaults/testvault")
        d = json.loads(b) if s == 200 else {}
        check("describe vault -> 200 with fields",
              s == 200 and d.get("VaultName") == "testvault" and d.get("NumberOfArchives") == 0 and d.get("SizeInBytes") == 0
              and d.get("VaultARN") == "arn:aws:glacier:eu-west-1:123456789012:vaults/testvault" and d.get("CreationDate"), (s, b))
        s, h, b = c.req("GET", "/-/vaults/nosuchvault")
        check("describe unknown vault -> 404 ResourceNotFoundException (header + body)",
              err_code(s, h, b) == (404, "ResourceNotFoundException", "ResourceNotFoundException", "Client"), (s, h, b))
        s, h, b = c.req("GET", "/-/vaults/testvault", {"Authorization": ""})
        check("missing SigV4 Authorization -> 403", s == 403, (s, b))

        for bad in ("3145728", "524288", str(8 * 1024 * MIB), "abc"):
            s, h, b = c.initiate("testvault", bad)
            check("initiate with part size %s -> 400 InvalidParameterValueException" % bad,
                  err_code(s, h, b)[:3] == (400, "InvalidParameterValueException", "InvalidParameterValueException"), (s, b))
        s, h, b = c.initiate("testvault", MIB, "x" * 1025)
        check("initiate with 1025-char description -> 400", s == 400, (s, b))
        s, h, b = c.initiate("testvault", MIB, "tab\tinside")
        check("initiate with non-printable description -> 400", s == 400, (s, b))
        s, h, b = c.initiate("nosuchvault", MIB)
        check("initiate on unknown vault -> 404", s == 404, (s, b))

        desc = "station image 0001 {\"sn\":\"X-1\"}"
        s, h, b = c.initiate("testvault", MIB, desc)
        uid = h.get("x-amz-multipart-upload-id", "")
        check("initiate (1 MiB parts) -> 201 + upload id + Location",
              s == 201 and uid and h.get("location") == "/123456789012/vaults/testvault/multipart-uploads/" + uid, (s, h))

        data = rnd.randbytes(3 * MIB + 123457)
        parts = [(0, data[0:MIB]), (MIB, data[MIB:2 * MIB]), (2 * MIB, data[2 * MIB:3 * MIB]), (3 * MIB, data[3 * MIB:])]
        # upload out of order, to show order does not matter
        ok = True
        for first, chunk in [parts[2], parts[0], parts[3], parts[1]]:
            s, h, b = c.part("testvault", uid, first, chunk)
            ok = ok and s == 204 and h.get("x-amz-sha256-tree-hash") == my_tree_hash(chunk) and b == b""
        check("upload 3 parts of 1 MiB + short last part (out of order) -> 204 + tree hash", ok)

        s, h, b = c.part("testvault", uid, MIB, parts[1][1], tree="0" * 64)
        check("upload part with wrong tree hash -> 400 InvalidParameterValueException",
              err_code(s, h, b)[:2] == (400, "InvalidParameterValueException") and b"tree-hash" in b, (s, b))
        s, h, b = c.part("testvault", uid, MIB, parts[1][1], sha="0" * 64)
        check("upload part with wrong x-amz-content-sha256 -> 400", s == 400 and b"content-sha256" in b, (s, b))
        s, h, b = c.part("testvault", uid, 4096, parts[1][1])
        check("upload part with misaligned range -> 400", s == 400 and b"multiple of the part size" in b, (s, b))
        s, h, b = c.part("testvault", uid, 0, parts[0][1], rng="bytes 0-%d/*" % MIB)
        check("upload part with range longer than part size -> 400", s == 400, (s, b))
        s, h, b = c.part("testvault", uid, 0, parts[0][1][:-1], rng="bytes 0-%d/*" % (MIB - 1),
                         tree=my_tree_hash(parts[0][1][:-1]), sha=hashlib.sha256(parts[0][1][:-1]).hexdigest())
        check("upload part whose body is shorter than its range -> 400", s == 400, (s, b))
        s, h, b = c.part("testvault", uid, 0, parts[0][1], rng="bytes=0-1048575")
        check("upload part with malformed Content-Range -> 400", s == 400, (s, b))
        s, h, b = c.part("testvault", "nosuchupload", 0, parts[0][1])
        check("upload part to unknown upload -> 404", s == 404, (s, b))
        # re-upload replaces (same bytes, so the archive stays right)
        s, h, b = c.part("testvault", uid, MIB, parts[1][1])
        check("re-upload of the same range -> 204", s == 204, (s, b))

        s, h, b = c.req("GET", "/-/vaults/testvault/multipart-uploads/" + uid)
        lp = json.loads(b) if s == 200 else {}
        want_parts = [{"RangeInBytes": "%d-%d" % (f, f + len(x) - 1), "SHA256TreeHash": my_tree_hash(x)} for f, x in parts]
        check("list parts -> 200, 4 sorted parts with hashes, Marker null",
              s == 200 and lp.get("Parts") == want_parts and lp.get("Marker") is None and lp.get("PartSizeInBytes") == MIB
              and lp.get("ArchiveDescription") == desc and lp.get("MultipartUploadId") == uid
              and lp.get("VaultARN", "").endswith(":vaults/testvault") and lp.get("CreationDate"), (s, b))
        s, h, b = c.req("GET", "/-/vaults/testvault/multipart-uploads/%s?limit=3" % uid)
        p1 = json.loads(b) if s == 200 else {}
        s2, h2, b2 = c.req("GET", "/-/vaults/testvault/multipart-uploads/%s?limit=3&marker=%s" % (uid, p1.get("Marker")))
        p2 = json.loads(b2) if s2 == 200 else {}
        check("list parts paging with limit/marker", s == 200 and s2 == 200 and p1.get("Parts") == want_parts[:3]
              and p1.get("Marker") and p2.get("Parts") == want_parts[3:] and p2.get("Marker") is None, (b, b2))

        total = my_tree_hash(data)
        s, h, b = c.complete("testvault", uid, len(data), "f" * 64)
        check("complete with wrong tree hash -> 400", s == 400 and b"Checksum mismatch" in b, (s, b))
        s, h, b = c.complete("testvault", uid, len(data) + 1, total)
        check("complete with wrong archive size -> 400", s == 400, (s, b))
        s, h, b = c.complete("testvault", uid, len(data), total)
        aid = h.get("x-amz-archive-id", "")
        check("complete -> 201 + archive id + Location + tree hash",
              s == 201 and aid and h.get("location") == "/123456789012/vaults/testvault/archives/" + aid
              and h.get("x-amz-sha256-tree-hash") == total, (s, h, b))
        path = os.path.join(store, "testvault", aid)
        check("stored archive's SHA-256 equals the original",
              os.path.isfile(path) and sha_file(path) == hashlib.sha256(data).hexdigest())
        with open(path + ".description") as f:
            check("stored description equals x-amz-archive-description", f.read() == desc)
        s, h, b = c.complete("testvault", uid, len(data), total)
        check("repeat complete returns the same archive id", s == 201 and h.get("x-amz-archive-id") == aid, (s, h))
        s, h, b = c.req("GET", "/-/vaults/testvault/multipart-uploads/" + uid)
        check("list parts after complete -> 404", s == 404, (s, b))
        s, h, b = c.req("GET", "/-/vaults/testvault")
        d = json.loads(b) if s == 200 else {}
        check("describe vault counts the archive", d.get("NumberOfArchives") == 1 and d.get("SizeInBytes") == len(data), b)

        # a gap / a short non-final part must fail completion
        s, h, b = c.initiate("testvault", MIB)
        uid2 = h["x-amz-multipart-upload-id"]
        d2 = rnd.randbytes(2 * MIB + 10)
        c.part("testvault", uid2, 0, d2[:MIB])
        c.part("testvault", uid2, 2 * MIB, d2[2 * MIB:])
        s, h, b = c.complete("testvault", uid2, len(d2), my_tree_hash(d2))
        check("complete with a missing part -> 400", s == 400 and b"contiguous" in b, (s, b))
        c.part("testvault", uid2, MIB, d2[MIB:MIB + 1000])
        s, h, b = c.complete("testvault", uid2, len(d2), my_tree_hash(d2))
        check("complete with a short non-final part -> 400", s == 400, (s, b))

        s, h, b = c.req("DELETE", "/-/vaults/testvault/multipart-uploads/" + uid2)
        check("abort -> 204", s == 204 and b == b"", (s, b))
        s, h, b = c.req("GET", "/-/vaults/testvault/multipart-uploads/" + uid2)
        check("list parts after abort -> 404", s == 404, (s, b))
        s, h, b = c.req("DELETE", "/-/vaults/testvault/multipart-uploads/" + uid2)
        check("abort unknown upload -> 404 ResourceNotFoundException",
              err_code(s, h, b)[:3] == (404, "ResourceNotFoundException", "ResourceNotFoundException"), (s, b))
        check("abort removed the upload's part files", not os.path.exists(os.path.join(store, "@state", "uploads", uid2)))

        # an 8 MiB part size with a 2-chunk... and multi-MiB parts: tree hash across parts
        s, h, b = c.initiate("testvault", 2 * MIB)
        uid3 = h["x-amz-multipart-upload-id"]
        d3 = rnd.randbytes(5 * MIB + 77)
        ok = all(c.part("testvault", uid3, f, d3[f:f + 2 * MIB])[0] == 204 for f in range(0, len(d3), 2 * MIB))
        s, h, b = c.complete("testvault", uid3, len(d3), my_tree_hash(d3))
        aid3 = h.get("x-amz-archive-id", "")
        check("2 MiB parts, 5 MiB + 77 archive: complete and stored bytes match",
              ok and s == 201 and sha_file(os.path.join(store, "testvault", aid3)) == hashlib.sha256(d3).hexdigest(), (s, b))
    finally:
        c.close()
        srv.stop()


def corrupt_flow(work):
    store = os.path.join(work, "store2")
    srv = ServerProc(store, os.path.join(work, "server2.log"), "--corrupt-part-once", "1")
    c = Client(srv.port)
    try:
        c.req("PUT", "/-/vaults/v2")
        s, h, b = c.initiate("v2", MIB)
        uid = h["x-amz-multipart-upload-id"]
        data = random.Random(7).randbytes(2 * MIB + 5)
        s0 = c.part("v2", uid, 0, data[:MIB])[0]
        s, h, b = c.part("v2", uid, MIB, data[MIB:2 * MIB])
        check("--corrupt-part-once 1: first upload of part 1 -> 400 tree-hash mismatch",
              s0 == 204 and s == 400 and b"tree-hash" in b, (s0, s, b))
        s, h, b = c.part("v2", uid, MIB, data[MIB:2 * MIB])
        check("--corrupt-part-once 1: second upload of part 1 -> 204", s == 204, (s, b))
        s2 = c.part("v2", uid, 2 * MIB, data[2 * MIB:])[0]
        s, h, b = c.complete("v2", uid, len(data), my_tree_hash(data))
        aid = h.get("x-amz-archive-id", "")
        check("--corrupt-part-once: archive completes with the right bytes",
              s2 == 204 and s == 201 and sha_file(os.path.join(store, "v2", aid)) == hashlib.sha256(data).hexdigest(), (s, b))
    finally:
        c.close()
        srv.stop()


def outage_flow(work):
    store = os.path.join(work, "store3")
    log = os.path.join(work, "server3.log")
    srv = ServerProc(store, log, "--fail-after-parts", "2")
    c = Client(srv.port)
    data = random.Random(8).randbytes(3 * MIB + 999)
    try:
        c.req("PUT", "/-/vaults/v3")
        s, h, b = c.initiate("v3", MIB, "resume me")
        uid = h["x-amz-multipart-upload-id"]
        a = c.part("v3", uid, 0, data[:MIB])[0]
        b1 = c.part("v3", uid, MIB, data[MIB:2 * MIB])[0]
        s, h, b = c.part("v3", uid, 2 * MIB, data[2 * MIB:3 * MIB])
        check("--fail-after-parts 2: two parts succeed, the third -> 503 ServiceUnavailableException",
              a == 204 and b1 == 204
              and err_code(s, h, b) == (503, "ServiceUnavailableException", "ServiceUnavailableException", "Server"), (a, b1, s, b))
        s, h, b = c.req("GET", "/-/vaults/v3")
        s2, h2, b2 = c.req("GET", "/-/vaults/v3/multipart-uploads/" + uid)
        check("--fail-after-parts: every further request -> 503", s == 503 and s2 == 503, (s, s2))
    finally:
        c.close()
        srv.stop()
    # restart on the same store: the upload survives and can be resumed
    srv = ServerProc(store, log)
    c = Client(srv.port)
    try:
        s, h, b = c.req("GET", "/-/vaults/v3/multipart-uploads/" + uid)
        lp = json.loads(b) if s == 200 else {}
        check("after restart: list parts shows the 2 stored parts",
              s == 200 and [p["RangeInBytes"] for p in lp.get("Parts", [])] == ["0-1048575", "1048576-2097151"], (s, b))
        ok = c.part("v3", uid, 2 * MIB, data[2 * MIB:3 * MIB])[0] == 204 and c.part("v3", uid, 3 * MIB, data[3 * MIB:])[0] == 204
        s, h, b = c.complete("v3", uid, len(data), my_tree_hash(data))
        aid = h.get("x-amz-archive-id", "")
        check("after restart: resumed upload completes with the right bytes",
              ok and s == 201 and sha_file(os.path.join(store, "v3", aid)) == hashlib.sha256(data).hexdigest(), (s, b))
    finally:
        c.close()
        srv.stop()


def boto3_flow(work):
    try:
        import boto3
        import botocore.exceptions
        import botocore.utils
        from botocore.config import Config
    except ImportError:
        print("SKIP boto3 checks (boto3 not importable with %s)" % sys.executable)
        return
    import io

    # pure function: botocore's tree hash vs ours for awkward sizes
    rnd = random.Random(9)
    sizes = [1, MIB - 1, MIB, MIB + 1, 2 * MIB, 3 * MIB + 5, 4 * MIB, 5 * MIB + 1, 7 * MIB]
    sys.path.insert(0, HERE)
    sys.dont_write_bytecode = True  # leave no __pycache__ in the checkout
    import server as srvmod
    mism = []
    for n in sizes:
        d = rnd.randbytes(n)
        bc = botocore.utils.calculate_tree_hash(io.BytesIO(d))
        if not (bc == my_tree_hash(d) == srvmod.tree_hash_hex(d)):
            mism.append(n)
    check("botocore.utils.calculate_tree_hash == selftest's == server's for %d sizes" % len(sizes), not mism, mism)

    store = os.path.join(work, "store4")
    srv = ServerProc(store, os.path.join(work, "server4.log"))
    try:
        g = boto3.client(
            "glacier", endpoint_url="http://127.0.0.1:%d" % srv.port, region_name="us-east-1",
            aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
            config=Config(retries={"max_attempts": 1}),
        )
        r = g.create_vault(vaultName="bvault")
        check("boto3 create_vault", r["ResponseMetadata"]["HTTPStatusCode"] == 201 and r["location"].endswith("/vaults/bvault"))
        try:
            g.describe_vault(vaultName="nope")
            check("boto3 sees ResourceNotFoundException", False, "no error raised")
        except g.exceptions.ResourceNotFoundException as e:
            check("boto3 sees ResourceNotFoundException", e.response["Error"]["Code"] == "ResourceNotFoundException")
        part_size = 2 * MIB
        data = rnd.randbytes(5 * MIB + 4321)
        r = g.initiate_multipart_upload(vaultName="bvault", archiveDescription="boto3 archive", partSize=str(part_size))
        uid = r["uploadId"]
        ok = True
        for first in range(0, len(data), part_size):
            chunk = data[first:first + part_size]
            # checksum computed by botocore, not by us
            cs = botocore.utils.calculate_tree_hash(io.BytesIO(chunk))
            r = g.upload_multipart_part(vaultName="bvault", uploadId=uid, checksum=cs,
                                        range="bytes %d-%d/*" % (first, first + len(chunk) - 1), body=chunk)
            ok = ok and r["checksum"] == cs
        check("boto3 upload_multipart_part x3 (checksum + range)", ok)
        # and one where botocore fills the checksum in itself
        r = g.upload_multipart_part(vaultName="bvault", uploadId=uid, range="bytes 0-%d/*" % (part_size - 1), body=data[:part_size])
        check("boto3 upload_multipart_part with botocore-computed checksum", r["checksum"] == my_tree_hash(data[:part_size]))
        try:
            g.upload_multipart_part(vaultName="bvault", uploadId=uid, checksum="0" * 64,
                                    range="bytes 0-%d/*" % (part_size - 1), body=data[:part_size])
            check("boto3 sees InvalidParameterValueException for a bad checksum", False, "no error raised")
        except g.exceptions.InvalidParameterValueException:
            check("boto3 sees InvalidParameterValueException for a bad checksum", True)
        lp = g.list_parts(vaultName="bvault", uploadId=uid)
        check("boto3 list_parts", len(lp["Parts"]) == 3 and lp["PartSizeInBytes"] == part_size)
        total = botocore.utils.calculate_tree_hash(io.BytesIO(data))
        r = g.complete_multipart_upload(vaultName="bvault", uploadId=uid, archiveSize=str(len(data)), checksum=total)
        aid = r["archiveId"]
        check("boto3 complete_multipart_upload + stored bytes match",
              r["checksum"] == total and sha_file(os.path.join(store, "bvault", aid)) == hashlib.sha256(data).hexdigest())
        r = g.initiate_multipart_upload(vaultName="bvault", partSize=str(MIB))
        g.abort_multipart_upload(vaultName="bvault", uploadId=r["uploadId"])
        try:
            g.abort_multipart_upload(vaultName="bvault", uploadId=r["uploadId"])
            check("boto3 abort_multipart_upload, then abort again -> ResourceNotFoundException", False)
        except g.exceptions.ResourceNotFoundException:
            check("boto3 abort_multipart_upload, then abort again -> ResourceNotFoundException", True)
    finally:
        srv.stop()


def main():
    work = tempfile.mkdtemp(prefix="glacier-selftest-")
    started = time.time()
    try:
        for flow in (main_flow, corrupt_flow, outage_flow, boto3_flow):
            try:
                flow(work)
            except Exception as e:  # a crash in a flow is a failure, not a traceback-and-pass
                check("%s ran without exceptions" % flow.__name__, False, repr(e))
    finally:
        failed = [n for ok, n in results if not ok]
        print("%d checks, %d failed (%.1fs)" % (len(results), len(failed), time.time() - started))
        if failed:
            for name in ("server1.log", "server2.log", "server3.log", "server4.log"):
                p = os.path.join(work, name)
                if os.path.exists(p):
                    print("--- last lines of %s" % name)
                    with open(p) as f:
                        print("".join(f.readlines()[-15:]), end="")
            print("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
