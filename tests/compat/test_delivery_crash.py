"""Delivery across crashes: SIGKILL the server at random moments while producers put uniquely numbered records
and objects are written continuously; afterwards every acknowledged record is in the delivered objects exactly
once, every object decodes (GZIP: a torn object would not), objects written before a crash are never changed
by a later replay, and no temp file of an interrupted write is left behind.

SPILLWAY_CRASH_CYCLES (default 5) sets the number of kill/restart cycles, e.g. for a long run by hand:

    SPILLWAY_CRASH_CYCLES=100 .venv/bin/python -m pytest tests/compat/test_delivery_crash.py -q
"""

import gzip
import os
import random
import re
import time
from collections import Counter


from conftest import FollowingProducers, ROLE, Server, create_s3_stream, eventually, flush

CYCLES = int(os.environ.get("SPILLWAY_CRASH_CYCLES", "5"))
PRODUCERS = 3
TEMP_PREFIX = ".spillway-tmp-"
KEY_RE = (r"^{prefix}\d{{4}}/\d{{2}}/\d{{2}}/\d{{2}}/"
          r"{name}-1-\d{{4}}-\d{{2}}-\d{{2}}-\d{{2}}-\d{{2}}-\d{{2}}-[0-9a-f-]{{36}}\.gz$")
RECORD_RE = re.compile(rb"(p\d)-(\d{9})-\.*")




def bucket_files(server, bucket):
    """{relative path: bytes} of every file in a folder bucket, temp files included."""
    root = server.data_dir / "buckets" / bucket
    out = {}
    if not root.exists():
        return out
    for p in root.rglob("*"):
        if p.is_file():
            try:
                out[p.relative_to(root).as_posix()] = p.read_bytes()
            except FileNotFoundError:  # renamed away while listing (server running)
                pass
    return out


def objects(server, bucket):
    return {k: v for k, v in bucket_files(server, bucket).items() if not k.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)}


def decode_ids(key, body):
    """The record ids of one object; fails on a torn or malformed object."""
    try:
        plain = gzip.decompress(body)
    except Exception as e:  # noqa: BLE001 - reported with the key
        raise AssertionError(f"object {key} does not decode: {e!r} ({len(body)} bytes)") from None
    assert plain.endswith(b"\n"), f"object {key} ends inside a record"
    ids = []
    for line in plain.split(b"\n")[:-1]:
        m = RECORD_RE.fullmatch(line)
        assert m, f"object {key} holds a malformed record {line[:60]!r}"
        ids.append((m.group(1).decode(), int(m.group(2))))
    return ids


class Producers(FollowingProducers):
    """PRODUCERS threads putting batches of unique records `p<thread>-<number>-....\n`."""

    def __init__(self, stream, seed, size=(60, 600), pause=0.0):
        super().__init__(stream, seed, threads=PRODUCERS)
        self.size = size
        self.pause = pause

    def _batch(self, i, n, rng):
        return [(f"p{i}", k) for k in range(n, n + rng.randint(1, 40))]

    def _record(self, item, rng):
        tag, k = item
        return (f"{tag}-{k:09d}-" + "." * rng.randint(*self.size) + "\n").encode()


def crash_cycles(server, producers, rng, buckets, cycles):
    """Kills the server `cycles` times at random moments while objects are being written; after each kill (with
    nothing running) checks that every visible object decodes. Returns {bucket: {key: bytes}} of every object seen
    right after a kill."""
    snapshots = {b: {} for b in buckets}
    for cycle in range(cycles):
        main = buckets[0]
        objects_before = len(objects(server, main))
        acked_before = producers.count()
        want = objects_before + rng.randint(1, 4)
        eventually(lambda: len(objects(server, main)) >= want
                   and producers.count() >= acked_before + 200,
                   f"new objects and acknowledged puts in cycle {cycle}", timeout=30)
        time.sleep(rng.uniform(0, 0.4))  # a random kill moment, not a wait for state
        server.kill()
        for b in buckets:
            for key, body in objects(server, b).items():
                decode_ids(key, body)  # no torn object is ever visible
                snapshots[b][key] = body
        server.start()
        producers.follow(server)
    return snapshots


def check_exactly_once(server, producers, bucket, snapshot, key_re):
    files = bucket_files(server, bucket)
    leftovers = [k for k in files if k.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)]
    assert not leftovers, f"temp files of interrupted writes are left: {leftovers[:5]}"
    seen = Counter()
    for key, body in files.items():
        assert re.match(key_re, key), key
        seen.update(decode_ids(key, body))
    changed = [k for k, body in snapshot.items() if files.get(k) != body]
    assert not changed, f"{len(changed)} objects changed or vanished after a crash, e.g. {changed[:3]}"
    dups = {k: v for k, v in seen.items() if v > 1}
    assert not dups, f"{len(dups)} records delivered more than once to {bucket}, e.g. {list(dups.items())[:5]}"
    missing = producers.acked - set(seen)
    assert not missing, f"{len(missing)} acknowledged records missing from {bucket}, e.g. {sorted(missing)[:5]}"
    unknown = set(seen) - producers.sent
    assert not unknown, f"records nobody sent: {sorted(unknown)[:5]}"
    return seen


def finish(server, producers, stream):
    """Stops the producers, puts one more record (so the bucket is written again after the last restart) and
    flushes everything."""
    producers.stop()
    client = server.client()
    resp = client.put_record_batch(DeliveryStreamName=stream, Records=[{"Data": b"p9-000000000-\n"}])
    assert resp["FailedPutCount"] == 0
    producers.acked.add(("p9", 0))
    producers.sent.add(("p9", 0))
    flush(server, stream)


def test_sigkill_during_delivery_loses_and_duplicates_nothing(tmp_path):
    seed = int(os.environ.get("SPILLWAY_CRASH_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    server = Server(tmp_path / "data").start()
    try:
        create_s3_stream(server.client(), "crashy", bucket="crash-bucket", CompressionFormat="GZIP",
                         BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0})
        producers = Producers("crashy", seed)
        producers.follow(server)
        producers.start()
        try:
            snapshots = crash_cycles(server, producers, rng, ["crash-bucket"], CYCLES)
        finally:
            producers.stop()
        finish(server, producers, "crashy")
        seen = check_exactly_once(server, producers, "crash-bucket", snapshots["crash-bucket"],
                                  KEY_RE.format(prefix="", name="crashy"))
        assert len(seen) >= 200 * CYCLES, f"seed {seed}"
    except AssertionError as e:
        raise AssertionError(f"{e} (SPILLWAY_CRASH_SEED={seed}; server log: {server.log()[-1500:]})") from None
    finally:
        server.kill()


def test_sigkill_with_a_backup_lane_delivers_each_lane_exactly_once(tmp_path):
    """Two lanes acknowledge the WAL together: a crash must replay, for each lane, exactly what it has not stored."""
    seed = int(os.environ.get("SPILLWAY_CRASH_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    server = Server(tmp_path / "data").start()
    try:
        backup = {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::crash-backup", "Prefix": "src/",
                  "CompressionFormat": "GZIP", "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60}}
        create_s3_stream(server.client(), "crashb", bucket="crash-main", CompressionFormat="GZIP",
                         BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}, S3BackupMode="Enabled",
                         S3BackupConfiguration=backup)
        # Enough bytes for 1 MiB backup objects, but not more than a debug build compresses as it comes.
        producers = Producers("crashb", seed, size=(300, 1500), pause=0.02)
        producers.follow(server)
        producers.start()
        try:
            snapshots = crash_cycles(server, producers, rng, ["crash-main", "crash-backup"], max(3, CYCLES // 2))
            # At least one backup object was cut by size while crashes happened.
            eventually(lambda: objects(server, "crash-backup"), "a backup object cut by size", timeout=30)
        finally:
            producers.stop()
        finish(server, producers, "crashb")
        check_exactly_once(server, producers, "crash-main", snapshots["crash-main"],
                           KEY_RE.format(prefix="", name="crashb"))
        check_exactly_once(server, producers, "crash-backup", snapshots["crash-backup"],
                           KEY_RE.format(prefix="src/", name="crashb"))
    except AssertionError as e:
        raise AssertionError(f"{e} (SPILLWAY_CRASH_SEED={seed}; server log: {server.log()[-1500:]})") from None
    finally:
        server.kill()
