"""Ports and processes of a server: bind first (so the port is ours before anything loads), find a free
one; for an engine's child process, a temporary folder its sockets fit in, an end when the kernel dies, and
what is left of its process group."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
from typing import Any

from ..errors import SwiftServeError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
PORT_SCAN = 100


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid`` (Linux /proc; empty elsewhere)."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket bound to ``host:port`` (raises OSError when a server listens there).

    Like every server socket it sets SO_REUSEADDR, so a port whose last connections are in TIME_WAIT
    counts as free; it listens at once, because two SO_REUSEADDR sockets may both bind a port until one
    of them listens (another process could otherwise take the same port before our server starts).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def port_is_free(host: str, port: int) -> bool:
    try:
        bind_socket(host, port).close()
        return True
    except OSError:
        return False


def pick_port(host: str, port: int | None, first: int) -> tuple[int, str | None]:
    """``port`` if given (it must be free), else the first free one from ``first`` on; and a note."""
    if port is not None:
        if not port_is_free(host, port):
            raise SwiftServeError(
                f"port {port} on {host} is busy; pick another --port, or leave it out to take the next free one"
            )
        return port, None
    for candidate in range(first, min(first + PORT_SCAN, 65536)):
        if port_is_free(host, candidate):
            note = f"port {first} is busy; using {candidate}" if candidate != first else None
            return candidate, note
    raise SwiftServeError(f"no free port among {first}..{first + PORT_SCAN - 1} on {host}; pass --port")


def short_temp_base() -> str | None:
    """``/tmp`` when ``TMPDIR`` is too deep for vLLM's Unix sockets (107 bytes with a 37-byte name)."""
    return "/tmp" if len(tempfile.gettempdir()) > 48 and os.access("/tmp", os.W_OK) else None


def parent_death_signal() -> Any:
    """A pre-exec hook asking Linux to end the child if the kernel dies without stopping it (or None)."""
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl  # loaded before the fork
    except (OSError, AttributeError):
        return None

    def hook() -> None:  # pragma: no cover - runs in the child between fork and exec
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return hook
