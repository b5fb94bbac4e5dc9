"""rbee's own clients against the real daemon, speaking as they do (header
names in lower case, `accept: */*`, a compact JSON body, and the line
handling of rbee's job-client): a job's stream in rbee's framing (data:
lines of text only, progress at most once a second in the shape of rbee's
download tracker, the three end markers), the model list as the data event
rbee's UI reads, and a refused submission that still names a job whose
stream says why. Clients that ask for text/event-stream keep the full event
stream.
"""

import http.client
import json
import os
import re
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemonhelp import DaemonTestCase  # noqa: E402
import fixtures  # noqa: E402

SLOW = "org/paced-GGUF"
SLOW_ID = "hf:org/paced-GGUF:model.Q4_K_M.gguf"
SMALL = "org/tiny-GGUF"
END_MARKERS = ("[DONE]", "[CANCELLED]")
PERCENT = re.compile(r"(\d+\.?\d*)%")  # what rbee's keeper GUI looks for
CAP_JOBS_REFUSED = 64


class RbeeClient:
    """HTTP as rbee's job-client (reqwest) sends it."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port

    def request(self, method, path, body=None, accept="*/*", ctype="application/json"):
        """(connection, response); the caller reads and closes."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=60)
        c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        c.putheader("host", "%s:%d" % (self.host, self.port))
        c.putheader("accept", accept)
        if body is not None:
            c.putheader("content-type", ctype)
            c.putheader("content-length", str(len(body)))
        c.endheaders(body)
        return c, c.getresponse()

    def submit(self, op, raw=None, ctype="application/json"):
        """(status, answer): the operation as compact JSON, or raw bytes."""
        body = raw if raw is not None else json.dumps(op, separators=(",", ":")).encode()
        c, r = self.request("POST", "/v1/jobs", body, ctype=ctype)
        try:
            return r.status, json.loads(r.read())
        finally:
            c.close()

    def stream(self, job_id, accept="*/*"):
        """Reads a job's stream as rbee's job-client does: ([(seconds since
        the start, line handed to the caller)], how it ended, raw lines)."""
        c, r = self.request("GET", "/v1/jobs/%s/stream" % job_id, accept=accept)
        t0, buf, lines, raw = time.monotonic(), b"", [], []
        try:
            assert r.status == 200, r.status
            while True:
                chunk = r.read1(4096)
                if not chunk:
                    return lines, "eof", raw
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    raw.append(line)
                    try:
                        text = line.decode().strip()
                    except UnicodeDecodeError:
                        continue
                    if text.startswith("data: "):
                        text = text[6:]
                    elif text.startswith("data:"):
                        text = text[5:]
                    if not text:
                        continue
                    lines.append((time.monotonic() - t0, text))
                    if text in END_MARKERS or text.startswith("[ERROR]"):
                        return lines, text.split(" ")[0], raw
        finally:
            c.close()


def sse_events(raw):
    """Events (id, event name, data) of raw lines in the event-stream framing."""
    events, cur = [], {}
    for line in raw + [b""]:
        line = line.decode()
        if line == "":
            if "data" in cur:
                events.append((cur.get("id"), cur.get("event"), cur["data"]))
            cur = {}
        elif not line.startswith(":"):
            k, _, v = line.partition(": ")
            cur[k] = v
    return events


class RbeeStreamTest(DaemonTestCase):
    @classmethod
    def hub_config(cls):
        t = cls.tmp
        paced = fixtures.write_gguf(os.path.join(t, "paced.gguf"), size=6 << 20, seed=31)
        tiny = fixtures.write_gguf(os.path.join(t, "tiny.gguf"), size=256 << 10, seed=32)
        cls.paced_size = 6 << 20
        return fixtures.make_config([
            # Paced so that a download lasts about three seconds.
            fixtures.make_repo(SLOW, [fixtures.make_file(
                "model.Q4_K_M.gguf", paced, faults={"rate_limit_bps": 2000000})]),
            fixtures.make_repo(SMALL, [fixtures.make_file("model.Q4_K_M.gguf", tiny)]),
        ])

    @classmethod
    def set_up_class(cls):
        _, cls.url = cls.serve("rbee")
        cls.rbee = RbeeClient(cls.url)
        status, j = cls.rbee.submit({"operation": "model_download", "hive_id": "localhost",
                                     "model": SLOW})
        assert status == 201, (status, j)
        cls.download = j["job_id"]
        cls.lines, cls.end, cls.raw = cls.rbee.stream(cls.download)

    def test_download_is_text_lines_only(self):
        self.assertEqual(self.end, "[DONE]", self.lines)
        # Nothing but data: lines and the empty lines between them on the wire.
        for line in self.raw:
            self.assertTrue(line == b"" or line.startswith(b"data: "), line)
        # What rbee's keeper prints: people's text, no JSON.
        for _, text in self.lines:
            self.assertFalse(text.startswith(("id:", "event:", ":", "{", "[")) and
                             text not in END_MARKERS, text)
        self.assertIn("is available", " ".join(t for _, t in self.lines))

    def test_download_progress_once_a_second(self):
        progress = [(t, x) for t, x in self.lines if x.startswith("Downloaded ")]
        # The download lasts about 3 s: a line a second and one per phase.
        self.assertGreaterEqual(len(progress), 4, self.lines)
        self.assertLessEqual(len(progress), 10, progress)
        downloading = [(t, x) for t, x in progress if ", downloading " in x]
        for (t0, _), (t1, x) in zip(downloading, downloading[1:]):
            self.assertGreaterEqual(t1 - t0, 0.9, (x, downloading))
        for _, x in progress:
            if " / " in x:
                self.assertIsNotNone(PERCENT.search(x), x)
        self.assertTrue(re.match(r"Downloaded \d[\d.]* MB / 6\.29 MB \((\d+\.\d)%\), "
                                 r"downloading model\.Q4_K_M\.gguf", downloading[-1][1]),
                        downloading)
        # Each phase change has its line: the bytes are all in when verifying.
        self.assertTrue(any(x.startswith("Downloaded 6.29 MB / 6.29 MB (100.0%), verifying")
                            for _, x in progress), progress)

    def test_event_stream_clients_keep_the_full_framing(self):
        for accept in ("text/event-stream", "text/html, Text/Event-Stream;q=0.9"):
            _, end, raw = self.rbee.stream(self.download, accept=accept)
            self.assertTrue(raw[0].startswith(b": job-"), raw[:2])
            events = sse_events(raw)
            self.assertTrue(all(i is not None for i, _, _ in events), events)
            kinds = {k for _, k, _ in events}
            self.assertIn("progress", kinds)
            self.assertIn("data", kinds)
            self.assertEqual(events[-1][2], "[DONE]")

    def test_model_list_is_rbee_data_event(self):
        status, j = self.rbee.submit({"operation": "model_list", "hive_id": "localhost"})
        self.assertEqual(status, 201, j)
        lines, end, _ = self.rbee.stream(j["job_id"])
        self.assertEqual(end, "[DONE]")
        # As rbee's useModels reads it.
        models = None
        for _, line in lines:
            if line.startswith("{") and '"action"' in line:
                ev = json.loads(line)
                if ev["action"] == "model_list" and ev["payload"]:
                    models = ev["payload"]["models"]
        self.assertIsNotNone(models, lines)
        m = [x for x in models if x["id"] == SLOW_ID][0]
        for key in ("id", "name", "size", "path", "loaded"):
            self.assertIn(key, m)
        self.assertEqual(m["size"], self.paced_size)
        self.assertIs(m["loaded"], False)
        self.assertTrue(os.path.isfile(m["path"]), m["path"])
        self.assertEqual(os.path.getsize(m["path"]), self.paced_size)
        self.assertTrue(m["name"])
        # Clients of the event stream read the same models in the result.
        _, _, raw = self.rbee.stream(j["job_id"], accept="text/event-stream")
        data = [json.loads(d) for _, k, d in sse_events(raw) if k == "data"]
        self.assertIn(SLOW_ID, [x["id"] for x in data[0]["models"]])

    def test_model_get_says_what_it_found(self):
        status, j = self.rbee.submit({"operation": "model_get", "hive_id": "localhost",
                                      "id": SLOW})
        self.assertEqual(status, 201, j)
        lines, end, _ = self.rbee.stream(j["job_id"])
        self.assertEqual(end, "[DONE]")
        self.assertIn("%s: available, 6.29 MB, 1 file(s)" % SLOW_ID, [x for _, x in lines])

    def assert_refused(self, status, answer, want_status, want_code):
        self.assertEqual(status, want_status, answer)
        self.assertEqual(answer["error"]["code"], want_code, answer)
        job_id = answer["job_id"]
        self.assertEqual(answer["sse_url"], "/v1/jobs/%s/stream" % job_id)
        lines, end, raw = self.rbee.stream(job_id)
        self.assertEqual(end, "[ERROR]")
        self.assertEqual([x for _, x in lines], ["[ERROR] " + answer["error"]["message"]])
        self.assertEqual([x for x in raw if x], [b"data: [ERROR] " +
                                                answer["error"]["message"].encode()])
        _, _, raw = self.rbee.stream(job_id, accept="text/event-stream")
        self.assertEqual(sse_events(raw), [("1", None, "[ERROR] " + answer["error"]["message"])])
        c, r = self.rbee.request("GET", "/v1/jobs/" + job_id, accept="application/json")
        job = json.loads(r.read())
        c.close()
        self.assertEqual((job["state"], job["error"]), ("failed", answer["error"]["message"]))
        return job

    def test_refused_submission_names_a_failed_job(self):
        status, j = self.rbee.submit({"operation": "model_download", "hive_id": "localhost",
                                      "model": "hf:org/x:../../etc/passwd"})
        job = self.assert_refused(status, j, 422, "unprocessable")
        self.assertEqual(job["operation"], "model_download")
        status, j = self.rbee.submit({"operation": "model_frobnicate", "hive_id": "localhost"})
        self.assertIn("model_frobnicate", j["error"]["message"])
        job = self.assert_refused(status, j, 422, "unprocessable")
        self.assertEqual(job["operation"], "unknown")
        status, j = self.rbee.submit(None, raw=b"{")
        self.assert_refused(status, j, 400, "bad_request")
        status, j = self.rbee.submit(None, raw=b'{"operation":"model_list"}',
                                     ctype="text/plain")
        job = self.assert_refused(status, j, 415, "unsupported_media_type")
        self.assertEqual(job["operation"], "unknown")

    def test_refused_submissions_are_capped(self):
        status, j = self.rbee.submit({"operation": "model_download", "model": SMALL})
        self.assertEqual(status, 201, j)
        real = j["job_id"]
        self.assertEqual(self.rbee.stream(real)[1], "[DONE]")
        ids = []
        for _ in range(3 * CAP_JOBS_REFUSED):
            status, j = self.rbee.submit({"operation": "model_get", "id": ""})
            self.assertEqual(status, 422, j)
            ids.append(j["job_id"])
        c, r = self.rbee.request("GET", "/v1/jobs", accept="application/json")
        jobs = json.loads(r.read())["jobs"]
        c.close()
        listed = {x["job_id"] for x in jobs}
        self.assertIn(real, listed)
        self.assertIn(self.download, listed)
        kept = [i for i in ids if i in listed]
        self.assertEqual(kept, ids[-len(kept):])
        # The older refused submissions of other tests went first.
        self.assertEqual(len(kept), CAP_JOBS_REFUSED)
        c, r = self.rbee.request("GET", "/v1/jobs/%s/stream" % ids[0])
        self.assertEqual(r.status, 404)
        c.close()


if __name__ == "__main__":
    unittest.main()
