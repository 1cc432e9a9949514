"""Graph passes on hand-built IR graphs."""

from __future__ import annotations

import numpy as np

from lwcnn_mcu import backend, ir, passes, planner


def _t(tid: int, shape: tuple[int, ...], data: np.ndarray | None = None, scale: float = 0.1) -> ir.Tensor:
    return ir.Tensor(tid, f"t{tid}", shape, "int8", ir.QuantParams((scale,), (0,)), data)


def test_constant_reshape_is_folded():
    x, c, cr, y = _t(0, (1, 4)), _t(1, (1,), np.array([3], np.int8)), _t(2, (1, 1)), _t(3, (1, 4))
    g = ir.Graph("g", (x, c, cr, y), (ir.Reshape("r", (1,), (2,)), ir.Mul("m", (0, 2), (3,))), (0,), (3,))
    out = passes.run_pipeline(g)
    assert [type(op).__name__ for op in out.ops] == ["Mul"]
    assert out.t(2).is_const and out.t(2).data.shape == (1, 1)


def test_relu_with_identical_quantization_is_fused_into_the_conv():
    x, w, b, y, z = (_t(0, (1, 4, 4, 1)), _t(1, (2, 3, 3, 1), np.ones((2, 3, 3, 1), np.int8)),
                     ir.Tensor(2, "b", (2,), "int32", None, np.zeros(2, np.int32)), _t(3, (1, 4, 4, 2)),
                     _t(4, (1, 4, 4, 2)))
    g = ir.Graph("g", (x, w, b, y, z), (ir.Conv2D("c", (0, 1, 2), (3,)), ir.Relu("r", (3,), (4,))), (0,), (4,))
    out = passes.run_pipeline(g)
    assert [type(op).__name__ for op in out.ops] == ["Conv2D"] and out.ops[0].outputs == (4,)
    assert out.ops[0].lowered["act_min"] == 0


def test_planner_shares_bytes_between_dead_tensors():
    x, a, b2, c2, y = _t(0, (1, 8)), _t(1, (1, 100)), _t(2, (1, 100)), _t(3, (1, 100)), _t(4, (1, 8))
    ops = (ir.Requantize("q1", (0,), (1,)), ir.Requantize("q2", (1,), (2,)), ir.Requantize("q3", (2,), (3,)),
           ir.Requantize("q4", (3,), (4,)))
    # q1 changes size (no in-place); q2 and q3 requantize in place; q4 writes the caller's output
    g = passes.run_pipeline(ir.Graph("g", (x, a, b2, c2, y), ops, (0,), (4,)))
    plan = planner.plan_memory(g, backend.kernels(g))
    assert plan.arena_bytes == 100  # requantize works in place: one buffer for the whole chain
    assert plan.placements[0].where == "input" and plan.placements[4].where == "output"


def test_layer_names_recovered_from_fused_tflite_names():
    fused = ("unified_1/b1_relu_1/Relu;unified_1/b1_bn_1/batchnorm/add_1;unified_1/b1_conv_1/convolution;"
             "unified_1/b1_bn_1/batchnorm/sub2")
    assert passes.layer_name(fused, ("image", "b1_conv", "b1_bn", "b1_relu")) == "b1_conv"  # first Keras layer
    assert passes.layer_name(fused) == "b1_relu_1"  # no Keras model: the scope as written
    assert passes.layer_name("model/conv2d/Relu;model/conv2d/BiasAdd", ("conv2d",)) == "conv2d"
    assert passes.layer_name("serving_default_input:0") == "serving_default_input"
    x, w, b, y, z = (_t(0, (1, 4, 4, 1)), _t(1, (2, 3, 3, 1), np.ones((2, 3, 3, 1), np.int8)),
                     ir.Tensor(2, "b", (2,), "int32", None, np.zeros(2, np.int32)), _t(3, (1, 4, 4, 2)),
                     _t(4, (1, 4, 4, 2), scale=0.2))
    g = ir.Graph("g", (x, w, b, y, z), (ir.Conv2D("c", (0, 1, 2), (3,), tflite_name=fused),
                                        ir.Softmax("s", (3,), (4,), opcode="SOFTMAX",
                                                   tflite_name="StatefulPartitionedCall_1:0")),
                 (0,), (4,), keras_layers=("b1_conv", "b1_bn", "b1_relu"))
    out = passes.run_pipeline(g)
    assert [op.name for op in out.ops] == ["b1_conv", "softmax"]
    assert out.ops[0].tflite_name == fused
