"""Pods: containers that share the namespaces an infra container holds (network, IPC, UTS, PID).

A pod is a record, ``<root>/pods/<id>.json``, and an infra container (label ``pallet.pod.infra``)
created with the pod's ports, network and hostname. Its process is pallet's own pause, a busybox
``sh`` loop from the embedded image (see :data:`INFRA_COMMAND` for why not ``sleep``). A member
is an ordinary container made with ``--network container:<infra>`` (and ``--ipc``/``--uts``/``--pid
container:<infra>`` for the shared kinds) and the label ``pallet.pod``, so the container
lifecycle needs nothing pod-specific.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from pallet.kernel.errors import Conflict, NotFound, PalletError, UsageError
from pallet.kernel.fsutil import atomic_write_json, locked

POD_LABEL = "pallet.pod"
INFRA_LABEL = "pallet.pod.infra"
SHAREABLE = ("net", "ipc", "uts", "pid")
DEFAULT_SHARE = ("net", "ipc", "uts")
INFRA_IMAGE = "busybox"
# PID 1 of a pod that shares its PID namespace must reap orphans: busybox ``sleep`` never calls
# wait(), so zombies would pile up. ash's ``wait`` reaps every child (waitpid(-1)), adopted ones
# too, and the TERM trap makes ``pod stop`` prompt (PID 1 ignores signals it has no handler for).
# catatonit would do the same but is not installed by default on Debian; this needs nothing new.
INFRA_COMMAND = ["sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 2147483647 & wait; done"]
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


@dataclass
class PodRecord:
    id: str
    name: str
    created: float = 0.0
    labels: dict = field(default_factory=dict)
    share: list = field(default_factory=list)
    hostname: str = ""
    infra_id: str = ""


class PodStore:
    def __init__(self, engine):
        self.engine = engine
        self.dir = Path(engine.root) / "pods"

    def lock(self):
        return locked(self.dir / ".lock")

    def save(self, pod: PodRecord) -> None:
        atomic_write_json(self.dir / f"{pod.id}.json", dataclasses.asdict(pod))

    def all(self) -> list[PodRecord]:
        import json

        if not self.dir.is_dir():
            return []
        return sorted((PodRecord(**json.loads(p.read_text())) for p in self.dir.glob("*.json")),
                      key=lambda p: p.created)

    def get(self, ref: str) -> PodRecord:
        pods = self.all()
        for match in (lambda p: p.id == ref or p.name == ref, lambda p: p.id.startswith(ref)):
            found = [p for p in pods if match(p)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise Conflict(f"pod {ref} is ambiguous ({len(found)} matches)")
        raise NotFound(f"no such pod: {ref}")

    def remove(self, pod: PodRecord) -> None:
        (self.dir / f"{pod.id}.json").unlink(missing_ok=True)

    def members(self, pod: PodRecord, infra: bool = True) -> list:
        """The pod's containers, the infra one first (when ``infra``)."""
        from pallet.kernel.containers import ContainerStore

        found = [r for r in ContainerStore(self.engine).all() if r.labels.get(POD_LABEL) == pod.id]
        found.sort(key=lambda r: (r.labels.get(INFRA_LABEL) != "true", r.created))
        return [r for r in found if infra or r.labels.get(INFRA_LABEL) != "true"]


def parse_share(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()] if text else list(DEFAULT_SHARE)
    for kind in kinds:
        if kind not in SHAREABLE:
            raise UsageError(f'invalid --share kind "{kind}" (one of {", ".join(SHAREABLE)})')
    if "net" not in kinds:
        raise UsageError("--share must include net: a pod's containers share its network namespace")
    return kinds


def new_pod(store: PodStore, name: str, share: list[str], hostname: str, labels: dict) -> PodRecord:
    if name and not NAME.match(name):
        raise UsageError(f'invalid pod name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
    pod_id = os.urandom(32).hex()
    name = name or f"pod-{pod_id[:8]}"
    if any(p.name == name for p in store.all()):
        raise Conflict(f'the pod name "{name}" is already in use')
    return PodRecord(id=pod_id, name=name, created=time.time(), labels=labels, share=share,
                     hostname=hostname or name)


def infra_args(pod: PodRecord, publish: tuple, network: str, image: str, command: list[str] = ()) -> list[str]:
    """The ``create`` command line of the infra container: pallet's pause loop in busybox, or the
    ``--infra-image``'s own entrypoint and command (podman's, e.g. a ``pause`` image), or ``command``."""
    args = ["--name", f"{pod.name}-infra", "--label", f"{POD_LABEL}={pod.id}", "--label", f"{INFRA_LABEL}=true",
            "--hostname", pod.hostname]
    if "ipc" in pod.share:
        args += ["--ipc", "shareable"]
    if network:
        args += ["--network", network]
    for port in publish:
        args += ["-p", port]
    if command:
        return args + [image or INFRA_IMAGE, *command]
    return args + ([image] if image else [INFRA_IMAGE, *INFRA_COMMAND])


def parse_infra_command(text: str) -> list[str]:
    """``--infra-command``: a JSON array (``["/pause"]``) or a shell-quoted line."""
    import json
    import shlex

    text = text.strip()
    if text.startswith("["):
        try:
            command = json.loads(text)
        except ValueError:
            command = None
        if not isinstance(command, list) or not all(isinstance(x, str) for x in command) or not command:
            raise UsageError(f"invalid --infra-command {text!r}: a JSON array of strings or a shell line")
        return command
    try:
        return shlex.split(text)
    except ValueError as err:
        raise UsageError(f"invalid --infra-command {text!r}: {err}") from None


def member_options(pod: PodRecord, opts: dict) -> dict:
    """``run --pod``: the options that join the infra container's namespaces (refusing what the pod owns)."""
    for flag, key in (("-p/--publish", "publish"), ("--network", "network"), ("-h/--hostname", "hostname"),
                      ("--ipc", "ipc"), ("--pid", "pid"), ("--uts", "uts")):
        if opts.get(key):
            raise UsageError(f"{flag} cannot be used with --pod: set it on the pod (pallet pod create)")
    opts = dict(opts)
    opts["network"] = f"container:{pod.infra_id}"
    if "ipc" in pod.share:
        opts["ipc"] = f"container:{pod.infra_id}"
    if "pid" in pod.share:
        opts["pid"] = f"container:{pod.infra_id}"
    if "uts" in pod.share:
        opts["uts"] = f"container:{pod.infra_id}"
    opts["label"] = tuple(opts.get("label") or ()) + (f"{POD_LABEL}={pod.id}",)
    return opts


def status(members: list) -> str:
    """Podman's pod states: Created, Running, Degraded (some running), Exited, Paused."""
    states = [m.status for m in members]
    if not states:
        return "Created"
    if all(s == "paused" for s in states):
        return "Paused"
    running = [s for s in states if s in ("running", "paused")]
    if running and len(running) == len(states):
        return "Running"
    if running:
        return "Degraded"
    if all(s == "created" for s in states):
        return "Created"
    return "Exited"


def check_infra(engine, pod: PodRecord) -> None:
    from pallet.kernel.containers import ContainerStore

    try:
        ContainerStore(engine).get(pod.infra_id)
    except NotFound:
        raise PalletError(f"pod {pod.name} has lost its infra container; remove it with pallet pod rm -f") from None
