"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

A write goes to a temporary file beside the target, ``.<name>.<random>.tmp``, which is renamed over the target when
complete and removed on error. The writer holds an exclusive lock on its temporary file until then, so that
``remove_leftovers`` (run before a new write of the same target) removes only the temporary files of runs that were
killed, never one that another live process is still writing.
"""
from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows: no advisory locks; leftovers are then removed only once they are an hour old
    fcntl = None

TEMP_SUFFIX = ".tmp"
UNLOCKED_LEFTOVER_AGE_S = 3600


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


@contextlib.contextmanager
def atomic_path(path, replace: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it becomes ``path``, on error it is removed.

    ``replace=False``: a file that appeared at ``path`` in the meantime (another run's) is kept and
    ``FileExistsError`` raised, the new file discarded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=TEMP_SUFFIX)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd closes, after the rename or removal
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private; give it the permissions of a new file
        if replace:
            os.replace(tmp, path)
        else:
            _place_new(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        os.close(fd)


def _place_new(tmp: str, path: Path) -> None:
    """Give ``tmp`` the name ``path`` unless a file has it (no window between the check and the rename)."""
    try:
        os.link(tmp, path)  # fails with FileExistsError when path exists
    except FileExistsError:
        raise FileExistsError(f"{path} appeared while it was being written (another run?); it was kept") from None
    except OSError:  # a file system without hard links: an exclusive create, then the rename over it
        with open(path, "x"):
            pass
        os.replace(tmp, path)
        return
    os.remove(tmp)


def remove_leftovers(path) -> list[Path]:
    """Remove the temporary files of ``path`` that killed runs left behind (none a live process is writing);
    returns the removed ones."""
    path = Path(path)
    removed = []
    for leftover in path.parent.glob(glob.escape(_temp_prefix(path)) + "*" + TEMP_SUFFIX):
        if _abandoned(leftover):
            with contextlib.suppress(OSError):
                leftover.unlink()
                removed.append(leftover)
    return removed


def _abandoned(temp: Path) -> bool:
    if fcntl is None:
        try:
            return temp.stat().st_mtime < time.time() - UNLOCKED_LEFTOVER_AGE_S
        except OSError:
            return False
    try:
        fd = os.open(temp, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:  # locked: a live writer
        return False
    finally:
        os.close(fd)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
