"""Input preprocessing: the single definition shared by training, export and the manifest.

A decoded 32x32 RGB image (uint8, HWC) becomes float32 NCHW: x / 255, then per-channel
(x - mean) / std. The TypeScript side reads MEAN and STD from the bundle manifest.
"""

from __future__ import annotations

import torch

# Per-channel statistics of the CIFAR-10 training set (pixels / 255).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

_MEAN = torch.tensor(MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(STD).view(1, 3, 1, 1)


def normalize_batch(x: torch.Tensor) -> torch.Tensor:
    """x: float NCHW in 0..255."""
    return (x / 255.0 - _MEAN.to(x.device)) / _STD.to(x.device)


def manifest_entry() -> dict:
    return {
        "layout": "NCHW",
        "size": [32, 32],
        "colorSpace": "RGB",
        "pixelDivisor": 255,
        "mean": list(MEAN),
        "std": list(STD),
        "resize": "none",
    }
