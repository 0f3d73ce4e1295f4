"""Like upper_command.py, without the `!`: every record comes back upper-cased, so a JSON record stays JSON (for record
format conversion after a function)."""

import base64
import json
import sys

for line in sys.stdin:
    event = json.loads(line)["event"]
    records = [{"recordId": r["recordId"], "result": "Ok",
                "data": base64.b64encode(base64.b64decode(r["data"]).upper()).decode()}
               for r in event["records"]]
    sys.stdout.write(json.dumps({"ok": {"records": records}}) + "\n")
    sys.stdout.flush()
