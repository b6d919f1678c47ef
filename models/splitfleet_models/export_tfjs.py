"""Export the device networks of model bundles as TensorFlow.js graph models.

    /usr/bin/python3 -m splitfleet_models.export_tfjs --zoo zoo            # every bundle
    /usr/bin/python3 -m splitfleet_models.export_tfjs --bundle zoo/resnet9w05-cifar10-v2

For every device role of a bundle (a backbone's ``head``, every point's device network of
a learned codec) it reads the exported ONNX file and writes a tfjs graph model next to
it: ``<stem>-<sha8>.tfjs.json`` (GraphDef-style ``modelTopology``, ``weightsManifest``,
``signature``) and one weights shard ``<stem>-<sha8>.tfjs.bin`` (little-endian float32 /
int32, in the manifest's order). The manifest gains two files per role, ``<role>.tfjs``
and ``<role>.tfjs.weights``, with their sha256 (readers that do not know them verify and
ignore them). Run it again on an unchanged bundle and nothing changes: the output depends
only on the ONNX bytes.

No TensorFlow is needed: the converter maps the ONNX operators the toolkit's networks use
onto TensorFlow ops that tfjs-converter executes (on tfjs-node and on tfjs + the wasm
backend). tfjs convolutions are NHWC: the graph takes the same NCHW input as the ONNX
file, transposes it once, runs every 4-D activation in NHWC (weights transposed here,
constants of broadcasts permuted) and transposes the output back to NCHW. Constant
subgraphs (GDN's softplus reparametrisation, ...) are folded here in float64, then
stored as float32. Operators outside the supported set raise an error naming them.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

CONVERTER = "splitfleet_models.export_tfjs 1"

# NCHW axis -> NHWC axis, and the permutations between the layouts.
NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}
TO_NHWC = [0, 2, 3, 1]
TO_NCHW = [0, 3, 1, 2]

UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Softplus": "Softplus", "Sqrt": "Sqrt", "Round": "Round",
         "Exp": "Exp", "Tanh": "Tanh", "Abs": "Abs", "Neg": "Neg", "Floor": "Floor", "Ceil": "Ceil"}
BINARY = {"Add": "AddV2", "Sub": "Sub", "Mul": "Mul", "Div": "RealDiv", "Max": "Maximum", "Min": "Minimum"}


class ExportError(Exception):
    pass


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# -- GraphDef JSON attribute values (the protobuf JSON mapping tfjs-converter reads) ------

def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def a_type(dtype: str) -> dict:
    return {"type": {"float32": "DT_FLOAT", "int32": "DT_INT32"}[dtype]}


def a_ints(v) -> dict:
    return {"list": {"i": [str(int(x)) for x in v]}}


def a_int(v: int) -> dict:
    return {"i": str(int(v))}


def a_str(s: str) -> dict:
    return {"s": _b64(s)}


def a_strs(v) -> dict:
    return {"list": {"s": [_b64(s) for s in v]}} if v else {"list": {}}


def a_bool(v: bool) -> dict:
    return {"b": bool(v)}


def a_shape(dims) -> dict:
    return {"shape": {"dim": [{"size": str(int(d))} for d in dims]}}


# -- numpy evaluation of constant subgraphs ---------------------------------------------

def _fold(op: str, ins: list[np.ndarray], attrs: dict) -> np.ndarray:
    x = [np.asarray(a, dtype=np.float64) if a.dtype.kind == "f" else a for a in ins]
    if op == "Identity":
        return ins[0]
    if op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Max": np.maximum,
             "Min": np.minimum, "Pow": np.power}[op]
        return f(x[0], x[1])
    if op == "Softplus":
        return np.logaddexp(0.0, x[0])
    if op == "Sqrt":
        return np.sqrt(x[0])
    if op == "Relu":
        return np.maximum(x[0], 0)
    if op == "Sigmoid":
        return 1.0 / (1.0 + np.exp(-x[0]))
    if op == "Neg":
        return -x[0]
    if op == "Exp":
        return np.exp(x[0])
    if op == "Reciprocal":
        return 1.0 / x[0]
    if op == "Unsqueeze":
        axes = attrs.get("axes", ins[1].tolist() if len(ins) > 1 else None)
        out = ins[0]
        for a in sorted(int(v) % (out.ndim + len(axes)) for v in axes):
            out = np.expand_dims(out, a)
        return out
    if op == "Reshape":
        return ins[0].reshape([int(v) if int(v) != 0 else ins[0].shape[i] for i, v in enumerate(ins[1].tolist())])
    if op == "Transpose":
        return np.transpose(ins[0], attrs.get("perm"))
    if op == "Cast":
        return ins[0]
    raise ExportError(f"cannot fold constant {op}")


def _as_stored(v: np.ndarray) -> np.ndarray:
    """Constants as tfjs stores them: float32 or int32."""
    if v.dtype.kind == "f":
        return np.ascontiguousarray(v, dtype="<f4")
    if v.dtype.kind in "iub":
        return np.ascontiguousarray(v, dtype="<i4")
    raise ExportError(f"constant of dtype {v.dtype} not supported")


class Val:
    """A tensor of the ONNX graph on the TF side: a node name (or a folded constant),
    its layout ("nhwc": a 4-D activation stored NHWC; "plain": ONNX's own axis order)
    and its ONNX shape (NCHW order; None where unknown)."""

    def __init__(self, name=None, layout="plain", shape=None, const=None):
        self.name, self.layout, self.shape, self.const = name, layout, shape, const


class Converter:
    def __init__(self, model: onnx.ModelProto):
        self.model = shape_inference.infer_shapes(model)
        g = self.model.graph
        if len(g.input) != 1 or len(g.output) != 1:
            raise ExportError("the converter takes networks with one input and one output")
        self.nodes: list[dict] = []
        self.weights: list[tuple[str, np.ndarray]] = []
        self.names: set[str] = set()
        self.vals: dict[str, Val] = {}
        self.shapes: dict[str, list] = {}
        for vi in [*g.input, *g.value_info, *g.output]:
            t = vi.type.tensor_type
            if t.HasField("shape"):
                self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        for init in g.initializer:
            self.vals[init.name] = Val(const=numpy_helper.to_array(init))
        self.consumers: dict[str, int] = {}
        for n in g.node:
            for i in n.input:
                self.consumers[i] = self.consumers.get(i, 0) + 1
        self.output_name = g.output[0].name

    # -- graph building --------------------------------------------------------------
    def _unique(self, hint: str) -> str:
        base = "".join(c if c.isalnum() or c in "_." else "_" for c in hint).strip("_") or "n"
        name, i = base, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def op(self, op: str, inputs: list[str], attr: dict, hint: str, dtype: str | None = "float32") -> str:
        name = self._unique(hint)
        if dtype is not None:
            attr = {"T": a_type(dtype), **attr}
        self.nodes.append({"name": name, "op": op, "input": inputs, "attr": attr})
        return name

    def const(self, value: np.ndarray, hint: str) -> str:
        v = _as_stored(np.asarray(value))
        name = self._unique(hint)
        dtype = "float32" if v.dtype.kind == "f" else "int32"
        shape = {"dim": [{"size": str(d)} for d in v.shape]} if v.ndim else {}
        self.nodes.append({"name": name, "op": "Const", "input": [],
                           "attr": {"dtype": a_type(dtype), "value": {"tensor": {"dtype": a_type(dtype)["type"],
                                                                                   "tensorShape": shape}}}})
        self.weights.append((name, v))
        return name

    def tensor(self, v: Val, hint: str) -> str:
        """A TF node name holding `v` (a folded constant becomes a weight)."""
        if v.name is None:
            v.name = self.const(v.const, hint)
        return v.name

    def to_layout(self, v: Val, layout: str, hint: str) -> str:
        if v.layout == layout:
            return self.tensor(v, hint)
        perm = TO_NHWC if layout == "nhwc" else TO_NCHW
        return self.op("Transpose", [self.tensor(v, hint), self.const(np.array(perm), hint + "_perm")], {
            "Tperm": a_type("int32")}, hint + "_" + layout)

    # -- conversion ------------------------------------------------------------------
    def convert(self) -> dict:
        g = self.model.graph
        inp = g.input[0]
        in_shape = self.shapes[inp.name]
        if len(in_shape) != 4:
            raise ExportError(f"input {inp.name} is not 4-D NCHW: {in_shape}")
        ph = self._unique("input")
        self.nodes.append({"name": ph, "op": "Placeholder", "input": [],
                           "attr": {"dtype": a_type("float32"), "shape": a_shape(in_shape)}})
        self.vals[inp.name] = Val(ph, "plain", in_shape)
        # one transpose at the input: every 4-D activation runs NHWC from here on
        x = self.op("Transpose", [ph, self.const(np.array(TO_NHWC), "input_perm")], {"Tperm": a_type("int32")},
                    "input_nhwc")
        self.vals[inp.name] = Val(x, "nhwc", in_shape)
        fused: set[str] = set()
        for n in g.node:
            if n.output[0] in fused:
                continue
            self.node(n, fused)
        out = self.vals[self.output_name]
        if out.const is not None and out.name is None:
            raise ExportError("the output is a constant")
        final = self.to_layout(out, "plain", "output_value")
        out_node = self.op("Identity", [final], {}, "output")
        out_shape = self.shapes.get(self.output_name)
        tensor_info = lambda name, shape: {"name": f"{name}:0", "dtype": "DT_FLOAT",  # noqa: E731
                                           "tensorShape": {"dim": [{"size": str(d)} for d in shape]}}
        return {
            "nodes": self.nodes,
            "weights": self.weights,
            "signature": {"inputs": {"input": tensor_info(ph, in_shape)},
                          "outputs": {"output": tensor_info(out_node, out_shape or [])}},
            "input": [-1, *in_shape[1:]],
            "output": [-1, *(out_shape or [])[1:]],
        }

    def node(self, n: onnx.NodeProto, fused: set[str]) -> None:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        op, hint = n.op_type, n.output[0].strip("/").replace("/", "_") or n.op_type
        ins = [self.vals[i] if i else None for i in n.input]
        for i, v in zip(n.input, ins):
            if i and v is None:
                raise ExportError(f"{op} {n.name}: input {i} is unknown")
        shape = self.shapes.get(n.output[0])
        if op == "Constant":
            self.vals[n.output[0]] = Val(const=numpy_helper.to_array(attrs["value"]))
            return
        present = [v for v in ins if v is not None]
        if present and all(v.const is not None for v in present):
            self.vals[n.output[0]] = Val(const=_fold(op, [v.const for v in present], attrs))
            return
        if op == "Identity":
            self.vals[n.output[0]] = ins[0]
        elif op == "Conv":
            self.conv(n, attrs, ins, hint, shape, fused)
        elif op in UNARY:
            x = ins[0]
            self.vals[n.output[0]] = Val(self.op(UNARY[op], [self.tensor(x, hint)], {}, hint), x.layout, shape)
        elif op in BINARY:
            self.binary(n, BINARY[op], ins[0], ins[1], hint, shape)
        elif op == "MaxPool":
            self.maxpool(n, attrs, ins[0], hint, shape)
        elif op == "GlobalAveragePool":
            x = ins[0]
            self._need(x.layout == "nhwc", n, "a 4-D input")
            y = self.op("Mean", [x.name, self.const(np.array([1, 2]), hint + "_axes")],
                        {"keep_dims": a_bool(True), "Tidx": a_type("int32")}, hint)
            self.vals[n.output[0]] = Val(y, "nhwc", shape)
        elif op == "ReduceMean":
            self.reduce_mean(n, attrs, ins, hint, shape)
        elif op == "Gemm":
            self.gemm(n, attrs, ins, hint, shape)
        elif op == "Unsqueeze":
            x = ins[0]
            axes = attrs.get("axes") or ins[1].const.tolist()
            self._need(x.layout == "plain", n, "an input in ONNX order")
            rank = len(x.shape) + len(axes)
            y = x.name
            for a in sorted(int(v) % rank for v in axes):
                y = self.op("ExpandDims", [y, self.const(np.array(a), hint + "_axis")], {"Tdim": a_type("int32")},
                            hint)
            self.vals[n.output[0]] = Val(y, "plain", shape)
        elif op == "Gather":
            x, idx = ins
            self._need(idx.const is not None and idx.const.ndim == 1, n, "constant 1-D indices")
            axis = int(attrs.get("axis", 0)) % len(x.shape)
            if x.layout == "nhwc":
                axis = NHWC_AXIS[axis]
            y = self.op("GatherV2", [x.name, self.const(idx.const, hint + "_indices"),
                                     self.const(np.array(axis), hint + "_axis")],
                        {"Tparams": a_type("float32"), "Tindices": a_type("int32"), "Taxis": a_type("int32"),
                         "batch_dims": a_int(0)}, hint, dtype=None)
            self.vals[n.output[0]] = Val(y, x.layout, shape)
        else:
            raise ExportError(f"ONNX operator {op} ({n.name}) is not supported by the tfjs exporter")

    @staticmethod
    def _need(cond: bool, n: onnx.NodeProto, what: str) -> None:
        if not cond:
            raise ExportError(f"{n.op_type} {n.name}: the tfjs exporter needs {what}")

    def _padding(self, n, attrs, in_shape, kernel, strides):
        """TF padding for ONNX pads: "VALID", "SAME" where TF's SAME pads exactly the
        same, else explicit pads for a Pad op (returned as [[t, b], [l, r]])."""
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise ExportError(f"{n.op_type} {n.name}: auto_pad is not supported")
        if not any(pads):
            return "VALID", None
        same = True
        for d in range(2):
            size = in_shape[2 + d] if in_shape and len(in_shape) == 4 else -1
            if size <= 0:
                same = False
                break
            out = math.ceil(size / strides[d])
            total = max((out - 1) * strides[d] + kernel[d] - size, 0)
            if (total // 2, total - total // 2) != (pads[d], pads[d + 2]):
                same = False
        if same:
            return "SAME", None
        return "VALID", [[pads[0], pads[2]], [pads[1], pads[3]]]

    def _pad(self, x: str, pads, hint: str) -> str:
        p = np.array([[0, 0], pads[0], pads[1], [0, 0]])
        return self.op("Pad", [x, self.const(p, hint + "_paddings")], {"Tpaddings": a_type("int32")}, hint + "_pad")

    def conv(self, n, attrs, ins, hint, shape, fused: set[str]) -> None:
        x, w = ins[0], ins[1]
        b = ins[2] if len(ins) > 2 else None
        self._need(x.layout == "nhwc" and w.const is not None and (b is None or b.const is not None), n,
                   "a 4-D activation and constant weights")
        if any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise ExportError(f"Conv {n.name}: dilation is not supported")
        wt = w.const.astype(np.float64)
        out_c, in_per_group, kh, kw = wt.shape
        group = int(attrs.get("group", 1))
        strides = list(attrs.get("strides", [1, 1]))
        bias = b.const if b is not None else np.zeros(out_c)
        padding, explicit = self._padding(n, attrs, x.shape, [kh, kw], strides)
        xin = x.name if explicit is None else self._pad(x.name, explicit, hint)
        # fuse a Relu that is this convolution's only consumer
        act, out_name = [], n.output[0]
        nxt = [m for m in self.model.graph.node if out_name in m.input]
        if (len(nxt) == 1 and self.consumers.get(out_name) == 1 and nxt[0].op_type == "Relu"
                and out_name != self.output_name):
            act, out_name = ["Relu"], nxt[0].output[0]
            fused.add(out_name)
        common = {"strides": a_ints([1, *strides, 1]), "padding": a_str(padding), "data_format": a_str("NHWC"),
                  "dilations": a_ints([1, 1, 1, 1]), "fused_ops": a_strs(["BiasAdd", *act]), "num_args": a_int(1),
                  "explicit_paddings": a_ints([])}
        if group == 1:
            f = wt.transpose(2, 3, 1, 0)  # OIHW -> HWIO
            y = self.op("_FusedConv2D", [xin, self.const(f, hint + "_filter"), self.const(bias, hint + "_bias")],
                        {**common, "epsilon": {"f": 0}, "use_cudnn_on_gpu": a_bool(True)}, hint)
        elif in_per_group == 1 and x.shape and group == x.shape[1]:
            mult = out_c // group
            f = wt.reshape(group, mult, kh, kw).transpose(2, 3, 0, 1)  # -> [kh, kw, in, multiplier]
            y = self.op("FusedDepthwiseConv2dNative",
                        [xin, self.const(f, hint + "_filter"), self.const(bias, hint + "_bias")], common, hint)
        else:
            raise ExportError(f"Conv {n.name}: groups={group} (neither 1 nor depthwise) is not supported")
        self.vals[out_name] = Val(y, "nhwc", self.shapes.get(out_name, shape))

    def binary(self, n, tf_op, a: Val, b: Val, hint, shape) -> None:
        # the result is NHWC when an activation operand is; a plain 4-D activation is
        # transposed to it, a constant is broadcast-aligned to 4-D and permuted
        layout = "nhwc" if any(v.const is None and v.layout == "nhwc" for v in (a, b)) else "plain"

        def side(v: Val, h: str) -> str:
            if v.const is None:
                return self.to_layout(v, layout, h)
            c = v.const
            if c.size == 1:
                c = c.reshape(())
            elif layout == "nhwc":
                c = c.reshape((1,) * (4 - c.ndim) + c.shape).transpose(TO_NHWC)
            return self.const(c, h)

        y = self.op(tf_op, [side(a, hint + "_a"), side(b, hint + "_b")], {}, hint)
        self.vals[n.output[0]] = Val(y, layout, shape)

    def maxpool(self, n, attrs, x: Val, hint, shape) -> None:
        self._need(x.layout == "nhwc" and not attrs.get("ceil_mode", 0), n, "a 4-D input and ceil_mode 0")
        if any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise ExportError(f"MaxPool {n.name}: dilation is not supported")
        k = list(attrs["kernel_shape"])
        s = list(attrs.get("strides", [1, 1]))
        padding, explicit = self._padding(n, attrs, x.shape, k, s)
        if explicit is not None:
            raise ExportError(f"MaxPool {n.name}: pads {attrs.get('pads')} differ from SAME")
        y = self.op("MaxPool", [x.name], {"ksize": a_ints([1, *k, 1]), "strides": a_ints([1, *s, 1]),
                                          "padding": a_str(padding), "data_format": a_str("NHWC")}, hint)
        self.vals[n.output[0]] = Val(y, "nhwc", shape)

    def reduce_mean(self, n, attrs, ins, hint, shape) -> None:
        x = ins[0]
        axes = attrs.get("axes")
        if axes is None and len(ins) > 1 and ins[1] is not None:
            axes = ins[1].const.tolist()
        rank = len(x.shape)
        axes = sorted(int(a) % rank for a in (axes if axes is not None else range(rank)))
        keep = bool(attrs.get("keepdims", 1))
        layout = x.layout
        tf_axes = axes
        if x.layout == "nhwc":
            tf_axes = sorted(NHWC_AXIS[a] for a in axes)
            if not keep:
                rest = [a for a in range(4) if a not in axes]
                rest_tf = [a for a in TO_NHWC if a not in axes]
                self._need(rest == rest_tf, n, "reduced axes that leave the channel order")
                layout = "plain"
        y = self.op("Mean", [x.name, self.const(np.array(tf_axes), hint + "_axes")],
                    {"keep_dims": a_bool(keep), "Tidx": a_type("int32")}, hint)
        self.vals[n.output[0]] = Val(y, layout, shape)

    def gemm(self, n, attrs, ins, hint, shape) -> None:
        a, w = ins[0], ins[1]
        c = ins[2] if len(ins) > 2 else None
        self._need(a.layout == "plain" and w.const is not None and (c is None or c.const is not None)
                   and not attrs.get("transA", 0), n, "a 2-D activation and constant weights")
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        wt = w.const.astype(np.float64) * alpha
        if attrs.get("transB", 0):
            wt = wt.T
        bias = (c.const.astype(np.float64) * beta) if c is not None else np.zeros(wt.shape[1])
        y = self.op("_FusedMatMul", [a.name, self.const(wt, hint + "_weight"),
                                     self.const(np.broadcast_to(bias, (wt.shape[1],)), hint + "_bias")],
                    {"transpose_a": a_bool(False), "transpose_b": a_bool(False), "fused_ops": a_strs(["BiasAdd"]),
                     "num_args": a_int(1), "epsilon": {"f": 0}}, hint)
        self.vals[n.output[0]] = Val(y, "plain", shape)


def convert(onnx_bytes: bytes, weights_path: str) -> tuple[dict, bytes, list[int], list[int]]:
    """ONNX bytes -> (model.json dict, weights shard bytes, input shape, output shape)."""
    r = Converter(onnx.load_from_string(onnx_bytes)).convert()
    specs, chunks = [], []
    for name, v in r["weights"]:
        specs.append({"name": name, "shape": list(v.shape), "dtype": "float32" if v.dtype.kind == "f" else "int32"})
        chunks.append(v.tobytes())
    model = {
        "format": "graph-model",
        "generatedBy": f"onnx sha256 {sha256(onnx_bytes)}",
        "convertedBy": CONVERTER,
        "signature": r["signature"],
        "modelTopology": {"node": r["nodes"], "library": {}, "versions": {"producer": 1}},
        "weightsManifest": [{"paths": [weights_path], "weights": specs}],
    }
    return model, b"".join(chunks), r["input"], r["output"]


def device_roles(m: dict) -> list[str]:
    """The roles of the device networks (core/model/bundle.ts deviceRoles, networks only)."""
    if m.get("kind", "backbone") == "backbone":
        return ["head"]
    roles: list[str] = []
    for p in m["codec"]["points"]:
        if p["head"] not in roles:
            roles.append(p["head"])
    return roles


def export_bundle(bundle: Path) -> dict:
    """Write the tfjs files of every device network of `bundle` and list them in its
    manifest. Returns {role: bytes written}."""
    mpath = bundle / "manifest.json"
    m = json.loads(mpath.read_text())
    files: dict = m["files"]
    # drop the previous export (entries and files), then write the current one
    for role in [r for r in files if r.endswith(".tfjs") or r.endswith(".tfjs.weights")]:
        del files[role]
    for old in list(bundle.glob("*.tfjs.json")) + list(bundle.glob("*.tfjs.bin")):
        old.unlink()
    written = {}
    for role in device_roles(m):
        src = files[role]
        onnx_b = (bundle / src["path"]).read_bytes()
        if sha256(onnx_b) != src["sha256"]:
            raise ExportError(f"{bundle}: {src['path']} does not match its sha256")
        stem = src["path"].split("-")[0]
        # the weights' name carries their hash; model.json names them, then gets its own
        _, wbytes, _, _ = convert(onnx_b, "")
        wname = f"{stem}-{sha256(wbytes)[:8]}.tfjs.bin"
        model, wbytes2, ishape, oshape = convert(onnx_b, wname)
        assert wbytes2 == wbytes
        if ishape != src.get("input", ishape) or oshape != src.get("output", oshape):
            raise ExportError(f"{bundle}: {role} converted with shapes {ishape} -> {oshape}, "
                              f"the manifest says {src.get('input')} -> {src.get('output')}")
        jbytes = (json.dumps(model, separators=(",", ":")) + "\n").encode()
        jname = f"{stem}-{sha256(jbytes)[:8]}.tfjs.json"
        (bundle / wname).write_bytes(wbytes)
        (bundle / jname).write_bytes(jbytes)
        files[f"{role}.tfjs"] = {"path": jname, "sha256": sha256(jbytes), "input": ishape, "output": oshape}
        files[f"{role}.tfjs.weights"] = {"path": wname, "sha256": sha256(wbytes)}
        written[role] = len(jbytes) + len(wbytes)
    mpath.write_text(json.dumps(m, indent=2) + "\n")
    return written


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", help="every bundle folder in this zoo")
    ap.add_argument("--bundle", action="append", default=[], help="one bundle folder (repeatable)")
    args = ap.parse_args(argv)
    bundles = [Path(b) for b in args.bundle]
    if args.zoo:
        bundles += sorted(p.parent for p in Path(args.zoo).glob("*/manifest.json"))
    if not bundles:
        ap.error("give --zoo or --bundle")
    for b in bundles:
        written = export_bundle(b)
        print(json.dumps({"bundle": str(b), "tfjsBytes": written, "total": sum(written.values())}), flush=True)


if __name__ == "__main__":
    main()
