"""The logit-lens targets of decoder models: the core's GradientExtractor (docs/method.md §2)."""

from __future__ import annotations

import torch

from dexar_core.interfaces import GradientExtractor, GradientRequest
from dexar_core.records import AttentionGradients, DecoderParts, LoadedModel


class LogitLensGradients(GradientExtractor):
    """Targets s^{l,t} = LMHead(FinalNorm(y^l[q_t]))[v_t], from the head's rows only.

    Only the explained tokens' rows of the output projection are used (a dot product per
    layer and token), never the full-vocabulary projection. The pass teacher-forces the
    answer (``GenerativeAdapter.teacher_forced``) and runs
    :func:`dexar_core.engine.attention_gradients`.
    """

    def num_layers(self, loaded: LoadedModel) -> int:
        """See :meth:`GradientExtractor.num_layers`: the decoder's layers."""
        return int(loaded.adapter.decoder_parts(loaded.model).num_layers)

    def attention_gradients(self, request: GradientRequest) -> AttentionGradients:
        """See :meth:`GradientExtractor.attention_gradients`; the units are answer tokens."""
        from dexar_core.engine.one_pass import attention_gradients

        loaded, prepared = request.loaded, request.prepared
        adapter = loaded.adapter
        forced = adapter.teacher_forced(loaded, prepared, request.units.ids)
        layout = adapter.layout_for_answer(loaded, prepared, forced, request.layout)
        return attention_gradients(
            loaded,
            forced,
            layout.with_length(forced.key_length),
            request.layers,
            chunk_size=request.chunk_size,
            needs=request.needs,
            prefill=request.units.prefill,
        )

    def logit_lens_targets(
        self, parts: DecoderParts, layer_outputs: torch.Tensor, token_ids: torch.Tensor
    ) -> torch.Tensor:
        """Raw logits of the explained tokens from each layer's output.

        Args:
            parts: the decoder's layers, final norm and LM head.
            layer_outputs: ``[L, T, D]`` hidden states y^l at the query rows q_t.
            token_ids: ``[T]`` the explained tokens v_t.

        Returns:
            ``[L, T]`` the targets s^{l,t} (raw logits, not log-probabilities).
        """
        hidden = layer_outputs
        if parts.final_norm is not None:
            hidden = parts.final_norm(hidden)
        hidden = hidden.float()
        if parts.output_scale is not None:
            hidden = hidden * parts.output_scale
        rows = parts.lm_head_weight[token_ids.to(parts.lm_head_weight.device)]
        targets = (hidden * rows.to(hidden.device).float()).sum(dim=-1)
        if parts.lm_head_bias is not None:
            bias = parts.lm_head_bias.reshape(-1)[token_ids.to(parts.lm_head_bias.device)]
            targets = targets + bias.to(targets.device).float()
        if parts.logit_softcap is not None:
            targets = torch.tanh(targets / parts.logit_softcap) * parts.logit_softcap
        return targets
