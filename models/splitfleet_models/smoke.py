"""A tiny end-to-end run of the toolkit on synthetic data, for tests and CI (never the
shared dataset): a small teacher, every learned codec trained for one epoch per stage,
exported as bundles with TypeScript parity fixtures.

    /usr/bin/python3 -m splitfleet_models.smoke --out /tmp/sf-smoke
writes <out>/zoo/tiny-<method>-v1/ and <out>/fixtures/tiny-<method>-v1/reference.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

RECIPES = {
    "bottlenetpp": dict(point="prep", channels=2,
                        stages=[dict(name="codec", epochs=1, lr=0.01), dict(name="joint", epochs=1, lr=0.001)]),
    "aecnn": dict(point="prep", kmax=4, bits=3, ks=[1, 2, 4], l1=0.01,
                  stages=[dict(name="attention", epochs=1, lr=0.01), dict(name="codec", epochs=1, lr=0.01)]),
    "frankensplit": dict(point="layer1", latent=4, hidden=8, lam=0.05, kd=0.5,
                         stages=[dict(name="codec", epochs=1, lr=0.01)]),
    "splitfleet": dict(point="layer1", latent=4, hidden=8, decoder=8, lam=0.05, ce=0.5,
                       stages=[dict(name="codec", epochs=1, lr=0.01), dict(name="joint", epochs=1, lr=0.001)]),
}


def synthetic_release(d: Path, per_batch: int) -> None:
    """CIFAR-10 binary-release files of random images whose label shows in the pixels."""
    rng = np.random.default_rng(0)
    d.mkdir(parents=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, per_batch, dtype=np.uint8)
        pix = (rng.integers(0, 40, (per_batch, 3072)) + labels[:, None] * 20).astype(np.uint8)
        (d / name).write_bytes(np.concatenate([labels[:, None], pix], axis=1).tobytes())


def train_teacher(root: Path) -> Path:
    from . import train

    out = root / "teacher"
    train.main(["--data", str(root / "data"), "--out", str(out), "--cache", str(root / "cache"),
                "--arch", "resnet9", "--width", "0.125", "--epochs", "1", "--batch", "32", "--threads", "1",
                "--eval-every", "1", "--warmup", "1"])
    return out


def train_method(root: Path, method: str) -> tuple[Path, list[str]]:
    from . import train_codec

    recipe = dict(method=method, teacher=str(root / "teacher"), batch=32, threads=1, **RECIPES[method])
    rp = root / f"{method}.yaml"
    rp.write_text(yaml.safe_dump(recipe))
    out = root / f"run-{method}"
    args = ["--data", str(root / "data"), "--recipe", str(rp), "--out", str(out), "--cache", str(root / "cache")]
    train_codec.main(args)
    return out, args


def export_method(root: Path, method: str, sample: Path) -> Path:
    from . import export_codec

    export_codec.main(["--run", str(root / f"run-{method}"), "--name", f"tiny-{method}", "--model-id", "9",
                       "--data", str(root / "data"), "--cache", str(root / "cache"), "--zoo", str(root / "zoo"),
                       "--fixtures", str(root / "fixtures"), "--table-images", "64", "--sample", str(sample)])
    return root / "zoo" / f"tiny-{method}-v1"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sample", default=str(Path(__file__).resolve().parents[1] / "samples" / "cifar10-test-sample"))
    args = ap.parse_args(argv)
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    synthetic_release(root / "data", 64)
    train_teacher(root)
    bundles = {}
    for method in RECIPES:
        train_method(root, method)
        bundles[method] = str(export_method(root, method, Path(args.sample)))
    print(json.dumps({"smoke": bundles}))


if __name__ == "__main__":
    main()
