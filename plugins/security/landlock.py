"""landlock profile: restrict a container's filesystem (and TCP port) access to declared rules (Linux Landlock LSM).

``--security-opt landlock=FILE`` names a JSON or TOML file::

    [[paths]]                      # or {"paths": [{"path": "/usr", "access": "ro"}, ...]} in JSON
    path = "/usr"
    access = "ro"                  # "ro", "rw", or a list of rights such as ["read_file", "make_dir"]
    [net]
    bind_tcp = [8080]              # optional; when present, only these ports may be bound / connected to
    connect_tcp = [53, 443]

The profile checks the file and stores the normalized rules in the spec annotation
``run.pallet.landlock``; the built-in runtime calls :func:`restrict_self` just before execve,
so the paths are the container's. Landlock needs no_new_privs for an unprivileged process;
``restrict_self`` sets it.
"""

from __future__ import annotations

import json
import os
import stat

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, SecurityProfile
from pallet.kernel.errors import UsageError
# Imported eagerly: the runtime imports this module before pivot_root and calls restrict_self
# after it, when pallet's own files are no longer reachable (ctypes costs ~1 ms here).
from pallet.plugins.security import landlock_sys as sys_

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


def load_rules(path: str) -> dict:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read landlock rules {path}: {exc.strerror}") from None
    try:
        if path.endswith(".toml"):
            import tomllib
            data = tomllib.loads(raw.decode())
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"landlock rules {path} cannot be parsed: {exc}") from None
    return parse_rules(data, path)


def restrict_self(rules: dict) -> int:
    """Confine the calling process (and its future children) to ``rules``; return the ABI used.

    Rights newer than the running kernel's ABI are dropped (best effort, as Landlock intends);
    a missing path or a kernel without Landlock raises OSError, so the runtime fails the start.
    """
    rules = parse_rules(rules, "given to restrict_self")
    abi = sys_.abi_version()
    if abi <= 0:
        raise OSError("Landlock is not enabled in this kernel")
    handled_fs = sum(bit for bit, since in FS_RIGHTS.values() if since <= abi)
    net = rules.get("net")
    if net is not None and abi < NET_ABI:
        raise OSError(f"Landlock ABI {abi} cannot restrict TCP ports (needs ABI {NET_ABI})")
    handled_net = sum(NET_RIGHTS.values()) if net is not None else 0
    ruleset = sys_.create_ruleset(handled_fs, handled_net)
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
                    sys_.add_path_rule(ruleset, allowed, fd)
            finally:
                os.close(fd)
        for key, bit in NET_RIGHTS.items():
            for port in (net or {}).get(key, []):
                sys_.add_port_rule(ruleset, bit, port)
        sys_.no_new_privs()
        sys_.restrict_self(ruleset)
    finally:
        os.close(ruleset)
    return abi


class LandlockProfile(SecurityProfile):
    description = "Landlock filesystem sandbox (--security-opt landlock=PATH)"
    order = 45
    default_enabled = False

    @classmethod
    def probe(cls, home=None, options=None):
        from pallet.kernel import host

        abi = host.landlock_abi()
        if abi <= 0:
            return Availability.no("Landlock is not enabled in this kernel")
        return Availability.ok(f"ABI {abi}")

    def validate(self, options):
        for key, value in options.items():
            if key != "landlock":
                raise UsageError(f'invalid --security-opt "{key}" for the landlock profile')
            if not value:
                raise UsageError('invalid --security-opt "landlock=": expected a rules file')

    def apply(self, spec, ctx):
        path = ctx.options.get("landlock")
        if not path:
            return
        rules = load_rules(path)
        spec.setdefault("annotations", {})[ANNOTATION] = json.dumps(rules, separators=(",", ":"))


@hookimpl
def pallet_register_security_profiles(register):
    register("landlock", LandlockProfile)
