"""Smoke runs of the learned codecs on synthetic data (splitfleet_models.smoke): every
method's stages for one epoch, resume, export, and the exported halves agreeing with
the training pass."""

import hashlib
import json
import tempfile
import unittest
from pathlib import Path

try:
    import torch

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "cifar10-test-sample"


@unittest.skipUnless(HAVE_TORCH, "python3-torch is not installed")
class CodecSmokeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from splitfleet_models import smoke

        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = Path(cls.tmp.name)
        smoke.synthetic_release(cls.dir / "data", 64)
        smoke.train_teacher(cls.dir)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_method(self, method):
        from splitfleet_models import smoke, train_codec

        out, args = smoke.train_method(self.dir, method)
        log = [json.loads(l) for l in (out / "train.log").read_text().splitlines()]
        self.assertEqual(log[-1]["event"], "done")
        train_codec.main(args)  # resume: nothing runs again
        log = [json.loads(l) for l in (out / "train.log").read_text().splitlines()]
        self.assertEqual(sum(r["event"] == "epoch" for r in log), len(smoke.RECIPES[method]["stages"]))
        self.check_export(smoke.export_method(self.dir, method, SAMPLE), method)
        return out, log

    def check_export(self, bundle, method):
        from splitfleet_models import export_codec

        m = json.loads((bundle / "manifest.json").read_text())
        self.assertEqual((m["format"], m["kind"], m["codec"]["method"]), (2, "codec", method))
        self.assertEqual(m["codec"]["id"], export_codec.CODEC_IDS[method])
        for f in m["files"].values():
            self.assertEqual(hashlib.sha256((bundle / f["path"]).read_bytes()).hexdigest(), f["sha256"])
        for p in m["codec"]["points"]:
            self.assertIn(p["head"], m["files"])
            self.assertEqual(p["entropy"] is None, method == "bottlenetpp")
        ref = json.loads((self.dir / "fixtures" / bundle.name / "reference.json").read_text())
        self.assertGreater(len(ref["cases"]), 0)

    def load(self, out):
        from splitfleet_models import train_codec

        st = torch.load(out / "final.pt")
        codec = train_codec.build_codec(st["cfg"])
        codec.load_state_dict(st["model"])
        codec.eval()
        return codec

    def test_bottlenetpp(self):
        out, log = self.run_method("bottlenetpp")
        self.assertIn("val_top1", [r for r in log if r["event"] == "epoch"][-1])

    def test_aecnn_ranks_channels_and_serves_every_k(self):
        out, log = self.run_method("aecnn")
        order = next(r["order"] for r in log if r.get("stage") == "attention")
        self.assertEqual(sorted(order), list(range(len(order))))
        codec = self.load(out)
        with torch.no_grad():
            x = torch.randn(3, 3, 32, 32)
            s = codec.device(x)
            self.assertEqual(tuple(s.shape[1:2]), (4,))
            self.assertTrue(bool(((s >= 0) & (s <= 7) & (s == s.round())).all()))
            # the exported edge half (-1 = channel not sent) equals the training pass for each k
            for k in (1, 2, 4):
                s_k = s.clone()
                s_k[:, k:] = -1
                mask = torch.zeros_like(s)
                mask[:, :k] = 1
                ref = codec.teacher.tail(codec._decode(s.clamp_min(0) / codec.levels, mask))
                self.assertTrue(torch.allclose(codec.edge(s_k), ref, atol=1e-5))

    def test_frankensplit_rate_and_tables(self):
        from splitfleet_models import rans

        out, log = self.run_method("frankensplit")
        ep = [r for r in log if r["event"] == "epoch"][0]
        self.assertGreater(ep["bpp"], 0)
        codec = self.load(out)
        tables = codec.prior.tables()
        self.assertEqual(len(tables), 4)
        with torch.no_grad():
            s = codec.device(torch.randn(2, 3, 32, 32)).numpy().astype(int)
        flat = s.reshape(-1).tolist()
        hw = s.shape[2] * s.shape[3]
        ch = lambda i: (i // hw) % s.shape[1]
        self.assertEqual(rans.decode(rans.encode(flat, tables, ch), len(flat), tables, ch), flat)

    def test_splitfleet_joint_tail_and_packing(self):
        from splitfleet_models import sweep, train_codec

        out, log = self.run_method("splitfleet")
        eps = [r for r in log if r["event"] == "epoch"]
        self.assertEqual([r["stage"] for r in eps], ["codec", "joint"])
        self.assertGreater(eps[0]["bpp"], 0)
        self.assertIn("ce", eps[1])
        codec = self.load(out)
        teacher = train_codec.build_codec(codec_cfg(out))
        # the device half is the teacher's unchanged head + encoder; the joint stage
        # fine-tuned the tail
        for (k, a), b in zip(codec.teacher.head.state_dict().items(), teacher.teacher.head.state_dict().values()):
            self.assertTrue(torch.equal(a, b), k)
        self.assertFalse(all(torch.equal(a, b) for a, b in zip(codec.teacher.tail.parameters(),
                                                                  teacher.teacher.tail.parameters())))
        # packed without the unchanged teacher tensors, unpacked back to the same final.pt
        archives = sweep.pack(self.dir, [out.name], self.dir / "packed")
        self.assertEqual(len(archives), 1)
        sweep.unpack(self.dir / "packed", self.dir / "unpacked")
        a = torch.load(out / "final.pt")["model"]
        b = torch.load(self.dir / "unpacked" / out.name / "final.pt")["model"]
        self.assertEqual(a.keys(), b.keys())
        self.assertTrue(all(torch.equal(a[k], b[k]) for k in a))
        self.assertTrue((self.dir / "unpacked" / out.name / "train.log").exists())


def codec_cfg(out):
    return torch.load(out / "final.pt")["cfg"]


if __name__ == "__main__":
    unittest.main()
