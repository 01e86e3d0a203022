"""Mirrors of published checkpoints, built offline from the fixtures in tests/mirrors/fixtures.

A mirror is a checkpoint folder laid out as a published one is: its ``config.json``,
processor and tokenizer settings, chat template and generation config copied from the
published files (``files`` of the fixture), special tokens at their real ids, the
weights under the key layout the publishing transformers version wrote, sharded into
safetensors files with an index, in the stored dtype. Only depth and width are scaled
down (the fixture's ``scaled`` overrides, dotted paths into one file), so a mirror loads
and explains in CPU seconds. What each mirror copies faithfully and what is a stand-in
(the weights are random; the tokenizer is a word-level vocabulary, not the published
BPE or SentencePiece model) is written in its fixture's ``faithful`` and ``stand_ins``.

Loading a mirror goes through exactly the path of the downloaded checkpoint:
``dexar_core.api.load(folder)`` resolves the adapter from ``config.json``, which reads
the old key layout through transformers' own conversion.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "mirrors" / "fixtures"
MIRRORS: tuple[str, ...] = tuple(sorted(path.stem for path in FIXTURES.glob("*.json")))
"""The fixture names, one per published checkpoint mirrored."""

PROMPT_WORDS = (
    "user assistant system you are a helpful picture video describe the image what is in "
    "this where question answer short caption color shape red green blue circle square "
    "triangle left right top bottom center of and"
)
"""Words the tests' prompts and answers use; the stand-in tokenizer knows them."""

Files = dict[str, dict[str, Any]]


def load_fixture(name: str) -> dict[str, Any]:
    """The fixture of one mirror (see tests/mirrors/fixtures/<name>.json)."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def scaled_files(fixture: dict[str, Any]) -> Files:
    """The published files with the fixture's depth and width overrides applied."""
    files = copy.deepcopy(fixture["files"])
    for filename, overrides in fixture.get("scaled", {}).items():
        for dotted, value in overrides.items():
            _set_dotted(files[filename], dotted, value)
    return files


def build_mirror(
    name: str,
    folder: Path,
    *,
    seed: int | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Write the mirror ``name`` into ``folder`` and return the folder.

    Args:
        name: a fixture name (:data:`MIRRORS`).
        folder: where to write it (created).
        seed: seed of the random weights; by default the fixture's ``seed`` (0 if none).
        edit: changes the fixture in place, its ``files`` already scaled, before
            anything is written, e.g. to drop a field as an older snapshot lacks it; the
            model is built from the edited config.
    """
    import torch
    import transformers

    fixture = load_fixture(name)
    fixture["files"] = scaled_files(fixture)
    if edit is not None:
        edit(fixture)
    files: Files = fixture["files"]
    folder.mkdir(parents=True, exist_ok=True)
    for filename, content in files.items():
        (folder / filename).write_text(json.dumps(content, indent=2))
    _stand_in_tokenizer(fixture["tokenizer"]).save_pretrained(folder)

    config = transformers.AutoConfig.from_pretrained(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(fixture.get("seed", 0) if seed is None else seed)
        model = getattr(transformers, fixture["model_class"])(config)
        # BLIP-2's query tokens start at zero (all queries alike): give them a spread,
        # as training would
        query_tokens = getattr(model, "query_tokens", None)
        if query_tokens is not None:
            with torch.no_grad():
                query_tokens.normal_(mean=0.0, std=0.02)
        _spread(model, fixture.get("zero_initialised", ()))
        if fixture["model_class"] == "MllamaForConditionalGeneration":
            from dexar_mllama.tiny import open_cross_attention_gates

            open_cross_attention_gates(model)
    _write_weights(model.state_dict(), fixture["weights"], folder)
    return folder


def _spread(model: Any, names: Any) -> None:
    """Give the parameters a fixture names (``zero_initialised``) a normal spread.

    transformers initialises them to zero (Gemma 3's image projection), which would make
    every image feature zero; a trained model's are not.
    """
    import torch

    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name in names:
            parameters[name].normal_(mean=0.0, std=0.02)


def _stand_in_tokenizer(settings: dict[str, Any]) -> Any:
    """A word-level tokenizer with the published special tokens at their published ids.

    Ids below ``base_vocab_size`` hold the prompt words (from id 100 on, clear of the
    low special ids) and inert fillers; the special tokens sit where the published
    tokenizer has them, so every id a config names means what it means there.
    """
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import PreTrainedTokenizerFast

    specials: dict[str, int] = dict(settings["special_tokens"])
    unk = settings["unk_token"] or "<unk>"
    if unk not in specials:
        # the published BPE needs no unknown token; a word-level stand-in does
        specials[unk] = 0
    ranged = ranged_tokens(settings)
    taken = set(specials.values()) | set(ranged.values())
    words = list(dict.fromkeys(PROMPT_WORDS.split() + list("?.,:!'-") + stand_in_words(settings)))
    free = (index for index in range(100, settings["base_vocab_size"]) if index not in taken)
    vocabulary = {word: next(free) for word in words}
    taken |= set(vocabulary.values())
    for index in range(settings["base_vocab_size"]):
        if index not in taken:
            vocabulary[f"<filler_{index}>"] = index
    vocabulary.update(ranged)
    vocabulary.update(specials)

    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token=unk))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    backend.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in specials]
    )
    # ordinary tokens of the published vocabulary (PaliGemma's <loc0000>, ...): matched
    # whole, at their ids, and kept when decoding
    backend.add_tokens([AddedToken(token, special=False, normalized=False) for token in ranged])
    bos, eos = settings["bos_token"], settings["eos_token"]
    if settings.get("add_bos"):
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, specials[bos])]
        )
    elif settings.get("add_eos"):
        backend.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", pair=f"$A $B {eos}", special_tokens=[(eos, specials[eos])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        unk_token=unk,
        pad_token=settings["pad_token"],
        extra_special_tokens=settings["extra_special_tokens"] or None,
        padding_side=settings["padding_side"],
        model_max_length=settings["model_max_length"],
        clean_up_tokenization_spaces=False,
    )


def stand_in_words(settings: dict[str, Any]) -> list[str]:
    """The tokenizer fixture's ``words``: ordinary words its template or markers need.

    Idefics3's ``<row_1_col_2>`` is text the published BPE splits into pieces; the
    stand-in splits it at the punctuation into words it must know (``row``, ``col``, ...).
    """
    return list(settings.get("words", ()))


def ranged_tokens(settings: dict[str, Any]) -> dict[str, int]:
    """The tokenizer fixture's ``token_ranges``: ``{pattern: [first id, count]}`` expanded.

    ``"<loc{:04d}>": [256000, 1024]`` gives ``<loc0000>`` at 256000 to ``<loc1023>``.
    """
    return {
        pattern.format(index): first + index
        for pattern, (first, count) in settings.get("token_ranges", {}).items()
        for index in range(count)
    }


def published_key(key: str, prefixes: dict[str, str]) -> str:
    """The key a transformers-5 weight had in the published checkpoint."""
    for new, old in prefixes.items():
        if key.startswith(new):
            return old + key[len(new) :]
    return key


def _write_weights(state: dict[str, Any], weights: dict[str, Any], folder: Path) -> None:
    """Sharded safetensors in the stored dtype under the published keys, with an index."""
    import torch
    from safetensors.torch import save_file

    dtype = getattr(torch, weights["dtype"])
    dropped = set(weights.get("drop_tied", ()))
    tensors = {
        published_key(key, weights["key_prefixes"]): value.detach().to(dtype).contiguous().clone()
        for key, value in state.items()
        if key not in dropped
    }
    keys = sorted(tensors)
    shards = int(weights["shards"])
    # even slices: a ceiling-sized slice per shard leaves the last shards empty when
    # there are few keys (Mistral 3's 10 shards of 45 tiny tensors)
    bounds = [index * len(keys) // shards for index in range(shards + 1)]
    weight_map: dict[str, str] = {}
    total = 0
    for index in range(shards):
        filename = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        shard = {key: tensors[key] for key in keys[bounds[index] : bounds[index + 1]]}
        save_file(shard, folder / filename, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, filename))
        total += sum(tensor.numel() * tensor.element_size() for tensor in shard.values())
    index_file = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index_file, indent=2))
