"""capabilities profile: Docker's 14 default capabilities, --cap-add/--cap-drop, --privileged, no-new-privileges."""

from __future__ import annotations

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, SecurityProfile
from pallet.kernel.errors import UsageError

# Index = capability number (linux/capability.h). A kernel newer than this list reports
# higher numbers in cap_last_cap; those have no name here and are left out.
CAPABILITY_NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)

# Docker's default set; inside a default container CapEff reads 00000000a80425fb.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

TRUE_WORDS = {"", "true", "1", "yes"}
FALSE_WORDS = {"false", "0", "no"}


def normalize(name: str) -> str:
    """``net_admin`` / ``CAP_NET_ADMIN`` -> ``CAP_NET_ADMIN``; ``all`` -> ``ALL``; unknown names are a usage error."""
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    bare = upper.removeprefix("CAP_")
    if bare not in CAPABILITY_NAMES:
        raise UsageError(f'unknown capability: "{name}"')
    return "CAP_" + bare


def capability_mask(names) -> int:
    """Bit mask of capability names, as /proc/PID/status prints it in hex."""
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITY_NAMES.index(name.removeprefix("CAP_"))
    return mask


def host_capabilities() -> list[str]:
    """Every capability this kernel knows (cap_last_cap) that pallet itself may still grant (its bounding set).

    A process cannot give a child a capability outside its own bounding set, so --privileged
    gets the intersection (here CAP_SYS_RESOURCE is missing from the host's bounding set).
    """
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            last = int(handle.read())
    except OSError:
        last = len(CAPABILITY_NAMES) - 1
    bounding = _own_bounding_set()
    return [f"CAP_{name}" for number, name in enumerate(CAPABILITY_NAMES[: last + 1])
            if bounding is None or bounding >> number & 1]


def _own_bounding_set() -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("CapBnd:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return None


def resolve_capabilities(cap_add, cap_drop, privileged: bool, available: list[str]) -> list[str]:
    """The container's capability list, with Docker's precedence: privileged > add ALL > drop ALL > defaults."""
    adds = [normalize(c) for c in cap_add or ()]
    drops = [normalize(c) for c in cap_drop or ()]
    if privileged:
        return list(available)
    for name in adds:
        if name != "ALL" and name not in available:
            raise UsageError(f'capability {name} cannot be granted: it is not in this host\'s bounding set')
    if "ALL" in adds:
        base = list(available)
    elif "ALL" in drops:
        base = []
    else:
        base = [c for c in DEFAULT_CAPABILITIES if c in available]
    # An explicit add wins over a drop of the same capability, as in Docker.
    caps = [c for c in base if c not in drops or c in adds]
    caps += [c for c in adds if c != "ALL" and c not in caps]
    return sorted(caps, key=lambda c: CAPABILITY_NAMES.index(c[4:]))


def is_root_user(spec: dict, user: str) -> bool:
    """Whether the container process runs as uid 0 (the spec builder's resolved uid wins over the raw -u)."""
    uid = spec.get("process", {}).get("user", {}).get("uid")
    if uid is not None:
        return int(uid) == 0
    name = (user or "").split(":", 1)[0]
    return name in ("", "0", "root")


class CapabilitiesProfile(SecurityProfile):
    description = "Linux capability sets"
    order = 10

    @classmethod
    def probe(cls, home=None, options=None):
        try:
            with open("/proc/self/status") as handle:
                if "CapBnd:" not in handle.read():
                    return Availability.no("the kernel does not report capability sets")
        except OSError as exc:
            return Availability.no(f"cannot read /proc/self/status: {exc.strerror}")
        return Availability.ok()

    def validate(self, options):
        for key, value in options.items():
            if key != "no-new-privileges":
                raise UsageError(f'invalid --security-opt "{key}" for the capabilities profile')
            if value.lower() not in TRUE_WORDS | FALSE_WORDS:
                raise UsageError(f'invalid --security-opt "no-new-privileges={value}": expected true or false')

    def apply(self, spec, ctx):
        caps = resolve_capabilities(ctx.cap_add, ctx.cap_drop, ctx.privileged, host_capabilities())
        process = spec.setdefault("process", {})
        if is_root_user(spec, ctx.user):
            sets = {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []}
        else:
            # A non-root process loses its permitted set at execve; only explicitly added
            # capabilities survive, through the ambient set (which needs inheritable too).
            asked = {normalize(a) for a in ctx.cap_add or ()}
            added = caps if ctx.privileged or "ALL" in asked else [c for c in caps if c in asked]
            sets = {"bounding": caps, "effective": added, "permitted": added, "inheritable": added,
                    "ambient": added}
        process["capabilities"] = {key: list(value) for key, value in sets.items()}
        nnp = ctx.options.get("no-new-privileges")
        if nnp is not None:
            process["noNewPrivileges"] = nnp.lower() in TRUE_WORDS


@hookimpl
def pallet_register_security_profiles(register):
    register("capabilities", CapabilitiesProfile)


@hookimpl
def pallet_register_commands(cli):
    # The battery checks every profile's work; it hangs off the profile every container gets.
    from pallet.plugins.security.battery import check

    cli.plugin_group("security").add_command(check)
