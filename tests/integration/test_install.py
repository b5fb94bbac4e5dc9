"""`make install DESTDIR=... PREFIX=...` lays out the binary, the man page and
the systemd user unit, and the installed binary alone serves the API and the
web UI (which it carries inside)."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemonhelp import BUILD, NO_HUB, SRC, start_daemon, stop_daemon  # noqa: E402

PREFIX = "/opt/rbee-test"


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rbee-install-")
        cls.dest = os.path.join(cls.tmp, "dest")
        # The make that runs CTest may have left its jobserver in MAKEFLAGS.
        env = {k: v for k, v in os.environ.items()
               if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DESTDIR")}
        cls.make = subprocess.run(
            ["make", "-C", SRC, "install", "BUILD=" + os.path.abspath(BUILD),
             "DESTDIR=" + cls.dest, "PREFIX=" + PREFIX],
            env=env, capture_output=True, text=True, timeout=600)
        cls.root = cls.dest + PREFIX

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.assertEqual(self.make.returncode, 0, self.make.stdout + self.make.stderr)

    def test_layout(self):
        installed = sorted(os.path.relpath(os.path.join(d, f), self.dest)
                           for d, _, files in os.walk(self.dest) for f in files)
        self.assertEqual(installed, [
            "opt/rbee-test/bin/rbee-hive",
            "opt/rbee-test/lib/systemd/user/rbee-hive.service",
            "opt/rbee-test/share/man/man1/rbee-hive.1",
        ])
        self.assertTrue(os.access(os.path.join(self.root, "bin", "rbee-hive"), os.X_OK))
        with open(os.path.join(self.root, "share", "man", "man1", "rbee-hive.1")) as f:
            self.assertTrue(f.read().startswith(".TH RBEE-HIVE 1"))
        with open(os.path.join(self.root, "lib", "systemd", "user", "rbee-hive.service")) as f:
            unit = f.read()
        # The unit starts the binary where it runs, not where DESTDIR staged it.
        self.assertIn("\nExecStart=%s/bin/rbee-hive serve\n" % PREFIX, unit)
        self.assertNotIn(self.dest, unit)
        self.assertIn("\nWantedBy=default.target\n", unit)

    def test_installed_binary_serves(self):
        proc, url, log = start_daemon(self.tmp, "hive", NO_HUB,
                                      binary=os.path.join(self.root, "bin", "rbee-hive"))
        try:
            with urllib.request.urlopen(url + "/health", timeout=10) as r:
                self.assertEqual((r.status, r.read()), (200, b"ok\n"))
            with urllib.request.urlopen(url + "/", timeout=10) as r:
                self.assertEqual(r.status, 200)
                self.assertTrue(r.headers["Content-Type"].startswith("text/html"))
                page = r.read().decode()
            self.assertIn("<title>", page)
            # The page's own script comes from the same binary.
            with urllib.request.urlopen(url + "/app.js", timeout=10) as r:
                self.assertEqual(r.status, 200)
        finally:
            self.assertEqual(stop_daemon(proc), 0, log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
