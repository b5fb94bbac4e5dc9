"""Loopback ports for the tests: the one home of how a test picks a port.

free_port() asks the kernel for one (from the ephemeral range); free_block()
finds n consecutive free ports below the ephemeral range, for a server that
needs fixed numbers in its configuration (Ceph's monitor and messengers), so
that no outgoing connection of another test can take one of them between the
pick and the server's bind."""

import random
import socket


def free_port(bind="127.0.0.1"):
    with socket.socket() as s:
        s.bind((bind, 0))
        return s.getsockname()[1]


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_block(n, low=20000, tries=200):
    """The first port of n consecutive ports that are free now."""
    high = _ephemeral_low() - n
    if high <= low:
        low, high = 1024, max(1025, high)
    rng = random.Random()
    for _ in range(tries):
        base = rng.randrange(low, high)
        if all(_bindable(base + i) for i in range(n)):
            return base
    raise RuntimeError("no %d free consecutive ports in %d..%d" % (n, low, high + n))
