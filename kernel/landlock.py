"""The Landlock part of a pallet OCI spec: the ``run.pallet.landlock`` annotation's rules.

The landlock security profile checks a user's rules file and writes the normalized rules
into the annotation; the built-in runtime enforces them just before execve, beside seccomp.
Both read the rights and their first ABI from this table.
"""

from __future__ import annotations

import json

from pallet.kernel.errors import UsageError

ANNOTATION = "run.pallet.landlock"

# Filesystem rights: name -> (bit, first ABI that knows it).
FS_RIGHTS = {
    "execute": (1 << 0, 1), "write_file": (1 << 1, 1), "read_file": (1 << 2, 1), "read_dir": (1 << 3, 1),
    "remove_dir": (1 << 4, 1), "remove_file": (1 << 5, 1), "make_char": (1 << 6, 1), "make_dir": (1 << 7, 1),
    "make_reg": (1 << 8, 1), "make_sock": (1 << 9, 1), "make_fifo": (1 << 10, 1), "make_block": (1 << 11, 1),
    "make_sym": (1 << 12, 1), "refer": (1 << 13, 2), "truncate": (1 << 14, 3), "ioctl_dev": (1 << 15, 5),
}
# Rights that make sense on a file (not a directory); the kernel rejects the others there.
FILE_RIGHTS = {"execute", "write_file", "read_file", "truncate", "ioctl_dev"}
NET_RIGHTS = {"bind_tcp": 1 << 0, "connect_tcp": 1 << 1}
NET_ABI = 4
SHORTHANDS = {"ro": ["execute", "read_file", "read_dir"], "rw": list(FS_RIGHTS)}


def parse_rules(data, source: str = "landlock rules") -> dict:
    """Check a rules document and return ``{"paths": [{"path", "access": [names]}], "net": {...}}``."""
    def fail(field, message):
        raise UsageError(f"invalid landlock rules {source}: {field}: {message}")

    if not isinstance(data, dict):
        fail("(top level)", "expected an object")
    unknown = set(data) - {"paths", "net"}
    if unknown:
        fail(sorted(unknown)[0], "unknown key (expected paths, net)")
    paths = data.get("paths", [])
    if not isinstance(paths, list):
        fail("paths", "expected a list")
    rules = {"paths": []}
    for i, entry in enumerate(paths):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            fail(f"paths[{i}].path", "expected a string")
        if not entry["path"].startswith("/"):
            fail(f"paths[{i}].path", f'"{entry["path"]}" is not absolute')
        access = entry.get("access", "ro")
        names = SHORTHANDS.get(access) if isinstance(access, str) else access
        if not isinstance(names, list) or not names:
            fail(f"paths[{i}].access", f'expected "ro", "rw" or a list of rights, got {json.dumps(access)}')
        for name in names:
            if name not in FS_RIGHTS:
                fail(f"paths[{i}].access", f'unknown right "{name}" (known: {", ".join(FS_RIGHTS)})')
        rules["paths"].append({"path": entry["path"], "access": list(dict.fromkeys(names))})
    if "net" in data:
        net = data["net"]
        if not isinstance(net, dict) or set(net) - set(NET_RIGHTS):
            fail("net", f"expected an object with {' and/or '.join(NET_RIGHTS)}")
        for key, ports in net.items():
            if not isinstance(ports, list) or not all(isinstance(p, int) and 0 <= p <= 65535 for p in ports):
                fail(f"net.{key}", "expected a list of port numbers")
        rules["net"] = {key: list(net.get(key, [])) for key in NET_RIGHTS}
    return rules
