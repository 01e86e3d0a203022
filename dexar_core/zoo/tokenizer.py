"""Offline word-level tokenizers for the tiny and embedded models.

The embedded checkpoints speak a closed language (the shapes benchmark's words and a
handful of prompt words), so a word-level vocabulary built from that word list is all
they need, and it builds without any download. The result is a real
:class:`transformers.PreTrainedTokenizerFast`, so it saves and loads with
``save_pretrained`` / ``AutoTokenizer.from_pretrained`` like any hub tokenizer.

Text is lowercased, split on whitespace and then on every punctuation character, and
each piece is one token; words outside the vocabulary become ``<unk>``. Decoding joins
the words with single spaces and removes the space before punctuation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from dexar_core.errors import InputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
IMAGE_TOKEN = "<image>"

# Punctuation the prompts and captions use; each is its own token.
PUNCTUATION = ("?", ".", ",", ":", "!", "'", "-")


def build_word_tokenizer(
    words: Iterable[str],
    *,
    pad_token: str = PAD_TOKEN,
    bos_token: str = BOS_TOKEN,
    eos_token: str = EOS_TOKEN,
    unk_token: str = UNK_TOKEN,
    image_token: str | None = IMAGE_TOKEN,
    named_tokens: Mapping[str, str] | None = None,
    add_bos: bool = True,
    padding_side: str = "left",
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """Build a word-level tokenizer over a closed vocabulary, offline.

    The special tokens take the first ids in the order pad, bos, eos, unk, image; then
    come the punctuation characters, then ``words`` (lowercased, duplicates dropped, in
    their first-seen order). Ids therefore depend only on the word list.

    Args:
        words: The vocabulary. Each entry is one or more words separated by spaces
            (``"top left"`` adds ``top`` and ``left``); entries are lowercased.
        pad_token: The padding token.
        bos_token: The beginning-of-sequence token, prepended when ``add_bos``.
        eos_token: The end-of-sequence token; generation stops on it.
        unk_token: The token for words outside the vocabulary.
        image_token: The image placeholder a multimodal processor expands, registered
            as the extra special token ``image_token`` (so ``tokenizer.image_token``
            works, as transformers 5 processors expect); ``None`` for a text-only
            tokenizer.
        named_tokens: further special tokens by the name a processor reads them under
            (InternVL's ``{"start_image_token": "<img>", ...}``), after the image token.
        add_bos: Whether encoding with special tokens prepends ``bos_token``.
        padding_side: ``"left"`` (for batched generation) or ``"right"``.
        model_max_length: The longest sequence the tokenizer reports it supports.

    Returns:
        A ``PreTrainedTokenizerFast`` wrapping the word-level ``tokenizers.Tokenizer``.

    Raises:
        InputError: If a word contains characters the pre-tokenizer would split (so it
            could never be produced as one token), or no word is given.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = [pad_token, bos_token, eos_token, unk_token]
    extra = {"image_token": image_token} if image_token is not None else {}
    extra.update(named_tokens or {})
    specials.extend(extra.values())
    vocabulary = _word_ids(words, specials)

    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token=unk_token))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    # The WordPiece decoder joins tokens with spaces; ``cleanup`` removes the space
    # before punctuation, which is exactly a word-level detokenizer.
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    if add_bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A",
            pair=f"{bos_token} $A $B",
            special_tokens=[(bos_token, vocabulary[bos_token])],
        )

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=pad_token,
        bos_token=bos_token,
        eos_token=eos_token,
        unk_token=unk_token,
        extra_special_tokens=extra or None,
        padding_side=padding_side,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def _word_ids(words: Iterable[str], specials: list[str]) -> dict[str, int]:
    """Assign ids: special tokens first, then punctuation, then the words in order."""
    vocabulary: dict[str, int] = {}
    for token in [*specials, *PUNCTUATION]:
        vocabulary.setdefault(token, len(vocabulary))
    count_before = len(vocabulary)
    for entry in words:
        for word in str(entry).lower().split():
            if not word.isalnum():
                raise InputError(
                    f"build_word_tokenizer: expected words of letters and digits only, "
                    f"found {word!r} in {entry!r}; punctuation is added automatically, "
                    f"remove it from the word list."
                )
            vocabulary.setdefault(word, len(vocabulary))
    if len(vocabulary) == count_before:
        raise InputError(
            "build_word_tokenizer: expected at least one word, found none; "
            "pass the closed vocabulary the model should speak."
        )
    return vocabulary


def with_special_tokens(
    tokenizer: PreTrainedTokenizerFast,
    named: dict[str, str] | None = None,
    unnamed: Iterable[str] = (),
) -> PreTrainedTokenizerFast:
    """A copy of a word-level tokenizer with more special tokens, at the next free ids.

    A processor reads some special tokens by name from its tokenizer (Gemma 3's
    ``tokenizer.boi_token``); others are only matched whole in a template (``[INST]``).

    Args:
        tokenizer: a tokenizer from :func:`build_word_tokenizer`.
        named: ``{attribute: token}``, each registered as an extra special token
            (``tokenizer.<attribute>`` and ``tokenizer.<attribute>_id`` work).
        unnamed: more tokens, special but without an attribute.

    Returns:
        The new tokenizer; ``tokenizer`` is left as it was.
    """
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

    named = dict(named or {})
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    added = [*named.values(), *unnamed]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in added])
    standard = {"bos_token", "eos_token", "unk_token", "pad_token"}
    kept = {
        key: value for key, value in tokenizer.special_tokens_map.items() if key not in standard
    }
    extra = {**kept, **named}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=tokenizer.pad_token,
        bos_token=tokenizer.bos_token,
        eos_token=tokenizer.eos_token,
        unk_token=tokenizer.unk_token,
        extra_special_tokens=extra or None,
        padding_side=tokenizer.padding_side,
        model_max_length=tokenizer.model_max_length,
        clean_up_tokenization_spaces=False,
    )
