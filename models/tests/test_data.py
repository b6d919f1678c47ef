"""Loader tests on small data made here (never the shared dataset)."""

import io
import tarfile
import tempfile
import unittest
from pathlib import Path

import numpy as np
from PIL import Image

from splitfleet_models.data import CLASSES, load_cifar10


def jpeg_bytes(color):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


class LoaderTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_imagefolder_targz_uses_official_label_order(self):
        path = self.dir / "mini.tar.gz"
        with tarfile.open(path, "w:gz") as tf:
            for split in ("train", "test"):
                for cls in ("truck", "airplane", "cat"):
                    raw = jpeg_bytes((200, 10, 10))
                    info = tarfile.TarInfo(f"c/{split}/{cls}/0001.jpg")
                    info.size = len(raw)
                    tf.addfile(info, io.BytesIO(raw))
        d = load_cifar10(path)
        self.assertEqual(sorted(d["test"].labels.tolist()), [0, 3, 9])
        names = dict(zip(d["test"].names, d["test"].labels.tolist()))
        self.assertEqual(names["c/test/truck/0001.jpg"], CLASSES.index("truck"))
        self.assertEqual(d["train"].images.shape, (3, 32, 32, 3))

    def test_binary_release_and_cache(self):
        bindir = self.dir / "cifar-10-batches-bin"
        bindir.mkdir()
        rec = lambda label, v: bytes([label]) + bytes([v]) * 1024 + bytes([v + 1]) * 1024 + bytes([v + 2]) * 1024
        (bindir / "test_batch.bin").write_bytes(rec(4, 10) + rec(8, 50))
        for i in range(1, 6):
            (bindir / f"data_batch_{i}.bin").write_bytes(rec(i, i))
        d = load_cifar10(self.dir, cache_dir=str(self.dir / "cache"))
        self.assertEqual(d["test"].labels.tolist(), [4, 8])
        self.assertEqual(d["test"].images[0, 0, 0].tolist(), [10, 11, 12])
        self.assertEqual(len(d["train"].labels), 5)
        again = load_cifar10(self.dir, splits=("test",), cache_dir=str(self.dir / "cache"))
        np.testing.assert_array_equal(again["test"].images, d["test"].images)

    def test_truncated_binary_batch_is_refused(self):
        (self.dir / "test_batch.bin").write_bytes(b"\x00" * 3000)
        for i in range(1, 6):
            (self.dir / f"data_batch_{i}.bin").write_bytes(b"")
        with self.assertRaises(ValueError):
            load_cifar10(self.dir, splits=("test",))


if __name__ == "__main__":
    unittest.main()
