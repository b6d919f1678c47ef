"""What a codec run learns from, kept apart from the training loop (train_codec.py).

* ``validation_split``: the fixed, seeded hold-out of the training split that decides
  every choice of a codec run (rate weight, epochs, which checkpoint ships); the test
  split only gives final numbers. Recorded by the sha256 of its index list.
* ``FrozenTargets``: a frozen copy of the teacher's original tail, taken before any
  stage fine-tunes the codec's own tail. Saliency maps and distillation logits come
  from it, so the targets do not move while the tail being fine-tuned learns.
* ``TargetCache``: the frozen teacher's outputs (split tensor, saliency, logits) for a
  fixed set of augmented views of every training image, computed once per run instead
  of in every step; each epoch draws one view per image.
* ``provenance``: seed, data sha256, validation split, teacher bundle and hash, code
  commit, torch version, device and CPU/GPU minutes of a run, for its manifest.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

VAL_SIZE = 5000
VAL_SEED = 20261206


def validation_split(n: int, size: int = VAL_SIZE, seed: int = VAL_SEED) -> tuple[np.ndarray, np.ndarray, str]:
    """(train indices, validation indices, sha256 of the validation index list) of a
    training split of `n` images: `size` images drawn by a seeded permutation, both
    lists sorted. Data sets with fewer than 2 x `size` images hold out a tenth."""
    if size <= 0:
        return np.arange(n), np.zeros(0, dtype=np.int64), ""
    if n < 2 * size:
        size = max(1, n // 10)
    perm = np.random.default_rng(seed).permutation(n)
    val = np.sort(perm[:size]).astype(np.int64)
    train = np.sort(perm[size:]).astype(np.int64)
    return train, val, split_hash(val)


def split_hash(idx: np.ndarray) -> str:
    return hashlib.sha256(",".join(str(int(i)) for i in idx).encode()).hexdigest()


def augment_params(n: int, h: int, w: int, gen: torch.Generator):
    """Random crop offsets (reflect pad of 1/8 of the side) and flips of `n` images, in
    the order train.augment draws them."""
    ph, pw = max(1, h // 8), max(1, w // 8)
    ox = torch.randint(0, 2 * pw + 1, (n,), generator=gen)
    oy = torch.randint(0, 2 * ph + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    return ox, oy, flip


def apply_augment(x: torch.Tensor, ox: torch.Tensor, oy: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Crop at (oy, ox) of the reflect-padded images and flip: uint8 NCHW -> float NCHW."""
    n, _, h, w = x.shape
    ph, pw = max(1, h // 8), max(1, w // 8)
    padded = F.pad(x.float(), (pw, pw, ph, ph), mode="reflect")
    out = torch.empty_like(x, dtype=torch.float32)
    for i in range(n):
        crop = padded[i, :, oy[i] : oy[i] + h, ox[i] : ox[i] + w]
        out[i] = crop.flip(2) if flip[i] else crop
    return out


class FrozenTargets:
    """The teacher's head and a frozen copy of its original tail (never trained)."""

    def __init__(self, teacher: torch.nn.Module):
        self.head = teacher.head
        self.tail = copy.deepcopy(teacher.tail)
        self.tail.eval()
        for p in self.tail.parameters():
            p.requires_grad_(False)

    def saliency(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Grad-CAM (Selvaraju et al. 2017) of the true class at the split tensor, through
        the frozen tail, normalized to mean 1 per image: (B, H, W)."""
        t = t.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.tail(t)
            (g,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), t)
        cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * t).sum(1)).detach()
        return cam / (cam.mean(dim=(1, 2), keepdim=True) + 1e-6)

    def compute(self, x: torch.Tensor, y: torch.Tensor, sal: bool, logits: bool):
        """(split tensor, saliency or None, teacher logits or None) of normalized images."""
        with torch.no_grad():
            t = self.head(x)
            lg = self.tail(t) if logits else None
        s = self.saliency(t, y) if sal else None
        return t, s, lg


class TargetCache:
    """The frozen teacher's targets for `views` fixed augmented views of every training
    image (view 0: the image itself; view 1: flipped; further views: seeded random crops
    and flips). Split tensors are kept in bfloat16 (the training steps run under
    bfloat16 autocast or cast them anyway); saliency and logits in float32."""

    def __init__(self, params: list, t: torch.Tensor, sal: torch.Tensor | None, logits: torch.Tensor | None):
        self.params, self.t, self.sal, self.logits = params, t, sal, logits

    @property
    def views(self) -> int:
        return len(self.params)

    @staticmethod
    def build(targets: FrozenTargets, x_all: torch.Tensor, y_all: torch.Tensor, prep, views: int, seed: int,
              sal: bool, logits: bool, batch: int = 256, autocast: bool = False, log=None) -> "TargetCache":
        n, _, h, w = x_all.shape
        gen = torch.Generator().manual_seed(seed)
        params = []
        for v in range(views):
            if v == 0:
                p = (torch.full((n,), max(1, w // 8)), torch.full((n,), max(1, h // 8)), torch.zeros(n, dtype=torch.bool))
            elif v == 1:
                p = (torch.full((n,), max(1, w // 8)), torch.full((n,), max(1, h // 8)), torch.ones(n, dtype=torch.bool))
            else:
                p = augment_params(n, h, w, gen)
            params.append(p)
        ts, ss, ls = [], [], []
        t0 = time.time()
        for v, (ox, oy, fl) in enumerate(params):
            tv, sv, lv = [], [], []
            for i in range(0, n, batch):
                sl = slice(i, i + batch)
                x = prep.normalize(apply_augment(x_all[sl], ox[sl], oy[sl], fl[sl]))
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    t, s, lg = targets.compute(x, y_all[sl], sal, logits)
                tv.append(t.to(torch.bfloat16))
                if s is not None:
                    sv.append(s.float())
                if lg is not None:
                    lv.append(lg.float())
            ts.append(torch.cat(tv))
            ss.append(torch.cat(sv) if sv else None)
            ls.append(torch.cat(lv) if lv else None)
            if log:
                log(event="cache", view=v + 1, views=views, seconds=round(time.time() - t0, 1))
        return TargetCache(
            params, torch.stack(ts), torch.stack(ss) if sal else None, torch.stack(ls) if logits else None
        )

    def batch(self, idx: torch.Tensor, view: torch.Tensor, x_all: torch.Tensor, prep, with_images: bool):
        """Targets of training images `idx`, each in its view: (images or None, t, sal, logits)."""
        t = self.t[view, idx].float()
        s = self.sal[view, idx] if self.sal is not None else None
        lg = self.logits[view, idx] if self.logits is not None else None
        x = None
        if with_images:
            ox = torch.stack([self.params[v][0][i] for v, i in zip(view.tolist(), idx.tolist())])
            oy = torch.stack([self.params[v][1][i] for v, i in zip(view.tolist(), idx.tolist())])
            fl = torch.stack([self.params[v][2][i] for v, i in zip(view.tolist(), idx.tolist())])
            x = prep.normalize(apply_augment(x_all[idx], ox, oy, fl))
        return x, t, s, lg


def file_sha256(path: str | Path) -> str | None:
    """sha256 of a file (None for a folder)."""
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def code_commit() -> str | None:
    """The git commit of the toolkit's checkout, '+dirty' when its Python files differ."""
    root = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=root, capture_output=True, text=True,
                               timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def teacher_source(teacher: str | Path) -> dict:
    """The bundle a teacher run was rebuilt from (import_bundle.py) or the bundle itself:
    name, version and the sha256 of its manifest (which pins every file's sha256)."""
    t = Path(teacher)
    if (t / "manifest.json").exists() and not (t / "final.pt").exists():
        raw = (t / "manifest.json").read_bytes()
        m = json.loads(raw)
        return dict(bundle=m.get("name"), version=m.get("version"), manifestSha256=hashlib.sha256(raw).hexdigest())
    st = torch.load(t / "final.pt", map_location="cpu")
    src = st.get("source") or {}
    m = src.get("manifest") or {}
    sha = src.get("manifestSha256")
    if sha is None and src.get("bundle") and (Path(src["bundle"]) / "manifest.json").exists():
        sha = hashlib.sha256((Path(src["bundle"]) / "manifest.json").read_bytes()).hexdigest()
    return dict(run=str(t), bundle=m.get("name"), version=m.get("version"), manifestSha256=sha)
