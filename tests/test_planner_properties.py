"""Memory-planner invariants on random graphs (hypothesis): whatever the graph, no two tensors
alive at the same time share a byte unless the plan made them aliases on purpose, every buffer is
aligned, and the arena is at least the largest set of bytes alive at once."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwcnn_mcu import backend, ir, passes, planner

H, W = 3, 4


@st.composite
def graphs(draw: st.DrawFn) -> ir.Graph:
    """A random DAG over (1, H, W, C) int8 tensors: requantize (in place), add of two earlier tensors
    of one shape, channel concatenation, 1x1 convolutions (overlapping their input) and 3x3 ones
    (scratch when the channels are not a multiple of 4)."""
    tensors: list[ir.Tensor] = []
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))

    def act(c: int) -> int:
        tid = len(tensors)
        tensors.append(ir.Tensor(tid, f"t{tid}", (1, H, W, c), "int8",
                                 ir.QuantParams((float(rng.uniform(0.01, 0.2)),), (int(rng.integers(-20, 20)),))))
        return tid

    def const(shape: tuple[int, ...], dtype: str) -> int:
        tid = len(tensors)
        if dtype == "int8":
            data = rng.integers(-127, 128, shape).astype(np.int8)
            q = ir.QuantParams(tuple(float(s) for s in rng.uniform(0.001, 0.01, shape[0])), (0,) * shape[0])
        else:
            data, q = rng.integers(-1000, 1000, shape).astype(np.int32), None
        tensors.append(ir.Tensor(tid, f"c{tid}", shape, dtype, q, data))
        return tid

    live = [act(draw(st.sampled_from([1, 3, 4, 8, 12])))]
    ops: list[ir.Op] = []
    for k in range(draw(st.integers(1, 9))):
        kind = draw(st.sampled_from(["requant", "add", "concat", "conv1", "conv3"]))
        a = draw(st.sampled_from(live))
        ca = tensors[a].shape[-1]
        same = [t for t in live if tensors[t].shape == tensors[a].shape and t != a]
        if kind == "add" and same:
            b = draw(st.sampled_from(same))
            ops.append(ir.Add(f"add{k}", (a, b), (act(ca),)))
        elif kind == "concat":
            b = draw(st.sampled_from(live))
            ops.append(ir.Concatenation(f"cat{k}", (a, b), (act(ca + tensors[b].shape[-1]),), axis=3))
        elif kind in ("conv1", "conv3"):
            kk = 1 if kind == "conv1" else 3
            oc = draw(st.sampled_from([2, 4, 8, 16]))
            w, bias = const((oc, kk, kk, ca), "int8"), const((oc,), "int32")
            ops.append(ir.Conv2D(f"conv{k}", (a, w, bias), (act(oc),), padding="SAME"))
        else:
            ops.append(ir.Requantize(f"q{k}", (a,), (act(ca),)))
        live.append(ops[-1].outputs[0])
    return ir.Graph("random", tuple(tensors), tuple(ops), (0,), (ops[-1].outputs[0],))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_plan_invariants(g0: ir.Graph) -> None:
    g = passes.run_pipeline(g0)
    kernels = backend.kernels(g)
    plan = planner.plan_memory(g, kernels)
    placed = [(b, p) for b in plan.buffers for p in b.parts]
    for b in plan.buffers:
        assert b.offset % planner.ALIGN == 0 and b.offset >= 0
        assert b.offset + b.nbytes <= plan.arena_bytes
    # no two bytes of different buffers are used at once
    for i, (b1, p1) in enumerate(placed):
        for b2, p2 in placed[i + 1:]:
            if b1 is b2 or p1.life[1] < p2.life[0] or p2.life[1] < p1.life[0]:
                continue
            lo1, lo2 = b1.offset + p1.rel, b2.offset + p2.rel
            assert lo1 + p1.nbytes <= lo2 or lo2 + p2.nbytes <= lo1, (p1, p2)
    # the arena holds at least every set of bytes alive at one op (the lower bound)
    for k in range(len(g.ops)):
        alive = sum(len(set().union(*(range(p.rel, p.rel + p.nbytes) for p in b.parts
                                      if p.life[0] <= k <= p.life[1]))) for b in plan.buffers)
        assert alive <= plan.arena_bytes
    # every activation the C touches has a place, inside the arena or the caller's buffers
    for op in g.ops:
        for tid in op.inputs + op.outputs:
            if tid >= 0 and not g.t(tid).is_const:
                pl = plan.placements[tid]
                assert pl.where in ("input", "output") or pl.offset + g.t(tid).nbytes <= plan.arena_bytes
    for k, off in plan.scratch.items():
        assert off % planner.ALIGN == 0 and off + kernels[k].scratch_bytes <= plan.arena_bytes
