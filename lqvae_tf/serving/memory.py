"""Giving freed memory back to the operating system, and reading what the process holds.

Parsing a large JSON body makes millions of small Python objects, spread over glibc's per-thread
arenas; when they are freed, glibc keeps the pages for reuse and the server's RSS stays at its
peak. `return_freed_memory` asks glibc to hand every free page back (`malloc_trim(0)`, which has
walked all arenas since glibc 2.8), after a large request and after a version is unloaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def return_freed_memory() -> bool:
    """Returns the allocator's free pages to the OS; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def rss_bytes(pid: int | str = "self") -> int:
    """The resident set size of a process (Linux `/proc/<pid>/status`, VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS in /proc/{pid}/status")
