"""Linux capability names and numbers, and applying the OCI ``process.capabilities`` sets to this process."""

from __future__ import annotations

from pallet.kernel import linux

NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)
NUMBERS = {name: number for number, name in enumerate(NAMES)}
SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            return int(handle.read())
    except OSError:
        return len(NAMES) - 1


def mask(names: list[str]) -> int:
    """``["CAP_CHOWN", …]`` -> bit mask; names this table does not know are ignored, as runc warns and goes on."""
    bits = 0
    for name in names:
        number = NUMBERS.get(name.upper().removeprefix("CAP_"))
        if number is not None:
            bits |= 1 << number
    return bits


def masks(capabilities: dict | None) -> dict[str, int] | None:
    """The spec's capability object -> a mask per set; None when the spec has no capabilities (keep all).

    A capability this process does not hold itself (CAP_SYS_RESOURCE on this build host) cannot be
    granted: it is left out rather than failing, so ``--privileged`` means "everything we have".
    """
    if capabilities is None:
        return None
    held = linux.capget()[1]
    return {name: mask(capabilities.get(name) or []) & held for name in SETS}


def to_drop(bounding: int) -> list[int]:
    """Capabilities in our bounding set that the container's lacks (computed in the parent)."""
    current = 0
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("CapBnd:"):
                current = int(line.split()[1], 16)
    return [n for n in range(last_cap() + 1) if current & (1 << n) and not bounding & (1 << n)]


def drop_bounding(numbers: list[int]) -> None:
    """Needs CAP_SETPCAP, so it runs before the user switch."""
    for number in numbers:
        linux.prctl(linux.PR_CAPBSET_DROP, number)


def apply(sets: dict[str, int]) -> None:
    """After the user switch (with PR_SET_KEEPCAPS): the three thread sets, then the ambient set."""
    linux.capset(sets["effective"], sets["permitted"], sets["inheritable"])
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    for number in range(len(NAMES)):
        if sets["ambient"] & (1 << number):
            linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, number)
