"""``GET /containers/{id}/stats``: a container's cgroup counters in Docker's stats JSON, streamed or once.

Read from the container's cgroup directories, v1 (one per controller: ``cpuacct.usage_percpu``,
``memory.stat``, ``blkio.throttle.io_service_bytes``…) or v2 (one ``unified`` directory:
``cpu.stat``, ``memory.stat``, ``io.stat``…), as Docker's daemon reads them; network counters from
the container's ``/proc/PID/net/dev``. Like Docker, an unlimited memory limit is reported as the
host's memory, and a container that is not running gives a sample of zeros.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import web

from pallet.kernel.api.common import blocking, query_bool
from pallet.kernel.api.containers import _get, record_of

ZERO_TIME = "0001-01-01T00:00:00Z"
INTERVAL = 1.0   # seconds between streamed samples, as Docker's collector


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _number(path: Path) -> int:
    text = _read(path).strip()
    return int(text) if text.isdigit() else 0


def _keyed(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def _blkio_v1(text: str) -> list[dict]:
    entries = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0] and parts[2].isdigit():
            major, _sep, minor = parts[0].partition(":")
            entries.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
    return entries


def _blkio_v2(text: str) -> tuple[list[dict], list[dict]]:
    """``io.stat`` as Docker reports it on v2: bytes and operations per device, ops ``read``/``write``."""
    service_bytes, serviced = [], []
    for line in text.splitlines():
        device, *fields = line.split()
        if ":" not in device:
            continue
        major, _sep, minor = device.partition(":")
        values = dict(f.split("=", 1) for f in fields if "=" in f)
        for key, op, target in (("rbytes", "read", service_bytes), ("wbytes", "write", service_bytes),
                                ("rios", "read", serviced), ("wios", "write", serviced)):
            if values.get(key, "").isdigit():
                target.append({"major": int(major), "minor": int(minor), "op": op, "value": int(values[key])})
    return service_bytes, serviced


def host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def system_cpu_usage(stat_text: str | None = None) -> int:
    """The host's CPU time in nanoseconds: the first ``cpu`` line of /proc/stat, in clock ticks."""
    text = stat_text if stat_text is not None else _read(Path("/proc/stat"))
    for line in text.splitlines():
        if line.startswith("cpu "):
            ticks = sum(int(v) for v in line.split()[1:8])
            return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return 0


def _limit(value: int) -> int:
    memory = host_memory()
    return memory if value <= 0 or value > memory else value


def cgroup_v1(dirs: dict[str, Path]) -> dict:
    """Docker's ``cpu_stats``, ``memory_stats``, ``blkio_stats``, ``pids_stats`` from v1 controller dirs."""
    cpuacct, cpu, memory = dirs.get("cpuacct"), dirs.get("cpu"), dirs.get("memory")
    blkio, pids = dirs.get("blkio"), dirs.get("pids")
    ticks = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    times = _keyed(_read(cpuacct / "cpuacct.stat")) if cpuacct else {}
    throttled = _keyed(_read(cpu / "cpu.stat")) if cpu else {}
    percpu = [int(v) for v in _read(cpuacct / "cpuacct.usage_percpu").split()] if cpuacct else []
    cpu_stats = {
        "cpu_usage": {"total_usage": _number(cpuacct / "cpuacct.usage") if cpuacct else 0, "percpu_usage": percpu,
                      "usage_in_kernelmode": times.get("system", 0) * ticks,
                      "usage_in_usermode": times.get("user", 0) * ticks},
        "throttling_data": {"periods": throttled.get("nr_periods", 0),
                            "throttled_periods": throttled.get("nr_throttled", 0),
                            "throttled_time": throttled.get("throttled_time", 0)},
    }
    memory_stats = {}
    if memory:
        memory_stats = {"usage": _number(memory / "memory.usage_in_bytes"),
                        "max_usage": _number(memory / "memory.max_usage_in_bytes"),
                        "failcnt": _number(memory / "memory.failcnt"),
                        "limit": _limit(_number(memory / "memory.limit_in_bytes")),
                        "stats": _keyed(_read(memory / "memory.stat"))}
    blkio_stats = {key: [] for key in ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
                                       "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
                                       "io_time_recursive", "sectors_recursive")}
    if blkio:
        blkio_stats["io_service_bytes_recursive"] = _blkio_v1(_read(blkio / "blkio.throttle.io_service_bytes"))
        blkio_stats["io_serviced_recursive"] = _blkio_v1(_read(blkio / "blkio.throttle.io_serviced"))
    pids_stats = {}
    if pids:
        pids_stats = {"current": _number(pids / "pids.current")}
        if _number(pids / "pids.max"):
            pids_stats["limit"] = _number(pids / "pids.max")
    return {"cpu_stats": cpu_stats, "memory_stats": memory_stats, "blkio_stats": blkio_stats, "pids_stats": pids_stats}


def cgroup_v2(directory: Path) -> dict:
    """The same from one cgroup v2 directory (no per-CPU usage there; ``memory.stat`` keys as v2 names them)."""
    cpu = _keyed(_read(directory / "cpu.stat"))
    cpu_stats = {
        "cpu_usage": {"total_usage": cpu.get("usage_usec", 0) * 1000,
                      "usage_in_kernelmode": cpu.get("system_usec", 0) * 1000,
                      "usage_in_usermode": cpu.get("user_usec", 0) * 1000},
        "throttling_data": {"periods": cpu.get("nr_periods", 0), "throttled_periods": cpu.get("nr_throttled", 0),
                            "throttled_time": cpu.get("throttled_usec", 0) * 1000},
    }
    limit_text = _read(directory / "memory.max").strip()
    memory_stats = {"usage": _number(directory / "memory.current"),
                    "limit": _limit(int(limit_text) if limit_text.isdigit() else 0),
                    "stats": _keyed(_read(directory / "memory.stat"))}
    service_bytes, serviced = _blkio_v2(_read(directory / "io.stat"))
    blkio_stats = {"io_service_bytes_recursive": service_bytes, "io_serviced_recursive": serviced}
    pids_stats = {"current": _number(directory / "pids.current")}
    if _number(directory / "pids.max"):
        pids_stats["limit"] = _number(directory / "pids.max")
    return {"cpu_stats": cpu_stats, "memory_stats": memory_stats, "blkio_stats": blkio_stats, "pids_stats": pids_stats}


def networks(pid: int | None, proc: Path = Path("/proc")) -> dict:
    """Per-interface counters (but loopback) from the container's ``net/dev``, Docker's field names."""
    result = {}
    for line in _read(proc / str(pid) / "net" / "dev").splitlines()[2:] if pid else []:
        name, _sep, counters = line.partition(":")
        fields = [int(v) for v in counters.split()]
        if name.strip() == "lo" or len(fields) < 12:
            continue
        result[name.strip()] = {"rx_bytes": fields[0], "rx_packets": fields[1], "rx_errors": fields[2],
                                "rx_dropped": fields[3], "tx_bytes": fields[8], "tx_packets": fields[9],
                                "tx_errors": fields[10], "tx_dropped": fields[11]}
    return result


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _empty_cpu() -> dict:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def sample(record) -> dict:
    """One stats sample of ``record`` (``precpu_stats`` and ``preread`` are the caller's to fill)."""
    from pallet.kernel.lifecycle import container_cgroup

    data = {"read": ZERO_TIME, "preread": ZERO_TIME, "pids_stats": {}, "blkio_stats": {},
            "num_procs": 0, "storage_stats": {}, "cpu_stats": _empty_cpu(), "precpu_stats": _empty_cpu(),
            "memory_stats": {}, "name": "/" + record.name, "id": record.id}
    if not record.running:
        return data
    cgroup = container_cgroup(record)
    dirs = {name: Path(path) for name, path in cgroup.dirs().items()}
    counters = cgroup_v2(dirs["unified"]) if cgroup.version == 2 else cgroup_v1(dirs)
    counters["cpu_stats"]["system_cpu_usage"] = system_cpu_usage()
    counters["cpu_stats"]["online_cpus"] = len(os.sched_getaffinity(0))
    data.update(counters, read=_stamp(time.time()))
    with contextlib.suppress(OSError):
        data["networks"] = networks(record.pid)
    return data


def _next(engine, record, previous: dict | None) -> tuple[object, dict | None]:
    """The container as it is now and its sample; (None, None) once it has been removed."""
    from pallet.kernel.errors import PalletError

    try:
        record = _get(engine, record.id)
    except PalletError:
        return None, None
    current = sample(record)
    if previous is not None:
        current["precpu_stats"], current["preread"] = previous["cpu_stats"], previous["read"]
    return record, current


async def stats(request: web.Request):
    """``stream`` (default) sends a sample a second until the container is removed; ``stream=false`` one
    sample whose ``precpu_stats`` is a second older (so a CPU percentage can be worked out), or with
    ``one-shot=true`` at once without it."""
    engine = request.app["engine"]
    record = await record_of(request)
    stream = query_bool(request, "stream", True)
    one_shot = query_bool(request, "one-shot") and not stream
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    previous = None
    if not stream and not one_shot and record.running:
        record, previous = await blocking(_next, engine, record, None)
        await asyncio.sleep(INTERVAL)
    while record is not None:
        record, current = await blocking(_next, engine, record, previous)
        if current is None:
            break  # removed meanwhile: the stream ends, as Docker's does
        await response.write(json.dumps(current).encode() + b"\n")
        if not stream:
            break
        previous = current
        await asyncio.sleep(INTERVAL)
    await response.write_eof()
    return response


ROUTES = [
    ("GET", "/containers/{id}/stats", stats),
]
