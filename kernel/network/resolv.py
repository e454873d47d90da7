"""The host's DNS resolvers, as a container can reach them (for predefined networks and the embedded DNS)."""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path


def host_nameservers() -> list[str]:
    """The host's resolvers, minus loopback ones a container cannot reach (Docker falls back to 8.8.8.8)."""
    servers = []
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    if not ipaddress.ip_address(parts[1]).is_loopback:
                        servers.append(parts[1])
    return servers or ["8.8.8.8", "8.8.4.4"]
