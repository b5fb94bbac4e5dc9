"""What the integration tests that start the fake hub or `rbee-hive serve`
share: a clean environment pointed at the fake hub, starting and stopping the
daemon, and DaemonTestCase, a test class with one temporary folder and one
fake hub for all of its tests."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

SRC = os.environ.get("RBEE_SRC") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.environ.get("RBEE_BUILD", "build")
# scripts/memcheck --valgrind sets RBEE_HIVE_BIN to run the binary under valgrind.
BIN = os.environ.get("RBEE_HIVE_BIN", os.path.join(BUILD, "rbee-hive"))
# A hub URL nothing listens on (the discard port), for daemons that must not
# reach any hub.
NO_HUB = "http://127.0.0.1:9"

sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))
import client  # noqa: E402


def daemon_env(hub_url, hf_home, level="info"):
    """os.environ without rbee-hive's and Hugging Face's variables, pointed at
    the fake hub, with HF_HOME inside the test's folder."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RBEE_HIVE", "HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub_url, HF_HOME=hf_home, RBEE_HIVE_LOG=level)
    return env


def wait_for_port(proc, port_file, timeout=20):
    """The daemon's base URL once it has written its port, or None when it
    exited or the time ran out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(port_file):
            with open(port_file) as f:
                text = f.read().strip()
            if text:
                return "http://127.0.0.1:%s" % text
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def start_daemon(tmp, name, hub_url, extra=(), hf_home=None, level="info", env=None,
                 data_dir=True, binary=BIN):
    """Starts `rbee-hive serve` on a free port: data root TMP/NAME (data_dir
    False: none given, env decides), HF_HOME hf_home (default TMP/NAME/hf-home),
    env added to daemon_env(), output appended to TMP/NAME.log. Returns
    (process, base URL, log path); raises RuntimeError when it does not start."""
    data = os.path.join(tmp, name)
    port_file = os.path.join(tmp, name + ".port")
    if os.path.exists(port_file):
        os.unlink(port_file)
    full_env = daemon_env(hub_url, hf_home or os.path.join(data, "hf-home"), level)
    full_env.update(env or {})
    log_path = os.path.join(tmp, name + ".log")
    where = ["--data-dir", data] if data_dir else []
    with open(log_path, "a") as log:
        proc = subprocess.Popen([binary, "serve", "--port", "0", "--port-file", port_file]
                                + where + list(extra), env=full_env, stdout=log, stderr=log)
    url = wait_for_port(proc, port_file)
    if url:
        return proc, url, log_path
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    raise RuntimeError("rbee-hive serve did not start; see %s" % log_path)


def stop_daemon(proc, timeout=20):
    """SIGTERM, then SIGKILL when it has not exited after timeout seconds.
    Returns the exit status, or "hung"."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "hung"


class DaemonTestCase(unittest.TestCase):
    """One temporary folder (cls.tmp) and one fake hub (cls.hub, started from
    hub_config(); none when it returns None) for all the tests of a class.
    Daemons started with cls.serve() are stopped after the last test, then
    the hub; then the folder is removed. When the class setup fails, what it
    had started is stopped before the error goes on."""

    tmp_prefix = "rbee-test-"
    # Keyword arguments of start_daemon() for every cls.serve() of the class;
    # a relative hf_home is a folder of cls.tmp.
    serve_defaults = {}

    @classmethod
    def hub_config(cls):
        """The fake hub's config (fixtures.make_config), built in cls.tmp."""
        return None

    @classmethod
    def set_up_class(cls):
        """What the class sets up once its hub runs (daemons, servers)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix=cls.tmp_prefix)
        cls.hub, cls.daemons = None, []
        try:
            cfg = cls.hub_config()
            if cfg is not None:
                cls.hub = client.start(cfg)
            cls.set_up_class()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def hub_url(cls):
        return cls.hub.hub_url if cls.hub else NO_HUB

    @classmethod
    def serve(cls, name, extra=(), **kw):
        """start_daemon() in cls.tmp against the class's hub; the daemon is
        stopped with the class. Returns (process, base URL)."""
        args = dict(cls.serve_defaults, **kw)
        if args.get("hf_home"):
            args["hf_home"] = os.path.join(cls.tmp, args["hf_home"])
        proc, url, _ = start_daemon(cls.tmp, name, cls.hub_url(), extra, **args)
        cls.daemons.append(proc)
        return proc, url

    @classmethod
    def stop_daemons(cls):
        """Stops the daemons of cls.serve(), first started first; their exit
        statuses."""
        procs, cls.daemons = cls.daemons, []
        return [stop_daemon(p) for p in procs]

    @classmethod
    def tearDownClass(cls):
        cls.stop_daemons()
        if cls.hub:
            cls.hub.stop()
            cls.hub = None
        shutil.rmtree(cls.tmp, ignore_errors=True)
