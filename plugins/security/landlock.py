"""landlock profile: restrict a container's filesystem (and TCP port) access to declared rules (Linux Landlock LSM).

``--security-opt landlock=FILE`` names a JSON or TOML file::

    [[paths]]                      # or {"paths": [{"path": "/usr", "access": "ro"}, ...]} in JSON
    path = "/usr"
    access = "ro"                  # "ro", "rw", or a list of rights such as ["read_file", "make_dir"]
    [net]
    bind_tcp = [8080]              # optional; when present, only these ports may be bound / connected to
    connect_tcp = [53, 443]

The profile checks the file and stores the normalized rules in the spec annotation
``run.pallet.landlock`` (:mod:`pallet.kernel.landlock`); the built-in runtime enforces them
just before execve, beside seccomp, so the paths are the container's. A runtime that does not
know the annotation (runc, crun) ignores it.
"""

from __future__ import annotations

import json

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, SecurityProfile
from pallet.kernel.errors import UsageError
from pallet.kernel.landlock import ANNOTATION, parse_rules


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
