"""What the CLI integration tests share: the binary, a clean environment that
points the client at a daemon, and driving the client on a pseudo-terminal."""

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time

from daemonhelp import BIN
TIMEOUT = 60


class CliMixin:
    """For a unittest.TestCase whose `url` is the daemon's address."""

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RBEE_HIVE")}
        env["RBEE_HIVE_URL"] = self.url
        env.update(extra)
        return env

    def run_cli(self, *args, env=None):
        p = subprocess.run([BIN] + list(args), capture_output=True, text=True,
                           timeout=TIMEOUT, env=env or self.env())
        return p.returncode, p.stdout, p.stderr

    def spawn_pty(self, *args, cols=100):
        """Runs the client on a pseudo-terminal COLS wide; returns (pid, master fd)."""
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(BIN, [BIN] + list(args), self.env(LANG="C.UTF-8", TERM="xterm"))
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
        return pid, fd

    def read_until(self, fd, pred, timeout):
        """Reads the terminal until pred(output so far); returns (output, pred held)."""
        buf = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
                if pred(buf):
                    return buf, True
        return buf, False

    def wait_exit(self, pid, fd, timeout):
        """Waits for the client to exit, reading what it still prints; (status, output)."""
        deadline = time.time() + timeout
        out = b""
        while time.time() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    pass
            if done:
                return os.waitstatus_to_exitcode(status), out
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        self.fail("rbee-hive did not exit within %s s" % timeout)
