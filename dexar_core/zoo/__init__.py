"""The model zoo: offline tokenizers, tiny-model training, and the embedded checkpoints.

Nothing heavy is imported here; ``dexar_core.zoo.tokenizer`` and ``dexar_core.zoo.train``
import ``tokenizers``, ``transformers`` and ``torch`` when their functions run.
"""

TRAINING_FACTS = "dexar_training.json"
"""The file beside a trained checkpoint's weights that records how it was trained."""
