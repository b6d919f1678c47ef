"""Copy a small, balanced sample of CIFAR-10 test images (the stored JPEG bytes, not
re-encoded) into an ImageFolder tree for the offline demo and tests.

    /usr/bin/python3 -m splitfleet_models.sample --data ../../shared/datasets/cifar10-jpeg.tar.gz \
        --per-class 50 --out samples/cifar10-test-sample
"""

from __future__ import annotations

import argparse
import os
import tarfile
from pathlib import Path

from .data import CLASSES, _folder_member


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("SPLITFLEET_CIFAR10"), required=False)
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    picked: dict[int, list[tuple[str, bytes]]] = {i: [] for i in range(len(CLASSES))}
    with tarfile.open(args.data, "r:*") as tf:
        members = sorted((m for m in tf.getmembers() if m.isfile()), key=lambda m: m.name)
        for m in members:
            hit = _folder_member(m.name)
            if hit and hit[0] == "test" and len(picked[hit[1]]) < args.per_class:
                picked[hit[1]].append((m.name, tf.extractfile(m).read()))  # type: ignore[union-attr]
    total = 0
    for cls, items in picked.items():
        d = Path(args.out) / "test" / CLASSES[cls]
        d.mkdir(parents=True, exist_ok=True)
        for name, raw in items:
            (d / os.path.basename(name)).write_bytes(raw)
            total += len(raw)
    print(f"{sum(len(v) for v in picked.values())} images, {total} bytes -> {args.out}")


if __name__ == "__main__":
    main()
