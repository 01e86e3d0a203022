"""The transformers kit: attention capture, the decoder-only and encoder-decoder adapter
bases, and loading. An adapter for a transformers VLM builds on these."""
