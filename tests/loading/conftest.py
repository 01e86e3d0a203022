"""A tiny LLaVA saved as a Hugging Face hub cache holds it, and a machine with no network."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dexar_llava.tiny import build_tiny_llava

REPO_ID = "dexar-test/tiny-llava"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_snapshot(cache: Path, repo_id: str, commit: str, *, dtype: str = "float32") -> Path:
    """Save a tiny LLaVA where huggingface_hub caches ``repo_id`` at ``commit`` (main)."""
    import torch

    model, processor = build_tiny_llava(seed=0)
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    model.to(getattr(torch, dtype)).save_pretrained(snapshot)
    processor.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory) -> Path:
    """A hub cache folder holding :data:`REPO_ID` at :data:`COMMIT`."""
    cache = tmp_path_factory.mktemp("hub-cache")
    write_snapshot(cache, REPO_ID, COMMIT)
    return cache


@pytest.fixture
def in_cache(hub_cache, monkeypatch) -> Path:
    """huggingface_hub reads :func:`hub_cache` (as ``HF_HUB_CACHE`` would make it)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return hub_cache


@pytest.fixture
def no_network(monkeypatch) -> list[str]:
    """Every attempt to open a connection fails at once and is recorded (host, port)."""
    attempts: list[str] = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(repr(address))
        raise OSError("network disabled by the test")

    def refuse_lookup(host, *args, **kwargs):
        attempts.append(repr(host))
        raise socket.gaierror("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    return attempts
