"""How a checkpoint is loaded: the device it runs on, its dtype, and from_pretrained's options.

Everything here is checked before any weight is read, so a wrong device or option fails
in well under a second with a message naming the cause and the fix.

The default dtype (``dtype=None``) follows the device and the checkpoint's stored dtype:

- on a CPU a half-precision checkpoint (float16 or bfloat16) runs in bfloat16 where the
  CPU has native bfloat16 instructions (AVX512-BF16 or AMX on x86, the BF16 extension on
  Arm), else in float32; float16 is never the default on a CPU, where it is the slowest
  choice. A float32 checkpoint (the embedded ones) stays float32, so its results do not
  depend on which CPU ran it;
- on an accelerator the checkpoint's stored dtype (transformers' ``"auto"``).
"""

from __future__ import annotations

import functools
import importlib.util
import platform
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dexar_core.errors import InputError
from dexar_core.validation import check_device

ATTENTION_IMPLEMENTATIONS = (
    "eager",
    "sdpa",
    "flash_attention_2",
    "flash_attention_3",
    "flex_attention",
)
"""The attention kernels transformers ships; others are names registered by plugins."""

SPREAD_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
"""accelerate's device_map strategies (a device_map may also be one device or a dict)."""

QUANTIZATIONS = ("4bit", "8bit")
"""``--quantization`` values: bitsandbytes' 4-bit (NF4) and 8-bit loading."""

HALF_DTYPES = ("float16", "bfloat16")


def target_device(device: str | None, device_map: Any) -> str:
    """The device type the model will mostly run on, to choose its default dtype."""
    import torch

    if device is not None:
        return str(torch.device(device).type)
    if isinstance(device_map, str) and device_map not in SPREAD_MAPS:
        return str(torch.device(device_map).type)
    if device_map is not None and torch.cuda.is_available():
        return "cuda"
    return "cpu"


@functools.cache
def cpu_runs_bfloat16_fast() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (else torch emulates it, slowly).

    Read from the CPU's feature flags in ``/proc/cpuinfo`` (Linux); where they cannot be
    read, False.
    """
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return has_native_bfloat16(cpuinfo, platform.machine())


def has_native_bfloat16(cpuinfo: str, machine: str) -> bool:
    """Whether ``/proc/cpuinfo`` lists bfloat16 arithmetic: ``avx512_bf16`` or ``amx_bf16``
    on x86, ``bf16`` on Arm (``machine`` is ``platform.machine()``)."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    if machine.lower() in ("aarch64", "arm64"):
        return "bf16" in flags
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def stored_dtype(config: Mapping[str, Any]) -> str | None:
    """The dtype a checkpoint's ``config.json`` says its weights are stored in, if any."""
    for section in (config, config.get("text_config") or {}):
        for key in ("dtype", "torch_dtype"):
            value = section.get(key)
            if isinstance(value, str) and value != "auto":
                return value.removeprefix("torch.")
    return None


def default_dtype(device_type: str, stored: str | None) -> str | None:
    """The dtype to load in when the caller gives none (see the module docstring).

    Returns:
        A dtype name, or None to leave transformers' choice (the stored dtype).
    """
    if device_type != "cpu":
        return None
    if stored in HALF_DTYPES:
        return "bfloat16" if cpu_runs_bfloat16_fast() else "float32"
    return "float32"


def warn_slow_dtype(device_type: str, dtype: Any) -> None:
    """Warn when an explicit dtype is float16 on a CPU, the slowest choice there."""
    if device_type == "cpu" and str(dtype).removeprefix("torch.") == "float16":
        warnings.warn(
            "float16 on a CPU is slow (torch emulates most float16 kernels there); "
            "bfloat16 or float32 run faster. Leave --dtype unset for dexar's default.",
            UserWarning,
            stacklevel=3,
        )


def quantization_config(quantization: str) -> Any:
    """A bitsandbytes config for ``"4bit"`` or ``"8bit"``.

    Raises:
        InputError: an unknown value, or bitsandbytes is not installed.
    """
    if quantization not in QUANTIZATIONS:
        raise InputError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}.")
    import transformers

    if importlib.util.find_spec("bitsandbytes") is None:
        raise InputError(
            f"{quantization} loading needs bitsandbytes and a CUDA GPU: pip install "
            "bitsandbytes, or load without quantization."
        )
    if quantization == "4bit":
        return transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    return transformers.BitsAndBytesConfig(load_in_8bit=True)


def parse_max_memory(text: str) -> dict[int | str, str]:
    """``--max-memory 0=20GiB,cpu=60GiB`` as accelerate's ``max_memory`` dict."""
    limits: dict[int | str, str] = {}
    for item in text.split(","):
        key, separator, amount = item.partition("=")
        key, amount = key.strip(), amount.strip()
        if not separator or not key or not amount:
            raise InputError(
                f"--max-memory expects DEVICE=AMOUNT pairs like 0=20GiB,cpu=60GiB, got {text!r}."
            )
        limits[int(key) if key.isdigit() else key] = amount
    return limits


def from_pretrained_options(
    *,
    device: str | None,
    device_map: Any = None,
    attn_implementation: str | None = None,
    max_memory: Mapping[Any, Any] | None = None,
    offload_folder: str | Path | None = None,
    quantization: Any = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """The checked keyword arguments ``from_pretrained`` gets besides the dtype.

    Args:
        device: the one device (mutually exclusive with ``device_map``).
        device_map: accelerate's placement: a strategy (``"auto"``), a device or a dict.
        attn_implementation: the attention kernel (``"sdpa"``, ``"eager"``, ...).
        max_memory: per-device limits for ``device_map`` (``{0: "20GiB", "cpu": "60GiB"}``).
        offload_folder: where ``device_map`` may offload weights that fit nowhere.
        quantization: ``"4bit"``, ``"8bit"`` or a transformers quantization config.
        trust_remote_code: run the checkpoint's own Python code; off unless asked for.

    Raises:
        InputError: an option this machine or the installed packages cannot honour, or
            options that contradict each other.
    """
    options: dict[str, Any] = {}
    if device is not None:
        check_device(device)
    if quantization is not None:
        config = (
            quantization_config(quantization) if isinstance(quantization, str) else quantization
        )
        options["quantization_config"] = config
        if device_map is None:
            # quantized weights are placed while they load; they cannot be moved after
            device_map = {"": device or "cuda"}
            device = None
    if device_map is not None:
        if device is not None:
            raise InputError(
                f"give a device ({device!r}) or a device_map ({device_map!r}), not both: "
                "device_map already says where each part of the model goes."
            )
        if importlib.util.find_spec("accelerate") is None:
            raise InputError(
                "device_map needs accelerate: pip install accelerate (or dexar[distributed])."
            )
        if isinstance(device_map, str) and device_map not in SPREAD_MAPS:
            check_device(device_map)
        options["device_map"] = device_map
    if max_memory is not None:
        options["max_memory"] = dict(max_memory)
    if offload_folder is not None:
        options["offload_folder"] = str(offload_folder)
    if device_map is None and ("max_memory" in options or "offload_folder" in options):
        raise InputError(
            "max_memory and offload_folder apply when accelerate places the model: give "
            "device_map='auto' (--device-map auto) with them."
        )
    if attn_implementation is not None:
        options["attn_implementation"] = check_attention(attn_implementation)
    if trust_remote_code:
        warnings.warn(
            "trust_remote_code is on: the checkpoint's own Python code will run with your "
            "permissions. Use it only for checkpoints whose code you trust.",
            UserWarning,
            stacklevel=3,
        )
        options["trust_remote_code"] = True
    return options


def check_attention(name: str) -> str:
    """``name`` when transformers knows the attention kernel, else an error listing them."""
    from transformers import AttentionInterface

    known = sorted(set(ATTENTION_IMPLEMENTATIONS) | set(AttentionInterface._global_mapping))
    if name not in known:
        raise InputError(f"unknown attention implementation {name!r}; transformers knows {known}.")
    return name


def runtime_facts(model: Any) -> dict[str, Any]:
    """Where and how a loaded model runs, for an explanation's metadata.

    ``dtype`` and ``device`` are those of the model's parameters (``device_map`` when
    accelerate spread it); ``attn_implementation`` the kernel of its attention;
    ``checkpoint`` the folder it was read from (a cache snapshot names its commit).
    """
    facts: dict[str, Any] = {}
    parameter = next(iter(model.parameters()), None)
    if parameter is not None:
        facts["dtype"] = str(parameter.dtype).removeprefix("torch.")
        facts["device"] = str(parameter.device)
    device_map = getattr(model, "hf_device_map", None)
    if device_map:
        facts["device_map"] = {str(part): str(where) for part, where in device_map.items()}
    config = getattr(model, "config", None)
    implementation = getattr(config, "_attn_implementation", None)
    if implementation is not None:
        facts["attn_implementation"] = str(implementation)
    checkpoint = getattr(model, "name_or_path", None)
    if checkpoint:
        facts["checkpoint"] = str(checkpoint)
    return facts


def config_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Of the loading options, those ``AutoConfig.from_pretrained`` takes too."""
    return {key: options[key] for key in ("revision", "trust_remote_code") if key in options}
