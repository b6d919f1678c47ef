"""Run an ONNX graph with PyTorch: a small interpreter, no onnxruntime needed.

``OnnxModule(model)`` is an ``nn.Module`` whose forward walks the graph node by node
with torch functional ops; the graph's float initializers become parameters (trainable
with ``trainable=True``: a learned codec's joint stage fine-tunes an imported tail this
way) or buffers. It serves three purposes: the exporters check that an exported ONNX
file computes what the PyTorch network computes; ``import_onnx`` checks that
tail(head(x)) equals the full model; and learned codecs train around an imported ONNX
teacher. It covers the operators of classifiers exported by torch.onnx and the usual
ONNX model zoos (convolutions, batch norm, pooling, activations, Gemm/MatMul, shape
arithmetic); any other operator raises ``OnnxOpError`` naming it.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn


class OnnxOpError(ValueError):
    pass


_DTYPES = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.BOOL: torch.bool,
}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _tensor(t: onnx.TensorProto) -> torch.Tensor:
    return torch.from_numpy(np.array(numpy_helper.to_array(t)))


def _pads2d(pads, x: torch.Tensor, value: float = 0.0):
    """ONNX pads [top, left, bottom, right] -> (symmetric padding, x padded if asymmetric)."""
    if not pads:
        return (0, 0), x
    t, l, b, r = pads
    if t == b and l == r:
        return (t, l), x
    return (0, 0), F.pad(x, (l, r, t, b), value=value)


def _same_pads(auto_pad: str, in_hw, kernel, strides, dilations):
    pads_begin, pads_end = [], []
    for n, k, s, d in zip(in_hw, kernel, strides, dilations):
        out = math.ceil(n / s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
        small, big = total // 2, total - total // 2
        if auto_pad == "SAME_UPPER":
            pads_begin.append(small)
            pads_end.append(big)
        else:
            pads_begin.append(big)
            pads_end.append(small)
    return pads_begin + pads_end


def _spatial(a: dict, x: torch.Tensor, kernel):
    strides = list(a.get("strides", [1, 1]))
    dilations = list(a.get("dilations", [1, 1]))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(auto, x.shape[2:], kernel, strides, dilations)
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    else:
        pads = list(a.get("pads", [0, 0, 0, 0]))
    return strides, dilations, pads


def _axes(node_inputs, env, a, idx: int):
    if len(node_inputs) > idx and node_inputs[idx]:
        return [int(v) for v in env[node_inputs[idx]].tolist()]
    return list(a["axes"]) if "axes" in a else None


class OnnxModule(nn.Module):
    """One ONNX graph (one input, one output) as a torch module; see the module doc."""

    def __init__(self, model: onnx.ModelProto, trainable: bool = False):
        super().__init__()
        g = model.graph
        init_names = {t.name for t in g.initializer}
        inputs = [i.name for i in g.input if i.name not in init_names]
        if len(inputs) != 1 or len(g.output) != 1:
            raise OnnxOpError(f"one input and one output expected, got {inputs} -> {[o.name for o in g.output]}")
        self.input_name, self.output_name = inputs[0], g.output[0].name
        self.nodes = list(g.node)
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self._keys: dict[str, str] = {}
        self.params = nn.ParameterDict()
        for i, t in enumerate(g.initializer):
            v = _tensor(t)
            key = f"t{i}"
            self._keys[t.name] = key
            if v.is_floating_point():
                self.params[key] = nn.Parameter(v.float(), requires_grad=trainable)
            else:
                self.register_buffer(key, v)
        unknown = sorted({n.op_type for n in self.nodes if n.domain not in ("", "ai.onnx")
                          or not hasattr(self, f"op_{n.op_type}")})
        if unknown:
            raise OnnxOpError(f"ONNX operators not supported by the PyTorch interpreter: {', '.join(unknown)}")

    def _init(self, name: str) -> torch.Tensor:
        key = self._keys[name]
        return self.params[key] if key in self.params else getattr(self, key)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {name: self._init(name) for name in self._keys}
        env[self.input_name] = x
        for node in self.nodes:
            ins = [env[i] if i else None for i in node.input]
            outs = getattr(self, f"op_{node.op_type}")(ins, _attrs(node), node, env)
            if not isinstance(outs, (list, tuple)):
                outs = [outs]
            for name, v in zip(node.output, outs):
                if name:
                    env[name] = v
        return env[self.output_name]

    # -- operators ----------------------------------------------------------------------

    def op_Conv(self, ins, a, node, env):
        x, w = ins[0], ins[1]
        b = ins[2] if len(ins) > 2 else None
        if x.dim() != 4:
            raise OnnxOpError(f"Conv {node.name}: only 2-D convolutions are supported")
        strides, dil, pads = _spatial(a, x, w.shape[2:])
        pad, x = _pads2d(pads, x)
        return F.conv2d(x, w, b, tuple(strides), pad, tuple(dil), int(a.get("group", 1)))

    def op_ConvTranspose(self, ins, a, node, env):
        x, w = ins[0], ins[1]
        b = ins[2] if len(ins) > 2 else None
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            raise OnnxOpError(f"ConvTranspose {node.name}: asymmetric pads")
        return F.conv_transpose2d(x, w, b, tuple(a.get("strides", [1, 1])), tuple(pads[:2]),
                                  tuple(a.get("output_padding", [0, 0])), int(a.get("group", 1)),
                                  tuple(a.get("dilations", [1, 1])))

    def op_BatchNormalization(self, ins, a, node, env):
        x, scale, bias, mean, var = ins[:5]
        return F.batch_norm(x, mean, var, scale, bias, False, 0.0, float(a.get("epsilon", 1e-5)))

    def _pool(self, ins, a, node, kind):
        x = ins[0]
        k = list(a["kernel_shape"])
        strides, dil, pads = _spatial(a, x, k)
        ceil = bool(a.get("ceil_mode", 0))
        if kind == "max":
            pad, x = _pads2d(pads, x, value=-math.inf)
            return F.max_pool2d(x, k, strides, pad, tuple(dil), ceil)
        include = bool(a.get("count_include_pad", 0))
        pad, x2 = _pads2d(pads, x)
        if x2 is not x and not include:
            raise OnnxOpError(f"AveragePool {node.name}: asymmetric pads without count_include_pad")
        return F.avg_pool2d(x2, k, strides, pad, ceil, include)

    def op_MaxPool(self, ins, a, node, env):
        return self._pool(ins, a, node, "max")

    def op_AveragePool(self, ins, a, node, env):
        return self._pool(ins, a, node, "avg")

    def op_GlobalAveragePool(self, ins, a, node, env):
        return ins[0].mean(dim=tuple(range(2, ins[0].dim())), keepdim=True)

    def op_GlobalMaxPool(self, ins, a, node, env):
        return torch.amax(ins[0], dim=tuple(range(2, ins[0].dim())), keepdim=True)

    def op_Relu(self, ins, a, node, env):
        return F.relu(ins[0])

    def op_LeakyRelu(self, ins, a, node, env):
        return F.leaky_relu(ins[0], float(a.get("alpha", 0.01)))

    def op_PRelu(self, ins, a, node, env):
        return torch.where(ins[0] >= 0, ins[0], ins[0] * ins[1])

    def op_Sigmoid(self, ins, a, node, env):
        return torch.sigmoid(ins[0])

    def op_Tanh(self, ins, a, node, env):
        return torch.tanh(ins[0])

    def op_HardSigmoid(self, ins, a, node, env):
        return torch.clamp(float(a.get("alpha", 0.2)) * ins[0] + float(a.get("beta", 0.5)), 0.0, 1.0)

    def op_HardSwish(self, ins, a, node, env):
        return ins[0] * torch.clamp(ins[0] / 6.0 + 0.5, 0.0, 1.0)

    def op_Clip(self, ins, a, node, env):
        lo = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("min")
        hi = ins[2] if len(ins) > 2 and ins[2] is not None else a.get("max")
        x = ins[0]
        if lo is not None:
            x = torch.maximum(x, torch.as_tensor(lo, dtype=x.dtype))
        if hi is not None:
            x = torch.minimum(x, torch.as_tensor(hi, dtype=x.dtype))
        return x

    def op_Softmax(self, ins, a, node, env):
        return torch.softmax(ins[0], int(a.get("axis", -1 if self.opset >= 13 else 1)))

    def op_Softplus(self, ins, a, node, env):
        return F.softplus(ins[0])

    def op_Erf(self, ins, a, node, env):
        return torch.erf(ins[0])

    def op_Add(self, ins, a, node, env):
        return ins[0] + ins[1]

    def op_Sub(self, ins, a, node, env):
        return ins[0] - ins[1]

    def op_Mul(self, ins, a, node, env):
        return ins[0] * ins[1]

    def op_Div(self, ins, a, node, env):
        if not ins[0].is_floating_point() and not ins[1].is_floating_point():
            return torch.div(ins[0], ins[1], rounding_mode="trunc")
        return ins[0] / ins[1]

    def op_Pow(self, ins, a, node, env):
        return torch.pow(ins[0], ins[1])

    def op_Sqrt(self, ins, a, node, env):
        return torch.sqrt(ins[0])

    def op_Exp(self, ins, a, node, env):
        return torch.exp(ins[0])

    def op_Neg(self, ins, a, node, env):
        return -ins[0]

    def op_Abs(self, ins, a, node, env):
        return torch.abs(ins[0])

    def op_Round(self, ins, a, node, env):
        return torch.round(ins[0])

    def op_Floor(self, ins, a, node, env):
        return torch.floor(ins[0])

    def op_Ceil(self, ins, a, node, env):
        return torch.ceil(ins[0])

    def op_Max(self, ins, a, node, env):
        out = ins[0]
        for v in ins[1:]:
            out = torch.maximum(out, v)
        return out

    def op_Min(self, ins, a, node, env):
        out = ins[0]
        for v in ins[1:]:
            out = torch.minimum(out, v)
        return out

    def op_Greater(self, ins, a, node, env):
        return ins[0] > ins[1]

    def op_Less(self, ins, a, node, env):
        return ins[0] < ins[1]

    def op_GreaterOrEqual(self, ins, a, node, env):
        return ins[0] >= ins[1]

    def op_LessOrEqual(self, ins, a, node, env):
        return ins[0] <= ins[1]

    def op_Equal(self, ins, a, node, env):
        return ins[0] == ins[1]

    def op_Not(self, ins, a, node, env):
        return ~ins[0]

    def op_And(self, ins, a, node, env):
        return ins[0] & ins[1]

    def op_Or(self, ins, a, node, env):
        return ins[0] | ins[1]

    def op_Where(self, ins, a, node, env):
        return torch.where(ins[0], ins[1], ins[2])

    def op_Gemm(self, ins, a, node, env):
        A, B = ins[0], ins[1]
        if a.get("transA", 0):
            A = A.t()
        if a.get("transB", 0):
            B = B.t()
        y = float(a.get("alpha", 1.0)) * (A @ B)
        if len(ins) > 2 and ins[2] is not None:
            y = y + float(a.get("beta", 1.0)) * ins[2]
        return y

    def op_MatMul(self, ins, a, node, env):
        return torch.matmul(ins[0], ins[1])

    def op_Flatten(self, ins, a, node, env):
        x = ins[0]
        axis = int(a.get("axis", 1))
        if axis < 0:
            axis += x.dim()
        if axis == 0:
            return x.reshape(1, -1)
        # flatten() rather than a reshape to computed sizes: a traced export keeps the batch dynamic
        return x.flatten(0, axis - 1).flatten(1) if x.dim() > axis else x.flatten(0, axis - 1).unsqueeze(1)

    def op_Reshape(self, ins, a, node, env):
        x, shape = ins[0], [int(v) for v in ins[1].tolist()]
        shape = [x.shape[i] if s == 0 and not a.get("allowzero", 0) else s for i, s in enumerate(shape)]
        return x.reshape(shape)

    def op_Transpose(self, ins, a, node, env):
        perm = a.get("perm") or list(reversed(range(ins[0].dim())))
        return ins[0].permute(*perm)

    def op_Concat(self, ins, a, node, env):
        return torch.cat([v for v in ins if v is not None], int(a["axis"]))

    def op_Identity(self, ins, a, node, env):
        return ins[0]

    def op_Dropout(self, ins, a, node, env):
        return ins[0]

    def op_Constant(self, ins, a, node, env):
        if "value" in a:
            return _tensor(a["value"])
        for k, dt in (("value_float", torch.float32), ("value_floats", torch.float32),
                      ("value_int", torch.int64), ("value_ints", torch.int64)):
            if k in a:
                return torch.tensor(a[k], dtype=dt)
        raise OnnxOpError(f"Constant {node.name}: unsupported value attribute")

    def op_Shape(self, ins, a, node, env):
        return torch.tensor(list(ins[0].shape), dtype=torch.int64)

    def op_Gather(self, ins, a, node, env):
        x, idx = ins[0], ins[1].long()
        axis = int(a.get("axis", 0))
        idx = torch.where(idx < 0, idx + x.shape[axis], idx)
        if idx.dim() == 0:
            return x.select(axis, int(idx))
        return torch.index_select(x, axis, idx.reshape(-1)).reshape(
            *x.shape[:axis % x.dim()], *idx.shape, *x.shape[axis % x.dim() + 1 :])

    def op_Unsqueeze(self, ins, a, node, env):
        x = ins[0]
        axes = sorted(_axes(node.input, env, a, 1))
        for ax in axes:
            x = x.unsqueeze(ax if ax >= 0 else ax + x.dim() + 1)
        return x

    def op_Squeeze(self, ins, a, node, env):
        axes = _axes(node.input, env, a, 1)
        if axes is None:
            return ins[0].squeeze()
        x = ins[0]
        for ax in sorted((ax % x.dim() for ax in axes), reverse=True):
            x = x.squeeze(ax)
        return x

    def op_Slice(self, ins, a, node, env):
        x = ins[0]
        if len(ins) > 1:
            starts, ends = ins[1].tolist(), ins[2].tolist()
            axes = ins[3].tolist() if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
            steps = ins[4].tolist() if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
        else:
            starts, ends = a["starts"], a["ends"]
            axes = a.get("axes", list(range(len(starts))))
            steps = [1] * len(starts)
        idx = [slice(None)] * x.dim()
        for s, e, ax, st in zip(starts, ends, axes, steps):
            if st != 1:
                raise OnnxOpError(f"Slice {node.name}: steps other than 1")
            n = x.shape[ax]
            s = max(0, min(n, s + n if s < 0 else s))
            e = max(0, min(n, e + n if e < 0 else e))
            idx[ax] = slice(s, e)
        return x[tuple(idx)]

    def op_Cast(self, ins, a, node, env):
        to = int(a["to"])
        if to not in _DTYPES:
            raise OnnxOpError(f"Cast {node.name}: target type {to}")
        return ins[0].to(_DTYPES[to])

    def op_ReduceMean(self, ins, a, node, env):
        axes = _axes(node.input, env, a, 1) if self.opset >= 18 else a.get("axes")
        keep = bool(a.get("keepdims", 1))
        if axes is None:
            return ins[0].mean() if not keep else ins[0].mean(dim=tuple(range(ins[0].dim())), keepdim=True)
        return ins[0].mean(dim=tuple(axes), keepdim=keep)

    def op_Resize(self, ins, a, node, env):
        x = ins[0]
        scales = ins[2] if len(ins) > 2 and ins[2] is not None and ins[2].numel() else None
        sizes = ins[3] if len(ins) > 3 and ins[3] is not None and ins[3].numel() else None
        out = [int(v) for v in sizes.tolist()[2:]] if sizes is not None else \
            [int(math.floor(n * float(s))) for n, s in zip(x.shape[2:], scales.tolist()[2:])]
        dec = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
        mode, ctm = dec(a.get("mode", b"nearest")), dec(a.get("coordinate_transformation_mode", b"half_pixel"))
        if mode == "nearest":
            if ctm != "asymmetric" or dec(a.get("nearest_mode", b"round_prefer_floor")) != "floor":
                raise OnnxOpError(f"Resize {node.name}: nearest only with asymmetric coordinates and floor rounding")
            return F.interpolate(x, size=out, mode="nearest")
        if mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel", "align_corners"):
            return F.interpolate(x, size=out, mode="bilinear", align_corners=ctm == "align_corners")
        raise OnnxOpError(f"Resize {node.name}: mode {mode} with {ctm} coordinates is not supported")

    def op_Pad(self, ins, a, node, env):
        x = ins[0]
        pads = ins[1].tolist() if len(ins) > 1 else list(a["pads"])
        value = float(ins[2]) if len(ins) > 2 and ins[2] is not None else float(a.get("value", 0.0))
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        n = x.dim()
        torch_pads = []
        for ax in reversed(range(n)):
            torch_pads += [pads[ax], pads[ax + n]]
        while len(torch_pads) > 2 and torch_pads[-2:] == [0, 0]:
            torch_pads = torch_pads[:-2]
        if mode == "constant":
            return F.pad(x, torch_pads, value=value)
        return F.pad(x, torch_pads, mode={"reflect": "reflect", "edge": "replicate"}[mode])


def load(path_or_model) -> OnnxModule:
    m = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model))
    return OnnxModule(m).eval()


@torch.no_grad()
def max_abs_diff(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> float:
    return float((a(x).float() - b(x).float()).abs().max())
