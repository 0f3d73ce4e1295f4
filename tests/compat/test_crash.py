"""Durability: every record the server acknowledged survives a SIGKILL in the middle of ingest, and the
WAL reopens cleanly afterwards."""

import os
import random
import subprocess
import threading

import boto3
import botocore.config

from conftest import ACCOUNT_ID, BIN, REGION, Server, create_s3_stream, eventually, free_port

STREAM = "crash"
PRODUCERS = 4
CYCLES = 3
MIN_ACKED_BEFORE_KILL = 12000


def lsn_of(record_id):
    return int(record_id[16:32], 16)


def no_retry_client(server):
    return boto3.client("firehose", endpoint_url=server.endpoint, region_name=REGION,
                        aws_access_key_id="AKIDSPILLWAYTEST", aws_secret_access_key="not-checked",
                        config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                                      connect_timeout=5, read_timeout=30))


class Producers:
    """PutRecordBatch loops on their own clients, recording every RecordId the server acknowledged."""

    def __init__(self, server, seed):
        self.clients = [no_retry_client(server) for _ in range(PRODUCERS)]  # created here: not thread-safe
        self.seed = seed
        self.lock = threading.Lock()
        self.acked = set()
        self.batches = 0
        self.killing = threading.Event()  # from now on connection errors are expected
        self.killed = threading.Event()  # the producers stop
        self.errors_before_kill = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(PRODUCERS)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def count(self):
        with self.lock:
            return len(self.acked)

    def _run(self, i):
        rng = random.Random(self.seed * 100 + i)
        client = self.clients[i]
        while not self.killed.is_set():
            records = [{"Data": os.urandom(rng.randint(100, 2000))} for _ in range(rng.randint(1, 50))]
            try:
                resp = client.put_record_batch(DeliveryStreamName=STREAM, Records=records)
            except Exception as e:  # noqa: BLE001 - connection errors are expected once the server is killed
                if not self.killing.is_set():
                    with self.lock:
                        self.errors_before_kill.append(repr(e))
                    self.killed.wait(0.05)
                continue
            entries = resp["RequestResponses"]
            ids = [e["RecordId"] for e in entries if "RecordId" in e]
            with self.lock:
                if resp["FailedPutCount"] or len(ids) != len(records):
                    self.errors_before_kill.append(f"partial failure: {resp['FailedPutCount']} failed")
                self.acked.update(ids)
                self.batches += 1

    def expect_kill(self):
        self.killing.set()

    def stop_after_kill(self):
        self.killed.set()
        for t in self.threads:
            t.join(timeout=60)
            assert not t.is_alive(), "a producer hung after the server was killed"


def test_acknowledged_records_survive_sigkill(tmp_data):
    server = Server(tmp_data).start()
    servers = [server]
    try:
        c = server.client()
        create_s3_stream(c, STREAM, BufferingHints={"SizeInMBs": 128, "IntervalInSeconds": 900})
        wal_id = server.status()["wal"]["wal_id"]
        all_acked = set()

        for cycle in range(CYCLES):
            producers = Producers(server, seed=cycle).start()
            eventually(lambda: producers.count() >= MIN_ACKED_BEFORE_KILL or producers.errors_before_kill,
                       f"{MIN_ACKED_BEFORE_KILL} acknowledged records (cycle {cycle})", timeout=90)
            producers.expect_kill()
            server.kill()  # the producers are still sending
            producers.stop_after_kill()
            assert not producers.errors_before_kill, producers.errors_before_kill[:5]
            acked = producers.acked
            assert len(acked) >= MIN_ACKED_BEFORE_KILL
            assert {i[:16] for i in acked} == {wal_id}, "every RecordId names this data directory's WAL"
            assert not (acked & all_acked), "RecordIds are never reused"
            all_acked |= acked

            stored = server.wal_record_ids()
            missing = all_acked - stored
            assert not missing, (f"cycle {cycle}: {len(missing)} of {len(all_acked)} acknowledged records are not "
                                 f"in the WAL after SIGKILL, e.g. {sorted(missing)[:5]}")
            summary, _ = server.wal_inspect()
            assert summary["next_lsn"] > max(map(lsn_of, all_acked))

            server = Server(tmp_data).start()
            servers.append(server)
            status = server.status()
            max_acked_lsn = max(map(lsn_of, all_acked))
            assert status["wal"]["wal_id"] == wal_id
            assert status["wal"]["next_lsn"] > max_acked_lsn
            assert status["streams"] == 1
            c = server.client()
            assert c.describe_delivery_stream(DeliveryStreamName=STREAM)["DeliveryStreamDescription"][
                "DeliveryStreamStatus"] == "ACTIVE"
            resp = c.put_record_batch(DeliveryStreamName=STREAM, Records=[{"Data": b"after restart"}] * 10)
            assert resp["FailedPutCount"] == 0
            new = {e["RecordId"] for e in resp["RequestResponses"]}
            assert len(new) == 10
            assert not (new & stored), "a RecordId handed out before the crash was handed out again"
            assert min(map(lsn_of, new)) > max_acked_lsn
            all_acked |= new

        assert server.stop() == 0
        assert all_acked <= server.wal_record_ids()
    finally:
        for s in servers:
            s.kill()


def test_data_dir_is_locked_while_the_server_runs(server, firehose):
    """A second server, or `wal inspect`, on a running server's data directory must refuse to open the WAL."""
    create_s3_stream(firehose, "locked")
    rid = firehose.put_record(DeliveryStreamName="locked", Record={"Data": b"x"})["RecordId"]
    try:
        second = subprocess.run([BIN, "serve", "--listen", f"127.0.0.1:{free_port()}", "--data-dir",
                                 str(server.data_dir), "--region", REGION, "--account-id", ACCOUNT_ID],
                                capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError("a second server started on a data directory that is in use") from None
    assert second.returncode != 0
    inspect = subprocess.run([BIN, "wal", "inspect", "--data-dir", str(server.data_dir)],
                             capture_output=True, text=True, timeout=60)
    assert inspect.returncode != 0, "wal inspect must not read the WAL of a running server"
    # The running server is unaffected.
    assert firehose.put_record(DeliveryStreamName="locked", Record={"Data": b"y"})["RecordId"] != rid
    assert server.stop() == 0
    assert rid in server.wal_record_ids()
