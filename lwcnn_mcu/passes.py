"""Graph passes between the frontend and the memory planner.

Each pass is a pure ``Graph -> Graph`` function; :data:`PIPELINE` lists them in the order they
run. None of them may change a single output byte: the test suite compares the C of every
pipeline with TFLite Micro.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from lwcnn_mcu import ir

Pass = Callable[[ir.Graph], ir.Graph]


def lower_ops(g: ir.Graph) -> ir.Graph:
    """Compute every op's fixed-point constants (multipliers, shifts, offsets, clamps, pads)."""
    return g.replace(ops=tuple(op.lower(g) for op in g.ops))


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


_FUSABLE = (ir.Conv2D, ir.DepthwiseConv2D, ir.FullyConnected, ir.MaxPool2D, ir.AvgPool2D, ir.Add)


def fuse_activations(g: ir.Graph) -> ir.Graph:
    """Fold a separate RELU/RELU6 into the op before it when it only clamps.

    This is exact only when the RELU's input and output share scale and zero point (its
    requantization is then the identity) and the producer feeds nothing else; the producer's
    clamp becomes the intersection of both clamps.
    """
    ops = list(g.ops)
    k = 0
    while k < len(ops):
        op = ops[k]
        if isinstance(op, ir.Relu):
            src = op.inputs[0]
            x, y = g.t(src), g.t(op.outputs[0])
            prod = next((j for j, o in enumerate(ops) if src in o.outputs), None)
            users = [o for o in ops if src in o.inputs]
            if (prod is not None and isinstance(ops[prod], _FUSABLE) and len(users) == 1
                    and src not in g.outputs and (x.scale, x.zero_point) == (y.scale, y.zero_point)):
                p = ops[prod]
                lw = dict(p.lowered)
                lw["act_min"] = max(lw["act_min"], op.lowered["act_min"])
                lw["act_max"] = min(lw["act_max"], op.lowered["act_max"])
                ops[prod] = dataclasses.replace(p, outputs=op.outputs, lowered=lw)
                del ops[k]
                continue
        k += 1
    return g.replace(ops=tuple(ops))


def fuse_pooling(g: ir.Graph) -> ir.Graph:
    """Fuse a CONV_2D into the MAX/AVERAGE_POOL_2D that is its only consumer (see ir.ConvPool).

    The pool's padding may be anything; pooled windows skip conv positions outside the conv
    output, exactly as the separate pool skips padded input taps.
    """
    ops = list(g.ops)
    k = 0
    while k < len(ops):
        pool = ops[k]
        if isinstance(pool, ir.MaxPool2D):  # AvgPool2D too (subclass)
            src = pool.inputs[0]
            prod = next((j for j, o in enumerate(ops) if src in o.outputs), None)
            users = [o for o in ops if src in o.inputs]
            if (prod is not None and type(ops[prod]) is ir.Conv2D and len(users) == 1 and src not in g.outputs
                    and len(g.t(src).shape) == 4 and pool.filter[0] * pool.filter[1] <= ir.ConvPool.MAX_WINDOW):
                conv = ops[prod]
                fused = ir.ConvPool(f"{conv.name} + {pool.name}", conv.inputs, pool.outputs, conv=conv, pool=pool,
                                    opcode=f"{conv.opcode}+{pool.opcode}")
                ops[prod] = fused.lower(g)
                del ops[k]
                continue
        k += 1
    return g.replace(ops=tuple(ops))


def prune_tensors(g: ir.Graph) -> ir.Graph:
    """Keep only the tensors that some op or the graph's interface still uses."""
    used = {i for op in g.ops for i in op.inputs + op.outputs if i >= 0} | set(g.inputs) | set(g.outputs)
    return g.replace(tensors=tuple(t for t in g.tensors if t.id in used))


PIPELINE: tuple[Pass, ...] = (fold_constant_reshapes, lower_ops, fuse_activations, fuse_pooling, drop_identity_reshapes,
                              prune_tensors)


def run_pipeline(g: ir.Graph, pipeline: tuple[Pass, ...] = PIPELINE) -> ir.Graph:
    for p in pipeline:
        g = p(g)
    return g
