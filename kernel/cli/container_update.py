"""``pallet update``: change a container's resource limits and restart policy, live in its cgroup when it runs."""

from __future__ import annotations

import click

from pallet.kernel.errors import PalletError, UsageError

_FLAGS = [
    ("--blkio-weight", "blkio_weight", int, "Block IO (relative weight), between 10 and 1000, or 0 to disable."),
    ("--cpu-period", "cpu_period", int, "Limit CPU CFS period (microseconds)."),
    ("--cpu-quota", "cpu_quota", int, "Limit CPU CFS quota (microseconds)."),
    ("--cpu-rt-period", "cpu_rt_period", int, "Limit the CPU real-time period in microseconds."),
    ("--cpu-rt-runtime", "cpu_rt_runtime", int, "Limit the CPU real-time runtime in microseconds."),
    ("--cpus", "cpus", str, "Number of CPUs."),
    ("--cpuset-cpus", "cpuset_cpus", str, "CPUs in which to allow execution (0-3, 0,1)."),
    ("--cpuset-mems", "cpuset_mems", str, "MEMs in which to allow execution (0-3, 0,1)."),
    ("--memory-reservation", "memory_reservation", str, "Memory soft limit."),
    ("--memory-swap", "memory_swap", str, "Swap limit equal to memory plus swap: -1 for unlimited swap."),
    ("--pids-limit", "pids_limit", int, "Tune container pids limit (-1 for unlimited)."),
    ("--restart", "restart", str, "Restart policy to apply when a container exits."),
]


def _changes(opts) -> dict:
    """The HostConfig fields the given flags set (Docker's names, as ``create`` records them)."""
    from pallet.kernel import policyopts, runopts

    changes: dict = {}
    if opts["memory"] is not None:
        changes["Memory"] = runopts.parse_memory(opts["memory"]) or 0
    if opts["memory_swap"] is not None:
        changes["MemorySwap"] = runopts.parse_memory_swap(opts["memory_swap"])
    if opts["memory_reservation"] is not None:
        changes["MemoryReservation"] = runopts.parse_memory(opts["memory_reservation"], "--memory-reservation")
    if opts["cpus"] is not None:
        changes["NanoCpus"] = runopts.parse_cpus(opts["cpus"])
    for flag, key in (("cpu_shares", "CpuShares"), ("cpu_period", "CpuPeriod"), ("cpu_quota", "CpuQuota"),
                      ("cpu_rt_period", "CpuRealtimePeriod"), ("cpu_rt_runtime", "CpuRealtimeRuntime")):
        if opts[flag] is not None:
            changes[key] = opts[flag]
    if opts["cpuset_cpus"] is not None:
        changes["CpusetCpus"] = runopts.parse_cpuset(opts["cpuset_cpus"])
    if opts["cpuset_mems"] is not None:
        changes["CpusetMems"] = runopts.parse_cpuset(opts["cpuset_mems"], "--cpuset-mems")
    if opts["blkio_weight"] is not None:
        changes["BlkioWeight"] = runopts.parse_blkio_weight(opts["blkio_weight"])
    if opts["pids_limit"] is not None:
        changes["PidsLimit"] = opts["pids_limit"] if opts["pids_limit"] > 0 else None
    if opts["restart"] is not None:
        changes["RestartPolicy"] = policyopts.parse_restart(opts["restart"])
    return changes


def _options(func):
    for flag, dest, kind, text in reversed(_FLAGS):
        func = click.option(flag, dest, type=kind, default=None, help=text)(func)
    func = click.option("-m", "--memory", "memory", default=None, help="Memory limit.")(func)
    return click.option("-c", "--cpu-shares", "cpu_shares", type=int, default=None,
                        help="CPU shares (relative weight).")(func)


@click.command("update")
@_options
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def update(engine, containers, **opts):
    """Update configuration of one or more containers."""
    from pallet.kernel.containers import ContainerStore

    changes = _changes(opts)
    if not changes:
        raise UsageError("you must provide one or more flags when using this command")
    if changes.get("NanoCpus") and (changes.get("CpuPeriod") or changes.get("CpuQuota")):
        raise UsageError("Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
    from pallet.kernel.cgroups import discard_unsupported_weight

    for warning in discard_unsupported_weight(changes):   # as create does
        click.echo(f"WARNING: {warning}", err=True)
    engine.plugins.load("storage", "security", "runtime")
    store = ContainerStore(engine)
    failed = False
    for name in containers:
        try:
            update_container(engine, store.get(name), changes)
            click.echo(name)
        except PalletError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = True
    if failed:
        raise click.exceptions.Exit(1)


def update_container(engine, record, changes: dict) -> None:
    """Record the new HostConfig fields and, when the container runs, write them to its cgroup; also for the API."""
    from pallet.kernel import events, lifecycle
    from pallet.kernel.containers import ContainerStore

    record = lifecycle.refresh(engine, record)
    if changes.get("RestartPolicy", {}).get("Name") not in (None, "", "no") and record.host_config.get("AutoRemove"):
        raise PalletError("Restart policy cannot be updated because AutoRemove is enabled for the container")
    swap = record.host_config.get("MemorySwap") or 0
    if changes.get("Memory") and "MemorySwap" not in changes and swap > 0 and changes["Memory"] > swap:
        raise PalletError("Memory limit should be smaller than already set memoryswap limit, update the "
                          "memoryswap at the same time")
    host = {**record.host_config, **changes}
    if record.running:
        _apply_or_explain(record, host)
    ContainerStore(engine).update(record.id, host_config=host)
    events.container(engine, record, "update")


def _apply_or_explain(record, host: dict) -> None:
    """``apply_live``, with the kernel's refusal of a memory limit below the usage said in words."""
    from pallet.kernel import lifecycle
    from pallet.kernel.cgroups import CgroupError
    from pallet.kernel.humanize import binary_size as human

    try:
        apply_live(record, host)
    except CgroupError as exc:
        if "Device or resource busy" not in str(exc) or "memory" not in str(exc):
            raise PalletError(str(exc)) from None
        usage = lifecycle.container_cgroup(record).stats().get("memory_usage", 0)
        raise PalletError(f"cannot update {record.name}: a memory limit of {human(host.get('Memory') or 0)} is "
                          f"below what the container uses now ({human(usage)}); free memory in it or give a "
                          "higher limit") from None


def apply_live(record, host: dict) -> None:
    """Write the new limits to the running container's cgroup (device rules are left as they are)."""
    from pallet.kernel import lifecycle, spec
    from pallet.kernel.cgroups import CgroupError

    resources = spec.resources(host, bool(host.get("Privileged")))
    resources.pop("devices", None)
    if not host.get("PidsLimit"):   # --pids-limit -1 or 0: unlimited again, as Docker's update
        resources["pids"] = {"limit": -1}
    cgroup = lifecycle.container_cgroup(record)
    memory = resources.get("memory") or {}
    if "swap" in memory:
        # v1 keeps memory <= memory+swap at every step: a raise must write the swap first, a cut
        # the limit first (which the full apply below does).
        try:
            cgroup.apply({"memory": {"swap": memory["swap"]}})
        except CgroupError:
            pass
    cgroup.apply(resources)
