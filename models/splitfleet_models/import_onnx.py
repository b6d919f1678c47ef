"""Import any ONNX classifier as a split backbone bundle.

    /usr/bin/python3 -m splitfleet_models.import_onnx --onnx resnet18.onnx --split-at layer2 \\
        --labels labels.txt --size 224x224 --resize 256 --name mycams-resnet18 --zoo zoo

``--split-at`` names a tensor, the node that computes it, or (for torch exports) a module
scope such as ``layer2`` (the last tensor computed inside ``/layer2/`` that cuts the
graph); ``python3 -m splitfleet_models.split_points MODEL.onnx`` lists the candidates
with their bytes and multiply-accumulates. The graph is cut there with ONNX's extractor
into ``head-<sha8>.onnx`` (image -> split tensor, for the device) and
``tail-<sha8>.onnx`` (split tensor -> logits, for the edge), both with a dynamic batch
axis; tail(head(x)) is checked against the full model on random inputs (run by the
toolkit's PyTorch interpreter, onnx_torch.py) and the largest difference is recorded in
the manifest. ``labels.txt`` holds one class name per line, in the order of the model's
outputs. ``--mean``/``--std`` default to ImageNet's statistics (what torchvision's and
most published ONNX classifiers expect). ``--data FOLDER`` (an ImageFolder whose class
folders are among the labels) measures top-1; without it the manifest's accuracy says
``samples: 0`` (not measured).

Errors name the problem: no such tensor, a tensor that does not cut the graph, shapes it
cannot resolve (a dynamic input without ``--size``), labels that do not match the
model's number of classes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import checker

from . import onnx_torch
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, manifest_entry, parse_size, parse_triple
from .split_points import Graph, GraphError

PARITY_INPUTS = 4
PARITY_TOLERANCE = 1e-4  # relative to the logits' largest magnitude


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def read_labels(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise GraphError(f"labels file not found: {path}")
    labels = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(labels) < 2:
        raise GraphError(f"{path}: {len(labels)} label(s); one class name per line, at least 2")
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise GraphError(f"{path}: label {dup[0]!r} appears more than once")
    return labels


def _dynamic_batch(m: onnx.ModelProto) -> onnx.ModelProto:
    for vi in list(m.graph.input) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = "batch"
    return m


def extract(g: Graph, inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
    """The subgraph from `inputs` to `outputs` (ONNX's extractor), checked."""
    ex = onnx.utils.Extractor(g.model)
    sub = ex.extract_model(inputs, outputs)
    sub.producer_name = "splitfleet_models.import_onnx"
    sub = _dynamic_batch(sub)
    checker.check_model(sub)
    return sub


def classes_of(g: Graph) -> int:
    s = g.shape(g.output)
    if s is not None and len(s) == 2 and s[1] is not None:
        return int(s[1])
    if s is not None and len(s) != 2:
        raise GraphError(f"{g.where}: output {g.output!r} has shape {Graph._show(s)}; logits [batch, classes] "
                         "expected")
    with torch.no_grad():
        y = onnx_torch.load(g.model)(torch.zeros(1, 3, *g.size))
    if y.dim() != 2:
        raise GraphError(f"{g.where}: output {g.output!r} has shape {list(y.shape)}; logits [batch, classes] expected")
    return int(y.shape[1])


@torch.no_grad()
def parity(full: onnx.ModelProto, head: onnx.ModelProto, tail: onnx.ModelProto, size, n: int = PARITY_INPUTS,
           seed: int = 0) -> dict:
    """max |tail(head(x)) - full(x)| over `n` random normalized images."""
    f, h, t = onnx_torch.load(full), onnx_torch.load(head), onnx_torch.load(tail)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, *size, generator=gen)
    ref = f(x)
    got = t(h(x))
    diff = float((ref - got).abs().max())
    scale = float(ref.abs().max())
    return {"inputs": n, "maxAbsDiff": diff, "maxAbsLogit": scale, "engine": "splitfleet_models.onnx_torch"}


def next_model_id(zoo: Path, name: str) -> int:
    """The modelId of an earlier version of `name` in `zoo`, else the first free id from 100
    (below are the shipped bundles')."""
    used = set()
    for mf in zoo.glob("*/manifest.json"):
        try:
            m = json.loads(mf.read_text())
        except (OSError, ValueError):
            continue
        if m.get("name") == name and isinstance(m.get("modelId"), int):
            return m["modelId"]
        used.add(m.get("modelId"))
    i = 100
    while i in used:
        i += 1
    return i


@torch.no_grad()
def measure(model: onnx.ModelProto, data: str, labels: list[str], prep: Preprocessing, cache: str | None):
    from .data import load_images

    ds = load_images(data, prep.size, prep.resize, classes=labels, cache_dir=cache)
    images = np.concatenate([ds.train.images, ds.test.images])
    y = np.concatenate([ds.train.labels, ds.test.labels])
    net = onnx_torch.load(model)
    correct = 0
    for i in range(0, len(y), 32):
        x = prep.normalize(torch.from_numpy(images[i : i + 32]).permute(0, 3, 1, 2).float())
        correct += int((net(x).argmax(1).numpy() == y[i : i + 32]).sum())
    return correct / max(1, len(y)), len(y)


def import_onnx(
    onnx_path: str,
    split_at: str,
    labels_path: str,
    size: tuple[int, int] | None,
    name: str,
    zoo: str,
    version: int = 1,
    resize: int | None = None,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    model_id: int | None = None,
    data: str | None = None,
    cache: str | None = None,
    tfjs: bool = True,
) -> Path:
    labels = read_labels(labels_path)
    try:
        model = onnx.load(onnx_path)
    except Exception as e:
        raise GraphError(f"{onnx_path}: not a readable ONNX model ({e})") from None
    g = Graph(model, size, where=onnx_path)
    prep = Preprocessing(g.size, resize, tuple(mean), tuple(std))
    k = classes_of(g)
    if k != len(labels):
        raise GraphError(f"{labels_path} has {len(labels)} labels but the model outputs {k} classes")
    t = g.resolve(split_at)
    g.check_cut(t)
    cand = g.describe(t)
    head = extract(g, [g.input], [t])
    tail = extract(g, [t], [g.output])
    full = _dynamic_batch(onnx.load_from_string(g.model.SerializeToString()))
    par = parity(full, head, tail, g.size)
    if par["maxAbsDiff"] > PARITY_TOLERANCE * max(1.0, par["maxAbsLogit"]):
        raise GraphError(f"tail(head(x)) differs from the model by {par['maxAbsDiff']:.3g}: the split is wrong")
    points = [c.tensor for c in g.candidates()]

    acc = {"top1": 0.0, "split": "none", "samples": 0, "source": "not measured",
           "engine": "splitfleet_models.onnx_torch"}
    if data:
        top1, n = measure(full, data, labels, prep, cache)
        acc = {"top1": round(top1, 4), "split": "all", "samples": n, "source": os.path.basename(str(data).rstrip("/")),
               "engine": f"splitfleet_models.onnx_torch (pytorch {torch.__version__})"}

    zoo_dir = Path(zoo)
    out = zoo_dir / f"{name}-v{version}"
    mid = model_id if model_id is not None else next_model_id(zoo_dir, name)
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("*.onnx")) + list(out.glob("*.tfjs.*")):
        old.unlink()
    files = {}
    split_shape = cand.shape
    for role, m, ishape, oshape in (("head", head, [3, *g.size], split_shape), ("tail", tail, split_shape, [k])):
        b = m.SerializeToString()
        h = sha256(b)
        fname = f"{role}-{h[:8]}.onnx"
        (out / fname).write_bytes(b)
        files[role] = {"path": fname, "sha256": h, "input": [-1, *ishape], "output": [-1, *oshape]}
    src_bytes = Path(onnx_path).read_bytes()
    manifest = {
        "format": 3,
        "kind": "backbone",
        "name": name,
        "modelId": mid,
        "version": version,
        "arch": f"onnx {Path(onnx_path).name}",
        "dataset": os.path.basename(str(data).rstrip("/")) if data else "user",
        "labels": labels,
        "preprocessing": manifest_entry(prep),
        "split": {
            "point": t,
            "points": points,
            "tensorShape": split_shape,
            "headMacs": cand.deviceMacs,
            "tailMacs": cand.edgeMacs,
            "node": cand.node,
            "bytes": {"fp32": cand.fp32Bytes, "int8": cand.int8Bytes},
            "parity": par,
        },
        "files": files,
        "accuracy": acc,
        "training": {"imported": Path(onnx_path).name, "sha256": sha256(src_bytes), "splitAt": split_at,
                     "opset": [{"domain": o.domain, "version": o.version} for o in model.opset_import]},
        "source": {"kind": "onnx", "file": Path(onnx_path).name, "sha256": sha256(src_bytes)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if tfjs:
        from . import export_tfjs

        try:
            export_tfjs.export_bundle(out)
        except export_tfjs.ExportError as e:
            print(json.dumps({"note": f"no TensorFlow.js head (ONNX only): {e}"}), file=sys.stderr)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True, help="the classifier: one NCHW image input, one logits output")
    ap.add_argument("--split-at", required=True, help="tensor name, node name or torch module scope (layer2)")
    ap.add_argument("--labels", required=True, help="text file, one class name per line, in output order")
    ap.add_argument("--size", help="input HxW (required when the model's height and width are dynamic)")
    ap.add_argument("--resize", type=int, help="shorter side before the center crop (ImageNet recipes: 256 for 224)")
    ap.add_argument("--mean", help="per-channel mean of pixels/255, a,b,c (default ImageNet's)")
    ap.add_argument("--std", help="per-channel std, a,b,c (default ImageNet's)")
    ap.add_argument("--name", required=True, help="bundle name")
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--model-id", type=int, help="default: the id of an earlier version, else the first free from 100")
    env_zoo = os.environ.get("SPLITFLEET_ZOO") or None  # `splitfleet --zoo DIR` passes it on this way
    ap.add_argument("--zoo", default=env_zoo, required=env_zoo is None,
                    help="zoo folder to write <name>-v<version>/ into (default: $SPLITFLEET_ZOO)")
    ap.add_argument("--data", help="ImageFolder to measure top-1 on (optional)")
    ap.add_argument("--cache", default=None, help="decoded-image cache folder for --data")
    ap.add_argument("--no-tfjs", action="store_true", help="skip the TensorFlow.js export of the head")
    args = ap.parse_args(argv)
    try:
        out = import_onnx(
            args.onnx, args.split_at, args.labels, parse_size(args.size) if args.size else None, args.name, args.zoo,
            args.version, args.resize,
            parse_triple(args.mean, "--mean") if args.mean else IMAGENET_MEAN,
            parse_triple(args.std, "--std") if args.std else IMAGENET_STD,
            args.model_id, args.data, args.cache, not args.no_tfjs,
        )
    except (GraphError, ValueError, OSError) as e:
        print(f"import_onnx: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    m = json.loads((out / "manifest.json").read_text())
    print(json.dumps({"bundle": str(out), "modelId": m["modelId"], "split": m["split"]["point"],
                      "tensorShape": m["split"]["tensorShape"], "headMacs": m["split"]["headMacs"],
                      "tailMacs": m["split"]["tailMacs"], "parityMaxAbsDiff": m["split"]["parity"]["maxAbsDiff"]}))


if __name__ == "__main__":
    main()
