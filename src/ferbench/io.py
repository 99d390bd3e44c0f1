"""Atomic artefact writing: every file appears whole under its final name or not at all.

A write goes to a temporary name beside the artefact (``.{name}.XXXXXXXX{suffix}``) and is
renamed at the end; a failure removes it. A SIGKILL cannot be caught: the next start of the
writer removes what was left (:func:`remove_temporaries`). SIGTERM (what ``scancel`` sends) is
turned into :class:`Terminated` while :func:`signals_as_errors` is active, so the same cleanup
runs. A read-only folder, a full disk or a quota becomes one FerbenchError naming the artefact.

Reading goes through here too where a file can be missing or corrupt: :func:`load_torch_file`
(a weights file, for models, methods and the training job alike).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from ferbench.errors import FerbenchError

#: errno -> the cause named in the one-line error
DISK_ERRORS = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
}
#: the temporary names atomic_path creates (mkstemp: 8 characters of [a-z0-9_]), and the copy
#: preprocess makes when it shrinks a face array
_TEMPORARY = re.compile(r"^\.(?P<final>.+)\.[a-z0-9_]{8}(\.[A-Za-z0-9]+)$|^(?P<shrunk>.+)\.shrink$")


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like an error (temporary files removed), then a non-zero exit."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


@contextlib.contextmanager
def signals_as_errors() -> Iterator[None]:
    """Raise :class:`Terminated` on SIGTERM inside the block (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    before = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def disk_error(path: str | os.PathLike, err: OSError) -> FerbenchError | None:
    """The one-line error for a read-only/full/quota/permission OSError at ``path``; else None."""
    cause = DISK_ERRORS.get(err.errno)  # type: ignore[arg-type]
    return None if cause is None else FerbenchError(f"{path}: {cause}")


def require_space(folder: str | os.PathLike, nbytes: int, what: str) -> None:
    """Refuse to size a file of ``nbytes`` in ``folder`` when the disk has less free (a memory
    map over a full disk dies of SIGBUS instead of raising)."""
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise FerbenchError(f"{folder}: no space left on device for {what} "
                            f"({nbytes / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free)")


def open_memmap(path: str | os.PathLike, shape: tuple[int, ...], dtype: Any) -> np.memmap:
    """A new .npy file mapped for writing, its blocks reserved first (posix_fallocate): a disk
    that fills up meanwhile raises ENOSPC here instead of SIGBUS on a write through the map."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    if hasattr(os, "posix_fallocate"):
        with open(path, "r+b") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
            except OSError as err:
                if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    del array
                    raise OSError(err.errno, os.strerror(err.errno), str(path)) from None
    return array


def temporary_files(folder: str | os.PathLike, of: Callable[[str], bool] | None = None) -> list[Path]:
    """Files in ``folder`` named like an unfinished write (of an artefact name ``of`` accepts)."""
    folder = Path(folder)
    out = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = _TEMPORARY.match(path.name)
        if match and path.is_file() and (of is None or of(match["final"] or match["shrunk"])):
            out.append(path)
    return out


def final_name(path: str | os.PathLike) -> str:
    """The artefact name a temporary file stands for (``.model.pt.ab12cd34.pt`` -> ``model.pt``)."""
    match = _TEMPORARY.match(Path(path).name)
    return (match["final"] or match["shrunk"]) if match else Path(path).name


def remove_temporaries(folder: str | os.PathLike, of: Callable[[str], bool] | None = None) -> list[Path]:
    """Delete what a killed writer left in ``folder`` (see :func:`temporary_files`)."""
    removed = temporary_files(folder, of)
    for path in removed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix or ".tmp", dir=final.parent)
    except OSError as err:
        raise (disk_error(final, err) or err) from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; artefacts in a shared cache must be readable like any new file.
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp_path, 0o666 & ~umask)
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(err, OSError) and disk_error(final, err) is not None:
            raise disk_error(final, err) from None
        if _full_disk_behind(err, final.parent):
            first = str(err).strip().splitlines()[-1] if str(err).strip() else ""
            raise FerbenchError(f"{final}: {DISK_ERRORS[errno.ENOSPC]} ({type(err).__name__}: {first})") from None
        raise


#: below this many free bytes a failed write is taken for a full disk
LOW_SPACE = 1 << 20


def _full_disk_behind(err: BaseException, folder: Path) -> bool:
    """Writers that hide the errno (torch.save: RuntimeError "... file write failed") on a disk
    with (almost) no space left."""
    if not isinstance(err, Exception) or isinstance(err, (OSError, FerbenchError)) or "write" not in str(err).lower():
        return False
    try:
        return shutil.disk_usage(folder).free < LOW_SPACE
    except OSError:
        return False


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    with atomic_path(path, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_torch_file(path: Path, what: str) -> Any:
    """torch.load(weights_only=True) of a weights file; a missing or unreadable one is one
    FerbenchError naming the file and ``what`` it should have been."""
    import torch  # lazily: the command line imports io before it may import torch (startup)

    if not path.is_file():
        raise FerbenchError(f"{path}: {what} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise FerbenchError(f"{path}: corrupt or unreadable {what} ({type(err).__name__})") from None
