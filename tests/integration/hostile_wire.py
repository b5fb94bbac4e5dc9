"""Raw HTTP/1.1 over sockets for the hostile-request tests: build a request
byte for byte (nothing is normalised or checked, so it can be as wrong as a
test needs), send it, and read back the status, or learn that the daemon
dropped the connection. Every wait is bounded.
"""

import http.client
import json
import select
import socket
import time

DROPPED = "dropped"
TIMEOUT = "timeout"


def request(method, path, headers=(), body=None, host=True, version="HTTP/1.1",
            content_length=True):
    """The bytes of one request. headers: (name, value) pairs sent in order.
    host=True adds `Host: 127.0.0.1:{port}` (formatted later), a string sends
    that Host, None sends none. body: bytes or str; content_length=True adds
    its length."""
    lines = ["%s %s %s" % (method, path, version)]
    if host is True:
        lines.append("Host: 127.0.0.1:{port}")
    elif host is not None:
        lines.append("Host: " + host)
    if isinstance(body, str):
        body = body.encode()
    if body is not None and content_length:
        lines.append("Content-Length: %d" % len(body))
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


def json_post(path, doc, headers=(), **kw):
    body = doc if isinstance(doc, (str, bytes)) else json.dumps(doc)
    return request("POST", path, [("Content-Type", "application/json")] + list(headers),
                   body, **kw)


class Reply:
    def __init__(self, status, headers=None, body=b"", closed=False, elapsed=0.0):
        self.status = status    # an int, DROPPED or TIMEOUT
        self.headers = headers or {}
        self.body = body
        self.closed = closed    # the daemon closed the connection after answering
        self.elapsed = elapsed

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Reply(%r, %r, %r)" % (self.status, self.headers.get("content-type"),
                                      self.body[:300])


def connect(port, timeout=5.0, host="127.0.0.1"):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def send_until_answered(sock, data, chunk=16384):
    """Sends data in chunks, stopping early once the peer has something to
    say (an early 413, or a close): a server may answer before the body."""
    off = 0
    while off < len(data):
        r, _, _ = select.select([sock], [], [], 0)
        if r:
            return
        try:
            off += sock.send(data[off:off + chunk])
        except (BrokenPipeError, ConnectionResetError):
            return


class Reader:
    """A buffered reader of one socket, for reading several responses from it
    (a pipelined answer may already sit in the buffer). A response cannot
    close it; close() does, and only then can the socket really close."""
    def __init__(self, sock):
        self._fp = sock.makefile("rb")

    def makefile(self, mode):
        return self

    def __getattr__(self, name):
        return getattr(self._fp, name)

    def close(self):
        pass

    def release(self):
        self._fp.close()


def read_reply(sock, method="GET", timeout=5.0, reader=None):
    """Reads one response from sock (through reader, when responses follow
    each other); DROPPED when the peer closed or reset without a status
    line, TIMEOUT when nothing came within timeout."""
    own = reader is None
    if own:
        reader = Reader(sock)
    try:
        return _read_reply(sock, method, timeout, reader)
    finally:
        if own:
            reader.release()


def _read_reply(sock, method, timeout, reader):
    sock.settimeout(timeout)
    t0 = time.monotonic()
    resp = http.client.HTTPResponse(reader, method=method)
    try:
        resp.begin()
        body = resp.read()
    except socket.timeout:
        return Reply(TIMEOUT, elapsed=time.monotonic() - t0)
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        return Reply(DROPPED, closed=True, elapsed=time.monotonic() - t0)
    except http.client.IncompleteRead as ex:
        body = ex.partial
    except http.client.HTTPException:
        return Reply(DROPPED, closed=True, elapsed=time.monotonic() - t0)
    headers = {k.lower(): v for k, v in resp.getheaders()}
    closed = resp.will_close
    return Reply(resp.status, headers, body, closed, time.monotonic() - t0)


def exchange(port, data, timeout=5.0, method=None):
    """Sends raw bytes (with {port} filled in) on a new connection and reads
    the reply."""
    if isinstance(data, str):
        data = data.encode("latin-1")
    data = data.replace(b"{port}", str(port).encode())
    if method is None:
        method = data.split(b" ", 1)[0].decode("latin-1", "replace")
    with connect(port, timeout) as s:
        send_until_answered(s, data)
        return read_reply(s, method, timeout)


def wait_closed(sock, deadline):
    """Seconds until the peer closed sock (reading and discarding), or None
    when it was still open at the deadline."""
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], max(0.0, min(1.0, deadline - time.monotonic())))
        if not r:
            continue
        try:
            if not sock.recv(65536):
                return time.monotonic() - t0
        except (ConnectionResetError, OSError):
            return time.monotonic() - t0
    return None


def reset(sock):
    """Closes sock with a TCP reset, as a crashed client would."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    sock.close()
