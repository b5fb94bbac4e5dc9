"""Starts the fake Hugging Face Hub (tests/fakehub) for the UI tests.

    python3 tests/ui/hub.py DIR [fakehub options]

Writes the GGUF fixtures and the hub config under DIR, then becomes
fakehub.py (exec, same pid), which prints its ready line on stdout. The
files are paced so a download takes a few seconds: long enough to watch the
bar move and to cancel it halfway.

Repo test-org/tiny-GGUF: tiny.Q4_K_M.gguf, the Q8_0 quantization as two split
shards under q8/, tiny.F16.gguf and a README.md.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FAKEHUB = os.path.join(HERE, "..", "fakehub")
sys.path.insert(0, FAKEHUB)

import fixtures  # noqa: E402

MB = 1000 * 1000
RATE = int(os.environ.get("RBEE_UI_HUB_RATE", str(3 * MB)))  # bytes/s per connection


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: hub.py DIR [fakehub options]\n")
        return 2
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    paced = {"rate_limit_bps": RATE}
    q4 = fixtures.write_gguf(os.path.join(d, "q4.gguf"), size=12 * MB, seed=1,
                             file_type="Q4_K_M", name="Tiny", context_length=8192, use_tool=False)
    q8a = fixtures.write_gguf(os.path.join(d, "q8a.gguf"), size=9 * MB, seed=2,
                              file_type="Q8_0", name="Tiny", context_length=8192, split=(0, 2), use_tool=False)
    q8b = fixtures.write_gguf(os.path.join(d, "q8b.gguf"), size=9 * MB, seed=3,
                              file_type="Q8_0", name="Tiny", context_length=8192, split=(1, 2), use_tool=False)
    f16 = fixtures.write_gguf(os.path.join(d, "f16.gguf"), size=2 * MB, seed=4,
                              file_type="F16", name="Tiny", context_length=8192, use_tool=False)
    repo = fixtures.make_repo("test-org/tiny-GGUF", [
        fixtures.make_file("README.md", content="# Tiny\n"),
        fixtures.make_file("tiny.Q4_K_M.gguf", q4, faults=paced),
        fixtures.make_file("q8/tiny.Q8_0-00001-of-00002.gguf", q8a, faults=paced),
        fixtures.make_file("q8/tiny.Q8_0-00002-of-00002.gguf", q8b, faults=paced),
        fixtures.make_file("tiny.F16.gguf", f16),
    ])
    cfg = fixtures.write_config(fixtures.make_config([repo]), os.path.join(d, "hub.json"))
    args = [sys.executable, os.path.join(FAKEHUB, "fakehub.py"), "--config", cfg,
            "--exit-with-parent"] + sys.argv[2:]
    sys.stdout.flush()
    os.execv(sys.executable, args)
    return 1


if __name__ == "__main__":
    sys.exit(main())
