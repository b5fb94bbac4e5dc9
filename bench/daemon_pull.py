#!/usr/bin/env python3
"""One pull through the daemon's job API, watched by one light process.

    bench/daemon_pull.py API_URL PID MODEL_REF [SMAPS_OUT]

Posts a model_download job for MODEL_REF, then samples /proc/PID/status
(VmRSS) every 20 ms and the job every 200 ms until it ends (at most 10
minutes). Prints "job_ms peak_rss_kib state" on one line; the job's JSON on
stderr when it did not succeed. With SMAPS_OUT, /proc/PID/smaps is read at
each new peak of VmRSS (256 KiB above the last) and what was resident at the
highest, by kind of mapping, is written to SMAPS_OUT.

One process does it all: on a two-core machine a watcher that forks awk,
curl and python3 every few tens of ms takes a share of a core from the
pull it measures.
"""
import json
import sys
import time
import urllib.request

from procfs import proc_value, smaps_groups

API, PID, MODEL = sys.argv[1], int(sys.argv[2]), sys.argv[3]
SMAPS_OUT = sys.argv[4] if len(sys.argv) > 4 else None


def call(path, body=None):
    req = urllib.request.Request(API + path, data=body,
                                 headers={"Content-Type": "application/json"} if body else {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


body = json.dumps({"operation": "model_download", "model": MODEL}).encode()
job_id = call("/v1/jobs", body)["job_id"]
peak, job, deadline = 0, {}, time.monotonic() + 600
smaps_peak, smaps = 0, None
i = 0
while time.monotonic() < deadline:
    rss = proc_value(PID, "status", "VmRSS") or 0
    peak = max(peak, rss)
    if SMAPS_OUT and rss >= smaps_peak + 256:
        smaps_peak, smaps = rss, smaps_groups(PID) or smaps
    if i % 10 == 0:
        job = call(f"/v1/jobs/{job_id}")
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
    i += 1
    time.sleep(0.02)
state = job.get("state", "unknown")
if SMAPS_OUT and smaps:
    with open(SMAPS_OUT, "w") as f:
        f.write("sampled VmRSS %d KiB: %s\n" % (smaps_peak, ", ".join(
            "%s %d" % kv for kv in sorted(smaps.items(), key=lambda kv: -kv[1]) if kv[1] >= 256)))
if state != "succeeded":
    print(json.dumps(job), file=sys.stderr)
print(job.get("updated_ms", 0) - job.get("created_ms", 0), peak, state)
