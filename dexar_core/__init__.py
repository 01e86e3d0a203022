"""dexar: DEX-AR explanations for autoregressive vision-language models."""

__version__ = "0.1.0"
