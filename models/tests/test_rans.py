"""The Python reference coder against the golden fixtures of both implementations."""

import json
import random
import unittest
from pathlib import Path

from splitfleet_models import rans

FIXTURES = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "rans"


def _tables(case):
    return [rans.Table(t["offset"], t["cdf"]) for t in case["tables"]]


class GoldenTest(unittest.TestCase):
    def test_both_fixture_files_round_trip_byte_for_byte(self):
        for name in ("python.json", "typescript.json"):
            doc = json.loads((FIXTURES / name).read_text())
            self.assertEqual(doc["probBits"], rans.PROB_BITS)
            for c in doc["cases"]:
                tables, idx, stream = _tables(c), c["tableIndex"], c["stream"]
                got = rans.encode(c["values"], tables, lambda i: idx[i], stream).hex()
                self.assertEqual(got, c["bitstream"], c["name"])
                got = rans.decode(bytes.fromhex(c["bitstream"]), len(c["values"]), tables, lambda i: idx[i], stream)
                self.assertEqual(got, c["values"], c["name"])
            self.assertEqual({c["stream"] for c in doc["cases"]}, set(rans.STREAMS), name)

    def test_stream_2_trims_the_flush(self):
        doc = json.loads((FIXTURES / "python.json").read_text())
        by = {(c["name"].split("/")[0], c["stream"]): len(c["bitstream"]) // 2 for c in doc["cases"]}
        for (name, stream), n in by.items():
            if stream == 2:
                self.assertGreaterEqual(by[(name, 1)] - n, 1, name)

    def test_python_fixture_is_current(self):
        doc = json.loads((FIXTURES / "python.json").read_text())
        self.assertEqual(doc["cases"], rans.golden_cases())

    def test_truncation_and_junk_raise(self):
        doc = json.loads((FIXTURES / "python.json").read_text())
        c = next(x for x in doc["cases"] if x["name"] == "laplace-in-range")
        tables, data = _tables(c), bytes.fromhex(c["bitstream"])
        for n in range(len(data)):
            with self.assertRaises(rans.RansError):
                rans.decode(data[:n], len(c["values"]), tables, lambda i: 0, 1)
        rng = random.Random(3)
        for _ in range(50):
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
            with self.assertRaises(rans.RansError):
                rans.decode(junk, 100000, tables, lambda i: 0, 1)

    def test_stream_2_never_returns_the_values_of_a_truncated_stream(self):
        # stream 2 never reads past the end, so a cut stream decodes to the end and the
        # state check catches it (or, by chance, it decodes to other values)
        doc = json.loads((FIXTURES / "python.json").read_text())
        c = next(x for x in doc["cases"] if x["name"] == "laplace-in-range/stream2")
        tables, data = _tables(c), bytes.fromhex(c["bitstream"])
        raised = 0
        for n in range(len(data)):
            try:
                self.assertNotEqual(rans.decode(data[:n], len(c["values"]), tables, lambda i: 0, 2), c["values"])
            except rans.RansError:
                raised += 1
        self.assertGreaterEqual(raised, len(data) - 2)


class CdfTest(unittest.TestCase):
    def test_pmf_to_cdf_is_a_valid_table(self):
        for pmf in ([1.0], [0.0, 1.0, 0.0], [1e-12] * 300 + [1.0], [0.25] * 4):
            cdf = rans.pmf_to_cdf(pmf, 1e-4)
            rans.check_table(rans.Table(0, cdf))
            self.assertEqual(len(cdf), len(pmf) + 2)

    def test_pmf_to_cdf_refuses_empty_mass(self):
        with self.assertRaises(rans.RansError):
            rans.pmf_to_cdf([0.0, 0.0], 0.0)


if __name__ == "__main__":
    unittest.main()
