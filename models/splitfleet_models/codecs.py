"""Learned feature codecs around a trained backbone (nets.py), one class per method.

Every codec has the same two halves, which export.py turns into two ONNX files:

* ``device(x)``: the image (normalized) -> integer symbols (a float tensor of whole
  numbers), everything the device runs: backbone head (if any) + encoder + quantizer.
* ``edge(symbols)``: symbols -> logits: dequantizer + decoder + the backbone's tail.

Channels a device does not send arrive as the symbol -1 (the TypeScript codec fills
them), so one AECNN model serves every k. ``forward(x)`` is the training pass and
returns what the losses need.

* ``BottleNetPP``: Shao & Zhang, "BottleNet++: An end-to-end approach for feature
  compression in device-edge co-inference systems" (ICC workshops 2020): a strided
  convolution shrinking channels and space, batch norm, sigmoid, 8-bit quantization;
  a mirrored transposed-convolution decoder. No entropy coding.
* ``AECNN``: Li, Iosifidis, Zhang, "Attention-based feature compression for CNN
  inference offloading in edge computing" (2022): squeeze-and-excitation channel
  attention ranks the split tensor's channels, the top k are kept, encoded by a light
  per-channel (depthwise) convolution, quantized to n bits and entropy-coded; a
  lightweight decoder rebuilds the full tensor. Our extension: the kept channels are
  ordered by rank and trained with nested dropout over k, so one model serves many k.
* ``FrankenSplit``: Furutanpey, Raith, Dustdar, "FrankenSplit: Efficient neural feature
  compression with shallow variational bottleneck injection for mobile edge computing"
  (2023): a shallow encoder on the raw image, a factorized-prior entropy bottleneck and
  a decoder that restores the teacher's deeper tensor, so the teacher's tail finishes.
* ``SplitFleet`` (ours): the same variational bottleneck, but at a deep split: the
  device runs the teacher's own head up to `point` (unchanged, so it is the head of the
  plain split model), a small encoder codes that tensor into a factorized-prior latent
  at half its resolution, the edge decoder restores the tensor and the teacher's tail,
  fine-tuned on restored tensors in a joint stage, finishes. It spends device compute
  (the teacher head) to cut the rate far below what an encoder on raw pixels reaches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .entropy import FactorizedPrior
from .nets import SplitNet


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Rounding with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


def register_out_scale(codec: nn.Module) -> None:
    """Every decoder's output is multiplied by ``codec.out_scale``: the root mean square
    of the teacher tensor it restores, set from training images before training starts
    (train_codec.py), so the decoder works at unit scale. Without it the decoders started
    7x off the features' power and Adam needed most of an epoch to shrink their last
    scale (measured)."""
    codec.register_buffer("out_scale", torch.ones(()))


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al., ICLR 2016), simplified: one
    1x1 convolution of squares, parameters kept positive by softplus."""

    def __init__(self, c: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.zeros(c) + 0.5413)  # softplus -> 1
        self.gamma = nn.Parameter(torch.eye(c).reshape(c, c, 1, 1) * 0.1 - 2.25)  # softplus ~ 0.1

    def forward(self, x):
        norm = F.conv2d(x * x, F.softplus(self.gamma), F.softplus(self.beta) + 1e-6)
        norm = torch.sqrt(norm)
        return x * norm if self.inverse else x / norm


class FrozenTeacher(nn.Module):
    """The backbone split at `point`: head and tail, weights frozen. `net` is a SplitNet,
    or None with `head` and `tail` given as modules (an imported ONNX bundle's halves run
    by onnx_torch.OnnxModule)."""

    def __init__(self, net: SplitNet | None, point: str, head: nn.Module | None = None, tail: nn.Module | None = None):
        super().__init__()
        self.point = point
        self.head = net.head(point) if net is not None else head
        self.tail = net.tail(point) if net is not None else tail
        for p in self.parameters():
            p.requires_grad_(False)


class BottleNetPP(nn.Module):
    method = "bottlenetpp"
    # the device half runs the teacher's head before the encoder (import_bundle checks it)
    head_on_device = True

    def __init__(self, teacher: FrozenTeacher, cin: int, channels: int):
        super().__init__()
        self.teacher = teacher
        register_out_scale(self)
        self.channels = channels
        self.enc = nn.Sequential(nn.Conv2d(cin, channels, 3, 2, 1), nn.BatchNorm2d(channels), nn.Sigmoid())
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(channels, cin, 3, 2, 1, output_padding=1),
            nn.BatchNorm2d(cin),
            nn.ReLU(),
        )

    def device(self, x):
        return torch.round(self.enc(self.teacher.head(x)) * 255.0)

    def edge(self, symbols):
        return self.teacher.tail(self.dec(symbols.clamp(0, 255) / 255.0) * self.out_scale)

    def forward(self, x):
        with torch.no_grad():
            f = self.teacher.head(x)
        z = ste_round(self.enc(f) * 255.0) / 255.0
        rebuilt = self.dec(z) * self.out_scale
        return dict(logits=self.teacher.tail(rebuilt), features=f, rebuilt=rebuilt)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): one weight in (0, 1) per channel."""

    def __init__(self, c: int, reduction: int = 4):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c, c // reduction), nn.ReLU(), nn.Linear(c // reduction, c), nn.Sigmoid())

    def forward(self, f):
        return self.fc(f.mean(dim=(2, 3)))


class AECNN(nn.Module):
    method = "aecnn"
    head_on_device = True

    def __init__(self, teacher: FrozenTeacher, cin: int, kmax: int, bits: int, ks: list[int]):
        super().__init__()
        self.teacher = teacher
        register_out_scale(self)
        self.kmax, self.bits, self.ks = kmax, bits, list(ks)
        self.levels = (1 << bits) - 1
        self.attention = ChannelAttention(cin)
        # rank of channels by mean attention on the training set (set after stage 2)
        self.register_buffer("order", torch.arange(cin))
        self.enc = nn.Sequential(
            nn.Conv2d(kmax, kmax, 3, 2, 1, groups=kmax),
            nn.ReLU(),
            nn.Conv2d(kmax, kmax, 3, 1, 1, groups=kmax),
            # batch norm before the sigmoid spreads the code over the 2^bits levels:
            # without it the initial outputs sat within half a level of 0.5 and
            # rounding erased them (measured: outputs 0.29-0.66, top-1 at chance)
            nn.BatchNorm2d(kmax),
            nn.Sigmoid(),
        )
        hid = 2 * cin
        # no batch norm in the decoder: its statistics depend on how many channels
        # arrive, so running statistics averaged over the k of nested dropout did not
        # fit any one k (train loss 1.68, test top-1 at chance after the joint stage)
        self.dec = nn.Sequential(
            nn.Conv2d(2 * kmax, hid, 3, 1, 1),
            nn.ReLU(),
            # nearest 2x upsampling + 3x3 convolution rather than a transposed
            # convolution: the same receptive field, and PyTorch's CPU transposed
            # convolution was 15x slower here (4.3 s vs 0.27 s per batch of 128)
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(hid, hid, 3, 1, 1),
            nn.ReLU(),
            # linear output: a final ReLU here died in the first steps at full scale
            # (every output 0, top-1 at chance; the tail's first convolution takes
            # any sign, and the MSE term pulls the output to the teacher's range)
            nn.Conv2d(hid, cin, 3, 1, 1),
        )

    def attend(self, f):
        return f * self.attention(f)[:, :, None, None]

    def select(self, f):
        return self.attend(f)[:, self.order[: self.kmax]]

    def device(self, x):
        return torch.round(self.enc(self.select(self.teacher.head(x))) * self.levels)

    def _decode(self, z, mask):
        return self.dec(torch.cat([z * mask, mask], 1)) * self.out_scale

    def edge(self, symbols):
        mask = (symbols >= 0).float()
        return self.teacher.tail(self._decode(symbols.clamp_min(0) / self.levels, mask))

    def forward(self, x, k: int | None = None, stage: str = "codec"):
        with torch.no_grad():
            f = self.teacher.head(x)
        if stage == "attention":
            return dict(logits=self.teacher.tail(self.attend(f)), attention=self.attention(f))
        z = ste_round(self.enc(self.select(f)) * self.levels) / self.levels
        k = self.kmax if k is None else k
        mask = torch.zeros_like(z)
        mask[:, :k] = 1.0
        rebuilt = self._decode(z, mask)
        return dict(logits=self.teacher.tail(rebuilt), features=f, rebuilt=rebuilt, symbols=z * self.levels)


class VariationalBottleneck(nn.Module):
    """Shared by FrankenSplit and SplitFleet: ``source(x)`` -> ``enc`` -> factorized
    prior (noise in training, rounding at export) -> ``dec`` x out_scale -> tail."""

    teacher: FrozenTeacher
    enc: nn.Module
    dec: nn.Module
    prior: FactorizedPrior

    # `source` is the image itself: no teacher head on the device (FrankenSplit)
    head_on_device = False

    def source(self, x):
        return x

    def device(self, x):
        return torch.round(self.enc(self.source(x)))

    def edge(self, symbols):
        return self.teacher.tail(self.dec(symbols) * self.out_scale)

    # decoder input in training: False = the prior's noisy latent (y + U(-1/2, 1/2));
    # True = the rounded latent with a straight-through gradient, what the decoder gets
    # at export (the rate term keeps the noisy likelihood either way)
    ste = False

    def forward(self, x, logits: bool = True, src: torch.Tensor | None = None):
        """Training pass; `logits=False` skips the teacher's tail (feature distillation
        alone does not need it); `src` gives ``source(x)`` when it is known (the
        frozen teacher's split tensor from a target cache)."""
        y = self.enc(self.source(x) if src is None else src)
        y_hat, lik = self.prior(y)
        if self.training and self.ste:
            y_hat = ste_round(y)
        restored = self.dec(y_hat) * self.out_scale
        out = dict(restored=restored, likelihoods=lik)
        if logits:
            out["logits"] = self.teacher.tail(restored)
        return out


class FrankenSplit(VariationalBottleneck):
    method = "frankensplit"

    def __init__(
        self, teacher: FrozenTeacher, target_channels: int, down: int, latent: int, hidden: int, wide: int | None = None
    ):
        """`down`: how much smaller the teacher's tensor is than the image (2, 4 or 8);
        the encoder reaches it with that many stride-2 steps. `wide`: the decoder's
        width (default twice the teacher's channels); it runs on the edge, so it costs
        the device nothing, but it sets the training time."""
        super().__init__()
        if down not in (2, 4, 8):
            raise ValueError(f"FrankenSplit: target downsampling {down} is not 2, 4 or 8")
        self.teacher = teacher
        register_out_scale(self)
        self.latent = latent
        self.enc = nn.Sequential(
            nn.Conv2d(3, hidden, 5, 2, 2),
            GDN(hidden),
            nn.Conv2d(hidden, hidden, 3, 2 if down >= 8 else 1, 1),
            GDN(hidden),
            nn.Conv2d(hidden, latent, 5, 2 if down >= 4 else 1, 2),
        )
        self.prior = FactorizedPrior(latent)
        wide = wide or 2 * target_channels
        self.dec = nn.Sequential(
            nn.Conv2d(latent, wide, 3, 1, 1),
            GDN(wide, inverse=True),
            nn.Conv2d(wide, wide, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(wide, target_channels, 3, 1, 1),
            nn.ReLU(),
        )


class SplitFleet(VariationalBottleneck):
    method = "splitfleet"
    head_on_device = True  # `source` is the teacher's head

    def __init__(self, teacher: FrozenTeacher, channels: int, latent: int, hidden: int, wide: int):
        """`channels`: the teacher tensor at the split point (C x H x W, H and W even);
        the latent is `latent` x H/2 x W/2."""
        super().__init__()
        self.teacher = teacher
        register_out_scale(self)
        self.latent = latent
        self.enc = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, 1, 1),
            GDN(hidden),
            nn.Conv2d(hidden, latent, 3, 2, 1),
        )
        self.prior = FactorizedPrior(latent)
        self.dec = nn.Sequential(
            nn.Conv2d(latent, wide, 3, 1, 1),
            GDN(wide, inverse=True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(wide, wide, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(wide, channels, 3, 1, 1),
            nn.ReLU(),
        )

    def source(self, x):
        # the teacher's head, frozen: no gradient flows into it
        with torch.no_grad():
            return self.teacher.head(x)


class Half(nn.Module):
    """One exported half of a codec: side "device" (image -> symbols) or "edge"."""

    def __init__(self, codec: nn.Module, side: str):
        super().__init__()
        if side not in ("device", "edge"):
            raise ValueError(side)
        self.codec, self.side = codec, side

    def forward(self, x):
        return getattr(self.codec, self.side)(x)
