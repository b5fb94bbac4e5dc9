"""The HTTP API of the real daemon (`rbee-hive serve`) against the fake
Hugging Face Hub: the job protocol and its SSE stream, the resource API,
cancel with a resumable partial, refusing to delete a model being written,
SIGTERM within 2 s, and resume after a clean stop and after kill -9.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

SRC = os.environ.get("RBEE_SRC", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BUILD = os.environ.get("RBEE_BUILD", os.path.join(SRC, "build"))
BIN = os.path.join(BUILD, "rbee-hive")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))
from daemonhelp import DaemonTestCase, start_daemon  # noqa: E402
import fixtures  # noqa: E402

SMALL_ID = "hf:org/small-GGUF:model.Q4_K_M.gguf"
SLOW_ID = "hf:org/slow-GGUF:model.Q4_K_M.gguf"
PROGRESS_KEYS = {"job_id", "state", "phase", "file", "files_done", "files_total", "bytes_done",
                 "bytes_total", "rate_bps", "eta_s", "file_bytes_done", "file_bytes_total"}


class Daemon:
    def __init__(self, tmp, name, hub, extra=(), env=None):
        self.tmp, self.name, self.hub, self.extra = tmp, name, hub, list(extra)
        self.data = os.path.join(tmp, name)
        self.env = env  # None: --data-dir; else the data root comes from these variables
        self.proc = None

    def start(self):
        self.proc, self.url, self.log_path = start_daemon(
            self.tmp, self.name, self.hub.hub_url, self.extra,
            hf_home=os.path.join(self.data, "hf-home"), env=self.env,
            data_dir=self.env is None, binary=BIN)
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def term(self):
        """SIGTERM; returns (exit status, seconds it took)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = None
        return rc, time.monotonic() - t0

    def call(self, method, path, body=None, headers=None, raw=None):
        """(status, parsed JSON or text)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, text, ctype = r.status, r.read().decode(), r.headers.get("Content-Type")
        except urllib.error.HTTPError as e:
            status, text, ctype = e.code, e.read().decode(), e.headers.get("Content-Type")
        if ctype and ctype.startswith("application/json"):
            return status, json.loads(text)
        return status, text

    def submit(self, body):
        status, j = self.call("POST", "/v1/jobs", body)
        if status != 201:
            raise AssertionError("submit %r: %d %r" % (body, status, j))
        return j["job_id"]

    def job(self, job_id):
        status, j = self.call("GET", "/v1/jobs/" + job_id)
        assert status == 200, (status, j)
        return j

    def wait_job(self, job_id, pred, timeout=30):
        deadline = time.time() + timeout
        j = None
        while time.time() < deadline:
            j = self.job(job_id)
            if pred(j):
                return j
            time.sleep(0.02)
        raise AssertionError("job %s: condition not met; last %r" % (job_id, j))

    def stream(self, job_id, last_event_id=None, timeout=60, until=None):
        """Reads the SSE stream to its end, or until until(events): a list of (id, event, data)."""
        h = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
        req = urllib.request.Request(self.url + "/v1/jobs/%s/stream" % job_id, headers=h)
        events, cur = [], {}
        with urllib.request.urlopen(req, timeout=timeout) as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line == "":
                    if "data" in cur:
                        events.append((int(cur["id"]), cur.get("event"), cur["data"]))
                        if until and until(events):
                            break
                    cur = {}
                elif line.startswith(":"):
                    continue
                else:
                    k, _, v = line.partition(": ")
                    cur[k] = v
        return events


def bytes_done(job):
    return (job.get("progress") or {}).get("bytes_done", 0)


def wait_for(get, pred, timeout=10):
    """Polls get() until pred(value); returns the value."""
    deadline = time.time() + timeout
    while True:
        v = get()
        if pred(v) or time.time() > deadline:
            if not pred(v):
                raise AssertionError("condition not met; last %r" % (v,))
            return v
        time.sleep(0.02)


def downloading(events):
    """The progress events of the downloading phase, parsed."""
    out = [json.loads(x) for _, k, x in events if k == "progress"]
    return [p for p in out if p["phase"] == "downloading"]


class DaemonApiTest(DaemonTestCase):
    tmp_prefix = "rbee-daemon-api-"

    @classmethod
    def hub_config(cls):
        t = cls.tmp
        small = fixtures.write_gguf(os.path.join(t, "small.gguf"), size=1 << 20, seed=11)
        slow = fixtures.write_gguf(os.path.join(t, "slow.gguf"), size=24 << 20, seed=12)
        cls.small_sha, cls.slow_sha = small["sha256"], slow["sha256"]
        cfg = fixtures.make_config([
            fixtures.make_repo("org/small-GGUF", [
                fixtures.make_file("model.Q4_K_M.gguf", small),
                fixtures.make_file("model.Q8_0.gguf", content="not really a gguf"),
                fixtures.make_file("README.md", content="# small\n")]),
            # Paced per connection, so that a download lasts a few seconds.
            fixtures.make_repo("org/slow-GGUF", [
                fixtures.make_file("model.Q4_K_M.gguf", slow,
                                   faults={"rate_limit_bps": 250000})]),
        ] + [fixtures.make_repo("org/burst%d-GGUF" % i, [fixtures.make_file(
            "model.Q4_K_M.gguf", fixtures.write_gguf(os.path.join(t, "burst%d.gguf" % i),
                                                     size=256 << 10, seed=20 + i))])
             for i in range(5)])
        return cfg

    def daemon(self, name, extra=(), env=None):
        d = Daemon(self.tmp, name, self.hub, extra, env).start()
        self.addCleanup(d.kill)
        return d

    def test_download_stream_and_resources(self):
        d = self.daemon("basic")
        job_id = d.submit({"operation": "model_download", "model": "hf:org/small-GGUF"})
        events = d.stream(job_id)
        ids = [e[0] for e in events]
        self.assertEqual(ids, sorted(set(ids)))
        kinds = [e[1] for e in events]
        self.assertIn("progress", kinds)
        for _, kind, data in events:
            if kind == "progress":
                p = json.loads(data)
                self.assertEqual(set(p), PROGRESS_KEYS)
                self.assertIn(p["phase"], ("resolving", "downloading", "verifying", "publishing"))
                if p["file"] is None:
                    self.assertEqual((p["file_bytes_done"], p["file_bytes_total"]), (0, 0), p)
                else:
                    # One file: its counts are the model's.
                    self.assertEqual(p["file_bytes_done"], p["bytes_done"], p)
                    self.assertEqual(p["file_bytes_total"], p["bytes_total"], p)
        self.assertTrue(any(k is None and not d_.startswith("[") for _, k, d_ in events))
        data = [json.loads(x) for _, k, x in events if k == "data"]
        self.assertEqual(data[0]["id"], SMALL_ID)
        self.assertEqual(events[-1][2], "[DONE]")
        self.assertEqual(sum(1 for e in events if e[2].startswith(("[DONE]", "[ERROR]",
                                                                   "[CANCELLED]"))), 1)
        # Replay from an id: only what came after it.
        replay = d.stream(job_id, last_event_id=events[-2][0])
        self.assertEqual(replay, [events[-1]])

        self.assertEqual(d.job(job_id)["state"], "succeeded")
        status, models = d.call("GET", "/v1/models")
        self.assertEqual(status, 200)
        m = [x for x in models["models"] if x["id"] == SMALL_ID][0]
        self.assertEqual(m["status"], "available")
        self.assertEqual(m["files"][0]["sha256"], self.small_sha)
        status, one = d.call("GET", "/v1/models/" + urllib.parse.quote(SMALL_ID, safe=""))
        self.assertEqual((status, one["id"]), (200, SMALL_ID))

        get_id = d.submit({"operation": "model_get", "id": "org/small-GGUF:Q4_K_M"})
        ev = d.stream(get_id)
        self.assertEqual(json.loads([x for _, k, x in ev if k == "data"][0])["id"], SMALL_ID)
        list_id = d.submit({"operation": "model_list"})
        ev = d.stream(list_id)
        listed = json.loads([x for _, k, x in ev if k == "data"][0])["models"]
        self.assertIn(SMALL_ID, [x["id"] for x in listed])

        status, text = d.call("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn('rbee_jobs{state="succeeded"} 3', text)
        self.assertIn("rbee_catalog_models 1", text)
        self.assertIn("rbee_catalog_bytes %d\n" % m["size"], text)

        # model_verify: every model, or one by any unambiguous ref.
        ver_id = d.submit({"operation": "model_verify"})
        ev = d.stream(ver_id)
        self.assertEqual(ev[-1][2], "[DONE]")
        report = json.loads([x for _, k, x in ev if k == "data"][0])
        self.assertEqual(report, {"models": [{"id": SMALL_ID, "status": "ok", "files": [
            {"path": "model.Q4_K_M.gguf", "sha256": self.small_sha, "status": "ok"}]}],
            "ok": 1, "bad": 0})
        self.assertIn("ok: model.Q4_K_M.gguf (%s)" % SMALL_ID, [x for _, k, x in ev if k is None])
        ver_id = d.submit({"operation": "model_verify", "id": "org/small-GGUF:Q4_K_M"})
        self.assertEqual(d.stream(ver_id)[-1][2], "[DONE]")
        self.assertEqual(d.job(ver_id)["id"], "org/small-GGUF:Q4_K_M")
        ver_id = d.submit({"operation": "model_verify", "id": "org/other-GGUF"})
        last = d.stream(ver_id)[-1][2]
        self.assertTrue(last.startswith("[ERROR] ") and "org/other-GGUF" in last, last)

        del_id = d.submit({"operation": "model_delete", "id": SMALL_ID})
        self.assertEqual(d.stream(del_id)[-1][2], "[DONE]")
        status, err = d.call("GET", "/v1/models/" + urllib.parse.quote(SMALL_ID, safe=""))
        self.assertEqual((status, err["error"]["code"]), (404, "not_found"))

    def test_sources(self):
        d = self.daemon("sources")
        status, j = d.call("GET", "/v1/sources/hf/org/small-GGUF?revision=main")
        self.assertEqual(status, 200, j)
        tags = [q["tag"] for q in j["quants"]]
        self.assertIn("Q4_K_M", tags)
        status, j = d.call("GET", "/v1/sources/hf/org/absent-GGUF")
        self.assertEqual(status, 404, j)
        status, j = d.call("GET", "/v1/sources/hf/org/..")
        self.assertIn(status, (400, 404, 422))

    def test_security_headers_on_every_answer(self):
        # No site may frame the page (clickjacking), the page runs only its own
        # files, and no answer is sniffed or leaks a referrer: on the page, its
        # assets, JSON, errors, the metrics and a job stream alike.
        d = self.daemon("headers")
        job_id = d.submit({"operation": "model_list"})
        want = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer"}
        for method, path in [("GET", "/"), ("GET", "/app.js"), ("GET", "/style.css"),
                             ("GET", "/health"), ("GET", "/metrics"), ("GET", "/v1/models"),
                             ("GET", "/v1/jobs/job-ffffffffffffffff"), ("GET", "/no-such"),
                             ("PUT", "/v1/jobs"), ("GET", "/v1/jobs/%s/stream" % job_id)]:
            req = urllib.request.Request(d.url + path, method=method)
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    h = r.headers
                    r.read()
            except urllib.error.HTTPError as e:
                h = e.headers
            for k, v in want.items():
                self.assertEqual(h.get(k), v, (path, k))
            csp = {p.strip().split(" ")[0]: p.strip() for p in
                   (h.get("Content-Security-Policy") or "").split(";") if p.strip()}
            self.assertEqual(csp.get("frame-ancestors"), "frame-ancestors 'none'", path)
            self.assertEqual(csp.get("default-src"), "default-src 'self'", path)
            for directive in ("script-src", "style-src"):
                self.assertNotIn("unsafe", csp.get(directive, ""), (path, directive))

    def test_bad_input(self):
        d = self.daemon("bad")
        cases = [
            (b"{", 400, "bad_request"),
            (b'{"operation":"model_download","model":"hf:org/x:../../etc/passwd"}', 422,
             "unprocessable"),
            (b'{"operation":"rm_rf"}', 422, "unprocessable"),
            (b'{"operation":"model_list","extra":true}', 400, "bad_request"),
            (b'{"operation":"model_verify","model":"org/x"}', 400, "bad_request"),
            (b'{"operation":"model_verify","id":""}', 422, "unprocessable"),
            (b"{" + b" " * (65 * 1024) + b"}", 413, "too_large"),
        ]
        for raw, status, code in cases:
            got, j = d.call("POST", "/v1/jobs", raw=raw)
            self.assertEqual((got, j["error"]["code"]), (status, code), raw[:60])
        got, j = d.call("GET", "/v1/jobs/job-ffffffffffffffff/stream")
        self.assertEqual(got, 404)
        # A client that vanishes mid-request does not hurt the daemon.
        s = socket.create_connection(("127.0.0.1", int(d.url.rsplit(":", 1)[1])))
        s.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
        s.close()
        self.assertEqual(d.call("GET", "/health"), (200, "ok\n"))

    def test_cancel_keeps_partial_and_delete_refused(self):
        d = self.daemon("cancel")
        job_id = d.submit({"operation": "model_download", "model": "hf:org/slow-GGUF"})
        d.wait_job(job_id, lambda j: bytes_done(j) > 0)
        status, err = d.call("DELETE", "/v1/models/" + urllib.parse.quote(SLOW_ID, safe=""))
        self.assertEqual((status, err["error"]["code"]), (409, "conflict"))
        t0 = time.monotonic()
        status, j = d.call("POST", "/v1/jobs/%s/cancel" % job_id)
        self.assertEqual((status, j["status"]), (200, "cancelled"))
        d.wait_job(job_id, lambda j: j["state"] == "cancelled", timeout=2)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(d.stream(job_id)[-1][2], "[CANCELLED]")
        status, j = d.call("DELETE", "/v1/jobs/" + job_id)
        self.assertEqual((status, j["status"]), (409, "cancelled"))
        done_before = bytes_done(d.job(job_id))

        # The partial is listed, with its resume state, once the transfer let go of it.
        def partials():
            status, j = d.call("GET", "/v1/partials")
            self.assertEqual(status, 200, j)
            return j["partials"]
        kept = wait_for(partials, lambda ps: ps and not ps[0]["writing"])
        self.assertEqual(len(kept), 1, kept)
        self.assertEqual((kept[0]["repo_dir"], kept[0]["sha256"], kept[0]["total_size"]),
                         ("models--org--slow-GGUF", self.slow_sha, 24 << 20))
        self.assertGreater(kept[0]["bytes_done"], 0)
        self.assertGreater(kept[0]["updated_ms"], 0)
        blobs = os.path.join(d.data, "hf-home", "hub", "models--org--slow-GGUF", "blobs")
        self.assertTrue(os.path.exists(os.path.join(blobs, self.slow_sha + ".partial")))

        # A new pull of the same model resumes from the partial, and says so from its
        # first downloading event on: no event counts from 0 again.
        self.hub.reset_requests()
        again = d.submit({"operation": "model_download", "model": "hf:org/slow-GGUF"})
        first = d.wait_job(again, lambda j: bytes_done(j) > 0)
        self.assertGreater(bytes_done(first), 0)
        dl = downloading(d.stream(again, timeout=30, until=lambda ev: len(downloading(ev)) >= 3))
        self.assertEqual(dl[0]["bytes_done"], kept[0]["bytes_done"], dl[0])
        self.assertEqual(dl[0]["file_bytes_done"], dl[0]["bytes_done"], dl[0])
        counts = [p["bytes_done"] for p in dl]
        self.assertEqual(counts, sorted(counts), counts)
        ranges = [r["headers"].get("range", "") for r in self.hub.requests(host="cdn")]
        starts = [int(r.split("=")[1].split("-")[0]) for r in ranges if r.startswith("bytes=")]
        self.assertTrue(starts, ranges)
        self.assertGreater(max(starts), 0)
        self.assertGreater(done_before, 0)

        # While a transfer writes it, the partial cannot be removed.
        path = "/v1/partials/" + self.slow_sha
        self.assertTrue(wait_for(partials, lambda ps: ps and ps[0]["writing"]))
        status, err = d.call("DELETE", path)
        self.assertEqual((status, err["error"]["code"]), (409, "conflict"), err)
        d.call("POST", "/v1/jobs/%s/cancel" % again)
        wait_for(partials, lambda ps: ps and not ps[0]["writing"])
        status, j = d.call("DELETE", path + "?repo_dir=models--org--other")
        self.assertEqual(status, 404, j)
        status, j = d.call("DELETE", path)
        self.assertEqual((status, j), (200, {"sha256": self.slow_sha, "status": "deleted",
                                             "repo_dirs": ["models--org--slow-GGUF"]}))
        self.assertEqual(partials(), [])
        self.assertFalse(os.path.exists(os.path.join(blobs, self.slow_sha + ".partial")))
        self.assertEqual(d.call("DELETE", path)[0], 404)
        status, err = d.call("DELETE", "/v1/partials/not-a-digest")
        self.assertEqual((status, err["error"]["code"]), (400, "bad_request"))

    def test_sigterm_then_resume(self):
        d = self.daemon("term")
        job_id = d.submit({"operation": "model_download", "model": "hf:org/slow-GGUF"})
        d.wait_job(job_id, lambda j: bytes_done(j) > 0)
        rc, took = d.term()
        self.assertEqual(rc, 0)
        self.assertLess(took, 2.0)
        d.start()
        j = d.wait_job(job_id, lambda j: j["state"] == "running")
        self.assertEqual(j["job_id"], job_id)

        # The new life's first downloading event counts the resumed bytes already.
        def new_life(events):
            at = [i for i, e in enumerate(events) if e[1] is None and e[2].startswith("resuming")]
            return events[at[0]:] if at else []
        events = d.stream(job_id, timeout=30, until=lambda ev: len(downloading(new_life(ev))) >= 2)
        dl = downloading(new_life(events))
        self.assertGreater(dl[0]["bytes_done"], 0, dl[0])
        self.assertLessEqual(dl[0]["bytes_done"], dl[1]["bytes_done"], dl)
        status, j = d.call("POST", "/v1/jobs/%s/cancel" % job_id)
        self.assertEqual(status, 200)
        rc, took = d.term()
        self.assertEqual(rc, 0)

    def test_stop_tells_streams_and_pull_then_resumes(self):
        # A stop ends every open stream with [ERROR] interrupted: …, the running
        # job's and the queued one's alike, before the connections close; `pull`
        # says that the job resumes when the daemon is back and exits 75.
        d = self.daemon("stop-streams", ["--max-jobs", "1"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("RBEE_HIVE")}
        env["RBEE_HIVE_URL"] = d.url
        pull = subprocess.Popen([BIN, "pull", "hf:org/slow-GGUF"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: pull.poll() is None and pull.kill())
        running = wait_for(lambda: d.call("GET", "/v1/jobs?state=running")[1]["jobs"],
                           lambda js: js and bytes_done(js[0]) > 0)[0]["job_id"]
        queued = d.submit({"operation": "model_download", "model": "hf:org/small-GGUF"})
        self.assertEqual(d.job(queued)["state"], "queued")
        got = {running: [], queued: []}

        def watch(job_id):
            try:
                d.stream(job_id, timeout=20, until=lambda ev: got[job_id].append(ev[-1]))
            except OSError:
                pass
        threads = [threading.Thread(target=watch, args=(j,)) for j in got]
        for t in threads:
            t.start()
        wait_for(lambda: all(got.values()), bool)
        rc, took = d.term()
        for t in threads:
            t.join(timeout=15)
        self.assertEqual(rc, 0)
        self.assertLess(took, 2.0)
        for job_id, events in got.items():
            self.assertTrue(events and events[-1][2].startswith("[ERROR] interrupted: "),
                            (job_id, events[-3:]))
            self.assertIn("resumes", events[-1][2])
        out, err = pull.communicate(timeout=15)
        self.assertEqual(pull.returncode, 75, (out, err))
        self.assertIn("job %s resumes when the daemon is back" % running, err)

        d.start()
        for job_id in (running, queued):
            j = d.wait_job(job_id, lambda j: j["state"] in ("succeeded", "failed"), timeout=120)
            self.assertEqual(j["state"], "succeeded", j)
        self.assertEqual(d.term()[0], 0)

    def test_kill9_resume_completes(self):
        d = self.daemon("kill9")
        job_id = d.submit({"operation": "model_download", "model": "hf:org/slow-GGUF"})
        d.wait_job(job_id, lambda j: bytes_done(j) > 2 << 20)
        d.kill()
        self.hub.reset_requests()
        d.start()
        status, models = d.call("GET", "/v1/models")
        for m in models["models"]:
            if m["status"] == "available":
                self.assertEqual(m["files"][0]["sha256"], self.slow_sha)
        j = d.wait_job(job_id, lambda j: j["state"] in ("succeeded", "failed"), timeout=120)
        self.assertEqual(j["state"], "succeeded", j)
        starts = [int(r["headers"]["range"].split("=")[1].split("-")[0])
                  for r in self.hub.requests(host="cdn") if "range" in r["headers"]]
        self.assertTrue(starts and max(starts) > 0, starts)
        status, m = d.call("GET", "/v1/models/" + urllib.parse.quote(SLOW_ID, safe=""))
        self.assertEqual((status, m["status"]), (200, "available"))
        self.assertEqual(m["files"][0]["sha256"], self.slow_sha)
        rc, _ = d.term()
        self.assertEqual(rc, 0)

    def test_kill9_right_after_submit_keeps_jobs(self):
        # A 201 promises a job that survives a crash: five pulls acknowledged, then
        # SIGKILL at once; after the restart every job is there and runs to its end.
        d = self.daemon("burst")
        ids = [d.submit({"operation": "model_download", "model": "hf:org/burst%d-GGUF" % i})
               for i in range(5)]
        d.kill()
        d.start()
        for job_id in ids:
            status, j = d.call("GET", "/v1/jobs/" + job_id)
            self.assertEqual(status, 200, (job_id, j))
        for job_id in ids:
            j = d.wait_job(job_id, lambda j: j["state"] in ("succeeded", "failed", "cancelled"))
            self.assertEqual(j["state"], "succeeded", j)
        self.assertEqual(d.term()[0], 0)

    def test_terminal_state_durable_when_streamed(self):
        # Once a stream has said [DONE] or [CANCELLED], a kill -9 cannot take it back.
        d = self.daemon("durable-end")
        done = d.submit({"operation": "model_download", "model": "hf:org/small-GGUF"})
        self.assertEqual(d.stream(done)[-1][2], "[DONE]")
        d.kill()
        d.start()
        self.assertEqual(d.job(done)["state"], "succeeded")
        slow = d.submit({"operation": "model_download", "model": "hf:org/slow-GGUF"})
        d.wait_job(slow, lambda j: j["state"] == "running")
        self.assertEqual(d.call("POST", "/v1/jobs/%s/cancel" % slow)[0], 200)
        self.assertEqual(d.stream(slow)[-1][2], "[CANCELLED]")
        d.kill()
        d.start()
        self.assertEqual(d.job(slow)["state"], "cancelled")
        self.assertEqual(d.term()[0], 0)

    def test_data_root_from_environment(self):
        # Without --data-dir: $RBEE_HIVE_HOME, else $XDG_CACHE_HOME/rbee-hive, else
        # ~/.cache/rbee-hive. The daemon's resource API and the provisioner must agree.
        root = os.path.join(self.tmp, "env-home")
        d = self.daemon("env-home", env={"RBEE_HIVE_HOME": root,
                                         "XDG_CACHE_HOME": os.path.join(self.tmp, "unused")})
        job_id = d.submit({"operation": "model_download", "model": "hf:org/small-GGUF"})
        self.assertEqual(d.stream(job_id)[-1][2], "[DONE]")
        status, models = d.call("GET", "/v1/models")
        self.assertEqual(status, 200)
        self.assertIn(SMALL_ID, [m["id"] for m in models["models"]])
        self.assertTrue(os.path.isfile(os.path.join(root, "catalog.db")))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "unused")))
        self.assertEqual(d.term()[0], 0)

        xdg = os.path.join(self.tmp, "xdg")
        d = self.daemon("env-xdg", env={"XDG_CACHE_HOME": xdg,
                                        "HOME": os.path.join(self.tmp, "home-unused")})
        self.assertEqual(d.call("GET", "/v1/models"),
                         (200, {"models": [], "total": 0, "offset": 0, "limit": 100,
                                "next_offset": None}))
        self.assertTrue(os.path.isfile(os.path.join(xdg, "rbee-hive", "catalog.db")))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "home-unused")))
        self.assertEqual(d.term()[0], 0)

    def test_serve_help_states_real_defaults(self):
        p = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        flags = {}
        for line in p.stdout.splitlines():
            if line.startswith("  --"):
                name, _, text = line.strip().partition(" ")
                flags[name] = text
        # What each flag does when it is not given, as the code has it.
        want = {"--bind": "(127.0.0.1)", "--port": "(7835)", "--max-jobs": "(2)",
                "--connections": "(8)", "--http-connections": "(1024)",
                "--http-per-ip": "beyond loopback; none on loopback (64)",
                "--limit-rate": "(no cap)", "--sources-deadline": "(30)", "--offline": "(off)", "--hive-id": "(none: any)",
                "--log-level": "$RBEE_HIVE_LOG, else info)",
                "--data-dir": "$RBEE_HIVE_HOME, else $XDG_CACHE_HOME/rbee-hive",
                "--hf-cache": "else DATA/hub)",
                "--max-unknown-size": "(64G)"}
        for name, default in want.items():
            self.assertIn(default, flags.get(name, ""), (name, flags.get(name)))

    def test_max_unknown_size_caps_a_download_of_unknown_size(self):
        # A URL whose server announces no size and streams more than the cap.
        self.hub.set_faults("README.md", {"extra_bytes": 8 << 20})
        # Only this fault: the slow repo's pacing from the config must stay.
        self.addCleanup(self.hub.set_faults, "README.md", {})
        d = self.daemon("unknown-size", ["--max-unknown-size", "4K"])
        url = self.hub.hub_url + "/org/small-GGUF/resolve/main/README.md"
        job_id = d.submit({"operation": "model_download", "model": url})
        events = d.stream(job_id)
        last = events[-1][2]
        self.assertTrue(last.startswith("[ERROR]"), events[-3:])
        self.assertIn("more than 4096 bytes", last)
        self.assertIn("--max-unknown-size", last)
        p = subprocess.run([BIN, "serve", "--max-unknown-size", "0"], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--max-unknown-size must be at least 1", p.stderr)

    def test_bind_needs_token(self):
        p = subprocess.run([BIN, "serve", "--bind", "0.0.0.0", "--port", "0", "--data-dir",
                            os.path.join(self.tmp, "open")], capture_output=True, text=True,
                           timeout=20)
        self.assertEqual(p.returncode, 1)
        self.assertIn("--token-file", p.stderr)
        tok = os.path.join(self.tmp, "token")
        with open(tok, "w") as f:
            f.write("integration-secret\n")
        d = self.daemon("tok", ["--token-file", tok])
        self.assertEqual(d.call("GET", "/v1/jobs")[0], 401)
        status, _ = d.call("GET", "/v1/jobs",
                           headers={"Authorization": "Bearer integration-secret"})
        self.assertEqual(status, 200)
        with open(d.log_path) as f:
            self.assertNotIn("integration-secret", f.read())

    # Local files and uploads --------------------------------------------

    def end_of(self, d, job_id):
        return d.wait_job(job_id, lambda j: j["state"] in ("succeeded", "failed", "cancelled"))

    def blob_dir(self, data):
        """files--local/blobs of the hub cache under data (the daemon's HF_HOME is there)."""
        for root, dirs, _ in os.walk(data):
            if root.endswith(os.path.join("files--local", "blobs")):
                return root
        return None

    def local_blobs(self, data):
        d = self.blob_dir(data)
        return sorted(os.listdir(d)) if d else []

    def test_file_refs_refused_by_default(self):
        canary = "hf_canary_%d" % os.getpid()
        home = os.path.join(self.tmp, "noread")
        d = self.daemon("noread", env={"RBEE_HIVE_HOME": home, "HF_TOKEN": canary})
        src = os.path.join(self.tmp, "readable.gguf")
        with open(src, "wb") as f:
            f.write(b"readable by anyone")
        for path, why in (("/proc/self/environ", "reads no local files"),
                          (src, "--allow-file-import")):
            job = self.end_of(d, d.submit({"operation": "model_download",
                                           "model": "file://" + path}))
            self.assertEqual(job["state"], "failed", job)
            self.assertIn(why, json.dumps(job))
        self.assertEqual(self.local_blobs(home), [])
        # The daemon's environment landed nowhere in its data.
        for root, _, files in os.walk(home):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    self.assertNotIn(canary.encode(), f.read(), name)

    def test_file_import_from_allowed_folder(self):
        allowed = tempfile.mkdtemp(dir=self.tmp, prefix="allowed-")
        bad = subprocess.run([BIN, "serve", "--port", "0", "--data-dir",
                              os.path.join(self.tmp, "procdir"), "--allow-file-import", "/proc"],
                             capture_output=True, text=True, timeout=20)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("/proc, /sys and /dev", bad.stderr)
        d = self.daemon("allowed", ["--allow-file-import", allowed])
        src = os.path.join(allowed, "private.gguf")
        with open(src, "wb") as f:
            f.write(b"private weights" * 1000)
        os.chmod(src, 0o600)
        job = self.end_of(d, d.submit({"operation": "model_download", "model": "file://" + src}))
        self.assertEqual(job["state"], "succeeded", job)
        blobs = self.local_blobs(d.data)
        self.assertEqual(len(blobs), 1)
        st = os.stat(os.path.join(self.blob_dir(d.data), blobs[0]))
        self.assertEqual(st.st_mode & 0o077, 0, oct(st.st_mode))
        self.assertNotEqual(st.st_ino, os.stat(src).st_ino)
        # Outside the folder, through a link inside it, or the kernel's files: refused.
        outside = os.path.join(self.tmp, "outside.gguf")
        with open(outside, "wb") as f:
            f.write(b"not for the daemon")
        os.symlink(outside, os.path.join(allowed, "link.gguf"))
        os.symlink("/proc/self/environ", os.path.join(allowed, "env.gguf"))
        for path in (outside, os.path.join(allowed, "link.gguf"),
                     os.path.join(allowed, "env.gguf"), "/proc/self/environ"):
            job = self.end_of(d, d.submit({"operation": "model_download",
                                           "model": "file://" + path}))
            self.assertEqual(job["state"], "failed", (path, job))
        self.assertEqual(len(self.local_blobs(d.data)), 1)

    def put_raw(self, d, path, head_len, body, close_after=False, expect=False):
        """A PUT over a plain socket: Content-Length head_len, then body; (status, text).
        With expect, the body waits for 100 Continue (Expect: 100-continue): a daemon
        that answers from the head alone is read without a body racing its close."""
        s = socket.create_connection(("127.0.0.1", int(d.url.rsplit(":", 1)[1])), timeout=10)
        s.sendall(("PUT %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n"
                   "%sContent-Type: application/octet-stream\r\n\r\n"
                   % (path, head_len, "Expect: 100-continue\r\n" if expect else "")).encode()
                  + (b"" if expect else body))
        if close_after:
            s.close()
            return None
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                m = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if m and len(rest) >= int(m[0].split(b":")[1]):
                    break
        s.close()
        return int(data.split(b" ")[1]), data.partition(b"\r\n\r\n")[2].decode()

    def head(self, d, path):
        req = urllib.request.Request(d.url + path, method="HEAD")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.headers

    def test_blob_upload_verified_and_resumable(self):
        import hashlib
        d = self.daemon("upload")
        content = os.urandom(3 << 20)
        sha = hashlib.sha256(content).hexdigest()
        path = "/v1/blobs/sha256:" + sha
        status, h = self.head(d, path)
        self.assertEqual((status, h["Upload-Offset"]), (404, "0"))
        self.assertEqual(d.call("GET", "/v1/blobs/sha256:XYZ")[0], 400)
        # Wrong bytes: refused, and nothing is kept.
        wrong = bytearray(content)
        wrong[12345] ^= 1
        status, text = self.put_raw(d, path, len(wrong), bytes(wrong))
        self.assertEqual(status, 400, text)
        self.assertIn("digest mismatch", text)
        self.assertEqual(self.head(d, path)[1]["Upload-Offset"], "0")
        self.assertEqual(self.local_blobs(d.data), [])
        # From a foreign web page: refused before a byte is written.
        status, _ = d.call("PUT", path, raw=content[:10], headers={"Origin": "http://evil.test"})
        self.assertEqual(status, 403)
        # Interrupted after half: the half is kept and the upload resumes there.
        half = len(content) // 2
        self.put_raw(d, path + "?mode=0600", len(content), content[:half], close_after=True)
        offset = wait_for(lambda: int(self.head(d, path)[1]["Upload-Offset"]),
                          lambda v: v == half)
        status, text = self.put_raw(d, path + "?offset=%d" % (half + 1), len(content) - half - 1,
                                    content[half + 1:], expect=True)
        self.assertEqual(status, 409, text)
        # The interrupted request may hold the blob a moment longer: 409 until it lets go.
        status, text = wait_for(lambda: self.put_raw(d, path + "?offset=%d&mode=0600" % offset,
                                                     len(content) - offset, content[offset:]),
                                lambda r: r[0] != 409)
        self.assertEqual(status, 201, text)
        self.assertEqual(json.loads(text), {"digest": "sha256:" + sha, "size": len(content),
                                            "status": "stored"})
        status, j = d.call("GET", path)
        self.assertEqual((status, j["size"]), (200, len(content)))
        blob = os.path.join(self.blob_dir(d.data), sha)
        self.assertEqual(os.stat(blob).st_mode & 0o077, 0)
        # Again: already there, nothing to send; the answer comes before the body.
        status, text = self.put_raw(d, path, len(content), content, expect=True)
        self.assertEqual(status, 200, text)
        # A job names the content by the path it came from; the daemon reads no path.
        job = self.end_of(d, d.submit({"operation": "model_download",
                                       "model": "file:///elsewhere/up.gguf#sha256=" + sha}))
        self.assertEqual(job["state"], "succeeded", job)
        status, m = d.call("GET", "/v1/models/" + urllib.parse.quote("file:up.gguf", safe=""))
        self.assertEqual(status, 200, m)
        self.assertEqual(m["files"][0]["sha256"], sha)


if __name__ == "__main__":
    unittest.main()
