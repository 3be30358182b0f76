"""Reading the files an operator points the pool at (the accounts file, token files) without ever hanging or
ballooning: regular files only, at most `limit` bytes. A FIFO would block the event loop on open or read, a
device like /dev/zero or /dev/urandom never ends, a directory is no file: each is refused by name, unread."""

from __future__ import annotations

import os
import stat
from pathlib import Path

KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
    stat.S_IFSOCK: "a socket",
}


class FileProblem(Exception):
    """Why a file cannot be used, as the end of a sentence that names it: 'is a FIFO, not a regular file'."""


def read_limited(path: Path, limit: int) -> bytes:
    """The contents of the regular file at `path` (symlinks followed), or FileProblem."""
    try:
        info = os.stat(path)
        _check(info.st_mode, limit, info.st_size)  # refused before it is even opened
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise FileProblem(f"cannot be read ({e.strerror or type(e).__name__})") from None
    except ValueError:  # an embedded NUL, a lone surrogate: no path the system could open
        raise FileProblem("cannot be read (not a usable path)") from None
    try:
        info = os.fstat(fd)
        _check(info.st_mode, limit, info.st_size)  # swapped between the look and the open
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise FileProblem(f"is larger than {limit} bytes")
        return b"".join(chunks)
    except OSError as e:
        raise FileProblem(f"cannot be read ({e.strerror or type(e).__name__})") from None
    finally:
        os.close(fd)


def _check(mode: int, limit: int, size: int) -> None:
    kind = KINDS.get(stat.S_IFMT(mode))
    if kind is not None or not stat.S_ISREG(mode):
        raise FileProblem(f"is {kind or 'no regular file'}, not a regular file")
    if size > limit:
        raise FileProblem(f"is larger than {limit} bytes")
