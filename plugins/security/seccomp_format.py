"""Docker JSON seccomp profiles (current and old format) -> the OCI runtime-spec ``linux.seccomp`` object.

Pure functions: the caller passes the container's capabilities, the architecture and the
kernel version, so every decision is unit-testable. Syscall names unknown to an
architecture are kept; the runtime skips them as libseccomp does.
"""

from __future__ import annotations

import json
import platform

from pallet.kernel.errors import PalletError, UsageError

# Profile action -> the name /proc/sys/kernel/seccomp/actions_avail uses for it.
ACTIONS = {
    "SCMP_ACT_ALLOW": "allow", "SCMP_ACT_ERRNO": "errno", "SCMP_ACT_KILL": "kill_thread",
    "SCMP_ACT_KILL_THREAD": "kill_thread", "SCMP_ACT_KILL_PROCESS": "kill_process", "SCMP_ACT_TRAP": "trap",
    "SCMP_ACT_TRACE": "trace", "SCMP_ACT_LOG": "log", "SCMP_ACT_NOTIFY": "user_notif",
}
OPERATORS = {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
             "SCMP_CMP_MASKED_EQ"}
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
         "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"}
# uname machine -> (libseccomp architecture, Go architecture name used by includes/excludes "arches").
MACHINES = {
    "x86_64": ("SCMP_ARCH_X86_64", "amd64"), "aarch64": ("SCMP_ARCH_AARCH64", "arm64"),
    "armv7l": ("SCMP_ARCH_ARM", "arm"), "i686": ("SCMP_ARCH_X86", "386"), "ppc64le": ("SCMP_ARCH_PPC64LE", "ppc64le"),
    "s390x": ("SCMP_ARCH_S390X", "s390x"), "riscv64": ("SCMP_ARCH_RISCV64", "riscv64"),
    "mips64": ("SCMP_ARCH_MIPS64", "mips64"), "loongarch64": ("SCMP_ARCH_LOONGARCH64", "loong64"),
}
MAX_ARG_INDEX = 5
MAX_U64 = 2**64 - 1


class ProfileError(UsageError):
    """A malformed profile: one line naming the file and the field."""


def load(path: str) -> dict:
    """Read a profile file; unreadable or non-JSON input is a one-line error."""
    try:
        with open(path, "rb") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise UsageError(f"seccomp profile {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read seccomp profile {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"seccomp profile {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"seccomp profile {path}: expected a JSON object at the top level")
    return data


def native_arch() -> tuple[str, str]:
    machine = platform.machine()
    return MACHINES.get(machine, (f"SCMP_ARCH_{machine.upper()}", machine))


def available_actions() -> set[str] | None:
    """Actions this kernel supports (``actions_avail`` names); None when the kernel does not say."""
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as handle:
            return set(handle.read().split())
    except OSError:
        return None


def kernel_version(release: str) -> tuple[int, int]:
    numbers = []
    for part in release.split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit()) or "0"
        numbers.append(int(digits))
    return tuple(numbers + [0] * (2 - len(numbers)))


def to_oci(profile: dict, capabilities, source: str = "profile", arch: tuple[str, str] | None = None,
           release: str | None = None, actions_avail: set[str] | None = None) -> dict:
    """Convert a Docker-format profile to ``linux.seccomp`` for a container holding ``capabilities``.

    Conditional rules follow Docker's semantics: ``includes`` keeps a rule only when every
    listed capability is held, the architecture is listed and the kernel is at least
    ``minKernel``; ``excludes`` drops it when any capability is held, the architecture is
    listed, or the kernel is at least ``minKernel``.
    """
    seccomp_arch, go_arch = arch or native_arch()
    kernel = kernel_version(release or platform.release())
    actions_avail = available_actions() if actions_avail is None else actions_avail
    caps = set(capabilities or ())
    check = _Checker(source, actions_avail)

    out: dict = {"defaultAction": check.action(profile.get("defaultAction"), "defaultAction")}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = check.uint(profile["defaultErrnoRet"], "defaultErrnoRet", 2**32 - 1)
    out["architectures"] = _architectures(profile, seccomp_arch, check)
    flags = check.list_of(profile.get("flags"), "flags", str)
    for i, flag in enumerate(flags):
        if flag not in FLAGS:
            check.fail(f"flags[{i}]", f'unknown flag "{flag}"')
    if flags:
        out["flags"] = flags
    for key in ("listenerPath", "listenerMetadata"):
        if profile.get(key):
            out[key] = check.typed(profile[key], key, str)

    syscalls = []
    for i, rule in enumerate(check.list_of(profile.get("syscalls"), "syscalls", dict)):
        where = f"syscalls[{i}]"
        names = _names(rule, where, check)
        action = check.action(rule.get("action"), f"{where}.action")
        args = [_arg(a, f"{where}.args[{j}]", check) for j, a in enumerate(check.list_of(rule.get("args"), f"{where}.args", dict))]
        if not _applies(rule, where, caps, go_arch, kernel, check):
            continue
        entry = {"names": names, "action": action}
        if rule.get("errnoRet") is not None:
            entry["errnoRet"] = check.uint(rule["errnoRet"], f"{where}.errnoRet", 2**32 - 1)
        if args:
            entry["args"] = args
        syscalls.append(entry)
    used = {out["defaultAction"], *(s["action"] for s in syscalls)}
    if "SCMP_ACT_NOTIFY" in used and not out.get("listenerPath"):
        check.fail("listenerPath", "SCMP_ACT_NOTIFY needs a listenerPath")
    out["syscalls"] = syscalls
    return out


def _architectures(profile: dict, native: str, check: _Checker) -> list[str]:
    if profile.get("architectures") and profile.get("archMap"):
        check.fail("architectures", "use either 'architectures' or 'archMap', not both")
    if profile.get("architectures"):
        return check.list_of(profile["architectures"], "architectures", str)
    arches: list[str] = []
    for i, entry in enumerate(check.list_of(profile.get("archMap"), "archMap", dict)):
        main = check.typed(entry.get("architecture"), f"archMap[{i}].architecture", str)
        subs = check.list_of(entry.get("subArchitectures"), f"archMap[{i}].subArchitectures", str)
        if main == native:
            arches += [main, *subs]
    return arches


def _names(rule: dict, where: str, check: _Checker) -> list[str]:
    if rule.get("name") and rule.get("names"):
        check.fail(where, "use either 'name' or 'names', not both")
    if rule.get("name"):  # the old format: one rule per call
        return [check.typed(rule["name"], f"{where}.name", str)]
    names = check.list_of(rule.get("names"), f"{where}.names", str)
    if not names:
        check.fail(f"{where}.names", "no system call named")
    return names


def _arg(arg: dict, where: str, check: _Checker) -> dict:
    out = {"index": check.uint(arg.get("index"), f"{where}.index", MAX_ARG_INDEX),
           "value": check.uint(arg.get("value", 0), f"{where}.value", MAX_U64)}
    if arg.get("valueTwo"):
        out["valueTwo"] = check.uint(arg["valueTwo"], f"{where}.valueTwo", MAX_U64)
    op = arg.get("op")
    if op not in OPERATORS:
        check.fail(f"{where}.op", f'unknown operator "{op}"')
    out["op"] = op
    return out


def _applies(rule: dict, where: str, caps: set[str], go_arch: str, kernel: tuple[int, int], check: _Checker) -> bool:
    for key in ("includes", "excludes"):
        cond = rule.get(key) or {}
        if not isinstance(cond, dict):
            check.fail(f"{where}.{key}", "expected an object")
        listed_caps = {c if c.upper().startswith("CAP_") else "CAP_" + c
                       for c in check.list_of(cond.get("caps"), f"{where}.{key}.caps", str)}
        listed_arches = check.list_of(cond.get("arches"), f"{where}.{key}.arches", str)
        min_kernel = cond.get("minKernel")
        new_enough = None
        if min_kernel:
            text = check.typed(min_kernel, f"{where}.{key}.minKernel", str)
            parts = text.split(".")
            if len(parts) < 2 or not all(p.isdigit() for p in parts):
                check.fail(f"{where}.{key}.minKernel", f'"{text}" is not a MAJOR.MINOR kernel version')
            new_enough = kernel >= (int(parts[0]), int(parts[1]))
        if key == "includes":
            if (listed_caps and not listed_caps <= caps) or (listed_arches and go_arch not in listed_arches) \
                    or new_enough is False:
                return False
        elif (listed_caps & caps) or go_arch in listed_arches or new_enough:
            return False
    return True


class _Checker:
    """Type checks that fail with one line naming the profile and the field."""

    def __init__(self, source: str, actions_avail: set[str] | None):
        self.source = source
        self.actions_avail = actions_avail

    def fail(self, field: str, message: str):
        raise ProfileError(f"invalid seccomp profile {self.source}: {field}: {message}")

    def typed(self, value, field: str, kind):
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            self.fail(field, f"expected {kind.__name__}, got {json.dumps(value)}")
        return value

    def list_of(self, value, field: str, kind) -> list:
        if value is None:
            return []
        for i, item in enumerate(self.typed(value, field, list)):
            self.typed(item, f"{field}[{i}]", kind)
        return list(value)

    def uint(self, value, field: str, maximum: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
            self.fail(field, f"expected an integer from 0 to {maximum}, got {json.dumps(value)}")
        return value

    def action(self, value, field: str) -> str:
        if value not in ACTIONS:
            self.fail(field, f"unknown action {json.dumps(value)}")
        if self.actions_avail is not None and ACTIONS[value] not in self.actions_avail:
            raise PalletError(f"seccomp profile {self.source}: {field}: action {value} is not supported by this kernel")
        return value
