"""ResNet-family backbones for 32x32 inputs, built as a chain of named stages.

A split point is the name of a stage: the head runs every stage up to and including it
on the device, the tail runs the rest on the edge. ``SplitNet.head(point)`` and
``SplitNet.tail(point)`` return modules that share the trained weights.

* ``resnet9``: the residual network of D. Page, "How to train your ResNet" (2018),
  used in the DAWNBench CIFAR-10 entries; ``width`` scales its channels.
* ``resnet20``: the CIFAR ResNet of He et al., "Deep Residual Learning" (2016), sec. 4.2.
* torchvision's ImageNet architectures (``TORCHVISION_ARCHS``: ResNet-18/34/50/101,
  MobileNetV2, MobileNetV3-Small/Large, EfficientNet-B0), any input size, any number of
  classes, from scratch or from a local checkpoint (``load_checkpoint``): ResNets split
  after ``stem`` (conv1 + bn + relu + maxpool), ``layer1`` .. ``layer4``; the others
  after ``features0`` .. ``featuresN`` (torchvision's ``features[i]``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x):
        return x + self.body(x)


class BasicBlock(nn.Module):
    """He et al. basic block with a 1x1 projection shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.short(x))


class Classifier(nn.Module):
    def __init__(self, c: int, classes: int, pool: str, scale: float):
        super().__init__()
        self.pool = nn.AdaptiveMaxPool2d(1) if pool == "max" else nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes, bias=pool != "max")
        self.scale = scale

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1)) * self.scale


class SplitNet(nn.Module):
    def __init__(self, stages: "OrderedDict[str, nn.Module]"):
        super().__init__()
        self.stages = nn.ModuleDict(stages)

    @property
    def points(self) -> list[str]:
        return list(self.stages.keys())[:-1]  # splitting after the classifier is no split

    def forward(self, x):
        for m in self.stages.values():
            x = m(x)
        return x

    def _index(self, point: str) -> int:
        names = list(self.stages.keys())
        if point not in self.points:
            raise ValueError(f"unknown split point {point!r}; choose one of {self.points}")
        return names.index(point)

    def head(self, point: str) -> nn.Sequential:
        mods = list(self.stages.values())
        return nn.Sequential(*mods[: self._index(point) + 1])

    def tail(self, point: str) -> nn.Sequential:
        mods = list(self.stages.values())
        return nn.Sequential(*mods[self._index(point) + 1 :])


def resnet9(width: float = 1.0, classes: int = 10) -> SplitNet:
    c = [int(round(w * width)) for w in (64, 128, 256, 512)]
    return SplitNet(
        OrderedDict(
            prep=conv_bn(3, c[0]),
            layer1=nn.Sequential(conv_bn(c[0], c[1]), nn.MaxPool2d(2), Residual(c[1])),
            layer2=nn.Sequential(conv_bn(c[1], c[2]), nn.MaxPool2d(2)),
            layer3=nn.Sequential(conv_bn(c[2], c[3]), nn.MaxPool2d(2), Residual(c[3])),
            classifier=Classifier(c[3], classes, "max", 0.125),
        )
    )


def resnet20(width: float = 1.0, classes: int = 10) -> SplitNet:
    c = [int(round(w * width)) for w in (16, 32, 64)]

    def stage(cin, cout, stride):
        return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1), BasicBlock(cout, cout, 1))

    return SplitNet(
        OrderedDict(
            stem=conv_bn(3, c[0]),
            stage1=stage(c[0], c[0], 1),
            stage2=stage(c[0], c[1], 2),
            stage3=stage(c[1], c[2], 2),
            classifier=Classifier(c[2], classes, "avg", 1.0),
        )
    )


ARCHS = {"resnet9": resnet9, "resnet20": resnet20}

TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v2", "mobilenet_v3_small",
                     "mobilenet_v3_large", "efficientnet_b0")


class CheckpointError(ValueError):
    """A checkpoint file that does not fit the architecture, with the reason."""


def _torchvision():
    try:
        import torchvision.models as tvm
    except ImportError:
        raise SystemExit("torchvision is needed for the ImageNet architectures: "
                         "apt-get install python3-torchvision (Debian) or pip install torchvision") from None
    return tvm


def torchvision_model(arch: str, classes: int) -> nn.Module:
    """torchvision's own network (its parameter names: the checkpoints' key names)."""
    return getattr(_torchvision(), arch)(num_classes=classes)


def wrap_torchvision(arch: str, m: nn.Module) -> SplitNet:
    """The torchvision network `m` as a chain of named stages sharing its modules."""
    if arch.startswith("resnet"):
        stages = OrderedDict(stem=nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool),
                             layer1=m.layer1, layer2=m.layer2, layer3=m.layer3, layer4=m.layer4,
                             classifier=nn.Sequential(m.avgpool, nn.Flatten(1), m.fc))
    else:
        stages = OrderedDict((f"features{i}", f) for i, f in enumerate(m.features))
        # MobileNetV2 pools in its forward(), not in a module
        pool = getattr(m, "avgpool", None) or nn.AdaptiveAvgPool2d(1)
        stages["classifier"] = nn.Sequential(pool, nn.Flatten(1), m.classifier)
    net = SplitNet(stages)
    net.arch = arch
    return net


def _tv_to_split_keys(arch: str, classes: int) -> dict[str, str]:
    """torchvision parameter name -> SplitNet parameter name, for `arch`."""
    m = torchvision_model(arch, classes)
    net = wrap_torchvision(arch, m)
    ids = {id(t): k for k, t in net.state_dict(keep_vars=True).items()}
    return {k: ids[id(t)] for k, t in m.state_dict(keep_vars=True).items() if id(t) in ids}


def _state_dict_of(obj, path) -> dict:
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict (a mapping of parameter names to tensors, "
                              "or a dict holding one under 'state_dict' or 'model')")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def load_checkpoint(net: SplitNet, arch: str, path, classes: int) -> list[str]:
    """Loads a local checkpoint into `net`: torchvision's own format (the .pth files of
    torchvision's weight URLs: its parameter names) or this toolkit's (final.pt, or its
    ``model`` state dict). A classifier made for another number of classes (ImageNet's
    1000) is left freshly initialized; any other missing, unexpected or misshapen
    parameter is an error naming it. Returns notes for the log."""
    path = str(path)
    try:
        raw = torch.load(path, map_location="cpu")
    except Exception as e:
        raise CheckpointError(f"{path}: cannot load ({type(e).__name__}: {e})") from None
    sd = _state_dict_of(raw, path)
    if not any(k.startswith("stages.") for k in sd):
        if arch not in TORCHVISION_ARCHS:
            raise CheckpointError(f"{path}: torchvision parameter names, but arch {arch} is not a torchvision one")
        mapping = _tv_to_split_keys(arch, classes)
        unknown = [k for k in sd if k not in mapping and not k.endswith("num_batches_tracked")]
        if unknown:
            raise CheckpointError(f"{path}: {len(unknown)} parameters are not in {arch} (e.g. {unknown[0]!r}); "
                                  "is it a checkpoint of another architecture?")
        sd = {mapping[k]: v for k, v in sd.items() if k in mapping}
    own = net.state_dict()
    notes, skipped, ck_classes = [], [], None
    last = [k for k in own if k.startswith("stages.classifier.")][-2:]  # the final layer's weight and bias
    for k in list(sd):
        if k in own and sd[k].shape != own[k].shape:
            if k in last:
                skipped.append(k)
                ck_classes = int(sd[k].shape[0])
                del sd[k]
            else:
                raise CheckpointError(f"{path}: parameter {k} has shape {tuple(sd[k].shape)}, "
                                      f"the network {tuple(own[k].shape)}")
    if skipped:
        notes.append(f"classifier re-initialized for {classes} classes (the checkpoint's has {ck_classes})")
    missing = [k for k in own if k not in sd and k not in skipped and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"{path}: does not fit {arch}: {what}")
    net.load_state_dict(sd, strict=False)
    return notes


def build(arch: str, width: float = 1.0, classes: int = 10) -> SplitNet:
    if arch in TORCHVISION_ARCHS:
        return wrap_torchvision(arch, torchvision_model(arch, classes))
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS) + list(TORCHVISION_ARCHS)}")
    return ARCHS[arch](width=width, classes=classes)


def describe(cfg: dict) -> str:
    """The manifest's `arch` of a training config."""
    if cfg["arch"] in TORCHVISION_ARCHS:
        return f"torchvision {cfg['arch']}"
    return f"{cfg['arch']}(width={cfg['width']})"


def count_macs(model: nn.Module, shape=(1, 3, 32, 32)) -> int:
    """Multiply-accumulates of conv and linear layers for one input (hooks, no tracing)."""
    total = 0

    def conv_hook(m, inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.numel() // out.shape[0] * k

    def lin_hook(m, inp, out):
        nonlocal total
        total += m.in_features * m.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(shape))
    model.train(was)
    for h in hooks:
        h.remove()
    return total


def fast_layout(model: nn.Module) -> torch.memory_format:
    """The memory format to train and evaluate `model` in on CPU.

    channels_last halves the step time of these convolutions (measured here), but
    Debian's PyTorch 1.13 aborts with heap corruption ("double free or corruption") in
    the backward pass of channels_last convolutions narrower than 8 channels (measured
    on an AMD EPYC without AVX-512: resnet20 at width 0.25 crashes, 0.5 and 1 run), so
    such narrow networks stay in the contiguous format."""
    narrow = min((m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)), default=0)
    return torch.channels_last if narrow >= 8 else torch.contiguous_format
