"""The confinement battery behind ``pallet security check``: a busybox shell script and the parser of its report.

Each check prints ``CHECK <id> closed|open <detail>``; "closed" means the container could
not do the thing. Every probe is harmless on the host even where it succeeds (it rewrites
a sysctl with its current value, makes a device node in /dev and removes it, mounts a tmpfs it unmounts).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import click

from pallet.kernel.errors import PalletError

# (id, what a confined container cannot do)
CHECKS = [
    ("mount", "cannot mount a filesystem"),
    ("modules", "cannot load kernel modules"),
    ("userns", "cannot unshare(CLONE_NEWUSER)"),
    ("ptrace", "cannot ptrace processes outside"),
    ("kcore", "cannot read /proc/kcore"),
    ("procsys", "cannot write /proc/sys"),
    ("mknod", "cannot mknod and open a block device"),
    ("hostname", "cannot change the hostname"),
    ("hostpids", "cannot see host PIDs"),
    ("firmware", "cannot reach /sys/firmware"),
    ("seccomp", "runs under a seccomp filter"),
]

SCRIPT = r"""
bb=busybox
report() { echo "CHECK $1 $2 $3"; }
bit() { cap=$($bb awk '/^CapEff:/ {print $2}' /proc/self/status); echo $(( (0x$cap >> $1) & 1 )); }

if $bb mkdir -p /tmp/.pallet-check-mnt && $bb mount -t tmpfs none /tmp/.pallet-check-mnt 2>/dev/null; then
    $bb umount /tmp/.pallet-check-mnt; report mount open "mount -t tmpfs succeeded"
else report mount closed "mount -t tmpfs refused"; fi

if [ "$(bit 16)" = 1 ]; then report modules open "CAP_SYS_MODULE is effective"
else report modules closed "CAP_SYS_MODULE is not effective"; fi

if $bb unshare -U true 2>/dev/null; then report userns open "unshare -U succeeded"
else report userns closed "unshare -U refused"; fi

# PALLET_CHECK_HOST_PID/_COMM name the checking pallet process: a host process the container
# must not reach (the name guards against a container process that happens to share the PID).
host_pid=${PALLET_CHECK_HOST_PID:-0}
if [ "$host_pid" -gt 1 ] && $bb kill -0 "$host_pid" 2>/dev/null \
        && [ "$($bb cat /proc/$host_pid/comm 2>/dev/null)" = "$PALLET_CHECK_HOST_COMM" ]; then
    report ptrace open "host process $host_pid is reachable"
elif [ "$(bit 19)" = 1 ]; then report ptrace open "CAP_SYS_PTRACE is effective"
else report ptrace closed "no CAP_SYS_PTRACE; host PID $host_pid is not reachable"; fi

kcore=$($bb head -c 16 /proc/kcore 2>/dev/null | $bb wc -c)
if [ "$kcore" -gt 0 ]; then report kcore open "read $kcore bytes"
elif [ -e /proc/kcore ]; then report kcore closed "masked: nothing readable"
else report kcore closed "this kernel has no /proc/kcore"; fi

value=$($bb cat /proc/sys/kernel/printk_ratelimit 2>/dev/null)
if [ -n "$value" ] && (echo "$value" > /proc/sys/kernel/printk_ratelimit) 2>/dev/null; then
    report procsys open "rewrote kernel.printk_ratelimit"
else report procsys closed "/proc/sys is read-only"; fi

# Docker (and runc) let CAP_MKNOD make any node; the devices cgroup is what stops its use.
blk=/dev/.pallet-check-blk
if $bb mknod $blk b 7 0 2>/dev/null; then
    err=$($bb dd if=$blk of=/dev/null bs=512 count=1 2>&1)
    $bb rm -f $blk
    case "$err" in
        *"not permitted"*) report mknod closed "block device node made, but opening it is refused" ;;
        *) report mknod open "a block device could be opened" ;;
    esac
else report mknod closed "mknod b 7 0 refused"; fi

name=$($bb hostname)
if $bb hostname pallet-check 2>/dev/null; then $bb hostname "$name"; report hostname open "sethostname succeeded"
else report hostname closed "sethostname refused"; fi

pids=$($bb ls /proc | $bb grep -c '^[0-9][0-9]*$')
if [ "$pids" -gt 20 ] || [ "$($bb cat /proc/1/comm)" = systemd ] || [ "$($bb cat /proc/1/comm)" = init ]; then
    report hostpids open "$pids processes visible"
else report hostpids closed "$pids processes visible"; fi

if [ -n "$($bb ls -A /sys/firmware 2>/dev/null)" ]; then report firmware open "/sys/firmware is listed"
else report firmware closed "/sys/firmware is empty or masked"; fi

mode=$($bb awk '/^Seccomp:/ {print $2}' /proc/self/status)
if [ "$mode" = 2 ]; then report seccomp closed "Seccomp: 2"
else report seccomp open "Seccomp: $mode"; fi
"""


@dataclass
class CheckResult:
    id: str
    description: str
    closed: bool | None   # None: the script did not report it
    detail: str


def parse_report(output: str) -> list[CheckResult]:
    seen = {}
    for line in output.splitlines():
        parts = line.split(" ", 3)
        if len(parts) >= 3 and parts[0] == "CHECK":
            seen[parts[1]] = (parts[2] == "closed", parts[3] if len(parts) > 3 else "")
    return [CheckResult(cid, text, *seen.get(cid, (None, "no report"))) for cid, text in CHECKS]


@click.command("check")
@click.option("--privileged", is_flag=True, help="Run the battery in a --privileged container to show what opens up.")
@click.option("--image", default="busybox", show_default=True, help="Image with busybox to run the battery in.")
@click.option("--security-opt", multiple=True, help="Security options for the checked container.")
@click.option("--cap-add", multiple=True, help="Add Linux capabilities to the checked container.")
@click.option("--cap-drop", multiple=True, help="Drop Linux capabilities from the checked container.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_obj
def check(engine, privileged, image, security_opt, cap_add, cap_drop, as_json):
    """Run a confinement battery inside a container and print what it could not do.

    Exits 1 when a default (non --privileged) container gets through any check.
    """
    from pallet.kernel.cli.output import emit

    argv = [sys.executable, "-P", "-m", "pallet.kernel.cli", "--root", str(engine.root), "--run-root", str(engine.run_root)]
    if engine.config.config_path.exists():
        argv += ["--config", str(engine.config.config_path)]
    if engine.config.storage_driver_flag:
        argv += ["--storage-driver", engine.config.storage_driver_flag]
    with open("/proc/self/comm") as handle:
        comm = handle.read().strip()
    argv += ["run", "--rm", "--network", "none", "-e", f"PALLET_CHECK_HOST_PID={os.getpid()}",
             "-e", f"PALLET_CHECK_HOST_COMM={comm}"]
    argv += ["--privileged"] if privileged else []
    for flag, values in (("--security-opt", security_opt), ("--cap-add", cap_add), ("--cap-drop", cap_drop)):
        for value in values:
            argv += [flag, value]
    argv += [image, "sh", "-c", SCRIPT]
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    results = parse_report(done.stdout)
    if all(r.closed is None for r in results):
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
        raise PalletError(f"the check container did not run: {reason.removeprefix('Error: ')}")
    rows = [{"check": r.description, "result": {True: "pass", False: "OPEN", None: "unknown"}[r.closed],
             "detail": r.detail, "id": r.id} for r in results]
    emit(rows, [("CHECK", "check"), ("RESULT", "result"), ("DETAIL", "detail")], as_json=as_json)
    if not privileged and any(r.closed is not True for r in results):
        raise PalletError("the container got through some checks (see OPEN above)")
