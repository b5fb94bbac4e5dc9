#!/usr/bin/env python3
"""The daemon's API under load; run through bench/daemon_api.sh, which
starts nginx (bench/lib.sh) and passes its address and a served file.

Stages (--stages, comma separated):
  startup   exec of `rbee-hive serve` to the first 200 of GET /health, and
            (separate starts) to the first 200 of GET /v1/models, with a
            catalog of --models entries and with an empty one, alternated
  models    GET /v1/models with --models entries: serial latency of the
            default page, of ?limit=1000 and of every page in turn (what
            `rbee-hive ls` reads), then wrk -t2 -c16 -d10s --latency on the
            default page and on ?limit=1000 (and GET /health the same way, as
            the server's own floor; nginx serving the same bytes)
  cancel    --cancels downloads from the fake hub (rate-capped per
            connection), each cancelled 200-600 ms after bytes flow; the
            figure is the time from sending POST .../cancel to the last
            write into the blob's .partial file, seen through inotify
            (IN_MODIFY, one event per write(2)/pwrite(2) on the file)
  watchers  the same nginx download with 0 and with 200 SSE watchers,
            alternated; the job's own duration (updated_ms - created_ms).
            The watchers are tests/tools/sse-watch (--watch-client c, the
            default: one epoll thread that reads and drops the bytes) or one
            asyncio loop (--watch-client python, which also gives per event
            the spread of its arrival over the watchers, at the cost of
            about 0.5 s of CPU per run on the daemon's cores); --watch-rbee:
            rbee's framing instead of the event stream (--watch-shm: the
            daemon's data folder on /dev/shm; --watch-capped: nginx's
            limit_rate per connection, see --cap of daemon_api.sh)

Everything the script starts is stopped in `finally`; every wait is bounded.
"""
import argparse
import asyncio
import ctypes
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(0, min(len(v) - 1, -(-len(v) * p // 100) - 1))
    return v[int(k)]


def vm_hwm_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


class Daemon:
    """One `rbee-hive serve` on a fixed port of this benchmark's range."""

    def __init__(self, build, tmp, name, port, endpoint, data=None, extra=()):
        self.build, self.port = build, port
        self.data = data or os.path.join(tmp, name)
        self.log_path = os.path.join(tmp, name + ".log")
        self.endpoint, self.extra = endpoint, list(extra)
        self.proc = None

    def spawn(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RBEE_HIVE", "HF_", "HUGGING"))}
        env.update(HF_ENDPOINT=self.endpoint, HF_HOME=os.path.join(self.data, "hf-home"))
        log = open(self.log_path, "a")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([os.path.join(self.build, "rbee-hive"), "serve", "--port", str(self.port),
                                      "--data-dir", self.data, "--hf-cache", os.path.join(self.data, "hub"),
                                      "--log-level", "warn"] + self.extra, env=env, stdout=log, stderr=log)
        log.close()
        return t0

    def start(self, path="/health"):
        """Returns ms from exec to the first 200 of GET path (1 ms polling)."""
        t0 = self.spawn()
        deadline = t0 + 10
        while time.monotonic() < deadline:
            if health_ok(self.port, path):
                return (time.monotonic() - t0) * 1000
            if self.proc.poll() is not None:
                break
            time.sleep(0.001)
        self.stop()
        raise RuntimeError("rbee-hive serve did not answer; see " + self.log_path)

    def hwm(self):
        return vm_hwm_kib(self.proc.pid) if self.proc else -1

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def call(self, method, path, body=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            h = {"Content-Type": "application/json"} if body is not None else {}
            c.request(method, path, body=None if body is None else json.dumps(body), headers=h)
            r = c.getresponse()
            data = r.read()
            if r.getheader("Content-Type", "").startswith("application/json"):
                return r.status, json.loads(data)
            return r.status, data
        finally:
            c.close()

    def submit(self, body):
        st, j = self.call("POST", "/v1/jobs", body)
        if st != 201:
            raise RuntimeError("submit %r: %d %r" % (body, st, j))
        return j["job_id"]

    def wait_final(self, job_id, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st, j = self.call("GET", "/v1/jobs/" + job_id)
            if st == 200 and j["state"] in ("succeeded", "failed", "cancelled"):
                return j
            time.sleep(0.02)
        raise RuntimeError("job %s did not end within %d s" % (job_id, timeout))


def health_ok(port, path="/health"):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                      % (path.encode(), port))
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def summary(values, unit="ms"):
    if not values:
        return "none"
    return "median %.1f, p50 %.1f, p99 %.1f, min %.1f, max %.1f %s (n=%d)" % (
        statistics.median(values), pct(values, 50), pct(values, 99), min(values), max(values), unit, len(values))


# ---------------------------------------------------------------- startup, models

def stage_startup(a, out):
    full = os.path.join(a.tmp, "cat-full")
    empty = os.path.join(a.tmp, "cat-empty")
    kinds = ("full", "empty", "full-models", "empty-models")
    times = {k: [] for k in kinds}
    hwm = {k: [] for k in kinds}
    for i in range(a.starts):
        for kind in (kinds if i % 2 == 0 else kinds[::-1]):
            d = Daemon(a.build, a.tmp, "startup-" + kind, a.port_base + 1, "http://127.0.0.1:9",
                       data=full if kind.startswith("full") else empty)
            try:
                times[kind].append(d.start("/v1/models" if kind.endswith("models") else "/health"))
                hwm[kind].append(d.hwm())
            finally:
                d.stop()
    out["startup"] = {"models": a.models, "ms": times, "vmhwm_kib": hwm}
    print("startup, exec to first 200, %d starts each, alternated:" % a.starts)
    print("  GET /health, %d-model catalog: %s" % (a.models, summary(times["full"])))
    print("  GET /health, empty catalog:     %s" % summary(times["empty"]))
    print("  GET /v1/models, %d-model catalog: %s" % (a.models, summary(times["full-models"])))
    print("  GET /v1/models, empty catalog:     %s" % summary(times["empty-models"]))


def parse_wrk(text):
    r = {}
    m = re.search(r"Latency Distribution\s*\n((?:\s+\d+%\s+\S+\s*\n)+)", text)
    if m:
        for p, v in re.findall(r"(\d+)%\s+(\S+)", m.group(1)):
            r["p" + p] = wrk_ms(v)
    m = re.search(r"Requests/sec:\s+(\S+)", text)
    r["rps"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", text)
    r["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", text)
    r["socket_errors"] = m.group(1).strip() if m else ""
    return r


def wrk_ms(v):
    for suf, mul in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(suf):
            return float(v[:-len(suf)]) * mul
    return float(v)


def stage_models(a, out):
    full = os.path.join(a.tmp, "cat-full")
    d = Daemon(a.build, a.tmp, "models", a.port_base + 2, "http://127.0.0.1:9", data=full)
    res = {}
    try:
        d.start()
        bodies = {}
        res["paths"] = {}
        serial = {}
        for path in ("/v1/models", "/v1/models?limit=1000"):
            st, body = d.call("GET", path)
            if st != 200:
                raise RuntimeError("GET %s: %d" % (path, st))
            bodies[path] = body
            res["paths"][path] = {"entries": len(body["models"]), "total": body.get("total"),
                                  "body_bytes": len(json.dumps(body, separators=(",", ":"))) + 1}
            serial[path] = []
            for _ in range(20):
                t0 = time.monotonic()
                st, _ = d.call("GET", path)
                serial[path].append((time.monotonic() - t0) * 1000)
                if st != 200:
                    raise RuntimeError("GET %s: %d" % (path, st))
        # Every page in turn, as `rbee-hive ls` and the web UI read the catalog.
        serial["all pages"] = []
        for _ in range(5):
            t0, offset, n = time.monotonic(), 0, 0
            while offset is not None:
                st, body = d.call("GET", "/v1/models?limit=1000&offset=%d" % offset)
                if st != 200:
                    raise RuntimeError("GET /v1/models?offset=%d: %d" % (offset, st))
                n += len(body["models"])
                offset = body["next_offset"]
            serial["all pages"].append((time.monotonic() - t0) * 1000)
            res["all_pages_entries"] = n
        res["serial_ms"] = serial
        res["vmhwm_kib_serial"] = d.hwm()
        wrk = ["wrk", "-t2", "-c16", "-d%ds" % a.wrk_seconds, "--latency"]
        base = "http://127.0.0.1:%d" % d.port
        runs = [("/v1/models", wrk, base + "/v1/models"),
                ("/v1/models?limit=1000", wrk, base + "/v1/models?limit=1000"),
                ("/health", wrk, base + "/health")]
        if a.nginx and a.file:
            # The floor for an answer this size: nginx sending the same bytes as a static file.
            for path, name in (("/v1/models", "models.json"), ("/v1/models?limit=1000", "models-1000.json")):
                with open(os.path.join(os.path.dirname(a.file), name), "wb") as f:
                    f.write(json.dumps(bodies[path], separators=(",", ":")).encode() + b"\n")
                runs.append(("nginx, the JSON of %s as a static file" % path, wrk, a.nginx + "/" + name))
        res["runs"] = []
        for name, cmd_tmpl, url in runs:
            cmd = cmd_tmpl + [url]
            time.sleep(5)  # answers still being built for the previous run's connections
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.wrk_seconds + 120)
            w = parse_wrk(p.stdout)
            w.update(name=name, cmd=" ".join(cmd), raw=p.stdout)
            res["runs"].append(w)
            if name.startswith("/v1/models"):
                w["vmhwm_kib_after"] = d.hwm()
        res["vmhwm_kib"] = d.hwm()
    finally:
        d.stop()
    out["models"] = res
    print("GET /v1/models with a %d-model catalog:" % a.models)
    for path, p in res["paths"].items():
        print("  %s: %d entries, %d bytes of JSON; serial, one connection: %s" % (
            path, p["entries"], p["body_bytes"], summary(serial[path])))
    print("  every page in turn (?limit=1000, %d entries): %s" % (
        res["all_pages_entries"], summary(serial["all pages"])))
    print("  daemon VmHWM after the serial requests %.1f MiB" % (res["vmhwm_kib_serial"] / 1024))
    for w in res["runs"]:
        print("  %s: `%s`: p50 %.2f, p75 %.2f, p90 %.2f, p99 %.2f ms; %.1f req/s; %s requests, "
              "non-2xx %d; socket errors: %s%s" % (
                  w["name"], w["cmd"], w.get("p50", -1), w.get("p75", -1), w.get("p90", -1), w.get("p99", -1),
                  w["rps"] or -1, w["requests"], w["non2xx"], w["socket_errors"] or "none",
                  "; daemon VmHWM after it %.1f MiB" % (w["vmhwm_kib_after"] / 1024) if "vmhwm_kib_after" in w
                  else ""))
    print("  daemon VmHWM at the end: %.1f MiB" % (res["vmhwm_kib"] / 1024))


# ---------------------------------------------------------------- cancel

IN_MODIFY = 0x00000002


class Inotify:
    """IN_MODIFY events of one file, timestamped on arrival by a reader thread."""

    def __init__(self, path):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self.fd, path.encode(), IN_MODIFY) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, "inotify_add_watch " + path)
        self.times = []
        self.stop_flag = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop_flag:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if not r:
                continue
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            now = time.monotonic()
            off = 0
            while off + 16 <= len(buf):
                _, mask, _, ln = struct.unpack_from("iIII", buf, off)
                if mask & IN_MODIFY:
                    self.times.append(now)
                off += 16 + ln

    def close(self):
        self.stop_flag = True
        self.t.join(2)
        os.close(self.fd)


def stage_cancel(a, out):
    sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))
    os.environ["RBEE_BUILD"] = a.build
    import client
    import fixtures
    g = fixtures.write_gguf(os.path.join(a.tmp, "cancel.gguf"), size=a.cancel_mib << 20, seed=5)
    # One repo per cancel, all serving the same bytes: each cancel starts a
    # fresh partial in its own repo folder instead of resuming the last one.
    repos = [fixtures.make_repo("bench/cancel-%d-GGUF" % i, [
        fixtures.make_file("model.Q4_K_M.gguf", g, faults={"rate_limit_bps": a.cancel_rate})])
        for i in range(a.cancels)]
    hub = client.start(fixtures.make_config(repos))
    d = Daemon(a.build, a.tmp, "cancel", a.port_base + 3, hub.hub_url)
    rows = []
    sys.setswitchinterval(0.0002)  # the inotify thread must not wait for the GIL
    try:
        d.start()
        for i in range(a.cancels):
            repo_dir = os.path.join(d.data, "hub", "models--bench--cancel-%d-GGUF" % i)
            part = os.path.join(repo_dir, "blobs", g["sha256"] + ".partial")
            job = d.submit({"operation": "model_download", "model": "hf:bench/cancel-%d-GGUF:Q4_K_M" % i})
            deadline = time.monotonic() + 20
            while not os.path.exists(part) and time.monotonic() < deadline:
                time.sleep(0.001)
            ino = Inotify(part)
            try:
                while not ino.times and time.monotonic() < deadline:
                    time.sleep(0.001)
                if not ino.times:
                    raise RuntimeError("no write into %s within 20 s" % part)
                time.sleep(random.uniform(0.2, 0.6))
                before = len(ino.times)
                t_c = time.monotonic()
                st, body = d.call("POST", "/v1/jobs/%s/cancel" % job)
                t_ans = time.monotonic()
                j = d.wait_final(job, 10)
                t_state = time.monotonic()
                # Quiet for 1 s after the job shows cancelled: the writes are over.
                time.sleep(1.0)
            finally:
                ino.close()
            after = [t for t in ino.times if t >= t_c]
            last = max(after) if after else t_c
            # How often writes came just before the cancel: a cancel that took
            # longer than this gap would have shown writes after it.
            pre = sorted(set(t for t in ino.times if t_c - 0.1 <= t < t_c))
            gaps = [(y - x) * 1000 for x, y in zip(pre, pre[1:])]
            shutil.rmtree(repo_dir, ignore_errors=True)  # the partial is preallocated
            rows.append({"cancel_status": st, "state": j["state"], "writes_before": before,
                         "writes_after_cancel": len(after),
                         "to_last_write_ms": (last - t_c) * 1000,
                         "to_answer_ms": (t_ans - t_c) * 1000, "to_state_seen_ms": (t_state - t_c) * 1000,
                         "write_gap_ms_before": statistics.median(gaps) if gaps else None,
                         "write_gap_ms_before_max": max(gaps) if gaps else None,
                         "writes_100ms_before": len(pre),
                         "bytes_done": (j.get("progress") or {}).get("bytes_done")})
        hwm = d.hwm()
    finally:
        d.stop()
        hub.stop()
    ok = [r for r in rows if r["state"] == "cancelled" and r["cancel_status"] == 200]
    lw = [r["to_last_write_ms"] for r in ok]
    out["cancel"] = {"rows": rows, "vmhwm_kib": hwm, "rate_bps_per_connection": a.cancel_rate,
                     "file_mib": a.cancel_mib}
    print("cancel: %d downloads of a %d MiB file, fake hub capped at %d B/s per connection, "
          "cancelled 200-600 ms after the first write; %d of %d ended cancelled" % (
              a.cancels, a.cancel_mib, a.cancel_rate, len(ok), len(rows)))
    print("  POST cancel sent -> last write into the .partial (inotify): %s" % summary(lw))
    print("  POST cancel sent -> its 200 answer: %s" % summary([r["to_answer_ms"] for r in ok]))
    print("  POST cancel sent -> GET /v1/jobs/ID shows cancelled (20 ms polling): %s" % summary(
        [r["to_state_seen_ms"] for r in ok]))
    print("  writes seen after the cancel was sent: %s" % summary([r["writes_after_cancel"] for r in ok], "writes"))
    print("  the resolution: distinct write arrivals in the 100 ms before the cancel %s; longest gap "
          "between them %s" % (summary([r["writes_100ms_before"] for r in ok], "arrivals"),
                               summary([r["write_gap_ms_before_max"] for r in ok
                                        if r["write_gap_ms_before_max"] is not None])))
    print("  cancels with a write after the cancel was sent: %d of %d" % (
        sum(1 for r in ok if r["writes_after_cancel"]), len(ok)))
    print("  daemon VmHWM: %.1f MiB" % (hwm / 1024))


# ---------------------------------------------------------------- watchers

async def watch(port, job, rec, deadline):
    """Reads one job stream to its terminal line; rec[event id] gets arrival times."""
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, asyncio.TimeoutError):
        return "connect failed"
    w.write(("GET /v1/jobs/%s/stream HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n\r\n"
             % (job, port)).encode())
    status = await r.readline()
    if b" 200 " not in status:
        w.close()
        return "status " + status.decode(errors="replace").strip()
    cur = None
    end = "eof"
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                end = "timeout"
                break
            line = await asyncio.wait_for(r.readline(), left)
            if not line:
                break
            now = time.monotonic()
            # Chunked transfer: size lines are hex; event lines start with a field name.
            if line.startswith(b"id: "):
                cur = int(line[4:].strip())
                rec.setdefault(cur, []).append(now)
            elif line.startswith(b"data: ["):
                end = line[6:].strip().decode()
                break
    except (asyncio.TimeoutError, OSError, ValueError):
        end = "error"
    w.close()
    return end


def run_watchers(port, job, n, rec, ends, deadline, cpu):
    async def main():
        res = await asyncio.gather(*(watch(port, job, rec, deadline) for _ in range(n)))
        ends.extend(res)
    t0 = time.thread_time()
    asyncio.run(main())
    cpu.append(time.thread_time() - t0)


def cpu_s(pid):
    """User + system CPU seconds of a process, all its threads."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stage_watchers(a, out):
    size = os.path.getsize(a.file)
    with open(a.file + ".sha256") as f:
        sha = f.read().strip()
    url = "%s/%s%s#sha256=%s" % (a.nginx, "capped/" if a.watch_capped else "", os.path.basename(a.file), sha)
    model_id = "url:" + sha[:16]
    # --watch-shm: the data folder on tmpfs, so that the disk's writeback
    # (1 GiB per run) does not drown the watchers' cost in noise.
    shm = tempfile.mkdtemp(prefix="rbee-bench-", dir="/dev/shm") if a.watch_shm else None
    d = Daemon(a.build, a.tmp, "watchers", a.port_base + 4, a.nginx,
               data=os.path.join(shm, "data") if shm else None)
    runs = []
    try:
        d.start()
        # A first run, not counted, so that both kinds start warm.
        plan = [(-1, 0)] + [(rnd, n) for rnd in range(a.rounds)
                            for n in ((0, a.watchers) if rnd % 2 == 0 else (a.watchers, 0))]
        for rnd, n in plan:
                subprocess.run(["sync"], timeout=120)
                rec, ends, wcpu = {}, [], []
                perf = None
                if a.watch_perf and rnd >= 0:
                    perf = subprocess.Popen(["perf", "record", "-g", "-o", "%s.%d-%d" % (a.watch_perf, rnd, n),
                                             "-p", str(d.proc.pid)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(0.5)
                c0 = cpu_s(d.proc.pid)
                job = d.submit({"operation": "model_download", "model": url})
                th = wp = None
                if n and a.watch_client == "python":
                    th = threading.Thread(target=run_watchers,
                                          args=(d.port, job, n, rec, ends, time.monotonic() + a.timeout, wcpu))
                    th.start()
                elif n:
                    wp = subprocess.Popen([a.sse_watch, str(d.port), job, str(n), str(a.timeout)]
                                          + (["--rbee"] if a.watch_rbee else []),
                                          stdout=subprocess.PIPE, text=True)
                j = d.wait_final(job, a.timeout)
                if th:
                    th.join(a.timeout)
                if wp:
                    res = json.loads(wp.communicate(timeout=a.timeout)[0])
                    ends = ["done"] * res["done"] + ["eof"] * res["eof"] + \
                        ["error"] * res["error"] + ["timeout"] * res["timeout"]
                    wcpu.append(res["cpu_s"])
                c1 = cpu_s(d.proc.pid)
                if perf:
                    perf.send_signal(signal.SIGINT)
                    perf.wait(60)
                spread = [(max(v) - min(v)) * 1000 for v in rec.values() if len(v) == n]
                runs.append({"round": rnd, "watchers": n, "state": j["state"],
                             "job_ms": j["updated_ms"] - j["created_ms"],
                             "ends": {e: ends.count(e) for e in set(ends)},
                             "events_all_got": len(spread), "spread_ms": spread,
                             "daemon_cpu_s": c1 - c0, "watchers_cpu_s": wcpu[0] if wcpu else 0.0})
                st, _ = d.call("DELETE", "/v1/models/" + urllib.parse.quote(model_id, safe=""))
                if j["state"] != "succeeded" or st != 200:
                    raise RuntimeError("watchers run %r: job %s, delete %d" % (runs[-1]["ends"], j["state"], st))
                if rnd < 0:
                    runs.pop()
        hwm = d.hwm()
    finally:
        d.stop()
        if shm:
            shutil.rmtree(shm, ignore_errors=True)
    out["watchers"] = {"runs": runs, "vmhwm_kib": hwm, "file_bytes": size}
    w0 = [r["job_ms"] for r in runs if r["watchers"] == 0]
    wn = [r["job_ms"] for r in runs if r["watchers"] == a.watchers]
    pairs = [b["job_ms"] / x["job_ms"] for x, b in zip([r for r in runs if r["watchers"] == 0],
                                                       [r for r in runs if r["watchers"] == a.watchers])]
    print("watchers: one %d MiB download from nginx on loopback (%s) into %s, job duration "
          "(updated_ms - created_ms), %d rounds alternated after one warm-up; watchers: %s, %s:" % (
              size >> 20, "nginx limit_rate per connection" if a.watch_capped else "unthrottled",
              "tmpfs (/dev/shm)" if a.watch_shm else "the disk", a.rounds,
              "tests/tools/sse-watch (epoll, C)" if a.watch_client == "c" else "one asyncio loop",
              "rbee's framing" if a.watch_rbee else "text/event-stream"))
    print("  0 watchers:   %s" % summary(w0))
    print("  %d watchers: %s" % (a.watchers, summary(wn)))
    print("  ratio of medians %.3f; per round %s" % (statistics.median(wn) / statistics.median(w0),
                                                    ", ".join("%.3f" % p for p in pairs)))
    for n in (0, a.watchers):
        print("  %d watchers: daemon CPU per run %s; watcher client CPU per run %s" % (
            n, summary([r["daemon_cpu_s"] for r in runs if r["watchers"] == n], "s"),
            summary([r["watchers_cpu_s"] for r in runs if r["watchers"] == n], "s")))
    sp = [s for r in runs for s in r["spread_ms"]] or [0.0]
    print("  per event, last watcher's arrival - first watcher's arrival (client side, one asyncio loop): %s"
          % summary(sp))
    print("  watcher endings: %s" % [r["ends"] for r in runs if r["watchers"]])
    print("  daemon VmHWM: %.1f MiB" % (hwm / 1024))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--nginx", help="base URL of nginx serving --file")
    ap.add_argument("--file", help="a served file with FILE.sha256 beside it")
    ap.add_argument("--port-base", type=int, default=19110)
    ap.add_argument("--stages", default="startup,models,cancel,watchers")
    ap.add_argument("--models", type=int, default=10000)
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--wrk-seconds", type=int, default=10)
    ap.add_argument("--cancels", type=int, default=50)
    ap.add_argument("--cancel-mib", type=int, default=128)
    ap.add_argument("--cancel-rate", type=int, default=8000000)
    ap.add_argument("--watchers", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--watch-shm", action="store_true", help="watchers stage: data folder on /dev/shm")
    ap.add_argument("--watch-capped", action="store_true",
                    help="watchers stage: nginx's /capped/ location (limit_rate per connection)")
    ap.add_argument("--watch-client", choices=("c", "python"), default="c",
                    help="watchers stage: tests/tools/sse-watch (default) or one asyncio loop")
    ap.add_argument("--sse-watch", help="watchers stage: the sse-watch binary (default: BUILD/sse-watch)")
    ap.add_argument("--watch-rbee", action="store_true", help="watchers stage: rbee's framing")
    ap.add_argument("--watch-perf", help="watchers stage: a CPU profile of the daemon for each counted run, "
                    "perf record -g into FILE.ROUND-WATCHERS")
    ap.add_argument("--results", help="write the raw figures there as JSON")
    a = ap.parse_args()
    # SIGTERM unwinds through the finally blocks that stop what was started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    a.build = os.path.abspath(a.build)
    a.sse_watch = os.path.abspath(a.sse_watch or os.path.join(a.build, "sse-watch"))
    stages = a.stages.split(",")
    out = {"date": time.strftime("%Y-%m-%d"), "nproc": os.cpu_count()}
    with open("/proc/cpuinfo") as f:
        out["cpu"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    with open("/proc/loadavg") as f:
        out["loadavg_start"] = f.read().strip()
    print("%s, nproc %d, %s, load average at start %s" % (out["date"], out["nproc"], out["cpu"],
                                                        out["loadavg_start"]))
    if "startup" in stages or "models" in stages:
        os.makedirs(os.path.join(a.tmp, "cat-full"), exist_ok=True)
        os.makedirs(os.path.join(a.tmp, "cat-empty"), exist_ok=True)
        t0 = time.monotonic()
        subprocess.run([os.path.join(a.build, "catalog-fill"), os.path.join(a.tmp, "cat-full", "catalog.db"),
                        str(a.models)], check=True, timeout=1800)
        print("catalog filled with %d models in %.1f s" % (a.models, time.monotonic() - t0))
    try:
        for name, fn in (("startup", stage_startup), ("models", stage_models), ("cancel", stage_cancel),
                         ("watchers", stage_watchers)):
            if name in stages:
                fn(a, out)
                sys.stdout.flush()
    finally:
        with open("/proc/loadavg") as f:
            out["loadavg_end"] = f.read().strip()
        print("load average at the end: %s" % out["loadavg_end"])
        if a.results:
            with open(a.results, "w") as f:
                json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
