"""`spillway generate`: the seeds' synthetic data, put into a real server and read back from the bucket."""

import json
import re
import subprocess

import pytest

from conftest import BIN, create_s3_stream, flush

TEMP_PREFIX = ".spillway-tmp-"
SUMMARY = re.compile(
    r"^sent (\d+) records \((\d+) bytes\) to (\S+) in ([\d.]+) s \(([\d.]+) records/s\); (\d+) failed after retries$")

IOT_FIELDS = {"sensor_id", "timestamp", "location", "temperature", "humidity", "pressure"}
CLICK_FIELDS = {"event_type", "user_id", "session_id", "page_url", "referrer", "user_agent", "ip_address"}
TELEMETRY_FIELDS = {"speed", "rpm", "gear", "throttle", "brakes", "steering_angle", "suspension", "temperatures",
                    "pressures", "fuel_consumption", "lap_time"}
TAXI_FIELDS = {"pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude", "trip_id",
               "trip_distance", "passenger_count", "pickup_datetime", "dropoff_datetime", "total_amount"}


def generate(server, *args, timeout=120):
    return subprocess.run([BIN, "generate", "--endpoint", server.endpoint, *args],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def summary(out):
    lines = out.stdout.strip().splitlines()
    assert lines, out
    m = SUMMARY.match(lines[-1])
    assert m, lines[-1]
    return m


def delivered_lines(server, stream, bucket="test-bucket"):
    flush(server, stream)
    root = server.data_dir / "buckets" / bucket
    lines = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith(TEMP_PREFIX):
            lines += p.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_iot_sensors_count(server, firehose):
    create_s3_stream(firehose, "iot")
    out = generate(server, "--profile", "iot-sensors", "--stream", "iot", "--count", "1200", "--rate", "0")
    assert out.returncode == 0, out.stderr
    m = summary(out)
    assert (m.group(1), m.group(3), m.group(6)) == ("1200", "iot", "0")
    assert out.stderr == ""  # not a terminal: no progress display
    records = delivered_lines(server, "iot")
    assert len(records) == 1200
    for r in records:
        assert set(r) == IOT_FIELDS, r
        assert isinstance(r["timestamp"], int)
        assert r["location"].startswith(("warehouse", "office")), r
    assert {r["sensor_id"] for r in records} == {f"sensor_{i:03d}" for i in range(1, 11)}
    assert int(m.group(2)) == sum(len(json.dumps(r, separators=(",", ":"))) + 1 for r in records)


@pytest.mark.parametrize("profile,fields", [
    ("clickstream", CLICK_FIELDS),
    ("telemetry", TELEMETRY_FIELDS),
    ("taxi-trips", TAXI_FIELDS),
])
def test_other_profiles(server, firehose, profile, fields):
    create_s3_stream(firehose, profile)
    out = generate(server, "--profile", profile, "--stream", profile, "--count", "200", "--rate", "0",
                   "--batch", "64")
    assert out.returncode == 0, out.stderr
    assert summary(out).group(1) == "200"
    records = delivered_lines(server, profile)
    assert len(records) == 200
    for r in records:
        assert set(r) == fields, r
    if profile == "telemetry":
        assert set(records[0]["temperatures"]) == {"engine", "brakes", "tires"}
        assert set(records[0]["suspension"]["damper_settings"]) == {"front_left", "front_right", "rear_left",
                                                                    "rear_right"}
    if profile == "taxi-trips":
        assert sorted(r["trip_id"] for r in records) == list(range(1, 201))


def test_same_seed_same_records(server, firehose):
    create_s3_stream(firehose, "a", bucket="bucket-a")
    create_s3_stream(firehose, "b", bucket="bucket-b")
    for stream in ("a", "b"):
        out = generate(server, "--profile", "clickstream", "--stream", stream, "--count", "50", "--rate", "0",
                       "--seed", "9")
        assert out.returncode == 0, out.stderr
    assert delivered_lines(server, "a", "bucket-a") == delivered_lines(server, "b", "bucket-b")


def test_duration_and_rate(server, firehose):
    create_s3_stream(firehose, "paced")
    out = generate(server, "--profile", "iot-sensors", "--stream", "paced", "--duration", "1s", "--rate", "50")
    assert out.returncode == 0, out.stderr
    sent = int(summary(out).group(1))
    assert 25 <= sent <= 75, out.stdout
    assert len(delivered_lines(server, "paced")) == sent


def test_missing_stream(server):
    out = generate(server, "--profile", "iot-sensors", "--stream", "nope", "--count", "10")
    assert out.returncode != 0
    assert "ResourceNotFoundException" in out.stderr, out.stderr
