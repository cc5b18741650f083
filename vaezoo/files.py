"""Files written whole or not at all, with the permissions the user's umask asks for.

A crash (even SIGKILL) while writing leaves the previous file intact and at most a ``*.tmp``
sibling, which :func:`remove_leftovers` clears on the next run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask_mode() -> int:
    # mkstemp creates 0600 files; a finished file should be as readable as any the user creates. The
    # umask can only be read by setting it, so it is set back at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], sync: bool = True) -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it to ``path``.

    :param sync: flush to disk before the rename, so a power cut cannot leave an empty file either.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_leftovers(path: str | os.PathLike) -> list[Path]:
    """Delete the ``*.tmp`` siblings an interrupted :func:`atomic_write` of ``path`` left; return them."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = list(path.parent.glob(f"{path.name}.*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
