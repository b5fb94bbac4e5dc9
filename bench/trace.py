#!/usr/bin/env python3
"""Runs xfer-get --progress once and timestamps its progress lines, to show
how far the SHA-256 (the hashed prefix) trails the bytes written: at the
last progress sample, how much is written and hashed, and how long the
transfer goes on after that. Prints one Markdown table row (with a header on first use).

    trace.py XFER_GET URL DEST SIZE SHA256 CONNECTIONS
"""
import json
import subprocess
import sys
import time


def main():
    xg, url, dest, size, sha, conns = sys.argv[1:7]
    size = int(size)
    t0 = time.monotonic()
    p = subprocess.Popen([xg, url, dest, "--size", str(size), "--sha256", sha, "--connections", conns,
                          "--progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []  # (t, bytes_done, hashed)
    for line in p.stderr:
        try:
            d = json.loads(line)["progress"]
        except (ValueError, KeyError):
            continue
        samples.append((time.monotonic() - t0, d["bytes_done"], d["hashed"]))
    out = p.stdout.read()
    try:
        p.wait(timeout=600)
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    t_end = time.monotonic() - t0
    result = json.loads(out.strip().splitlines()[-1])["result"] if out.strip() else "none"
    # Progress stops once the engine has no bytes left to move, so the last
    # sample is as close to the last byte as xfer-get shows.
    last = samples[-1] if samples else (0, 0, 0)
    half = next((s for s in samples if s[1] >= size // 2), None)
    print(f"| {'capped' if '/capped/' in url else 'open'} | {result} | {t_end:.2f} | "
          f"{last[0]:.2f} | {last[1] * 100 / size:.0f} % | {last[2] * 100 / size:.0f} % | "
          f"{t_end - last[0]:.2f} | " + (f"{half[2] * 100 / size:.0f} % |" if half else "- |"))

if __name__ == "__main__":
    main()
