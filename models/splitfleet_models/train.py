"""Seeded, resumable training of a backbone on CIFAR-10 or any ImageFolder.

    /usr/bin/python3 -m splitfleet_models.train --data ../shared/datasets/cifar10-jpeg.tar.gz \
        --recipe recipes/resnet9-w05.yaml --out runs/resnet9-w05
    /usr/bin/python3 -m splitfleet_models.train --data mycams.tar.gz --arch mobilenet_v3_small \
        --size 224x224 --resize 256 --checkpoint mobilenet_v3_small-047dcff4.pth --lr 0.01 \
        --epochs 10 --out runs/mycams

The data is any ImageFolder (data.load_images: a folder or .tar.gz, any classes, images
of any size, brought to ``--size`` by a shorter-side ``--resize`` or by covering the size,
then a center crop); its class folders become the labels every export carries. The
architecture is the project's resnet9/resnet20 or one of torchvision's
(nets.TORCHVISION_ARCHS), from scratch or from a local ``--checkpoint`` (torchvision's
.pth or a final.pt of this trainer); a classifier for another number of classes is
re-initialized. ``--mean``/``--std`` default to CIFAR-10's statistics for resnet9/20
and to ImageNet's for torchvision architectures.

Every epoch writes ``<out>/last.pt`` (weights, optimizer, epoch, RNG state) atomically;
run the same command again to resume from it. ``<out>/train.log`` gets one JSON line
per epoch. The recipe (YAML) names the architecture and the schedule; flags override it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from .data import DataError, load_images
from .nets import TORCHVISION_ARCHS, CheckpointError, build, fast_layout, load_checkpoint
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, MEAN, STD, Preprocessing, parse_size, parse_triple

DEFAULTS = dict(
    arch="resnet9",
    width=0.5,
    epochs=24,
    batch=128,
    lr=0.1,
    warmup=5,
    momentum=0.9,
    weight_decay=5e-4,
    label_smoothing=0.2,
    cutout=8,
    seed=1,
    threads=2,
    eval_every=4,
    # "bf16": forward and loss under CPU autocast to bfloat16 (weights, optimizer and
    # evaluation stay float32). 2.3x faster steps on this machine's AVX512-BF16 cores;
    # very slow on CPUs without native bf16, so the default is off.
    autocast="none",
)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step: float, steps_per_epoch: int, cfg: dict) -> float:
    """Piecewise linear: 0 -> lr over `warmup` epochs, then down to 0 at the end."""
    e = step / steps_per_epoch
    if e < cfg["warmup"]:
        return cfg["lr"] * e / cfg["warmup"]
    return cfg["lr"] * max(0.0, (cfg["epochs"] - e) / (cfg["epochs"] - cfg["warmup"]))


def augment(x: torch.Tensor, gen: torch.Generator, cutout: int) -> torch.Tensor:
    """Random crop (reflect pad of 1/8 of the side: 4 at 32x32), horizontal flip and
    cutout on a uint8 NCHW batch of any size."""
    from .targets import apply_augment, augment_params

    n, _, h, w = x.shape
    out = apply_augment(x, *augment_params(n, h, w, gen))
    if cutout > 0:
        cx = torch.randint(0, w, (n,), generator=gen)
        cy = torch.randint(0, h, (n,), generator=gen)
        h = cutout // 2
        for i in range(n):
            out[i, :, max(0, cy[i] - h) : cy[i] + h, max(0, cx[i] - h) : cx[i] + h] = 0.0
    return out


def make_sgd(model, cfg: dict, lr: float = 0.0) -> torch.optim.SGD:
    return torch.optim.SGD(
        model.parameters(),
        lr=lr,
        momentum=cfg["momentum"],
        nesterov=True,
        weight_decay=cfg["weight_decay"],
    )


def run_logger(out: Path):
    """emit(**record): one JSON line to <out>/train.log and to stdout."""
    log = open(out / "train.log", "a", buffering=1)

    def emit(**rec):
        rec["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        line = json.dumps(rec)
        log.write(line + "\n")
        print(line, flush=True)

    return emit


def prep_of(cfg: dict) -> Preprocessing:
    """The preprocessing of a training config (CIFAR-10's for configs without one)."""
    if not cfg.get("size"):
        return Preprocessing()
    return Preprocessing(tuple(cfg["size"]), cfg.get("resize"), tuple(cfg["mean"]), tuple(cfg["std"]))


def labels_of(st: dict) -> list[str]:
    """The class names of a checkpoint (CIFAR-10's for runs made before labels were kept)."""
    from .data import CLASSES

    return list(st.get("labels") or CLASSES)


def train_epoch(model, opt, x_all, y_all, gen, cfg: dict, epoch: int = 0, lr_fn=None, after_step=None) -> float:
    """One pass over the training set (last partial batch dropped); returns the mean loss.

    lr_fn(step, steps_per_epoch) sets the learning rate before each step; after_step(s)
    runs after each optimizer step (SWA averages there).
    """
    model.train()
    fmt = fast_layout(model)
    bs = int(cfg["batch"])
    steps = len(y_all) // bs
    perm = torch.randperm(len(y_all), generator=gen)
    prep = prep_of(cfg)
    tot = 0.0
    for s in range(steps):
        idx = perm[s * bs : (s + 1) * bs]
        x = prep.normalize(augment(x_all[idx], gen, int(cfg["cutout"])))
        x = x.contiguous(memory_format=fmt)
        if lr_fn is not None:
            for g in opt.param_groups:
                g["lr"] = lr_fn(epoch * steps + s, steps)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.get("autocast") == "bf16"):
            loss = F.cross_entropy(model(x), y_all[idx], label_smoothing=float(cfg["label_smoothing"]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tot += float(loss)
        if after_step is not None:
            after_step(s)
    return tot / max(1, steps)


@torch.no_grad()
def evaluate(model, images: np.ndarray, labels: np.ndarray, batch: int = 128, prep: Preprocessing | None = None) -> float:
    """Top-1 on uint8 NHWC `images` already at the model's size."""
    if len(labels) == 0:
        raise SystemExit("no test images to measure top-1 on")
    prep = prep or Preprocessing()
    model.eval()
    fmt = fast_layout(model)
    correct = 0
    for i in range(0, len(labels), batch):
        x = prep.normalize(torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2).float())
        x = x.contiguous(memory_format=fmt)
        correct += (model(x).argmax(1).numpy() == labels[i : i + batch]).sum()
    return float(correct) / len(labels)


def load_resume(ckpt: Path, key: str, expect) -> dict | None:
    """The state in `ckpt` if it exists (None otherwise), refusing one whose st[key]
    (the recipe or settings it was made with) differs from `expect`."""
    if not ckpt.exists():
        return None
    st = torch.load(ckpt, map_location="cpu", weights_only=False)  # our own checkpoint (RNG and optimizer state)
    if st[key] != expect:
        raise SystemExit(f"{ckpt} was made with other settings: {st[key]}")
    return st


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("SPLITFLEET_CIFAR10"),
                    help="ImageFolder (folder or .tar.gz, any classes) or CIFAR-10 archive/folder")
    ap.add_argument("--recipe", help="YAML recipe")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", default=".cache", help="decoded-dataset cache folder")
    for k, v in DEFAULTS.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=None)
    ap.add_argument("--size", help="input size HxW (default: the images' size; 32x32 for CIFAR-10)")
    ap.add_argument("--resize", type=int, help="scale the shorter side to this before the center crop "
                                               "(default: just cover --size)")
    ap.add_argument("--mean", help="per-channel mean a,b,c of pixels/255 (default: by architecture)")
    ap.add_argument("--std", help="per-channel std a,b,c (default: by architecture)")
    ap.add_argument("--checkpoint", help="local weights to start from: torchvision .pth or a final.pt")
    ap.add_argument("--test-fraction", type=float, default=None,
                    help="share of each class held out for testing when the data has no train/test folders (0.2)")
    args = ap.parse_args(argv)
    if not args.data:
        ap.error("--data (or SPLITFLEET_CIFAR10) is required")

    cfg = dict(DEFAULTS)
    if args.recipe:
        cfg.update(yaml.safe_load(Path(args.recipe).read_text()) or {})
    for k in DEFAULTS:
        v = getattr(args, k)
        if v is not None:
            cfg[k] = v
    try:
        if args.size:
            cfg["size"] = list(parse_size(args.size))
        for k in ("resize", "checkpoint", "test_fraction"):
            if getattr(args, k) is not None:
                cfg[k] = getattr(args, k)
        imagenet = cfg["arch"] in TORCHVISION_ARCHS
        for k, arg, default in (("mean", args.mean, IMAGENET_MEAN if imagenet else MEAN),
                                ("std", args.std, IMAGENET_STD if imagenet else STD)):
            cfg[k] = list(parse_triple(arg, f"--{k}")) if arg else list(cfg.get(k) or default)
    except ValueError as e:
        ap.error(str(e))
    torch.set_num_threads(int(cfg["threads"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    emit = run_logger(out)

    t0 = time.time()
    try:
        ds = load_images(args.data, tuple(cfg["size"]) if cfg.get("size") else None, cfg.get("resize"),
                         test_fraction=float(cfg.get("test_fraction", 0.2)), cache_dir=args.cache)
    except DataError as e:
        raise SystemExit(f"data: {e}") from None
    cfg["size"] = list(ds.size)
    prep = prep_of(cfg)  # checks size, resize, mean and std together
    tr, te = ds.train, ds.test
    if len(tr.labels) < 2:
        raise SystemExit(f"data: {len(tr.labels)} training image(s); at least 2 are needed")
    if int(cfg["batch"]) > len(tr.labels):
        emit(event="note", note=f"batch {cfg['batch']} is larger than the {len(tr.labels)} training images; "
                                f"using batch {len(tr.labels)}")
        cfg["batch"] = len(tr.labels)
    emit(event="data", train=len(tr.labels), test=len(te.labels), classes=ds.classes, size=list(ds.size),
         seconds=round(time.time() - t0, 1))

    set_seed(int(cfg["seed"]))
    model = build(cfg["arch"], float(cfg["width"]), classes=len(ds.classes))
    opt = make_sgd(model, cfg)
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    start = 0
    ckpt = out / "last.pt"
    st = load_resume(ckpt, "cfg", cfg)
    if st is not None:
        model.load_state_dict(st["model"])
        model = model.to(memory_format=fast_layout(model))
        opt = make_sgd(model, cfg)
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])
        start = st["epoch"]
        emit(event="resume", epoch=start)
    else:
        if cfg.get("checkpoint"):
            try:
                notes = load_checkpoint(model, cfg["arch"], cfg["checkpoint"], len(ds.classes))
            except CheckpointError as e:
                raise SystemExit(f"checkpoint: {e}") from None
            emit(event="checkpoint", path=str(cfg["checkpoint"]), notes=notes)
        model = model.to(memory_format=fast_layout(model))
        opt = make_sgd(model, cfg)
        emit(event="start", cfg=cfg)

    x_all = torch.from_numpy(tr.images).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    y_all = torch.from_numpy(tr.labels)
    for epoch in range(start, int(cfg["epochs"])):
        te0 = time.time()
        loss = train_epoch(model, opt, x_all, y_all, gen, cfg, lr_fn=lambda step, steps: lr_at(step, steps, cfg), epoch=epoch)
        rec = dict(event="epoch", epoch=epoch + 1, loss=round(loss, 4), seconds=round(time.time() - te0, 1))
        last = epoch + 1 == int(cfg["epochs"])
        if last or (epoch + 1) % int(cfg["eval_every"]) == 0:
            rec["test_top1"] = round(evaluate(model, te.images, te.labels, prep=prep), 4)
        save_atomic(
            dict(
                model=model.state_dict(),
                opt=opt.state_dict(),
                gen=gen.get_state(),
                torch_rng=torch.get_rng_state(),
                epoch=epoch + 1,
                cfg=cfg,
                labels=ds.classes,
            ),
            ckpt,
        )
        emit(**rec)
    final = evaluate(model, te.images, te.labels, prep=prep)
    save_atomic(dict(model=model.state_dict(), cfg=cfg, test_top1=final, labels=ds.classes,
                     test_samples=len(te.labels)), out / "final.pt")
    emit(event="done", test_top1=round(final, 4), minutes=round((time.time() - t0) / 60, 1))


if __name__ == "__main__":
    main()
