"""Estimated Cortex-M4 cycles of an emulated inference (an estimate, never a measurement: docs/cycles.md).

QEMU counts instructions, not cycles. This module runs the firmware once under QEMU with
``-d in_asm,exec,nochain``: every translated block is logged once with its disassembly, and every
execution of a block once (``Trace`` lines; ``Stopped execution of TB chain before ...`` takes back a
block that was logged but not run, as when the instruction budget of ``-icount`` runs out). The log
streams through a pipe: nothing is stored. From the block executions inside one region (by default
one call of the model's ``<name>_invoke_with_arena``, from its entry until the block at its return
address) it gets the exact dynamic instruction mix, and prices every executed instruction with the
Cortex-M4 Technical Reference Manual's timing table (:func:`price`), assuming zero-wait-state memory.
Whether a block's final branch was taken comes from the order of execution: it was taken when the
next block does not start right after it.

``estimate_cycles(elf)`` returns ``{"est_cycles", "instructions", "by_class", "by_function",
"layers", ...}``; :func:`for_bench` is the call for `bench` reports (key ``est_cycles``).
"""

from __future__ import annotations

import bisect
import os
import re
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lwcnn_mcu import boards, emulator
from lwcnn_mcu.errors import LwcnnError

#: The pipeline refill P of a taken branch (the TRM gives 1 to 3, by the alignment and width of the
#: target and whether the branch target is a load): this model takes 2 for every taken branch.
BRANCH_REFILL = 2
#: SDIV/UDIV take 2 to 12 cycles on the Cortex-M4 (they stop early by the operands' sizes): the worst case.
DIV_CYCLES = 12

_CONDS = frozenset("eq ne cs hs cc lo mi pl vs vc hi ls ge lt gt le al".split())

# Instruction classes, each with the base mnemonics in it (capstone's, as QEMU prints them: no
# condition code, no S, no .w/.n width, no data type such as .f32).
_LOADS = frozenset("ldr ldrb ldrh ldrsb ldrsh ldrt ldrbt ldrht ldrsbt ldrsht ldrex ldrexb ldrexh".split())
_STORES = frozenset("str strb strh strt strbt strht strex strexb strexh".split())
_LOAD_MULTI = frozenset("ldm ldmia ldmfd ldmdb ldmea pop".split())
_STORE_MULTI = frozenset("stm stmia stmea stmdb stmfd push".split())
_MUL = frozenset((
    "mul mla mls umull smull umlal smlal umaal smmul smmulr smmla smmlar smmls smmlsr "
    "smlabb smlabt smlatb smlatt smlawb smlawt smulbb smulbt smultb smultt smulwb smulwt "
    "smlad smladx smlsd smlsdx smlald smlaldx smlsld smlsldx smuad smuadx smusd smusdx "
    "smlalbb smlalbt smlaltb smlaltt").split())
_SIMD = frozenset((
    "sxtb16 uxtb16 sxtab16 uxtab16 ssat usat ssat16 usat16 sel pkhbt pkhtb usad8 usada8 "
    "qadd qsub qdadd qdsub qadd8 qadd16 qsub8 qsub16 qasx qsax uqadd8 uqadd16 uqsub8 uqsub16 uqasx uqsax "
    "sadd8 sadd16 ssub8 ssub16 sasx ssax uadd8 uadd16 usub8 usub16 uasx usax "
    "shadd8 shadd16 shsub8 shsub16 shasx shsax uhadd8 uhadd16 uhsub8 uhsub16 uhasx uhsax").split())
_ALU = frozenset((
    "mov mvn add adc sub sbc rsb and orr eor bic orn lsl lsr asr ror rrx cmp cmn tst teq movw movt adr "
    "addw subw ubfx sbfx bfi bfc clz rbit rev rev16 revsh sxtb sxth uxtb uxth sxtab sxtah uxtab uxtah "
    "nop mrs msr cpsid cpsie dmb dsb isb sev yield").split())
_IT = re.compile(r"^it[te]{0,3}$")
_DIV = frozenset(("sdiv", "udiv"))
_BRANCH = frozenset(("b", "bl", "blx", "bx", "cbz", "cbnz", "tbb", "tbh"))
_VFP_1 = frozenset("vadd vsub vmul vnmul vabs vneg vcmp vcmpe vmov vcvt vcvtr vcvtb vcvtt vmrs vmsr".split())
_VFP_3 = frozenset("vmla vmls vnmla vnmls vfma vfms vfnma vfnms".split())
_VFP_14 = frozenset(("vdiv", "vsqrt"))
_VFP_MEM = frozenset(("vldr", "vstr"))
_VFP_MULTI = frozenset("vpush vpop vldm vldmia vldmdb vstm vstmia vstmdb".split())
_OTHER_1 = frozenset("svc bkpt wfi wfe udf".split())
_KNOWN = (_LOADS | _STORES | _LOAD_MULTI | _STORE_MULTI | _MUL | _SIMD | _ALU | _DIV | _BRANCH | _VFP_1 | _VFP_3
          | _VFP_14 | _VFP_MEM | _VFP_MULTI | _OTHER_1 | {"ldrd", "strd"})

#: Every class in ``by_class``, with what it holds.
CLASSES = {
    "alu": "data processing, moves, shifts, compares, extends, IT, barriers: 1",
    "mul": "MUL/MLA/MLS, long multiplies (UMULL, SMLAL...), DSP multiplies (SMLAD, SMLABB, SMMUL...): 1",
    "simd": "SXTB16/UXTB16, SSAT/USAT, QADD..., SADD8..., SEL, PKHBT: 1",
    "div": f"SDIV/UDIV: {DIV_CYCLES} (the worst case of 2-12)",
    "load": "LDR/LDRB/LDRH/LDRSB/LDRSH (and literal loads): 2",
    "load_pipelined": "a single load right after a single load whose result it does not address with: 1",
    "load_double": "LDRD: 1+N = 3",
    "load_multiple": "LDM/POP: 1+N (+P when it loads PC)",
    "store": "STR/STRB/STRH: 1",
    "store_double": "STRD: 1+N = 3",
    "store_multiple": "STM/PUSH: 1+N",
    "branch_taken": "B, BL, BX, BLX, CBZ/CBNZ taken, TBB/TBH: 1+P (TBB/TBH 2+P)",
    "branch_not_taken": "a conditional branch (or CBZ/CBNZ) not taken: 1",
    "vfp": "single-precision FPU: VADD/VMUL 1, VMLA/VFMA 3, VDIV/VSQRT 14, VLDR/VSTR 2, VLDM/VPUSH 1+N",
    "other": "SVC, BKPT, WFI, and anything the table does not know: 1",
}

_REG_ALIAS = {"sb": "r9", "sl": "r10", "fp": "r11", "ip": "r12", "sp": "r13", "lr": "r14", "pc": "r15"}
_REG = re.compile(r"\b(r1[0-5]|r[0-9]|sb|sl|fp|ip|sp|lr|pc)\b")
_INSN = re.compile(r"^0x([0-9a-fA-F]+):\s+((?:[0-9a-fA-F]{4}\s)+)\s*(\S+)\s*(.*)$")


def _regs(text: str) -> list[str]:
    return [_REG_ALIAS.get(r, r) for r in _REG.findall(text)]


def _reglist_len(operands: str) -> tuple[int, bool]:
    """Registers in a {...} list (ranges such as r4-r7 counted in full) and whether PC is among them."""
    m = re.search(r"\{([^}]*)\}", operands)
    if not m:
        return 1, False
    n, pc = 0, False
    for part in m.group(1).split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = (_regs(x)[0] if _regs(x) else x for x in part.split("-", 1))
            if a.startswith("r") and b.startswith("r"):
                n += int(b[1:]) - int(a[1:]) + 1
                pc = pc or int(b[1:]) == 15
                continue
            m2 = re.match(r"[sd](\d+)-[sd](\d+)", part)  # VFP ranges s0-s7
            n += int(m2.group(2)) - int(m2.group(1)) + 1 if m2 else 1
            continue
        n += 1
        pc = pc or part in ("pc", "r15")
    return n, pc


def base_mnemonic(mnemonic: str) -> tuple[str, bool]:
    """(base, conditional) of a capstone mnemonic: ``bne.w`` -> ("b", True), ``movs`` -> ("mov", False),
    ``vadd.f32`` -> ("vadd", False), ``addseq`` -> ("add", True)."""
    m = mnemonic.lower().split(".", 1)[0]
    if m in _KNOWN or _IT.match(m):
        return m, False
    if m[-2:] in _CONDS:
        rest = m[:-2]
        if rest in _KNOWN:
            return rest, True
        if rest.endswith("s") and rest[:-1] in _KNOWN:
            return rest[:-1], True
    if m.endswith("s") and m[:-1] in _KNOWN:
        return m[:-1], False
    return m, False


@dataclass(frozen=True)
class Insn:
    """One instruction of a translated block, priced. ``cost`` is its cycles when it is not a taken
    branch and not a pipelined load; ``taken`` its cycles when it branches (None: not a branch)."""

    addr: int
    size: int
    text: str
    cls: str
    cost: int
    taken: int | None = None
    conditional: bool = False
    load_dest: str | None = None  # a single load: the register it loads
    addr_regs: tuple[str, ...] = ()  # a single load: the registers its address is made of


def price(addr: int, size: int, mnemonic: str, operands: str, p: int = BRANCH_REFILL,
          div: int = DIV_CYCLES) -> Insn:
    """Price one instruction with the Cortex-M4 TRM's timing (zero-wait-state memory; P = ``p``)."""
    base, cond = base_mnemonic(mnemonic)
    text = f"{mnemonic} {operands}".strip()
    ops = operands.lower()
    writes_pc = _regs(ops.split(",", 1)[0])[:1] == ["r15"]  # the first operand is PC
    if base in _LOADS:
        mem = ops[ops.find("["):] if "[" in ops else ""
        if writes_pc:  # LDR PC, [...]: a load and a branch
            return Insn(addr, size, text, "branch_taken", 2 + p, 2 + p, cond)
        dest = (_regs(ops) or ["?"])[0]
        return Insn(addr, size, text, "load", 2, None, cond, dest, tuple(_regs(mem.split("]")[0])))
    if base == "ldrd":
        return Insn(addr, size, text, "load_double", 3, None, cond)
    if base in _LOAD_MULTI:
        n, pc = _reglist_len(ops)
        if pc:
            return Insn(addr, size, text, "load_multiple", 1 + n + p, 1 + n + p, cond)
        return Insn(addr, size, text, "load_multiple", 1 + n, None, cond)
    if base in _STORES:
        return Insn(addr, size, text, "store", 1, None, cond)
    if base == "strd":
        return Insn(addr, size, text, "store_double", 3, None, cond)
    if base in _STORE_MULTI:
        return Insn(addr, size, text, "store_multiple", 1 + _reglist_len(ops)[0], None, cond)
    if base in _BRANCH:
        if base in ("tbb", "tbh"):
            return Insn(addr, size, text, "branch_taken", 2 + p, 2 + p, cond)
        conditional = cond or base in ("cbz", "cbnz")
        return Insn(addr, size, text, "branch_taken", 1 + p if not conditional else 1, 1 + p, conditional)
    if base in _MUL:
        return Insn(addr, size, text, "mul", 1, None, cond)
    if base in _SIMD:
        return Insn(addr, size, text, "simd", 1, None, cond)
    if base in _DIV:
        return Insn(addr, size, text, "div", div, None, cond)
    if base in _VFP_1:
        return Insn(addr, size, text, "vfp", 1, None, cond)
    if base in _VFP_3:
        return Insn(addr, size, text, "vfp", 3, None, cond)
    if base in _VFP_14:
        return Insn(addr, size, text, "vfp", 14, None, cond)
    if base in _VFP_MEM:
        return Insn(addr, size, text, "vfp", 2, None, cond)
    if base in _VFP_MULTI:
        return Insn(addr, size, text, "vfp", 1 + _reglist_len(ops)[0], None, cond)
    if base in _ALU or _IT.match(base):
        if writes_pc and base in ("mov", "add"):  # MOV PC, Rm / ADD PC, Rm: a branch
            return Insn(addr, size, text, "branch_taken", 1 + p, 1 + p, cond)
        return Insn(addr, size, text, "alu", 1, None, cond)
    return Insn(addr, size, text, "other", 1, None, cond)


@dataclass
class Block:
    """One translated block: where it starts, its instructions, the address after its last one."""

    pc: int
    insns: list[Insn]
    layer_mark: int | None = None  # the last layer whose LWCNN_LAYER_BEGIN hook is in this block

    @property
    def end(self) -> int:
        return self.insns[-1].addr + self.insns[-1].size if self.insns else self.pc


@dataclass
class Trace:
    """The blocks QEMU translated and, per layer, how often each block was followed by each other
    block inside the region (edges[layer][(a, b)]: block ids; layer -1 is before the first hook)."""

    blocks: list[Block]
    edges: dict[int, dict[tuple[int, int], int]]
    partial: dict[int, dict[tuple[int, int], int]]  # [layer][(a, pc)]: block a ran only up to pc (an I/O access)
    entry_pc: int
    return_pc: int
    taken_back: int = 0  # blocks logged but not run ("Stopped execution of TB chain"), in the region
    io_rewinds: int = 0  # blocks stopped at an I/O access and finished by a one-instruction block, in the region
    log_lines: int = 0
    seconds: float = 0.0
    unknown: set[str] = field(default_factory=set)


def _func_symbols(elf: Path) -> tuple[list[int], list[tuple[int, int, str]], dict[str, int]]:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    syms: list[tuple[int, int, str]] = []
    with elf.open("rb") as f:
        e = ELFFile(f)
        for s in e.iter_sections():
            if isinstance(s, SymbolTableSection):
                for sym in s.iter_symbols():
                    if sym["st_info"]["type"] == "STT_FUNC" and sym.name:
                        syms.append((sym["st_value"] & ~1, sym["st_size"], sym.name))
    syms.sort()
    return [a for a, _, _ in syms], syms, {n: a for a, _, n in syms}


def _symbol_at(addrs: list[int], syms: list[tuple[int, int, str]], addr: int) -> str:
    i = bisect.bisect_right(addrs, addr) - 1
    if i >= 0:
        a, size, name = syms[i]
        if a <= addr < a + max(size, 1):
            return name
    return "?"


def layer_marks(elf: Path, model_c: Path) -> dict[int, int]:
    """Address -> layer of every ``LWCNN_LAYER_BEGIN(k)`` hook of the generated model C, from the ELF's
    DWARF line table (the firmware is built with -g): the lowest address of the hook's line."""
    from elftools.elf.elffile import ELFFile

    lines: dict[int, int] = {}
    for no, text in enumerate(model_c.read_text().splitlines(), 1):
        m = re.match(r"\s*LWCNN_LAYER_BEGIN\((\d+)\);", text)
        if m:
            lines[no] = int(m.group(1))
    first: dict[int, int] = {}
    with elf.open("rb") as f:
        e = ELFFile(f)
        if not e.has_dwarf_info():
            return {}
        dwarf = e.get_dwarf_info()
        for cu in dwarf.iter_CUs():
            lp = dwarf.line_program_for_CU(cu)
            if lp is None:
                continue
            files = lp["file_entry"]
            v5 = lp["version"] >= 5
            want = set()
            for i, fe in enumerate(files):
                name = fe.name.decode() if isinstance(fe.name, bytes) else str(fe.name)
                if Path(name).name == model_c.name:
                    want.add(i if v5 else i + 1)
            if not want:
                continue
            for entry in lp.get_entries():
                st = entry.state
                if st is None or st.end_sequence or st.file not in want or st.line not in lines:
                    continue
                k = lines[st.line]
                first[k] = min(first.get(k, st.address), st.address)
    return {addr: k for k, addr in first.items()}


#: QEMU's TB flag for a block made to run up to one I/O access (``CF_LAST_IO``, exec-all.h): the block
#: logged before it stopped at that access, which this block then runs.
_CF_LAST_IO = 0x8000


def _qemu_trace(board: boards.Board, elf: Path, entry_pc: int, call: int, marks: dict[int, int], p: int, div: int,
                timeout: float) -> Trace:
    """Run the image under QEMU with the block log on a pipe, until the ``call``-th call (0 first) of
    the code at entry_pc has returned; then stop QEMU."""
    rfd, wfd = os.pipe()
    cmd = emulator.command(board, elf, "null") + ["-d", "in_asm,exec,nochain", "-D", f"/dev/fd/{wfd}"]
    t0 = time.monotonic()
    errf = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf, pass_fds=(wfd,))
    os.close(wfd)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    blocks: list[Block] = []
    by_ptr: dict[bytes, int] = {}
    fresh: dict[int, int] = {}  # pc -> the block just translated there, until it runs
    edges: dict[int, dict[tuple[int, int], int]] = defaultdict(lambda: defaultdict(int))
    partial: dict[int, dict[tuple[int, int], int]] = defaultdict(lambda: defaultdict(int))
    unknown: set[str] = set()
    pending: list[Insn] | None = None
    calls, inside, finished, return_pc = 0, False, False, -1
    prev = prev_prev = -1
    layer = layer_before = -1
    last: tuple[Any, ...] | None = None  # what the last Trace line recorded, to take back
    untaken = rewinds = n_lines = 0
    try:
        with os.fdopen(rfd, "rb", buffering=1 << 20) as log:
            for line in log:
                n_lines += 1
                if line.startswith(b"Trace "):
                    if pending:
                        blk = Block(pending[0].addr, pending)
                        for ins in pending:
                            if ins.addr in marks:
                                blk.layer_mark = marks[ins.addr]
                        blocks.append(blk)
                        fresh[blk.pc] = len(blocks) - 1
                        pending = None
                    head, _, rest = line.partition(b" [")
                    ptr = head.rsplit(b" ", 1)[1]
                    fields = rest.split(b"]", 1)[0].split(b"/")
                    pc, cflags = int(fields[1], 16), int(fields[3], 16)
                    bid = fresh.pop(pc, None)
                    if bid is not None:
                        by_ptr[ptr] = bid
                    else:
                        bid = by_ptr.get(ptr, -1)
                        if bid < 0 or blocks[bid].pc != pc:
                            raise LwcnnError(f"QEMU's log names a block at {pc:#x} it never showed translated")
                    if inside:
                        if cflags & _CF_LAST_IO and blocks[prev].pc <= pc < blocks[prev].end:
                            partial[layer][(prev, pc)] += 1  # prev stopped before its I/O access at pc
                            rewinds += 1
                            last = ("partial", layer, prev, pc)
                        else:
                            edges[layer][(prev, bid)] += 1
                            last = ("edge", layer, prev, bid)
                        if pc == return_pc:
                            finished = True
                            break
                        layer_before = layer
                        if blocks[bid].layer_mark is not None:
                            layer = blocks[bid].layer_mark
                    elif pc == entry_pc:
                        if calls == call:
                            inside = True
                            return_pc = blocks[prev].end if prev >= 0 else -1
                            if blocks[bid].layer_mark is not None:
                                layer = blocks[bid].layer_mark
                            last = ("entry",)
                        calls += 1
                    prev_prev, prev = prev, bid
                elif line.startswith(b"0x") and pending is not None:
                    m = _INSN.match(line.decode("ascii", "replace").rstrip())
                    if m:
                        addr, size = int(m.group(1), 16), 2 * len(m.group(2).split())
                        ins = price(addr, size, m.group(3), m.group(4), p, div)
                        if ins.cls == "other" and base_mnemonic(m.group(3))[0] not in _OTHER_1:
                            unknown.add(m.group(3))
                        pending.append(ins)
                elif line.startswith(b"IN:"):
                    pending = []
                elif line.startswith(b"Stopped execution of TB chain"):
                    # the block of the last Trace line did not run (the instruction budget ran out, or an
                    # interrupt came): take it back
                    if inside and last is not None:
                        untaken += 1
                        if last[0] == "entry":
                            inside, calls, layer = False, calls - 1, -1
                        else:
                            table = edges if last[0] == "edge" else partial
                            table[last[1]][(last[2], last[3])] -= 1
                            if last[0] == "partial":
                                rewinds -= 1
                            layer = layer_before
                    last = None
                    prev = prev_prev
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()
        errf.seek(0)
        err = errf.read().decode(errors="replace")
        errf.close()
    if not finished:
        what = "returned from" if inside else f"called {call + 1} time(s) ({calls} calls seen)"
        raise LwcnnError(f"the code at {entry_pc:#x} was not {what} within {timeout:.0f} s of emulation; "
                         f"check the image boots on {board.name} ({err.strip()[-300:] or 'QEMU said nothing'})")
    return Trace(blocks, {k: dict(v) for k, v in edges.items()}, {k: dict(v) for k, v in partial.items()},
                 entry_pc, return_pc, untaken, rewinds, n_lines, time.monotonic() - t0, unknown)


def _pipelined(prev: Insn | None, cur: Insn) -> bool:
    """A single load right after a single load, its address independent of the first one's result."""
    return (prev is not None and prev.load_dest is not None and cur.load_dest is not None
            and prev.load_dest not in cur.addr_regs)


def _straight(insns: list[Insn], after: Insn | None = None) -> list[tuple[str, int]]:
    """(class, cycles) of instructions run in a straight line (no branch taken among them), ``after``
    the instruction run just before the first."""
    out = []
    prev = after
    for ins in insns:
        if _pipelined(prev, ins):
            out.append(("load_pipelined", 1))
        elif ins.taken is not None and ins.cls == "branch_taken":
            out.append(("branch_not_taken", ins.cost))
        else:
            out.append((ins.cls, ins.cost))
        prev = ins
    return out


def _run(b: Block, nxt: Block, return_pc: int) -> list[tuple[str, int]]:
    """(class, cycles) of each instruction of one run of block b followed by block nxt: b's last
    instruction was a taken branch when nxt does not start right after it. When nxt's first
    instruction pipelines after b's last, a correction follows: (its class, -its cost), then
    ("load_pipelined", 1)."""
    out = _straight(b.insns[:-1])
    last = b.insns[-1]
    prev = b.insns[-2] if len(b.insns) > 1 else None
    if last.taken is not None and nxt.pc != b.end:
        out.append(("branch_taken" if last.cls == "branch_taken" else last.cls, last.taken))
    else:
        out += _straight([last], prev)
    if nxt.pc == b.end and nxt.pc != return_pc and nxt.insns and _pipelined(last, nxt.insns[0]):
        out += [(nxt.insns[0].cls, -nxt.insns[0].cost), ("load_pipelined", 1)]
    return out


def _tally(tr: Trace, elf: Path) -> dict[str, Any]:
    """Instructions and cycles by class, per layer and in all, and by function."""
    addrs, syms, _ = _func_symbols(elf)
    by_layer: dict[int, dict[str, list[int]]] = {}
    by_func: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    total: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for layer in sorted(set(tr.edges) | set(tr.partial)):
        acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        runs = [(tr.blocks[a], _run(tr.blocks[a], tr.blocks[b], tr.return_pc), n)
                for (a, b), n in tr.edges.get(layer, {}).items() if n > 0]
        runs += [(tr.blocks[a], _straight([i for i in tr.blocks[a].insns if i.addr < pc]), n)
                 for (a, pc), n in tr.partial.get(layer, {}).items() if n > 0]
        for blk, priced, n in runs:
            f = by_func[_symbol_at(addrs, syms, blk.pc)]
            for cls, cyc in priced:
                step = -1 if cyc < 0 else 1  # a correction takes an instruction back from its class
                acc[cls][0] += n * step
                acc[cls][1] += n * cyc
                f[0] += n * step
                f[1] += n * cyc
        by_layer[layer] = acc
        for cls, (ni, cy) in acc.items():
            total[cls][0] += ni
            total[cls][1] += cy
    return {"total": total, "by_layer": by_layer, "by_func": by_func}


def estimate_cycles(elf: Path | str, *, board: str = boards.DEFAULT_BOARD, entry: str | None = None, call: int = 0,
                    model_c: Path | str | None = None, layer_names: list[str] | None = None,
                    branch_refill: int = BRANCH_REFILL, div_cycles: int = DIV_CYCLES,
                    timeout: float = 120.0) -> dict[str, Any]:
    """Estimated Cortex-M4 cycles of one run of ``entry`` (a function symbol of the ELF; default the
    model's ``<name>_invoke_with_arena``, i.e. one inference; ``call`` picks which call, 0 the first:
    the firmware's self-test runs its test inputs in order at boot).

    Returns ``est_cycles`` (an estimate, docs/cycles.md), ``instructions`` (exact, as QEMU counts
    them), ``by_class`` ({class: {"instructions", "est_cycles"}}), ``by_function`` and, when the
    generated model C is found (``model_c``, default ``<elf folder>/src/<name>_model.c``), ``layers``:
    per layer from one ``LWCNN_LAYER_BEGIN`` hook to the next (``layer`` -1: the code before the first).
    """
    elf = Path(elf)
    bo = boards.get(board)
    if bo.qemu_machine is None:
        raise LwcnnError(f"board {bo.name} has no emulator: cycles are estimated only on an emulated board")
    if not elf.is_file():
        raise LwcnnError(f"no firmware image at {elf}; build it first (lwcnn-mcu build --board {bo.name})")
    _, _, by_name = _func_symbols(elf)
    if entry is None:
        found = sorted(n for n in by_name if n.endswith("_invoke_with_arena"))
        if len(found) != 1:
            raise LwcnnError(f"{elf} has {len(found)} *_invoke_with_arena functions ({', '.join(found)}); "
                             "name the one to estimate (entry=...)")
        entry = found[0]
    if entry not in by_name:
        raise LwcnnError(f"{elf} has no function '{entry}'")
    marks: dict[int, int] = {}
    if model_c is None and entry.endswith("_invoke_with_arena"):
        guess = elf.parent / "src" / f"{entry[: -len('_invoke_with_arena')]}_model.c"
        model_c = guess if guess.is_file() else None
    if model_c is not None:
        marks = layer_marks(elf, Path(model_c))
    tr = _qemu_trace(bo, elf, by_name[entry], call, marks, branch_refill, div_cycles, timeout)
    t = _tally(tr, elf)

    def rows(acc: dict[str, list[int]]) -> dict[str, dict[str, int]]:
        return {c: {"instructions": acc[c][0], "est_cycles": acc[c][1]} for c in CLASSES if acc.get(c, [0])[0]}

    total = t["total"]
    n_ins = sum(v[0] for v in total.values())
    est = sum(v[1] for v in total.values())
    r: dict[str, Any] = {
        "est_cycles": est,
        "instructions": n_ins,
        "est_cycles_per_instruction": est / max(1, n_ins),
        "by_class": rows(total),
        "by_function": {k: {"instructions": v[0], "est_cycles": v[1]}
                        for k, v in sorted(t["by_func"].items(), key=lambda kv: -kv[1][1])},
        "entry": entry,
        "call": call,
        "model": {"core": "Cortex-M4 (TRM timing table)", "memory": "zero wait states",
                  "branch_refill_P": branch_refill, "div_cycles": div_cycles,
                  "note": "an estimate: flash wait states, bus contention and interrupts are not modelled"},
        "blocks_taken_back": tr.taken_back,
        "io_rewinds": tr.io_rewinds,
        "log_lines": tr.log_lines,
        "seconds": round(tr.seconds, 3),
    }
    if tr.unknown:
        r["unpriced_mnemonics"] = sorted(tr.unknown)
    if marks:
        layers = []
        for k in sorted(t["by_layer"]):
            acc = t["by_layer"][k]
            row: dict[str, Any] = {"layer": k}
            if layer_names is not None and 0 <= k < len(layer_names):
                row["name"] = layer_names[k]
            row["instructions"] = sum(v[0] for v in acc.values())
            row["est_cycles"] = sum(v[1] for v in acc.values())
            layers.append(row)
        r["layers"] = layers
    return r


def for_bench(built: Any, call: int = 0, **kw: Any) -> dict[str, Any]:
    """The estimate for a `bench` report of a firmware from ``builder.build`` (board, ELF, model):
    ``est_cycles``, ``est_cycles_per_mac``, ``est_instructions`` and per-layer ``est_layers`` (with
    the op names and MACs of the compiled graph), and the model's assumptions (``est_model``)."""
    c = built.compiled
    ops = c.graph.ops
    r = estimate_cycles(built.elf, board=built.board.name, entry=f"{c.gen.name}_invoke_with_arena", call=call,
                        layer_names=[op.name for op in ops], **kw)
    macs = int(c.report["macs"])
    out: dict[str, Any] = {"est_cycles": r["est_cycles"], "est_instructions": r["instructions"],
                           "est_cycles_per_mac": r["est_cycles"] / max(1, macs), "est_by_class": r["by_class"],
                           "est_model": r["model"], "est_seconds": r["seconds"]}
    if r.get("unpriced_mnemonics"):
        out["est_unpriced_mnemonics"] = r["unpriced_mnemonics"]  # priced at 1 cycle each
    if "layers" in r:
        out["est_layers"] = [dict(row, op=ops[row["layer"]].opcode, macs=ops[row["layer"]].macs(c.graph))
                             if 0 <= row["layer"] < len(ops) else row for row in r["layers"]]
    return out
