#!/usr/bin/env python3
"""A fake Hugging Face Hub for tests (Python 3 standard library only).

Two listeners in one process: the hub on 127.0.0.1 (listing API, /resolve,
control API under /_fake/) and the CDN on 127.0.0.2 (signed content URLs with
Range support). A different loopback host for the CDN makes cross-host rules
(no Authorization after a redirect to another host) observable.

Every request is recorded with all of its headers, and faults can be injected
per file (dropped connections, stalls, 5xx, 429, ignored Range, corrupted
bytes, rate caps, short-lived URLs). See README.md in this folder for the
config format, the faults and the control API.

Threads: one thread per connection (ThreadingHTTPServer). All shared state
lives in one State object; State.lock guards its dicts and lists and is never
held while doing socket or file I/O.
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 1 << 20
DEFAULT_PAGE_SIZE = 50
DEFAULT_URL_TTL = 3600
MAX_RECORDED_REQUESTS = 200000
MAX_CONTROL_BODY = 16 << 20
LFS_POINTER_FMT = "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n"
HEX40 = re.compile(r"^[0-9a-f]{40}$")

# Hashing a large fixture takes seconds; key the result by what identifies the
# file's content cheaply, so a config reload (or a second repo naming the same
# file) does not hash it again.
_hash_cache = {}
_hash_cache_lock = threading.Lock()


def git_blob_sha1(data):
    h = hashlib.sha1()
    h.update(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def file_digests(path, want_sha1, persistent=None):
    """Returns (size, sha256, sha1-or-None) of a file on disk, cached."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    skey = "%s|%d|%d" % key
    with _hash_cache_lock:
        hit = _hash_cache.get(key)
        if hit is None and persistent is not None and skey in persistent:
            hit = tuple(persistent[skey])
    if hit is not None and (not want_sha1 or hit[2]):
        return hit
    h256 = hashlib.sha256()
    h1 = hashlib.sha1() if want_sha1 else None
    if h1:
        h1.update(b"blob %d\0" % st.st_size)
    with open(path, "rb") as f:
        while True:
            buf = f.read(4 * CHUNK)
            if not buf:
                break
            h256.update(buf)
            if h1:
                h1.update(buf)
    res = (st.st_size, h256.hexdigest(), h1.hexdigest() if h1 else None)
    with _hash_cache_lock:
        _hash_cache[key] = res
        if persistent is not None:
            persistent[skey] = list(res)
    return res


class ConfigError(Exception):
    pass


class RepoFile:
    """One file of one commit. Content is either on disk (source) or inline."""

    def __init__(self, spec, persistent_cache):
        if not isinstance(spec, dict) or "path" not in spec:
            raise ConfigError("file entry needs a path: %r" % (spec,))
        self.path = spec["path"]
        self.source = spec.get("source")
        self.content = None
        if "content" in spec:
            c = spec["content"]
            self.content = c.encode() if isinstance(c, str) else bytes(c)
        elif "content_b64" in spec:
            self.content = base64.b64decode(spec["content_b64"])
        if (self.source is None) == (self.content is None):
            raise ConfigError("file %s: give exactly one of source, content" % self.path)
        if self.source is not None:
            self.source = os.path.abspath(self.source)
        self.lfs = bool(spec.get("lfs", self.source is not None))
        self.faults = spec.get("faults") or {}
        if self.content is not None:
            self.size = len(self.content)
            self.sha256 = hashlib.sha256(self.content).hexdigest()
            self.sha1 = git_blob_sha1(self.content)
        elif self.lfs and spec.get("sha256") and spec.get("size") is not None:
            # The fixture writer already hashed it; trust it if the size agrees.
            self.size = int(spec["size"])
            self.sha256 = spec["sha256"]
            self.sha1 = None
            if os.path.getsize(self.source) != self.size:
                raise ConfigError("file %s: size in config differs from %s" % (self.path, self.source))
        else:
            self.size, self.sha256, self.sha1 = file_digests(self.source, not self.lfs, persistent_cache)
        pointer = LFS_POINTER_FMT.format(self.sha256, self.size).encode()
        self.pointer_size = len(pointer)
        # For an LFS file git stores the pointer, so its blob id is the pointer's.
        self.oid = git_blob_sha1(pointer) if self.lfs else self.sha1

    def open(self):
        return open(self.source, "rb") if self.source is not None else None


class Repo:
    def __init__(self, spec, persistent_cache):
        self.id = spec["id"]
        if self.id.count("/") != 1:
            raise ConfigError("repo id must be ORG/REPO: %r" % self.id)
        self.gated = spec.get("gated", False)
        self.private = bool(spec.get("private", False))
        self.access = spec.get("access")  # tokens allowed; None = every valid token
        self.revisions = dict(spec.get("revisions") or {})
        self.tags = set(spec.get("tags") or [])
        # A hostile or odd hub's tree listing: extra folders, pages of any
        # size (the real Hub stops at 1000 entries), an answer that takes long.
        self.tree_dirs = int(spec.get("tree_dirs") or 0)
        self.tree_page_size = int(spec.get("tree_page_size") or 0)
        self.tree_delay = float(spec.get("tree_delay_seconds") or 0)
        self.tree_cache = {}  # (commit, prefix, recursive) -> sorted entries
        rf = spec.get("renamed_from") or []
        self.renamed_from = [rf] if isinstance(rf, str) else list(rf)
        self.commits = {}
        for sha, c in (spec.get("commits") or {}).items():
            if not HEX40.match(sha):
                raise ConfigError("repo %s: commit must be 40 lowercase hex: %r" % (self.id, sha))
            files = [RepoFile(f, persistent_cache) for f in c.get("files", [])]
            self.commits[sha] = {f.path: f for f in files}
        for name, sha in self.revisions.items():
            if sha not in self.commits:
                raise ConfigError("repo %s: revision %s names unknown commit %s" % (self.id, name, sha))
        if not self.revisions and self.commits:
            self.revisions["main"] = next(iter(self.commits))

    def resolve_rev(self, rev):
        if rev in self.revisions:
            return self.revisions[rev]
        if rev in self.commits:
            return rev
        return None


def normalize_faults(f):
    """Turns the shorthand forms of README.md into one shape per fault."""
    if not f:
        return {}
    out = {}
    for k, v in f.items():
        if k in ("stall_after_bytes", "stall_seconds", "stall_count"):
            continue
        if k == "drop_after_bytes":
            v = {"bytes": v} if isinstance(v, int) else dict(v)
        elif k == "ignore_range":
            if v is False:
                continue
            v = {} if v is True else dict(v)
        elif k == "corrupt":
            v = {"offset": v} if isinstance(v, int) else dict(v)
        elif k == "extra_bytes":
            v = {"bytes": v} if isinstance(v, int) else dict(v)
        elif k == "head_fail":
            v = {"count": v} if isinstance(v, int) else dict(v)
        elif k in ("status_5xx", "status_429", "stall"):
            v = dict(v)
        elif k in ("rate_limit_bps", "url_ttl_seconds"):
            v = float(v)
        else:
            raise ConfigError("unknown fault %r" % k)
        out[k] = v
    if "stall_after_bytes" in f:
        out["stall"] = {"after_bytes": f["stall_after_bytes"], "seconds": f.get("stall_seconds", 60)}
        if "stall_count" in f:
            out["stall"]["count"] = f["stall_count"]
    return out


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.args = args
        self.secret = secrets.token_bytes(32)
        self.hub_url = None
        self.cdn_url = None
        self.persistent_cache = None
        if args.hash_cache and os.path.exists(args.hash_cache):
            with open(args.hash_cache) as f:
                self.persistent_cache = json.load(f)
        elif args.hash_cache:
            self.persistent_cache = {}
        self.requests = []
        self.seq = 0
        self.stopping = threading.Event()
        self.reset_stats()
        self.load_config_dict({"repos": []})

    # Config ---------------------------------------------------------------

    def load_config_file(self, path):
        with open(path) as f:
            self.load_config_dict(json.load(f))

    def load_config_dict(self, cfg):
        repos = {}
        aliases = {}
        faults = {}
        for spec in cfg.get("repos", []):
            r = Repo(spec, self.persistent_cache)
            if r.id in repos:
                raise ConfigError("repo %s listed twice" % r.id)
            repos[r.id] = r
            for old in r.renamed_from:
                aliases[old] = r.id
            for files in r.commits.values():
                for rf in files.values():
                    if rf.faults:
                        faults[(r.id, rf.path)] = normalize_faults(rf.faults)
        tok = cfg.get("token", cfg.get("tokens", []))
        tokens = [tok] if isinstance(tok, str) else list(tok)
        with self.lock:
            self.repos = repos
            self.aliases = aliases
            self.tokens = tokens
            self.page_size = int(cfg.get("page_size") or self.args.page_size)
            self.url_ttl = float(cfg.get("url_ttl_seconds") or self.args.url_ttl)
            self.redirect_body = bool(cfg.get("redirect_body", False))
            self.cdn_reject_auth = bool(cfg.get("cdn_reject_authorization", False))
            self.reject_invalid_tokens = bool(cfg.get("reject_invalid_tokens", False))
            self.faults = faults
            self.fault_counts = {}
        if self.args.hash_cache and self.persistent_cache is not None:
            tmp = self.args.hash_cache + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.persistent_cache, f)
            os.replace(tmp, self.args.hash_cache)

    # Faults ---------------------------------------------------------------

    def faults_for(self, repo_id, path):
        with self.lock:
            f = self.faults.get((repo_id, path))
            if f is None:
                f = self.faults.get(("*", path), {})
            return f

    def set_faults(self, repo_id, path, faults):
        nf = normalize_faults(faults)
        key = (repo_id or "*", path)
        with self.lock:
            if nf:
                self.faults[key] = nf
            else:
                self.faults.pop(key, None)
            for k in [k for k in self.fault_counts if k[:2] == key or k[1] == path]:
                del self.fault_counts[k]

    def take_fault(self, repo_id, path, name, spec):
        """True when a counted fault fires now; counts it. No count = always."""
        count = spec.get("count") if isinstance(spec, dict) else None
        key = (repo_id, path, name)
        with self.lock:
            n = self.fault_counts.get(key, 0)
            if count is not None and n >= int(count):
                return False
            self.fault_counts[key] = n + 1
            return True

    # Recording ------------------------------------------------------------

    def record_start(self, host, handler):
        sp = urllib.parse.urlsplit(handler.path)
        hdrs = {}
        for k, v in handler.headers.items():
            lk = k.lower()
            hdrs[lk] = hdrs[lk] + ", " + v if lk in hdrs else v
        with self.lock:
            self.seq += 1
            rec = {
                "seq": self.seq,
                "time": time.time(),
                "host": host,
                "method": handler.command,
                "path": sp.path,
                "query": sp.query,
                "headers": hdrs,
                "range": handler.headers.get("Range"),
                "status": None,
                "bytes_sent": 0,
                "conn": handler.conn_id,
                "repo": None,
                "file": None,
                "completed": False,
                "error": None,
            }
            self.requests.append(rec)
            if len(self.requests) > MAX_RECORDED_REQUESTS:
                del self.requests[: len(self.requests) // 2]
        return rec

    def reset_stats(self):
        with self.lock:
            self.file_stats = {}
            self.conn_stats = {
                "hub": {"connections": 0, "active": 0, "max_active": 0},
                "cdn": {"connections": 0, "active": 0, "max_active": 0},
            }

    def conn_change(self, host, delta):
        with self.lock:
            s = self.conn_stats[host]
            s["active"] += delta
            if delta > 0:
                s["connections"] += 1
                s["max_active"] = max(s["max_active"], s["active"])

    def body_change(self, key, delta, nbytes=0):
        with self.lock:
            s = self.file_stats.setdefault(
                key, {"bytes_sent": 0, "requests": 0, "active": 0, "max_concurrent": 0})
            s["active"] += delta
            s["bytes_sent"] += nbytes
            if delta > 0:
                s["requests"] += 1
                s["max_concurrent"] = max(s["max_concurrent"], s["active"])

    # Signed URLs ----------------------------------------------------------

    # Expiry times carry milliseconds: rounded to whole seconds, a URL with a
    # lifetime of 0.5 s would live up to 1.5 s, and a test that waits for it
    # to expire would pass or fail by chance.
    def sign(self, opaque_path, expires):
        msg = ("%s|%.3f" % (opaque_path, expires)).encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def cdn_location(self, repo, commit, rf):
        ttl = self.faults_for(repo.id, rf.path).get("url_ttl_seconds", self.url_ttl)
        token = base64.urlsafe_b64encode(
            json.dumps([repo.id, commit, rf.path]).encode()).decode().rstrip("=")
        opaque = "/repos/%s/%s" % (token, rf.sha256)
        expires = round(time.time() + ttl, 3)
        return "%s%s?expires=%.3f&sig=%s" % (self.cdn_url, opaque, expires,
                                              self.sign(opaque, expires))


def parse_range(value, total):
    """Returns None (serve whole body), (start, end) inclusive, or 'unsatisfiable'.

    Multiple ranges and malformed headers are ignored, as RFC 9110 allows.
    """
    if not value:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    a, b = m.group(1), m.group(2)
    if a == "":
        n = int(b)
        if n == 0:
            return "unsatisfiable"
        return (max(0, total - n), total - 1) if total > 0 else "unsatisfiable"
    start = int(a)
    end = int(b) if b else total - 1
    if b and end < start:
        return None
    if start >= total:
        return "unsatisfiable"
    return (start, min(end, total - 1))


class Dropped(Exception):
    """The fault plan closed the connection in the middle of a body."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakehub/1"
    # Bounds every blocking socket operation, so a vanished peer cannot pin a thread.
    timeout = 300

    # Plumbing -------------------------------------------------------------

    def setup(self):
        super().setup()
        self.conn_id = "%s:%d" % self.client_address[:2]
        self.state.conn_change(self.role, +1)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        self.state.conn_change(self.role, -1)

    @property
    def state(self):
        return self.server.state

    @property
    def role(self):
        return self.server.role

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        if self.state.args.verbose:
            sys.stderr.write("fakehub %s %s\n" % (self.role, fmt % args))

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, socket.timeout, BrokenPipeError):
            self.close_connection = True

    def do_GET(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def dispatch(self):
        self.rec = None
        self.req_id = "Root=1-%08x-%s" % (int(time.time()), secrets.token_hex(12))
        sp = urllib.parse.urlsplit(self.path)
        self.qs = urllib.parse.parse_qs(sp.query)
        self.raw_path = sp.path
        is_control = self.role == "hub" and self.raw_path.startswith("/_fake/")
        if not is_control:
            self.rec = self.state.record_start(self.role, self)
        body_len = int(self.headers.get("Content-Length") or 0)
        if body_len > MAX_CONTROL_BODY:
            self.close_connection = True
            return self.send_simple(413, b"too large\n")
        self.body = self.rfile.read(body_len) if body_len else b""
        try:
            if is_control:
                self.control()
            elif self.role == "hub":
                self.hub()
            else:
                self.cdn()
        except Dropped:
            self.close_connection = True
            self.note(error="dropped")
        except (ConnectionError, socket.timeout, BrokenPipeError) as e:
            self.close_connection = True
            self.note(error="client: %s" % e.__class__.__name__)

    def note(self, **kw):
        if self.rec is not None:
            with self.state.lock:
                self.rec.update(kw)

    def start_response(self, status, headers):
        self.send_response(status)
        self.send_header("X-Request-Id", self.req_id)
        for k, v in headers:
            # Values can echo request paths: keep them one line of latin-1.
            v = re.sub(r"[\x00-\x1f\x7f]", "?", str(v)).encode("latin-1", "backslashreplace")
            self.send_header(k, v.decode("latin-1"))
        self.end_headers()
        self.note(status=status)

    def send_simple(self, status, body, headers=(), ctype="text/plain; charset=utf-8"):
        hs = [("Content-Type", ctype), ("Content-Length", str(len(body)))] + list(headers)
        self.start_response(status, hs)
        if self.command != "HEAD" and body:
            self.wfile.write(body)
            self.note(bytes_sent=len(body))
        self.note(completed=True)

    def send_json(self, status, obj, headers=()):
        self.send_simple(status, json.dumps(obj).encode(), headers, "application/json; charset=utf-8")

    def hub_error(self, status, code, message, headers=()):
        hs = list(headers)
        if code:
            hs.append(("X-Error-Code", code))
        hs.append(("X-Error-Message", message))
        self.send_json(status, {"error": message}, hs)

    # Hub ------------------------------------------------------------------

    def token(self):
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            return auth[7:].strip()
        return None

    def find_repo(self, org, name):
        """Returns the Repo, or sends the error (or rename redirect) and returns None."""
        rid = "%s/%s" % (org, name)
        st = self.state
        with st.lock:
            repo = st.repos.get(rid)
            new = st.aliases.get(rid)
            tokens = list(st.tokens)
            reject_invalid = st.reject_invalid_tokens
        tok = self.token()
        valid = tok is not None and tok in tokens
        if reject_invalid and tok is not None and not valid:
            self.hub_error(401, None, "Invalid credentials in Authorization header")
            return None
        if repo is None and new is not None:
            prefix = "/api/models/" if self.raw_path.startswith("/api/models/") else "/"
            old_q = urllib.parse.quote(org) + "/" + urllib.parse.quote(name)
            rest = self.raw_path[len(prefix) + len(old_q):]
            loc = prefix + new + rest
            if self.qs:
                loc += "?" + urllib.parse.urlsplit(self.path).query
            self.send_simple(307, ("Temporary Redirect. Redirecting to %s" % loc).encode(),
                             [("Location", loc)])
            return None
        msg = ("Repository Not Found for url: %s%s. Please make sure you specified the correct "
               "`repo_id` and `repo_type`. If you are trying to access a private or gated repo, "
               "make sure you are authenticated." % (st.hub_url, self.path))
        if repo is None or (repo.private and (not valid or (repo.access and tok not in repo.access))):
            # The Hub answers 401 to anonymous callers so as not to leak
            # whether a private repo exists; an authenticated caller gets 404.
            self.hub_error(404 if valid else 401, "RepoNotFound", msg)
            return None
        self.note(repo=repo.id)
        return repo

    def gate_ok(self, repo):
        if not repo.gated:
            return True
        tok = self.token()
        with self.state.lock:
            tokens = list(self.state.tokens)
        if tok is None or tok not in tokens:
            self.hub_error(401, "GatedRepo",
                           "Access to model %s is restricted. You must have access to it and be "
                           "authenticated to access it. Please log in." % repo.id)
            return False
        if repo.access is not None and tok not in repo.access:
            self.hub_error(403, "GatedRepo",
                           "Access to model %s is restricted and you are not in the authorized "
                           "list. Visit https://huggingface.co/%s to ask for access." % (repo.id, repo.id))
            return False
        return True

    def hub(self):
        segs = self.raw_path.split("/")[1:]
        if self.command not in ("GET", "HEAD"):
            return self.send_json(405, {"error": "method not allowed"})
        if len(segs) >= 4 and segs[0] == "api" and segs[1] == "models":
            org, name = urllib.parse.unquote(segs[2]), urllib.parse.unquote(segs[3])
            repo = self.find_repo(org, name)
            if repo is None:
                return
            rest = segs[4:]
            if not rest or rest == [""]:
                return self.api_info(repo, "main")
            if rest[0] == "revision" and len(rest) >= 2:
                return self.api_info(repo, urllib.parse.unquote("/".join(rest[1:])))
            if rest[0] == "tree" and len(rest) >= 2:
                sub = urllib.parse.unquote("/".join(rest[2:])).strip("/")
                return self.api_tree(repo, urllib.parse.unquote(rest[1]), sub)
            if rest[0] == "refs" and len(rest) == 1:
                return self.api_refs(repo)
            return self.send_json(404, {"error": "Sorry, we can't find the page you are looking for."})
        if len(segs) >= 5 and segs[2] == "resolve":
            org, name = urllib.parse.unquote(segs[0]), urllib.parse.unquote(segs[1])
            repo = self.find_repo(org, name)
            if repo is None:
                return
            return self.resolve(repo, urllib.parse.unquote(segs[3]),
                                urllib.parse.unquote("/".join(segs[4:])))
        return self.send_json(404, {"error": "Sorry, we can't find the page you are looking for."})

    def commit_or_error(self, repo, rev):
        commit = repo.resolve_rev(rev)
        if commit is None:
            self.hub_error(404, "RevisionNotFound", "Invalid rev id: %s" % rev)
        return commit

    def api_info(self, repo, rev):
        commit = self.commit_or_error(repo, rev)
        if commit is None:
            return
        blobs = self.qs.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for rf in sorted(repo.commits[commit].values(), key=lambda f: f.path):
            s = {"rfilename": rf.path}
            if blobs:
                s["blobId"] = rf.oid
                s["size"] = rf.size
                if rf.lfs:
                    s["lfs"] = {"sha256": rf.sha256, "size": rf.size, "pointerSize": rf.pointer_size}
            siblings.append(s)
        self.send_json(200, {
            "_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24],
            "id": repo.id,
            "modelId": repo.id,
            "author": repo.id.split("/")[0],
            "sha": commit,
            "lastModified": "2026-01-01T00:00:00.000Z",
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": ["gguf"],
            "library_name": "gguf",
            "siblings": siblings,
        })

    def api_tree(self, repo, rev, sub):
        commit = self.commit_or_error(repo, rev)
        if commit is None:
            return
        recursive = self.qs.get("recursive", ["false"])[0].lower() in ("1", "true")
        if repo.tree_delay:
            time.sleep(repo.tree_delay)
        prefix = sub + "/" if sub else ""
        key = (commit, prefix, recursive)
        with self.state.lock:
            entries = repo.tree_cache.get(key)
        if entries is None:
            entries = self.tree_entries(repo, commit, sub, prefix, recursive, rev)
            if entries is None:
                return
            with self.state.lock:
                repo.tree_cache[key] = entries
        with self.state.lock:
            page = self.state.page_size
        try:
            page = max(1, min(1000, int(self.qs.get("limit", [page])[0])))
        except ValueError:
            pass
        if repo.tree_page_size:
            page = repo.tree_page_size
        return self.tree_page(commit, entries, page)

    def tree_entries(self, repo, commit, sub, prefix, recursive, rev):
        """The sorted entries of one tree listing, or None after answering 404."""
        files = repo.commits[commit]
        dirs = set()
        entries = []
        for rf in files.values():
            if not rf.path.startswith(prefix):
                continue
            rel = rf.path[len(prefix):]
            parts = rel.split("/")
            for i in range(1, len(parts)):
                dirs.add(prefix + "/".join(parts[:i]))
            if recursive or len(parts) == 1:
                e = {"type": "file", "oid": rf.oid, "size": rf.size, "path": rf.path}
                if rf.lfs:
                    e["lfs"] = {"oid": rf.sha256, "size": rf.size, "pointerSize": rf.pointer_size}
                entries.append(e)
        if sub and not dirs and not entries:
            self.hub_error(404, "EntryNotFound", "%s does not exist on \"%s\"" % (sub, rev),
                           [("X-Repo-Commit", commit)])
            return None
        for d in dirs:
            if recursive or "/" not in d[len(prefix):]:
                oid = hashlib.sha1(("tree " + d).encode()).hexdigest()
                entries.append({"type": "directory", "oid": oid, "size": 0, "path": d})
        if recursive and not sub:
            for i in range(repo.tree_dirs):
                d = "dirs/d%07d" % i
                entries.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(),
                                "size": 0, "path": d})
        entries.sort(key=lambda e: e["path"])
        return entries

    def tree_page(self, commit, entries, page):
        start = 0
        cur = self.qs.get("cursor", [None])[0]
        if cur:
            try:
                start = int(base64.urlsafe_b64decode(cur + "=" * (-len(cur) % 4)).decode())
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return self.send_json(400, {"error": "Invalid cursor"})
        chunk = entries[start:start + page]
        headers = [("X-Repo-Commit", commit)]
        if start + page < len(entries):
            q = {k: v[0] for k, v in self.qs.items() if k != "cursor"}
            q["cursor"] = base64.urlsafe_b64encode(str(start + page).encode()).decode().rstrip("=")
            nxt = "%s%s?%s" % (self.state.hub_url, self.raw_path, urllib.parse.urlencode(q))
            headers.append(("Link", '<%s>; rel="next"' % nxt))
        self.send_json(200, chunk, headers)

    def api_refs(self, repo):
        out = {"branches": [], "converts": [], "tags": []}
        prs = []
        for name, sha in sorted(repo.revisions.items()):
            if name.startswith("refs/pr/"):
                prs.append({"name": name[len("refs/pr/"):], "ref": name, "targetCommit": sha})
            elif name in repo.tags:
                out["tags"].append({"name": name, "ref": "refs/tags/" + name, "targetCommit": sha})
            else:
                out["branches"].append({"name": name, "ref": "refs/heads/" + name, "targetCommit": sha})
        if self.qs.get("include_prs", ["0"])[0].lower() in ("1", "true"):
            out["pullRequests"] = prs
        self.send_json(200, out)

    def status_fault(self, repo_id, path, where):
        """Sends an injected 5xx/429 answer for this request when one is due."""
        faults = self.state.faults_for(repo_id, path)
        if where == "resolve" and self.command == "HEAD" and "head_fail" in faults:
            spec = faults["head_fail"]
            if self.state.take_fault(repo_id, path, "head_fail", spec):
                code = int(spec.get("code", 500))
                self.send_simple(code, b"Internal Error\n")
                return True
        spec = faults.get("status_429")
        if spec and spec.get("where", "resolve") in (where, "any"):
            if self.state.take_fault(repo_id, path, "status_429", spec):
                ra = int(spec.get("retry_after", 1))
                self.send_json(429, {"error": "Too many requests"}, [
                    ("Retry-After", str(ra)),
                    ("RateLimit", '"resolvers";r=0;t=%d' % ra),
                    ("RateLimit-Policy", '"fixed window";"resolvers";q=3000;w=300'),
                ])
                return True
        spec = faults.get("status_5xx")
        if spec and spec.get("where", "cdn") in (where, "any"):
            if self.state.take_fault(repo_id, path, "status_5xx", spec):
                code = int(spec.get("code", 503))
                self.send_simple(code, b"Service Unavailable\n")
                return True
        return False

    def resolve(self, repo, rev, path):
        commit = self.commit_or_error(repo, rev)
        if commit is None:
            return
        rf = repo.commits[commit].get(path)
        self.note(file=path)
        if rf is None:
            return self.hub_error(404, "EntryNotFound", "%s does not exist on \"%s\"" % (path, rev),
                                  [("X-Repo-Commit", commit)])
        if not self.gate_ok(repo):
            return
        if self.status_fault(repo.id, path, "resolve"):
            return
        headers = [("X-Repo-Commit", commit), ("Accept-Ranges", "bytes")]
        if rf.lfs:
            loc = self.state.cdn_location(repo, commit, rf)
            headers += [
                ("Location", loc),
                ("X-Linked-Etag", '"%s"' % rf.sha256),
                ("X-Linked-Size", str(rf.size)),
                ("ETag", '"%s"' % rf.oid),
                ("Vary", "Origin, Accept"),
            ]
            with self.state.lock:
                body = ("Found. Redirecting to %s" % loc).encode() if self.state.redirect_body else b""
            return self.send_simple(302, body, headers)
        headers += [("ETag", '"%s"' % rf.sha1)]
        self.serve_body(repo.id, path, rf, headers)

    # CDN ------------------------------------------------------------------

    def s3_error(self, status, code, message):
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
                '<RequestId>%s</RequestId></Error>' % (code, message, self.req_id[-16:])).encode()
        self.send_simple(status, body, ctype="application/xml")

    def cdn(self):
        if self.command not in ("GET", "HEAD"):
            return self.s3_error(405, "MethodNotAllowed", "The specified method is not allowed.")
        m = re.fullmatch(r"/repos/([A-Za-z0-9_-]+)/([0-9a-f]{64})", self.raw_path)
        if not m:
            return self.s3_error(404, "NoSuchKey", "The specified key does not exist.")
        try:
            expires = float(self.qs["expires"][0])
            sig = self.qs["sig"][0]
            if not math.isfinite(expires):
                raise ValueError(expires)
        except (KeyError, ValueError, IndexError):
            return self.s3_error(403, "AccessDenied", "Query-string authentication requires the "
                                 "expires and sig parameters")
        if not hmac.compare_digest(sig, self.state.sign(self.raw_path, expires)):
            return self.s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated "
                                 "does not match the signature you provided.")
        if time.time() > expires:
            return self.s3_error(403, "AccessDenied", "Request has expired")
        with self.state.lock:
            reject_auth = self.state.cdn_reject_auth
        if reject_auth and self.headers.get("Authorization"):
            return self.s3_error(400, "InvalidArgument", "Only one auth mechanism allowed; only the "
                                 "X-Amz-Algorithm query parameter, Signature query string parameter "
                                 "or the Authorization header should be specified")
        tok = m.group(1)
        repo_id, commit, path = json.loads(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
        with self.state.lock:
            repo = self.state.repos.get(repo_id)
        rf = repo.commits.get(commit, {}).get(path) if repo else None
        if rf is None or rf.sha256 != m.group(2):
            return self.s3_error(404, "NoSuchKey", "The specified key does not exist.")
        self.note(repo=repo_id, file=path)
        if self.status_fault(repo_id, path, "cdn"):
            return
        fname = urllib.parse.quote(os.path.basename(path))
        headers = [
            ("Accept-Ranges", "bytes"),
            ("ETag", '"%s"' % rf.sha256),
            ("Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT"),
            ("Content-Disposition", "inline; filename*=UTF-8''%s; filename=\"%s\";" % (fname, fname)),
            ("X-Cache", "Hit from cloudfront"),
        ]
        self.serve_body(repo_id, path, rf, headers)

    # Bodies ---------------------------------------------------------------

    def serve_body(self, repo_id, path, rf, headers):
        """Answers GET/HEAD with the file's bytes, honouring Range and the faults."""
        faults = self.state.faults_for(repo_id, path)
        total = rf.size
        rng = parse_range(self.headers.get("Range"), total)
        if rng is not None and "ignore_range" in faults and self.command == "GET":
            if self.state.take_fault(repo_id, path, "ignore_range", faults["ignore_range"]):
                rng = None
        if self.command in ("GET", "HEAD") and "extra_bytes" in faults and \
                self.state.take_fault(repo_id, path, "extra_bytes", faults["extra_bytes"]):
            return self.serve_unbounded(rf, int(faults["extra_bytes"].get("bytes", 0)), headers)
        if rng == "unsatisfiable":
            hs = [("Content-Range", "bytes */%d" % total)] + headers
            if self.role == "cdn":
                body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidRange</Code>'
                        b'<Message>The requested range is not satisfiable</Message></Error>')
                return self.send_simple(416, body, hs, "application/xml")
            return self.send_simple(416, b"Range Not Satisfiable\n", hs)
        if rng is None:
            start, end, status = 0, total - 1, 200
        else:
            start, end = rng
            status = 206
            headers = headers + [("Content-Range", "bytes %d-%d/%d" % (start, end, total))]
        length = end - start + 1
        self.start_response(status, [("Content-Type", "application/octet-stream"),
                                     ("Content-Length", str(length))] + headers)
        if self.command == "HEAD" or length == 0:
            self.note(completed=True)
            return
        plan = self.body_plan(repo_id, path, faults)
        key = "%s:%s" % (repo_id, path)
        self.sent_so_far = 0
        self.state.body_change(key, +1)
        sent = 0
        try:
            sent = self.send_range(rf, start, length, plan)
        finally:
            self.state.body_change(key, -1, self.sent_so_far)
        self.note(completed=sent == length)

    def serve_unbounded(self, rf, extra, headers):
        """A server that streams without Content-Length and sends more than the file:
        200 whatever the Range, the file's bytes, then `extra` more, then it closes."""
        self.close_connection = True
        self.sent_so_far = 0
        self.start_response(200, [("Content-Type", "application/octet-stream"),
                                  ("Connection", "close")] + headers)
        if self.command == "HEAD":
            self.note(completed=True)
            return
        f = rf.open()
        try:
            data = f.read() if f is not None else rf.content
        finally:
            if f is not None:
                f.close()
        try:
            self.wfile.write(data)
            self.add_sent(len(data))
            junk = bytes(range(256)) * (CHUNK // 256)
            left = extra
            while left > 0:
                n = min(left, len(junk))
                self.wfile.write(junk[:n])
                self.add_sent(n)
                left -= n
        except (ConnectionError, BrokenPipeError):
            self.note(error="client: closed")
            return
        self.note(completed=True)

    def body_plan(self, repo_id, path, faults):
        """Decides, once per request, which byte-level faults apply to it."""
        st = self.state
        plan = {"drop": None, "stall": None, "corrupt": None, "rate": faults.get("rate_limit_bps")}
        if "drop_after_bytes" in faults and st.take_fault(repo_id, path, "drop_after_bytes",
                                                          faults["drop_after_bytes"]):
            d = faults["drop_after_bytes"]
            plan["drop"] = (int(d.get("bytes", 0)), d.get("mode", "fin"))
        if "stall" in faults and st.take_fault(repo_id, path, "stall", faults["stall"]):
            s = faults["stall"]
            plan["stall"] = (int(s.get("after_bytes", 0)), float(s.get("seconds", 60)))
        if "corrupt" in faults and st.take_fault(repo_id, path, "corrupt", faults["corrupt"]):
            plan["corrupt"] = int(faults["corrupt"].get("offset", 0))
        return plan

    def send_range(self, rf, start, length, plan):
        """Writes bytes [start, start+length) of rf; returns how many went out."""
        self.sent_so_far = 0
        simple = plan["drop"] is None and plan["stall"] is None and plan["corrupt"] is None \
            and not plan["rate"]
        f = rf.open()
        try:
            if simple and f is not None:
                # Fast path: the kernel copies file pages straight to the socket.
                pos, left = start, length
                while left > 0:
                    n = self.connection.sendfile(f, pos, min(CHUNK, left))
                    if n == 0:
                        raise ConnectionResetError("sendfile sent nothing")
                    pos += n
                    left -= n
                    self.add_sent(n)
                return self.sent_so_far
            rate = plan["rate"]
            chunk = CHUNK
            if rate:
                chunk = max(1024, min(CHUNK, int(rate / 20)))
            bucket_t = time.monotonic()
            budget = 0.0
            limit = length
            if plan["drop"] is not None:
                limit = min(length, plan["drop"][0])
            stall = plan["stall"]
            pos = 0
            if f is not None:
                f.seek(start)
            while pos < limit:
                if stall is not None and pos >= stall[0]:
                    self.note(error="stalled")
                    if self.state.stopping.wait(stall[1]):
                        raise Dropped()
                    stall = None
                n = min(chunk, limit - pos)
                if stall is not None and pos < stall[0]:
                    n = min(n, stall[0] - pos)
                if rate:
                    # Token bucket with a burst of one chunk: sleep until the
                    # chunk has been earned.
                    now = time.monotonic()
                    budget = min(float(chunk), budget + (now - bucket_t) * rate)
                    bucket_t = now
                    if budget < n:
                        time.sleep((n - budget) / rate)
                        budget = float(n)
                        bucket_t = time.monotonic()
                    budget -= n
                if f is not None:
                    data = f.read(n)
                    if len(data) != n:
                        raise ConnectionAbortedError("source file shrank")
                else:
                    data = rf.content[start + pos:start + pos + n]
                off = plan["corrupt"]
                if off is not None and start + pos <= off < start + pos + n:
                    b = bytearray(data)
                    b[off - start - pos] ^= 0xFF
                    data = bytes(b)
                self.wfile.write(data)
                pos += n
                self.add_sent(n)
            if pos < length:
                self.drop(plan["drop"][1])
            return self.sent_so_far
        finally:
            if f is not None:
                f.close()

    def add_sent(self, n):
        self.sent_so_far += n
        if self.rec is not None:
            with self.state.lock:
                self.rec["bytes_sent"] += n

    def drop(self, mode):
        if mode == "rst":
            # SO_LINGER 0 makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise Dropped()

    # Control API ------------------------------------------------------------

    def control(self):
        st = self.state
        route = (self.command, self.raw_path)
        try:
            body = json.loads(self.body) if self.body else {}
        except ValueError as e:
            return self.send_json(400, {"error": "bad JSON: %s" % e})
        try:
            if route == ("GET", "/_fake/health"):
                return self.send_json(200, {"ok": True, "hub": st.hub_url, "cdn": st.cdn_url})
            if route == ("GET", "/_fake/requests"):
                since = int(self.qs.get("since", ["0"])[0])
                host = self.qs.get("host", [None])[0]
                with st.lock:
                    out = [dict(r) for r in st.requests
                           if r["seq"] > since and (host is None or r["host"] == host)]
                return self.send_json(200, out)
            if route == ("POST", "/_fake/reset_requests"):
                with st.lock:
                    st.requests = []
                return self.send_json(200, {"ok": True})
            if route == ("POST", "/_fake/reset"):
                with st.lock:
                    st.requests = []
                    st.fault_counts = {}
                st.reset_stats()
                return self.send_json(200, {"ok": True})
            if route == ("GET", "/_fake/faults"):
                with st.lock:
                    out = [{"repo": k[0], "path": k[1], "faults": v,
                            "counts": {c[2]: n for c, n in st.fault_counts.items() if c[:2] == k}}
                           for k, v in st.faults.items()]
                return self.send_json(200, out)
            if route == ("POST", "/_fake/faults"):
                if "path" not in body:
                    return self.send_json(400, {"error": "need path"})
                st.set_faults(body.get("repo"), body["path"], body.get("faults") or {})
                return self.send_json(200, {"ok": True})
            if route == ("POST", "/_fake/clear_faults"):
                with st.lock:
                    st.faults = {}
                    st.fault_counts = {}
                return self.send_json(200, {"ok": True})
            if route == ("POST", "/_fake/config"):
                if "config" in body:
                    st.load_config_dict(body["config"])
                else:
                    st.load_config_file(body["path"])
                return self.send_json(200, {"ok": True})
            if route == ("GET", "/_fake/stats"):
                with st.lock:
                    out = {"files": json.loads(json.dumps(st.file_stats)),
                           "connections": json.loads(json.dumps(st.conn_stats)),
                           "fault_counts": {"%s:%s:%s" % k: n for k, n in st.fault_counts.items()}}
                return self.send_json(200, out)
            if route == ("POST", "/_fake/reset_stats"):
                st.reset_stats()
                return self.send_json(200, {"ok": True})
        except (ConfigError, OSError, KeyError, ValueError, TypeError) as e:
            return self.send_json(400, {"error": "%s: %s" % (e.__class__.__name__, e)})
        self.send_json(404, {"error": "no such control endpoint"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, addr, role, state):
        self.role = role
        self.state = state
        super().__init__(addr, Handler)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake Hugging Face Hub for tests.")
    ap.add_argument("--config", help="JSON config file (see README.md)")
    ap.add_argument("--hub-host", default="127.0.0.1")
    ap.add_argument("--hub-port", type=int, default=0)
    ap.add_argument("--cdn-host", default="127.0.0.2")
    ap.add_argument("--cdn-port", type=int, default=0)
    ap.add_argument("--cdn-base", help="the CDN the hub redirects LFS files to, instead of its "
                    "own: a server answering /repos/TOKEN/SHA256 (bench/fleet.sh's nginx)")
    ap.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE)
    ap.add_argument("--url-ttl", type=float, default=DEFAULT_URL_TTL,
                    help="lifetime of signed CDN URLs in seconds")
    ap.add_argument("--ready-file", help="also write the ready JSON line here")
    ap.add_argument("--hash-cache", help="JSON file caching sha256 of source files across runs")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="exit when the parent process goes away")
    ap.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = ap.parse_args(argv)

    state = State(args)
    try:
        if args.config:
            state.load_config_file(args.config)
    except (ConfigError, OSError, ValueError) as e:
        sys.stderr.write("fakehub: config: %s\n" % e)
        return 2

    hub = Server((args.hub_host, args.hub_port), "hub", state)
    cdn = Server((args.cdn_host, args.cdn_port), "cdn", state)
    state.hub_url = "http://%s:%d" % (args.hub_host, hub.server_address[1])
    state.cdn_url = args.cdn_base or "http://%s:%d" % (args.cdn_host, cdn.server_address[1])
    for s in (hub, cdn):
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

    ready = json.dumps({"hub": state.hub_url, "cdn": state.cdn_url, "pid": os.getpid()})
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(ready + "\n")
        os.replace(tmp, args.ready_file)
    sys.stdout.write(ready + "\n")
    sys.stdout.flush()

    def on_signal(signum, frame):
        state.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    parent = os.getppid()
    while not state.stopping.wait(0.5):
        if args.exit_with_parent and os.getppid() != parent:
            break
    state.stopping.set()
    hub.shutdown()
    cdn.shutdown()
    hub.server_close()
    cdn.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
