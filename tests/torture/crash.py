#!/usr/bin/env python3
"""Crash torture: pulls of several models from the fake hub while the daemon
is killed with SIGKILL at random moments and restarted on the same data root,
until every model is available.

Afterwards: every model is in the catalog with the right SHA-256, the blobs
hash to their names (`rbee-hive verify --json`, and the audit below), no
orphan blob, partial or resume state is left, and the bytes the fake hub
sent beyond the models' sizes (re-downloaded bytes) are reported, in all
and per kill.

    RBEE_BUILD=build-x python3 tests/torture/crash.py [--kills 20] [--size-mib 64]

Prints one JSON report on stdout; exit status 0 when every check passed.
The models, in the hub:
  alpha  one file of SIZE
  beta   a Q8_0 model split into two shards of SIZE/2, plus a README
  gamma  one file of SIZE
  copy   the same content as alpha in another repo (one transfer, a hard link)
  delta  one file of SIZE/8 (below the split threshold: one connection)
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import TortureError, fixtures, log  # noqa: E402

MiB = 1 << 20


def make_models(tmp, size, conn_rate):
    """Returns (hub config, [model], {sha256: size}); model = {ref, id, files
    {path: sha}}. Every body the CDN sends is paced to conn_rate bytes/s, on
    the server side, so that little is in flight in socket buffers at a kill
    and the hub's count of bytes sent is close to what the daemon received."""
    a = fixtures.write_gguf(os.path.join(tmp, "alpha.gguf"), size=size, seed=11)
    b1 = fixtures.write_gguf(os.path.join(tmp, "beta1.gguf"), size=size // 2, seed=12,
                             file_type="Q8_0", split=(0, 2))
    b2 = fixtures.write_gguf(os.path.join(tmp, "beta2.gguf"), size=size // 2, seed=13,
                             file_type="Q8_0", split=(1, 2))
    c = fixtures.write_gguf(os.path.join(tmp, "gamma.gguf"), size=size, seed=14)
    d = fixtures.write_gguf(os.path.join(tmp, "delta.gguf"), size=size // 8, seed=15)
    b1n, b2n = "beta-Q8_0-00001-of-00002.gguf", "beta-Q8_0-00002-of-00002.gguf"
    readme = "# beta\n"
    repos = [
        fixtures.make_repo("org/alpha-GGUF", [fixtures.make_file("alpha.Q4_K_M.gguf", a)]),
        fixtures.make_repo("org/beta-GGUF", [fixtures.make_file(b1n, b1),
                                             fixtures.make_file(b2n, b2),
                                             fixtures.make_file("README.md", content=readme)]),
        fixtures.make_repo("org/gamma-GGUF", [fixtures.make_file("gamma.Q4_K_M.gguf", c)]),
        fixtures.make_repo("org/copy-GGUF", [fixtures.make_file("copy.Q4_K_M.gguf", a)]),
        fixtures.make_repo("org/delta-GGUF", [fixtures.make_file("delta.Q4_K_M.gguf", d)]),
    ]
    models = [
        {"ref": "hf:org/alpha-GGUF", "id": "hf:org/alpha-GGUF:alpha.Q4_K_M.gguf",
         "files": {"alpha.Q4_K_M.gguf": a["sha256"]}},
        {"ref": "hf:org/beta-GGUF:Q8_0", "id": "hf:org/beta-GGUF:" + b1n,
         "files": {b1n: b1["sha256"], b2n: b2["sha256"]}},
        {"ref": "hf:org/gamma-GGUF", "id": "hf:org/gamma-GGUF:gamma.Q4_K_M.gguf",
         "files": {"gamma.Q4_K_M.gguf": c["sha256"]}},
        {"ref": "hf:org/copy-GGUF", "id": "hf:org/copy-GGUF:copy.Q4_K_M.gguf",
         "files": {"copy.Q4_K_M.gguf": a["sha256"]}},
        {"ref": "hf:org/delta-GGUF", "id": "hf:org/delta-GGUF:delta.Q4_K_M.gguf",
         "files": {"delta.Q4_K_M.gguf": d["sha256"]}},
    ]
    blobs = {f["sha256"]: f["size"] for f in (a, b1, b2, c, d)}
    for r in repos:
        for c in r["commits"].values():
            for f in c["files"]:
                if f.get("lfs") and conn_rate:
                    f["faults"] = {"rate_limit_bps": conn_rate}
    return fixtures.make_config(repos), models, blobs


class Torture:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.rng = random.Random(args.seed)
        self.data = os.path.join(tmp, "data")
        self.hub_dir = os.path.join(self.data, "hub")
        self.kills = []          # one dict per kill in the middle of the run
        self.startup_kills = 0   # kills before the daemon answered
        self.resubmitted = []    # refs pulled again because no job was left for them
        self.failed_jobs = []    # jobs that ended in failure during the run
        self.unexpected_exits = []

    def ensure_jobs(self, d, models):
        """Every model not yet available has a live job; pulls again when the
        restart lost its job (not persisted yet) or the job failed."""
        avail = {i for i, m in d.models().items() if m["status"] == "available"}
        jobs = d.jobs()
        for j in jobs:
            if j["state"] == "failed" and j["job_id"] not in {f["job_id"] for f in self.failed_jobs}:
                self.failed_jobs.append({"job_id": j["job_id"], "model": j["model"],
                                         "error": j["error"]})
        for m in models:
            if m["id"] in avail:
                continue
            if any(j["model"] == m["ref"] and j["state"] in common.ACTIVE for j in jobs):
                continue
            if m.get("submitted"):
                self.resubmitted.append(m["ref"])
            m["submitted"] = True
            d.pull(m["ref"])

    def all_done(self, d, models):
        ms = d.models()
        ok = all(m["id"] in ms and ms[m["id"]]["status"] == "available" for m in models)
        return ok and not any(j["state"] in common.ACTIVE for j in d.jobs())

    def run(self):
        a = self.args
        cfg, models, blobs = make_models(self.tmp, a.size_mib * MiB, a.conn_rate)
        if a.only:
            names = a.only.split(",")
            models = [m for m in models if m["ref"].split("/")[1].split("-")[0] in names]
            want = {sha for m in models for sha in m["files"].values()}
            blobs = {k: v for k, v in blobs.items() if k in want}
        unique = sum(blobs.values())
        log("models written: %d blobs, %.1f MiB" % (len(blobs), unique / MiB))
        hub = common.client.start(cfg)
        extra = ["--max-jobs", str(a.max_jobs)]
        if a.limit_rate:
            extra += ["--limit-rate", a.limit_rate]
        d = common.Daemon(self.tmp, self.data, hub.hub_url, extra)
        report = {"kills": 0}
        try:
            report = self._loop(hub, d, models, blobs, unique)
        finally:
            d.stop()
            hub.stop()
        return report

    def _loop(self, hub, d, models, blobs, unique):
        a = self.args
        t0 = time.monotonic()
        deadline = t0 + a.max_seconds
        d.start()
        self.ensure_jobs(d, models)
        finished = False
        while time.monotonic() < deadline:
            if not d.alive():
                self.unexpected_exits.append(d.proc.returncode if d.proc else None)
                log("daemon exited on its own (%s); restarting" % self.unexpected_exits[-1])
                d.start()
                self.ensure_jobs(d, models)
            killing = len(self.kills) < a.kills
            wait = (self.rng.uniform(0.0, 0.4) if self.rng.random() < a.short_fraction
                    else self.rng.uniform(a.min_gap, a.max_gap)) if killing else 1e9
            if killing and a.kill_at_fraction:
                wait = 1e9  # the kill comes when the progress says so
            up = time.monotonic()
            until = up + wait
            snap = None
            while time.monotonic() < min(until, deadline):
                try:
                    if self.all_done(d, models):
                        finished = True
                        break
                    running = [j for j in d.jobs() if j["state"] == "running"]
                    snap = [(j["model"], (j.get("progress") or {}).get("phase"))
                            for j in running]
                    if killing and a.kill_at_fraction and any(
                            (j.get("progress") or {}).get("bytes_done", 0) >=
                            a.kill_at_fraction * max(1, (j.get("progress") or {}).get(
                                "bytes_total") or 0) > 0 for j in running):
                        break
                except (OSError, TortureError) as ex:
                    log("poll failed: %s" % ex)
                time.sleep(0.1 if not a.kill_at_fraction else 0.02)
            wait = time.monotonic() - up
            if finished:
                break
            if time.monotonic() >= deadline:
                break
            d.kill9()
            sent = common.hub_bytes_sent(hub)
            durable = common.durable_bytes(self.data, self.hub_dir, blobs)
            waste = sent - durable
            prev = self.kills[-1]["waste_so_far"] if self.kills else 0
            self.kills.append({"at_s": round(time.monotonic() - t0, 2), "uptime_s": round(wait, 2),
                               "running": snap, "sent": sent, "durable": durable,
                               "waste_so_far": waste, "lost_by_this_kill": waste - prev})
            log("kill %d after %.2f s: sent %.1f MiB, durable %.1f MiB, lost %.2f MiB"
                % (len(self.kills), wait, sent / MiB, durable / MiB, (waste - prev) / MiB))
            # Now and then a second kill while the daemon is still starting.
            if self.rng.random() < a.startup_kill_fraction:
                d.spawn()
                time.sleep(self.rng.uniform(0.0, 0.05))
                d.kill9()
                self.startup_kills += 1
            d.start()
            self.ensure_jobs(d, models)

        elapsed = time.monotonic() - t0
        problems = []
        if not finished:
            problems.append("models not all available after %d s" % a.max_seconds)
        if len(self.kills) < a.kills:
            problems.append("only %d kills before the downloads finished (wanted %d): "
                            "lower --conn-rate or raise --size-mib" % (len(self.kills), a.kills))
        for f in self.failed_jobs:
            problems.append("job %s (%s) failed: %s" % (f["job_id"], f["model"], f["error"]))
        for rc in self.unexpected_exits:
            problems.append("the daemon exited on its own with status %s" % rc)

        # Catalog through the API: every model available with the right hashes.
        ms = d.models()
        for m in models:
            got = ms.get(m["id"])
            if not got:
                problems.append("GET /v1/models lacks %s" % m["id"])
                continue
            files = {f["path"]: f["sha256"] for f in got["files"]}
            for path, sha in m["files"].items():
                if files.get(path) != sha:
                    problems.append("%s %s: sha256 %s, expected %s"
                                    % (m["id"], path, files.get(path), sha))
        try:
            problems += ["rbee-hive verify: " + v for v in common.cli_verify(d.url)[1]]
        except TortureError as ex:
            problems.append("rbee-hive verify: %s" % ex)
        sent = common.hub_bytes_sent(hub)
        stop_rc = d.stop()
        if stop_rc != 0:
            problems.append("SIGTERM: the daemon exited with %s" % stop_rc)
        expected = {m["id"]: m["files"] for m in models}
        audit_problems, audit_sum = common.audit(self.data, self.hub_dir, expected)
        problems += audit_problems
        lost = [k["lost_by_this_kill"] for k in self.kills]
        return {
            "ok": not problems,
            "problems": problems,
            "kills": len(self.kills),
            "startup_kills": self.startup_kills,
            "elapsed_s": round(elapsed, 1),
            "unique_bytes": unique,
            "bytes_sent": sent,
            "bytes_redownloaded": sent - unique,
            "redownloaded_per_kill_avg": round((sent - unique) / max(1, len(self.kills))),
            "lost_per_kill_max": max(lost) if lost else 0,
            "resubmitted": self.resubmitted,
            "failed_jobs": self.failed_jobs,
            "verify": "rbee-hive verify --json, and the audit hashes every blob",
            "audit": audit_sum,
            "kill_log": self.kills,
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=20, help="kills in the middle of the run")
    ap.add_argument("--size-mib", type=int, default=64, help="size of the large files")
    ap.add_argument("--conn-rate", type=int, default=256 << 10,
                    help="the fake CDN's pace per connection, bytes/s (0: unpaced)")
    ap.add_argument("--limit-rate", help="the daemon's --limit-rate (default: its own)")
    ap.add_argument("--max-jobs", type=int, default=3)
    ap.add_argument("--min-gap", type=float, default=0.5, help="shortest normal uptime, s")
    ap.add_argument("--max-gap", type=float, default=3.0, help="longest uptime, s")
    ap.add_argument("--short-fraction", type=float, default=0.15,
                    help="share of kills after 0-0.4 s of uptime (resolving, start-up)")
    ap.add_argument("--startup-kill-fraction", type=float, default=0.1,
                    help="share of restarts killed again within 50 ms")
    ap.add_argument("--max-seconds", type=int, default=600)
    ap.add_argument("--max-lost-per-kill-mib", type=float, default=0,
                    help="fail when one kill loses more than this (0: report only)")
    ap.add_argument("--only", help="comma-separated models (alpha,beta,gamma,copy,delta)")
    ap.add_argument("--kill-at-fraction", type=float, default=0,
                    help="kill when a running job has this fraction of its bytes, "
                         "instead of at random moments")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary folder (fixtures, data root, daemon log)")
    ap.add_argument("--report", help="also write the JSON report here")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rbee-torture-crash-")
    log("seed %d, folder %s" % (args.seed, tmp))
    try:
        rep = Torture(args, tmp).run()
        rep["seed"] = args.seed
        if args.max_lost_per_kill_mib and rep["lost_per_kill_max"] > args.max_lost_per_kill_mib * MiB:
            rep["problems"].append("a kill lost %d bytes, over %.0f MiB"
                                   % (rep["lost_per_kill_max"], args.max_lost_per_kill_mib))
            rep["ok"] = False
    except TortureError as ex:
        rep = {"ok": False, "problems": [str(ex)], "seed": args.seed}
    if not rep["ok"]:
        rep["daemon_log_tail"] = common.log_tail(os.path.join(tmp, "daemon.log"))
    if args.keep:
        rep["folder"] = tmp
    text = json.dumps(rep, indent=1)
    print(text)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text + "\n")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
