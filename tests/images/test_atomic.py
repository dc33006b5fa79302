"""Atomic writes between live runs: a run never removes a temporary file another live run is writing, only
those killed runs left behind."""
import errno
import fcntl
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import wdsr_fast.io.atomic as atomic
from wdsr_fast.io.atomic import atomic_path, remove_leftovers

# Another process that holds a temporary file of TARGET open (as a run writing it does) until told to finish.
WRITER = """
import sys
from pathlib import Path
from wdsr_fast.io.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    Path(tmp).write_bytes(b"written by the live run")
    print(tmp, flush=True)
    sys.stdin.readline()
"""


def test_a_live_runs_temporary_file_survives_and_an_abandoned_one_is_removed(tmp_path):
    target = tmp_path / "photo_x2.png"
    abandoned = tmp_path / ".photo_x2.png.k1ll3d.tmp"  # as a killed run leaves it: nobody holds its lock
    abandoned.write_bytes(b"half a png")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        live = Path(writer.stdout.readline().strip())
        assert live.parent == tmp_path and live.is_file()
        assert remove_leftovers(target) == [abandoned]
        assert live.read_bytes() == b"written by the live run" and not abandoned.exists()
    finally:
        writer.communicate("\n", timeout=60)
    assert writer.returncode == 0
    assert target.read_bytes() == b"written by the live run" and list(tmp_path.iterdir()) == [target]


def test_a_sweep_between_making_and_locking_a_temporary_file_costs_nothing(tmp_path, monkeypatch):
    """Another run's sweep may come between the temporary file's creation and its lock, when the file still looks
    abandoned: the writer must then write a file of its own, which a later sweep leaves alone."""
    target = tmp_path / "a.png"
    make = tempfile.mkstemp

    def make_then_sweep(*args, **kwargs):
        made = make(*args, **kwargs)
        if not sweeps:
            sweeps.append(remove_leftovers(target))  # another run, right then
        return made

    sweeps: list = []

    monkeypatch.setattr(atomic.tempfile, "mkstemp", make_then_sweep)
    with atomic_path(target) as tmp:
        Path(tmp).write_bytes(b"new")
        assert remove_leftovers(target) == []  # another run's sweep while this one writes
        assert Path(tmp).read_bytes() == b"new"
    assert len(sweeps) == 1 and target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]


def test_an_abandoned_file_is_removed_while_locked_by_the_remover(tmp_path, monkeypatch):
    """The remover removes a leftover while it holds its lock, so that a writer that made the file a moment ago
    and waits for the lock finds it gone (and makes another) instead of writing into a removed file."""
    leftover = tmp_path / ".a.png.xyz.tmp"
    leftover.write_bytes(b"")
    seen = []
    unlink = Path.unlink

    def unlink_seeing_the_lock(self, *args, **kwargs):
        fd = os.open(self, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append("unlocked")
        except OSError:
            seen.append("locked")
        finally:
            os.close(fd)
        return unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink_seeing_the_lock)
    assert remove_leftovers(tmp_path / "a.png") == [leftover]
    assert seen == ["locked"] and not leftover.exists()


def test_without_hard_links_a_failed_rename_leaves_no_empty_file(tmp_path, monkeypatch):
    """Where the name is claimed by an exclusive create (no hard links), a rename that fails takes the claim back:
    an empty file left there would pass for a finished output."""
    def refuse(*args, **kwargs):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    def fail(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "link", refuse)
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="Input/output error"), atomic_path(tmp_path / "a.png", replace=False) as tmp:
        Path(tmp).write_bytes(b"new")
    assert list(tmp_path.iterdir()) == []
