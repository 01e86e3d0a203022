"""Checks run before a model loads: method options, output locations, devices, weights.

Each check raises a :class:`~dexar_core.errors.DexarError` subclass whose message names
what was wrong and what to do, so a mistake costs a second, not a model load. The CLI
calls them before :func:`dexar_core.api.load`; the Python API can call the same ones.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dexar_core.errors import InputError, MethodError

if TYPE_CHECKING:
    from dexar_core.methods.base import Method
    from dexar_plugins.manager import Catalog

DEVICE_TYPES = ("cpu", "cuda", "mps")
"""Device types dexar runs on; any other (``tpu``, ``xla``, ``meta``) is refused."""


def declared_options(method: Method) -> dict[str, Any] | None:
    """A method's options and their defaults, read from its constructor's signature.

    Returns None when the constructor takes ``**kwargs`` (its options cannot be listed).
    """
    parameters = inspect.signature(type(method).__init__).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {
        p.name: p.default
        for p in parameters
        if p.name != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL
    }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _layers_problem(value: Any) -> str | None:
    """Why a ``layers`` value has the wrong shape (ranges are checked on the model)."""
    if isinstance(value, str):
        ok = value == "all" or (
            value.startswith("last") and value.removeprefix("last").lstrip("_").isdigit()
        )
        return None if ok else f"the string {value!r}"
    if _is_int(value):
        return None if value >= 1 else f"{value} (k must be at least 1)"
    if isinstance(value, (list, tuple)) and value and all(_is_int(index) for index in value):
        return None
    return f"{value!r} ({type(value).__name__})"


def _type_problem(name: str, value: Any, default: Any) -> str | None:
    """Why ``value`` does not fit an option whose default is ``default``, or None."""
    if name == "layers":
        problem = _layers_problem(value)
        return (
            None
            if problem is None
            else f"layers must be 'all', an int k >= 1 (the last k layers) or a list of "
            f"layer indices like 0,3,5; got {problem}"
        )
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"{name} must be true or false, got {value!r}"
    if _is_int(default):
        return None if _is_int(value) else f"{name} must be a whole number, got {value!r}"
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"{name} must be a number, got {value!r}"
    if isinstance(default, str):
        return None if isinstance(value, str) else f"{name} must be a word, got {value!r}"
    return None


def check_method_options(
    method: str, options: Mapping[str, Any], catalog: Catalog | None = None
) -> Method:
    """The method built with these options, or an error naming the bad option.

    Option names are checked against the method's constructor (unknown names are
    listed with the known ones), values against the type of each option's default,
    then the method is built so its own range checks run; a ``TypeError`` or
    ``ValueError`` it raises becomes a :class:`MethodError` naming the method.

    Raises:
        InputError: no method of this name is installed.
        MethodError: an unknown option, a value of the wrong type or out of range.
    """
    from dexar_plugins.manager import default_catalog

    spec = (default_catalog() if catalog is None else catalog).method(method)
    try:
        declared = declared_options(spec.factory())
    except Exception:  # a factory that needs options: its own checks below must do
        declared = None
    if declared is not None:
        unknown = sorted(set(options) - set(declared))
        if unknown:
            raise MethodError(
                f"method {method!r} has no option {', '.join(map(repr, unknown))}; its options "
                f"are {', '.join(sorted(declared)) or 'none'} (docs/method.md describes them)."
            )
        for name, value in options.items():
            problem = _type_problem(name, value, declared[name])
            if problem is not None:
                raise MethodError(f"method {method!r}: {problem}.")
    try:
        return spec.factory(**options)
    except (TypeError, ValueError) as error:
        raise MethodError(
            f"method {method!r} refused the options {dict(options)!r}: {error}."
        ) from error


def check_output_folder(path: str | Path, flag: str = "--out") -> Path:
    """A folder that exists and is writable, or can be made; checked before any work.

    Raises:
        InputError: the path is a file, lies under a file, or is not writable.
    """
    folder = Path(path)
    if str(path) == "":
        raise InputError(f"{flag} is empty; give a folder for the results.")
    if folder.exists() and not folder.is_dir():
        raise InputError(
            f"{flag} {str(folder)!r} is an existing file; give a folder (it is made if missing)."
        )
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise InputError(
            f"{flag} {str(folder)!r} lies under the file {str(existing)!r}; give a folder path."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(
            f"{flag} {str(folder)!r}: {str(existing)!r} is not writable; give a folder you "
            "can write to."
        )
    return folder


def check_device(device: Any) -> None:
    """A device string that names a device this machine has (None: leave it to the model).

    Raises:
        InputError: an unparsable device, a type dexar does not run on, or one absent here.
    """
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(
            f"device {device!r} is not a device; give cpu, cuda, cuda:N or mps."
        ) from None
    if parsed.type not in DEVICE_TYPES:
        raise InputError(
            f"device {device!r}: dexar runs on {', '.join(DEVICE_TYPES)}, not {parsed.type}."
        )
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(
                f"device {device!r}: this machine has no CUDA GPU that torch can use; give "
                "--device cpu (or install a CUDA build of torch)."
            )
        if parsed.index is not None and parsed.index >= count:
            raise InputError(
                f"device {device!r}: this machine has {count} CUDA GPU(s), cuda:0.."
                f"cuda:{count - 1}; choose one of them."
            )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(
            f"device {device!r}: Apple's MPS is not available on this machine; give --device cpu."
        )


def check_max_new_tokens(value: Any) -> int:
    """A generated answer's length limit: an int of at least 1.

    Raises:
        InputError: anything else (0 would leave every answer empty).
    """
    if not _is_int(value) or value < 1:
        raise InputError(
            f"max_new_tokens (--max-new-tokens) must be a whole number of at least 1, got "
            f"{value!r}; 0 leaves the model no token to answer with."
        )
    return int(value)


def check_finite_weights(model: Any, model_id: str) -> None:
    """Refuse a model whose weights hold NaN or infinity (every answer would be garbage).

    Raises:
        CheckpointError: naming the first non-finite parameter.
    """
    import torch

    from dexar_core.errors import CheckpointError

    parameters = getattr(model, "named_parameters", None)
    if parameters is None:
        return
    with torch.no_grad():
        for name, parameter in parameters():
            if parameter.is_floating_point() and not bool(torch.isfinite(parameter).all()):
                raise CheckpointError(
                    f"the weights of {model_id!r} hold NaN or infinity (first in {name!r}); "
                    "the checkpoint is corrupt or diverged in training. Retrain it or load "
                    "another checkpoint."
                )


def check_prompt_text(
    prompt: Any, *, contrastive: bool | None = None, flag: str = "prompt"
) -> None:
    """A prompt that is text and not blank (a blank one used to be answered anyway).

    Args:
        prompt: one text, or for a contrastive model a list of them.
        contrastive: whether the model takes several prompts; None when not known yet.
        flag: how the caller names the prompt (``prompt`` from Python, ``--prompt``).

    Raises:
        InputError: not text, an empty list, or a blank text.
    """
    several = isinstance(prompt, (list, tuple))
    if several and contrastive is False:
        raise InputError(
            f"{flag} must be one text for a generative model, got a list of {len(prompt)}; "
            "several prompts (one map each) apply to contrastive models."
        )
    items = list(prompt) if several else [prompt]
    if not items:
        raise InputError(f"{flag} is an empty list; give at least one text.")
    for item in items:
        if not isinstance(item, str):
            raise InputError(f"{flag} must be text, got {type(item).__name__} ({item!r:.60}).")
        if not item.strip():
            raise InputError(
                f"{flag} {item!r} is blank; give a question or instruction, e.g. "
                "'What is in the image?'."
            )


def check_answer_text(answer: Any, *, flag: str = "answer") -> None:
    """An answer to explain: None (generate one) or text that is not blank.

    Raises:
        InputError: not text, or blank; the message says to leave it out to generate.
    """
    if answer is None:
        return
    if not isinstance(answer, str):
        raise InputError(f"{flag} must be text, got {type(answer).__name__} ({answer!r:.60}).")
    if not answer.strip():
        leave_out = "leave out --answer" if flag.startswith("--") else "leave answer out"
        raise InputError(
            f"{flag} {answer!r} is blank; give the text to explain, or {leave_out} to have "
            "the model generate the answer."
        )


def context_limit(loaded: Any) -> int | None:
    """The most positions the model's language model takes, or None when it states none.

    Read from the text config's ``max_position_embeddings``, else the tokenizer's
    ``model_max_length`` when it is a real limit (tokenizers without one hold 1e30).
    """
    config = getattr(loaded.model, "config", None)
    text_config = getattr(config, "get_text_config", lambda: config)() if config else None
    limit = getattr(text_config, "max_position_embeddings", None)
    if isinstance(limit, int) and limit > 0:
        return limit
    limit = getattr(loaded.tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < 1_000_000 else None


def _encoded(loaded: Any, text: str) -> list[int]:
    """``text``'s token ids without special tokens, or none when there is no HF tokenizer."""
    tokenizer = loaded.tokenizer
    if not callable(tokenizer) or not hasattr(tokenizer, "unk_token_id"):
        return []
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def check_context(loaded: Any, prepared: Any, answer: str | None) -> None:
    """Refuse a prompt (and given answer) longer than the model's context, naming the limit.

    Checked on the prepared prompt, before any generation or gradient pass: the positions
    are the prompt's tokens, image tokens included. A decoder-only model reads the answer
    after the prompt; an encoder-decoder model's decoder reads it alone.

    Raises:
        InputError: the prompt leaves no position for the answer, or the given answer
            does not fit after it.
    """
    ids = prepared.inputs.get("input_ids")
    limit = context_limit(loaded)
    if ids is None or limit is None or getattr(ids, "ndim", 0) != 2:
        return
    length = int(ids.shape[1])
    config = getattr(loaded.model, "config", None)
    text_config = getattr(config, "get_text_config", lambda: config)() if config else None
    encoder_decoder = bool(getattr(text_config, "is_encoder_decoder", False))
    name = getattr(loaded, "model_id", "the model")
    if not encoder_decoder and length >= limit:
        raise InputError(
            f"the prompt takes {length} positions (image tokens included) but {name!r} reads "
            f"at most {limit} positions, and the answer needs at least one; "
            "shorten the prompt."
        )
    if answer is None:
        return
    answer_length = len(_encoded(loaded, answer))
    total = answer_length if encoder_decoder else length + answer_length
    if total > limit:
        where = "its decoder" if encoder_decoder else f"after the {length}-position prompt"
        raise InputError(
            f"the answer is {answer_length} tokens; {where} that makes {total} positions but "
            f"{name!r} reads at most {limit} positions; explain a shorter "
            "answer or prompt."
        )


UNKNOWN_SHARE = 0.5
"""Warn when more than this share of a text's tokens is the tokenizer's unknown token."""


def warn_unknown_tokens(loaded: Any, texts: Mapping[str, str | None]) -> None:
    """Warn (:class:`~dexar_core.errors.DexarWarning`) about texts mostly of ``<unk>``.

    The model sees such a text as a run of one placeholder token: its answer, and the
    maps, say nothing about the words given.

    Args:
        loaded: the model, whose tokenizer decides what is unknown.
        texts: what each text is called (``prompt``, ``answer``) and the text (None: skip).
    """
    import warnings

    from dexar_core.errors import DexarWarning

    unknown = getattr(loaded.tokenizer, "unk_token_id", None)
    if unknown is None:
        return
    for what, text in texts.items():
        if not text:
            continue
        ids = _encoded(loaded, text)
        share = sum(token == unknown for token in ids) / len(ids) if ids else 0.0
        if share > UNKNOWN_SHARE:
            warnings.warn(
                f"{share:.0%} of the {what}'s {len(ids)} tokens are unknown to the tokenizer "
                f"of {getattr(loaded, 'model_id', 'the model')!r} "
                f"({loaded.tokenizer.unk_token!s}); the model reads them as one placeholder, "
                f"so the explanation says little about the {what}. Use words the model knows.",
                DexarWarning,
                stacklevel=3,
            )


def check_finite_result(loaded: Any, record: Any, result: Any) -> None:
    """Refuse an explanation computed from NaN or infinite logits, gradients or relevance.

    Finite weights can still overflow (float16 activations); the maps would be blank
    or noise, so the cause is named instead of drawing them.

    Raises:
        MethodError: naming which values hold NaN or infinity and what to do.
    """
    import numpy as np

    name = getattr(loaded, "model_id", "the model")
    for what, values in (
        ("targets (the explained logits or similarities)", record.targets),
        ("attention gradients", record.gradients),
        ("relevance maps", result.token_relevance),
    ):
        array = np.asarray(values)
        if array.size and array.dtype.kind == "f" and not bool(np.isfinite(array).all()):
            raise MethodError(
                f"the {what} of {name!r} hold NaN or infinity while explaining; in "
                "float16 or bfloat16 this is an overflow, so load the model with dtype "
                "float32 (--dtype float32); otherwise its checkpoint is broken."
            )
