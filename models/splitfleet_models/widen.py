"""Start a codec from a trained one whose layers are narrower (Net2Net's idea, Chen et
al., ICLR 2016, with zero-initialised fan-out instead of replicated units): every
parameter of the same shape is copied; a grown one keeps its trained block in its
leading slice, and what the new channels feed into the old ones starts at zero (for a
GDN's ``gamma``, at a raw value whose softplus is ~2e-9), so the wider codec computes
what the narrower one did, to float precision, before its first step. The new channels'
own weights keep their fresh initialisation and learn from there.
"""

from __future__ import annotations

import torch

# softplus(-20) ~ 2e-9: a GDN cross term that is off
_GDN_OFF = -20.0


def widen_state(fresh: dict[str, torch.Tensor], old: dict[str, torch.Tensor]) -> tuple[dict, list[str]]:
    """The state dict to load into a codec whose fresh state is `fresh`, taken from the
    trained `old`; returns it and the names of the parameters that grew. Raises
    ValueError when a parameter is missing from `old` or shrank."""
    out: dict[str, torch.Tensor] = {}
    grown: list[str] = []
    for name, new in fresh.items():
        if name not in old:
            raise ValueError(f"widen: {name} is not in the trained codec")
        src = old[name]
        if src.shape == new.shape:
            out[name] = src.clone()
            continue
        if src.dim() != new.dim() or any(a > b for a, b in zip(src.shape, new.shape)):
            raise ValueError(f"widen: {name} {tuple(src.shape)} does not fit in {tuple(new.shape)}")
        w = new.clone()
        if name.endswith("gamma") and src.dim() == 4:
            c0 = src.shape[1]
            w[: src.shape[0], c0:] = _GDN_OFF
        elif src.dim() == 4 and src.shape[1] < new.shape[1]:
            w[:, src.shape[1]:] = 0.0  # new input channels: no effect on any output yet
        w[tuple(slice(0, d) for d in src.shape)] = src
        out[name] = w
        grown.append(name)
    return out, grown
