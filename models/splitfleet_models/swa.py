"""Stochastic weight averaging (Izmailov et al., "Averaging Weights Leads to Wider Optima
and Better Generalization", UAI 2018) on top of a finished training run.

    /usr/bin/python3 -m splitfleet_models.swa --from runs/resnet9-w05 --out runs/resnet9-w05-swa \
        --data ../../shared/datasets/cifar10-jpeg.tar.gz --epochs 4 --lr 0.02 --every 100

Continues SGD at a constant learning rate from ``<from>/final.pt`` with the recipe's
augmentation, averages the weights every ``--every`` steps, recomputes the batch-norm
statistics of the average on the training set, and writes ``<out>/final.pt`` (the same
format train.py writes, so evaluate.py and export.py take it). Resumable per epoch.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel

from .data import load_cifar10
from .nets import build, fast_layout
from .preprocess import normalize_batch
from .train import evaluate, load_resume, make_sgd, run_logger, save_atomic, set_seed, train_epoch


@torch.no_grad()
def update_bn(model, x_all: torch.Tensor, batch: int) -> None:
    """Recompute BN running statistics with a cumulative average over the training set."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    for i in range(0, len(x_all), batch):
        x = normalize_batch(x_all[i : i + batch].float()).contiguous(memory_format=fast_layout(model))
        model(x)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="src", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=os.environ.get("SPLITFLEET_CIFAR10"))
    ap.add_argument("--cache", default="../.cache")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--every", type=int, default=100, help="average every N steps")
    args = ap.parse_args(argv)
    if not args.data:
        ap.error("--data (or SPLITFLEET_CIFAR10) is required")

    base = torch.load(Path(args.src) / "final.pt", map_location="cpu")
    cfg = dict(base["cfg"])
    swa_cfg = {"from": str(args.src), "epochs": args.epochs, "lr": args.lr, "every": args.every}
    torch.set_num_threads(int(cfg["threads"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    emit = run_logger(out)

    t0 = time.time()
    data = load_cifar10(args.data, cache_dir=args.cache)
    tr, te = data["train"], data["test"]
    set_seed(int(cfg["seed"]) + 1000)
    model = build(cfg["arch"], float(cfg["width"]))
    model = model.to(memory_format=fast_layout(model))
    model.load_state_dict(base["model"])
    avg = AveragedModel(model)
    opt = make_sgd(model, cfg, args.lr)
    gen = torch.Generator().manual_seed(int(cfg["seed"]) + 1000)
    start = 0
    ckpt = out / "last.pt"
    st = load_resume(ckpt, "swa", swa_cfg)
    if st is not None:
        model.load_state_dict(st["model"])
        avg.load_state_dict(st["avg"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        start = st["epoch"]
        emit(event="resume", epoch=start)
    else:
        emit(event="start", swa=swa_cfg, base_top1=base.get("test_top1"))

    x_all = torch.from_numpy(tr.images).permute(0, 3, 1, 2).contiguous()
    y_all = torch.from_numpy(tr.labels)

    def average(step: int) -> None:
        if (step + 1) % args.every == 0:
            avg.update_parameters(model)

    for epoch in range(start, args.epochs):
        te0 = time.time()
        loss = train_epoch(model, opt, x_all, y_all, gen, cfg, epoch=epoch, after_step=average)
        save_atomic(
            dict(model=model.state_dict(), avg=avg.state_dict(), opt=opt.state_dict(), gen=gen.get_state(),
                 epoch=epoch + 1, swa=swa_cfg),
            ckpt,
        )
        emit(event="epoch", epoch=epoch + 1, loss=round(loss, 4), averaged=int(avg.n_averaged),
             seconds=round(time.time() - te0, 1))

    final_model = avg.module
    update_bn(final_model, x_all, 128)
    final_model.eval()
    acc = evaluate(final_model, te.images, te.labels)
    cfg_out = dict(cfg, swa=swa_cfg)
    save_atomic(dict(model=final_model.state_dict(), cfg=cfg_out, test_top1=acc), out / "final.pt")
    emit(event="done", test_top1=round(acc, 4), base_top1=base.get("test_top1"),
         minutes=round((time.time() - t0) / 60, 1))


if __name__ == "__main__":
    main()
