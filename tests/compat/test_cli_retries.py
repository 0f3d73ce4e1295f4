"""The retry paths of `spillway send` and `spillway generate`: records a server answers with an ErrorCode are sent
again (only those), a whole call answered 503 is made again, and records that keep failing end the command with a
non-zero status and are counted in its summary.

spillway itself fails records only when its WAL is full, which cannot be switched on and off on cue; these tests use
a small hand-written Firehose endpoint (`FlakyFirehose`) that fails records and calls on purpose. It is a fake on
purpose: what is under test is the client, against failure patterns a real server produces only by chance.
"""

import base64
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import BIN


class FlakyFirehose:
    """Answers PutRecordBatch like Firehose. `fail_first_call`: the first call gets HTTP 503
    ServiceUnavailableException. `fail_once(data)`: whether a record fails the first time it is seen (then
    succeeds). `fail_always(data)`: whether a record always fails. Keeps every accepted record's data."""

    def __init__(self, fail_first_call=False, fail_once=lambda d: False, fail_always=lambda d: False):
        self.accepted, self.calls, self.attempts = [], 0, {}
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                target = self.headers.get("X-Amz-Target", "")
                status, answer = owner.answer(target, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.fail_first_call, self.fail_once, self.fail_always = fail_first_call, fail_once, fail_always
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def answer(self, target, body):
        with self.lock:
            self.calls += 1
            if target != "Firehose_20150804.PutRecordBatch":
                return 400, {"__type": "InvalidArgumentException", "message": f"unexpected {target}"}
            if self.fail_first_call and self.calls == 1:
                return 503, {"__type": "ServiceUnavailableException", "message": "Slow down."}
            entries, failed = [], 0
            for r in body["Records"]:
                data = base64.b64decode(r["Data"])
                seen = self.attempts.get(data, 0)
                self.attempts[data] = seen + 1
                if self.fail_always(data) or (seen == 0 and self.fail_once(data)):
                    entries.append({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."})
                    failed += 1
                else:
                    self.accepted.append(data)
                    entries.append({"RecordId": f"id-{len(self.accepted)}"})
            return 200, {"FailedPutCount": failed, "Encrypted": False, "RequestResponses": entries}

    def close(self):
        self.httpd.shutdown()


def run(*args, stdin=None):
    return subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_send_retries_failed_records_and_failed_calls():
    lines = [json.dumps({"n": i}) for i in range(1200)]
    fake = FlakyFirehose(fail_first_call=True, fail_once=lambda d: json.loads(d)["n"] % 7 == 0)
    try:
        out = run("send", "--stream", "s", "--endpoint", fake.endpoint, stdin="\n".join(lines) + "\n")
        assert out.returncode == 0, out.stderr
        # Every record exactly once, though 1 in 7 failed once and the first call failed as a whole.
        assert sorted(fake.accepted) == sorted((line + "\n").encode() for line in lines)
        retried = [d for d, n in fake.attempts.items() if n > 1]
        assert len(retried) == len([i for i in range(1200) if i % 7 == 0]), len(retried)
        # Only the failed records were sent again: none more than twice.
        assert max(fake.attempts.values()) == 2
        # 3 batches, the 503 call made again, and at least one call of retried records.
        assert fake.calls >= 3 + 1 + 1, fake.calls
    finally:
        fake.close()


def test_send_reports_records_that_keep_failing():
    lines = [json.dumps({"n": i}) for i in range(20)]
    fake = FlakyFirehose(fail_always=lambda d: json.loads(d)["n"] in (3, 11))
    try:
        out = run("send", "--stream", "s", "--endpoint", fake.endpoint, stdin="\n".join(lines) + "\n")
        assert out.returncode != 0, out
        assert len(fake.accepted) == 18
        assert "2 records failed" in out.stderr, out.stderr
        assert "ServiceUnavailableException" in out.stderr, out.stderr
        # Retried RECORD_RETRIES (5) times after the first attempt.
        assert fake.attempts[(lines[3] + "\n").encode()] == 6
    finally:
        fake.close()


def test_generate_retries_failed_records_and_failed_calls():
    fake = FlakyFirehose(fail_first_call=True, fail_once=lambda d: hash(d) % 5 == 0)
    try:
        out = run("generate", "--profile", "clickstream", "--stream", "s", "--count", "700", "--rate", "100000",
                  "--seed", "3", "--endpoint", fake.endpoint)
        assert out.returncode == 0, out.stderr
        assert len(fake.accepted) == 700 == len(set(fake.accepted))
        assert any(n > 1 for n in fake.attempts.values())
        assert "0 failed after retries" in out.stdout + out.stderr, (out.stdout, out.stderr)
    finally:
        fake.close()


def test_generate_counts_records_that_keep_failing():
    fake = FlakyFirehose(fail_always=lambda d: b"example.com/checkout" in d)
    try:
        out = run("generate", "--profile", "clickstream", "--stream", "s", "--count", "300", "--rate", "100000",
                  "--seed", "3", "--endpoint", fake.endpoint)
        failed = 300 - len(fake.accepted)
        assert failed > 0, "the profile sends clicks on the checkout page"
        assert f"{failed} failed after retries" in out.stdout + out.stderr, (out.stdout, out.stderr)
        assert out.returncode != 0
    finally:
        fake.close()
