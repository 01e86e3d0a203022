"""Resolving a model argument: folder, path-like, hub cache, offline, nearest embedded name."""

from __future__ import annotations

import time

import pytest
from conftest import COMMIT, REPO_ID

from dexar_core.errors import CheckpointError, InputError
from dexar_core.hf.checkpoints import looks_like_path, nearest_name, resolve_checkpoint

EMBEDDED = ("shapes-llava", "shapes-qwen2vl", "shapes-florence2", "shapes-blip2", "shapes-clip")


@pytest.mark.parametrize(
    "name", ["./my-llava", "../models/llava", "/abs/llava", "~/llava", "a/b/c", "x\\y", "sp ace"]
)
def test_path_like_names_cannot_be_hub_ids(name):
    assert looks_like_path(name)


@pytest.mark.parametrize("name", ["llava-hf/llava-1.5-7b-hf", "gpt2", "shapes-lava"])
def test_hub_ids_are_not_paths(name):
    assert not looks_like_path(name)


def test_an_existing_folder_is_used_as_it_is(tmp_path):
    assert resolve_checkpoint(str(tmp_path)) == str(tmp_path)


def test_a_missing_folder_says_no_such_folder_without_the_network(no_network, tmp_path):
    missing = tmp_path / "my-llava"
    with pytest.raises(CheckpointError, match="no such folder") as caught:
        resolve_checkpoint(str(missing), embedded_names=EMBEDDED)
    assert str(missing) in str(caught.value)
    assert no_network == []


def test_a_file_is_not_a_checkpoint_folder(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(CheckpointError, match="is a file"):
        resolve_checkpoint(str(weights))


def test_a_revision_is_refused_for_a_folder(tmp_path):
    with pytest.raises(InputError, match="revision"):
        resolve_checkpoint(str(tmp_path), revision="v1")


def test_a_mistyped_embedded_name_suggests_the_nearest(in_cache, no_network):
    start = time.perf_counter()
    with pytest.raises(InputError, match="Did you mean the embedded model 'shapes-llava'"):
        resolve_checkpoint("shapes-lava", embedded_names=EMBEDDED)
    assert time.perf_counter() - start < 5
    assert no_network == []


def test_an_unknown_hub_id_says_how_to_get_it(in_cache, no_network):
    with pytest.raises(InputError) as caught:
        resolve_checkpoint("someone/unknown-vlm", embedded_names=EMBEDDED)
    message = str(caught.value)
    assert "not a hub id in the local Hugging Face cache" in message
    assert str(in_cache) in message and "hf download" in message and "--download" in message
    assert no_network == []


def test_a_cached_hub_id_resolves_to_its_snapshot(in_cache, no_network):
    folder = resolve_checkpoint(REPO_ID)
    assert folder.endswith(COMMIT)
    assert resolve_checkpoint(REPO_ID, revision=COMMIT) == folder
    assert no_network == []


def test_a_revision_not_in_the_cache_is_named(in_cache, no_network):
    with pytest.raises(InputError, match="at revision 'v2'"):
        resolve_checkpoint(REPO_ID, revision="v2")


def test_an_incomplete_snapshot_is_a_checkpoint_error(in_cache):
    repo = in_cache / "models--dexar-test--half-done"
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    with pytest.raises(CheckpointError, match="did not finish"):
        resolve_checkpoint("dexar-test/half-done")


def test_a_download_hands_the_hub_id_on(in_cache, no_network):
    assert resolve_checkpoint("someone/unknown-vlm", download=True) == "someone/unknown-vlm"
    assert no_network == []


def test_a_download_is_refused_offline(in_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="HF_HUB_OFFLINE=1"):
        resolve_checkpoint("someone/unknown-vlm", download=True)


def test_nearest_name_needs_a_close_match():
    assert nearest_name("shapes-qwen", EMBEDDED) == "shapes-qwen2vl"
    assert nearest_name("llava-hf/llava-1.5-7b-hf", EMBEDDED) is None
