"""rbee-hive started the way rbee's keeper starts its hive, and the access
policies a hive on a LAN needs (docs/cli.md, docs/security.md):

- `rbee-hive --port P --queen-url URL --hive-id ID` (no subcommand) serves,
  and HIVE_PORT, HIVE_QUEEN_URL, HIVE_ID do what the flags do (a flag wins);
  GET /health with `Accept: application/json` reports them;
- the routes and operations of rbee's hive that are not model provisioning
  answer 501 not_implemented; POST /v1/shutdown stops the daemon, for an
  authorised client only;
- `--allow-net CIDR`, `--allow-host NAME` and `--allow-origin ORIGIN`;
- a daemon with `--hive-id gpu1` takes the keeper's default hive_id
  "localhost".

Every connection goes to 127.0.0.1; one daemon binds 0.0.0.0.
"""

import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemonhelp import BIN, DaemonTestCase, daemon_env, stop_daemon  # noqa: E402
from hostile_wire import exchange, request  # noqa: E402
from ports import free_port  # noqa: E402

TOKEN = "launch-secret-4b1d"
QUEEN = "http://127.0.0.1:7833"
JSON_HDR = [("Content-Type", "application/json")]


def call(port, method, path, doc=None, host=True, headers=(), timeout=5.0):
    """One request on a new connection; (status, headers, parsed body or text)."""
    body = None
    hdrs = list(headers)
    if doc is not None:
        body = json.dumps(doc, separators=(",", ":"))
        hdrs = JSON_HDR + hdrs
    r = exchange(port, request(method, path, headers=hdrs, body=body, host=host), timeout)
    text = r.body.decode("utf-8", "replace") if r.body else ""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = text
    return r.status, r.headers, parsed


def bearer():
    return [("Authorization", "Bearer " + TOKEN)]


class LaunchTest(DaemonTestCase):
    tmp_prefix = "rbee-launch-"
    serve_defaults = {"level": "warn"}

    @classmethod
    def set_up_class(cls):
        cls.token_file = os.path.join(cls.tmp, "token")
        with open(cls.token_file, "w") as f:
            f.write(TOKEN + "\n")

    def launch(self, name, args, env=None):
        """Starts BIN with exactly args (no subcommand, no --port-file) and
        waits until /health answers on the port it should listen on, taken
        from --port or env HIVE_PORT. Returns (process, port)."""
        full_env = daemon_env(self.hub_url(), os.path.join(self.tmp, name, "hf-home"), "warn")
        full_env["RBEE_HIVE_HOME"] = os.path.join(self.tmp, name)
        full_env.update(env or {})
        port = int(args[args.index("--port") + 1]) if "--port" in args else \
            int(full_env["HIVE_PORT"])
        log = open(os.path.join(self.tmp, name + ".log"), "a")
        proc = subprocess.Popen([BIN] + list(args), env=full_env, stdout=log, stderr=log)
        log.close()
        self.daemons.append(proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.fail("%s exited with %s; see %s.log" % (name, proc.returncode, name))
            try:
                if call(port, "GET", "/health", timeout=1)[0] == 200:
                    return proc, port
            except OSError:
                pass
            time.sleep(0.05)
        self.fail("%s did not answer on port %d" % (name, port))

    def health(self, port, **kw):
        st, _, body = call(port, "GET", "/health", headers=[("Accept", "application/json")],
                           **kw)
        self.assertEqual(st, 200)
        self.assertIsInstance(body, dict, body)
        return body

    def test_rbee_command_line(self):
        port = free_port()
        _, _ = self.launch("keeper", ["--port", str(port), "--queen-url", QUEEN,
                                      "--hive-id", "localhost"])
        st, _, body = call(port, "GET", "/health")
        self.assertEqual((st, body), (200, "ok\n"), "rbee's health check reads plain ok")
        h = self.health(port)
        self.assertEqual(h["status"], "ok")
        self.assertEqual(h["queen_url"], QUEEN)
        self.assertEqual(h["hive_id"], "localhost")
        self.assertEqual(h["port"], port)
        self.assertEqual(h["access"], {"token": False, "allow_net": [], "allow_host": [],
                                       "allow_origin": []})
        st, _, body = call(port, "POST", "/v1/jobs",
                           {"operation": "model_list", "hive_id": "localhost"})
        self.assertEqual(st, 201, body)

    def test_env_vars_and_flags_over_them(self):
        p_env, p_flag = free_port(), free_port()
        env = {"HIVE_PORT": str(p_env), "HIVE_QUEEN_URL": QUEEN, "HIVE_ID": "env-hive"}
        self.launch("env", ["--hive-id", "flag-hive"], env=env)
        h = self.health(p_env)
        self.assertEqual((h["queen_url"], h["hive_id"], h["port"]), (QUEEN, "flag-hive", p_env))
        self.launch("env-flag", ["--port", str(p_flag)], env=env)
        h = self.health(p_flag)
        self.assertEqual((h["hive_id"], h["port"]), ("env-hive", p_flag))

    def test_bad_env_and_queen_url_refused(self):
        env = daemon_env(self.hub_url(), os.path.join(self.tmp, "bad", "hf-home"))
        env["RBEE_HIVE_HOME"] = os.path.join(self.tmp, "bad")
        for args, extra, want in (([], {"HIVE_PORT": "seventy"}, "HIVE_PORT"),
                                  (["--queen-url", "ftp://q"], {}, "--queen-url"),
                                  (["--allow-net", "10.0.0.0/33"], {}, "--allow-net"),
                                  (["--allow-net", "10.0.0.1/8"], {}, "--allow-net"),
                                  (["--allow-origin", "http://a.example/x"], {},
                                   "--allow-origin")):
            r = subprocess.run([BIN, "--port", "0"] + args, env=dict(env, **extra),
                               capture_output=True, text=True, timeout=20)
            self.assertEqual(r.returncode, 2, (args, extra, r.stderr))
            self.assertIn(want, r.stderr)

    def test_not_provisioning_is_501(self):
        _, url = self.serve("five01")
        port = int(url.rsplit(":", 1)[1])
        for path in ("/v1/capabilities", "/v1/capabilities?queen_url=http://127.0.0.1:7833",
                     "/v1/heartbeats/stream"):
            st, _, body = call(port, "GET", path)
            self.assertEqual(st, 501, (path, body))
            self.assertEqual(body["error"]["code"], "not_implemented")
            self.assertIn("model files", body["error"]["message"])
        for doc in ({"operation": "worker_spawn", "hive_id": "localhost", "model": "m",
                     "worker": "cpu", "device": 0},
                    {"operation": "worker_process_list", "hive_id": "localhost"},
                    {"operation": "worker_install", "hive_id": "localhost", "worker_id": "x"},
                    {"operation": "model_load", "hive_id": "localhost", "id": "m"},
                    {"operation": "model_unload", "hive_id": "localhost", "id": "m"},
                    {"operation": "hive_check", "alias": "localhost"}):
            st, _, body = call(port, "POST", "/v1/jobs", doc)
            self.assertEqual(st, 501, (doc, body))
            self.assertEqual(body["error"]["code"], "not_implemented")
            self.assertIn("rbee-hive", body["error"]["message"])
        st, _, body = call(port, "POST", "/v1/jobs", {"operation": "no_such_thing"})
        self.assertEqual(st, 422, body)

    def test_hive_id_localhost_accepted(self):
        _, url = self.serve("gpu1", ["--hive-id", "gpu1"])
        port = int(url.rsplit(":", 1)[1])
        for hid, want in (("localhost", 201), ("gpu1", 201), ("gpu2", 422)):
            st, _, body = call(port, "POST", "/v1/jobs",
                               {"operation": "model_list", "hive_id": hid})
            self.assertEqual(st, want, (hid, body))

    def test_shutdown(self):
        proc, url = self.serve("stop-open")
        port = int(url.rsplit(":", 1)[1])
        st, _, body = call(port, "POST", "/v1/shutdown",
                           headers=[("Origin", "http://evil.example")])
        self.assertEqual(st, 403, body)
        st, _, body = call(port, "POST", "/v1/shutdown")
        self.assertEqual(st, 200, body)
        self.assertEqual(proc.wait(timeout=10), 0)

        proc, url = self.serve("stop-token", ["--token-file", self.token_file])
        port = int(url.rsplit(":", 1)[1])
        st, _, body = call(port, "POST", "/v1/shutdown")
        self.assertEqual(st, 401, body)
        time.sleep(0.3)
        self.assertIsNone(proc.poll(), "stopped without the token")
        st, _, body = call(port, "GET", "/v1/shutdown", headers=bearer())
        self.assertEqual(st, 405, body)
        st, _, body = call(port, "POST", "/v1/shutdown", headers=bearer())
        self.assertEqual(st, 200, body)
        self.assertEqual(proc.wait(timeout=10), 0)

    def test_lan_allow_net_and_host(self):
        _, url = self.serve("lan", ["--bind", "0.0.0.0", "--token-file", self.token_file,
                                    "--allow-net", "127.0.0.0/8", "--allow-net", "fd00::/8",
                                    "--allow-host", "hive.lan"])
        port = int(url.rsplit(":", 1)[1])
        lan = "hive.lan:%d" % port
        st, _, body = call(port, "GET", "/v1/models", host=lan)
        self.assertEqual(st, 200, body)
        st, _, body = call(port, "POST", "/v1/jobs", {"operation": "model_list"}, host=lan)
        self.assertEqual(st, 201, body)
        st, _, body = call(port, "GET", "/v1/models", host="HIVE.LAN")
        self.assertEqual(st, 200, body)
        for host in ("evil.example:%d" % port, "hive.lan.evil.example:%d" % port,
                     "hive.lan:1"):
            st, _, body = call(port, "GET", "/v1/models", host=host)
            self.assertEqual(st, 403, (host, body))
        st, _, body = call(port, "GET", "/v1/models", host="evil.example:%d" % port,
                           headers=bearer())
        self.assertEqual(st, 200, body)
        h = self.health(port)
        self.assertEqual(h["access"], {"token": True, "allow_net": ["127.0.0.0/8", "fd00::/8"],
                                       "allow_host": ["hive.lan"], "allow_origin": []})

        # Without a token file, --allow-net alone opens a wide bind to its networks.
        _, url = self.serve("lan-open", ["--bind", "0.0.0.0", "--allow-net", "127.0.0.0/8",
                                         "--allow-host", "hive.lan"])
        port = int(url.rsplit(":", 1)[1])
        st, _, body = call(port, "GET", "/v1/models", host="hive.lan:%d" % port)
        self.assertEqual(st, 200, body)

    def test_client_outside_allow_net_needs_token(self):
        # Loopback gets no trust of its own once a token is set: this client
        # (127.0.0.1) is outside 10.0.0.0/8, so it needs the token.
        _, url = self.serve("outside", ["--token-file", self.token_file,
                                        "--allow-net", "10.0.0.0/8"])
        port = int(url.rsplit(":", 1)[1])
        st, _, body = call(port, "GET", "/v1/models")
        self.assertEqual(st, 401, body)
        st, _, body = call(port, "GET", "/v1/models", headers=bearer())
        self.assertEqual(st, 200, body)
        # Bound wide without a token file, a client outside the networks is refused.
        _, url = self.serve("outside-open", ["--bind", "0.0.0.0", "--allow-net", "10.0.0.0/8"])
        port = int(url.rsplit(":", 1)[1])
        st, _, body = call(port, "GET", "/v1/models")
        self.assertEqual(st, 403, body)
        self.assertIn("--allow-net", body["error"]["message"])
        st, _, body = call(port, "GET", "/health")
        self.assertEqual(st, 200, body)

    def test_cors(self):
        ok, evil = "http://localhost:5173", "http://evil.example"
        _, url = self.serve("cors", ["--allow-origin", ok, "--token-file", self.token_file])
        port = int(url.rsplit(":", 1)[1])

        def preflight(origin):
            return call(port, "OPTIONS", "/v1/jobs",
                        headers=[("Origin", origin), ("Access-Control-Request-Method", "POST"),
                                 ("Access-Control-Request-Headers",
                                  "authorization,content-type")])
        st, hdrs, _ = preflight(ok)
        self.assertEqual(st, 204)
        self.assertEqual(hdrs.get("access-control-allow-origin"), ok)
        self.assertIn("POST", hdrs.get("access-control-allow-methods", ""))
        self.assertIn("authorization", hdrs.get("access-control-allow-headers", "").lower())
        self.assertIn("content-type", hdrs.get("access-control-allow-headers", "").lower())
        self.assertIn("Origin", hdrs.get("vary", ""))
        # Another origin's OPTIONS is an ordinary request: this daemon wants a token.
        st, hdrs, _ = preflight(evil)
        self.assertEqual(st, 401)
        self.assertNotIn("access-control-allow-origin", hdrs)

        st, hdrs, body = call(port, "POST", "/v1/jobs", {"operation": "model_list"},
                              headers=[("Origin", ok)] + bearer())
        self.assertEqual(st, 201, body)
        self.assertEqual(hdrs.get("access-control-allow-origin"), ok)
        st, hdrs, body = call(port, "POST", "/v1/jobs", {"operation": "model_list"},
                              headers=[("Origin", evil)] + bearer())
        self.assertEqual(st, 403, body)
        self.assertNotIn("access-control-allow-origin", hdrs)
        st, hdrs, _ = call(port, "GET", "/v1/models", headers=[("Origin", evil)] + bearer())
        self.assertEqual(st, 200)
        self.assertNotIn("access-control-allow-origin", hdrs)
        self.assertEqual(self.health(port)["access"]["allow_origin"], [ok])

    def test_cors_off_by_default(self):
        _, url = self.serve("nocors")
        port = int(url.rsplit(":", 1)[1])
        st, hdrs, _ = call(port, "OPTIONS", "/v1/jobs",
                           headers=[("Origin", "http://localhost:5173"),
                                    ("Access-Control-Request-Method", "POST")])
        self.assertEqual(st, 405)
        self.assertNotIn("access-control-allow-origin", hdrs)
        st, _, body = call(port, "POST", "/v1/jobs", {"operation": "model_list"},
                           headers=[("Origin", "http://localhost:5173")])
        self.assertEqual(st, 403, body)


if __name__ == "__main__":
    unittest.main()
