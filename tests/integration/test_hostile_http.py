"""Hostile HTTP against the real daemon (`rbee-hive serve`) and the fake Hub:
malformed and oversized bodies, wrong content types, bad percent-encodings,
header floods, path traversal in every id and ref, foreign Host and Origin,
missing and wrong tokens, slow-loris connections, hundreds of job streams
and clients that vanish mid-stream. Each case has the status it must get
(or "dropped"); after each one GET /health must still answer, and at the end
a normal download must still work, nothing outside the data folder may have
been touched, the token must not be in the log, and the daemon must exit
cleanly (so that under LeakSanitizer a leak fails this test).
"""

import json
import select
import os
import socket
import sys
import threading
import time
import unittest
import urllib.parse

SRC = os.environ.get("RBEE_SRC", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))
import fixtures  # noqa: E402
from clihelp import BIN  # noqa: E402
from hostile_wire import (DROPPED, Reader, connect, exchange, json_post,  # noqa: E402
                          read_reply, request, reset, wait_closed)
from daemonhelp import DaemonTestCase, start_daemon  # noqa: E402

import signal  # noqa: E402
import subprocess  # noqa: E402

TOKEN = "hostile-secret-7f3a9c1e5b"
SMALL = "hf:org/small-GGUF"
SMALL_ID = "hf:org/small-GGUF:model.Q4_K_M.gguf"
SLOW = "hf:org/slow-GGUF"
# Answered by libmicrohttpd before any route runs, so not in our JSON.
MHD = "libmicrohttpd"
REQUEST_DEADLINE_S = 10  # DAEMON_REQUEST_DEADLINE_MS (src/daemon/server.c)
HDR = [("Content-Type", "application/json")]


def q(s):
    return urllib.parse.quote(s, safe="")


def R(method, path, **kw):
    return request(method, path, **kw)


def J(doc, path="/v1/jobs", **kw):
    return json_post(path, doc, **kw)


def job_ops():
    """POST /v1/jobs bodies and what each must get."""
    big = '{"operation":"model_list"' + " " * (64 * 1024) + "}"
    exact = '{"operation":"model_list"}'
    exact = exact[:-1] + " " * (64 * 1024 - len(exact)) + "}"
    return [
        ("json: truncated", J("{"), 400),
        ("json: not json", J("model_download please"), 400),
        ("json: array", J("[]"), 400),
        ("json: string", J('"model_list"'), 400),
        ("json: null", J("null"), 400),
        ("json: trailing garbage", J('{"operation":"model_list"} x'), 400),
        ("json: two documents", J('{"operation":"model_list"}{"operation":"model_list"}'), 400),
        ("json: duplicate key", J('{"operation":"model_list","operation":"model_list"}'), 400),
        ("json: unknown key", J({"operation": "model_list", "evil": 1}), 400),
        ("json: operation wrong type", J({"operation": 1}), 400),
        ("json: operation null", J({"operation": None}), 400),
        ("json: model wrong type", J({"operation": "model_download", "model": ["x"]}), 400),
        ("json: missing operation", J({"model": SMALL}), 400),
        ("json: download without model", J({"operation": "model_download"}), 400),
        ("json: list with a model", J({"operation": "model_list", "model": SMALL}), 400),
        ("json: get with model not id", J({"operation": "model_get", "model": SMALL}), 400),
        ("json: NUL in a string", J('{"operation":"model_list\\u0000"}'), 400),
        ("json: invalid UTF-8", J(b'{"operation":"model_\xff\xfe"}'), 400),
        ("json: lone surrogate", J('{"operation":"\\ud800"}'), 400),
        ("json: nested 5000 deep", J("[" * 5000 + "]" * 5000), 400),
        ("json: nested object 100 deep", J('{"operation":"model_list","x":' + '{"a":' * 100
                                           + "1" + "}" * 101), 400),
        ("json: huge number", J('{"operation":1' + "0" * 5000 + "}"), 400),
        ("op: unknown", J({"operation": "model_explode"}), 422),
        ("op: empty", J({"operation": ""}), 422),
        ("op: case", J({"operation": "MODEL_LIST"}), 422),
        ("ref: empty", J({"operation": "model_download", "model": ""}), 422),
        ("ref: dot-dot repo", J({"operation": "model_download", "model": "hf:../../etc"}), 422),
        ("ref: dot-dot org", J({"operation": "model_download", "model": "../x"}), 422),
        ("ref: dot-dot selector", J({"operation": "model_download",
                                     "model": "hf:org/repo:../../../etc/passwd"}), 422),
        ("ref: absolute selector", J({"operation": "model_download",
                                      "model": "hf:org/repo:/etc/passwd"}), 422),
        ("ref: dot-dot revision", J({"operation": "model_download",
                                     "model": "hf:org/repo@../../x"}), 422),
        ("ref: backslash", J({"operation": "model_download", "model": "hf:org\\..\\x/r"}), 422),
        ("ref: control char", J({"operation": "model_download", "model": "hf:org/re\u0001po"}),
         422),
        ("ref: newline", J({"operation": "model_download", "model": "hf:org/repo\nX-Evil: 1"}),
         422),
        ("ref: DEL", J({"operation": "model_download", "model": "hf:org/re\u007fpo"}), 422),
        ("ref: 5000 bytes", J({"operation": "model_download", "model": "hf:org/" + "r" * 5000}),
         422),
        ("ref: http beyond loopback", J({"operation": "model_download",
                                         "model": "http://example.com/x.gguf"}), 422),
        ("ref: ftp scheme", J({"operation": "model_download", "model": "ftp://h/x"}), 422),
        ("ref: relative file", J({"operation": "model_download", "model": "file://etc/passwd"}),
         422),
        ("ref: file dot-dot", J({"operation": "model_download",
                                 "model": "file:///tmp/../etc/passwd"}), 422),
        ("ref: bad digest", J({"operation": "model_download",
                               "model": "https://h.example/x.gguf#sha256=zz"}), 422),
        ("id: control char", J({"operation": "model_get", "id": "a\u0002b"}), 422),
        ("id: empty", J({"operation": "model_delete", "id": ""}), 422),
        ("ctype: missing", R("POST", "/v1/jobs", body='{"operation":"model_list"}'), 415),
        ("ctype: text/plain", R("POST", "/v1/jobs", headers=[("Content-Type", "text/plain")],
                                body='{"operation":"model_list"}'), 415),
        ("ctype: form", R("POST", "/v1/jobs", headers=[
            ("Content-Type", "application/x-www-form-urlencoded")], body="operation=model_list"),
         415),
        ("ctype: multipart", R("POST", "/v1/jobs", headers=[
            ("Content-Type", "multipart/form-data; boundary=x")], body="--x--"), 415),
        ("ctype: json prefix", R("POST", "/v1/jobs", headers=[
            ("Content-Type", "application/jsonx")], body='{"operation":"model_list"}'), 415),
        ("ctype: empty", R("POST", "/v1/jobs", headers=[("Content-Type", "")],
                           body='{"operation":"model_list"}'), 415),
        ("ctype: json with charset", R("POST", "/v1/jobs", headers=[
            ("Content-Type", "application/json; charset=utf-8")],
            body='{"operation":"model_list"}'), 201),
        ("ctype: JSON upper case", R("POST", "/v1/jobs", headers=[
            ("Content-Type", "Application/JSON")], body='{"operation":"model_list"}'), 201),
        ("body: empty", J(""), 400),
        ("body: exactly the cap", J(exact), 201),
        ("body: one over the cap", J(big), 413),
        ("body: 1 MiB", J("x" * (1 << 20)), 413),
        ("body: declared 1 TB", R("POST", "/v1/jobs", headers=HDR + [
            ("Content-Length", "1000000000000")]), 413),
        ("body: declared 2^64", R("POST", "/v1/jobs", headers=HDR + [
            ("Content-Length", "18446744073709551616")]), 413, MHD),
        ("body: chunked over the cap", R("POST", "/v1/jobs", headers=HDR + [
            ("Transfer-Encoding", "chunked")], body=("8000\r\n" + "x" * 0x8000 + "\r\n") * 3
            + "0\r\n\r\n", content_length=False), 413),
        ("body: chunked small", R("POST", "/v1/jobs", headers=HDR + [
            ("Transfer-Encoding", "chunked")], body='1a\r\n{"operation":"model_list"}\r\n0\r\n\r\n',
            content_length=False), 201),
        ("body: bad chunk size", R("POST", "/v1/jobs", headers=HDR + [
            ("Transfer-Encoding", "chunked")], body="zz\r\nxx\r\n0\r\n\r\n",
            content_length=False), 400, MHD),
        ("body: expect 100-continue over the cap", R("POST", "/v1/jobs", headers=HDR + [
            ("Expect", "100-continue"), ("Content-Length", "70000")]), 413),
        ("body: negative length", R("POST", "/v1/jobs", headers=HDR + [
            ("Content-Length", "-1")], body="{}", content_length=False), 400, MHD),
        ("body: two lengths", R("POST", "/v1/jobs", headers=HDR + [
            ("Content-Length", "2"), ("Content-Length", "30")], body="{}",
            content_length=False), 400, MHD),
        ("body: length and chunked", R("POST", "/v1/jobs", headers=HDR + [
            ("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
            body="0\r\n\r\nGET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
            content_length=False), 400),
    ]


def paths(ctx):
    """Ids and refs in paths and queries: traversal, bad encodings, unknowns."""
    done = ctx.done_job
    cases = []
    for enc in ("%", "%4", "%zz", "%G0", "%00", "%%41", "job-%0", "a%2"):
        cases += [
            ("pct %s: job" % enc, R("GET", "/v1/jobs/" + enc), 400),
            ("pct %s: stream" % enc, R("GET", "/v1/jobs/%s/stream" % enc), 400),
            ("pct %s: cancel" % enc, R("POST", "/v1/jobs/%s/cancel" % enc), 400),
            ("pct %s: delete job" % enc, R("DELETE", "/v1/jobs/" + enc), 400),
            ("pct %s: model" % enc, R("GET", "/v1/models/hf:org/" + enc), 400),
            ("pct %s: delete model" % enc, R("DELETE", "/v1/models/" + enc), 400),
            ("pct %s: source" % enc, R("GET", "/v1/sources/hf/org/" + enc), 400),
            ("pct %s: revision" % enc, R("GET", "/v1/sources/hf/org/small-GGUF?revision=" + enc),
             400),
            ("pct %s: state" % enc, R("GET", "/v1/jobs?state=" + enc), 400),
        ]
    for t in ("..", "../..", "../../../../etc/passwd", "/etc/passwd", "job-x/../../x",
              "..\\..\\x", "job-\u00e9", "job-\udcff", "\u202e", " ", "*"):
        e = q(t) if "\udcff" not in t else "job-%ff%fe"
        cases += [
            ("unknown %r: job" % t, R("GET", "/v1/jobs/" + e), 404),
            ("unknown %r: stream" % t, R("GET", "/v1/jobs/%s/stream" % e), 404),
            ("unknown %r: cancel" % t, R("POST", "/v1/jobs/%s/cancel" % e), 404),
            ("unknown %r: delete job" % t, R("DELETE", "/v1/jobs/" + e), 404),
            ("unknown %r: model" % t, R("GET", "/v1/models/" + e), 404),
            ("unknown %r: delete model" % t, R("DELETE", "/v1/models/" + e), 404),
            ("traversal %r: source org" % t, R("GET", "/v1/sources/hf/%s/repo" % e), 422),
            ("traversal %r: source repo" % t, R("GET", "/v1/sources/hf/org/" + e), 422),
            # '*' is a well-formed revision name that the Hub does not know.
            ("traversal %r: revision" % t, R("GET", "/v1/sources/hf/org/small-GGUF?revision="
                                             + e), 404 if t == "*" else 422),
        ]
    for m in ("hf:org/small-GGUF:../../../../canary", "hf:../../canary", "file:../canary",
              "url:../canary", "hf:org/small-GGUF:%2e%2e/x", "hf:org/small-GGUF@..",
              "file:///etc/passwd", "https://127.0.0.2/x"):
        cases += [
            ("model %r: get" % m, R("GET", "/v1/models/" + q(m)), 404),
            ("model %r: delete" % m, R("DELETE", "/v1/models/" + q(m)), 404),
            ("model %r: raw slashes" % m, R("GET", "/v1/models/" + m), 404),
        ]
    cases += [
        ("raw dot-dot asset", R("GET", "/../../../../etc/passwd"), 404),
        # Quoted in the message, which must stay valid UTF-8 (run_table parses it).
        ("raw bytes in a path", R("GET", "/v1/x\xff\xfe\x01"), 404),
        ("raw bytes in an asset path", R("GET", "/\xc0\xaf\xc0\xae"), 404),
        ("encoded dot-dot asset", R("GET", "/%2e%2e/%2e%2e/etc/passwd"), 404),
        ("dot-dot behind an asset", R("GET", "/index.html/../../../etc/passwd"), 404),
        ("raw dot-dot api", R("GET", "/v1/jobs/../../etc/passwd"), 404),
        ("unknown job", R("GET", "/v1/jobs/job-0000000000000000"), 404),
        ("unknown job stream", R("GET", "/v1/jobs/job-0000000000000000/stream"), 404),
        ("state unknown", R("GET", "/v1/jobs?state=exploded"), 400),
        ("state empty", R("GET", "/v1/jobs?state="), 400),
        ("cancel a finished job", R("POST", "/v1/jobs/%s/cancel" % done), 409),
        ("delete a finished job", R("DELETE", "/v1/jobs/" + done), 409),
        ("stream: Last-Event-ID not a number", R("GET", "/v1/jobs/%s/stream" % done,
                                                 headers=[("Last-Event-ID", "abc")]), 400),
        ("stream: Last-Event-ID negative", R("GET", "/v1/jobs/%s/stream" % done,
                                             headers=[("Last-Event-ID", "-1")]), 400),
        ("stream: Last-Event-ID 2^64", R("GET", "/v1/jobs/%s/stream" % done,
                                         headers=[("Last-Event-ID", "18446744073709551616")]),
         400),
        ("wrong method on jobs", R("PUT", "/v1/jobs", headers=HDR, body="{}"), 405),
        ("wrong method on health", R("POST", "/health", headers=HDR, body="{}"), 405),
        ("unknown method", R("BREW", "/health"), 405),
        ("OPTIONS on the API", R("OPTIONS", "/v1/jobs"), 405),
        ("unknown route", R("GET", "/v2/jobs"), 404),
        ("unknown api route", R("GET", "/v1/nothing"), 404),
        ("empty id", R("GET", "/v1/jobs//stream"), 404),
    ]
    return cases


def wire():
    """Malformed HTTP itself; the expected statuses come from libmicrohttpd."""
    many = [("X-Flood-%d" % i, "v" * 100) for i in range(2000)]
    return [
        ("wire: garbage line", b"GARBAGE\r\n\r\n", DROPPED),
        ("wire: binary junk", bytes(range(256)) * 4, 400),
        ("wire: only CRLFs", b"\r\n" * 64 + b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
         200),
        ("wire: HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        ("wire: HTTP/9.9", R("GET", "/health", version="HTTP/9.9"), 505),
        ("wire: no version", b"GET /health\r\n\r\n", 400),
        ("wire: header without colon", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
         b"NoColonHere\r\n\r\n", 400),
        ("wire: NUL in header", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
         b"X-A: a\x00b\r\n\r\n", 200),
        ("wire: bare LF", b"GET /health HTTP/1.1\nHost: 127.0.0.1:{port}\n\n", 200),
        ("wire: 2000 headers", R("GET", "/health", headers=many), 431),
        ("wire: one 100 KiB header", R("GET", "/health", headers=[("X-Big", "a" * 102400)]), 431),
        ("wire: 100 KiB URI", R("GET", "/v1/jobs/" + "a" * 102400), 414),
        ("wire: 100 KiB query", R("GET", "/v1/jobs?state=" + "a" * 102400), 414),
        ("wire: HTTP/1.0 without Host", R("GET", "/health", host=None, version="HTTP/1.0"), 200),
    ]


def host_origin():
    post = '{"operation":"model_list"}'

    def P(**kw):
        return J(post, **kw)
    return [
        # RFC 9112 3.2: HTTP/1.1 needs a Host; HTTP/1.0 (see wire()) does not.
        ("host: none on HTTP/1.1", R("GET", "/health", host=None), 400),
        ("host: none on HTTP/1.1 POST", P(host=None), 400),
        ("host: foreign", R("GET", "/health", host="evil.example"), 403),
        ("host: foreign with our port", R("GET", "/v1/jobs", host="evil.example:{port}"), 403),
        ("host: rebinding name", R("GET", "/v1/models", host="127.0.0.1.nip.io:{port}"), 403),
        ("host: localhost suffix", R("GET", "/v1/jobs", host="localhost.evil.example:{port}"),
         403),
        # Any literal of 127.0.0.0/8 names this machine by the one URL policy and
        # cannot be rebound by DNS; a name that only looks like one is refused.
        ("host: other loopback IP", R("GET", "/v1/jobs", host="127.0.0.2:{port}"), 200),
        ("host: loopback look-alike name", R("GET", "/v1/jobs",
                                             host="127.attacker.invalid:{port}"), 403),
        ("host: short IPv4 form", R("GET", "/v1/jobs", host="127.1:{port}"), 403),
        ("host: wrong port", R("GET", "/v1/jobs", host="127.0.0.1:1"), 403),
        ("host: port not a number", R("GET", "/v1/jobs", host="127.0.0.1:x"), 403),
        ("host: empty port", R("GET", "/v1/jobs", host="127.0.0.1:"), 403),
        ("host: empty", R("GET", "/v1/jobs", host=""), 403),
        ("host: unclosed bracket", R("GET", "/v1/jobs", host="[::1"), 403),
        ("host: bracket junk", R("GET", "/v1/jobs", host="[::1]x"), 403),
        ("host: 300 bytes", R("GET", "/v1/jobs", host="a" * 300), 403),
        ("host: raw bytes", R("GET", "/v1/jobs", host="\xff\xfe\x1b[31m"), 403),
        ("origin: raw bytes", P(headers=[("Origin", "http://\xff\xfe")]), 403),
        ("host: foreign on POST", P(host="evil.example"), 403),
        ("host: localhost", R("GET", "/v1/jobs", host="localhost:{port}"), 200),
        ("host: LOCALHOST", R("GET", "/v1/jobs", host="LOCALHOST:{port}"), 200),
        ("host: ::1", R("GET", "/v1/jobs", host="[::1]:{port}"), 200),
        ("host: no port", R("GET", "/v1/jobs", host="127.0.0.1"), 200),
        ("origin: foreign POST", P(headers=[("Origin", "http://evil.example")]), 403),
        ("origin: null POST", P(headers=[("Origin", "null")]), 403),
        ("origin: file POST", P(headers=[("Origin", "file://")]), 403),
        ("origin: foreign with our port", P(headers=[("Origin", "http://evil.example:{port}")]),
         403),
        ("origin: ours other port", P(headers=[("Origin", "http://127.0.0.1:1")]), 403),
        ("origin: with path", P(headers=[("Origin", "http://127.0.0.1:{port}/x")]), 403),
        ("origin: suffix trick", P(headers=[("Origin", "http://localhost.evil.example:{port}")]),
         403),
        ("origin: foreign cancel", R("POST", "/v1/jobs/job-0000000000000000/cancel",
                                     headers=[("Origin", "https://evil.example")]), 403),
        ("origin: foreign job delete", R("DELETE", "/v1/jobs/job-0000000000000000",
                                         headers=[("Origin", "https://evil.example")]), 403),
        ("origin: foreign model delete", R("DELETE", "/v1/models/" + q(SMALL_ID),
                                           headers=[("Origin", "https://evil.example")]), 403),
        ("origin: foreign GET is read-only", R("GET", "/v1/jobs",
                                               headers=[("Origin", "http://evil.example")]), 200),
        ("origin: ours POST", P(headers=[("Origin", "http://127.0.0.1:{port}")]), 201),
        ("origin: localhost POST", P(headers=[("Origin", "http://localhost:{port}")]), 201),
    ]


def tokens(token):
    def G(path, auth):
        return R("GET", path, headers=[("Authorization", auth)] if auth is not None else [])
    return [
        ("token: none", G("/v1/jobs", None), 401),
        ("token: empty header", G("/v1/jobs", ""), 401),
        ("token: scheme only", G("/v1/jobs", "Bearer"), 401),
        ("token: scheme and space", G("/v1/jobs", "Bearer "), 401),
        ("token: wrong", G("/v1/jobs", "Bearer nope"), 401),
        ("token: prefix of it", G("/v1/jobs", "Bearer " + token[:-1]), 401),
        ("token: it plus one", G("/v1/jobs", "Bearer " + token + "x"), 401),
        ("token: it with a space", G("/v1/jobs", "Bearer  " + token), 401),
        ("token: basic", G("/v1/jobs", "Basic " + token), 401),
        ("token: bare", G("/v1/jobs", token), 401),
        ("token: 8 KiB", G("/v1/jobs", "Bearer " + "t" * 8000), 401),
        ("token: none on POST", J({"operation": "model_list"}), 401),
        ("token: none on stream", G("/v1/jobs/job-0000000000000000/stream", None), 401),
        ("token: none on cancel", R("POST", "/v1/jobs/job-0000000000000000/cancel"), 401),
        ("token: none on model delete", R("DELETE", "/v1/models/" + q(SMALL_ID)), 401),
        ("token: none on sources", G("/v1/sources/hf/org/small-GGUF", None), 401),
        ("token: none on metrics", G("/metrics", None), 401),
        ("token: right", G("/v1/jobs", "Bearer " + token), 200),
        ("token: scheme in lower case", G("/v1/jobs", "bearer " + token), 200),
        ("token: right on POST", J({"operation": "model_list"},
                                   headers=[("Authorization", "Bearer " + token)]), 201),
        ("token: health needs none", G("/health", None), 200),
        ("token: the page needs none", G("/", None), 200),
        ("hive_id: not this hive", J({"operation": "model_list", "hive_id": "other-hive"},
                                     headers=[("Authorization", "Bearer " + token)]), 422),
        ("hive_id: this hive", J({"operation": "model_list", "hive_id": "hostile-hive"},
                                 headers=[("Authorization", "Bearer " + token)]), 201),
    ]


class Ctx:
    pass


class HostileHttpTest(DaemonTestCase):
    tmp_prefix = "rbee-hostile-"
    serve_defaults = {"level": "warn", "hf_home": "hf-home"}

    @classmethod
    def hub_config(cls):
        t = cls.tmp
        small = fixtures.write_gguf(os.path.join(t, "small.gguf"), size=2 << 20, seed=11)
        slow = fixtures.write_gguf(os.path.join(t, "slow.gguf"), size=8 << 20, seed=12)
        cls.small_sha = small["sha256"]
        return fixtures.make_config([
            fixtures.make_repo("org/small-GGUF", [fixtures.make_file("model.Q4_K_M.gguf", small)]),
            # Paced so that its job runs for the whole of a stream test.
            fixtures.make_repo("org/slow-GGUF", [fixtures.make_file(
                "model.Q4_K_M.gguf", slow, faults={"rate_limit_bps": 100000})]),
        ])

    @classmethod
    def set_up_class(cls):
        t = cls.tmp
        # What path traversal would reach from the data folders.
        cls.canaries = [os.path.join(t, "canary"), os.path.join(t, "hive", "canary")]
        os.makedirs(os.path.join(t, "hive"))
        for c in cls.canaries:
            with open(c, "w") as f:
                f.write("canary\n")
        cls.daemon, url = cls.serve("hive", ["--log-level", "debug"])
        cls.port = int(url.rsplit(":", 1)[1])
        tf = os.path.join(t, "token")
        with open(tf, "w") as f:
            f.write(TOKEN + "\n")
        cls.guarded, url = cls.serve("guarded", [
            "--token-file", tf, "--hive-id", "hostile-hive", "--log-level", "debug",
            "--hf-cache", os.path.join(t, "guarded-hf"), "--http-connections", "64"])
        cls.gport = int(url.rsplit(":", 1)[1])

    # Helpers

    def api(self, path, method="GET", doc=None, port=None, token=None, timeout=10):
        hdrs = [("Authorization", "Bearer " + token)] if token else []
        if doc is None:
            data = request(method, path, headers=hdrs)
        else:
            data = json_post(path, doc, headers=hdrs)
        r = exchange(port or self.port, data, timeout=timeout)
        if not isinstance(r.status, int):
            self.fail("%s %s: %s" % (method, path, r.status))
        return r

    def submit(self, doc, port=None, token=None):
        r = self.api("/v1/jobs", "POST", doc, port=port, token=token)
        self.assertEqual(r.status, 201, r)
        return r.json()["job_id"]

    def wait_job(self, job_id, pred, timeout=30, port=None, token=None):
        deadline = time.monotonic() + timeout
        job = None
        while time.monotonic() < deadline:
            job = self.api("/v1/jobs/" + job_id, port=port, token=token).json()
            if pred(job):
                return job
            time.sleep(0.05)
        self.fail("job %s: condition not met; last %r" % (job_id, job))

    def assert_alive(self, port=None, token=None, what=""):
        r = self.api("/health", port=port)
        self.assertEqual((r.status, r.body), (200, b"ok\n"), "health after %s" % what)
        for p in (self.daemon, self.guarded):
            self.assertIsNone(p.poll(), "daemon exited after %s" % what)

    def metric(self, name, port=None, token=None):
        body = self.api("/metrics", port=port, token=token).body.decode()
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        self.fail("metric %s missing" % name)

    def run_table(self, cases, port, label):
        failures = []
        for name, data, want, *by in cases:
            r = exchange(port, data, timeout=5)
            got = r.status
            if got != want:
                failures.append("%s: expected %s, got %s %r" % (name, want, got, r.body[:200]))
            elif isinstance(got, int) and got >= 400 and r.headers.get(
                    "content-type", "").startswith("application/json"):
                try:
                    err = r.json()["error"]
                    self.assertIsInstance(err["code"], str)
                    self.assertIsInstance(err["message"], str)
                except Exception as ex:  # noqa: BLE001
                    failures.append("%s: error body %r: %s" % (name, r.body[:200], ex))
            elif isinstance(got, int) and got >= 400 and not by and not name.startswith("wire:"):
                failures.append("%s: %d is not JSON (%s)" % (name, got,
                                                            r.headers.get("content-type")))
            h = exchange(port, request("GET", "/health"), timeout=5)
            if h.status != 200:
                failures.append("%s: GET /health then answered %s" % (name, h.status))
                break
        self.assertEqual(failures, [], "%s: %d of %d cases failed:\n  %s" % (
            label, len(failures), len(cases), "\n  ".join(failures)))

    # Tests. Their names sort in the order they should run: the download and
    # the exit checks last.

    def test_a_job_bodies(self):
        self.run_table(job_ops(), self.port, "job bodies")
        self.assert_alive(what="job bodies")

    def test_b_paths_ids_refs(self):
        ctx = Ctx()
        ctx.done_job = self.submit({"operation": "model_list"})
        self.wait_job(ctx.done_job, lambda j: j["state"] == "succeeded")
        self.run_table(paths(ctx), self.port, "paths")
        self.assert_alive(what="paths")

    def test_c_wire(self):
        self.run_table(wire(), self.port, "wire")
        self.assert_alive(what="malformed HTTP")

    def test_d_host_origin(self):
        self.run_table(host_origin(), self.port, "host and origin")
        self.assert_alive(what="host and origin")

    def test_e_tokens(self):
        self.run_table(tokens(TOKEN), self.gport, "tokens")
        self.assert_alive(port=self.gport, what="tokens")

    def test_f_refs_in_jobs(self):
        """Ids that parse but point outside the catalog fail as jobs, touching nothing."""
        ids = []
        for op in ("model_get", "model_delete"):
            for bad in ("../../canary", "hf:../../canary", "file:../canary", "/etc/passwd",
                        "hf:org/small-GGUF:../../../../canary"):
                ids.append(self.submit({"operation": op, "id": bad}))
        for j in ids:
            job = self.wait_job(j, lambda x: x["state"] not in ("queued", "running"))
            self.assertEqual(job["state"], "failed", job)
        for c in self.canaries:
            self.assertTrue(os.path.exists(c), c)
        self.assert_alive(what="bad ids in jobs")

    def test_g_bind_needs_token(self):
        p = subprocess.run([BIN, "serve", "--bind", "0.0.0.0", "--port", "0",
                            "--data-dir", os.path.join(self.tmp, "refused")],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("needs --token-file", p.stderr)

    def test_h_stream_cap(self):
        """More streams than the cap get 503 while the API still answers."""
        job = self.submit({"operation": "model_download", "model": SLOW}, port=self.gport,
                          token=TOKEN)
        socks = []
        try:
            for i in range(40):
                s = connect(self.gport)
                socks.append(s)
                s.sendall(request("GET", "/v1/jobs/%s/stream" % job, headers=[
                    ("Authorization", "Bearer " + TOKEN)]).replace(
                        b"{port}", str(self.gport).encode()))
                s.settimeout(5)
                head = s.recv(4096)
                if not head.startswith(b"HTTP/1.1 200"):
                    break
            self.assertEqual(len(socks), 33, "the 33rd stream (cap 32 with 64 connections)")
            self.assertTrue(head.startswith(b"HTTP/1.1 503"), head[:200])
            while b"}}" not in head:
                chunk = s.recv(4096)
                self.assertTrue(chunk, head)
                head += chunk
            self.assertIn(b'"code":"retry"', head)
            self.assert_alive(port=self.gport, what="stream cap")
            r = self.api("/v1/jobs/%s/cancel" % job, "POST", port=self.gport, token=TOKEN)
            self.assertEqual(r.status, 200, r)
        finally:
            for s in socks:
                s.close()

    def test_i_many_streams_and_vanishing_watchers(self):
        job = self.submit({"operation": "model_download", "model": SLOW})
        self.wait_job(job, lambda j: (j.get("progress") or {}).get("phase") == "downloading")
        n = 500
        socks = []
        try:
            data = request("GET", "/v1/jobs/%s/stream" % job).replace(
                b"{port}", str(self.port).encode())
            for _ in range(n):
                s = connect(self.port, timeout=10)
                s.sendall(data)
                socks.append(s)
            bufs = [b""] * n
            for i, s in enumerate(socks):
                while b"\r\n\r\n" not in bufs[i]:
                    chunk = s.recv(65536)
                    self.assertTrue(chunk, "stream %d closed before its head" % i)
                    bufs[i] += chunk
                self.assertTrue(bufs[i].startswith(b"HTTP/1.1 200"), bufs[i][:200])
                self.assertIn(b"text/event-stream", bufs[i])
            self.assertEqual(self.metric("rbee_streams"), n)
            t0 = time.monotonic()
            r = self.api("/health")
            self.assertLess(time.monotonic() - t0, 1.0, "health with %d streams open" % n)

            # 200 vanish with a reset, 150 with an orderly close mid-stream.
            for s in socks[:200]:
                reset(s)
            for s in socks[200:350]:
                s.close()
            keep = socks[350:]
            socks = keep
            deadline = time.monotonic() + 10
            while self.metric("rbee_streams") > len(keep) and time.monotonic() < deadline:
                time.sleep(0.2)
            self.assertEqual(self.metric("rbee_streams"), len(keep),
                             "streams of vanished watchers were not ended")
            before = self.api("/v1/jobs/" + job).json()["progress"]["bytes_done"]
            self.wait_job(job, lambda j: j["progress"]["bytes_done"] > before, timeout=10)

            r = self.api("/v1/jobs/%s/cancel" % job, "POST")
            self.assertEqual(r.status, 200, r)
            # Every remaining watcher sees the terminal line and the end of the stream.
            deadline = time.monotonic() + 20
            for i, s in enumerate(keep):
                buf = b""
                while not buf.endswith(b"0\r\n\r\n") and time.monotonic() < deadline:
                    s.settimeout(max(0.1, deadline - time.monotonic()))
                    try:
                        chunk = s.recv(65536)
                    except socket.timeout:
                        break
                    if not chunk:
                        break
                    buf += chunk
                self.assertIn(b"data: [CANCELLED]", buf, "watcher %d" % i)
            deadline = time.monotonic() + 10
            while self.metric("rbee_streams") > 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            self.assertEqual(self.metric("rbee_streams"), 0)
        finally:
            for s in socks:
                s.close()
        self.assert_alive(what="500 streams")

    def test_j_slow_loris(self):
        """200 clients trickle headers a byte a second: others are served at once,
        and every trickling connection is cut at the request deadline although
        it never falls silent (libmicrohttpd's own timeout counts silence only)."""
        n = 200
        data = request("GET", "/health", headers=[("X-Slow", "x" * 64)]).replace(
            b"{port}", str(self.port).encode())
        t0 = time.monotonic()
        socks = [connect(self.port) for _ in range(n)]
        cut = [None] * n
        try:
            slowest = 0.0
            for sec in range(REQUEST_DEADLINE_S + 5):
                for i, s in enumerate(socks):
                    if cut[i] is not None:
                        continue
                    try:
                        r, _, _ = select.select([s], [], [], 0)
                        if r and not s.recv(65536):
                            raise ConnectionResetError
                        s.send(data[sec:sec + 1])
                    except OSError:
                        cut[i] = time.monotonic() - t0
                t1 = time.monotonic()
                r = self.api("/health")
                slowest = max(slowest, time.monotonic() - t1)
                self.assertEqual(r.status, 200)
                r = self.api("/v1/jobs")
                self.assertEqual(r.status, 200)
                if None not in cut:
                    break
                time.sleep(max(0.0, 1.0 - (time.monotonic() - t1)))
            self.assertLess(slowest, 1.0, "health during slow-loris")
            self.assertNotIn(None, cut, "trickling connections still open after %ds"
                             % (REQUEST_DEADLINE_S + 5))
            self.assertGreaterEqual(min(cut), REQUEST_DEADLINE_S - 1,
                                    "connections cut before the request deadline")
            self.assertLessEqual(max(cut), REQUEST_DEADLINE_S + 4)
        finally:
            for s in socks:
                s.close()
        self.assert_alive(what="slow-loris")

    def test_j_per_ip_limit(self):
        """--http-per-ip N: the connection over N from one address is closed at
        once, and the others are served."""
        proc, url, _ = start_daemon(self.tmp, "per-ip", self.hub.hub_url, ["--http-per-ip", "4"],
                                    hf_home=os.path.join(self.tmp, "hf-home"), level="warn")
        self.addCleanup(proc.kill)
        port = int(url.rsplit(":", 1)[1])
        held = [connect(port) for _ in range(4)]
        try:
            time.sleep(0.2)
            extra = connect(port)
            el = wait_closed(extra, time.monotonic() + 3)
            extra.close()
            self.assertIsNotNone(el, "a fifth connection from one address was kept")
            r = exchange(port, request("GET", "/health"), timeout=5)
            self.assertEqual(r.status, DROPPED)
            held[0].sendall(request("GET", "/health").replace(b"{port}", str(port).encode()))
            self.assertEqual(read_reply(held[0]).status, 200)
            held.pop(0).close()
            # The daemon frees the slot once it has seen the close, which a
            # loaded machine may take a while to schedule.
            deadline = time.monotonic() + 10
            while True:
                st = exchange(port, request("GET", "/health"), timeout=5).status
                if st == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(st, 200, "a slot freed by a close is given to a new connection")
        finally:
            for s in held:
                s.close()
        # Every slot comes free once the daemon has seen the closes. Each
        # exchange closes its own connection too, which a loaded machine may
        # let the daemon see late: the answer that got through is the check
        # of health, not one more connection after it.
        deadline = time.monotonic() + 10
        while True:
            r = exchange(port, request("GET", "/health"), timeout=5)
            if r.status == 200:
                break
            self.assertLess(time.monotonic(), deadline, "slots not freed after the closes")
            time.sleep(0.1)
        self.assertEqual(r.body, b"ok\n", "health after the per-ip limit")
        self.assertIsNone(proc.poll(), "daemon exited after the per-ip limit")
        self.assert_alive(what="per-ip limit")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=20), 0, "daemon exit status")

    def test_k_abandoned_and_pipelined(self):
        port = str(self.port).encode()
        post = request("POST", "/v1/jobs", headers=HDR + [("Content-Length", "1000")]).replace(
            b"{port}", port)
        for how in ("close", "reset"):
            for data in (post + b'{"operation":', b"GET /health HTTP/1.1\r\nHost: 127.0",
                         request("GET", "/v1/models").replace(b"{port}", port)):
                s = connect(self.port)
                s.sendall(data)
                reset(s) if how == "reset" else s.close()
                self.assert_alive(what="a request abandoned with a %s" % how)

        # Two requests in one packet are both answered, in order, and an
        # error answer does not end a keep-alive connection.
        two = (request("GET", "/v1/jobs/job-0000000000000000") + request("GET", "/health")
               ).replace(b"{port}", port)
        with connect(self.port) as s:
            s.sendall(two)
            reader = Reader(s)
            self.assertEqual(read_reply(s, reader=reader).status, 404)
            r = read_reply(s, reader=reader)
            reader.release()
            self.assertEqual((r.status, r.body), (200, b"ok\n"))

        # A body refused early is never read as the next request.
        inner = request("DELETE", "/v1/models/" + q(SMALL_ID)).replace(b"{port}", port)
        body = inner * (70000 // len(inner) + 1)
        with connect(self.port) as s:
            s.sendall(request("POST", "/v1/jobs", headers=HDR, body=body).replace(
                b"{port}", port))
            r = read_reply(s)
            self.assertEqual(r.status, 413, r)
            self.assertTrue(r.closed, "connection kept open after an unread body")
            self.assertIsNotNone(wait_closed(s, time.monotonic() + 5))
        self.assert_alive(what="pipelining")

    def test_l_job_flood_and_head_stream(self):
        """Finished jobs are kept up to a cap, and HEAD on a stream holds nothing."""
        for i in range(1200):
            r = exchange(self.port, json_post("/v1/jobs", {"operation": "model_list"}))
            self.assertEqual(r.status, 201, "submit %d: %r" % (i, r))
        # Finished jobs are dropped once they are saved, which lags a burst.
        deadline = time.monotonic() + 10
        while True:
            jobs = self.api("/v1/jobs").json()["jobs"]
            if len(jobs) <= 1000 + 4 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertLessEqual(len(jobs), 1000 + 4, "CAP_JOBS_KEPT")
        with connect(self.port) as s:
            s.sendall(request("HEAD", "/v1/jobs/%s/stream" % jobs[0]["job_id"]).replace(
                b"{port}", str(self.port).encode()))
            r = read_reply(s, method="HEAD")
        self.assertEqual((r.status, r.body), (200, b""))
        deadline = time.monotonic() + 5
        while self.metric("rbee_streams") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.metric("rbee_streams"), 0)
        self.assert_alive(what="a job flood")

    def test_y_normal_download_still_works(self):
        job = self.submit({"operation": "model_download", "model": SMALL})
        s = connect(self.port, timeout=30)
        try:
            s.sendall(request("GET", "/v1/jobs/%s/stream" % job).replace(
                b"{port}", str(self.port).encode()))
            r = read_reply(s, timeout=30)
        finally:
            s.close()
        self.assertEqual(r.status, 200)
        self.assertIn(b"data: [DONE]", r.body)
        m = self.api("/v1/models/" + q(SMALL_ID)).json()
        self.assertEqual(m["status"], "available", m)
        self.assertEqual(m["files"][0]["sha256"], self.small_sha)
        for c in self.canaries:
            self.assertTrue(os.path.exists(c), c)

    def test_z_clean_exit_and_no_token_in_logs(self):
        self.assert_alive(what="everything")
        self.assert_alive(port=self.gport, what="everything")
        codes = self.stop_daemons()
        self.assertEqual(codes, [0, 0], "daemon exit status (LeakSanitizer exits 23)")
        for name in ("hive", "guarded"):
            with open(os.path.join(self.tmp, name + ".log"), errors="replace") as f:
                log = f.read()
            self.assertNotIn(TOKEN, log, name + ".log")
            # A stop past its budget exits with _exit(), skipping the leak check.
            self.assertNotIn("orderly stop took too long", log, name + ".log")
            self.assertNotIn("ERROR: AddressSanitizer", log, name + ".log")
            self.assertNotIn("runtime error:", log, name + ".log")


if __name__ == "__main__":
    if not os.access(BIN, os.X_OK):
        print("rbee-hive binary not found at %s" % BIN, file=sys.stderr)
        sys.exit(1)
    unittest.main(verbosity=2)
