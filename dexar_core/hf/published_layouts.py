"""Reading published checkpoint files as written, for the adapters that mend their layouts.

Checkpoints on the hub, and fine-tunes saved from them by older transformers versions,
carry files in the forms of the day. Some of those forms transformers 5 still loads but
misreads, or refuses with an error that names the wrong cause. Which forms, and how to
mend them, is each family's knowledge, so each adapter states it in its
:class:`~dexar_core.values.AdapterSpec` (see docs/adapters.md, "Published layouts"):

* ``refuse_layout(path, config)``: the reason a checkpoint whose ``config.json`` reads
  ``config`` cannot be read at all (and the conversion to use), or None; asked of every
  installed adapter before the config is parsed, since transformers' own parsing of
  such a config fails with an unrelated error;
* ``mend_layout(path, model, processor)``: fills in, on the loaded model's config and
  processor, what the published files leave out, and returns one sentence per mend;
* an HF adapter's ``dropped_image_processors``: image processor class names
  transformers 5 dropped, read as their successors
  (:class:`~dexar_core.hf.generative.HFGenerativeAdapter`).

This module is the machinery they share: the files as written (a loaded processor or
config has already filled the missing fields with defaults), the refusal and the
logging of the mends on the ``dexar`` logger, and a folder view with renamed classes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from dexar_core.errors import CheckpointError
from dexar_core.values import AdapterSpec

logger = logging.getLogger("dexar")


def published_file(path: str, filename: str) -> dict[str, Any] | None:
    """One JSON file of a checkpoint folder or a cached hub id, as written.

    None when it is absent or no JSON object: transformers' own loading then reports
    the broken file.
    """
    folder = Path(path)
    if folder.is_dir():
        resolved: str | None = str(folder / filename) if (folder / filename).is_file() else None
    else:
        from transformers.utils import cached_file

        try:
            resolved = cached_file(
                path,
                filename,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except OSError:
            return None
    if resolved is None:
        return None
    try:
        content = json.loads(Path(resolved).read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def refuse_unreadable_layout(path: str, adapters: Iterable[AdapterSpec]) -> None:
    """Refuse a checkpoint format one of ``adapters`` says dexar cannot read.

    Raises:
        CheckpointError: with the adapter's reason, which names the conversion to use.
    """
    refusals = [spec.refuse_layout for spec in adapters if spec.refuse_layout is not None]
    if not refusals:
        return
    config = published_file(path, "config.json")
    if not config:
        return
    for refusal in refusals:
        reason = refusal(path, config)
        if reason is not None:
            raise CheckpointError(reason)


def mend_published_layout(
    path: str, adapter: AdapterSpec, model: Any, processor: Any
) -> tuple[str, ...]:
    """Let the adapter fill in what the published files leave out, logging each mend.

    Changes ``model.config`` and ``processor`` in place.

    Returns:
        One sentence per mend made; empty when nothing was missing.

    Raises:
        CheckpointError: when a missing field cannot be filled from the checkpoint.
    """
    if adapter.mend_layout is None:
        return ()
    notes = tuple(adapter.mend_layout(path, model, processor))
    for note in notes:
        logger.info("%s: %s.", path, note)
    return notes


@contextlib.contextmanager
def processor_folder(path: str, dropped: Mapping[str, str]) -> Iterator[str]:
    """A folder ``AutoProcessor.from_pretrained`` can read for this checkpoint.

    Args:
        path: the checkpoint folder or hub id.
        dropped: image processor class names transformers dropped, each with its
            successor.

    Yields:
        The checkpoint itself when its processor files name no dropped class; otherwise
        a temporary view of it (links to every file) whose ``preprocessor_config.json``
        names the successor.
    """
    preprocessor = published_file(path, "preprocessor_config.json")
    named = (preprocessor or {}).get("image_processor_type")
    if not isinstance(named, str) or named not in dropped:
        yield path
        return
    successor = dropped[named]
    source = _checkpoint_folder(path)
    logger.info(
        "%s: preprocessor_config.json names %s, which transformers 5 dropped; reading it "
        "as %s, its successor.",
        path,
        named,
        successor,
    )
    with tempfile.TemporaryDirectory(prefix="dexar-processor-") as view:
        for entry in source.iterdir():
            if entry.name != "preprocessor_config.json":
                os.symlink(entry.resolve(), Path(view) / entry.name)
        mended = {**(preprocessor or {}), "image_processor_type": successor}
        (Path(view) / "preprocessor_config.json").write_text(json.dumps(mended, indent=2))
        yield view


def _checkpoint_folder(path: str) -> Path:
    """The folder holding a checkpoint's files (the hub cache's snapshot for a hub id)."""
    folder = Path(path)
    if folder.is_dir():
        return folder
    from transformers.utils import cached_file

    resolved = cached_file(path, "preprocessor_config.json")
    if resolved is None:
        raise CheckpointError(f"{path!r}: the processor files are not in the local cache.")
    return Path(resolved).parent
