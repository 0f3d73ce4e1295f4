"""Lambda processors backed by the Lambda Invoke API (`[functions.X] url = ...`), black-box.

The function is served by a small HTTP server in this file that speaks the Invoke API
(`POST /2015-03-31/functions/{name}/invocations`, `X-Amz-Function-Error` on a function error) and
runs seed 001's handler. It is a stand-in: neither AWS Lambda, LocalStack's Lambda (it needs Docker)
nor the Lambda runtime interface emulator (a GitHub release binary) can be installed on this
machine. spillway's side is real: the same binary, configuration and delivery path as for AWS.
"""

import base64
import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import ACCOUNT_ID, REGION, ROLE, Server, flush

SEED_LAMBDAS = Path(__file__).resolve().parents[2] / "crates" / "spillway-pipeline" / "tests" / "fixtures" / "lambda"
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:clickstream-transform"


def load_seed001():
    spec = importlib.util.spec_from_file_location("seed001_lambda", SEED_LAMBDAS / "seed001" / "lambda_function.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


class InvokeApi:
    """The Invoke API in front of seed 001's handler; `fail_next` function errors first."""

    def __init__(self):
        self.handler = load_seed001()
        self.requests = []
        self.fail_next = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                api.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "event": json.loads(body)})
                if api.fail_next > 0:
                    api.fail_next -= 1
                    out = json.dumps({"errorType": "RuntimeError", "errorMessage": "boom"}).encode()
                    self.send_response(200)
                    self.send_header("X-Amz-Function-Error", "Unhandled")
                else:
                    out = json.dumps(api.handler(json.loads(body), None)).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def api():
    a = InvokeApi()
    yield a
    a.close()


def start(tmp_path, api, signed):
    creds = 'access_key_id = "AKIDLAMBDA"\nsecret_access_key = "lambda-secret"\n' if signed else ""
    config = f'[functions."{ARN}"]\nurl = "{api.url}"\n{creds}'
    return Server(tmp_path / "data", config=config).start()


def create(client, name, retries=3):
    client.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE, "BucketARN": "arn:aws:s3:::invoke", "Prefix": "out/", "ErrorOutputPrefix": "errors/",
            "BufferingHints": {"SizeInMBs": 128, "IntervalInSeconds": 900},
            "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
                {"ParameterName": "LambdaArn", "ParameterValue": ARN},
                {"ParameterName": "NumberOfRetries", "ParameterValue": str(retries)}]}]}})
    status = client.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert status["DeliveryStreamStatus"] == "ACTIVE", status




def files(server, prefix):
    root = server.data_dir / "buckets" / "invoke"
    return [p for p in sorted(root.rglob("*")) if p.is_file() and str(p.relative_to(root)).startswith(prefix)]


def records():
    return [json.dumps({"event_id": f"e{i}", "user_id": f"user{i}", "event_type": "click",
                        "timestamp": "2026-11-22T10:00:00Z"}).encode() for i in range(5)]


@pytest.mark.parametrize("signed", [False, True])
def test_invoke_api_transforms_records(tmp_path, api, signed):
    srv = start(tmp_path, api, signed)
    try:
        client = srv.client()
        create(client, "via-api")
        assert client.put_record_batch(DeliveryStreamName="via-api",
                                       Records=[{"Data": r} for r in records()])["FailedPutCount"] == 0
        assert flush(srv, "via-api")["Records"] == 5
        (obj,) = files(srv, "out/")
        lines = [json.loads(line) for line in obj.read_text().splitlines()]
        assert [x["user_id"] for x in lines] == [f"user{i}" for i in range(5)]
        assert all(x["processed_by"] == "lambda-firehose-transform" for x in lines)
        (req,) = api.requests
        assert req["path"] == "/2015-03-31/functions/clickstream-transform/invocations", req["path"]
        assert req["headers"].get("x-amz-invocation-type") == "RequestResponse"
        event = req["event"]
        assert event["deliveryStreamArn"].endswith(":deliverystream/via-api")
        assert [base64.b64decode(r["data"]) for r in event["records"]] == records()
        auth = req["headers"].get("authorization")
        if signed:
            assert auth and auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDLAMBDA/"), auth
            assert f"/{REGION}/lambda/aws4_request" in auth, auth
        else:
            assert auth is None
    finally:
        srv.kill()


def test_invoke_api_function_error_is_retried_then_succeeds(tmp_path, api):
    srv = start(tmp_path, api, False)
    try:
        client = srv.client()
        create(client, "retried", retries=2)
        api.fail_next = 2
        client.put_record_batch(DeliveryStreamName="retried", Records=[{"Data": r} for r in records()])
        flush(srv, "retried")
        assert len(api.requests) == 3
        # Each attempt has a fresh invocationId and the same record ids.
        assert len({r["event"]["invocationId"] for r in api.requests}) == 3
        assert len({tuple(x["recordId"] for x in r["event"]["records"]) for r in api.requests}) == 1
        assert len(files(srv, "out/")) == 1 and files(srv, "errors/") == []
    finally:
        srv.kill()


def test_invoke_api_function_error_after_retries_goes_to_processing_failed(tmp_path, api):
    srv = start(tmp_path, api, False)
    try:
        client = srv.client()
        create(client, "failing", retries=1)
        api.fail_next = 100
        client.put_record_batch(DeliveryStreamName="failing", Records=[{"Data": r} for r in records()])
        flush(srv, "failing")
        assert len(api.requests) == 2
        assert files(srv, "out/") == []
        (err,) = files(srv, "errors/processing-failed/")
        lines = [json.loads(line) for line in err.read_text().splitlines()]
        assert [base64.b64decode(x["rawData"]) for x in lines] == records()
        assert {x["errorCode"] for x in lines} == {"Lambda.FunctionError"}
        assert {x["attemptsMade"] for x in lines} == {2}
        assert {x["lambdaARN"] for x in lines} == {ARN}
    finally:
        srv.kill()
