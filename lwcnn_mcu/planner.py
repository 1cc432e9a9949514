"""Static memory planner: one arena, no malloc, tensors share bytes when their lifetimes allow.

Algorithm
---------
1. **Lifetimes.** Ops run in graph order 0..N-1. A tensor lives from the op that writes it to the
   last op that reads it (both inclusive). The model's input is read from the caller's buffer and
   its output written straight into the caller's buffer, so neither takes arena space - except on
   a side whose own type is float32 or uint8 (``staged_io``): there the int8 tensor is in the arena.
2. **Aliases.** Tensors that must or may hold the same bytes are merged into one *buffer*:
   a RESHAPE's output is its input under another shape (always merged; zero cost); an op that
   may work in place (ADD, SOFTMAX, QUANTIZE/RELU: ``Op.INPLACE_INPUT``) writes over its input
   when that input's buffer dies at this op and has the same size. A pointwise op that streams
   pixel by pixel (a 1x1 stride-1 CONV_2D read in place: ``Kernel.overlap_offset`` of the backend) writes its output
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
   A kernel's scratch buffer (``Kernel.scratch_bytes``: say, a convolution's gathered patches) is placed
   the same way, as a buffer that lives during its op only.
4. ``arena_bytes`` is the highest end offset: the exact size of the C arena, scratch included. No
   per-tensor bookkeeping is stored in RAM.

Limits: ops keep their graph order (no reordering to lower the peak); a tensor is never split
across two address ranges; alignment is 4 bytes for every buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lwcnn_mcu import ir
from lwcnn_mcu.backend import Kernel

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
    buffers: tuple[Buffer, ...] = ()  # the arena's buffers as placed (offset set)

    def expr(self, tid: int) -> str:
        """C expression of a tensor's first byte: ``arena + offset``, ``input`` or ``output``."""
        p = self.placements[tid]
        if p.where == "arena":
            return f"arena + {p.offset}"
        return p.where


@dataclass(frozen=True)
class Part:
    """A tensor inside its buffer: where it starts, its bytes and when it is alive."""

    tensor: int  # tensor id, or -1 for a kernel's scratch
    rel: int  # offset inside the buffer
    nbytes: int
    life: tuple[int, int]  # first and last op (inclusive)


@dataclass(frozen=True)
class Buffer:
    """Bytes of the arena shared by aliased tensors (or one kernel's scratch)."""

    key: int  # the alias group's root tensor, or the op index for scratch
    parts: tuple[Part, ...]
    scratch_of: int | None = None  # op index when this is a kernel's scratch buffer
    offset: int = -1  # in the arena, once placed

    @property
    def nbytes(self) -> int:
        return max(p.rel + p.nbytes for p in self.parts)

    @property
    def life(self) -> tuple[int, int]:
        return min(p.life[0] for p in self.parts), max(p.life[1] for p in self.parts)

    @property
    def tiebreak(self) -> tuple[int, int]:
        """Equal candidates in a placement order: scratch first (latest op first), then by tensor."""
        return (0, -self.key) if self.scratch_of is not None else (1, self.key)


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


#: Placement orders tried (step 3); the one giving the smallest arena wins.
ORDERS = (
    lambda b: (-b.nbytes, b.life[0], b.tiebreak),  # largest first (TFLite Micro's order)
    lambda b: (b.life[0], -b.nbytes, b.tiebreak),  # first written first
    lambda b: (-(b.nbytes * (b.life[1] - b.life[0] + 1)), b.tiebreak),  # largest size x lifetime first
    lambda b: (-b.life[1] + b.life[0], -b.nbytes, b.tiebreak),  # longest-lived first
)


def _place(buffers: list[Buffer]) -> tuple[int, list[Buffer]]:
    """Lowest aligned offset per buffer such that none of its parts overlaps, in address and
    lifetime, a part of a buffer placed before it (parts of one buffer may overlap each other)."""
    placed: list[tuple[int, int, tuple[int, int]]] = []  # (offset, size, lifetime) of placed parts
    out: list[Buffer] = []
    arena = 0
    for buf in buffers:
        forbidden = []  # buffer offsets x in [lo, hi) would overlap a placed part
        for part in buf.parts:
            first, last = part.life
            for off, sz, (f, lst) in placed:
                if not (lst < first or last < f):
                    forbidden.append((off - part.rel - part.nbytes + 1, off + sz - part.rel))
        x, moved = 0, True
        while moved:
            moved = False
            for lo, hi in forbidden:
                if lo <= x < hi:
                    x, moved = _align(hi), True
        placed += [(x + part.rel, part.nbytes, part.life) for part in buf.parts]
        out.append(Buffer(buf.key, buf.parts, buf.scratch_of, x))
        arena = max(arena, x + buf.nbytes)
    return arena, out


def staged_io(g: ir.Graph) -> tuple[bool, bool]:
    """Whether the int8 core's input / output lives in the arena: on a side where the model's own
    type is float32 or uint8 (``Graph.edge_in`` / ``edge_out``), the C API's ``NAME_invoke_<type>``
    converts straight into (out of) the arena, and ``NAME_invoke`` copies the int8 values there."""
    return g.edge_in is not None, g.edge_out is not None


def plan_memory(g: ir.Graph, kernels: Sequence[Kernel]) -> MemoryPlan:
    """Place every activation tensor and kernel scratch buffer of ``g`` (whose ops run as
    ``kernels``, from :func:`lwcnn_mcu.backend.kernels`)."""
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
        d = kernels[k].overlap_offset
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
    buffers: list[Buffer] = []
    staged = staged_io(g)
    for root, members in roots.items():
        if any(m in g.inputs for m in members) and not staged[0]:
            placements.update({m: Placement("input") for m in members})
        elif any(m in g.outputs for m in members) and not staged[1]:
            placements.update({m: Placement("output") for m in members})
        else:
            buffers.append(Buffer(root, tuple(Part(m, member_off.get(m, 0), g.t(m).nbytes, life[m])
                                              for m in members)))
    for k, kern in enumerate(kernels):  # kernel scratch: a buffer that lives during its op only
        if kern.scratch_bytes:
            buffers.append(Buffer(k, (Part(-1, 0, _align(kern.scratch_bytes), (k, k)),), scratch_of=k))
    best: tuple[int, list[Buffer]] = (0, [])
    for order in ORDERS:
        arena, placed = _place(sorted(buffers, key=order))
        if not best[1] or arena < best[0]:
            best = (arena, placed)
    arena, placed = best
    for buf in placed:
        placements.update({p.tensor: Placement("arena", buf.offset + p.rel) for p in buf.parts if p.tensor >= 0})
    scratch = {buf.scratch_of: buf.offset for buf in placed if buf.scratch_of is not None}
    return MemoryPlan(placements, _align(arena) if arena else 0, frozenset(copies), life, scratch,
                      tuple(sorted(placed, key=lambda b: (b.offset, b.key))))
