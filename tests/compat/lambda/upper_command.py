"""A function that is not a Python handler file: a program speaking spillway's JSON-lines protocol (module header of
crates/spillway-pipeline/src/processors/lambda.rs). One request line `{"event": ..., "deadline_ms": ...}` in, one
response line `{"ok": <response>}` out; every record comes back upper-cased with `!` appended."""

import base64
import json
import sys

for line in sys.stdin:
    event = json.loads(line)["event"]
    records = [{"recordId": r["recordId"], "result": "Ok",
                "data": base64.b64encode(base64.b64decode(r["data"]).upper() + b"!").decode()}
               for r in event["records"]]
    sys.stdout.write(json.dumps({"ok": {"records": records}}) + "\n")
    sys.stdout.flush()
