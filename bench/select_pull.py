#!/usr/bin/env python3
"""A whole pull from a repo of many files, each with a distinct quantization
tag, through provision-run and the fake hub (tests/fakehub): the time from
start to the end of the job, for a tag that is not there (the whole listing
is read and its tags listed in the error) and for one that is (one small
file is fetched).

  bench/select_pull.py [--build build] [--files 100000] [--rounds 3] [--page-size 1000]

Prints one JSON line per case: the median wall time ("s") and the median
CPU time of provision-run itself ("cpu_s", user + system). The fake hub is
Python and serves the listing pages slowly, so with many files the wall time
is mostly its own; the CPU time is rbee-hive's share.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))
import client  # noqa: E402
import fixtures  # noqa: E402

REPO = "bench/many-GGUF"
DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def name(i):
    """m-IQ<d>_<base36 of i>.gguf: the tags of select-bench, one per file."""
    suf, v = "", i
    while True:
        suf = DIGITS[v % 36] + suf
        v //= 36
        if not v:
            break
    return "m-IQ%d_%s.gguf" % (i % 10 + 1, suf)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--files", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument("--timeout", type=int, default=900)
    a = ap.parse_args()
    tool = os.path.join(os.path.abspath(a.build), "provision-run")
    tmp = tempfile.mkdtemp(prefix="select-pull-")
    files = [fixtures.make_file(name(i), content="x", lfs=False) for i in range(a.files - 1)]
    files.append(fixtures.make_file("m-Q4_K_M.gguf", content="q4", lfs=False))
    hub = client.start(fixtures.make_config([fixtures.make_repo(REPO, files)],
                                            page_size=a.page_size), timeout=300)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env.update(HOME=tmp, HF_ENDPOINT=hub.hub_url)
        for case, ref in (("tag_missing", REPO + ":Q5_K_S"), ("tag_present", REPO + ":Q4_K_M")):
            times, cpu = [], []
            for r in range(a.rounds):
                data = os.path.join(tmp, "data-%s-%d" % (case, r))
                u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.monotonic()
                p = subprocess.run([tool, "--data-dir", data, ref], env=env,
                                   capture_output=True, text=True, timeout=a.timeout)
                times.append(time.monotonic() - t0)
                u1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu.append(u1.ru_utime - u0.ru_utime + u1.ru_stime - u0.ru_stime)
                end = [json.loads(l) for l in p.stdout.splitlines() if l.strip()][-1]
            print(json.dumps({"case": case, "files": a.files, "end": end.get("event"),
                              "s": round(statistics.median(times), 3),
                              "cpu_s": round(statistics.median(cpu), 3)}), flush=True)
    finally:
        hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
