"""The model zoo: offline tokenizers, tiny-model training, and the embedded checkpoints.

Nothing heavy is imported here; ``dexar_core.zoo.tokenizer`` and ``dexar_core.zoo.train``
import ``tokenizers``, ``transformers`` and ``torch`` when their functions run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dexar_core.records import LoadedModel
    from dexar_plugins.manager import Catalog

TRAINING_FACTS = "dexar_training.json"
"""The file beside a trained checkpoint's weights that records how it was trained."""

DEFAULT_IMAGE_SIZE = 64
"""The benchmark image side when a checkpoint does not say what it was trained at."""


def training_image_size(loaded: LoadedModel, catalog: Catalog | None = None) -> int:
    """The image side a loaded checkpoint was trained at, for benchmark images of its size.

    Read from the checkpoint's :data:`TRAINING_FACTS` (``image_size``, or the
    ``model``'s for a recipe that records the architecture there); the folder is the
    embedded model's spec path, else the model's ``name_or_path``. Without the facts
    (a hand-made checkpoint, a model without a folder) the embedded model's recipe
    default, else :data:`DEFAULT_IMAGE_SIZE`, is the best guess: an image transform
    resizes to the model's own input size anyway.

    Args:
        loaded: the loaded model.
        catalog: the plugin catalog; the process-wide one when None.
    """
    from dexar_plugins import default_catalog

    catalog = default_catalog() if catalog is None else catalog
    guess = DEFAULT_IMAGE_SIZE
    folder = getattr(loaded.model, "name_or_path", None)
    if loaded.model_id in catalog.embedded_models:
        spec = catalog.embedded_model(loaded.model_id)
        folder = spec.path
        guess = guess if spec.recipe is None else spec.recipe.defaults.image_size
    facts = Path(str(folder)) / TRAINING_FACTS if folder else None
    if facts is None or not facts.is_file():
        return guess
    try:
        record = json.loads(facts.read_text())
    except json.JSONDecodeError:
        return guess  # a hand-edited file: the recipe's size is the best guess
    if not isinstance(record, dict):
        return guess
    model = record.get("model")
    size = record.get("image_size", model.get("image_size") if isinstance(model, dict) else None)
    return size if isinstance(size, int) else guess
