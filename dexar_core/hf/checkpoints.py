"""From what the user typed as ``--model`` to a checkpoint folder, without the network.

A model argument that is not an embedded name is one of:

- an existing folder: used as it is;
- something that looks like a path (``./x``, ``/x``, ``~/x``, ``a/b/c``, a name that is no
  valid hub id): a folder that is missing, said so at once;
- a hub id (``org/name``): looked up in the local Hugging Face cache first, and answered
  with the snapshot folder it resolves to. transformers given a hub id asks the hub whether
  the cached files are current before it reads them, and on a machine that cannot reach
  the hub that costs minutes of retries; given the snapshot folder it reads the files and
  nothing else. The network is used only when the caller allows a download.

A name that is none of these is answered with the nearest embedded model and how to get
a hub id into the cache.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path

from dexar_core.errors import CheckpointError, InputError

OFFLINE_ENV = "HF_HUB_OFFLINE"

LOADING_HELP = (
    "To load a published checkpoint, put it in the local Hugging Face cache once "
    "(`hf download ORG/NAME`, on a machine with network) and give its hub id, or allow "
    "the download with download=True (--download). See docs/models.md."
)


def looks_like_path(name: str) -> bool:
    """Whether ``name`` can only mean a folder: it cannot be a hub id ``org/name``."""
    if name.startswith((".", "/", "~")) or "\\" in name or name.endswith("/"):
        return True
    if os.path.isabs(name) or name.count("/") > 1:
        return True
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def downloads_disabled() -> bool:
    """Whether the environment forbids the hub (``HF_HUB_OFFLINE=1``)."""
    return os.environ.get(OFFLINE_ENV, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def cache_folder() -> str:
    """The hub cache huggingface_hub reads (``HF_HUB_CACHE``, or ``HF_HOME``/hub)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def cached_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The cached snapshot folder of ``repo_id`` at ``revision`` (default: main), if any.

    Reads only the cache (``refs/<revision>`` and ``snapshots/<commit>``); never the network.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            repo_id, revision=revision, local_files_only=True, cache_dir=cache_folder()
        )
    except LocalEntryNotFoundError:
        return None
    return Path(folder)


def nearest_name(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to a mistyped ``name`` (``shapes-lava`` -> ``shapes-llava``)."""
    matches = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def resolve_checkpoint(
    name: str,
    *,
    revision: str | None = None,
    download: bool = False,
    embedded_names: Iterable[str] = (),
) -> str:
    """The folder to load ``name`` from, or the hub id itself when a download is allowed.

    Args:
        name: a checkpoint folder or a hub id (embedded names are resolved by the caller).
        revision: the hub branch, tag or commit; only for hub ids.
        download: allow the hub when the id is not in the cache (refused under
            ``HF_HUB_OFFLINE=1``).
        embedded_names: the installed embedded models, to suggest the nearest one.

    Raises:
        CheckpointError: a path-like argument names no folder, or the cached snapshot is
            incomplete.
        InputError: the name is neither a folder nor a hub id in the cache (with the
            nearest embedded model and how to get a hub id), or a revision was given for
            a folder.
    """
    folder = Path(name).expanduser()
    if folder.exists():
        if revision is not None:
            raise InputError(
                f"revision={revision!r} applies to hub ids, but {name!r} is a local folder; "
                "drop the revision, or give the hub id."
            )
        if not folder.is_dir():
            raise CheckpointError(
                f"{name!r} is a file; give the checkpoint folder that holds config.json, the "
                "weights and the processor files."
            )
        return str(folder)
    suggestion = nearest_name(name, embedded_names)
    if looks_like_path(name):
        raise CheckpointError(
            f"no such folder: {name!r} (looked for {folder.absolute()}). Check the path"
            + (f", or use the embedded model {suggestion!r}" if suggestion else "")
            + "; `dexar models` lists the embedded models."
        )
    snapshot = cached_snapshot(name, revision)
    if snapshot is not None:
        if not (snapshot / "config.json").is_file():
            raise CheckpointError(
                f"the local cache holds {name!r} ({snapshot}) without a config.json: the "
                f"download did not finish. Download it again (`hf download {name}`)."
            )
        return str(snapshot)
    at_revision = f" at revision {revision!r}" if revision else ""
    if download and not downloads_disabled():
        return name
    if download:
        raise InputError(
            f"{name!r}{at_revision} is not in the local Hugging Face cache ({cache_folder()}) "
            f"and downloads are off ({OFFLINE_ENV}=1). Unset {OFFLINE_ENV} to download it, or "
            "download it on a machine with network (`hf download`) and copy the cache."
        )
    if suggestion is not None:
        raise InputError(
            f"no model named {name!r}. Did you mean the embedded model {suggestion!r}? "
            f"(`dexar models` lists them.) {LOADING_HELP}"
        )
    embedded = ", ".join(sorted(embedded_names)) or "none installed"
    raise InputError(
        f"no model named {name!r}{at_revision}: it is not an embedded model ({embedded}), not "
        f"a folder, and not a hub id in the local Hugging Face cache ({cache_folder()}); "
        f"nothing was downloaded. {LOADING_HELP}"
    )
