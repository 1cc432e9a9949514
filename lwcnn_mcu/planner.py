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
   when that input's buffer dies at this op and has the same size. An op that computes its output
   pixels in order (a CONV_2D: ``backend.conv_overlap``; a depthwise one with its row ring:
   ``dw_rows_geometry``; ``Kernel.overlap_offset`` of the backend) may write its output over its dying
   input when the input starts D bytes into the output's buffer, D chosen so that no output pixel lands
   on an input byte not yet read; the buffer is then max(out, D + in) bytes instead of out + in.
   These overlaps are *optional*: each pins the output D bytes below its input, and a chain of them
   drifts down the arena by D per op (a depthwise-separable stack would then need more than two maps'
   worth), so step 4 also tries plans without some of them. A buffer's
   lifetime is the union of its tensors'. Buffers holding the caller's input are never written to;
   a RESHAPE from the caller's input straight to the caller's output stays a copy.
3. **Lower bound.** At op k the arena holds at least every part (tensor in its buffer, or kernel
   scratch) alive at k. ``lower_bound`` counts, for each op, the bytes its alive parts cover (within a
   buffer the union of its parts' byte ranges, every optional overlap taken: taking an alias never
   adds bytes); when every part starts 4-byte aligned in its buffer (the backend's D are multiples of 4),
   two buffers' parts never share a 4-byte word, so it counts whole words. The largest count (rounded
   up to 4) bounds every arena this planner can produce, whatever the order and the overlaps chosen;
   the plan reports it beside ``arena_bytes`` (``peak_op``: where it is reached).
4. **Placement (greedy orders, then a search).** Buffers are taken in an order and each is put at the
   lowest 4-byte-aligned offset where none of its tensors overlaps, in address, a tensor of an
   already-placed buffer whose lifetime overlaps its own (tensor by tensor, so the free head of an
   overlapping buffer can hold something else while only its tail is live). TFLite Micro's
   GreedyMemoryPlanner uses one order (largest first); we first try the few in ``ORDERS`` (largest
   first, first written first, largest size x lifetime first, longest-lived first), with every
   optional overlap taken and then with none. The search stops as soon as an arena equals the lower
   bound. Otherwise the search has a budget of ``TRIES`` placements (fewer on a big graph: about
   ``WORK`` part-against-part checks in all, so a 50-op graph plans in well under a second). When the
   overlap choices times the orders of the buffers fit in it, every one is tried; else an iterated
   greedy runs that many steps from the best plan so far: each step moves one or two buffers in the
   order or flips one optional overlap (a ``random.Random(SEED)``, so the same graph always gets the
   same plan), keeps the change when the arena does not grow, and remembers the smallest arena. When
   the bound is still not reached, ``gap_reason`` names the buffer at the top of the arena and the
   buffers whose lifetimes overlap its own below it. The bound may be unreachable: it ignores that a
   buffer keeps one address for its whole life and its tensors their places in it (the problem is
   NP-hard; no order is optimal on every graph).
   A kernel's scratch buffer (``Kernel.scratch_bytes``: say, a convolution's gathered patches) is placed
   the same way, as a buffer that lives during its op only.
5. ``arena_bytes`` is the highest end offset: the exact size of the C arena, scratch included. No
   per-tensor bookkeeping is stored in RAM.

Limits: ops keep their graph order (no reordering to lower the peak); a tensor is never split
across two address ranges; alignment is 4 bytes for every buffer.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import permutations

from lwcnn_mcu import ir
from lwcnn_mcu.backend import Kernel

ALIGN = 4

#: Placements the search tries after the greedy orders when they miss the lower bound (step 4): at most
#: TRIES, fewer on a big graph so that they cost about WORK part-against-part checks in all (a placement of P
#: parts checks up to P^2 pairs): a 50-op graph gets all TRIES, in under half a second.
TRIES = 1000
WORK = 4_000_000
#: Buffers a gap reason names below the top of the arena (the largest).
GAP_NAMES = 6
#: Seed of the iterated greedy's random choices: the same graph always gets the same plan.
SEED = 0


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
    lower_bound: int = 0  # no arena of this graph's buffers is smaller (step 3)
    peak_op: int | None = None  # the first op where the bytes alive reach lower_bound
    gap_reason: str | None = None  # why arena_bytes > lower_bound (None when equal)
    search: str = ""  # how the plan was found: "greedy, largest first", "iterated greedy, step 12", ...

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

    def copy(self) -> _Groups:
        out = _Groups()
        out.parent = dict(self.parent)
        return out


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


#: Placement orders tried first (step 4), with their names for the report.
ORDERS = (
    lambda b: (-b.nbytes, b.life[0], b.tiebreak),  # largest first (TFLite Micro's order)
    lambda b: (b.life[0], -b.nbytes, b.tiebreak),  # first written first
    lambda b: (-(b.nbytes * (b.life[1] - b.life[0] + 1)), b.tiebreak),  # largest size x lifetime first
    lambda b: (-b.life[1] + b.life[0], -b.nbytes, b.tiebreak),  # longest-lived first
)
ORDER_NAMES = ("largest first", "first written first", "largest size x lifetime first", "longest-lived first")


def _place(buffers: Sequence[Buffer]) -> tuple[int, list[Buffer]]:
    """Lowest aligned offset per buffer such that none of its parts overlaps, in address and
    lifetime, a part of a buffer placed before it (parts of one buffer may overlap each other)."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first op, last op) of placed parts
    out: list[Buffer] = []
    arena = 0
    for buf in buffers:
        forbidden = []  # buffer offsets x in [lo, hi) would overlap a placed part
        for part in buf.parts:
            (first, last), rel, n = part.life, part.rel, part.nbytes
            forbidden += [(off - rel - n + 1, off + sz - rel) for off, sz, f, lst in placed
                          if lst >= first and last >= f]
        x = 0
        for lo, hi in sorted(forbidden):  # by start: once one starts above x, x is free
            if lo > x:
                break
            if x < hi:
                x = _align(hi)
        placed += [(x + part.rel, part.nbytes, *part.life) for part in buf.parts]
        out.append(Buffer(buf.key, buf.parts, buf.scratch_of, x))
        arena = max(arena, x + buf.nbytes)
    return arena, out


def lower_bound(buffers: Sequence[Buffer]) -> tuple[int, int | None]:
    """The most bytes alive at once (step 3), rounded up to ``ALIGN``, and the first op where."""
    parts = [p for b in buffers for p in b.parts]
    if not parts:
        return 0, None
    words = all(p.rel % ALIGN == 0 for p in parts)  # then each buffer's alive bytes count in whole words
    best, where = 0, None
    for k in range(min(p.life[0] for p in parts), max(p.life[1] for p in parts) + 1):
        total = 0
        for b in buffers:
            spans = sorted((p.rel, p.rel + p.nbytes) for p in b.parts if p.life[0] <= k <= p.life[1])
            end = -1
            for lo, hi in spans:  # the union of the alive ranges, counted once
                lo = max(lo, end)
                if hi > lo:
                    total += (_align(hi) - _align(lo) if words else hi - lo)
                    end = hi
        if total > best:
            best, where = total, max(k, 0)  # op -1: a staged input, converted before layer 0
    return _align(best), where


class _Search:
    """Step 4: the greedy orders, then every order or an iterated greedy, until the bound."""

    def __init__(self, make: Callable[[frozenset[int]], list[Buffer]], optional: tuple[int, ...],
                 atoms_of: Callable[[Buffer], tuple[int, ...]], bound: int) -> None:
        self.make, self.optional, self.atoms_of, self.bound = make, optional, atoms_of, bound
        self.cache: dict[frozenset[int], tuple[list[Buffer], list[tuple[int, ...]]]] = {}  # buffers, their atoms
        self.best: tuple[int, list[Buffer], frozenset[int], str] | None = None
        n_parts = max(1, sum(len(b.parts) for b in self.buffers(frozenset(optional))))
        self.tries = min(TRIES, max(TRIES // 10, WORK // n_parts**2))

    def buffers(self, taken: frozenset[int]) -> list[Buffer]:
        """The buffers with the optional overlaps of the ops in ``taken``."""
        if taken not in self.cache:
            bufs = self.make(taken)
            self.cache[taken] = bufs, [self.atoms_of(b) for b in bufs]
        return self.cache[taken][0]

    def done(self) -> bool:
        return self.best is not None and _align(self.best[0]) <= self.bound

    def record(self, arena: int, placed: list[Buffer], taken: frozenset[int], how: str) -> None:
        if self.best is None or arena < self.best[0]:
            self.best = (arena, placed, taken, how)

    def run(self) -> tuple[int, list[Buffer], frozenset[int], str]:
        every = frozenset(self.optional)
        for taken in dict.fromkeys((every, frozenset())):
            for order, name in zip(ORDERS, ORDER_NAMES, strict=True):
                arena, placed = _place(sorted(self.buffers(taken), key=order))
                self.record(arena, placed, taken, f"greedy, {name}" + (", no optional overlap" if every and
                                                                       not taken else ""))
                if self.done():
                    return self._best()
        choices = [frozenset(o for i, o in enumerate(self.optional) if mask >> i & 1)
                   for mask in range(2 ** len(self.optional))] if len(self.optional) <= 6 else []
        counts = [math.factorial(len(self.buffers(c))) for c in choices]
        if choices and sum(counts) <= self.tries:
            self._every_order(choices)
        else:
            self._iterated_greedy()
        return self._best()

    def _best(self) -> tuple[int, list[Buffer], frozenset[int], str]:
        assert self.best is not None
        return self.best

    def _every_order(self, choices: list[frozenset[int]]) -> None:
        tried = 0
        for taken in choices:
            for order in permutations(self.buffers(taken)):
                tried += 1
                arena, placed = _place(order)
                self.record(arena, placed, taken, f"every order of the buffers, placement {tried}")
                if self.done():
                    return
        assert self.best is not None
        self.best = self.best[:3] + (f"every order of the buffers and overlap choice ({tried} placements)",)

    def _iterated_greedy(self) -> None:
        rng = random.Random(SEED)
        arena, placed, taken, _ = self._best()
        order = [a for b in placed for a in self.atoms_of(b)]
        for step in range(1, self.tries + 1):
            new_taken, new_order = taken, list(order)
            if self.optional and rng.random() < 0.25:
                new_taken = taken ^ {rng.choice(self.optional)}
            else:
                for _ in range(rng.choice((1, 1, 2))):
                    new_order.insert(rng.randrange(len(new_order)), new_order.pop(rng.randrange(len(new_order))))
            rank = {a: i for i, a in enumerate(new_order)}
            bufs, atoms = self.buffers(new_taken), self.cache[new_taken][1]
            first = [min(rank[a] for a in group) for group in atoms]  # a buffer goes where its first atom is
            new_arena, new_placed = _place([bufs[i] for i in sorted(range(len(bufs)), key=first.__getitem__)])
            self.record(new_arena, new_placed, new_taken, f"iterated greedy, step {step}")
            if self.done():
                return
            if new_arena <= arena:
                arena, taken, order = new_arena, new_taken, new_order
        assert self.best is not None
        how = self.best[3]
        how = f"iterated greedy, smallest at {how[17:]} of {self.tries}" if how.startswith("iterated") else \
            f"{how}; {self.tries} steps of iterated greedy found nothing smaller"
        self.best = self.best[:3] + (how,)


def place(buffers: Sequence[Buffer]) -> tuple[int, list[Buffer], str]:
    """Step 4 on buffers without optional overlaps (each with its own ``key``): the highest end offset,
    the buffers placed and how the search found them."""
    bufs = list(buffers)
    arena, placed, _, how = _Search(lambda _: bufs, (), lambda b: (b.key,), lower_bound(bufs)[0]).run()
    return arena, placed, how


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

    def group_life(grp: _Groups, root: int) -> tuple[int, int]:
        members = [t for t in life if grp.find(t) == root]
        return min(life[t][0] for t in members), max(life[t][1] for t in members)

    for k, op in enumerate(g.ops):
        if op.INPLACE_INPUT is None or k in copies:
            continue
        src, dst = op.inputs[op.INPLACE_INPUT], op.outputs[0]
        if g.t(src).is_const or in_root(src) or g.t(src).nbytes != g.t(dst).nbytes:
            continue
        if groups.find(src) == groups.find(dst) or group_life(groups, groups.find(src))[1] != k:
            continue
        if out_root(src) and out_root(dst):
            continue
        # the other inputs must not live in the buffer we write over
        if any(groups.find(i) == groups.find(src) for j, i in enumerate(op.inputs) if j != op.INPLACE_INPUT):
            continue
        groups.union(dst, src)

    # the optional overlaps of step 2: (op, input, output, D); whether an earlier one is taken changes none of
    # the conditions of a later one (a buffer's last op is its latest tensor's, which no overlap changes)
    overlaps: list[tuple[int, int, int, int]] = []
    probe = groups.copy()
    for k, op in enumerate(g.ops):
        d = kernels[k].overlap_offset
        if d is None:
            continue
        src, dst = op.inputs[0], op.outputs[0]
        if g.t(src).is_const or in_root(src) or out_root(src) or out_root(dst):
            continue
        rs, rd = probe.find(src), probe.find(dst)
        if rs == rd or group_life(probe, rs)[1] != k:
            continue
        overlaps.append((k, src, dst, d))
        probe.union(src, dst)

    roots: dict[int, list[int]] = {}
    for tid in life:
        roots.setdefault(groups.find(tid), []).append(tid)

    placements: dict[int, Placement] = {}
    atoms: dict[int, list[int]] = {}  # buffers before any optional overlap: root tensor -> its tensors
    staged = staged_io(g)
    for root, members in roots.items():
        if any(m in g.inputs for m in members) and not staged[0]:
            placements.update({m: Placement("input") for m in members})
        elif any(m in g.outputs for m in members) and not staged[1]:
            placements.update({m: Placement("output") for m in members})
        else:
            atoms[root] = members
    scratch_parts = {k: Part(-1, 0, _align(kern.scratch_bytes), (k, k))  # kernel scratch: lives during its op
                     for k, kern in enumerate(kernels) if kern.scratch_bytes}

    def make_buffers(taken: frozenset[int]) -> list[Buffer]:
        """The arena's buffers with the optional overlaps of the ops in ``taken``."""
        grp, shift = groups.copy(), dict.fromkeys(atoms, 0)
        for k, src, dst, d in overlaps:
            if k in taken:
                rs = grp.find(src)
                for r in atoms:
                    if grp.find(r) == rs:
                        shift[r] += d
                grp.union(src, dst)
        merged: dict[int, list[Part]] = {}
        for r, members in atoms.items():
            merged.setdefault(grp.find(r), []).extend(Part(m, shift[r], g.t(m).nbytes, life[m]) for m in members)
        return ([Buffer(root, tuple(parts)) for root, parts in merged.items()]
                + [Buffer(k, (p,), scratch_of=k) for k, p in scratch_parts.items()])

    def atoms_of(b: Buffer) -> tuple[int, ...]:
        if b.scratch_of is not None:
            return (-1 - b.scratch_of,)
        return tuple(dict.fromkeys(groups.find(p.tensor) for p in b.parts))

    optional = tuple(k for k, *_ in overlaps)
    bound, peak = lower_bound(make_buffers(frozenset(optional)))
    arena, placed, _, how = _Search(make_buffers, optional, atoms_of, bound).run()
    arena = _align(arena) if arena else 0
    writer = {op.outputs[0]: op.name for op in g.ops}

    def name(b: Buffer) -> str:
        if b.scratch_of is not None:
            return f"scratch of layer {b.scratch_of}"
        first = min(b.parts, key=lambda p: p.life).tensor
        return f"'{writer.get(first, 'input')}'" + (f" (+{len(b.parts) - 1} aliased)" if len(b.parts) > 1 else "")

    gap = gap_reason(placed, arena, bound, peak, how, name) if arena > bound else None
    for buf in placed:
        placements.update({p.tensor: Placement("arena", buf.offset + p.rel) for p in buf.parts if p.tensor >= 0})
    scratch = {buf.scratch_of: buf.offset for buf in placed if buf.scratch_of is not None}
    return MemoryPlan(placements, arena, frozenset(copies), life, scratch,
                      tuple(sorted(placed, key=lambda b: (b.offset, b.key))), bound, peak, gap, how)


def gap_reason(placed: Sequence[Buffer], arena: int, bound: int, peak: int | None, how: str,
               name: Callable[[Buffer], str]) -> str:
    """Why a plan misses the bound: the buffer at the top of the arena, and the buffers alive during its
    ops that hold the bytes below it (at most ``GAP_NAMES`` of them, the largest)."""

    def desc(b: Buffer) -> str:
        return f"{name(b)} ({b.nbytes:,} B, layers {max(b.life[0], 0)}-{b.life[1]}) at {b.offset:,}"

    top = max(placed, key=lambda b: (b.offset + b.nbytes, -b.offset))
    below = [b for b in placed if b is not top and b.offset < top.offset and any(
        p.life[1] >= q.life[0] and q.life[1] >= p.life[0] and b.offset + p.rel < top.offset + q.rel
        for p in b.parts for q in top.parts)]
    shown = sorted(sorted(below, key=lambda b: -b.nbytes)[:GAP_NAMES], key=lambda b: b.offset)
    more = f" and {len(below) - len(shown)} smaller" if len(below) > len(shown) else ""
    head = f"{arena - bound:,} B above the bound ({bound:,} B alive at once at layer {peak}): the top of the arena is"
    if not below:  # it stands on nothing: its own tensors, at fixed distances in it, span more than is alive
        return (f"{head} {desc(top)}, whose aliased tensors, each at its fixed place in it, span {top.nbytes:,} B "
                f"(search: {how})")
    held = "; ".join(desc(b) for b in shown) + more
    return (f"{head} {desc(top)}, above buffers alive during its layers: {held}; their lifetimes overlap so that no "
            f"placement tried packs them lower (search: {how})")
