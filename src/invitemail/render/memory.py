"""The address-space limit (``RLIMIT_AS``) that backs up the template sandbox's own checks.

A render lowers the soft limit to what the process uses now plus a headroom and restores it
after; a worker process limits itself for its whole life. Where the limit cannot be read or
set (not Linux, no ``resource`` module), nothing is changed and the other bounds still hold.
"""

from __future__ import annotations

import os

try:  # not on Windows
    import resource
except ImportError:  # pragma: no cover
    resource = None  # type: ignore[assignment]

_statm: tuple[int, int] | None = None  # (pid, fd of /proc/self/statm opened by that pid)


def _address_space() -> int | None:
    """The process's address space in bytes (Linux), or None."""
    global _statm
    pid = os.getpid()
    if _statm is None or _statm[0] != pid:  # a forked process opens its own
        try:
            _statm = (pid, os.open("/proc/self/statm", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))
        except OSError:
            return None
    try:
        return int(os.pread(_statm[1], 64, 0).split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def cap_address_space(headroom: int) -> tuple[int, int] | None:
    """Lower the soft address-space limit to what the process uses now plus ``headroom``;
    the limits to restore after, or None when nothing was changed."""
    if resource is None:  # pragma: no cover
        return None
    used = _address_space()
    if used is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = used + headroom
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY and soft <= cap:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ValueError, OSError):
        return None
    return soft, hard


def restore_address_space(limits: tuple[int, int] | None) -> None:
    if limits is not None and resource is not None:
        resource.setrlimit(resource.RLIMIT_AS, limits)


def limit_process_memory(extra: int) -> None:
    """Limit this whole process's address space to what it uses now plus ``extra`` (for a
    worker process, which does nothing but build messages)."""
    restore = cap_address_space(extra)
    del restore  # kept: the limit stays for the process's life
