"""GET /v1/models a page at a time, against the real daemon with a catalog
of 2,100 models written by tests/tools/catalog-fill: the page fields, the
bounds of limit and offset, strict query parsing (400), and `rbee-hive ls`
reading every page (its pages hold 1,000 models).
"""

import json
import os
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemonhelp import NO_HUB, DaemonTestCase, daemon_env  # noqa: E402

BUILD = os.environ.get("RBEE_BUILD", "build")
BIN = os.path.join(BUILD, "rbee-hive")
FILL = os.path.join(BUILD, "catalog-fill")
N = 2100


class ModelsPagingTest(DaemonTestCase):
    tmp_prefix = "rbee-models-paging-"

    @classmethod
    def set_up_class(cls):
        data = os.path.join(cls.tmp, "data")
        os.makedirs(data)
        subprocess.run([FILL, os.path.join(data, "catalog.db"), str(N)], check=True,
                       timeout=120, stdout=subprocess.DEVNULL)
        hf_home = os.path.join(cls.tmp, "hf-home")
        _, cls.base = cls.serve("data", hf_home=hf_home, level="warn", binary=BIN)
        cls.env = dict(daemon_env(NO_HUB, hf_home, "warn"), RBEE_HIVE_URL=cls.base)

    def get(self, query=""):
        try:
            with urllib.request.urlopen(self.base + "/v1/models" + query, timeout=30) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def page(self, query):
        st, body = self.get(query)
        self.assertEqual(st, 200, (query, body))
        self.assertEqual(set(body), {"models", "total", "offset", "limit", "next_offset"})
        self.assertEqual(body["total"], N)
        return body

    def test_default_page(self):
        body = self.page("")
        self.assertEqual((body["offset"], body["limit"], body["next_offset"]), (0, 100, 100))
        ids = [m["id"] for m in body["models"]]
        self.assertEqual(len(ids), 100)
        self.assertEqual(ids, sorted(ids))
        # Each model carries its own file, not a neighbour's.
        for m in body["models"]:
            self.assertEqual(len(m["files"]), 1)
            self.assertTrue(m["id"].endswith(":" + m["files"][0]["path"]), m["id"])

    def test_pages_add_up_to_the_catalog(self):
        seen, offset, pages = [], 0, 0
        while offset is not None:
            body = self.page("?limit=1000&offset=%d" % offset)
            self.assertEqual(body["offset"], offset)
            seen += [m["id"] for m in body["models"]]
            offset = body["next_offset"]
            pages += 1
        self.assertEqual(pages, 3)
        self.assertEqual(len(seen), N)
        self.assertEqual(len(set(seen)), N)
        self.assertEqual(seen, sorted(seen))
        small = self.page("?limit=7&offset=1000")
        self.assertEqual([m["id"] for m in small["models"]], seen[1000:1007])
        self.assertEqual(small["next_offset"], 1007)

    def test_last_page_and_beyond(self):
        body = self.page("?offset=%d&limit=100" % (N - 30))
        self.assertEqual(len(body["models"]), 30)
        self.assertIsNone(body["next_offset"])
        exact = self.page("?offset=%d&limit=100" % (N - 100))
        self.assertEqual(len(exact["models"]), 100)
        self.assertIsNone(exact["next_offset"])
        one_short = self.page("?offset=%d&limit=100" % (N - 101))
        self.assertEqual(one_short["next_offset"], N - 1)
        past = self.page("?offset=%d" % (N + 5))
        self.assertEqual(past["models"], [])
        self.assertIsNone(past["next_offset"])
        top = self.page("?limit=1000&offset=0")
        self.assertEqual(len(top["models"]), 1000)
        self.assertEqual(self.page("?offset=1000000")["models"], [])

    def test_bad_queries_are_400(self):
        for q in ("?limit=0", "?limit=1001", "?limit=-1", "?limit=abc", "?limit=", "?limit",
                  "?limit=1e3", "?limit=+5", "?limit=%205", "?offset=1000001", "?offset=-1",
                  "?offset=99999999999999999999999", "?foo=1", "?limit=5&limit=5",
                  "?offset=1&offset=2", "?limit=%zz", "?&limit=5", "?Limit=5"):
            st, body = self.get(q)
            self.assertEqual(st, 400, q)
            self.assertEqual(body["error"]["code"], "bad_request", q)
            self.assertTrue(body["error"]["message"], q)
        st, body = self.get("?limit=1001")
        self.assertIn("limit", body["error"]["message"])
        # Percent-encoded digits are still digits.
        self.assertEqual(len(self.page("?limit=%35")["models"]), 5)

    def test_cli_ls_reads_every_page(self):
        p = subprocess.run([BIN, "ls", "--json"], env=self.env, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        ids = [m["id"] for m in json.loads(p.stdout)["models"]]
        self.assertEqual(len(ids), N)
        self.assertEqual(len(set(ids)), N)
        self.assertEqual(ids, sorted(ids))
        p = subprocess.run([BIN, "ls"], env=self.env, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), N + 1)  # the header, then one line per model
        self.assertTrue(lines[0].startswith("ID"), lines[0])
        self.assertEqual(sum(1 for x in lines if x.startswith("hf:bench/")), N)


if __name__ == "__main__":
    unittest.main()
