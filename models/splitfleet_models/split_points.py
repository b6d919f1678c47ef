"""Where an ONNX classifier can be split, and what each split costs (Neurosurgeon-style).

    /usr/bin/python3 -m splitfleet_models.split_points model.onnx [--size HxW] [--json]

A split point is a tensor that cuts the graph: every path from the image to the logits
runs through it, and the rest of the network needs nothing else the device computed
(constants aside), so the device runs the head up to it, sends it, and the edge runs
the tail from it alone. For every such tensor, in graph order, the table gives its shape
(batch 1), the bytes a frame carries (float32, and 8-bit after quantization), and the
multiply-accumulates of convolutions, Gemm and MatMul on each side, counted from shapes
that ONNX shape inference resolves (``--size`` fixes an input with dynamic height and
width). The first row, ``(image)``, is sending the preprocessed image itself: 3 bytes
per pixel as 8-bit RGB.

Kahng et al., "Neurosurgeon: Collaborative intelligence between the cloud and mobile
edge" (ASPLOS 2017) picks the split from such per-layer tables of data size and latency.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import sys
from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import shape_inference

from .preprocess import parse_size


def torch_scope(path: str) -> str:
    """The node-name scope torch.onnx.export gives the module at `path` (dotted, as in
    ``named_modules``): ``features.4`` -> ``/features/features.4/``."""
    parts: list[str] = []
    for p in path.strip(".").split("."):
        parts.append(f"{parts[-1]}.{p}" if p.isdigit() and parts else p)
    return "/" + "/".join(parts) + "/"


class GraphError(ValueError):
    """An ONNX graph that cannot be analysed or split as asked, with the reason."""


@dataclass
class Candidate:
    tensor: str
    node: str
    op: str
    shape: list[int]
    fp32Bytes: int
    int8Bytes: int
    deviceMacs: int
    edgeMacs: int


class Graph:
    """An ONNX classifier with its input fixed to (batch, 3, H, W) and shapes inferred."""

    def __init__(self, model: onnx.ModelProto, size: tuple[int, int] | None = None, where: str = "model"):
        self.where = where
        m = copy.deepcopy(model)
        g = m.graph
        init = {t.name for t in g.initializer}
        inputs = [i for i in g.input if i.name not in init]
        if len(inputs) != 1:
            raise GraphError(f"{where}: {len(inputs)} inputs ({[i.name for i in inputs]}); one image input expected")
        if len(g.output) != 1:
            raise GraphError(f"{where}: {len(g.output)} outputs; one output (the logits) expected")
        inp = inputs[0]
        self.input = inp.name
        self.output = g.output[0].name
        dims = inp.type.tensor_type.shape.dim
        if len(dims) != 4:
            raise GraphError(f"{where}: input {inp.name!r} has rank {len(dims)}; an NCHW image batch (rank 4) expected")
        shown = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
        if dims[1].HasField("dim_value") and dims[1].dim_value != 3:
            raise GraphError(f"{where}: input {inp.name!r} {shown} has {dims[1].dim_value} channels; "
                             "3 (RGB, NCHW) expected")
        fixed = [dims[i].dim_value if dims[i].HasField("dim_value") and dims[i].dim_value > 0 else None
                 for i in (2, 3)]
        if size is not None:
            if None not in fixed and tuple(fixed) != tuple(size):
                raise GraphError(f"{where}: the input is fixed at {fixed[0]}x{fixed[1]}; --size {size[0]}x{size[1]} "
                                 "differs")
        elif None in fixed:
            raise GraphError(f"{where}: input {inp.name!r} has dynamic shape {shown}: cannot resolve the tensor "
                             "shapes; pass --size HxW")
        else:
            size = (fixed[0], fixed[1])
        self.size = (int(size[0]), int(size[1]))
        dims[0].Clear()
        dims[0].dim_param = "batch"
        dims[1].dim_value = 3
        dims[2].dim_value, dims[3].dim_value = self.size
        # value_info of the original may hold stale shapes for other sizes
        del g.value_info[:]
        for o in g.output:
            o.type.tensor_type.ClearField("shape")
        try:
            self.model = shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
        except Exception as e:
            raise GraphError(f"{where}: ONNX shape inference failed: {e}") from None
        g = self.model.graph
        self.nodes = list(g.node)
        self.shapes: dict[str, list[int | None]] = {}
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            if vi.type.tensor_type.HasField("shape"):
                self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None
                                        for d in vi.type.tensor_type.shape.dim]
        self.inits = {t.name: list(t.dims) for t in g.initializer}
        for t, d in self.inits.items():
            self.shapes[t] = d
        self.producer = {o: i for i, n in enumerate(self.nodes) for o in n.output if o}
        # constants: initializers and everything computed from constants alone
        self.const = set(self.inits)
        for n in self.nodes:
            if all((not i) or i in self.const for i in n.input):
                self.const.update(o for o in n.output if o)
        self.macs = [self._node_macs(n) for n in self.nodes]

    # -- shapes and costs -------------------------------------------------------------

    def shape(self, t: str) -> list[int | None] | None:
        return self.shapes.get(t)

    def batch1(self, t: str) -> list[int]:
        s = self.shape(t)
        if s is None or any(v is None for v in s[1:]):
            raise GraphError(f"{self.where}: cannot resolve the shape of {t!r} ({self._show(s)}); "
                             "pass --size HxW or export the model with a fixed input size")
        return [int(v) for v in s[1:]]

    @staticmethod
    def _show(s) -> str:
        return "unknown" if s is None else "[" + ", ".join("?" if v is None else str(v) for v in s) + "]"

    def _node_macs(self, n: onnx.NodeProto) -> int | None:
        def known(t):
            s = self.shape(t)
            return None if s is None or any(v is None for v in s[1:]) else s

        if n.op_type in ("Conv", "ConvTranspose"):
            w = self.inits.get(n.input[1]) or known(n.input[1])
            ref = known(n.output[0]) if n.op_type == "Conv" else known(n.input[0])
            if w is None or ref is None:
                return None
            return int(np.prod(ref[1:])) * int(np.prod(w[1:]))
        if n.op_type in ("Gemm", "MatMul"):
            a, out = known(n.input[0]), known(n.output[0])
            if a is None or out is None:
                return None
            attrs = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            k = a[-2] if n.op_type == "Gemm" and attrs.get("transA", 0) else a[-1]
            # out[0] is the batch (a Gemm's M): count per image
            return int(np.prod(out[1:])) * int(k)
        return 0

    def macs_of(self, nodes: set[int]) -> int:
        unknown = [self.nodes[i] for i in nodes if self.macs[i] is None]
        if unknown:
            n = unknown[0]
            raise GraphError(f"{self.where}: cannot count the multiply-accumulates of {n.op_type} {n.name!r}: "
                             "its shapes are unresolved; pass --size HxW")
        return int(sum(self.macs[i] for i in nodes))

    # -- cuts -------------------------------------------------------------------------

    def ancestors(self, t: str) -> set[int]:
        """Nodes computing `t` from the input (constant subgraphs excluded)."""
        seen, stack = set(), [t]
        while stack:
            x = stack.pop()
            i = self.producer.get(x)
            if i is None or i in seen or x in self.const:
                continue
            seen.add(i)
            stack.extend(v for v in self.nodes[i].input if v)
        return seen

    def tail_nodes(self, t: str) -> tuple[set[int], set[str]]:
        """Nodes computing the output from `t`, and the non-constant tensors they need
        besides those they compute and `t` itself (empty for a cut)."""
        seen, needs, stack = set(), set(), [self.output]
        while stack:
            x = stack.pop()
            if x == t or x in self.const:
                continue
            i = self.producer.get(x)
            if i is None:
                needs.add(x)  # the graph input
                continue
            if i in seen:
                continue
            seen.add(i)
            stack.extend(v for v in self.nodes[i].input if v)
        return seen, needs

    def why_not_cut(self, t: str) -> str | None:
        """None if `t` cuts the graph, else the reason in words."""
        if t == self.input:
            return "it is the model's input"
        if t == self.output:
            return "it is the model's output"
        if t in self.const:
            return "it is a constant (it does not depend on the image)"
        tail, needs = self.tail_nodes(t)
        if not needs:
            head = self.ancestors(t)
            # every node the tail runs must come after t: a tail node in the head is a
            # tensor the device computes that the edge would need too
            shared = tail & head
            if not shared:
                return None
            n = self.nodes[min(shared)]
            return f"the rest of the network also needs {n.output[0]!r}, computed on the device side"
        # name a tensor the device computes that the tail also reads
        head = self.ancestors(t)
        head_out = {o for i in head for o in self.nodes[i].output}
        tail_in = {v for i in tail for v in self.nodes[i].input if v}
        other = sorted((v for v in tail_in & head_out if v != t), key=lambda v: self.producer[v])
        what = repr(other[-1]) if other else f"the input {self.input!r}"
        return f"the rest of the network also needs {what}, which does not pass through it"

    def candidates(self) -> list[Candidate]:
        out = []
        for i, n in enumerate(self.nodes):
            for t in n.output:
                if not t or t in self.const or t == self.output:
                    continue
                if self.why_not_cut(t) is None:
                    out.append(self.describe(t))
        return out

    def describe(self, t: str) -> Candidate:
        shape = self.batch1(t)
        numel = int(np.prod(shape))
        head = self.ancestors(t)
        tail, _ = self.tail_nodes(t)
        n = self.nodes[self.producer[t]]
        return Candidate(tensor=t, node=n.name, op=n.op_type, shape=shape, fp32Bytes=4 * numel, int8Bytes=numel,
                         deviceMacs=self.macs_of(head), edgeMacs=self.macs_of(tail))

    def total_macs(self) -> int:
        return self.macs_of(self.ancestors(self.output))

    def resolve(self, name: str) -> str:
        """A tensor name, a node name (its output) or a module scope of a torch export
        (``layer2``: the last cut tensor computed inside ``/layer2/``) -> a tensor."""
        tensors = set(self.producer) | {self.input}
        if name in tensors:
            return name
        by_node = [n for n in self.nodes if n.name == name]
        if by_node:
            outs = [o for o in by_node[0].output if o]
            if len(outs) != 1:
                raise GraphError(f"{self.where}: node {name!r} has {len(outs)} outputs {outs}; name one of them")
            return outs[0]
        scope = f"/{name.strip('/')}/"
        inside = [o for n in self.nodes if n.name.startswith(scope) for o in n.output if o]
        if not inside and "/" not in name.strip("/"):
            # a torch module path: features.4 -> /features/features.4/, layer2.1.conv1 ->
            # /layer2/layer2.1/conv1/ (children by index carry their parent's name)
            scope = torch_scope(name)
            inside = [o for n in self.nodes if n.name.startswith(scope) for o in n.output if o]
        cuts = [t for t in inside if t not in self.const and self.why_not_cut(t) is None]
        if cuts:
            return cuts[-1]
        if inside:
            raise GraphError(f"{self.where}: no tensor inside {scope} cuts the graph")
        names = sorted(tensors | {n.name for n in self.nodes if n.name})
        near = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(x) for x in near)}?" if near else \
            "; list the candidates with python3 -m splitfleet_models.split_points MODEL.onnx"
        raise GraphError(f"{self.where}: no such tensor or node {name!r}{hint}")

    def check_cut(self, t: str) -> None:
        why = self.why_not_cut(t)
        if why is not None:
            raise GraphError(f"{self.where}: tensor {t!r} does not cut the graph: {why}")


def table(g: Graph, cands: list[Candidate]) -> str:
    total = g.total_macs()
    h, w = g.size
    rows = [("(image)", "input", f"3x{h}x{w}", 3 * h * w * 4, 3 * h * w, 0, total)]
    rows += [(c.tensor, c.op, "x".join(map(str, c.shape)), c.fp32Bytes, c.int8Bytes, c.deviceMacs, c.edgeMacs)
             for c in cands]
    head = ("tensor", "op", "shape", "fp32 bytes", "8-bit bytes", "device MMACs", "edge MMACs", "device %")
    lines = []
    body = [(t, op, s, f"{fb:,}", f"{ib:,}", f"{dm / 1e6:.1f}", f"{em / 1e6:.1f}", f"{100 * dm / max(1, total):.1f}")
            for t, op, s, fb, ib, dm, em in rows]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    for r in [head] + body:
        lines.append("  ".join(c.ljust(widths[i]) if i < 3 else c.rjust(widths[i]) for i, c in enumerate(r)))
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", help="an ONNX classifier: one NCHW image input, one logits output")
    ap.add_argument("--size", help="input HxW, needed when the model's height and width are dynamic")
    ap.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    args = ap.parse_args(argv)
    try:
        size = parse_size(args.size) if args.size else None
        model = onnx.load(args.onnx)
        g = Graph(model, size, where=args.onnx)
        cands = g.candidates()
    except (GraphError, ValueError, OSError) as e:
        print(f"split_points: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.json:
        print(json.dumps({"model": args.onnx, "size": list(g.size), "totalMacs": g.total_macs(),
                          "imageBytes": 3 * g.size[0] * g.size[1], "candidates": [asdict(c) for c in cands]},
                         indent=1))
    else:
        print(f"{args.onnx}: input {g.size[0]}x{g.size[1]}, {g.total_macs() / 1e6:.1f} M multiply-accumulates, "
              f"{len(cands)} split points")
        print(table(g, cands))


if __name__ == "__main__":
    main()
