"""What `rbee-hive serve` tells a newcomer, through the real binary and the
fake Hub: the Hub token is looked up when a pull needs it (a login after
the daemon started counts) and a gated repo's hint names where the daemon
looks; the startup log says which hub cache serves and why; --help prints
the defaults the code uses; a port in use is one error line and leaves no
catalog behind.
"""

import json
import os
import re
import socket
import subprocess
import sys
import unittest

SRC = os.environ.get("RBEE_SRC", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))
from clihelp import BIN, CliMixin  # noqa: E402
from daemonhelp import DaemonTestCase, daemon_env  # noqa: E402
import fixtures  # noqa: E402

GATED = "org/gated-GGUF"
TIMEOUT = 30


def header_constant(rel, name):
    """The value of `#define NAME <integer or expression>` in SRC/rel, evaluated."""
    with open(os.path.join(SRC, rel)) as f:
        text = f.read()
    m = re.search(r"^#define %s (.+?)(?:/\*.*)?$" % re.escape(name), text, re.M)
    if not m:
        raise AssertionError("%s is not defined in %s" % (name, rel))
    expr = re.sub(r"(\d+)(?:ULL|LL|UL|U|L)\b", r"\1", m.group(1).strip())
    return eval(expr, {"__builtins__": {}})  # an integer expression of our own header


class ServeFrontTest(CliMixin, DaemonTestCase):
    tmp_prefix = "rbee-serve-front-"
    serve_defaults = {"level": "info"}

    @classmethod
    def hub_config(cls):
        os.makedirs(os.path.join(cls.tmp, "src"))
        gguf = fixtures.write_gguf(os.path.join(cls.tmp, "src", "g.gguf"), size=256 << 10,
                                   seed=71, use_tool=False)
        return fixtures.make_config([
            fixtures.make_repo(GATED, [fixtures.make_file("g.Q4_K_M.gguf", gguf)],
                               gated="manual")])

    def log_of(self, name):
        with open(os.path.join(self.tmp, name + ".log")) as f:
            return f.read()

    def pull(self, ref):
        rc, out, err = self.run_cli("pull", "--json", ref)
        events = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        return rc, events, err

    # The Hub token ---------------------------------------------------------

    def test_token_file_written_after_start_is_used(self):
        hf_home = os.path.join(self.tmp, "login-home")
        token_file = os.path.join(hf_home, "token")
        _, self.url = self.serve("login", hf_home=hf_home)
        rc, events, err = self.pull("hf:%s:Q4_K_M" % GATED)
        self.assertNotEqual(rc, 0, events)
        end = events[-1] if events else {}
        self.assertEqual(end.get("event"), "error", (events, err))
        self.assertIn("is gated", end.get("message", ""))
        # The hint names the daemon's own places, with the exact file it reads.
        self.assertIn("HF_TOKEN in the daemon's environment or the file %s" % token_file,
                      end.get("message", ""))
        # `huggingface-cli login` after the daemon started: the next pull uses it.
        with open(token_file, "w") as f:
            f.write(fixtures.DEFAULT_TOKEN + "\n")
        rc, events, err = self.pull("hf:%s:Q4_K_M" % GATED)
        self.assertEqual(rc, 0, (events, err))
        self.assertEqual(events[-1]["event"], "done", events)
        self.assertNotIn(fixtures.DEFAULT_TOKEN, self.log_of("login"))

    def test_gated_with_a_token_without_access_names_its_source(self):
        hf_home = os.path.join(self.tmp, "wrong-home")
        os.makedirs(hf_home)
        token_file = os.path.join(hf_home, "token")
        with open(token_file, "w") as f:
            f.write("hf_not_a_valid_token\n")
        _, self.url = self.serve("wrong", hf_home=hf_home)
        rc, events, err = self.pull("hf:%s:Q4_K_M" % GATED)
        self.assertNotEqual(rc, 0, events)
        self.assertEqual(events[-1].get("event"), "error", (events, err))
        self.assertIn("the token from %s has no access" % token_file, events[-1]["message"])

    # The startup log --------------------------------------------------------

    def test_startup_names_the_hub_cache_and_why(self):
        shared_home = os.path.join(self.tmp, "shared-home")
        self.serve("shared", hf_home=shared_home)
        self.assertRegex(self.log_of("shared"),
                         r'msg="hub cache %s: shared with huggingface_hub \(from HF_HOME\)"'
                         % re.escape(os.path.join(shared_home, "hub")))
        flag_cache = os.path.join(self.tmp, "flag-cache")
        self.serve("flag", ["--hf-cache", flag_cache])
        self.assertIn('hub cache %s: shared with huggingface_hub (from --hf-cache)' % flag_cache,
                      self.log_of("flag"))
        # Without HF_HOME nor HF_HUB_CACHE the cache is the private one, and the line says so.
        env = {k: v for k, v in daemon_env(self.hub_url(), "x").items()
               if not k.startswith("HF_")}
        env["HF_ENDPOINT"] = self.hub_url()
        data = os.path.join(self.tmp, "private")
        port_file = os.path.join(self.tmp, "private.port")
        p = subprocess.Popen([BIN, "serve", "--port", "0", "--port-file", port_file,
                              "--data-dir", data], env=env, stderr=subprocess.PIPE, text=True)
        try:
            line = ""
            for line in p.stderr:
                if "hub cache" in line:
                    break
        finally:
            p.terminate()
            p.communicate(timeout=TIMEOUT)
        self.assertIn("hub cache %s: private to rbee-hive" % os.path.join(data, "hub"), line)
        self.assertIn("HF_HOME", line)

    # --help -------------------------------------------------------------------

    def test_help_prints_the_defaults_of_the_code(self):
        p = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = {l.split()[0]: l for l in p.stdout.splitlines() if l.startswith("  --")}
        expect = {
            "--port": header_constant("src/daemon/daemon.h", "DAEMON_DEFAULT_PORT"),
            "--max-jobs": header_constant("src/jobs/job.h", "JOB_DEFAULT_MAX_JOBS"),
            "--connections": header_constant("src/fetch/xfer.h", "XFER_DEFAULT_CONNECTIONS"),
            "--http-connections": header_constant("src/core/caps.h", "CAP_CONNECTIONS"),
            "--http-per-ip": header_constant("src/daemon/daemon.h", "DAEMON_PER_IP_DEFAULT"),
            "--sources-deadline":
                header_constant("src/core/caps.h", "CAP_SOURCES_DEADLINE_MS") // 1000,
        }
        for flag, value in expect.items():
            self.assertTrue(lines[flag].endswith("(%d)" % value), lines[flag])
            # The value is said once: no second, hand-written copy in the text.
            self.assertEqual(lines[flag].count(str(value)), 1, lines[flag])
        size = header_constant("src/core/caps.h", "CAP_UNKNOWN_SIZE_DEFAULT")
        self.assertTrue(lines["--max-unknown-size"].endswith("(%dG)" % (size >> 30)))
        self.assertIn("(127.0.0.1)", lines["--bind"])

    # A port in use ----------------------------------------------------------------

    def test_port_in_use_is_one_error_and_no_catalog(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            data = os.path.join(self.tmp, "taken")
            p = subprocess.run([BIN, "serve", "--port", str(port), "--data-dir", data],
                               capture_output=True, text=True, timeout=TIMEOUT,
                               env=daemon_env(self.hub_url(), os.path.join(self.tmp, "t-home")))
        self.assertNotEqual(p.returncode, 0)
        out = p.stdout + p.stderr
        self.assertEqual(out.count("port %d" % port), 1, out)
        self.assertIn("Address already in use", out)
        self.assertFalse(os.path.exists(os.path.join(data, "catalog.db")), os.listdir(data)
                         if os.path.isdir(data) else None)
        self.assertFalse(os.path.exists(data), "the data root was made before the bind failed")


if __name__ == "__main__":
    unittest.main()
