"""A training run's folder (`--out`): one run at a time, checked before training starts, no leftovers.

`RunLock` keeps a second run from writing into a folder a live run is using (a lock file naming
the process; a lock left by a dead process is taken over). `check_room` finds an unwritable or
full folder before the first step instead of at the first save. `remove_orphan_temp_files` deletes
the half-written temporary files that a killed run can leave beside its checkpoint.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
from pathlib import Path

LOCK_NAME = ".run.lock"


class RunFolderBusy(FileExistsError):
    """Another live run holds the folder's lock."""


def _alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, but belongs to another user
        return True
    return True


class RunLock:
    """Hold `folder/.run.lock` while a run trains there: `with RunLock(folder): ...`.

    The lock file says which process holds it (pid, host, start time). A lock whose process is gone
    (same host, pid not running) is stale and taken over; a live one raises `RunFolderBusy`.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False

    def __enter__(self) -> RunLock:
        check_writable(self.folder)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now().isoformat(timespec="seconds")}
        for _ in range(2):  # a second try after removing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and not self._stale(holder):
                    raise RunFolderBusy(
                        f"another run is training into {self.folder} (process {holder.get('pid')} on "
                        f"{holder.get('host')}, started {holder.get('started')}). Wait for it to finish, stop it, "
                        "or choose another --out folder.") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise RunFolderBusy(f"could not take the lock {self.path}: another run keeps creating it. Choose another "
                            "--out folder.")

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # unreadable or half-written: treated as stale
        return holder if isinstance(holder, dict) else None

    @staticmethod
    def _stale(holder: dict) -> bool:
        pid = holder.get("pid")
        return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def check_writable(folder: str | os.PathLike) -> None:
    """Create `folder` if needed and write and delete a probe file there; a clear error if that fails."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}.tmp"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"cannot write into the run folder {folder} ({err.strerror or err}). Choose a "
                              "folder you can write to with --out.") from None


def check_room(folder: str | os.PathLike, needed_bytes: int) -> None:
    """Raise a clear error unless `folder` can be written and has `needed_bytes` free (plus a margin),
    so a read-only or full folder is found before training, not at the first save."""
    folder = Path(folder)
    check_writable(folder)
    free = shutil.disk_usage(folder).free
    needed = int(needed_bytes * 1.1) + (16 << 20)  # the checkpoint, a tenth more, and room for logs
    if free < needed:
        raise OSError(f"the run folder {folder} has {free / 2**20:,.0f} MiB free, but a checkpoint of this run "
                      f"needs about {needed / 2**20:,.0f} MiB (the new one is written beside the old before "
                      "replacing it). Free some space or choose another --out folder.")


def remove_orphan_temp_files(folder: str | os.PathLike, names: tuple[str, ...]) -> list[Path]:
    """Delete `.NAME.*.tmp` files for each of `names`: what a killed run's atomic writes left half-done.

    Call it while holding the folder's `RunLock`, so no live writer owns them. Returns what it removed.
    """
    removed = []
    for name in names:
        for path in Path(folder).glob(f".{name}.*.tmp"):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
