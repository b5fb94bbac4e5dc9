"""rbee's own clients against the real daemon: the daemon is started with the
command line rbee's keeper uses (`rbee-hive --port P --queen-url URL
--hive-id ID`, no subcommand) and driven by tests/integration/rbeeclient.py,
which speaks rbee's wire as job-client, the keeper and the hive UI do.

The same suite runs twice: on loopback as `rbee hive start` runs the hive
on the keeper's machine, and on a daemon bound to 0.0.0.0 with
`--allow-net 127.0.0.0/8 --allow-host hive.lan`, reached as
`http://hive.lan:PORT` (the Host header names hive.lan; the connection goes
to 127.0.0.1), as a keeper on another machine of the LAN reaches it.
"""

import json
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemonhelp import BIN, DaemonTestCase, daemon_env  # noqa: E402
import fixtures  # noqa: E402
import rbeeclient  # noqa: E402
from ports import free_port  # noqa: E402

SMALL_REF = "org/small-GGUF:model.Q4_K_M.gguf"
SMALL_ID = "hf:org/small-GGUF:model.Q4_K_M.gguf"
PACED_REF = "org/paced-GGUF:model.Q4_K_M.gguf"
SLOW_REF = "org/slow-GGUF:model.Q4_K_M.gguf"
QUIET_REF = "org/quiet-GGUF:model.Q4_K_M.gguf"
# Longer than the daemon's 15 s between keep-alives.
QUIET_SECONDS = 17
# A repo name with a space: no reference parser accepts it.
BAD_REF = "org/bad repo:model.Q4_K_M.gguf"

# The keeper GUI's progress pattern, and the line of rbee's DownloadTracker.
GUI_PERCENT = re.compile(r"(\d+\.?\d*)%")
TRACKER_LINE = re.compile(r"Downloaded \d+(\.\d+)? [kKMGT]?i?B / \d+(\.\d+)? [kKMGT]?i?B "
                          r"\(\d+(\.\d+)?%\)")


def rbee_env(hub_url, home):
    """daemon_env() without rbee's own HIVE_* variables, the data root in
    RBEE_HIVE_HOME (rbee's command line names none)."""
    env = {k: v for k, v in daemon_env(hub_url, os.path.join(home, "hf-home")).items()
           if not k.startswith("HIVE_")}
    env["RBEE_HIVE_HOME"] = home
    return env


def start_rbee_hive(tmp, name, hub_url, args, base_url, connect, env_extra=None):
    """Starts the binary with args as rbee's keeper would (no subcommand);
    returns the process once GET /health answers 200 at base_url."""
    home = os.path.join(tmp, name)
    os.makedirs(home, exist_ok=True)
    env = rbee_env(hub_url, home)
    env.update(env_extra or {})
    log_path = os.path.join(tmp, name + ".log")
    with open(log_path, "a") as log:
        proc = subprocess.Popen([BIN] + list(args), env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if rbeeclient.health(base_url, connect)[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    with open(log_path) as f:
        raise RuntimeError("rbee-hive %s did not start:\n%s" % (" ".join(args), f.read()[-2000:]))


def hub_repos(tmp):
    small = fixtures.write_gguf(os.path.join(tmp, "small.gguf"), size=1 << 20, seed=31)
    paced = fixtures.write_gguf(os.path.join(tmp, "paced.gguf"), size=3 << 20, seed=32)
    slow = fixtures.write_gguf(os.path.join(tmp, "slow.gguf"), size=24 << 20, seed=33)
    quiet = fixtures.write_gguf(os.path.join(tmp, "quiet.gguf"), size=64 << 10, seed=34)
    return small, fixtures.make_config([
        fixtures.make_repo("org/small-GGUF", [fixtures.make_file("model.Q4_K_M.gguf", small)]),
        # About five seconds per download (one connection for a file this
        # small): long enough for several progress lines.
        fixtures.make_repo("org/paced-GGUF", [fixtures.make_file(
            "model.Q4_K_M.gguf", paced, faults={"rate_limit_bps": 640000})]),
        # About a minute (the rate is per connection, the daemon opens
        # eight): only ever cancelled.
        fixtures.make_repo("org/slow-GGUF", [fixtures.make_file(
            "model.Q4_K_M.gguf", slow, faults={"rate_limit_bps": 50000})]),
        # A Hub that thinks for a while before it lists the repo: the job
        # has nothing to say, and the stream only keeps its connection alive.
        dict(fixtures.make_repo("org/quiet-GGUF", [fixtures.make_file("model.Q4_K_M.gguf",
                                                                      quiet)]),
             tree_delay_seconds=QUIET_SECONDS),
    ])


def is_human_text(line):
    """Not SSE framing (`id:`, `event:`, `retry:`, a `:` comment) and not JSON."""
    if re.match(r"(id|event|retry)\s*:", line) or line.startswith(":"):
        return False
    if line[:1] in "{[" and not rbeeclient.is_completion_marker(line):
        try:
            json.loads(line)
            return False
        except ValueError:
            pass
    return True


class RbeeDropIn(DaemonTestCase):
    """rbee's keeper and hive UI against a hive the keeper started on its own
    machine: `rbee hive start` runs `rbee-hive --port 7835 --queen-url
    http://localhost:7833 --hive-id localhost` and talks to
    http://localhost:7835."""

    tmp_prefix = "rbee-dropin-"
    hive_id = "localhost"
    host_name = "localhost"
    bind = "127.0.0.1"

    @classmethod
    def hub_config(cls):
        small, cfg = hub_repos(cls.tmp)
        cls.small_size = small["size"]
        return cfg

    @classmethod
    def extra_args(cls):
        return []

    @classmethod
    def set_up_class(cls):
        cls.port = free_port(cls.bind)
        cls.base = "http://%s:%d" % (cls.host_name, cls.port)
        cls.connect = ("127.0.0.1", cls.port)
        queen = "http://127.0.0.1:%d" % free_port()
        args = ["--port", str(cls.port), "--queen-url", queen, "--hive-id", cls.hive_id]
        cls.daemons.append(start_rbee_hive(cls.tmp, "hive", cls.hub_url(),
                                           args + cls.extra_args(), cls.base, cls.connect))

    # -- helpers ------------------------------------------------------------

    def keeper(self, operation, **fields):
        fields.setdefault("hive_id", self.hive_id)
        return rbeeclient.keeper(self.base, operation, connect=self.connect, **fields)

    def api(self, method, path):
        """One request as reqwest sends it; (status, parsed JSON or text)."""
        c = rbeeclient.JobClient(self.base, connect=self.connect, timeout=10)
        try:
            ex, resp = c._request(method, path)
            text = resp.read().decode("utf-8", "replace")
        finally:
            c.close()
        try:
            return ex.status, json.loads(text)
        except ValueError:
            return ex.status, text

    def job_state(self, job_id):
        status, job = self.api("GET", "/v1/jobs/%s" % job_id)
        self.assertEqual(status, 200, job)
        return job["state"]

    def wait_state(self, job_id, want, timeout=10):
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state == want:
                return
            time.sleep(0.1)
        self.fail("job %s is %s after %d s, not %s" % (job_id, state, timeout, want))

    def download(self, ref):
        run = self.keeper("model_download", model=ref)
        self.assertIsNone(run.error, run.stdout)
        self.assertEqual(run.stdout[-1:], ["[DONE]"], run.stdout)
        return run

    def listed(self):
        models, lines = rbeeclient.use_models(self.base, self.connect)
        self.assertEqual(lines[-1:], ["[DONE]"], lines)
        return models

    # -- the suite ------------------------------------------------------------

    def test_download_prints_only_human_text(self):
        t0 = time.monotonic()
        run = self.download(PACED_REF)
        elapsed = time.monotonic() - t0
        post = run.exchanges[0]
        self.assertEqual((post.method, post.path, post.status), ("POST", "/v1/jobs", 201))
        noise = [line for line in run.stdout if not is_human_text(line)]
        self.assertEqual(noise, [], "the keeper printed framing or JSON:\n%s"
                         % "\n".join(run.stdout))
        progress = [line for line in run.stdout if TRACKER_LINE.search(line)]
        self.assertTrue(progress, "no `Downloaded A / B (P%%)` line:\n%s" % "\n".join(run.stdout))
        for line in progress:
            self.assertTrue(GUI_PERCENT.search(line), line)
        # At most one a second, plus one per phase change.
        self.assertLessEqual(len(progress), int(elapsed) + 6, "\n".join(progress))
        self.assertTrue(any("100" in line for line in progress), progress)

    def test_quiet_job_prints_no_keep_alive(self):
        run = self.download(QUIET_REF)
        noise = [line for line in run.stdout if not is_human_text(line)]
        self.assertEqual(noise, [], run.stdout)

    def test_list_get_delete_with_rbee_ids(self):
        self.download(SMALL_REF)
        models = self.listed()
        mine = [m for m in models if m.get("id") == SMALL_ID]
        self.assertEqual(len(mine), 1, models)
        m = mine[0]
        self.assertIsInstance(m.get("name"), str)
        self.assertTrue(m["name"])
        self.assertEqual(m.get("size"), self.small_size)
        self.assertIsInstance(m.get("path"), str)
        self.assertTrue(m["path"].endswith("model.Q4_K_M.gguf"), m)
        self.assertIs(m.get("loaded"), False)

        # serde_json with preserve_order writes the keys in declaration order.
        c = rbeeclient.JobClient(self.base, connect=self.connect, key_order="declared")
        lines = []
        try:
            c.submit_and_stream("model_list", lines.append, hive_id=self.hive_id)
        finally:
            c.close()
        self.assertEqual(lines[-1:], ["[DONE]"], lines)

        for ident in (SMALL_REF, m["id"]):
            run = self.keeper("model_get", id=ident)
            self.assertIsNone(run.error, run.stdout)
            self.assertEqual(run.stdout[-1:], ["[DONE]"], run.stdout)
            self.assertTrue(any(SMALL_ID in line or m["path"] in line
                                for line in run.stdout[:-1]), run.stdout)

        run = self.keeper("model_delete", id=m["id"])
        self.assertIsNone(run.error, run.stdout)
        self.assertEqual(run.stdout[-1:], ["[DONE]"], run.stdout)
        self.assertEqual([x for x in self.listed() if x.get("id") == SMALL_ID], [])

        run = self.keeper("model_get", id=m["id"])
        self.assertTrue(run.error and run.error.startswith("Job failed: "), run.error)
        self.assertTrue(run.stdout[-1].startswith("[ERROR] "), run.stdout)

    def test_refused_ref_prints_its_reason(self):
        run = self.keeper("model_download", model=BAD_REF)
        post = run.exchanges[0]
        self.assertTrue(400 <= post.status < 500, post.status)
        body = json.loads(post.response_body)
        self.assertIsInstance(body.get("error"), dict, body)
        self.assertTrue(body["error"].get("code") and body["error"].get("message"), body)
        self.assertEqual(body.get("sse_url"), "/v1/jobs/%s/stream" % body.get("job_id"), body)
        self.assertEqual(len(run.stdout), 1, run.stdout)
        self.assertTrue(run.stdout[0].startswith("[ERROR] "), run.stdout)
        reason = run.stdout[0][len("[ERROR] "):]
        self.assertTrue(reason.strip(), run.stdout)
        self.assertEqual(run.error, "Job failed: " + reason)
        self.assertEqual(self.job_state(run.job_id), "failed")

    def test_ctrl_c_cancels_the_download(self):
        t0 = time.monotonic()
        seen = []

        def ctrl_c(line):
            if GUI_PERCENT.search(line):
                seen.append(line)
            # A user who sees no progress presses Ctrl-C all the same.
            return bool(seen) or time.monotonic() - t0 > 8

        run = self.keeper("model_download", model=SLOW_REF, ctrl_c=ctrl_c)
        self.assertEqual(run.error, "Operation cancelled by user", run.stdout)
        self.assertEqual(run.cancel_status, 200)
        delete = [ex for ex in run.exchanges if ex.method == "DELETE"]
        self.assertEqual([ex.path for ex in delete], ["/v1/jobs/%s" % run.job_id])
        self.wait_state(run.job_id, "cancelled")
        self.assertTrue(seen, "no progress line before Ctrl-C:\n%s" % "\n".join(run.stdout))
        noise = [line for line in run.stdout if not is_human_text(line)]
        self.assertEqual(noise, [], run.stdout)

    def test_operations_beyond_provisioning_say_so(self):
        # `rbee model preload`, `rbee hive worker-list`, `rbee hive check`: a
        # 501 that the keeper prints as the reason, not "missing field".
        for op, fields in (("model_load", {"id": SMALL_REF, "device": "ram"}),
                           ("worker_process_list", {}),
                           ("hive_check", {"alias": self.hive_id})):
            with self.subTest(op=op):
                if op != "hive_check":
                    fields = dict(fields, hive_id=self.hive_id)
                run = rbeeclient.keeper(self.base, op, connect=self.connect, **fields)
                post = run.exchanges[0]
                self.assertEqual(post.status, 501, post.response_body)
                body = json.loads(post.response_body)
                self.assertEqual(body["error"]["code"], "not_implemented", body)
                self.assertEqual(len(run.stdout), 1, run.stdout)
                self.assertTrue(run.stdout[0].startswith("[ERROR] "), run.stdout)
                self.assertTrue(run.error.startswith("Job failed: "), run.error)

    def test_keeper_default_hive_id_is_accepted(self):
        run = self.keeper("model_list", hive_id="localhost")
        self.assertIsNone(run.error, run.stdout)
        self.assertEqual(run.stdout[-1:], ["[DONE]"], run.stdout)

    def test_health_and_queen_calls(self):
        # The keeper reads only the status; rbee's own hive answers "ok".
        status, text = rbeeclient.health(self.base, self.connect)
        self.assertEqual((status, text.strip()), (200, "ok"))
        status, body = self.api("GET", "/v1/capabilities?queen_url=http%3A%2F%2F127.0.0.1%3A9")
        self.assertEqual(status, 501, body)
        self.assertEqual(body["error"]["code"], "not_implemented", body)


class RbeeDropInLan(RbeeDropIn):
    """The same suite against a hive on another machine of the LAN: bound to
    0.0.0.0, clients of 127.0.0.0/8 need no token and `hive.lan` is one of
    its names. A token is configured, as it must be for everyone else."""

    tmp_prefix = "rbee-dropin-lan-"
    hive_id = "hive.lan"
    host_name = "hive.lan"
    bind = "0.0.0.0"

    @classmethod
    def extra_args(cls):
        token = os.path.join(cls.tmp, "token")
        with open(token, "w") as f:
            f.write("s3cret-token-for-others\n")
        return ["--bind", "0.0.0.0", "--allow-net", "127.0.0.0/8", "--allow-host", "hive.lan",
                "--token-file", token]

    def test_other_host_names_are_refused(self):
        other = rbeeclient.JobClient("http://rebound.example:%d" % self.port,
                                     connect=self.connect, timeout=10)
        try:
            ex, resp = other._request("GET", "/v1/jobs")
            resp.read()
        finally:
            other.close()
        self.assertEqual(ex.status, 403)


class RbeeHiveLifecycle(DaemonTestCase):
    """`rbee hive start` through rbee's environment variables (an option
    wins over its variable), `rbee hive status` and `rbee hive stop`."""

    tmp_prefix = "rbee-lifecycle-"

    def test_env_start_status_stop(self):
        port = free_port()
        base = "http://localhost:%d" % port
        connect = ("127.0.0.1", port)
        # The port and the queen's URL from rbee's variables; one option on
        # the command line, as every launch of rbee's keeper has.
        proc = start_rbee_hive(self.tmp, "env-hive", self.hub_url(), ["--hive-id", "gpu1"],
                               base, connect,
                               env_extra={"HIVE_PORT": str(port),
                                          "HIVE_QUEEN_URL": "http://127.0.0.1:9",
                                          "HIVE_ID": "not-this-one"})
        self.daemons.append(proc)
        self.assertEqual(rbeeclient.health(base, connect)[0], 200)
        run = rbeeclient.keeper(base, "model_list", connect=connect, hive_id="gpu1")
        self.assertIsNone(run.error, run.stdout)
        status = rbeeclient.shutdown(base, connect)
        self.assertIn(status, (200, 202, 204, None))
        self.assertIsNotNone(proc.wait(timeout=10))
        with self.assertRaises(OSError):
            rbeeclient.health(base, connect)


if __name__ == "__main__":
    unittest.main()
