"""Validation of a codec run on its held-out split (targets.validation_split), the
checkpoint choice it drives, and the entropy model's refit after a warm start.

* ``ValSet``: the validation images and, for SplitFleet, their teacher tensors
  computed once (the teacher's head is frozen), so an evaluation per epoch costs only
  the encoder, decoder and tail.
* ``val_metrics``: top-1 of edge(device(x)) exactly as exported (rounded symbols) and
  the mean code length per image under the learned prior (a training-time estimate:
  the exported figure is measured with the integer tables).
* ``better``: the checkpoint rule: the highest validation top-1 among the epochs of the
  last stage whose validation bytes stay within the recipe's ``budget_bytes``.
* ``fit_prior``, ``warm_start``: a run started from a shipped bundle's operating point
  (its encoder, decoder and fine-tuned tail), the entropy model fitted again to the
  encoder's latents (bundles keep the prior only as integer tables).
* ``target_cache``: the run's TargetCache, saved under the data cache and reused by
  later starts with the same teacher, data, views and seed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .entropy import LIKELIHOOD_MIN, bits
from .targets import FrozenTargets, TargetCache


class ValSet:
    def __init__(self, codec, images: np.ndarray, labels: np.ndarray, batch: int = 250):
        self.images, self.labels, self.batch = images, labels, batch
        self.src = None
        if codec.method == "splitfleet" and len(labels):
            dev = codec.out_scale.device
            with torch.no_grad():
                self.src = torch.cat([codec.teacher.head(x.to(dev)) for x in self._images(codec)])

    def _images(self, codec):
        for i in range(0, len(self.labels), self.batch):
            x = torch.from_numpy(self.images[i : i + self.batch]).permute(0, 3, 1, 2).float()
            yield codec.prep.normalize(x)

    def sources(self, codec):
        """Batches of what the codec's encoder reads (or, for codecs without an
        encoder-of-source split, the images for ``device``)."""
        if self.src is not None:
            for i in range(0, len(self.labels), self.batch):
                yield self.src[i : i + self.batch]
        else:
            dev = codec.out_scale.device
            for x in self._images(codec):
                yield x.to(dev)


@torch.no_grad()
def val_metrics(codec, val: ValSet) -> dict:
    """{'val_top1', and for variational-bottleneck codecs 'val_bytes'} on the validation set."""
    if not len(val.labels):
        return {}
    codec.eval()
    correct, total_bits = 0, 0.0
    vb = hasattr(codec, "prior")
    for i, src in zip(range(0, len(val.labels), val.batch), val.sources(codec)):
        s = torch.round(codec.enc(src)) if val.src is not None else codec.device(src)
        correct += int((codec.edge(s).argmax(1).cpu().numpy() == val.labels[i : i + val.batch]).sum())
        if vb:
            total_bits += float(bits(codec.prior.likelihood(s)))
    rec = dict(val_top1=round(correct / len(val.labels), 4))
    if vb:
        rec["val_bytes"] = round(total_bits / 8 / len(val.labels), 1)
    return rec


def better(rec: dict, best: dict | None, budget: float | None) -> bool:
    """Whether epoch record `rec` beats the best so far under the byte budget."""
    if "val_top1" not in rec:
        return False
    if budget is not None and rec.get("val_bytes", 0.0) > budget:
        return False
    return best is None or rec["val_top1"] > best["val_top1"]


def fit_prior(codec, latents: torch.Tensor, steps: int = 400, batch: int = 256, lr: float = 0.01,
              gen: torch.Generator | None = None) -> float:
    """Fit ``codec.prior`` alone to `latents` (N, C, H, W: the encoder's outputs) with
    the training-time noise; returns the final mean bits per latent element."""
    prior = codec.prior
    prior.train()
    opt = torch.optim.Adam(prior.parameters(), lr=lr)
    n = latents.shape[0]
    gen = gen or torch.Generator().manual_seed(0)
    last = 0.0
    for step in range(steps):
        y = latents[torch.randint(0, n, (min(batch, n),), generator=gen)]
        y = y + torch.rand(y.shape, generator=gen) - 0.5
        lik = prior.likelihood(y).clamp_min(LIKELIHOOD_MIN)
        loss = bits(lik) / y.numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for g in opt.param_groups:
            g["lr"] = lr * (0.1 if step >= steps * 3 // 4 else 1.0)
        opt.step()
        last = float(loss)
    return last


def spent_minutes(spent: dict, dev: torch.device) -> dict:
    """CPU minutes (process time, all threads) and, on a GPU, GPU minutes (wall time)."""
    rec = dict(cpuMinutes=round(spent["cpu"] / 60, 1), wallMinutes=round(spent["wall"] / 60, 1))
    rec["gpuMinutes"] = round(spent["wall"] / 60, 1) if dev.type == "cuda" else 0.0
    return rec


@torch.no_grad()
def teacher_top1(codec, frozen: FrozenTargets, val: ValSet) -> float | None:
    """The frozen teacher's top-1 on the validation split: the reference a codec's drop
    is measured against there (the shipped teacher saw these images in its training)."""
    if not len(val.labels):
        return None
    correct = 0
    dev = codec.out_scale.device
    for i, x in zip(range(0, len(val.labels), val.batch), val._images(codec)):
        t = val.src[i : i + val.batch] if val.src is not None else frozen.head(x.to(dev))
        correct += int((frozen.tail(t).argmax(1).cpu().numpy() == val.labels[i : i + val.batch]).sum())
    return round(correct / len(val.labels), 4)


@torch.no_grad()
def warm_start(codec, cfg: dict, images: np.ndarray, val: ValSet) -> dict:
    """Start from a shipped bundle's operating point (recipe keys ``init_bundle``,
    ``init_point``): its encoder, decoder and fine-tuned tail, and the prior fitted
    again to the encoder's latents on training images."""
    from .import_bundle import load_codec_point
    from .train_codec import codec_device, image_batches

    point = load_codec_point(codec, Path(cfg["init_bundle"]), int(cfg.get("init_point", 0)))
    codec.eval()
    sub = images[:: max(1, len(images) // 8192)]
    lat = torch.cat([codec.enc(codec.source(x)) for x in image_batches(sub, 256, codec_device(codec), codec.prep)])
    with torch.enable_grad():
        bits_per = fit_prior(codec, lat.cpu(), gen=torch.Generator().manual_seed(int(cfg["seed"])))
    return dict(bundle=str(cfg["init_bundle"]), point=point["index"], label=point["label"],
                bundle_top1=point["top1"], bundle_bits=point["bitsPerImage"], prior_bits_per_symbol=round(bits_per, 4))


def target_cache(frozen, cfg: dict, x_all, y_all, prep, cache_dir: Path, prov: dict, val_hash: str, emit) -> TargetCache:
    """The frozen teacher's targets for the recipe's ``teacher_cache`` views, from
    ``<cache>/targets-<key>.pt`` when an earlier run (or start) made them."""
    stages = cfg["stages"]
    sal = any(float({**cfg, **s}["saliency"]) > 0 for s in stages)
    kd = any(float({**cfg, **s}["kd"]) > 0 for s in stages)
    key = json.dumps([prov["teacher"], prov["dataSha256"], val_hash, cfg.get("point"), int(cfg["teacher_cache"]),
                      int(cfg["seed"]), sal, kd, cfg["autocast"]], sort_keys=True)
    path = cache_dir / f"targets-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    if path.exists():
        c = torch.load(path, map_location="cpu")
        emit(event="cache", loaded=str(path))
        return TargetCache(c["params"], c["t"], c["sal"], c["logits"])
    c = TargetCache.build(frozen, x_all, y_all, prep, int(cfg["teacher_cache"]), int(cfg["seed"]), sal, kd,
                          autocast=cfg["autocast"] == "bf16", log=emit)
    path.parent.mkdir(parents=True, exist_ok=True)
    from .train import save_atomic

    save_atomic(dict(params=c.params, t=c.t, sal=c.sal, logits=c.logits), path)
    return c
