"""Inputs of the camera-regime measurements (docs/own-model.md, "Measured at 224x224").

    /usr/bin/python3 models/results/own-model-224-prepare.py OUT

writes into OUT:
  resnet18.onnx, mobilenet_v3_small.onnx   torchvision's architectures, 1000 classes,
                                           RANDOM weights (seed 0), 224x224, batch axis dynamic
  labels.txt                               1000 names: CIFAR-10's ten, then class10..class999
  data/test/<class>/<n>.jpg                the first 10 images of each class of the shipped
                                           CIFAR-10 sample, UPSCALED from 32x32 to 224x224
                                           (bicubic) and saved as JPEG quality 95
Random weights and upscaled images: the bytes and times are the architectures' at that
size; accuracy and anything that depends on image content are not measured by them.
"""

import sys
from pathlib import Path

import torch
import torchvision
from PIL import Image

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(1)
cifar = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
(out / "labels.txt").write_text("".join(f"{c}\n" for c in cifar + [f"class{i}" for i in range(10, 1000)]))
for arch in ("resnet18", "mobilenet_v3_small"):
    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)().eval()
    torch.onnx.export(net, torch.zeros(1, 3, 224, 224), str(out / f"{arch}.onnx"), opset_version=13,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
sample = Path(__file__).resolve().parents[1] / "samples" / "cifar10-test-sample" / "test"
for c in cifar:
    (out / "data" / "test" / c).mkdir(parents=True, exist_ok=True)
    for p in sorted((sample / c).glob("*.jpg"))[:10]:
        with Image.open(p) as im:
            im.convert("RGB").resize((224, 224), Image.BICUBIC).save(out / "data" / "test" / c / p.name, quality=95)
