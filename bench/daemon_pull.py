#!/usr/bin/env python3
"""One pull through the daemon's job API, watched by one light process.

    bench/daemon_pull.py API_URL PID MODEL_REF

Posts a model_download job for MODEL_REF, then samples /proc/PID/status
(VmRSS) every 20 ms and the job every 200 ms until it ends (at most 10
minutes). Prints "job_ms peak_rss_kib state" on one line; the job's JSON on
stderr when it did not succeed.

One process does it all: on a two-core machine a watcher that forks awk,
curl and python3 every few tens of ms takes a share of a core from the
pull it measures.
"""
import json
import sys
import time
import urllib.request

from procfs import proc_value

API, PID, MODEL = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def call(path, body=None):
    req = urllib.request.Request(API + path, data=body,
                                 headers={"Content-Type": "application/json"} if body else {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


body = json.dumps({"operation": "model_download", "model": MODEL}).encode()
job_id = call("/v1/jobs", body)["job_id"]
peak, job, deadline = 0, {}, time.monotonic() + 600
i = 0
while time.monotonic() < deadline:
    peak = max(peak, proc_value(PID, "status", "VmRSS") or 0)
    if i % 10 == 0:
        job = call(f"/v1/jobs/{job_id}")
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
    i += 1
    time.sleep(0.02)
state = job.get("state", "unknown")
if state != "succeeded":
    print(json.dumps(job), file=sys.stderr)
print(job.get("updated_ms", 0) - job.get("created_ms", 0), peak, state)
