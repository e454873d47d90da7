"""Route ``--security-opt`` options to security profiles; let each enabled profile shape the OCI spec and the host's files."""

from __future__ import annotations

from pallet.kernel.drivers import SecurityContext, SecurityProfile
from pallet.kernel.errors import PalletError, UsageError

# Options Docker accepts without NAME=VALUE form, mapped to the profile that owns them.
BARE_OPTIONS = {"no-new-privileges": "capabilities"}
# Docker spells the SELinux option "label"; pallet's profile is "selinux".
ALIASES = {"label": "selinux"}
# Options that may be repeated and add up (label=type:x --security-opt label=level:s0).
ACCUMULATE = {"label"}
# Bind-mount options that ask the LSM to relabel the source; runtimes do not know them.
RELABEL_OPTIONS = {"z", "Z"}


def split_security_opts(opts: list[str]) -> dict[str, dict[str, str]]:
    """``["seccomp=/p.json", "label=type:x", "no-new-privileges"]`` -> ``{profile: {option: value}}``."""
    routed: dict[str, dict[str, str]] = {}
    for raw in opts or ():
        key, sep, value = raw.partition("=")
        if not sep:
            key, sep, value = raw.partition(":")  # Docker's legacy "seccomp:PATH" form
        key = key.strip()
        if not sep and key in BARE_OPTIONS:
            routed.setdefault(BARE_OPTIONS[key], {})[key] = "true"
            continue
        if not sep or not key:
            raise UsageError(f'invalid --security-opt "{raw}": expected NAME=VALUE')
        profile = BARE_OPTIONS.get(key) or ALIASES.get(key, key)
        options = routed.setdefault(profile, {})
        if key in ACCUMULATE and options.get(key):
            value = f"{options[key]},{value}"
        options[key] = value
    return routed


def take_relabel_requests(spec: dict) -> list[tuple[str, str]]:
    """Remove ``z``/``Z`` from bind mounts' options; return ``(source, option)`` for the SELinux profile.

    Hosts without SELinux ignore them, as Docker does.
    """
    requests = []
    for mount in spec.get("mounts", []):
        options = mount.get("options") or []
        asked = [o for o in options if o in RELABEL_OPTIONS]
        if asked:
            mount["options"] = [o for o in options if o not in RELABEL_OPTIONS]
            requests.append((mount.get("source", ""), asked[-1]))
    return requests


def apply_profiles(engine, spec: dict, ctx: SecurityContext, security_opts: list[str]) -> list[str]:
    """Apply every default-enabled available profile, plus those named in ``security_opts``; return their names.

    Profiles apply in their ``order`` (see :class:`pallet.kernel.drivers.SecurityProfile`).
    Naming a profile that is unknown, broken or unavailable on this host is an error (as
    Docker refuses ``apparmor=…`` where AppArmor is off); an unavailable one nobody asked
    for is skipped.
    """
    plugins = engine.plugins
    routed = split_security_opts(security_opts)
    ctx.relabel = take_relabel_requests(spec)
    known = plugins.names("security")
    for name in routed:
        if name not in known:
            raise UsageError(f'invalid --security-opt "{name}": no security profile of that name '
                             f'(available: {", ".join(known)})')
    applied = []
    records = sorted(plugins.drivers["security"].values(), key=lambda r: (r.cls.order, r.name))
    for record in records:
        asked = routed.get(record.name)
        if not asked and not record.cls.default_enabled:
            continue
        context = engine.driver_context("security", record.name)
        availability = record.availability(context.home, context.options)
        if not availability.available:
            if asked and not record.cls.opts_out(asked):
                raise PalletError(f'security profile "{record.name}" requested, but {availability.reason}')
            continue
        profile = plugins.open("security", record.name, context)
        options = asked or {}
        profile.validate(options)
        ctx.options = options
        profile.apply(spec, ctx)
        applied.append(record.name)
    return applied


def storage_mapping(plugins, settings: dict):
    """The host-wide :class:`IdMapping` the first available default-enabled profile asks for, or None.

    Only the ``[security]`` settings can ask for one, so an empty section loads no profile.
    """
    if not settings:
        return None
    plugins.load("security")
    for record in sorted(plugins.drivers["security"].values(), key=lambda r: (r.cls.order, r.name)):
        if record.cls.storage_mapping.__func__ is SecurityProfile.storage_mapping.__func__:
            continue  # the base's answer is None: no need to probe the host for it
        if record.cls.default_enabled and record.availability().available:
            mapping = record.cls.storage_mapping(settings)
            if mapping is not None:
                return mapping
    return None


def prepare_files(engine, spec: dict, ctx, applied: list[str]) -> None:
    """Let every profile in ``applied`` ready the host's files for the final ``spec``."""
    for name in applied:
        engine.open_driver("security", name).prepare_files(spec, ctx)
