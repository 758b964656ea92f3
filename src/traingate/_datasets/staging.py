"""The hidden working directories of a build, and the leftovers of builds that were killed.

A build of ``DIR`` works in two siblings: ``.DIR.work-<token>`` (scratch), created first, and
``.DIR.tmp-<token>`` (the output being written, renamed to ``DIR`` at the end). While it runs
the build holds an exclusive ``flock`` on its scratch directory; the kernel drops the lock
when the process ends, however it ends (SIGKILL included). The next build into the same parent
directory (any name), and the server at start-up in its datasets directory, remove every pair
whose scratch directory nobody holds, and every output directory without its scratch
directory: what a killed build left. Live builds' directories are never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from pathlib import Path

# A build's working directory: ``.NAME.work-TOKEN`` or ``.NAME.tmp-TOKEN``, TOKEN 12 hex digits
# (builder.py's secrets.token_hex(6)); nothing else in a directory is ever touched.
_OURS = re.compile(r"\.(.+)\.(?:work|tmp)-[0-9a-f]{12}", re.DOTALL)

__all__ = ["Claim", "claim", "is_live", "remove_all_leftovers", "remove_leftovers"]


class Claim:
    """A held lock on a build's scratch directory; ``release`` ends it."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def _try_lock(path: Path) -> int | None:
    """An open descriptor of ``path`` holding its exclusive lock, or None when another
    process holds it (or the directory vanished)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def claim(scratch: Path) -> Claim:
    """Lock a build's freshly made scratch directory for the build's lifetime."""
    fd = _try_lock(scratch)
    if fd is None:
        raise OSError(f"cannot lock the build's scratch directory {scratch}")
    return Claim(fd)


def is_live(scratch: Path) -> bool:
    """Whether a running build holds ``scratch`` (a build's scratch directory)."""
    fd = _try_lock(scratch)
    if fd is None:
        return scratch.exists()
    os.close(fd)
    return False


def remove_all_leftovers(parent: Path) -> list[Path]:
    """``remove_leftovers`` for every build target whose working directories lie in
    ``parent``: what killed builds of any name left there (a build cleans its siblings, and
    the server its datasets directory at start-up, so leftovers do not wait for another
    build to the same ``--out``)."""
    if not parent.is_dir():
        return []
    names: set[str] = set()
    for entry in parent.iterdir():
        found = _OURS.fullmatch(entry.name)
        if found is not None and entry.is_dir() and not entry.is_symlink():
            names.add(found.group(1))
    removed: list[Path] = []
    for name in sorted(names):
        if name:
            removed += remove_leftovers(parent / name)
    return removed


def remove_leftovers(target: Path) -> list[Path]:
    """Remove what killed builds into ``target`` left beside it; returns what was removed."""
    parent, name = target.parent, target.name
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    work_prefix, tmp_prefix = f".{name}.work-", f".{name}.tmp-"
    live: set[str] = set()
    for scratch in sorted(parent.glob(f"{work_prefix}*")):
        token = scratch.name.removeprefix(work_prefix)
        fd = _try_lock(scratch)
        if fd is None:
            if scratch.exists():
                live.add(token)
            continue
        try:
            staging = parent / f"{tmp_prefix}{token}"
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
                removed.append(staging)
            shutil.rmtree(scratch, ignore_errors=True)
            removed.append(scratch)
        finally:
            os.close(fd)
    for staging in sorted(parent.glob(f"{tmp_prefix}*")):
        token = staging.name.removeprefix(tmp_prefix)
        if token in live or (parent / f"{work_prefix}{token}").exists():
            continue
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
            removed.append(staging)
    return removed
