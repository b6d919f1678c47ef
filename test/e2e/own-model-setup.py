import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

torch.set_num_threads(1)
d = Path(sys.argv[1])
labels = sys.argv[2].split(",")
w, h = (int(v) for v in sys.argv[3].split("x"))
axes = {"input": {0: "batch"}, "logits": {0: "batch"}}


def export(net, size, name):
    torch.onnx.export(net.eval(), torch.zeros(1, 3, *size), str(d / name), opset_version=13,
                      input_names=["input"], output_names=["logits"], dynamic_axes=axes)


torch.manual_seed(0)
export(torchvision.models.resnet18(num_classes=len(labels)), (64, 64), "resnet18.onnx")


class Tiny(torch.nn.Module):
    """conv -> global pool -> flatten -> linear: a split after the flatten is 1-D."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(8, len(labels))

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


export(Tiny(), (32, 32), "tiny.onnx")
(d / "labels.txt").write_text("".join(f"{l}\n" for l in labels))
(d / "labels2.txt").write_text("".join(f"{l}\n" for l in labels[:2]))
rng = np.random.default_rng(0)
for ci, c in enumerate(labels):
    (d / "cams" / c).mkdir(parents=True, exist_ok=True)
    for i in range(4):
        base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]][ci % 3], dtype=np.int16)
        pix = np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pix).save(d / "cams" / c / f"{i:02d}.jpg", quality=90)
