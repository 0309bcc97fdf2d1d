"""The ledger's file: private to the teacher, in a folder made for it.

The ledger holds every student's prompts and result URLs, so ``class.db`` and SQLite's
``-wal`` and ``-shm`` files are made ``0600`` (SQLite gives those two the main file's mode)
in a ``0700`` folder, which is made when missing (``/srv/kie-class`` in the docs). An
existing file that others can read is made private, with a warning.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["prepare_ledger_file"]

log = logging.getLogger("kie_jupyter.classroom")


def prepare_ledger_file(path: Path) -> None:
    """Make ``path``'s folder (``0700``) and the file (``0600``) before SQLite opens it;
    raises ``OSError`` (one line in its ``strerror``) when that cannot be done."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)  # exactly: mkdir's mode is filtered by the umask
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists():
            mode = stat.S_IMODE(name.stat().st_mode)
            if mode & 0o077:
                os.chmod(name, mode & 0o700)
                log.warning("%s was open to others (%o): made private (%o)", name, mode,
                            mode & 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # the usual case, or made meanwhile by another command
        return
    os.close(fd)
