"""Container cgroups, v1 (one hierarchy per controller) and v2 (unified), detected at runtime.

``Cgroup.for_spec(id, spec["linux"])`` names the group from ``linux.cgroupsPath`` (default
``pallet/<id>``; absolute and relative paths are both taken from the hierarchy root, as Docker's
``/docker/<id>`` is). On a hybrid host (v1 controllers + a v2 mount) the v1 controllers are used.
Resource files the kernel does not offer (``blkio.weight`` without BFQ, ``memory.memsw.*`` without
swap accounting) are skipped; values the kernel rejects raise ``CgroupError``.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from pallet.kernel.errors import PalletError

ROOT = Path("/sys/fs/cgroup")
SIGKILL = 9


class CgroupError(PalletError):
    pass


def _write(path: Path, value) -> None:
    try:
        with open(path, "w") as handle:
            handle.write(str(value))
    except OSError as err:
        raise CgroupError(f"cannot write {value!r} to {path}: {err.strerror}") from None


def _read(path: Path) -> str:
    with open(path) as handle:
        return handle.read()


def _keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, memory.events, cpu.stat, memory.oom_control)."""
    pairs = (line.split() for line in text.splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}


def _device_rule(rule: dict) -> str:
    kind = rule.get("type") or "a"
    if kind == "a":
        return "a"
    major = "*" if rule.get("major") in (None, -1) else rule["major"]
    minor = "*" if rule.get("minor") in (None, -1) else rule["minor"]
    return f"{kind} {major}:{minor} {rule.get('access') or 'rwm'}"


def _fill_cpuset(path: Path) -> None:
    """A new v1 cpuset is empty and no task can join an empty cpuset: inherit the parent's, top-down
    (another pallet may have just made a parent and not filled it yet, or filled only its cpus)."""
    keys = ("cpuset.cpus", "cpuset.mems")
    empty = []
    probe = path
    # A parent is unfilled until *both* files are: the other pallet writes cpus before mems.
    while (probe / keys[0]).exists() and not all(_read(probe / key).strip() for key in keys):
        empty.append(probe)
        probe = probe.parent
    for directory in reversed(empty):
        for key in keys:
            if not _read(directory / key).strip():
                _write(directory / key, _read(directory.parent / key).strip())


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) -> cpu.weight (1..10000), the conversion runc and crun use."""
    return 1 + ((shares - 2) * 9999) // 262142 if shares else 0


def blkio_to_io_weight(weight: int) -> int:
    """blkio.weight (10..1000) -> io.weight (1..10000)."""
    return 1 + ((weight - 10) * 9999) // 990 if weight else 0


class Cgroup:
    """One container's cgroup: ``dirs`` maps a v1 controller (or ``"unified"`` for v2) to its directory."""

    def __init__(self, dirs: dict[str, Path], version: int):
        self._dirs = {name: Path(path) for name, path in dirs.items()}
        self.version = version

    # --- naming ----------------------------------------------------------------------------------

    @classmethod
    def for_spec(cls, container_id: str, linux_spec: dict, info=None, root: Path = ROOT) -> Cgroup:
        """``info`` (``v1`` controller -> mount, ``v2_mount``) defaults to this host's mounts."""
        path = relative_path(linux_spec.get("cgroupsPath") or f"pallet/{container_id}")
        v1, v2_mount = (info.v1, info.v2_mount) if info is not None else hierarchies()
        if v1:
            return cls({name: Path(mount) / path for name, mount in v1.items()}, 1)
        return cls({"unified": Path(v2_mount or root) / path}, 2)

    @classmethod
    def from_dirs(cls, dirs: dict[str, str]) -> Cgroup:
        return cls({k: Path(v) for k, v in dirs.items()}, 2 if set(dirs) == {"unified"} else 1)

    def dirs(self) -> dict[str, str]:
        return {name: str(path) for name, path in self._dirs.items()}

    def container_dirs(self) -> dict[str, str]:
        """v1 controller -> directory, for the container's /sys/fs/cgroup (empty on v2: it mounts cgroup2)."""
        return self.dirs() if self.version == 1 else {}

    def _dir(self, controller: str) -> Path | None:
        return self._dirs.get("unified" if self.version == 2 else controller)

    # --- lifecycle -------------------------------------------------------------------------------

    def create(self) -> None:
        """Make the directories (several pallets may create the same parents at once)."""
        for name, path in self._dirs.items():
            if self.version == 2:
                self._create_v2(path)
                continue
            path.mkdir(parents=True, exist_ok=True)
            if name == "cpuset":
                _fill_cpuset(path)

    def _create_v2(self, path: Path) -> None:
        missing = []
        probe = path
        while not (probe / "cgroup.controllers").exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        for directory in reversed(missing):
            # Controllers must be enabled in every ancestor's subtree_control to reach the leaf.
            parent = directory.parent
            available = _read(parent / "cgroup.controllers").split()
            enabled = set(_read(parent / "cgroup.subtree_control").split())
            wanted = [c for c in ("cpu", "cpuset", "io", "memory", "pids", "hugetlb") if c in available]
            if set(wanted) - enabled:
                _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted if c not in enabled))
            directory.mkdir(exist_ok=True)

    def add(self, pid: int) -> None:
        for path in self._dirs.values():
            _write(path / "cgroup.procs", pid)

    def pids(self) -> list[int]:
        found: set[int] = set()
        for path in self._dirs.values():
            try:
                found.update(int(line) for line in _read(path / "cgroup.procs").split())
            except FileNotFoundError:
                continue
        return sorted(found)

    def kill(self, sig: int = SIGKILL) -> None:
        unified = self._dir("unified") if self.version == 2 else None
        if sig == SIGKILL and unified and (unified / "cgroup.kill").exists():
            _write(unified / "cgroup.kill", 1)
            return
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> None:
        if self.version == 2:
            path = self._dirs["unified"]
            _write(path / "cgroup.freeze", 1 if frozen else 0)
            done = lambda: f"frozen {1 if frozen else 0}" in _read(path / "cgroup.events")  # noqa: E731
        else:
            path = self._dir("freezer")
            if path is None:
                raise CgroupError("the freezer cgroup controller is not mounted")
            want = "FROZEN" if frozen else "THAWED"
            _write(path / "freezer.state", want)
            done = lambda: _read(path / "freezer.state").strip() == want  # noqa: E731
        deadline = time.monotonic() + 5
        while not done():
            if time.monotonic() > deadline:
                raise CgroupError(f"cgroup {path} did not become {'frozen' if frozen else 'thawed'}")
            time.sleep(0.001)

    def is_frozen(self) -> bool:
        if self.version == 2:
            return "frozen 1" in _read(self._dirs["unified"] / "cgroup.events")
        path = self._dir("freezer")
        return path is not None and _read(path / "freezer.state").strip() != "THAWED"

    def destroy(self, timeout: float = 3.0) -> None:
        """Kill what is left, then remove every directory; retried while the kernel still says busy."""
        if not any(path.exists() for path in self._dirs.values()):
            return
        try:
            self.kill(SIGKILL)
            if self.is_frozen():
                self.thaw()
        except (OSError, CgroupError):
            pass
        deadline = time.monotonic() + timeout
        for path in self._dirs.values():
            while path.exists():
                try:
                    path.rmdir()
                except FileNotFoundError:
                    break
                except OSError as err:
                    if err.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise CgroupError(f"cannot remove cgroup {path}: {err.strerror}") from None
                    self.kill(SIGKILL)
                    time.sleep(0.01)

    # --- resources -------------------------------------------------------------------------------

    def apply(self, resources: dict) -> None:
        """OCI ``linux.resources`` -> controller files."""
        if self.version == 1:
            self._apply_v1(resources)
        else:
            self._apply_v2(resources)

    def _set(self, controller: str, name: str, value, optional: bool = False) -> bool:
        path = self._dir(controller)
        if path is None or (optional and not (path / name).exists()):
            return False
        _write(path / name, value)
        return True

    def _apply_cpuset_and_pids(self, r: dict) -> None:
        """The files that have the same names and values in v1 and v2."""
        cpu = r.get("cpu") or {}
        if cpu.get("cpus"):
            self._set("cpuset", "cpuset.cpus", cpu["cpus"])
        if cpu.get("mems"):
            self._set("cpuset", "cpuset.mems", cpu["mems"])
        pids = r.get("pids") or {}
        if pids.get("limit"):
            self._set("pids", "pids.max", pids["limit"] if pids["limit"] > 0 else "max")

    def _apply_v1(self, r: dict) -> None:
        memory = r.get("memory") or {}
        if memory.get("limit") is not None:
            self._set("memory", "memory.limit_in_bytes", memory["limit"])
        if memory.get("swap") is not None:
            self._set("memory", "memory.memsw.limit_in_bytes", memory["swap"], optional=True)
        if memory.get("reservation") is not None:
            self._set("memory", "memory.soft_limit_in_bytes", memory["reservation"])
        if memory.get("swappiness") is not None and 0 <= memory["swappiness"] <= 100:
            self._set("memory", "memory.swappiness", memory["swappiness"], optional=True)
        if memory.get("disableOOMKiller"):
            self._set("memory", "memory.oom_control", 1)
        cpu = r.get("cpu") or {}
        if cpu.get("shares"):
            self._set("cpu", "cpu.shares", cpu["shares"])
        if cpu.get("period"):
            self._set("cpu", "cpu.cfs_period_us", cpu["period"])
        if cpu.get("quota"):
            self._set("cpu", "cpu.cfs_quota_us", cpu["quota"])
        if cpu.get("realtimePeriod"):
            self._set("cpu", "cpu.rt_period_us", cpu["realtimePeriod"])
        if cpu.get("realtimeRuntime"):
            period = cpu.get("realtimePeriod") or int(_read(self._dir("cpu") / "cpu.rt_period_us").strip() or 1000000)
            self._grant_rt_runtime(cpu["realtimeRuntime"] / period)
            self._set("cpu", "cpu.rt_runtime_us", cpu["realtimeRuntime"])
        self._apply_cpuset_and_pids(r)
        blkio = r.get("blockIO") or {}
        if blkio.get("weight"):
            self._set("blkio", "blkio.weight", blkio["weight"], optional=True) or \
                self._set("blkio", "blkio.bfq.weight", blkio["weight"], optional=True)
        for dev in blkio.get("weightDevice") or []:
            self._set("blkio", "blkio.weight_device", f"{dev['major']}:{dev['minor']} {dev['weight']}", optional=True) or \
                self._set("blkio", "blkio.bfq.weight_device", f"{dev['major']}:{dev['minor']} {dev['weight']}",
                          optional=True)
        for key, name in (("throttleReadBpsDevice", "read_bps_device"), ("throttleWriteBpsDevice", "write_bps_device"),
                          ("throttleReadIOPSDevice", "read_iops_device"),
                          ("throttleWriteIOPSDevice", "write_iops_device")):
            for dev in blkio.get(key) or []:
                self._set("blkio", f"blkio.throttle.{name}", f"{dev['major']}:{dev['minor']} {dev['rate']}",
                          optional=True)
        for rule in r.get("devices") or []:
            self._set("devices", "devices.allow" if rule.get("allow") else "devices.deny", _device_rule(rule))

    def _grant_rt_runtime(self, share: float) -> None:
        """A real-time budget must fit the parent's: give each ancestor below the root at least the same
        ``share`` of its period (top-down, as Docker's daemon does for its parent from --cpu-rt-runtime)."""
        path = self._dir("cpu")
        if path is None:
            return
        ancestors = []
        probe = path.parent
        while (probe.parent / "cpu.rt_runtime_us").exists():
            ancestors.append(probe)
            probe = probe.parent
        for directory in reversed(ancestors):
            needed = -(-int(share * int(_read(directory / "cpu.rt_period_us").strip())) // 1)
            if int(_read(directory / "cpu.rt_runtime_us").strip() or 0) < needed:
                _write(directory / "cpu.rt_runtime_us", needed)

    def _apply_v2(self, r: dict) -> None:
        memory = r.get("memory") or {}
        limit = memory.get("limit")
        if limit is not None:
            self._set("memory", "memory.max", "max" if limit < 0 else limit)
        swap = memory.get("swap")
        if swap is not None:
            # OCI's swap is memory+swap (v1 memsw); v2 limits swap alone.
            if swap < 0:
                value = "max"
            elif limit is not None and limit >= 0:
                value = max(swap - limit, 0)
            else:
                raise CgroupError("a memory+swap limit needs a memory limit on cgroup v2")
            self._set("memory", "memory.swap.max", value, optional=True)
        if memory.get("reservation") is not None:
            self._set("memory", "memory.low", memory["reservation"])
        if memory.get("disableOOMKiller"):
            raise CgroupError("disabling the OOM killer is not supported on cgroup v2")
        cpu = r.get("cpu") or {}
        if cpu.get("shares"):
            self._set("cpu", "cpu.weight", shares_to_weight(cpu["shares"]))
        if cpu.get("quota") or cpu.get("period"):
            quota = cpu.get("quota") or 0
            self._set("cpu", "cpu.max", f"{quota if quota > 0 else 'max'} {cpu.get('period') or 100000}")
        self._apply_cpuset_and_pids(r)
        blkio = r.get("blockIO") or {}
        if blkio.get("weight"):
            self._set("io", "io.bfq.weight", blkio["weight"], optional=True) or \
                self._set("io", "io.weight", f"default {blkio_to_io_weight(blkio['weight'])}", optional=True)
        if cpu.get("realtimeRuntime") or cpu.get("realtimePeriod"):
            raise CgroupError("real-time CPU limits (--cpu-rt-*) need cgroup v1's cpu controller")
        for dev in blkio.get("weightDevice") or []:
            self._set("io", "io.bfq.weight", f"{dev['major']}:{dev['minor']} {dev['weight']}", optional=True) or \
                self._set("io", "io.weight", f"{dev['major']}:{dev['minor']} {blkio_to_io_weight(dev['weight'])}",
                          optional=True)
        for key, name in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                          ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
            for dev in blkio.get(key) or []:
                self._set("io", "io.max", f"{dev['major']}:{dev['minor']} {name}={dev['rate']}")
        # Device rules on v2 need an eBPF program attached to the cgroup (BPF_CGROUP_DEVICE); pallet
        # does not load one, so on v2 only the /dev contents the runtime creates limit device access.

    # --- observations ----------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """``memory_usage``, ``memory_limit`` (bytes), ``cpu_usage`` (ns), ``pids``; missing ones are left out."""
        out: dict[str, int] = {}
        readers = {
            1: (("memory", "memory.usage_in_bytes", "memory_usage"), ("memory", "memory.limit_in_bytes", "memory_limit"),
                ("cpuacct", "cpuacct.usage", "cpu_usage"), ("pids", "pids.current", "pids")),
            2: (("memory", "memory.current", "memory_usage"), ("memory", "memory.max", "memory_limit"),
                ("pids", "pids.current", "pids")),
        }[self.version]
        for controller, name, key in readers:
            path = self._dir(controller)
            try:
                text = _read(path / name).strip() if path else ""
            except OSError:
                continue
            if (text.isascii() and text.isdigit()):
                out[key] = int(text)
        if self.version == 2 and self._dir("cpu"):
            try:
                out["cpu_usage"] = _keyed(_read(self._dirs["unified"] / "cpu.stat"))["usage_usec"] * 1000
            except (OSError, KeyError):
                pass
        return out

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this cgroup."""
        path = self._dir("memory")
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            return _keyed(_read(path / name)).get("oom_kill", 0) > 0 if path else False
        except OSError:
            return False


def hierarchies(mounts_file: str = "/proc/self/mounts") -> tuple[dict[str, Path], str]:
    """``(v1 hierarchy name -> mount, cgroup2 mount)``; v1 names are controllers and, for hierarchies
    without one (``name=systemd``), the mount's base name: processes join those too, as with runc."""
    v1: dict[str, Path] = {}
    v2_mount = ""
    with open(mounts_file) as handle:
        for line in handle:
            _dev, mountpoint, fstype, options = line.split()[:4]
            if fstype == "cgroup2":
                v2_mount = v2_mount or mountpoint
            elif fstype == "cgroup":
                names = [o for o in options.split(",") if o in V1_CONTROLLERS]
                if not names and any(o.startswith("name=") for o in options.split(",")):
                    names = [os.path.basename(mountpoint)]
                for name in names:
                    v1[name] = Path(mountpoint)
    return v1, v2_mount


WEIGHT_DISCARDED = "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."


def discard_unsupported_weight(changes: dict) -> list[str]:
    """``update``'s HostConfig ``changes`` without a ``BlkioWeight`` this host cannot apply (dockerd's
    update drops it the same way); returns the warnings to show."""
    if not changes.get("BlkioWeight") or blkio_weight_supported(*hierarchies()):
        return []
    del changes["BlkioWeight"]
    return [WEIGHT_DISCARDED]


def blkio_weight_supported(v1: dict[str, Path], v2_mount: str, name: str = "weight",
                           sys_block: Path = Path("/sys/block")) -> bool:
    """Whether a container's cgroup gets a block-IO weight file (``--blkio-weight``; ``name`` is
    ``weight`` or ``weight_device``).

    Docker's sysinfo looks in the hierarchy's root, but the weight files are not on a root cgroup
    (``CFTYPE_NOT_ON_ROOT``: v1's ``blkio.bfq.weight``, v2's ``io.bfq.weight`` and iocost's
    ``io.weight``). v1: CFQ's ``blkio.<name>`` is on the root, and BFQ's statistics there say BFQ is
    present. v2 (:func:`io_weight_supported`): the ``io`` controller, and a child group that has the
    file, or on the root the evidence of either weight's provider.
    """
    if "blkio" in v1:
        return any((v1["blkio"] / f).exists() for f in (f"blkio.{name}", f"blkio.bfq.{name}", "blkio.bfq.io_serviced"))
    return bool(v2_mount) and io_weight_supported(Path(v2_mount), block_schedulers(sys_block))


def io_weight_supported(mount: Path, schedulers: list[str]) -> bool:
    """cgroup v2's weight (both ``--blkio-weight`` and ``--blkio-weight-device``: one file takes
    ``default W`` and ``MAJ:MIN W``). False without ``io`` in the root's ``cgroup.controllers``; true
    when a child group where ``io`` is enabled has ``io.weight`` or ``io.bfq.weight``; else (``io`` not
    enabled below the root yet: a fresh host) true when iocost shows on the root (``io.cost.qos`` is
    only there) or a block device offers the ``bfq`` scheduler (``schedulers``: the text of each
    ``/sys/block/*/queue/scheduler``, ``none [mq-deadline] kyber bfq``); pallet's parent group
    enables ``io`` for its containers as it makes them."""
    try:
        if "io" not in _read(mount / "cgroup.controllers").split():
            return False
        children = [entry for entry in mount.iterdir() if entry.is_dir()]
    except OSError:
        return False
    if any((child / f).exists() for child in children for f in ("io.weight", "io.bfq.weight")):
        return True
    offered = {word.strip("[]") for text in schedulers for word in text.split()}
    return (mount / "io.cost.qos").exists() or "bfq" in offered


def block_schedulers(sys_block: Path = Path("/sys/block")) -> list[str]:
    """The I/O schedulers each block device offers (``/sys/block/*/queue/scheduler``)."""
    texts = []
    try:
        devices = list(sys_block.iterdir())
    except OSError:
        return texts
    for device in devices:
        try:
            texts.append(_read(device / "queue" / "scheduler"))
        except OSError:
            continue
    return texts


V1_CONTROLLERS = {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "blkio", "perf_event",
                  "net_prio", "hugetlb", "pids", "rdma", "misc"}


def relative_path(cgroups_path: str) -> str:
    """``/a/b`` or ``a/b`` -> ``a/b``; systemd's ``slice:prefix:name`` -> ``slice/prefix-name.scope``."""
    if ":" in cgroups_path and not cgroups_path.startswith("/"):
        parent, prefix, name = (cgroups_path.split(":") + ["", ""])[:3]
        cgroups_path = f"{parent or 'system.slice'}/{prefix}-{name}.scope" if prefix else f"{parent}/{name}"
    parts = [p for p in cgroups_path.split("/") if p not in ("", ".", "..")]
    if not parts:
        raise CgroupError(f"invalid cgroupsPath {cgroups_path!r}")
    return "/".join(parts)


# --- the first migration's grace period ---------------------------------------------------------

WARM_INTERVAL = 0.003  # seconds between two no-op migrations: well inside one RCU grace period
_warmer: dict = {}


def own_procs_file(proc_cgroup: str = "/proc/self/cgroup", mounts_file: str = "/proc/self/mounts") -> str | None:
    """This process's own ``cgroup.procs`` in one hierarchy (the first v1 one, else the v2 one)."""
    v1, v2_mount = hierarchies(mounts_file)
    try:
        with open(proc_cgroup) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _hid, controllers, path = line.split(":", 2)
        for name in controllers.split(","):
            name = name.removeprefix("name=")
            if name in v1:
                return f"{v1[name]}{path.rstrip('/')}/cgroup.procs"
    for line in lines:
        _hid, controllers, path = line.split(":", 2)
        if not controllers and v2_mount and not v1:
            return f"{v2_mount}{path.rstrip('/')}/cgroup.procs"
    return None


def keep_migrations_warm() -> None:
    """Start moving this process into the cgroup it is in, every few ms, until :func:`stop_warming`.

    Joining a cgroup takes the kernel's ``cgroup_threadgroup_rwsem`` for writing, whose ``rcu_sync``
    makes the first writer after a quiet moment wait for an RCU grace period (~9 ms here; the next
    writers within about one grace period of the last one do not). A ``run`` starts this when it
    begins, so that the wait overlaps its create and prepare instead of the container's start; the
    runtime stops it before it clones (``stop_warming``), and its own move of the container then
    comes within the window. A move into the cgroup a process is already in changes nothing. Any
    error (no permission, no cgroup fs) just ends the warming.
    """
    if _warmer:
        return
    path = own_procs_file()
    if path is None:
        return
    import threading

    stop = threading.Event()
    pid = str(os.getpid()).encode()

    def loop() -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            while True:
                os.write(fd, pid)
                if stop.wait(WARM_INTERVAL):
                    return
        except OSError:
            return
        finally:
            os.close(fd)

    thread = threading.Thread(target=loop, name="pallet-cgroup-warm", daemon=True)
    _warmer.update(thread=thread, stop=stop)
    thread.start()


def stop_warming() -> None:
    """End :func:`keep_migrations_warm`'s thread (before a fork or clone: a child is single-threaded)."""
    if not _warmer:
        return
    _warmer["stop"].set()
    _warmer["thread"].join()
    _warmer.clear()
