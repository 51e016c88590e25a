"""The listening sockets ``serve`` binds itself, so that it can announce only what listens.

uvicorn binds after the application has started, and answers a port in use with a log
line after the banner was printed; binding first makes the failure one line, before
anything is announced, and the banner true the moment it is printed: connections made
from then on wait in the backlog until the application accepts them.
"""

from __future__ import annotations

import errno
import socket

BACKLOG = 2048  # uvicorn's default
_REASONS = {
    errno.EADDRINUSE: "the address is already in use (another server? choose another --port)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "no network interface has this address (--host)",
}


class ListenError(Exception):
    """The address cannot be listened on; the message says which and why."""


def _display(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen(host: str, port: int, *, backlog: int = BACKLOG) -> list[socket.socket]:
    """Bind and listen on every address ``host`` resolves to (``localhost``: IPv4 and IPv6,
    as uvicorn does), inheritable by worker processes."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        raise ListenError(
            f"cannot listen on {_display(host, port)}: unknown host (--host)"
        ) from None
    families = {info[0] for info in infos}
    sockets: list[socket.socket] = []
    failure: OSError | None = None
    seen: set[tuple[int, object]] = set()
    for family, kind, proto, _, address in infos:
        if (family, address) in seen:
            continue
        seen.add((family, address))
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and socket.AF_INET in families:
                # Each family gets its own socket; without this the IPv6 one takes both.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) and len(infos) > 1:
                # e.g. "localhost" on a machine without IPv6: the other family will do.
                failure = failure or exc
                continue
            for other in sockets:
                other.close()
            reason = _REASONS.get(exc.errno or 0, exc.strerror or str(exc))
            raise ListenError(f"cannot listen on {_display(host, port)}: {reason}") from None
        sock.set_inheritable(True)
        sockets.append(sock)
    if not sockets:
        reason = _REASONS.get(failure.errno or 0, "no usable address") if failure else "no address"
        raise ListenError(f"cannot listen on {_display(host, port)}: {reason}")
    return sockets


def browser_host(host: str) -> str:
    """The host to put in the URLs we print: ``localhost`` for loopback and wildcard
    addresses. A frontend on http://localhost:5173 (Vite's default) is then on the same
    site as the API, so the SameSite=Strict refresh cookie reaches it; from 127.0.0.1 it
    would be another site and the cookie would never be sent."""
    if host in ("", "localhost", "0.0.0.0", "::", "::1") or host.startswith("127."):  # noqa: S104
        return "localhost"
    return f"[{host}]" if ":" in host else host
