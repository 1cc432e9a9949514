"""Cycle estimates of emulated runs (lwcnn_mcu/cycles.py, docs/cycles.md): the TRM pricing of single
instructions, a hand-written loop whose cycles and instructions are counted by hand, and the shipped
MNIST firmware, whose instruction count must agree with the firmware's own (SysTick under -icount)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lwcnn_mcu import boards, builder, cycles, emulator
from lwcnn_mcu.errors import LwcnnError
from tests.conftest import HAVE_ARM

HAVE_QEMU = shutil.which("qemu-system-arm") is not None
needs_tools = pytest.mark.skipif(not (HAVE_ARM and HAVE_QEMU),
                                 reason="arm-none-eabi-gcc or qemu-system-arm is not installed (make setup)")

P = cycles.BRANCH_REFILL


@pytest.mark.parametrize("mnemonic,operands,cls,cost,taken", [
    ("ldr", "r0, [pc, #0x3c]", "load", 2, None),
    ("ldrb.w", "r2, [r3, #1]!", "load", 2, None),
    ("ldrsh", "r1, [r4, r5]", "load", 2, None),
    ("ldrd", "r0, r1, [r2]", "load_double", 3, None),
    ("ldm.w", "r0!, {r1, r2, r3}", "load_multiple", 4, None),
    ("pop", "{r4, r5, r6, pc}", "load_multiple", 1 + 4 + P, 1 + 4 + P),
    ("ldr.w", "pc, [sp], #4", "branch_taken", 2 + P, 2 + P),
    ("strb", "r1, [r0]", "store", 1, None),
    ("strd", "r1, r2, [r6]", "store_double", 3, None),
    ("push", "{r4, r5, r6, r7, lr}", "store_multiple", 6, None),
    ("stmdb", "sp!, {r4-r11, lr}", "store_multiple", 10, None),
    ("movs", "r0, #1", "alu", 1, None),
    ("lsls", "r0, r0, #2", "alu", 1, None),
    ("bics", "r0, r1", "alu", 1, None),
    ("itte", "ne", "alu", 1, None),
    ("addeq", "r0, r1", "alu", 1, None),
    ("mla", "r1, r2, r4, r1", "mul", 1, None),
    ("smlad", "r1, r2, r4, r1", "mul", 1, None),
    ("smull", "r0, r1, r2, r3", "mul", 1, None),
    ("smmulr", "r0, r1, r2", "mul", 1, None),
    ("sxtb16", "r0, r1, ror #8", "simd", 1, None),
    ("ssat", "r0, #8, r1", "simd", 1, None),
    ("udiv", "r0, r1, r2", "div", cycles.DIV_CYCLES, None),
    ("b", "#0x100", "branch_taken", 1 + P, 1 + P),
    ("bls", "#0x100", "branch_taken", 1, 1 + P),
    ("bne.w", "#0x100", "branch_taken", 1, 1 + P),
    ("cbz", "r0, #0x100", "branch_taken", 1, 1 + P),
    ("bl", "#0x100", "branch_taken", 1 + P, 1 + P),
    ("bx", "lr", "branch_taken", 1 + P, 1 + P),
    ("tbb", "[pc, r0]", "branch_taken", 2 + P, 2 + P),
    ("vadd.f32", "s0, s1, s2", "vfp", 1, None),
    ("vdiv.f32", "s0, s1, s2", "vfp", 14, None),
    ("vldr", "s0, [r0]", "vfp", 2, None),
])
def test_price_follows_the_cortex_m4_trm(mnemonic, operands, cls, cost, taken):  # noqa: ANN001
    ins = cycles.price(0, 2, mnemonic, operands)
    assert (ins.cls, ins.cost, ins.taken) == (cls, cost, taken)


def test_pipelined_loads_need_an_independent_address():
    first = cycles.price(0, 2, "ldr", "r2, [r3]")
    assert cycles._pipelined(first, cycles.price(2, 2, "ldr", "r4, [r3, #4]"))
    assert not cycles._pipelined(first, cycles.price(2, 2, "ldr", "r5, [r2, #4]"))
    assert not cycles._pipelined(first, cycles.price(2, 2, "str", "r5, [r3]"))
    assert not cycles._pipelined(cycles.price(0, 2, "adds", "r0, #1"), first)


#: The vector table and reset label every hand-written image starts with.
VECTORS = """
    .syntax unified
    .cpu cortex-m4
    .thumb
    .text
    .word 0x20001000
    .word reset
    .thumb_func
    .global reset
reset:
"""

# A bare-metal image for mps2-an386: reset calls `kernel` once, then spins (the estimator stops QEMU).
HAND_LOOP = VECTORS + """    ldr r3, =data
    bl kernel
1:  b 1b

    .thumb_func
    .global kernel
    .type kernel, %function
kernel:
    push {r4, r5, r6, lr}
    movs r0, #10
    movs r1, #0
    ldr r6, =0x20000100
loop:
    ldr r2, [r3]
    ldr r4, [r3, #4]
    ldr r5, [r3, r4]
    mla r1, r2, r4, r1
    smlad r1, r2, r4, r1
    strd r1, r2, [r6]
    subs r0, #1
    bne loop
    cbz r0, skip
    nop
skip:
    pop {r4, r5, r6, pc}
    .size kernel, .-kernel
    .ltorg
    .align 2
data:
    .word 7, 4, 9
"""


@needs_tools
def test_hand_written_loop_matches_the_hand_count(tmp_path: Path):
    src = tmp_path / "loop.S"
    src.write_text(HAND_LOOP)
    elf = tmp_path / "loop.elf"
    subprocess.run([builder.toolchain(), "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-nostartfiles",
                    "-Wl,-Ttext=0x0", "-Wl,--entry=reset", str(src), "-o", str(elf)], check=True)
    r = cycles.estimate_cycles(elf, entry="kernel", timeout=30)
    # By hand (P = 2, every instruction in docs/cycles.md's table):
    #   push {4 regs} 1+4, movs, movs, ldr r6 (literal) 2                                   = 9
    #   pass 1: ldr r2 1 (right after ldr r6, independent), ldr r4 1, ldr r5 2 (its address
    #           is r4, the load before), mla 1, smlad 1, strd 3, subs 1, bne taken 1+P    = 13
    #   passes 2-9: the same with ldr r2 at 2 (after the branch)                         = 8 x 14
    #   pass 10: bne not taken 1                                                          = 12
    #   cbz taken 1+P, pop {r4, r5, r6, pc} 1+4+P                                         = 3 + 7
    assert r["instructions"] == 4 + 10 * 8 + 2
    assert r["est_cycles"] == 9 + 13 + 8 * 14 + 12 + (1 + P) + (1 + 4 + P)
    bc = {k: v["instructions"] for k, v in r["by_class"].items()}
    assert bc["load"] == 1 + 9 + 10
    assert bc["load_pipelined"] == 2 + 9
    assert bc["branch_taken"] == 9 + 1
    assert bc["branch_not_taken"] == 1
    assert bc["mul"] == 20
    assert bc["store_double"] == 10
    assert sum(v["est_cycles"] for v in r["by_class"].values()) == r["est_cycles"]
    assert r["by_function"]["kernel"]["instructions"] == r["instructions"]
    slower = cycles.estimate_cycles(elf, entry="kernel", branch_refill=3, timeout=30)
    assert slower["est_cycles"] == r["est_cycles"] + 9 + 1 + 1  # one more per taken branch and for the pop


@needs_tools
def test_missing_entry_is_a_clean_error(tmp_path: Path):
    src = tmp_path / "loop.S"
    src.write_text(HAND_LOOP)
    elf = tmp_path / "loop.elf"
    subprocess.run([builder.toolchain(), "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-nostartfiles",
                    "-Wl,-Ttext=0x0", "-Wl,--entry=reset", str(src), "-o", str(elf)], check=True)
    with pytest.raises(LwcnnError, match="no function 'nope'"):
        cycles.estimate_cycles(elf, entry="nope")
    with pytest.raises(LwcnnError, match="invoke_with_arena"):
        cycles.estimate_cycles(elf)
    with pytest.raises(LwcnnError, match="not called 2 time"):
        cycles.estimate_cycles(elf, entry="kernel", call=1, timeout=2)


@pytest.fixture(scope="module")
def mnist_fw(tmp_path_factory):  # noqa: ANN001, ANN201
    return builder.build("qemu-m4", "mnist", tmp_path_factory.mktemp("cyc") / "fw")


@needs_tools
def test_mnist_instructions_agree_with_the_firmware_count(mnist_fw):  # noqa: ANN001
    """The firmware times model->invoke between two SysTick reads (1 tick = 40 instructions on
    mps2-an386 under -icount shift=0): its count must lie between the instructions of the invoke
    call alone and those of the whole infer() call around it (plus one tick of rounding)."""
    st = emulator.run_selftest(boards.get("qemu-m4"), mnist_fw.elf)
    tick = 1_000_000_000 // boards.get("qemu-m4").emulator_counter_hz
    for call in (0, 1):
        inv = cycles.estimate_cycles(mnist_fw.elf, call=call)
        around = cycles.estimate_cycles(mnist_fw.elf, entry="infer", call=call)
        fw = st.instructions[call]
        assert inv["instructions"] <= fw <= around["instructions"] + tick, (call, inv["instructions"], fw)
        assert around["instructions"] - inv["instructions"] < 200
        assert inv["est_cycles"] > inv["instructions"]
        assert not inv.get("unpriced_mnemonics")


@needs_tools
def test_mnist_for_bench_has_every_layer(mnist_fw):  # noqa: ANN001
    r = cycles.for_bench(mnist_fw)
    ops = mnist_fw.compiled.graph.ops
    rows = [x for x in r["est_layers"] if x["layer"] >= 0]
    assert [x["layer"] for x in rows] == list(range(len(ops)))
    assert [x["name"] for x in rows] == [op.name for op in ops]
    assert sum(x["est_cycles"] for x in r["est_layers"]) == r["est_cycles"]
    assert sum(x["instructions"] for x in r["est_layers"]) == r["est_instructions"]
    # the convolutions hold almost all the work: the layers with MACs take the most cycles
    by_macs = sorted(rows, key=lambda x: -x["macs"])
    assert by_macs[0]["est_cycles"] == max(x["est_cycles"] for x in rows)
    assert r["est_cycles_per_mac"] == r["est_cycles"] / mnist_fw.compiled.report["macs"]


@needs_tools
def test_mnist_layers_agree_with_the_firmware_layer_hooks(mnist_fw):  # noqa: ANN001
    """The firmware's LAYERS reply times each layer between its hooks (SysTick under -icount): the
    estimate's per-layer instructions (from one LWCNN_LAYER_BEGIN to the next, on the same input)
    must agree within one tick plus the hooks' own few instructions."""
    from lwcnn_mcu import bench

    board = boards.get("qemu-m4")
    tick = 1_000_000_000 // board.emulator_counter_hz
    emu = bench.Emulated(board, mnist_fw.elf)
    try:
        port = bench.open_port(emu.url)
        try:
            dev = bench.Device(port, timeout=30.0)
            dev.wait_ready(120.0)
            dev.infer(mnist_fw.test_inputs[0])  # the self-test's first input, which the estimate runs
            fw = [emulator.ticks_to_instructions(board, t) for _, t in dev.layers(len(mnist_fw.compiled.graph.ops))]
        finally:
            port.close()
    finally:
        emu.close()
    est = {x["layer"]: x["instructions"] for x in cycles.for_bench(mnist_fw)["est_layers"]}
    for k, n in enumerate(fw):
        assert abs(est[k] - n) <= tick + 24, (k, est[k], n)


MMIO_READ = VECTORS + """    bl kernel
1:  b 1b

    .thumb_func
    .global kernel
    .type kernel, %function
kernel:
    movs r0, #1
    ldr r1, =0xE000E018
    ldr r2, [r1]
    adds r0, #1
    adds r0, #1
    bx lr
    .size kernel, .-kernel
    .ltorg
"""


@needs_tools
def test_io_access_inside_a_block_is_counted_once(tmp_path: Path):
    """Under -icount QEMU stops a block at a device access (here SysTick's current value) and runs the
    access as a block of its own: the instructions before it must not be counted twice."""
    src = tmp_path / "io.S"
    src.write_text(MMIO_READ)
    elf = tmp_path / "io.elf"
    subprocess.run([builder.toolchain(), "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-nostartfiles",
                    "-Wl,-Ttext=0x0", "-Wl,--entry=reset", str(src), "-o", str(elf)], check=True)
    r = cycles.estimate_cycles(elf, entry="kernel", timeout=30)
    assert r["io_rewinds"] == 1
    assert r["instructions"] == 6
    # movs 1, ldr literal 2, ldr [r1] 2 (its address is the load before's result), adds 1, adds 1, bx 1+P
    assert r["est_cycles"] == 1 + 2 + 2 + 1 + 1 + (1 + P)
