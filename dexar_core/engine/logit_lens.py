"""The logit-lens targets of decoder models: the core's GradientExtractor (docs/method.md §2)."""

from __future__ import annotations

import torch

from dexar_core.interfaces import GradientExtractor
from dexar_core.records import (
    DecoderParts,
)


class LogitLensGradients(GradientExtractor):
    """Targets s^{l,t} = LMHead(FinalNorm(y^l[q_t]))[v_t], from the head's rows only.

    Only the explained tokens' rows of the output projection are used (a dot product per
    layer and token), never the full-vocabulary projection.
    """

    def logit_lens_targets(
        self, parts: DecoderParts, layer_outputs: torch.Tensor, token_ids: torch.Tensor
    ) -> torch.Tensor:
        """See :meth:`GradientExtractor.logit_lens_targets`."""
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
