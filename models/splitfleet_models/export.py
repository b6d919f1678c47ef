"""Split a trained backbone and export a model bundle.

    /usr/bin/python3 -m splitfleet_models.export --run runs/resnet9-w05 --point layer1 \
        --name resnet9w05-cifar10 --model-id 1 --version 1 \
        --data ../../shared/datasets/cifar10-jpeg.tar.gz --zoo zoo --fixtures ../test/fixtures

Writes ``<zoo>/<name>-v<version>/`` with ``head-<sha8>.onnx`` (device), ``tail-<sha8>.onnx``
(edge; tail(head(x)) is the unsplit model) and ``manifest.json`` (ids,
split point, preprocessing, shapes, MACs, measured top-1, sha256 of every file).
The manifest carries the run's labels (its data's class folders) and preprocessing (input
size, resize, mean/std), and the parity of each ONNX file with the PyTorch network
(``split.parity``: max |onnx - torch| on random inputs, the ONNX run by onnx_torch.py).
A head whose operators the tfjs converter lacks is exported as ONNX only (a note says so).
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
from .data import CLASSES, DataError, load_images
from .nets import build, count_macs, describe
from .preprocess import Preprocessing
from .train import evaluate, labels_of, prep_of

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


@torch.no_grad()
def onnx_parity(pairs, seed: int = 0, n: int = 2) -> dict:
    """max |onnx(x) - torch(x)| over `n` random inputs for each (torch module, ONNX bytes,
    input shape), the ONNX run by the toolkit's PyTorch interpreter."""
    import onnx

    from . import onnx_torch

    gen = torch.Generator().manual_seed(seed)
    worst, scale = 0.0, 0.0
    for module, b, shape in pairs:
        x = torch.randn(n, *shape, generator=gen)
        ref = module.eval()(x)
        try:
            got = onnx_torch.load(onnx.load_from_string(b))(x)
        except onnx_torch.OnnxOpError as e:
            return {"skipped": str(e)}
        worst = max(worst, float((ref - got).abs().max()))
        scale = max(scale, float(ref.abs().max()))
    return {"inputs": n, "maxAbsDiff": worst, "maxAbsOutput": scale, "engine": "splitfleet_models.onnx_torch"}


def tfjs_or_note(out: Path) -> None:
    """The device networks for tfjs too (export_tfjs.py), where the converter knows the operators."""
    try:
        export_tfjs.export_bundle(out)
    except export_tfjs.ExportError as e:
        print(json.dumps({"note": f"{out.name}: no TensorFlow.js export (ONNX only): {e}"}), flush=True)


def dataset_name(labels, data: str | None) -> str:
    if list(labels) == list(CLASSES):
        return "cifar10"
    return os.path.basename(str(data).rstrip("/")) if data else "user"


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
    labels = labels_of(st)
    prep = prep_of(cfg)
    model = build(cfg["arch"], float(cfg["width"]), classes=len(labels))
    model.load_state_dict(st["model"])
    model.eval()
    head, tail = model.head(args.point), model.tail(args.point)
    in_shape = (3, *prep.size)
    with torch.no_grad():
        split_shape = tuple(head(torch.zeros(1, *in_shape)).shape[1:])

    acc, samples, source = st.get("test_top1"), st.get("test_samples", 0), "training run"
    if args.data:
        try:
            te = load_images(args.data, prep.size, prep.resize, classes=labels, cache_dir=args.cache).test
        except DataError as e:
            raise SystemExit(f"data: {e}") from None
        acc, samples, source = evaluate(model, te.images, te.labels, prep=prep), len(te.labels), os.path.basename(args.data)
    if acc is None:
        raise SystemExit("no measured accuracy: pass --data")

    out = Path(args.zoo) / f"{args.name}-v{args.version}"
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("*.onnx")) + list(out.glob("*.tfjs.*")):
        old.unlink()
    files = {}
    exported = []
    for role, mod, shp, oshape in (
        ("head", head, in_shape, split_shape),
        ("tail", tail, split_shape, (len(labels),)),
    ):
        b = onnx_bytes(mod, shp)
        exported.append((mod, b, shp))
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
        "arch": describe(cfg),
        "dataset": dataset_name(labels, args.data),
        "labels": list(labels),
        "preprocessing": prep.manifest(),
        "split": {
            "point": args.point,
            "points": model.points,
            "tensorShape": list(split_shape),
            "headMacs": count_macs(head, (1, *in_shape)),
            "tailMacs": count_macs(tail, (1, *split_shape)),
            "parity": onnx_parity(exported),
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
    tfjs_or_note(out)
    print(json.dumps({"bundle": str(out), "top1": manifest["accuracy"]["top1"], "splitShape": split_shape,
                      "parity": manifest["split"]["parity"]}))

    if args.fixtures:
        write_fixtures(Path(args.fixtures) / f"{args.name}-v{args.version}", Path(args.sample), model, head, prep=prep)


def sample_images(sample: Path, n: int) -> list[Path]:
    every = sorted(p for p in sample.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return every[:: max(1, len(every) // n)][:n]


def sample_batch(imgs: list[Path], prep: Preprocessing) -> tuple[np.ndarray, torch.Tensor]:
    """Decoded pixels (for their hashes) and the preprocessed batch, any image size."""
    pix = [np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8) for p in imgs]
    return pix, torch.cat([prep.image(p) for p in pix])


def write_fixtures(dst: Path, sample: Path, model, head, n: int = 8, n_head: int = 2,
                   prep: Preprocessing | None = None) -> None:
    """PyTorch reference outputs on the first shipped sample images, for the parity test."""
    imgs = sample_images(sample, n)
    names = [str(p.relative_to(sample)) for p in imgs]
    pix, x = sample_batch(imgs, prep or Preprocessing())
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
