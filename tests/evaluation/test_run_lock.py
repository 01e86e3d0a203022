"""The run lock: two runs into one folder cannot collide; a killed run's lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from dexar_core.errors import InputError
from dexar_core.evaluation.distributed import Processes
from dexar_core.evaluation.run_log import LOCK_FILE, check_unlocked, run_lock

ALONE = Processes()


def write_lock(folder, pid, host=None):
    folder.mkdir(parents=True, exist_ok=True)
    holder = {"pid": pid, "host": host or socket.gethostname(), "started": "then", "command": "x"}
    (folder / LOCK_FILE).write_text(json.dumps(holder))


def test_the_lock_names_its_holder_while_held_and_is_gone_after(tmp_path):
    with run_lock(tmp_path, ALONE):
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid()
        assert holder["host"] == socket.gethostname()
    assert not (tmp_path / LOCK_FILE).exists()


def test_the_lock_is_released_on_error(tmp_path):
    with pytest.raises(KeyboardInterrupt), run_lock(tmp_path, ALONE):
        raise KeyboardInterrupt
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_second_run_is_refused_naming_the_first(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(tmp_path, other.pid)
        named = rf"in use by process {other.pid} on {socket.gethostname()}, started then"
        with pytest.raises(InputError, match=named):
            check_unlocked(tmp_path)
        with pytest.raises(InputError, match=named), run_lock(tmp_path, ALONE):
            pytest.fail("the second run started")
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == other.pid
    finally:
        other.kill()
        other.wait()


def test_a_lock_on_another_host_is_respected(tmp_path):
    write_lock(tmp_path, 1, host="another-machine")

    with pytest.raises(InputError, match="if that process is gone on another machine, delete"):
        check_unlocked(tmp_path)


def test_a_killed_runs_lock_is_taken_over_with_a_warning(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_lock(tmp_path, gone.pid)

    check_unlocked(tmp_path)  # stale: not in the way
    taken_over = rf"process {gone.pid} on this host is gone"
    with pytest.warns(UserWarning, match=taken_over), run_lock(tmp_path, ALONE):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_an_old_unreadable_lock_is_stale_and_a_fresh_one_is_not(tmp_path):
    (tmp_path / LOCK_FILE).write_text("")
    with pytest.raises(InputError, match="in use by a run that is starting"):
        check_unlocked(tmp_path)

    old = time.time() - 3600
    os.utime(tmp_path / LOCK_FILE, (old, old))
    with pytest.warns(UserWarning, match="unreadable"), run_lock(tmp_path, ALONE):
        pass
