"""Writing result files so that a failure never leaves a half-written one behind."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def new_file_mode() -> int:
    """The mode open() would give a new file: 0o666 less the process's umask (read from
    /proc, so that no other thread sees a changed umask; mkstemp's own mode is 0o600)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_writer(path, mode="w"):
    """Open a temp file beside `path`; on success it replaces `path` (with the mode a new
    file gets), on error it is removed."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def writing(path):
    """Turn an OSError raised while writing `path` into one plain line (errors.cannot_write)."""
    from .errors import cannot_write

    try:
        yield
    except OSError as exc:
        raise cannot_write(path, exc) from None


def write_json_atomic(path, data) -> None:
    with atomic_writer(path, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")


def make_unique_dir(parent, name: str) -> Path:
    """Create parent/name, or parent/name_2, name_3 ... if taken (safe between processes)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for suffix in range(1, 100_000):
        candidate = parent / (name if suffix == 1 else f"{name}_{suffix}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run directory name for {name} in {parent}")
