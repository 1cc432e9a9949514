"""Static memory planner: one arena, no malloc, tensors share bytes when their lifetimes allow.

Algorithm
---------
1. **Lifetimes.** Ops run in graph order 0..N-1. A tensor lives from the op that writes it to the
   last op that reads it (both inclusive). The model's input is read from the caller's buffer and
   its output written straight into the caller's buffer, so neither takes arena space.
2. **Aliases.** Tensors that must or may hold the same bytes are merged into one *buffer*:
   a RESHAPE's output is its input under another shape (always merged; zero cost); an op that
   may work in place (ADD, SOFTMAX, QUANTIZE/RELU: ``Op.INPLACE_INPUT``) writes over its input
   when that input's buffer dies at this op and has the same size. A pointwise op that streams
   pixel by pixel (a 1x1 stride-1 CONV_2D read in place: ``Op.overlap_offset``) writes its output
   over its dying input when the input starts D bytes into the output's buffer, D chosen so that
   no output pixel lands on an input pixel not yet read; the buffer is then max(out, D + in)
   bytes instead of out + in. A buffer's lifetime is the union of its tensors'. Buffers holding
   the caller's input are never written to; a RESHAPE from the caller's input straight to the
   caller's output stays a copy.
3. **Placement (greedy, several orders).** Buffers are taken in an order and each is put at the
   lowest 4-byte-aligned offset where none of its tensors overlaps, in address, a tensor of an
   already-placed buffer whose lifetime overlaps its own (tensor by tensor, so the free head of an
   overlapping buffer can hold something else while only its tail is live). TFLite Micro's
   GreedyMemoryPlanner uses one order (largest first); we try the few in ``ORDERS`` (largest
   first, first written first, largest size x lifetime first, longest-lived first) and keep the
   smallest arena. Still a heuristic: the problem is NP-hard and no order is optimal on every
   graph.
   A kernel's scratch buffer (``Op.scratch_bytes``: the convolution's gathered patch) is placed
   the same way, as a buffer that lives during its op only.
4. ``arena_bytes`` is the highest end offset: the exact size of the C arena, scratch included. No
   per-tensor bookkeeping is stored in RAM.

Limits: ops keep their graph order (no reordering to lower the peak); a tensor is never split
across two address ranges; alignment is 4 bytes for every buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

from lwcnn_mcu import ir

ALIGN = 4


@dataclass(frozen=True)
class Placement:
    where: str  # "arena" | "input" | "output"
    offset: int = 0


@dataclass(frozen=True)
class MemoryPlan:
    placements: dict[int, Placement]
    arena_bytes: int
    copies: frozenset[int]  # indices of RESHAPE ops that must copy (all others are free)
    lifetimes: dict[int, tuple[int, int]]
    scratch: dict[int, int]  # op index -> arena offset of its scratch buffer

    def expr(self, tid: int) -> str:
        """C expression of a tensor's first byte."""
        p = self.placements[tid]
        if p.where == "arena":
            return f"(LW_ARENA + {p.offset})"
        return p.where


class _Groups:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


#: root, member tensors, bytes, lifetime, parts: (offset in the buffer, bytes, lifetime) per member
_Group = tuple[int, list[int], int, tuple[int, int], list[tuple[int, int, tuple[int, int]]]]

#: Placement orders tried (step 3); the one giving the smallest arena wins.
ORDERS = (
    lambda r: (-r[2], r[3][0], r[0]),  # largest first (TFLite Micro's order)
    lambda r: (r[3][0], -r[2], r[0]),  # first written first
    lambda r: (-(r[2] * (r[3][1] - r[3][0] + 1)), r[0]),  # largest size x lifetime first
    lambda r: (-r[3][1] + r[3][0], -r[2], r[0]),  # longest-lived first
)


def _place(groups: list[_Group]) -> tuple[int, dict[int, int]]:
    """Lowest aligned offset per buffer such that none of its parts overlaps, in address and
    lifetime, a part of a buffer placed before it (parts of one buffer may overlap each other)."""
    placed: list[tuple[int, int, tuple[int, int]]] = []  # (offset, size, lifetime) of placed parts
    offsets: dict[int, int] = {}
    arena = 0
    for root, _members, _size, _life, parts in groups:
        forbidden = []  # buffer offsets x in [lo, hi) would overlap a placed part
        for rel, size, (first, last) in parts:
            for off, sz, (f, lst) in placed:
                if not (lst < first or last < f):
                    forbidden.append((off - rel - size + 1, off + sz - rel))
        x, moved = 0, True
        while moved:
            moved = False
            for lo, hi in forbidden:
                if lo <= x < hi:
                    x, moved = _align(hi), True
        placed += [(x + rel, size, lf) for rel, size, lf in parts]
        offsets[root] = x
        arena = max(arena, max(x + rel + size for rel, size, _lf in parts))
    return arena, offsets


def plan_memory(g: ir.Graph) -> MemoryPlan:
    n_ops = len(g.ops)
    life: dict[int, tuple[int, int]] = {}
    for tid in g.inputs:
        life[tid] = (-1, -1)
    for k, op in enumerate(g.ops):
        for tid in op.outputs:
            life[tid] = (k, life.get(tid, (k, k))[1])
        for tid in op.inputs:
            if tid >= 0 and not g.t(tid).is_const:
                first, last = life.get(tid, (k, k))
                life[tid] = (first, max(last, k))
    for tid in g.outputs:
        life[tid] = (life[tid][0], n_ops)

    groups = _Groups()
    for tid in life:
        groups.find(tid)
    copies: set[int] = set()
    in_root = lambda t: groups.find(t) in {groups.find(i) for i in g.inputs}  # noqa: E731
    out_root = lambda t: groups.find(t) in {groups.find(o) for o in g.outputs}  # noqa: E731
    for k, op in enumerate(g.ops):
        if isinstance(op, ir.Reshape):
            src, dst = op.inputs[0], op.outputs[0]
            if (in_root(src) and out_root(dst)) or (out_root(src) and in_root(dst)):
                copies.add(k)
            else:
                groups.union(dst, src)

    def group_life(root: int) -> tuple[int, int]:
        members = [t for t in life if groups.find(t) == root]
        return min(life[t][0] for t in members), max(life[t][1] for t in members)

    for k, op in enumerate(g.ops):
        if op.INPLACE_INPUT is None or k in copies:
            continue
        src, dst = op.inputs[op.INPLACE_INPUT], op.outputs[0]
        if g.t(src).is_const or in_root(src) or g.t(src).nbytes != g.t(dst).nbytes:
            continue
        if groups.find(src) == groups.find(dst) or group_life(groups.find(src))[1] != k:
            continue
        if out_root(src) and out_root(dst):
            continue
        # the other inputs must not live in the buffer we write over
        if any(groups.find(i) == groups.find(src) for j, i in enumerate(op.inputs) if j != op.INPLACE_INPUT):
            continue
        groups.union(dst, src)

    member_off: dict[int, int] = {}  # a tensor's offset inside its buffer (overlapping aliases)
    for k, op in enumerate(g.ops):
        d = op.overlap_offset(g)
        if d is None:
            continue
        src, dst = op.inputs[0], op.outputs[0]
        if g.t(src).is_const or in_root(src) or out_root(src) or out_root(dst):
            continue
        rs, rd = groups.find(src), groups.find(dst)
        if rs == rd or group_life(rs)[1] != k:
            continue
        for t in list(life):
            if groups.find(t) == rs:
                member_off[t] = member_off.get(t, 0) + d
        groups.union(src, dst)

    roots: dict[int, list[int]] = {}
    for tid in life:
        roots.setdefault(groups.find(tid), []).append(tid)

    placements: dict[int, Placement] = {}
    arena_groups: list[_Group] = []
    for root, members in roots.items():
        if any(m in g.inputs for m in members):
            placements.update({m: Placement("input") for m in members})
        elif any(m in g.outputs for m in members):
            placements.update({m: Placement("output") for m in members})
        else:
            parts = [(member_off.get(m, 0), g.t(m).nbytes, life[m]) for m in members]
            size = max(rel + sz for rel, sz, _lf in parts)
            arena_groups.append((root, members, size, group_life(root), parts))

    for k, op in enumerate(g.ops):  # kernel scratch: a buffer that lives during its op only
        if op.scratch_bytes():
            sz = _align(op.scratch_bytes())
            arena_groups.append((-1000 - k, [], sz, (k, k), [(0, sz, (k, k))]))
    best: tuple[int, dict[int, int]] | None = None
    for order in ORDERS:
        arena, offsets = _place(sorted(arena_groups, key=order))
        if best is None or arena < best[0]:
            best = (arena, offsets)
    arena, offsets = best if best is not None else (0, {})
    for root, members, _size, _life, _parts in arena_groups:
        placements.update({m: Placement("arena", offsets[root] + member_off.get(m, 0)) for m in members})
    scratch = {-1000 - root: offsets[root] for root, _m, _s, _l, _p in arena_groups if root <= -1000}
    return MemoryPlan(placements, _align(arena) if arena else 0, frozenset(copies), life, scratch)
