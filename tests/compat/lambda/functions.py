"""Small transformation functions for test_processing.py, each a Lambda handler `handler(event, context)` that
spillway runs unchanged from this file (`[functions."..."] file = ".../functions.py", handler = "<name>"`).

Record data are command words or JSON objects; see each handler. When $CALLS_FILE is set, every invocation appends
one JSON line `{"handler", "invocationId", "recordIds", "data", "event", "recordKeys", "arrivals"}` to it (data decoded
as text; `event` without its records), so a test can count invocations and check what a retry resent.
"""

import base64
import json
import os
import time


def _log_call(name, event):
    path = os.environ.get("CALLS_FILE")
    if not path:
        return
    line = {
        "handler": name,
        "invocationId": event["invocationId"],
        "recordIds": [r["recordId"] for r in event["records"]],
        "data": [base64.b64decode(r["data"]).decode("utf-8", "replace") for r in event["records"]],
        "event": {k: v for k, v in event.items() if k != "records"},
        "recordKeys": sorted({k for r in event["records"] for k in r}),
        "arrivals": [r.get("approximateArrivalTimestamp") for r in event["records"]],
    }
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")


def _data(record):
    return base64.b64decode(record["data"])


def _ok(record, data):
    return {"recordId": record["recordId"], "result": "Ok", "data": base64.b64encode(data).decode()}


def echo(event, context):
    """Every record back unchanged."""
    _log_call("echo", event)
    return {"records": [_ok(r, _data(r)) for r in event["records"]]}


def raises(event, context):
    """Always raises: the invocation fails (Lambda.FunctionError)."""
    _log_call("raises", event)
    raise RuntimeError("raises: this function always fails")


def partial(event, context):
    """Per record: data containing `fail` → ProcessingFailed, containing `drop` → Dropped, else Ok with the data
    upper-cased and `|t` appended (so a transformed record is recognisable)."""
    _log_call("partial", event)
    out = []
    for r in event["records"]:
        data = _data(r)
        if b"fail" in data:
            out.append({"recordId": r["recordId"], "result": "ProcessingFailed", "data": r["data"]})
        elif b"drop" in data:
            out.append({"recordId": r["recordId"], "result": "Dropped", "data": r["data"]})
        else:
            out.append(_ok(r, data.upper() + b"|t"))
    return {"records": out}


def partition_keys(event, context):
    """JSON records: returns them unchanged (plus a newline) with `metadata.partitionKeys` {"tenant": .tenant,
    "region": .region} (keys whose field is absent are left out)."""
    _log_call("partition_keys", event)
    out = []
    for r in event["records"]:
        obj = json.loads(_data(r))
        keys = {k: obj[k] for k in ("tenant", "region") if k in obj}
        rec = _ok(r, json.dumps(obj, separators=(",", ":")).encode() + b"\n")
        rec["metadata"] = {"partitionKeys": keys}
        out.append(rec)
    return {"records": out}


def sleepy(event, context):
    """Sleeps 30 s when a record is `sleep` (past any small timeout_secs), else echoes."""
    _log_call("sleepy", event)
    if any(_data(r) == b"sleep" for r in event["records"]):
        time.sleep(30)
    return {"records": [_ok(r, _data(r)) for r in event["records"]]}


def crashy(event, context):
    """Ends the worker process abruptly when a record is `crash`, else echoes."""
    _log_call("crashy", event)
    if any(_data(r) == b"crash" for r in event["records"]):
        os._exit(3)
    return {"records": [_ok(r, _data(r)) for r in event["records"]]}


def tagged(event, context):
    """JSON records with an `id`: Ok with `{"id": <id>, "seen": true}` + LF (a transformation the crash test can
    recognise); `{"drop": true}` records are Dropped."""
    out = []
    for r in event["records"]:
        obj = json.loads(_data(r))
        if obj.get("drop"):
            out.append({"recordId": r["recordId"], "result": "Dropped", "data": r["data"]})
            continue
        out.append(_ok(r, json.dumps({"id": obj["id"], "seen": True}).encode() + b"\n"))
    return {"records": out}
