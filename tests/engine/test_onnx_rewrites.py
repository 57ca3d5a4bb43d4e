"""The export's graph rewrite: unfused SkipLayerNormalization computes what onnxruntime's fused kernel computes."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import onnxruntime
import pytest
from onnx import ModelProto, TensorProto, helper, numpy_helper

from engine.embedders.onnx_rewrites import DISABLED_FUSIONS, unfuse_skip_layer_norms

HIDDEN = 384


def skip_layer_norm_model(*, bias: bool, opset: int) -> ModelProto:
    """One fused node, the way onnxruntime's BERT optimiser writes it, with MiniLM-like weights."""
    rng = np.random.default_rng(7)
    weights = {"gamma": rng.normal(1.0, 0.2, HIDDEN), "beta": rng.normal(0.0, 0.1, HIDDEN)}
    if bias:
        weights["bias"] = rng.normal(0.0, 0.5, HIDDEN)
    initializers = [numpy_helper.from_array(v.astype(np.float32), name) for name, v in weights.items()]
    node = helper.make_node(
        "SkipLayerNormalization", ["input", "skip", *weights], ["output"], name="SkipLayerNorm_0",
        domain="com.microsoft", epsilon=1e-12,
    )  # fmt: skip
    tensor = [1, "sequence", HIDDEN]
    graph = helper.make_graph(
        [node], "residual",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, tensor) for n in ("input", "skip")],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, tensor)], initializers,
    )  # fmt: skip
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def run(model: ModelProto, feeds: dict[str, Any]) -> Any:
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_FUSIONS)
    )
    return session.run(None, feeds)[0]


@pytest.mark.parametrize(("bias", "opset"), [(True, 17), (False, 17), (True, 18)])
def test_unfused_skip_layer_norm_matches_the_fused_kernel(bias: bool, opset: int) -> None:
    fused = skip_layer_norm_model(bias=bias, opset=opset)
    unfused = copy.deepcopy(fused)
    assert unfuse_skip_layer_norms(unfused) == 1
    assert "SkipLayerNormalization" not in {node.op_type for node in unfused.graph.node}
    rng = np.random.default_rng(11)
    for sequence in (1, 22, 200):
        # activations of a transformer's residual stream: mostly small, a few large outliers per token
        feeds = {name: rng.standard_t(3, (1, sequence, HIDDEN)).astype(np.float32) for name in ("input", "skip")}
        expected, actual = run(fused, feeds), run(unfused, feeds)
        assert actual.shape == expected.shape == (1, sequence, HIDDEN)
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_a_graph_without_skip_layer_norm_is_left_alone() -> None:
    model = skip_layer_norm_model(bias=True, opset=17)
    model.graph.node[0].op_type = "LayerNormalization"  # any other node
    before = model.SerializeToString()
    assert unfuse_skip_layer_norms(model) == 0
    assert model.SerializeToString() == before
