"""The codec training protocol on synthetic data: the validation split, targets from a
frozen copy of the teacher's original tail, rounded latents into the decoder, the
teacher-target cache, a warm start from an exported bundle, and the provenance and
checkpoint choice a run records."""

import json
import tempfile
import unittest
from pathlib import Path

import numpy as np

try:
    import torch

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "cifar10-test-sample"


class ValidationSplitTest(unittest.TestCase):
    def test_fixed_disjoint_and_hashed(self):
        from splitfleet_models.targets import split_hash, validation_split

        tr, val, h = validation_split(50000)
        self.assertEqual((len(tr), len(val)), (45000, 5000))
        self.assertEqual(len(np.intersect1d(tr, val)), 0)
        self.assertEqual(sorted(np.concatenate([tr, val]).tolist()), list(range(50000)))
        tr2, val2, h2 = validation_split(50000)
        self.assertTrue(np.array_equal(val, val2) and np.array_equal(tr, tr2))
        self.assertEqual(h, h2)
        self.assertEqual(h, split_hash(val))
        # every class of CIFAR-10's sorted layout (5,000 each) is in it
        self.assertEqual(len(np.unique(val // 5000)), 10)
        _, other, h3 = validation_split(50000, seed=1)
        self.assertNotEqual(h, h3)
        self.assertFalse(np.array_equal(val, other))

    def test_small_sets_hold_out_a_tenth(self):
        from splitfleet_models.targets import validation_split

        tr, val, _ = validation_split(320)
        self.assertEqual((len(tr), len(val)), (288, 32))
        tr, val, h = validation_split(100, size=0)
        self.assertEqual((len(tr), len(val), h), (100, 0, ""))


@unittest.skipUnless(HAVE_TORCH, "python3-torch is not installed")
class CodecProtocolTest(unittest.TestCase):
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

    def codec(self, **over):
        from splitfleet_models import smoke, train_codec

        cfg = train_codec.load_recipe(None, dict(method="splitfleet", teacher=str(self.dir / "teacher"), threads=1,
                                                 **{**smoke.RECIPES["splitfleet"], **over}))
        torch.manual_seed(0)
        codec = train_codec.build_codec(cfg)
        return codec, cfg

    def test_targets_come_from_the_original_tail(self):
        from splitfleet_models.targets import FrozenTargets

        codec, _ = self.codec()
        frozen = FrozenTargets(codec.teacher)
        x, y = torch.randn(6, 3, 32, 32), torch.arange(6)
        t0, s0, l0 = frozen.compute(x, y, True, True)
        with torch.no_grad():  # what a joint stage does to the codec's own tail
            for p in codec.teacher.tail.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        t1, s1, l1 = frozen.compute(x, y, True, True)
        self.assertTrue(torch.equal(t0, t1) and torch.equal(s0, s1) and torch.equal(l0, l1))
        with torch.no_grad():
            moved = codec.teacher.tail(t0)
        self.assertFalse(torch.allclose(moved, l0))
        self.assertTrue(all(not p.requires_grad for p in frozen.tail.parameters()))

    def test_decoder_gets_rounded_latents_with_ste(self):
        seen = []
        for ste in (False, True):
            codec, _ = self.codec()
            codec.ste = ste
            codec.train()
            h = codec.dec[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
            out = codec(torch.randn(4, 3, 32, 32))
            h.remove()
            out["logits"].sum().backward()
            # the gradient reaches the encoder either way
            self.assertGreater(float(codec.enc[0].weight.grad.abs().sum()), 0)
        noisy, rounded = seen
        self.assertFalse(torch.equal(noisy, noisy.round()))
        self.assertTrue(torch.equal(rounded, rounded.round()))

    def test_cache_holds_the_frozen_teachers_targets(self):
        from splitfleet_models.targets import FrozenTargets, TargetCache, apply_augment

        codec, _ = self.codec()
        frozen = FrozenTargets(codec.teacher)
        gen = torch.Generator().manual_seed(0)
        x_all = torch.randint(0, 256, (10, 3, 32, 32), generator=gen, dtype=torch.uint8)
        y_all = torch.randint(0, 10, (10,), generator=gen)
        cache = TargetCache.build(frozen, x_all, y_all, codec.prep, views=3, seed=1, sal=True, logits=True, batch=4)
        self.assertEqual(tuple(cache.t.shape[:2]), (3, 10))
        idx, view = torch.tensor([7, 2, 5]), torch.tensor([0, 1, 2])
        x, t, s, lg = cache.batch(idx, view, x_all, codec.prep, with_images=True)
        # view 0 is the image itself, view 1 its mirror
        self.assertTrue(torch.equal(x[0:1], codec.prep.normalize(x_all[7:8].float())))
        self.assertTrue(torch.equal(x[1:2], codec.prep.normalize(x_all[2:3].float().flip(3))))
        ox, oy, fl = (p[5:6] for p in cache.params[2])
        self.assertTrue(torch.equal(x[2:], codec.prep.normalize(apply_augment(x_all[5:6], ox, oy, fl))))
        t_ref, s_ref, l_ref = frozen.compute(x, y_all[idx], True, True)
        self.assertTrue(torch.allclose(t, t_ref, rtol=1e-2, atol=1e-2))  # kept in bfloat16
        self.assertTrue(torch.allclose(s, s_ref, atol=1e-4) and torch.allclose(lg, l_ref, atol=1e-4))

    def test_better_keeps_the_budget(self):
        from splitfleet_models.codec_val import better

        self.assertTrue(better(dict(val_top1=0.5, val_bytes=10), None, None))
        self.assertFalse(better(dict(val_top1=0.9, val_bytes=300), None, 250))
        self.assertTrue(better(dict(val_top1=0.9, val_bytes=200), dict(val_top1=0.8), 250))
        self.assertFalse(better(dict(val_top1=0.8, val_bytes=200), dict(val_top1=0.8), 250))
        self.assertFalse(better(dict(dist=1.0), None, None))

    def test_run_records_its_protocol_and_warm_starts_from_a_bundle(self):
        import yaml

        from splitfleet_models import export_codec, import_bundle, smoke, train_codec

        out, _ = smoke.train_method(self.dir, "splitfleet")
        log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
        start = log[0]
        self.assertEqual((start["train"], start["val"]), (288, 32))
        self.assertIn("teacher_val_top1", start)
        eps = [r for r in log if r["event"] == "epoch"]
        self.assertTrue(all("val_top1" in r and "val_bytes" in r and "test_top1" not in r for r in eps))
        best = torch.load(out / "best.pt")
        self.assertEqual(best["selected"]["val_top1"], max(r["val_top1"] for r in eps if r["stage"] == "joint"))
        prov = torch.load(out / "final.pt")["provenance"]
        for k in ("seed", "dataSha256", "valSplit", "teacher", "commit", "torch", "device", "cpuMinutes"):
            self.assertIn(k, prov)
        self.assertEqual(prov["valSplit"]["sha256"], start["val_sha256"])

        export_codec.main(["--run", str(out / "best.pt"), "--name", "tiny-proto", "--model-id", "9",
                           "--data", str(self.dir / "data"), "--cache", str(self.dir / "cache"),
                           "--zoo", str(self.dir / "zoo"), "--fixtures", str(self.dir / "fixtures"),
                           "--sample", str(SAMPLE)])
        bundle = self.dir / "zoo" / "tiny-proto-v1"
        m = json.loads((bundle / "manifest.json").read_text())
        self.assertEqual(m["accuracy"]["validation"]["indexSha256"], start["val_sha256"])
        self.assertIn("valTop1", m["codec"]["points"][0])
        self.assertEqual(m["training"]["provenance"][0]["valSplit"]["sha256"], start["val_sha256"])

        # the bundle's point loads back into a fresh codec: the same symbols and logits
        src, _ = export_codec.load_run(str(out / "best.pt"))[:2]
        fresh, _ = self.codec()
        import_bundle.load_codec_point(fresh, bundle, 0)
        fresh.eval()
        x = torch.randn(5, 3, 32, 32)
        with torch.no_grad():
            s = src.device(x)
            self.assertTrue(torch.equal(fresh.device(x), s))
            self.assertTrue(torch.allclose(fresh.edge(s), src.edge(s), atol=1e-4))

        # a next version keeps its points first, byte for byte, with their parity cases
        export_codec.main(["--run", str(out / "best.pt"), "--keep", str(bundle), "--name", "tiny-proto",
                           "--model-id", "9", "--version", "2", "--data", str(self.dir / "data"),
                           "--cache", str(self.dir / "cache"), "--zoo", str(self.dir / "zoo"),
                           "--fixtures", str(self.dir / "fixtures"), "--sample", str(SAMPLE)])
        m2 = json.loads((self.dir / "zoo" / "tiny-proto-v2" / "manifest.json").read_text())
        self.assertEqual([q["index"] for q in m2["codec"]["points"]], [0, 1])
        old_point, kept_point = m["codec"]["points"][0], m2["codec"]["points"][0]
        for role in ("head", "tail", "entropy"):
            self.assertEqual(m2["files"][kept_point[role]]["sha256"], m["files"][old_point[role]]["sha256"])
        self.assertEqual(kept_point["top1"], old_point["top1"])
        self.assertEqual(m2["training"]["kept"]["version"], 1)
        ref1 = json.loads((self.dir / "fixtures" / "tiny-proto-v1" / "reference.json").read_text())["cases"]
        ref2 = json.loads((self.dir / "fixtures" / "tiny-proto-v2" / "reference.json").read_text())["cases"]
        self.assertEqual(ref2[: len(ref1)], ref1)
        self.assertEqual({c["point"] for c in ref2[len(ref1):]}, {1})

        # a run warm-started from it starts where the bundle is
        recipe = dict(method="splitfleet", teacher=str(self.dir / "teacher"), batch=32, threads=1,
                      **{**smoke.RECIPES["splitfleet"], "stages": [dict(name="joint", epochs=1, lr=0.0001)]},
                      init_bundle=str(bundle), init_point=0, teacher_cache=2, ste=True, kd=1.0)
        rp = self.dir / "warm.yaml"
        rp.write_text(yaml.safe_dump(recipe))
        warm = self.dir / "run-warm"
        train_codec.main(["--data", str(self.dir / "data"), "--recipe", str(rp), "--out", str(warm),
                          "--cache", str(self.dir / "cache")])
        wlog = [json.loads(line) for line in (warm / "train.log").read_text().splitlines()]
        self.assertEqual(wlog[0]["init_val_top1"], m["codec"]["points"][0]["valTop1"])
        self.assertEqual(wlog[0]["warm"]["point"], 0)
        self.assertTrue(any(r["event"] == "cache" for r in wlog))
        self.assertIn("kd", [r for r in wlog if r["event"] == "epoch"][0])


if __name__ == "__main__":
    unittest.main()
