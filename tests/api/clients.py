"""The control-plane API against the real clients: awscli v1 and boto3.

Run by the `api` module of the e2e tests (tests/e2e/api.rs), which starts moto and stationd and
passes their addresses in the environment. Every check raises on failure; the script exits 0
only when all pass.
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

import boto3
import botocore.config
from botocore.exceptions import ClientError

STATION = os.environ["STATION_ENDPOINT"]
MOTO = os.environ["MOTO_ENDPOINT"]
DB = os.environ["STATION_DB"]
ACME = os.environ["ACME_KEYS"].split(" ")
OTHER = os.environ["OTHER_KEYS"].split(" ")
QUOTA = os.environ["QUOTA_KEYS"].split(" ")
GUIDE = os.environ["GUIDE_MANIFESTS"]
WORK = tempfile.mkdtemp()
CHECKS = []


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    CHECKS.append(name)
    print(f"ok   {name}")


def client(keys, **config):
    return boto3.client(
        "importexport",
        endpoint_url=STATION,
        region_name="us-east-1",
        aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1],
        config=botocore.config.Config(retries={"max_attempts": 1}, **config),
    )


def aws(keys, *args):
    """Runs `aws importexport ARGS`; returns (exit code, parsed stdout or None, stderr)."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID=keys[0], AWS_SECRET_ACCESS_KEY=keys[1], AWS_MAX_ATTEMPTS="1")
    p = subprocess.run(
        ["aws", "importexport", *args, "--endpoint-url", STATION, "--region", "us-east-1"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    out = json.loads(p.stdout) if p.stdout.strip() else None
    return p.returncode, out, p.stderr


def error_code(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Message"]
    return None, 200, ""


def manifest_file(name, text):
    path = os.path.join(WORK, name)
    with open(path, "w") as f:
        f.write(text)
    return "file://" + path


def guide(name):
    with open(os.path.join(GUIDE, name + ".yaml")) as f:
        return f.read()


def db(sql, *params):
    conn = sqlite3.connect(DB, timeout=10)
    with conn:
        conn.execute(sql, params)
    conn.close()


# ---- set up the targets on moto -----------------------------------------------------------
s3 = boto3.client("s3", endpoint_url=MOTO, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
for bucket in ["myawsbucket", "my-amz-bucket", "iemanifest-bucket", "log-bucket"]:
    s3.create_bucket(Bucket=bucket)
s3.create_bucket(Bucket="west-bucket", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
glacier = boto3.client("glacier", endpoint_url=MOTO, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
glacier.create_vault(accountId="-", vaultName="MyGlacierVault")

acme = client(ACME)
other = client(OTHER)

# ---- CreateJob with awscli ----------------------------------------------------------------
code, out, err = aws(ACME, "create-job", "--job-type", "Import", "--manifest", manifest_file("tstd1.yaml", guide("tstd1")), "--no-validate-only")
check("awscli create-job returns a job", code == 0 and len(out["JobId"]) == 5, err)
s3_job = out["JobId"]
check("awscli create-job returns the SIGNATURE", out["SignatureFileContents"] == f"version:2.0\nsigningMethod:HmacSHA1\njobId:{s3_job}\nsignature:{out['Signature']}\n", out)

code, out, err = aws(ACME, "create-job", "--job-type", "import", "--manifest", manifest_file("v.yaml", guide("tstd2")), "--validate-only")
check("awscli validate-only creates nothing", code == 0 and "JobId" not in out, out)
jobs = acme.list_jobs()["Jobs"]
check("validate-only left one job", [j["JobId"] for j in jobs] == [s3_job], jobs)

bad = guide("tstd1").replace("eraseDevice: Yes", "eraseDevice: no")
code, out, err = aws(ACME, "create-job", "--job-type", "Import", "--manifest", manifest_file("bad.yaml", bad), "--no-validate-only")
check("awscli shows InvalidManifestFieldException", code != 0 and "InvalidManifestFieldException" in err and "eraseDevice" in err, err)

# ---- the guide's error codes through boto3 ------------------------------------------------
for name, manifest, job_type, expected in [
    ("malformed", "manifestVersion: 2.0\n\tbucket: x\n", "Import", "MalformedManifestException"),
    ("missing field", guide("tstd1").replace("deviceId: 3QD0T87T\n", ""), "Import", "MissingManifestFieldException"),
    ("PO box", guide("tstd1").replace("123 Any Street", "PO Box 12"), "Import", "InvalidAddressException"),
    ("customs missing", guide("tstd1").replace("country: USA", "country: India"), "Import", "MissingCustomsException"),
    ("file system", guide("s3-export-required").replace("fileSystem:NTFS", "fileSystem:FAT32"), "Export", "InvalidFileSystemException"),
    ("no such bucket", guide("tstd1").replace("bucket: myawsbucket", "bucket: no-such-bucket"), "Import", "NoSuchBucketException"),
    ("no such vault", guide("glacier-import-reference").replace("logBucket: myBucket", "logBucket: log-bucket").replace("MyGlacierVault", "NoVault"), "Import", "NoSuchBucketException"),
]:
    got, status, message = error_code(acme.create_job, JobType=job_type, Manifest=manifest, ValidateOnly=False)
    check(f"CreateJob {name} -> {expected}", got == expected and status == 400, f"{got} {status} {message}")

export_two_regions = guide("s3-export-reference").replace("logBucket: iemanifest-bucket", "logBucket: log-bucket").replace("exportBucket: my-amz-bucket", "exportBucket: west-bucket")
got, status, message = error_code(acme.create_job, JobType="Export", Manifest=export_two_regions, ValidateOnly=False)
check("export buckets in two regions -> MultipleRegionsException", got == "MultipleRegionsException", f"{got} {message}")
export_ok = guide("s3-export-reference").replace("logBucket: iemanifest-bucket", "logBucket: log-bucket")
r = acme.create_job(JobType="EXPORT", Manifest=export_ok, ValidateOnly=False)
check("export job created (JobType in capitals)", r["JobType"] == "Export" and len(r["JobId"]) == 5, r)
export_job = r["JobId"]

got, status, _ = error_code(acme.create_job, JobType="Copy", Manifest=guide("tstd1"), ValidateOnly=False)
check("bad JobType -> InvalidParameterException", got == "InvalidParameterException", got)

# ---- GetStatus: redaction, codes ------------------------------------------------------------
r = acme.create_job(JobType="Import", Manifest=guide("s3-import-reference"), ValidateOnly=False)
secret_job = r["JobId"]
status = acme.get_status(JobId=secret_job)
current = status["CurrentManifest"]
check("GetStatus redacts the secrets", "4321" not in current and "SimpleButEasilyCracked" not in current and "pinCode: ********" in current, current)
check("GetStatus codes", status["LocationCode"] == "NotReceived" and status["ProgressCode"] == "Pending" and status["LogKey"] == f"logsimport-log-{secret_job}" and status["LogBucket"] == "iemanifest-bucket", status)
check("GetStatus signature matches CreateJob's", status["Signature"] == r["Signature"], status)
code, out, err = aws(ACME, "get-status", "--job-id", s3_job)
check("awscli get-status", code == 0 and out["JobId"] == s3_job and out["ProgressCode"] == "Pending", err)

# ---- another account's job is not there ------------------------------------------------------
got, _, _ = error_code(other.get_status, JobId=s3_job)
check("another account's job -> InvalidJobIdException", got == "InvalidJobIdException", got)
got, _, _ = error_code(other.cancel_job, JobId=s3_job)
check("another account cannot cancel", got == "InvalidJobIdException", got)
check("another account lists nothing", other.list_jobs()["Jobs"] == [])

# ---- ListJobs: newest first, MaxJobs, Marker, IsTruncated ------------------------------------
page = acme.list_jobs(MaxJobs=2)
ids = [j["JobId"] for j in page["Jobs"]]
check("ListJobs newest first, truncated", ids == [secret_job, export_job] and page["IsTruncated"] is True, page)
page2 = acme.list_jobs(MaxJobs=2, Marker=ids[-1])
check("ListJobs after the marker", [j["JobId"] for j in page2["Jobs"]] == [s3_job] and page2["IsTruncated"] is False, page2)
code, out, err = aws(ACME, "list-jobs", "--max-jobs", "1")
check("awscli list-jobs", code == 0 and len(out["Jobs"]) == 1 and out["IsTruncated"] is True, err)
got, _, _ = error_code(acme.list_jobs, MaxJobs=0)
check("MaxJobs 0 -> InvalidParameterException", got == "InvalidParameterException", got)

# ---- UpdateJob --------------------------------------------------------------------------------
updated = guide("tstd1").replace("deviceId: 3QD0T87T", "deviceId: NEWDEVICE")
code, out, err = aws(ACME, "update-job", "--job-id", s3_job, "--manifest", manifest_file("u.yaml", updated), "--job-type", "Import", "--no-validate-only")
check("awscli update-job", code == 0 and out["Success"] is True, err)
check("the new manifest is current", "NEWDEVICE" in acme.get_status(JobId=s3_job)["CurrentManifest"])
r = acme.update_job(JobId=s3_job, Manifest=guide("tstd1"), JobType="Import", ValidateOnly=True)
check("update validate-only changes nothing", r["Success"] is True and "NEWDEVICE" in acme.get_status(JobId=s3_job)["CurrentManifest"])
got, _, msg = error_code(acme.update_job, JobId=s3_job, Manifest=bad, JobType="Import", ValidateOnly=False)
check("UpdateJob validates -> InvalidManifestFieldException", got == "InvalidManifestFieldException", f"{got} {msg}")
db("UPDATE job SET progress_code = 'InProgress' WHERE job_id = ?", s3_job)
got, _, _ = error_code(acme.update_job, JobId=s3_job, Manifest=guide("tstd1"), JobType="Import", ValidateOnly=False)
check("UpdateJob after the transfer started -> UnableToUpdateJobIdException", got == "UnableToUpdateJobIdException", got)

# ---- CancelJob ---------------------------------------------------------------------------------
got, status, _ = error_code(acme.cancel_job, JobId=s3_job)
check("CancelJob while loading -> UnableToCancelJobIdException (409)", got == "UnableToCancelJobIdException" and status == 409, f"{got} {status}")
db("UPDATE job SET progress_code = 'Complete' WHERE job_id = ?", s3_job)
got, _, _ = error_code(acme.cancel_job, JobId=s3_job)
check("CancelJob once complete -> UnableToCancelJobIdException", got == "UnableToCancelJobIdException", got)
code, out, err = aws(ACME, "cancel-job", "--job-id", export_job)
check("awscli cancel-job", code == 0 and out["Success"] is True, err)
check("ListJobs shows IsCanceled", [j["IsCanceled"] for j in acme.list_jobs()["Jobs"] if j["JobId"] == export_job] == [True])
got, _, _ = error_code(acme.cancel_job, JobId=export_job)
check("CancelJob twice -> CanceledJobIdException", got == "CanceledJobIdException", got)
got, _, _ = error_code(acme.update_job, JobId=export_job, Manifest=export_ok, JobType="Export", ValidateOnly=False)
check("UpdateJob of a canceled job -> CanceledJobIdException", got == "CanceledJobIdException", got)

# ---- expiry -------------------------------------------------------------------------------------
db("UPDATE job SET created_at = created_at - 31 * 86400 WHERE job_id = ?", secret_job)
got, _, _ = error_code(acme.cancel_job, JobId=secret_job)
check("a 31-day-old job -> ExpiredJobIdException", got == "ExpiredJobIdException", got)
check("GetStatus shows Expired", acme.get_status(JobId=secret_job)["ProgressCode"] == "Expired")

# ---- Glacier and EBS: the PDF with the barcode -----------------------------------------------
glacier_manifest = guide("glacier-import-reference").replace("logBucket: myBucket", "logBucket: log-bucket")
code, out, err = aws(ACME, "create-job", "--job-type", "Import", "--manifest", manifest_file("g.yaml", glacier_manifest), "--no-validate-only")
check("awscli Glacier job with an artifact", code == 0 and len(out["ArtifactList"]) == 1, err)
g_job, g_sig = out["JobId"], out["Signature"]
pdf_path = os.path.join(WORK, "g.pdf")
urllib.request.urlretrieve(out["ArtifactList"][0]["URL"], pdf_path)
text = subprocess.run(["pdftotext", pdf_path, "-"], capture_output=True, text=True, check=True).stdout
check("the PDF names job, device and region", f"JOB ID: {g_job}" in text and "DEVICE ID: 49382" in text and "REGION: us-east-1" in text, text)
subprocess.run(["pdftoppm", "-r", "300", "-png", pdf_path, os.path.join(WORK, "g")], check=True)
decoded = subprocess.run(["zbarimg", "-q", "--raw", os.path.join(WORK, "g-1.png")], capture_output=True, text=True).stdout.strip()
check("the barcode decodes to 1.0:JOBID:SIGNATURE", decoded == f"1.0:{g_job}:{g_sig}", decoded)
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="log-bucket").get("Contents", [])]
check("the PDF is in the log bucket", f"logsimport-instructions-{g_job}.pdf" in keys, keys)
ebs_manifest = guide("ebs-import-reference")
r = acme.create_job(JobType="Import", Manifest=ebs_manifest, ValidateOnly=False)
check("EBS job with an artifact", len(r["ArtifactList"]) == 1, r)

# ---- GetShippingLabel ----------------------------------------------------------------------------
code, out, err = aws(ACME, "get-shipping-label", "--job-ids", g_job, r["JobId"], "--name", "Jane Roe", "--street1", "1 Main St", "--city", "Seattle", "--postal-code", "98101", "--country", "USA")
check("awscli get-shipping-label", code == 0 and out["ShippingLabelURL"].startswith(STATION + "/documents/"), err)
label = os.path.join(WORK, "label.pdf")
urllib.request.urlretrieve(out["ShippingLabelURL"], label)
text = subprocess.run(["pdftotext", label, "-"], capture_output=True, text=True, check=True).stdout
check("the label names the jobs and the sender", f"JOBID {g_job}" in text and f"JOBID {r['JobId']}" in text and "Jane Roe" in text and "1 Main St" in text, text)
got, _, _ = error_code(acme.get_shipping_label, jobIds=[export_job])
check("label for a canceled job -> CanceledJobIdException", got == "CanceledJobIdException", got)
got, _, _ = error_code(other.get_shipping_label, jobIds=[g_job])
check("label for another account's job -> InvalidJobIdException", got == "InvalidJobIdException", got)

# ---- authentication ---------------------------------------------------------------------------------
got, status, _ = error_code(client(["AKIAUNKNOWNKEY000000", ACME[1]]).list_jobs)
check("unknown access key -> InvalidClientTokenIdException (403)", got == "InvalidClientTokenIdException" and status == 403, f"{got} {status}")
got, status, _ = error_code(client([ACME[0], "wrong" + ACME[1][5:]]).list_jobs)
check("wrong secret -> SignatureDoesNotMatch (403)", got == "SignatureDoesNotMatch" and status == 403, f"{got} {status}")
v2 = client(ACME, signature_version="v2")
check("boto3 with Signature Version 2", any(j["JobId"] == g_job for j in v2.list_jobs()["Jobs"]))


def sigv2_post(params, secret, timestamp, version="2010-06-01", operation=None):
    """POSTs params signed with Signature Version 2 as the guide shows; `operation` puts the
    action in the path (`/?Operation=X`) as the service model's request URI does."""
    params = dict(params, AWSAccessKeyId=ACME[0], SignatureVersion="2", SignatureMethod="HmacSHA256", Timestamp=timestamp, Version=version)
    signed = dict(params, Operation=operation) if operation else params
    host = urllib.parse.urlparse(STATION).netloc
    query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in sorted(signed.items()))
    to_sign = f"POST\n{host}\n/\n{query}"
    params["Signature"] = base64.b64encode(hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).digest()).decode()
    url = STATION + "/" + (f"?Operation={operation}" if operation else "")
    req = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


now = datetime.datetime.now(datetime.timezone.utc)
status, body = sigv2_post({"Action": "GetStatus", "JobId": g_job}, ACME[1], now.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
check("hand-signed SigV2 as in the guide", status == 200 and f"<JobId>{g_job}</JobId>" in body, body)
stale = (now - datetime.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
status, body = sigv2_post({"Action": "GetStatus", "JobId": g_job}, ACME[1], stale)
check("a timestamp 20 minutes old is refused", status == 403 and "<Code>RequestExpired</Code>" in body, body)
status, body = sigv2_post({"Action": "Frobnicate"}, ACME[1], now.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
check("unknown action -> UnknownOperationException", status == 403 and "<Code>UnknownOperationException</Code>" in body, body)
stamp = now.strftime("%Y-%m-%dT%H:%M:%S.000Z")
status, body2 = sigv2_post({"JobId": g_job}, ACME[1], stamp, operation="GetStatus")
check("the action in the path: POST /?Operation=GetStatus", status == 200 and f"<JobId>{g_job}</JobId>" in body2, body2)
status, body2 = sigv2_post({"Action": "ListJobs"}, ACME[1], stamp, version="2009-01-01")
check("another API version -> InvalidVersionException", status == 400 and "<Code>InvalidVersionException</Code>" in body2, body2)
check("error XML in the service's namespace", 'xmlns="http://importexport.amazonaws.com/doc/2010-06-01/"' in body and "<RequestId>" in body, body)

# ---- the daily quota -------------------------------------------------------------------------------
quota = client(QUOTA)
for i in range(50):
    quota.create_job(JobType="Import", Manifest=guide("tstd1"), ValidateOnly=False)
got, _, _ = error_code(quota.create_job, JobType="Import", Manifest=guide("tstd1"), ValidateOnly=False)
check("the 51st job in a day -> CreateJobQuotaExceededException", got == "CreateJobQuotaExceededException", got)

print(f"{len(CHECKS)} checks passed")
