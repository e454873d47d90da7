"""Enforce a spec's Landlock rules (the ``run.pallet.landlock`` annotation) on the container's process.

The launcher imports this module before the fork and the child calls :func:`restrict_self`
after pivot_root, just before execve, when the paths are the container's.
"""

from __future__ import annotations

import os
import stat

from pallet.kernel import linux
from pallet.kernel.landlock import FILE_RIGHTS, FS_RIGHTS, NET_ABI, NET_RIGHTS, parse_rules


def restrict_self(rules: dict) -> int:
    """Confine the calling process (and its future children) to ``rules``; return the ABI used.

    Rights newer than the running kernel's ABI are dropped (best effort, as Landlock intends);
    a missing path or a kernel without Landlock raises OSError, so the runtime fails the start.
    """
    rules = parse_rules(rules, "given to restrict_self")
    abi = linux.landlock_abi()
    if abi <= 0:
        raise OSError("Landlock is not enabled in this kernel")
    handled_fs = sum(bit for bit, since in FS_RIGHTS.values() if since <= abi)
    net = rules.get("net")
    if net is not None and abi < NET_ABI:
        raise OSError(f"Landlock ABI {abi} cannot restrict TCP ports (needs ABI {NET_ABI})")
    handled_net = sum(NET_RIGHTS.values()) if net is not None else 0
    ruleset = linux.landlock_create_ruleset(handled_fs, handled_net)
    try:
        for entry in rules.get("paths", []):
            try:
                fd = os.open(entry["path"], os.O_PATH | os.O_CLOEXEC)
            except OSError as exc:
                raise OSError(exc.errno, f"landlock rule path {entry['path']}: {exc.strerror}") from None
            try:
                names = entry["access"]
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    names = [n for n in names if n in FILE_RIGHTS]
                allowed = sum(FS_RIGHTS[n][0] for n in names) & handled_fs
                if allowed:
                    linux.landlock_add_path_rule(ruleset, allowed, fd)
            finally:
                os.close(fd)
        for key, bit in NET_RIGHTS.items():
            for port in (net or {}).get(key, []):
                linux.landlock_add_port_rule(ruleset, bit, port)
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        linux.landlock_restrict_self(ruleset)
    finally:
        os.close(ruleset)
    return abi
