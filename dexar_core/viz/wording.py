"""What the figures, the report and the printed summary call things.

One place says what an explanation's units are (answer tokens, or a contrastive model's
prompts), what its per-unit weight means, and where to read how well that weight
separates object words; every picture and printed table takes its words from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from dexar_core.explanation import Explanation

__all__ = [
    "DELTA_RESULTS",
    "PROTOCOL_RESULTS",
    "Units",
    "fallback_note",
    "units_of",
    "weight_meaning",
    "weight_name",
]

#: The page (and section) that measures how well delta separates object words from
#: function words on each embedded model.
DELTA_RESULTS = "docs/results.md, section 'Delta: object words against function words'"
#: Where the delta of the relevance variants (the dexar_weighted preset) is measured.
PROTOCOL_RESULTS = "docs/results.md, section 'Faithfulness protocol (issue 21)'"


@attrs.frozen(kw_only=True)
class Units:
    """The names of what an explanation explains, one map each.

    Attributes:
        one: a single unit, e.g. ``"token"``.
        many: all of them, e.g. ``"answer tokens"``.
        text_label: what the text they come from is called, e.g. ``"answer"``.
        whole_map: the map of all of them together, e.g. ``"sequence map"``.
    """

    one: str
    many: str
    text_label: str
    whole_map: str


ANSWER_TOKENS = Units(
    one="token", many="answer tokens", text_label="answer", whole_map="sequence map"
)
PROMPTS = Units(one="prompt", many="prompts", text_label="prompts", whole_map="combined map")


def units_of(explanation: Explanation) -> Units:
    """Answer tokens for a generative model, prompts for a contrastive one."""
    from dexar_core import interfaces

    return PROMPTS if explanation.units == interfaces.PROMPTS else ANSWER_TOKENS


def weight_name(explanation: Explanation) -> str:
    """The short name of the per-unit weight, as a column or axis label."""
    units = units_of(explanation)
    if units is PROMPTS:
        return "combined-map weight" if _weighs_by_delta(explanation) else "prompt weight"
    return "token weight (delta)" if _weighs_by_delta(explanation) else "token weight"


def weight_meaning(explanation: Explanation) -> str:
    """One sentence saying what the per-unit weight is."""
    units = units_of(explanation)
    if _weighs_by_delta(explanation):
        meaning = (
            f"The {weight_name(explanation)} is how much more the {units.one}'s strongest "
            "gradient goes to the image than to the text (0: no more to the image); it "
            f"weighs each {units.one}'s map in the {units.whole_map}."
        )
        if units is PROMPTS:
            return meaning
        if explanation.options.get("relevance", "attention_gradient") != "attention_gradient":
            return f"{meaning} How well it finds the visual words: see {PROTOCOL_RESULTS}."
        return (
            f"{meaning} It separates object words from function words poorly on the "
            f"embedded models: see {DELTA_RESULTS}."
        )
    return (
        f"Method {explanation.method!r} does not weigh {units.many}: every weight is 1 and "
        f"the {units.whole_map} is the plain sum of the {units.one} maps."
    )


def fallback_note(explanation: Explanation) -> str | None:
    """The sentence flagging a sequence map that fell back to equal weights, or None."""
    if not explanation.sequence_fallback:
        return None
    units = units_of(explanation)
    return (
        f"Every {units.one} weight is 0, so the {units.whole_map} fell back to weighing "
        f"every {units.one} by 1."
    )


def _weighs_by_delta(explanation: Explanation) -> bool:
    """Whether the weights are DEX-AR's delta: any method built on DexarMethod (``dexar``,
    its preset and ablations, a third party's) records ``token_weighting``; a ``dexar``
    explanation whose options were not recorded weighs by delta, the method's default."""
    default = explanation.method == "dexar"
    return bool(explanation.options.get("token_weighting", default))
