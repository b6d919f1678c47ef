"""Input preprocessing: the single definition shared by training, export and the manifest.

A decoded 32x32 RGB image (uint8, HWC) becomes float32 NCHW: x / 255, then per-channel
(x - mean) / std. The TypeScript side (core/image/image.ts) reads SIZE, MEAN and STD from
the bundle manifest.

`"resize": "none"` in the manifest: the network was trained on images of exactly SIZE,
never resized. An image of another size (a camera frame) is brought to SIZE by `fit`:
scaled so that it covers SIZE (integer arithmetic for the scaled size), antialiased
bilinear (torch's interpolate with antialias=True, PIL's filter), then center-cropped
(offsets rounded down). core/image/image.ts does the same; test/device/preprocess-parity
holds the two together.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SIZE = (32, 32)

# Per-channel statistics of the CIFAR-10 training set (pixels / 255).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

_MEAN = torch.tensor(MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(STD).view(1, 3, 1, 1)


def normalize_batch(x: torch.Tensor) -> torch.Tensor:
    """x: float NCHW in 0..255."""
    return (x / 255.0 - _MEAN.to(x.device)) / _STD.to(x.device)


def fit_size(h: int, w: int, size: tuple[int, int] = SIZE) -> tuple[int, int]:
    """The size an h x w image is scaled to before the center crop: it covers `size`."""
    th, tw = size
    if th * w >= tw * h:
        return th, max(tw, (w * th) // h)
    return max(th, (h * tw) // w), tw


def fit(x: torch.Tensor, size: tuple[int, int] = SIZE) -> torch.Tensor:
    """x: float NCHW (0..255) of any size -> float NCHW of `size` (see the module doc)."""
    h, w = x.shape[-2:]
    th, tw = size
    if (h, w) == (th, tw):
        return x
    rh, rw = fit_size(h, w, size)
    if (rh, rw) != (h, w):
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (rh - th) // 2, (rw - tw) // 2
    return x[..., top : top + th, left : left + tw]


def preprocess_image(rgb: np.ndarray, size: tuple[int, int] = SIZE) -> torch.Tensor:
    """A decoded RGB image (uint8 HWC, any size) -> the model's float32 [1, 3, H, W]."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).float()
    return normalize_batch(fit(x, size))


def manifest_entry() -> dict:
    return {
        "layout": "NCHW",
        "size": list(SIZE),
        "colorSpace": "RGB",
        "pixelDivisor": 255,
        "mean": list(MEAN),
        "std": list(STD),
        "resize": "none",
    }
