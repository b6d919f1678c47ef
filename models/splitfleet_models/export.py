"""Split a trained backbone and export a model bundle.

    /usr/bin/python3 -m splitfleet_models.export --run runs/resnet9-w05 --point layer1 \
        --name resnet9w05-cifar10 --model-id 1 --version 1 \
        --data ../../shared/datasets/cifar10-jpeg.tar.gz --zoo zoo --fixtures ../test/fixtures

Writes ``<zoo>/<name>-v<version>/`` with ``head-<sha8>.onnx`` (device), ``tail-<sha8>.onnx``
(edge; tail(head(x)) is the unsplit model) and ``manifest.json`` (ids,
split point, preprocessing, shapes, MACs, measured top-1, sha256 of every file).
With ``--fixtures`` it also writes PyTorch reference outputs for the engine parity test.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import export_tfjs
from .data import CLASSES, load_cifar10
from .nets import build, count_macs
from .preprocess import manifest_entry, normalize_batch
from .train import evaluate

OPSET = 13


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def onnx_bytes(module: torch.nn.Module, shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    module.eval()
    torch.onnx.export(
        module,
        torch.zeros((1, *shape)),
        buf,
        opset_version=OPSET,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        do_constant_folding=True,
    )
    return buf.getvalue()


def bundle_args(ap: argparse.ArgumentParser) -> None:
    """The arguments every bundle exporter takes: identity, data, destinations."""
    ap.add_argument("--name", required=True)
    ap.add_argument("--model-id", type=int, required=True)
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--data", default=os.environ.get("SPLITFLEET_CIFAR10"))
    ap.add_argument("--cache", default="../.cache")
    ap.add_argument("--zoo", default="zoo")
    ap.add_argument("--fixtures", help="folder for the TypeScript parity fixtures")
    ap.add_argument("--sample", default="samples/cifar10-test-sample", help="sample images for fixtures")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="training output folder (final.pt)")
    ap.add_argument("--point", default="layer1")
    bundle_args(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    st = torch.load(Path(args.run) / "final.pt", map_location="cpu")
    cfg = st["cfg"]
    model = build(cfg["arch"], float(cfg["width"]))
    model.load_state_dict(st["model"])
    model.eval()
    head, tail = model.head(args.point), model.tail(args.point)
    with torch.no_grad():
        split_shape = tuple(head(torch.zeros(1, 3, 32, 32)).shape[1:])

    acc, samples, source = st.get("test_top1"), 0, ""
    if args.data:
        te = load_cifar10(args.data, splits=("test",), cache_dir=args.cache)["test"]
        acc, samples, source = evaluate(model, te.images, te.labels), len(te.labels), os.path.basename(args.data)
    if acc is None:
        raise SystemExit("no measured accuracy: pass --data")

    out = Path(args.zoo) / f"{args.name}-v{args.version}"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.onnx"):
        old.unlink()
    files = {}
    for role, mod, shp, oshape in (
        ("head", head, (3, 32, 32), split_shape),
        ("tail", tail, split_shape, (len(CLASSES),)),
    ):
        b = onnx_bytes(mod, shp)
        h = sha256(b)
        name = f"{role}-{h[:8]}.onnx"
        (out / name).write_bytes(b)
        files[role] = {"path": name, "sha256": h, "input": [-1, *shp], "output": [-1, *oshape]}

    manifest = {
        "format": 2,
        "kind": "backbone",
        "name": args.name,
        "modelId": args.model_id,
        "version": args.version,
        "arch": f"{cfg['arch']}(width={cfg['width']})",
        "dataset": "cifar10",
        "labels": list(CLASSES),
        "preprocessing": manifest_entry(),
        "split": {
            "point": args.point,
            "points": model.points,
            "tensorShape": list(split_shape),
            "headMacs": count_macs(head),
            "tailMacs": count_macs(tail, (1, *split_shape)),
        },
        "files": files,
        "accuracy": {
            "top1": round(float(acc), 4),
            "split": "test",
            "samples": samples,
            "source": source,
            "engine": f"pytorch {torch.__version__}",
        },
        "training": {k: cfg[k] for k in sorted(cfg)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    export_tfjs.export_bundle(out)  # the device networks for tfjs too (export_tfjs.py)
    print(json.dumps({"bundle": str(out), "top1": manifest["accuracy"]["top1"], "splitShape": split_shape}))

    if args.fixtures:
        write_fixtures(Path(args.fixtures) / f"{args.name}-v{args.version}", Path(args.sample), model, head)


def write_fixtures(dst: Path, sample: Path, model, head, n: int = 8, n_head: int = 2) -> None:
    """PyTorch reference outputs on the first shipped sample images, for the parity test."""
    imgs = sorted(p for p in sample.rglob("*.jpg"))[:: max(1, len(list(sample.rglob("*.jpg"))) // n)][:n]
    names = [str(p.relative_to(sample)) for p in imgs]
    pix = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8) for p in imgs])
    x = normalize_batch(torch.from_numpy(pix).permute(0, 3, 1, 2).float())
    with torch.no_grad():
        logits = model(x).numpy()
        feats = head(x[:n_head]).numpy().astype("<f4")
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "head.f32").write_bytes(feats.tobytes())
    (dst / "reference.json").write_text(
        json.dumps(
            {
                "images": names,
                "pixelsSha256": [sha256(p.tobytes()) for p in pix],
                "logits": [[float(v) for v in row] for row in logits],
                "headImages": n_head,
                "headShape": list(feats.shape[1:]),
                "engine": f"pytorch {torch.__version__}",
            },
            indent=1,
        )
        + "\n"
    )
    print(json.dumps({"fixtures": str(dst), "images": len(names)}))


if __name__ == "__main__":
    main()
