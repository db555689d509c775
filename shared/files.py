"""Files and downloads, done once for the whole project: hashes, atomic writes, checked downloads, shipped data.

- Hashes: `sha256_of` (a file, read in chunks), `sha256_of_bytes`, and `check_sha256`, which raises a
  ValueError naming the file, both hashes and the fix.
- Atomic writes: `atomic_path` yields a temporary name beside the target and renames it onto the
  target only when the writing finished, so the target is always the old file or the whole new one,
  never half of one; `atomic_write_bytes` and `atomic_write_text` use it.
- Downloads: `download` continues an interrupted download (HTTP Range), checks the bytes (size,
  SHA-256, any test of the caller's) and only then gives them their final name.
- Shipped data: `DATA_DIR` (the package's `shared/data/`) and `read_shipped_file`, which checks a
  file there against its line in `shared/data/SHA256SUMS`.

This is the bottom layer: it imports nothing from `shared`, only the standard library and tqdm.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

# The data shipped with the package (novels, GPT-2's rank file, the small model, ...), and their hashes.
DATA_DIR = Path(__file__).parent / "data"
CHECKSUMS = "SHA256SUMS"  # in DATA_DIR: one "sha256  relative/path" line per shipped file

# ---------------------------------------------------------------------------------------------
# Hashes
# ---------------------------------------------------------------------------------------------


def sha256_of(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """The SHA-256 of a file as 64 hex digits, read in chunks so a file of gigabytes needs little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of_bytes(data: bytes) -> str:
    """The SHA-256 of bytes already in memory, as 64 hex digits."""
    return hashlib.sha256(data).hexdigest()


def check_sha256(source: str | os.PathLike | bytes, expected: str, what: str | None = None,
                 fix: str = "it is corrupt, incomplete or another file. Delete it and get it again.") -> str:
    """Raise a ValueError unless `source` (a file's path, or bytes) has the SHA-256 `expected`; return the hash.

    A file that is not what it should be is better refused at once than found out by a strange error
    later. The message names `what` (default: the path), the first digits of both hashes and `fix`,
    which says what the mismatch means and what to do. `expected` may be in either case.
    """
    wanted = expected.strip().lower()
    if len(wanted) != 64 or any(c not in "0123456789abcdef" for c in wanted):
        raise ValueError(f"{expected!r} is not a SHA-256: pass the 64 hex digits of one (sha256sum prints them).")
    actual = sha256_of_bytes(source) if isinstance(source, bytes | bytearray) else sha256_of(source)
    if actual != wanted:
        what = what or (str(source) if not isinstance(source, bytes | bytearray) else "the data")
        raise ValueError(f"{what} has SHA-256 {actual[:12]}..., not the expected {wanted[:12]}...: {fix}")
    return actual


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------


def _new_temporary(path: Path) -> Path:
    """Create an empty, hidden file `.NAME.XXXXXXXX.tmp` beside `path`, with the permissions of a new file."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # 0o666 less the umask
            return tmp
        except FileExistsError:  # another writer drew the same name: draw again
            continue


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on a clean exit it becomes `path`, whole.

    On leaving the block without an error the temporary file is flushed to disk (fsync) and renamed
    onto `path` with `os.replace`, which is atomic: a reader, or a run that crashes in between, sees
    the old file or the new one, never half of one. On any exception (KeyboardInterrupt too) the
    temporary file is deleted, `path` is left as it was, and the exception goes on. The temporary
    file lies in `path`'s folder (created if missing), since a rename is atomic only within one disk.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
    try:
        yield tmp
        with open(tmp, "r+b") as f:
            os.fsync(f.fileno())  # the bytes on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (see `atomic_path`): `path` never holds a part of it. Returns `path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (see `atomic_path`): `path` never holds a part of it. Returns `path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------------------------


def download(url: str, path: str | os.PathLike, *, sha256: str | None = None, size: int | None = None,
             progress: bool = True, label: str | None = None, verify: Callable[[Path], object] | None = None,
             resume: bool = True) -> Path:
    """Download `url` to `path`: resumable, checked, then atomic. Returns `path`.

    - Resumable: the bytes arrive in `path` + ".part". If that file is there from an interrupted run,
      only the rest is asked for (an HTTP Range request); a server that answers 416 has nothing left
      to send (the .part is complete), and one that sends the whole file again (200) starts it over.
      A dropped connection keeps the .part, so running again continues it. `resume=False` starts
      afresh instead and deletes the .part on failure (for small files, or a URL whose bytes change).
    - Checked: the finished .part must have `size` bytes, pass `verify(part_path)` (a function of
      the caller's that raises ValueError, e.g. a check of a file's header) and have the SHA-256
      `sha256`, each where given, cheapest first. A .part that fails is deleted and a ValueError
      says to run again.
    - Atomic: only then is the .part renamed onto `path` (`os.replace`), so `path` never holds a
      partial or corrupt file; an older file there is replaced only by a good one.

    It does not look at an existing `path`: deciding that a file already there will do is the
    caller's business. Network and HTTP errors become a ConnectionError naming the host and saying
    how to download the file by hand. `label` names the progress bar (default: the file's name).
    """
    path = Path(path)
    part = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not resume:
        part.unlink(missing_ok=True)
    host = urlparse(url).hostname
    by_hand = f"download {path.name} by hand from {url} into {path.parent}/"
    try:
        _receive(url, part, progress=progress, label=label or path.name)
    except urllib.error.HTTPError as err:
        if not resume:
            part.unlink(missing_ok=True)
        raise ConnectionError(f"{host} answered {err.code} {err.reason} for {url}. Check the address; if it is "
                              f"right and the server is up, {by_hand}.") from err
    except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        if not resume:
            part.unlink(missing_ok=True)
        kept = f" (what arrived so far stays in {part.name}; running again resumes it)" if part.exists() else ""
        raise ConnectionError(f"could not reach {host}: {reason}. If you are offline, {by_hand}{kept}.") from err

    try:
        if size is not None and (actual_size := part.stat().st_size) != size:
            raise ValueError(f"{part} has {actual_size:,} bytes, not the expected {size:,}.")
        if verify is not None:
            verify(part)
        if sha256 is not None:
            check_sha256(part, sha256, str(part), fix="it is corrupt, incomplete or another file.")
    except ValueError as err:
        part.unlink(missing_ok=True)
        raise ValueError(f"the download of {url} is corrupt and was deleted; run again to retry. "
                         f"Details: {err}") from err
    os.replace(part, path)
    return path


def _receive(url: str, part: Path, *, progress: bool, label: str, chunk_size: int = 1 << 20) -> None:
    """Append `url`'s bytes to `part`, continuing after the bytes it already holds. Raises what urllib raises."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send: the .part file is already complete
            err.close()
            return
        raise
    with response:
        if have and response.status != 206:  # the server sent the whole file, not the rest
            have = 0
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        received = 0
        with open(part, "ab" if have else "wb") as f, tqdm(
            total=None if expected is None else have + expected, initial=have, unit="B", unit_scale=True,
            unit_divisor=1024, desc=label, disable=not progress,
        ) as bar:
            while chunk := response.read(chunk_size):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if expected is not None and received < expected:  # urllib returns b"" when a connection closes early
            raise ConnectionError(f"the connection closed after {have + received:,} of {have + expected:,} bytes")


# ---------------------------------------------------------------------------------------------
# The files shipped in shared/data/
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _expected_checksums(data_dir: Path) -> dict[str, str]:
    """The hashes in `data_dir`/SHA256SUMS, by relative path (read once per folder)."""
    lines = (data_dir / CHECKSUMS).read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def read_shipped_file(relative: str) -> bytes:
    """The bytes of a file under shared/data/ (e.g. "austen/emma.txt"), checked against SHA256SUMS.

    Shipped files are data that results depend on, so an edited or damaged one is refused rather
    than silently used. `DATA_DIR` is read at each call, so a test may point it elsewhere.
    """
    checksums = _expected_checksums(DATA_DIR)
    if relative not in checksums:
        raise KeyError(f"{relative} has no line in {DATA_DIR / CHECKSUMS}: add one (`sha256sum {relative}` "
                       "in shared/data/) for a file that should ship, or read the file yourself.")
    data = (DATA_DIR / relative).read_bytes()
    check_sha256(data, checksums[relative], str(DATA_DIR / relative),
                 fix=f"the file is corrupt or was edited (its hash is in {CHECKSUMS}). "
                     "Restore it with `git checkout shared/data`.")
    return data
