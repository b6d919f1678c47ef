"""Evaluate a trained run on the test split, unsplit and through a split point.

    /usr/bin/python3 -m splitfleet_models.evaluate --run runs/resnet9-w05 \
        --data ../../shared/datasets/cifar10-jpeg.tar.gz --point layer1

Prints one JSON line: top-1 of the whole model and of tail(head(x)) at the split point
(they must agree: the split itself loses nothing), and the split tensor's shape.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from .data import load_images
from .nets import build, fast_layout
from .train import evaluate, labels_of, prep_of


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", default=os.environ.get("SPLITFLEET_CIFAR10"), required=False)
    ap.add_argument("--point", default="layer1")
    ap.add_argument("--cache", default="../.cache")
    ap.add_argument("--checkpoint", default="final.pt", help="final.pt or last.pt")
    args = ap.parse_args(argv)
    if not args.data:
        ap.error("--data (or SPLITFLEET_CIFAR10) is required")
    torch.set_num_threads(2)
    st = torch.load(Path(args.run) / args.checkpoint, map_location="cpu")
    labels, prep = labels_of(st), prep_of(st["cfg"])
    model = build(st["cfg"]["arch"], float(st["cfg"]["width"]), classes=len(labels))
    model.load_state_dict(st["model"])
    model = model.to(memory_format=fast_layout(model)).eval()
    te = load_images(args.data, prep.size, prep.resize, classes=labels, cache_dir=args.cache).test
    split = torch.nn.Sequential(model.head(args.point), model.tail(args.point))
    with torch.no_grad():
        shape = list(model.head(args.point)(torch.zeros(1, 3, *prep.size)).shape[1:])
    print(
        json.dumps(
            {
                "samples": len(te.labels),
                "top1": round(evaluate(model, te.images, te.labels, prep=prep), 4),
                "top1Split": round(evaluate(split, te.images, te.labels, prep=prep), 4),
                "point": args.point,
                "splitShape": shape,
            }
        )
    )


if __name__ == "__main__":
    main()
