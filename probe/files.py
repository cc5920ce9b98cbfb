"""Result files written whole or not at all: a temporary file beside the target, fsync, then one rename.

    with atomic_write("units.csv") as f:
        table.to_csv(f, index=False)

A full disk, an error or a kill while writing leaves the old file (or none) and
no partial one: the temporary file is removed, and `os.replace` is atomic
within a folder.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Iterator

from probe.errors import ProbeError


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}")


def fsync_file(path: str | Path) -> None:
    """Flush a written file's data to the disk (before it is renamed into place)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside `path` (mode 'w' text or 'wb' bytes); on success it replaces `path`.

    Any OSError (no such folder, no space left, permission) becomes one ProbeError naming `path`;
    on any error the temporary file is removed and `path` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ProbeError(f"mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    if path.is_dir():
        raise ProbeError(f"cannot write {path}: it is a folder")
    tmp = _temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise ProbeError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        if mode == "w":
            f = os.fdopen(fd, "w", encoding=encoding, newline="")
        else:
            f = os.fdopen(fd, "wb")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise ProbeError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_atomic_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` whole or not at all."""
    with atomic_write(path, "w", encoding) as f:
        f.write(text)
    return Path(path)


def write_atomic_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` whole or not at all."""
    with atomic_write(path, "wb", None) as f:
        f.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_folder(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `dest` to fill; on success it replaces `dest` (an old one is
    removed only then), on any error it is removed and `dest` is left as it was."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
