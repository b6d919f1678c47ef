"""Input preprocessing: the single definition shared by training, export and the manifest.

A decoded RGB image (uint8, HWC) becomes float32 NCHW of the model's SIZE (H, W):

1. brought to SIZE: with ``resize=None`` (manifest ``"resize": "none"``) it is scaled so
   that it just covers SIZE; with ``resize=S`` (manifest ``"resize": "shorter"``,
   ``"resizeShorter": S``, the usual ImageNet "resize 256, crop 224") its shorter side
   is scaled to S. Either way the scaled size uses integer arithmetic, the filter is
   antialiased bilinear (torch's interpolate with antialias=True, PIL's filter), and the
   result is center-cropped to SIZE (offsets rounded down); an image already of SIZE is
   used as is when ``resize`` is None;
2. x / 255, then per-channel (x - mean) / std.

The TypeScript side (core/image/image.ts) reads size, mean, std and resize from the
bundle manifest; test/device/preprocess-parity holds the two together for
``"resize": "none"``.

The defaults are CIFAR-10's (32x32, its training-set statistics); torchvision
backbones and imported ONNX classifiers default to IMAGENET_MEAN / IMAGENET_STD.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

SIZE = (32, 32)

# Per-channel statistics of the CIFAR-10 training set (pixels / 255).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

# The statistics torchvision's ImageNet weights (and most ONNX classifiers) expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    size: tuple[int, int] = SIZE
    resize: int | None = None  # shorter side before the center crop; None: just cover `size`
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD

    def __post_init__(self):
        h, w = self.size
        if h < 1 or w < 1:
            raise ValueError(f"input size {h}x{w}: both sides must be positive")
        if self.resize is not None and self.resize < min(h, w):
            raise ValueError(f"resize {self.resize} is smaller than the crop {h}x{w}")
        if self.resize is not None and h == w == self.resize:
            object.__setattr__(self, "resize", None)  # the same as covering SIZE
        object.__setattr__(self, "size", (int(h), int(w)))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean {self.mean} / std {self.std}: three values each, std > 0")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_batch(x, self.mean, self.std)

    def fit(self, x: torch.Tensor) -> torch.Tensor:
        return fit(x, self.size, self.resize)

    def image(self, rgb: np.ndarray) -> torch.Tensor:
        return preprocess_image(rgb, self.size, self.resize, self.mean, self.std)

    def manifest(self) -> dict:
        return manifest_entry(self)

    def as_dict(self) -> dict:
        return dict(size=list(self.size), resize=self.resize, mean=list(self.mean), std=list(self.std))

    @staticmethod
    def from_dict(d: dict | None) -> "Preprocessing":
        if not d:
            return Preprocessing()
        return Preprocessing(tuple(int(v) for v in d["size"]), d.get("resize") and int(d["resize"]),
                             tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))

    @staticmethod
    def from_manifest(p: dict) -> "Preprocessing":
        resize = int(p["resizeShorter"]) if p.get("resize") == "shorter" else None
        return Preprocessing(tuple(int(v) for v in p["size"]), resize,
                             tuple(float(v) for v in p["mean"]), tuple(float(v) for v in p["std"]))


def parse_size(s: str) -> tuple[int, int]:
    """'224x224', '224' -> (224, 224); 'HxW' -> (H, W)."""
    parts = s.lower().replace("×", "x").split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"size {s!r}: expected HxW, e.g. 224x224") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 1:
        raise ValueError(f"size {s!r}: expected HxW with positive integers, e.g. 224x224")
    return vals[0], vals[1]


def parse_triple(s: str, what: str) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in s.split(","))
    except ValueError:
        raise ValueError(f"{what} {s!r}: expected three numbers a,b,c") from None
    if len(vals) != 3:
        raise ValueError(f"{what} {s!r}: expected three numbers a,b,c")
    return vals  # type: ignore[return-value]


def normalize_batch(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """x: float NCHW in 0..255."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x / 255.0 - m) / s


def fit_size(h: int, w: int, size: tuple[int, int] = SIZE) -> tuple[int, int]:
    """The size an h x w image is scaled to before the center crop: it covers `size`."""
    th, tw = size
    if th * w >= tw * h:
        return th, max(tw, (w * th) // h)
    return max(th, (h * tw) // w), tw


def shorter_size(h: int, w: int, s: int) -> tuple[int, int]:
    """The size an h x w image is scaled to when its shorter side becomes `s`."""
    if h <= w:
        return s, max(s, (w * s) // h)
    return max(s, (h * s) // w), s


def fit(x: torch.Tensor, size: tuple[int, int] = SIZE, resize: int | None = None) -> torch.Tensor:
    """x: float NCHW (0..255) of any size -> float NCHW of `size` (see the module doc)."""
    h, w = x.shape[-2:]
    th, tw = size
    if resize is None:
        if (h, w) == (th, tw):
            return x
        rh, rw = fit_size(h, w, size)
    else:
        rh, rw = shorter_size(h, w, resize)
        if rh < th or rw < tw:
            rh, rw = fit_size(rh, rw, size)
    if (rh, rw) != (h, w):
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (rh - th) // 2, (rw - tw) // 2
    return x[..., top : top + th, left : left + tw]


def preprocess_image(rgb: np.ndarray, size: tuple[int, int] = SIZE, resize: int | None = None,
                     mean=MEAN, std=STD) -> torch.Tensor:
    """A decoded RGB image (uint8 HWC, any size) -> the model's float32 [1, 3, H, W]."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).float()
    return normalize_batch(fit(x, size, resize), mean, std)


def manifest_entry(p: Preprocessing | None = None) -> dict:
    """The manifest's ``preprocessing``. ``"resize": "none"`` is what every reader
    understands (cover SIZE, center crop); a shorter-side resize is written as
    ``"resize": "shorter"`` with ``"resizeShorter": S``."""
    p = p or Preprocessing()
    out = {
        "layout": "NCHW",
        "size": list(p.size),
        "colorSpace": "RGB",
        "pixelDivisor": 255,
        "mean": list(p.mean),
        "std": list(p.std),
        "resize": "none",
    }
    if p.resize is not None:
        out["resize"] = "shorter"
        out["resizeShorter"] = int(p.resize)
    return out
