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
    fd, tmp = _locked_temp(path)  # the lock is released when fd closes, after the rename or removal
    try:
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


def _locked_temp(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path``, locked: (its descriptor, its name).

    Another run's ``remove_leftovers`` may remove the file between its creation and the lock (it is not locked
    yet, so it looks abandoned); the remover holds the lock while it removes, so once the lock is ours the file
    is either still there (and now safe) or gone, and then another one is made."""
    while True:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=TEMP_SUFFIX)
        if fcntl is None:
            return fd, tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return fd, tmp
        except FileNotFoundError:
            pass
        except BaseException:  # e.g. Ctrl-C while waiting for the lock
            with contextlib.suppress(OSError):
                os.remove(tmp)
            os.close(fd)
            raise
        os.close(fd)


def _place_new(tmp: str, path: Path) -> None:
    """Give ``tmp`` the name ``path`` unless a file has it (no window between the check and the rename)."""
    try:
        os.link(tmp, path)  # fails with FileExistsError when path exists
    except FileExistsError:
        raise _appeared(path) from None
    except OSError:  # a file system without hard links: an exclusive create claims the name, the rename fills it
        try:
            with open(path, "x"):
                pass
        except FileExistsError:
            raise _appeared(path) from None
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(path)  # the empty file that claimed the name
            raise
        return
    os.remove(tmp)


def _appeared(path: Path) -> FileExistsError:
    return FileExistsError(f"{path} appeared while it was being written (another run?); it was kept")


def remove_leftovers(path) -> list[Path]:
    """Remove the temporary files of ``path`` that killed runs left behind (none a live process is writing);
    returns the removed ones."""
    path = Path(path)
    return [leftover for leftover in path.parent.glob(glob.escape(_temp_prefix(path)) + "*" + TEMP_SUFFIX)
            if _remove_if_abandoned(leftover)]


def _remove_if_abandoned(temp: Path) -> bool:
    """Remove ``temp`` unless a live writer holds its lock (without locks: unless it is under an hour old)."""
    if fcntl is None:
        try:
            if temp.stat().st_mtime < time.time() - UNLOCKED_LEFTOVER_AGE_S:
                temp.unlink()
                return True
        except OSError:
            pass
        return False
    try:
        fd = os.open(temp, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # locked: a live writer
        os.close(fd)
        return False
    try:
        temp.unlink()  # still holding the lock: a writer that has just made this file sees it gone once it locks
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
