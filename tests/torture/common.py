"""What the torture scripts share: the daemon as a process that can be killed
and restarted on the same data root, its HTTP API, the fake hub, and the
audit of a data root after the run (catalog against files on disk).

Python 3 standard library only. Every wait has a deadline.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("RBEE_SRC") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))
import client  # noqa: E402  (the fake hub's launcher)
import fixtures  # noqa: E402

ACTIVE = ("queued", "running", "interrupted")


def build_dir():
    return os.environ.get("RBEE_BUILD") or os.path.join(SRC, "build")


def binary():
    return os.environ.get("RBEE_HIVE_BIN") or os.path.join(build_dir(), "rbee-hive")


class TortureError(Exception):
    pass


def log(msg):
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def daemon_env(hub_url, tmp):
    """A clean environment: the fake hub as HF_ENDPOINT and no variable that
    would move the hub cache away from <data root>/hub or add a token."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RBEE_HIVE", "HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub_url, XDG_CACHE_HOME=os.path.join(tmp, "xdg-cache"),
               RBEE_HIVE_LOG=os.environ.get("TORTURE_DAEMON_LOG", "info"))
    return env


class Daemon:
    """`rbee-hive serve` on one data root; start() may be called again after
    kill9() or stop(), as a restart. Logs of every run go to one file."""

    def __init__(self, tmp, data_dir, hub_url, extra=()):
        self.tmp = tmp
        self.data_dir = data_dir
        self.env = daemon_env(hub_url, tmp)
        self.extra = list(extra)
        self.proc = None
        self.url = None
        self.runs = 0
        self.log_path = os.path.join(tmp, "daemon.log")

    def spawn(self):
        """Starts the process without waiting for it to listen."""
        self.runs += 1
        self.port_file = os.path.join(self.tmp, "port.%d" % self.runs)
        with open(self.log_path, "a") as f:
            f.write("=== run %d\n" % self.runs)
            f.flush()
            self.proc = subprocess.Popen(
                [binary(), "serve", "--port", "0", "--port-file", self.port_file,
                 "--data-dir", self.data_dir] + self.extra,
                env=self.env, stdout=f, stderr=f, stdin=subprocess.DEVNULL)
        self.url = None

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    text = f.read().strip()
                if text:
                    self.url = "http://127.0.0.1:%s" % text
                    try:
                        with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                            if r.status == 200:
                                return self.url
                    except (urllib.error.URLError, OSError):
                        pass
            if self.proc.poll() is not None:
                raise TortureError("rbee-hive serve exited with %s at start; see %s"
                                   % (self.proc.returncode, self.log_path))
            time.sleep(0.02)
        raise TortureError("rbee-hive serve did not answer within %d s" % timeout)

    def start(self, timeout=30):
        self.spawn()
        return self.wait_ready(timeout)

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(10)
        self.proc = None

    def stop(self, timeout=20):
        """SIGTERM, then SIGKILL; returns the exit status (None if killed)."""
        if not self.proc:
            return None
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                return p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
                return None
        return p.returncode

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # HTTP API ----------------------------------------------------------------

    def call(self, method, path, body=None, timeout=10):
        """(status, decoded JSON or text)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def get(self, path):
        status, o = self.call("GET", path)
        if status != 200:
            raise TortureError("GET %s: %s %r" % (path, status, o))
        return o

    def pull(self, ref):
        status, o = self.call("POST", "/v1/jobs", {"operation": "model_download", "model": ref})
        if status != 201:
            raise TortureError("POST /v1/jobs %s: %s %r" % (ref, status, o))
        return o["job_id"]

    def jobs(self):
        return self.get("/v1/jobs")["jobs"]

    def models(self):
        return {m["id"]: m for m in self.get("/v1/models")["models"]}

    def wait_job(self, job_id, timeout):
        """Waits for a job to end; returns its JSON."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, j = self.call("GET", "/v1/jobs/" + job_id)
            if status == 200 and j["state"] not in ACTIVE:
                return j
            time.sleep(0.1)
        raise TortureError("job %s did not end within %d s" % (job_id, timeout))


def log_tail(path, lines=40):
    """The last lines of a log, for a report of a failed run."""
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()[-lines:]
    except OSError:
        return []


def catalog_rows(data_dir, sql):
    """Rows of a read-only query on <data>/catalog.db (the daemon may run)."""
    path = os.path.join(data_dir, "catalog.db")
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def durable_bytes(data_dir, hub_dir, expected_blobs):
    """Bytes that a restart will not fetch again: the done ranges of the
    partials the catalog records plus the finished blobs already on disk.
    expected_blobs: {sha256: size}. Read while the daemon is down."""
    done = 0
    try:
        for sha, n in catalog_rows(data_dir, "SELECT sha256, done_bytes FROM partials"):
            if sha in expected_blobs:
                done += min(n, expected_blobs[sha])
    except sqlite3.Error as ex:
        if os.path.exists(os.path.join(data_dir, "catalog.db")):
            log("reading the partials of the catalog: %s" % ex)
    have = set()
    if os.path.isdir(hub_dir):
        for repo in os.listdir(hub_dir):
            bdir = os.path.join(hub_dir, repo, "blobs")
            if os.path.isdir(bdir):
                have.update(n for n in os.listdir(bdir) if n in expected_blobs)
    return done + sum(expected_blobs[s] for s in have)


def hub_bytes_sent(hub, settle=10.0):
    """Body bytes the fake hub has sent. Its per-file counters grow when a
    body ends, so after a kill this waits (up to `settle` s) until the hub
    has noticed every cut connection."""
    deadline = time.monotonic() + settle
    while True:
        files = hub.stats()["files"].values()
        if not any(f["active"] for f in files) or time.monotonic() >= deadline:
            return sum(f["bytes_sent"] for f in files)
        time.sleep(0.05)


def audit(data_dir, hub_dir, expected):
    """Compares the files under hub_dir with the catalog. expected: {model id:
    {path: sha256}} for the models that must be available. Returns a list of
    problems (empty when everything is right) and a summary dict. Run with
    the daemon stopped, so that nothing is being written."""
    problems = []
    models = {}
    for mid, status, repo_dir, commit in catalog_rows(
            data_dir, "SELECT id, status, repo_dir, commit_sha FROM models"):
        models[mid] = {"status": status, "repo_dir": repo_dir, "commit": commit, "files": {}}
    for mid, path, sha, size in catalog_rows(
            data_dir, "SELECT model_id, path, sha256, size FROM files"):
        models[mid]["files"][path] = (sha, size)
    partial_rows = catalog_rows(data_dir, "SELECT repo_dir, sha256, done_bytes FROM partials")
    for row in partial_rows:
        problems.append("catalog keeps resume state of a partial: %r" % (row,))

    for mid, files in expected.items():
        m = models.get(mid)
        if not m:
            problems.append("model %s is not in the catalog" % mid)
            continue
        if m["status"] != "available":
            problems.append("model %s is %s" % (mid, m["status"]))
        for path, sha in files.items():
            if path not in m["files"]:
                problems.append("model %s lacks file %s" % (mid, path))
            elif m["files"][path][0] != sha:
                problems.append("model %s file %s: catalog sha256 %s, expected %s"
                                % (mid, path, m["files"][path][0], sha))

    # What the catalog says each repo folder must hold.
    want = {}
    for mid, m in models.items():
        d = want.setdefault(m["repo_dir"], {"blobs": {}, "links": {}})
        for path, (sha, size) in m["files"].items():
            d["blobs"][sha] = size
            d["links"][os.path.join("snapshots", m["commit"], path)] = sha

    hashed = 0
    blobs_seen = 0
    empty_dirs = []
    for repo in sorted(os.listdir(hub_dir)) if os.path.isdir(hub_dir) else []:
        if repo.startswith("."):
            continue  # .locks: lock files, not content
        rdir = os.path.join(hub_dir, repo)
        w = want.get(repo)
        if w is None:
            # An empty folder left by a refused pull holds no bytes; files do.
            w = {"blobs": {}, "links": {}}
            empty_dirs.append(repo)
        for root, _dirs, names in os.walk(rdir):
            for n in names:
                full = os.path.join(root, n)
                rel = os.path.relpath(full, rdir)
                if rel.startswith("blobs" + os.sep):
                    blobs_seen += 1
                    name = rel[len("blobs") + 1:]
                    if name.endswith(".partial") or ".tmp" in name or name.startswith("."):
                        problems.append("leftover file %s/%s" % (repo, rel))
                    elif name not in w["blobs"]:
                        problems.append("orphan blob %s/%s" % (repo, rel))
                    else:
                        size = os.path.getsize(full)
                        if size != w["blobs"][name]:
                            problems.append("blob %s/%s has %d bytes, catalog says %d"
                                            % (repo, rel, size, w["blobs"][name]))
                        elif fixtures.sha256_file(full) != name:
                            problems.append("blob %s/%s does not hash to its name" % (repo, rel))
                        hashed += size
                elif rel.startswith("snapshots" + os.sep):
                    if not os.path.islink(full):
                        problems.append("snapshot entry %s/%s is not a symlink" % (repo, rel))
                    elif rel not in w["links"]:
                        problems.append("snapshot link %s/%s is not in the catalog" % (repo, rel))
                    else:
                        target = os.path.realpath(full)
                        if os.path.basename(target) != w["links"][rel] or not os.path.isfile(target):
                            problems.append("snapshot link %s/%s points at %s"
                                            % (repo, rel, os.readlink(full)))
                elif rel.startswith("refs" + os.sep):
                    pass
                else:
                    problems.append("unexpected file %s/%s" % (repo, rel))
        for sha in w["blobs"]:
            if not os.path.isfile(os.path.join(rdir, "blobs", sha)):
                problems.append("catalog names blob %s/blobs/%s, which is missing" % (repo, sha))
        for rel in w["links"]:
            if not os.path.islink(os.path.join(rdir, rel)):
                problems.append("catalog names %s/%s, which is missing" % (repo, rel))
    for repo in want:
        if not os.path.isdir(os.path.join(hub_dir, repo)):
            problems.append("catalog names repo folder %s, which is missing" % repo)
    return problems, {"models": len(models), "blobs": blobs_seen, "bytes_hashed": hashed,
                      "repo_folders_not_in_catalog": empty_dirs}


def cli_verify(url, timeout=300):
    """Runs `rbee-hive verify --json` against the daemon at url and reads its
    NDJSON. Returns (ok, problems, report): ok when the job ended with done,
    the command with status 0 and the report with no bad file; problems
    names each bad file ("ID PATH: corrupt"), else says how the job ended,
    and is empty exactly when ok; report is the daemon's report (None when it
    sent none). Raises TortureError when the command gave no verdict: no
    daemon, a daemon without the model_verify operation, output that is not
    NDJSON. The narration ("... queued: model_verify") is never read as one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RBEE_HIVE")}
    env["RBEE_HIVE_URL"] = url
    p = subprocess.run([binary(), "verify", "--json"], capture_output=True, text=True,
                       timeout=timeout, env=env)
    events = []
    for line in p.stdout.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            ev = None
        if not isinstance(ev, dict) or "event" not in ev:
            raise TortureError("rbee-hive verify --json printed %r" % line[:200])
        events.append(ev)
    ends = [ev for ev in events if ev["event"] in ("done", "error", "cancelled")]
    if not ends:
        raise TortureError("rbee-hive verify gave no verdict (status %d): %s"
                           % (p.returncode, (p.stdout + p.stderr).strip()[-1000:]))
    reports = [ev["data"] for ev in events if ev["event"] == "data"]
    report = reports[-1] if reports and isinstance(reports[-1], dict) else None
    problems = []
    for m in (report or {}).get("models", []):
        for f in m.get("files", []):
            if f.get("status") != "ok":
                problems.append("%s %s: %s" % (m.get("id"), f.get("path"), f.get("status")))
    end = ends[-1]
    if end["event"] != "done" and not problems:
        problems.append("the verify job ended %s: %s" % (end["event"], end.get("message", "")))
    elif report is None:
        problems.append("the verify job sent no report")
    elif report.get("bad", 0) and not problems:
        problems.append("the report counts %s bad file(s)" % report["bad"])
    if p.returncode != 0 and not problems:
        problems.append("rbee-hive verify exited with %d" % p.returncode)
    return not problems, problems, report
