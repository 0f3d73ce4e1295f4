"""Black-box test harness: starts the real `spillway` binary and talks to it with boto3 and the AWS CLI.

The binary is $SPILLWAY_BIN (scripts/test points it at the build the Rust tests used). Every server
gets its own data directory and a free port; tests never sleep to wait for state, they poll with a
deadline (`eventually`).
"""

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import botocore.config
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SPILLWAY_BIN", str(ROOT / "target" / "debug" / "spillway"))
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/firehose-role"


def eventually(check, what, timeout=30.0, interval=0.02):
    """Polls `check` until it returns a truthy value; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - keep polling; report the last error
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last error: {last!r}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One spillway process with its own data directory."""

    def __init__(self, data_dir, config=None, extra_args=()):
        self.data_dir = Path(data_dir)
        self.config = config
        self.extra_args = list(extra_args)
        self.port = None
        self.proc = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.port = free_port()
        args = [BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir),
                "--region", REGION, "--account-id", ACCOUNT_ID, *self.extra_args]
        if self.config is not None:
            cfg = self.data_dir.parent / f"{self.data_dir.name}-spillway.toml"
            cfg.write_text(self.config)
            args += ["--config", str(cfg)]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        eventually(self._ready, f"spillway to listen on {self.endpoint}")
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"spillway exited with {self.proc.returncode}: {self.log()}")
        return self.status()

    def status(self):
        with urllib.request.urlopen(f"{self.endpoint}/_spillway/status", timeout=2) as r:
            return json.loads(r.read())

    def metrics(self):
        with urllib.request.urlopen(f"{self.endpoint}/metrics", timeout=5) as r:
            return r.read().decode()

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill(self):
        """SIGKILL: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, sig=signal.SIGTERM):
        """Clean shutdown; returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            return self.proc.wait(timeout=30)
        return self.proc.returncode if self.proc else None

    def client(self, **kwargs):
        return make_client(self.endpoint, **kwargs)

    def wal_record_ids(self):
        """Every RecordId stored in the WAL (the server must be stopped)."""
        out = subprocess.run([BIN, "wal", "inspect", "--data-dir", str(self.data_dir), "--record-ids"],
                             check=True, capture_output=True, text=True, timeout=120)
        return set(out.stdout.split())

    def wal_inspect(self):
        out = subprocess.run([BIN, "wal", "inspect", "--data-dir", str(self.data_dir)],
                             check=True, capture_output=True, text=True, timeout=120)
        lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        return lines[0], lines[1:]


def make_client(endpoint, access_key="AKIDSPILLWAYTEST", secret_key="not-checked", token=None, retries=0):
    return boto3.client(
        "firehose", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id=access_key, aws_secret_access_key=secret_key, aws_session_token=token,
        config=botocore.config.Config(retries={"total_max_attempts": retries + 1, "mode": "standard"}),
    )


@pytest.fixture
def tmp_data(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def server(tmp_data):
    s = Server(tmp_data).start()
    yield s
    s.kill()


@pytest.fixture
def firehose(server):
    return server.client()


def s3_destination(bucket="test-bucket", **extra):
    return {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}", **extra}


def create_s3_stream(client, name, **extra):
    client.create_delivery_stream(DeliveryStreamName=name,
                                  ExtendedS3DestinationConfiguration=s3_destination(**extra))
    return name


def aws_cli(server, *args, env_extra=None):
    """Runs the AWS CLI (from the virtualenv) against the server; returns parsed JSON output (or None)."""
    env = dict(os.environ)
    env.update({"AWS_ACCESS_KEY_ID": "AKIDSPILLWAYTEST", "AWS_SECRET_ACCESS_KEY": "not-checked",
                "AWS_DEFAULT_REGION": REGION, "AWS_PAGER": "", "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    env.update(env_extra or {})
    out = subprocess.run(["aws", "--endpoint-url", server.endpoint, "--output", "json", *args],
                         capture_output=True, text=True, env=env, timeout=60)
    if out.returncode != 0:
        raise subprocess.CalledProcessError(out.returncode, out.args, out.stdout, out.stderr)
    return json.loads(out.stdout) if out.stdout.strip() else None


class RawResponse:
    """An HTTP answer of `raw_request`: status, headers and the parsed JSON body (or None)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.text = body.decode(errors="replace")
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    @property
    def error_type(self):
        return (self.json or {}).get("__type")

    @property
    def message(self):
        return (self.json or {}).get("message")


def raw_request(server, operation, body, target=None, headers=None, timeout=120):
    """POSTs `body` (dict → JSON, str/bytes as is) to the server without signing it or validating it
    client-side, as `Firehose_20150804.<operation>` (or the exact `target`; `operation=None` and
    `target=None` sends no X-Amz-Target)."""
    import urllib.error
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    h = {"Content-Type": "application/x-amz-json-1.1"}
    if target is not None:
        h["X-Amz-Target"] = target
    elif operation is not None:
        h["X-Amz-Target"] = f"Firehose_20150804.{operation}"
    h.update(headers or {})
    req = urllib.request.Request(f"{server.endpoint}/", data=body, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return RawResponse(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return RawResponse(e.code, e.headers, e.read())


def flush(server, stream, timeout=120):
    """POST /_spillway/streams/{stream}/flush; returns the JSON answer (raises on an error status)."""
    req = urllib.request.Request(f"{server.endpoint}/_spillway/streams/{stream}/flush", data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise AssertionError(f"flush of {stream} answered {e.code}: {e.read()!r}; log: {server.log()}") from None


class FollowingProducers:
    """Threads putting batches of uniquely numbered records to whatever endpoint the server has now (`follow`, across
    kills and restarts); `sent` and `acked` say what was sent and what the server acknowledged. Subclasses say what a
    batch is (`_batch(i, n, rng)`: items of thread `i`, numbered from `n`) and how an item is put (`_record`); `store`
    is the container of items (a set of ids, or a dict of id -> kind)."""

    store = set
    pause = 0.0

    def __init__(self, stream, seed, threads=2):
        self.stream = stream
        self.seed = seed
        self.endpoint = None
        self.lock = threading.Lock()
        self.acked = self.store()
        self.sent = self.store()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def follow(self, server):
        self.endpoint = server.endpoint

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def count(self):
        with self.lock:
            return len(self.acked)

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=60)
            assert not t.is_alive()

    def _batch(self, i, n, rng):
        raise NotImplementedError

    def _record(self, item, rng):
        raise NotImplementedError

    def _run(self, i):
        rng = random.Random(self.seed * 10 + i)
        client, client_endpoint, n = None, None, 0
        while not self.stop_event.is_set():
            endpoint = self.endpoint
            if client is None or endpoint != client_endpoint:
                client_endpoint = endpoint
                client = boto3.session.Session().client(
                    "firehose", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="AKIDSPILLWAYTEST",
                    aws_secret_access_key="not-checked",
                    config=botocore.config.Config(retries={"total_max_attempts": 1}, connect_timeout=2,
                                                  read_timeout=20))
            batch = self._batch(i, n, rng)
            n += len(batch)
            records = [{"Data": self._record(x, rng)} for x in batch]
            with self.lock:
                self.sent.update(batch)
            try:
                resp = client.put_record_batch(DeliveryStreamName=self.stream, Records=records)
            except Exception:  # noqa: BLE001 - the server is being killed; these records are not acknowledged
                self.stop_event.wait(0.02)
                continue
            ok = [x for x, r in zip(batch, resp["RequestResponses"]) if "RecordId" in r]
            with self.lock:
                self.acked.update(ok)
            if self.pause:
                self.stop_event.wait(self.pause)
