"""The one-pass explanation engine: attention gradients of every layer and answer token.

:func:`attention_gradients` is the entry point (:mod:`.one_pass`); the logit-lens
targets (:mod:`.logit_lens`), the layer selection and hooks (:mod:`.layers`), the prompt's
KV cache (:mod:`.prompt_cache`), the per-token arrays (:mod:`.answer_arrays`) and the
records that need a second forward (:mod:`.full_records`) each have their module.
"""

from dexar_core.engine.one_pass import NEEDS, RECORD_NEEDS, attention_gradients

__all__ = ["NEEDS", "RECORD_NEEDS", "attention_gradients"]
