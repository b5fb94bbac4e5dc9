#!/usr/bin/env python3
"""How far the fresh resume state trails the written bytes, sampled.

    save_lag.py NAME XFER-GET URL OUT SIZE SHA256 CONNECTIONS

Runs one xfer-get with --state-file OUT.state and, every 5 ms until it
ends, reads the bytes the process has written (/proc/PID/io wchar: the
partial's bytes and the small state files) and the sum of the ranges in
OUT.state.fresh (the fresh save). Their difference is what a kill -9 at
that moment would lose of the bytes already written. Prints one Markdown
row: NAME, the samples, the lag's median, p90, p99 and largest in MiB.
"""
import subprocess
import sys
import time

from procfs import proc_value

MIB = 1048576
PERIOD_S = 0.005
LIMIT_S = 300  # one run is bounded


def fresh_sum(path):
    """The sum of the ranges of a fresh state file ("BOOT KEY TOTAL", pairs, "end SUM")."""
    try:
        with open(path) as f:
            parts = f.read().split()
    except OSError:
        return 0
    nums = parts[3:]
    if "end" in nums:
        nums = nums[: nums.index("end")]
    total = 0
    for a, b in zip(nums[0::2], nums[1::2]):
        try:
            total += int(b) - int(a)
        except ValueError:
            return 0
    return total


def pct(v, p):
    return v[min(len(v) - 1, int(len(v) * p))]


def main():
    if len(sys.argv) != 8:
        sys.exit(__doc__)
    name, xg, url, out, size, sha, conns = sys.argv[1:]
    cmd = [xg, url, out, "--size", size, "--sha256", sha, "--connections", conns,
           "--state-file", out + ".state"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lags = []
    end = time.monotonic() + LIMIT_S
    while p.poll() is None and time.monotonic() < end:
        w = proc_value(p.pid, "io", "wchar")
        s = fresh_sum(out + ".state.fresh")
        if w is not None and s > 0:
            lags.append(max(0, w - s) / MIB)
        time.sleep(PERIOD_S)
    if p.poll() is None:
        p.kill()
    p.wait()
    lags.sort()
    if not lags:
        print(f"| {name} | 0 | - | - | - | - |")
        return
    print(f"| {name} | {len(lags)} | {pct(lags, 0.5):.1f} | {pct(lags, 0.9):.1f} | "
          f"{pct(lags, 0.99):.1f} | {lags[-1]:.1f} |")


if __name__ == "__main__":
    main()
