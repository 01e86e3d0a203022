"""Random-weight LLaVA cells for bench_explain.py, and one measured job.

A cell is one model (a preset of the real transformers classes, built from a config with
random weights) at one image size, prepared with a prompt: everything a measured kind
(generate, explain, free_run, naive, a baseline method) starts from. :func:`run_job`
measures one job (the peak memory of some kinds, or their interleaved wall time); the
driver runs it in a fresh subprocess or in its own process.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

PROMPT = "describe the image in detail"
PROMPT_WORDS = ("user", "assistant", "describe", "the", "image", "in", "detail")

PRESET_FIELDS = (
    "text_layers",
    "hidden",
    "heads",
    "intermediate",
    "vocab",
    "vision_layers",
    "vision_hidden",
    "vision_heads",
    "vision_intermediate",
    "patch",
    "feature_layer",
)
"""What a preset sets, in the order of its row: the language model, then the vision tower."""

PRESETS: dict[str, dict[str, Any]] = {
    name: dict(zip(PRESET_FIELDS, row, strict=True))
    for name, row in {
        # The size of the tests' tiny LLaVA.
        "tiny": (2, 128, 4, 512, 256, 2, 128, 4, 512, 8, -1),
        # A small LLaVA: ViT-B/14-like tower at 336 px (576 tokens), 12-layer Llama, 32k vocab.
        "mid": (12, 768, 12, 3072, 32000, 12, 768, 12, 3072, 14, -2),
        # LLaVA-1.5-7B's language model; a 4-layer CLIP-L-width tower stands in for ViT-L/14
        # (24 layers): the tower runs once, without grad, in both generate and explain.
        "7b": (32, 4096, 32, 11008, 32000, 4, 1024, 16, 4096, 14, -2),
    }.items()
}
DRY_RUN_SHAPE = dict(
    text_layers=2,
    hidden=64,
    heads=4,
    intermediate=128,
    vision_layers=1,
    vision_hidden=64,
    vision_heads=4,
    vision_intermediate=128,
)


# --- models ------------------------------------------------------------------------------


def build_llava(preset: dict[str, Any], image_tokens: int, device: str, dtype: str, seed: int):
    """A random-weight ``LlavaForConditionalGeneration`` and processor for ``image_tokens``."""
    import torch
    from transformers import LlamaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from dexar_core.zoo.tiny_models import TinySizes, decoder_config
    from dexar_core.zoo.tokenizer import IMAGE_TOKEN, build_word_tokenizer
    from dexar_llava.tiny import (
        CHAT_TEMPLATE,
        clip_image_processor,
        clip_tower_config,
        llava_config,
        llava_processor,
    )

    side = math.isqrt(image_tokens)
    if side * side != image_tokens:
        raise SystemExit(f"--image-tokens must be perfect squares, got {image_tokens}.")
    image_size = side * preset["patch"]
    fillers = preset["vocab"] - 12 - len(PROMPT_WORDS)  # 12 = specials and punctuation
    tokenizer = build_word_tokenizer(
        [*PROMPT_WORDS, *(f"w{i}" for i in range(fillers))],
        image_token=IMAGE_TOKEN,
        model_max_length=1 << 16,
    )
    # the tower and the decoder of a preset differ in width (a 7B decoder, a CLIP-L tower)
    tower = TinySizes(
        image_size=image_size,
        patch_size=preset["patch"],
        hidden_size=preset["vision_hidden"],
        heads=preset["vision_heads"],
        vision_layers=preset["vision_layers"],
        mlp_ratio=preset["vision_intermediate"] // preset["vision_hidden"],
    )
    decoder = tower.evolve(
        hidden_size=preset["hidden"], heads=preset["heads"], text_layers=preset["text_layers"]
    )
    text = decoder_config(
        LlamaConfig,
        decoder,
        tokenizer,
        max_positions=8192,
        intermediate_size=preset["intermediate"],
    )
    config = llava_config(
        clip_tower_config(tower), text, tokenizer, feature_layer=preset["feature_layer"]
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    # Built where it runs, in its dtype: a 7B model initialised on the CPU takes minutes.
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=getattr(torch, dtype))
    model.eval()
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(model.generation_config, key, getattr(tokenizer, key))
    processor = llava_processor(
        LlavaProcessor,
        clip_image_processor(image_size),
        tokenizer,
        patch_size=preset["patch"],
        strategy="default",
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor, image_size


class Cell:
    """One model at one image size, prepared: what every measured kind starts from."""

    def __init__(self, job: dict[str, Any]) -> None:
        import numpy as np
        from PIL import Image

        from dexar_core.records import LoadedModel
        from dexar_llava.adapter import LlavaAdapter

        self.job = job
        model, processor, image_size = build_llava(
            job["preset"], job["image_tokens"], job["device"], job["dtype"], job["seed"]
        )
        self.loaded = LoadedModel(
            model=model, processor=processor, adapter=LlavaAdapter(), model_id=job["size"]
        )
        rng = np.random.default_rng(job["seed"])
        pixels = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        adapter = self.loaded.adapter
        self.prepared = adapter.prepare(self.loaded, [Image.fromarray(pixels)], PROMPT)
        self.layout = adapter.locator.locate(self.prepared)
        self.layers = tuple(range(adapter.decoder_parts(model).num_layers))
        self.prompt_length = int(self.prepared.inputs["input_ids"].shape[1])
        self.weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        self.parts_s: dict[str, list[float]] = {}
        self.current = ""

    def answer_ids(self, length: int) -> list[int]:
        """A fixed answer of ``length`` ordinary words (cost does not depend on which)."""
        import numpy as np

        vocab = len(self.loaded.tokenizer)
        rng = np.random.default_rng(self.job["seed"] + length)
        return [int(i) for i in rng.integers(12, vocab, size=length)]

    def generate(self, length: int) -> tuple[list[int], Any]:
        """Exactly ``length`` greedy tokens, and the cache generation filled (made without
        a config, as the adapters' ``free_run`` makes it)."""
        import torch
        from transformers import DynamicCache

        cache = DynamicCache()
        with torch.no_grad():
            sequences = self.loaded.model.generate(
                **self.prepared.inputs,
                max_new_tokens=length,
                min_new_tokens=length,
                do_sample=False,
                cache=cache,
            )
        if sequences.shape[1] != self.prompt_length + length:
            raise RuntimeError(f"generate gave {sequences.shape[1] - self.prompt_length} tokens")
        return sequences[0, self.prompt_length :].tolist(), cache

    def free_run(self, length: int, chunk_size: int | None) -> Any:
        """Generate, then explain the answer from generation's prefill, as ``explain`` does."""
        from dexar_core.engine.prompt_cache import kept_prefill

        answer_ids, cache = self.generate(length)
        return self.explain(
            answer_ids, chunk_size, prefill=kept_prefill(cache, self.prepared.inputs)
        )

    def explain(
        self,
        answer_ids: list[int],
        chunk_size: int | None,
        method: Any = None,
        prefill: Any = None,
    ):
        from dexar_core.engine import attention_gradients
        from dexar_core.methods.dexar import DexarMethod

        start = time.perf_counter()
        method = method or DexarMethod()
        adapter = self.loaded.adapter
        forced = adapter.teacher_forced(self.loaded, self.prepared, answer_ids)
        forced = engine_variant(forced, self.job.get("engine", ENGINES[0]))
        layout = self.layout
        if hasattr(adapter, "layout_for_answer"):  # as dexar_core.api.explain does
            layout = adapter.layout_for_answer(self.loaded, self.prepared, forced, layout)
        needs = {"needs": method.needs} if getattr(method, "needs", ()) else {}
        record = attention_gradients(
            self.loaded,
            forced,
            layout.with_length(forced.key_length),
            self.layers,
            chunk_size=chunk_size,
            prefill=prefill,
            **needs,
        )
        self.sync()
        middle = time.perf_counter()
        result = method.explain(record)
        result.maps(record.layout)
        self.parts_s.setdefault(f"{self.current}:engine", []).append(middle - start)
        self.parts_s.setdefault(f"{self.current}:method", []).append(time.perf_counter() - middle)
        return record

    def sync(self) -> None:
        import torch

        if self.job["device"].startswith("cuda"):
            torch.cuda.synchronize()

    def operation(self, kind: str, length: int) -> Callable[[], Any]:
        """The function one measurement of ``kind`` times."""
        chunk = self.job.get("chunk_size")
        if kind == "generate":
            return lambda: self.generate(length)
        if kind == "explain":
            ids = self.answer_ids(length)
            return lambda: self.explain(ids, chunk)
        if kind == "free_run":
            return lambda: self.free_run(length, chunk)
        if kind == "naive":
            from dexar_plugins.testing.reference import naive_attention_gradients

            ids = self.answer_ids(length)
            return lambda: naive_attention_gradients(self.loaded, self.prepared, ids, self.layers)
        if kind.startswith("method:"):
            from dexar_plugins.manager import default_catalog

            method = default_catalog().method(kind.removeprefix("method:")).factory()
            ids = self.answer_ids(length)
            return lambda: self.explain(ids, chunk, method)
        raise ValueError(f"unknown kind {kind!r}")


# --- engine variants ---------------------------------------------------------------------

ENGINES = ("prompt-cache", "full-pass")
"""``prompt-cache``: the engine as it runs by default (the prompt once without grad into a
KV cache, then the answer rows); ``full-pass``: the same engine made to run its one pass
over prompt + answer (``prompt_inputs`` dropped), as it does for encoder-decoders."""


def engine_variant(forced: Any, engine: str) -> Any:
    """The teacher-forced pass the ``engine`` variant explains."""
    import attrs

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {ENGINES}")
    return forced if engine == "prompt-cache" else attrs.evolve(forced, prompt_inputs=None)


# --- measuring ---------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


pinned_allocator = False
"""Whether :func:`pin_mmap_threshold` took effect in this process."""

MMAP_THRESHOLD = 64 * 1024
"""Bytes from which glibc's malloc gives a block its own mapping, returned when freed."""


def pin_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold, so the peak resident set follows the live tensors.

    By default glibc raises the threshold to the size of each mapped block it frees (up
    to 32 MiB), after which blocks of that size come from the heap and stay resident when
    freed: the peak then depends on the order of earlier allocations. The same generate
    measured 101 MB in one tree and 162 MB in another, each time in a fresh process
    (docs/performance.md). A fixed threshold turns that adjustment off. Returns whether
    it took effect (False off glibc); the environment variable
    ``MALLOC_MMAP_THRESHOLD_`` does the same for a process about to start.
    """
    global pinned_allocator
    try:
        # -3 is M_MMAP_THRESHOLD
        pinned_allocator = bool(ctypes.CDLL("libc.so.6").mallopt(-3, MMAP_THRESHOLD))
    except (OSError, AttributeError):  # not glibc
        pinned_allocator = False
    return pinned_allocator


def peak_memory(cell: Cell, operation: Callable[[], Any]) -> tuple[float, float, str, Any]:
    """Run ``operation`` once: peak memory growth (MiB), seconds, how measured, its result."""
    import torch

    gc.collect()
    if cell.job["device"].startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        result = operation()
        cell.sync()
        seconds = time.perf_counter() - start
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        return peak, seconds, "cuda_max_allocated", result
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    how = "rss_hwm_reset" + (
        f", mmap threshold {MMAP_THRESHOLD // 1024} KiB" if pinned_allocator else ""
    )
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current resident set
    except OSError:
        how = "rss_hwm_since_start"
    base = _status_kb("VmRSS")
    start = time.perf_counter()
    result = operation()
    seconds = time.perf_counter() - start
    return (_status_kb("VmHWM") - base) / 1024, seconds, how, result


def probe_cell(answer_length: int, chunk_size: int | None = None, size: str = "mid") -> Cell:
    """The probe scripts' model: ``size`` LLaVA, N = 576, float32, one CPU thread.

    The allocator is pinned (:func:`pin_mmap_threshold`) before the model is built.
    """
    import torch

    pin_mmap_threshold()
    torch.set_num_threads(1)
    job = dict(
        device="cpu",
        dtype="float32",
        threads=1,
        seed=0,
        chunk_size=chunk_size,
        size=size,
        preset=PRESETS[size],
        image_tokens=576,
        answer_length=answer_length,
    )
    return Cell(job)


def run_job(job: dict[str, Any], cell: Cell | None = None) -> dict[str, Any]:
    """Measure one job (memory of one kind, or interleaved timing of several)."""
    import torch

    pin_mmap_threshold()
    torch.set_num_threads(job["threads"])
    started = time.perf_counter()
    cell = cell or Cell(job)
    build_s = time.perf_counter() - started
    length = job["answer_length"]
    out: dict[str, Any] = {
        "prompt_length": cell.prompt_length,
        "weights_mb": cell.weights_mb,
        "build_s": build_s,
        "kinds": {},
    }
    results: dict[str, Any] = {}
    if job["mode"] == "memory":
        for kind in job["kinds"]:
            cell.current = kind
            cpu_start = time.process_time()
            peak, seconds, how, result = peak_memory(cell, cell.operation(kind, length))
            out["kinds"][kind] = {
                "peak_mb": peak,
                "first_run_s": seconds,
                "first_run_cpu_s": time.process_time() - cpu_start,
                "memory": how,
            }
            if kind == "naive":  # kept for the check below; other results are dropped
                results[kind] = result
            del result
    else:
        operations = {kind: cell.operation(kind, length) for kind in job["kinds"]}
        for kind, operation in list(operations.items()):
            cell.current = kind
            try:  # the warm-up; a kind that fails is reported, the others still measured
                if job["warmup"] or kind.startswith("method:"):
                    operation()
                    cell.sync()
            except Exception as error:
                out["kinds"][kind] = {"error": f"{type(error).__name__}: {error}"}
                del operations[kind]
        times: dict[str, list[float]] = {kind: [] for kind in operations}
        cpu_times: dict[str, list[float]] = {kind: [] for kind in operations}
        cell.parts_s.clear()
        for _ in range(job["reps"]):
            for kind, operation in operations.items():
                cell.current = kind
                start, cpu_start = time.perf_counter(), time.process_time()
                operation()
                cell.sync()
                times[kind].append(time.perf_counter() - start)
                cpu_times[kind].append(time.process_time() - cpu_start)
        for kind, values in times.items():
            out["kinds"][kind] = {
                "seconds": statistics.median(values),
                "runs_s": values,
                # CPU seconds of this process: at one thread, the compute a neighbour's
                # load cannot stretch (wall time under a shared CPU can)
                "cpu_s": statistics.median(cpu_times[kind]),
                "cpu_runs_s": cpu_times[kind],
            }
        out["parts_s"] = {key: statistics.median(values) for key, values in cell.parts_s.items()}
    if job.get("check_naive"):
        from dexar_plugins.testing.reference import naive_attention_gradients, relative_error

        ids = cell.answer_ids(length)
        record = cell.explain(ids, None)
        reference = results.get("naive")  # the measured run's, when this job ran one
        if reference is None:
            reference = naive_attention_gradients(cell.loaded, cell.prepared, ids, cell.layers)
        out["naive_relative_error"] = relative_error(record.gradients, reference)
    return out


# --- profiling ---------------------------------------------------------------------------


def profile(args: argparse.Namespace) -> None:
    """Print where one generate and one explain pass spend their time, and what autograd keeps."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    size, n, t = args.profile.split(":")
    job = {
        "size": size,
        "image_tokens": int(n),
        "answer_length": int(t),
        "device": args.device,
        "dtype": args.dtype,
        "threads": args.threads,
        "seed": args.seed,
        "chunk_size": args.chunk_size,
        "preset": dict(PRESETS[size]),
    }
    torch.set_num_threads(args.threads)
    cell = Cell(job)
    ids = cell.answer_ids(int(t))
    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if args.device.startswith("cuda") else []
    )
    for engine in args.engines:
        cell.job["engine"] = engine
        cell.explain(ids, args.chunk_size)  # warm-up
        saved: dict[int, tuple[tuple[int, ...], int]] = {}

        def keep(tensor: Any, saved: dict = saved) -> Any:
            if not isinstance(tensor, torch.nn.Parameter) and tensor._base is None:
                storage = tensor.untyped_storage()
                saved[storage.data_ptr()] = (tuple(tensor.shape), storage.nbytes())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
            cell.explain(ids, args.chunk_size)
        by_shape: dict[tuple[int, ...], int] = {}
        for shape, size_bytes in saved.values():
            by_shape[shape] = by_shape.get(shape, 0) + size_bytes
        print(
            f"# {engine}: tensors autograd saved for the backward: "
            f"{sum(by_shape.values()) / 2**20:.1f} MiB"
        )
        for shape, size_bytes in sorted(by_shape.items(), key=lambda item: -item[1])[:6]:
            print(f"#   {shape}: {size_bytes / 2**20:.1f} MiB")
        with torch_profile(activities=activities) as profiled:
            cell.explain(ids, args.chunk_size)
            cell.sync()
        print(f"# {engine}: explain pass, {size} N={n} T={t}")
        print(profiled.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))
    with torch_profile(activities=activities) as profiled:
        cell.generate(int(t))
        cell.sync()
    print(f"# generate, {size} N={n} T={t}")
    print(profiled.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
