"""rbee's own clients, as they speak to a hive, re-implemented from the public
rbee source (repository rbee-keeper/rbee; docs/rbee.md names the files and
the commit) so that the tests can drive this daemon exactly as rbee would.

What is reproduced, byte for byte where it reaches the wire:

- JobClient (bin/99_shared_crates/job-client/src/lib.rs), built on reqwest
  0.12 with default features off: header names in lower case, the client's
  default `accept: */*`, `content-type: application/json` from `.json()`,
  `host` and `content-length` added by hyper, in that order; no user-agent,
  no accept-encoding. The body is `serde_json::to_value(&operation)` sent
  compact: serde_json's map is a BTreeMap, so the keys come sorted unless a
  crate of the build turns on serde_json's `preserve_order` (then in the
  declaration order of operations-contract, the tag first). The POST's
  keep-alive connection is reused for the stream, as reqwest's pool does.
- Its submission parse: the answer of POST /v1/jobs is read as
  `{job_id, sse_url}` whatever its status; the stream URL is built from the
  job id (`sse_url` is not used).
- Its line parser: bytes are split at `\\n`, each line decoded as UTF-8 (a
  line that is not is skipped), trimmed, stripped of `data: ` or `data:`,
  skipped when empty, handed to the handler, then checked for the end
  markers `[DONE]`, `[CANCELLED]` and `[ERROR]...`. Any other line (`id: 3`,
  `event: progress`, `: comment`) reaches the handler as it is. A stream
  that closes without a marker ends without an error.
- The keeper (bin/00_rbee_keeper/src/job_client.rs): prints every line the
  handler gets, on its own, to stdout; its Ctrl-C sends
  `DELETE /v1/jobs/{id}` from a new client with a 2 s timeout and gives up
  the stream.
- useModels (rbee-hive-react): keeps the model list of a line that starts
  with `{`, holds `"action"` and parses to `action == "model_list"` with a
  `payload`; a stream without one is an empty list.
"""

import http.client
import json
import threading
import time
import urllib.parse

# The operation fields of operations-contract's request structs, in their
# declaration order; the serde tag `operation` comes first.
OPERATION_FIELDS = {
    "model_download": ("hive_id", "model"),
    "model_list": ("hive_id",),
    "model_get": ("hive_id", "id"),
    "model_delete": ("hive_id", "id"),
    "model_load": ("hive_id", "id", "device"),
    "model_unload": ("hive_id", "id"),
    "worker_process_list": ("hive_id",),
    "hive_check": ("alias",),
}

# The keeper's TimeoutEnforcer around the stream (job_client.rs).
KEEPER_TIMEOUT_S = {"model_download": 600, "worker_install": 900}
KEEPER_DEFAULT_TIMEOUT_S = 30

DONE, CANCELLED, ERROR_PREFIX = "[DONE]", "[CANCELLED]", "[ERROR]"


class RbeeError(Exception):
    """An anyhow error the Rust client would return; str() is its message."""


def operation_body(operation, key_order="sorted", **fields):
    """The bytes JobClient posts for an operation: compact JSON, keys sorted
    (serde_json's default map) or in declaration order (`preserve_order`)."""
    names = OPERATION_FIELDS[operation]
    if set(fields) != set(names):
        raise ValueError("%s takes %s" % (operation, ", ".join(names)))
    pairs = [("operation", operation)] + [(k, fields[k]) for k in names]
    if key_order == "sorted":
        pairs.sort()
    elif key_order != "declared":
        raise ValueError("key_order is sorted or declared")
    return json.dumps(dict(pairs), separators=(",", ":"), ensure_ascii=False).encode()


def is_completion_marker(line):
    return line == DONE or line == CANCELLED or line.startswith(ERROR_PREFIX)


def _data_of(line):
    """A trimmed line without its `data: ` or `data:` prefix."""
    if line.startswith("data: "):
        return line[6:]
    if line.startswith("data:"):
        return line[5:]
    return line


class Exchange:
    """What one request sent and got: for the tests' own checks."""

    def __init__(self, method, path, headers, body):
        self.method, self.path, self.headers, self.body = method, path, headers, body
        self.status, self.response_headers, self.response_body = None, None, None


class JobClient:
    """job-client's JobClient against base_url (as the Rust client is given
    it: `http://localhost:7835`, `http://hive.lan:7835`). connect: the
    (address, port) to reach instead of resolving base_url's host, as
    a name in /etc/hosts would; the Host header still names base_url's."""

    def __init__(self, base_url, connect=None, timeout=30, key_order="sorted"):
        u = urllib.parse.urlsplit(base_url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError("base_url must be http://HOST[:PORT]")
        self.base_url = base_url.rstrip("/")
        self.host_header = u.netloc
        self.connect = connect or (u.hostname, u.port or 80)
        self.timeout = timeout
        self.key_order = key_order
        self._conn = None
        self.exchanges = []

    # -- the wire -------------------------------------------------------------

    def _connection(self, fresh=False):
        if fresh or self._conn is None:
            if self._conn is not None:
                self._conn.close()
            self._conn = http.client.HTTPConnection(self.connect[0], self.connect[1],
                                                    timeout=self.timeout)
        return self._conn

    def _request(self, method, path, body=None, fresh=False):
        """Sends one request with reqwest's headers; returns the open response.
        A reused connection the server has closed is retried once on a new
        one, as reqwest's pool does for a request that never went out."""
        headers = []
        if body is not None:
            headers.append(("content-type", "application/json"))
        headers.append(("accept", "*/*"))
        headers.append(("host", self.host_header))
        if body is not None:
            headers.append(("content-length", str(len(body))))
        elif method in ("POST", "PUT"):
            # hyper announces the empty body of a method that usually has one.
            headers.append(("content-length", "0"))
        ex = Exchange(method, path, headers, body)
        self.exchanges.append(ex)
        for attempt in (0, 1):
            conn = self._connection(fresh=fresh or attempt == 1)
            try:
                conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders(body)
                resp = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if attempt == 1:
                    raise
        ex.status = resp.status
        ex.response_headers = resp.getheaders()
        return ex, resp

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- JobClient --------------------------------------------------------------

    def submit(self, operation, **fields):
        """POST /v1/jobs; (job_id, exchange). The answer is parsed as
        JobResponse whatever its status."""
        body = operation_body(operation, self.key_order, **fields)
        try:
            ex, resp = self._request("POST", "/v1/jobs", body)
            raw = resp.read()
        except OSError as e:
            raise RbeeError("Cannot connect to %s - is the service running?\n\nOperation: %s"
                            "\nURL: %s\n\nOriginal error: %s"
                            % ("rbee-hive", operation, self.base_url, e))
        ex.response_body = raw
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise RbeeError("Failed to parse job response: error decoding response body: %s" % e)
        for field in ("job_id", "sse_url"):
            if not isinstance(doc, dict) or field not in doc:
                raise RbeeError("Failed to parse job response: error decoding response body: "
                                "missing field `%s`" % field)
            if not isinstance(doc[field], str):
                raise RbeeError("Failed to parse job response: error decoding response body: "
                                "invalid type for `%s`, expected a string" % field)
        return doc["job_id"], ex

    def stream(self, job_id, line_handler, stop=None):
        """GET /v1/jobs/{id}/stream and the line loop of stream_job_results.
        Returns None on [DONE] or a stream that just ends; raises RbeeError
        on [CANCELLED] ("Job was cancelled"), [ERROR] ("Job failed: ...") or
        a failed request. stop: a threading.Event that ends the loop (the
        keeper's process exiting under it)."""
        ex, resp = self._request("GET", "/v1/jobs/%s/stream" % job_id)
        if not 200 <= resp.status < 300:
            text = resp.read().decode("utf-8", "replace")
            ex.response_body = text
            raise RbeeError("SSE stream returned error: %s" % text)
        self.stream_response = resp
        buf = b""
        while True:
            if stop is not None and stop.is_set():
                return None
            try:
                chunk = resp.read1(65536)
            except (OSError, ValueError, http.client.HTTPException) as e:
                if stop is not None and stop.is_set():
                    return None
                raise RbeeError("Stream error: %s" % e)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    continue
                data = _data_of(line.strip())
                if not data:
                    continue
                line_handler(data)
                if is_completion_marker(data):
                    if data == DONE:
                        return None
                    if data == CANCELLED:
                        raise RbeeError("Job was cancelled")
                    msg = data[len(ERROR_PREFIX):]
                    msg = msg[1:] if msg.startswith(" ") else data
                    raise RbeeError("Job failed: %s" % msg)
        # What is left without a newline: only `data: ` is stripped here.
        if buf:
            try:
                line = buf.decode("utf-8").strip()
            except UnicodeDecodeError:
                return None
            data = line[6:] if line.startswith("data: ") else line
            if data:
                line_handler(data)
        return None

    def submit_and_stream(self, operation, line_handler, **fields):
        job_id, _ = self.submit(operation, **fields)
        self.stream(job_id, line_handler)
        return job_id


class KeeperRun:
    """What one keeper command did: the lines it printed to stdout, its
    narration (stderr), its error (None on success), the job id, and the
    requests its clients made."""

    def __init__(self):
        self.stdout, self.narration = [], []
        self.error, self.job_id, self.exchanges = None, None, []
        self.cancel_status = None


def keeper(base_url, operation, connect=None, ctrl_c=None, **fields):
    """`rbee model ...` against a hive at base_url: submit_and_stream_job of
    bin/00_rbee_keeper/src/job_client.rs. ctrl_c: a function given each
    printed line that returns True when the user presses Ctrl-C then."""
    run = KeeperRun()
    client = JobClient(base_url, connect=connect)
    pressed = threading.Event()
    finished = threading.Event()
    job_failed = [False]
    run.narration.append("📋 Job submitted: %s" % operation)

    def handler(line):
        run.stdout.append(line)
        if "failed:" in line or ("Job" in line and "failed" in line):
            job_failed[0] = True
        if "[DONE]" in line:
            run.narration.append("%s: %s" % ("❌ Failed" if job_failed[0] else "✅ Complete",
                                             operation))
        if ctrl_c is not None and not pressed.is_set() and ctrl_c(line):
            pressed.set()

    outcome = {}

    def task():
        try:
            run.narration.append("📡 Streaming results for %s" % operation)
            run.job_id, _ = client.submit(operation, **fields)
            got_id.set()
            client.stream(run.job_id, handler, stop=pressed)
        except RbeeError as e:
            outcome["error"] = str(e)
        finally:
            got_id.set()
            finished.set()

    got_id = threading.Event()
    t = threading.Thread(target=task, daemon=True)
    t.start()
    got_id.wait(KEEPER_DEFAULT_TIMEOUT_S)
    deadline = time.monotonic() + KEEPER_TIMEOUT_S.get(operation, KEEPER_DEFAULT_TIMEOUT_S)
    while not finished.is_set() and not pressed.is_set() and time.monotonic() < deadline:
        finished.wait(0.02)
    if pressed.is_set() and run.job_id:
        # tokio::select! took the ctrl_c branch: a best-effort DELETE, then the
        # process exits and its stream connection closes. (The stream thread
        # stops reading once the key is pressed: it stands for the process.)
        run.narration.append("🛑 Cancelling operation...")
        canceller = JobClient(base_url, connect=connect, timeout=2)
        try:
            ex, resp = canceller._request("DELETE", "/v1/jobs/%s" % run.job_id)
            ex.response_body = resp.read()
            run.cancel_status = ex.status
        except OSError:
            pass
        run.exchanges += canceller.exchanges
        canceller.close()
        run.narration.append("🛑 Operation cancelled by user")
        run.error = "Operation cancelled by user"
        _close_stream(client)
        t.join(5)
    elif not finished.is_set():
        run.error = "Streaming job results timed out"
        _close_stream(client)
        t.join(5)
    else:
        run.error = outcome.get("error")
    run.exchanges = client.exchanges + run.exchanges
    client.close()
    return run


def _close_stream(client):
    resp = getattr(client, "stream_response", None)
    if resp is not None and resp.fp is not None:
        try:
            resp.fp.raw._sock.shutdown(2)
        except (AttributeError, OSError):
            pass
    client.close()


def use_models(base_url, connect=None):
    """The hive UI's useModels(): model_list with hive_id = the page's host
    name; the models of the `model_list` data line, or [] without one.
    Returns (models, lines)."""
    hive_id = urllib.parse.urlsplit(base_url).hostname
    client = JobClient(base_url, connect=connect, timeout=10)
    found = [None]
    lines = []

    def handler(line):
        lines.append(line)
        if line == DONE or line.startswith("event: data"):
            return
        if line.startswith("{") and '"action"' in line:
            try:
                ev = json.loads(line)
            except ValueError:
                return
            if isinstance(ev, dict) and ev.get("action") == "model_list" and ev.get("payload"):
                found[0] = ev["payload"].get("models")

    try:
        client.submit_and_stream("model_list", handler, hive_id=hive_id)
    finally:
        client.close()
    return found[0] or [], lines


def health(base_url, connect=None):
    """lifecycle's check_daemon_health: GET /health, running when 2xx.
    Returns (status, body)."""
    client = JobClient(base_url, connect=connect, timeout=5)
    try:
        ex, resp = client._request("GET", "/health")
        return ex.status, resp.read().decode("utf-8", "replace")
    finally:
        client.close()


def shutdown(base_url, connect=None):
    """The keeper's `rbee hive stop`: POST /v1/shutdown without a body.
    Returns the status, or None when the connection closed first."""
    client = JobClient(base_url, connect=connect, timeout=5)
    try:
        ex, resp = client._request("POST", "/v1/shutdown")
        resp.read()
        return ex.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        client.close()
