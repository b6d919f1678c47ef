"""Rebuild a PyTorch backbone run from a shipped backbone bundle (head + tail ONNX).

    /usr/bin/python3 -m splitfleet_models.import_bundle --bundle zoo/resnet9w05-cifar10-v2 \
        --out runs/resnet9-w05-long

Training runs are not in the repository, only the exported bundles. The learned codecs
are trained around a frozen teacher, and the teacher they must match is the shipped
one, so this tool turns the bundle back into ``<out>/final.pt`` (the format train.py
writes) instead of retraining it.

The exporter folds every batch norm into the convolution before it (eval mode), so the
ONNX files hold one weight and one bias per convolution. The rebuilt network keeps its
batch-norm layers as exact identities around those folded weights: running mean 0,
running variance 1 - eps, scale 1, shift = the folded bias. In eval mode (the teacher is
always in eval mode while codecs train) it computes what the bundle computes; the
check at the end compares it with the bundle's recorded PyTorch fixtures when given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from .nets import Classifier, build
from .train import save_atomic


def onnx_params(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """Conv (weight, bias) pairs in graph order and the MatMul weights of one ONNX file."""
    m = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for node in m.graph.node:  # Constant nodes (the classifier's scale) as values too
        if node.op_type == "Constant":
            init[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    convs, mats, consts = [], [], []
    for node in m.graph.node:
        if node.op_type == "Conv":
            if len(node.input) != 3:
                raise SystemExit(f"{path.name}: a Conv without a folded bias; not an exported backbone")
            convs.append((init[node.input[1]], init[node.input[2]]))
        elif node.op_type == "MatMul":
            mats.append(init[node.input[1]])
        elif node.op_type == "Mul":
            consts.extend(init[i] for i in node.input if i in init)
    return convs, mats + consts


def load_into(net: nn.Module, convs, rest) -> None:
    mods = list(net.modules())
    conv_bn = [
        (m, mods[i + 1]) for i, m in enumerate(mods) if isinstance(m, nn.Conv2d) and isinstance(mods[i + 1], nn.BatchNorm2d)
    ]
    if len(conv_bn) != len(convs):
        raise SystemExit(f"bundle has {len(convs)} convolutions, the architecture {len(conv_bn)}")
    with torch.no_grad():
        for (conv, bn), (w, b) in zip(conv_bn, convs):
            if tuple(conv.weight.shape) != w.shape:
                raise SystemExit(f"shape mismatch: {tuple(conv.weight.shape)} vs {w.shape}")
            conv.weight.copy_(torch.from_numpy(w))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b))
        cls = [m for m in mods if isinstance(m, Classifier)]
        if len(cls) != 1 or cls[0].fc.bias is not None or len(rest) != 2:
            raise SystemExit("only max-pool classifiers without bias (resnet9) are supported")
        fc_w, scale = rest
        cls[0].fc.weight.copy_(torch.from_numpy(fc_w.T.copy()))
        if abs(float(scale) - cls[0].scale) > 1e-6:
            raise SystemExit(f"classifier scale {float(scale)} differs from the architecture's {cls[0].scale}")


def sha256_file(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, help="backbone bundle folder (manifest.json)")
    ap.add_argument("--out", required=True, help="run folder to write final.pt into")
    ap.add_argument("--fixtures", help="the bundle's parity fixture folder (reference.json) to check against")
    args = ap.parse_args(argv)
    bundle = Path(args.bundle)
    man = json.loads((bundle / "manifest.json").read_text())
    if man.get("kind") != "backbone":
        raise SystemExit(f"{bundle}: not a backbone bundle")
    cfg = dict(man["training"])
    files = man["files"]
    convs, rest = [], []
    for part in ("head", "tail"):
        p = bundle / files[part]["path"]
        if sha256_file(p) != files[part]["sha256"]:
            raise SystemExit(f"{p}: sha256 does not match the manifest")
        c, r = onnx_params(p)
        convs += c
        rest += r
    net = build(cfg["arch"], float(cfg["width"]))
    load_into(net, convs, rest)
    net.eval()
    if args.fixtures:
        ref = json.loads((Path(args.fixtures) / "reference.json").read_text())
        from PIL import Image

        from .preprocess import normalize_batch

        root = Path(args.fixtures).resolve()
        imgs = []
        for rel in ref["images"]:
            cands = [Path(rel), root / rel, Path("samples/cifar10-test-sample") / rel, Path("..") / rel]
            p = next((c for c in cands if c.exists()), None)
            if p is None:
                raise SystemExit(f"fixture image {rel} not found")
            imgs.append(np.asarray(Image.open(p).convert("RGB")))
        x = normalize_batch(torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().contiguous())
        with torch.no_grad():
            logits = net(x).numpy()
        diff = float(np.abs(logits - np.asarray(ref["logits"], dtype=np.float32)).max())
        print(f"max |rebuilt - fixture| on {len(imgs)} logits: {diff:.2e}")
        if diff > 1e-3:
            raise SystemExit("rebuilt network does not match the bundle's fixtures")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source = dict(bundle=str(bundle), manifest=man, manifestSha256=sha256_file(bundle / "manifest.json"))
    save_atomic(dict(model=net.state_dict(), cfg=cfg, source=source), out / "final.pt")
    print(f"wrote {out / 'final.pt'} from {man['name']} v{man['version']} (top-1 {man['accuracy']['top1']})")


if __name__ == "__main__":
    main()


def folded_convs(net: nn.Module) -> list[np.ndarray]:
    """The convolution weights of `net` with each following batch norm folded in (eval
    mode), as the exporter writes them."""
    mods = list(net.modules())
    out = []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            w = m.weight.detach()
            bn = mods[i + 1] if i + 1 < len(mods) else None
            if isinstance(bn, nn.BatchNorm2d):
                w = w * (bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps))[:, None, None, None]
            out.append(w.numpy())
    return out


def load_codec_point(codec: nn.Module, bundle: Path, index: int) -> dict:
    """Load a shipped codec bundle's operating point `index` into `codec` (built by
    train_codec.build_codec around the same teacher): the encoder and decoder weights
    by their ONNX names (``codec.enc.*``, ``codec.dec.*``, ``codec.out_scale``), the
    fine-tuned tail the same way as a backbone's (folded batch norms as identities).
    The teacher head inside the device half (where the codec runs one there:
    ``head_on_device``) is checked against the codec's own. The
    entropy model is not in the bundle as weights (only its CDF tables): the caller
    fits ``codec.prior`` again. Returns the point's manifest entry."""
    man = json.loads((bundle / "manifest.json").read_text())
    if man.get("kind") != "codec" or man["codec"]["method"] != codec.method:
        raise SystemExit(f"{bundle}: not a {codec.method} codec bundle")
    points = man["codec"]["points"]
    if not 0 <= index < len(points):
        raise SystemExit(f"{bundle}: no point {index} (it has {len(points)})")
    point = points[index]
    state = codec.state_dict()
    own: dict[str, torch.Tensor] = {}
    teacher_convs: dict[str, list] = {}
    rest: list[np.ndarray] = []
    for role in ("head", "tail"):
        f = man["files"][point[role]]
        p = bundle / f["path"]
        if sha256_file(p) != f["sha256"]:
            raise SystemExit(f"{p}: sha256 does not match the manifest")
        m = onnx.load(str(p))
        init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
        for node in m.graph.node:
            if node.op_type == "Constant":
                init[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        own.update({k: torch.from_numpy(v.copy()) for k, v in init.items() if k.startswith("codec.")})
        convs = teacher_convs.setdefault(role, [])
        for node in m.graph.node:
            if node.op_type == "Conv" and node.input[1] in init and not node.input[1].startswith("codec."):
                convs.append((init[node.input[1]], init[node.input[2]]))
            elif role == "tail" and node.op_type == "MatMul":
                rest.insert(0, init[node.input[1]])
            elif role == "tail" and node.op_type == "Mul":
                rest.extend(init[i] for i in node.input if i in init and not i.startswith("codec."))
    missing = [k for k in state if k.startswith(("enc.", "dec.")) or k == "out_scale"]
    for k in missing:
        src = own.get(f"codec.{k}")
        if src is None or tuple(src.shape) != tuple(state[k].shape):
            raise SystemExit(f"{bundle}: no weight codec.{k} of shape {tuple(state[k].shape)}")
        state[k] = src.reshape(state[k].shape)
    codec.load_state_dict(state)
    head = folded_convs(codec.teacher.head) if codec.head_on_device else []
    if len(head) != len(teacher_convs["head"]) or any(
        not np.allclose(w, wb, atol=1e-5) for w, (wb, _) in zip(head, teacher_convs["head"])
    ):
        raise SystemExit(f"{bundle}: the device half's teacher head differs from the codec's teacher")
    load_into(codec.teacher.tail, teacher_convs["tail"], rest)
    return point
