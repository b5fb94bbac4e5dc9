"""Short runs of tests/torture/diskfull.py: the daemon's data root on a 64 MiB
tmpfs (or loop image). Needs root to mount; skipped otherwise. Each test runs
one scenario on a fresh file system and daemon (see the script's docstring).
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

SRC = os.environ.get("RBEE_SRC", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SCRIPT = os.path.join(SRC, "tests", "torture", "diskfull.py")


class TortureDiskFullTest(unittest.TestCase):
    def scenario(self, name):
        """Runs one scenario; fails on any check that did not hold."""
        if os.geteuid() != 0:
            self.skipTest("mounting a small file system needs root")
        with tempfile.TemporaryDirectory(prefix="rbee-torture-test-") as tmp:
            report = os.path.join(tmp, "report.json")
            p = subprocess.run([sys.executable, SCRIPT, "--only", name, "--report", report],
                               capture_output=True, text=True, timeout=80)
            if p.returncode == 77:
                self.skipTest(p.stdout.strip()[-500:])
            with open(report) as f:
                rep = json.load(f)
        checks = rep["scenarios"][name]["checks"] + rep["scenarios"]["end"]["checks"]
        bad = [c["check"] for c in checks if not c["ok"]]
        self.assertEqual(bad, [], json.dumps(rep, indent=1) + p.stderr[-2000:])
        self.assertEqual(rep["problems"] == [], p.returncode == 0)
        return rep["scenarios"][name], rep["problems"]

    def test_refuse_a_model_larger_than_the_free_space(self):
        sc, _ = self.scenario("refuse")
        self.assertGreater(sc["model_bytes"], sc["free"])

    def test_refuse_a_model_whose_files_do_not_fit_together(self):
        # Each file fits alone, not both: refused before the first byte, with
        # no blob, partial or repo folder left behind.
        sc, problems = self.scenario("refuse_sum")
        self.assertEqual(sc["state"], "failed")
        self.assertEqual(problems, [])
        self.assertGreater(sc["model_bytes"], sc["free"])
        self.assertRegex(sc["error"], r"needs [\d.]+ [kMG]?B, [\d.]+ [kMG]?B free on /")

    def test_disk_filled_between_two_files(self):
        sc, _ = self.scenario("between")
        self.assertEqual(sc["retry_bytes_file1"], 0)

    def test_disk_filled_during_a_transfer(self):
        self.scenario("during")

    def test_cancelled_partial_resumes_on_a_full_disk(self):
        sc, _ = self.scenario("resume")
        self.assertGreater(sc["retry_bytes"], 0)


if __name__ == "__main__":
    unittest.main()
