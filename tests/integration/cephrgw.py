"""A one-host Ceph cluster for the S3 tests: one monitor, one OSD on a sparse
BlueStore file, one RADOS Gateway (beast) on 127.0.0.1, all of it (conf,
keyring, data, logs, admin sockets, pid files) in one short temporary folder,
started without systemd and stopped by its pids. Debian's packages
ceph-mon, ceph-osd, radosgw and ceph-common provide the programs.

    with CephRGW() as rgw:        # about 7 s to the first PUT
        rgw.endpoint, rgw.access_key, rgw.secret_key
        rgw.stop_rgw(); rgw.start_rgw()

Run as a script, it starts a cluster, prints its endpoint and keys and waits
for Ctrl-C (bench/s3.sh uses it so)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ports import free_block  # noqa: E402

NEEDED = ("ceph-mon", "ceph-osd", "radosgw", "ceph", "ceph-authtool", "monmaptool",
          "radosgw-admin")


def available():
    """None when every program is installed, else the name of a missing one."""
    for p in NEEDED:
        if not shutil.which(p) and not os.path.exists("/usr/bin/" + p):
            return p
    return None


# The cluster's ports, one block below the ephemeral range: monitor v1 and
# v2, the gateway, then the range the OSD and the gateway's messengers bind in.
PORTS = 64


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


CONF = """[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{mon2},v1:127.0.0.1:{mon1}]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind port min = {pmin}
ms bind port max = {pmax}
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = {d}/keyring
run dir = {d}/run
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
err to stderr = false
log to stderr = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon allow pool delete = true
paxos propose interval = 0.05
paxos min wait = 0.01
[mon]
mon data = {d}/mon/$cluster-$id
[osd]
osd data = {d}/osd/$cluster-$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 3G
bluestore fsck on mount = false
bluestore fsck on mkfs = false
bluestore cache size = 256M
osd max object name len = 256
osd max object namespace len = 64
[client.rgw.t]
rgw frontends = beast endpoint=127.0.0.1:{rgw}
rgw data = {d}/rgw
rgw dns name = 127.0.0.1
"""


class CephRGW:
    """One throw-away cluster; start() and stop() bound every wait."""

    access_key = "RBEETESTACCESSKEY000"
    secret_key = "rbeetestsecretkey0000000000000000000000"

    def __init__(self, timeout=120, attempts=3):
        self.timeout = timeout
        self.attempts = attempts
        self.dir = None
        self.rgw_proc = None
        self.procs = []

    # Running the tools

    def run(self, *args, timeout=30, check=True):
        r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError("%s: exit %d: %s" % (" ".join(args), r.returncode,
                                                   (r.stderr or r.stdout)[-800:]))
        return r.stdout

    def ceph_argv(self, args, timeout):
        # Bounded by Ceph itself too: a client that cannot reach the monitor
        # fails with its own message instead of waiting for the kill.
        return ["ceph", "-c", self.conf, "--connect-timeout", str(max(1, int(timeout) - 1)),
                *args]

    def ceph(self, *args, timeout=30):
        return self.run(*self.ceph_argv(args, timeout), timeout=timeout)

    def probe(self, *args, timeout=10):
        """One ceph command that may fail: its output, or None."""
        r = subprocess.run(self.ceph_argv(args, timeout), capture_output=True, text=True,
                           timeout=timeout)
        return r.stdout if r.returncode == 0 else None

    def daemon(self, *args):
        """Starts a daemon in the foreground of its own process group."""
        log = open(os.path.join(self.dir, "log", "stdout-%s.log" % args[0]), "ab")
        p = subprocess.Popen(list(args) + ["-f", "-c", self.conf], stdout=log, stderr=log,
                             start_new_session=True)
        log.close()
        self.procs.append(p)
        return p

    def wait(self, what, pred, deadline):
        while time.time() < deadline:
            for p in self.procs:
                if p.poll() is not None and p is not self.rgw_proc:
                    raise RuntimeError("%s exited with %s while waiting for %s; logs in %s"
                                       % (p.args[0], p.returncode, what, self.dir))
            if pred():
                return
            time.sleep(0.1)
        raise RuntimeError("no %s in time; logs in %s" % (what, self.dir))

    # The cluster

    def log_tail(self, name, lines=15):
        try:
            with open(os.path.join(self.dir, "log", name), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def start(self):
        """Starts the cluster; a start that fails (a port taken between the
        pick and the bind, a daemon that dies) is cleaned up and made again
        from nothing, on new ports, up to `attempts` times in all."""
        missing = available()
        if missing:
            raise RuntimeError("%s is not installed (scripts/install-deps test)" % missing)
        end = time.time() + self.timeout
        for attempt in range(1, self.attempts + 1):
            # Each attempt its share of what is left (a normal start takes
            # 6 to 10 s), so that one stuck attempt leaves time for the next.
            left = end - time.time()
            deadline = time.time() + left / (self.attempts - attempt + 1)
            try:
                return self.start_once(deadline)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                sys.stderr.write("cephrgw: start %d of %d failed: %s\n%s" % (
                    attempt, self.attempts, e, self.log_tail("mon.a.log")))
                self.stop()
                if attempt == self.attempts:
                    raise

    def start_once(self, deadline):
        # Admin sockets must fit in 108 bytes: a short folder under /tmp.
        self.dir = tempfile.mkdtemp(prefix="rgw", dir="/tmp")
        d = self.dir
        for sub in ("run", "log", "mon", "osd/ceph-0", "rgw"):
            os.makedirs(os.path.join(d, sub))
        self.conf = os.path.join(d, "ceph.conf")
        base = free_block(PORTS)
        self.port = base + 2
        self.endpoint = "http://127.0.0.1:%d" % self.port
        fsid = str(uuid.uuid4())
        with open(self.conf, "w") as f:
            f.write(CONF.format(fsid=fsid, d=d, mon1=base, mon2=base + 1, pmin=base + 3,
                                pmax=base + PORTS - 1, rgw=self.port))
        kr = os.path.join(d, "keyring")
        self.run("ceph-authtool", "--create-keyring", kr, "--gen-key", "-n", "mon.",
                 "--cap", "mon", "allow *")
        for name, caps in (("client.admin", ["--cap", "mon", "allow *", "--cap", "osd",
                                             "allow *", "--cap", "mds", "allow *",
                                             "--cap", "mgr", "allow *"]),
                           ("osd.0", ["--cap", "mon", "allow profile osd", "--cap", "osd",
                                      "allow *", "--cap", "mgr", "allow profile osd"]),
                           ("client.rgw.t", ["--cap", "mon", "allow rw", "--cap", "osd",
                                             "allow rwx"])):
            self.run("ceph-authtool", kr, "--gen-key", "-n", name, *caps)
        monmap = os.path.join(d, "monmap")
        self.run("monmaptool", "--create", "--fsid", fsid, "--addv", "a",
                 "[v2:127.0.0.1:%d,v1:127.0.0.1:%d]" % (base + 1, base), monmap)
        self.run("ceph-mon", "-c", self.conf, "--mkfs", "-i", "a", "--monmap", monmap,
                 "--keyring", kr)
        self.daemon("ceph-mon", "-i", "a")
        self.wait("ceph-mon answering on port %d" % (base + 1),
                  lambda: self.probe("mon", "stat") is not None, deadline)
        osd_uuid = str(uuid.uuid4())
        out = self.ceph("osd", "new", osd_uuid, "0", timeout=max(5, deadline - time.time()))
        if out.strip() != "0":
            raise RuntimeError("ceph osd new: %r" % out)
        self.run("ceph-osd", "-c", self.conf, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid,
                 timeout=max(5, deadline - time.time()))
        self.daemon("ceph-osd", "-i", "0")

        def osd_up():
            dump = self.probe("osd", "dump") or ""
            return any(line.startswith("osd.0 up") for line in dump.splitlines())
        self.wait("osd.0 up", osd_up, deadline)
        self.start_rgw(deadline)
        self.run("radosgw-admin", "-c", self.conf, "user", "create", "--uid", "rbee",
                 "--display-name", "rbee", "--access-key", self.access_key, "--secret-key",
                 self.secret_key, timeout=max(5, deadline - time.time()))
        return self

    def start_rgw(self, deadline=None):
        deadline = deadline or time.time() + self.timeout
        self.rgw_proc = self.daemon("radosgw", "-n", "client.rgw.t")
        self.wait("radosgw on port %d" % self.port, lambda: port_open(self.port), deadline)

    def stop_rgw(self, sig=signal.SIGKILL):
        """Stops the gateway alone (the store then looks down to the hives)."""
        p = self.rgw_proc
        if p and p.poll() is None:
            os.killpg(p.pid, sig)
            p.wait(timeout=20)
        if p in self.procs:
            self.procs.remove(p)
        self.rgw_proc = None

    def stop(self):
        # A throw-away cluster: killed outright, newest first.
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        if self.dir and not os.environ.get("RBEE_KEEP_RGW"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    # Blocked, so that sigwait takes them and the cluster is stopped on the way out.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    with CephRGW() as rgw:
        print("endpoint=%s access_key=%s secret_key=%s" % (rgw.endpoint, rgw.access_key,
                                                           rgw.secret_key), flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    sys.exit(0)
