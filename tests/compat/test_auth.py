"""SigV4 authentication: configured credentials, session tokens, the AWS errors for each failure, and
the open (no credentials) mode."""

import datetime
import json
import subprocess

import boto3
import botocore
import botocore.auth
import botocore.config
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import REGION, Server, aws_cli, create_s3_stream, make_client, raw_request

AUTH_CONFIG = """
[[auth.credentials]]
access_key_id = "AKIDTEST"
secret_access_key = "secret"

[[auth.credentials]]
access_key_id = "ASIATEMPKEY"
secret_access_key = "temp-secret"
session_token = "session-token-value"
"""


@pytest.fixture
def auth_server(tmp_data):
    s = Server(tmp_data, config=AUTH_CONFIG).start()
    yield s
    s.kill()


@pytest.fixture
def good(auth_server):
    return make_client(auth_server.endpoint, access_key="AKIDTEST", secret_key="secret")


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


def signed_request(server, operation, body, access_key="AKIDTEST", secret_key="secret", token=None):
    """A request signed by botocore's SigV4 signer: (headers, body bytes)."""
    data = json.dumps(body).encode()
    req = AWSRequest(method="POST", url=f"{server.endpoint}/", data=data,
                     headers={"Content-Type": "application/x-amz-json-1.1",
                              "X-Amz-Target": f"Firehose_20150804.{operation}"})
    botocore.auth.SigV4Auth(Credentials(access_key, secret_key, token), "firehose", REGION).add_auth(req)
    return dict(req.headers.items()), data


def test_right_credentials_work(auth_server, good):
    resp = good.create_delivery_stream(DeliveryStreamName="authed", ExtendedS3DestinationConfiguration={
        "RoleARN": "arn:aws:iam::123456789012:role/firehose-role", "BucketARN": "arn:aws:s3:::b"})
    assert resp["DeliveryStreamARN"].endswith(":deliverystream/authed")
    assert good.put_record(DeliveryStreamName="authed", Record={"Data": b"x"})["RecordId"]
    assert good.put_record_batch(DeliveryStreamName="authed", Records=[{"Data": b"y"}] * 3)["FailedPutCount"] == 0
    d = good.describe_delivery_stream(DeliveryStreamName="authed")["DeliveryStreamDescription"]
    assert d["DeliveryStreamStatus"] == "ACTIVE"
    assert good.list_delivery_streams()["DeliveryStreamNames"] == ["authed"]


def test_wrong_secret_is_invalid_signature(auth_server, good):
    create_s3_stream(good, "s")
    before = auth_server.status()["wal"]["next_lsn"]
    bad = make_client(auth_server.endpoint, access_key="AKIDTEST", secret_key="not-the-secret")
    with pytest.raises(ClientError) as e:
        bad.describe_delivery_stream(DeliveryStreamName="s")
    assert code_of(e) == "InvalidSignatureException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as e:
        bad.put_record(DeliveryStreamName="s", Record={"Data": b"forged"})
    assert code_of(e) == "InvalidSignatureException"
    with pytest.raises(ClientError) as e:
        bad.create_delivery_stream(DeliveryStreamName="forged", ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/r", "BucketARN": "arn:aws:s3:::b"})
    assert code_of(e) == "InvalidSignatureException"
    assert auth_server.status()["wal"]["next_lsn"] == before, "a rejected put stores nothing"
    assert good.list_delivery_streams()["DeliveryStreamNames"] == ["s"], "a rejected create creates nothing"


def test_unknown_access_key_is_unrecognized_client(auth_server):
    c = make_client(auth_server.endpoint, access_key="AKIDUNKNOWN", secret_key="secret")
    with pytest.raises(ClientError) as e:
        c.list_delivery_streams()
    assert code_of(e) == "UnrecognizedClientException"
    assert e.value.response["Error"]["Message"] == "The security token included in the request is invalid."


def test_unsigned_request_is_missing_authentication_token(auth_server):
    r = raw_request(auth_server, "ListDeliveryStreams", {})
    assert r.status == 403
    assert r.error_type == "MissingAuthenticationTokenException"
    assert r.message == "Missing Authentication Token"
    assert r.headers.get("x-amzn-RequestId")
    assert r.headers.get("Content-Type", "").startswith("application/x-amz-json-1.1")

    unsigned = boto3.client("firehose", endpoint_url=auth_server.endpoint, region_name=REGION,
                            config=botocore.config.Config(signature_version=botocore.UNSIGNED))
    with pytest.raises(ClientError) as e:
        unsigned.list_delivery_streams()
    assert code_of(e) == "MissingAuthenticationTokenException"


def test_botocore_signed_raw_request_and_tampering(auth_server, good):
    create_s3_stream(good, "raw")
    headers, body = signed_request(auth_server, "DescribeDeliveryStream", {"DeliveryStreamName": "raw"})
    ok = raw_request(auth_server, None, body, target=headers["X-Amz-Target"], headers=headers)
    assert ok.status == 200, ok.text
    assert ok.json["DeliveryStreamDescription"]["DeliveryStreamName"] == "raw"

    # The signature covers the body: changing it after signing is detected.
    headers, body = signed_request(auth_server, "DescribeDeliveryStream", {"DeliveryStreamName": "raw"})
    tampered = body.replace(b'"raw"', b'"war"')
    r = raw_request(auth_server, None, tampered, target=headers["X-Amz-Target"], headers=headers)
    assert r.status == 400 and r.error_type == "InvalidSignatureException", r.text

    # ... and the operation.
    headers, body = signed_request(auth_server, "DescribeDeliveryStream", {"DeliveryStreamName": "raw"})
    headers = {k: v for k, v in headers.items() if k.lower() != "x-amz-target"}
    r = raw_request(auth_server, None, body, target="Firehose_20150804.DeleteDeliveryStream", headers=headers)
    assert r.status == 400 and r.error_type == "InvalidSignatureException", r.text
    assert good.list_delivery_streams()["DeliveryStreamNames"] == ["raw"]


def test_expired_signature_is_rejected(auth_server, monkeypatch):
    past = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=20)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **kw: past)
    headers, body = signed_request(auth_server, "ListDeliveryStreams", {})
    monkeypatch.undo()
    r = raw_request(auth_server, None, body, target=headers["X-Amz-Target"], headers=headers)
    assert r.status == 400
    assert r.error_type == "InvalidSignatureException", r.text
    assert r.message.startswith("Signature expired"), r.message


def test_session_token_credential(auth_server):
    with_token = make_client(auth_server.endpoint, access_key="ASIATEMPKEY", secret_key="temp-secret",
                             token="session-token-value")
    create_s3_stream(with_token, "temp")
    assert with_token.put_record(DeliveryStreamName="temp", Record={"Data": b"t"})["RecordId"]

    # sigv4.rs: a missing, unexpected or different x-amz-security-token is UnrecognizedClientException.
    without = make_client(auth_server.endpoint, access_key="ASIATEMPKEY", secret_key="temp-secret")
    with pytest.raises(ClientError) as e:
        without.list_delivery_streams()
    assert code_of(e) == "UnrecognizedClientException"
    assert e.value.response["Error"]["Message"] == "The security token included in the request is invalid."

    wrong = make_client(auth_server.endpoint, access_key="ASIATEMPKEY", secret_key="temp-secret",
                        token="another-token")
    with pytest.raises(ClientError) as e:
        wrong.list_delivery_streams()
    assert code_of(e) == "UnrecognizedClientException"

    unexpected = make_client(auth_server.endpoint, access_key="AKIDTEST", secret_key="secret",
                             token="session-token-value")
    with pytest.raises(ClientError) as e:
        unexpected.list_delivery_streams()
    assert code_of(e) == "UnrecognizedClientException"

    wrong_secret = make_client(auth_server.endpoint, access_key="ASIATEMPKEY", secret_key="nope",
                               token="session-token-value")
    with pytest.raises(ClientError) as e:
        wrong_secret.list_delivery_streams()
    assert code_of(e) == "InvalidSignatureException"


def test_aws_cli_with_credentials(auth_server):
    creds = {"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret"}
    out = aws_cli(auth_server, "firehose", "create-delivery-stream", "--delivery-stream-name", "cli-auth",
                  "--extended-s3-destination-configuration",
                  "RoleARN=arn:aws:iam::123456789012:role/firehose-role,BucketARN=arn:aws:s3:::b", env_extra=creds)
    assert out["DeliveryStreamARN"].endswith(":deliverystream/cli-auth")
    out = aws_cli(auth_server, "firehose", "put-record", "--delivery-stream-name", "cli-auth",
                  "--record", "Data=hello", env_extra=creds)
    assert len(out["RecordId"]) == 36
    out = aws_cli(auth_server, "firehose", "list-delivery-streams", env_extra=creds)
    assert out["DeliveryStreamNames"] == ["cli-auth"]

    token_creds = {"AWS_ACCESS_KEY_ID": "ASIATEMPKEY", "AWS_SECRET_ACCESS_KEY": "temp-secret",
                   "AWS_SESSION_TOKEN": "session-token-value"}
    out = aws_cli(auth_server, "firehose", "describe-delivery-stream", "--delivery-stream-name", "cli-auth",
                  env_extra=token_creds)
    assert out["DeliveryStreamDescription"]["DeliveryStreamStatus"] == "ACTIVE"

    with pytest.raises(subprocess.CalledProcessError) as e:
        aws_cli(auth_server, "firehose", "list-delivery-streams",
                env_extra={"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert "InvalidSignatureException" in e.value.stderr
    with pytest.raises(subprocess.CalledProcessError) as e:
        aws_cli(auth_server, "firehose", "list-delivery-streams")  # the harness' default keys are not configured
    assert "UnrecognizedClientException" in e.value.stderr


def test_without_credentials_any_signature_is_accepted(server):
    for access_key, secret, token in [("AKIDANY", "whatever", None), ("OTHER", "x", "some-token")]:
        c = make_client(server.endpoint, access_key=access_key, secret_key=secret, token=token)
        name = f"open-{access_key.lower()}"
        create_s3_stream(c, name)
        assert c.put_record(DeliveryStreamName=name, Record={"Data": b"x"})["RecordId"]
    r = raw_request(server, "ListDeliveryStreams", {})
    assert r.status == 200, "unsigned requests are accepted too"
    assert r.json["DeliveryStreamNames"] == ["open-akidany", "open-other"]
