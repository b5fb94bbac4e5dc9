"""The client subcommands against a small stand-in daemon that answers the
HTTP API of docs/api.md (job protocol, SSE stream, resource API). It
checks what the CLI sends and how it shows what it gets: tables, NDJSON,
phase lines, progress bars on a pseudo-terminal, Ctrl-C, reconnects, tokens
and exit statuses. test_cli_daemon.py runs the CLI against the real daemon.
"""

import http.server
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clihelp import BIN, CliMixin  # noqa: E402

SHA_A = "a" * 64
SHA_B = "b" * 64
MODEL_ID = "hf:org/repo:sub/model.Q4_K_M.gguf"


def now_ms():
    return int(time.time() * 1000)


class Job:
    def __init__(self, job_id, operation, model):
        self.id = job_id
        self.operation = operation
        self.model = model
        self.state = "running"
        self.events = []  # (id, kind, data)
        self.cancel_requested = False
        self.created_ms = now_ms()
        self.progress = None


class Stub:
    """State of the stand-in daemon; one lock guards everything."""

    def __init__(self):
        self.lock = threading.Condition()
        self.jobs = {}
        self.requests = []  # (method, path, headers dict)
        self.token = None
        self.verify_supported = True
        self.drop_after = 0  # close the first stream of a job after this many events
        self.ignore_cancel = False
        self.models = {
            MODEL_ID: {
                "id": MODEL_ID,
                "status": "available",
                "size": 4368439584,
                "source": "hf",
                "repo": "org/repo",
                "revision": "main",
                "commit": "c" * 40,
                "created_ms": now_ms() - 3 * 3600 * 1000,
                "gguf": {
                    "architecture": "llama",
                    "quantization": "Q4_K_M",
                    "parameters": 7241732096,
                    "context_length": 32768,
                },
                "files": [
                    {"path": "sub/model.Q4_K_M.gguf", "size": 4368439584, "sha256": SHA_A},
                ],
                "quantizations": ["Q4_K_M"],
            },
            "hf:org/busy:x.gguf": {
                "id": "hf:org/busy:x.gguf",
                "status": "downloading",
                "size": 1000,
                "created_ms": now_ms(),
                "files": [],
            },
        }

    def new_job(self, operation, model):
        with self.lock:
            job_id = "job-%016x" % (len(self.jobs) + 1)
            job = Job(job_id, operation, model)
            self.jobs[job_id] = job
        return job

    def emit(self, job, kind, data):
        with self.lock:
            job.events.append((len(job.events) + 1, kind, data))
            if kind == "progress":
                job.progress = json.loads(data)
            if kind in ("done", "error", "cancelled"):
                job.state = {"done": "succeeded", "error": "failed", "cancelled": "cancelled"}[kind]
            self.lock.notify_all()

    def progress(self, job, phase, file, files_done, files_total, done, total):
        self.emit(job, "progress", json.dumps({
            "job_id": job.id, "state": "running", "phase": phase, "file": file,
            "files_done": files_done, "files_total": files_total,
            "bytes_done": done, "bytes_total": total,
            "rate_bps": 25000000.0, "eta_s": 12}))

    def run_job(self, job):
        """The scripted life of a job, on its own thread."""
        m = job.model or ""
        if job.operation == "model_verify":
            self.emit(job, "narration", "verifying %s" % (job.model or "every model"))
            self.progress(job, "verifying", "sub/model.Q4_K_M.gguf", 0, 1, 0, 100)
            self.emit(job, "narration", "ok sub/model.Q4_K_M.gguf")
            self.emit(job, "data", json.dumps({"files": [{"path": "sub/model.Q4_K_M.gguf", "ok": True}]}))
            self.emit(job, "done", "")
            return
        self.emit(job, "narration", "resolving %s" % m)
        self.progress(job, "resolving", None, 0, 0, 0, 0)
        if m.endswith(":fail"):
            self.emit(job, "error", "digest mismatch on x.gguf")
            return
        if m.endswith(":stop"):
            self.emit(job, "error", "interrupted: the daemon is stopping; "
                      "the job resumes when the daemon is back")
            return
        if m.endswith(":slow"):
            # Runs until cancelled, a few progress events a second.
            done = 0
            while True:
                with self.lock:
                    if job.cancel_requested and not self.ignore_cancel:
                        break
                done = min(done + 3000000, 999000000)
                self.progress(job, "downloading", "big.gguf", 0, 1, done, 1000000000)
                time.sleep(0.05)
            self.emit(job, "narration", "cancelled; the partial stays for resume")
            self.emit(job, "cancelled", "")
            return
        total = 3000
        for i, f in enumerate(["a.gguf", "b.gguf"]):
            for k in range(1, 4):
                self.progress(job, "downloading", f, i, 2, i * 1500 + k * 500, total)
                time.sleep(0.01)
        self.progress(job, "verifying", "b.gguf", 2, 2, total, total)
        self.progress(job, "publishing", None, 2, 2, total, total)
        self.emit(job, "narration", "pulled %s" % m)
        self.emit(job, "done", "")


STUB = Stub()


def sse_frame(ev_id, kind, data):
    if kind == "progress":
        return "id: %d\nevent: progress\ndata: %s\n\n" % (ev_id, data)
    if kind == "data":
        return "id: %d\nevent: data\ndata: %s\n\n" % (ev_id, data)
    if kind == "narration":
        return "id: %d\ndata: %s\n\n" % (ev_id, data)
    text = {"done": "[DONE]", "error": "[ERROR] " + data, "cancelled": "[CANCELLED]"}[kind]
    return "id: %d\ndata: %s\n\n" % (ev_id, text)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, code, message):
        self.answer(status, {"error": {"code": code, "message": message}})

    def route(self, method):
        with STUB.lock:
            STUB.requests.append((method, self.path, dict(self.headers)))
        if STUB.token and self.headers.get("Authorization") != "Bearer " + STUB.token:
            return self.error(401, "unauthorized", "a bearer token is required")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = self.path.split("?")[0].split("/")[1:]
        if parts[:2] == ["v1", "jobs"]:
            if method == "POST" and len(parts) == 2:
                return self.submit(body)
            if method == "GET" and len(parts) == 2:
                with STUB.lock:
                    jobs = [{"job_id": j.id, "operation": j.operation, "state": j.state,
                             "model": j.model, "created_ms": j.created_ms,
                             "progress": j.progress} for j in STUB.jobs.values()]
                return self.answer(200, {"jobs": jobs[::-1]})
            job = STUB.jobs.get(parts[2]) if len(parts) > 2 else None
            if not job:
                return self.error(404, "not_found", "job '%s' not found" % parts[2])
            if method == "GET" and parts[3:] == ["stream"]:
                return self.stream(job)
            if method == "POST" and parts[3:] == ["cancel"]:
                with STUB.lock:
                    if job.state != "running":
                        return self.answer(409, {"job_id": job.id, "status": job.state})
                    job.cancel_requested = True
                return self.answer(200, {"job_id": job.id, "status": "cancelled"})
        if parts[:2] == ["v1", "models"]:
            if method == "GET" and len(parts) == 2:
                return self.answer(200, {"models": list(STUB.models.values())})
            mid = urllib.parse.unquote(parts[2]) if len(parts) == 3 else ""
            model = STUB.models.get(mid)
            if not model:
                return self.error(404, "not_found", "model '%s' not found" % mid)
            if method == "GET":
                return self.answer(200, model)
            if method == "DELETE":
                if model["status"] == "downloading":
                    return self.error(409, "conflict", "model '%s' is downloading" % mid)
                del STUB.models[mid]
                return self.answer(200, {"id": mid, "status": "deleted"})
        return self.error(404, "not_found", "no route")

    def submit(self, body):
        try:
            req = json.loads(body)
        except ValueError:
            return self.error(400, "bad_request", "malformed JSON")
        op = req.get("operation")
        if op == "model_verify" and not STUB.verify_supported:
            return self.error(422, "unprocessable", "unknown operation 'model_verify'")
        if op not in ("model_download", "model_verify"):
            return self.error(422, "unprocessable", "unknown operation '%s'" % op)
        job = STUB.new_job(op, req.get("model") or req.get("id"))
        threading.Thread(target=STUB.run_job, args=(job,), daemon=True).start()
        return self.answer(201, {"job_id": job.id, "sse_url": "/v1/jobs/%s/stream" % job.id})

    def stream(self, job):
        last = int(self.headers.get("Last-Event-ID") or 0)
        with STUB.lock:
            first = not getattr(job, "streamed", False)
            job.streamed = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        sent = 0
        try:
            self.wfile.write(b": hello\n\n")
            while True:
                with STUB.lock:
                    while len(job.events) <= last:
                        if not STUB.lock.wait(timeout=0.5):
                            break
                    new = job.events[last:]
                for ev_id, kind, data in new:
                    self.wfile.write(sse_frame(ev_id, kind, data).encode())
                    self.wfile.flush()
                    last = ev_id
                    sent += 1
                    if kind in ("done", "error", "cancelled"):
                        return
                    if first and STUB.drop_after and sent >= STUB.drop_after:
                        return
                if not new:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")


class CliStubTest(CliMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        cls.server.daemon_threads = True
        cls.url = "http://127.0.0.1:%d" % cls.server.server_address[1]
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.tmp = tempfile.mkdtemp(prefix="rbee-cli-")

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        STUB.token = None
        STUB.verify_supported = True
        STUB.drop_after = 0
        STUB.ignore_cancel = False



    def requests(self, method, prefix):
        with STUB.lock:
            return [r for r in STUB.requests if r[0] == method and r[1].startswith(prefix)]

    # -- finding the daemon, usage ------------------------------------------

    def test_no_daemon(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        url = "http://127.0.0.1:%d" % port
        rc, out, err = self.run_cli("ls", "--url", url)
        self.assertEqual(rc, 1)
        self.assertIn("rbee-hive: no daemon answers at %s" % url, err)
        self.assertIn("rbee-hive serve", err)
        rc, out, err = self.run_cli("pull", "hf:org/repo", env=self.env(RBEE_HIVE_URL=url))
        self.assertEqual(rc, 1)
        self.assertIn("no daemon answers at %s" % url, err)

    def test_usage_and_help(self):
        for cmd in ("pull", "ls", "show", "rm", "jobs", "cancel", "verify"):
            rc, out, err = self.run_cli(cmd, "--help")
            self.assertEqual(rc, 0, cmd)
            self.assertTrue(out.startswith("usage: rbee-hive %s" % cmd), out)
            self.assertIn("--url", out)
            self.assertIn("--json", out)
        self.assertEqual(self.run_cli("pull")[0], 2)
        rc, out, err = self.run_cli("ls", "--bogus")
        self.assertEqual(rc, 2)
        self.assertIn("unknown option '--bogus'", err)
        self.assertEqual(self.run_cli("show", "a", "b")[0], 2)
        self.assertEqual(self.run_cli("ls", "--url", "ftp://x")[0], 2)
        self.assertEqual(self.run_cli("nonsense")[0], 2)

    def test_man_page_covers_commands(self):
        src = os.environ.get("RBEE_SRC", os.path.dirname(os.path.dirname(
            os.path.dirname(os.path.abspath(__file__)))))
        with open(os.path.join(src, "docs", "rbee-hive.1")) as f:
            man = f.read()
        rc, out, err = self.run_cli("--help")
        commands = [l.split()[0] for l in out.splitlines() if l.startswith("  ")]
        self.assertIn("pull", commands)
        for cmd in commands:
            self.assertTrue(re.search(r"(?m)^\.(B|BI|BR) %s\b" % cmd, man),
                            "docs/rbee-hive.1 does not describe '%s'" % cmd)

    # -- pull ---------------------------------------------------------------

    def test_pull_lines(self):
        rc, out, err = self.run_cli("pull", "hf:org/repo:Q4_K_M")
        self.assertEqual(rc, 0, err)
        # The narration and nothing of the progress events: the daemon narrates
        # every phase itself, so a line per phase here would repeat it.
        self.assertEqual(out.splitlines(), ["resolving hf:org/repo:Q4_K_M",
                                            "pulled hf:org/repo:Q4_K_M", "done"])
        self.assertNotIn("\r", out)
        self.assertNotIn("\033", out)
        post = self.requests("POST", "/v1/jobs")[-1]
        self.assertEqual(post[2].get("Content-Type"), "application/json")

    def test_pull_json(self):
        rc, out, err = self.run_cli("pull", "--json", "hf:org/repo:Q4_K_M")
        self.assertEqual(rc, 0, err)
        events = [json.loads(l) for l in out.splitlines()]
        kinds = [e["event"] for e in events]
        self.assertEqual(kinds[-1], "done")
        progress = [e for e in events if e["event"] == "progress"]
        self.assertGreaterEqual(len(progress), 6)
        self.assertEqual(progress[-1]["data"]["phase"], "publishing")
        self.assertEqual(progress[1]["data"]["bytes_total"], 3000)
        self.assertIn({"event": "message", "id": "1", "data": "resolving hf:org/repo:Q4_K_M"},
                      events)

    def test_pull_detach(self):
        before = len(self.requests("GET", "/v1/jobs/"))
        rc, out, err = self.run_cli("pull", "--detach", "hf:org/repo:Q4_K_M")
        self.assertEqual(rc, 0, err)
        job_id = out.strip()
        self.assertRegex(job_id, r"^job-[0-9a-f]{16}$")
        self.assertIn(job_id, STUB.jobs)
        self.assertEqual(len(self.requests("GET", "/v1/jobs/")), before)
        rc, out, err = self.run_cli("pull", "--detach", "--json", "hf:org/repo:Q4_K_M")
        self.assertEqual(rc, 0)
        self.assertTrue(json.loads(out)["sse_url"].endswith("/stream"))

    def test_pull_failure(self):
        rc, out, err = self.run_cli("pull", "hf:org/repo:fail")
        self.assertEqual(rc, 1)
        self.assertIn("rbee-hive: pull failed: digest mismatch on x.gguf", err)
        rc, out, err = self.run_cli("pull", "--json", "hf:org/repo:fail")
        self.assertEqual(rc, 1)
        last = json.loads(out.splitlines()[-1])
        self.assertEqual(last, {"event": "error", "message": "digest mismatch on x.gguf"})

    def test_pull_interrupted_by_a_stop(self):
        # The daemon stopped first: not a failure of the job, which resumes.
        rc, out, err = self.run_cli("pull", "hf:org/repo:stop")
        self.assertEqual(rc, 75, err)
        self.assertRegex(err, r"rbee-hive: the daemon stopped; job job-[0-9a-f]+ resumes when "
                              r"the daemon is back")
        self.assertNotIn("failed", err)
        rc, out, err = self.run_cli("pull", "--json", "hf:org/repo:stop")
        self.assertEqual(rc, 75)
        last = json.loads(out.splitlines()[-1])
        self.assertEqual(last["event"], "interrupted")
        self.assertTrue(last["message"].startswith("interrupted: the daemon is stopping"), last)

    def test_pull_resumes_dropped_stream(self):
        STUB.drop_after = 3
        rc, out, err = self.run_cli("pull", "--json", "hf:org/repo:Q4_K_M")
        self.assertEqual(rc, 0, err)
        events = [json.loads(l) for l in out.splitlines()]
        ids = [int(e["id"]) for e in events if "id" in e]
        # Every event exactly once, in order, across the reconnect.
        self.assertEqual(ids, list(range(1, len(ids) + 1)))
        job_id = list(STUB.jobs)[-1]
        streams = self.requests("GET", "/v1/jobs/%s/stream" % job_id)
        self.assertEqual(len(streams), 2)
        self.assertNotIn("Last-Event-ID", streams[0][2])
        self.assertEqual(streams[1][2].get("Last-Event-ID"), "3")

    # -- resource commands --------------------------------------------------

    def test_ls(self):
        rc, out, err = self.run_cli("ls")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "SIZE", "QUANT", "STATUS", "AGE"])
        row = next(l for l in lines if l.startswith(MODEL_ID))
        self.assertIn("4.37 GB", row)
        self.assertIn("Q4_K_M", row)
        self.assertIn("available", row)
        self.assertIn("3h ago", row)
        # Columns line up: every row's SIZE starts where the header's does.
        col = lines[0].index("SIZE")
        self.assertEqual(row[col:col + 4], "4.37")
        rc, out, err = self.run_cli("ls", "--json")
        self.assertEqual(rc, 0)
        self.assertIn(MODEL_ID, [m["id"] for m in json.loads(out)["models"]])

    def test_show(self):
        rc, out, err = self.run_cli("show", MODEL_ID)
        self.assertEqual(rc, 0, err)
        self.assertIn("architecture:   llama", out)
        self.assertIn("quantization:   Q4_K_M", out)
        self.assertIn("parameters:     7.24B", out)
        self.assertIn("context length: 32768", out)
        self.assertIn("commit:         " + "c" * 40, out)
        self.assertIn("repo:           org/repo", out)
        self.assertIn(SHA_A, out)
        self.assertIn("sub/model.Q4_K_M.gguf", out)
        # The id travels as one percent-encoded path segment.
        path = self.requests("GET", "/v1/models/")[-1][1]
        self.assertEqual(path, "/v1/models/hf%3Aorg%2Frepo%3Asub%2Fmodel.Q4_K_M.gguf")
        rc, out, err = self.run_cli("show", "--json", MODEL_ID)
        self.assertEqual(json.loads(out)["commit"], "c" * 40)
        rc, out, err = self.run_cli("show", "hf:no/such")
        self.assertEqual(rc, 1)
        self.assertEqual(err.strip(), "rbee-hive: model 'hf:no/such' not found")

    def test_rm(self):
        STUB.models["hf:org/gone:g.gguf"] = {"id": "hf:org/gone:g.gguf", "status": "available"}
        rc, out, err = self.run_cli("rm", "hf:org/gone:g.gguf")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), "deleted hf:org/gone:g.gguf")
        self.assertNotIn("hf:org/gone:g.gguf", STUB.models)
        rc, out, err = self.run_cli("rm", "hf:org/busy:x.gguf")
        self.assertEqual(rc, 1)
        self.assertIn("rbee-hive: model 'hf:org/busy:x.gguf' is downloading", err)
        self.assertIn("hf:org/busy:x.gguf", STUB.models)

    def test_jobs_and_cancel(self):
        rc, out, err = self.run_cli("pull", "--detach", "hf:org/repo:slow")
        job_id = out.strip()
        rc, out, err = self.run_cli("jobs")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["JOB", "OPERATION", "STATE", "PROGRESS", "MODEL", "AGE",
                                            "ERROR"])
        row = next(l for l in lines if l.startswith(job_id))
        self.assertIn("model_download", row)
        self.assertIn("running", row)
        self.assertIn("hf:org/repo:slow", row)
        rc, out, err = self.run_cli("jobs", "--json")
        self.assertIn(job_id, [j["job_id"] for j in json.loads(out)["jobs"]])

        rc, out, err = self.run_cli("cancel", job_id)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), "cancelled " + job_id)
        deadline = time.time() + 10
        while STUB.jobs[job_id].state == "running" and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(STUB.jobs[job_id].state, "cancelled")
        rc, out, err = self.run_cli("cancel", job_id)
        self.assertEqual(rc, 1)
        self.assertIn("job %s has already ended (cancelled)" % job_id, err)
        rc, out, err = self.run_cli("cancel", "job-0000000000000bad")
        self.assertEqual(rc, 1)
        self.assertIn("not found", err)

    # -- the front door: --json everywhere, refs, foreign servers -----------

    def test_version_json(self):
        rc, out, err = self.run_cli("version", "--json")
        self.assertEqual(rc, 0, err)
        v = json.loads(out)
        self.assertRegex(v["version"], r"^\d+\.\d+\.\d+")
        rc, out, err = self.run_cli("version")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), "rbee-hive " + v["version"])
        rc, out, err = self.run_cli("--version")
        self.assertEqual(out.strip(), "rbee-hive " + v["version"])

    def test_errors_as_json(self):
        # The daemon's error, with its code, as one JSON object on stderr; stdout stays empty.
        rc, out, err = self.run_cli("show", "--json", "hf:org/none:x.gguf")
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        e = json.loads(err)["error"]
        self.assertEqual(e["code"], "not_found")
        self.assertIn("hf:org/none:x.gguf", e["message"])
        # A failure of the CLI itself (nobody listens) has the same shape.
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        rc, out, err = self.run_cli("ls", "--json", "--url", "http://127.0.0.1:%d" % port)
        self.assertEqual(rc, 1)
        self.assertEqual(json.loads(err)["error"]["code"], "network")
        # A usage error too, with the usage exit status.
        rc, out, err = self.run_cli("ls", "--json", "--bogus")
        self.assertEqual(rc, 2)
        self.assertEqual(json.loads(err)["error"]["code"], "bad_request")
        # A failed job: the NDJSON of its events on stdout, the error object on stderr.
        rc, out, err = self.run_cli("pull", "--json", "hf:org/repo:fail")
        self.assertEqual(rc, 1)
        self.assertEqual(json.loads(out.splitlines()[-1])["event"], "error")
        self.assertIn("digest mismatch", json.loads(err)["error"]["message"])

    def test_bare_path_hints_at_file_url(self):
        before = len(self.requests("POST", "/v1/jobs"))
        rc, out, err = self.run_cli("pull", "/tmp/x.gguf")
        self.assertEqual(rc, 2)
        self.assertIn("file:///tmp/x.gguf", err)
        rc, out, err = self.run_cli("pull", "./models/x.gguf")
        self.assertEqual(rc, 2)
        self.assertIn("file:///", err)
        self.assertEqual(len(self.requests("POST", "/v1/jobs")), before)

    def test_not_an_rbee_hive_daemon(self):
        # A web server that is something else: every path answers 404 as HTML,
        # and / answers 200 as HTML.
        class Other(http.server.BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                body = b"<html><body>Not Found</body></html>"
                self.send_response(200 if self.path == "/" else 404)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            url = "http://127.0.0.1:%d" % srv.server_address[1]
            for args in (("ls",), ("jobs",), ("show", "x"), ("pull", "org/repo")):
                rc, out, err = self.run_cli(*args, "--url", url)
                self.assertEqual(rc, 1, args)
                self.assertIn("%s: not an rbee-hive daemon (" % url, err, args)
        finally:
            srv.shutdown()
            srv.server_close()

    def test_verify(self):
        rc, out, err = self.run_cli("verify", MODEL_ID)
        self.assertEqual(rc, 0, err)
        self.assertIn("ok sub/model.Q4_K_M.gguf", out)
        body = [r for r in self.requests("POST", "/v1/jobs") if r[1] == "/v1/jobs"]
        self.assertTrue(body)
        STUB.verify_supported = False
        rc, out, err = self.run_cli("verify")
        self.assertEqual(rc, 1)
        self.assertIn("cannot verify models", err)

    def test_token(self):
        STUB.token = "t0ps3cret"
        rc, out, err = self.run_cli("ls")
        self.assertEqual(rc, 1)
        self.assertIn("unauthorized", err)
        self.assertIn("--token-file", err)
        rc, out, err = self.run_cli("ls", env=self.env(RBEE_HIVE_TOKEN="t0ps3cret"))
        self.assertEqual(rc, 0, err)
        tf = os.path.join(self.tmp, "token")
        with open(tf, "w") as f:
            f.write("t0ps3cret\n")
        rc, out, err = self.run_cli("jobs", "--token-file", tf)
        self.assertEqual(rc, 0, err)
        rc, out, err = self.run_cli("pull", "--token-file", tf, "hf:org/repo:Q4_K_M")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("t0ps3cret", out + err)

    # -- a terminal ---------------------------------------------------------




    def test_pty_bar_and_ctrl_c(self):
        pid, fd = self.spawn_pty("pull", "hf:org/repo:slow")
        try:
            # Drawn, and redrawn in place until a full block of the bar shows.
            buf, ok = self.read_until(fd, lambda b: "\u2588".encode() in b, 15)
            self.assertTrue(ok, buf)
            text = buf.decode("utf-8", "replace")
            self.assertIn("big.gguf", text)
            self.assertIn("\r", text)
            self.assertGreaterEqual(text.count("MB/s"), 3)
            for line in re.split(r"\r|\n|\x1b\[J", text):
                self.assertLessEqual(len(line), 99, line)  # fits the 100 columns
            self.assertRegex(text, r"\d+% +\d")
            self.assertIn("0:12", text)    # the ETA of the events
            job_id = list(STUB.jobs)[-1]
            os.kill(pid, signal.SIGINT)
            code, rest = self.wait_exit(pid, fd, 15)
            self.assertEqual(code, 130, rest)
            self.assertTrue(STUB.jobs[job_id].cancel_requested)
            self.assertEqual(STUB.jobs[job_id].state, "cancelled")
            self.assertIn(b"cancelled", rest)
        finally:
            os.close(fd)

    def test_pty_second_ctrl_c_leaves_at_once(self):
        STUB.ignore_cancel = True
        pid, fd = self.spawn_pty("pull", "hf:org/repo:slow")
        try:
            buf, ok = self.read_until(fd, lambda b: b"MB/s" in b, 15)
            self.assertTrue(ok, buf)
            job_id = list(STUB.jobs)[-1]
            os.kill(pid, signal.SIGINT)
            buf, ok = self.read_until(fd, lambda b: b"cancelling" in b, 5)
            self.assertTrue(ok, buf)
            t0 = time.time()
            os.kill(pid, signal.SIGINT)
            code, rest = self.wait_exit(pid, fd, 10)
            self.assertEqual(code, 130)
            self.assertLess(time.time() - t0, 2.0)
        finally:
            os.close(fd)
            with STUB.lock:
                STUB.ignore_cancel = False
                STUB.jobs[job_id].cancel_requested = True


if __name__ == "__main__":
    if not os.access(BIN, os.X_OK):
        print("rbee-hive binary not found at %s" % BIN, file=sys.stderr)
        sys.exit(1)
    unittest.main(verbosity=2)
