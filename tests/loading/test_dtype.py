"""The default dtype follows the device and the stored dtype; never float16 on a CPU."""

from __future__ import annotations

import pytest
from conftest import write_snapshot
from llava_fixtures import noise_image

import dexar_core
from dexar_core.hf import load_options as checks

X86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {extra}\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd {extra}\n"


@pytest.mark.parametrize(
    ("cpuinfo", "machine", "native"),
    [
        (X86.format(extra=""), "x86_64", False),
        (X86.format(extra="avx512_bf16"), "x86_64", True),
        (X86.format(extra="amx_bf16 amx_tile"), "x86_64", True),
        (ARM.format(extra=""), "aarch64", False),
        (ARM.format(extra="bf16 i8mm"), "aarch64", True),
    ],
)
def test_native_bfloat16_is_read_from_the_cpu_flags(cpuinfo, machine, native):
    assert checks.has_native_bfloat16(cpuinfo, machine) is native


@pytest.mark.parametrize(
    ("config", "stored"),
    [
        ({"dtype": "float16"}, "float16"),
        ({"torch_dtype": "bfloat16"}, "bfloat16"),
        ({"text_config": {"dtype": "float16"}}, "float16"),
        ({"dtype": "auto"}, None),
        ({}, None),
    ],
)
def test_the_stored_dtype_is_read_from_the_config(config, stored):
    assert checks.stored_dtype(config) == stored


@pytest.mark.parametrize(
    ("device", "stored", "fast", "chosen"),
    [
        ("cpu", "float16", True, "bfloat16"),
        ("cpu", "float16", False, "float32"),
        ("cpu", "bfloat16", False, "float32"),
        ("cpu", "float32", True, "float32"),
        ("cpu", None, True, "float32"),
        ("cuda", "float16", False, None),
    ],
)
def test_the_default_dtype_per_device(monkeypatch, device, stored, fast, chosen):
    monkeypatch.setattr(checks, "cpu_runs_bfloat16_fast", lambda: fast)
    assert checks.default_dtype(device, stored) == chosen


@pytest.fixture(scope="module")
def float16_checkpoint(tmp_path_factory):
    cache = tmp_path_factory.mktemp("fp16-cache")
    return write_snapshot(cache, "dexar-test/fp16", "f" * 40, dtype="float16")


@pytest.mark.parametrize(("fast", "expected"), [(False, "float32"), (True, "bfloat16")])
def test_a_float16_checkpoint_never_runs_in_float16_on_a_cpu(
    monkeypatch, float16_checkpoint, fast, expected
):
    monkeypatch.setattr(checks, "cpu_runs_bfloat16_fast", lambda: fast)
    loaded = dexar_core.load(float16_checkpoint)
    explanation = dexar_core.explain(loaded, noise_image(), "what color?", answer="red")
    assert explanation.metadata["dtype"] == expected


def test_float16_asked_for_on_a_cpu_is_honoured_with_a_warning(float16_checkpoint):
    with pytest.warns(UserWarning, match="float16 on a CPU is slow"):
        loaded = dexar_core.load(float16_checkpoint, dtype="auto")
    assert str(loaded.model.dtype) == "torch.float16"
