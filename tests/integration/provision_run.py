"""Helpers for the provision integration tests: run $RBEE_BUILD/provision-run
with a clean Hugging Face environment and read its JSON lines."""

import json
import os
import subprocess
import sys

SRC = os.environ.get("RBEE_SRC", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("RBEE_BUILD", os.path.join(SRC, "build"))
sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))

from fixtures import sha256_file  # noqa: E402  (re-exported for the tests)

TOOL = os.path.join(BUILD, "provision-run")
HF_VARS = ("HF_ENDPOINT", "HF_TOKEN", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE",
           "XDG_CACHE_HOME", "RBEE_HIVE_HOME")


def clean_env(home, endpoint=None, **extra):
    """The environment of a run: no token, cache or offline setting from the caller."""
    env = {k: v for k, v in os.environ.items() if k not in HF_VARS}
    env["HOME"] = home
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


class Run:
    def __init__(self, rc, events, stderr):
        self.rc = rc
        self.events = events
        self.stderr = stderr

    def of(self, job, kind):
        return [e for e in self.events if e.get("job") == job and e.get("event") == kind]

    def end(self, job=0):
        """The final event of a job: done, error or cancelled."""
        ends = [e for e in self.events if e.get("job") == job and
                e.get("event") in ("done", "error", "cancelled")]
        assert len(ends) == 1, "job %d: %r\n%s" % (job, ends, self.stderr)
        return ends[0]

    def models(self):
        return [e for e in self.events if e.get("event") == "model"]


def run(env, data_dir, refs, *opts, timeout=120):
    cmd = [TOOL, "--data-dir", data_dir, "--list"] + list(opts) + list(refs)
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    events = [json.loads(line) for line in p.stdout.decode().splitlines() if line.strip()]
    return Run(p.returncode, events, p.stderr.decode(errors="replace"))

