"""Writing files and folders atomically: to a temporary path beside the target, then rename.

An interrupted or failed write then leaves the previous artifact (or nothing), never half a one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path in the target's folder; renames it onto `path` on success.

    Works for files and folders. The temporary path keeps the target's extension, since some
    writers (Keras' `.keras`) insist on it.
    """
    path = os.path.abspath(path)
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    stem, extension = os.path.splitext(name)
    scratch = tempfile.mkdtemp(prefix=f".{stem}.", dir=folder)
    temporary = os.path.join(scratch, f"{stem}{extension}")
    try:
        yield temporary
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        os.replace(temporary, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_text(path: str, text: str) -> str:
    """Writes `text` to `path` atomically; returns the path."""
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path
