"""A user's own data and models: any ImageFolder (errors named), torchvision backbones
from a local checkpoint at 64x64, a codec around them, and an ONNX classifier imported,
split and checked. Generated images and random weights only (this machine cannot
download weights); a few seconds on one thread."""

import io
import json
import hashlib
import tarfile
import tempfile
import unittest
from pathlib import Path

import numpy as np
from PIL import Image

try:
    import torch

    torch.set_num_threads(1)
    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False
try:
    import torchvision  # noqa: F401

    HAVE_TV = HAVE_TORCH
except ImportError:
    HAVE_TV = False

CLASSES3 = ("cat", "person", "vehicle")


def image(cls_index: int, size=(64, 64), seed=0) -> Image.Image:
    """An image whose class shows in its colour, with noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]][cls_index % 3], dtype=np.int16)
    pix = np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pix)


def make_folder(root: Path, per_class=5, size=(64, 64), odd_size=(80, 60), classes=CLASSES3) -> Path:
    """<root>/<class>/NN.jpg, one image of another size (PNG) in the first class."""
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image(ci, size, seed=10 * ci + i).save(root / c / f"{i:02d}.jpg", quality=90)
    image(0, odd_size, seed=99).save(root / classes[0] / "odd.png")
    return root


def make_targz(path: Path, classes=("person", "vehicle"), size=(224, 224), per_split=2) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for split in ("train", "test"):
            for ci, c in enumerate(classes):
                for i in range(per_split):
                    buf = io.BytesIO()
                    image(ci, size, seed=i).save(buf, "JPEG", quality=85)
                    info = tarfile.TarInfo(f"mycams/{split}/{c}/{i}.jpg")
                    info.size = len(buf.getvalue())
                    tf.addfile(info, io.BytesIO(buf.getvalue()))
    return path


@unittest.skipUnless(HAVE_TORCH, "python3-torch is not installed")
class ImageFolderTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_flat_folder_any_classes_and_sizes(self):
        from splitfleet_models.data import load_images

        ds = load_images(make_folder(self.dir / "d"), size=(64, 64))
        self.assertEqual(ds.classes, list(CLASSES3))
        self.assertEqual(ds.train.images.shape[1:], (64, 64, 3))
        self.assertEqual(len(ds.train.labels) + len(ds.test.labels), 16)
        self.assertEqual(sorted(set(ds.test.labels.tolist())), [0, 1, 2])  # every class tested
        self.assertIn("cat/odd.png", ds.train.names + ds.test.names)  # 80x60 brought to 64x64

    def test_new_users_two_class_224_tarball(self):
        from splitfleet_models.data import load_images

        ds = load_images(make_targz(self.dir / "mycams.tar.gz"))
        self.assertEqual((ds.classes, ds.size), (["person", "vehicle"], (224, 224)))
        self.assertEqual((len(ds.train.labels), len(ds.test.labels)), (4, 4))
        small = load_images(self.dir / "mycams.tar.gz", size=(32, 48), resize=64)
        self.assertEqual(small.test.images.shape, (4, 32, 48, 3))

    def assertDataError(self, src, needle, **kw):
        from splitfleet_models.data import DataError, load_images

        with self.assertRaises(DataError) as cm:
            load_images(src, **kw)
        self.assertIn(needle, str(cm.exception))
        return str(cm.exception)

    def test_errors_name_the_problem(self):
        (self.dir / "empty" / "person").mkdir(parents=True)
        (self.dir / "empty" / "README.txt").write_text("x")
        self.assertDataError(self.dir / "empty", "no images found")
        d = make_folder(self.dir / "d2")
        (d / "bicycle").mkdir()
        self.assertDataError(d, "class folder bicycle has no images")
        d = make_folder(self.dir / "d3")
        (d / "person" / "broken.jpg").write_bytes(b"not a jpeg")
        msg = self.assertDataError(d, "could not be read")
        self.assertIn("person/broken.jpg", msg)
        (self.dir / "d4" / "train" / "a").mkdir(parents=True)
        (self.dir / "d4" / "test" / "b").mkdir(parents=True)
        image(0).save(self.dir / "d4" / "train" / "a" / "0.jpg")
        image(1).save(self.dir / "d4" / "test" / "b" / "0.jpg")
        self.assertDataError(self.dir / "d4", "has images in train/ but none in test/")
        self.assertDataError(make_folder(self.dir / "d5"), "not one of the model's labels", classes=["cat", "dog"])


@unittest.skipUnless(HAVE_TV, "python3-torchvision is not installed")
class TorchvisionTrainTest(unittest.TestCase):
    """mobilenet_v3_small from a torchvision-format checkpoint the test writes, 1 epoch at
    64x64 on 3 classes, exported with its labels; a SplitFleet codec for 1 epoch around it."""

    @classmethod
    def setUpClass(cls):
        from splitfleet_models import nets

        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = Path(cls.tmp.name)
        make_folder(cls.dir / "data", per_class=5)
        torch.manual_seed(0)
        torch.save(nets.torchvision_model("mobilenet_v3_small", 1000).state_dict(), cls.dir / "mnv3s-imagenet.pth")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def train_args(self, out, checkpoint):
        return ["--data", str(self.dir / "data"), "--out", str(self.dir / out), "--cache", str(self.dir / "cache"),
                "--arch", "mobilenet_v3_small", "--checkpoint", str(checkpoint), "--size", "64x64", "--epochs", "1",
                "--batch", "6", "--threads", "1", "--eval-every", "1", "--warmup", "1", "--lr", "0.01"]

    def test_architectures_build_at_any_size(self):
        from splitfleet_models import nets

        for arch in ("resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large"):
            net = nets.build(arch, classes=3).eval()
            with torch.no_grad():
                self.assertEqual(tuple(net(torch.zeros(1, 3, 64, 48)).shape), (1, 3), arch)

    def test_wrong_checkpoint_is_named(self):
        from splitfleet_models import nets, train

        torch.save(nets.torchvision_model("resnet18", 1000).state_dict(), self.dir / "r18.pth")
        with self.assertRaises(SystemExit) as cm:
            train.main(self.train_args("run-bad", self.dir / "r18.pth"))
        self.assertIn("checkpoint:", str(cm.exception))
        self.assertIn("not in mobilenet_v3_small", str(cm.exception))

    def test_train_export_codec(self):
        from splitfleet_models import export, export_codec, onnx_torch, train, train_codec

        train.main(self.train_args("run", self.dir / "mnv3s-imagenet.pth"))
        out = self.dir / "run"
        log = [json.loads(l) for l in (out / "train.log").read_text().splitlines()]
        ck = next(r for r in log if r["event"] == "checkpoint")
        self.assertIn("classifier re-initialized for 3 classes", ck["notes"][0])
        self.assertEqual(log[-1]["event"], "done")
        st = torch.load(out / "final.pt")
        self.assertEqual(st["labels"], list(CLASSES3))

        export.main(["--run", str(out), "--point", "features3", "--name", "mnv3s-mine", "--model-id", "101",
                     "--data", str(self.dir / "data"), "--cache", str(self.dir / "cache"), "--zoo", str(self.dir / "zoo")])
        bundle = self.dir / "zoo" / "mnv3s-mine-v1"
        m = json.loads((bundle / "manifest.json").read_text())
        self.assertEqual(m["labels"], list(CLASSES3))
        self.assertEqual(m["preprocessing"]["size"], [64, 64])
        self.assertEqual(m["preprocessing"]["mean"], [0.485, 0.456, 0.406])
        self.assertEqual(m["files"]["head"]["input"], [-1, 3, 64, 64])
        self.assertEqual(m["files"]["head"]["output"], [-1, *m["split"]["tensorShape"]])
        self.assertEqual(m["files"]["tail"]["output"], [-1, 3])
        for f in m["files"].values():
            self.assertEqual(hashlib.sha256((bundle / f["path"]).read_bytes()).hexdigest(), f["sha256"])
        # the exported halves compute what the trained network computes
        self.assertLess(m["split"]["parity"]["maxAbsDiff"], 1e-4 * max(1.0, m["split"]["parity"]["maxAbsOutput"]))
        net = train_codec.load_teacher(out)[0]
        head = onnx_torch.load(bundle / m["files"]["head"]["path"])
        tail = onnx_torch.load(bundle / m["files"]["tail"]["path"])
        x = torch.randn(3, 3, 64, 64)
        with torch.no_grad():
            ref = net(x)
            self.assertLess(float((tail(head(x)) - ref).abs().max()), 1e-4 * max(1.0, float(ref.abs().max())))

        recipe = self.dir / "sf.yaml"
        recipe.write_text(json.dumps(dict(method="splitfleet", teacher=str(out), point="features3", latent=4, hidden=8,
                                          decoder=8, lam=0.05, batch=6, threads=1,
                                          stages=[dict(name="codec", epochs=1, lr=0.01)])))
        train_codec.main(["--data", str(self.dir / "data"), "--recipe", str(recipe), "--out", str(self.dir / "sf"),
                          "--cache", str(self.dir / "cache")])
        export_codec.main(["--run", str(self.dir / "sf"), "--name", "mnv3s-sf", "--model-id", "102",
                           "--data", str(self.dir / "data"), "--cache", str(self.dir / "cache"),
                           "--zoo", str(self.dir / "zoo"), "--table-images", "16"])
        c = json.loads((self.dir / "zoo" / "mnv3s-sf-v1" / "manifest.json").read_text())
        self.assertEqual(c["labels"], list(CLASSES3))
        self.assertEqual(c["files"]["head"]["input"], [-1, 3, 64, 64])
        self.assertEqual(c["codec"]["teacherShape"], m["split"]["tensorShape"])
        self.assertEqual(c["codec"]["points"][0]["symbolShape"][1:], [s // 2 for s in m["split"]["tensorShape"][1:]])


def export_resnet18(path: Path, size=(96, 96), classes=3, dynamic_hw=False) -> "torch.nn.Module":
    """A torchvision ResNet-18 with random weights (batch-norm statistics too), as any
    user's ONNX export of it would be."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=classes)
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    net.eval()
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}}
    if dynamic_hw:
        axes["input"].update({2: "height", 3: "width"})
    torch.onnx.export(net, torch.zeros(1, 3, *size), str(path), opset_version=13, input_names=["input"],
                      output_names=["logits"], dynamic_axes=axes)
    return net


@unittest.skipUnless(HAVE_TV, "python3-torchvision is not installed")
class ImportOnnxTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = Path(cls.tmp.name)
        cls.net = export_resnet18(cls.dir / "resnet18.onnx")
        export_resnet18(cls.dir / "resnet18-dyn.onnx", dynamic_hw=True)
        (cls.dir / "labels.txt").write_text("person\nvehicle\ncat\n")
        (cls.dir / "labels2.txt").write_text("person\nvehicle\n")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_import(self, *extra, onnx_file="resnet18.onnx", labels="labels.txt", name="r18"):
        from splitfleet_models import import_onnx

        return import_onnx.main(["--onnx", str(self.dir / onnx_file), "--labels", str(self.dir / labels),
                                 "--name", name, "--zoo", str(self.dir / "zoo"), "--no-tfjs", *extra])

    def assertFails(self, needle, *args, **kw):
        import contextlib

        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit):
            self.run_import(*args, **kw)
        self.assertIn(needle, err.getvalue())

    def test_import_after_layer2(self):
        from splitfleet_models import onnx_torch

        self.run_import("--split-at", "layer2", "--resize", "110")
        bundle = self.dir / "zoo" / "r18-v1"
        m = json.loads((bundle / "manifest.json").read_text())
        self.assertEqual((m["format"], m["kind"], m["labels"]), (3, "backbone", ["person", "vehicle", "cat"]))
        self.assertGreaterEqual(m["modelId"], 100)
        self.assertEqual(m["preprocessing"]["size"], [96, 96])
        self.assertEqual((m["preprocessing"]["resize"], m["preprocessing"]["resizeShorter"]), ("shorter", 110))
        self.assertEqual(m["split"]["tensorShape"], [128, 12, 12])
        self.assertIn("/layer2/", m["split"]["node"])
        self.assertEqual(m["files"]["head"]["input"], [-1, 3, 96, 96])
        self.assertEqual(m["files"]["head"]["output"], [-1, 128, 12, 12])
        self.assertEqual(m["files"]["tail"]["output"], [-1, 3])
        self.assertEqual(m["split"]["bytes"], {"fp32": 4 * 128 * 144, "int8": 128 * 144})
        self.assertEqual(m["split"]["parity"]["maxAbsDiff"], 0.0)
        for f in m["files"].values():
            self.assertEqual(hashlib.sha256((bundle / f["path"]).read_bytes()).hexdigest(), f["sha256"])
        # MACs from ONNX shapes = MACs from the PyTorch layers
        from splitfleet_models.nets import count_macs

        self.assertEqual(m["split"]["headMacs"] + m["split"]["tailMacs"], count_macs(self.net, (1, 3, 96, 96)))
        # the halves against the PyTorch network the ONNX file was exported from
        head = onnx_torch.load(bundle / m["files"]["head"]["path"])
        tail = onnx_torch.load(bundle / m["files"]["tail"]["path"])
        x = torch.randn(2, 3, 96, 96)
        with torch.no_grad():
            ref = self.net(x)
            self.assertLess(float((tail(head(x)) - ref).abs().max()), 1e-4 * max(1.0, float(ref.abs().max())))
            # any batch size
            self.assertEqual(tuple(head(torch.zeros(5, 3, 96, 96)).shape), (5, 128, 12, 12))
        self.run_import("--split-at", "layer2", "--version", "2")  # a new version keeps the model id
        self.assertEqual(json.loads((self.dir / "zoo" / "r18-v2" / "manifest.json").read_text())["modelId"],
                         m["modelId"])

    def test_codec_around_the_imported_model(self):
        from splitfleet_models import train_codec

        self.run_import("--split-at", "layer2", name="r18c")
        data = make_folder(self.dir / "cams", per_class=3, size=(120, 100), classes=("person", "vehicle", "cat"))
        recipe = self.dir / "sf.yaml"
        recipe.write_text(json.dumps(dict(method="splitfleet", teacher=str(self.dir / "zoo" / "r18c-v1"), latent=4,
                                          hidden=8, decoder=8, lam=0.05, batch=8, threads=1, ce=0.5,
                                          stages=[dict(name="codec", epochs=1, lr=0.01),
                                                  dict(name="joint", epochs=1, lr=0.001)])))
        train_codec.main(["--data", str(data), "--recipe", str(recipe), "--out", str(self.dir / "sfc"),
                          "--cache", str(self.dir / "cache")])
        log = [json.loads(l) for l in (self.dir / "sfc" / "train.log").read_text().splitlines()]
        self.assertEqual([r["stage"] for r in log if r["event"] == "epoch"], ["codec", "joint"])
        codec = train_codec.build_codec(torch.load(self.dir / "sfc" / "final.pt")["cfg"])
        with torch.no_grad():
            s = codec.device(torch.randn(1, 3, 96, 96))
        self.assertEqual(tuple(s.shape), (1, 4, 6, 6))
        from splitfleet_models import export_codec, onnx_torch

        export_codec.main(["--run", str(self.dir / "sfc"), "--name", "r18-sf", "--model-id", "103", "--data", str(data),
                           "--cache", str(self.dir / "cache"), "--zoo", str(self.dir / "zoo"), "--table-images", "9"])
        bundle = self.dir / "zoo" / "r18-sf-v1"
        m = json.loads((bundle / "manifest.json").read_text())
        self.assertEqual((m["labels"], m["codec"]["teacherShape"]), (["person", "vehicle", "cat"], [128, 12, 12]))
        self.assertEqual(m["files"]["head"]["input"], [-1, 3, 96, 96])
        self.assertGreater(m["codec"]["points"][0]["deviceMacs"], 180_000_000)  # the ONNX head counted
        with torch.no_grad():  # the exported halves take any batch
            sym = onnx_torch.load(bundle / m["files"]["head"]["path"])(torch.randn(2, 3, 96, 96))
            self.assertEqual(tuple(onnx_torch.load(bundle / m["files"]["tail"]["path"])(sym).shape), (2, 3))

    def test_split_points_lists_the_cuts(self):
        import contextlib

        from splitfleet_models import split_points

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            split_points.main([str(self.dir / "resnet18-dyn.onnx"), "--size", "96x96", "--json"])
        doc = json.loads(out.getvalue())
        by = {c["tensor"]: c for c in doc["candidates"]}
        self.assertEqual(doc["imageBytes"], 3 * 96 * 96)
        layer2 = [c for t, c in by.items() if t.startswith("/layer2/")][-1]
        self.assertEqual((layer2["shape"], layer2["fp32Bytes"]), ([128, 12, 12], 73728))
        self.assertEqual(layer2["deviceMacs"] + layer2["edgeMacs"], doc["totalMacs"])
        # inside a residual block nothing cuts the graph
        self.assertFalse(any("/conv1/" in t for t in by if t.startswith("/layer2/")))

    def test_torch_module_paths_name_scopes(self):
        from splitfleet_models.split_points import Graph, torch_scope

        self.assertEqual(torch_scope("features.4"), "/features/features.4/")
        self.assertEqual(torch_scope("layer2.1.conv1"), "/layer2/layer2.1/conv1/")
        self.assertEqual(torch_scope("block.3.0"), "/block/block.3/block.3.0/")
        import onnx

        g = Graph(onnx.load(str(self.dir / "resnet18.onnx")), None, where="resnet18.onnx")
        self.assertEqual(g.resolve("layer2.1"), g.resolve("layer2"))
        self.assertTrue(g.resolve("layer1.0").startswith("/layer1/layer1.0/"))

    def test_errors(self):
        self.assertFails("no such tensor or node 'layer9'", "--split-at", "layer9")
        self.assertFails("does not cut the graph", "--split-at", "/layer2/layer2.1/conv1/Conv_output_0")
        self.assertFails("has dynamic shape", "--split-at", "layer2", onnx_file="resnet18-dyn.onnx")
        self.assertFails("has 2 labels but the model outputs 3 classes", "--split-at", "layer2", labels="labels2.txt")
        self.assertFails("differs", "--split-at", "layer2", "--size", "64x64")
        self.run_import("--split-at", "layer2", "--size", "64x80", onnx_file="resnet18-dyn.onnx", name="dyn")
        m = json.loads((self.dir / "zoo" / "dyn-v1" / "manifest.json").read_text())
        self.assertEqual((m["preprocessing"]["size"], m["split"]["tensorShape"]), ([64, 80], [128, 8, 10]))


if __name__ == "__main__":
    unittest.main()
