"""One line, not a traceback, for the operating system's refusals that reach the command line:
a full disk or read-only folder (ferbench.io.disk_error), a symlink loop, a path that is a file
where a folder is needed (``--out`` naming a file) or the reverse, and too little memory to
start (``ulimit -v`` below what torch's libraries map: the loader says "failed to map
segment")."""

from __future__ import annotations

import errno
import os

from ferbench import io

#: errno -> the cause named in the one-line error, for errors about one path
PATH_ERRORS = {
    errno.ELOOP: "too many levels of symbolic links (a symlink loop)",
    errno.EEXIST: "exists and is not a folder (give a folder path)",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EISDIR: "is a folder, a file was expected",
    errno.ENAMETOOLONG: "file name too long",
}
_MEMORY_HINTS = ("failed to map segment", "cannot allocate memory", "out of memory")


def address_space_limit() -> int | None:
    """The soft ``ulimit -v`` in bytes, or None when unlimited (or unknown on this platform)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else int(soft)


#: verbs that import torch, and the address space below which importing it cannot succeed:
#: with torch 2.14 (CUDA build) every ``ulimit -v`` from 300 MiB to 3.8 GiB failed (some by a
#: segmentation fault inside the dynamic loader, which no handler can turn into a line), 5.7 GiB
#: worked. Refused before the import, with one line; above the floor a failure is still caught.
TORCH_VERBS = ("train", "pretrain", "validate-config")
MIN_ADDRESS_SPACE = 4 * 2**30


def check_address_space(verb: str) -> None:
    from ferbench.errors import FerbenchError

    limit = address_space_limit()
    if verb in TORCH_VERBS and limit is not None and limit < MIN_ADDRESS_SPACE:
        raise FerbenchError(memory_message(f"{verb} loads torch, which needs at least "
                                           f"{MIN_ADDRESS_SPACE // 2**30} GiB of address space"))


def memory_message(detail: str) -> str:
    limit = address_space_limit()
    where = (f"the address-space limit (ulimit -v) is {limit // 2**20} MiB; raise it (torch alone maps "
             f"several GiB of address space) or unset it" if limit is not None
             else "no ulimit -v is set: free some memory or ask the scheduler for more")
    return f"not enough memory ({detail}); {where}"


def one_line(err: BaseException) -> str | None:
    """The one-line message for an OSError/ImportError that is not ferbench's fault (or a
    RuntimeError of a thread that could not start under a memory limit), or None."""
    text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    if isinstance(err, RuntimeError):
        if "can't start new thread" in text and address_space_limit() is not None:
            return memory_message(text)
        return None
    if isinstance(err, ImportError) or getattr(err, "errno", None) == errno.ENOMEM \
            or any(h in text.lower() for h in _MEMORY_HINTS):
        if getattr(err, "errno", None) == errno.ENOMEM or any(h in text.lower() for h in _MEMORY_HINTS):
            return memory_message(text)
        return None
    if not isinstance(err, OSError):
        return None
    path = err.filename if err.filename is not None else "?"
    disk = io.disk_error(path, err)
    if disk is not None:
        return str(disk)
    cause = PATH_ERRORS.get(err.errno)  # type: ignore[arg-type]
    if cause is None:
        return None
    return f"{os.fsdecode(path)}: {cause}"
