"""The on-disk record of an evaluation run, made so that no finished item is ever lost.

Layout of a run folder::

    run.json             what the run measures (model, dataset, method, options, ...)
    log/rank<R>.jsonl    one JSON line per finished item, appended by process R and
                         flushed to disk before the next item starts
    items.jsonl          all items, merged and in order (written at the end by rank 0)
    summary.json         the summary (written at the end by rank 0)
    run.lock             while a run is going: the pid, host and start of the process
                         (rank 0) that holds the folder

A rerun with the same ``run.json`` reads every log, skips the items found there and
appends the rest, whatever number of processes wrote them. A process killed while
writing leaves at most one incomplete last line; readers skip it and its writer cuts it
off before appending again. A rerun that would measure something else (another model,
method, option...) is refused rather than mixed into the old items.

Two runs into one folder at once would both do all the work and interleave their logs,
so a run holds ``run.lock`` while it goes and a second one is refused with a message
naming the first (it does not wait: the first may take hours). A lock left by a killed
run (its pid is gone on this host) is taken over with a warning.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from dexar_core.errors import InputError
from dexar_core.evaluation.distributed import Processes

__all__ = [
    "CONFIG_FILE",
    "ITEMS_FILE",
    "LOCK_FILE",
    "LOG_FOLDER",
    "SUMMARY_FILE",
    "append_record",
    "check_unlocked",
    "finished_records",
    "open_log",
    "prepare_run",
    "run_lock",
    "write_atomically",
    "write_items",
]

CONFIG_FILE = "run.json"
LOG_FOLDER = "log"
ITEMS_FILE = "items.jsonl"
SUMMARY_FILE = "summary.json"
LOCK_FILE = "run.lock"
FRESH_LOCK_SECONDS = 10.0
"""An unreadable lock younger than this is being written by its holder, not stale."""


def prepare_run(folder: str | Path, config: Mapping[str, Any], processes: Processes) -> None:
    """Make the run folder and record ``config``, or check it against the recorded one.

    Every process reads the recorded config before rank 0 writes a new one, so all of
    them agree on whether to refuse.

    Raises:
        InputError: ``folder`` is a file, or holds a run with a different config.
    """
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise InputError(f"evaluate: out={str(root)!r} is a file; give a folder for the results.")
    wanted = json.loads(json.dumps(config))
    recorded = _read_config(root / CONFIG_FILE)
    if recorded is not None and recorded != wanted:
        changed = sorted(
            key for key in {*recorded, *wanted} if recorded.get(key) != wanted.get(key)
        )
        details = "; ".join(
            f"{key}: {recorded.get(key)!r} before, {wanted.get(key)!r} now" for key in changed
        )
        weights = (
            " The model's weights differ from the ones its items were made with (a "
            "checkpoint retrained or replaced under the same name, or a folder written "
            "before dexar recorded weights): its items cannot be resumed."
            if "weights" in changed
            else ""
        )
        raise InputError(
            f"evaluate: {str(root)!r} holds a run that measured something else ({details})."
            f"{weights} Resume it with the same arguments, or give a new --out folder."
        )
    processes.barrier()
    if processes.is_main:
        (root / LOG_FOLDER).mkdir(parents=True, exist_ok=True)
        if recorded is None:
            write_atomically(root / CONFIG_FILE, json.dumps(wanted, indent=2) + "\n")
    processes.barrier()


def finished_records(folder: str | Path) -> dict[int, dict[str, Any]]:
    """Every item record in the run's logs, by item index (the first one of an index wins).

    An incomplete last line (a process killed mid-write) is skipped; a malformed line
    anywhere else means the log was edited by hand, and is refused.

    Raises:
        InputError: a log line that is not a JSON object with an ``index``.
    """
    records: dict[int, dict[str, Any]] = {}
    for log in sorted((Path(folder) / LOG_FOLDER).glob("rank*.jsonl")):
        lines = log.read_text(encoding="utf-8").split("\n")
        # The text after the last newline is a line still being written, or nothing.
        for number, line in enumerate(lines[:-1], start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                index = int(record["index"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                raise InputError(
                    f"evaluate: {log}:{number} is not an item record ({error}); the log was "
                    "changed by something other than dexar. Delete that line to rerun the item."
                ) from error
            records.setdefault(index, record)
    return records


def open_log(folder: str | Path, rank: int) -> IO[str]:
    """This process's log, opened for appending, an incomplete last line cut off first."""
    path = Path(folder) / LOG_FOLDER / f"rank{rank}.jsonl"
    if path.exists():
        data = path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete != len(data):
            with path.open("r+b") as log:
                log.truncate(complete)
    return path.open("a", encoding="utf-8")


def append_record(log: IO[str], record: Mapping[str, Any]) -> None:
    """Append one item record and push it to disk before going on."""
    log.write(json.dumps(record) + "\n")
    log.flush()
    os.fsync(log.fileno())


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so readers never see half."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def write_items(folder: str | Path, records: Sequence[Mapping[str, Any]]) -> None:
    """The merged ``items.jsonl``: one line per record, in the given order."""
    write_atomically(
        Path(folder) / ITEMS_FILE, "".join(json.dumps(record) + "\n" for record in records)
    )


def _read_config(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(
            f"evaluate: {str(path)!r} is not valid JSON ({error}); delete the run folder or "
            "give a new --out folder."
        ) from error
    if not isinstance(recorded, dict):
        raise InputError(f"evaluate: {str(path)!r} is not a run record; give a new --out folder.")
    return recorded


def _lock_holder(path: Path) -> dict[str, Any] | None:
    """The holder recorded in a lock file; None when it cannot be read."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return holder if isinstance(holder, dict) and "pid" in holder else None


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _stale_reason(path: Path, holder: dict[str, Any] | None) -> str | None:
    """Why the lock at ``path`` is left over from a dead run, or None when it is held."""
    if holder is None:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return "it is gone"
        return f"it is unreadable and {age:.0f} s old" if age > FRESH_LOCK_SECONDS else None
    if holder.get("host") == socket.gethostname() and not _is_alive(int(holder["pid"])):
        return f"process {holder['pid']} on this host is gone"
    return None


def _describe_holder(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "a run that is starting"
    return (
        f"process {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
        f" ({holder.get('command', '')})"
    )


def check_unlocked(folder: str | Path) -> None:
    """Refuse a run folder another live process is running in (a stale lock is fine).

    Raises:
        InputError: naming the holder, with what to do.
    """
    path = Path(folder) / LOCK_FILE
    if not path.exists():
        return
    holder = _lock_holder(path)
    if _stale_reason(path, holder) is None:
        raise InputError(
            f"evaluate: {str(folder)!r} is in use by {_describe_holder(holder)}. Wait for it "
            f"to finish (rerunning then resumes), or give another --out; if that process is "
            f"gone on another machine, delete {str(path)!r}."
        )


@contextmanager
def run_lock(folder: str | Path, processes: Processes) -> Iterator[None]:
    """Hold ``folder/run.lock`` while the block runs (rank 0 only; ranks share the run).

    A stale lock (see :func:`check_unlocked`) is taken over with a warning; the lock is
    removed on exit, also on error or interrupt.

    Raises:
        InputError: another live process holds the folder.
    """
    if not processes.is_main:
        yield
        return
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise InputError(f"evaluate: out={str(root)!r} is a file; give a folder for the results.")
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    mine = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(["dexar", *sys.argv[1:]])[:200],
    }
    while True:
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(path)
            reason = _stale_reason(path, holder)
            if reason is None:
                check_unlocked(root)  # raises, naming the holder
                continue  # released between the two looks: try again
            warnings.warn(
                f"evaluate: taking over the lock of {str(root)!r} left by "
                f"{_describe_holder(holder)}: {reason}. Its finished items are kept.",
                stacklevel=3,
            )
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(descriptor, "w", encoding="utf-8") as lock:
            json.dump(mine, lock)
        break
    try:
        yield
    finally:
        if (_lock_holder(path) or {}).get("pid") == mine["pid"]:
            path.unlink(missing_ok=True)
