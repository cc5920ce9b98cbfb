"""Result files written whole or not at all: a temporary file beside the target, fsync, then one rename.

    with atomic_write("units.csv") as f:
        table.to_csv(f, index=False)

A full disk, an error or a kill while writing leaves the old file (or none) and
no partial one: the temporary file is removed, and `os.replace` is atomic
within a folder.

A temporary folder that a kill leaves behind is named after its owner
(`.NAME.KIND-<pid>-<start>-<host>`, `temp_name`), so the next writer can delete those of
processes that no longer run and never a live one's (`Owner`, `leftovers`, `clean_leftovers`).
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
from dataclasses import dataclass
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


# --------------------------------------------------------------------------- temporary folders and their owners

HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:64] or "host"
TEMP_FOLDER = re.compile(r"^\.(?P<dest>.+)\.(?P<kind>[a-z]+)-(?P<pid>\d+)(?:-(?P<start>\d+)-(?P<host>.+))?$")


@dataclass(frozen=True)
class Owner:
    """The process that wrote a temporary folder: pid, start time (whole seconds) and host."""
    pid: int
    start: int | None = None  # None in the names of older probe versions: the pid alone is checked
    host: str | None = None

    @classmethod
    def current(cls) -> "Owner":
        return cls(os.getpid(), start_time(os.getpid()), HOST)

    def running(self) -> bool:
        """Whether the owner may still be writing: alive (the same process, not a reused pid) or unknown."""
        import psutil
        if self.host is not None and self.host != HOST:
            return True  # another machine's process: its liveness cannot be known here
        if self.pid == os.getpid():
            return False  # this process: its earlier saves are over
        try:
            proc = psutil.Process(self.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            return self.start is None or abs(int(proc.create_time()) - self.start) <= 1
        except psutil.NoSuchProcess:
            return False
        except (psutil.Error, OSError):
            return True


def start_time(pid: int) -> int:
    """When process `pid` started (whole seconds since the epoch): with the pid, it names one process."""
    import psutil
    return int(psutil.Process(pid).create_time())


def temp_name(dest: str, kind: str, owner: Owner | None = None) -> str:
    """The hidden name `.DEST.KIND-<pid>-<start>-<host>` of `dest`'s temporary folder, e.g. kind `tmp`
    (being written), `old` (being replaced), `partial` (a recording being written)."""
    o = owner or Owner.current()
    tail = f"-{o.start}-{o.host}" if o.start is not None and o.host is not None else ""
    return f".{dest}.{kind}-{o.pid}{tail}"


def leftovers(parent: str | Path, dest: str | None = None, kinds: tuple[str, ...] = ("tmp", "old")
              ) -> list[tuple[Path, Owner]]:
    """The temporary folders of `dest` (None: of any name) in `parent` whose kind is one of `kinds`,
    in the order of `kinds`, then by name, with their owners."""
    try:
        entries = sorted(Path(parent).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for p in entries:
        m = TEMP_FOLDER.match(p.name)
        if m and m["kind"] in kinds and (dest is None or m["dest"] == dest) and p.is_dir():
            owner = Owner(int(m["pid"]), int(m["start"]) if m["start"] else None, m["host"])
            found.append((kinds.index(m["kind"]), p, owner))
    return [(p, o) for _, p, o in sorted(found, key=lambda t: (t[0], t[1].name))]


def clean_leftovers(parent: str | Path, dests=None, kinds: tuple[str, ...] = ("tmp", "old"),
                    keep_own: bool = False) -> list[str]:
    """Delete the temporary folders of `dests` (None: any name) in `parent` whose owner no longer runs;
    `keep_own`: also keep this process's (another thread may be writing them). The names deleted."""
    gone = []
    for dest in ([None] if dests is None else dests):
        for p, owner in leftovers(parent, dest, kinds):
            if keep_own and owner.pid == os.getpid() and owner.host in (None, HOST):
                continue
            if not owner.running():
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p.name)
    return gone


# --------------------------------------------------------------------------- disk space

def decimal_bytes(n: float) -> str:
    """6_558_649_980 -> '6.6 GB' (powers of 1000, as disks are sold and `df -H` counts)."""
    return scaled_bytes(n, 1000)


def scaled_bytes(n: float, base: int) -> str:
    """`n` bytes in B, KB, MB... with `base` (1000 or 1024) bytes to the next unit, one decimal above B."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < base:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= base
    return f"{n:.3g} EB"


def free_bytes(folder: str | Path) -> tuple[int, Path]:
    """Free space for this user on the disk that holds `folder` (or, when it does not exist yet, its
    nearest existing parent), and that existing folder."""
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return int(shutil.disk_usage(p).free), p
