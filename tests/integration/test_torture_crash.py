"""Short runs of tests/torture/crash.py against the real daemon and the fake
hub: one SIGKILL half-way through a download (the restart finishes it with
the right hash and fetches at most 16 MiB again), and a few kills at random
moments over several models (everything available and verified, nothing
left over). The long run is `python3 tests/torture/crash.py` (docs/reliability.md).
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

SRC = os.environ.get("RBEE_SRC", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SCRIPT = os.path.join(SRC, "tests", "torture", "crash.py")
MiB = 1 << 20


def run_crash(*args, timeout=85):
    with tempfile.TemporaryDirectory(prefix="rbee-torture-test-") as tmp:
        report = os.path.join(tmp, "report.json")
        p = subprocess.run([sys.executable, SCRIPT, "--report", report, "--seed", "1"] +
                           list(args), capture_output=True, text=True, timeout=timeout)
        with open(report) as f:
            rep = json.load(f)
        return p, rep


class TortureCrashTest(unittest.TestCase):
    def test_one_kill_half_way_refetches_at_most_16_mib(self):
        # 8 connections paced to 4 MB/s each: about 32 MB/s for the file.
        p, rep = run_crash("--only", "alpha", "--kills", "1", "--kill-at-fraction", "0.5",
                           "--conn-rate", "4000000", "--startup-kill-fraction", "0",
                           "--max-seconds", "60")
        self.assertEqual(p.returncode, 0, json.dumps(rep, indent=1) + p.stderr[-3000:])
        self.assertEqual(rep["kills"], 1)
        self.assertEqual(rep["problems"], [])
        self.assertGreater(rep["kill_log"][0]["sent"], 16 * MiB, "killed too early to tell")
        self.assertLess(rep["kill_log"][0]["sent"], rep["unique_bytes"], "killed after the end")
        self.assertLessEqual(rep["bytes_redownloaded"], 16 * MiB)
        self.assertGreaterEqual(rep["bytes_redownloaded"], 0)

    def test_random_kills_over_several_models(self):
        p, rep = run_crash("--kills", "6", "--size-mib", "40", "--conn-rate", "524288",
                           "--max-gap", "2.5", "--max-seconds", "70")
        self.assertEqual(p.returncode, 0, json.dumps(rep, indent=1) + p.stderr[-3000:])
        self.assertEqual(rep["problems"], [])
        self.assertGreaterEqual(rep["kills"], 6)
        self.assertEqual(rep["audit"]["models"], 5)
        self.assertEqual(rep["failed_jobs"], [])
        # Every byte of every model came over once, plus what kills cost.
        self.assertGreaterEqual(rep["bytes_sent"], rep["unique_bytes"])
        self.assertLessEqual(rep["bytes_redownloaded"], 16 * MiB * rep["kills"])


if __name__ == "__main__":
    unittest.main()
