"""The README's flash-then-bench flow through a damaging link, at length.

    LWCNN_DATASETS=../shared/datasets .venv/bin/python benchmarks/port_faults.py [--board qemu-m4]
        [--samples 300] [--faults 0.04] [--seed 7] [--timeout 1]

Builds the shipped MNIST firmware, starts it with ``lwcnn-mcu flash`` (an emulated board, UART on a
local TCP port), and runs ``lwcnn-mcu bench --port socket://...`` through tests/linkproxy.py: bit
flips, dropped bytes, 1-8 bytes of garbage and stalls of 0.05-0.4 s on a fraction ``--faults`` of
the chunks in each direction, and the board reset in the middle of its INFO, TIME and LAYERS
replies. Prints the bench report's transport counts beside the damage the proxy did, and writes
them to benchmarks/results/port-faults-<board>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from lwcnn_mcu import bench, builder  # noqa: E402
from tests.linkproxy import LinkProxy  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--board", default="qemu-m4", choices=["qemu-m4", "qemu-stm32f4", "nucleo"])
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--faults", type=float, default=0.04)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--timeout", type=float, default=1.0)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="port-faults-"))
    builder.build(args.board, "mnist", tmp / "build")
    tcp = bench._free_port()
    log = tmp / "flash.log"
    with open(log, "wb") as f:
        flash = subprocess.Popen([sys.executable, "-m", "lwcnn_mcu", "flash", "--board", args.board, "-o",
                                  str(tmp / "build"), "--tcp-port", str(tcp)]
                                 + (["--emulate"] if args.board == "nucleo" else []),
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)
    try:
        while b"waiting for connection" not in log.read_bytes():
            if flash.poll() is not None:
                raise SystemExit(log.read_text())
            time.sleep(0.1)
        proxy = LinkProxy(f"socket://127.0.0.1:{tcp}", faults=args.faults, seed=args.seed,
                          resets=(("INFO", 1), ("TIME", 1), ("LAYERS", 1)))
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "lwcnn_mcu", "bench", "--port", proxy.url, "--model", "mnist",
                            "--dataset", "mnist", "--samples", str(args.samples), "--layers", "--json", "--no-save",
                            "--timeout", str(args.timeout)], capture_output=True, text=True)
        seconds = time.monotonic() - t0
        proxy.close()
    finally:
        os.killpg(flash.pid, signal.SIGTERM)
        flash.wait()
    if not r.stdout.strip():
        print(r.stderr[-3000:], file=sys.stderr)
        return r.returncode or 1
    rep = json.loads(r.stdout)
    out = {"board": args.board, "samples": rep["samples"], "exit_code": r.returncode, "seconds": round(seconds, 1),
           "agree_with_host": rep["agree_with_host"], "transport_errors": rep["transport_errors"],
           "transport": rep["transport"], "proxy_damage": proxy.counts, "resets_injected": proxy.injected,
           "faults_per_chunk": args.faults, "seed": args.seed, "timeout_s": args.timeout,
           "machine": bench.machine(), "commit": bench._git_commit(),
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    dest = ROOT / "benchmarks" / "results" / f"port-faults-{args.board}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return r.returncode


if __name__ == "__main__":
    raise SystemExit(main())
