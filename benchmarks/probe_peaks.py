"""The engine's and the method's peak memory apart, at one answer length and chunk size.

    python benchmarks/probe_peaks.py 512 none     # mid LLaVA, N = 576, one thread
    python benchmarks/probe_peaks.py 512 32

VmHWM is reset (``/proc/self/clear_refs``) before ``attention_gradients`` (after one
warm-up call) and again before the DEX-AR method and its maps: each peak is the growth
of the resident set over what was resident before it.
"""

from __future__ import annotations

import sys

import bench_cells as b

from dexar_core.engine import attention_gradients
from dexar_core.methods.dexar import DexarMethod


def _kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _reset() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def main() -> None:
    length, chunk = int(sys.argv[1]), None if sys.argv[2] == "none" else int(sys.argv[2])
    cell = b.probe_cell(length, chunk)
    loaded = cell.loaded
    forced = loaded.adapter.teacher_forced(loaded, cell.prepared, cell.answer_ids(length))
    layout = cell.layout.with_length(forced.key_length)
    attention_gradients(loaded, forced, layout, cell.layers, chunk_size=chunk)  # warm-up
    _reset()
    base = _kb("VmRSS")
    record = attention_gradients(loaded, forced, layout, cell.layers, chunk_size=chunk)
    engine = (_kb("VmHWM") - base) / 1024
    _reset()
    base = _kb("VmRSS")
    DexarMethod().explain(record).maps(record.layout)
    method = (_kb("VmHWM") - base) / 1024
    print(
        f"T={length} chunk={chunk} engine peak {engine:.0f} MB, one [T,L,H,K] array "
        f"{record.gradients.nbytes / 2**20:.0f} MB, method peak {method:.0f} MB",
        flush=True,
    )


if __name__ == "__main__":
    main()
