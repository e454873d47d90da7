"""What the network log drivers share: parse ``scheme://host:port`` addresses and open their sockets.

``socket`` and ``urllib.parse`` are imported where used: every ``run`` loads the logging plugins, and only
the network drivers need them (~3 ms of imports otherwise).
"""

from __future__ import annotations

from pallet.kernel.errors import UsageError


def parse_address(text: str, schemes: tuple[str, ...], default_port: int, option: str) -> tuple[str, str, object]:
    """``(scheme, text, where)``: ``where`` is a path for unix schemes, else ``(host, port)``."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in schemes:
        raise UsageError(f'{option}: unsupported scheme in "{text}" (use {", ".join(s + "://" for s in schemes)})')
    if parts.scheme.startswith("unix"):
        if not parts.path:
            raise UsageError(f'{option}: "{text}" names no socket path')
        return parts.scheme, text, parts.path
    try:
        port = parts.port or default_port
    except ValueError:
        raise UsageError(f'{option}: invalid port in "{text}"') from None
    if not parts.hostname:
        raise UsageError(f'{option}: "{text}" names no host')
    return parts.scheme, text, (parts.hostname, port)


def open_socket(scheme: str, where, timeout: float = 5.0, tls=None) -> socket.socket:
    """A connected socket for ``scheme`` (udp, tcp, tcp+tls/tls, unix, unixgram), wrapped by ``tls`` (an
    ``ssl.SSLContext`` from :func:`tls_context`) when given."""
    import socket

    if scheme.startswith("unix"):
        kind = socket.SOCK_DGRAM if scheme == "unixgram" else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(timeout)
            sock.connect(where)
        except OSError:
            sock.close()
            if scheme == "unix":  # /dev/log is a datagram socket on most hosts
                return open_socket("unixgram", where, timeout)
            raise
        return sock
    kind = socket.SOCK_DGRAM if scheme == "udp" else socket.SOCK_STREAM
    family, _type, _proto, _name, address = socket.getaddrinfo(where[0], where[1], type=kind)[0]
    sock = socket.socket(family, kind | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=where[0])
    except BaseException:
        sock.close()
        raise
    return sock


def tls_context(options: dict, prefix: str):
    """Client TLS (an ``ssl.SSLContext``) from ``<prefix>-tls-ca-cert``, ``-tls-cert``, ``-tls-key``,
    ``-tls-skip-verify``."""
    import ssl   # ~9 ms: imported only for a TLS address, not by every container's log set-up

    context = ssl.create_default_context(cafile=options.get(f"{prefix}-tls-ca-cert") or None)
    if options.get(f"{prefix}-tls-cert"):
        context.load_cert_chain(options[f"{prefix}-tls-cert"], options.get(f"{prefix}-tls-key") or None)
    if options.get(f"{prefix}-tls-skip-verify", "").lower() in ("true", "1"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
