"""Correctness checks of the engine on a CUDA device (run by hand on a GPU machine).

CI has no GPU, so these are not tests: the script prints one line per check and exits
non-zero when one fails. Checks: the one-pass gradients equal the straightforward
reference on CUDA (float32, SDPA and eager); logits are unchanged with capture active;
a bfloat16 model explains without NaN, and its DEX-AR maps stay within
``BF16_TOLERANCE`` of the same model's float32 maps.

    python benchmarks/gpu_checks.py [--device cuda]
    python benchmarks/gpu_checks.py --dry-run      # the same checks on the CPU
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from PIL import Image

from dexar_core.engine import attention_gradients
from dexar_core.methods.dexar import DexarMethod
from dexar_core.records import (
    AttentionGradients,
    LoadedModel,
    PreparedPrompt,
    TeacherForcedPass,
)
from dexar_llava.adapter import LlavaAdapter
from dexar_llava.tiny import build_tiny_llava
from dexar_plugins.testing.reference import naive_attention_gradients, relative_error

BF16_TOLERANCE = 0.1
"""Largest relative difference (max |bf16 - f32| / max |f32|) of the DEX-AR token maps of
a bfloat16 model from the same weights in float32: bfloat16 keeps 8 bits of mantissa,
about 0.4 % per rounding, and the logit lens, softmax and backward compound a few."""


def _loaded(device: str, implementation: str, dtype: torch.dtype) -> LoadedModel:
    model, processor = build_tiny_llava(seed=0, attn_implementation=implementation, kv_heads=2)
    model = model.to(device=device, dtype=dtype).eval()
    return LoadedModel(model=model, processor=processor, adapter=LlavaAdapter(), model_id="tiny")


def _image() -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _explained(
    loaded: LoadedModel,
) -> tuple[PreparedPrompt, list[int], TeacherForcedPass, AttentionGradients]:
    """The prepared prompt, answer ids, teacher-forced pass and gradients of layers 0, 1."""
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [_image()], "what color is the circle?")
    answer_ids = adapter.encode_answer(loaded, prepared, "a red circle at the left")
    forced = adapter.teacher_forced(loaded, prepared, answer_ids)
    layout = adapter.locator.locate(prepared).with_length(forced.key_length)
    return prepared, answer_ids, forced, attention_gradients(loaded, forced, layout, (0, 1))


def check(device: str, implementation: str, dtype: torch.dtype) -> tuple[bool, str]:
    """Engine vs reference (float32) or finiteness (bfloat16) on one configuration."""
    loaded = _loaded(device, implementation, dtype)
    adapter = loaded.adapter
    prepared, answer_ids, forced, record = _explained(loaded)
    result = DexarMethod().explain(record)
    finite = bool(np.isfinite(record.gradients).all() and np.isfinite(result.token_relevance).all())
    inputs = {**forced.inputs, "logits_to_keep": 0}
    with torch.no_grad():
        plain = loaded.model(**inputs).logits.detach().float()
    with adapter.capture.capture(loaded.model, [0, 1], forced.query_rows):
        captured = loaded.model(**inputs).logits.detach().float()
    drift = float((plain - captured).abs().max())
    if dtype != torch.float32:
        ok = finite and drift < 5e-2
        return ok, f"finite={finite} logit drift with capture={drift:.2e}"
    reference = naive_attention_gradients(loaded, prepared, answer_ids, (0, 1))
    error = relative_error(record.gradients, reference)
    ok = finite and error <= 1e-5 and drift <= 1e-4
    return ok, f"relative error vs reference={error:.2e} logit drift with capture={drift:.2e}"


def bf16_against_float32(device: str) -> tuple[bool, str]:
    """The bfloat16 model's DEX-AR token maps against the same weights in float32."""
    maps = {}
    for dtype in (torch.float32, torch.bfloat16):
        record = _explained(_loaded(device, "sdpa", dtype))[-1]
        maps[dtype] = np.asarray(DexarMethod().explain(record).token_relevance, np.float64)
    reference = maps[torch.float32]
    error = float(np.abs(maps[torch.bfloat16] - reference).max() / np.abs(reference).max())
    ok = bool(np.isfinite(error)) and error <= BF16_TOLERANCE
    return (
        ok,
        f"DEX-AR token maps bf16 vs float32: relative difference {error:.2e} (<= {BF16_TOLERANCE})",
    )


def main() -> int:
    """Run every check and print a line each; non-zero exit when one fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="run the checks on the CPU")
    args = parser.parse_args()
    device = "cpu" if args.dry_run else args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device is available; run with --device cpu to try the script")
        return 2
    if device.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    failures = 0
    for implementation in ("sdpa", "eager"):
        for dtype in (torch.float32, torch.bfloat16):
            ok, detail = check(device, implementation, dtype)
            failures += not ok
            name = str(dtype).removeprefix("torch.")
            print(f"{'PASS' if ok else 'FAIL'} {implementation:5s} {name:8s} {detail}")
    ok, detail = bf16_against_float32(device)
    failures += not ok
    print(f"{'PASS' if ok else 'FAIL'} sdpa  bf16/f32 {detail}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
