"""Graph passes between the frontend and the memory planner.

Each pass is a pure ``Graph -> Graph`` function; :data:`PIPELINE` lists them in the order they
run. None of them may change a single output byte: the test suite compares the C of every
pipeline with TFLite Micro.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from lwcnn_mcu import backend, ir, quant
from lwcnn_mcu.errors import LwcnnError

Pass = Callable[[ir.Graph], ir.Graph]


def lower_ops(g: ir.Graph) -> ir.Graph:
    """Compute every op's fixed-point constants (multipliers, shifts, offsets, clamps, pads)."""
    return g.replace(ops=tuple(_lower(op, g) for op in g.ops), edge_in=g.edge_in.lower(g) if g.edge_in else None,
                     edge_out=g.edge_out.lower(g) if g.edge_out else None)


def _lower(op: ir.Op, g: ir.Graph) -> ir.Op:
    try:
        return op.lower(g)
    except quant.MultiplierRangeError as exc:
        raise LwcnnError(f"op {op.tflite_name or op.name} ({op.opcode or op.kind}): {exc}, a quantization TFLite "
                         "Micro refuses (its check aborts the interpreter): the calibration data gave the op's output "
                         "(almost) no range. Calibrate with data that exercises the model, or train it") from None


def fold_constant_reshapes(g: ir.Graph) -> ir.Graph:
    """A RESHAPE of a constant becomes a constant of the new shape (no op, no RAM)."""
    tensors = {t.id: t for t in g.tensors}
    ops = []
    for op in g.ops:
        src = tensors.get(op.inputs[0])
        if isinstance(op, ir.Reshape) and src is not None and src.is_const and op.outputs[0] not in g.outputs:
            dst = tensors[op.outputs[0]]
            tensors[dst.id] = dataclasses.replace(dst, data=src.data.reshape(dst.shape), dtype=src.dtype)
            continue
        ops.append(op)
    return g.replace(ops=tuple(ops), tensors=tuple(tensors[t.id] for t in g.tensors))


def drop_identity_reshapes(g: ir.Graph) -> ir.Graph:
    """Remove RESHAPEs whose output shape equals their input shape (rewire the consumers)."""
    ops = list(g.ops)
    outputs = set(g.outputs)
    changed = True
    while changed:
        changed = False
        for k, op in enumerate(ops):
            if not isinstance(op, ir.Reshape):
                continue
            src, dst = op.inputs[0], op.outputs[0]
            if g.t(src).shape != g.t(dst).shape or dst in outputs:
                continue
            del ops[k]
            ops = [dataclasses.replace(o, inputs=tuple(src if i == dst else i for i in o.inputs)) for o in ops]
            changed = True
            break
    return g.replace(ops=tuple(ops))


_FUSABLE = (ir.Conv2D, ir.DepthwiseConv2D, ir.FullyConnected, ir.MaxPool2D, ir.AvgPool2D, ir.Add,  # and ir.Sub
            ir.TransposeConv)


def fuse_activations(g: ir.Graph) -> ir.Graph:
    """Fold a separate RELU/RELU6 into the op before it when it only clamps.

    This is exact only when the RELU's input and output share scale and zero point (its
    requantization is then the identity) and the producer feeds nothing else; the producer's
    clamp becomes the intersection of both clamps.
    """
    while True:
        fused = _fuse_activations_one(g)
        if fused is None:
            return g
        g = fused


def _fuse_activations_one(g: ir.Graph) -> ir.Graph | None:
    for k, op in enumerate(g.ops):
        if not isinstance(op, ir.Relu):
            continue
        src = op.inputs[0]
        x, y = g.t(src), g.t(op.outputs[0])
        prod = g.producer(src)
        if (prod is None or not isinstance(g.ops[prod], _FUSABLE) or len(g.consumers(src)) != 1
                or src in g.outputs or (x.scale, x.zero_point) != (y.scale, y.zero_point)):
            continue
        p = g.ops[prod]
        lw = dict(p.lowered)
        lw["act_min"] = max(lw["act_min"], op.lowered["act_min"])
        lw["act_max"] = min(lw["act_max"], op.lowered["act_max"])
        fused = dataclasses.replace(p, outputs=op.outputs, lowered=lw, tflite_name=op.tflite_name)
        ops = [fused if j == prod else o for j, o in enumerate(g.ops) if j != k]
        return g.replace(ops=tuple(ops))
    return None


def fuse_pooling(g: ir.Graph) -> ir.Graph:
    """Fuse a CONV_2D into the MAX/AVERAGE_POOL_2D that is its only consumer (see ir.ConvPool).

    The pool's padding may be anything; pooled windows skip conv positions outside the conv
    output, exactly as the separate pool skips padded input taps. Windows larger than the
    kernel's LW_POOL_MAX_PIXELS stay two ops.
    """
    while True:
        fused = _fuse_pooling_one(g)
        if fused is None:
            return g
        g = fused



def _fuse_pooling_one(g: ir.Graph) -> ir.Graph | None:
    for k, pool in enumerate(g.ops):
        if not isinstance(pool, ir.MaxPool2D):  # AvgPool2D too (subclass)
            continue
        src = pool.inputs[0]
        prod = g.producer(src)
        if (prod is None or type(g.ops[prod]) is not ir.Conv2D or len(g.consumers(src)) != 1 or src in g.outputs
                or len(g.t(src).shape) != 4
                or pool.filter[0] * pool.filter[1] > backend.limit("LW_POOL_MAX_PIXELS")):
            continue
        conv = g.ops[prod]
        fused = ir.ConvPool(f"{conv.name} + {pool.name}", conv.inputs, pool.outputs, conv=conv, pool=pool,
                            opcode=f"{conv.opcode}+{pool.opcode}", tflite_name=pool.tflite_name).lower(g)
        ops = [fused if j == prod else o for j, o in enumerate(g.ops) if j != k]
        return g.replace(ops=tuple(ops))
    return None


_SCOPE_SUFFIX = re.compile(r"^(.*)_\d+$")
_SIGNATURE = re.compile(r"^(StatefulPartitionedCall|PartitionedCall|serving_default)")


def layer_name(fused: str, keras_layers: tuple[str, ...] = ()) -> str:
    """A short, readable name for an op from its TFLite tensor name.

    The converter names a tensor after every op fused into it, each as a TensorFlow scope path:
    ``unified_1/b1_relu_1/Relu;unified_1/b1_bn_1/batchnorm/add_1;unified_1/b1_conv_1/convolution``.
    The layer is the path's second part (the first is the model). With the Keras model's layer
    names known (scopes carry a ``_N`` suffix when a layer is called again), the name is the first
    Keras layer fused into the op (``b1_conv``); otherwise the first part's layer scope as written.
    """
    scopes = []
    for part in fused.split(";"):
        segs = [s for s in part.split(":")[0].split("/") if s]
        if segs:
            scopes.append(segs[1] if len(segs) >= 3 else segs[0])
    if not scopes:
        return fused
    if keras_layers:
        order = {n: i for i, n in enumerate(keras_layers)}
        known = []
        for s in scopes:
            m = _SCOPE_SUFFIX.match(s)
            name = s if s in order else (m.group(1) if m and m.group(1) in order else None)
            if name is not None:
                known.append(name)
        if known:
            return min(known, key=order.__getitem__)
    return scopes[0]


def name_layers(g: ir.Graph) -> ir.Graph:
    """Give every op a short name (``layer_name``) for comments, reports and per-layer tables; the
    full TFLite name stays in ``Op.tflite_name``."""
    ops = []
    for op in g.ops:
        name = layer_name(op.tflite_name or op.name, g.keras_layers)
        if _SIGNATURE.match(name):  # the converter's name for a model output says nothing: the op does
            name = (op.opcode or op.kind).lower()
        ops.append(dataclasses.replace(op, name=name))
    return g.replace(ops=tuple(ops))


def prune_tensors(g: ir.Graph) -> ir.Graph:
    """Keep only the tensors that some op or the graph's interface still uses."""
    edges = [op for op in (g.edge_in, g.edge_out) if op is not None]
    used = {i for op in list(g.ops) + edges for i in op.inputs + op.outputs if i >= 0} | set(g.inputs) | set(g.outputs)
    return g.replace(tensors=tuple(t for t in g.tensors if t.id in used))


PIPELINE: tuple[Pass, ...] = (name_layers, fold_constant_reshapes, lower_ops, fuse_activations, fuse_pooling,
                              drop_identity_reshapes, prune_tensors)


def pipeline_for(kernels: str) -> tuple[Pass, ...]:
    """The passes for a kernel set (backend.Options.kernels): CMSIS-NN has no fused convolution + pooling, so
    with "cmsis-nn" the pooling stays a layer of its own (its CONV_2D and MAX/AVERAGE_POOL_2D both go to CMSIS-NN)."""
    return tuple(p for p in PIPELINE if p is not fuse_pooling) if kernels == "cmsis-nn" else PIPELINE


def run_pipeline(g: ir.Graph, pipeline: tuple[Pass, ...] = PIPELINE) -> ir.Graph:
    for p in pipeline:
        g = p(g)
    return g
