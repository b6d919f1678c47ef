"""Tiny smoke run of the toolkit: train one epoch, resume, evaluate, export a bundle.
Uses a few hundred synthetic images; never the shared dataset."""

import hashlib
import json
import tempfile
import unittest
from pathlib import Path

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:  # the loader tests still run without torch
    HAVE_TORCH = False


def write_binary_release(d: Path, per_batch: int) -> None:
    from splitfleet_models.smoke import synthetic_release

    synthetic_release(d, per_batch)


@unittest.skipUnless(HAVE_TORCH, "python3-torch is not installed")
class TrainExportTest(unittest.TestCase):
    def test_train_resume_export(self):
        from splitfleet_models import export, train

        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            write_binary_release(tmp / "data", 64)
            out = tmp / "run"
            args = ["--data", str(tmp / "data"), "--out", str(out), "--cache", str(tmp / "cache"),
                    "--arch", "resnet20", "--width", "0.25", "--epochs", "1", "--batch", "32",
                    "--threads", "1", "--eval-every", "1", "--warmup", "1"]
            train.main(args)
            log = [json.loads(l) for l in (out / "train.log").read_text().splitlines()]
            self.assertEqual(log[-1]["event"], "done")
            self.assertTrue((out / "final.pt").exists())
            train.main(args)  # resumes from last.pt: no epoch runs again
            log = [json.loads(l) for l in (out / "train.log").read_text().splitlines()]
            self.assertIn("resume", [r["event"] for r in log])
            self.assertEqual(sum(r["event"] == "epoch" for r in log), 1)

            export.main(["--run", str(out), "--point", "stage2", "--name", "tiny", "--model-id", "9",
                         "--data", str(tmp / "data"), "--cache", str(tmp / "cache"), "--zoo", str(tmp / "zoo")])
            bundle = tmp / "zoo" / "tiny-v1"
            m = json.loads((bundle / "manifest.json").read_text())
            self.assertEqual(m["split"]["point"], "stage2")
            self.assertEqual(m["split"]["tensorShape"], [8, 16, 16])
            self.assertEqual(m["accuracy"]["samples"], 64)
            for f in m["files"].values():
                self.assertEqual(hashlib.sha256((bundle / f["path"]).read_bytes()).hexdigest(), f["sha256"])


if __name__ == "__main__":
    unittest.main()
