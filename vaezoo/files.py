"""Files written whole or not at all, with the permissions the user's umask asks for; output paths
checked for writability before any work is done.

A crash (even SIGKILL) while writing leaves the previous file intact and at most a ``*.tmp``
sibling, which :func:`remove_leftovers` clears on the next run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from vaezoo.errors import ConfigError


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


def _probe(folder: Path, what: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".vaezoo-probe.", suffix=".tmp")
    except OSError as e:
        message = f"{what}: cannot write in {folder} ({e.strerror}); choose a writable place"
        raise ConfigError(message) from None
    os.close(fd)
    os.unlink(tmp)


def writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Create folder ``path`` if needed and make sure files can be written in it; ``what`` names it.

    :raises ConfigError: ``"<what> <path>: ..."`` when it is a file, cannot be created or is read-only.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path}: is a file, not a folder; choose another folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        message = f"{what} {path}: cannot create the folder ({e.strerror}); choose another"
        raise ConfigError(message) from None
    _probe(path, f"{what} {path}")
    return path


def writable_file(path: str | os.PathLike, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Make sure file ``path`` can be written (its folder is created), before any work is done.

    :param suffixes: the extensions allowed (lower case, with the dot); empty for any.
    :raises ConfigError: naming ``what`` and ``path`` when it is a folder, has another extension, or
        its folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path}: is a folder; give a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{what} {path}: must end in one of {', '.join(suffixes)}")
    writable_dir(path.parent, f"{what} {path}: its folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what} {path}: the file exists and is read-only; choose another name")
    return path
