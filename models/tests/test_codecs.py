"""Smoke runs of the learned codecs on synthetic data: a tiny teacher, every method's
stages for one epoch, resume, and the exported halves agreeing with the training pass."""

import json
import tempfile
import unittest
from pathlib import Path

try:
    import torch

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

from .test_train_export import write_binary_release

RECIPES = {
    "bottlenetpp": dict(point="prep", channels=2, stages=[dict(name="codec", epochs=1, lr=0.01), dict(name="joint", epochs=1, lr=0.001)]),
    "aecnn": dict(point="prep", kmax=4, bits=3, ks=[1, 2, 4], l1=0.01,
                  stages=[dict(name="attention", epochs=1, lr=0.01), dict(name="codec", epochs=1, lr=0.01)]),
    "frankensplit": dict(point="layer1", latent=4, hidden=8, lam=0.05, kd=0.5, stages=[dict(name="codec", epochs=1, lr=0.01)]),
}


@unittest.skipUnless(HAVE_TORCH, "python3-torch is not installed")
class CodecSmokeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from splitfleet_models import train

        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = Path(cls.tmp.name)
        write_binary_release(cls.dir / "data", 64)
        train.main(["--data", str(cls.dir / "data"), "--out", str(cls.dir / "teacher"), "--cache", str(cls.dir / "cache"),
                    "--arch", "resnet9", "--width", "0.125", "--epochs", "1", "--batch", "32", "--threads", "1",
                    "--eval-every", "1", "--warmup", "1"])

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_method(self, method):
        import yaml
        from splitfleet_models import train_codec

        recipe = dict(method=method, teacher=str(self.dir / "teacher"), batch=32, threads=1, **RECIPES[method])
        rp = self.dir / f"{method}.yaml"
        rp.write_text(yaml.safe_dump(recipe))
        out = self.dir / f"run-{method}"
        args = ["--data", str(self.dir / "data"), "--recipe", str(rp), "--out", str(out), "--cache", str(self.dir / "cache")]
        train_codec.main(args)
        log = [json.loads(l) for l in (out / "train.log").read_text().splitlines()]
        self.assertEqual(log[-1]["event"], "done")
        train_codec.main(args)  # resume: nothing runs again
        log = [json.loads(l) for l in (out / "train.log").read_text().splitlines()]
        self.assertEqual(sum(r["event"] == "epoch" for r in log), len(recipe["stages"]))
        self.export(out, method)
        return out, log

    def export(self, run, method):
        import hashlib

        from splitfleet_models import export_codec

        zoo, fx = self.dir / "zoo", self.dir / "fixtures"
        export_codec.main(["--run", str(run), "--name", f"tiny-{method}", "--model-id", "9", "--data", str(self.dir / "data"),
                           "--cache", str(self.dir / "cache"), "--zoo", str(zoo), "--fixtures", str(fx),
                           "--table-images", "64"])
        bundle = zoo / f"tiny-{method}-v1"
        m = json.loads((bundle / "manifest.json").read_text())
        self.assertEqual((m["format"], m["kind"], m["codec"]["method"]), (2, "codec", method))
        self.assertEqual(m["codec"]["id"], export_codec.CODEC_IDS[method])
        for f in m["files"].values():
            self.assertEqual(hashlib.sha256((bundle / f["path"]).read_bytes()).hexdigest(), f["sha256"])
        for p in m["codec"]["points"]:
            self.assertIn(p["head"], m["files"])
            self.assertEqual(p["entropy"] is None, method == "bottlenetpp")
        ref = json.loads((fx / f"tiny-{method}-v1" / "reference.json").read_text())
        self.assertGreater(len(ref["cases"]), 0)

    def test_bottlenetpp(self):
        out, log = self.run_method("bottlenetpp")
        self.assertIn("test_top1", [r for r in log if r["event"] == "epoch"][-1])

    def test_aecnn_ranks_channels_and_serves_every_k(self):
        from splitfleet_models import train_codec

        out, log = self.run_method("aecnn")
        order = next(r["order"] for r in log if r.get("stage") == "attention")
        self.assertEqual(sorted(order), list(range(len(order))))
        cfg = json.loads(json.dumps(torch.load(out / "final.pt")["cfg"]))
        codec = train_codec.build_codec(cfg)
        codec.load_state_dict(torch.load(out / "final.pt")["model"])
        codec.eval()
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
        from splitfleet_models import rans, train_codec

        out, log = self.run_method("frankensplit")
        ep = [r for r in log if r["event"] == "epoch"][0]
        self.assertGreater(ep["bpp"], 0)
        cfg = torch.load(out / "final.pt")["cfg"]
        codec = train_codec.build_codec(cfg)
        codec.load_state_dict(torch.load(out / "final.pt")["model"])
        codec.eval()
        tables = codec.prior.tables()
        self.assertEqual(len(tables), 4)
        with torch.no_grad():
            s = codec.device(torch.randn(2, 3, 32, 32)).numpy().astype(int)
        flat = s.reshape(-1).tolist()
        hw = s.shape[2] * s.shape[3]
        ch = lambda i: (i // hw) % s.shape[1]
        self.assertEqual(rans.decode(rans.encode(flat, tables, ch), len(flat), tables, ch), flat)


if __name__ == "__main__":
    unittest.main()
