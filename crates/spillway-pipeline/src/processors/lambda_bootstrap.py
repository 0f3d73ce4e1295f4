"""spillway's local runtime for Python Lambda handlers (embedded in spillway; see lambda.rs).

Usage: python3 -B -c <this file> <path/to/module.py> <handler_name>

Imports the user's module the way the Lambda Python runtime does (its folder first on sys.path,
imported by module name, working directory = that folder), then serves invocations one at a time:

  stdin  (one line per invocation): {"event": {...}, "deadline_ms": <epoch ms>}
  stdout (one line per invocation): {"ok": <handler return value>}
                                  | {"error": {"errorMessage", "errorType", "stackTrace"}}

The protocol owns the process's original stdin/stdout. Everything the user's code prints (print(),
sys.stdout, os.write(1, ...), child processes) goes to stderr instead, which spillway forwards to
its log, as Lambda forwards stdout and stderr to CloudWatch Logs. The user's code sees an empty
stdin. EOF on the protocol stdin ends the process with status 0.

A handler that raises gets an error line and the process keeps serving (Lambda keeps the sandbox).
A handler that exits the process (sys.exit, os._exit, a crash) ends it; spillway restarts it.
An import failure is reported to every invocation (errorType Runtime.ImportModuleError) and the
import is retried on the next invocation, as Lambda retries a failed init.
Only the standard library is used.
"""

import decimal
import importlib
import io
import json
import logging
import os
import sys
import time
import traceback
import uuid


def _lambda_default(value):
    # The Lambda Python runtime serializes Decimal (e.g. from DynamoDB) as a number.
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class LambdaContext:
    """The attributes and method the Lambda Python runtime's context object offers."""

    def __init__(self, request_id, deadline_ms):
        env = os.environ
        self.aws_request_id = request_id
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = env.get("SPILLWAY_INVOKED_FUNCTION_ARN", "")
        # A string, as in the Lambda runtime (it comes from the environment there too).
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        remaining = self._deadline_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def log(self, message):
        sys.stderr.write(str(message))
        sys.stderr.flush()


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record):
        record.aws_request_id = _RequestIdFilter.request_id
        return True


def _install_log_handler():
    # Lambda installs a root handler, so logging.getLogger().info(...) is visible once the level
    # allows it; mirror its format.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
                          "%Y-%m-%dT%H:%M:%S")
    )
    handler.formatter.converter = time.gmtime
    handler.addFilter(_RequestIdFilter())
    logging.getLogger().addHandler(handler)


def _take_protocol_streams():
    """Keeps private handles to the original stdin/stdout and points fds 0/1 elsewhere."""
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    # sys.stdout still writes to fd 1, which is now stderr; flush per line so logs stay timely.
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True)
    sys.__stdout__ = sys.stdout
    sys.stdin = io.TextIOWrapper(os.fdopen(0, "rb", closefd=False), encoding="utf-8")
    sys.__stdin__ = sys.stdin
    return proto_in, proto_out


def _error(error_type, message, stack=None):
    return {"error": {"errorMessage": message, "errorType": error_type, "stackTrace": stack or []}}


def _exception_error(exc, error_type=None, message=None, skip_frames=0):
    stack = traceback.format_tb(exc.__traceback__)[skip_frames:]
    kind = error_type or type(exc).__name__
    message = message or str(exc)
    sys.stderr.write(f"[ERROR] {kind}: {message}\nTraceback (most recent call last):\n{''.join(stack)}")
    sys.stderr.flush()
    return _error(kind, message, stack)


def _load_handler(path, handler_name):
    folder = os.path.dirname(os.path.abspath(path))
    module_name = os.path.splitext(os.path.basename(path))[0]
    if folder not in sys.path:
        sys.path.insert(0, folder)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - reported to the caller like Lambda does
        message = f"Unable to import module '{module_name}': {exc}"
        return None, _exception_error(exc, "Runtime.ImportModuleError", message)
    handler = getattr(module, handler_name, None)
    if handler is None or not callable(handler):
        message = f"Handler '{handler_name}' missing on module '{module_name}'"
        sys.stderr.write(f"[ERROR] Runtime.HandlerNotFound: {message}\n")
        sys.stderr.flush()
        return None, _error("Runtime.HandlerNotFound", message)
    return handler, None


def _invoke(handler, line):
    try:
        request = json.loads(line)
        event = request["event"]
        deadline_ms = int(request.get("deadline_ms") or (time.time() * 1000 + 300_000))
    except Exception as exc:  # noqa: BLE001
        return _error("Runtime.InvalidRequest", f"invalid request line: {exc}")
    request_id = event.get("invocationId") if isinstance(event, dict) else None
    request_id = request_id or str(uuid.uuid4())
    _RequestIdFilter.request_id = request_id
    context = LambdaContext(request_id, deadline_ms)
    try:
        result = handler(event, context)
    except Exception as exc:  # noqa: BLE001 - an unhandled exception is a function error
        # Skip this file's frame, as Lambda shows only the handler's frames.
        return _exception_error(exc, skip_frames=1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return {"ok": result}


def _encode(reply):
    try:
        return json.dumps(reply, default=_lambda_default)
    except (TypeError, ValueError) as exc:
        message = f"Unable to marshal response: {exc}"
        sys.stderr.write(f"[ERROR] Runtime.MarshalError: {message}\n")
        sys.stderr.flush()
        return json.dumps(_error("Runtime.MarshalError", message))


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: lambda_bootstrap.py <path/to/module.py> <handler_name>\n")
        sys.exit(2)
    path, handler_name = sys.argv[1], sys.argv[2]
    proto_in, proto_out = _take_protocol_streams()
    sys.argv = [path]
    os.environ.setdefault(
        "AWS_LAMBDA_LOG_STREAM_NAME", time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()) + uuid.uuid4().hex
    )
    _install_log_handler()
    folder = os.path.dirname(os.path.abspath(path))
    os.chdir(folder)
    handler, init_error = _load_handler(path, handler_name)
    while True:
        line = proto_in.readline()
        if not line:
            return
        if not line.strip():
            continue
        if handler is None:
            handler, init_error = _load_handler(path, handler_name)
        reply = init_error if handler is None else _invoke(handler, line)
        proto_out.write(_encode(reply).encode("utf-8") + b"\n")
        proto_out.flush()


main()
