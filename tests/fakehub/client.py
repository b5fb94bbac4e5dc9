"""Starts tests/fakehub/fakehub.py as a subprocess and talks to its control API.

    import client
    hub = client.start(config_dict_or_path)       # waits until both listeners are up
    self.addCleanup(hub.stop)                      # or: with client.start(cfg) as hub:
    os.environ["HF_ENDPOINT"] = hub.hub_url
    ...
    cdn = hub.requests(host="cdn")
    assert all("authorization" not in r["headers"] for r in cdn)
    hub.set_faults("model.Q4_K_M.gguf", {"drop_after_bytes": {"bytes": 4096, "count": 1}})

Header names in recorded requests are lower case.
"""

import json
import os
import select
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FAKEHUB = os.path.join(HERE, "fakehub.py")


class FakeHubError(Exception):
    pass


class FakeHub:
    def __init__(self, proc, hub_url, cdn_url, tmpdir):
        self.proc = proc
        self.hub_url = hub_url
        self.cdn_url = cdn_url
        self.pid = proc.pid
        self._tmpdir = tmpdir

    # Control API -------------------------------------------------------------

    def _call(self, method, path, body=None, timeout=10):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.hub_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise FakeHubError("%s %s: %d %s" % (method, path, e.code, e.read().decode(errors="replace")))

    def requests(self, host=None, since=0, settle=0.0):
        """Recorded requests (oldest first); host: None, "hub" or "cdn".

        A request is recorded when it arrives and finished after its answer
        went out (or the connection dropped), so a client that has read the
        answer can see the record before it is finished. With settle > 0 this
        waits up to that many seconds for every record to be finished."""
        q = "?since=%d" % since + ("&host=%s" % host if host else "")
        deadline = time.monotonic() + settle
        while True:
            reqs = self._call("GET", "/_fake/requests" + q)
            pending = [r for r in reqs if not r.get("completed") and r.get("error") is None]
            if not pending or time.monotonic() >= deadline:
                return reqs
            time.sleep(0.02)

    def reset_requests(self):
        self._call("POST", "/_fake/reset_requests", {})

    def reset(self):
        """Forgets requests, stats and fault counters (faults stay configured)."""
        self._call("POST", "/_fake/reset", {})

    def set_faults(self, path, faults, repo=None):
        """Replaces the faults of a file (repo None: that path in every repo);
        faults {} clears them. Resets that file's fault counters."""
        self._call("POST", "/_fake/faults", {"repo": repo, "path": path, "faults": faults})

    def clear_faults(self):
        """Removes every fault, those from the config included."""
        self._call("POST", "/_fake/clear_faults", {})

    def faults(self):
        return self._call("GET", "/_fake/faults")

    def stats(self):
        return self._call("GET", "/_fake/stats")

    def reload(self, config):
        """Replaces the repos (and their faults) with a new config dict or file path."""
        if isinstance(config, dict):
            self._call("POST", "/_fake/config", {"config": config})
        else:
            self._call("POST", "/_fake/config", {"path": os.path.abspath(config)})

    # Lifetime ----------------------------------------------------------------

    def stop(self, timeout=5):
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout)
        if p.stdout:
            p.stdout.close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start(config, hub_port=0, cdn_port=0, page_size=None, url_ttl=None, timeout=30,
          verbose=False, extra_args=(), python=None):
    """Launches the fake hub and returns a FakeHub once both listeners answer.

    config: a config dict (written to a temporary file) or a path to a JSON file.
    Raises FakeHubError (after killing the process) when it does not come up
    within `timeout` seconds; its stderr is passed through to ours.
    """
    tmpdir = None
    if isinstance(config, dict):
        tmpdir = tempfile.TemporaryDirectory(prefix="fakehub-")
        path = os.path.join(tmpdir.name, "config.json")
        with open(path, "w") as f:
            json.dump(config, f)
    else:
        path = os.path.abspath(config)
    cmd = [python or sys.executable, FAKEHUB, "--config", path, "--hub-port", str(hub_port),
           "--cdn-port", str(cdn_port), "--exit-with-parent"]
    if page_size:
        cmd += ["--page-size", str(page_size)]
    if url_ttl:
        cmd += ["--url-ttl", str(url_ttl)]
    if verbose:
        cmd.append("--verbose")
    cmd += list(extra_args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    line = b""
    try:
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise FakeHubError("fakehub did not become ready in %.0f s" % timeout)
            r, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
            if r:
                b = os.read(proc.stdout.fileno(), 4096)
                if not b:
                    raise FakeHubError("fakehub exited with %s before it was ready" % proc.wait(5))
                line += b
            elif proc.poll() is not None:
                raise FakeHubError("fakehub exited with %s before it was ready" % proc.returncode)
        info = json.loads(line.split(b"\n")[0])
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        proc.stdout.close()
        if tmpdir is not None:
            tmpdir.cleanup()
        raise
    return FakeHub(proc, info["hub"], info["cdn"], tmpdir)
