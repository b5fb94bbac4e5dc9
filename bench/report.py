#!/usr/bin/env python3
"""Summarises the TSV files bench/xfer.sh writes: medians per client, ratios
against the goals of bench/README.md, cancel latency percentiles and resume
waste. Prints Markdown to stdout."""
import argparse
import os
import statistics


def load(path):
    rows = []
    if not path or not os.path.exists(path):
        return rows
    with open(path) as f:
        for line in f:
            if line.strip():
                rows.append(line.rstrip("\n").split("\t"))
    return rows


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(p / 100 * len(v) + 0.5)) - 1))
    return v[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tsv", required=True)
    ap.add_argument("--cancel")
    ap.add_argument("--resume")
    ap.add_argument("--cap-bps", type=float, default=41943040)
    ap.add_argument("--connections", type=int, default=8)
    a = ap.parse_args()

    # scenario tool round wall maxrss_kib user sys bytes ok
    runs = {}
    order = []
    for r in load(a.tsv):
        sc, tool, rnd, wall, rss, user, sys_, nbytes, ok = r
        key = (sc, tool)
        if key not in runs:
            runs[key] = []
            order.append(key)
        runs[key].append(dict(round=int(rnd), wall=float(wall), rss=int(rss), cpu=float(user) + float(sys_),
                              bytes=int(nbytes), ok=ok == "1" or tool == "openssl"))

    med = {}
    print("| scenario | client | runs ok | wall median (min-max) s | MiB/s (median) | CPU s (median) | max RSS median MiB |")
    print("|---|---|---|---|---|---|---|")
    for key in order:
        rs = [x for x in runs[key] if x["ok"]]
        if not rs:
            print(f"| {key[0]} | {key[1]} | 0/{len(runs[key])} | failed | | | |")
            continue
        w = statistics.median(x["wall"] for x in rs)
        size = max(x["bytes"] for x in rs)
        rss = statistics.median(x["rss"] for x in rs) / 1024
        cpu = statistics.median(x["cpu"] for x in rs)
        med[key] = dict(wall=w, size=size, rss=rss, mibs=size / 1048576 / w if w else 0, cpu=cpu,
                        rounds={x["round"]: x["wall"] for x in rs})
        lo = min(x["wall"] for x in rs)
        hi = max(x["wall"] for x in rs)
        print(f"| {key[0]} | {key[1]} | {len(rs)}/{len(runs[key])} | {w:.2f} ({lo:.2f}-{hi:.2f}) | "
              f"{med[key]['mibs']:.0f} | {cpu:.2f} | {rss:.1f} |")
    print()

    def per_round(k1, k2):
        a1, a2 = med[k1]["rounds"], med[k2]["rounds"]
        return [a1[r] / a2[r] for r in sorted(a1) if r in a2 and a2[r] > 0]

    goals = []
    for tool in ("rbee", "before"):
        if ("open", tool) in med and ("open", "curl") in med:
            ratio = med[("open", tool)]["wall"] / med[("open", "curl")]["wall"]
            pr = per_round(("open", tool), ("open", "curl"))
            goals.append((f"unthrottled: {tool} (download + SHA-256) wall / curl -o wall", "<= 1.20",
                          f"{ratio:.2f} (per round: {', '.join(f'{x:.2f}' for x in pr)})", ratio <= 1.2))
        if ("open", tool) in med and ("open", "curl+sync") in med:
            ratio = med[("open", tool)]["wall"] / med[("open", "curl+sync")]["wall"]
            pr = per_round(("open", tool), ("open", "curl+sync"))
            goals.append((f"unthrottled: {tool} wall / curl+sync wall (both end with the file on disk)",
                          "-", f"{ratio:.2f} (per round: {', '.join(f'{x:.2f}' for x in pr)})", None))
        if ("open", tool) in med and ("open", "curl-tee-openssl") in med:
            ratio = med[("open", tool)]["wall"] / med[("open", "curl-tee-openssl")]["wall"]
            pr = per_round(("open", tool), ("open", "curl-tee-openssl"))
            goals.append((f"unthrottled: {tool} wall / curl \\| tee \\| openssl dgst wall (the one-pass verified pipeline)",
                          "-", f"{ratio:.2f} (per round: {', '.join(f'{x:.2f}' for x in pr)})", None))
        if ("open", tool) in med and ("open", "curl") in med and ("open", "openssl") in med:
            peer = med[("open", "curl")]["cpu"] + med[("open", "openssl")]["cpu"]
            ratio = med[("open", tool)]["cpu"] / peer
            goals.append((f"unthrottled: {tool} CPU / (curl -o CPU + openssl dgst CPU)", "<= 1.10",
                          f"{ratio:.2f} ({med[('open', tool)]['cpu']:.2f} s / "
                          f"({med[('open', 'curl')]['cpu']:.2f} + {med[('open', 'openssl')]['cpu']:.2f} s))",
                          ratio <= 1.1))
    for tool in ("rbee", "before"):
        if ("cap", tool) not in med:
            continue
        bound = a.connections * a.cap_bps / 1048576
        frac = med[("cap", tool)]["mibs"] / bound
        goals.append((f"capped: {tool} MiB/s / ({a.connections} x cap = {bound:.0f} MiB/s)", ">= 0.85",
                      f"{frac:.2f}", frac >= 0.85))
        if ("cap", "aria2c") in med:
            ratio = med[("cap", tool)]["mibs"] / med[("cap", "aria2c")]["mibs"]
            afrac = med[("cap", "aria2c")]["mibs"] / bound
            pr = per_round(("cap", "aria2c"), ("cap", tool))
            goals.append((f"capped: {tool} MiB/s / aria2c -x8 -s8 MiB/s", ">= 1.15",
                          f"{ratio:.2f} (aria2c at {afrac:.2f} of the bound; per round: "
                          f"{', '.join(f'{x:.2f}' for x in pr)})", ratio >= 1.15))
    for sc in ("rss-small", "rss-big"):
        if (sc, "rbee") in med:
            k = (sc, "rbee")
            peer = med.get((sc, "aria2c"))
            goals.append((f"peak RSS, xfer-get, {med[k]['size'] / 1048576:.0f} MiB file", "< 24 MiB",
                          f"{med[k]['rss']:.1f} MiB" + (f" (aria2c {peer['rss']:.1f} MiB)" if peer else ""),
                          med[k]["rss"] < 24))

    can = load(a.cancel)
    if can:
        stop = [float(r[0]) for r in can if r[2] == "cancelled" and float(r[0]) >= 0]
        fin = [float(r[1]) for r in can if r[2] == "cancelled"]
        if stop:
            p99 = pct(stop, 99)
            goals.append((f"cancel to last byte written, {len(stop)} cancels (of {len(can)}): p50 / p99",
                          "p99 < 50 ms", f"{pct(stop, 50):.0f} / {p99:.0f} ms (cancel to result: "
                          f"p50 {pct(fin, 50):.0f}, p99 {pct(fin, 99):.0f} ms)", p99 < 50))
        else:
            goals.append((f"cancel to last byte written ({len(can)} tries)", "p99 < 50 ms",
                          "no cancel landed before the download ended (file too small?)", None))
    res = load(a.resume)
    by_loc = {}
    for r in res:
        loc = r[4] if len(r) > 4 else "resume"
        by_loc.setdefault(loc, []).append(r)
    for loc, rs in by_loc.items():
        waste = [int(r[2]) for r in rs]
        what = "capped 40 MiB/s per connection" if loc == "resume" else \
            ("unthrottled, before" if loc.startswith("before:") else "unthrottled")
        goals.append((f"resume after kill -9, {what}: bytes served twice (kill at " +
                      ", ".join(r[0] for r in rs) + " ms)", "<= 16 MiB",
                      ", ".join(f"{w / 1048576:.1f}" for w in waste) + " MiB (results: " +
                      ", ".join(r[3] for r in rs) + ")", max(waste) <= 16 * 1048576))

    if goals:
        print("| figure | goal | measured | met |")
        print("|---|---|---|---|")
        for name, goal, got, ok in goals:
            print(f"| {name} | {goal} | {got} | {'-' if ok is None else 'yes' if ok else 'NO'} |")


if __name__ == "__main__":
    main()
