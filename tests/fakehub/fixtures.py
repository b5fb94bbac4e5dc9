"""Builds fake-hub configs and GGUF fixture files for tests.

    from fixtures import write_gguf, make_file, make_repo, make_config, write_config

    g = write_gguf(os.path.join(tmp, "m.gguf"), size=8 << 20, seed=1)
    repo = make_repo("org/model-GGUF", [
        make_file("model.Q4_K_M.gguf", g),
        make_file("README.md", content="# model\\n"),
    ])
    cfg_path = write_config(make_config([repo]), os.path.join(tmp, "hub.json"))

Everything here is deterministic: the same arguments give the same bytes and
the same commit ids, so tests can compare against constants when they want.
"""

import hashlib
import json
import os
import random
import re
import struct
import subprocess
import sys

DEFAULT_TOKEN = "hf_test_token"

# general.file_type values from llama.cpp's llama_ftype.
FILE_TYPES = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
    "Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15,
    "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "IQ4_XS": 30, "BF16": 32,
}

GGUF_UINT16, GGUF_UINT32, GGUF_INT32, GGUF_STRING, GGUF_UINT64 = 2, 4, 5, 8, 10

LFS_SUFFIXES = (".gguf", ".bin", ".safetensors", ".pt", ".pth", ".onnx", ".h5", ".msgpack",
                ".model", ".ckpt", ".zip", ".tar", ".gz")


def _kv(key, vtype, value):
    k = key.encode()
    out = struct.pack("<Q", len(k)) + k + struct.pack("<I", vtype)
    if vtype == GGUF_STRING:
        v = value.encode()
        return out + struct.pack("<Q", len(v)) + v
    fmt = {GGUF_UINT16: "<H", GGUF_UINT32: "<I", GGUF_INT32: "<i", GGUF_UINT64: "<Q"}[vtype]
    return out + struct.pack(fmt, value)


def gguf_header(arch="llama", file_type="Q4_K_M", name="test model", context_length=4096,
                split=None, extra=()):
    """A GGUF v3 header with no tensors and a few key/values.

    split: (split_no, split_count) for a shard of a split model (split_no from 0).
    extra: iterable of (key, gguf_type, value) added at the end.
    """
    ft = FILE_TYPES[file_type] if isinstance(file_type, str) else int(file_type)
    kvs = [
        ("general.architecture", GGUF_STRING, arch),
        ("general.name", GGUF_STRING, name),
        ("general.file_type", GGUF_UINT32, ft),
        ("%s.context_length" % arch, GGUF_UINT32, context_length),
    ]
    if split is not None:
        kvs += [("split.no", GGUF_UINT16, split[0]), ("split.count", GGUF_UINT16, split[1]),
                ("split.tensors.count", GGUF_INT32, 0)]
    kvs += list(extra)
    body = b"".join(_kv(*kv) for kv in kvs)
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + body


def _gguf_gen_tool():
    build = os.environ.get("RBEE_BUILD")
    if not build:
        return None
    tool = os.path.join(build, "gguf-gen")
    return tool if os.access(tool, os.X_OK) else None


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for buf in iter(lambda: f.read(4 << 20), b""):
            h.update(buf)
    return h.hexdigest()


def write_gguf(path, size=1 << 20, seed=0, arch="llama", file_type="Q4_K_M", name=None,
               context_length=4096, split=None, use_tool=None):
    """Writes a GGUF file of exactly `size` bytes; returns {path, size, sha256}.

    Uses $RBEE_BUILD/gguf-gen when it is built (use_tool=None), else writes a
    minimal header in Python followed by deterministic pseudo-random padding.
    The padding is one 1 MiB random block rotated differently per MiB, so a
    few hundred MB take well under a second apart from the disk.
    """
    tool = _gguf_gen_tool() if use_tool in (None, True) else None
    if use_tool and tool is None:
        raise RuntimeError("gguf-gen is not built in $RBEE_BUILD")
    ft = FILE_TYPES[file_type] if isinstance(file_type, str) else int(file_type)
    if tool is not None:
        cmd = [tool, "--out", path, "--size", str(size), "--seed", str(seed), "--arch", arch,
               "--file-type", str(ft), "--context", str(context_length), "--print-sha256"]
        if name:
            cmd += ["--name", name]
        if split is not None:
            cmd += ["--split-no", str(split[0]), "--split-count", str(split[1])]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
        digest = r.stdout.decode(errors="replace").strip()
        ok = r.returncode == 0 and os.path.exists(path) and os.path.getsize(path) == size
        if ok and re.fullmatch(r"[0-9a-f]{64}", digest):
            return {"path": path, "size": size, "sha256": digest}
        msg = "gguf-gen failed (%s): %s" % (r.returncode, r.stderr.decode(errors="replace").strip())
        if use_tool:
            raise RuntimeError(msg)
        sys.stderr.write("fixtures: %s; writing the GGUF in Python\n" % msg)
    header = gguf_header(arch, ft, name or "test %s %d" % (arch, seed), context_length, split)
    if size < len(header):
        raise ValueError("size %d is smaller than the GGUF header (%d)" % (size, len(header)))
    block = random.Random(seed).randbytes(1 << 20)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        f.write(header)
        h.update(header)
        left = size - len(header)
        i = 0
        while left > 0:
            k = (i * 7919 + seed) % len(block)
            chunk = (block[k:] + block[:k])[:left]
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
            i += 1
    return {"path": path, "size": size, "sha256": h.hexdigest()}


def write_bytes(path, size, seed=0):
    """A plain file of deterministic pseudo-random bytes; returns {path, size, sha256}."""
    data = random.Random(seed).randbytes(size)
    with open(path, "wb") as f:
        f.write(data)
    return {"path": path, "size": size, "sha256": hashlib.sha256(data).hexdigest()}


def make_file(repo_path, source=None, content=None, lfs=None, faults=None):
    """One file entry. source: a path on disk or a dict from write_gguf();
    content: inline str/bytes (small files). lfs defaults to True for
    model-like suffixes and for sources, False for inline content."""
    e = {"path": repo_path}
    if isinstance(source, dict):
        e["source"] = os.path.abspath(source["path"])
        e["size"] = source["size"]
        e["sha256"] = source["sha256"]
    elif source is not None:
        e["source"] = os.path.abspath(source)
    if content is not None:
        if isinstance(content, bytes):
            try:
                e["content"] = content.decode("utf-8")
            except UnicodeDecodeError:
                import base64
                e["content_b64"] = base64.b64encode(content).decode()
        else:
            e["content"] = content
    if lfs is None:
        lfs = source is not None or repo_path.lower().endswith(LFS_SUFFIXES)
    e["lfs"] = bool(lfs)
    if faults:
        e["faults"] = faults
    return e


def fake_commit(*parts):
    """A deterministic 40-hex commit id derived from the given parts."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def make_repo(repo_id, files=None, revisions=None, commits=None, gated=False, private=False,
              renamed_from=None, tags=None, access=None):
    """A repo entry.

    files: the file entries of one commit (the usual case); that commit gets a
    deterministic id and, unless `revisions` says otherwise, the branch main.
    commits: {commit_sha: [file entries]} for repos with history.
    revisions: {name: commit_sha}; a value of None means the commit of `files`.
    """
    cm = {}
    default = None
    if files is not None:
        default = fake_commit(repo_id, files)
        cm[default] = {"files": list(files)}
    for sha, fl in (commits or {}).items():
        cm[sha] = {"files": list(fl)}
    revs = dict(revisions) if revisions else {"main": default or next(iter(cm))}
    for k, v in revs.items():
        if v is None:
            revs[k] = default
    r = {"id": repo_id, "gated": gated, "private": private, "revisions": revs, "commits": cm}
    if renamed_from:
        r["renamed_from"] = renamed_from
    if tags:
        r["tags"] = list(tags)
    if access is not None:
        r["access"] = list(access)
    return r


def make_config(repos, token=DEFAULT_TOKEN, page_size=None, url_ttl_seconds=None, **extra):
    cfg = {"repos": list(repos), "token": token}
    if page_size:
        cfg["page_size"] = page_size
    if url_ttl_seconds:
        cfg["url_ttl_seconds"] = url_ttl_seconds
    cfg.update(extra)
    return cfg


def write_config(cfg, path):
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
    return path
