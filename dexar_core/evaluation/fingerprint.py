"""A short digest of a model's weights, so a run folder knows which checkpoint it measured.

A model's name says where its weights came from, not what they are: an embedded model
retrained in place, or a local folder overwritten by a new checkpoint, keeps its name.
``dexar evaluate`` records this digest in ``run.json`` and refuses to resume a folder
whose items another set of weights produced, instead of mixing the two.
"""

from __future__ import annotations

import hashlib
from typing import Any

SAMPLES = 1024
"""Values read from each parameter, evenly strided over it: training changes them all."""


def weights_fingerprint(model: Any) -> str | None:
    """16 hex digits of SHA-256 over every parameter's name, shape, dtype and a sample.

    Cheap on any size of model (at most ``SAMPLES`` values per parameter leave the
    device), and the same for the same weights loaded twice. Parameters on the ``meta``
    device (offloaded) contribute their name, shape and dtype only. None for a model
    with no ``named_parameters`` (nothing to read).
    """
    named = getattr(model, "named_parameters", None)
    if named is None:
        return None
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, parameter in named():
            digest.update(f"{name} {tuple(parameter.shape)} {parameter.dtype};".encode())
            if parameter.device.type == "meta" or parameter.numel() == 0:
                continue
            flat = parameter.detach().reshape(-1)
            stride = max(1, flat.numel() // SAMPLES)
            sample = flat[::stride][:SAMPLES].to(device="cpu", dtype=torch.float64)
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]
