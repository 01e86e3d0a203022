"""Built-in open_clip adapter: explains contrastive image-text similarity of ViT CLIPs.

Registered through the ``dexar`` entry point like any plugin; its models are explained
with ``dexar_core.explain`` (the units are the prompts). Importing this package stays
light (no torch).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from dexar_core.values import AdapterSpec, EmbeddedModelSpec
from dexar_plugins import hookimpl

if TYPE_CHECKING:
    from dexar_core.interfaces import ModelAdapter
    from dexar_core.zoo.recipes import TrainingRecipe

CHECKPOINTS = Path(__file__).parent / "checkpoints"
"""Where the embedded checkpoints live."""

__all__ = ["CHECKPOINTS"]


def _adapter() -> ModelAdapter:
    from dexar_open_clip.adapter import OpenClipAdapter

    return OpenClipAdapter()


@hookimpl
def dexar_adapters() -> Iterable[AdapterSpec]:
    """The open_clip adapter (ViT image towers; models are named ``open_clip:...``)."""
    return (
        AdapterSpec(
            name="open_clip",
            model_types=("open_clip",),
            architectures=("CLIP", "CustomTextCLIP"),
            factory=_adapter,
            description="open_clip contrastive models with a ViT image tower (LeGrad, DEX-AR)",
        ),
    )


def _recipe() -> TrainingRecipe:
    from dexar_open_clip.recipe import RECIPE

    return RECIPE


@hookimpl
def dexar_embedded_models() -> Iterable[EmbeddedModelSpec]:
    """``shapes-clip``: a tiny ViT CLIP trained contrastively on the shapes captions."""
    return (
        EmbeddedModelSpec(
            name="shapes-clip",
            path=CHECKPOINTS / "shapes-clip",
            adapter="open_clip",
            description="tiny open_clip ViT CLIP trained on the synthetic shapes captions",
            example_image=CHECKPOINTS / "shapes-clip" / "example.png",
            example_prompt="a red circle",
            recipe=_recipe(),
        ),
    )
