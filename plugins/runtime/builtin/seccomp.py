"""OCI ``linux.seccomp`` -> a libseccomp filter, compiled in the parent and loaded in the child before exec.

libseccomp is called through cffi (:mod:`pallet.kernel.linux` opens it) rather than
pyseccomp: one binding technology for the runtime, no ctypes.util/subprocess import on the
start path, and libseccomp's negative-errno returns turned into clear errors here.
Syscall names this architecture (and the spec's extra architectures) do not know are skipped,
as runc does, so one profile serves every kernel.
"""

from __future__ import annotations

import os

from pallet.kernel import linux
from pallet.kernel.fsutil import atomic_write
from pallet.kernel.linux import ffi

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_TRACE = 0x7FF00000
EPERM = 1

_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
        "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
# libseccomp filter attributes (enum scmp_filter_attr)
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC, "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
          "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB}
# The same flags as seccomp(2) takes them, for loading a compiled program directly.
_KERNEL_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}


class SeccompError(ValueError):
    pass


def lib():
    try:
        return linux.libseccomp()
    except OSError:
        raise SeccompError("libseccomp is not installed (apt-get install libseccomp2)") from None


def action(name: str, errno_ret: int | None = None, default_errno: int | None = None) -> int:
    """OCI action name (``SCMP_ACT_ERRNO`` …) -> libseccomp action value."""
    if name == "SCMP_ACT_ERRNO":
        code = errno_ret if errno_ret is not None else default_errno if default_errno is not None else EPERM
        return _ERRNO | (code & 0xFFFF)
    if name == "SCMP_ACT_TRACE":
        code = errno_ret if errno_ret is not None else default_errno if default_errno is not None else EPERM
        return _TRACE | (code & 0xFFFF)
    simple = {"SCMP_ACT_KILL": SCMP_ACT_KILL_THREAD, "SCMP_ACT_KILL_THREAD": SCMP_ACT_KILL_THREAD,
              "SCMP_ACT_KILL_PROCESS": SCMP_ACT_KILL_PROCESS, "SCMP_ACT_TRAP": SCMP_ACT_TRAP,
              "SCMP_ACT_ALLOW": SCMP_ACT_ALLOW, "SCMP_ACT_LOG": SCMP_ACT_LOG, "SCMP_ACT_NOTIFY": SCMP_ACT_NOTIFY}
    try:
        return simple[name]
    except KeyError:
        raise SeccompError(f"unknown seccomp action {name!r}") from None


def _check(result: int, what: str) -> None:
    if result < 0:
        raise SeccompError(f"seccomp: {what}: {os.strerror(-result)}")


class Filter:
    """A compiled libseccomp context; ``load()`` installs it on the calling thread."""

    def __init__(self, default_action: int):
        self.default_action = default_action
        self.ctx = lib().seccomp_init(default_action)
        if self.ctx == ffi.NULL:
            raise SeccompError("seccomp_init failed")
        self.ctx = ffi.gc(self.ctx, lib().seccomp_release)
        # no_new_privs belongs to the spec's process.noNewPrivileges, not to libseccomp's default.
        _check(lib().seccomp_attr_set(self.ctx, _ATTR_CTL_NNP, 0), "disable NNP")
        self.skipped: list[str] = []

    @classmethod
    def from_oci(cls, config: dict) -> Filter:
        default_errno = config.get("defaultErrnoRet")
        self = cls(action(config.get("defaultAction", "SCMP_ACT_ALLOW"), default_errno))
        for arch in config.get("architectures") or []:
            self.add_arch(arch)
        for flag in config.get("flags") or []:
            if flag not in _FLAGS:
                raise SeccompError(f"unknown seccomp flag {flag!r}")
            _check(lib().seccomp_attr_set(self.ctx, _FLAGS[flag], 1), flag)
        for rule in config.get("syscalls") or []:
            act = action(rule["action"], rule.get("errnoRet"), default_errno)
            for name in rule.get("names") or []:
                self.add_rule(act, name, rule.get("args") or [])
        return self

    def add_arch(self, oci_name: str) -> None:
        token = lib().seccomp_arch_resolve_name(oci_name.removeprefix("SCMP_ARCH_").lower().encode())
        if token == 0:
            raise SeccompError(f"unknown seccomp architecture {oci_name!r}")
        result = lib().seccomp_arch_add(self.ctx, token)
        if result != -17:  # EEXIST: the native architecture is always present
            _check(result, f"add architecture {oci_name}")

    def add_rule(self, act: int, name: str, args: list[dict]) -> None:
        if act == self.default_action:
            return  # libseccomp refuses a rule that repeats the default; it would change nothing anyway
        number = lib().seccomp_syscall_resolve_name(name.encode())
        if number == -1:  # __NR_SCMP_ERROR: unknown on every architecture of this filter
            self.skipped.append(name)
            return
        by_index: dict[int, list[dict]] = {}
        for arg in args:
            by_index.setdefault(arg["index"], []).append(arg)
        if any(len(v) > 1 for v in by_index.values()):
            # libseccomp ANDs comparisons but allows one per argument: several on one argument mean OR (runc).
            for arg in args:
                self._add(act, number, name, [arg])
        else:
            self._add(act, number, name, args)

    def _add(self, act: int, number: int, name: str, args: list[dict]) -> None:
        cmps = ffi.new("struct scmp_arg_cmp[]", max(len(args), 1))
        for i, arg in enumerate(args):
            try:
                op = _OPS[arg["op"]]
            except KeyError:
                raise SeccompError(f"unknown seccomp operator {arg.get('op')!r} for {name}") from None
            cmps[i].arg, cmps[i].op = arg["index"], op
            cmps[i].datum_a, cmps[i].datum_b = arg.get("value", 0), arg.get("valueTwo", 0)
        _check(lib().seccomp_rule_add_array(self.ctx, act, number, len(args), cmps), f"rule for {name}")

    def load(self) -> None:
        result = lib().seccomp_load(self.ctx)
        if result < 0:
            raise OSError(-result, f"loading the seccomp filter: {os.strerror(-result)}")

    def export(self) -> bytes:
        """The BPF program libseccomp generates for this filter (what ``load`` would install)."""
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            _check(lib().seccomp_export_bpf(self.ctx, fd), "export")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)


class Program:
    """A compiled BPF filter, loaded with the seccomp(2) syscall: no libseccomp work in the child."""

    def __init__(self, code: bytes, flags: int = 0):
        if not code or len(code) % 8:
            raise SeccompError("invalid compiled seccomp program")
        self.code = code
        self.flags = flags
        self._filters = ffi.from_buffer("struct sock_filter[]", code)
        self._fprog = ffi.new("struct sock_fprog *", {"len": len(code) // 8, "filter": self._filters})

    def load(self) -> None:
        linux.seccomp_set_filter(self._fprog, self.flags)


def compile_oci(config: dict, cache_dir=None) -> Program:
    """OCI seccomp -> a loadable BPF program, cached under ``cache_dir`` by content.

    libseccomp's BPF generation costs tens of milliseconds for Docker-sized profiles (most of a
    container's start); the same profile compiles to the same program for a given libseccomp and
    architecture, so later starts only read it back. A cache file is named by a CRC of the profile
    and holds the profile's text before its program, which must match exactly to be used: no
    collision can give a container another profile's filter, and no ``hashlib`` (OpenSSL's load,
    ~3 ms) is needed to start one.
    """
    import json
    import zlib
    from pathlib import Path

    flags = 0
    for flag in config.get("flags") or []:
        if flag not in _KERNEL_FLAGS:
            raise SeccompError(f"unknown seccomp flag {flag!r}")
        flags |= _KERNEL_FLAGS[flag]
    version = lib().seccomp_version()
    text = json.dumps([config, os.uname().machine, version.major, version.minor, version.micro],
                      sort_keys=True).encode()  # ASCII, no NUL: json.dumps escapes both
    cached = Path(cache_dir, f"{zlib.crc32(text):08x}-{len(text)}.bpf") if cache_dir is not None else None
    if cached is not None:
        try:
            profile, _nul, code = cached.read_bytes().partition(b"\0")
            if profile == text:
                return Program(code, flags)
        except (OSError, SeccompError):
            pass
    code = Filter.from_oci(config).export()
    if cached is not None:
        # a unique temp name: the builder runs several containers from threads of one process
        atomic_write(cached, text + b"\0" + code, durable=False)
    return Program(code, flags)
