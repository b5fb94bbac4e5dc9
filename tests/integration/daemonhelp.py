"""What the tests that start `rbee-hive serve` share: a clean environment
pointed at the fake hub, and waiting for the port the daemon writes to
--port-file."""

import os
import time


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
