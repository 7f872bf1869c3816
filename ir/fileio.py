"""Writing files so that nothing is lost: a temporary file in the target's directory, flushed to
disk, then renamed over the target. A crash leaves the old file or the new one, never half."""

from __future__ import annotations

import os


def atomic_write(path, chunks, prefix: str = ".graphc-") -> None:
    """Write the byte strings `chunks` to `path` atomically."""
    import tempfile  # only writers need it; keeps readers' (the runtime's) import lean

    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
