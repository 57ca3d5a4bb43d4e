"""Graph rewrites applied to the fused export before quantisation, where onnxruntime's fused kernel is the slow one.

``SkipLayerNormalization`` (residual add + bias + LayerNorm, fused by onnxruntime's BERT optimiser) runs a scalar
loop per token on CPU: 2.5-3 µs per 384-wide token on a 2-core AVX-512 Xeon, 60 µs for a 22-token query and
600 µs for a 200-token chunk, twelve times per text. The standard ``LayerNormalization`` kernel is no faster. The
same arithmetic spelt as elementwise ops (Add, ReduceMean, Sub, Mul, Sqrt, Div), which onnxruntime vectorises,
takes 27 and 143 µs (``onnxruntime`` 1.32, one thread). onnxruntime 1.32's session-level fusions leave the
elementwise form alone (checked: the session's optimised graph has no layer-norm node), and ``DISABLED_FUSIONS``
keeps it that way should a later release learn to fuse it back.
"""

from __future__ import annotations

from typing import Any

# onnxruntime's session-level fusions that would put the scalar kernels back (see the module docstring)
DISABLED_FUSIONS = ("LayerNormFusion", "SkipLayerNormFusion", "SimplifiedLayerNormFusion")


def unfuse_skip_layer_norms(model: Any) -> int:
    """Replace every ``SkipLayerNormalization`` node of ``model`` (an ``onnx.ModelProto``) in place; returns how many.

    Each becomes ``y = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta`` with ``s = input + skip (+ bias)``,
    the variance taken around the mean (two passes: at least as exact as the fused kernel's one-pass
    ``E[s²] - mean²``). Only the node's first output may be used (the BERT fusion produces no others).
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    # ReduceMean takes its axes as an attribute up to opset 17 and as an input from 18 on
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    nodes: list[Any] = []
    replaced = 0
    for node in graph.node:
        if node.op_type != "SkipLayerNormalization":
            nodes.append(node)
            continue
        if any(node.output[1:]):
            raise ValueError(f"{node.name}: only the normalised output can be unfused")
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        x, skip, gamma, beta = node.input[:4]
        bias = node.input[4] if len(node.input) > 4 else ""
        prefix = f"{node.name}/unfused"

        def op(kind: str, inputs: list[str], name: str, prefix: str = prefix, **attrs: Any) -> str:
            nodes.append(helper.make_node(kind, inputs, [f"{prefix}/{name}"], name=f"{prefix}/{name}", **attrs))
            return f"{prefix}/{name}"

        def mean(value: str, name: str, prefix: str = prefix) -> str:
            if opset < 18:
                return op("ReduceMean", [value], name, axes=[-1], keepdims=1)
            return op("ReduceMean", [value, f"{prefix}/last_axis"], name, keepdims=1)

        graph.initializer.append(numpy_helper.from_array(np.array(epsilon, dtype=np.float32), f"{prefix}/epsilon"))
        if opset >= 18:
            graph.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{prefix}/last_axis"))
        total = op("Add", [x, skip], "residual")
        if bias:
            total = op("Add", [total, bias], "biased")
        centered = op("Sub", [total, mean(total, "mean")], "centered")
        variance = mean(op("Mul", [centered, centered], "squared"), "variance")
        deviation = op("Sqrt", [op("Add", [variance, f"{prefix}/epsilon"], "variance_eps")], "deviation")
        scaled = op("Mul", [op("Div", [centered, deviation], "normalised"), gamma], "scaled")
        nodes.append(helper.make_node("Add", [scaled, beta], [node.output[0]], name=f"{prefix}/shifted"))
        replaced += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return replaced
