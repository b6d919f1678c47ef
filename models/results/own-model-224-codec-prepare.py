"""Inputs of the learned-codec measurement at 224x224 (docs/own-model.md, "Measured at 224x224").

    /usr/bin/python3 models/results/own-model-224-prepare.py OUT          # ONNX files, labels, test images
    /usr/bin/python3 models/results/own-model-224-codec-prepare.py OUT    # this script

writes into OUT:
  codec-data/train/<class>/<n>.jpg   images 11-50 of each class of the shipped CIFAR-10 sample
                                     (400 images), UPSCALED from 32x32 to 224x224 (bicubic), JPEG q95
  codec-data/test/<class>/<n>.jpg    images 1-10 of each class: the 100 test images of the other
                                     224x224 measurements, upscaled the same way
  sf-224.yaml                        the SplitFleet recipe, teacher OUT/zoo/r18-224-v1
  fs-224.yaml                        the same for FrankenSplit (its encoder reads the image)

The teacher (ResNet-18 after layer2, imported by `splitfleet models import`) has RANDOM
weights: the codec learns to restore that network's split tensor, and its bytes and times
are measured; its accuracy is not a result. The recipe is the one of docs/own-model.md
step 4 (latent 32, hidden 64, decoder 128, lam 0.3) with the cross-entropy weight 0, no
saliency weighting and no joint stage (all three lean on the random classifier, and they
are the costly part on a CPU), one thread, a 40-image validation split and the teacher's
split tensors cached once (`teacher_cache: 1`; `point` is set only because the target
cache's key reads it, also for a bundle teacher whose split the manifest fixes).
"""

import json
import sys
from pathlib import Path

from PIL import Image

out = Path(sys.argv[1])
cifar = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
sample = Path(__file__).resolve().parents[1] / "samples" / "cifar10-test-sample" / "test"
for c in cifar:
    files = sorted((sample / c).glob("*.jpg"))
    for split, part in (("test", files[:10]), ("train", files[10:50])):
        (out / "codec-data" / split / c).mkdir(parents=True, exist_ok=True)
        for p in part:
            with Image.open(p) as im:
                im.convert("RGB").resize((224, 224), Image.BICUBIC).save(
                    out / "codec-data" / split / c / p.name, quality=95)
recipe = dict(method="splitfleet", teacher=str(out / "zoo" / "r18-224-v1"), latent=32, hidden=64, decoder=128,
              lam=0.3, ce=0.0, saliency=0.0, batch=16, threads=1, val=40, teacher_cache=1,
              point="layer2",  # only names the target cache's key: the bundle fixes the split

              stages=[dict(name="codec", epochs=2, lr=0.001)])
(out / "sf-224.yaml").write_text(json.dumps(recipe, indent=1) + "\n")  # JSON is YAML
# FrankenSplit: the same shape and rate weight, its encoder on the image instead of the head
(out / "fs-224.yaml").write_text(json.dumps({**recipe, "method": "frankensplit"}, indent=1) + "\n")
