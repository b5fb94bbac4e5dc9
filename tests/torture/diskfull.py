#!/usr/bin/env python3
"""Disk full: the daemon's data root on a small file system (a tmpfs with a
size, else a loop-mounted ext4 image), and what happens when space runs out.

Scenarios, in order, on one daemon that keeps running throughout:
  refuse     a model larger than the free space fails before its first byte,
             with both sizes in the message, and leaves no partial
  refuse_sum a two-file model whose files each fit but not together: refused
             before the first byte too (space is checked for the whole model)
  between    a two-file model; the disk is filled from outside while the first
             file downloads, leaving less than the second needs: the first
             file completes (its space was reserved), the job fails cleanly at
             the second, the daemon goes on serving (health, catalog, a small
             pull), and after the filler is removed a retry finishes without
             fetching the first file again
  during     the disk is filled completely while a one-file model downloads:
             the preallocated file cannot run out of space, so the job must
             succeed, or fail cleanly if the catalog cannot be written and
             then succeed on a retry without fetching the file again
  resume     a pull cancelled half-way keeps its preallocated partial; with
             the disk then filled to all but 1 MiB, a retry resumes and
             finishes (nothing more needs to be allocated)

    RBEE_BUILD=build-x python3 tests/torture/diskfull.py [--fs-mib 64]

Needs root (mount). Prints one JSON report; exit 0 when every check passed,
77 when no small file system could be mounted.
"""

import argparse
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import TortureError, fixtures, log  # noqa: E402

MiB = 1 << 20
SKIP = 77


def mount_small_fs(mnt, tmp, size_mib):
    """Mounts a size_mib file system at mnt; returns a description, or raises
    OSError with the reasons when neither a tmpfs nor a loop image works."""
    why = []
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0700" % size_mib, "tmpfs",
                        mnt], capture_output=True, text=True, timeout=30)
    if p.returncode == 0:
        return "tmpfs size=%dm" % size_mib
    why.append("tmpfs: " + p.stderr.strip())
    img = os.path.join(tmp, "fs.img")
    with open(img, "wb") as f:
        f.truncate(size_mib * MiB)
    p = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", img], capture_output=True, text=True,
                       timeout=60)
    if p.returncode == 0:
        p = subprocess.run(["mount", "-o", "loop", img, mnt], capture_output=True, text=True,
                           timeout=30)
        if p.returncode == 0:
            return "ext4 loop image of %d MiB" % size_mib
    why.append("loop image: " + p.stderr.strip())
    raise OSError("; ".join(why))


def umount(mnt):
    for _ in range(50):
        p = subprocess.run(["umount", mnt], capture_output=True, text=True, timeout=30)
        if p.returncode == 0 or not os.path.ismount(mnt):
            return
        time.sleep(0.1)
    subprocess.run(["umount", "-l", mnt], capture_output=True, timeout=30)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path, leave):
    """Writes a filler file until at most `leave` bytes are free (0: until
    ENOSPC). Returns the filler's size."""
    buf = b"\0" * MiB
    n = 0
    with open(path, "wb") as f:
        while True:
            room = free_bytes(os.path.dirname(path)) - leave
            if room <= 0:
                break
            try:
                k = os.write(f.fileno(), buf[:min(MiB, room)])
            except OSError as ex:
                if ex.errno == errno.ENOSPC:
                    break
                raise
            if k <= 0:
                break
            n += k
        try:
            os.fsync(f.fileno())
        except OSError:
            pass
    return n


def cdn_gets(hub, repo, path, since=0):
    return [r for r in hub.requests(host="cdn", since=since)
            if r["method"] == "GET" and r.get("repo") == repo and r.get("file") == path]


def cdn_bytes(hub, repo, path, since=0):
    return sum(r["bytes_sent"] for r in cdn_gets(hub, repo, path, since))


def last_seq(hub):
    rs = hub.requests()
    return rs[-1]["seq"] if rs else 0


SIZE_RE = re.compile(r"\d[\d.,]*\s*(?:[KMGT]i?B|bytes)?")


class Run:
    def __init__(self, args, tmp, mnt):
        self.a = args
        self.tmp = tmp
        self.mnt = mnt
        self.data = os.path.join(mnt, "data")
        self.hub_dir = os.path.join(self.data, "hub")
        self.filler = os.path.join(mnt, "filler")
        self.results = {}
        self.problems = []
        self.available = {}  # model id -> {path: sha256}, checked by the audit

    def check(self, scenario, cond, what):
        self.results.setdefault(scenario, {"checks": []})["checks"].append(
            {"check": what, "ok": bool(cond)})
        if not cond:
            self.problems.append("%s: %s" % (scenario, what))
        return cond

    def note(self, scenario, **kv):
        self.results.setdefault(scenario, {"checks": []}).update(kv)

    def serving(self, d, scenario):
        st, body = d.call("GET", "/health")
        self.check(scenario, st == 200, "GET /health answers 200 (got %s)" % st)
        st, body = d.call("GET", "/v1/models")
        self.check(scenario, st == 200, "GET /v1/models answers 200 (got %s)" % st)

    def partials(self):
        out = []
        if os.path.isdir(self.hub_dir):
            for root, _d, names in os.walk(self.hub_dir):
                out += [os.path.join(root, n) for n in names if n.endswith(".partial")]
        return out

    def wait_progress(self, d, job_id, file, min_bytes, timeout=60):
        """Waits until the job reports at least min_bytes done while on `file`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st, j = d.call("GET", "/v1/jobs/" + job_id)
            p = (j or {}).get("progress") or {} if st == 200 else {}
            if st == 200 and j["state"] not in common.ACTIVE:
                raise TortureError("job %s ended early: %s %s" % (job_id, j["state"], j["error"]))
            if p.get("file") == file and p.get("bytes_done", 0) >= min_bytes:
                return p
            time.sleep(0.05)
        raise TortureError("job %s did not reach %d bytes of %s" % (job_id, min_bytes, file))

    def run(self):
        a = self.a
        fs = a.fs_mib * MiB
        src = os.path.join(self.tmp, "src")
        os.makedirs(src)
        w = fixtures.write_gguf
        big = w(os.path.join(src, "big.gguf"), size=fs + fs // 2, seed=21)
        s1 = w(os.path.join(src, "s1.gguf"), size=fs * 5 // 8, seed=22, file_type="Q8_0",
               split=(0, 2))
        s2 = w(os.path.join(src, "s2.gguf"), size=fs * 5 // 8, seed=23, file_type="Q8_0",
               split=(1, 2))
        b1 = w(os.path.join(src, "b1.gguf"), size=fs // 8, seed=24, file_type="Q8_0",
               split=(0, 2))
        b2 = w(os.path.join(src, "b2.gguf"), size=fs * 3 // 8, seed=25, file_type="Q8_0",
               split=(1, 2))
        one = w(os.path.join(src, "one.gguf"), size=fs * 3 // 8, seed=26)
        tiny = w(os.path.join(src, "tiny.gguf"), size=MiB // 2, seed=27)
        part = w(os.path.join(src, "part.gguf"), size=fs * 3 // 8, seed=28)
        paced = {"rate_limit_bps": a.conn_rate}
        mf = fixtures.make_file
        cfg = fixtures.make_config([
            fixtures.make_repo("org/big-GGUF", [mf("big.Q4_K_M.gguf", big)]),
            fixtures.make_repo("org/sum-GGUF", [mf("sum-Q8_0-00001-of-00002.gguf", s1),
                                                mf("sum-Q8_0-00002-of-00002.gguf", s2)]),
            fixtures.make_repo("org/between-GGUF", [
                mf("btw-Q8_0-00001-of-00002.gguf", b1, faults=paced),
                mf("btw-Q8_0-00002-of-00002.gguf", b2, faults=paced)]),
            fixtures.make_repo("org/one-GGUF", [mf("one.Q4_K_M.gguf", one, faults=paced)]),
            fixtures.make_repo("org/tiny-GGUF", [mf("tiny.Q4_K_M.gguf", tiny)]),
            fixtures.make_repo("org/part-GGUF", [mf("part.Q4_K_M.gguf", part, faults=paced)]),
        ])
        fx = {"big": big, "s1": s1, "s2": s2, "b1": b1, "b2": b2, "one": one, "tiny": tiny,
              "part": part}
        hub = common.client.start(cfg)
        d = common.Daemon(self.tmp, self.data, hub.hub_url)
        try:
            d.start()
            for name in ("refuse", "refuse_sum", "between", "during", "resume"):
                if a.only and name not in a.only.split(","):
                    continue
                t = time.monotonic()
                try:
                    getattr(self, "sc_" + name)(d, hub, fx)
                except (TortureError, OSError) as ex:
                    self.check(name, False, "ran to the end (%s)" % ex)
                finally:
                    if os.path.exists(self.filler):
                        os.unlink(self.filler)
                self.note(name, seconds=round(time.monotonic() - t, 1))
                if not d.alive():
                    self.check(name, False, "the daemon is still running")
                    d.start()
            rc = d.stop()
            self.check("end", rc == 0, "the daemon stops on SIGTERM with status 0 (got %s)" % rc)
            probs, summary = common.audit(self.data, self.hub_dir, self.available)
            for p in probs:
                self.check("end", False, "audit: " + p)
            self.note("end", audit=summary)
        finally:
            d.stop()
            hub.stop()

    def expect_available(self, d, scenario, mid, files):
        m = d.models().get(mid)
        ok = m is not None and m["status"] == "available" and \
            {f["path"]: f["sha256"] for f in m["files"]} == files
        self.check(scenario, ok, "%s is available with the right sha256" % mid)
        if ok:
            self.available[mid] = files

    def refused(self, scenario, d, hub, ref, repo, paths, total):
        seq = last_seq(hub)
        free0 = free_bytes(self.data)
        job = d.wait_job(d.pull(ref), 60)
        err = job.get("error") or ""
        self.note(scenario, state=job["state"], error=err, free=free0, model_bytes=total)
        self.check(scenario, job["state"] == "failed", "the job fails (%s)" % job["state"])
        self.check(scenario, "space" in err.lower(), "the message says it is about space")
        self.check(scenario, len(SIZE_RE.findall(err)) >= 2, "the message carries two sizes")
        gets = sum(len(cdn_gets(hub, repo, p, seq)) for p in paths)
        self.check(scenario, gets == 0, "no byte was asked of the CDN (%d GETs)" % gets)
        left = self.partials()
        self.check(scenario, not left, "no partial is left (%s)" % left)
        rdir = os.path.join(self.hub_dir, "models--" + repo.replace("/", "--"))
        self.check(scenario, not os.path.exists(rdir),
                   "no repo folder is left (%s)" % (sorted(os.listdir(rdir))
                                                    if os.path.isdir(rdir) else rdir))
        self.serving(d, scenario)

    def sc_refuse(self, d, hub, v):
        self.refused("refuse", d, hub, "hf:org/big-GGUF", "org/big-GGUF", ["big.Q4_K_M.gguf"],
                     v["big"]["size"])

    def sc_refuse_sum(self, d, hub, v):
        self.refused("refuse_sum", d, hub, "hf:org/sum-GGUF:Q8_0", "org/sum-GGUF",
                     ["sum-Q8_0-00001-of-00002.gguf", "sum-Q8_0-00002-of-00002.gguf"],
                     v["s1"]["size"] + v["s2"]["size"])
        # A refused model must not leave bytes behind: a blob of a model that
        # is not in the catalog is invisible to `ls` and to `rm`.
        rdir = os.path.join(self.hub_dir, "models--org--sum-GGUF")
        kept = sorted(n for n in os.listdir(os.path.join(rdir, "blobs"))) \
            if os.path.isdir(os.path.join(rdir, "blobs")) else []
        self.check("refuse_sum", not kept, "no blob is left of the refused model (%s)" % kept)
        # Make room for the next scenarios whatever happened.
        shutil.rmtree(rdir, ignore_errors=True)

    def sc_between(self, d, hub, v):
        sc = "between"
        ref, repo = "hf:org/between-GGUF:Q8_0", "org/between-GGUF"
        f1, f2 = "btw-Q8_0-00001-of-00002.gguf", "btw-Q8_0-00002-of-00002.gguf"
        b1, b2 = v["b1"], v["b2"]
        seq = last_seq(hub)
        jid = d.pull(ref)
        self.wait_progress(d, jid, f1, 1 * MiB)
        leave = b2["size"] // 2
        filled = fill(self.filler, leave)
        self.note(sc, filler=filled, free_after_fill=free_bytes(self.data))
        job = d.wait_job(jid, 120)
        err = job.get("error") or ""
        self.note(sc, state=job["state"], error=err)
        self.check(sc, job["state"] == "failed", "the job fails (%s)" % job["state"])
        self.check(sc, "space" in err.lower() and len(SIZE_RE.findall(err)) >= 2,
                   "the message is about space and carries the sizes")
        self.check(sc, len(cdn_gets(hub, repo, f2, seq)) == 0,
                   "no byte of the second file was asked of the CDN")
        blob1 = os.path.join(self.hub_dir, "models--org--between-GGUF", "blobs", b1["sha256"])
        self.check(sc, os.path.isfile(blob1), "the first file is stored as a verified blob")
        self.serving(d, sc)
        tj = d.wait_job(d.pull("hf:org/tiny-GGUF"), 60)
        self.check(sc, tj["state"] == "succeeded",
                   "a small pull succeeds on the nearly full disk (%s %s)"
                   % (tj["state"], tj["error"]))
        if tj["state"] == "succeeded":
            self.expect_available(d, sc, "hf:org/tiny-GGUF:tiny.Q4_K_M.gguf",
                                  {"tiny.Q4_K_M.gguf": v["tiny"]["sha256"]})
        os.unlink(self.filler)
        seq = last_seq(hub)
        job = d.wait_job(d.pull(ref), 120)
        self.check(sc, job["state"] == "succeeded",
                   "the retry succeeds (%s %s)" % (job["state"], job["error"]))
        again1 = cdn_bytes(hub, repo, f1, seq)
        got2 = cdn_bytes(hub, repo, f2, seq)
        self.note(sc, retry_bytes_file1=again1, retry_bytes_file2=got2)
        self.check(sc, again1 == 0, "the retry fetches nothing of the first file (%d)" % again1)
        # Once, give or take what was in flight on a request cut when an idle
        # connection took half of another's range at the tail (bounded by the
        # 4 MiB minimum split): the server counts bytes it sent, not bytes kept.
        self.check(sc, b2["size"] <= got2 <= b2["size"] + (4 << 20),
                   "the retry fetches the second file once (%d of %d)" % (got2, b2["size"]))
        mid = "hf:org/between-GGUF:" + f1
        self.expect_available(d, sc, mid, {f1: b1["sha256"], f2: b2["sha256"]})
        self.delete(d, sc, mid)

    def delete(self, d, sc, mid):
        """Deletes a model to make room for the next scenario."""
        st, _ = d.call("DELETE", "/v1/models/" + urllib.parse.quote(mid, safe=""))
        self.check(sc, st == 200, "%s is deleted to make room (%s)" % (mid, st))
        self.available.pop(mid, None)

    def sc_during(self, d, hub, v):
        sc = "during"
        ref, repo, f = "hf:org/one-GGUF", "org/one-GGUF", "one.Q4_K_M.gguf"
        one = v["one"]
        seq = last_seq(hub)
        jid = d.pull(ref)
        self.wait_progress(d, jid, f, 1 * MiB)
        filled = fill(self.filler, 0)
        self.note(sc, filler=filled, free_after_fill=free_bytes(self.data))
        job = d.wait_job(jid, 120)
        self.note(sc, state=job["state"], error=job["error"])
        self.serving(d, sc)
        if job["state"] != "succeeded":
            self.check(sc, job["state"] == "failed" and
                       re.search(r"space|full", job["error"] or "", re.I) is not None,
                       "the job either succeeds or fails with a message about space")
            os.unlink(self.filler)
            before = cdn_bytes(hub, repo, f, seq)
            seq = last_seq(hub)
            job = d.wait_job(d.pull(ref), 120)
            again = cdn_bytes(hub, repo, f, seq)
            self.note(sc, first_try_bytes=before, retry_bytes=again)
            self.check(sc, job["state"] == "succeeded",
                       "the retry succeeds (%s %s)" % (job["state"], job["error"]))
            self.check(sc, before + again <= one["size"] + 16 * MiB,
                       "the retry fetches at most 16 MiB again (%d + %d for %d)"
                       % (before, again, one["size"]))
        else:
            sent = cdn_bytes(hub, repo, f, seq)
            self.check(sc, sent == one["size"], "the file was fetched once (%d)" % sent)
        self.expect_available(d, sc, "hf:org/one-GGUF:" + f, {f: one["sha256"]})
        self.delete(d, sc, "hf:org/one-GGUF:" + f)

    def sc_resume(self, d, hub, v):
        sc = "resume"
        ref, repo, f = "hf:org/part-GGUF", "org/part-GGUF", "part.Q4_K_M.gguf"
        part = v["part"]
        seq = last_seq(hub)
        jid = d.pull(ref)
        p = self.wait_progress(d, jid, f, part["size"] // 3)
        st, _ = d.call("POST", "/v1/jobs/%s/cancel" % jid)
        self.check(sc, st == 200, "the cancel is accepted (%s)" % st)
        j = d.wait_job(jid, 30)
        self.check(sc, j["state"] == "cancelled", "the job is cancelled (%s)" % j["state"])
        first = cdn_bytes(hub, repo, f, seq)
        self.note(sc, cancelled_at=p["bytes_done"], first_try_bytes=first)
        filled = fill(self.filler, MiB)
        self.note(sc, filler=filled, free_after_fill=free_bytes(self.data))
        seq = last_seq(hub)
        job = d.wait_job(d.pull(ref), 120)
        again = cdn_bytes(hub, repo, f, seq)
        self.note(sc, state=job["state"], error=job["error"], retry_bytes=again)
        self.check(sc, job["state"] == "succeeded",
                   "the retry on the full disk succeeds (%s %s)" % (job["state"], job["error"]))
        self.check(sc, 0 < again < part["size"], "the retry resumed: %d of %d bytes fetched again"
                   % (again, part["size"]))
        self.expect_available(d, sc, "hf:org/part-GGUF:" + f, {f: part["sha256"]})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fs-mib", type=int, default=64, help="size of the small file system")
    ap.add_argument("--conn-rate", type=int, default=MiB,
                    help="the fake CDN's pace per connection for the paced files, bytes/s")
    ap.add_argument("--only", help="comma-separated scenarios to run")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary folder (fixtures, daemon log)")
    ap.add_argument("--report", help="also write the JSON report here")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rbee-torture-disk-")
    mnt = os.path.join(tmp, "mnt")
    os.makedirs(mnt)
    rep = {"ok": False}
    status = 1
    try:
        try:
            how = mount_small_fs(mnt, tmp, args.fs_mib)
        except OSError as ex:
            rep = {"ok": False, "skipped": "no small file system could be mounted: %s" % ex}
            status = SKIP
        else:
            log("data root on a %s at %s" % (how, mnt))
            r = Run(args, tmp, mnt)
            try:
                r.run()
            except TortureError as ex:
                r.problems.append(str(ex))
            finally:
                umount(mnt)
            rep = {"ok": not r.problems, "filesystem": how, "problems": r.problems,
                   "scenarios": r.results}
            if r.problems:
                rep["daemon_log_tail"] = common.log_tail(os.path.join(tmp, "daemon.log"))
            status = 0 if rep["ok"] else 1
    finally:
        if os.path.ismount(mnt):
            umount(mnt)
        text = json.dumps(rep, indent=1)
        print(text)
        if args.report:
            with open(args.report, "w") as f:
                f.write(text + "\n")
        if args.keep:
            log("kept %s (the data root was on the unmounted file system)" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
